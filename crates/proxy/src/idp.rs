//! Trusted identity providers: each issuer's discovery document and JWK set, fetched and kept
//! fresh, and the verification of IdP tokens against them.
//!
//! Key handling follows security-tests.md §1.4 B:
//! - a background task refreshes every `jwks_refresh`; a failed refresh keeps the last good
//!   set, which is served until it is `jwks_max_stale` old, then the issuer fails closed;
//! - a token with an unknown `kid` may force one refresh, single-flight, and at most one per
//!   `jwks_cooldown` whatever the number of distinct kids (a bounded negative cache answers the
//!   rest without touching the lock);
//! - a new set replaces the old one only when it parses and holds a usable key, so a bad
//!   answer never evicts good keys;
//! - the issuer is chosen by an exact match of the token's `iss`, and only that issuer's keys
//!   are tried.

use crate::fetch::{FetchError, Fetcher};
use airlock_authn::Identity;
use airlock_authn::oidc::{IdpError, IssuerRules, KeySet, peek};
use airlock_config::OidcIssuer;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Distinct unknown kids remembered (each for one cooldown).
const NEGATIVE_KIDS: usize = 1024;

#[derive(Debug)]
struct Loaded {
    keys: Arc<KeySet>,
    at: Instant,
}

/// One trusted issuer and its keys.
#[derive(Debug)]
pub struct Issuer {
    pub config: OidcIssuer,
    rules: IssuerRules,
    loaded: RwLock<Option<Loaded>>,
    /// Held while a refresh runs: one fetch at a time per issuer.
    refreshing: tokio::sync::Mutex<()>,
    last_forced: Mutex<Option<Instant>>,
    unknown_kids: Mutex<HashMap<String, Instant>>,
}

impl Issuer {
    fn new(config: OidcIssuer) -> Issuer {
        Issuer {
            rules: config.rules(),
            config,
            loaded: RwLock::new(None),
            refreshing: tokio::sync::Mutex::new(()),
            last_forced: Mutex::new(None),
            unknown_kids: Mutex::new(HashMap::new()),
        }
    }

    /// The current key set, unless it was never fetched or is too stale to trust.
    fn keys(&self) -> Option<Arc<KeySet>> {
        let loaded = self.loaded.read().unwrap_or_else(|e| e.into_inner());
        loaded
            .as_ref()
            .filter(|l| l.at.elapsed() <= self.config.jwks_max_stale)
            .map(|l| l.keys.clone())
    }

    /// Fetch discovery and keys now; on success the new set replaces the old one.
    async fn refresh(&self, fetcher: &Fetcher) -> Result<(), RefreshError> {
        let discovery_url = format!(
            "{}/.well-known/openid-configuration",
            self.config.issuer.trim_end_matches('/')
        );
        let jwks_uri = discover(fetcher, &discovery_url, &self.config.issuer).await?;
        let answer = fetcher.get(&jwks_uri).await?;
        if !answer.status.is_success() {
            return Err(RefreshError::Status(answer.status.as_u16()));
        }
        let (keys, skipped) = KeySet::from_jwks(&answer.body).map_err(RefreshError::Jwks)?;
        for why in skipped {
            tracing::warn!(target: "airlock::idp", issuer = %self.config.issuer, "JWK skipped: {why}");
        }
        let mut loaded = self.loaded.write().unwrap_or_else(|e| e.into_inner());
        *loaded = Some(Loaded { keys: Arc::new(keys), at: Instant::now() });
        Ok(())
    }

    /// An unknown `kid` arrived: refresh if the cooldown allows, one caller at a time.
    /// True when the kid is known afterwards.
    async fn refresh_for_kid(&self, kid: &str, fetcher: &Fetcher) -> bool {
        let cooldown = self.config.jwks_cooldown;
        {
            let negative = self.unknown_kids.lock().unwrap_or_else(|e| e.into_inner());
            if negative.get(kid).is_some_and(|t| t.elapsed() < cooldown) {
                return false;
            }
        }
        let _one_at_a_time = self.refreshing.lock().await;
        // Another caller may have refreshed while we waited.
        if self.keys().is_some_and(|k| k.contains_kid(kid)) {
            return true;
        }
        let allowed = {
            let mut last = self.last_forced.lock().unwrap_or_else(|e| e.into_inner());
            let allowed = last.is_none_or(|t| t.elapsed() >= cooldown);
            if allowed {
                *last = Some(Instant::now());
            }
            allowed
        };
        if allowed && let Err(e) = self.refresh(fetcher).await {
            tracing::warn!(target: "airlock::idp", issuer = %self.config.issuer, error = %e, "JWKS refresh for an unknown kid failed");
        }
        let known = self.keys().is_some_and(|k| k.contains_kid(kid));
        if !known {
            let mut negative = self.unknown_kids.lock().unwrap_or_else(|e| e.into_inner());
            if negative.len() >= NEGATIVE_KIDS {
                negative.retain(|_, t| t.elapsed() < cooldown);
            }
            if negative.len() < NEGATIVE_KIDS {
                negative.insert(kid.to_owned(), Instant::now());
            }
        }
        known
    }
}

#[derive(Debug, thiserror::Error)]
enum RefreshError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("the IdP answered {0}")]
    Status(u16),
    #[error("the discovery document is invalid: {0}")]
    Discovery(&'static str),
    #[error("the JWK set was refused: {0}")]
    Jwks(airlock_authn::oidc::JwksError),
}

/// The issuer's `jwks_uri`, from its discovery document. (`airlock login` reads the same
/// document itself for the device and token endpoints; the gateway needs only the keys.)
async fn discover(fetcher: &Fetcher, url: &str, issuer: &str) -> Result<String, RefreshError> {
    let answer = fetcher.get(url).await?;
    if !answer.status.is_success() {
        return Err(RefreshError::Status(answer.status.as_u16()));
    }
    let doc: Value =
        serde_json::from_slice(&answer.body).map_err(|_| RefreshError::Discovery("not JSON"))?;
    // OIDC Discovery §4.3: the document's issuer must be exactly the one we asked about.
    if doc.get("issuer").and_then(Value::as_str) != Some(issuer) {
        return Err(RefreshError::Discovery("its issuer differs from the configured one"));
    }
    let jwks_uri = doc
        .get("jwks_uri")
        .and_then(Value::as_str)
        .ok_or(RefreshError::Discovery("no jwks_uri"))?;
    if !airlock_config::is_https_or_loopback(jwks_uri) {
        return Err(RefreshError::Discovery("jwks_uri is not https"));
    }
    Ok(jwks_uri.to_owned())
}

/// Every configured issuer.
#[derive(Debug)]
pub struct Issuers {
    list: Vec<Arc<Issuer>>,
    fetcher: Arc<Fetcher>,
    /// Bumped after every successful refresh, so waiters can re-check readiness.
    loaded: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Issuers {
    pub fn new(configs: &[OidcIssuer], fetcher: Arc<Fetcher>) -> Issuers {
        Issuers {
            list: configs.iter().cloned().map(|c| Arc::new(Issuer::new(c))).collect(),
            fetcher,
            loaded: Arc::new(tokio::sync::watch::Sender::new(0)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn all(&self) -> &[Arc<Issuer>] {
        &self.list
    }

    /// Ready when every issuer has a key set it may use.
    pub fn ready(&self) -> bool {
        self.list.iter().all(|i| i.keys().is_some())
    }

    /// Resolves once [`Issuers::ready`] holds (at once when it already does).
    pub async fn wait_ready(&self) {
        let mut loaded = self.loaded.subscribe();
        let _ = loaded.wait_for(|_| self.ready()).await;
    }

    /// Start one refresher per issuer; they stop when `stop` resolves to true.
    pub fn spawn_refreshers(&self, stop: tokio::sync::watch::Receiver<bool>) {
        for issuer in &self.list {
            let (issuer, fetcher, mut stop) = (issuer.clone(), self.fetcher.clone(), stop.clone());
            let loaded = self.loaded.clone();
            tokio::spawn(async move {
                loop {
                    let wait = {
                        let _one_at_a_time = issuer.refreshing.lock().await;
                        match issuer.refresh(&fetcher).await {
                            Ok(()) => {
                                loaded.send_modify(|n| *n += 1);
                                issuer.config.jwks_refresh
                            }
                            Err(e) => {
                                tracing::warn!(target: "airlock::idp", issuer = %issuer.config.issuer, error = %e, "JWKS refresh failed; keeping the last good key set");
                                // Retry sooner than a full period, but never in a tight loop.
                                issuer.config.jwks_refresh.min(Duration::from_secs(5))
                            }
                        }
                    };
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.wait_for(|s| *s) => return,
                    }
                }
            });
        }
    }

    /// Verify an IdP token at `now`. `direct` means the data plane is asking, which only
    /// issuers with `accept_direct` may answer.
    pub async fn verify(&self, token: &str, now: u64, direct: bool) -> Result<Identity, IdpError> {
        let unverified = peek(token)?;
        let issuer = unverified
            .issuer()
            .and_then(|iss| self.list.iter().find(|i| i.config.issuer == iss))
            .ok_or(IdpError::UnknownIssuer)?;
        if direct && !issuer.config.accept_direct {
            return Err(IdpError::NotAcceptedHere);
        }
        let keys = issuer.keys().ok_or(IdpError::KeysUnavailable)?;
        match unverified.verify(&issuer.rules, &keys, now) {
            Err(IdpError::UnknownKey) => {
                let Some(kid) = unverified.kid() else { return Err(IdpError::UnknownKey) };
                if !issuer.refresh_for_kid(kid, &self.fetcher).await {
                    return Err(IdpError::UnknownKey);
                }
                let keys = issuer.keys().ok_or(IdpError::KeysUnavailable)?;
                unverified.verify(&issuer.rules, &keys, now)
            }
            other => other,
        }
    }
}
