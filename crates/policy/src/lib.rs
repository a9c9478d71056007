//! Policy as code. A policy file (YAML) compiles into a [`Policy`]: group allowances, one
//! detection pack for requests and one masking pack for responses (airlock-detect), and
//! ordered rules. [`Policy::evaluate`] judges a parsed request — and rewrites it (redaction,
//! `max_tokens` clamp, stripped tools); [`Policy::check_tool_call`] judges a tool call the
//! model makes.
//!
//! Combination semantics, stated once (docs/policy.md repeats them):
//! - inside `when`, every condition must hold (AND); inside one list condition (`detected`,
//!   `groups`, `models`, `matches`, …) any entry is enough (OR);
//! - every rule is evaluated; the outcome is the most restrictive action among matching
//!   `enforce` rules on the lattice deny > require_approval > redact > allow. An `allow`
//!   rule never relaxes another rule: exceptions are written with `not_groups`;
//! - `warn` and `dry_run` rules are recorded (warn also tells the client in a header) and
//!   never change the outcome;
//! - an identity in several groups gets the union of their allowances; `default` applies
//!   only to identities in none of the listed groups; an identity with no allowance is
//!   denied.
//!
//! Pure: no IO.

mod cache;
mod cases;
mod eval;
mod gitleaks;
mod glob;
pub mod limits;
mod load;
pub mod parts;
mod rego;
mod response;

pub use cases::{CaseReport, run_cases};
pub use eval::{Hit, Hold, Reject, RejectKind, RuleTrace, ToolVerdict, Verdict, estimate_tokens};
pub use glob::Glob;
pub use load::version_of;
pub use rego::RegoDecision;
pub use response::ResponseGuard;

use airlock_config::ConfigErrors;
use airlock_detect::Pack;
use parts::Part;
use regex_automata::meta;
use std::sync::Arc;
use std::time::Duration;

/// The bundled example policy `airlock serve` uses when the config names none.
pub const BUNDLED: &str = include_str!("../policy.yaml");
/// Its test cases (`airlock policy test` with no file runs them).
pub const BUNDLED_CASES: &str = include_str!("../policy.tests.yaml");

/// A compiled policy. Immutable; a reload builds a new one.
#[derive(Debug)]
pub struct Policy {
    /// `sha256:…` of the file's bytes: stamped on every audit record.
    pub version: String,
    /// Where it was loaded from.
    pub source: String,
    groups: Vec<(String, Allowance)>,
    on_disallowed_tool: OnDisallowedTool,
    /// Every detector a rule or `redact_request` names, with its redaction strategy.
    detect: Arc<Pack>,
    /// Per detector of `detect`: redacted in every request.
    redact: Vec<bool>,
    /// `mask_response` (and pseudonym restore), if any.
    mask: Option<Arc<Pack>>,
    rules: Vec<Rule>,
    /// `limits:` (counted by the gateway).
    limits: Vec<limits::Limit>,
    /// Findings of the detection pack per text block, for this version only.
    cache: cache::FindingsCache,
    /// The optional Rego layer.
    rego: Option<rego::Rego>,
    /// Not errors, but worth reading: imported rules that were skipped, and why.
    pub warnings: Vec<String>,
}

impl Policy {
    /// Compile policy text. `source` names the file in error messages. A policy that
    /// imports files (`import_gitleaks`) needs [`Policy::parse_with_files`].
    pub fn parse(source: &str, text: &str) -> Result<Policy, ConfigErrors> {
        load::parse(source, text, &|_| Err("imports need a policy loaded from a file".into()))
    }

    /// Compile policy text whose imports `read` resolves (relative to the policy file).
    pub fn parse_with_files(
        source: &str,
        text: &str,
        read: load::Reader<'_>,
    ) -> Result<Policy, ConfigErrors> {
        load::parse(source, text, read)
    }

    pub fn bundled() -> Policy {
        Policy::parse("bundled policy", BUNDLED).expect("the bundled policy is valid (tested)")
    }

    /// The response masking pack: text and tool inputs in responses go through it.
    pub fn mask_pack(&self) -> Option<&Arc<Pack>> {
        self.mask.as_ref()
    }

    /// The Rego layer's input for this request, if the policy has one (build it on the
    /// request path; evaluate it with [`Policy::rego_decide`] off it).
    pub fn rego_input(
        &self,
        subject: &str,
        groups: &[String],
        body: &serde_json::Map<String, serde_json::Value>,
        verdict: &Verdict,
    ) -> Option<serde_json::Value> {
        self.rego.as_ref()?;
        Some(rego::input(subject, groups, body, verdict, &verdict.found))
    }

    /// Evaluate the Rego layer (blocking; bounded by its timeout between steps).
    pub fn rego_decide(&self, input: &serde_json::Value) -> Result<Option<RegoDecision>, String> {
        match &self.rego {
            Some(r) => r.decide(input),
            None => Ok(None),
        }
    }

    /// The Rego layer's time limit, if there is one.
    pub fn rego_timeout(&self) -> Option<std::time::Duration> {
        self.rego.as_ref().map(|r| r.timeout)
    }

    /// Findings-cache (hits, misses): how much of each request was already scanned.
    pub fn cache_stats(&self) -> (u64, u64) {
        self.cache.stats()
    }

    /// Every group that approves some `require_approval` rule (the web UI's reviewers).
    pub fn approver_groups(&self) -> Vec<String> {
        let mut v: Vec<String> = self.rules.iter().flat_map(|r| r.approvers.clone()).collect();
        v.sort();
        v.dedup();
        v
    }

    pub fn rules(&self) -> impl Iterator<Item = (&str, Action, Mode)> {
        self.rules.iter().map(|r| (r.id.as_str(), r.action, r.mode))
    }
}

/// What a group may do.
#[derive(Debug, Clone)]
pub struct Allowance {
    pub models: Vec<Glob>,
    pub max_prompt_tokens: Option<u64>,
    pub max_prompt_bytes: Option<u64>,
    pub max_output_tokens: Option<u64>,
    pub on_max_output_tokens: OverLimit,
    pub streaming: bool,
    pub thinking: bool,
    pub images: bool,
    pub documents: bool,
    pub tools: Vec<Glob>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverLimit {
    Clamp,
    Deny,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDisallowedTool {
    Strip,
    Deny,
}

/// A rule's action, ordered by the lattice: `Allow < Redact < RequireApproval < Deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    Allow,
    Redact,
    RequireApproval,
    Deny,
}

impl Action {
    pub fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "allow" => Action::Allow,
            "redact" => Action::Redact,
            "require_approval" => Action::RequireApproval,
            "deny" => Action::Deny,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Redact => "redact",
            Action::RequireApproval => "require_approval",
            Action::Deny => "deny",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    Enforce,
    Warn,
    DryRun,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        Some(match s {
            "enforce" => Mode::Enforce,
            "warn" => Mode::Warn,
            "dry_run" => Mode::DryRun,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Warn => "warn",
            Mode::DryRun => "dry_run",
        }
    }
}

/// How a `require_approval` rule holds a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldMode {
    /// The client's call stays open until a reviewer decides (or the timeout passes).
    Wait,
    /// The call is answered at once with 403 naming an approval id; once approved, the same
    /// identity may send the identical request again (same body hash) and it passes, once.
    Ticket,
}

impl HoldMode {
    pub fn parse(s: &str) -> Option<HoldMode> {
        Some(match s {
            "wait" => HoldMode::Wait,
            "ticket" => HoldMode::Ticket,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            HoldMode::Wait => "wait",
            HoldMode::Ticket => "ticket",
        }
    }
}

/// A held request waits this long for a reviewer unless its rule says otherwise.
pub const DEFAULT_APPROVAL_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug)]
pub(crate) struct Rule {
    pub id: String,
    pub action: Action,
    pub mode: Mode,
    pub message: Option<String>,
    pub approvers: Vec<String>,
    /// How long a held request waits for a reviewer (require_approval).
    pub timeout: Duration,
    pub hold: HoldMode,
    /// Detectors (indexes into the detection pack) a redact rule redacts.
    pub redact: Vec<usize>,
    pub when: When,
}

#[derive(Debug)]
pub(crate) struct When {
    pub detected: Vec<usize>,
    pub matches: Option<meta::Regex>,
    pub keywords: Option<aho_corasick::AhoCorasick>,
    pub parts: Vec<Part>,
    pub groups: Vec<String>,
    pub not_groups: Vec<String>,
    pub models: Vec<Glob>,
    pub prompt_tokens_over: Option<u64>,
    pub prompt_bytes_over: Option<u64>,
    pub tools_offered: Vec<Glob>,
    pub tool_call: Option<ToolCall>,
}

impl When {
    /// Conditions only a request has (a tool call rule cannot use them).
    fn is_request_only(&self) -> bool {
        !self.detected.is_empty()
            || self.matches.is_some()
            || self.keywords.is_some()
            || self.prompt_tokens_over.is_some()
            || self.prompt_bytes_over.is_some()
            || !self.tools_offered.is_empty()
    }

    fn is_empty(&self) -> bool {
        !self.is_request_only()
            && self.groups.is_empty()
            && self.not_groups.is_empty()
            && self.models.is_empty()
            && self.tool_call.is_none()
    }
}

#[derive(Debug)]
pub(crate) struct ToolCall {
    pub name: Option<Glob>,
    pub input: Option<meta::Regex>,
}

impl Policy {
    /// A copy of a request or response body fit for the audit log: every string anywhere in
    /// it (thinking, tool inputs and names included) with every value any detector finds
    /// replaced by its placeholder; base64 payloads (images, documents) and thinking
    /// signatures replaced by their size. Strings already scanned for the request come from
    /// the findings cache.
    pub fn audit_copy(&self, mut body: serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        fn walk(p: &Policy, v: &mut Value) {
            match v {
                Value::String(s) => {
                    let f = p.cache.get_or_scan(s, |t| p.detect.find_all(t));
                    if !f.is_empty() {
                        *s = p.detect.render_placeholders(s, &f);
                    }
                }
                Value::Array(items) => items.iter_mut().for_each(|i| walk(p, i)),
                Value::Object(m) => {
                    let base64 = m.get("type").and_then(Value::as_str) == Some("base64");
                    for (k, item) in m.iter_mut() {
                        match (k.as_str(), &*item) {
                            ("data", Value::String(d)) if base64 => {
                                *item =
                                    Value::String(format!("[{} bytes of base64 omitted]", d.len()))
                            }
                            ("signature", Value::String(d)) => {
                                *item =
                                    Value::String(format!("[{} byte signature omitted]", d.len()))
                            }
                            _ => walk(p, item),
                        }
                    }
                }
                _ => {}
            }
        }
        walk(self, &mut body);
        body
    }
}

/// Fuzz entry: compiling any text either succeeds or reports errors; it never panics.
pub fn fuzz_parse(data: &[u8]) {
    let _ = Policy::parse("fuzz.yaml", &String::from_utf8_lossy(data));
}

/// Fuzz entry: any bytes as a request body — parsed, judged and redacted by the bundled
/// policy without a panic; a rewritten body is still a JSON object with no raw value the
/// policy redacts.
pub fn fuzz_request(data: &[u8]) {
    static POLICY: std::sync::LazyLock<Policy> = std::sync::LazyLock::new(Policy::bundled);
    let Ok(request) = airlock_wire::inspect_messages(data) else { return };
    let mut body = request.body;
    let key = airlock_detect::MaskKey::new(b"fuzz");
    let v = POLICY.evaluate(
        &[],
        &mut body,
        data.len(),
        &key,
        &mut airlock_detect::Pseudonyms::default(),
    );
    if v.changed {
        let out = serde_json::Value::Object(body).to_string();
        assert!(
            airlock_wire::inspect_messages(out.as_bytes()).is_ok(),
            "the rewritten body is not a request"
        );
    }
}
