//! The Airlock data plane and admin plane: the transport edge ([`edge`]), the request path
//! ([`pipeline`]), the upstream client ([`upstream`]), response relaying ([`body`]), header
//! hygiene ([`headers`]), and the single mapping from outcomes to HTTP errors ([`reject`]).
//!
//! [`run`] takes already-bound listeners and a shutdown future, so tests start the gateway
//! in-process on `127.0.0.1:0`.

pub mod admin;
pub mod approvals;
pub mod audit;
pub mod auth;
pub mod body;
pub mod edge;
pub mod fetch;
pub mod headers;
pub mod idp;
pub mod limits;
pub mod metrics;
pub mod pipeline;
pub mod policy;
pub mod record;
pub mod redis;
pub mod reject;
pub mod revoke;
pub mod route;
pub mod trace;
pub mod ui;
pub mod upstream;

use airlock_authn::SessionKeys;
use airlock_config::{Config, Limits, Secret};
use airlock_detect::MaskKey;
use airlock_policy::Policy;
use http::{Request, Response};
use hyper::body::Incoming;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use record::{LogSink, Outcome, RecordData, RecordSink};
pub use upstream::{Upstream, UpstreamSetupError};

/// Unix seconds; injectable so tests can move time.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    })
}

/// Request ids: a random per-process prefix and a counter; unique across instances and cheap.
#[derive(Debug)]
pub struct RequestIds {
    prefix: String,
    next: AtomicU64,
}

impl RequestIds {
    pub fn new() -> RequestIds {
        let mut seed = [0u8; 6];
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed);
        RequestIds {
            prefix: seed.iter().map(|b| format!("{b:02x}")).collect(),
            next: AtomicU64::new(1),
        }
    }

    pub fn next(&self) -> String {
        format!("req_airlock_{}{:010}", self.prefix, self.next.fetch_add(1, Ordering::Relaxed))
    }
}

impl Default for RequestIds {
    fn default() -> Self {
        RequestIds::new()
    }
}

fn random_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key);
    key
}

/// Deadline for one request to an identity provider (discovery, JWK set).
const IDP_FETCH_DEADLINE: Duration = Duration::from_secs(10);

/// Everything the data plane needs, built once at start.
pub struct Gateway {
    pub keys: Arc<SessionKeys>,
    pub issuers: Arc<idp::Issuers>,
    pub revocations: Arc<revoke::Revocations>,
    pub upstream: Upstream,
    pub limits: Limits,
    pub session_ttl: Duration,
    pub session_max_ttl: Duration,
    /// Groups whose members may use the admin API.
    pub admin_groups: Vec<String>,
    pub upstream_idle_timeout: Duration,
    pub clock: Clock,
    pub sink: Arc<dyn RecordSink>,
    /// Every record also reaches these (the sink above includes them).
    pub metrics: Arc<metrics::Metrics>,
    /// The audit log; `None` only in tests that do not exercise it.
    pub audit: Option<audit::Audit>,
    pub request_ids: RequestIds,
    /// The policy every new request is judged by (one version per request, swapped whole).
    pub policy: Arc<PolicyCell>,
    /// The key request redaction and response masking derive placeholders from.
    pub mask_key: Arc<MaskKey>,
    /// The policy file followed for changes (`None`: the bundled policy, never reloaded).
    pub policy_file: Option<std::path::PathBuf>,
    /// Masked bodies kept in audit entries up to this size each (0: none).
    pub audit_body_bytes: usize,
    /// Requests in flight; a request holds one permit until it (or its stream) ends.
    pub in_flight: Arc<tokio::sync::Semaphore>,
    /// Held requests waiting on this instance.
    pub approvals: approvals::Approvals,
    /// The admin web UI's settings.
    pub ui_config: airlock_config::UiConfig,
    /// The policy's limits, counted in process or in Redis.
    pub limiter: Arc<limits::Limiter>,
    upstream_key: Secret,
}

/// The current policy. A request takes the `Arc` once and keeps that version throughout;
/// a reload swaps the whole policy, never part of it.
#[derive(Debug)]
pub struct PolicyCell {
    current: std::sync::RwLock<Arc<Policy>>,
    status: std::sync::Mutex<policy::Status>,
    /// Bumped on every reload attempt, good or refused: what observers wait on.
    attempts: tokio::sync::watch::Sender<u64>,
}

impl PolicyCell {
    pub fn new(policy: Policy) -> PolicyCell {
        let status = policy::Status::loaded(&policy);
        PolicyCell {
            current: std::sync::RwLock::new(Arc::new(policy)),
            status: std::sync::Mutex::new(status),
            attempts: tokio::sync::watch::Sender::new(0),
        }
    }

    pub fn current(&self) -> Arc<Policy> {
        Arc::clone(&self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    pub fn replace(&self, policy: Policy) {
        *self.status.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            policy::Status::loaded(&policy);
        *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(policy);
        self.attempts.send_modify(|n| *n += 1);
    }

    /// A reload failed: the current policy stays; the error is kept for /readyz and the API.
    pub fn reload_failed(&self, error: String) {
        {
            let mut s = self.status.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            s.last_error = Some(error);
            s.failed_at = Some(std::time::SystemTime::now());
            s.reload_failures += 1;
        }
        self.attempts.send_modify(|n| *n += 1);
    }

    pub fn status(&self) -> policy::Status {
        self.status.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Notified after every reload attempt (installed or refused).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.attempts.subscribe()
    }
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").field("upstream", &self.upstream).finish_non_exhaustive()
    }
}

impl Gateway {
    pub fn new(
        config: &Config,
        keys: Arc<SessionKeys>,
        upstream_key: Secret,
        clock: Clock,
        sink: Arc<dyn RecordSink>,
    ) -> Result<Gateway, UpstreamSetupError> {
        let fetcher = Arc::new(fetch::Fetcher::new(IDP_FETCH_DEADLINE)?);
        let metrics = Arc::new(metrics::Metrics::new());
        let mut sinks: Vec<Arc<dyn RecordSink>> = vec![metrics.clone()];
        if let Some(endpoint) = &config.telemetry.otlp_endpoint {
            let service = config.telemetry.service_name.clone();
            sinks.push(Arc::new(trace::Exporter::start(endpoint.clone(), service)?));
        }
        sinks.push(sink);
        let sink: Arc<dyn RecordSink> = Arc::new(metrics::Fanout(sinks));
        Ok(Gateway {
            keys,
            issuers: Arc::new(idp::Issuers::new(&config.oidc, fetcher)),
            revocations: Arc::new(revoke::Revocations::default()),
            upstream: Upstream::new(&config.upstream, upstream_key.clone())?,
            limits: config.limits.clone(),
            session_ttl: config.session.ttl,
            session_max_ttl: config.session.max_ttl,
            admin_groups: config.admin_groups.clone(),
            upstream_idle_timeout: config.upstream.idle_timeout,
            clock,
            sink,
            metrics,
            audit: None,
            request_ids: RequestIds::new(),
            policy: Arc::new(PolicyCell::new(Policy::bundled())),
            mask_key: Arc::new(MaskKey::new(&random_key())),
            policy_file: config.policy.clone(),
            audit_body_bytes: config.audit.max_body_bytes as usize,
            in_flight: Arc::new(tokio::sync::Semaphore::new(
                config.limits.max_concurrent_requests as usize,
            )),
            approvals: approvals::Approvals::new(&config.approvals)?,
            ui_config: config.ui.clone(),
            limiter: Arc::new(match &config.redis {
                Some(url) => limits::Limiter::redis(url, config.redis_fail_open)
                    .map_err(|e| UpstreamSetupError::Redis(e.to_string()))?,
                None => limits::Limiter::local(),
            }),
            upstream_key,
        })
    }

    pub fn with_policy(self, policy: Policy) -> Gateway {
        self.policy.replace(policy);
        self
    }

    /// The masking key; without one, a random key (placeholders then change on restart).
    pub fn with_mask_key(mut self, key: MaskKey) -> Gateway {
        self.mask_key = Arc::new(key);
        self
    }

    pub fn with_audit(mut self, audit: audit::Audit) -> Gateway {
        self.audit = Some(audit);
        self
    }

    pub(crate) fn upstream_key_bytes(&self) -> &[u8] {
        self.upstream_key.expose().as_bytes()
    }
}

impl edge::Handler for Gateway {
    async fn call(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<body::ProxyBody> {
        pipeline::handle(self, req, peer.ip()).await
    }
}

/// Run both planes until `shutdown` resolves; returns when both have drained.
pub async fn run(
    gateway: Arc<Gateway>,
    data: tokio::net::TcpListener,
    admin: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let limits = gateway.limits.clone();
    let admin_addr = admin.local_addr().unwrap_or_else(|_| ([127, 0, 0, 1], 0).into());
    let admin_state = Arc::new(admin::Admin::new(gateway.clone(), admin_addr));
    let (tx, rx) = tokio::sync::watch::channel(false);
    gateway.issuers.spawn_refreshers(rx.clone());
    let stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    // Before either plane serves: what this instance held when it stopped is abandoned, so
    // no reviewer (admin API, UI) sees it as still pending and no call can claim it.
    if let Some(audit) = &gateway.audit {
        approvals::abandon_earlier(audit).await;
    }
    let admin_task = {
        let limits = limits.clone();
        let admin_state = admin_state.clone();
        let rx = rx.clone();
        tokio::spawn(async move { edge::serve(admin, admin_state, &limits, stop(rx)).await })
    };
    admin_state.ready.store(true, Ordering::Release);
    let ready = admin_state.clone();
    tokio::spawn(async move {
        shutdown.await;
        // Not ready as soon as shutdown starts, so load balancers stop sending new work.
        ready.ready.store(false, Ordering::Release);
        let _ = tx.send(true);
    });
    if let Some(path) = gateway.policy_file.clone() {
        tokio::spawn(policy::follow_file(gateway.clone(), path, stop(rx.clone())));
    }
    if let Some(audit) = gateway.audit.clone() {
        tokio::spawn(approvals::sweep(audit.clone(), stop(rx.clone())));
        tokio::spawn(revoke::follow_store(
            audit,
            gateway.revocations.clone(),
            gateway.clock.clone(),
            stop(rx.clone()),
        ));
    }
    edge::serve(data, gateway.clone(), &limits, stop(rx)).await;
    let _ = admin_task.await;
    // Every request has ended: commit what is queued and sign a last checkpoint.
    if let Some(audit) = gateway.audit.clone() {
        let _ = tokio::task::spawn_blocking(move || audit.close()).await;
    }
}
