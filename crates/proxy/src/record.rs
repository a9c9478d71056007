//! The per-request record: exactly one per request, whatever happens to it.
//!
//! A [`RequestRecord`] is created when a request arrives and delivered to the [`RecordSink`]
//! when it is dropped. Its outcome starts as `client_aborted`, so a request whose future is
//! dropped (the client went away) is still recorded; each stage overwrites the outcome as it
//! learns more. For a stream the record moves into the response body and is delivered when
//! the stream ends or is abandoned. This is the seam the audit log attaches to.
//!
//! With the audit log on, the record also writes the request's audit entries: the `request`
//! entry before forwarding ([`RequestRecord::open_audit`]) and the final entry on drop (or,
//! in `strict` mode, before the response is released: [`RequestRecord::close_strict`]).
//!
//! Invariant: the record holds no token or key, and prompt or completion text only as masked
//! copies (every detected value replaced by its placeholder).

use crate::audit::{Audit, Pending};
use crate::reject::Rejection;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream response was relayed to the end.
    Completed,
    /// The gateway answered with an error of its own (auth, validation, upstream failure).
    Rejected,
    /// A stream started and then failed (upstream reset, idle timeout, bad SSE).
    StreamFailed,
    /// The client went away before the response was complete.
    ClientAborted,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Rejected => "rejected",
            Outcome::StreamFailed => "stream_failed",
            Outcome::ClientAborted => "client_aborted",
        }
    }
}

/// A request held for approval: what happened to the hold.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ApprovalNote {
    pub id: String,
    pub rule: String,
    /// `wait` or `ticket`.
    pub mode: &'static str,
    /// `pending`, `approved`, `denied`, `expired`, `abandoned`, `redeemed` (a ticket), or
    /// `granted` (passed under a standing grant; `id` is then the grant's).
    pub state: &'static str,
    pub decided_by: Option<String>,
    pub reason: Option<String>,
    /// SHA-256 of the exact body held (and, once approved, forwarded).
    #[serde(rename = "body_sha256")]
    pub body_hash: String,
    pub waited_ms: u64,
}

/// One timed stage of a request (a span in an exported trace).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stage {
    pub name: &'static str,
    /// From the start of the request.
    pub start: Duration,
    pub duration: Duration,
}

/// What is known about one request.
#[derive(Debug, Clone)]
pub struct RecordData {
    pub request_id: String,
    pub method: String,
    pub route: &'static str,
    pub subject: Option<String>,
    pub groups: Vec<String>,
    /// `airlock` for session tokens, the IdP's URL for IdP tokens.
    pub issuer: Option<String>,
    /// The presented token's id (`jti`, or `fp:` and a hash prefix when it has none).
    pub token_id: Option<String>,
    /// The session token issued by this request (`/auth/token`), if any.
    pub minted_token_id: Option<String>,
    pub model: Option<String>,
    /// The client's IP address.
    pub client_addr: Option<String>,
    /// The client's `User-Agent`, cut to 256 bytes.
    pub user_agent: Option<String>,
    /// What the gateway decided about forwarding (`allow` once it is forwarded).
    pub decision: Option<&'static str>,
    pub stream: bool,
    pub status: Option<u16>,
    pub outcome: Outcome,
    pub reason: &'static str,
    pub upstream_status: Option<u16>,
    pub upstream_request_id: Option<String>,
    pub upstream_attempts: u32,
    /// Token usage reported by the upstream (`usage`, or the stream's message events).
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    /// From sending upstream to its response headers.
    pub upstream_latency: Option<Duration>,
    pub time_to_first_byte: Option<Duration>,
    pub duration: Duration,
    pub events: u64,
    /// The policy version that judged the request.
    pub policy_version: Option<String>,
    /// Rules that matched (request rules, then tool-call rules), whatever their mode.
    pub rules: Vec<RuleHit>,
    /// Values redacted from the request / masked in the response, per detector.
    pub redactions: Vec<(String, u32)>,
    pub masked: Vec<(String, u32)>,
    /// `max_tokens` lowered from → to.
    pub clamped: Option<(u64, u64)>,
    pub stripped_tools: Vec<String>,
    /// The request as forwarded and the response as the client received it (a stream
    /// assembled), each with every detected value replaced by a placeholder and cut at
    /// `audit.max_body_bytes`: the only prompt or completion text a record holds.
    pub request_body: Option<Box<serde_json::value::RawValue>>,
    pub response_body: Option<Box<serde_json::value::RawValue>>,
    /// The approval this request was held for, if any.
    pub approval: Option<ApprovalNote>,
    /// The limit that refused it (`id:what`), if one did.
    pub limited_by: Option<String>,
    /// Wall-clock start, unix nanoseconds.
    pub started_unix_ns: u128,
    /// The stages the request went through, in order.
    pub stages: Vec<Stage>,
    /// A W3C `traceparent` the client sent: (trace id, parent span id), hex.
    pub trace_parent: Option<(String, String)>,
}

/// A rule that matched, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RuleHit {
    pub id: String,
    pub action: &'static str,
    pub mode: &'static str,
}

impl From<&airlock_policy::Hit> for RuleHit {
    fn from(h: &airlock_policy::Hit) -> RuleHit {
        RuleHit { id: h.id.clone(), action: h.action.as_str(), mode: h.mode.as_str() }
    }
}

/// Where finished records go.
pub trait RecordSink: Send + Sync + 'static {
    fn record(&self, record: &RecordData);
}

/// The default sink: one structured log line per request (no prompt text).
#[derive(Debug)]
pub struct LogSink;

impl RecordSink for LogSink {
    fn record(&self, r: &RecordData) {
        tracing::info!(
            target: "airlock::request",
            request_id = %r.request_id,
            method = %r.method,
            route = r.route,
            subject = r.subject.as_deref().unwrap_or("-"),
            groups = %r.groups.join(","),
            token_id = r.token_id.as_deref().unwrap_or("-"),
            decision = r.decision.unwrap_or("-"),
            rules = %r.rules.iter().map(|h| h.id.as_str()).collect::<Vec<_>>().join(","),
            limited_by = r.limited_by.as_deref().unwrap_or("-"),
            model = r.model.as_deref().unwrap_or("-"),
            stream = r.stream,
            status = r.status.unwrap_or(0),
            outcome = r.outcome.as_str(),
            reason = r.reason,
            upstream_status = r.upstream_status.unwrap_or(0),
            upstream_request_id = r.upstream_request_id.as_deref().unwrap_or("-"),
            events = r.events,
            ttfb_us = r.time_to_first_byte.map(|d| d.as_micros() as u64).unwrap_or(0),
            duration_us = r.duration.as_micros() as u64,
            "request"
        );
    }
}

/// The guard. Delivered to the sink exactly once, on drop.
pub struct RequestRecord {
    pub data: RecordData,
    started: Instant,
    sink: Arc<dyn RecordSink>,
    audit: Option<Audit>,
    /// A `request` audit entry was written: the final entry is its `response`.
    opened: bool,
    /// The final audit entry was already written (strict mode).
    closed: bool,
    /// The request's place among those in flight, released when the record is delivered.
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    /// The connection's write-stall flag: a request cut because its client stopped reading
    /// is recorded as `client_stalled`, not `client_aborted`.
    stalled: Option<crate::edge::Stalled>,
    /// Leases and token windows to settle when the request ends.
    admission: Option<crate::limits::Admission>,
}

impl std::fmt::Debug for RequestRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.data.fmt(f)
    }
}

impl RequestRecord {
    pub fn start(
        request_id: String,
        method: &http::Method,
        sink: Arc<dyn RecordSink>,
        audit: Option<Audit>,
    ) -> RequestRecord {
        RequestRecord {
            data: RecordData {
                request_id,
                method: method.as_str().to_owned(),
                route: "-",
                subject: None,
                groups: Vec::new(),
                issuer: None,
                token_id: None,
                minted_token_id: None,
                model: None,
                client_addr: None,
                user_agent: None,
                decision: None,
                stream: false,
                status: None,
                outcome: Outcome::ClientAborted,
                reason: "client_aborted",
                upstream_status: None,
                upstream_request_id: None,
                upstream_attempts: 0,
                input_tokens: None,
                output_tokens: None,
                upstream_latency: None,
                time_to_first_byte: None,
                duration: Duration::ZERO,
                events: 0,
                policy_version: None,
                rules: Vec::new(),
                redactions: Vec::new(),
                masked: Vec::new(),
                clamped: None,
                stripped_tools: Vec::new(),
                request_body: None,
                response_body: None,
                approval: None,
                limited_by: None,
                started_unix_ns: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos()),
                stages: Vec::new(),
                trace_parent: None,
            },
            started: Instant::now(),
            sink,
            audit,
            opened: false,
            closed: false,
            permit: None,
            stalled: None,
            admission: None,
        }
    }

    /// Record that stage `name` ran from `since` until now.
    pub fn stage(&mut self, name: &'static str, since: Instant) {
        if self.data.stages.len() < 16 {
            let start = since.saturating_duration_since(self.started);
            self.data.stages.push(Stage { name, start, duration: since.elapsed() });
        }
    }

    /// Keep the request's limit admission until it ends (then its usage is counted).
    pub fn hold_admission(&mut self, admission: crate::limits::Admission) {
        self.admission = Some(admission);
    }

    /// Watch the connection this request came on for a write stall.
    pub fn watch_connection(&mut self, stalled: Option<crate::edge::Stalled>) {
        self.stalled = stalled;
    }

    /// Hold a place among the requests in flight until this record is delivered.
    pub fn hold(&mut self, permit: tokio::sync::OwnedSemaphorePermit) {
        self.permit = Some(permit);
    }

    /// Write the `request` audit entry; an error means the request must not be forwarded.
    pub async fn open_audit(&mut self) -> Result<(), Rejection> {
        if let Some(audit) = &self.audit {
            self.opened = audit.record_request(&self.data).await?;
            if self.opened {
                // Stored with the `request` entry, and not again: no need to hold it while
                // the response (perhaps a long stream) comes back.
                self.data.request_body = None;
            }
        }
        Ok(())
    }

    /// In `strict` mode: write the final audit entry now; the caller releases the response
    /// once it commits. `None` in other modes (the entry is written on drop).
    pub fn close_strict(&mut self) -> Option<Pending> {
        self.data.duration = self.started.elapsed();
        let pending = self.audit.as_ref()?.close_strict(&self.data, self.opened)?;
        self.closed = true;
        Some(pending)
    }

    /// The strict commit failed: record the failure on drop instead (best effort).
    pub fn reopen_after_failed_close(&mut self) {
        self.closed = false;
        self.finish(Outcome::StreamFailed, "audit_write_failed");
    }

    pub fn finish(&mut self, outcome: Outcome, reason: &'static str) {
        self.data.outcome = outcome;
        self.data.reason = reason;
    }

    pub fn mark_first_byte(&mut self) {
        if self.data.time_to_first_byte.is_none() {
            self.data.time_to_first_byte = Some(self.started.elapsed());
        }
    }
}

impl Drop for RequestRecord {
    fn drop(&mut self) {
        self.data.duration = self.started.elapsed();
        if self.data.outcome == Outcome::ClientAborted
            && self.stalled.as_ref().is_some_and(crate::edge::Stalled::is_set)
        {
            self.data.reason = "client_stalled";
        }
        if let Some(a) = self.admission.take() {
            a.finish(self.data.input_tokens.unwrap_or(0), self.data.output_tokens.unwrap_or(0));
        }
        // The audit entry is queued before observers hear of the request, so an observer
        // that then syncs the writer finds the entry committed.
        if let (Some(audit), false) = (&self.audit, self.closed) {
            audit.close_detached(&self.data, self.opened);
        }
        self.sink.record(&self.data);
    }
}
