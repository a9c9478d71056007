//! Request hygiene at the edge (security-tests.md §2.4), driven over raw TCP where HTTP
//! libraries would refuse to send the bad input: framing conflicts and variants (P-01..P-04),
//! head hygiene (P-05), no tunnelling (P-06), hop-by-hop stripping (P-30, P-31), underscore
//! header names (P-33), slowloris (P-20), slow bodies (P-21), slow readers (P-22), idle
//! keep-alive connections (P-23), the connection cap (P-24) and the request timeout. Every
//! refusal leaves the upstream uncalled.

use crate::harness::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Send raw bytes, return what came back before the gateway closed or went quiet.
async fn raw(h: &Harness, bytes: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(3), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                out.extend_from_slice(&buf[..n]);
                // One response is enough: stop once a complete head + declared body arrived.
                if let Some(i) = out.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&out[..i]).to_ascii_lowercase();
                    let len = head.lines().find_map(|l| {
                        l.strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                    });
                    if len.is_some_and(|n| out.len() >= i + 4 + n) {
                        break;
                    }
                }
            }
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn status(response: &str) -> u16 {
    response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn post(token: &str, extra_headers: &str, body: &str) -> Vec<u8> {
    format!(
        "POST /v1/messages HTTP/1.1\r\nhost: gw\r\nx-api-key: {token}\r\ncontent-type: application/json\r\n{extra_headers}\r\n{body}"
    )
    .into_bytes()
}

#[tokio::test]
async fn framing_conflicts_and_variants_are_refused() {
    let h = Harness::start().await;
    let t = h.token();
    let body = SIMPLE;
    let n = body.len();
    let chunked = format!("{n:x}\r\n{body}\r\n0\r\n\r\n");
    for (name, head, payload) in [
        (
            "P-02 TE chunked, identity",
            "transfer-encoding: chunked, identity\r\n".to_owned(),
            chunked.clone(),
        ),
        ("P-02 TE xchunked", "transfer-encoding: xchunked\r\n".to_owned(), chunked.clone()),
        (
            "P-02 TE twice",
            "transfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n".to_owned(),
            chunked.clone(),
        ),
        ("P-02 TE gzip", "transfer-encoding: gzip, chunked\r\n".to_owned(), chunked.clone()),
        (
            "P-03 CL twice, different",
            format!("content-length: {n}\r\ncontent-length: {}\r\n", n + 1),
            body.to_owned(),
        ),
        ("P-03 CL +sign", format!("content-length: +{n}\r\n"), body.to_owned()),
        ("P-03 CL list", format!("content-length: {n}, {n}\r\n"), body.to_owned()),
        ("P-03 CL hex", format!("content-length: 0x{n:x}\r\n"), body.to_owned()),
        (
            "P-04 bad chunk size",
            "transfer-encoding: chunked\r\n".to_owned(),
            format!("zz\r\n{body}\r\n0\r\n\r\n"),
        ),
        (
            "P-04 chunk size overflow",
            "transfer-encoding: chunked\r\n".to_owned(),
            "fffffffffffffffffff\r\nx\r\n0\r\n\r\n".to_owned(),
        ),
        ("P-05 space before colon", format!("content-length : {n}\r\n"), body.to_owned()),
        ("P-05 obs-fold", format!("content-length: {n}\r\nx-folded: a\r\n b\r\n"), body.to_owned()),
        (
            "P-33 underscore header",
            format!("content-length: {n}\r\nx_api_key: stolen\r\n"),
            body.to_owned(),
        ),
    ] {
        let response = raw(&h, &post(&t, &head, &payload)).await;
        let code = status(&response);
        assert!(
            (400..500).contains(&code) || code == 0,
            "{name}: {}",
            response.lines().next().unwrap_or("(closed)")
        );
    }
    assert!(h.mock.received().is_empty(), "a refused request reached the upstream");

    // P-01: Content-Length with Transfer-Encoding. hyper resolves it as RFC 9112 §6.1 allows —
    // the body is read as chunked, the Content-Length dropped — and closes the connection
    // after answering, so a second request smuggled behind the first is never read.
    let mut s = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    let smuggled = format!(
        "POST /v1/messages HTTP/1.1\r\nhost: gw\r\nx-api-key: {t}\r\ncontent-type: application/json\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n{chunked}GET /v1/models HTTP/1.1\r\nhost: gw\r\nx-api-key: {t}\r\n\r\n"
    );
    s.write_all(smuggled.as_bytes()).await.unwrap();
    let mut all = Vec::new();
    let _ = guard(s.read_to_end(&mut all)).await;
    let all = String::from_utf8_lossy(&all);
    assert_eq!(
        all.matches("HTTP/1.1 ").count(),
        1,
        "one answer, then the connection closed: {all}"
    );
    assert!(
        h.mock.received().iter().all(|r| r.path_and_query != "/v1/models"),
        "the smuggled request was served"
    );
}

#[tokio::test]
async fn no_tunnels_and_no_redirected_targets() {
    let h = Harness::start().await;
    let t = h.token();
    // P-06: an upgrade request is answered as plain HTTP (or refused), never switched.
    let response = raw(
        &h,
        format!("GET /v1/models HTTP/1.1\r\nhost: gw\r\nx-api-key: {t}\r\nconnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n").as_bytes(),
    )
    .await;
    assert_ne!(status(&response), 101, "{response}");
    for r in h.mock.received() {
        assert!(!r.headers.contains_key("upgrade"), "upgrade reached the upstream");
    }
    // CONNECT is refused.
    let response = raw(
        &h,
        format!(
            "CONNECT evil.example:443 HTTP/1.1\r\nhost: evil.example:443\r\nx-api-key: {t}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert!(status(&response) >= 400 || status(&response) == 0, "{response}");
    // P-05: an absolute-form target naming another host goes to the configured upstream's
    // route or nowhere — never to that host.
    let n = SIMPLE.len();
    let response = raw(
        &h,
        format!("POST http://evil.example/v1/messages HTTP/1.1\r\nhost: evil.example\r\nx-api-key: {t}\r\ncontent-type: application/json\r\ncontent-length: {n}\r\n\r\n{SIMPLE}").as_bytes(),
    )
    .await;
    let code = status(&response);
    assert!(code == 200 || (400..500).contains(&code), "{response}");
    for r in h.mock.received() {
        assert!(
            r.path_and_query == "/v1/messages" || r.path_and_query == "/v1/models",
            "{}",
            r.path_and_query
        );
        assert!(
            !r.headers.get("host").is_some_and(|v| v.to_str().unwrap_or("").contains("evil")),
            "the client's Host went upstream"
        );
    }
}

#[tokio::test]
async fn hop_by_hop_headers_never_reach_the_upstream() {
    let h = Harness::start().await;
    let t = h.token();
    let n = SIMPLE.len();
    // P-30 / P-31: hop-by-hop headers, and any header named in Connection, are stripped; the
    // client cannot use Connection to strip the gateway's own key.
    let response = raw(
        &h,
        &post(
            &t,
            &format!("content-length: {n}\r\nconnection: keep-alive, x-secret-hop, x-api-key\r\nkeep-alive: timeout=5\r\nproxy-connection: keep-alive\r\nte: trailers\r\nx-secret-hop: 1\r\n"),
            SIMPLE,
        ),
    )
    .await;
    assert_eq!(status(&response), 200, "{response}");
    let r = &h.mock.received()[0];
    for name in ["keep-alive", "proxy-connection", "te", "x-secret-hop", "upgrade"] {
        assert!(!r.headers.contains_key(name), "{name} reached the upstream");
    }
    assert_eq!(r.headers["x-api-key"], UPSTREAM_KEY, "the gateway's key is always set");
}

/// P-20: many connections dripping their headers are cut at the header-read timeout, while
/// an ordinary client keeps being served.
#[tokio::test]
async fn slowloris_connections_are_cut_and_others_served() {
    let h = Harness::start_with("limits:\n  header_read_timeout: 1s\n").await;
    let mut drips = Vec::new();
    for _ in 0..50 {
        let mut s = tokio::net::TcpStream::connect(h.addr).await.unwrap();
        s.write_all(b"GET /v1/models HTTP/1.1\r\nhost: gw\r\n").await.unwrap();
        drips.push(s);
    }
    // Meanwhile, a normal client.
    let (code, _, _) =
        h.call(http::Method::GET, "/v1/models", &[("x-api-key", h.token().as_str())], "").await;
    assert_eq!(code, 200);
    // Keep dripping one header line at a time: the head never completes, so each connection
    // is closed at the timeout (read returns 0 or an error, or a 408).
    for s in &mut drips {
        let _ = s.write_all(b"x-drip: 1\r\n").await;
    }
    for mut s in drips {
        let mut buf = [0u8; 256];
        let closed = loop {
            match tokio::time::timeout(std::time::Duration::from_secs(10), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break true,
                Ok(Ok(n)) => {
                    let text = String::from_utf8_lossy(&buf[..n]);
                    if text.starts_with("HTTP/1.1 408") || text.starts_with("HTTP/1.1 4") {
                        break true;
                    }
                }
                Err(_) => break false,
            }
        };
        assert!(closed, "a dripping connection was never cut");
    }
    // On a new connection: a pooled one idle past the keep-alive timeout is closed too.
    let get = format!("GET /v1/models HTTP/1.1\r\nhost: gw\r\nx-api-key: {}\r\n\r\n", h.token());
    let response = raw(&h, get.as_bytes()).await;
    assert_eq!(status(&response), 200, "still serving");
}

/// P-21: a body dripping slower than the body-idle limit gets 408 and goes nowhere.
#[tokio::test]
async fn a_dripping_body_is_cut_with_408() {
    let h = Harness::start_with("limits:\n  body_read_timeout: 1s\n").await;
    let t = h.token();
    let mut s = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    s.write_all(&post(&t, "content-length: 200\r\n", "{\"model\":")).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = guard(s.read(&mut buf)).await.unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]);
    assert_eq!(status(&text), 408, "{text}");
    assert!(h.mock.received().is_empty());
}

/// P-13: a compressed request body cannot be inspected: refused, never forwarded.
#[tokio::test]
async fn a_compressed_request_body_is_refused() {
    let h = Harness::start().await;
    let t = h.token();
    let gz = [0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0x03, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let mut req =
        post(&t, &format!("content-encoding: gzip\r\ncontent-length: {}\r\n", gz.len()), "");
    req.extend_from_slice(&gz);
    let response = raw(&h, &req).await;
    assert_eq!(status(&response), 415, "{response}");
    assert!(h.mock.received().is_empty());
}

/// P-35: an upstream redirect is never followed and never passed on.
#[tokio::test]
async fn an_upstream_redirect_is_a_502() {
    let h = Harness::start().await;
    let (code, _, body) = h.messages(SIMPLE, &[("x-mock", "scenario=error; status=302")]).await;
    assert_eq!(code, 502, "{}", String::from_utf8_lossy(&body));
}

/// Load shedding: beyond `limits.max_concurrent_requests` in flight (open streams count until
/// they end), a request gets 503 `overloaded_error` with `retry-after`, before any work; when
/// the streams end, requests flow again.
#[tokio::test]
async fn requests_beyond_the_in_flight_limit_are_shed() {
    let h = Harness::start_with("limits:\n  max_concurrent_requests: 2\n").await;
    let a = h.open_stream("scenario=stall; after=3").await;
    let b = h.open_stream("scenario=stall; after=3").await;
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
    let (code, headers, body) = h.messages(SIMPLE, &[]).await;
    assert_eq!(code, 503, "{}", String::from_utf8_lossy(&body));
    assert_envelope(&body, "overloaded_error");
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(h.mock.received().len(), 2, "the shed request did no work");
    let ids = [request_id(a.headers()), request_id(b.headers())];
    drop((a, b));
    for id in ids {
        h.records.wait_for_request(&id).await;
    }
    assert_eq!(h.messages(SIMPLE, &[]).await.0, 200);
}

/// P-34: hop-by-hop headers an upstream sends (and those it names in Connection) never reach
/// the client, JSON or stream.
#[tokio::test]
async fn upstream_hop_by_hop_headers_never_reach_the_client() {
    let h = Harness::start().await;
    // The mock really sends them (so the assertions below can fail).
    let direct = h
        .send_to(
            h.mock_addr,
            http::Method::POST,
            "/v1/messages",
            &[("x-api-key", UPSTREAM_KEY), ("x-mock", "hop_headers=1")],
            SIMPLE,
        )
        .await;
    assert!(
        direct.headers().contains_key("x-hop-secret")
            && direct.headers().contains_key("keep-alive")
    );
    for body in [SIMPLE, STREAM] {
        let (code, headers, _) = h.messages(body, &[("x-mock", "hop_headers=1")]).await;
        assert_eq!(code, 200);
        for name in ["x-hop-secret", "keep-alive", "proxy-authenticate", "upgrade"] {
            assert!(!headers.contains_key(name), "{name} reached the client");
        }
        assert!(
            headers
                .get("connection")
                .is_none_or(|v| !v.to_str().unwrap_or("").contains("x-hop-secret"))
        );
        assert!(headers.contains_key("request-id"), "end-to-end headers still pass");
    }
}

/// P-22: a client that stops reading a long stream. Back-pressure reaches the upstream (the
/// mock cannot hand over more than the buffers in between hold), and once a write has waited
/// `write_stall_timeout` the gateway closes the connection, which cancels the upstream call;
/// the record says `client_stalled`.
#[tokio::test]
async fn a_client_that_stops_reading_is_cut_and_the_upstream_cancelled() {
    let h = Harness::start_with("limits:\n  write_stall_timeout: 1s\n").await;
    const FRAMES: u64 = 16_000;
    let text = "y".repeat(4000);
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut s = socket.connect(h.addr).await.unwrap();
    let head = format!(
        "x-mock: text={text}; chunk=4000; repeat={FRAMES}\r\ncontent-length: {}\r\n",
        STREAM.len()
    );
    s.write_all(&post(&h.token(), &head, STREAM)).await.unwrap();
    let mut buf = [0u8; 512];
    let n = guard(s.read(&mut buf)).await.unwrap();
    assert_eq!(status(&String::from_utf8_lossy(&buf[..n])), 200);
    // From here on the client reads nothing.
    let records = h.records.wait_for(1).await;
    assert_eq!(records[0].reason, "client_stalled", "{:?}", records[0]);
    guard(h.mock.wait_until(|m| m.cancelled() >= 1)).await;
    let total = FRAMES * 4000;
    let sent = h.mock.sent_bytes();
    assert!(sent < total / 2, "the upstream sent {sent} of {total} bytes to a client reading none");
    let entries = h.audit_entries(&records[0].request_id).await;
    assert!(
        entries.iter().any(|r| r.body.contains("client_stalled")),
        "the audit log says why the stream ended"
    );
}

/// P-23: idle keep-alive connections are closed at the idle timeout (the header-read timer,
/// which runs while a connection waits for its next request); new clients are served while
/// they wait.
#[tokio::test]
async fn idle_keep_alive_connections_are_closed_and_others_served() {
    let h = Harness::start_with("limits:\n  header_read_timeout: 1s\n").await;
    let request =
        format!("GET /v1/models HTTP/1.1\r\nhost: gw\r\nx-api-key: {}\r\n\r\n", h.token());
    let mut idle = Vec::new();
    for _ in 0..1000 {
        let mut s = tokio::net::TcpStream::connect(h.addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        idle.push(s);
    }
    // Each got its answer on a kept-alive connection.
    for s in &mut idle {
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = guard(s.read(&mut buf)).await.unwrap();
            assert!(n > 0, "closed before answering");
            head.extend_from_slice(&buf[..n]);
        }
        assert_eq!(status(&String::from_utf8_lossy(&head)), 200);
    }
    // While they sit idle, a new client is served.
    let (code, _, _) =
        h.call(http::Method::GET, "/v1/models", &[("x-api-key", h.token().as_str())], "").await;
    assert_eq!(code, 200);
    // Then every idle connection is closed by the gateway (EOF once the rest of the body is read).
    for mut s in idle {
        let mut buf = [0u8; 4096];
        loop {
            match guard(s.read(&mut buf)).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}

/// P-24: past `limits.max_connections` a new connection waits in the backlog (it is not
/// served, and not refused) until a connection closes.
#[tokio::test]
async fn connections_past_the_cap_wait_for_a_free_slot() {
    let h = Harness::start_with("limits:\n  max_connections: 2\n").await;
    let request =
        format!("GET /v1/models HTTP/1.1\r\nhost: gw\r\nx-api-key: {}\r\n\r\n", h.token());
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = tokio::net::TcpStream::connect(h.addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut buf = [0u8; 4096];
        assert!(guard(s.read(&mut buf)).await.unwrap() > 0);
        held.push(s);
    }
    let mut third = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    third.write_all(request.as_bytes()).await.unwrap();
    let mut buf = [0u8; 4096];
    let early = tokio::time::timeout(std::time::Duration::from_millis(500), third.read(&mut buf));
    assert!(early.await.is_err(), "a third connection was served past the cap of two");
    assert_eq!(h.mock.received().len(), 2);
    drop(held.pop());
    let n = guard(third.read(&mut buf)).await.unwrap();
    assert_eq!(status(&String::from_utf8_lossy(&buf[..n])), 200);
}

/// The request timeout bounds the whole exchange: a body that keeps trickling within the
/// body-idle limit gets 408, an upstream that never answers gets 504; neither waits longer.
#[tokio::test]
async fn the_request_timeout_bounds_slow_bodies_and_slow_upstreams() {
    let h = Harness::start_with("limits:\n  request_timeout: 1s\n  body_read_timeout: 10s\n").await;
    let mut s = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    let body = SIMPLE.as_bytes();
    s.write_all(&post(&h.token(), &format!("content-length: {}\r\n", body.len()), ""))
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    let mut sent = 0;
    let n = loop {
        // One byte every 200 ms: never idle for long, never done in time.
        tokio::select! {
            r = s.read(&mut buf) => break r.unwrap(),
            () = tokio::time::sleep(std::time::Duration::from_millis(200)) => {
                assert!(sent < body.len(), "the whole body went through without an answer");
                s.write_all(&body[sent..=sent]).await.unwrap();
                sent += 1;
            }
        }
    };
    let text = String::from_utf8_lossy(&buf[..n]);
    assert_eq!(status(&text), 408, "{text}");
    assert!(h.mock.received().is_empty());

    let (code, headers, body) = h.messages(SIMPLE, &[("x-mock", "scenario=hang")]).await;
    assert_eq!(code, 504, "{}", String::from_utf8_lossy(&body));
    assert_envelope(&body, "timeout_error");
    let record = h.records.wait_for_request(&request_id(&headers)).await;
    assert_eq!(record.reason, "request_timeout");
}

/// P-07: the classes of parser differences HTTP Garden found in servers and proxies
/// (security-tests.md §2.3), written as our own payloads. Each is either refused (4xx or a
/// closed connection, and nothing reaches the upstream) or forwarded as exactly one clean
/// request carrying exactly the body the client framed. `Refuse` marks the ambiguous ones,
/// where only refusal is safe.
#[tokio::test]
async fn http_garden_trophy_classes_are_refused_or_forwarded_cleanly() {
    #[derive(PartialEq)]
    enum Expect {
        Refuse,
        RefuseOrClean,
    }
    use Expect::*;
    let h = Harness::start().await;
    let t = h.token();
    let body = SIMPLE;
    let n = body.len();
    let start = |extra: &str| {
        format!(
            "POST /v1/messages HTTP/1.1\r\nhost: gw\r\nx-api-key: {t}\r\ncontent-type: application/json\r\n{extra}"
        )
    };
    let chunked = |size: &str| {
        format!("{}\r\n{size}\r\n{body}\r\n0\r\n\r\n", start("transfer-encoding: chunked\r\n"))
    };
    let cl = |extra: &str| format!("{}content-length: {n}\r\n{extra}\r\n{body}", start(""));
    let cases: Vec<(&str, String, Expect)> = vec![
        ("chunk size 0x", chunked(&format!("0x{n:x}")), Refuse),
        ("chunk size +", chunked(&format!("+{n:x}")), Refuse),
        ("chunk size -", chunked(&format!("-{n:x}")), Refuse),
        (
            "chunk size _",
            chunked(&format!("{}_{}", &format!("{n:x}")[..1], &format!("{n:x}")[1..])),
            Refuse,
        ),
        ("chunk size leading space", chunked(&format!(" {n:x}")), Refuse),
        ("empty chunk size", chunked(""), Refuse),
        ("chunk extension with bare LF", chunked(&format!("{n:x};a\nb")), Refuse),
        ("chunk extension with bare CR", chunked(&format!("{n:x};a\rb")), Refuse),
        (
            "extra CRLF after a chunk",
            format!(
                "{}\r\n{n:x}\r\n{body}\r\n\r\n0\r\n\r\n",
                start("transfer-encoding: chunked\r\n")
            ),
            Refuse,
        ),
        (
            "missing CRLF after a chunk",
            format!("{}\r\n{n:x}\r\n{body}0\r\n\r\n", start("transfer-encoding: chunked\r\n")),
            Refuse,
        ),
        (
            "TE ,chunked",
            format!("{}\r\n{n:x}\r\n{body}\r\n0\r\n\r\n", start("transfer-encoding: ,chunked\r\n")),
            Refuse,
        ),
        (
            "unknown transfer coding",
            format!("{}\r\n{body}", start("transfer-encoding: foo\r\n")),
            Refuse,
        ),
        ("TE on HTTP/1.0", chunked(&format!("{n:x}")).replacen("HTTP/1.1", "HTTP/1.0", 1), Refuse),
        ("empty content-length", format!("{}content-length: \r\n\r\n{body}", start("")), Refuse),
        ("content-length -1", format!("{}content-length: -1\r\n\r\n{body}", start("")), Refuse),
        (
            "content-length 5 6",
            format!("{}content-length: {n} {n}\r\n\r\n{body}", start("")),
            Refuse,
        ),
        (
            "content-length too big",
            format!("{}content-length: 99999999999999999999\r\n\r\n{body}", start("")),
            Refuse,
        ),
        ("NUL in a header value", cl("x-note: a\0b\r\n"), Refuse),
        ("CR in a header value", cl("x-note: a\rb\r\n"), Refuse),
        ("whitespace before a header name", cl(" x-note: a\r\n"), Refuse),
        ("field line without a colon", cl("x-no-colon\r\n"), Refuse),
        ("empty header name", cl(": a\r\n"), Refuse),
        ("non-token byte in a name", cl("x-n(o)te: a\r\n"), Refuse),
        (
            "two spaces in the request line",
            cl("").replacen("POST /v1/messages", "POST  /v1/messages", 1),
            Refuse,
        ),
        ("lowercase version", cl("").replacen("HTTP/1.1", "http/1.1", 1), Refuse),
        ("Host twice", cl("host: other\r\n"), Refuse),
        ("no Host", cl("").replacen("host: gw\r\n", "", 1), Refuse),
        ("bare LF line endings in the head", cl("").replace("\r\n", "\n"), RefuseOrClean),
    ];
    for (name, payload, expect) in cases {
        let before = h.mock.received().len();
        let response = raw(&h, payload.as_bytes()).await;
        let code = status(&response);
        let got = h.mock.received();
        let refused = (400..500).contains(&code) || code == 0;
        if refused {
            assert_eq!(got.len(), before, "{name}: refused, yet something reached the upstream");
            continue;
        }
        assert!(expect == RefuseOrClean, "{name}: must be refused, got {code}");
        assert_eq!(code, 200, "{name}: {response}");
        assert_eq!(got.len(), before + 1, "{name}: one request in, one request out");
        assert_eq!(got[before].body, body.as_bytes(), "{name}: the body as the client framed it");
    }

    // P-08: two pipelined requests in one segment are each served, in order.
    let mut s = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    let two = format!(
        "{}{}",
        cl("x-mock: text=first\r\n"),
        cl("x-mock: text=second\r\nconnection: close\r\n")
    );
    s.write_all(two.as_bytes()).await.unwrap();
    let mut all = Vec::new();
    let _ = guard(s.read_to_end(&mut all)).await;
    let all = String::from_utf8_lossy(&all);
    assert_eq!(all.matches("HTTP/1.1 200").count(), 2, "{all}");
    let (first, second) = (all.find("first").unwrap(), all.find("second").unwrap());
    assert!(first < second, "answers out of order: {all}");
}

/// P-36: only the allow-listed paths reach the upstream, and only as themselves: traversal,
/// encoded dots and slashes, doubled slashes, letter case and `;params` are refused or
/// forwarded to exactly `/v1/messages`; the admin API is not on the data plane. P-10: more
/// header fields than `limits.max_headers` is a 431.
#[tokio::test]
async fn tricked_paths_and_too_many_fields_go_nowhere() {
    let h = Harness::start().await;
    let t = h.token();
    let n = SIMPLE.len();
    for path in [
        "/v1/messages/../models",
        "/v1/x/../../v1/models",
        "/v1/%2e%2e/v1/models",
        "/v1/messages%2F..%2Fmodels",
        "//v1/messages",
        "/V1/MESSAGES",
        "/v1/messages;x=1",
        "/v1/messages/",
        "/v1//messages",
        "/admin/policy",
        "/v1/files",
        "/v1/organizations/me",
    ] {
        let before = h.mock.received().len();
        let response = raw(
            &h,
            format!("POST {path} HTTP/1.1\r\nhost: gw\r\nx-api-key: {t}\r\ncontent-type: application/json\r\ncontent-length: {n}\r\n\r\n{SIMPLE}").as_bytes(),
        )
        .await;
        let code = status(&response);
        let got = h.mock.received();
        if code == 200 {
            assert_eq!(got.len(), before + 1, "{path}");
            assert_eq!(got[before].path_and_query, "/v1/messages", "{path} went elsewhere");
        } else {
            let refused = (400..500).contains(&code) || code == 501 || code == 0;
            assert!(refused, "{path}: {response}");
            assert_eq!(got.len(), before, "{path}: refused, yet forwarded");
        }
    }
    let fields: String = (0..120).map(|i| format!("x-f{i}: 1\r\n")).collect();
    let response = raw(
        &h,
        format!("GET /v1/models HTTP/1.1\r\nhost: gw\r\nx-api-key: {t}\r\n{fields}\r\n").as_bytes(),
    )
    .await;
    assert!(status(&response) == 431 || status(&response) == 0, "{response}");
}
