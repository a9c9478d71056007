//! Precision and recall on a labelled set: JSON lines `{"text", "labels": [{"detector",
//! "value"}]}`. A finding counts as a true positive when its detector and exact value match a
//! label of its line. Used by `cargo run -p airlock-detect --example eval` and by a test that
//! keeps every detector above its floor.

use crate::{Pack, PackOptions, Strategy, builtins};
use serde_json::Value;
use std::collections::BTreeMap;

/// Per detector: (true positives, false positives, false negatives).
pub fn evaluate(set: &str) -> BTreeMap<String, (u32, u32, u32)> {
    let pack = Pack::build(
        &builtins().into_iter().map(|d| (d, Strategy::Placeholder)).collect::<Vec<_>>(),
        PackOptions::default(),
    )
    .unwrap();
    let mut stats: BTreeMap<String, (u32, u32, u32)> = BTreeMap::new();
    for d in pack.detectors() {
        stats.insert(d.name.clone(), (0, 0, 0));
    }
    for line in set.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let text = v["text"].as_str().unwrap();
        let mut labels: Vec<(String, String)> = v["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (
                    l["detector"].as_str().unwrap().to_owned(),
                    l["value"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        for f in pack.find_all(text) {
            let name = pack.detectors()[f.detector].name.clone();
            let value = &text[f.start..f.end];
            match labels.iter().position(|(d, v)| *d == name && v == value) {
                Some(i) => {
                    labels.remove(i);
                    stats.get_mut(&name).unwrap().0 += 1;
                }
                None => {
                    if std::env::var_os("EVAL_VERBOSE").is_some() {
                        eprintln!("FP {name}: {value:?} in {text:?}");
                    }
                    stats.get_mut(&name).unwrap().1 += 1
                }
            }
        }
        for (d, v) in labels {
            if std::env::var_os("EVAL_VERBOSE").is_some() {
                eprintln!("FN {d}: {v:?} in {text:?}");
            }
            stats.entry(d).or_default().2 += 1;
        }
    }
    stats
}

pub fn table(stats: &BTreeMap<String, (u32, u32, u32)>) -> String {
    let mut out = format!(
        "{:<16} {:>6} {:>6} {:>6} {:>10} {:>8}\n",
        "detector", "tp", "fp", "fn", "precision", "recall"
    );
    for (name, (tp, fp, fneg)) in stats {
        let p = if tp + fp == 0 { 1.0 } else { f64::from(*tp) / f64::from(tp + fp) };
        let r = if tp + fneg == 0 { 1.0 } else { f64::from(*tp) / f64::from(tp + fneg) };
        out.push_str(&format!("{name:<16} {tp:>6} {fp:>6} {fneg:>6} {p:>10.3} {r:>8.3}\n"));
    }
    out
}
