//! Limits in the policy (`limits:`): request rates, token rates, concurrency and token
//! budgets per identity or per group. This crate only parses them and says which apply to
//! an identity; counting lives in the gateway (in process, or in Redis across instances).

use airlock_config::yaml::{Field, Walker};

/// Who shares one counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Per {
    /// Each identity (subject) has its own counters.
    Identity,
    /// The members of each listed group share that group's counters.
    Group,
}

/// One `limits:` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    pub id: String,
    pub per: Per,
    /// Applies to members of these groups (`per: group`: one counter per listed group the
    /// caller is in); empty: to everyone (`per: identity` only).
    pub groups: Vec<String>,
    pub requests_per_minute: Option<u64>,
    pub input_tokens_per_minute: Option<u64>,
    pub output_tokens_per_minute: Option<u64>,
    pub concurrent_requests: Option<u64>,
    pub concurrent_streams: Option<u64>,
    pub input_tokens_per_day: Option<u64>,
    pub output_tokens_per_day: Option<u64>,
    pub input_tokens_per_month: Option<u64>,
    pub output_tokens_per_month: Option<u64>,
    /// Shown to the caller when this limit refuses a request.
    pub message: Option<String>,
}

/// A limit as it applies to one caller: the limit and the counter scope (`id:alice`,
/// `group:eng`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub limit: Limit,
    pub scope: String,
}

impl crate::Policy {
    /// The limits that apply to `subject` in `groups`, each with its counter scope.
    pub fn limits_for(&self, subject: &str, groups: &[String]) -> Vec<Applied> {
        let mut out = Vec::new();
        for l in &self.limits {
            match l.per {
                Per::Identity => {
                    if l.groups.is_empty() || l.groups.iter().any(|g| groups.contains(g)) {
                        out.push(Applied { limit: l.clone(), scope: format!("id:{subject}") });
                    }
                }
                Per::Group => {
                    for g in l.groups.iter().filter(|g| groups.contains(g)) {
                        out.push(Applied { limit: l.clone(), scope: format!("group:{g}") });
                    }
                }
            }
        }
        out
    }

    pub fn limits(&self) -> &[Limit] {
        &self.limits
    }
}

pub(crate) fn limit(f: Field<'_>, w: &mut Walker) -> Option<Limit> {
    let span = *f.span();
    let mut m = f.mapping(w)?;
    let path = m.path().to_owned();
    let id = m.field("id", w, |f, w| f.non_empty_string(w));
    let per = m
        .field("per", w, |f, w| {
            let s = f.string(w)?;
            match s.as_str() {
                "identity" => Some(Per::Identity),
                "group" => Some(Per::Group),
                _ => {
                    w.error(f.span(), f.path(), "expected identity or group");
                    None
                }
            }
        })
        .unwrap_or(Per::Identity);
    let groups = m.field("groups", w, |f, w| f.string_list(w)).unwrap_or_default();
    let mut n = |key: &'static str| m.field(key, w, |f, w| f.u64_in(w, 1, u64::MAX / 4));
    let l = Limit {
        id: String::new(),
        per,
        groups: Vec::new(),
        requests_per_minute: n("requests_per_minute"),
        input_tokens_per_minute: n("input_tokens_per_minute"),
        output_tokens_per_minute: n("output_tokens_per_minute"),
        concurrent_requests: n("concurrent_requests"),
        concurrent_streams: n("concurrent_streams"),
        input_tokens_per_day: n("input_tokens_per_day"),
        output_tokens_per_day: n("output_tokens_per_day"),
        input_tokens_per_month: n("input_tokens_per_month"),
        output_tokens_per_month: n("output_tokens_per_month"),
        message: None,
    };
    let message = m.field("message", w, |f, w| f.non_empty_string(w));
    m.finish(w);
    let id = id?;
    if per == Per::Group && groups.is_empty() {
        w.error(&span, &path, "a `per: group` limit needs `groups` (whose counters it keeps)");
    }
    let any = [
        l.requests_per_minute,
        l.input_tokens_per_minute,
        l.output_tokens_per_minute,
        l.concurrent_requests,
        l.concurrent_streams,
        l.input_tokens_per_day,
        l.output_tokens_per_day,
        l.input_tokens_per_month,
        l.output_tokens_per_month,
    ]
    .iter()
    .any(Option::is_some);
    if !any {
        w.error(&span, &path, "a limit needs at least one of requests_per_minute, *_tokens_per_minute, concurrent_requests, concurrent_streams, *_tokens_per_day, *_tokens_per_month");
    }
    if id.contains(':') {
        w.error(&span, &path, "a limit id must not contain `:`");
    }
    Some(Limit { id, groups, message, ..l })
}
