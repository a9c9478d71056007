//! Counting the policy's limits (`limits:`, crates/policy/src/limits.rs): in process for one
//! gateway, or in Redis (`redis:` in the config) for several sharing counters.
//!
//! ```text
//! admit (before forwarding): one atomic step checks every counter that applies — request
//!   and token windows, budgets, concurrency leases — and only if all pass takes a request
//!   from each request window and a lease from each concurrency set. Nothing is taken from
//!   a limit that refused, so bursts never overshoot a request or concurrency limit.
//! finish (when the request's record is delivered): release the leases; add the response's
//!   `usage` to the token windows and budgets.
//! ```
//!
//! Windows are fixed and aligned: the minute, the UTC day, the UTC calendar month. Token
//! limits admit a request while the window's count is under the limit; the tokens of the
//! requests then in flight are counted when they finish, so a token limit can be passed by
//! at most what the requests in flight at that moment use.
//!
//! Invariant: with `redis_on_failure: fail_closed` (the default) a request whose limits
//! cannot be checked is refused (503); with `fail_open` it passes and the failure is logged.

use crate::redis::{Redis, RedisError, Reply, Script};
use airlock_config::civil::{civil_from_days as civil, days_from_civil, rfc3339};
use airlock_policy::limits::Applied;
use airlock_wire::ErrorType;
use http::HeaderValue;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a check counts, for the refusal and its headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum What {
    RequestsPerMinute,
    InputTokensPerMinute,
    OutputTokensPerMinute,
    ConcurrentRequests,
    ConcurrentStreams,
    InputTokensPerDay,
    OutputTokensPerDay,
    InputTokensPerMonth,
    OutputTokensPerMonth,
}

impl What {
    pub fn as_str(self) -> &'static str {
        match self {
            What::RequestsPerMinute => "requests_per_minute",
            What::InputTokensPerMinute => "input_tokens_per_minute",
            What::OutputTokensPerMinute => "output_tokens_per_minute",
            What::ConcurrentRequests => "concurrent_requests",
            What::ConcurrentStreams => "concurrent_streams",
            What::InputTokensPerDay => "input_tokens_per_day",
            What::OutputTokensPerDay => "output_tokens_per_day",
            What::InputTokensPerMonth => "input_tokens_per_month",
            What::OutputTokensPerMonth => "output_tokens_per_month",
        }
    }

    /// Budgets (per day, per month) are spend caps: `billing_error`, not worth retrying soon.
    pub fn is_budget(self) -> bool {
        matches!(
            self,
            What::InputTokensPerDay
                | What::OutputTokensPerDay
                | What::InputTokensPerMonth
                | What::OutputTokensPerMonth
        )
    }

    /// The `airlock-ratelimit-<name>-*` header family this check is reported in.
    fn header(self) -> &'static str {
        match self {
            What::RequestsPerMinute => "requests",
            What::InputTokensPerMinute | What::InputTokensPerDay | What::InputTokensPerMonth => {
                "input-tokens"
            }
            What::OutputTokensPerMinute | What::OutputTokensPerDay | What::OutputTokensPerMonth => {
                "output-tokens"
            }
            What::ConcurrentRequests => "concurrent-requests",
            What::ConcurrentStreams => "concurrent-streams",
        }
    }

    fn is_input(self) -> bool {
        matches!(
            self,
            What::InputTokensPerMinute | What::InputTokensPerDay | What::InputTokensPerMonth
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A request window: checked, and incremented on admission.
    Count,
    /// A token window: checked only (added to when the request finishes).
    Sum,
    /// A concurrency set: checked, and a lease taken on admission.
    Lease,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Count => "count",
            Kind::Sum => "sum",
            Kind::Lease => "lease",
        }
    }
}

#[derive(Debug, Clone)]
struct Check {
    kind: Kind,
    key: String,
    limit: u64,
    /// Milliseconds the key lives (its window, or the lease).
    ttl_ms: i64,
    /// When the window ends (unix ms); for a lease, a second from now.
    reset_ms: i64,
    what: What,
    limit_id: String,
    message: Option<String>,
}

/// A concurrency lease lasts at most this long (a stream longer than it stops counting; a
/// gateway that dies mid-request frees its leases by then).
const LEASE: Duration = Duration::from_secs(3600);

/// The (start, end) of the window of length `what` around `now_ms`, in unix ms, and its tag.
fn window(now_ms: i64, per: Per) -> (i64, String) {
    let secs = now_ms.div_euclid(1000);
    match per {
        Per::Minute => {
            let w = secs.div_euclid(60);
            ((w + 1) * 60_000, format!("m{w}"))
        }
        Per::Day => {
            let d = secs.div_euclid(86_400);
            ((d + 1) * 86_400_000, format!("d{d}"))
        }
        Per::Month => {
            let (y, m) = civil_month(secs.div_euclid(86_400));
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            (days_from_civil(ny, nm, 1) * 86_400_000, format!("M{y:04}{m:02}"))
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Per {
    Minute,
    Day,
    Month,
}

/// (year, month) of a day count since 1970-01-01.
fn civil_month(days: i64) -> (i64, i64) {
    let (y, m, _) = civil(days);
    (y, m)
}

/// Every check that applies, for a request (`stream` adds the stream concurrency sets).
fn checks(applied: &[Applied], stream: bool, now_ms: i64) -> Vec<Check> {
    let mut out = Vec::new();
    for a in applied {
        let l = &a.limit;
        let base = format!("airlock:limit:{}:{}", l.id, a.scope);
        let mut add = |kind: Kind, what: What, limit: Option<u64>, per: Option<Per>| {
            let Some(limit) = limit else { return };
            let (key, ttl_ms, reset_ms) = match per {
                Some(per) => {
                    let (end, tag) = window(now_ms, per);
                    (format!("{base}:{}:{tag}", what.as_str()), end - now_ms + 60_000, end)
                }
                None => {
                    (format!("{base}:{}", what.as_str()), LEASE.as_millis() as i64, now_ms + 1000)
                }
            };
            out.push(Check {
                kind,
                key,
                limit,
                ttl_ms,
                reset_ms,
                what,
                limit_id: l.id.clone(),
                message: l.message.clone(),
            });
        };
        add(Kind::Count, What::RequestsPerMinute, l.requests_per_minute, Some(Per::Minute));
        add(Kind::Sum, What::InputTokensPerMinute, l.input_tokens_per_minute, Some(Per::Minute));
        add(Kind::Sum, What::OutputTokensPerMinute, l.output_tokens_per_minute, Some(Per::Minute));
        add(Kind::Sum, What::InputTokensPerDay, l.input_tokens_per_day, Some(Per::Day));
        add(Kind::Sum, What::OutputTokensPerDay, l.output_tokens_per_day, Some(Per::Day));
        add(Kind::Sum, What::InputTokensPerMonth, l.input_tokens_per_month, Some(Per::Month));
        add(Kind::Sum, What::OutputTokensPerMonth, l.output_tokens_per_month, Some(Per::Month));
        add(Kind::Lease, What::ConcurrentRequests, l.concurrent_requests, None);
        if stream {
            add(Kind::Lease, What::ConcurrentStreams, l.concurrent_streams, None);
        }
    }
    out
}

/// Check every counter; if all are under their limits, take a request from each request
/// window and a lease (`member`, until `now + LEASE`) from each concurrency set. Returns the
/// 1-based index of the first refusing check and its count, or `{0, 0}`.
const ADMIT: &str = r"
local now = tonumber(ARGV[1])
local member = ARGV[2]
local lease = tonumber(ARGV[3])
for i = 1, #KEYS do
  local kind = ARGV[1 + i * 3]
  local limit = tonumber(ARGV[2 + i * 3])
  local used
  if kind == 'lease' then
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
    used = redis.call('ZCARD', KEYS[i])
  else
    used = tonumber(redis.call('GET', KEYS[i]) or '0')
  end
  if used >= limit then return {i, used} end
end
for i = 1, #KEYS do
  local kind = ARGV[1 + i * 3]
  local ttl = tonumber(ARGV[3 + i * 3])
  if kind == 'count' then
    redis.call('INCR', KEYS[i])
    redis.call('PEXPIRE', KEYS[i], ttl)
  elseif kind == 'lease' then
    redis.call('ZADD', KEYS[i], now + lease, member)
    redis.call('PEXPIRE', KEYS[i], lease)
  end
end
return {0, 0}
";

/// Release `member`'s leases (KEYS[1..=ARGV[2]]) and add ARGV[3..] amounts (with their
/// TTLs) to the remaining keys.
const FINISH: &str = r"
local member = ARGV[1]
local leases = tonumber(ARGV[2])
for i = 1, leases do redis.call('ZREM', KEYS[i], member) end
for i = leases + 1, #KEYS do
  local j = (i - leases - 1) * 2
  local n = tonumber(ARGV[3 + j])
  if n > 0 then
    redis.call('INCRBY', KEYS[i], n)
    redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[4 + j]))
  end
end
return 1
";

#[derive(Debug)]
enum Backend {
    Local(Mutex<Local>),
    Redis { redis: Redis, admit: Script, finish: Script },
}

/// In-process counters (one gateway).
#[derive(Debug, Default)]
struct Local {
    counts: HashMap<String, (u64, i64)>,
    leases: HashMap<String, HashMap<String, i64>>,
    ops: u64,
}

impl Local {
    fn used(&mut self, c: &Check, now: i64) -> u64 {
        match c.kind {
            Kind::Lease => {
                let set = self.leases.entry(c.key.clone()).or_default();
                set.retain(|_, until| *until > now);
                set.len() as u64
            }
            _ => self.counts.get(&c.key).filter(|(_, exp)| *exp > now).map_or(0, |(n, _)| *n),
        }
    }

    fn admit(&mut self, checks: &[Check], now: i64, member: &str) -> Option<(usize, u64)> {
        self.ops += 1;
        if self.ops.is_multiple_of(4096) {
            self.counts.retain(|_, (_, exp)| *exp > now);
            self.leases.retain(|_, set| {
                set.retain(|_, until| *until > now);
                !set.is_empty()
            });
        }
        for (i, c) in checks.iter().enumerate() {
            let used = self.used(c, now);
            if used >= c.limit {
                return Some((i, used));
            }
        }
        for c in checks {
            match c.kind {
                Kind::Count => {
                    let e = self.counts.entry(c.key.clone()).or_insert((0, now + c.ttl_ms));
                    if e.1 <= now {
                        *e = (0, now + c.ttl_ms);
                    }
                    e.0 += 1;
                }
                Kind::Lease => {
                    let until = now + LEASE.as_millis() as i64;
                    self.leases.entry(c.key.clone()).or_default().insert(member.to_owned(), until);
                }
                Kind::Sum => {}
            }
        }
        None
    }

    fn finish(&mut self, leases: &[String], member: &str, adds: &[(String, u64, i64)], now: i64) {
        for k in leases {
            if let Some(set) = self.leases.get_mut(k) {
                set.remove(member);
            }
        }
        for (k, n, ttl) in adds {
            let e = self.counts.entry(k.clone()).or_insert((0, now + ttl));
            if e.1 <= now {
                *e = (0, now + ttl);
            }
            e.0 += n;
        }
    }
}

/// A request's refusal by a limit.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub limit_id: String,
    pub what: What,
    pub limit: u64,
    pub used: u64,
    pub reset_ms: i64,
    pub message: Option<String>,
}

impl Refusal {
    /// 429: `rate_limit_error` with `retry-after`, or `billing_error` for a budget (with
    /// `x-should-retry: false`); `airlock-ratelimit-<kind>-limit|remaining|reset` say which.
    pub fn rejection(&self, now_ms: i64) -> crate::reject::Rejection {
        let budget = self.what.is_budget();
        let kind = if budget { ErrorType::Billing } else { ErrorType::RateLimit };
        let wait_s = ((self.reset_ms - now_ms).max(0) + 999) / 1000;
        let extra = self.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default();
        let message = format!(
            "limit `{}` reached ({} {} of {}); it resets in {wait_s}s{extra}",
            self.limit_id,
            self.what.as_str(),
            self.used,
            self.limit
        );
        let mut r = crate::reject::Rejection::new(
            kind,
            message,
            crate::reject::Fault::Client,
            if budget { "budget_exhausted" } else { "rate_limited" },
        )
        .with_status(http::StatusCode::TOO_MANY_REQUESTS)
        .with_retry_after(wait_s.max(1) as u64);
        r.no_retry = budget;
        let h = self.what.header();
        let reset = rfc3339(self.reset_ms / 1000);
        for (suffix, value) in
            [("limit", self.limit.to_string()), ("remaining", "0".into()), ("reset", reset)]
        {
            let name =
                http::HeaderName::from_bytes(format!("airlock-ratelimit-{h}-{suffix}").as_bytes());
            if let (Ok(name), Ok(v)) = (name, HeaderValue::from_str(&value)) {
                r.headers.push((name, v));
            }
        }
        r
    }
}

/// What an admitted request holds: its leases, and where its usage goes when it finishes.
#[derive(Debug)]
pub struct Admission {
    limiter: Arc<Limiter>,
    member: String,
    leases: Vec<String>,
    /// (key, what, ttl) of each token window the usage is added to.
    sums: Vec<(String, What, i64)>,
}

impl Admission {
    /// The request ended: release its leases, count its tokens. Runs in the background.
    pub fn finish(self, input_tokens: u64, output_tokens: u64) {
        let adds: Vec<(String, u64, i64)> = self
            .sums
            .iter()
            .map(|(k, what, ttl)| {
                (k.clone(), if what.is_input() { input_tokens } else { output_tokens }, *ttl)
            })
            .collect();
        if self.leases.is_empty() && adds.iter().all(|(_, n, _)| *n == 0) {
            return;
        }
        if let Backend::Local(local) = &self.limiter.backend {
            // In process: settle now, so the next request of this caller sees it.
            let now = airlock_store::now_ms();
            local.lock().unwrap_or_else(|e| e.into_inner()).finish(
                &self.leases,
                &self.member,
                &adds,
                now,
            );
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        let (limiter, member, leases) = (self.limiter, self.member, self.leases);
        limiter.unsettled.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        rt.spawn(async move {
            if let Err(e) = limiter.finish(&leases, &member, &adds).await {
                tracing::warn!(target: "airlock::limits", error = %e, "could not record usage against limits");
            }
            limiter.unsettled.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
            limiter.settled.notify_waiters();
        });
    }
}

#[derive(Debug)]
pub struct Limiter {
    backend: Backend,
    fail_open: bool,
    /// Finishes (lease releases, usage) sent to Redis and not yet done, and a wake-up when
    /// one is: what [`Limiter::settled`] waits on.
    unsettled: std::sync::atomic::AtomicU64,
    settled: tokio::sync::Notify,
}

/// What admission decided.
#[derive(Debug)]
pub enum Decision {
    Admitted(Option<Admission>),
    Refused(Refusal),
}

impl Limiter {
    pub fn local() -> Limiter {
        Limiter {
            backend: Backend::Local(Mutex::new(Local::default())),
            fail_open: false,
            unsettled: Default::default(),
            settled: Default::default(),
        }
    }

    pub fn redis(url: &str, fail_open: bool) -> Result<Limiter, RedisError> {
        Ok(Limiter {
            backend: Backend::Redis {
                redis: Redis::new(url, REDIS_DEADLINE)?,
                admit: Script::new(ADMIT),
                finish: Script::new(FINISH),
            },
            fail_open,
            unsettled: Default::default(),
            settled: Default::default(),
        })
    }

    /// Resolves once every finished request's leases and usage have reached the counters
    /// (in process that is at once; with Redis, when the background updates are done).
    pub async fn settled(&self) {
        loop {
            let next = self.settled.notified();
            if self.unsettled.load(std::sync::atomic::Ordering::Acquire) == 0 {
                return;
            }
            next.await;
        }
    }

    /// Is the backend reachable (for `/readyz`-style status)?
    pub async fn healthy(&self) -> Option<bool> {
        match &self.backend {
            Backend::Local(_) => None,
            Backend::Redis { redis, .. } => Some(redis.call(&[b"PING"]).await.is_ok()),
        }
    }

    /// Admit a request of `member` (its request id) under `applied`, or say which limit
    /// refuses it. An unreachable backend refuses (503) unless `fail_open`.
    pub async fn admit(
        self: &Arc<Self>,
        applied: &[Applied],
        stream: bool,
        member: &str,
        now_ms: i64,
    ) -> Result<Decision, crate::reject::Rejection> {
        let checks = checks(applied, stream, now_ms);
        if checks.is_empty() {
            return Ok(Decision::Admitted(None));
        }
        let refused = match &self.backend {
            Backend::Local(local) => {
                local.lock().unwrap_or_else(|e| e.into_inner()).admit(&checks, now_ms, member)
            }
            Backend::Redis { redis, admit, .. } => {
                let keys: Vec<String> = checks.iter().map(|c| c.key.clone()).collect();
                let mut args =
                    vec![now_ms.to_string(), member.to_owned(), LEASE.as_millis().to_string()];
                for c in &checks {
                    args.extend([
                        c.kind.as_str().to_owned(),
                        c.limit.to_string(),
                        c.ttl_ms.to_string(),
                    ]);
                }
                match redis.eval(admit, &keys, &args).await {
                    Ok(Reply::Array(r)) => {
                        match (r.first().and_then(Reply::int), r.get(1).and_then(Reply::int)) {
                            (Some(0), _) => None,
                            (Some(i), Some(used)) if i > 0 && (i as usize) <= checks.len() => {
                                Some((i as usize - 1, used.max(0) as u64))
                            }
                            _ => return self.unavailable("unexpected reply"),
                        }
                    }
                    Ok(_) => return self.unavailable("unexpected reply"),
                    Err(e) => return self.unavailable(&e.to_string()),
                }
            }
        };
        if let Some((i, used)) = refused {
            let c = &checks[i];
            return Ok(Decision::Refused(Refusal {
                limit_id: c.limit_id.clone(),
                what: c.what,
                limit: c.limit,
                used,
                reset_ms: c.reset_ms,
                message: c.message.clone(),
            }));
        }
        Ok(Decision::Admitted(Some(Admission {
            limiter: Arc::clone(self),
            member: member.to_owned(),
            leases: checks
                .iter()
                .filter(|c| c.kind == Kind::Lease)
                .map(|c| c.key.clone())
                .collect(),
            sums: checks
                .iter()
                .filter(|c| c.kind == Kind::Sum)
                .map(|c| (c.key.clone(), c.what, c.ttl_ms))
                .collect(),
        })))
    }

    fn unavailable(&self, why: &str) -> Result<Decision, crate::reject::Rejection> {
        if self.fail_open {
            tracing::error!(target: "airlock::limits", error = why, "limits unavailable; admitting (redis_on_failure: fail_open)");
            return Ok(Decision::Admitted(None));
        }
        tracing::error!(target: "airlock::limits", error = why, "limits unavailable; refusing (redis_on_failure: fail_closed)");
        Err(crate::reject::Rejection::new(
            ErrorType::Api,
            "the gateway cannot check its limits right now; retry shortly",
            crate::reject::Fault::Internal,
            "limits_unavailable",
        )
        .with_status(http::StatusCode::SERVICE_UNAVAILABLE))
    }

    async fn finish(
        &self,
        leases: &[String],
        member: &str,
        adds: &[(String, u64, i64)],
    ) -> Result<(), RedisError> {
        match &self.backend {
            Backend::Local(local) => {
                let now = airlock_store::now_ms();
                local.lock().unwrap_or_else(|e| e.into_inner()).finish(leases, member, adds, now);
                Ok(())
            }
            Backend::Redis { redis, finish, .. } => {
                let keys: Vec<String> =
                    leases.iter().cloned().chain(adds.iter().map(|(k, _, _)| k.clone())).collect();
                let mut args = vec![member.to_owned(), leases.len().to_string()];
                for (_, n, ttl) in adds {
                    args.extend([n.to_string(), ttl.to_string()]);
                }
                redis.eval(finish, &keys, &args).await.map(|_| ())
            }
        }
    }
}

/// A Redis call that takes longer than this fails (and the request follows
/// `redis_on_failure`).
const REDIS_DEADLINE: Duration = Duration::from_millis(500);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_windows() {
        // 2026-11-25T10:00:00Z
        let now = 1_795_600_800_000;
        let (end, tag) = window(now, Per::Month);
        assert_eq!(tag, "M202611");
        assert_eq!(end, 1_796_083_200_000, "2026-12-01T00:00:00Z");
        let (end, tag) = window(now, Per::Day);
        assert_eq!((end, tag.as_str()), (1_795_651_200_000, "d20782"));
        // December rolls into January.
        let dec = 1_798_000_000_000; // 2026-12-23
        assert_eq!(window(dec, Per::Month).0, 1_798_761_600_000, "2027-01-01");
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil(days_from_civil(2024, 2, 29)), (2024, 2, 29));
        assert_eq!(rfc3339(1_795_600_800 + 61), "2026-11-25T10:01:01Z");
    }
}
