//! `airlock-bench`: the load generator behind `bench/run`.
//!
//! Open loop (`--rate N`): requests are scheduled every `1/N` s whatever happens to earlier
//! ones, and each latency is measured from its *scheduled* send time, so a stall shows up in
//! the percentiles instead of silently lowering the rate (wrk2's correction for coordinated
//! omission). Closed loop (`--concurrency C`, no rate): C workers send back to back, for
//! maximum throughput. Streams (`--stream`) report the time to the first event and the gaps
//! between events. Prints one JSON object.

use anyhow::Context as _;
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
struct Args {
    /// e.g. http://127.0.0.1:8080/v1/messages
    #[arg(long)]
    url: String,
    /// A header `name: value`, repeatable.
    #[arg(long = "header")]
    headers: Vec<String>,
    /// Requests per second (open loop). Without it: closed loop at `--concurrency`.
    #[arg(long)]
    rate: Option<u64>,
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds of measurement (after a 1 s warm-up that is not counted).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Bytes of user text in the prompt.
    #[arg(long, default_value_t = 4096)]
    prompt_bytes: usize,
    #[arg(long)]
    stream: bool,
}

#[derive(Debug, Default)]
struct Sample {
    latency_us: Vec<u64>,
    first_event_us: Vec<u64>,
    gaps_us: Vec<u64>,
    errors: u64,
}

fn body(prompt_bytes: usize, stream: bool) -> Bytes {
    // Prose with a planted e-mail address and card number, so redaction and masking work.
    let mut text = String::new();
    let line = "The quarterly report for the platform team is attached; ping me at jane.doe@example.com or card 4111 1111 1111 1111 if anything is unclear. ";
    while text.len() < prompt_bytes {
        text.push_str(line);
    }
    text.truncate(prompt_bytes);
    let v = serde_json::json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 256,
        "stream": stream,
        "messages": [{"role": "user", "content": text}],
    });
    Bytes::from(v.to_string())
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

async fn one(
    client: &HttpClient,
    args: &Args,
    body: &Bytes,
    scheduled: Instant,
) -> Result<(u64, Option<u64>, Vec<u64>), ()> {
    let mut req = http::Request::post(&args.url).header("content-type", "application/json");
    for h in &args.headers {
        if let Some((k, v)) = h.split_once(':') {
            req = req.header(k.trim(), v.trim());
        }
    }
    let req = req.body(Full::new(body.clone())).map_err(|_| ())?;
    let response = client.request(req).await.map_err(|_| ())?;
    let ok = response.status().is_success();
    let mut body = response.into_body();
    let (mut first, mut gaps, mut last) = (None, Vec::new(), None::<Instant>);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| ())?;
        if frame.is_data() {
            let now = Instant::now();
            if first.is_none() {
                first = Some(now.duration_since(scheduled).as_micros() as u64);
            } else if let Some(l) = last {
                gaps.push(now.duration_since(l).as_micros() as u64);
            }
            last = Some(now);
        }
    }
    if !ok {
        return Err(());
    }
    Ok((scheduled.elapsed().as_micros() as u64, first, gaps))
}

/// Let this thread's sleeps end on time: Linux lets a sleep overrun by the thread's timer
/// slack, 50 µs by default. Best effort (an older kernel has no such file).
fn precise_sleeps() {
    let _ = std::fs::write("/proc/thread-self/timerslack_ns", "1");
}

fn percentiles(mut v: Vec<u64>) -> serde_json::Value {
    if v.is_empty() {
        return serde_json::Value::Null;
    }
    v.sort_unstable();
    let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
    serde_json::json!({"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "p99_9": at(0.999), "max": v[v.len() - 1], "n": v.len()})
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    // No Nagle delay on the generator's side either: what is measured is the servers.
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    let client: HttpClient =
        Client::builder(TokioExecutor::new()).pool_max_idle_per_host(4096).build(connector);
    let body = body(args.prompt_bytes, args.stream);
    let sample = Arc::new(std::sync::Mutex::new(Sample::default()));
    let warmup = Duration::from_secs(1);
    let total = warmup + Duration::from_secs(args.duration);
    let start = Instant::now();
    let record = {
        let sample = sample.clone();
        move |scheduled: Instant, r: Result<(u64, Option<u64>, Vec<u64>), ()>| {
            if scheduled.duration_since(start) < warmup {
                return;
            }
            let mut s = sample.lock().unwrap_or_else(|e| e.into_inner());
            match r {
                Ok((lat, first, gaps)) => {
                    s.latency_us.push(lat);
                    s.first_event_us.extend(first);
                    s.gaps_us.extend(gaps);
                }
                Err(()) => s.errors += 1,
            }
        }
    };
    let handles: Vec<tokio::task::JoinHandle<()>> = match args.rate {
        Some(rate) => {
            // Sends are paced by their own OS thread, not by `tokio::time`: its timer has
            // millisecond granularity, so at 2,000 req/s it would release requests two at a
            // time on each tick (bursts of 8 at 8,000), and every latency, measured from the
            // scheduled time, would carry up to a millisecond of the generator's own lateness.
            let runtime = tokio::runtime::Handle::current();
            let (done, handles) = tokio::sync::oneshot::channel();
            let (client, args, body, record) =
                (client.clone(), args.clone(), body.clone(), record.clone());
            std::thread::spawn(move || {
                precise_sleeps();
                let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
                let mut handles = Vec::new();
                for i in 0u32.. {
                    let scheduled = start + interval * i;
                    if scheduled.duration_since(start) >= total {
                        break;
                    }
                    // Behind schedule (a stall), it sends at once: the open loop catches up.
                    if let Some(wait) = scheduled.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let (client, args, body, record) =
                        (client.clone(), args.clone(), body.clone(), record.clone());
                    handles.push(runtime.spawn(async move {
                        let r = one(&client, &args, &body, scheduled).await;
                        record(scheduled, r);
                    }));
                }
                let _ = done.send(handles);
            });
            handles.await.context("the pacing thread failed")?
        }
        None => (0..args.concurrency)
            .map(|_| {
                let (client, args, body, record) =
                    (client.clone(), args.clone(), body.clone(), record.clone());
                tokio::spawn(async move {
                    while start.elapsed() < total {
                        let scheduled = Instant::now();
                        let r = one(&client, &args, &body, scheduled).await;
                        record(scheduled, r);
                    }
                })
            })
            .collect(),
    };
    for h in handles {
        h.await.context("a request task failed")?;
    }
    let s = std::mem::take(&mut *sample.lock().unwrap_or_else(|e| e.into_inner()));
    let measured = args.duration as f64;
    let out = serde_json::json!({
        "mode": if args.rate.is_some() { "open" } else { "closed" },
        "rate": args.rate,
        "concurrency": args.concurrency,
        "stream": args.stream,
        "completed": s.latency_us.len(),
        "errors": s.errors,
        "throughput_rps": s.latency_us.len() as f64 / measured,
        "latency_us": percentiles(s.latency_us),
        "first_event_us": percentiles(s.first_event_us),
        "event_gap_us": percentiles(s.gaps_us),
    });
    println!("{}", serde_json::to_string(&out).context("output")?);
    Ok(())
}
