//! Prometheus metrics for the admin listener's `/metrics` (text exposition format 0.0.4).
//!
//! Every request's record reaches [`Metrics`] as a [`RecordSink`] when it is delivered, so
//! the request series count exactly what the audit log records. Label values come from
//! bounded sets (routes, statuses, decisions, rule ids, detector names) or are capped per
//! family ([`MAX_SERIES`]: further values become `other`); no subject, token or request id
//! is ever a label.

use crate::record::{RecordData, RecordSink};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Distinct label sets per family; past it, new values are counted under `other`.
pub const MAX_SERIES: usize = 500;

/// Latency buckets, seconds: 100 µs to 5 minutes.
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0, 300.0,
];

#[derive(Debug)]
struct Family<V> {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    series: Mutex<BTreeMap<Vec<String>, V>>,
}

impl<V: Default> Family<V> {
    fn new(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Self {
        Family { name, help, labels, series: Mutex::new(BTreeMap::new()) }
    }

    fn with(&self, values: &[&str], f: impl FnOnce(&mut V)) {
        let mut s = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let key: Vec<String> = values.iter().map(|v| (*v).to_owned()).collect();
        if !s.contains_key(&key) && s.len() >= MAX_SERIES {
            let other = vec!["other".to_owned(); values.len()];
            f(s.entry(other).or_default());
            return;
        }
        f(s.entry(key).or_default());
    }
}

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS.len()];
        }
        for (i, b) in BUCKETS.iter().enumerate() {
            if seconds <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn label_text(names: &[&str], values: &[String], extra: Option<(&str, &str)>) -> String {
    let mut parts: Vec<String> =
        names.iter().zip(values).map(|(n, v)| format!("{n}=\"{}\"", escape(v))).collect();
    if let Some((n, v)) = extra {
        parts.push(format!("{n}=\"{v}\""));
    }
    if parts.is_empty() { String::new() } else { format!("{{{}}}", parts.join(",")) }
}

impl Family<u64> {
    fn inc(&self, values: &[&str], n: u64) {
        self.with(values, |v| *v += n);
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}\n# TYPE {} counter", self.name, self.help, self.name);
        for (k, v) in self.series.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "{}{} {v}", self.name, label_text(self.labels, k, None));
        }
    }
}

impl Family<Histogram> {
    fn observe(&self, values: &[&str], d: Duration) {
        self.with(values, |h| h.observe(d.as_secs_f64()));
    }

    fn render(&self, out: &mut String) {
        let n = self.name;
        let _ = writeln!(out, "# HELP {n} {}\n# TYPE {n} histogram", self.help);
        for (k, h) in self.series.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            for (i, b) in BUCKETS.iter().enumerate() {
                let le = b.to_string();
                let c = h.counts.get(i).copied().unwrap_or(0);
                let _ = writeln!(
                    out,
                    "{n}_bucket{} {c}",
                    label_text(self.labels, k, Some(("le", &le)))
                );
            }
            let inf = label_text(self.labels, k, Some(("le", "+Inf")));
            let _ = writeln!(out, "{n}_bucket{inf} {}", h.count);
            let _ = writeln!(out, "{n}_sum{} {}", label_text(self.labels, k, None), h.sum);
            let _ = writeln!(out, "{n}_count{} {}", label_text(self.labels, k, None), h.count);
        }
    }
}

/// Requests per second over the last minute (a ring of per-second counts).
#[derive(Debug)]
struct Rate {
    /// (unix second, count) per slot `second % 60`.
    slots: [(i64, u64); 60],
}

impl Default for Rate {
    fn default() -> Self {
        Rate { slots: [(i64::MIN, 0); 60] }
    }
}

impl Rate {
    fn add(&mut self, now_s: i64) {
        let slot = &mut self.slots[now_s.rem_euclid(60) as usize];
        if slot.0 != now_s {
            *slot = (now_s, 0);
        }
        slot.1 += 1;
    }

    /// Requests that ended in the 60 seconds before `now_s`.
    fn last_minute(&self, now_s: i64) -> u64 {
        self.slots.iter().filter(|(s, _)| *s <= now_s && *s > now_s - 60).map(|(_, n)| n).sum()
    }
}

/// Requests per minute by decision over the last hour (the web UI's overview chart).
#[derive(Debug, Default)]
struct History {
    /// (unix minute, decision → count), oldest first, at most 60.
    minutes: std::collections::VecDeque<(i64, BTreeMap<String, u64>)>,
}

impl History {
    fn add(&mut self, minute: i64, decision: &str) {
        if self.minutes.back().is_none_or(|(m, _)| *m != minute) {
            self.minutes.push_back((minute, BTreeMap::new()));
            while self.minutes.len() > 60 {
                self.minutes.pop_front();
            }
        }
        if let Some((_, m)) = self.minutes.back_mut() {
            let key = if m.len() >= 8 && !m.contains_key(decision) { "other" } else { decision };
            *m.entry(key.to_owned()).or_default() += 1;
        }
    }
}

/// What the web UI's overview shows: the same numbers as `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct Overview {
    /// (unix minute, [(decision, count)]), the last hour, oldest first.
    pub per_minute: Vec<(i64, Vec<(String, u64)>)>,
    /// (rule, mode, matches), most matched first.
    pub rules: Vec<(String, String, u64)>,
    /// (direction, model, group, tokens), most first.
    pub tokens: Vec<(String, String, String, u64)>,
    pub last_minute: u64,
}

#[derive(Debug)]
pub struct Metrics {
    rate: Mutex<Rate>,
    history: Mutex<History>,
    requests: Family<u64>,
    rule_hits: Family<u64>,
    duration: Family<Histogram>,
    overhead: Family<Histogram>,
    upstream: Family<Histogram>,
    first_byte: Family<Histogram>,
    tokens: Family<u64>,
    redactions: Family<u64>,
    masked: Family<u64>,
    limit_rejections: Family<u64>,
    upstream_errors: Family<u64>,
    approvals: Family<u64>,
    approval_wait: Family<Histogram>,
    audit_append: Family<Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics {
            rate: Mutex::new(Rate::default()),
            history: Mutex::new(History::default()),
            requests: Family::new(
                "airlock_requests_total",
                "Requests by route, status, decision and outcome.",
                &["route", "status", "decision", "outcome"],
            ),
            rule_hits: Family::new(
                "airlock_rule_matches_total",
                "Policy rules that matched, by rule and mode (dry_run and warn included).",
                &["rule", "mode"],
            ),
            duration: Family::new(
                "airlock_request_duration_seconds",
                "Whole request, from its head to the end of the response (streams included).",
                &["route", "stream"],
            ),
            overhead: Family::new(
                "airlock_gateway_overhead_seconds",
                "Forwarded requests: time to first byte minus the upstream's time to headers.",
                &["route", "stream"],
            ),
            upstream: Family::new(
                "airlock_upstream_duration_seconds",
                "From sending upstream to its response headers.",
                &["route"],
            ),
            first_byte: Family::new(
                "airlock_time_to_first_byte_seconds",
                "From the request head to the first response byte sent to the client.",
                &["route", "stream"],
            ),
            tokens: Family::new(
                "airlock_tokens_total",
                "Tokens from responses' usage, by direction, model and caller group (counted once per group).",
                &["direction", "model", "group"],
            ),
            redactions: Family::new(
                "airlock_request_redactions_total",
                "Values redacted from requests, by detector.",
                &["detector"],
            ),
            masked: Family::new(
                "airlock_response_masks_total",
                "Values masked in responses, by detector.",
                &["detector"],
            ),
            limit_rejections: Family::new(
                "airlock_limit_rejections_total",
                "Requests refused by a policy limit, by limit and what it counts.",
                &["limit", "what"],
            ),
            upstream_errors: Family::new(
                "airlock_upstream_errors_total",
                "Upstream failures by kind (the request's reason).",
                &["kind"],
            ),
            approvals: Family::new(
                "airlock_approvals_total",
                "Held requests by how the hold ended.",
                &["state"],
            ),
            approval_wait: Family::new(
                "airlock_approval_wait_seconds",
                "How long held requests waited for a decision.",
                &[],
            ),
            audit_append: Family::new(
                "airlock_audit_append_seconds",
                "Time the request path waited for its audit entry before forwarding (near 0 in batch durability).",
                &[],
            ),
        }
    }

    /// Requests that ended in the last 60 seconds.
    pub fn requests_last_minute(&self) -> u64 {
        let now = airlock_store::now_ms() / 1000;
        self.rate.lock().unwrap_or_else(|e| e.into_inner()).last_minute(now)
    }

    /// How many times each rule matched (dry-run and warn included), by (rule, mode).
    pub fn rule_matches(&self) -> Vec<(String, String, u64)> {
        let s = self.rule_hits.series.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = s.iter().map(|(k, n)| (k[0].clone(), k[1].clone(), *n)).collect();
        v.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
        v
    }

    pub fn overview(&self) -> Overview {
        let per_minute = {
            let h = self.history.lock().unwrap_or_else(|e| e.into_inner());
            h.minutes
                .iter()
                .map(|(m, d)| (*m, d.iter().map(|(k, v)| (k.clone(), *v)).collect()))
                .collect()
        };
        let tokens = {
            let s = self.tokens.series.lock().unwrap_or_else(|e| e.into_inner());
            let mut v: Vec<_> =
                s.iter().map(|(k, n)| (k[0].clone(), k[1].clone(), k[2].clone(), *n)).collect();
            v.sort_by_key(|t| std::cmp::Reverse(t.3));
            v
        };
        Overview {
            per_minute,
            rules: self.rule_matches(),
            tokens,
            last_minute: self.requests_last_minute(),
        }
    }

    pub fn audit_append(&self, d: Duration) {
        self.audit_append.observe(&[], d);
    }

    /// The Prometheus text of every family (gauges computed elsewhere are appended by the
    /// caller).
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.requests.render(&mut out);
        self.rule_hits.render(&mut out);
        self.duration.render(&mut out);
        self.overhead.render(&mut out);
        self.upstream.render(&mut out);
        self.first_byte.render(&mut out);
        self.tokens.render(&mut out);
        self.redactions.render(&mut out);
        self.masked.render(&mut out);
        self.limit_rejections.render(&mut out);
        self.upstream_errors.render(&mut out);
        self.approvals.render(&mut out);
        self.approval_wait.render(&mut out);
        self.audit_append.render(&mut out);
        out
    }
}

/// Reasons that mean the upstream failed (not the client, not the policy).
fn upstream_failure(reason: &str) -> bool {
    reason.starts_with("upstream_") || reason == "request_timeout"
}

impl RecordSink for Metrics {
    fn record(&self, r: &RecordData) {
        let status = r.status.map_or_else(|| "none".to_owned(), |s| s.to_string());
        let decision = r.decision.unwrap_or("none");
        let stream = if r.stream { "true" } else { "false" };
        if r.route != "admin" && r.route != "ui" {
            // The request rate is the data plane's: people reading the admin plane are not traffic.
            let now_s = airlock_store::now_ms() / 1000;
            self.rate.lock().unwrap_or_else(|e| e.into_inner()).add(now_s);
            self.history.lock().unwrap_or_else(|e| e.into_inner()).add(now_s / 60, decision);
        }
        self.requests.inc(&[r.route, &status, decision, r.outcome.as_str()], 1);
        for h in &r.rules {
            self.rule_hits.inc(&[&h.id, h.mode], 1);
        }
        self.duration.observe(&[r.route, stream], r.duration);
        if let Some(t) = r.time_to_first_byte {
            self.first_byte.observe(&[r.route, stream], t);
        }
        if let Some(u) = r.upstream_latency {
            self.upstream.observe(&[r.route], u);
            if let Some(t) = r.time_to_first_byte {
                self.overhead.observe(&[r.route, stream], t.saturating_sub(u));
            }
        }
        let model = r.model.as_deref().unwrap_or("none");
        let groups: Vec<&str> = if r.groups.is_empty() {
            vec!["none"]
        } else {
            r.groups.iter().map(String::as_str).collect()
        };
        for g in &groups {
            if let Some(n) = r.input_tokens.filter(|n| *n > 0) {
                self.tokens.inc(&["input", model, g], n);
            }
            if let Some(n) = r.output_tokens.filter(|n| *n > 0) {
                self.tokens.inc(&["output", model, g], n);
            }
        }
        for (d, n) in &r.redactions {
            self.redactions.inc(&[d], u64::from(*n));
        }
        for (d, n) in &r.masked {
            self.masked.inc(&[d], u64::from(*n));
        }
        if let Some(l) = &r.limited_by {
            let (limit, what) = l.rsplit_once(':').unwrap_or((l, ""));
            self.limit_rejections.inc(&[limit, what], 1);
        }
        if upstream_failure(r.reason) {
            self.upstream_errors.inc(&[r.reason], 1);
        }
        if let Some(a) = &r.approval {
            self.approvals.inc(&[a.state], 1);
            if matches!(a.state, "approved" | "denied" | "expired") {
                self.approval_wait.observe(&[], Duration::from_millis(a.waited_ms));
            }
        }
    }
}

/// Several sinks in order: the metrics, the trace exporter if any, then the configured one
/// (logs, or a test's collector).
pub struct Fanout(pub Vec<std::sync::Arc<dyn RecordSink>>);

impl std::fmt::Debug for Fanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fanout({})", self.0.len())
    }
}

impl RecordSink for Fanout {
    fn record(&self, r: &RecordData) {
        for s in &self.0 {
            s.record(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_counts_the_last_minute() {
        let mut r = Rate::default();
        assert_eq!(r.last_minute(1000), 0);
        r.add(1000);
        r.add(1000);
        r.add(1030);
        assert_eq!(r.last_minute(1030), 3);
        assert_eq!(r.last_minute(1061), 1, "the two at 1000 are over a minute old");
        r.add(1060);
        assert_eq!(r.last_minute(1060), 2, "slot 40 reused for 1060 replaces second 1000");
    }

    #[test]
    fn cardinality_is_capped_and_values_escaped() {
        let f: Family<u64> = Family::new("x_total", "x", &["v"]);
        for i in 0..MAX_SERIES + 10 {
            f.inc(&[&format!("v{i}")], 1);
        }
        f.inc(&["a\"b\\c\nd"], 1);
        let mut out = String::new();
        f.render(&mut out);
        assert_eq!(out.lines().filter(|l| l.starts_with("x_total")).count(), MAX_SERIES + 1);
        assert!(out.contains("x_total{v=\"other\"} 11"), "{out}");
    }
}
