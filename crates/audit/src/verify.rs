//! Recompute a chain from its stored rows and check it against signed checkpoints.
//!
//! Rows are pushed in sequence order. The first problem stops the chain and is reported with
//! the sequence number where it was found; what each kind of tampering looks like:
//!
//! | tampering                    | found as                                             |
//! |------------------------------|------------------------------------------------------|
//! | an edited body               | `hash does not match`                                |
//! | an edited column             | `column ... does not match the signed body`          |
//! | a deleted entry              | `missing entry` (a gap) or `previous hash` mismatch  |
//! | an inserted or swapped entry | `previous hash` mismatch, or body `seq` ≠ column     |
//! | truncation of the tail       | a checkpoint larger than the chain                   |
//! | a rebuilt chain (no key)     | checkpoint roots no longer match                     |

use crate::entry::{Body, Kind};
use crate::note::{Checkpoint, note_hash};
use std::collections::{BTreeMap, HashMap};

/// One stored entry as a store reads it back: the columns and the signed body.
#[derive(Debug, Clone)]
pub struct Row {
    pub chain: String,
    pub seq: u64,
    pub kind: String,
    pub request_id: String,
    pub at_ms: i64,
    pub subject: Option<String>,
    /// The JSON text of the groups column.
    pub groups: String,
    pub model: Option<String>,
    pub decision: Option<String>,
    /// The JSON text of the rules column.
    pub rules: String,
    pub status: Option<i64>,
    pub body: String,
    pub prev_hash: String,
    pub hash: String,
}

impl Row {
    pub fn parsed(&self) -> Option<Body> {
        serde_json::from_str(&self.body).ok()
    }
}

/// The first problem found in a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub chain: String,
    /// The sequence number of the first bad entry, when the problem is an entry's.
    pub seq: Option<u64>,
    pub problem: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.seq {
            Some(seq) => write!(f, "chain {} entry {seq}: {}", self.chain, self.problem),
            None => write!(f, "chain {}: {}", self.chain, self.problem),
        }
    }
}

/// What verifying one chain found.
#[derive(Debug, Clone)]
pub struct ChainReport {
    pub chain: String,
    /// Entries checked (after the prune anchor, if any).
    pub entries: u64,
    pub last_seq: u64,
    pub checkpoints_checked: u64,
    pub problem: Option<Finding>,
    /// Requests whose `request` entry has neither a `response` nor an `interrupted` entry
    /// (in flight while verifying, or the gateway stopped and has not restarted since).
    pub incomplete: Vec<String>,
    /// Requests the gateway marked `interrupted` on restart: forwarded, response unrecorded.
    pub interrupted: Vec<String>,
}

/// Checks one chain, entry by entry.
#[derive(Debug)]
pub struct ChainVerifier {
    chain: String,
    /// The sequence number and hash the next entry must follow.
    seq: u64,
    head: String,
    first_seq: u64,
    entries: u64,
    /// Checkpoint size → roots claimed for it (each from a signed note).
    expected: BTreeMap<u64, Vec<String>>,
    checkpoints_checked: u64,
    problem: Option<Finding>,
    open: HashMap<String, u64>,
    interrupted: Vec<String>,
}

impl ChainVerifier {
    /// Start at the chain's genesis, or at a signed checkpoint the chain was pruned to.
    pub fn new(chain: &str, anchor: Option<&Checkpoint>) -> ChainVerifier {
        let (seq, head) = match anchor {
            Some(a) => (a.size, a.root.clone()),
            None => (0, crate::genesis(chain)),
        };
        ChainVerifier {
            chain: chain.to_owned(),
            seq,
            head,
            first_seq: seq,
            entries: 0,
            expected: BTreeMap::new(),
            checkpoints_checked: 0,
            problem: None,
            open: HashMap::new(),
            interrupted: Vec::new(),
        }
    }

    /// A signed checkpoint this chain must agree with. Checkpoints older than the prune
    /// anchor cannot be checked any more and are skipped, except one at the anchor itself.
    pub fn expect(&mut self, checkpoint: &Checkpoint) {
        if checkpoint.chain != self.chain {
            return self.fail(None, format!("checkpoint for chain {} given", checkpoint.chain));
        }
        if checkpoint.size < self.first_seq {
            return;
        }
        if checkpoint.size == self.first_seq {
            self.checkpoints_checked += 1;
            if checkpoint.root != self.head {
                self.fail(
                    None,
                    format!("checkpoint at size {} does not match the chain", checkpoint.size),
                );
            }
            return;
        }
        self.expected.entry(checkpoint.size).or_default().push(checkpoint.root.clone());
    }

    fn fail(&mut self, seq: Option<u64>, problem: String) {
        if self.problem.is_none() {
            self.problem = Some(Finding { chain: self.chain.clone(), seq, problem });
        }
    }

    /// Check the next row. Returns false once a problem was found (later rows are not
    /// looked at: the first bad entry is what is reported).
    pub fn push(&mut self, row: &Row) -> bool {
        if self.problem.is_some() {
            return false;
        }
        let expected = self.seq + 1;
        if row.chain != self.chain {
            self.fail(Some(row.seq), format!("entry of chain {} in this chain", row.chain));
        } else if row.seq != expected {
            self.fail(Some(expected), format!("missing entry (next stored entry is {})", row.seq));
        } else if row.prev_hash != self.head {
            self.fail(Some(row.seq), "previous hash does not match the entry before".into());
        } else if crate::entry_hash(&row.prev_hash, &row.body) != row.hash {
            self.fail(Some(row.seq), "hash does not match the stored body (edited)".into());
        } else if let Some(column) = mismatched_column(row) {
            self.fail(Some(row.seq), format!("column {column} does not match the signed body"));
        }
        if self.problem.is_some() {
            return false;
        }
        self.seq = row.seq;
        self.head = row.hash.clone();
        self.entries += 1;
        if let Some(roots) = self.expected.remove(&row.seq) {
            self.checkpoints_checked += roots.len() as u64;
            if roots.iter().any(|r| *r != row.hash) {
                self.fail(Some(row.seq), "a signed checkpoint names a different hash here".into());
                return false;
            }
        }
        match Kind::parse(&row.kind) {
            Some(Kind::Request) => {
                self.open.insert(row.request_id.clone(), row.seq);
            }
            Some(Kind::Response) => {
                self.open.remove(&row.request_id);
            }
            Some(Kind::Interrupted) => {
                self.open.remove(&row.request_id);
                self.interrupted.push(row.request_id.clone());
            }
            _ => {}
        }
        true
    }

    pub fn finish(mut self) -> ChainReport {
        if let (None, Some((&size, _))) = (&self.problem, self.expected.iter().next_back()) {
            self.fail(
                Some(self.seq + 1),
                format!(
                    "truncated: a signed checkpoint covers {size} entries, the store ends at {}",
                    self.seq
                ),
            );
        }
        let mut incomplete: Vec<(u64, String)> =
            self.open.into_iter().map(|(id, seq)| (seq, id)).collect();
        incomplete.sort();
        ChainReport {
            chain: self.chain,
            entries: self.entries,
            last_seq: self.seq,
            checkpoints_checked: self.checkpoints_checked,
            problem: self.problem,
            incomplete: incomplete.into_iter().map(|(_, id)| id).collect(),
            interrupted: self.interrupted,
        }
    }
}

/// The indexed columns must say what the signed body says (or a search could be steered).
fn mismatched_column(row: &Row) -> Option<&'static str> {
    let Some(body) = row.parsed() else { return Some("body (not an audit entry)") };
    let json = |v: &Vec<String>| serde_json::to_string(v).unwrap_or_default();
    if body.chain != row.chain {
        Some("chain")
    } else if body.seq != row.seq {
        Some("seq")
    } else if body.kind.as_str() != row.kind {
        Some("kind")
    } else if body.request_id != row.request_id {
        Some("request_id")
    } else if body.at_ms != row.at_ms {
        Some("at_ms")
    } else if body.index.subject != row.subject {
        Some("subject")
    } else if json(&body.index.groups) != row.groups {
        Some("groups")
    } else if body.index.model != row.model {
        Some("model")
    } else if body.index.decision != row.decision {
        Some("decision")
    } else if json(&body.index.rules) != row.rules {
        Some("rules")
    } else if body.index.status.map(i64::from) != row.status {
        Some("status")
    } else {
        None
    }
}

/// Checkpoint notes of one chain, in the order they were written, must link up (`prev` is
/// the hash of the note before) and never shrink. Returns the first break.
pub fn check_links(chain: &str, notes: &[(String, Checkpoint)]) -> Option<Finding> {
    let mut previous: Option<&(String, Checkpoint)> = None;
    for entry in notes {
        let (_, cp) = entry;
        if let Some((prev_note, prev_cp)) = previous {
            let problem = if cp.prev.as_deref() != Some(note_hash(prev_note).as_str()) {
                Some(format!("checkpoint at size {} does not link to the one before", cp.size))
            } else if cp.size < prev_cp.size {
                Some(format!("checkpoint at size {} follows a larger one", cp.size))
            } else {
                None
            };
            if let Some(problem) = problem {
                return Some(Finding { chain: chain.to_owned(), seq: None, problem });
            }
        }
        previous = Some(entry);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{Chain, Draft, Index, Sealed};

    fn rows(n: usize) -> Vec<Row> {
        let drafts: Vec<Draft> = (0..n)
            .map(|i| Draft {
                kind: if i % 2 == 0 { Kind::Request } else { Kind::Response },
                request_id: format!("r{}", i / 2),
                at_ms: i as i64,
                index: Index {
                    subject: Some("alice".into()),
                    groups: vec!["eng".into()],
                    status: (i % 2 == 1).then_some(200),
                    ..Index::default()
                },
                detail: crate::entry::detail(&serde_json::json!({"i": i})),
            })
            .collect();
        Chain::start("c").seal(drafts).0.into_iter().map(to_row).collect()
    }

    fn to_row(s: Sealed) -> Row {
        let e = s.entry;
        Row {
            chain: e.chain,
            seq: e.seq,
            kind: e.kind.as_str().into(),
            request_id: e.request_id,
            at_ms: e.at_ms,
            subject: e.index.subject,
            groups: serde_json::to_string(&e.index.groups).unwrap(),
            model: e.index.model,
            decision: e.index.decision,
            rules: serde_json::to_string(&e.index.rules).unwrap(),
            status: e.index.status.map(i64::from),
            body: s.body,
            prev_hash: s.prev_hash,
            hash: s.hash,
        }
    }

    fn verify(rows: &[Row], checkpoints: &[Checkpoint]) -> ChainReport {
        let mut v = ChainVerifier::new("c", None);
        checkpoints.iter().for_each(|c| v.expect(c));
        for r in rows {
            if !v.push(r) {
                break;
            }
        }
        v.finish()
    }

    fn checkpoint(rows: &[Row], size: usize) -> Checkpoint {
        Checkpoint {
            chain: "c".into(),
            size: size as u64,
            root: rows[size - 1].hash.clone(),
            time: 0,
            prev: None,
        }
    }

    #[test]
    fn a_good_chain_passes() {
        let rows = rows(10);
        let report = verify(&rows, &[checkpoint(&rows, 4), checkpoint(&rows, 10)]);
        assert_eq!(report.problem, None);
        assert_eq!((report.entries, report.checkpoints_checked), (10, 2));
        assert!(report.incomplete.is_empty());
        // A request without its response is reported as incomplete, not as tampering.
        let report = verify(&rows[..9], &[]);
        assert_eq!((report.problem, report.incomplete), (None, vec!["r4".to_owned()]));
    }

    #[test]
    fn each_kind_of_tampering_is_found_at_its_entry() {
        let good = rows(10);
        let seq_of =
            |rows: &[Row], cps: &[Checkpoint]| verify(rows, cps).problem.and_then(|f| f.seq);

        let mut edited = good.clone();
        edited[4].body = edited[4].body.replace("\"i\":4", "\"i\":5");
        assert_eq!(seq_of(&edited, &[]), Some(5));

        let mut column = good.clone();
        column[6].subject = Some("mallory".into());
        assert_eq!(seq_of(&column, &[]), Some(7));

        let mut deleted = good.clone();
        deleted.remove(3);
        assert_eq!(seq_of(&deleted, &[]), Some(4));

        // Inserted: a forged entry renumbered into place breaks the link after it.
        let mut inserted = good.clone();
        let mut forged = good[2].clone();
        forged.body = forged.body.replace("\"i\":2", "\"i\":99");
        forged.hash = crate::entry_hash(&forged.prev_hash, &forged.body);
        inserted[2] = forged;
        assert_eq!(seq_of(&inserted, &[]), Some(4));

        // Reordered: two entries swap places (their seq columns follow the position).
        let mut swapped = good.clone();
        swapped.swap(5, 6);
        swapped[5].seq = 6;
        swapped[6].seq = 7;
        assert_eq!(seq_of(&swapped, &[]), Some(6));

        // Truncated: only a checkpoint can tell.
        let truncated = &good[..7];
        assert_eq!(seq_of(truncated, &[]), None);
        assert_eq!(seq_of(truncated, &[checkpoint(&good, 10)]), Some(8));

        // Rebuilt from entry 3 on without the signing key: a checkpoint disagrees.
        let mut rebuilt = good.clone();
        rebuilt[2].body = rebuilt[2].body.replace("\"i\":2", "\"i\":42");
        for i in 2..rebuilt.len() {
            if i > 2 {
                rebuilt[i].prev_hash = rebuilt[i - 1].hash.clone();
            }
            rebuilt[i].hash = crate::entry_hash(&rebuilt[i].prev_hash, &rebuilt[i].body);
        }
        assert_eq!(seq_of(&rebuilt, &[]), None);
        assert_eq!(seq_of(&rebuilt, &[checkpoint(&good, 4)]), Some(4));
    }

    #[test]
    fn pruned_chains_start_at_their_anchor() {
        let good = rows(10);
        let anchor = checkpoint(&good, 4);
        let mut v = ChainVerifier::new("c", Some(&anchor));
        v.expect(&checkpoint(&good, 2)); // older than the anchor: skipped
        v.expect(&checkpoint(&good, 8));
        for r in &good[4..] {
            assert!(v.push(r));
        }
        let report = v.finish();
        assert_eq!((report.problem, report.entries, report.checkpoints_checked), (None, 6, 1));
        // An entry right after the anchor that does not follow it is found.
        let mut v = ChainVerifier::new("c", Some(&anchor));
        assert!(!v.push(&good[5]));
    }

    #[test]
    fn checkpoint_links() {
        let key = airlock_authn::SessionKeys::generate().unwrap();
        let a = Checkpoint {
            chain: "c".into(),
            size: 1,
            root: crate::genesis("c"),
            time: 1,
            prev: None,
        };
        let note_a = a.sign(&key);
        let b = Checkpoint { size: 2, prev: Some(note_hash(&note_a)), ..a.clone() };
        let note_b = b.sign(&key);
        let c = Checkpoint { size: 3, prev: Some(note_hash(&note_a)), ..a.clone() };
        let note_c = c.sign(&key);
        assert_eq!(
            check_links("c", &[(note_a.clone(), a.clone()), (note_b.clone(), b.clone())]),
            None
        );
        assert!(check_links("c", &[(note_a, a), (note_b, b), (note_c, c)]).is_some());
    }
}
