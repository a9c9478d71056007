//! Criterion micro-benchmarks of the request path's parts, one group each:
//!
//! - `detect`: detector scan throughput (MB/s) of the bundled policy's response pack, and the
//!   fixed cost of scanning one short string;
//! - `policy`: judging (and redacting) a 4.5 KB agent request with the bundled policy;
//! - `sse`: decoding one `content_block_delta` event from bytes, and encoding one;
//! - `masker`: the streaming masker per text delta, the whole response guard per SSE event
//!   (decode, mask, re-encode as the relay does), and per whole JSON reply (parse, mask, the
//!   audit transcript);
//! - `audit`: sealing entries into the hash chain, and appending one committed entry to
//!   SQLite with full durability (each one a transaction and an fsync).
//!
//! `cargo bench -p airlock-microbench` (all), or a group: `cargo bench -p airlock-microbench
//! -- sse`. docs/benchmarks.md has the numbers. The load benchmark (`bench/run`) measures the
//! whole path.

#[path = "../../detect/benches/support/corpus.rs"]
mod corpus;

use airlock_audit::{Chain, Draft, Index, Kind};
use airlock_detect::{MaskKey, Pseudonyms, StreamMasker};
use airlock_policy::{Policy, ResponseGuard};
use airlock_wire::sse::{Decoder, Event, encode};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use std::hint::black_box;
use std::sync::Arc;

#[path = "../../policy/benches/support/request.rs"]
mod request;

use request::{PROSE, request as agent_request};

fn detect(c: &mut Criterion) {
    let policy = Policy::bundled();
    let pack = policy.mask_pack().expect("the bundled policy masks responses").clone();
    let text = corpus::corpus(7, 1 << 20, false);
    let mut g = c.benchmark_group("detect");
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("scan_1MiB_response_pack", |b| {
        b.iter(|| pack.find_all(black_box(&text)).len())
    });
    // The fixed cost of one scan: a short string, as the audit copy and the response guard
    // scan every string of a JSON message one by one (ids, model names, stop reasons).
    g.throughput(Throughput::Elements(1));
    g.bench_function("scan_one_17_byte_string", |b| {
        b.iter(|| pack.find_all(black_box("claude-sonnet-4-5")).len())
    });
    g.finish();
}

fn policy(c: &mut Criterion) {
    let policy = Policy::bundled();
    let key = MaskKey::new(b"bench");
    let groups = vec!["eng".to_owned()];
    let body = agent_request(4 * 1024);
    let len = Value::Object(body.clone()).to_string().len();
    let mut g = c.benchmark_group("policy");
    g.throughput(Throughput::Elements(1));
    // The same history on every call, as on an agent's next turn (findings cache warm).
    g.bench_function("evaluate_4KB_agent_request", |b| {
        b.iter_batched(
            || body.clone(),
            |mut body| policy.evaluate(&groups, &mut body, len, &key, &mut Pseudonyms::default()),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("evaluate_and_write_redacted_4KB", |b| {
        b.iter_batched(
            || body.clone(),
            |mut body| {
                let v = policy.evaluate(&groups, &mut body, len, &key, &mut Pseudonyms::default());
                (v.changed, Value::Object(body).to_string())
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// A text delta as the API sends it.
fn delta_event(text: &str) -> Event {
    let data = json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}});
    Event::named("content_block_delta", data.to_string())
}

fn sse(c: &mut Criterion) {
    let event = delta_event("Sure - the config parser now rejects duplicate keys, and ");
    let wire = encode(&event);
    let mut g = c.benchmark_group("sse");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode_one_delta_event", |b| {
        let mut decoder = Decoder::new(1 << 20);
        b.iter(|| decoder.push(black_box(&wire)).map(|events| events.len()))
    });
    g.bench_function("encode_one_delta_event", |b| b.iter(|| encode(black_box(&event))));
    g.finish();
}

/// The response guard a `messages` call of group `eng` gets, as the pipeline builds it.
fn new_guard(policy: &Arc<Policy>, key: &Arc<MaskKey>) -> ResponseGuard {
    ResponseGuard::new(
        policy.clone(),
        vec!["eng".into()],
        "claude-sonnet-4-5".into(),
        key.clone(),
        Pseudonyms::default(),
        1 << 20,
    )
}

fn masker(c: &mut Criterion) {
    let policy = Arc::new(Policy::bundled());
    let pack = policy.mask_pack().expect("the bundled policy masks responses").clone();
    let key = Arc::new(MaskKey::new(b"bench"));
    // A reply with an e-mail address and a card number, cut into 24-byte deltas (values split
    // across deltas, as a model streams them).
    let reply = "Sure. Write to jane.doe@example.com about the refund; the card on file is \
        4111 1111 1111 1111 and the order ships Tuesday. Anything else I can help with? "
        .repeat(4);
    let deltas: Vec<&str> = {
        let mut v = Vec::new();
        let mut at = 0;
        while at < reply.len() {
            let end = (at + 24).min(reply.len());
            v.push(&reply[at..end]);
            at = end;
        }
        v
    };
    let n = deltas.len() as u64;
    let mut g = c.benchmark_group("masker");
    g.throughput(Throughput::Elements(n));
    g.bench_function("stream_masker_per_delta", |b| {
        b.iter(|| {
            let mut m = StreamMasker::new(pack.clone());
            let mut p = Pseudonyms::default();
            let mut out = 0;
            for d in &deltas {
                out += m.push(d, &key, &mut p).len();
            }
            out + m.finish(&key, &mut p).len()
        })
    });
    // The relay's whole per-event work: decode, the guard (masking, hold-back), encode.
    let mut wire = Vec::new();
    wire.extend_from_slice(&encode(&Event::named(
        "content_block_start",
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
    )));
    for d in &deltas {
        wire.extend_from_slice(&encode(&delta_event(d)));
    }
    // A whole non-streamed reply (the mock's, about 400 bytes) through what the pipeline does
    // with it: parse, mask and check (`json`), the masked transcript for the audit log, and
    // that copy serialised.
    let reply_json = br#"{"id":"msg_mock000000","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"Hello from the Airlock mock upstream."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":17,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":0},"output_tokens":12,"service_tier":"standard","inference_geo":"not_available"}}"#;
    g.throughput(Throughput::Elements(1));
    g.bench_function("guard_whole_json_reply", |b| {
        b.iter(|| {
            let mut guard = new_guard(&policy, &key);
            guard.keep_transcript(256 * 1024);
            let mut message: Value = serde_json::from_slice(black_box(reply_json)).unwrap();
            let changed = guard.json(&mut message).unwrap_or(false);
            let sent = if changed { message.to_string().len() } else { reply_json.len() };
            let copy = guard
                .json_transcript(message, sent)
                .map(|t| serde_json::value::to_raw_value(&t).unwrap());
            (changed, copy.map(|c| c.get().len()))
        })
    });
    g.throughput(Throughput::Elements(n));
    g.bench_function("guarded_relay_per_event", |b| {
        b.iter(|| {
            let mut guard = new_guard(&policy, &key);
            let mut decoder = Decoder::new(1 << 20);
            let mut out = 0;
            for event in decoder.push(&wire).unwrap_or_default() {
                for e in guard.event(event).unwrap_or_default() {
                    out += encode(&e).len();
                }
            }
            out
        })
    });
    g.finish();
}

fn entry(i: u64) -> Draft {
    Draft {
        kind: Kind::Response,
        request_id: format!("req_bench_{i:010}"),
        at_ms: 1_800_000_000_000 + i as i64,
        index: Index {
            subject: Some("bench-user".into()),
            groups: vec!["eng".into()],
            model: Some("claude-sonnet-4-5".into()),
            decision: Some("allow".into()),
            rules: vec!["redact-pii".into()],
            status: Some(200),
        },
        detail: airlock_audit::detail(&json!({"route": "messages", "method": "POST",
            "usage": {"input_tokens": 1200, "output_tokens": 300},
            "timings_us": {"total": 2300, "upstream": 1900, "first_byte": 2100},
            "response_body": {"content": [{"type": "text", "text": PROSE.repeat(8)}]}})),
    }
}

fn audit(c: &mut Criterion) {
    let mut g = c.benchmark_group("audit");
    g.throughput(Throughput::Elements(1));
    g.bench_function("seal_one_1KB_entry", |b| {
        let chain = Chain::start("bench");
        b.iter_batched(|| vec![entry(1)], |d| chain.seal(d), BatchSize::SmallInput)
    });
    let dir = std::env::temp_dir().join(format!("airlock-microbench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let url = airlock_config::StoreUrl::Sqlite(dir.join("audit.db"));
    let mut store = airlock_store::Store::open(&url).expect("open the bench store");
    let mut chain = Chain::start("bench");
    let mut i = 0;
    // One entry per transaction: the commit (and fsync) a lone `request`-mode entry waits for.
    g.bench_function("append_one_committed_entry_sqlite", |b| {
        b.iter(|| {
            i += 1;
            let (sealed, next) = chain.seal(vec![entry(i)]);
            store.append(&sealed).expect("append");
            chain = next;
        })
    });
    g.finish();
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, detect, policy, sse, masker, audit);
criterion_main!(benches);
