//! Optional trace export (`telemetry.otlp_endpoint`): each request becomes a server span with
//! a child span per stage (authenticate, read_body, policy, audit, approval, limits, upstream),
//! sent as OTLP/HTTP JSON (`POST .../v1/traces`) in batches by a background task. A client's
//! W3C `traceparent` makes the request part of the caller's trace.
//!
//! Bounded: at most [`QUEUE`] requests wait for export (more are dropped and counted in the
//! log); a collector that is down costs a warning, never a request. Spans carry the
//! request's metadata (route, status, decision, model, subject) — never prompt text.

use crate::record::{RecordData, RecordSink};
use serde_json::{Value, json};
use std::time::Duration;

/// Requests waiting for export; past it, traces are dropped.
const QUEUE: usize = 4096;
/// Spans per POST at most, and how often a partial batch goes out.
const BATCH: usize = 512;
const FLUSH: Duration = Duration::from_secs(1);

/// `00-<trace id>-<parent id>-<flags>` → (trace id, parent span id); `None` if malformed or
/// all zero (W3C Trace Context).
pub fn parse_traceparent(v: &str) -> Option<(String, String)> {
    let parts: Vec<&str> = v.trim().split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    match parts.as_slice() {
        [version, trace, parent, flags]
            if hex(version, 2)
                && *version != "ff"
                && hex(trace, 32)
                && hex(parent, 16)
                && hex(flags, 2)
                && trace.bytes().any(|b| b != b'0')
                && parent.bytes().any(|b| b != b'0') =>
        {
            Some(((*trace).to_owned(), (*parent).to_owned()))
        }
        _ => None,
    }
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn attr(key: &str, value: Value) -> Value {
    let v = match value {
        Value::Number(n) if n.is_u64() || n.is_i64() => json!({"intValue": n.to_string()}),
        Value::Bool(b) => json!({"boolValue": b}),
        Value::String(s) => json!({"stringValue": s}),
        other => json!({"stringValue": other.to_string()}),
    };
    json!({"key": key, "value": v})
}

/// The spans of one request (OTLP JSON).
pub fn spans(r: &RecordData) -> Vec<Value> {
    let (trace_id, parent) = match &r.trace_parent {
        Some((t, p)) => (t.clone(), Some(p.clone())),
        None => (random_hex(16), None),
    };
    let root = random_hex(8);
    let ns = |d: Duration| r.started_unix_ns + d.as_nanos();
    let failed = r.status.is_none_or(|s| s >= 500);
    let mut attrs = vec![
        attr("airlock.request_id", json!(r.request_id)),
        attr("http.request.method", json!(r.method)),
        attr("http.route", json!(r.route)),
        attr("airlock.outcome", json!(r.outcome.as_str())),
        attr("airlock.reason", json!(r.reason)),
        attr("airlock.stream", json!(r.stream)),
    ];
    let optional = [
        ("http.response.status_code", r.status.map(|s| json!(s))),
        ("airlock.decision", r.decision.map(|d| json!(d))),
        ("enduser.id", r.subject.as_ref().map(|s| json!(s))),
        ("gen_ai.request.model", r.model.as_ref().map(|m| json!(m))),
        ("gen_ai.usage.input_tokens", r.input_tokens.map(|n| json!(n))),
        ("gen_ai.usage.output_tokens", r.output_tokens.map(|n| json!(n))),
        ("airlock.limited_by", r.limited_by.as_ref().map(|l| json!(l))),
    ];
    attrs.extend(optional.into_iter().filter_map(|(k, v)| v.map(|v| attr(k, v))));
    let mut root_span = json!({
        "traceId": trace_id,
        "spanId": root,
        "name": format!("{} {}", r.method, r.route),
        "kind": 2,
        "startTimeUnixNano": r.started_unix_ns.to_string(),
        "endTimeUnixNano": ns(r.duration).to_string(),
        "attributes": attrs,
        "status": {"code": if failed { 2 } else { 1 }},
    });
    if let (Some(p), Some(o)) = (parent, root_span.as_object_mut()) {
        o.insert("parentSpanId".into(), json!(p));
    }
    let mut out = vec![root_span];
    for s in &r.stages {
        out.push(json!({
            "traceId": trace_id,
            "spanId": random_hex(8),
            "parentSpanId": root,
            "name": s.name,
            "kind": if s.name == "upstream" { 3 } else { 1 },
            "startTimeUnixNano": ns(s.start).to_string(),
            "endTimeUnixNano": ns(s.start + s.duration).to_string(),
        }));
    }
    out
}

/// Exports every delivered record's spans.
#[derive(Debug)]
pub struct Exporter {
    tx: tokio::sync::mpsc::Sender<Vec<Value>>,
}

impl Exporter {
    /// Start the background sender for `endpoint` (an OTLP/HTTP traces URL).
    pub fn start(endpoint: String, service: String) -> Result<Exporter, crate::UpstreamSetupError> {
        let fetcher = crate::fetch::Fetcher::new(Duration::from_secs(10))?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Value>>(QUEUE);
        tokio::spawn(async move {
            let mut batch: Vec<Value> = Vec::new();
            loop {
                let more = tokio::select! {
                    r = rx.recv() => r,
                    () = tokio::time::sleep(FLUSH), if !batch.is_empty() => Some(Vec::new()),
                };
                let Some(spans) = more else { break };
                let timed_out = spans.is_empty();
                batch.extend(spans);
                if batch.len() >= BATCH || (timed_out && !batch.is_empty()) {
                    send(&fetcher, &endpoint, &service, std::mem::take(&mut batch)).await;
                }
            }
            if !batch.is_empty() {
                send(&fetcher, &endpoint, &service, batch).await;
            }
        });
        Ok(Exporter { tx })
    }
}

async fn send(fetcher: &crate::fetch::Fetcher, endpoint: &str, service: &str, spans: Vec<Value>) {
    let body = json!({
        "resourceSpans": [{
            "resource": {"attributes": [attr("service.name", json!(service)),
                                        attr("service.version", json!(env!("CARGO_PKG_VERSION")))]},
            "scopeSpans": [{"scope": {"name": "airlock"}, "spans": spans}],
        }]
    });
    match fetcher.post_json(endpoint, body.to_string()).await {
        Ok(r) if r.status.is_success() => {}
        Ok(r) => {
            tracing::warn!(target: "airlock::trace", status = r.status.as_u16(), "trace collector refused spans")
        }
        Err(e) => {
            tracing::warn!(target: "airlock::trace", error = %e, "trace collector unreachable")
        }
    }
}

impl RecordSink for Exporter {
    fn record(&self, r: &RecordData) {
        if self.tx.try_send(spans(r)).is_err() {
            tracing::warn!(target: "airlock::trace", "trace export is behind; a request's spans were dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent() {
        let t = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            parse_traceparent(t),
            Some(("4bf92f3577b34da6a3ce929d0e0e4736".into(), "00f067aa0ba902b7".into()))
        );
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad}");
        }
    }
}
