//! Detector scan throughput on mixed text (prose, code, JSON, logs; values planted every ~30
//! lines), single core. `cargo bench -p airlock-detect --bench scan`; results go to
//! docs/benchmarks.md by hand. Target: ≥ 300 MB/s per core for the default pack.

#[path = "support/corpus.rs"]
mod corpus;

use airlock_detect::{MaskKey, Pack, PackOptions, Pseudonyms, Strategy, StreamMasker, builtins};
use std::sync::Arc;
use std::time::Instant;

const DOC: usize = 16 * 1024;

fn measure(name: &str, bytes: usize, mut f: impl FnMut()) {
    f(); // warm the lazy DFA
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!("{name:<58} {:>8.0} MB/s", bytes as f64 / best / 1e6);
}

fn main() {
    let all = Arc::new(
        Pack::build(
            &builtins().into_iter().map(|d| (d, Strategy::Placeholder)).collect::<Vec<_>>(),
            PackOptions::default(),
        )
        .unwrap(),
    );
    let bundled = airlock_policy_free_mask_pack();
    for (label, non_ascii) in [("ASCII", false), ("with non-ASCII words", true)] {
        let text = corpus::corpus(7, 8 << 20, non_ascii);
        let docs: Vec<&str> = {
            let mut v = Vec::new();
            let mut at = 0;
            while at < text.len() {
                let mut end = (at + DOC).min(text.len());
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                v.push(&text[at..end]);
                at = end;
            }
            v
        };
        let mut found = 0;
        measure(
            &format!("all {} built-ins, find_all, 16 KiB docs ({label})", all.detectors().len()),
            text.len(),
            || {
                found = docs.iter().map(|d| all.find_all(d).len()).sum::<usize>();
            },
        );
        measure(
            &format!("response pack ({} detectors), find_all ({label})", bundled.detectors().len()),
            text.len(),
            || {
                docs.iter().for_each(|d| {
                    std::hint::black_box(bundled.find_all(d));
                });
            },
        );
        let key = MaskKey::new(b"bench");
        measure(
            &format!("response pack, streamed in 24-byte deltas ({label})"),
            text.len(),
            || {
                for d in &docs {
                    let mut m = StreamMasker::new(bundled.clone());
                    let mut ps = Pseudonyms::default();
                    let mut at = 0;
                    while at < d.len() {
                        let mut end = (at + 24).min(d.len());
                        while !d.is_char_boundary(end) {
                            end += 1;
                        }
                        std::hint::black_box(m.push(&d[at..end], &key, &mut ps));
                        at = end;
                    }
                    std::hint::black_box(m.finish(&key, &mut ps));
                }
            },
        );
        println!("  ({found} findings in {} MiB)", text.len() >> 20);
    }
}

/// The bundled policy's mask_response set: email, phone, credit_card, us_ssn, iban, secrets.
fn airlock_policy_free_mask_pack() -> Arc<Pack> {
    let wanted = ["email", "phone", "credit_card", "us_ssn", "iban"];
    let list: Vec<_> = builtins()
        .into_iter()
        .filter(|d| {
            wanted.contains(&d.name.as_str()) || d.category == airlock_detect::Category::Secret
        })
        .map(|d| (d, Strategy::Placeholder))
        .collect();
    Arc::new(Pack::build(&list, PackOptions::default()).unwrap())
}
