//! The audit log's format, independent of any database: entries and the hash chain
//! ([`entry`]), signed checkpoints in the C2SP signed-note format ([`note`]), and the
//! verifier that recomputes a chain and checks it against checkpoints ([`verify`]).
//!
//! Invariant: an entry's hash covers the exact stored bytes of its body (never a
//! re-serialisation), with domain separation, and the previous entry's hash.
//! Invariant: this crate does no IO; stores feed it rows.

pub mod entry;
pub mod note;
pub mod verify;

pub use entry::{
    Chain, Detail, Draft, Index, Kind, Sealed, detail, entry_hash, genesis, valid_chain_name,
};
pub use note::{Checkpoint, NoteError, VerifierKey};
pub use verify::{ChainReport, ChainVerifier, Finding, Row};

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

pub(crate) fn unhex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.as_bytes().chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}
