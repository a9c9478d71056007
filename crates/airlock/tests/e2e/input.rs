//! Bad input answered cleanly, each in the Anthropic envelope.

use crate::harness::*;
use http::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn malformed_json_is_400() {
    let h = Harness::start().await;
    for body in ["{\"model\":", "[1,2,3]", "", "{\"model\": 7}", &"[".repeat(10_000)] {
        let (status, _, resp) = h.messages(body, &[]).await;
        assert_eq!(status, 400, "{body:.40}");
        assert_envelope(&resp, "invalid_request_error");
    }
    assert!(h.mock.received().is_empty());
}

#[tokio::test]
async fn non_json_content_type_is_400() {
    let h = Harness::start().await;
    let t = h.token();
    for ct in [None, Some("text/plain"), Some("application/x-www-form-urlencoded")] {
        let mut headers = vec![("x-api-key", t.as_str())];
        if let Some(ct) = ct {
            headers.push(("content-type", ct));
        }
        let (status, _, body) = h.call(Method::POST, "/v1/messages", &headers, SIMPLE).await;
        assert_eq!(status, 400, "{ct:?}");
        assert_envelope(&body, "invalid_request_error");
    }
    let (status, _, _) = h
        .call(
            Method::POST,
            "/v1/messages",
            &[("x-api-key", &t), ("content-type", "application/json; charset=utf-8")],
            SIMPLE,
        )
        .await;
    assert_eq!(status, 200);
}

/// P-11: over `max_body_bytes` on Content-Length (before reading), and chunked (as soon as it
/// passes the limit).
#[tokio::test]
async fn oversized_body_is_413() {
    let h = Harness::start_with("limits:\n  max_body_bytes: 2KiB\n").await;
    let big = format!(
        r#"{{"model":"m","max_tokens":1,"messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(4096)
    );
    let (status, _, body) = h.messages(&big, &[]).await;
    assert_eq!(status, 413);
    assert_envelope(&body, "request_too_large");

    // Chunked, with no Content-Length: cut off as soon as it passes the limit.
    let token = h.token();
    let mut s = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    let head = format!(
        "POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-api-key: {token}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    for _ in 0..4 {
        s.write_all(format!("400\r\n{}\r\n", "a".repeat(1024)).as_bytes()).await.unwrap();
    }
    let mut buf = vec![0u8; 4096];
    let n = guard(s.read(&mut buf)).await.unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 413"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    assert!(h.mock.received().is_empty());
}

#[tokio::test]
async fn unknown_paths_and_methods() {
    let h = Harness::start().await;
    let t = h.token();
    let auth = [("x-api-key", t.as_str())];
    let (status, headers, body) = h.call(Method::GET, "/v2/whatever", &auth, "").await;
    assert_eq!(status, 404);
    assert_eq!(headers["content-type"], "application/json");
    assert_envelope(&body, "not_found_error");

    let (status, headers, body) = h.call(Method::POST, "/v1/messages/batches", &auth, "{}").await;
    assert_eq!(status, 501);
    assert_eq!(headers["x-should-retry"], "false");
    assert_envelope(&body, "not_supported");

    let (status, headers, body) = h.call(Method::GET, "/v1/messages", &auth, "").await;
    assert_eq!(status, 405);
    assert_eq!(headers["allow"], "POST");
    assert_envelope(&body, "invalid_request_error");
    assert!(h.mock.received().is_empty());
}

/// P-10: over 32 KiB of headers is a 431; a 1 MiB header is refused by hyper's backstop.
#[tokio::test]
async fn oversized_headers_are_431() {
    let h = Harness::start().await;
    let mut s = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    // 40 KiB of headers: over the 32 KiB limit, under hyper's buffer backstop.
    let head =
        format!("GET /v1/models HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n", "a".repeat(40 * 1024));
    let _ = s.write_all(head.as_bytes()).await;
    let mut buf = vec![0u8; 1024];
    let n = guard(s.read(&mut buf)).await.unwrap_or(0);
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    // Far beyond the backstop, hyper refuses the head itself; either way no request is served.
    let mut s = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    let head =
        format!("GET /v1/models HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n", "a".repeat(1 << 20));
    let _ = s.write_all(head.as_bytes()).await;
    let mut buf = vec![0u8; 1024];
    let n = guard(s.read(&mut buf)).await.unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(n == 0 || text.starts_with("HTTP/1.1 431"), "{text}");
    assert!(h.mock.received().is_empty());
}
