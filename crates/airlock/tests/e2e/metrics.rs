//! `/metrics` after real traffic: the series and their values, bounded labels (no subject),
//! and valid Prometheus exposition format as `promtool check metrics` (Debian's prometheus
//! package; `.ci/run` installs it) reads it.

use crate::harness::*;
use http::Method;
use std::collections::HashMap;

const POLICY: &str = r#"
version: 1
groups:
  default: {}
  eng: {}
redact_request: [email]
mask_response: [email]
rules:
  - id: watch-merger
    when: { matches: ['(?i)\bmerger\b'] }
    action: deny
    mode: warn
limits:
  - id: eng-rate
    per: group
    groups: [eng]
    requests_per_minute: 3
"#;

/// `name{labels}` → value, for every sample line.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' ').map(|(k, v)| (k.to_owned(), v.parse().unwrap())))
        .collect()
}

#[tokio::test]
async fn metrics_count_the_traffic_and_parse_as_prometheus() {
    let h = Harness::start_with_policy(
        POLICY,
        "upstream:\n  url: UPSTREAM_URL\n  header_timeout: 300ms\n",
    )
    .await;
    let alice = h.keys.mint("alice-secret-subject", &["eng".to_owned()], 600, now()).unwrap().token;
    let bob = h.keys.mint("bob", &[], 600, now()).unwrap().token;
    let send = |token: String, body: &'static str, mock: &'static str| {
        let h = &h;
        async move {
            let auth = format!("Bearer {token}");
            let headers = [
                ("authorization", auth.as_str()),
                ("content-type", "application/json"),
                ("x-mock", mock),
            ];
            h.call(Method::POST, "/v1/messages", &headers, body).await.0.as_u16()
        }
    };
    let email = r#"{"model":"claude-sonnet-4-5","max_tokens":5,"messages":[{"role":"user","content":"the merger, mail jane@example.com"}]}"#;
    let mut codes = Vec::new();
    for _ in 0..4 {
        codes.push(send(alice.clone(), SIMPLE, "").await);
    }
    assert_eq!(codes, [200, 200, 200, 429]);
    assert_eq!(send(bob.clone(), email, "text=write to bob@example.org").await, 200);
    assert_eq!(send(bob.clone(), STREAM, "").await, 200);
    assert_eq!(send(bob.clone(), SIMPLE, "scenario=hang").await, 504);
    assert_eq!(send("not-a-token".into(), SIMPLE, "").await, 401);
    h.records.wait_for(8).await;

    let (code, headers, body) = h.admin_call(Method::GET, "/metrics", &[], "").await;
    assert_eq!(code, 200);
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = String::from_utf8(body.to_vec()).unwrap();
    let s = samples(&text);
    let get = |k: &str| *s.get(k).unwrap_or_else(|| panic!("no sample {k} in\n{text}"));
    assert_eq!(
        get(
            r#"airlock_requests_total{route="messages",status="200",decision="allow",outcome="completed"}"#
        ),
        4.0
    );
    assert_eq!(
        get(
            r#"airlock_requests_total{route="messages",status="200",decision="redact",outcome="completed"}"#
        ),
        1.0
    );
    assert_eq!(
        get(
            r#"airlock_requests_total{route="messages",status="429",decision="allow",outcome="rejected"}"#
        ),
        1.0
    );
    assert_eq!(
        get(
            r#"airlock_requests_total{route="messages",status="401",decision="none",outcome="rejected"}"#
        ),
        1.0
    );
    assert_eq!(
        get(r#"airlock_limit_rejections_total{limit="eng-rate",what="requests_per_minute"}"#),
        1.0
    );
    assert_eq!(get(r#"airlock_rule_matches_total{rule="watch-merger",mode="warn"}"#), 1.0);
    assert_eq!(get(r#"airlock_request_redactions_total{detector="email"}"#), 1.0);
    assert_eq!(get(r#"airlock_response_masks_total{detector="email"}"#), 1.0);
    assert_eq!(get(r#"airlock_upstream_errors_total{kind="upstream_timeout"}"#), 1.0);
    // The mock reports 17 input and 12 output tokens per reply.
    assert_eq!(
        get(r#"airlock_tokens_total{direction="input",model="claude-sonnet-4-5",group="eng"}"#),
        51.0
    );
    assert_eq!(
        get(r#"airlock_tokens_total{direction="output",model="claude-sonnet-4-5",group="none"}"#),
        24.0
    );
    assert_eq!(
        get(r#"airlock_request_duration_seconds_count{route="messages",stream="false"}"#),
        7.0
    );
    assert_eq!(
        get(r#"airlock_request_duration_seconds_count{route="messages",stream="true"}"#),
        1.0
    );
    assert_eq!(get(r#"airlock_upstream_duration_seconds_count{route="messages"}"#), 5.0);
    assert_eq!(get(r#"airlock_requests_in_flight"#), 0.0);
    assert_eq!(get(r#"airlock_approvals_pending"#), 0.0);
    assert!(get(r#"airlock_audit_append_seconds_count"#) >= 5.0);
    assert!(!text.contains("alice-secret-subject"), "a subject became a label");

    // promtool reads it as valid exposition format, without lint problems.
    assert_promtool_accepts(&text);
}

/// `airlock status`: one screen from the admin API, for an admin.
#[tokio::test]
async fn status_shows_one_screen() {
    let h = Harness::start().await;
    for _ in 0..3 {
        assert_eq!(h.messages(SIMPLE, &[]).await.0, 200);
    }
    h.records.wait_for(3).await;
    let admin = h.keys.mint("root", &["airlock-admins".to_owned()], 600, now()).unwrap().token;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["status", "--admin", &format!("http://{}", h.admin)])
        .env("AIRLOCK_ADMIN_TOKEN", &admin)
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("— ready"), "{text}");
    assert!(text.contains(&format!("policy    {}", h.policy.current().version)), "{text}");
    assert!(text.contains("store     healthy"), "{text}");
    assert!(text.contains("redis     not used"), "{text}");
    assert!(text.contains("approvals 0 pending"), "{text}");
    assert!(text.contains("requests  0 in flight, 3 in the last minute"), "{text}");
    // Not for non-admins.
    let user = h.token();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["status", "--admin", &format!("http://{}", h.admin)])
        .env("AIRLOCK_ADMIN_TOKEN", &user)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
}

/// Traces: with `telemetry.otlp_endpoint`, each request is an OTLP/HTTP JSON server span
/// (in the caller's trace when it sends `traceparent`) with a child span per stage — and
/// no prompt text.
#[tokio::test]
async fn requests_are_exported_as_otlp_spans() {
    let (port, mut posts) = webhook_receiver(0).await;
    let h = Harness::start_with(&format!(
        "telemetry:\n  otlp_endpoint: http://127.0.0.1:{port}/v1/traces\n  service_name: gw-test\n"
    ))
    .await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let body = r#"{"model":"claude-sonnet-4-5","max_tokens":5,"messages":[{"role":"user","content":"okapi-traced-prompt"}]}"#;
    let tp = format!("00-{trace}-{parent}-01");
    let (code, headers, _) = h.messages(body, &[("traceparent", tp.as_str())]).await;
    assert_eq!(code, 200);
    let id = request_id(&headers);
    let text = guard(posts.recv()).await.unwrap();
    assert!(!text.contains("okapi-traced-prompt"), "prompt text in a trace");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let rs = &v["resourceSpans"][0];
    assert!(rs["resource"]["attributes"].to_string().contains("gw-test"));
    let spans = rs["scopeSpans"][0]["spans"].as_array().unwrap();
    let root = spans
        .iter()
        .find(|s| s["attributes"].to_string().contains(&id))
        .expect("the request's span");
    assert_eq!(
        (root["traceId"].as_str(), root["parentSpanId"].as_str()),
        (Some(trace), Some(parent))
    );
    assert_eq!(root["kind"], 2);
    assert_eq!(root["name"], "POST messages");
    let children: Vec<&str> = spans
        .iter()
        .filter(|s| s["parentSpanId"] == root["spanId"])
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    for stage in ["authenticate", "read_body", "policy", "audit", "upstream"] {
        assert!(children.contains(&stage), "{stage} missing from {children:?}");
    }
    let start: u128 = root["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
    let end: u128 = root["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
    assert!(start <= end);
}
