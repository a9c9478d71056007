//! Every fuzz target's checked-in corpus (`fuzz/corpus/`), replayed through the same entry
//! the target calls: a crash found once stays fixed. (The detector and policy-parse corpora
//! are replayed by their crates' tests too.)

use std::path::PathBuf;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        run(&std::fs::read(entry.unwrap().path()).unwrap());
        n += 1;
    }
    assert!(n >= 5, "{target}: {n} inputs");
}

#[test]
fn every_fuzz_corpus_replays() {
    replay("sse_decoder", airlock_wire::fuzz::sse);
    replay("request_redaction", airlock_policy::fuzz_request);
    replay("tokens", airlock_authn::fuzz::tokens);
    replay("jwks", airlock_authn::fuzz::jwks);
    replay("config_parse", airlock_config::fuzz_parse);
    replay("stream_masker", airlock_detect::fuzz::stream_equivalence);
    replay("detectors", airlock_detect::fuzz::detectors);
    replay("policy_parse", airlock_policy::fuzz_parse);
}
