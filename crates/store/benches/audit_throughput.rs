//! Sustained audit throughput with full durability (SQLite, WAL, synchronous=FULL), next to
//! the machine's own fsync latency. `cargo bench -p airlock-store --bench audit_throughput`;
//! results go to docs/benchmarks.md by hand (command, machine, numbers).
//!
//! - one writer: the commit wait of a lone request (added latency of `request` mode);
//! - awaited: 256 concurrent writers each awaiting its commit (`request`/`strict` modes);
//! - detached: entries queued without waiting (`batch` mode), timed until the writer drains.

use airlock_audit::{Draft, Index, Kind};
use airlock_authn::SessionKeys;
use airlock_config::StoreUrl;
use airlock_store::{Writer, WriterOptions};
use std::io::Write;
use std::time::{Duration, Instant};

const ENTRIES: usize = 100_000;
const WRITERS: usize = 256;

fn draft(i: usize) -> Draft {
    Draft {
        kind: Kind::Record,
        request_id: format!("req_bench_{i:010}"),
        at_ms: 1_800_000_000_000 + i as i64,
        index: Index {
            subject: Some("bench-user".into()),
            groups: vec!["eng".into()],
            model: Some("claude-sonnet-4-5".into()),
            decision: Some("allow".into()),
            rules: vec![],
            status: Some(200),
        },
        detail: airlock_audit::detail(
            &serde_json::json!({"route": "messages", "method": "POST", "stream": false,
            "usage": {"input_tokens": 1200, "output_tokens": 300},
            "timings_us": {"total": 2300, "upstream": 1900, "first_byte": 2100}}),
        ),
    }
}

fn fsync_latency(dir: &std::path::Path) -> Duration {
    let path = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&path).unwrap();
    let mut samples: Vec<Duration> = (0..200)
        .map(|_| {
            f.write_all(&[0u8; 4096]).unwrap();
            let t = Instant::now();
            f.sync_data().unwrap();
            t.elapsed()
        })
        .collect();
    samples.sort();
    samples[samples.len() / 2]
}

fn writer(dir: &std::path::Path, name: &str) -> Writer {
    let options = WriterOptions {
        chain: name.into(),
        checkpoint_every: 1000,
        checkpoint_interval: Duration::from_secs(60),
        checkpoint_file: Some(dir.join(format!("{name}.jsonl"))),
        max_batch: 2048,
        window: Duration::ZERO,
        short_slice: false,
    };
    let url = StoreUrl::Sqlite(dir.join(format!("{name}.db")));
    Writer::start(&url, SessionKeys::generate().unwrap(), options, None).unwrap()
}

fn main() {
    let dir = std::env::temp_dir().join(format!("airlock-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    println!("fsync (4 KiB write + fdatasync), median of 200: {:?}", fsync_latency(&dir));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();

    // One writer at a time: the commit wait a lone request sees (the added latency of the
    // `request` mode at low load, next to the fsync above).
    let w = writer(&dir, "single");
    let mut single: Vec<Duration> = rt.block_on(async {
        let mut lat = Vec::new();
        for i in 0..5_000 {
            let s = Instant::now();
            w.append(draft(i)).await.unwrap();
            lat.push(s.elapsed());
        }
        lat
    });
    w.close();
    single.sort();
    println!(
        "awaited (1 writer): commit wait p50 {:?} p99 {:?}",
        single[single.len() / 2],
        single[single.len() * 99 / 100]
    );

    let w = writer(&dir, "awaited");
    let started = Instant::now();
    let mut latencies = rt.block_on(async {
        let tasks: Vec<_> = (0..WRITERS)
            .map(|t| {
                let w = w.clone();
                tokio::spawn(async move {
                    let mut lat = Vec::new();
                    for i in (t..ENTRIES).step_by(WRITERS) {
                        let s = Instant::now();
                        w.append(draft(i)).await.unwrap();
                        lat.push(s.elapsed());
                    }
                    lat
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    let elapsed = started.elapsed();
    w.close();
    latencies.sort();
    let p = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "awaited ({WRITERS} writers): {ENTRIES} entries in {elapsed:.2?} = {:.0} entries/s; commit wait p50 {:?} p99 {:?} p99.9 {:?}",
        ENTRIES as f64 / elapsed.as_secs_f64(),
        p(0.5),
        p(0.99),
        p(0.999)
    );

    let w = writer(&dir, "detached");
    let started = Instant::now();
    for i in 0..ENTRIES {
        w.append_detached(draft(i));
    }
    w.close();
    let elapsed = started.elapsed();
    println!(
        "detached: {ENTRIES} entries in {elapsed:.2?} = {:.0} entries/s",
        ENTRIES as f64 / elapsed.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
