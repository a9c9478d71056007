//! Session tokens this key has already verified, remembered by their SHA-256.
//!
//! An agent sends the same session token on every call for the token's whole life, and an
//! Ed25519 verification (about 45 µs) was the largest single cost of a request through the
//! gateway. A token's signature, kind and claims are facts about its exact bytes and this
//! key, so they need checking once; what depends on the clock (expiry, not-yet-valid, the
//! allowed lifetime) is checked again on every use, and revocation is the caller's check,
//! made every time. Only tokens that verified are remembered, under the digest of their
//! exact bytes (a changed byte is a different token), in memory only, and at most
//! [`MAX_ENTRIES`] of them: when full, expired ones are dropped, and if that frees nothing
//! everything is forgotten (the cost of that is one verification per token, never a wrong
//! answer).

use crate::Identity;
use std::collections::HashMap;
use std::sync::Mutex;

/// Tokens remembered at most (each entry is an identity: well under 1 KiB).
pub(crate) const MAX_ENTRIES: usize = 8192;

type Digest = [u8; 32];

#[derive(Default)]
pub(crate) struct Verified {
    map: Mutex<HashMap<Digest, Identity>>,
}

impl Verified {
    pub(crate) fn digest(token: &str) -> Digest {
        let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        out
    }

    pub(crate) fn get(&self, digest: &Digest) -> Option<Identity> {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).get(digest).cloned()
    }

    pub(crate) fn insert(&self, digest: Digest, identity: &Identity, now: u64) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_ENTRIES {
            map.retain(|_, id| id.expires_at > now);
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
        }
        map.insert(digest, identity.clone());
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}
