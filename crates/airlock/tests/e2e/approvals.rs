//! Just-in-time approval (security-tests.md §4.5, H-01..H-08): a held call waits for a
//! reviewer and then completes or fails — with the real Python SDK as the client and the
//! `airlock approvals` CLI as the reviewer — and a held body is forwarded once, only as
//! approved, never after denial, expiry or tampering.

use crate::clients::{client_script, required_env};
use crate::harness::*;
use http::Method;
use serde_json::Value;
use std::time::Duration;

pub(crate) const POLICY: &str = r#"
version: 1
detectors:
  wait_word: { keywords: [bluebird], category: pii }
  ticket_word: { keywords: [nightjar], category: pii }
  quick_word: { keywords: [kestrel], category: pii }
groups:
  default: {}
redact_request: [email]
rules:
  - id: codename-review
    when: { detected: [wait_word] }
    action: require_approval
    approvers: [security]
    timeout: 60s
    message: Codenames need a security review.
  - id: ticket-review
    when: { detected: [ticket_word] }
    action: require_approval
    approvers: [security]
    hold: ticket
    timeout: 60s
  - id: quick-review
    when: { detected: [quick_word] }
    action: require_approval
    approvers: [security]
    timeout: 1s
"#;

fn token(h: &Harness, subject: &str, groups: &[&str]) -> String {
    let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
    h.keys.mint(subject, &groups, 600, now()).unwrap().token
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The approvals API as `reviewer`.
async fn api(h: &Harness, reviewer: &str, method: Method, path: &str, body: &str) -> (u16, Value) {
    let auth = bearer(reviewer);
    let (code, _, bytes) = h
        .admin_call(
            method,
            path,
            &[("authorization", &auth), ("content-type", "application/json")],
            body,
        )
        .await;
    (code.as_u16(), serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// Wait until `n` approvals are pending (as `reviewer` sees them), newest first.
async fn pending(h: &Harness, reviewer: &str, n: usize) -> Vec<Value> {
    pending_on(h, h, reviewer, n).await
}

/// As [`pending`], asking `h`'s admin API, re-checking whenever the queue of the gateway
/// holding the calls (`holder`) changes — a signal, not a clock.
async fn pending_on(holder: &Harness, h: &Harness, reviewer: &str, n: usize) -> Vec<Value> {
    queue_until(holder, async || {
        let (code, v) = api(h, reviewer, Method::GET, "/admin/approvals", "").await;
        assert_eq!(code, 200, "{v}");
        let list = v["approvals"].as_array().cloned().unwrap_or_default();
        (list.len() >= n).then_some(list)
    })
    .await
}

/// Run `check` now and after every change to `holder`'s approval queue until it yields.
async fn queue_until<T>(holder: &Harness, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    guard(async {
        loop {
            let changed = holder.gateway.approvals.changed();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(v) = check().await {
                return v;
            }
            changed.await;
        }
    })
    .await
}

/// `airlock approvals ...` against this gateway's admin listener, as `caller`.
async fn cli(h: &Harness, caller: &str, args: &[&str]) -> (bool, String) {
    let admin = format!("http://{}", h.admin);
    let mut all = vec!["approvals", args[0], "--admin", admin.as_str()];
    all.extend_from_slice(&args[1..]);
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(&all)
        .env("AIRLOCK_ADMIN_TOKEN", caller)
        .env("AIRLOCK_CONFIG_DIR", std::env::temp_dir().join("airlock-approvals-cli-none"))
        .output()
        .await
        .unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Start the real Python SDK on one held call; its `RESULT` line when it ends.
pub(crate) fn held_client(
    h: &Harness,
    requester: &str,
    prompt: &str,
    stream: bool,
) -> tokio::task::JoinHandle<Value> {
    let python = required_env("AIRLOCK_TEST_PYTHON_ANTHROPIC2");
    let mut cmd = tokio::process::Command::new(python);
    cmd.arg(client_script("held_sdk.py"))
        .arg(prompt)
        .arg(if stream { "1" } else { "0" })
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", std::env::temp_dir())
        .env("ANTHROPIC_BASE_URL", format!("http://{}", h.addr))
        .env("ANTHROPIC_API_KEY", requester)
        .kill_on_drop(true);
    tokio::spawn(async move {
        let out =
            tokio::time::timeout(Duration::from_secs(120), cmd.output()).await.unwrap().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let line = stdout.lines().find_map(|l| l.strip_prefix("RESULT ")).unwrap_or_else(|| {
            panic!("no result\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr))
        });
        serde_json::from_str(line).unwrap()
    })
}

/// H-01, H-02, H-06: the SDK's call waits (streaming: the response starts with pings), a
/// reviewer approves with the CLI, the call completes with the upstream's answer; the body
/// forwarded is the redacted one the reviewer saw, by hash; every step is in the audit log.
#[tokio::test]
async fn a_held_call_completes_once_a_reviewer_approves_with_the_cli() {
    let h = Harness::start_with_policy(POLICY, "").await;
    let bob = token(&h, "bob", &["security"]);
    for (i, stream) in [false, true].into_iter().enumerate() {
        let alice = token(&h, "alice", &["eng"]);
        let prompt = format!("call {i}: bluebird status, mail jane@example.com");
        let client = held_client(&h, &alice, &prompt, stream);
        let a = pending(&h, &bob, 1).await.remove(0);
        assert_eq!(a["rule"], "codename-review");
        assert_eq!(a["requester"]["subject"], "alice");
        assert_eq!(a["can_decide"], true);
        assert_eq!(h.mock.received().len(), i, "nothing goes upstream before approval");
        let id = a["id"].as_str().unwrap().to_owned();
        // The reviewer's view: the request as it would be forwarded, values masked.
        let (ok, listed) = cli(&h, &bob, &["list"]).await;
        assert!(ok && listed.contains(&id), "{listed}");
        let (ok, shown) = cli(&h, &bob, &["show", &id]).await;
        assert!(ok, "{shown}");
        assert!(shown.contains("[EMAIL]") && !shown.contains("jane@example.com"), "{shown}");
        let (ok, out) = cli(&h, &bob, &["approve", &id, "--reason", "looked fine"]).await;
        assert!(ok, "{out}");
        let result = guard(client).await.unwrap();
        assert_eq!(result["ok"], true, "{result}");
        assert_eq!(result["text"], "Hello from the Airlock mock upstream.");
        let received = h.mock.received();
        assert_eq!(received.len(), i + 1, "forwarded exactly once");
        let body = &received[i].body;
        assert_eq!(airlock_proxy::approvals::sha256_hex(body), a["body_sha256"].as_str().unwrap());
        assert!(String::from_utf8_lossy(body).contains("[EMAIL]"));
        // The audit log: held (request entry), decided by bob (an admin-call entry), and
        // the response entry with the approval's outcome.
        let request_id = a["request_id"].as_str().unwrap();
        let entries = h.audit_entries(request_id).await;
        let last = entries.last().unwrap().parsed().unwrap();
        let approval = &last.detail["approval"];
        assert_eq!(
            (approval["state"].as_str(), approval["decided_by"].as_str()),
            (Some("approved"), Some("bob"))
        );
        assert_eq!(entries[0].decision.as_deref(), Some("require_approval"));
        let held = entries[0].parsed().unwrap();
        assert_eq!(held.detail["approval"]["id"], a["id"], "the request entry records the hold");
        assert_eq!(held.detail["approval"]["state"], "pending");
    }
}

/// H-03, H-04, H-05: a denial reaches the client with the reviewer's reason; an expired hold
/// is a 403 and cannot be approved afterwards (409); the requester cannot approve their own
/// request, and someone outside the approver group cannot see or decide it.
#[tokio::test]
async fn denial_expiry_and_separation_of_duties() {
    let h = Harness::start_with_policy(POLICY, "").await;
    let bob = token(&h, "bob", &["security"]);
    // The requester is a reviewer too: still not for their own request.
    let alice = token(&h, "alice", &["eng", "security"]);
    let carol = token(&h, "carol", &["eng"]);
    let client = held_client(&h, &alice, "bluebird plans", false);
    let a = pending(&h, &bob, 1).await.remove(0);
    let id = a["id"].as_str().unwrap().to_owned();
    let approve = format!("/admin/approvals/{id}/approve");
    let (code, v) = api(&h, &alice, Method::POST, &approve, "{}").await;
    assert_eq!(code, 403, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("own request"));
    let (code, _) = api(&h, &carol, Method::POST, &approve, "{}").await;
    assert_eq!(code, 404, "outside the approver group, the approval does not exist");
    let (code, v) = api(&h, &carol, Method::GET, "/admin/approvals", "").await;
    assert_eq!((code, v["approvals"].as_array().map(Vec::len)), (200, Some(0)));
    let (ok, out) = cli(&h, &bob, &["deny", &id, "--reason", "not this quarter"]).await;
    assert!(ok, "{out}");
    let result = guard(client).await.unwrap();
    assert_eq!(result["status"], 403, "{result}");
    assert!(result["message"].as_str().unwrap().contains("not this quarter"), "{result}");
    let (code, _) = api(&h, &bob, Method::POST, &approve, "{}").await;
    assert_eq!(code, 409, "a denied request cannot be approved");

    // Expiry (the rule's 1 s timeout): 403 "approval timed out", then approving is a 409.
    let (code, _, body) =
        h.messages(r#"{"model":"claude-sonnet-4-5","max_tokens":5,"messages":[{"role":"user","content":"kestrel"}]}"#, &[]).await;
    assert_eq!(code, 403);
    assert!(String::from_utf8_lossy(&body).contains("approval timed out"));
    let (code, v) = api(&h, &bob, Method::GET, "/admin/approvals?state=expired", "").await;
    assert_eq!(code, 200);
    let expired = v["approvals"][0]["id"].as_str().unwrap().to_owned();
    let (code, _) =
        api(&h, &bob, Method::POST, &format!("/admin/approvals/{expired}/approve"), "{}").await;
    assert_eq!(code, 409);
    assert!(h.mock.received().is_empty(), "nothing denied or expired went upstream");
}

/// H-02: two reviewers approving at the same moment forward the request once; H-06: a
/// stored body edited after the hold is refused, never forwarded.
#[tokio::test]
async fn double_approval_forwards_once_and_a_tampered_body_is_refused() {
    let h = Harness::start_with_policy(POLICY, "").await;
    let (bob, dave) = (token(&h, "bob", &["security"]), token(&h, "dave", &["security"]));
    let held = |text: &'static str| {
        let h = &h;
        async move {
            let body = format!(
                r#"{{"model":"claude-sonnet-4-5","max_tokens":5,"messages":[{{"role":"user","content":"{text}"}}]}}"#
            );
            h.messages(&body, &[]).await
        }
    };
    let call = held("bluebird one");
    let approvals = async {
        let a = pending(&h, &bob, 1).await.remove(0);
        let path = format!("/admin/approvals/{}/approve", a["id"].as_str().unwrap());
        let (x, y) = tokio::join!(
            api(&h, &bob, Method::POST, &path, "{}"),
            api(&h, &dave, Method::POST, &path, "{}")
        );
        let mut codes = [x.0, y.0];
        codes.sort();
        assert_eq!(codes, [200, 409], "one approval wins, the other is told it lost");
    };
    let ((code, _, _), ()) = tokio::join!(call, approvals);
    assert_eq!(code, 200);
    assert_eq!(h.mock.received().len(), 1);

    // Tampering: the stored body is changed after the hold; the holder refuses it.
    let call = held("bluebird two");
    let tamper = async {
        let a = pending(&h, &bob, 1).await.remove(0);
        let id = a["id"].as_str().unwrap().to_owned();
        let n = h
            .store()
            .execute(
                "UPDATE approvals SET body = replace(body, 'two', 'exfiltrate') WHERE id = $1",
                &[airlock_store::Param::Text(id.clone())],
            )
            .unwrap();
        assert_eq!(n, 1);
        let (code, _) =
            api(&h, &bob, Method::POST, &format!("/admin/approvals/{id}/approve"), "{}").await;
        assert_eq!(code, 200);
    };
    let ((code, _, body), ()) = tokio::join!(call, tamper);
    assert_eq!(code, 403, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("altered"));
    assert_eq!(h.mock.received().len(), 1, "the tampered body never went upstream");
}

/// Ticket mode: answered at once with 403 naming the approval; after approval the same
/// identity sending the identical request passes, once; another identity never does.
#[tokio::test]
async fn ticket_mode_round_trip() {
    let h = Harness::start_with_policy(POLICY, "").await;
    let bob = token(&h, "bob", &["security"]);
    let alice = token(&h, "alice", &["eng"]);
    let erin = token(&h, "erin", &["eng"]);
    let body = r#"{"model":"claude-sonnet-4-5","max_tokens":5,"messages":[{"role":"user","content":"nightjar export"}]}"#;
    let send = |who: &str| {
        let auth = bearer(who);
        let h = &h;
        async move {
            let (code, _, bytes) = h
                .call(
                    Method::POST,
                    "/v1/messages",
                    &[("authorization", &auth), ("content-type", "application/json")],
                    body,
                )
                .await;
            (code.as_u16(), String::from_utf8_lossy(&bytes).into_owned())
        }
    };
    let (code, text) = send(&alice).await;
    assert_eq!(code, 403, "{text}");
    let id = text.split("(approval ").nth(1).and_then(|s| s.get(..28)).unwrap().to_owned();
    assert!(id.starts_with("apr_"), "{text}");
    // Sent again while pending: the same ticket, not a second one.
    let (code, again) = send(&alice).await;
    assert_eq!(code, 403);
    assert!(again.contains(&id), "{again}");
    let (code, _) =
        api(&h, &bob, Method::POST, &format!("/admin/approvals/{id}/approve"), "{}").await;
    assert_eq!(code, 200);
    assert_eq!(send(&erin).await.0, 403, "another identity cannot use the ticket");
    assert_eq!(send(&alice).await.0, 200, "the identical request passes once approved");
    let (code, text) = send(&alice).await;
    assert_eq!(code, 403, "a ticket is used once");
    assert!(!text.contains(&id), "{text}");
    assert_eq!(h.mock.received().len(), 1);
}

/// H-07 (client side): a held call whose client goes away is marked abandoned; approving it
/// afterwards sends nothing.
#[tokio::test]
async fn an_abandoned_hold_is_never_sent() {
    let h = Harness::start_with_policy(POLICY, "").await;
    let bob = token(&h, "bob", &["security"]);
    let t = h.token();
    let body = r#"{"model":"claude-sonnet-4-5","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"bluebird gone"}]}"#;
    let headers = [("x-api-key", t.as_str()), ("content-type", "application/json")];
    let response = h.send(Method::POST, "/v1/messages", &headers, body).await;
    assert_eq!(response.status(), 200);
    let a = pending(&h, &bob, 1).await.remove(0);
    drop(response);
    let id = a["id"].as_str().unwrap().to_owned();
    let path = format!("/admin/approvals/{id}");
    queue_until(&h, async || {
        let (_, v) = api(&h, &bob, Method::GET, &path, "").await;
        (v["state"] == "abandoned").then_some(())
    })
    .await;
    let (code, _) =
        api(&h, &bob, Method::POST, &format!("/admin/approvals/{id}/approve"), "{}").await;
    assert_eq!(code, 409);
    assert!(h.mock.received().is_empty());
}

/// H-08: two gateways sharing a PostgreSQL store: a call held on A is approved through B's
/// admin API, and A forwards it and answers.
#[tokio::test]
async fn held_on_one_instance_approved_on_another() {
    let store = tokio::task::spawn_blocking(Harness::postgres_store).await.unwrap();
    let dir = fresh_dir("e2e-approvals");
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    let config = |name: &str| {
        format!("policy: {}\n{}", policy.display(), shared_store_config(&store, &dir, name))
    };
    let a = Harness::start_with(&config("gw-a")).await;
    let b = a.sibling(&config("gw-b")).await;
    let bob = token(&b, "bob", &["security"]);
    let call = async {
        let body = r#"{"model":"claude-sonnet-4-5","max_tokens":5,"messages":[{"role":"user","content":"bluebird from a"}]}"#;
        a.messages(body, &[]).await
    };
    let approve = async {
        let held = pending_on(&a, &b, &bob, 1).await.remove(0);
        assert_eq!(held["instance"], "gw-a");
        let path = format!("/admin/approvals/{}/approve", held["id"].as_str().unwrap());
        assert_eq!(api(&b, &bob, Method::POST, &path, "{}").await.0, 200);
    };
    let ((code, _, body), ()) = tokio::join!(call, approve);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(a.mock.received().len(), 1);
}

/// Notifications: a held request is announced to the webhooks configured for its rule —
/// Slack-shaped (names escaped) and plain JSON — with its id, requester, rule and link; a
/// failing webhook is retried with backoff, and the approval never depends on it.
#[tokio::test]
async fn held_requests_are_announced_to_webhooks_with_retries() {
    let (slack_port, mut slack) = webhook_receiver(1).await;
    let (json_port, mut plain) = webhook_receiver(0).await;
    let extra = format!(
        "approvals:\n  link: http://127.0.0.1:9/ui/approvals/{{id}}\n  webhooks:\n    - url: http://127.0.0.1:{slack_port}/slack\n      format: slack\n      max_attempts: 3\n    - url: http://127.0.0.1:{json_port}/hook\n      rules: [ticket-review]\n"
    );
    let h = Harness::start_with_policy(POLICY, &extra).await;
    let bob = token(&h, "bob", &["security"]);
    // The requester's name tries to smuggle a Slack link.
    let mallory = token(&h, "<!channel|mallory>", &["eng"]);
    let body = r#"{"model":"claude-sonnet-4-5","max_tokens":5,"messages":[{"role":"user","content":"nightjar numbers"}]}"#;
    let auth = bearer(&mallory);
    let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
    let (code, _, _) = h.call(Method::POST, "/v1/messages", &headers, body).await;
    assert_eq!(code, 403, "a ticket");
    let a = pending(&h, &bob, 1).await.remove(0);
    let id = a["id"].as_str().unwrap();
    // The plain JSON hook (this rule is in its list).
    let got: Value = serde_json::from_str(&guard(plain.recv()).await.unwrap()).unwrap();
    assert_eq!(got["approval_id"], id);
    assert_eq!(got["rule"], "ticket-review");
    assert_eq!(got["requester"], "<!channel|mallory>");
    assert_eq!(got["link"], format!("http://127.0.0.1:9/ui/approvals/{id}"));
    // The Slack hook: refused once, delivered on the retry; the name cannot form a link.
    let first = guard(slack.recv()).await.unwrap();
    let second = guard(slack.recv()).await.unwrap();
    assert_eq!(first, second, "the same notification, retried");
    let msg: Value = serde_json::from_str(&second).unwrap();
    let text = msg["text"].as_str().unwrap();
    assert!(text.contains("&lt;!channel|mallory&gt;") && !text.contains("<!channel"), "{text}");
    assert!(text.contains("|Review it>") && text.contains(id), "{text}");
    // A hold of another rule reaches only the hook without a rule list.
    let client = held_client(&h, &token(&h, "alice", &["eng"]), "bluebird", false);
    let list = pending(&h, &bob, 2).await;
    let held = list.iter().find(|a| a["rule"] == "codename-review").unwrap();
    let msg: Value = serde_json::from_str(&guard(slack.recv()).await.unwrap()).unwrap();
    assert!(msg["text"].as_str().unwrap().contains(held["id"].as_str().unwrap()));
    assert!(plain.try_recv().is_err(), "the JSON hook only takes ticket-review");
    let path = format!("/admin/approvals/{}/deny", held["id"].as_str().unwrap());
    assert_eq!(api(&h, &bob, Method::POST, &path, r#"{"reason":"no"}"#).await.0, 200);
    assert_eq!(guard(client).await.unwrap()["status"], 403);
}

/// A standing grant: approving with `--grant` lets the same identity pass the same rule
/// without a hold until it ends or is revoked; others are still held.
#[tokio::test]
async fn a_standing_grant_passes_its_identity_until_revoked() {
    let h = Harness::start_with_policy(POLICY, "").await;
    let bob = token(&h, "bob", &["security"]);
    let alice = token(&h, "alice", &["eng"]);
    let body = |n: u32| {
        format!(
            r#"{{"model":"claude-sonnet-4-5","max_tokens":5,"messages":[{{"role":"user","content":"bluebird {n}"}}]}}"#
        )
    };
    let send = |who: String, n: u32| {
        let h = &h;
        let body = body(n);
        async move {
            let auth = bearer(&who);
            let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
            h.call(Method::POST, "/v1/messages", &headers, &body).await.0.as_u16()
        }
    };
    let first = send(alice.clone(), 1);
    let approve = async {
        let a = pending(&h, &bob, 1).await.remove(0);
        let (ok, out) =
            cli(&h, &bob, &["approve", a["id"].as_str().unwrap(), "--grant", "10m"]).await;
        assert!(ok && out.contains("grant grt_"), "{out}");
    };
    assert_eq!(tokio::join!(first, approve).0, 200);
    // Granted: no hold for alice under this rule.
    assert_eq!(send(alice.clone(), 2).await, 200);
    assert_eq!(h.mock.received().len(), 2);
    let (_, v) = api(&h, &bob, Method::GET, "/admin/approvals/grants", "").await;
    let grant = v["grants"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(v["grants"][0]["subject"], "alice");
    // Someone else is still held (and times out here as a plain call we abandon).
    let other =
        tokio::time::timeout(Duration::from_millis(300), send(token(&h, "erin", &["eng"]), 3));
    assert!(other.await.is_err(), "erin is held");
    let (ok, out) = cli(&h, &bob, &["revoke-grant", &grant]).await;
    assert!(ok, "{out}");
    let again = tokio::time::timeout(Duration::from_millis(300), send(alice.clone(), 4));
    assert!(again.await.is_err(), "alice is held again once the grant is revoked");
    assert_eq!(h.mock.received().len(), 2);
}

/// H-07 (restart): holds a gateway had when it stopped (as a crash leaves them: pending, and
/// approved but not yet claimed) are abandoned when it starts again — never sent.
#[tokio::test]
async fn holds_from_before_a_restart_are_never_sent() {
    let dir = fresh_dir("e2e-restart");
    let db = dir.join("airlock.db");
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    // What the previous run of instance `gw-r` left in the store.
    {
        let mut store =
            airlock_store::Store::open(&airlock_config::StoreUrl::Sqlite(db.clone())).unwrap();
        let now = airlock_store::now_ms();
        for (id, approved) in
            [("apr_000000000000000000000001", false), ("apr_000000000000000000000002", true)]
        {
            let a = airlock_store::Approval {
                id: id.into(),
                request_id: "req_before".into(),
                created_ms: now,
                expires_ms: now + 600_000,
                subject: "alice".into(),
                groups: vec!["eng".into()],
                rule: "codename-review".into(),
                approvers: vec!["security".into()],
                model: None,
                stream: false,
                mode: "wait".into(),
                body_hash: "0".repeat(64),
                view: "{}".into(),
                state: "pending".into(),
                decided_by: None,
                reason: None,
                decided_ms: None,
                instance: "gw-r".into(),
            };
            store.hold(&a, Some("{\"model\":\"x\"}")).unwrap();
            if approved {
                assert!(store.decide(id, true, "bob", None, now).unwrap());
            }
        }
    }
    let h = Harness::start_with(&format!(
        "policy: {}\nstore: sqlite://{}\naudit:\n  instance: gw-r\n",
        policy.display(),
        db.display()
    ))
    .await;
    let bob = token(&h, "bob", &["security"]);
    let (_, v) = api(&h, &bob, Method::GET, "/admin/approvals?state=abandoned", "").await;
    assert_eq!(v["approvals"].as_array().map(Vec::len), Some(2), "{v}");
    let path = "/admin/approvals/apr_000000000000000000000001/approve";
    assert_eq!(api(&h, &bob, Method::POST, path, "{}").await.0, 409);
    let n = h.store().execute("UPDATE approvals SET view = view WHERE body IS NOT NULL", &[]);
    assert_eq!(n.unwrap(), 0, "their bodies are gone");
    assert!(h.mock.received().is_empty());
}
