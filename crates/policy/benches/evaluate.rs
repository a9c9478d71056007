//! Policy evaluation cost on the request path: the bundled policy judging (and redacting) a
//! 4 KB and a 100 KB agent request — system prompt, tool definitions, a history with tool
//! calls and results, a little PII. `cargo bench -p airlock-policy --bench evaluate`; results
//! go to docs/benchmarks.md by hand.

use airlock_detect::{MaskKey, Pseudonyms};
use airlock_policy::Policy;
use serde_json::{Map, Value};
use std::time::Instant;

#[path = "support/request.rs"]
mod support;

use support::request;

fn percentiles(mut times: Vec<std::time::Duration>) -> (f64, f64) {
    times.sort();
    let p = |q: f64| {
        times[((times.len() as f64 * q) as usize).min(times.len() - 1)].as_secs_f64() * 1e6
    };
    (p(0.5), p(0.99))
}

fn main() {
    let key = MaskKey::new(b"bench");
    let groups = vec!["eng".to_owned()];
    for target in [4 * 1024, 100 * 1024] {
        let body = request(target);
        let len = Value::Object(body.clone()).to_string().len();
        // (judging only, judging + writing the redacted body)
        let run = |policy: &Policy, body: &Map<String, Value>| {
            let mut b = body.clone();
            let t = Instant::now();
            let v = policy.evaluate(&groups, &mut b, len, &key, &mut Pseudonyms::default());
            let judged = t.elapsed();
            if v.changed {
                std::hint::black_box(Value::Object(b).to_string());
            }
            (judged, t.elapsed())
        };
        let p = Policy::bundled();
        // Warm the automata on unrelated text first: first-use cost is not steady state.
        run(&p, &request(64 * 1024));
        // Cold: every block new to this policy (each body differs in every block).
        let fresh: Vec<Map<String, Value>> = (0..300)
            .map(|i| {
                let mut b = Value::Object(body.clone());
                mark(&mut b, i);
                b.as_object().unwrap().clone()
            })
            .collect();
        let cold: Vec<_> = fresh.iter().map(|b| run(&p, b)).collect();
        // Warm: the same history again, as on an agent's next turn (blocks of 512 bytes or
        // more come from the findings cache).
        run(&p, &body);
        let warm: Vec<_> =
            (0..if target < 10_000 { 20_000 } else { 2_000 }).map(|_| run(&p, &body)).collect();
        let split = |v: &[(std::time::Duration, std::time::Duration)]| {
            (
                percentiles(v.iter().map(|x| x.0).collect()),
                percentiles(v.iter().map(|x| x.1).collect()),
            )
        };
        let ((c_judge, c_all), (w_judge, w_all)) = (split(&cold), split(&warm));
        println!("bundled policy, {len:>6} byte request:");
        println!(
            "  every block new:      judge p50 {:>6.1} µs p99 {:>6.1} µs; + write redacted body p50 {:>6.1} µs p99 {:>6.1} µs",
            c_judge.0, c_judge.1, c_all.0, c_all.1
        );
        println!(
            "  history seen before:  judge p50 {:>6.1} µs p99 {:>6.1} µs; + write redacted body p50 {:>6.1} µs p99 {:>6.1} µs",
            w_judge.0, w_judge.1, w_all.0, w_all.1
        );
    }
}

/// Make every string in the request unique to run `i`.
fn mark(v: &mut Value, i: usize) {
    match v {
        Value::String(s) if s.len() > 20 => s.push_str(&format!(" #{i}")),
        Value::Array(a) => a.iter_mut().for_each(|x| mark(x, i)),
        Value::Object(m) => m.values_mut().for_each(|x| mark(x, i)),
        _ => {}
    }
}
