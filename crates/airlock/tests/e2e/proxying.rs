//! What reaches the upstream, and what comes back.

use crate::harness::*;
use http::Method;

/// P-30, P-32: the client's credentials and hop-by-hop headers never reach the upstream; the
/// gateway's key always does.
#[tokio::test]
async fn upstream_sees_the_gateway_key_and_never_the_client_token() {
    let h = Harness::start().await;
    let token = h.token();
    let (status, headers, body) = h
        .call(
            Method::POST,
            "/anthropic/v1/messages?beta=true",
            &[
                ("x-api-key", &token),
                ("authorization", &format!("Bearer {token}")),
                ("anthropic-version", "2026-10-21"),
                ("anthropic-beta", "claude-code-20250219,interleaved-thinking-2025-05-14"),
                ("content-type", "application/json"),
                ("x-stainless-retry-count", "0"),
                ("cookie", "session=abc"),
                ("x-forwarded-for", "6.6.6.6"),
            ],
            SIMPLE,
        )
        .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json(&body)["content"][0]["text"], "Hello from the Airlock mock upstream.");
    assert_eq!(headers["request-id"], "req_mock_000000");
    assert_eq!(headers["anthropic-ratelimit-requests-remaining"], "999");
    assert!(headers.contains_key("x-airlock-request-id"));

    let received = h.mock.received();
    assert_eq!(received.len(), 1);
    let r = &received[0];
    // The prefix is dropped, the query kept.
    assert_eq!(r.path_and_query, "/v1/messages?beta=true");
    assert_eq!(r.headers["x-api-key"], UPSTREAM_KEY);
    assert_eq!(r.headers.get_all("x-api-key").iter().count(), 1);
    assert_eq!(r.headers["anthropic-version"], "2026-10-21");
    assert_eq!(r.headers["anthropic-beta"], "claude-code-20250219,interleaved-thinking-2025-05-14");
    assert_eq!(r.headers["x-stainless-retry-count"], "0");
    assert_eq!(r.headers["accept-encoding"], "identity");
    for absent in ["authorization", "cookie", "x-forwarded-for"] {
        assert!(!r.headers.contains_key(absent), "{absent} reached upstream");
    }
    for (name, value) in &r.headers {
        assert!(
            !value.as_bytes().windows(20).any(|w| token.as_bytes().windows(20).any(|t| t == w)),
            "client token leaked in {name}"
        );
    }
    // The body is forwarded byte for byte.
    assert_eq!(&r.body[..], SIMPLE.as_bytes());
}

#[tokio::test]
async fn unknown_fields_roles_and_blocks_pass_through_untouched() {
    let h = Harness::start().await;
    let body = r#"{"model":"claude-sonnet-4-5","max_tokens":64,"future_field":{"z":1,"a":[true,null]},"messages":[{"role":"user","content":[{"type":"text","text":"hi","cache_control":{"type":"ephemeral"}}]},{"role":"system","content":[{"type":"text","text":"env"}]},{"role":"user","content":[{"type":"brand_new_block","payload":"\u0040x"}]}]}"#;
    let (status, _, _) = h.messages(body, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(&h.mock.received()[0].body[..], body.as_bytes());
}

#[tokio::test]
async fn count_tokens_and_models() {
    let h = Harness::start().await;
    let token = h.token();
    let auth = [
        ("authorization", format!("Bearer {token}")),
        ("anthropic-version", "2023-06-01".into()),
        ("content-type", "application/json".into()),
    ];
    let auth: Vec<(&str, &str)> = auth.iter().map(|(k, v)| (*k, v.as_str())).collect();

    let (status, _, body) =
        h.call(Method::POST, "/v1/messages/count_tokens?beta=true", &auth, SIMPLE).await;
    assert_eq!(status, 200);
    assert!(json(&body)["input_tokens"].as_u64().unwrap() > 0);

    let (status, _, body) = h.call(Method::GET, "/v1/models?limit=20", &auth, "").await;
    assert_eq!(status, 200);
    assert_eq!(json(&body)["data"].as_array().unwrap().len(), 3);

    let (status, _, body) = h.call(Method::GET, "/v1/models/claude-haiku-4-5", &auth, "").await;
    assert_eq!(status, 200);
    assert_eq!(json(&body)["id"], "claude-haiku-4-5");

    let (status, _, body) = h.call(Method::GET, "/v1/models/claude-nope", &auth, "").await;
    assert_eq!(status, 404);
    assert_envelope(&body, "not_found_error");

    let paths: Vec<String> = h.mock.received().iter().map(|r| r.path_and_query.clone()).collect();
    assert_eq!(
        paths,
        [
            "/v1/messages/count_tokens?beta=true",
            "/v1/models?limit=20",
            "/v1/models/claude-haiku-4-5",
            "/v1/models/claude-nope"
        ]
    );
}

#[tokio::test]
async fn exactly_one_record_per_request() {
    let h = Harness::start().await;
    h.messages(SIMPLE, &[]).await;
    h.messages("{bad json", &[]).await;
    h.call(Method::POST, "/v1/messages", &[], SIMPLE).await;
    h.call(Method::GET, "/nope", &[], "").await;
    let stream = h.messages(STREAM, &[]).await;
    assert_eq!(stream.0, 200);
    let records = h.records.wait_for(5).await;
    assert_eq!(records.len(), 5);
    let mut ids: Vec<&str> = records.iter().map(|r| r.request_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 5, "request ids must be unique");
    let outcomes: Vec<(&str, &str)> =
        records.iter().map(|r| (r.outcome.as_str(), r.reason)).collect();
    assert_eq!(
        outcomes,
        [
            ("completed", "completed"),
            ("rejected", "invalid_json"),
            ("rejected", "missing_credentials"),
            ("rejected", "not_found"),
            ("completed", "completed"),
        ]
    );
    assert_eq!(records[0].subject.as_deref(), Some("alice"));
    assert!(records[4].stream);
    assert!(records[4].events > 5);
}
