//! Store-level audit operations: verify every chain against its checkpoints, and prune a
//! chain to a signed checkpoint so it stays verifiable.

use crate::{Store, StoreError};
use airlock_audit::verify::check_links;
use airlock_audit::{ChainReport, ChainVerifier, Checkpoint, Finding, VerifierKey};

/// Entries read per query while verifying.
const PAGE: u64 = 2_000;

/// Verify every chain in the store. `external` holds checkpoint notes kept outside the
/// database (the checkpoint file), each with the chain it names; they catch a tail truncated
/// together with its stored checkpoints.
pub fn verify(
    store: &mut Store,
    keys: &[VerifierKey],
    external: &[String],
) -> Result<Vec<ChainReport>, StoreError> {
    let mut chains = store.chains()?;
    let mut outside: Vec<Result<Checkpoint, String>> = Vec::new();
    for note in external {
        outside.push(Checkpoint::open(note, keys).map_err(|e| e.to_string()));
    }
    for cp in outside.iter().flatten() {
        if !chains.contains(&cp.chain) {
            chains.push(cp.chain.clone());
        }
    }
    let mut reports = Vec::new();
    for chain in &chains {
        reports.push(verify_chain(store, keys, chain, &outside)?);
    }
    // A checkpoint file note that no key opens is itself a finding.
    if let Some(Err(e)) = outside.iter().find(|c| c.is_err()) {
        reports.push(failed("(checkpoint file)", e.clone()));
    }
    Ok(reports)
}

fn failed(chain: &str, problem: String) -> ChainReport {
    ChainReport {
        chain: chain.to_owned(),
        entries: 0,
        last_seq: 0,
        checkpoints_checked: 0,
        problem: Some(Finding { chain: chain.to_owned(), seq: None, problem }),
        incomplete: Vec::new(),
        interrupted: Vec::new(),
    }
}

fn verify_chain(
    store: &mut Store,
    keys: &[VerifierKey],
    chain: &str,
    outside: &[Result<Checkpoint, String>],
) -> Result<ChainReport, StoreError> {
    let anchor = match store.anchor(chain)? {
        Some(note) => match Checkpoint::open(&note, keys) {
            Ok(cp) if cp.chain == chain => Some(cp),
            Ok(_) => return Ok(failed(chain, "prune anchor names another chain".into())),
            Err(e) => return Ok(failed(chain, format!("prune anchor: {e}"))),
        },
        None => None,
    };
    let mut stored = Vec::new();
    for note in store.checkpoints(chain)? {
        match Checkpoint::open(&note, keys) {
            Ok(cp) => stored.push((note, cp)),
            Err(e) => {
                return Ok(failed(chain, format!("stored checkpoint {}: {e}", stored.len() + 1)));
            }
        }
    }
    if let Some(finding) = check_links(chain, &stored) {
        return Ok(ChainReport { problem: Some(finding), ..failed(chain, String::new()) });
    }
    let mut verifier = ChainVerifier::new(chain, anchor.as_ref());
    for (_, cp) in &stored {
        verifier.expect(cp);
    }
    for cp in outside.iter().flatten().filter(|c| c.chain == chain) {
        verifier.expect(cp);
    }
    let mut after = anchor.as_ref().map_or(0, |a| a.size);
    loop {
        let rows = store.entries(chain, after, PAGE)?;
        let Some(last) = rows.last() else { break };
        after = last.seq;
        if !rows.iter().all(|r| verifier.push(r)) || (rows.len() as u64) < PAGE {
            break;
        }
    }
    Ok(verifier.finish())
}

/// Prune each chain to its latest checkpoint signed before `before_s` (unix seconds):
/// entries it covers are deleted and the checkpoint becomes the chain's anchor. Returns
/// (chain, entries deleted) for each chain pruned.
pub fn prune(
    store: &mut Store,
    keys: &[VerifierKey],
    before_s: u64,
) -> Result<Vec<(String, u64)>, StoreError> {
    let mut out = Vec::new();
    for chain in store.chains()? {
        let current = store.anchor(&chain)?.and_then(|n| Checkpoint::open(&n, keys).ok());
        let target = store
            .checkpoints(&chain)?
            .into_iter()
            .filter_map(|note| Checkpoint::open(&note, keys).ok().map(|cp| (note, cp)))
            .filter(|(_, cp)| cp.time < before_s)
            .filter(|(_, cp)| current.as_ref().is_none_or(|a| cp.size > a.size))
            .max_by_key(|(_, cp)| cp.size);
        let Some((note, cp)) = target else { continue };
        // Prune only what verifies: never turn a tampered range into an unverifiable gap.
        let report = verify_chain(store, keys, &chain, &[])?;
        if let Some(problem) = report.problem.filter(|p| p.seq.is_none_or(|s| s <= cp.size)) {
            return Err(StoreError::Db(format!(
                "refusing to prune a chain that fails verification: {problem}"
            )));
        }
        let deleted = store.prune(&chain, cp.size, &note)?;
        out.push((chain, deleted));
    }
    Ok(out)
}
