//! `upstream.http2`: requests share HTTP/2 connections to the upstream (the mock speaks
//! HTTP/2 with prior knowledge, or by ALPN over TLS), never more streams on one than it
//! allows; `auto` (the default) uses HTTP/2 over TLS while the server picks `h2`, HTTP/1.1
//! otherwise, and `true` refuses an upstream that does not agree.

use crate::harness::*;
use airlock_mock::MockState;
use http::Version;
use http_body_util::BodyExt;
use std::sync::Arc;

/// A mock allowing at most `max_streams` concurrent streams per HTTP/2 connection.
async fn h2_mock(max_streams: Option<u32>) -> (std::net::SocketAddr, Arc<MockState>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (key, fixtures) = (Some(UPSTREAM_KEY.to_owned()), Some(fixtures_dir()));
    let mock = match max_streams {
        Some(n) => MockState::with_h2_max_streams(key, fixtures, n),
        None => MockState::new(key, fixtures),
    };
    tokio::spawn(airlock_mock::serve(listener, mock.clone(), std::future::pending()));
    (addr, mock)
}

async fn gateway(max_streams: Option<u32>, extra: &str) -> Harness {
    let (addr, mock) = h2_mock(max_streams).await;
    let config = format!("upstream:\n  url: UPSTREAM_URL\n  http2: true\n{extra}");
    Harness::start_against(&format!("http://{addr}"), addr, mock, &config).await
}

async fn http2_connections(h: &Harness) -> u64 {
    let (status, _, body) = h.admin_call(http::Method::GET, "/metrics", &[], "").await;
    assert_eq!(status, 200);
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert_promtool_accepts(&text);
    let line = text
        .lines()
        .find(|l| l.starts_with("airlock_upstream_http2_connections "))
        .expect("the gauge is there when the upstream speaks HTTP/2");
    line.split(' ').nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn json_and_streamed_calls_share_one_http2_connection() {
    let h = gateway(None, "").await;
    for _ in 0..3 {
        let (status, _, body) = h
            .messages(r#"{"model":"claude-sonnet-4-5","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}"#, &[])
            .await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        assert_eq!(json(&body)["type"], "message");
    }
    let resp = h.open_stream("scenario=text; text=one two three").await;
    assert_eq!(resp.status(), 200);
    let body = guard(resp.into_body().collect()).await.unwrap().to_bytes();
    let names: Vec<String> = decode_events(&body).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names.first().map(String::as_str), Some("message_start"));
    assert_eq!(names.last().map(String::as_str), Some("message_stop"));

    let received = h.mock.received();
    assert_eq!(received.len(), 4);
    assert!(received.iter().all(|r| r.version == Version::HTTP_2), "every call went over HTTP/2");
    // The gateway's own credential, never the client's token, on the HTTP/2 side too.
    assert!(received.iter().all(|r| r.headers["x-api-key"] == UPSTREAM_KEY));
    assert_eq!(h.mock.connections(), 1, "one connection carried them all");
    assert_eq!(http2_connections(&h).await, 1);
}

#[tokio::test]
async fn open_streams_spread_over_connections_within_the_servers_stream_limit() {
    // The server allows two streams per connection; the gateway would allow 100. Five long
    // streams must all start (hyper's own pool would queue the third behind the first two
    // for as long as they stay open), on three connections.
    let h = gateway(Some(2), "").await;
    let mut open = Vec::new();
    for _ in 0..5 {
        let resp = guard(h.open_stream("scenario=stall; after=3")).await;
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        guard(body.frame()).await.expect("the stream started").unwrap();
        open.push(body);
    }
    assert_eq!(h.mock.connections(), 3);
    assert_eq!(http2_connections(&h).await, 3);

    // A client that leaves resets its stream upstream, and its place is free again: the
    // mock sees each stream cancelled, and new streams need no new connection.
    open.truncate(1);
    guard(h.mock.wait_until(|m| m.cancelled() >= 4)).await;
    h.records.wait_for(4).await;
    for _ in 0..3 {
        let resp = guard(h.open_stream("scenario=stall; after=3")).await;
        let mut body = resp.into_body();
        guard(body.frame()).await.expect("the stream started").unwrap();
        open.push(body);
    }
    assert_eq!(h.mock.connections(), 3, "freed places were reused");
    assert!(h.mock.received().iter().all(|r| r.version == Version::HTTP_2));
}

#[tokio::test]
async fn the_gateways_own_stream_cap_opens_connections_too() {
    let h = gateway(None, "  http2_max_streams: 1\n").await;
    let mut open = Vec::new();
    for _ in 0..3 {
        let resp = guard(h.open_stream("scenario=stall; after=3")).await;
        let mut body = resp.into_body();
        guard(body.frame()).await.expect("the stream started").unwrap();
        open.push(body);
    }
    assert_eq!(h.mock.connections(), 3);
    // Once they end, idle connections are closed but one.
    drop(open);
    guard(h.mock.wait_until(|m| m.cancelled() >= 3)).await;
    h.records.wait_for(3).await;
    let (status, _, _) = h
        .messages(r#"{"model":"claude-sonnet-4-5","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}"#, &[])
        .await;
    assert_eq!(status, 200);
    assert_eq!(h.mock.connections(), 3, "an idle connection was reused");
    assert_eq!(http2_connections(&h).await, 1);
}

fn testdata(name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/testdata").join(name)
}

/// A mock upstream over TLS (a certificate for localhost from the test CA) offering `alpn`.
async fn tls_mock(alpn: &[&str]) -> (u16, Arc<MockState>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mock = MockState::new(Some(UPSTREAM_KEY.to_owned()), Some(fixtures_dir()));
    let tls = airlock_mock::tls_config(
        &testdata("tls-localhost.pem"),
        &testdata("tls-localhost.key"),
        alpn,
    )
    .unwrap();
    tokio::spawn(airlock_mock::serve_tls(listener, mock.clone(), tls, std::future::pending()));
    (port, mock)
}

/// The real `airlock serve` against `upstream`, trusting the test CA (and nothing else):
/// the child, its data-plane address, and a session token for it.
async fn serve_against(upstream: &str, extra: &str) -> (tokio::process::Child, String, String) {
    let dir = fresh_dir("https-upstream");
    let config = format!(
        "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nupstream:\n  url: {upstream}\n{extra}"
    );
    std::fs::write(dir.join("airlock.yaml"), config).unwrap();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_airlock"));
    cmd.args(["serve", "--config", "airlock.yaml"])
        .env("ANTHROPIC_API_KEY", UPSTREAM_KEY)
        .env("SSL_CERT_FILE", testdata("tls-ca.pem"))
        .env_remove("SSL_CERT_DIR");
    let (child, addr, _) = crate::crash::start(cmd, &dir).await;
    let keys =
        airlock_authn::SessionKeys::load_or_create(&dir.join("airlock-data/session.key")).unwrap();
    let token = keys.mint("tls", &[], 600, now()).unwrap().token;
    (child, addr, token)
}

#[tokio::test]
async fn an_https_upstream_gets_http2_by_default_when_it_agrees_by_alpn_and_http1_when_told() {
    let client = crate::crash::reqwest_like::Client::new();
    let (port, mock) = tls_mock(&["h2", "http/1.1"]).await;
    let upstream = format!("https://localhost:{port}");

    for (extra, version) in [
        ("", Version::HTTP_2),
        ("  http2: auto\n", Version::HTTP_2),
        ("  http2: true\n", Version::HTTP_2),
        ("  http2: false\n", Version::HTTP_11),
    ] {
        let (_gw, addr, token) = serve_against(&upstream, extra).await;
        for _ in 0..2 {
            assert!(client.post_messages(&addr, &token).await.is_some(), "answered ({extra:?})");
            assert_eq!(mock.received().last().unwrap().version, version, "{extra:?}");
        }
    }
    assert_eq!(mock.received().len(), 8);
}

#[tokio::test]
async fn by_default_an_https_upstream_that_picks_http1_is_spoken_to_in_http1() {
    // The server offers only http/1.1, or no ALPN at all (this mock would then answer either):
    // the first connection shows it, and every call, that first one included, goes over
    // HTTP/1.1 — none is refused and none is sent in HTTP/2.
    for alpn in [&["http/1.1"][..], &[]] {
        let (port, mock) = tls_mock(alpn).await;
        let (_gw, addr, token) = serve_against(&format!("https://localhost:{port}"), "").await;
        let client = crate::crash::reqwest_like::Client::new();
        for _ in 0..3 {
            assert!(client.post_messages(&addr, &token).await.is_some(), "answered ({alpn:?})");
        }
        let received = mock.received();
        assert_eq!(received.len(), 3, "{alpn:?}");
        assert!(received.iter().all(|r| r.version == Version::HTTP_11), "{alpn:?}");
    }
}

#[tokio::test]
async fn by_default_a_plain_http_upstream_is_spoken_to_in_http1() {
    // Over http:// nothing can be negotiated, and prior knowledge would break an HTTP/1.1
    // server: `auto` means HTTP/1.1 there (the mock would answer HTTP/2 too).
    let (addr, mock) = h2_mock(None).await;
    let h = Harness::start_against(
        &format!("http://{addr}"),
        addr,
        mock,
        "upstream:\n  url: UPSTREAM_URL\n",
    )
    .await;
    let (status, _, body) = h.messages(SIMPLE, &[]).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(h.mock.received().last().unwrap().version, Version::HTTP_11);
}

#[tokio::test]
async fn an_https_upstream_that_does_not_agree_to_h2_is_refused_not_spoken_to() {
    // The server offers only http/1.1 (the handshake fails), or no ALPN at all (the handshake
    // succeeds without `h2`; this mock would then answer HTTP/2 anyway): with
    // `upstream.http2` every call is a 502, and no request reaches the server in a protocol
    // it did not agree to.
    for alpn in [&["http/1.1"][..], &[]] {
        let (port, mock) = tls_mock(alpn).await;
        let (_gw, addr, token) =
            serve_against(&format!("https://localhost:{port}"), "  http2: true\n").await;
        let client = crate::crash::reqwest_like::Client::new();
        let status = client.status(&format!("http://{addr}/v1/messages"), Some(&token)).await;
        assert_eq!(status, Some(502), "{alpn:?}");
        assert!(mock.received().is_empty(), "{alpn:?}");
        assert!(mock.connections() >= 1, "the gateway did connect ({alpn:?})");
    }
}

#[tokio::test]
async fn a_stalled_handshake_ends_at_connect_timeout_and_its_waiters_share_the_failure() {
    // An https upstream that accepts connections and never answers the TLS handshake.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let accepted = Arc::new(std::sync::Mutex::new(Vec::new()));
    let held = accepted.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = silent.accept().await {
            held.lock().unwrap().push(socket);
        }
    });
    let config = "upstream:\n  url: UPSTREAM_URL\n  http2: true\n  connect_timeout: 300ms\n  \
                  header_timeout: 600s\n  max_connect_attempts: 1\n";
    let h = Harness::start_against(
        &format!("https://{addr}"),
        addr,
        MockState::new(None, None),
        config,
    )
    .await;
    // Four calls at once, none with a connection to use: one attempt is made, and all four
    // end with a 502 when it times out (not at header_timeout, ten minutes on).
    let (a, b, c, d) = guard(async {
        tokio::join!(
            h.messages(SIMPLE, &[]),
            h.messages(SIMPLE, &[]),
            h.messages(SIMPLE, &[]),
            h.messages(SIMPLE, &[])
        )
    })
    .await;
    for (status, _, body) in [a, b, c, d] {
        assert_eq!(status, 502, "{}", String::from_utf8_lossy(&body));
        assert_envelope(&body, "api_error");
    }
    assert_eq!(accepted.lock().unwrap().len(), 1, "one connection attempt for all four");
}
