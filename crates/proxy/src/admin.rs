//! The admin plane: its own listener, never the data plane's.
//!
//! - `GET /healthz`: the process is up.
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
}

impl Admin {
    pub fn new(gateway: Arc<Gateway>) -> Admin {
        Admin { ready: AtomicBool::new(false), gateway }
    }
}

impl Handler for Admin {
    async fn call(
        self: Arc<Self>,
        req: Request<Incoming>,
        _peer: SocketAddr,
    ) -> Response<ProxyBody> {
        let path = req.uri().path().to_owned();
        let text = |status, text: &'static str| {
            let mut r = Response::new(full(Bytes::from_static(text.as_bytes())));
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
                    text(StatusCode::OK, "ready\n")
                }
            }
            (_, p) if p.starts_with("/admin/") => self.api(req).await,
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
        let operator = self.operator(&parts.headers)?;
        record.data.subject = Some(operator.subject().to_owned());
        record.data.groups = operator.groups().to_vec();
        record.data.token_id = Some(operator.token_id().to_owned());
        let now = (gw.clock)();
        match (&parts.method, parts.uri.path()) {
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

    /// The caller must hold a valid session token with one of the admin groups.
    fn operator(&self, headers: &http::HeaderMap) -> Result<Identity, Rejection> {
        let gw = &self.gateway;
        let token = crate::auth::credential(headers, false)?;
        let identity = crate::auth::session(gw, token, (gw.clock)())?;
        if !identity.groups().iter().any(|g| gw.admin_groups.contains(g)) {
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

async fn read_json(
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

fn str_field(body: &Value, key: &str) -> Result<Option<String>, Rejection> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 256 => Ok(Some(s.clone())),
        Some(_) => Err(Rejection::bad_request(
            format!("`{key}` must be a non-empty string"),
            "bad_admin_request",
        )),
    }
}
