//! Revoked credentials: by token id (`jti`, or an IdP token's fingerprint id) and by subject
//! (every token of that subject issued at or before the revocation). Checked on every
//! authenticated request and at the token exchange.
//!
//! This is the in-process set; entries expire with the tokens they name (a subject
//! revocation is kept for the longest lifetime a token can have).

use airlock_authn::Identity;
use std::collections::HashMap;
use std::sync::RwLock;

#[derive(Debug, Default)]
pub struct Revocations {
    inner: RwLock<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Token id → unix second after which the entry can be forgotten.
    tokens: HashMap<String, u64>,
    /// Subject → (revoked at, forget after).
    subjects: HashMap<String, (u64, u64)>,
}

/// One revocation, as listed by the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoked {
    Token { token_id: String, until: u64 },
    Subject { subject: String, at: u64, until: u64 },
}

impl Revocations {
    pub fn revoke_token(&self, token_id: &str, until: u64) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        inner.tokens.insert(token_id.to_owned(), until);
    }

    pub fn revoke_subject(&self, subject: &str, at: u64, until: u64) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        inner.subjects.insert(subject.to_owned(), (at, until));
    }

    pub fn is_revoked(&self, identity: &Identity) -> bool {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.tokens.contains_key(identity.token_id())
            || inner
                .subjects
                .get(identity.subject())
                .is_some_and(|(at, _)| identity.issued_at() <= *at)
    }

    /// Drop entries whose tokens can no longer be valid anyway.
    pub fn expire(&self, now: u64) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        inner.tokens.retain(|_, until| *until >= now);
        inner.subjects.retain(|_, (_, until)| *until >= now);
    }

    pub fn list(&self) -> Vec<Revoked> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<Revoked> = inner
            .tokens
            .iter()
            .map(|(id, until)| Revoked::Token { token_id: id.clone(), until: *until })
            .chain(inner.subjects.iter().map(|(s, (at, until))| Revoked::Subject {
                subject: s.clone(),
                at: *at,
                until: *until,
            }))
            .collect();
        out.sort_by_key(|r| format!("{r:?}"));
        out
    }
}
