//! Policy test cases (`airlock policy test`), like `opa test`: each case is an identity and
//! a request (or a tool call) with the decision, rules and redactions expected.
//!
//! ```yaml
//! cases:
//!   - name: a pasted AWS key is refused
//!     identity: { subject: alice, groups: [eng] }
//!     request: { model: claude-sonnet-4-5, max_tokens: 10, messages: [{role: user, content: "AKIAIOSFODNN7EXAMPLE"}] }
//!     expect: { decision: deny, rules: [no-credentials-in-prompts], status: 403 }
//!   - name: rm -rf / is blocked
//!     tool_call: { name: Bash, input: { command: "rm -rf /" } }
//!     expect: { decision: deny, rules: [no-destructive-shell] }
//! ```

use crate::{Policy, RejectKind};
use airlock_config::ConfigErrors;
use airlock_config::yaml::{Field, Map, Walker};
use airlock_detect::{MaskKey, Pseudonyms};
use marked_yaml::Node;
use serde_json::Value;

/// One case's result: empty `failures` means it passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseReport {
    pub name: String,
    pub failures: Vec<String>,
}

struct Case {
    name: String,
    groups: Vec<String>,
    request: Option<Value>,
    tool_call: Option<(String, Value, String)>,
    expect: Expect,
}

#[derive(Default)]
struct Expect {
    decision: Option<String>,
    rules: Option<Vec<String>>,
    status: Option<u64>,
    message_contains: Option<String>,
    forwarded_contains: Vec<String>,
    forwarded_excludes: Vec<String>,
    redactions: Option<Vec<(String, u64)>>,
}

/// YAML as JSON: plain scalars become numbers, booleans and null where they read as such.
fn to_json(node: &Node) -> Value {
    match node {
        Node::Scalar(s) => {
            let t = s.as_str();
            if s.may_coerce() {
                if let Ok(n) = t.parse::<i64>() {
                    return Value::from(n);
                }
                if let Ok(f) = t.parse::<f64>() {
                    return Value::from(f);
                }
                match t {
                    "true" => return Value::Bool(true),
                    "false" => return Value::Bool(false),
                    "null" | "~" => return Value::Null,
                    _ => {}
                }
            }
            Value::String(t.to_owned())
        }
        Node::Sequence(seq) => Value::Array(seq.iter().map(to_json).collect()),
        Node::Mapping(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.as_str().to_owned(), to_json(v))).collect())
        }
    }
}

fn object(f: Field<'_>, w: &mut Walker) -> Option<Value> {
    match to_json(f.node) {
        v @ Value::Object(_) => Some(v),
        _ => {
            w.error(f.span(), f.path(), "expected a mapping");
            None
        }
    }
}

fn case(f: Field<'_>, w: &mut Walker) -> Option<Case> {
    let mut m = f.mapping(w)?;
    let name = m.field("name", w, |f, w| f.non_empty_string(w));
    let groups = m
        .field("identity", w, |f, w| {
            let mut i = f.mapping(w)?;
            i.field("subject", w, |f, w| f.string(w));
            let g = i.field("groups", w, |f, w| f.string_list(w));
            i.finish(w);
            g
        })
        .unwrap_or_default();
    let request = m.field("request", w, object);
    let tool_call = m.field("tool_call", w, |f, w| {
        let mut t = f.mapping(w)?;
        let name = t.field("name", w, |f, w| f.non_empty_string(w));
        let input = t
            .field("input", w, |f, _| Some(to_json(f.node)))
            .unwrap_or(Value::Object(Default::default()));
        let model = t.field("model", w, |f, w| f.string(w)).unwrap_or_default();
        t.finish(w);
        Some((name?, input, model))
    });
    let e = m.field("expect", w, expect).unwrap_or_default();
    let span = *m.span();
    let path = m.path().to_owned();
    m.finish(w);
    if request.is_some() == tool_call.is_some() {
        w.error(&span, &path, "a case has either `request` or `tool_call`");
        return None;
    }
    Some(Case { name: name?, groups, request, tool_call, expect: e })
}

fn expect(f: Field<'_>, w: &mut Walker) -> Option<Expect> {
    let mut e = f.mapping(w)?;
    let out = Expect {
        decision: e.field("decision", w, |f, w| f.string(w)),
        message_contains: e.field("message_contains", w, |f, w| f.string(w)),
        rules: e.field("rules", w, |f, w| f.string_list(w)),
        status: e.field("status", w, |f, w| f.u64_in(w, 100, 599)),
        forwarded_contains: e
            .field("forwarded_contains", w, |f, w| f.string_list(w))
            .unwrap_or_default(),
        forwarded_excludes: e
            .field("forwarded_excludes", w, |f, w| f.string_list(w))
            .unwrap_or_default(),
        redactions: e.field("redactions", w, |f, w| {
            f.entries(w, |k, v, w| Some((k.to_owned(), v.u64_in(w, 0, u64::MAX)?)))
        }),
    };
    e.finish(w);
    Some(out)
}

/// Run every case in `text` against `policy`.
pub fn run_cases(
    policy: &Policy,
    source: &str,
    text: &str,
) -> Result<Vec<CaseReport>, ConfigErrors> {
    let mut w = Walker::new(source);
    let root = w.load(text);
    let cases = root.as_ref().and_then(|node| {
        let mut m = Map::root(node, &mut w)?;
        let c = m.field("cases", &mut w, |f, w| f.each(w, case));
        m.finish(&mut w);
        c
    });
    let cases = w.finish(cases)?;
    // A fixed key: hash and pseudonym tags are stable in expectations.
    let key = MaskKey::new(b"airlock policy test");
    Ok(cases.iter().map(|c| run_case(policy, c, &key)).collect())
}

fn run_case(policy: &Policy, c: &Case, key: &MaskKey) -> CaseReport {
    let mut failures = Vec::new();
    let mut expect_eq = |what: &str, want: Option<String>, got: String| {
        if let Some(want) = want
            && want != got
        {
            failures.push(format!("{what}: expected {want}, got {got}"));
        }
    };
    let (decision, rules, status, message, forwarded, redactions) =
        if let Some((name, input, model)) = &c.tool_call {
            let v = policy.check_tool_call(&c.groups, model, name, input);
            let decision = if v.deny.is_some() { "deny" } else { "allow" };
            let status = if v.deny.is_some() { "403" } else { "200" };
            let message = v.deny.map(|r| r.message).unwrap_or_default();
            (
                decision,
                v.hits.iter().map(|h| h.id.clone()).collect::<Vec<_>>(),
                status,
                message,
                String::new(),
                Vec::new(),
            )
        } else {
            let mut body =
                c.request.clone().and_then(|v| v.as_object().cloned()).unwrap_or_default();
            let len = Value::Object(body.clone()).to_string().len();
            let mut v = policy.evaluate(&c.groups, &mut body, len, key, &mut Pseudonyms::default());
            if v.reject.is_none()
                && let Some(input) = policy.rego_input("policy-test", &c.groups, &body, &v)
            {
                v.apply_rego(policy.rego_decide(&input));
            }
            // A held request has no status until a reviewer decides; a ticket is a 403 now.
            let status = match (v.reject.as_ref().map(|r| r.kind), &v.hold) {
                (None, Some(h)) if h.mode == crate::HoldMode::Ticket => "403",
                (None, Some(_)) => "held",
                (None, None) => "200",
                (Some(RejectKind::InvalidRequest), _) => "400",
                (Some(RejectKind::Permission), _) => "403",
            };
            let message = v.reject.as_ref().map(|r| r.message.clone()).unwrap_or_default();
            let forwarded =
                if v.reject.is_none() { Value::Object(body).to_string() } else { String::new() };
            (
                v.decision(),
                v.hits.iter().map(|h| h.id.clone()).collect(),
                status,
                message,
                forwarded,
                v.redactions,
            )
        };
    expect_eq("decision", c.expect.decision.clone(), decision.to_owned());
    expect_eq("status", c.expect.status.map(|s| s.to_string()), status.to_owned());
    expect_eq("rules", c.expect.rules.as_ref().map(|r| format!("{r:?}")), format!("{rules:?}"));
    if let Some(m) = &c.expect.message_contains
        && !message.contains(m.as_str())
    {
        failures.push(format!("message: expected it to contain {m:?}, got {message:?}"));
    }
    for s in &c.expect.forwarded_contains {
        if !forwarded.contains(s.as_str()) {
            failures.push(format!("forwarded request lacks {s:?}"));
        }
    }
    for s in &c.expect.forwarded_excludes {
        if forwarded.contains(s.as_str()) {
            failures.push(format!("forwarded request contains {s:?}"));
        }
    }
    if let Some(want) = &c.expect.redactions {
        let mut want: Vec<(String, u32)> =
            want.iter().map(|(k, v)| (k.clone(), *v as u32)).collect();
        want.sort();
        if want != redactions {
            failures.push(format!("redactions: expected {want:?}, got {redactions:?}"));
        }
    }
    CaseReport { name: c.name.clone(), failures }
}
