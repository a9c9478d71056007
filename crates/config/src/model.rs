//! The validated configuration snapshot and the walk that builds it.
//! Every key of PRODUCT.md's configuration sketch is accepted here with its default.

use crate::ConfigErrors;
use crate::yaml::{Field, Map, Walker, with_empty_map};
use airlock_authn::oidc::{Alg, IssuerRules, MAX_LEEWAY_SECS, TokenKind};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Config {
    /// Data plane listener.
    pub listen: SocketAddr,
    /// Admin plane listener (health, later the admin API, UI and metrics).
    pub admin_listen: SocketAddr,
    pub upstream: UpstreamConfig,
    pub store: StoreUrl,
    pub redis: Option<String>,
    /// `redis_on_failure: fail_open`: admit requests whose limits cannot be checked (default:
    /// refuse them).
    pub redis_fail_open: bool,
    /// The policy file; `None` means the bundled example policy.
    pub policy: Option<PathBuf>,
    /// The key redaction placeholders and pseudonyms derive from; `None`: `masking.key` in
    /// the data directory (created on first start). Instances sharing a store share it.
    pub masking_key_file: Option<PathBuf>,
    pub session: SessionConfig,
    pub oidc: Vec<OidcIssuer>,
    pub admin_groups: Vec<String>,
    pub audit: AuditConfig,
    pub approvals: ApprovalsConfig,
    pub telemetry: TelemetryConfig,
    pub ui: UiConfig,
    pub limits: Limits,
}

/// The admin web UI (`ui:`), served by the admin listener at `/ui`.
#[derive(Debug, Clone, Default)]
pub struct UiConfig {
    /// The admin listener's URL as browsers reach it (the OIDC redirect is `<public_url>/ui/callback`;
    /// an `https://` URL makes the cookies `Secure`). Default: `http://<admin_listen>`.
    pub public_url: Option<String>,
    /// Development only: the sign-in page also accepts a pasted session token.
    pub dev_token_login: bool,
}

/// Trace export (`telemetry:`).
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// An OTLP/HTTP traces URL (`http://collector:4318/v1/traces`); `None`: no export.
    pub otlp_endpoint: Option<String>,
    pub service_name: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig { otlp_endpoint: None, service_name: "airlock".into() }
    }
}

/// Notifications for held requests (`approvals:`).
#[derive(Debug, Clone, Default)]
pub struct ApprovalsConfig {
    /// Where a reviewer opens a held request; `{id}` is replaced by the approval id.
    pub link: Option<String>,
    pub webhooks: Vec<ApprovalWebhook>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalWebhook {
    pub url: String,
    pub format: WebhookFormat,
    /// The rules whose holds are announced here; empty: every rule.
    pub rules: Vec<String>,
    /// Delivery attempts (with exponential backoff from 1 s) before giving up.
    pub max_attempts: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFormat {
    /// Slack-compatible (`{"text": ..., "blocks": [...]}`; also accepted by Mattermost).
    Slack,
    /// A plain JSON object with the approval's fields.
    Json,
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Scheme, authority and an optional base path (no query); `/v1/...` is appended.
    pub url: http::Uri,
    /// True when `upstream.url` was not given: with no API key either, `airlock serve` runs
    /// against the embedded mock instead of failing.
    pub url_is_default: bool,
    pub api_key: ApiKeySource,
    pub connect_timeout: Duration,
    /// Time allowed for the upstream to send response headers.
    pub header_timeout: Duration,
    /// Longest silence allowed while a response body (or stream) is being received. Streams
    /// have no total limit, only this one.
    pub idle_timeout: Duration,
    /// Attempts for a request whose bytes never reached the upstream (connect failures).
    pub max_connect_attempts: u32,
    /// Which HTTP version the upstream is spoken to in (`upstream.http2`).
    pub http2: Http2,
    pub http2_max_streams: u32,
}

/// `upstream.http2`: whether the upstream is spoken to in HTTP/2, where requests share
/// connections (at most `http2_max_streams` on each), or HTTP/1.1, one connection per request
/// in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Http2 {
    /// `false`: HTTP/1.1 only.
    Off,
    /// `auto` (the default): over `https://`, both are offered by ALPN and HTTP/2 is used while
    /// the server picks `h2`; from the first connection on which it picks HTTP/1.1 (or offers
    /// no ALPN), HTTP/1.1. Over `http://` nothing can be negotiated: HTTP/1.1.
    Auto,
    /// `true`: HTTP/2 only: over TLS the server must agree to `h2`, over `http://` it is spoken
    /// with prior knowledge.
    On,
}

/// Where the upstream API key comes from. The key itself is read by the binary, once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiKeySource {
    Env(String),
    File(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub signing_key_file: PathBuf,
    pub ttl: Duration,
    pub max_ttl: Duration,
}

#[derive(Debug, Clone)]
pub struct OidcIssuer {
    /// Issuer URL, compared exactly with `iss` and with the discovery document's `issuer`.
    pub issuer: String,
    pub audience: String,
    /// Dotted path of the groups claim.
    pub groups_claim: String,
    /// Also accept this issuer's tokens directly on the data plane.
    pub accept_direct: bool,
    /// Signature algorithms allowed for this issuer (default RS256, ES256).
    pub algorithms: Vec<Alg>,
    /// Which IdP token is exchanged: RFC 9068 access tokens (default) or ID tokens.
    pub token_type: TokenKind,
    /// Public client used by `airlock login` (device flow); absent: no interactive login.
    pub client_id: Option<String>,
    /// Scopes `airlock login` asks for.
    pub scopes: String,
    /// Clock skew tolerated on `exp`, `nbf` and `iat` (at most 60 s).
    pub leeway: Duration,
    /// How often the JWK set is refreshed.
    pub jwks_refresh: Duration,
    /// Least time between two refreshes forced by an unknown `kid`.
    pub jwks_cooldown: Duration,
    /// How long the last good JWK set is served while the IdP is unreachable; after that,
    /// the issuer's tokens are refused (fail closed).
    pub jwks_max_stale: Duration,
}

impl OidcIssuer {
    pub fn rules(&self) -> IssuerRules {
        IssuerRules {
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            algorithms: self.algorithms.clone(),
            kind: self.token_type,
            groups_claim: self.groups_claim.clone(),
            leeway_secs: self.leeway.as_secs(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStoreFailure {
    FailClosed,
    FailOpen,
}

/// When a request's audit entries must be durable (see docs/audit.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Nothing is forwarded before its request entry commits; the response follows.
    Request,
    /// As `Request`, and the response is released only once recorded.
    Strict,
    /// Everything within the group-commit window (`commit_window`); a crash can lose the
    /// last window.
    Batch,
}

#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub on_store_failure: OnStoreFailure,
    pub durability: Durability,
    /// How long entries nobody waits for (in `batch` mode all of them; in `request` mode the
    /// `response` entries) gather before they commit: one transaction (one fsync) per window
    /// instead of one per entry at low rates. An entry a request waits for commits at once,
    /// with everything gathered. Bounds what a crash can lose.
    pub commit_window: Duration,
    /// This gateway's chain name; `None`: the host name (or `airlock`).
    pub instance: Option<String>,
    /// Ed25519 key that signs checkpoints; `None`: `audit.key` beside the SQLite file, or
    /// `airlock-data/audit.key`.
    pub signing_key_file: Option<PathBuf>,
    /// Checkpoints are also appended here (JSON lines); `None`: `audit-checkpoints.jsonl`
    /// beside the key. Put it on another volume, or ship it elsewhere.
    pub checkpoint_file: Option<PathBuf>,
    /// Checkpoints are also POSTed here (text/plain signed note); https or loopback.
    pub checkpoint_webhook: Option<String>,
    pub checkpoint_every: u64,
    pub checkpoint_interval: Duration,
    /// Entries queued for the writer above which new requests are shed (503).
    pub max_queue: u64,
    /// Request and response bodies (masked) are kept up to this size each, then cut with
    /// the truncation recorded; 0 keeps no bodies.
    pub max_body_bytes: u64,
}

impl Default for AuditConfig {
    fn default() -> AuditConfig {
        AuditConfig {
            on_store_failure: OnStoreFailure::FailClosed,
            durability: Durability::Request,
            commit_window: Duration::from_millis(10),
            instance: None,
            signing_key_file: None,
            checkpoint_file: None,
            checkpoint_webhook: None,
            checkpoint_every: 1000,
            checkpoint_interval: 60 * SECOND,
            max_queue: 100_000,
            max_body_bytes: 256 * 1024,
        }
    }
}

/// Bounds at the edge. Every one has a safe default.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body accepted (413 above it, checked on Content-Length before reading).
    pub max_body_bytes: u64,
    /// Largest SSE event relayed from upstream; a longer one aborts the stream with an error.
    pub max_sse_event_bytes: u64,
    /// Largest tool call input held from a stream until its block stops (the response guard).
    pub max_tool_input_bytes: u64,
    /// Largest non-streaming upstream response body the gateway will inspect.
    pub max_response_bytes: u64,
    /// Concurrent client connections; connections beyond it wait in the kernel backlog.
    pub max_connections: u64,
    /// Requests in flight at once (streams count until they end); beyond it, 503.
    pub max_concurrent_requests: u64,
    pub max_headers: u64,
    /// Time a client has to send the request head; also how long an idle keep-alive
    /// connection is kept (hyper starts this timer whenever it waits for a request head).
    pub header_read_timeout: Duration,
    /// Longest silence while a request body is being read.
    pub body_read_timeout: Duration,
    /// Time from the request head to a complete answer for a non-streaming call, and to the
    /// start of the response for a stream (streams are then bounded by idle timeouts only).
    pub request_timeout: Duration,
    /// Longest time a response write may wait on a client that does not read; the
    /// connection is then closed (the record says `client_stalled`).
    pub write_stall_timeout: Duration,
    /// Time in-flight requests and streams get to finish after a shutdown signal.
    pub shutdown_grace: Duration,
}

pub(crate) fn parse(source: &str, text: &str) -> Result<Config, ConfigErrors> {
    let mut w = Walker::new(source);
    let config = w.load(text).and_then(|root| {
        let mut m = Map::root(&root, &mut w)?;
        let c = read_config(&mut m, &mut w);
        m.finish(&mut w);
        Some(c)
    });
    w.finish(config)
}

const SECOND: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);
const HOUR: Duration = Duration::from_secs(3600);

fn read_config(m: &mut Map<'_>, w: &mut Walker) -> Config {
    let listen = m.field("listen", w, addr).unwrap_or_else(|| "127.0.0.1:8080".parse().unwrap());
    let admin_listen =
        m.field("admin_listen", w, addr).unwrap_or_else(|| "127.0.0.1:8081".parse().unwrap());
    let upstream = m
        .field("upstream", w, |f, w| {
            let mut u = f.mapping(w)?;
            let r = read_upstream(&mut u, w);
            u.finish(w);
            Some(r)
        })
        .unwrap_or_else(|| with_empty_map(w, read_upstream));
    let store = m
        .field("store", w, store_url)
        .unwrap_or_else(|| StoreUrl::Sqlite(PathBuf::from("airlock-data/airlock.db")));
    let redis = m.field("redis", w, |f, w| {
        let s = f.non_empty_string(w)?;
        if !s.starts_with("redis://") {
            w.error(f.span(), f.path(), "expected a redis:// URL (TLS to Redis is not supported: keep it on a private network)");
            return None;
        }
        Some(s)
    });
    let redis_fail_open = m
        .field("redis_on_failure", w, |f, w| {
            let s = f.string(w)?;
            match s.as_str() {
                "fail_closed" => Some(false),
                "fail_open" => Some(true),
                _ => {
                    w.error(f.span(), f.path(), "expected fail_closed or fail_open");
                    None
                }
            }
        })
        .unwrap_or(false);
    let policy = m.field("policy", w, |f, w| f.non_empty_string(w).map(PathBuf::from));
    let masking_key_file =
        m.field("masking_key_file", w, |f, w| f.non_empty_string(w).map(PathBuf::from));
    let (session, oidc) = m
        .field("identity", w, |f, w| {
            let mut id = f.mapping(w)?;
            let session = id.field("session", w, |f, w| {
                let mut s = f.mapping(w)?;
                let r = read_session(&mut s, w);
                s.finish(w);
                Some(r)
            });
            let oidc = id.field("oidc", w, |f, w| f.each(w, read_oidc)).unwrap_or_default();
            id.finish(w);
            Some((session, oidc))
        })
        .unwrap_or((None, Vec::new()));
    let session = session.unwrap_or_else(|| with_empty_map(w, read_session));
    let admin_groups = m
        .field("admin", w, |f, w| {
            let mut a = f.mapping(w)?;
            let groups = a.field("groups", w, |f, w| f.string_list(w));
            a.finish(w);
            groups
        })
        .unwrap_or_else(|| vec!["airlock-admins".to_owned()]);
    let audit = m
        .field("audit", w, |f, w| {
            let mut a = f.mapping(w)?;
            let r = read_audit(&mut a, w);
            a.finish(w);
            Some(r)
        })
        .unwrap_or_default();
    let approvals = m
        .field("approvals", w, |f, w| {
            let mut a = f.mapping(w)?;
            let r = read_approvals(&mut a, w);
            a.finish(w);
            Some(r)
        })
        .unwrap_or_default();
    let telemetry = m
        .field("telemetry", w, |f, w| {
            let mut t = f.mapping(w)?;
            let otlp_endpoint = t.field("otlp_endpoint", w, https_or_loopback);
            let service_name = t
                .field("service_name", w, |f, w| f.non_empty_string(w))
                .unwrap_or_else(|| "airlock".into());
            t.finish(w);
            Some(TelemetryConfig { otlp_endpoint, service_name })
        })
        .unwrap_or_default();
    let ui = m
        .field("ui", w, |f, w| {
            let mut u = f.mapping(w)?;
            let public_url = u.field("public_url", w, https_or_loopback);
            let dev_token_login = u.field("dev_token_login", w, |f, w| f.bool(w)).unwrap_or(false);
            u.finish(w);
            Some(UiConfig { public_url, dev_token_login })
        })
        .unwrap_or_default();
    let limits = m
        .field("limits", w, |f, w| {
            let mut l = f.mapping(w)?;
            let r = read_limits(&mut l, w);
            l.finish(w);
            Some(r)
        })
        .unwrap_or_else(|| with_empty_map(w, read_limits));
    if listen == admin_listen && listen.port() != 0 {
        w.error(
            m.span(),
            "admin_listen",
            "must differ from `listen`: the admin plane has its own listener",
        );
    }
    Config {
        listen,
        admin_listen,
        upstream,
        store,
        redis,
        redis_fail_open,
        policy,
        masking_key_file,
        session,
        oidc,
        admin_groups,
        audit,
        approvals,
        telemetry,
        ui,
        limits,
    }
}

fn https_or_loopback(f: Field<'_>, w: &mut Walker) -> Option<String> {
    let s = f.non_empty_string(w)?;
    if !crate::is_https_or_loopback(&s) {
        w.error(f.span(), f.path(), "must be an https:// URL (http:// only for loopback)");
        return None;
    }
    Some(s)
}

fn read_approvals(m: &mut Map<'_>, w: &mut Walker) -> ApprovalsConfig {
    let link = m.field("link", w, https_or_loopback);
    let webhooks = m
        .field("webhooks", w, |f, w| {
            f.each(w, |f, w| {
                let mut h = f.mapping(w)?;
                let url = h.required("url", w, https_or_loopback);
                let format = h
                    .field("format", w, |f, w| {
                        let s = f.string(w)?;
                        match s.as_str() {
                            "slack" => Some(WebhookFormat::Slack),
                            "json" => Some(WebhookFormat::Json),
                            _ => {
                                w.error(f.span(), f.path(), "expected slack or json");
                                None
                            }
                        }
                    })
                    .unwrap_or(WebhookFormat::Json);
                let rules = h.field("rules", w, |f, w| f.string_list(w)).unwrap_or_default();
                let max_attempts =
                    h.field("max_attempts", w, |f, w| f.u64_in(w, 1, 20)).map_or(5, |n| n as u32);
                h.finish(w);
                Some(ApprovalWebhook { url: url?, format, rules, max_attempts })
            })
        })
        .unwrap_or_default();
    ApprovalsConfig { link, webhooks }
}

fn addr(f: Field<'_>, w: &mut Walker) -> Option<SocketAddr> {
    let s = f.string(w)?;
    match s.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            w.error(f.span(), f.path(), format!("`{s}` is not an address like 127.0.0.1:8080"));
            None
        }
    }
}

fn read_upstream(m: &mut Map<'_>, w: &mut Walker) -> UpstreamConfig {
    let url = m.field("url", w, |f, w| {
        let s = f.non_empty_string(w)?;
        match validate_upstream_url(&s) {
            Ok(u) => Some(u),
            Err(e) => {
                w.error(f.span(), f.path(), e);
                None
            }
        }
    });
    let env = m.field("api_key_env", w, |f, w| f.non_empty_string(w));
    let file = m.field("api_key_file", w, |f, w| f.non_empty_string(w).map(PathBuf::from));
    let api_key = match (env, file) {
        (Some(_), Some(_)) => {
            w.error(
                m.span(),
                &format!("{}.api_key_file", m.path()),
                "give either api_key_env or api_key_file, not both",
            );
            ApiKeySource::Env("ANTHROPIC_API_KEY".to_owned())
        }
        (_, Some(path)) => ApiKeySource::File(path),
        (Some(var), None) => ApiKeySource::Env(var),
        (None, None) => ApiKeySource::Env("ANTHROPIC_API_KEY".to_owned()),
    };
    UpstreamConfig {
        url_is_default: url.is_none(),
        url: url.unwrap_or_else(|| http::Uri::from_static("https://api.anthropic.com")),
        api_key,
        connect_timeout: m
            .field("connect_timeout", w, |f, w| f.duration_in(w, 10 * MS, 120 * SECOND))
            .unwrap_or(10 * SECOND),
        header_timeout: m
            .field("header_timeout", w, |f, w| f.duration_in(w, 10 * MS, 3600 * SECOND))
            .unwrap_or(600 * SECOND),
        idle_timeout: m
            .field("idle_timeout", w, |f, w| f.duration_in(w, 10 * MS, 3600 * SECOND))
            .unwrap_or(300 * SECOND),
        max_connect_attempts: m
            .field("max_connect_attempts", w, |f, w| f.u64_in(w, 1, 5))
            .map(|n| n as u32)
            .unwrap_or(2),
        http2: m
            .field("http2", w, |f, w| {
                let s = f.string(w)?;
                match s.as_str() {
                    "false" => Some(Http2::Off),
                    "auto" => Some(Http2::Auto),
                    "true" => Some(Http2::On),
                    _ => {
                        w.error(
                            f.span(),
                            f.path(),
                            format!("expected true, false or auto, found `{s}`"),
                        );
                        None
                    }
                }
            })
            .unwrap_or(Http2::Auto),
        http2_max_streams: m
            .field("http2_max_streams", w, |f, w| f.u64_in(w, 1, 1000))
            .map(|n| n as u32)
            .unwrap_or(100),
    }
}

/// The upstream URL: http or https, an authority, an optional base path, nothing else.
pub(crate) fn validate_upstream_url(s: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = s.parse().map_err(|_| format!("`{s}` is not a URL"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(format!("`{s}` must start with http:// or https://")),
    }
    let Some(authority) = uri.authority() else {
        return Err(format!("`{s}` has no host"));
    };
    if authority.as_str().contains('@') {
        return Err(
            "credentials in the upstream URL are not allowed; use api_key_env or api_key_file"
                .to_owned(),
        );
    }
    if uri.query().is_some() {
        return Err(format!("`{s}` must not have a query string"));
    }
    Ok(uri)
}

fn store_url(f: Field<'_>, w: &mut Walker) -> Option<StoreUrl> {
    let s = f.non_empty_string(w)?;
    if let Some(path) = s.strip_prefix("sqlite://") {
        if path.is_empty() {
            w.error(
                f.span(),
                f.path(),
                "sqlite:// needs a file path, e.g. sqlite://airlock-data/airlock.db",
            );
            return None;
        }
        return Some(StoreUrl::Sqlite(PathBuf::from(path)));
    }
    if s.starts_with("postgres://") || s.starts_with("postgresql://") {
        return Some(StoreUrl::Postgres(s));
    }
    w.error(f.span(), f.path(), "expected sqlite://PATH or postgres://...");
    None
}

fn read_audit(a: &mut Map<'_>, w: &mut Walker) -> AuditConfig {
    let d = AuditConfig::default();
    let one_of = |f: Field<'_>, w: &mut Walker, names: &[&str]| -> Option<usize> {
        let s = f.string(w)?;
        let found = names.iter().position(|n| *n == s);
        if found.is_none() {
            w.error(f.span(), f.path(), format!("`{s}` is not one of: {}", names.join(", ")));
        }
        found
    };
    let on_store_failure = a
        .field("on_store_failure", w, |f, w| one_of(f, w, &["fail_closed", "fail_open"]))
        .map_or(d.on_store_failure, |i| [OnStoreFailure::FailClosed, OnStoreFailure::FailOpen][i]);
    let durability = a
        .field("durability", w, |f, w| one_of(f, w, &["request", "strict", "batch"]))
        .map_or(d.durability, |i| [Durability::Request, Durability::Strict, Durability::Batch][i]);
    let commit_window = a
        .field("commit_window", w, |f, w| f.duration_in(w, Duration::ZERO, SECOND))
        .unwrap_or(d.commit_window);
    let instance = a.field("instance", w, |f, w| {
        let s = f.string(w)?;
        if !airlock_audit::valid_chain_name(&s) {
            w.error(f.span(), f.path(), "must be 1-64 of A-Z a-z 0-9 . _ -");
            return None;
        }
        Some(s)
    });
    let path = |f: Field<'_>, w: &mut Walker| f.non_empty_string(w).map(PathBuf::from);
    let signing_key_file = a.field("signing_key_file", w, path);
    let checkpoint_file = a.field("checkpoint_file", w, path);
    let checkpoint_webhook = a.field("checkpoint_webhook", w, https_or_loopback);
    let checkpoint_every = a
        .field("checkpoint_every", w, |f, w| f.u64_in(w, 1, 1_000_000))
        .unwrap_or(d.checkpoint_every);
    let checkpoint_interval = a
        .field("checkpoint_interval", w, |f, w| f.duration_in(w, SECOND / 10, 24 * HOUR))
        .unwrap_or(d.checkpoint_interval);
    let max_queue =
        a.field("max_queue", w, |f, w| f.u64_in(w, 100, 10_000_000)).unwrap_or(d.max_queue);
    let max_body_bytes =
        a.field("max_body_bytes", w, |f, w| f.bytes_in(w, 0, 64 << 20)).unwrap_or(d.max_body_bytes);
    AuditConfig {
        on_store_failure,
        durability,
        commit_window,
        instance,
        signing_key_file,
        checkpoint_file,
        checkpoint_webhook,
        checkpoint_every,
        checkpoint_interval,
        max_queue,
        max_body_bytes,
    }
}

fn read_session(m: &mut Map<'_>, w: &mut Walker) -> SessionConfig {
    let signing_key_file = m
        .field("signing_key_file", w, |f, w| f.non_empty_string(w).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("airlock-data/session.key"));
    let max_ttl = m.field("max_ttl", w, |f, w| f.duration_in(w, SECOND, 24 * HOUR)).unwrap_or(HOUR);
    let ttl = m
        .field("ttl", w, |f, w| {
            let ttl = f.duration_in(w, SECOND, 24 * HOUR)?;
            if ttl > max_ttl {
                w.error(f.span(), f.path(), "must not exceed max_ttl");
            }
            Some(ttl)
        })
        .unwrap_or(15 * 60 * SECOND)
        .min(max_ttl);
    SessionConfig { signing_key_file, ttl, max_ttl }
}

fn read_oidc(f: Field<'_>, w: &mut Walker) -> Option<OidcIssuer> {
    let mut m = f.mapping(w)?;
    let issuer = m.required("issuer", w, |f, w| {
        let s = f.non_empty_string(w)?;
        if !is_https_or_loopback(&s) {
            w.error(f.span(), f.path(), "an issuer must be https:// (plain http only on loopback)");
            return None;
        }
        Some(s)
    });
    let audience = m.required("audience", w, |f, w| f.non_empty_string(w));
    let groups_claim = m
        .field("groups_claim", w, |f, w| f.non_empty_string(w))
        .unwrap_or_else(|| "groups".to_owned());
    let accept_direct = m.field("accept_direct", w, |f, w| f.bool(w)).unwrap_or(false);
    let algorithms = m
        .field("algorithms", w, |f, w| {
            let (span, path) = (*f.span(), f.path().to_owned());
            let names = f.string_list(w)?;
            let algs: Option<Vec<Alg>> = names.iter().map(|n| Alg::parse(n)).collect();
            if algs.is_none() || names.is_empty() {
                let all: Vec<&str> = Alg::ALL.iter().map(|a| a.name()).collect();
                w.error(&span, &path, format!("expected a list from: {}", all.join(", ")));
            }
            algs.filter(|a| !a.is_empty())
        })
        .unwrap_or_else(|| vec![Alg::RS256, Alg::ES256]);
    let token_type = m
        .field("token_type", w, |f, w| {
            let (span, path) = (*f.span(), f.path().to_owned());
            match f.string(w)?.as_str() {
                "access" => Some(TokenKind::Access),
                "id" => Some(TokenKind::Id),
                other => {
                    w.error(&span, &path, format!("`{other}` is not one of: access, id"));
                    None
                }
            }
        })
        .unwrap_or(TokenKind::Access);
    let client_id = m.field("client_id", w, |f, w| f.non_empty_string(w));
    let scopes = m
        .field("scopes", w, |f, w| f.non_empty_string(w))
        .unwrap_or_else(|| "openid offline_access".to_owned());
    let leeway = m
        .field("leeway", w, |f, w| {
            f.duration_in(w, Duration::ZERO, Duration::from_secs(MAX_LEEWAY_SECS))
        })
        .unwrap_or(30 * SECOND);
    let jwks_refresh = m
        .field("jwks_refresh", w, |f, w| f.duration_in(w, SECOND, 24 * HOUR))
        .unwrap_or(300 * SECOND);
    let jwks_cooldown =
        m.field("jwks_cooldown", w, |f, w| f.duration_in(w, 100 * MS, HOUR)).unwrap_or(30 * SECOND);
    let jwks_max_stale = m
        .field("jwks_max_stale", w, |f, w| f.duration_in(w, SECOND, 7 * 24 * HOUR))
        .unwrap_or(24 * HOUR);
    m.finish(w);
    Some(OidcIssuer {
        issuer: issuer?,
        audience: audience?,
        groups_claim,
        accept_direct,
        algorithms,
        token_type,
        client_id,
        scopes,
        leeway,
        jwks_refresh,
        jwks_cooldown,
        jwks_max_stale,
    })
}

/// `https://` URLs, or plain `http://` to a loopback host (tests, a local IdP). The host is
/// compared whole, so `http://127.0.0.1.evil.example` is not loopback.
pub fn is_https_or_loopback(url: &str) -> bool {
    let Ok(uri) = url.parse::<http::Uri>() else { return false };
    match (uri.scheme_str(), uri.host()) {
        (Some("https"), Some(_)) => true,
        (Some("http"), Some(host)) => matches!(host, "127.0.0.1" | "localhost" | "[::1]"),
        _ => false,
    }
}

fn read_limits(m: &mut Map<'_>, w: &mut Walker) -> Limits {
    const MIB: u64 = 1 << 20;
    Limits {
        max_body_bytes: m
            .field("max_body_bytes", w, |f, w| f.bytes_in(w, 1024, 256 * MIB))
            .unwrap_or(32 * MIB),
        max_sse_event_bytes: m
            .field("max_sse_event_bytes", w, |f, w| f.bytes_in(w, 1024, 64 * MIB))
            .unwrap_or(4 * MIB),
        max_tool_input_bytes: m
            .field("max_tool_input_bytes", w, |f, w| f.bytes_in(w, 1024, 64 * MIB))
            .unwrap_or(MIB),
        max_response_bytes: m
            .field("max_response_bytes", w, |f, w| f.bytes_in(w, 1024, 256 * MIB))
            .unwrap_or(64 * MIB),
        max_connections: m
            .field("max_connections", w, |f, w| f.u64_in(w, 1, 1_000_000))
            .unwrap_or(4096),
        max_concurrent_requests: m
            .field("max_concurrent_requests", w, |f, w| f.u64_in(w, 1, 1_000_000))
            .unwrap_or(2048),
        max_headers: m.field("max_headers", w, |f, w| f.u64_in(w, 8, 1000)).unwrap_or(100),
        header_read_timeout: m
            .field("header_read_timeout", w, |f, w| f.duration_in(w, 10 * MS, 300 * SECOND))
            .unwrap_or(10 * SECOND),
        body_read_timeout: m
            .field("body_read_timeout", w, |f, w| f.duration_in(w, 10 * MS, 300 * SECOND))
            .unwrap_or(30 * SECOND),
        request_timeout: m
            .field("request_timeout", w, |f, w| f.duration_in(w, SECOND, 3 * HOUR))
            .unwrap_or(600 * SECOND),
        write_stall_timeout: m
            .field("write_stall_timeout", w, |f, w| f.duration_in(w, 10 * MS, 3600 * SECOND))
            .unwrap_or(60 * SECOND),
        shutdown_grace: m
            .field("shutdown_grace", w, |f, w| f.duration_in(w, Duration::ZERO, 3600 * SECOND))
            .unwrap_or(30 * SECOND),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        match crate::parse("airlock.yaml", text) {
            Ok(_) => Vec::new(),
            Err(e) => {
                e.0.iter()
                    .map(|e| format!("{}:{} {}: {}", e.line, e.column, e.path, e.message))
                    .collect()
            }
        }
    }

    #[test]
    fn defaults() {
        let c = crate::parse("x", "").unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.admin_listen.to_string(), "127.0.0.1:8081");
        assert_eq!(c.upstream.url.to_string(), "https://api.anthropic.com/");
        assert_eq!(c.upstream.api_key, ApiKeySource::Env("ANTHROPIC_API_KEY".into()));
        assert_eq!(c.store, StoreUrl::Sqlite("airlock-data/airlock.db".into()));
        assert_eq!(c.session.ttl, Duration::from_secs(900));
        assert_eq!(c.session.max_ttl, Duration::from_secs(3600));
        assert_eq!(c.limits.max_body_bytes, 32 << 20);
        assert_eq!(c.audit.on_store_failure, OnStoreFailure::FailClosed);
        assert!(c.policy.is_none() && c.redis.is_none() && c.oidc.is_empty());
    }

    #[test]
    fn the_product_sketch_parses() {
        let text = r#"
listen: 127.0.0.1:8080
admin_listen: 127.0.0.1:8081
upstream:
  url: https://api.anthropic.com
  api_key_env: ANTHROPIC_API_KEY          # or api_key_file: /run/secrets/anthropic
store: sqlite://airlock-data/airlock.db   # or postgres://user@host/db (several instances)
redis: null                               # redis://127.0.0.1:6379 for limits shared by instances
policy: policy.yaml                       # absent: the bundled example policy
identity:
  session:
    signing_key_file: airlock-data/session.key   # created on first start if absent
    ttl: 15m
    max_ttl: 1h
  oidc:                                   # any number of trusted issuers
    - issuer: https://login.example.com
      audience: airlock
      groups_claim: groups
      accept_direct: false                # true: IdP JWTs accepted on the data plane too
admin:
  groups: [airlock-admins]
audit:
  on_store_failure: fail_closed           # or fail_open
  durability: request                     # or strict, batch
  instance: gw-1
  checkpoint_every: 500
  checkpoint_interval: 30s
  checkpoint_file: /var/log/airlock/checkpoints.jsonl
  checkpoint_webhook: https://audit.example.com/checkpoints
"#;
        let c = crate::parse("x", text).unwrap();
        assert_eq!(c.policy, Some(PathBuf::from("policy.yaml")));
        assert_eq!(c.oidc.len(), 1);
        assert_eq!(c.oidc[0].audience, "airlock");
        assert_eq!(c.admin_groups, vec!["airlock-admins"]);
        let o = &c.oidc[0];
        assert_eq!(
            (o.algorithms.as_slice(), o.token_type),
            (&[Alg::RS256, Alg::ES256][..], TokenKind::Access)
        );
        assert_eq!((o.leeway, o.jwks_cooldown), (Duration::from_secs(30), Duration::from_secs(30)));
    }

    #[test]
    fn audit_settings() {
        let c = crate::parse("x", "audit:\n  durability: strict\n  instance: gw-2\n").unwrap();
        assert_eq!(
            (c.audit.durability, c.audit.instance.as_deref()),
            (Durability::Strict, Some("gw-2"))
        );
        assert_eq!(crate::parse("x", "").unwrap().audit.durability, Durability::Request);
        assert_eq!(
            errors(
                "audit:\n  durability: never\n  instance: a/b\n  checkpoint_webhook: http://example.com\n"
            ),
            vec![
                "2:15 audit.durability: `never` is not one of: request, strict, batch",
                "3:13 audit.instance: must be 1-64 of A-Z a-z 0-9 . _ -",
                "4:23 audit.checkpoint_webhook: must be an https:// URL (http:// only for loopback)",
            ]
        );
        assert_eq!(crate::parse("x", "").unwrap().audit.commit_window, Duration::from_millis(10));
        let c = crate::parse("x", "audit:\n  commit_window: 0ms\n").unwrap();
        assert_eq!(c.audit.commit_window, Duration::ZERO);
        assert_eq!(
            errors("audit:\n  commit_window: 2s\n"),
            vec!["2:18 audit.commit_window: `2s` is out of range (0s to 1s)"]
        );
    }

    #[test]
    fn oidc_issuers() {
        let text = "identity:\n  oidc:\n    - issuer: https://idp\n      audience: a\n      algorithms: [ES256, EdDSA]\n      token_type: id\n      client_id: cli\n      leeway: 5s\n";
        let c = crate::parse("x", text).unwrap();
        let o = &c.oidc[0];
        assert_eq!(
            (o.algorithms.as_slice(), o.token_type),
            (&[Alg::ES256, Alg::EdDSA][..], TokenKind::Id)
        );
        assert_eq!((o.client_id.as_deref(), o.rules().leeway_secs), (Some("cli"), 5));
        let bad = "identity:\n  oidc:\n    - issuer: http://idp.example.com\n      audience: a\n      algorithms: [HS256]\n      token_type: refresh\n      leeway: 2m\n";
        assert_eq!(
            errors(bad),
            vec![
                "3:15 identity.oidc[0].issuer: an issuer must be https:// (plain http only on loopback)",
                "5:19 identity.oidc[0].algorithms: expected a list from: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA",
                "6:19 identity.oidc[0].token_type: `refresh` is not one of: access, id",
                "7:15 identity.oidc[0].leeway: `2m` is out of range (0s to 1m)",
            ]
        );
        // An entry missing what it needs, or with a typo, is an error, never silently dropped.
        let incomplete =
            "identity:\n  oidc:\n    - audiance: a\napprovals:\n  webhooks:\n    - format: slack\n";
        assert_eq!(
            errors(incomplete),
            vec![
                "3:7 identity.oidc[0].issuer: required",
                "3:7 identity.oidc[0].audience: required",
                "3:7 identity.oidc[0].audiance: unknown key; expected one of: issuer, audience, groups_claim, accept_direct, algorithms, token_type, client_id, scopes, leeway, jwks_refresh, jwks_cooldown, jwks_max_stale",
                "6:7 approvals.webhooks[0].url: required",
            ]
        );
    }

    #[test]
    fn every_error_is_reported_with_its_location() {
        let text = "listen: nope\nupstream:\n  url: ftp://x\n  colour: blue\nidentity:\n  session:\n    ttl: 2h\n    max_ttl: 1h\nlimits:\n  max_body_bytes: 12\nstore: mysql://x\n";
        assert_eq!(
            errors(text),
            vec![
                "1:9 listen: `nope` is not an address like 127.0.0.1:8080",
                "3:8 upstream.url: `ftp://x` must start with http:// or https://",
                "4:3 upstream.colour: unknown key; expected one of: url, api_key_env, api_key_file, connect_timeout, header_timeout, idle_timeout, max_connect_attempts, http2, http2_max_streams",
                "7:10 identity.session.ttl: must not exceed max_ttl",
                "10:19 limits.max_body_bytes: 12 bytes is out of range (1024 to 268435456)",
                "11:8 store: expected sqlite://PATH or postgres://...",
            ]
        );
    }

    #[test]
    fn syntax_errors_and_duplicates() {
        assert_eq!(errors("listen: [\n").len(), 1);
        let dup = errors("listen: 127.0.0.1:1\nlisten: 127.0.0.1:2\n");
        assert_eq!(dup.len(), 1);
        assert!(dup[0].starts_with("2:1"), "{dup:?}");
        assert_eq!(errors("- a\n- b\n").len(), 1);
    }

    #[test]
    fn upstream_urls() {
        assert!(validate_upstream_url("http://127.0.0.1:9000").is_ok());
        assert!(validate_upstream_url("https://gw.example.com/anthropic").is_ok());
        assert!(validate_upstream_url("https://user:pw@host").is_err());
        assert!(validate_upstream_url("https://host/?x=1").is_err());
        assert!(validate_upstream_url("/relative").is_err());
    }

    #[test]
    fn loopback_is_exact() {
        assert!(is_https_or_loopback("https://idp.example.com/realms/x"));
        assert!(is_https_or_loopback("http://127.0.0.1:4000/oidc"));
        assert!(is_https_or_loopback("http://localhost:4000"));
        assert!(!is_https_or_loopback("http://127.0.0.1.evil.example/"));
        assert!(!is_https_or_loopback("http://idp.example.com"));
        assert!(!is_https_or_loopback("ftp://idp"));
    }

    #[test]
    fn upstream_http_versions() {
        let http2 = |text: &str| crate::parse("x", text).unwrap().upstream.http2;
        assert_eq!(http2(""), Http2::Auto);
        assert_eq!(http2("upstream:\n  http2: auto\n"), Http2::Auto);
        assert_eq!(http2("upstream:\n  http2: true\n"), Http2::On);
        assert_eq!(http2("upstream:\n  http2: false\n"), Http2::Off);
        assert_eq!(
            errors("upstream:\n  http2: yes\n"),
            vec!["2:10 upstream.http2: expected true, false or auto, found `yes`"]
        );
    }

    #[test]
    fn api_key_sources() {
        let c = crate::parse("x", "upstream:\n  api_key_file: /run/secrets/k\n").unwrap();
        assert_eq!(c.upstream.api_key, ApiKeySource::File("/run/secrets/k".into()));
        assert_eq!(errors("upstream:\n  api_key_file: /a\n  api_key_env: B\n").len(), 1);
    }
}
