//! The audit log end to end: entries for every request, what they hold and never hold,
//! failing closed, strict mode, and verification.

use crate::harness::*;
use airlock_audit::VerifierKey;
use airlock_authn::SessionKeys;
use airlock_proxy::revoke::Revoked;
use http::{Method, StatusCode};

fn body(row: &airlock_audit::Row) -> serde_json::Value {
    serde_json::from_str(&row.body).unwrap()
}

fn verify(h: &Harness) -> Vec<airlock_audit::ChainReport> {
    let key_file = airlock_proxy::audit::signing_key_file(&h.config);
    let key = SessionKeys::load_or_create(&key_file).unwrap();
    airlock_store::audit::verify(&mut h.store(), &[VerifierKey::of(&key)], &[]).unwrap()
}

#[tokio::test]
async fn forwarded_requests_have_a_request_and_a_response_entry() {
    let h = Harness::start().await;
    let (status, headers, _) = h.messages(SIMPLE, &[("user-agent", "audit-test/1")]).await;
    assert_eq!(status, StatusCode::OK);
    let rows = h.audit_entries(&request_id(&headers)).await;
    let kinds: Vec<&str> = rows.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(kinds, ["request", "response"]);
    let (req, resp) = (body(&rows[0]), body(&rows[1]));
    assert_eq!(req["subject"], "alice");
    assert_eq!(req["groups"], serde_json::json!(["eng"]));
    assert_eq!(req["model"], "claude-sonnet-4-5");
    assert_eq!(req["decision"], "allow");
    assert_eq!(req["detail"]["user_agent"], "audit-test/1");
    assert_eq!(req["detail"]["client_addr"], "127.0.0.1");
    assert_eq!(resp["status"], 200);
    assert_eq!(resp["detail"]["outcome"], "completed");
    assert!(resp["detail"]["usage"]["output_tokens"].as_u64().unwrap() > 0, "{resp}");
    assert!(resp["detail"]["upstream"]["request_id"].is_string());
    assert!(resp["detail"]["timings_us"]["total"].as_u64().unwrap() > 0);

    // A stream: usage from its events.
    let token = h.token();
    let headers = [("x-api-key", token.as_str()), ("content-type", "application/json")];
    let (status, headers, _) = h.call(Method::POST, "/v1/messages", &headers, STREAM).await;
    assert_eq!(status, StatusCode::OK);
    let rows = h.audit_entries(&request_id(&headers)).await;
    let resp = body(&rows[1]);
    assert_eq!(resp["detail"]["stream"], true);
    assert!(resp["detail"]["events"].as_u64().unwrap() > 3);
    assert!(resp["detail"]["usage"]["input_tokens"].is_u64(), "{resp}");

    // Refused before forwarding: one `record` entry.
    let (status, headers, _) =
        h.call(Method::POST, "/v1/messages", &[("x-api-key", "nope")], SIMPLE).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let rows = h.audit_entries(&request_id(&headers)).await;
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].kind.as_str(), rows[0].status), ("record", Some(401)));

    let reports = verify(&h);
    assert!(reports.iter().all(|r| r.problem.is_none()), "{reports:?}");
}

/// A planted secret, PII, the client's token and the upstream key never reach the store's
/// files (database and WAL), whatever the request carried.
#[tokio::test]
async fn no_secret_token_or_pii_reaches_the_store() {
    let h = Harness::start().await;
    let planted = [
        "sk-ant-api03-PLANTEDSECRETvalue0123456789abcdefABCDEF",
        "jane.planted@example.com",
        "4111 1111 1111 1111",
    ];
    let prompt = format!(
        r#"{{"model":"claude-sonnet-4-5","max_tokens":64,"system":"key {}","messages":[{{"role":"user","content":"mail {} card {}"}}]}}"#,
        planted[0], planted[1], planted[2]
    );
    let token = h.token();
    let headers =
        [("authorization", format!("Bearer {token}")), ("content-type", "application/json".into())];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // The bundled policy refuses the credential (403, recorded)...
    let (status, resp_headers, _) = h.call(Method::POST, "/v1/messages", &headers, &prompt).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let rows = h.audit_entries(&request_id(&resp_headers)).await;
    assert_eq!(rows[0].decision.as_deref(), Some("deny"));
    // ...and forwards the PII redacted, the model's echo masked on the way back.
    let pii_only = format!(
        r#"{{"model":"claude-sonnet-4-5","max_tokens":64,"messages":[{{"role":"user","content":"[[mock scenario=echo]] mail {} card {}"}}]}}"#,
        planted[1], planted[2]
    );
    let (status, resp_headers, body) =
        h.call(Method::POST, "/v1/messages", &headers, &pii_only).await;
    assert_eq!(status, StatusCode::OK);
    let body = String::from_utf8_lossy(&body);
    assert!(!body.contains(planted[1]) && !body.contains(planted[2]), "{body}");
    let rows = h.audit_entries(&request_id(&resp_headers)).await;
    let sent = String::from_utf8_lossy(&h.mock.received().last().unwrap().body).into_owned();
    assert!(
        sent.contains("[EMAIL]") && sent.contains("[CREDIT_CARD]") && !sent.contains(planted[1]),
        "{sent}"
    );
    // The record keeps the conversation, masked: the request as forwarded, the reply.
    let request: serde_json::Value = serde_json::from_str(&rows[0].body).unwrap();
    let response: serde_json::Value = serde_json::from_str(&rows[1].body).unwrap();
    let asked = request["detail"]["request_body"]["messages"][0]["content"].as_str().unwrap();
    assert!(asked.contains("mail [EMAIL] card [CREDIT_CARD]"), "{asked}");
    let answered = response["detail"]["response_body"]["content"][0]["text"].as_str().unwrap();
    assert!(answered.contains("[EMAIL]"), "{answered}");

    // A streamed answer carrying a secret and PII the policy does not mask in responses
    // (an IP address): the client gets the IP, the record gets the assembled text masked.
    let stream = r#"{"model":"claude-sonnet-4-5","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"go"}]}"#;
    let mut with_mock = headers.clone();
    let script = "scenario=text; chunk=4; text=host 10.1.2.3 key AKIAIOSFODNN7EXAMPLE mail ann.planted@example.com";
    with_mock.push(("x-mock", script));
    let (status, resp_headers, body) =
        h.call(Method::POST, "/v1/messages", &with_mock, stream).await;
    assert_eq!(status, StatusCode::OK);
    let got: String = decode_events(&body)
        .iter()
        .filter_map(|(_, d)| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter_map(|v| v["delta"]["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(got, "host 10.1.2.3 key [AWS_ACCESS_KEY] mail [EMAIL]");
    let id = request_id(&resp_headers);
    let rows = h.audit_entries(&id).await;
    let last: serde_json::Value = serde_json::from_str(&rows.last().unwrap().body).unwrap();
    let text = last["detail"]["response_body"]["content"][0]["text"].as_str().unwrap();
    assert_eq!(text, "host [IP_ADDRESS] key [AWS_ACCESS_KEY] mail [EMAIL]");
    assert_eq!(last["detail"]["masked"]["aws_access_key"], 1);

    // `airlock audit show` reads the conversation back.
    let config = dir_of(&h).join("show.yaml");
    std::fs::write(&config, format!("store: sqlite://{}\n", store_path(&h).display())).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["audit", "show", "--config", config.to_str().unwrap(), &id])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("[user]") && shown.contains("go"), "{shown}");
    assert!(
        shown.contains("[assistant]  host [IP_ADDRESS] key [AWS_ACCESS_KEY] mail [EMAIL]"),
        "{shown}"
    );
    assert!(shown.contains("masked in response: aws_access_key×1, email×1"), "{shown}");
    let dir = airlock_proxy::audit::data_dir(&h.config.store);
    let mut scanned = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_string_lossy().ends_with(".key") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        scanned += bytes.len();
        let more = ["ann.planted@example.com", "AKIAIOSFODNN7EXAMPLE", "10.1.2.3"];
        for needle in
            planted.iter().copied().chain(more).chain([token.as_str(), UPSTREAM_KEY, "sk-ant-"])
        {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle:?} found in {}",
                path.display()
            );
        }
    }
    assert!(scanned > 0);
}

/// A request whose audit entry cannot be committed is refused with 503, and the upstream
/// never sees it; once the store recovers, requests flow again.
#[tokio::test]
async fn a_store_that_cannot_commit_fails_closed() {
    let h = Harness::start().await;
    refuse_inserts(&h, "");
    let (status, _, body) = h.messages(SIMPLE, &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_envelope(&body, "api_error");
    assert!(h.mock.received().is_empty(), "the upstream was called");
    assert_eq!(
        h.admin_call(Method::GET, "/readyz", &[], "").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );

    h.store().execute("DROP TRIGGER refuse", &[]).unwrap();
    let (status, _, _) = h.messages(SIMPLE, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h.mock.received().len(), 1);
}

/// `fail_open` forwards anyway (an explicit, logged choice).
#[tokio::test]
async fn fail_open_is_explicit() {
    let h = Harness::start_with("audit:\n  on_store_failure: fail_open\n").await;
    refuse_inserts(&h, "");
    let (status, _, _) = h.messages(SIMPLE, &[]).await;
    assert_eq!(status, StatusCode::OK);
}

/// Strict mode: the response (and a stream's terminal frame) is released only once recorded;
/// when the record cannot be written the client gets an error, not the response.
#[tokio::test]
async fn strict_mode_releases_only_recorded_responses() {
    let h = Harness::start_with("audit:\n  durability: strict\n").await;
    let (status, headers, _) = h.messages(SIMPLE, &[]).await;
    assert_eq!(status, StatusCode::OK);
    // The final entry committed before the response arrived: no waiting needed.
    let q = airlock_store::Query {
        request_id: Some(request_id(&headers)),
        limit: 10,
        ..Default::default()
    };
    assert_eq!(h.store().search(&q).unwrap().len(), 2);

    let token = h.token();
    let stream_headers = [("x-api-key", token.as_str()), ("content-type", "application/json")];
    let (status, headers, body) =
        h.call(Method::POST, "/v1/messages", &stream_headers, STREAM).await;
    assert_eq!(status, StatusCode::OK);
    let events = decode_events(&body);
    assert_eq!(events.last().unwrap().0, "message_stop");
    let q = airlock_store::Query { request_id: Some(request_id(&headers)), ..q };
    let rows = h.store().search(&q).unwrap();
    assert!(rows.iter().any(|r| r.kind == "response" && r.status == Some(200)), "{rows:?}");

    // Responses are refused once the store stops taking them (only `response` entries fail,
    // so the request entry commits and the upstream is called).
    refuse_inserts(&h, "WHEN NEW.kind = 'response'");
    // The stream first: its request entry commits alone. (A failed final entry is retried
    // when the request ends, so a later request may share its failing group: that one is the
    // non-streaming call, which must fail either way.)
    let (status, _, body) = h.call(Method::POST, "/v1/messages", &stream_headers, STREAM).await;
    assert_eq!(status, StatusCode::OK);
    let events = decode_events(&body);
    assert_eq!(events.last().unwrap().0, "error", "{events:?}");
    assert!(!events.iter().any(|(name, _)| name == "message_stop"));
    let (status, _, body) = h.messages(SIMPLE, &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_envelope(&body, "api_error");
}

/// Two gateways sharing one PostgreSQL store: each writes its own chain, verify covers both,
/// and a token revoked through one gateway's admin API is refused by the other within the
/// revocation refresh bound.
#[tokio::test]
async fn instances_sharing_a_postgres_store() {
    let store = tokio::task::spawn_blocking(Harness::postgres_store).await.unwrap();
    let dir = fresh_dir("pg");
    let config = |name: &str| shared_store_config(&store, &dir, name);
    let a = Harness::start_with(&config("gw-a")).await;
    let b = a.sibling(&config("gw-b")).await;
    let user = a.keys.mint("alice", &["eng".to_owned()], 600, now()).unwrap();
    assert_eq!(call(&a, &user.token).await, StatusCode::OK);
    assert_eq!(call(&b, &user.token).await, StatusCode::OK);

    let admin = a.keys.mint("ops", &["airlock-admins".to_owned()], 600, now()).unwrap().token;
    let body = serde_json::json!({ "token_id": user.token_id }).to_string();
    let bearer = format!("Bearer {admin}");
    let (status, _, _) = a
        .admin_call(
            Method::POST,
            "/admin/revocations",
            &[("authorization", &bearer), ("content-type", "application/json")],
            &body,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(call(&a, &user.token).await, StatusCode::UNAUTHORIZED);
    // Instance b learns it from the store (within airlock_proxy::revoke::REFRESH).
    let revoked = |list: &[Revoked]| {
        list.iter()
            .any(|r| matches!(r, Revoked::Token { token_id, .. } if *token_id == user.token_id))
    };
    guard(b.revocations.wait_until(revoked)).await;
    assert_eq!(call(&b, &user.token).await, StatusCode::UNAUTHORIZED);

    let key_file = airlock_proxy::audit::signing_key_file(&a.config);
    let url = a.config.store.clone();
    let reports = tokio::task::spawn_blocking(move || {
        let key = SessionKeys::load_or_create(&key_file).unwrap();
        let mut store = airlock_store::Store::open(&url).unwrap();
        airlock_store::audit::verify(&mut store, &[VerifierKey::of(&key)], &[]).unwrap()
    })
    .await
    .unwrap();
    let chains: Vec<&str> = reports.iter().map(|r| r.chain.as_str()).collect();
    assert_eq!(chains, ["gw-a", "gw-b"]);
    assert!(reports.iter().all(|r| r.problem.is_none() && r.entries >= 2), "{reports:?}");
}

async fn call(h: &Harness, token: &str) -> StatusCode {
    let headers = [("x-api-key", token), ("content-type", "application/json")];
    h.call(Method::POST, "/v1/messages", &headers, SIMPLE).await.0
}

/// Make the SQLite store refuse audit inserts (all, or those matching `when`), as a full disk
/// would; `DROP TRIGGER refuse` undoes it.
fn refuse_inserts(h: &Harness, when: &str) {
    let sql = format!(
        "CREATE TRIGGER refuse BEFORE INSERT ON audit_entries {when} BEGIN SELECT RAISE(ABORT, 'disk full'); END"
    );
    h.store().execute(&sql, &[]).unwrap();
}

fn store_path(h: &Harness) -> std::path::PathBuf {
    match &h.config.store {
        airlock_config::StoreUrl::Sqlite(p) => p.clone(),
        other => panic!("not SQLite: {other:?}"),
    }
}

fn dir_of(h: &Harness) -> std::path::PathBuf {
    airlock_proxy::audit::data_dir(&h.config.store)
}

/// The audit log through the admin API: search, one request, verify (and tampering found).
#[tokio::test]
async fn admins_read_and_verify_the_audit_log_over_the_api() {
    let h = Harness::start().await;
    let (status, headers, _) = h.messages(SIMPLE, &[]).await;
    assert_eq!(status, StatusCode::OK);
    let id = request_id(&headers);
    h.audit_entries(&id).await;
    let admin = h.keys.mint("ops", &["airlock-admins".to_owned()], 600, now()).unwrap().token;
    let bearer = format!("Bearer {admin}");
    let get = |path: String| {
        let bearer = bearer.clone();
        let h = &h;
        async move {
            let (status, _, body) =
                h.admin_call(Method::GET, &path, &[("authorization", bearer.as_str())], "").await;
            (
                status,
                serde_json::from_slice::<serde_json::Value>(&body)
                    .unwrap_or(serde_json::Value::Null),
            )
        }
    };
    let (status, found) =
        get("/admin/audit/entries?subject=alice&decision=allow&limit=10".into()).await;
    assert_eq!(status, StatusCode::OK, "{found}");
    let entries = found["entries"].as_array().unwrap();
    assert!(
        !entries.is_empty() && entries.iter().all(|e| e["body"]["subject"] == "alice"),
        "{found}"
    );
    let (status, shown) = get(format!("/admin/audit/requests/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    let kinds: Vec<&str> =
        shown["entries"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["request", "response"]);
    assert_eq!(
        shown["entries"][0]["body"]["detail"]["request_body"]["messages"][0]["content"],
        "Hello"
    );
    let (status, report) = get("/admin/audit/verify".into()).await;
    assert_eq!((status, report["verified"].as_bool()), (StatusCode::OK, Some(true)), "{report}");
    // Bad input and the wrong caller are refused.
    assert_eq!(get("/admin/audit/entries?colour=red".into()).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(get("/admin/audit/requests/..%2Fetc".into()).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(get("/admin/audit/requests/req_nope".into()).await.0, StatusCode::NOT_FOUND);
    let user = format!("Bearer {}", h.token());
    let (status, _, _) = h
        .admin_call(Method::GET, "/admin/audit/entries", &[("authorization", user.as_str())], "")
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // An edited entry: verify over the API names it.
    h.store().execute("UPDATE audit_entries SET body = replace(body, 'alice', 'mallory') WHERE request_id = $1", &[airlock_store::Param::Text(id.clone())]).unwrap();
    let (_, report) = get("/admin/audit/verify".into()).await;
    assert_eq!(report["verified"], false, "{report}");
    assert!(
        report["chains"][0]["problem"]["text"].as_str().unwrap().contains("edited"),
        "{report}"
    );
    // And the metrics say the writer is healthy, and how many entries each commit carried.
    let (_, _, metrics) = h.admin_call(Method::GET, "/metrics", &[], "").await;
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(metrics.contains("airlock_audit_healthy 1"));
    let value = |name: &str| -> u64 {
        let line = metrics.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap();
        line[name.len() + 1..].parse().unwrap()
    };
    let (commits, entries) =
        (value("airlock_audit_commits_total"), value("airlock_audit_entries_total"));
    // At least the first request's two entries (its audit entries were read above).
    assert!(
        commits >= 1 && entries >= 2 && entries >= commits,
        "{commits} commits, {entries} entries"
    );
}

/// Checkpoints also leave the database: each is POSTed to `audit.checkpoint_webhook` as its
/// signed note, which verifies with the gateway's key and links to the one before.
#[tokio::test]
async fn checkpoints_are_posted_to_the_webhook_signed() {
    let (port, mut rx) = webhook_receiver(0).await;
    let h = Harness::start_with(&format!(
        "audit:\n  checkpoint_every: 2\n  checkpoint_webhook: http://127.0.0.1:{port}/checkpoints\n"
    ))
    .await;
    for _ in 0..3 {
        assert_eq!(h.messages(SIMPLE, &[]).await.0, StatusCode::OK);
    }
    let key_file = airlock_proxy::audit::signing_key_file(&h.config);
    let key = VerifierKey::of(&SessionKeys::load_or_create(&key_file).unwrap());
    let mut notes = Vec::new();
    while notes.len() < 2 {
        notes.push(guard(rx.recv()).await.expect("a checkpoint reached the webhook"));
    }
    let mut opened: Vec<airlock_audit::Checkpoint> = notes
        .iter()
        .map(|n| {
            airlock_audit::Checkpoint::open(n, std::slice::from_ref(&key))
                .expect("signed by the gateway")
        })
        .collect();
    opened.sort_by_key(|c| c.size);
    assert!(opened[0].size < opened[1].size, "{opened:?}");
    // Each checkpoint names the note before it (the chain of checkpoints has no gaps to hide in).
    assert!(opened[1].prev.is_some(), "{opened:?}");
}

/// The scheduler slices of the gateway's audit threads (in this test's process: nextest runs
/// each test in one of its own), which the writer sets before it starts serving; `None` on
/// kernels that report no slices (before 6.12).
fn audit_thread_slices() -> Option<[Vec<u64>; 2]> {
    use airlock_store::sched::{slice_of, threads_named};
    if slice_of(0).is_none_or(|s| s == 0) {
        eprintln!("this kernel reports no scheduler slices: skipped");
        return None;
    }
    let slices = |name| threads_named(name).into_iter().map(|(_, s)| s).collect();
    Some(["airlock-audit", "airlock-wal"].map(slices))
}

#[tokio::test]
async fn in_batch_mode_the_audit_threads_ask_for_a_short_slice() {
    use airlock_store::sched::SLICE_NS;
    let h = Harness::start_with("audit:\n  durability: batch\n").await;
    let Some(slices) = audit_thread_slices() else { return };
    assert!(slices.iter().all(|t| t == &[SLICE_NS]), "{slices:?}");
    let (status, _, _) = h.messages(SIMPLE, &[]).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn in_request_mode_the_audit_threads_keep_the_default_slice() {
    use airlock_store::sched::SLICE_NS;
    let h = Harness::start().await;
    assert_eq!(h.config.audit.durability, airlock_config::Durability::Request);
    let Some(slices) = audit_thread_slices() else { return };
    assert!(slices.iter().all(|t| !t.is_empty() && !t.contains(&SLICE_NS)), "{slices:?}");
    let (status, _, _) = h.messages(SIMPLE, &[]).await;
    assert_eq!(status, StatusCode::OK);
}
