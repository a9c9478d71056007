//! Revoked credentials: by token id (`jti`, or an IdP token's fingerprint id) and by subject
//! (every token of that subject issued at or before the revocation). Checked on every
//! authenticated request and at the token exchange.
//!
//! This is the in-process set; entries are forgotten once every token they could name has
//! expired (the admin API keeps them for at least a day, and at least `max_ttl`). With a
//! store, the admin API writes each revocation to it first, and every instance merges the
//! store's revocations in every [`REFRESH`]: a revocation made on one instance holds on all
//! of them within that bound. Revocations are only ever added (merging never drops one).

use airlock_authn::Identity;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// How often each instance reads the store's revocations.
pub const REFRESH: Duration = Duration::from_secs(2);

#[derive(Debug, Default)]
pub struct Revocations {
    inner: RwLock<Inner>,
    /// Woken after every change (tests and operators wait on it, never on time).
    changed: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct Inner {
    /// Token id → unix second after which the entry can be forgotten.
    tokens: HashMap<String, u64>,
    /// Subject → (revoked at, forget after).
    subjects: HashMap<String, (u64, u64)>,
}

impl Inner {
    /// Drop entries whose tokens can no longer be valid anyway.
    fn expire(&mut self, now: u64) {
        self.tokens.retain(|_, until| *until >= now);
        self.subjects.retain(|_, (_, until)| *until >= now);
    }
}

/// One revocation, as listed by the admin API.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Revoked {
    Token { token_id: String, until: u64 },
    Subject { subject: String, at: u64, until: u64 },
}

impl Revocations {
    /// Revoke one token until `until`; entries already past their `until` are dropped.
    pub fn revoke_token(&self, token_id: &str, until: u64, now: u64) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        inner.expire(now);
        inner.tokens.insert(token_id.to_owned(), until);
        drop(inner);
        self.changed.notify_waiters();
    }

    /// Revoke every token of `subject` issued at or before `at`, until `until`.
    pub fn revoke_subject(&self, subject: &str, at: u64, until: u64) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        inner.expire(at);
        inner.subjects.insert(subject.to_owned(), (at, until));
        drop(inner);
        self.changed.notify_waiters();
    }

    /// Add revocations read from the store (entries already known are kept as they are).
    pub fn merge(&self, stored: &[airlock_store::Revocation], now: u64) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        inner.expire(now);
        for r in stored {
            match r.kind.as_str() {
                "token" => {
                    inner.tokens.entry(r.value.clone()).or_insert(r.until_s);
                }
                "subject" => {
                    let entry =
                        inner.subjects.entry(r.value.clone()).or_insert((r.at_s, r.until_s));
                    if r.at_s > entry.0 {
                        *entry = (r.at_s, r.until_s);
                    }
                }
                _ => {}
            }
        }
        drop(inner);
        self.changed.notify_waiters();
    }

    /// Wait until `holds` is true of the current revocations.
    pub async fn wait_until(&self, holds: impl Fn(&[Revoked]) -> bool) {
        loop {
            let changed = self.changed.notified();
            if holds(&self.list()) {
                return;
            }
            changed.await;
        }
    }

    pub fn is_revoked(&self, identity: &Identity) -> bool {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.tokens.contains_key(identity.token_id())
            || inner
                .subjects
                .get(identity.subject())
                .is_some_and(|(at, _)| identity.issued_at() <= *at)
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
        out.sort();
        out
    }
}

/// Merge the store's revocations every [`REFRESH`] until `stop`.
pub async fn follow_store(
    audit: crate::audit::Audit,
    revocations: Arc<Revocations>,
    clock: crate::Clock,
    stop: impl std::future::Future<Output = ()>,
) {
    let mut stop = std::pin::pin!(stop);
    loop {
        let now = clock();
        match audit.read(move |s| s.revocations(now)).await {
            Ok(list) => revocations.merge(&list, now),
            Err(e) => {
                tracing::warn!(target: "airlock::revoke", error = %e, "cannot read revocations from the store")
            }
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(REFRESH) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_authn::SessionKeys;

    #[test]
    fn by_token_and_by_subject_and_forgetting() {
        let keys = SessionKeys::generate().unwrap();
        let now = 1_800_000_000;
        let verify = |sub: &str, at: u64| {
            let t = keys.mint(sub, &[], 600, at).unwrap();
            (keys.verify(&t.token, at, 3600).unwrap(), t.token_id)
        };
        let r = Revocations::default();
        let (a, a_id) = verify("alice", now);
        let (b, _) = verify("bob", now - 10);
        r.revoke_token(&a_id, now + 600, now);
        r.revoke_subject("bob", now, now + 600);
        assert!(r.is_revoked(&a) && r.is_revoked(&b));
        // A token the subject gets after the revocation works again.
        let (b_later, _) = verify("bob", now + 1);
        assert!(!r.is_revoked(&b_later));
        assert_eq!(r.list().len(), 2);
        // Entries past their horizon are dropped on the next write.
        r.revoke_token("other", now + 10_000, now + 601);
        assert_eq!(r.list().len(), 1);
    }
}
