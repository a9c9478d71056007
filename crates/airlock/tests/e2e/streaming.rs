//! SSE relayed event by event, identical to what the upstream sent.

use crate::harness::*;
use http_body_util::BodyExt;

/// Ask the mock directly (no gateway) for the same scripted stream.
async fn direct(h: &Harness, script: &str) -> Vec<(String, String)> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let req = http::Request::post(format!("http://{}/v1/messages", h.mock_addr))
        .header("x-api-key", UPSTREAM_KEY)
        .header("x-mock", script)
        .body(http_body_util::Full::new(bytes::Bytes::from_static(STREAM.as_bytes())))
        .unwrap();
    let resp = guard(client.request(req)).await.unwrap();
    decode_events(&resp.into_body().collect().await.unwrap().to_bytes())
}

#[tokio::test]
async fn scripted_streams_arrive_identical() {
    let h = Harness::start_with_policy(PASSTHROUGH_POLICY, "").await;
    for script in
        ["scenario=text; chunk=3", "scenario=tool_use; chunk=4", "scenario=thinking; chunk=7"]
    {
        let (status, headers, body) = h.messages(STREAM, &[("x-mock", script)]).await;
        assert_eq!(status, 200);
        assert!(headers["content-type"].to_str().unwrap().starts_with("text/event-stream"));
        let got = decode_events(&body);
        // Every frame carries its event: line, and data.type matches it.
        for frame in String::from_utf8_lossy(&body).split("\n\n").filter(|f| !f.is_empty()) {
            assert!(frame.starts_with("event: "), "frame without event line: {frame}");
        }
        // The mock numbers its messages, so ids differ between the two calls; compare without.
        let want = direct(&h, script).await;
        let normalise = |v: &mut Vec<(String, String)>| {
            for (_, d) in v.iter_mut() {
                *d = regex_lite_ids(d);
            }
        };
        let mut got = canonical_tool_calls(&got);
        let mut want = canonical_tool_calls(&want);
        normalise(&mut got);
        normalise(&mut want);
        assert_eq!(got, want, "{script}");
        assert_eq!(got.last().unwrap().0, "message_stop");
        let kinds: String = got.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(",");
        match script {
            s if s.contains("tool_use") => {
                assert!(got.iter().any(|(_, d)| d.contains("input_json_delta")), "{kinds}")
            }
            s if s.contains("thinking") => {
                assert!(got.iter().any(|(_, d)| d.contains("signature_delta")), "{kinds}")
            }
            _ => {}
        }
    }
}

/// Replace mock-generated ids (`msg_mock000123`, `toolu_mock000123`) so two calls compare.
fn regex_lite_ids(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("_mock") {
        out.push_str(&rest[..i + 5]);
        rest = rest[i + 5..].trim_start_matches(|c: char| c.is_ascii_digit());
        out.push('N');
    }
    out.push_str(rest);
    out
}

fn fixture_streams() -> Vec<(String, Vec<u8>)> {
    let dir = fixtures_dir();
    let mut out = Vec::new();
    for sub in ["vercel-ai", "pydantic-ai"] {
        let mut entries: Vec<_> =
            std::fs::read_dir(dir.join(sub)).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for path in entries {
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            let raw = if name.ends_with(".chunks.txt") {
                airlock_mock::fixture::chunks_to_sse(&std::fs::read_to_string(&path).unwrap()).ok()
            } else if name.ends_with(".yaml") {
                airlock_mock::fixture::cassette_stream(&std::fs::read_to_string(&path).unwrap())
                    .ok()
            } else {
                None
            };
            if let Some(raw) = raw {
                out.push((format!("{sub}/{name}"), raw));
            }
        }
    }
    out
}

#[tokio::test]
async fn every_recorded_stream_replays_event_for_event() {
    let h = Harness::start_with_policy(PASSTHROUGH_POLICY, "").await;
    let streams = fixture_streams();
    let vercel = streams.iter().filter(|(n, _)| n.starts_with("vercel")).count();
    let pydantic = streams.len() - vercel;
    assert!(
        vercel >= 31 && pydantic >= 12,
        "fixtures missing: {vercel} vercel, {pydantic} pydantic"
    );
    for (i, (name, raw)) in streams.iter().enumerate() {
        // Odd byte splits, so frames are cut mid-line and mid-UTF-8 on the way through.
        let chunk = [0, 1, 7, 64, 333][i % 5];
        let script = format!("scenario=fixture; fixture={name}; chunk={chunk}");
        let (status, _, body) = h.messages(STREAM, &[("x-mock", &script)]).await;
        assert_eq!(status, 200, "{name}");
        let want = decode_events(raw);
        assert!(!want.is_empty(), "{name}");
        // Tool calls are held to their stop and released whole; all else is event for event.
        let (want, got) =
            (canonical_tool_calls(&want), canonical_tool_calls(&decode_events(&body)));
        let ends_cleanly = want.last().is_some_and(|(n, _)| n == "message_stop" || n == "error");
        if ends_cleanly {
            assert_eq!(got, want, "{name}");
        } else {
            // A recording that stops short is relayed as it is, then ended with an error event.
            assert_eq!(&got[..want.len()], &want[..], "{name}");
            assert_eq!(got.len(), want.len() + 1, "{name}");
            assert_eq!(got.last().unwrap().0, "error", "{name}");
        }
    }
}

#[tokio::test]
async fn events_are_relayed_before_the_stream_ends() {
    // The upstream sends three events and then holds the stream open: the client must see
    // them while the upstream is still silent — no buffering of the stream.
    let h = Harness::start().await;
    let resp = h.open_stream("scenario=stall; after=3").await;
    let mut body = resp.into_body();
    let mut seen = Vec::new();
    while decode_events(&seen).len() < 3 {
        let frame = guard(body.frame()).await.expect("stream ended early").unwrap();
        if let Ok(d) = frame.into_data() {
            seen.extend_from_slice(&d);
        }
    }
    let names: Vec<String> = decode_events(&seen).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["message_start", "content_block_start", "ping"]);
}
