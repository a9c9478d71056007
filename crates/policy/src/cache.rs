//! Findings per text block, remembered per policy version: agents resend the whole
//! conversation every turn, so a long agent loop should only scan what is new.
//!
//! Keyed by a keyed hash of the text (SipHash with a random per-process key, so nobody can
//! craft two texts that collide) and its length; bounded by entry count, the least recently
//! used half evicted when full. Only blocks of `MIN_BYTES` or more are cached:
//! smaller ones cost less to scan than to hash and look up. The cache lives inside a
//! compiled [`crate::Policy`], so a reload starts empty and findings never cross versions.

use airlock_detect::Finding;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub const MIN_BYTES: usize = 64;
pub const MAX_ENTRIES: usize = 8192;

#[derive(Debug, Default)]
pub struct FindingsCache {
    inner: Mutex<Inner>,
    hasher: std::collections::hash_map::RandomState,
}

type Key = (u64, usize);

#[derive(Debug, Default)]
struct Inner {
    /// (text hash, text length) → (findings, last use).
    map: HashMap<Key, (Arc<Vec<Finding>>, u64)>,
    clock: u64,
    hits: u64,
    misses: u64,
}

impl FindingsCache {
    /// The findings for `text`, from the cache or from `scan`.
    pub fn get_or_scan(
        &self,
        text: &str,
        scan: impl FnOnce(&str) -> Vec<Finding>,
    ) -> Arc<Vec<Finding>> {
        if text.len() < MIN_BYTES {
            return Arc::new(scan(text));
        }
        let k = (std::hash::BuildHasher::hash_one(&self.hasher, text), text.len());
        {
            let mut g = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            g.clock += 1;
            let now = g.clock;
            if let Some((f, used)) = g.map.get_mut(&k) {
                *used = now;
                let f = Arc::clone(f);
                g.hits += 1;
                return f;
            }
            g.misses += 1;
        }
        // Scan outside the lock: other requests keep going.
        let found = Arc::new(scan(text));
        let mut g = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if g.map.len() >= MAX_ENTRIES {
            let mut ages: Vec<u64> = g.map.values().map(|(_, u)| *u).collect();
            let (_, median, _) = ages.select_nth_unstable(MAX_ENTRIES / 2);
            let cut = *median;
            g.map.retain(|_, (_, used)| *used > cut);
        }
        let now = g.clock;
        g.map.insert(k, (Arc::clone(&found), now));
        found
    }

    /// (hits, misses) so far.
    pub fn stats(&self) -> (u64, u64) {
        let g = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        (g.hits, g.misses)
    }
}
