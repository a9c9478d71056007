//! Policy through the gateway: a real SDK client sees each documented outcome (deny, 400 for
//! a model, clamp, redaction, pseudonym round trip, masked stream, dry_run, blocked tool
//! calls), and the upstream and the audit log see what the policy says they should.

use crate::clients::{client_script, required_env, run_client};
use crate::harness::*;
use serde_json::{Value, json};

const POLICY: &str = r#"
version: 1
groups:
  default: { models: ["claude-sonnet-*"], max_output_tokens: 1000 }
redact_request: [email, {us_ssn: pseudonym}]
mask_response: [email, credit_card, secrets]
rules:
  - id: no-credentials
    when: { detected: [secrets], in: [user, system] }
    action: deny
    message: Remove credentials.
  - id: merger-watch
    when: { matches: ['(?i)\bmerger\b'] }
    action: deny
    mode: dry_run
  - id: no-rm
    when: { tool_call: { name: Bash, input_matches: 'rm\s+-rf\s+/' } }
    action: deny
"#;

fn sent(h: &Harness, needle: &str) -> Value {
    let r = h
        .mock
        .received()
        .into_iter()
        .rev()
        .find(|r| String::from_utf8_lossy(&r.body).contains(needle))
        .unwrap_or_else(|| panic!("no request with {needle:?} reached the mock"));
    serde_json::from_slice(&r.body).unwrap()
}

#[tokio::test]
async fn a_real_client_sees_every_policy_outcome() {
    let h = Harness::start_with_policy(POLICY, "").await;
    let python = required_env("AIRLOCK_TEST_PYTHON_ANTHROPIC2");
    run_client(&h, &python, &[client_script("policy_sdk.py")], &[]).await;

    // What the upstream saw: the clamp, the redaction, the pseudonym; never the raw values.
    assert_eq!(sent(&h, "clamp me")["max_tokens"], 1000);
    let all: String =
        h.mock.received().iter().map(|r| String::from_utf8_lossy(&r.body).into_owned()).collect();
    for raw in ["jane@example.com", "078-05-1120", "AKIAIOSFODNN7EXAMPLE"] {
        assert!(!all.contains(raw), "{raw} reached the upstream");
    }
    assert!(all.contains("mail [EMAIL]"));
    assert!(all.contains("my ssn is <US_SSN_"));

    // The SDK's growing conversation reached the upstream with an identical redacted prefix.
    let turns: Vec<Value> = h
        .mock
        .received()
        .iter()
        .filter(|r| String::from_utf8_lossy(&r.body).contains("history-marker"))
        .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap()["messages"][0].clone())
        .collect();
    assert_eq!(turns.len(), 2);
    assert_eq!(turns[0].to_string(), turns[1].to_string());
    assert!(turns[0].to_string().contains("[EMAIL]"), "{}", turns[0]);

    // What the audit log holds: decisions, rules with their modes, the policy version.
    let records = h.records.wait_for(12).await;
    let by_rule = |id: &str| records.iter().filter(|r| r.rules.iter().any(|h| h.id == id)).count();
    assert_eq!(by_rule("no-credentials"), 1);
    assert_eq!(by_rule("merger-watch"), 1);
    assert_eq!(by_rule("no-rm"), 2);
    let dry = records.iter().find(|r| r.rules.iter().any(|h| h.id == "merger-watch")).unwrap();
    assert_eq!((dry.decision, dry.status), (Some("allow"), Some(200)));
    assert_eq!(dry.rules[0].mode, "dry_run");
    let rows = h.audit_entries(&dry.request_id).await;
    let body: Value = serde_json::from_str(&rows[0].body).unwrap();
    assert!(body["detail"]["policy"]["version"].as_str().unwrap().starts_with("sha256:"), "{body}");
    assert_eq!(rows[0].rules, r#"["merger-watch"]"#);
    let masked = records.iter().find(|r| !r.masked.is_empty()).expect("a response was masked");
    assert!(masked.masked.iter().any(|(d, _)| d == "aws_access_key"), "{:?}", masked.masked);
}

/// An agent resends its whole history every turn: the redacted prefix must come out
/// byte-identical, or the provider's prompt cache misses and signed blocks break.
#[tokio::test]
async fn a_growing_conversation_keeps_an_identical_redacted_prefix() {
    let h = Harness::start_with_policy(POLICY, "").await;
    let mut messages =
        vec![json!({"role": "user", "content": "I am jane@example.com, ssn 078-05-1120"})];
    let mut prefixes = Vec::new();
    for turn in 0..3 {
        let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": messages})
            .to_string();
        let (status, _, reply) = h.messages(&body, &[]).await;
        assert_eq!(status, 200);
        let reply: Value = serde_json::from_slice(&reply).unwrap();
        let upstream = h.mock.received().last().unwrap().body.clone();
        let upstream: Value = serde_json::from_slice(&upstream).unwrap();
        prefixes.push(upstream["messages"][0].to_string());
        messages.push(json!({"role": "assistant", "content": reply["content"]}));
        messages
            .push(json!({"role": "user", "content": format!("turn {turn}: mail bob@example.com")}));
    }
    assert!(prefixes.iter().all(|p| p == &prefixes[0]), "{prefixes:?}");
    assert!(!prefixes[0].contains("jane@") && prefixes[0].contains("[EMAIL]"), "{}", prefixes[0]);
}

/// An invalid policy file is refused with every error and its line.
#[tokio::test]
async fn an_invalid_policy_file_is_refused_with_its_lines() {
    let dir = fresh_dir("bad-policy");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("policy.yaml");
    std::fs::write(&path, "version: 1\nrules:\n  - id: x\n    when: { detected: [nope] }\n    action: deny\nextra: 1\n").unwrap();
    let config = airlock_config::parse("t.yaml", &format!("policy: {}\n", path.display())).unwrap();
    let e = airlock_proxy::policy::load(&config).unwrap_err();
    assert!(
        e.contains("policy.yaml:4")
            && e.contains("unknown detector `nope`")
            && e.contains("policy.yaml:6"),
        "{e}"
    );
}

fn airlock(args: &[&str]) -> (i32, String) {
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_airlock")).args(args).output().unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// `airlock policy check|test|explain`: exit codes a CI job can rely on, errors with lines.
#[test]
fn the_policy_cli_checks_tests_and_explains() {
    let dir = fresh_dir("policy-cli");
    std::fs::create_dir_all(&dir).unwrap();
    let (code, out) = airlock(&["policy", "check"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = airlock(&["policy", "test"]);
    assert!(code == 0 && out.contains("0 failed"), "{out}");

    let good = dir.join("p.yaml");
    std::fs::write(&good, POLICY).unwrap();
    std::fs::write(
        dir.join("p.tests.yaml"),
        "cases:\n  - name: creds\n    request: { model: claude-sonnet-4-5, max_tokens: 1, messages: [{ role: user, content: AKIAIOSFODNN7EXAMPLE }] }\n    expect: { decision: deny, rules: [no-credentials] }\n  - name: wrong on purpose\n    request: { model: claude-sonnet-4-5, max_tokens: 1, messages: [{ role: user, content: hi }] }\n    expect: { decision: deny }\n",
    )
    .unwrap();
    let (code, out) = airlock(&["policy", "test", good.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("PASS  creds")
            && out.contains("FAIL  wrong on purpose")
            && out.contains("expected deny, got allow"),
        "{out}"
    );

    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "version: 1\nrules:\n  - id: x\n    when: { models: [a] }\n    action: nope\n",
    )
    .unwrap();
    let (code, out) = airlock(&["policy", "check", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(out.contains("bad.yaml:5") && out.contains("expected allow, deny"), "{out}");

    let req = dir.join("req.json");
    std::fs::write(&req, r#"{"model":"claude-sonnet-4-5","max_tokens":5000,"messages":[{"role":"user","content":"the merger, jane@example.com"}]}"#).unwrap();
    let (code, out) = airlock(&[
        "policy",
        "explain",
        "--policy",
        good.to_str().unwrap(),
        "--request",
        req.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    for needle in [
        "decision:  redact",
        "redacted:  email×1",
        "clamped:   max_tokens 5000 → 1000",
        "MATCH merger-watch [deny dry_run] matches ✓",
    ] {
        assert!(out.contains(needle), "{needle} missing:\n{out}");
    }
}

fn deny_word(word: &str) -> String {
    format!(
        "version: 1\ngroups:\n  default: {{}}\nrules:\n  - id: no-{word}\n    when: {{ keywords: [{word}] }}\n    action: deny\n"
    )
}

async fn status_of(h: &Harness, text: &str) -> u16 {
    let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 8, "messages": [{"role": "user", "content": text}]});
    h.messages(&body.to_string(), &[]).await.0.as_u16()
}

/// The policy reloads when its file changes and on demand (SIGHUP's path): the new version
/// judges the next request; a broken file is refused with its lines and the old one stays.
#[tokio::test]
async fn the_policy_reloads_and_a_broken_file_never_replaces_it() {
    use http::Method;
    let h = Harness::start_with_policy(&deny_word("alpha"), "").await;
    let path = h.config.policy.clone().unwrap();
    let admin = h.keys.mint("ops", &["airlock-admins".to_owned()], 600, now()).unwrap().token;
    let auth = format!("Bearer {admin}");
    let policy_status = || async {
        let (status, _, body) = h
            .admin_call(Method::GET, "/admin/policy", &[("authorization", auth.as_str())], "")
            .await;
        assert_eq!(status, 200);
        serde_json::from_slice::<Value>(&body).unwrap()
    };
    let first = policy_status().await["version"].as_str().unwrap().to_owned();
    assert_eq!((status_of(&h, "alpha").await, status_of(&h, "beta").await), (403, 200));

    // A change to the file is picked up by the follower (wait on the reload, not a clock).
    let mut reloads = h.policy.subscribe();
    std::fs::write(&path, deny_word("beta")).unwrap();
    guard(reloads.changed()).await.unwrap();
    assert!(h.policy.status().last_error.is_none(), "{:?}", h.policy.status().last_error);
    assert_ne!(policy_status().await["version"], first.as_str());
    assert_eq!((status_of(&h, "alpha").await, status_of(&h, "beta").await), (200, 403));

    // A broken file: refused with its line, the previous policy keeps judging, readiness says so.
    std::fs::write(&path, "version: 1\nrules:\n  - id: x\n    action: explode\n").unwrap();
    let (status, _, body) = h
        .admin_call(Method::POST, "/admin/policy/reload", &[("authorization", auth.as_str())], "")
        .await;
    assert_eq!(status, 400);
    let body = String::from_utf8_lossy(&body).into_owned();
    assert!(body.contains(":4:") && body.contains("expected allow, deny"), "{body}");
    assert_eq!((status_of(&h, "alpha").await, status_of(&h, "beta").await), (200, 403));
    let s = policy_status().await;
    assert!(
        s["last_reload_error"].as_str().unwrap().contains("explode")
            || s["last_reload_error"].as_str().unwrap().contains("expected allow"),
        "{s}"
    );
    assert!(s["reload_failures"].as_u64().unwrap() >= 1);
    let (status, _, ready) = h.admin_call(Method::GET, "/readyz", &[], "").await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&ready).contains("policy reload refused"));
    let (_, _, metrics) = h.admin_call(Method::GET, "/metrics", &[], "").await;
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(metrics.contains("airlock_policy_last_reload_ok 0"), "{metrics}");
    assert!(!metrics.contains("airlock_policy_reload_failures_total 0\n"), "{metrics}");
    let current = policy_status().await["version"].as_str().unwrap().to_owned();
    assert!(
        metrics.contains(&format!("airlock_policy_info{{version=\"{current}\"}} 1")),
        "{metrics}"
    );
}

/// The Rego layer on the request path: it tightens with its reason, and a module that runs
/// out of time fails closed (403) without holding the request past its limit.
#[tokio::test]
async fn the_rego_layer_tightens_and_fails_closed_through_the_gateway() {
    let policy = r#"
version: 1
groups:
  default: {}
rego:
  timeout: 20ms
  module: |
    package airlock
    import rego.v1
    decision := {"decision": "deny", "reason": "keep answers short"} if input.request.max_tokens > 100
    decision := count([x | some x in numbers.range(1, 5000000)]) if input.request.model == "claude-slow"
"#;
    let h = Harness::start_with_policy(policy, "").await;
    let call = |model: &str, max_tokens: u32| {
        json!({"model": model, "max_tokens": max_tokens, "messages": [{"role": "user", "content": "hi"}]}).to_string()
    };
    let (status, _, _) = h.messages(&call("claude-sonnet-4-5", 50), &[]).await;
    assert_eq!(status, 200);
    let (status, headers, body) = h.messages(&call("claude-sonnet-4-5", 500), &[]).await;
    assert_eq!(status, 403);
    assert!(String::from_utf8_lossy(&body).contains("Rego module: keep answers short"));
    let record = h.records.wait_for_request(&request_id(&headers)).await;
    assert!(record.rules.iter().any(|r| r.id == "rego" && r.action == "deny"));
    let (status, _, body) = h.messages(&call("claude-slow", 50), &[]).await;
    assert_eq!(status, 403);
    assert!(
        String::from_utf8_lossy(&body).contains("could not decide"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(h.mock.received().len(), 1, "only the allowed call reached the upstream");
}
