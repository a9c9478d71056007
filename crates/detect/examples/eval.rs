//! Precision and recall of every built-in detector on the labelled evaluation set
//! (`eval/labelled.jsonl`: prose, code, JSON and log lines with planted values and
//! near-misses, each line with the values it holds).
//!
//! ```text
//! cargo run -p airlock-detect --example eval                       # print the table
//! cargo run -p airlock-detect --example eval -- --generate FILE    # rebuild the set
//! ```

#[path = "../benches/support/corpus.rs"]
#[allow(dead_code)]
mod corpus;

use airlock_detect::eval::{evaluate, table};
use serde_json::{Value, json};

const LINES: usize = 6000;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let default = concat!(env!("CARGO_MANIFEST_DIR"), "/eval/labelled.jsonl").to_owned();
    if args.first().map(String::as_str) == Some("--generate") {
        let path = args.get(1).cloned().unwrap_or(default);
        let mut rng = corpus::Rng::new(2026);
        let mut out = String::new();
        for i in 0..LINES {
            let (text, labels) = corpus::line_with(&mut rng, i % 5 == 0, 3);
            let labels: Vec<Value> =
                labels.iter().map(|(d, v)| json!({"detector": d, "value": v})).collect();
            out.push_str(&json!({"text": text, "labels": labels}).to_string());
            out.push('\n');
        }
        std::fs::write(&path, out).unwrap();
        println!("wrote {LINES} lines to {path}");
        return;
    }
    let path = args.first().cloned().unwrap_or(default);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    print!("{}", table(&evaluate(&text)));
}
