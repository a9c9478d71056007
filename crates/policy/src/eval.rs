//! Judging a request and a tool call.

use crate::parts::{self, Part};
use crate::{Action, Allowance, Glob, Mode, OnDisallowedTool, OverLimit, Policy, Rule, When};
use airlock_detect::{Finding, MaskKey, Pseudonyms};
use regex_automata::Input;
use serde_json::{Map, Value};
use std::sync::Arc;

/// A rule that matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub id: String,
    pub action: Action,
    pub mode: Mode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectKind {
    /// 400 `invalid_request_error`: outside the caller's allowance (model, size, features).
    InvalidRequest,
    /// 403 `permission_error`: a rule denied it (or holds it for approval).
    Permission,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub kind: RejectKind,
    pub message: String,
    pub rule: Option<String>,
}

/// A request the policy holds for a reviewer (`require_approval`, enforced).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub rule: String,
    /// Groups whose members may decide (never the requester).
    pub approvers: Vec<String>,
    pub timeout: std::time::Duration,
    pub mode: crate::HoldMode,
    pub message: Option<String>,
}

/// The outcome for one request.
#[derive(Debug, Default)]
pub struct Verdict {
    /// The enforced outcome (the top of the lattice over enforce-mode hits).
    pub action: Option<Action>,
    /// Every rule that matched, in file order, whatever its mode.
    pub hits: Vec<Hit>,
    pub reject: Option<Reject>,
    /// Held for approval: forward only once a reviewer approves (the body below is what
    /// they approve: redacted and clamped like any other).
    pub hold: Option<Hold>,
    /// The body was rewritten (redaction, clamp, stripped tools): forward the new bytes.
    pub changed: bool,
    /// Values redacted, per detector name (sorted by name).
    pub redactions: Vec<(String, u32)>,
    /// `max_tokens` lowered from → to.
    pub clamped: Option<(u64, u64)>,
    pub stripped_tools: Vec<String>,
    /// Ids of `warn` rules that matched (sent to the client in a header).
    pub warnings: Vec<String>,
    pub estimated_tokens: u64,
    /// Values found per detector (every detector, redacted or not; sorted by name).
    pub found: Vec<(String, u32)>,
}

impl Verdict {
    /// `deny`, `require_approval`, `redact` (values were redacted) or `allow` — a clamp or
    /// stripped tools alone change the request but redact nothing (they are recorded as such).
    pub fn decision(&self) -> &'static str {
        match (&self.reject, self.action) {
            (Some(r), _) if r.kind == RejectKind::InvalidRequest => "deny",
            (Some(_), Some(a)) => a.as_str(),
            (Some(_), None) => "deny",
            (None, _) if self.hold.is_some() => "require_approval",
            (None, Some(Action::Redact)) => "redact",
            (None, _) if !self.redactions.is_empty() => "redact",
            (None, _) => "allow",
        }
    }
}

impl Rule {
    /// 403 naming this rule and carrying its message: "`what` policy rule `id`: message".
    fn refusal(&self, what: &str) -> Reject {
        let message = self.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default();
        Reject {
            kind: RejectKind::Permission,
            message: format!("{what} policy rule `{}`{message}", self.id),
            rule: Some(self.id.clone()),
        }
    }
}

/// Non-zero counts per detector (indexes into `pack`), as (name, count) sorted by name.
pub(crate) fn named_counts(pack: &airlock_detect::Pack, counts: &[u32]) -> Vec<(String, u32)> {
    let infos = pack.detectors();
    let mut out: Vec<(String, u32)> = counts
        .iter()
        .enumerate()
        .filter(|(_, c)| **c > 0)
        .map(|(i, c)| (infos[i].name.clone(), *c))
        .collect();
    out.sort();
    out
}

/// A conservative token estimate for `bytes` of text: one token per 3 bytes, rounded up.
/// English prose averages about 4 bytes per token, so this overestimates by about a third;
/// dense code and non-Latin scripts come closer to 3 (docs/policy.md).
pub fn estimate_tokens(bytes: usize) -> u64 {
    bytes.div_ceil(3) as u64
}

fn any_group(groups: &[String], wanted: &[String]) -> bool {
    wanted.iter().any(|g| groups.contains(g))
}

fn any_glob(globs: &[Glob], name: &str) -> bool {
    globs.iter().any(|g| g.matches(name))
}

fn invalid(message: String) -> Reject {
    Reject { kind: RejectKind::InvalidRequest, message, rule: None }
}

impl Policy {
    /// The union of the allowances of `groups` (or `default` when none is listed).
    pub fn allowance(&self, groups: &[String]) -> Option<Allowance> {
        let mine: Vec<&Allowance> =
            self.groups.iter().filter(|(name, _)| groups.contains(name)).map(|(_, a)| a).collect();
        let mine = if mine.is_empty() {
            self.groups.iter().filter(|(name, _)| name == "default").map(|(_, a)| a).collect()
        } else {
            mine
        };
        let max = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(x), Some(y)) => Some(x.max(y)),
            _ => None,
        };
        mine.into_iter().cloned().reduce(|mut acc, a| {
            acc.models.extend(a.models);
            acc.tools.extend(a.tools);
            acc.max_prompt_tokens = max(acc.max_prompt_tokens, a.max_prompt_tokens);
            acc.max_prompt_bytes = max(acc.max_prompt_bytes, a.max_prompt_bytes);
            acc.max_output_tokens = max(acc.max_output_tokens, a.max_output_tokens);
            if a.on_max_output_tokens == OverLimit::Clamp {
                acc.on_max_output_tokens = OverLimit::Clamp;
            }
            acc.streaming |= a.streaming;
            acc.thinking |= a.thinking;
            acc.images |= a.images;
            acc.documents |= a.documents;
            acc
        })
    }

    /// Judge a parsed request for a caller in `groups`, rewriting `body` where the policy
    /// says so. `body_len` is the size of the bytes received.
    pub fn evaluate(
        &self,
        groups: &[String],
        body: &mut Map<String, Value>,
        body_len: usize,
        key: &MaskKey,
        pseudonyms: &mut Pseudonyms,
    ) -> Verdict {
        let mut v = Verdict::default();
        let model = body.get("model").and_then(Value::as_str).unwrap_or("").to_owned();
        let Some(allow) = self.allowance(groups) else {
            v.reject = Some(Reject {
                kind: RejectKind::Permission,
                message: "no policy group grants you access to this gateway".into(),
                rule: None,
            });
            return v;
        };
        if let Some(r) = self.check_allowance(&allow, &model, body, body_len) {
            v.reject = Some(r);
            return v;
        }

        // Tools the caller may not offer: stripped (or refused) before the rules judge
        // what will actually be sent.
        let disallowed: Vec<String> =
            tool_names(body).into_iter().filter(|n| !any_glob(&allow.tools, n)).collect();
        if !disallowed.is_empty() {
            match self.on_disallowed_tool {
                OnDisallowedTool::Deny => {
                    v.reject = Some(invalid(format!(
                        "tools not allowed for your groups: {}",
                        disallowed.join(", ")
                    )));
                    return v;
                }
                OnDisallowedTool::Strip => {
                    if let Some(r) = strip_tools(body, &disallowed) {
                        v.reject = Some(r);
                        return v;
                    }
                    v.stripped_tools = disallowed;
                    v.changed = true;
                }
            }
        }
        // Scan every text part once with the detection pack.
        let mut texts: Vec<(Part, String)> = Vec::new();
        parts::visit(body, &mut |part, s| texts.push((part, s.clone())));
        let text_bytes: usize = texts.iter().map(|(_, s)| s.len()).sum::<usize>()
            + body.get("tools").map_or(0, airlock_wire::json_len);
        v.estimated_tokens = estimate_tokens(text_bytes);
        if let Some(max) = allow.max_prompt_tokens
            && v.estimated_tokens > max
        {
            v.reject = Some(invalid(format!(
                "prompt is too long for your allowance: about {} tokens (estimated), maximum {max}",
                v.estimated_tokens
            )));
            return v;
        }
        let findings: Vec<Arc<Vec<Finding>>> = texts
            .iter()
            .map(|(_, s)| self.cache.get_or_scan(s, |t| self.detect.find_all(t)))
            .collect();

        let mut found = vec![0u32; self.detect.detectors().len()];
        findings.iter().flat_map(|f| f.iter()).for_each(|f| found[f.detector] += 1);
        v.found = named_counts(&self.detect, &found);
        let offered: Vec<String> = tool_names(body);
        let ctx = Ctx {
            groups,
            model: &model,
            texts: &texts,
            findings: &findings,
            offered: &offered,
            body_len,
            tokens: v.estimated_tokens,
        };
        let mut redact = self.redact.clone();
        let mut top: Option<(&Rule, Action)> = None;
        for rule in &self.rules {
            if rule.when.tool_call.is_some() || !ctx.matches(&rule.when) {
                continue;
            }
            v.hits.push(Hit { id: rule.id.clone(), action: rule.action, mode: rule.mode });
            match rule.mode {
                Mode::Enforce => {
                    if top.is_none_or(|(_, a)| rule.action > a) {
                        top = Some((rule, rule.action));
                    }
                    if rule.action == Action::Redact {
                        rule.redact.iter().for_each(|&d| redact[d] = true);
                    }
                }
                Mode::Warn => v.warnings.push(rule.id.clone()),
                Mode::DryRun => {}
            }
        }
        v.action = top.map(|(_, a)| a);
        match top {
            Some((rule, Action::Deny)) => {
                v.reject = Some(rule.refusal("denied by"));
                return v;
            }
            Some((rule, Action::RequireApproval)) => {
                // Held, not refused: the rest of the judgement (redaction, the cap) still
                // applies, so the reviewer approves exactly the body that would go upstream.
                v.hold = Some(Hold {
                    rule: rule.id.clone(),
                    approvers: rule.approvers.clone(),
                    timeout: rule.timeout,
                    mode: rule.hold,
                    message: rule.message.clone(),
                });
            }
            _ => {}
        }

        // Redact: rewrite each part from the findings the scan already made.
        let mut counts = vec![0u32; redact.len()];
        if findings.iter().flat_map(|f| f.iter()).any(|f| redact[f.detector]) {
            let mut i = 0;
            parts::visit(body, &mut |_, s| {
                let keep: Vec<Finding> =
                    findings[i].iter().filter(|f| redact[f.detector]).copied().collect();
                i += 1;
                if keep.is_empty() {
                    return;
                }
                keep.iter().for_each(|f| counts[f.detector] += 1);
                *s = self.detect.render(s, &keep, key, pseudonyms);
            });
            v.changed = true;
        }
        v.redactions = named_counts(&self.detect, &counts);

        // The max_tokens cap.
        if let (Some(max), Some(asked)) =
            (allow.max_output_tokens, body.get("max_tokens").and_then(Value::as_u64))
            && asked > max
        {
            match allow.on_max_output_tokens {
                OverLimit::Deny => {
                    v.reject = Some(invalid(format!(
                        "max_tokens {asked} is above your allowance of {max}"
                    )));
                    return v;
                }
                OverLimit::Clamp => {
                    body.insert("max_tokens".into(), Value::from(max));
                    v.clamped = Some((asked, max));
                    v.changed = true;
                }
            }
        }
        v
    }

    fn check_allowance(
        &self,
        allow: &Allowance,
        model: &str,
        body: &Map<String, Value>,
        body_len: usize,
    ) -> Option<Reject> {
        if !any_glob(&allow.models, model) {
            return Some(invalid(format!("model `{model}` is not allowed for your groups")));
        }
        if let Some(max) = allow.max_prompt_bytes
            && body_len as u64 > max
        {
            return Some(invalid(format!("request is {body_len} bytes; your allowance is {max}")));
        }
        if !allow.streaming && body.get("stream").and_then(Value::as_bool) == Some(true) {
            return Some(invalid("streaming is not allowed for your groups".into()));
        }
        let thinking = body
            .get("thinking")
            .and_then(|t| t.get("type"))
            .and_then(Value::as_str)
            .is_some_and(|t| t != "disabled");
        if !allow.thinking && thinking {
            return Some(invalid("extended thinking is not allowed for your groups".into()));
        }
        let (images, documents) = block_kinds(body);
        if !allow.images && images {
            return Some(invalid("images are not allowed for your groups".into()));
        }
        if !allow.documents && documents {
            return Some(invalid("documents are not allowed for your groups".into()));
        }
        None
    }

    /// Judge a tool call the model made (name and complete input), for a caller in `groups`.
    pub fn check_tool_call(
        &self,
        groups: &[String],
        model: &str,
        name: &str,
        input: &Value,
    ) -> ToolVerdict {
        let mut out = ToolVerdict::default();
        if let Some(allow) = self.allowance(groups)
            && !any_glob(&allow.tools, name)
        {
            out.deny = Some(Reject {
                kind: RejectKind::Permission,
                message: format!(
                    "the model called tool `{name}`, which is not allowed for your groups"
                ),
                rule: None,
            });
        }
        let mut strings: Vec<String> = Vec::new();
        parts::strings(&mut input.clone(), &mut |_, s| strings.push(s.clone()));
        for rule in &self.rules {
            let Some(tc) = &rule.when.tool_call else { continue };
            let w = &rule.when;
            let ok = (w.groups.is_empty() || any_group(groups, &w.groups))
                && !any_group(groups, &w.not_groups)
                && (w.models.is_empty() || any_glob(&w.models, model))
                && tc.name.as_ref().is_none_or(|g| g.matches(name))
                && tc
                    .input
                    .as_ref()
                    .is_none_or(|re| strings.iter().any(|s| re.is_match(Input::new(s))));
            if !ok {
                continue;
            }
            out.hits.push(Hit { id: rule.id.clone(), action: rule.action, mode: rule.mode });
            match rule.mode {
                Mode::Enforce if rule.action == Action::Deny && out.deny.is_none() => {
                    out.deny = Some(rule.refusal(&format!("tool call `{name}` blocked by")));
                }
                Mode::Warn => out.warnings.push(rule.id.clone()),
                _ => {}
            }
        }
        out
    }
}

/// Why each rule matched or not, for one request (`airlock policy explain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleTrace {
    pub id: String,
    pub action: Action,
    pub mode: Mode,
    pub conditions: Vec<(&'static str, bool)>,
}

impl RuleTrace {
    pub fn matched(&self) -> bool {
        self.conditions.iter().all(|(_, ok)| *ok)
    }
}

impl Policy {
    /// The request rules' conditions for this request, one by one.
    pub fn explain(
        &self,
        groups: &[String],
        body: &Map<String, Value>,
        body_len: usize,
    ) -> Vec<RuleTrace> {
        let mut body = body.clone();
        let mut texts: Vec<(Part, String)> = Vec::new();
        parts::visit(&mut body, &mut |part, s| texts.push((part, s.clone())));
        let text_bytes: usize = texts.iter().map(|(_, s)| s.len()).sum::<usize>()
            + body.get("tools").map_or(0, airlock_wire::json_len);
        let findings: Vec<Arc<Vec<Finding>>> =
            texts.iter().map(|(_, s)| Arc::new(self.detect.find_all(s))).collect();
        let offered = tool_names(&body);
        let model = body.get("model").and_then(Value::as_str).unwrap_or("");
        let ctx = Ctx {
            groups,
            model,
            texts: &texts,
            findings: &findings,
            offered: &offered,
            body_len,
            tokens: estimate_tokens(text_bytes),
        };
        self.rules
            .iter()
            .map(|r| RuleTrace {
                id: r.id.clone(),
                action: r.action,
                mode: r.mode,
                conditions: ctx.conditions(&r.when),
            })
            .collect()
    }

    /// Findings in a request, per detector name (what `explain` shows next to the rules).
    pub fn findings(&self, body: &Map<String, Value>) -> Vec<(String, u32)> {
        let mut body = body.clone();
        let mut counts = vec![0u32; self.detect.detectors().len()];
        parts::visit(&mut body, &mut |_, s| {
            self.cache
                .get_or_scan(s, |t| self.detect.find_all(t))
                .iter()
                .for_each(|f| counts[f.detector] += 1);
        });
        named_counts(&self.detect, &counts)
    }
}

/// The outcome for one tool call.
#[derive(Debug, Default)]
pub struct ToolVerdict {
    pub hits: Vec<Hit>,
    pub deny: Option<Reject>,
    pub warnings: Vec<String>,
}

struct Ctx<'a> {
    groups: &'a [String],
    model: &'a str,
    texts: &'a [(Part, String)],
    findings: &'a [Arc<Vec<Finding>>],
    offered: &'a [String],
    body_len: usize,
    tokens: u64,
}

impl Ctx<'_> {
    fn matches(&self, w: &When) -> bool {
        self.conditions(w).iter().all(|(_, ok)| *ok)
    }

    /// Each condition the rule sets, and whether it holds: the trace `policy explain` prints.
    fn conditions(&self, w: &When) -> Vec<(&'static str, bool)> {
        let in_parts = |i: usize| w.parts.contains(&self.texts[i].0);
        let any_text =
            |f: &dyn Fn(usize) -> bool| (0..self.texts.len()).any(|i| in_parts(i) && f(i));
        let mut out = Vec::new();
        if !w.groups.is_empty() {
            out.push(("groups", any_group(self.groups, &w.groups)));
        }
        if !w.not_groups.is_empty() {
            out.push(("not_groups", !any_group(self.groups, &w.not_groups)));
        }
        if !w.models.is_empty() {
            out.push(("models", any_glob(&w.models, self.model)));
        }
        if let Some(n) = w.prompt_tokens_over {
            out.push(("prompt_tokens_over", self.tokens > n));
        }
        if let Some(n) = w.prompt_bytes_over {
            out.push(("prompt_bytes_over", self.body_len as u64 > n));
        }
        if !w.tools_offered.is_empty() {
            out.push(("tools_offered", self.offered.iter().any(|t| any_glob(&w.tools_offered, t))));
        }
        if !w.detected.is_empty() {
            out.push((
                "detected",
                any_text(&|i| self.findings[i].iter().any(|f| w.detected.contains(&f.detector))),
            ));
        }
        if let Some(re) = &w.matches {
            out.push(("matches", any_text(&|i| re.is_match(Input::new(&self.texts[i].1)))));
        }
        if let Some(ac) = &w.keywords {
            out.push(("keywords", any_text(&|i| has_word(ac, &self.texts[i].1))));
        }
        if w.tool_call.is_some() {
            out.push(("tool_call (judged on responses)", false));
        }
        out
    }
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// A keyword found as a whole word (ASCII case-insensitive).
fn has_word(ac: &aho_corasick::AhoCorasick, text: &str) -> bool {
    let hay = text.as_bytes();
    ac.find_overlapping_iter(hay).any(|m| {
        let (s, e) = (m.start(), m.end());
        (s == 0 || !is_word(hay[s - 1]) || !is_word(hay[s]))
            && (e == hay.len() || !is_word(hay[e]) || !is_word(hay[e - 1]))
    })
}

fn tool_names(body: &Map<String, Value>) -> Vec<String> {
    let Some(Value::Array(tools)) = body.get("tools") else { return Vec::new() };
    tools.iter().filter_map(|t| t.get("name").and_then(Value::as_str)).map(str::to_owned).collect()
}

/// Remove the named tools; a `tool_choice` that forces one of them is an error.
fn strip_tools(body: &mut Map<String, Value>, names: &[String]) -> Option<Reject> {
    if let Some(forced) =
        body.get("tool_choice").and_then(|c| c.get("name")).and_then(Value::as_str)
        && names.iter().any(|n| n == forced)
    {
        return Some(invalid(format!(
            "tool_choice names `{forced}`, which is not allowed for your groups"
        )));
    }
    if let Some(Value::Array(tools)) = body.get_mut("tools") {
        tools.retain(|t| {
            !t.get("name").and_then(Value::as_str).is_some_and(|n| names.iter().any(|x| x == n))
        });
        if tools.is_empty() {
            body.remove("tools");
            body.remove("tool_choice");
        }
    }
    None
}

/// Whether any message carries image or document blocks (tool results included).
fn block_kinds(body: &Map<String, Value>) -> (bool, bool) {
    fn walk(v: &Value, acc: &mut (bool, bool)) {
        match v {
            Value::Array(items) => items.iter().for_each(|i| walk(i, acc)),
            Value::Object(m) => {
                match m.get("type").and_then(Value::as_str) {
                    Some("image") => acc.0 = true,
                    Some("document") => acc.1 = true,
                    _ => {}
                }
                if let Some(c) = m.get("content") {
                    walk(c, acc);
                }
            }
            _ => {}
        }
    }
    let mut acc = (false, false);
    if let Some(Value::Array(messages)) = body.get("messages") {
        for m in messages {
            if let Some(c) = m.get("content") {
                walk(c, &mut acc);
            }
        }
    }
    acc
}
