//! Checkpoints as C2SP signed notes (`c2sp.org/signed-note`, `c2sp.org/tlog-checkpoint`).
//!
//! ```text
//! airlock-audit/<chain>            origin
//! <size>                           entries 1..=size are covered
//! <base64 root>                    the hash of entry <size> (the chain's head)
//! time <unix seconds>              extension lines
//! prev <base64 SHA-256 of the previous checkpoint note>
//!
//! — airlock-audit <base64(key id[4] || Ed25519 signature[64])>
//! ```
//!
//! The root is the head of the hash chain, not an RFC 6962 Merkle root: the chain commits to
//! every entry before it, and consistency between two checkpoints is checked by replaying the
//! chain between them. The key id is the note spec's: the first four bytes of
//! SHA-256(name, `\n`, 0x01, public key), so a checkpoint names the key that signed it and old
//! checkpoints stay verifiable after a key rotation.

use airlock_authn::SessionKeys;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The key name in signature lines and verifier keys.
pub const KEY_NAME: &str = "airlock-audit";
const ORIGIN_PREFIX: &str = "airlock-audit/";
const ED25519: u8 = 0x01;
const EM_DASH: &str = "\u{2014}";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NoteError {
    #[error("checkpoint is malformed: {0}")]
    Malformed(&'static str),
    #[error("checkpoint is not signed by a known key")]
    UnknownKey,
    #[error("checkpoint signature is invalid")]
    BadSignature,
    #[error("verifier key is malformed")]
    BadKey,
}

/// What a checkpoint commits to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub chain: String,
    pub size: u64,
    /// Hex hash of entry `size` (the chain's genesis value when `size` is 0).
    pub root: String,
    pub time: u64,
    /// Hex SHA-256 of the previous checkpoint note of this chain.
    pub prev: Option<String>,
}

impl Checkpoint {
    /// The signed text: every line up to the blank line.
    pub fn text(&self) -> String {
        let root = crate::unhex32(&self.root).map(|r| STANDARD.encode(r)).unwrap_or_default();
        let mut out =
            format!("{ORIGIN_PREFIX}{}\n{}\n{root}\ntime {}\n", self.chain, self.size, self.time);
        if let Some(prev) = self.prev.as_deref().and_then(crate::unhex32) {
            out.push_str(&format!("prev {}\n", STANDARD.encode(prev)));
        }
        out
    }

    /// The complete signed note.
    pub fn sign(&self, key: &SessionKeys) -> String {
        let text = self.text();
        let id = key_id(KEY_NAME, &key.public_key());
        let mut sig = Vec::with_capacity(68);
        sig.extend_from_slice(&id);
        sig.extend_from_slice(&key.sign(text.as_bytes()));
        format!("{text}\n{EM_DASH} {KEY_NAME} {}\n", STANDARD.encode(sig))
    }

    /// Parse `note` and check that one of `keys` signed it.
    pub fn open(note: &str, keys: &[VerifierKey]) -> Result<Checkpoint, NoteError> {
        let split = note.find("\n\n").ok_or(NoteError::Malformed("no signature block"))?;
        let (text, sigs) = (&note[..=split], &note[split + 2..]);
        let mut signed = false;
        for line in sigs.lines() {
            let rest = line
                .strip_prefix(EM_DASH)
                .and_then(|l| l.strip_prefix(' '))
                .ok_or(NoteError::Malformed("bad signature line"))?;
            let (name, b64) =
                rest.split_once(' ').ok_or(NoteError::Malformed("bad signature line"))?;
            let raw = STANDARD.decode(b64).map_err(|_| NoteError::Malformed("bad signature"))?;
            if raw.len() != 68 {
                continue;
            }
            for key in keys.iter().filter(|k| k.name == name && k.id[..] == raw[..4]) {
                let public =
                    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, key.key);
                if public.verify(text.as_bytes(), &raw[4..]).is_err() {
                    return Err(NoteError::BadSignature);
                }
                signed = true;
            }
        }
        if !signed {
            return Err(NoteError::UnknownKey);
        }
        parse_text(text)
    }
}

fn parse_text(text: &str) -> Result<Checkpoint, NoteError> {
    let mut lines = text.lines();
    let chain = lines
        .next()
        .and_then(|l| l.strip_prefix(ORIGIN_PREFIX))
        .filter(|c| crate::valid_chain_name(c))
        .ok_or(NoteError::Malformed("origin"))?
        .to_owned();
    let size = lines
        .next()
        .filter(|s| {
            !s.is_empty()
                && s.bytes().all(|b| b.is_ascii_digit())
                && (s.len() == 1 || !s.starts_with('0'))
        })
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or(NoteError::Malformed("size"))?;
    let root = lines
        .next()
        .and_then(|l| STANDARD.decode(l).ok())
        .filter(|r| r.len() == 32)
        .ok_or(NoteError::Malformed("root"))?;
    let (mut time, mut prev) = (None, None);
    for line in lines {
        match line.split_once(' ') {
            Some(("time", t)) if time.is_none() => {
                time = Some(t.parse::<u64>().map_err(|_| NoteError::Malformed("time"))?)
            }
            Some(("prev", p)) if prev.is_none() => {
                let raw = STANDARD.decode(p).map_err(|_| NoteError::Malformed("prev"))?;
                if raw.len() != 32 {
                    return Err(NoteError::Malformed("prev"));
                }
                prev = Some(crate::hex(&raw));
            }
            _ => return Err(NoteError::Malformed("unknown extension line")),
        }
    }
    Ok(Checkpoint {
        chain,
        size,
        root: crate::hex(&root),
        time: time.ok_or(NoteError::Malformed("time"))?,
        prev,
    })
}

/// Hex SHA-256 of a whole note, for the next checkpoint's `prev` line.
pub fn note_hash(note: &str) -> String {
    crate::hex(ring::digest::digest(&ring::digest::SHA256, note.as_bytes()).as_ref())
}

fn key_id(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(name.as_bytes());
    ctx.update(b"\n");
    ctx.update(&[ED25519]);
    ctx.update(public);
    let mut id = [0u8; 4];
    id.copy_from_slice(&ctx.finish().as_ref()[..4]);
    id
}

/// A public key that verifies checkpoints, in the note spec's verifier-key form:
/// `<name>+<hex key id>+<base64(0x01 || public key)>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    pub name: String,
    id: [u8; 4],
    key: [u8; 32],
}

impl VerifierKey {
    pub fn of(key: &SessionKeys) -> VerifierKey {
        let public = key.public_key();
        VerifierKey { name: KEY_NAME.to_owned(), id: key_id(KEY_NAME, &public), key: public }
    }

    pub fn parse(s: &str) -> Result<VerifierKey, NoteError> {
        let mut parts = s.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::BadKey);
        };
        let raw = STANDARD.decode(key).map_err(|_| NoteError::BadKey)?;
        if name.is_empty() || raw.len() != 33 || raw[0] != ED25519 {
            return Err(NoteError::BadKey);
        }
        let mut public = [0u8; 32];
        public.copy_from_slice(&raw[1..]);
        let expected = key_id(name, &public);
        if crate::hex(&expected) != id {
            return Err(NoteError::BadKey);
        }
        Ok(VerifierKey { name: name.to_owned(), id: expected, key: public })
    }
}

impl std::fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut raw = vec![ED25519];
        raw.extend_from_slice(&self.key);
        write!(f, "{}+{}+{}", self.name, crate::hex(&self.id), STANDARD.encode(raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            chain: "gw-1".into(),
            size: 42,
            root: crate::genesis("x"),
            time: 1_800_000_000,
            prev: Some(crate::genesis("y")),
        }
    }

    #[test]
    fn signs_and_opens() {
        let key = SessionKeys::generate().unwrap();
        let vkey = VerifierKey::of(&key);
        let note = checkpoint().sign(&key);
        assert!(note.starts_with("airlock-audit/gw-1\n42\n"));
        assert_eq!(Checkpoint::open(&note, std::slice::from_ref(&vkey)).unwrap(), checkpoint());
        // The verifier key round-trips through its text form.
        let parsed = VerifierKey::parse(&vkey.to_string()).unwrap();
        assert_eq!(parsed, vkey);
        assert_eq!(Checkpoint::open(&note, &[parsed]).unwrap().size, 42);
    }

    #[test]
    fn refuses_other_keys_and_edits() {
        let key = SessionKeys::generate().unwrap();
        let other = VerifierKey::of(&SessionKeys::generate().unwrap());
        let note = checkpoint().sign(&key);
        assert_eq!(Checkpoint::open(&note, &[other]), Err(NoteError::UnknownKey));
        let edited = note.replacen("\n42\n", "\n43\n", 1);
        assert_eq!(
            Checkpoint::open(&edited, &[VerifierKey::of(&key)]),
            Err(NoteError::BadSignature)
        );
        assert!(Checkpoint::open("garbage", &[VerifierKey::of(&key)]).is_err());
    }

    #[test]
    fn rotated_keys_still_verify_old_checkpoints() {
        let (k1, k2) = (SessionKeys::generate().unwrap(), SessionKeys::generate().unwrap());
        let keys = [VerifierKey::of(&k1), VerifierKey::of(&k2)];
        assert!(Checkpoint::open(&checkpoint().sign(&k1), &keys).is_ok());
        assert!(Checkpoint::open(&checkpoint().sign(&k2), &keys).is_ok());
    }

    #[test]
    fn verifier_keys_are_checked() {
        let vkey = VerifierKey::of(&SessionKeys::generate().unwrap()).to_string();
        assert!(VerifierKey::parse(&vkey.replacen("airlock-audit", "other", 1)).is_err());
        assert!(VerifierKey::parse("a+b").is_err());
    }
}
