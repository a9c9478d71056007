//! The gateway's own logs (`airlock serve`, JSON lines on stderr, at debug level so every
//! dependency speaks too): one line per request with its id, identity, decision and timings,
//! and never a planted prompt, PII value, credential, client token or the upstream key.

use crate::harness::*;
use airlock_mock::MockState;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, BufReader};

const UPSTREAM: &str = "sk-ant-api03-planted-upstream-key-0123456789abcdef";
const PROMPT: &str = "zebra-quartz-memo";

#[tokio::test]
async fn logs_hold_metadata_and_never_secrets() {
    let mock_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mock_addr = mock_listener.local_addr().unwrap();
    let mock = MockState::new(Some(UPSTREAM.to_owned()), None);
    tokio::spawn(airlock_mock::serve(mock_listener, mock.clone(), std::future::pending()));
    let dir = fresh_dir("logs");
    std::fs::write(
        dir.join("airlock.yaml"),
        format!(
            "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nupstream:\n  url: http://{mock_addr}\n"
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["serve", "--config", "airlock.yaml"])
        .current_dir(&dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ANTHROPIC_API_KEY", UPSTREAM)
        .env("AIRLOCK_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    // Woken after every line read: the test waits for lines, not for time.
    let more = Arc::new(tokio::sync::Notify::new());
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<String>();
    {
        let (lines, more) = (lines.clone(), more.clone());
        let mut reader = BufReader::new(child.stderr.take().unwrap()).lines();
        tokio::spawn(async move {
            let mut started = Some(started_tx);
            while let Ok(Some(line)) = reader.next_line().await {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                    && v["message"] == "airlock started"
                    && let Some(tx) = started.take()
                {
                    let _ = tx.send(v["listen"].as_str().unwrap_or_default().to_owned());
                }
                lines.lock().unwrap().push(line);
                more.notify_waiters();
            }
        });
    }
    let addr = guard(started_rx).await.unwrap();
    let keys =
        airlock_authn::SessionKeys::load_or_create(&dir.join("airlock-data/session.key")).unwrap();
    let token = keys.mint("logged-alice", &["eng".to_owned()], 600, now()).unwrap().token;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let post = |auth: String, path: &str, body: String| {
        let req = http::Request::post(format!("http://{addr}{path}"))
            .header("authorization", auth)
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .unwrap();
        let client = client.clone();
        async move {
            let r = guard(client.request(req)).await.unwrap();
            let status = r.status().as_u16();
            let _ = http_body_util::BodyExt::collect(r.into_body()).await;
            status
        }
    };
    let body = |text: &str, stream: bool| {
        serde_json::json!({"model": "claude-sonnet-4-5", "max_tokens": 10, "stream": stream,
            "messages": [{"role": "user", "content": text}]})
        .to_string()
    };
    let bearer = format!("Bearer {token}");
    let pii = format!("{PROMPT} for jane@example.com");
    assert_eq!(post(bearer.clone(), "/v1/messages", body(&pii, false)).await, 200);
    assert_eq!(post(bearer.clone(), "/v1/messages", body(&pii, true)).await, 200);
    assert_eq!(
        post(bearer.clone(), "/v1/messages", body("key AKIAIOSFODNN7EXAMPLE", false)).await,
        403
    );
    assert_eq!(
        post(
            "Bearer sk-ant-planted-client-token-0123456789".into(),
            "/v1/messages",
            body(PROMPT, false)
        )
        .await,
        401
    );
    let in_url = format!("/v1/messages?access_token={token}");
    assert_eq!(post(bearer.clone(), &in_url, body(PROMPT, false)).await, 400);
    assert_eq!(mock.received().len(), 2);

    // Every request's line is there (written before the answer completes, or at a stream's end).
    let request_lines = || -> Vec<serde_json::Value> {
        lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["message"] == "request")
            .collect()
    };
    guard(async {
        loop {
            let next = more.notified();
            if request_lines().len() >= 5 {
                return;
            }
            next.await;
        }
    })
    .await;
    child.kill().await.unwrap();
    let all = lines.lock().unwrap().join("\n");
    for planted in [
        PROMPT,
        "jane@example.com",
        "AKIAIOSFODNN7EXAMPLE",
        UPSTREAM,
        &token,
        "sk-ant-planted-client-token",
        &keys.to_pem(),
    ] {
        let probe = &planted[..planted.len().min(24)];
        assert!(!all.contains(probe), "the logs hold {probe:?}");
    }
    let reqs = request_lines();
    assert_eq!(reqs.len(), 5, "one line per request");
    for r in &reqs {
        assert!(r["request_id"].as_str().unwrap().starts_with("req_airlock_"), "{r}");
        assert!(r["duration_us"].as_u64().is_some(), "{r}");
        assert!(r["status"].as_u64().is_some(), "{r}");
    }
    let ok = reqs.iter().find(|r| r["status"] == 200).unwrap();
    assert_eq!(
        (ok["subject"].as_str(), ok["groups"].as_str(), ok["decision"].as_str()),
        (Some("logged-alice"), Some("eng"), Some("redact"))
    );
    let denied = reqs.iter().find(|r| r["status"] == 403).unwrap();
    assert_eq!(denied["decision"], "deny");
}
