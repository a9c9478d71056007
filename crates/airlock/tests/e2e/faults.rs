//! Upstream failures reach the client in the shape real clients expect.

use crate::harness::*;
use airlock_mock::MockState;
use http_body_util::BodyExt;

#[tokio::test]
async fn upstream_error_statuses_pass_through() {
    let h = Harness::start().await;
    for (script, status, kind) in [
        ("scenario=error; status=429; retry_after=7", 429, "rate_limit_error"),
        ("scenario=error; status=529", 529, "overloaded_error"),
        ("scenario=error; status=500", 500, "api_error"),
    ] {
        let (got, headers, body) = h.messages(SIMPLE, &[("x-mock", script)]).await;
        assert_eq!(got, status, "{script}");
        assert_envelope(&body, kind);
        assert!(headers.contains_key("request-id"));
        if status == 429 {
            assert_eq!(headers["retry-after"], "7");
        }
    }
    // The same for a streaming request: an error before the stream starts is a plain status.
    let (got, _, body) = h.messages(STREAM, &[("x-mock", "scenario=error; status=529")]).await;
    assert_eq!(got, 529);
    assert_envelope(&body, "overloaded_error");
}

/// The client must see an `error` event at the end and never a `message_stop`.
fn assert_failed_stream(body: &[u8]) {
    let events = decode_events(body);
    assert!(events.iter().all(|(n, _)| n != "message_stop"), "fake message_stop: {events:?}");
    let (name, data) = events.last().unwrap();
    assert_eq!(name, "error");
    assert_eq!(json(data.as_bytes())["type"], "error");
}

/// P-42 (a stall after `message_start` → SSE `error` at the idle timeout), P-43 (a reset
/// mid-stream → an SSE `error`, never a `message_stop` of the gateway's own), P-45 (garbage).
#[tokio::test]
async fn mid_stream_failures_end_with_an_error_event() {
    let h = Harness::start_with("upstream:\n  url: UPSTREAM_URL\n  idle_timeout: 300ms\n").await;
    for script in [
        "scenario=midstream_error; after=4",
        "scenario=drop; after=4",
        "scenario=stall; after=4",
        "scenario=huge_event",
    ] {
        let (status, _, body) = h.messages(STREAM, &[("x-mock", script)]).await;
        assert_eq!(status, 200, "{script}");
        assert_failed_stream(&body);
        let events = decode_events(&body);
        assert!(events.len() >= 2, "{script}: {events:?}");
        let errors = events.iter().filter(|(n, _)| n == "error").count();
        assert_eq!(errors, 1, "{script}: exactly one error event");
        assert_eq!(events[0].0, "message_start");
    }
    let records = h.records.wait_for(4).await;
    let reasons: Vec<(&str, &str)> =
        records.iter().map(|r| (r.outcome.as_str(), r.reason)).collect();
    assert_eq!(
        reasons,
        [
            ("stream_failed", "upstream_error_event"),
            ("stream_failed", "upstream_reset"),
            ("stream_failed", "upstream_idle"),
            ("stream_failed", "upstream_bad_sse")
        ]
    );
}

/// P-50: the client leaves mid-stream; the upstream call is cancelled and recorded.
#[tokio::test]
async fn client_disconnect_cancels_the_upstream_call() {
    let h = Harness::start().await;
    let resp = h.open_stream("scenario=stall; after=2").await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    guard(body.frame()).await.unwrap().unwrap();
    drop(body);
    // The mock notices its stream was abandoned: the gateway closed the upstream connection.
    guard(h.mock.wait_until(|m| m.cancelled() >= 1)).await;
    let records = h.records.wait_for(1).await;
    assert_eq!(records[0].outcome.as_str(), "client_aborted");
}

/// P-40 (unreachable → 502) and P-41 (no headers → 504 at `header_timeout`).
#[tokio::test]
async fn unreachable_upstream_is_502_and_a_hang_is_504() {
    // A port with nothing listening.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let mock = MockState::new(None, None);
    let h = Harness::start_against(&format!("http://{dead_addr}"), dead_addr, mock, "").await;
    let (status, _, body) = h.messages(SIMPLE, &[]).await;
    assert_eq!(status, 502);
    assert_envelope(&body, "api_error");

    let h = Harness::start_with("upstream:\n  url: UPSTREAM_URL\n  header_timeout: 300ms\n").await;
    let (status, _, body) = h.messages(SIMPLE, &[("x-mock", "scenario=hang")]).await;
    assert_eq!(status, 504);
    assert_envelope(&body, "timeout_error");
}

#[tokio::test]
async fn upstream_error_bodies_never_echo_the_key() {
    // This mock expects another key and echoes the one it got in its 401, as some services do.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mock = MockState::new(Some("some-other-key".into()), None);
    tokio::spawn(airlock_mock::serve(listener, mock.clone(), std::future::pending()));
    let h = Harness::start_against(&format!("http://{addr}"), addr, mock, "").await;
    let (status, _, body) = h.messages(SIMPLE, &[]).await;
    assert_eq!(status, 401);
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("[REDACTED]"), "{text}");
    assert!(!text.contains(UPSTREAM_KEY), "{text}");
}
