//! Authentication from day one: no valid session token, no request.

use crate::harness::*;
use airlock_authn::SessionKeys;
use http::Method;

async fn rejected(h: &Harness, headers: &[(&str, &str)]) {
    let mut all = vec![("content-type", "application/json"), ("anthropic-version", "2023-06-01")];
    all.extend_from_slice(headers);
    let (status, resp_headers, body) = h.call(Method::POST, "/v1/messages", &all, SIMPLE).await;
    assert_eq!(status, 401, "{headers:?}: {}", String::from_utf8_lossy(&body));
    assert_eq!(resp_headers["x-should-retry"], "false");
    assert_envelope(&body, "authentication_error");
}

#[tokio::test]
async fn bad_credentials_get_401_and_never_reach_upstream() {
    let h = Harness::start().await;
    let expired = h.keys.mint("alice", &[], 60, now() - 3600).unwrap().token;
    let other_key = SessionKeys::generate().unwrap().mint("alice", &[], 600, now()).unwrap().token;
    let too_long = h.keys.mint("alice", &[], 7200, now()).unwrap().token;
    let valid = h.token();
    let bearer_other = format!("Bearer {other_key}");
    let basic = "Basic YWxpY2U6cHc=".to_owned();
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![],
        vec![("x-api-key", &expired)],
        vec![("x-api-key", &other_key)],
        vec![("authorization", &bearer_other)],
        vec![("x-api-key", &too_long)],
        vec![("x-api-key", "sk-ant-api03-a-real-looking-anthropic-key")],
        vec![("authorization", &basic)],
        vec![("authorization", "Bearer")],
        vec![("x-api-key", &valid), ("authorization", &bearer_other)],
    ];
    for case in &cases {
        rejected(&h, case).await;
    }
    assert!(h.mock.received().is_empty(), "a rejected request reached the upstream");
}

#[tokio::test]
async fn both_header_styles_are_accepted() {
    let h = Harness::start().await;
    let t = h.token();
    let bearer = format!("Bearer {t}");
    for headers in [
        vec![("x-api-key", t.as_str())],
        vec![("authorization", bearer.as_str())],
        vec![("x-api-key", t.as_str()), ("authorization", bearer.as_str())],
    ] {
        let mut all =
            vec![("content-type", "application/json"), ("anthropic-version", "2023-06-01")];
        all.extend(headers);
        let (status, _, _) = h.call(Method::POST, "/v1/messages", &all, SIMPLE).await;
        assert_eq!(status, 200);
    }
}

#[tokio::test]
async fn auth_is_checked_before_the_body_is_read() {
    // A request with no credentials and a body over the limit gets 401, not 413: the gateway
    // decided without reading what an anonymous caller sent.
    let h = Harness::start_with("limits:\n  max_body_bytes: 2KiB\n").await;
    let big = "x".repeat(4096);
    let (status, _, _) =
        h.call(Method::POST, "/v1/messages", &[("content-type", "application/json")], &big).await;
    assert_eq!(status, 401);
}
