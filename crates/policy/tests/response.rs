//! The response guard over real recorded streams (../shared/fixtures): text masked exactly as
//! whole-text masking would, tool calls held to their stop and released intact or blocked.

use airlock_detect::{MaskKey, Pseudonyms};
use airlock_policy::{Policy, ResponseGuard};
use airlock_wire::Event;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

fn fixtures() -> Vec<(String, Vec<Event>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/anthropic/vercel-ai");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("../shared/fixtures beside the repository") {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".chunks.txt") {
            continue;
        }
        let events = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                Event::named(v["type"].as_str().unwrap(), l.to_owned())
            })
            .collect();
        out.push((name, events));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() > 20, "fixtures found: {}", out.len());
    out
}

/// Per block index: concatenated text, and the final tool input (start input, or parsed deltas).
/// Keys are (message number, block index): some recordings hold several messages.
type Blocks<T> = BTreeMap<(u64, u64), T>;

fn assemble(events: &[Event]) -> (Blocks<String>, Blocks<Value>) {
    let (mut text, mut json, mut tools) =
        (BTreeMap::new(), BTreeMap::<(u64, u64), String>::new(), BTreeMap::new());
    let mut message = 0;
    let mut stopped = Vec::new();
    for e in events {
        let v: Value = serde_json::from_str(&e.data).unwrap();
        if v["type"] == "message_start" {
            message += 1;
        }
        let i = (message, v["index"].as_u64().unwrap_or(0));
        match v["type"].as_str().unwrap_or("") {
            "content_block_start"
                if matches!(
                    v["content_block"]["type"].as_str(),
                    Some("tool_use" | "server_tool_use")
                ) =>
            {
                tools.insert(i, v["content_block"]["input"].clone());
            }
            "content_block_start" if v["content_block"]["type"] == "text" => {
                text.insert(i, v["content_block"]["text"].as_str().unwrap_or("").to_owned());
            }
            "content_block_delta" => match v["delta"]["type"].as_str() {
                Some("text_delta") => {
                    text.entry(i).or_default().push_str(v["delta"]["text"].as_str().unwrap())
                }
                Some("input_json_delta") => json
                    .entry(i)
                    .or_default()
                    .push_str(v["delta"]["partial_json"].as_str().unwrap()),
                _ => {}
            },
            // A tool call counts once it stopped (a cut-off recording's last call never does).
            "content_block_stop" => {
                if let Some(j) = json.remove(&i).filter(|j| !j.trim().is_empty()) {
                    tools.insert(i, serde_json::from_str(&j).unwrap());
                }
                stopped.push(i);
            }
            _ => {}
        }
    }
    tools.retain(|i, _| stopped.contains(i));
    (text, tools)
}

fn guard(policy: &Arc<Policy>) -> ResponseGuard {
    ResponseGuard::new(
        policy.clone(),
        vec![],
        "claude-haiku-4-5".into(),
        Arc::new(MaskKey::new(b"k")),
        Pseudonyms::default(),
        1 << 20,
    )
}

#[test]
fn recorded_streams_pass_with_text_masked_as_a_whole_and_tool_calls_intact() {
    let policy = Arc::new(Policy::bundled());
    let pack = policy.mask_pack().unwrap().clone();
    let mut tool_blocks = 0;
    for (name, events) in fixtures() {
        let mut g = guard(&policy);
        let mut out = Vec::new();
        for e in &events {
            out.extend(g.event(e.clone()).unwrap_or_else(|r| panic!("{name}: {r:?}")));
        }
        let (text_in, tools_in) = assemble(&events);
        let (text_out, tools_out) = assemble(&out);
        for (i, t) in &text_in {
            let whole = pack.mask(t, &MaskKey::new(b"k"), &mut Pseudonyms::default()).0;
            assert_eq!(text_out.get(i), Some(&whole), "{name}: text block {i:?}");
        }
        assert_eq!(tools_in, tools_out, "{name}: tool inputs");
        tool_blocks += tools_in.len();
        // Non-content events keep their order.
        let others = |evs: &[Event]| {
            evs.iter()
                .filter(|e| !e.data.contains("content_block"))
                .map(|e| e.data.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(others(&events), others(&out), "{name}");
    }
    assert!(tool_blocks > 20, "the fixtures exercise tool calls ({tool_blocks})");
}

#[test]
fn a_tool_call_split_across_deltas_is_held_then_blocked_or_masked() {
    let policy = Arc::new(
        Policy::parse("t.yaml", "version: 1\nmask_response: [email]\nrules:\n  - id: no-rm\n    when: { tool_call: { name: Bash, input_matches: 'rm\\s+-rf\\s+/' } }\n    action: deny\n").unwrap(),
    );
    let ev = |v: Value| Event::named(v["type"].as_str().unwrap(), v.to_string());
    let events_for = |command: &str| {
        let input = json!({"command": command}).to_string();
        let mut events = vec![ev(
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "t", "name": "Bash", "input": {}}}),
        )];
        for chunk in input.as_bytes().chunks(3) {
            let part = String::from_utf8(chunk.to_vec()).unwrap();
            events.push(ev(json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": part}})));
        }
        events.push(ev(json!({"type": "content_block_stop", "index": 0})));
        events
    };
    let events = events_for("rm -rf / # mail bob@example.com");
    let mut g = guard(&policy);
    let mut released = Vec::new();
    let mut blocked = None;
    for e in events.clone() {
        match g.event(e) {
            Ok(out) => released.extend(out),
            Err(r) => {
                blocked = Some(r);
                break;
            }
        }
    }
    assert!(released.is_empty(), "nothing of the call is released before the verdict");
    assert_eq!(blocked.unwrap().rule.as_deref(), Some("no-rm"));
    assert_eq!(g.hits[0].id, "no-rm");
    // A harmless command goes through as one delta, its email masked.
    let harmless = events_for("ls -la # mail bob@example.com");
    let mut g = guard(&policy);
    let out: Vec<Event> = harmless.into_iter().flat_map(|e| g.event(e).unwrap()).collect();
    assert_eq!(out.len(), 3, "start, one delta, stop");
    let (_, tools) = assemble(&out);
    assert_eq!(tools[&(0, 0)], json!({"command": "ls -la # mail [EMAIL]"}));
}

/// The audit copy of a stream is the message it assembles to, masked by the audit detectors:
/// the same as the copy of that message sent whole. Over the bound, the content is left out.
#[test]
fn a_streams_audit_copy_is_the_message_it_assembles_to() {
    let policy = Arc::new(Policy::bundled());
    let usage = json!({"input_tokens": 12, "output_tokens": 9});
    let whole = json!({
        "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
        "content": [{"type": "text", "text": "write to ann.planted@example.com from 10.1.2.3"}],
        "stop_reason": "end_turn", "stop_sequence": null, "usage": usage,
    });
    let start = json!({"type": "message_start", "message": {
        "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
        "content": [], "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": 12, "output_tokens": 1},
    }});
    let delta = |t: &str| json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}});
    let events = [
        start,
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        delta("write to ann.pla"),
        delta("nted@example.com from 10."),
        delta("1.2.3"),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": usage}),
        json!({"type": "message_stop"}),
    ];
    let mut streamed = guard(&policy);
    streamed.keep_transcript(1 << 20);
    for e in events {
        streamed.event(Event::named(e["type"].as_str().unwrap(), e.to_string())).unwrap();
    }
    let from_stream = streamed.transcript().unwrap();

    let mut sent = guard(&policy);
    sent.keep_transcript(1 << 20);
    let mut message = whole.clone();
    sent.json(&mut message).unwrap();
    let size = message.to_string().len();
    let from_whole = sent.json_transcript(message.clone(), size).unwrap();
    assert_eq!(from_stream, from_whole);
    let text = from_whole["content"][0]["text"].as_str().unwrap();
    assert_eq!(text, "write to [EMAIL] from [IP_ADDRESS]");
    assert_eq!(from_whole["usage"], usage);

    // Longer than the bound: everything but the content, marked.
    let cut = sent.json_transcript(message, 1 << 21).unwrap();
    assert_eq!(cut["content"], json!([]));
    assert_eq!(cut["airlock_truncated"], true);
    assert_eq!(cut["stop_reason"], "end_turn");
}
