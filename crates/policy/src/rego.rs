//! The optional Rego layer (regorus): a module in the policy file that can **tighten** a
//! decision — never relax it — judging a normalised summary of the request, never its text.
//!
//! ```yaml
//! rego:
//!   query: data.airlock.decision      # default
//!   timeout: 20ms                     # default; at most 1s
//!   module: |
//!     package airlock
//!     import rego.v1
//!     decision := {"decision": "deny", "reason": "opus is for eng"} if {
//!       startswith(input.request.model, "claude-opus")
//!       not "eng" in input.identity.groups
//!     }
//! ```
//!
//! The query's value: undefined (no opinion), a decision string, or `{"decision", "reason"}`;
//! decisions are `allow`, `redact` (no-op: Rego sees no text), `require_approval`, `deny`.
//! Anything else, an evaluation error, or running out of time **fails closed** (403).

use crate::{Action, Hit, Mode, Reject, RejectKind, Verdict};
use regorus::utils::limits::ExecutionTimerConfig;
use serde_json::{Map, Value, json};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Debug)]
pub(crate) struct Rego {
    engine: Mutex<regorus::Engine>,
    pub query: String,
    pub timeout: Duration,
}

/// What the module decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegoDecision {
    pub action: Action,
    pub reason: Option<String>,
}

impl Rego {
    pub(crate) fn compile(module: &str, query: String, timeout: Duration) -> Result<Rego, String> {
        let mut engine = regorus::Engine::new();
        engine.add_policy("policy.rego".into(), module.to_owned()).map_err(|e| e.to_string())?;
        engine.set_execution_timer_config(ExecutionTimerConfig {
            limit: timeout,
            check_interval: NonZeroU32::MIN,
        });
        Ok(Rego { engine: Mutex::new(engine), query, timeout })
    }

    /// Evaluate on `input`. Blocking; the caller bounds it in wall-clock time too (the
    /// engine's timer is checked between evaluation steps, not inside one builtin call).
    pub(crate) fn decide(&self, input: &Value) -> Result<Option<RegoDecision>, String> {
        let mut engine =
            self.engine.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let input = regorus::Value::from_json_str(&input.to_string()).map_err(|e| e.to_string())?;
        engine.set_input(input);
        let out = engine.eval_rule(self.query.clone()).map_err(|e| e.to_string())?;
        let out: Value = serde_json::from_str(&out.to_json_str().map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        let (decision, reason) = match &out {
            Value::String(s) if s == "<undefined>" => return Ok(None),
            Value::String(s) => (s.clone(), None),
            Value::Object(m) => (
                m.get("decision").and_then(Value::as_str).unwrap_or("").to_owned(),
                m.get("reason").and_then(Value::as_str).map(str::to_owned),
            ),
            other => return Err(format!("the query returned {other}, not a decision")),
        };
        match Action::parse(&decision) {
            Some(action) => Ok(Some(RegoDecision { action, reason })),
            None => Err(format!("the query returned decision `{decision}`")),
        }
    }
}

/// The summary Rego sees: identity, request shape, what the detectors found, what the YAML
/// rules decided. Never the text.
pub(crate) fn input(
    subject: &str,
    groups: &[String],
    body: &Map<String, Value>,
    verdict: &Verdict,
    findings: &[(String, u32)],
) -> Value {
    let tools: Vec<&str> = body
        .get("tools")
        .and_then(Value::as_array)
        .map(|t| t.iter().filter_map(|t| t.get("name").and_then(Value::as_str)).collect())
        .unwrap_or_default();
    json!({
        "identity": {"subject": subject, "groups": groups},
        "request": {
            "model": body.get("model"),
            "max_tokens": body.get("max_tokens"),
            "stream": body.get("stream").and_then(Value::as_bool).unwrap_or(false),
            "thinking": body.get("thinking").is_some(),
            "estimated_input_tokens": verdict.estimated_tokens,
            "message_count": body.get("messages").and_then(Value::as_array).map_or(0, Vec::len),
            "tools": tools,
        },
        "findings": findings.iter().map(|(d, n)| (d.clone(), json!(n))).collect::<Map<String, Value>>(),
        "layer_a": {
            "decision": verdict.decision(),
            "rules": verdict.hits.iter().map(|h| h.id.clone()).collect::<Vec<_>>(),
        },
    })
}

impl Verdict {
    /// Merge the Rego layer's outcome: it may only tighten. An error fails closed.
    pub fn apply_rego(&mut self, outcome: Result<Option<RegoDecision>, String>) {
        let (action, message) = match outcome {
            Ok(None) => return,
            Ok(Some(d)) => {
                let msg = d.reason.map(|r| format!(": {r}")).unwrap_or_default();
                (d.action, msg)
            }
            Err(e) => (Action::Deny, format!(" could not decide ({e}); failing closed")),
        };
        self.hits.push(Hit { id: "rego".into(), action, mode: Mode::Enforce });
        if self.reject.is_some() || self.action.is_some_and(|a| a >= action) {
            return;
        }
        if action == Action::Redact || action == Action::Allow {
            return;
        }
        self.action = Some(action);
        let what = if action == Action::Deny { "denied by" } else { "held for approval by" };
        self.reject = Some(Reject {
            kind: RejectKind::Permission,
            message: format!("{what} the policy's Rego module{message}"),
            rule: Some("rego".into()),
        });
    }
}
