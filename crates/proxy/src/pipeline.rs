//! The data plane's request path, top to bottom. [`handle`] lists every stage in order; each
//! stage is a plain function that returns a value or a [`Rejection`].
//!
//! ```text
//! /auth/token, /auth/config ─► auth (exchange, login discovery), answered here
//! route ─► authenticate ─► read body (bounded) ─► parse ─► [policy, redaction: later stages]
//!       ─► forward upstream ─► relay response (JSON buffered+bounded, SSE event by event)
//! every path: exactly one RequestRecord, delivered when the request ends
//! ```

use crate::Gateway;
use crate::body::{ProxyBody, SseRelay, full};
use crate::record::{Outcome, RequestRecord};
use crate::reject::Rejection;
use crate::route::{Local, Route, local_route, route};
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::net::IpAddr;
use std::time::Duration;

pub async fn handle(gw: &Gateway, req: Request<Incoming>, peer: IpAddr) -> Response<ProxyBody> {
    let request_id = gw.request_ids.next();
    let mut record =
        RequestRecord::start(request_id.clone(), req.method(), gw.sink.clone(), gw.audit.clone());
    record.data.client_addr = Some(peer.to_string());
    record.data.user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .map(|v| String::from_utf8_lossy(&v.as_bytes()[..v.len().min(256)]).into_owned());
    let mut response = match run(gw, req, &mut record).await {
        Ok(Relay::Full(response)) => {
            record.finish(Outcome::Completed, "completed");
            record.data.status = Some(response.status().as_u16());
            // Strict durability: the response is released only once it is recorded.
            match record.close_strict() {
                Some(pending) => match pending.await {
                    Ok(()) => response,
                    Err(_) => {
                        record.reopen_after_failed_close();
                        crate::audit::unavailable().into_response(&request_id)
                    }
                },
                None => response,
            }
        }
        Ok(Relay::Stream(parts)) => {
            // The record travels with the stream and is delivered when it ends.
            record.data.status = Some(parts.status.as_u16());
            let relay = SseRelay::new(
                parts.body,
                gw.limits.max_sse_event_bytes as usize,
                gw.upstream_idle_timeout,
                record,
            );
            let mut response = Response::new(http_body_util::BodyExt::boxed_unsync(relay));
            *response.status_mut() = parts.status;
            *response.headers_mut() = parts.headers;
            add_request_id(response.headers_mut(), &request_id);
            return response;
        }
        Err(rejection) => {
            record.finish(Outcome::Rejected, rejection.reason);
            if rejection.fault != crate::reject::Fault::Client {
                tracing::warn!(target: "airlock::request", request_id = %request_id, reason = rejection.reason, "request failed");
            }
            rejection.into_response(&request_id)
        }
    };
    record.data.status = Some(response.status().as_u16());
    add_request_id(response.headers_mut(), &request_id);
    response
}

fn add_request_id(headers: &mut HeaderMap, request_id: &str) {
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert("x-airlock-request-id", v);
    }
}

enum Relay {
    Full(Response<ProxyBody>),
    Stream(StreamParts),
}

struct StreamParts {
    status: StatusCode,
    headers: HeaderMap,
    body: Incoming,
}

async fn run(
    gw: &Gateway,
    req: Request<Incoming>,
    record: &mut RequestRecord,
) -> Result<Relay, Rejection> {
    let (parts, body) = req.into_parts();

    // Bounded headers before anything looks at them.
    check_header_size(&parts.headers)?;

    // The gateway's own endpoints: token exchange and login discovery. No upstream.
    if let Some(local) = local_route(&parts.method, parts.uri.path())? {
        record.data.route = local.name();
        return Ok(Relay::Full(match local {
            Local::Token => crate::auth::exchange(gw, &parts.headers, record).await?,
            Local::Config => crate::auth::login_config(gw),
        }));
    }

    // Shed load before doing work when the audit writer is far behind.
    if let Some(audit) = &gw.audit {
        audit.admit()?;
    }

    // Route first: unknown paths are answered without touching credentials or the body.
    let route = route(&parts.method, parts.uri.path())?;
    record.data.route = route.name();
    check_query(parts.uri.query())?;

    // Authenticate before reading the body, so anonymous callers cannot make us buffer.
    let _identity = crate::auth::authenticate(gw, &parts.headers, record).await?;

    // Read the body within the size and time bounds, then parse it. GET routes carry none.
    let body = if route.has_body() {
        check_content_type(&parts.headers)?;
        let bytes =
            read_body(body, &parts.headers, gw.limits.max_body_bytes, gw.limits.body_read_timeout)
                .await?;
        let request = airlock_wire::inspect_messages(&bytes)
            .map_err(|e| Rejection::bad_request(e.to_string(), "invalid_json"))?;
        record.data.model = request.model.clone();
        record.data.stream = request.stream && route == Route::Messages;
        // Policy evaluation and request redaction plug in here (issues 4 and 11). Until then
        // the client's exact bytes are forwarded, so nothing about the body changes.
        bytes
    } else {
        Bytes::new()
    };

    // Nothing leaves unrecorded: the request's audit entry commits first (fail closed).
    record.data.decision = Some("allow");
    record.open_audit().await?;

    // Forward with the gateway's credential; the client's token never leaves.
    let sent = std::time::Instant::now();
    let (response, attempts) =
        gw.upstream.send(parts.method, &route, parts.uri.query(), &parts.headers, body).await?;
    record.data.upstream_latency = Some(sent.elapsed());
    record.data.upstream_attempts = attempts;
    record.data.upstream_status = Some(response.status().as_u16());
    record.data.upstream_request_id =
        response.headers().get("request-id").and_then(|v| v.to_str().ok()).map(str::to_owned);

    relay(gw, response, record).await
}

/// Total size of request headers accepted (names and values); more gets 431.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

fn check_header_size(headers: &HeaderMap) -> Result<(), Rejection> {
    let total: usize = headers.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    if total > MAX_HEADER_BYTES {
        return Err(Rejection::bad_request(
            format!("request headers exceed {MAX_HEADER_BYTES} bytes"),
            "headers_too_large",
        )
        .with_status(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
    }
    Ok(())
}

/// Credentials travel in headers only: a token in the URL ends up in logs and histories
/// (RFC 6750 §2.3), so such a request is refused (and the query is never logged).
fn check_query(query: Option<&str>) -> Result<(), Rejection> {
    let has_token = query.is_some_and(|q| {
        q.split('&')
            .any(|p| p.split('=').next().is_some_and(|k| k.eq_ignore_ascii_case("access_token")))
    });
    if has_token {
        return Err(Rejection::bad_request(
            "credentials are not accepted in the query string; send them in a header",
            "token_in_query",
        ));
    }
    Ok(())
}

fn check_content_type(headers: &HeaderMap) -> Result<(), Rejection> {
    let ok = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json"))
        .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err(Rejection::bad_request("content-type must be application/json", "bad_content_type"))
    }
}

/// Read a body of at most `limit` bytes, with at most `idle` between chunks. A declared
/// Content-Length over the limit is refused before any byte is read.
pub(crate) async fn read_body(
    mut body: Incoming,
    headers: &HeaderMap,
    limit: u64,
    idle: Duration,
) -> Result<Bytes, Rejection> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(Rejection::too_large(limit));
    }
    let mut buf = BytesMut::new();
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => {
                return Err(Rejection::bad_request(
                    "request body was not received in time",
                    "body_timeout",
                )
                .with_status(StatusCode::REQUEST_TIMEOUT));
            }
            Ok(None) => return Ok(buf.freeze()),
            Ok(Some(Err(_))) => {
                return Err(Rejection::bad_request(
                    "request body could not be read",
                    "body_read_error",
                ));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            if buf.len() as u64 + data.len() as u64 > limit {
                return Err(Rejection::too_large(limit));
            }
            buf.extend_from_slice(&data);
        }
    }
}

async fn relay(
    gw: &Gateway,
    response: Response<Incoming>,
    record: &mut RequestRecord,
) -> Result<Relay, Rejection> {
    let (parts, body) = response.into_parts();
    if parts.status.is_redirection() {
        // Never followed and never passed on: a redirect could lead the client elsewhere.
        return Err(Rejection::upstream(
            StatusCode::BAD_GATEWAY,
            "upstream answered with a redirect",
            "upstream_redirect",
        ));
    }
    let encoded = parts
        .headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    if encoded {
        // We asked for identity; a body we cannot read is a body we cannot inspect: fail closed.
        return Err(Rejection::upstream(
            StatusCode::BAD_GATEWAY,
            "upstream sent an encoded body",
            "upstream_encoded",
        ));
    }
    let headers = crate::headers::client_response_headers(&parts.headers);
    let is_sse = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/event-stream"));
    if is_sse && parts.status.is_success() {
        return Ok(Relay::Stream(StreamParts { status: parts.status, headers, body }));
    }
    let bytes =
        read_upstream_body(body, gw.limits.max_response_bytes, gw.upstream_idle_timeout).await?;
    record.mark_first_byte();
    let bytes = if parts.status.is_success() {
        let usage = airlock_wire::usage_of(&bytes);
        (record.data.input_tokens, record.data.output_tokens) = (usage.input, usage.output);
        bytes
    } else {
        scrub_key(bytes, gw.upstream_key_bytes())
    };
    let mut out = Response::new(full(bytes));
    *out.status_mut() = parts.status;
    *out.headers_mut() = headers;
    Ok(Relay::Full(out))
}

async fn read_upstream_body(
    mut body: Incoming,
    limit: u64,
    idle: Duration,
) -> Result<Bytes, Rejection> {
    let mut buf = BytesMut::new();
    loop {
        match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => {
                return Err(Rejection::upstream(
                    StatusCode::GATEWAY_TIMEOUT,
                    "upstream response stalled",
                    "upstream_idle",
                ));
            }
            Ok(None) => return Ok(buf.freeze()),
            Ok(Some(Err(_))) => {
                return Err(Rejection::upstream(
                    StatusCode::BAD_GATEWAY,
                    "upstream response was cut off",
                    "upstream_reset",
                ));
            }
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    if buf.len() as u64 + data.len() as u64 > limit {
                        return Err(Rejection::upstream(
                            StatusCode::BAD_GATEWAY,
                            "upstream response too large",
                            "upstream_too_large",
                        ));
                    }
                    buf.extend_from_slice(&data);
                }
            }
        }
    }
}

/// Remove any copy of the upstream key from an upstream error body before the client sees it.
fn scrub_key(body: Bytes, key: &[u8]) -> Bytes {
    if key.len() < 8 || !body.windows(key.len()).any(|w| w == key) {
        return body;
    }
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        if body[i..].starts_with(key) {
            out.extend_from_slice(b"[REDACTED]");
            i += key.len();
        } else {
            out.push(body[i]);
            i += 1;
        }
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubbing() {
        let key = b"sk-ant-secret-123";
        let got = scrub_key(
            Bytes::from_static(b"{\"m\":\"bad key sk-ant-secret-123 x sk-ant-secret-123\"}"),
            key,
        );
        assert_eq!(&got[..], b"{\"m\":\"bad key [REDACTED] x [REDACTED]\"}");
        let clean = Bytes::from_static(b"nothing here");
        assert_eq!(scrub_key(clean.clone(), key), clean);
    }
}
