//! The admin plane: its own listener, never the data plane's.
//!
//! - `GET /healthz`: the process is up.
//! - `GET /metrics`: Prometheus text; for now the policy's version and reload state and the
//!   audit writer's health and queue.
//! - Audit reads for admins: `GET /admin/audit/entries?subject=&group=&rule=&decision=&model=
//!   &request_id=&since_ms=&until_ms=&limit=` (search, newest first; also the export),
//!   `GET /admin/audit/requests/{id}` (one request's entries), `GET /admin/audit/verify`.
//! - `GET /readyz`: the data plane accepts, is not shutting down, and every OIDC issuer has a
//!   usable key set (an IdP unreachable at start keeps the gateway not-ready, never open).
//! - The admin API, for members of `admin.groups` holding a session token:
//!   `POST /admin/tokens` mints a service identity's session token; `POST /admin/revocations`
//!   revokes by `token_id` or `subject`; `GET /admin/revocations` lists them. Each call is a
//!   request record naming the operator and what they did.

use crate::Gateway;
use crate::body::{ProxyBody, full};
use crate::edge::Handler;
use crate::record::{Outcome, RequestRecord};
use crate::reject::Rejection;
use crate::revoke::Revoked;
use airlock_authn::Identity;
use airlock_wire::ErrorType;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Admin request bodies are small JSON objects.
const MAX_ADMIN_BODY: u64 = 64 * 1024;

#[derive(Debug)]
pub struct Admin {
    pub ready: AtomicBool,
    gateway: Arc<Gateway>,
    /// The web UI (`None` only if its outbound client could not be built).
    ui: Option<crate::ui::Ui>,
}

impl Admin {
    pub fn new(gateway: Arc<Gateway>, admin_addr: SocketAddr) -> Admin {
        let ui = match crate::ui::Ui::new(gateway.clone(), admin_addr) {
            Ok(ui) => Some(ui),
            Err(e) => {
                tracing::error!(target: "airlock::ui", error = %e, "the web UI is off");
                None
            }
        };
        Admin { ready: AtomicBool::new(false), gateway, ui }
    }
}

impl Handler for Admin {
    async fn call(
        self: Arc<Self>,
        req: Request<Incoming>,
        _peer: SocketAddr,
    ) -> Response<ProxyBody> {
        let path = req.uri().path().to_owned();
        let text = |status, text: &str| {
            let mut r = Response::new(full(Bytes::from(text.to_owned())));
            *r.status_mut() = status;
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            r
        };
        match (req.method(), path.as_str()) {
            (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
            (&Method::GET, "/readyz") => {
                if !self.ready.load(Ordering::Acquire) {
                    text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                } else if !self.gateway.issuers.ready() {
                    text(StatusCode::SERVICE_UNAVAILABLE, "not ready: OIDC keys not loaded\n")
                } else if self.gateway.audit.as_ref().is_some_and(|a| !a.healthy()) {
                    text(StatusCode::SERVICE_UNAVAILABLE, "not ready: audit store failing\n")
                } else {
                    // A refused reload does not stop serving (the previous policy stays), but
                    // readiness says so, so an operator sees it.
                    match self.gateway.policy.status().last_error {
                        Some(e) => {
                            let first = e.lines().nth(1).unwrap_or("").trim().to_owned();
                            text(
                                StatusCode::OK,
                                &format!("ready (policy reload refused: {first})\n"),
                            )
                        }
                        None => text(StatusCode::OK, "ready\n"),
                    }
                }
            }
            (&Method::GET, "/metrics") => {
                let gw = &self.gateway;
                let st = gw.policy.status();
                let body = format!(
                    "# HELP airlock_policy_info The policy version in force.\n\
                     # TYPE airlock_policy_info gauge\n\
                     airlock_policy_info{{version=\"{}\"}} 1\n\
                     # HELP airlock_policy_reload_failures_total Policy reloads refused (the previous policy stayed).\n\
                     # TYPE airlock_policy_reload_failures_total counter\n\
                     airlock_policy_reload_failures_total {}\n\
                     # HELP airlock_policy_last_reload_ok 1 unless the last reload attempt was refused.\n\
                     # TYPE airlock_policy_last_reload_ok gauge\n\
                     airlock_policy_last_reload_ok {}\n",
                    st.version,
                    st.reload_failures,
                    u8::from(st.last_error.is_none())
                ) + &match &self.gateway.audit {
                    Some(a) => {
                        let (commits, entries) = a.commits();
                        format!(
                            "# HELP airlock_audit_healthy 1 while the audit store commits.\n\
                         # TYPE airlock_audit_healthy gauge\n\
                         airlock_audit_healthy {}\n\
                         # HELP airlock_audit_queue_depth Entries waiting for the audit writer.\n\
                         # TYPE airlock_audit_queue_depth gauge\n\
                         airlock_audit_queue_depth {}\n\
                         # HELP airlock_audit_commits_total Audit transactions committed (one fsync each).\n\
                         # TYPE airlock_audit_commits_total counter\n\
                         airlock_audit_commits_total {}\n\
                         # HELP airlock_audit_entries_total Audit entries committed.\n\
                         # TYPE airlock_audit_entries_total counter\n\
                         airlock_audit_entries_total {}\n",
                            u8::from(a.healthy()),
                            a.queue_depth(),
                            commits,
                            entries
                        )
                    }
                    None => String::new(),
                } + &gw.metrics.render()
                    + &self.gauges().await;
                let mut r = Response::new(full(Bytes::from(body)));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                r
            }
            (_, p) if p.starts_with("/admin/") => self.api(req).await,
            (_, p) if p == "/ui" || p.starts_with("/ui/") => match &self.ui {
                Some(ui) => ui.handle(req).await,
                None => Rejection::not_found(p).into_response("admin"),
            },
            (_, p) => Rejection::not_found(p).into_response("admin"),
        }
    }
}

impl Admin {
    async fn api(&self, req: Request<Incoming>) -> Response<ProxyBody> {
        let gw = &self.gateway;
        let request_id = gw.request_ids.next();
        let mut record = RequestRecord::start(
            request_id.clone(),
            req.method(),
            gw.sink.clone(),
            gw.audit.clone(),
        );
        record.data.route = "admin";
        let result = self.api_call(req, &mut record).await;
        let response = match result {
            Ok((reason, body)) => {
                record.finish(Outcome::Completed, reason);
                let mut r = Response::new(full(Bytes::from(body.to_string())));
                r.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                r
            }
            Err(rejection) => {
                record.finish(Outcome::Rejected, rejection.reason);
                rejection.into_response(&request_id)
            }
        };
        record.data.status = Some(response.status().as_u16());
        response
    }

    async fn api_call(
        &self,
        req: Request<Incoming>,
        record: &mut RequestRecord,
    ) -> Result<(&'static str, Value), Rejection> {
        let gw = &self.gateway;
        let (parts, body) = req.into_parts();
        if parts.uri.path() == "/admin/approvals"
            || parts.uri.path().starts_with("/admin/approvals/")
        {
            // Reviewers need not be admins: each approval says which groups may decide it.
            let caller = self.caller(&parts.headers, record)?;
            let admin = self.is_admin(&caller);
            let view = crate::approvals::Caller { identity: &caller, admin };
            return crate::approvals::api(gw, &parts, body, view, record).await;
        }
        let operator = self.operator(&parts.headers, record)?;
        let now = (gw.clock)();
        match (&parts.method, parts.uri.path()) {
            (&Method::GET, "/admin/status") => Ok(("admin_status", self.status().await)),
            (&Method::GET, "/admin/policy") => {
                let s = gw.policy.status();
                let p = gw.policy.current();
                let secs = |t: std::time::SystemTime| {
                    t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
                };
                let rules: Vec<Value> = p
                    .rules()
                    .map(|(id, action, mode)| json!({"id": id, "action": action.as_str(), "mode": mode.as_str()}))
                    .collect();
                Ok((
                    "admin_policy",
                    json!({
                        "version": s.version,
                        "source": s.source,
                        "loaded_at": secs(s.loaded_at),
                        "last_reload_error": s.last_error,
                        "last_reload_failed_at": s.failed_at.map(secs),
                        "reload_failures": s.reload_failures,
                        "rules": rules,
                    }),
                ))
            }
            (&Method::POST, "/admin/policy/reload") => match crate::policy::reload(gw).await {
                Ok(version) => Ok(("admin_policy_reload", json!({"version": version}))),
                Err(e) => Err(Rejection::bad_request(e, "policy_reload_refused")),
            },
            (&Method::GET, "/admin/audit/entries") => {
                let q = audit_query(parts.uri.query().unwrap_or(""))?;
                let rows = audit_read(gw, move |s| s.search(&q)).await?;
                Ok((
                    "admin_audit_search",
                    json!({ "entries": rows.iter().map(entry_json).collect::<Vec<_>>() }),
                ))
            }
            (&Method::GET, path) if path.starts_with("/admin/audit/requests/") => {
                let id = path.trim_start_matches("/admin/audit/requests/").to_owned();
                if id.is_empty()
                    || id.len() > 128
                    || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                {
                    return Err(Rejection::bad_request("not a request id", "bad_request_id"));
                }
                let q =
                    airlock_store::Query { request_id: Some(id), limit: 100, ..Default::default() };
                let mut rows = audit_read(gw, move |s| s.search(&q)).await?;
                if rows.is_empty() {
                    return Err(Rejection::new(
                        ErrorType::NotFound,
                        "no audit entries for that request",
                        crate::reject::Fault::Client,
                        "audit_not_found",
                    ));
                }
                rows.sort_by(|a, b| (&a.chain, a.seq).cmp(&(&b.chain, b.seq)));
                Ok((
                    "admin_audit_show",
                    json!({ "entries": rows.iter().map(entry_json).collect::<Vec<_>>() }),
                ))
            }
            (&Method::GET, "/admin/audit/verify") => {
                let audit = gw.audit.as_ref().ok_or_else(crate::audit::unavailable)?;
                let reports = audit.verify().await.map_err(|_| crate::audit::unavailable())?;
                let ok = reports.iter().all(|r| r.problem.is_none());
                let chains: Vec<Value> = reports
                    .iter()
                    .map(|r| {
                        json!({
                            "chain": r.chain,
                            "entries": r.entries,
                            "last_seq": r.last_seq,
                            "checkpoints_checked": r.checkpoints_checked,
                            "problem": r.problem.as_ref().map(|p| json!({"seq": p.seq, "problem": p.problem, "text": p.to_string()})),
                            "incomplete": r.incomplete,
                            "interrupted": r.interrupted,
                        })
                    })
                    .collect();
                Ok(("admin_audit_verify", json!({ "verified": ok, "chains": chains })))
            }
            (&Method::GET, "/admin/revocations") => {
                let list: Vec<Value> = gw
                    .revocations
                    .list()
                    .into_iter()
                    .map(|r| match r {
                        Revoked::Token { token_id, until } => {
                            json!({"token_id": token_id, "until": until})
                        }
                        Revoked::Subject { subject, at, until } => {
                            json!({"subject": subject, "revoked_at": at, "until": until})
                        }
                    })
                    .collect();
                Ok(("admin_list_revocations", json!({ "revocations": list })))
            }
            (&Method::POST, "/admin/revocations") => {
                let body = read_json(body, &parts.headers, gw).await?;
                // A revocation outlives every token it could name.
                let until = now + gw.session_max_ttl.as_secs().max(86_400);
                match (str_field(&body, "token_id")?, str_field(&body, "subject")?) {
                    (Some(id), None) => {
                        persist(gw, "token", &id, now, until).await?;
                        gw.revocations.revoke_token(&id, until, now);
                        tracing::info!(target: "airlock::admin", operator = operator.subject(), token_id = %id, "token revoked");
                        Ok(("admin_revoke_token", json!({"revoked": {"token_id": id}})))
                    }
                    (None, Some(subject)) => {
                        persist(gw, "subject", &subject, now, until).await?;
                        gw.revocations.revoke_subject(&subject, now, until);
                        tracing::info!(target: "airlock::admin", operator = operator.subject(), subject = %subject, "subject revoked");
                        Ok((
                            "admin_revoke_subject",
                            json!({"revoked": {"subject": subject, "revoked_at": now}}),
                        ))
                    }
                    _ => Err(Rejection::bad_request(
                        "send exactly one of `token_id` or `subject`",
                        "bad_admin_request",
                    )),
                }
            }
            (&Method::POST, "/admin/tokens") => {
                let body = read_json(body, &parts.headers, gw).await?;
                let subject = str_field(&body, "subject")?.ok_or_else(|| {
                    Rejection::bad_request("`subject` is required", "bad_admin_request")
                })?;
                let groups: Vec<String> = match body.get("groups") {
                    None => Vec::new(),
                    Some(v) => serde_json::from_value(v.clone()).map_err(|_| {
                        Rejection::bad_request(
                            "`groups` must be a list of names",
                            "bad_admin_request",
                        )
                    })?,
                };
                let ttl = match str_field(&body, "ttl")? {
                    None => gw.session_ttl,
                    Some(t) => airlock_config::parse_duration(&t).map_err(|_| {
                        Rejection::bad_request(
                            "`ttl` must be a duration like 15m",
                            "bad_admin_request",
                        )
                    })?,
                };
                if ttl > gw.session_max_ttl || ttl < Duration::from_secs(1) {
                    return Err(Rejection::bad_request(
                        "`ttl` must be between 1s and the configured max_ttl",
                        "bad_admin_request",
                    ));
                }
                let minted = gw
                    .keys
                    .mint(&subject, &groups, ttl.as_secs(), now)
                    .map_err(|e| Rejection::bad_request(e.to_string(), "bad_admin_request"))?;
                record.data.minted_token_id = Some(minted.token_id.clone());
                tracing::info!(target: "airlock::admin", operator = operator.subject(), subject = %subject, token_id = %minted.token_id, "service token minted");
                Ok((
                    "admin_mint",
                    json!({"token": minted.token, "token_id": minted.token_id,
                           "expires_at": minted.expires_at, "subject": subject, "groups": groups}),
                ))
            }
            (_, path) => Err(Rejection::not_found(path)),
        }
    }

    /// One screen's worth for `airlock status`.
    async fn status(&self) -> Value {
        let gw = &self.gateway;
        let st = gw.policy.status();
        let secs = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
        };
        let (store, pending) = match &gw.audit {
            Some(a) => {
                let pending = a.read(|s| s.count_approvals("pending")).await.ok();
                (
                    json!({"healthy": a.healthy(), "queue_depth": a.queue_depth(), "chain": a.chain()}),
                    pending,
                )
            }
            None => (Value::Null, None),
        };
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "ready": self.ready.load(Ordering::Acquire),
            "policy": {
                "version": st.version,
                "source": st.source,
                "loaded_at": secs(st.loaded_at),
                "last_reload_error": st.last_error,
            },
            "store": store,
            "redis": gw.limiter.healthy().await.map(|up| json!({"up": up})),
            "approvals": {"pending": pending},
            "requests": {
                "in_flight": gw.limits.max_concurrent_requests as usize - gw.in_flight.available_permits(),
                "last_minute": gw.metrics.requests_last_minute(),
            },
        })
    }

    /// Gauges read at scrape time: requests in flight, HTTP/2 upstream connections (when the
    /// upstream speaks HTTP/2), held requests pending in the store, and whether Redis (when
    /// limits use it) answers.
    async fn gauges(&self) -> String {
        let gw = &self.gateway;
        let in_flight =
            gw.limits.max_concurrent_requests as usize - gw.in_flight.available_permits();
        let mut out = format!(
            "# HELP airlock_requests_in_flight Requests (and open streams) in flight.\n\
             # TYPE airlock_requests_in_flight gauge\n\
             airlock_requests_in_flight {in_flight}\n"
        );
        if let Some(n) = gw.upstream.http2_connections() {
            out += &format!(
                "# HELP airlock_upstream_http2_connections HTTP/2 connections open to the upstream.\n\
                 # TYPE airlock_upstream_http2_connections gauge\n\
                 airlock_upstream_http2_connections {n}\n"
            );
        }
        if let Some(audit) = &gw.audit
            && let Ok(n) = audit.read(|s| s.count_approvals("pending")).await
        {
            out += &format!(
                "# HELP airlock_approvals_pending Held requests waiting for a reviewer (every instance).\n\
                 # TYPE airlock_approvals_pending gauge\n\
                 airlock_approvals_pending {n}\n"
            );
        }
        if let Some(ok) = gw.limiter.healthy().await {
            out += &format!(
                "# HELP airlock_redis_up 1 while Redis (the shared limit counters) answers.\n\
                 # TYPE airlock_redis_up gauge\n\
                 airlock_redis_up {}\n",
                u8::from(ok)
            );
        }
        out
    }

    /// Anyone with a valid session token (named in the call's record).
    fn caller(
        &self,
        headers: &http::HeaderMap,
        record: &mut RequestRecord,
    ) -> Result<Identity, Rejection> {
        let gw = &self.gateway;
        let token = crate::auth::credential(headers, false)?;
        let identity = crate::auth::session(gw, token, (gw.clock)())?;
        record.data.subject = Some(identity.subject().to_owned());
        record.data.groups = identity.groups().to_vec();
        record.data.token_id = Some(identity.token_id().to_owned());
        Ok(identity)
    }

    fn is_admin(&self, identity: &Identity) -> bool {
        identity.groups().iter().any(|g| self.gateway.admin_groups.contains(g))
    }

    /// The caller must hold a valid session token with one of the admin groups.
    fn operator(
        &self,
        headers: &http::HeaderMap,
        record: &mut RequestRecord,
    ) -> Result<Identity, Rejection> {
        let identity = self.caller(headers, record)?;
        if !self.is_admin(&identity) {
            return Err(Rejection::new(
                airlock_wire::ErrorType::Permission,
                "the admin API needs membership of an admin group",
                crate::reject::Fault::Client,
                "admin_forbidden",
            ));
        }
        Ok(identity)
    }
}

/// Write a revocation to the store, so every instance sharing it applies it. If the store
/// cannot take it, the call fails (the operator must know it did not reach other instances).
async fn persist(
    gw: &Gateway,
    kind: &str,
    value: &str,
    at_s: u64,
    until_s: u64,
) -> Result<(), Rejection> {
    let Some(audit) = &gw.audit else { return Ok(()) };
    let r =
        airlock_store::Revocation { kind: kind.to_owned(), value: value.to_owned(), at_s, until_s };
    audit.read(move |s| s.revoke(&r)).await.map_err(|e| {
        tracing::error!(target: "airlock::admin", error = %e, "cannot store a revocation");
        Rejection::new(
            airlock_wire::ErrorType::Api,
            "the store is unavailable; the revocation was not applied",
            crate::reject::Fault::Internal,
            "revocation_not_stored",
        )
        .with_status(StatusCode::SERVICE_UNAVAILABLE)
    })
}

pub(crate) async fn read_json(
    body: Incoming,
    headers: &http::HeaderMap,
    gw: &Gateway,
) -> Result<Value, Rejection> {
    let bytes =
        crate::pipeline::read_body(body, headers, MAX_ADMIN_BODY, gw.limits.body_read_timeout)
            .await?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(Rejection::bad_request("the body must be a JSON object", "invalid_json")),
    }
}

pub(crate) fn str_field(body: &Value, key: &str) -> Result<Option<String>, Rejection> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 256 => Ok(Some(s.clone())),
        Some(_) => Err(Rejection::bad_request(
            format!("`{key}` must be a non-empty string"),
            "bad_admin_request",
        )),
    }
}

/// Read the audit store on a blocking task; a store that cannot answer is a 503.
async fn audit_read<T: Send + 'static>(
    gw: &Gateway,
    f: impl FnOnce(&mut airlock_store::Store) -> Result<T, airlock_store::StoreError> + Send + 'static,
) -> Result<T, Rejection> {
    let audit = gw.audit.as_ref().ok_or_else(crate::audit::unavailable)?;
    audit.read(f).await.map_err(|_| crate::audit::unavailable())
}

/// One stored entry as the API returns it: the signed body parsed, with its chain position
/// and hashes.
fn entry_json(r: &airlock_audit::Row) -> Value {
    json!({
        "chain": r.chain,
        "seq": r.seq,
        "kind": r.kind,
        "request_id": r.request_id,
        "at_ms": r.at_ms,
        "prev_hash": r.prev_hash,
        "hash": r.hash,
        "body": serde_json::from_str::<Value>(&r.body).unwrap_or(Value::Null),
    })
}

/// `subject`, `group`, `rule`, `decision`, `model`, `request_id`, `since_ms`, `until_ms`,
/// `limit` (default 100, at most 1000) from a query string; anything else is refused.
fn audit_query(query: &str) -> Result<airlock_store::Query, Rejection> {
    let mut q = airlock_store::Query { limit: 100, ..Default::default() };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v).ok_or_else(|| {
            Rejection::bad_request("bad percent-encoding in the query", "bad_query")
        })?;
        let num = |v: &str| {
            v.parse::<i64>()
                .map_err(|_| Rejection::bad_request(format!("`{k}` must be a number"), "bad_query"))
        };
        match k {
            "subject" => q.subject = Some(v),
            "group" => q.group = Some(v),
            "rule" => q.rule = Some(v),
            "decision" => q.decision = Some(v),
            "model" => q.model = Some(v),
            "request_id" => q.request_id = Some(v),
            "since_ms" => q.since_ms = Some(num(&v)?),
            "until_ms" => q.until_ms = Some(num(&v)?),
            "limit" => q.limit = num(&v)?.clamp(1, 1000) as u64,
            _ => {
                return Err(Rejection::bad_request(
                    format!("unknown query parameter `{k}`"),
                    "bad_query",
                ));
            }
        }
    }
    Ok(q)
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}
