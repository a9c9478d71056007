//! The data plane's request path, top to bottom. [`handle`] lists every stage in order; each
//! stage is a plain function that returns a value or a [`Rejection`].
//!
//! ```text
//! /auth/token, /auth/config ─► auth (exchange, login discovery), answered here
//! route ─► authenticate ─► read body (bounded) ─► parse ─► policy (judge, redact, clamp)
//!       ─► forward upstream ─► relay response (JSON buffered+bounded, SSE event by event),
//!          through the response guard (masking, tool-call checks)
//! every path: exactly one RequestRecord, delivered when the request ends
//! ```

use crate::Gateway;
use crate::body::{ProxyBody, SseRelay, full};
use crate::record::{Outcome, RequestRecord, RuleHit};
use crate::reject::Rejection;
use crate::route::{Local, Route, local_route, route};
use crate::upstream::UpstreamBody;
use airlock_detect::Pseudonyms;
use airlock_policy::{RejectKind, ResponseGuard};
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub async fn handle(gw: Arc<Gateway>, req: Request<Incoming>, peer: IpAddr) -> Response<ProxyBody> {
    let request_id = gw.request_ids.next();
    let mut record =
        RequestRecord::start(request_id.clone(), req.method(), gw.sink.clone(), gw.audit.clone());
    record.data.client_addr = Some(peer.to_string());
    record.data.user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .map(|v| String::from_utf8_lossy(&v.as_bytes()[..v.len().min(256)]).into_owned());
    record.watch_connection(req.extensions().get::<crate::edge::Stalled>().cloned());
    record.data.trace_parent = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(crate::trace::parse_traceparent);
    // One deadline for the whole exchange up to a complete answer (or the start of a stream;
    // a stream is then bounded by idle timeouts, never by its total length).
    let mut outcome =
        match tokio::time::timeout(gw.limits.request_timeout, run(&gw, req, &mut record)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(request_timeout(&record)),
        };
    if let Ok(Relay::Held(call)) = outcome {
        if record.data.stream {
            // The stream starts now with pings; the decision and the upstream answer follow.
            return held_stream(gw, *call, record);
        }
        // A plain call stays open until the decision (the request timeout counts again from
        // the approval).
        let HeldCall { mut held, forward: fwd } = *call;
        let t = Instant::now();
        let decided = crate::approvals::wait(&gw, &mut held, &mut record).await;
        record.stage("approval", t);
        outcome = forward_decided(&gw, fwd, decided, &mut record).await;
    }
    // `warn` rules that matched: the client hears of them in a header, nothing is blocked.
    let warnings: Vec<String> =
        record.data.rules.iter().filter(|r| r.mode == "warn").map(|r| r.id.clone()).collect();
    let mut response = match outcome {
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
            let StreamParts { status, headers, body, guard } = *parts;
            let relay = sse_relay(&gw, body, guard, record);
            let mut response = Response::new(http_body_util::BodyExt::boxed_unsync(relay));
            *response.status_mut() = status;
            *response.headers_mut() = headers;
            add_request_id(response.headers_mut(), &request_id);
            add_warnings(response.headers_mut(), &warnings);
            return response;
        }
        // Settled above: a held call never gets here.
        Ok(Relay::Held(_)) => Rejection::new(
            airlock_wire::ErrorType::Api,
            "internal error",
            crate::reject::Fault::Internal,
            "held_unsettled",
        )
        .into_response(&request_id),
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
    add_warnings(response.headers_mut(), &warnings);
    response
}

fn sse_relay(
    gw: &Gateway,
    body: UpstreamBody,
    guard: Option<ResponseGuard>,
    record: RequestRecord,
) -> SseRelay {
    SseRelay::new(
        body,
        gw.limits.max_sse_event_bytes as usize,
        gw.upstream_idle_timeout,
        record,
        guard,
    )
}

/// How often a held stream gets a `ping` event while it waits (the first at once).
const PING_EVERY: Duration = Duration::from_secs(5);
const PING: &[u8] = b"event: ping\ndata: {\"type\": \"ping\"}\n\n";

/// A held streaming call: the SSE response starts at once with `ping` events; once a
/// reviewer decides, the upstream stream (or an SSE `error` event) follows on the same
/// response. A client that goes away closes the channel: the task stops, the approval is
/// marked abandoned and the record says `client_aborted`.
fn held_stream(gw: Arc<Gateway>, call: HeldCall, mut record: RequestRecord) -> Response<ProxyBody> {
    let request_id = record.data.request_id.clone();
    record.data.status = Some(200);
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        let HeldCall { mut held, forward: fwd } = call;
        let decided = {
            let wait = crate::approvals::wait(&gw, &mut held, &mut record);
            tokio::pin!(wait);
            let mut ping = tokio::time::interval(PING_EVERY);
            loop {
                tokio::select! {
                    r = &mut wait => break Some(r),
                    () = tx.closed() => break None,
                    _ = ping.tick() => {
                        if tx.send(Bytes::from_static(PING)).await.is_err() {
                            break None;
                        }
                    }
                }
            }
        };
        let Some(decided) = decided else { return };
        let outcome = forward_decided(&gw, fwd, decided, &mut record).await;
        let id = record.data.request_id.clone();
        let last = match outcome {
            Ok(Relay::Stream(parts)) => {
                let mut relay = sse_relay(&gw, parts.body, parts.guard, record);
                while let Some(Ok(frame)) = relay.frame().await {
                    if let Ok(data) = frame.into_data()
                        && tx.send(data).await.is_err()
                    {
                        return;
                    }
                }
                return;
            }
            Ok(Relay::Full(response)) => {
                // No stream came back (an upstream error status): its envelope goes out as
                // the stream's `error` event.
                let status = response.status();
                let body = response.into_body().collect().await.map(|c| c.to_bytes());
                record.finish(Outcome::StreamFailed, "upstream_error_status");
                upstream_error_event(&body.unwrap_or_default(), status, &id)
            }
            Ok(Relay::Held(_)) => {
                record.finish(Outcome::Rejected, "held_unsettled");
                airlock_wire::sse_error_event(airlock_wire::ErrorType::Api, "internal error", &id)
            }
            Err(rejection) => {
                record.finish(Outcome::Rejected, rejection.reason);
                airlock_wire::sse_error_event(rejection.kind, &rejection.message, &id)
            }
        };
        let _ = tx.send(last).await;
    });
    let mut response = Response::new(crate::body::channel(rx));
    let headers = response.headers_mut();
    headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    add_request_id(headers, &request_id);
    response
}

/// An upstream answer that is not a stream, as an SSE `error` event: its own error envelope
/// when it sent one, else a generic one naming the status.
fn upstream_error_event(body: &[u8], status: StatusCode, request_id: &str) -> Bytes {
    let envelope = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .filter(|v| v.get("type").and_then(serde_json::Value::as_str) == Some("error"));
    match envelope {
        Some(v) => Bytes::from(format!("event: error\ndata: {v}\n\n")),
        None => airlock_wire::sse_error_event(
            airlock_wire::ErrorType::Api,
            &format!("upstream answered {} without a stream", status.as_u16()),
            request_id,
        ),
    }
}

/// The request deadline passed: 408 while the client was still sending its body (no decision
/// yet), else 504 (the upstream did not answer in time).
fn request_timeout(record: &RequestRecord) -> Rejection {
    if record.data.decision.is_none() {
        return Rejection::bad_request(
            "the request was not received within the gateway's request timeout",
            "request_timeout",
        )
        .with_status(StatusCode::REQUEST_TIMEOUT);
    }
    Rejection::upstream(
        StatusCode::GATEWAY_TIMEOUT,
        "the request did not complete within the gateway's request timeout",
        "request_timeout",
    )
}

/// The policy's Rego layer, off the async threads and bounded in wall-clock time: the
/// engine checks its own limit between steps, but one long builtin call could overrun it,
/// so the request stops waiting at the limit (plus a margin) and fails closed.
async fn rego_decide(
    policy: &Arc<airlock_policy::Policy>,
    input: serde_json::Value,
) -> Result<Option<airlock_policy::RegoDecision>, String> {
    let limit = policy.rego_timeout().unwrap_or_default() + Duration::from_millis(50);
    let p = Arc::clone(policy);
    match tokio::time::timeout(limit, tokio::task::spawn_blocking(move || p.rego_decide(&input)))
        .await
    {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(_)) => Err("evaluation failed".into()),
        Err(_) => Err(format!("no decision within {} ms", limit.as_millis())),
    }
}

fn add_warnings(headers: &mut HeaderMap, rules: &[String]) {
    if !rules.is_empty()
        && let Ok(v) = HeaderValue::from_str(&rules.join(", "))
    {
        headers.insert("x-airlock-policy-warning", v);
    }
}

/// A whole Messages response through the guard: masked, its tool calls checked. A blocked
/// tool call means the client gets a 403 instead of the call; a body that is not JSON cannot
/// be inspected and is not released.
fn guard_json(
    bytes: Bytes,
    mut guard: ResponseGuard,
    record: &mut RequestRecord,
) -> Result<Bytes, Rejection> {
    let mut message: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| {
        Rejection::upstream(
            StatusCode::BAD_GATEWAY,
            "upstream sent a response that is not valid JSON",
            "upstream_bad_json",
        )
    })?;
    let result = guard.json(&mut message);
    record.data.rules.extend(guard.hits.iter().map(RuleHit::from));
    record.data.masked = guard.masked();
    match result {
        Err(r) => {
            // Nothing was released: the audit copy is the empty transcript.
            if let Some(t) = guard.transcript() {
                record.data.response_body = crate::audit::capped_body(t, usize::MAX);
            }
            record.data.decision = Some("deny");
            Err(Rejection::policy(&r, "tool_call_blocked"))
        }
        Ok(changed) => {
            let out = if changed { Bytes::from(message.to_string()) } else { bytes };
            if let Some(t) = guard.json_transcript(message, out.len()) {
                record.data.response_body = crate::audit::capped_body(t, usize::MAX);
            }
            Ok(out)
        }
    }
}

fn add_request_id(headers: &mut HeaderMap, request_id: &str) {
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert("x-airlock-request-id", v);
    }
}

enum Relay {
    Full(Response<ProxyBody>),
    Stream(Box<StreamParts>),
    /// Held for approval (wait mode): forwarded once a reviewer approves.
    Held(Box<HeldCall>),
}

/// A held call: the approval, and what forwarding it needs once approved.
struct HeldCall {
    held: crate::approvals::Held,
    forward: Forward,
}

/// Everything forwarding needs besides the body.
struct Forward {
    /// The policy's limits that apply to this caller.
    limits: Vec<airlock_policy::limits::Applied>,
    method: http::Method,
    route: Route,
    query: Option<String>,
    headers: HeaderMap,
    guard: Option<ResponseGuard>,
}

struct StreamParts {
    status: StatusCode,
    headers: HeaderMap,
    body: UpstreamBody,
    guard: Option<ResponseGuard>,
}

async fn run(
    gw: &Gateway,
    req: Request<Incoming>,
    record: &mut RequestRecord,
) -> Result<Relay, Rejection> {
    let (parts, body) = req.into_parts();

    // Bounded headers before anything looks at them.
    check_header_size(&parts.headers)?;
    check_framing(&parts.headers)?;
    check_host(parts.version, &parts.headers)?;

    // The gateway's own endpoints: token exchange and login discovery. No upstream.
    if let Some(local) = local_route(&parts.method, parts.uri.path())? {
        record.data.route = local.name();
        return Ok(Relay::Full(match local {
            Local::Token => crate::auth::exchange(gw, &parts.headers, record).await?,
            Local::Config => crate::auth::login_config(gw),
        }));
    }

    // Shed load before doing work: too many requests in flight, or the audit writer far
    // behind. The permit travels with the record (a stream holds it until it ends).
    match Arc::clone(&gw.in_flight).try_acquire_owned() {
        Ok(permit) => record.hold(permit),
        Err(_) => {
            return Err(Rejection::new(
                airlock_wire::ErrorType::Overloaded,
                "the gateway is at its limit of requests in flight; retry shortly",
                crate::reject::Fault::Internal,
                "too_many_requests_in_flight",
            )
            .with_status(StatusCode::SERVICE_UNAVAILABLE)
            .with_retry_after(1));
        }
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
    let t = Instant::now();
    let identity = crate::auth::authenticate(gw, &parts.headers, record).await?;
    record.stage("authenticate", t);

    // One policy version judges this request from here to the end of its response.
    let policy = gw.policy.current();
    record.data.policy_version = Some(policy.version.clone());
    let mut guard = None;
    let mut hold = None;

    // Read the body within the size and time bounds, then parse it. GET routes carry none.
    let body = if route.has_body() {
        check_content_type(&parts.headers)?;
        let t = Instant::now();
        let bytes =
            read_body(body, &parts.headers, gw.limits.max_body_bytes, gw.limits.body_read_timeout)
                .await?;
        record.stage("read_body", t);
        let t = Instant::now();
        let request = airlock_wire::inspect_messages(&bytes)
            .map_err(|e| Rejection::bad_request(e.to_string(), "invalid_json"))?;
        record.data.model = request.model.clone();
        record.data.stream = request.stream && route == Route::Messages;
        let mut body = request.body;
        let mut pseudonyms = Pseudonyms::default();
        let mut verdict = policy.evaluate(
            identity.groups(),
            &mut body,
            bytes.len(),
            &gw.mask_key,
            &mut pseudonyms,
        );
        if verdict.reject.is_none()
            && let Some(input) =
                policy.rego_input(identity.subject(), identity.groups(), &body, &verdict)
        {
            verdict.apply_rego(rego_decide(&policy, input).await);
        }
        record.data.decision = Some(verdict.decision());
        record.data.rules = verdict.hits.iter().map(RuleHit::from).collect();
        record.data.redactions = verdict.redactions;
        record.data.clamped = verdict.clamped;
        record.data.stripped_tools = verdict.stripped_tools;
        if gw.audit_body_bytes > 0 && gw.audit.is_some() {
            // What the record keeps of the request: as forwarded, every detected value masked.
            let copy = policy.audit_copy(serde_json::Value::Object(body.clone()));
            record.data.request_body = crate::audit::capped_body(copy, gw.audit_body_bytes);
        }
        record.stage("policy", t);
        if let Some(r) = &verdict.reject {
            let reason = match r.kind {
                RejectKind::InvalidRequest => "policy_invalid",
                RejectKind::Permission => "policy_denied",
            };
            return Err(Rejection::policy(r, reason));
        }
        if let Some(h) = verdict.hold.take() {
            // Reviewers read this: the request as it would be forwarded, every value masked.
            let copy = policy.audit_copy(serde_json::Value::Object(body.clone()));
            let view = crate::audit::capped_body(copy, MAX_REVIEW_VIEW_BYTES).unwrap_or_default();
            hold = Some((h, view.to_string()));
        }
        if route == Route::Messages {
            guard = Some(ResponseGuard::new(
                Arc::clone(&policy),
                identity.groups().to_vec(),
                request.model.unwrap_or_default(),
                Arc::clone(&gw.mask_key),
                pseudonyms,
                gw.limits.max_tool_input_bytes as usize,
            ));
            if let Some(g) = guard.as_mut() {
                g.keep_transcript(gw.audit_body_bytes);
            }
        }
        if verdict.changed {
            // The redacted request is what goes upstream (and the same bytes every turn).
            Bytes::from(serde_json::Value::Object(body).to_string())
        } else {
            // Untouched: the client's exact bytes.
            bytes
        }
    } else {
        Bytes::new()
    };

    record.data.decision.get_or_insert("allow");
    let mut held = None;
    if let Some((h, view)) = hold {
        match crate::approvals::hold(gw, record, &h, identity.subject(), &body, view).await? {
            crate::approvals::Start::Pass => {}
            crate::approvals::Start::Wait(w) => held = Some(w),
        }
    }

    // Nothing leaves unrecorded: the request's audit entry commits first (fail closed); a
    // held request's entry is written now, and records the hold.
    let t = Instant::now();
    record.open_audit().await?;
    if gw.audit.is_some() {
        gw.metrics.audit_append(t.elapsed());
        record.stage("audit", t);
    }
    let fwd = Forward {
        limits: policy.limits_for(identity.subject(), identity.groups()),
        method: parts.method,
        route,
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        guard,
    };
    if let Some(held) = held {
        return Ok(Relay::Held(Box::new(HeldCall { held: *held, forward: fwd })));
    }
    forward(gw, fwd, body, record).await
}

/// A held request once decided: approved, its body is forwarded within the request timeout
/// (counted from the approval); otherwise the decision's rejection.
async fn forward_decided(
    gw: &Gateway,
    fwd: Forward,
    decided: Result<Bytes, Rejection>,
    record: &mut RequestRecord,
) -> Result<Relay, Rejection> {
    let body = decided?;
    match tokio::time::timeout(gw.limits.request_timeout, forward(gw, fwd, body, record)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(request_timeout(record)),
    }
}

/// A reviewer's view of a held request is cut at this size.
const MAX_REVIEW_VIEW_BYTES: usize = 1 << 20;

/// Forward with the gateway's credential (the client's token never leaves), then relay.
async fn forward(
    gw: &Gateway,
    fwd: Forward,
    body: Bytes,
    record: &mut RequestRecord,
) -> Result<Relay, Rejection> {
    // The policy's limits: admitted, or refused before anything is sent.
    if !fwd.limits.is_empty() {
        let t = Instant::now();
        let now = airlock_store::now_ms();
        let id = record.data.request_id.clone();
        match gw.limiter.admit(&fwd.limits, record.data.stream, &id, now).await? {
            crate::limits::Decision::Admitted(Some(a)) => record.hold_admission(a),
            crate::limits::Decision::Admitted(None) => {}
            crate::limits::Decision::Refused(r) => {
                record.data.limited_by = Some(format!("{}:{}", r.limit_id, r.what.as_str()));
                return Err(r.rejection(now));
            }
        }
        record.stage("limits", t);
    }
    let sent = Instant::now();
    let (response, attempts) =
        gw.upstream.send(fwd.method, &fwd.route, fwd.query.as_deref(), &fwd.headers, body).await?;
    record.data.upstream_latency = Some(sent.elapsed());
    record.stage("upstream", sent);
    record.data.upstream_attempts = attempts;
    record.data.upstream_status = Some(response.status().as_u16());
    record.data.upstream_request_id =
        response.headers().get("request-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    relay(gw, response, record, fwd.guard).await
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

/// One unambiguous body framing, or none (RFC 9112 §6.3; security-tests.md P-01..P-03): a
/// request with both Content-Length and Transfer-Encoding, a Transfer-Encoding other than a
/// single `chunked`, or several Content-Length headers is refused and its connection closed —
/// the way request smuggling starts is two hops disagreeing on where a body ends. Header
/// names with `_` are refused too: some servers read `x_api_key` as `x-api-key` (P-33).
fn check_framing(headers: &HeaderMap) -> Result<(), Rejection> {
    let refuse = |why: &str| {
        let mut r = Rejection::bad_request(format!("ambiguous request: {why}"), "bad_framing");
        r.close = true;
        Err(r)
    };
    let te: Vec<&HeaderValue> = headers.get_all(header::TRANSFER_ENCODING).iter().collect();
    let cl = headers.get_all(header::CONTENT_LENGTH).iter().count();
    if !te.is_empty() && cl > 0 {
        return refuse("both Content-Length and Transfer-Encoding");
    }
    if te.len() > 1 || te.first().is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"chunked")) {
        return refuse("Transfer-Encoding must be exactly `chunked`");
    }
    if cl > 1 {
        return refuse("more than one Content-Length");
    }
    if headers.keys().any(|k| k.as_str().contains('_')) {
        return refuse("header names must not contain `_`");
    }
    Ok(())
}

/// RFC 9112 §3.2: an HTTP/1.1 request without a Host, or with several, is a 400 — two hops
/// that pick different Hosts route the same request differently. (Where the gateway sends a
/// request never depends on Host: the upstream is fixed by configuration.)
fn check_host(version: http::Version, headers: &HeaderMap) -> Result<(), Rejection> {
    let hosts = headers.get_all(header::HOST).iter().count();
    if hosts > 1 || (hosts == 0 && version == http::Version::HTTP_11) {
        let mut r = Rejection::bad_request("a request needs exactly one Host header", "bad_host");
        r.close = true;
        return Err(r);
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
    // A compressed body could not be scanned or redacted without inflating it, and inflating
    // untrusted input is a bomb waiting to go off: refused (P-13).
    if headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
    {
        return Err(Rejection::bad_request(
            "compressed request bodies are not accepted; send plain JSON",
            "encoded_body",
        )
        .with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE));
    }
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
    response: Response<UpstreamBody>,
    record: &mut RequestRecord,
    guard: Option<ResponseGuard>,
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
        return Ok(Relay::Stream(Box::new(StreamParts {
            status: parts.status,
            headers,
            body,
            guard,
        })));
    }
    let bytes =
        read_upstream_body(body, gw.limits.max_response_bytes, gw.upstream_idle_timeout).await?;
    record.mark_first_byte();
    let bytes = if parts.status.is_success() {
        let usage = airlock_wire::usage_of(&bytes);
        (record.data.input_tokens, record.data.output_tokens) = (usage.input, usage.output);
        match guard {
            Some(guard) => guard_json(bytes, guard, record)?,
            None => bytes,
        }
    } else {
        scrub_key(bytes, gw.upstream_key_bytes())
    };
    let mut out = Response::new(full(bytes));
    *out.status_mut() = parts.status;
    *out.headers_mut() = headers;
    Ok(Relay::Full(out))
}

async fn read_upstream_body(
    mut body: UpstreamBody,
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
