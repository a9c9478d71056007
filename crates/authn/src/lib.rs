//! Who is calling: the [`Identity`] every request carries, and the gateway-signed session
//! tokens that prove it.
//!
//! A session token is a compact JWS (`header.claims.signature`, base64url) signed with the
//! gateway's Ed25519 key. Verification is deliberately narrow: one algorithm (`EdDSA`), one
//! `typ`, the gateway's own key id, our own `iss`/`aud`, integer `exp`/`iat`, and a lifetime no
//! longer than the configured maximum. Header fields that point elsewhere for keys (`jku`,
//! `jwk`, `x5u`) are never used; a `crit` header is refused.
//!
//! Invariant: an [`Identity`] can only be constructed by verifying a token (or by the
//! operator-side mint path, which signs one); nothing else in the workspace can invent one.
//! Invariant: the clock is a parameter (`now`, unix seconds), never read here.

pub mod fuzz;
mod jws;
mod keys;
pub mod oidc;
mod token;
mod verified;

pub use keys::{KeyError, SessionKeys, write_private};
pub use token::{
    Claims, Minted, SESSION_AUDIENCE, SESSION_ISSUER, SESSION_TYP, TokenError, is_session_token,
};

/// `n` random bytes from the system source, hex-encoded (ids, throwaway keys).
pub fn random_hex(n: usize) -> Option<String> {
    let mut buf = vec![0u8; n];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut buf).ok()?;
    Some(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// The caller, as proved by a verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    subject: String,
    groups: Vec<String>,
    token_id: String,
    /// Unix seconds; 0 when an IdP token carries no `iat`.
    issued_at: u64,
    expires_at: u64,
    /// `airlock` for session tokens, the IdP's issuer URL for tokens accepted directly.
    issuer: String,
}

impl Identity {
    pub fn subject(&self) -> &str {
        &self.subject
    }
    pub fn groups(&self) -> &[String] {
        &self.groups
    }
    pub fn token_id(&self) -> &str {
        &self.token_id
    }
    /// Unix seconds.
    pub fn issued_at(&self) -> u64 {
        self.issued_at
    }
    /// Unix seconds.
    pub fn expires_at(&self) -> u64 {
        self.expires_at
    }
    pub fn issuer(&self) -> &str {
        &self.issuer
    }
}

/// Subjects, group names and token ids: printable, no whitespace or control characters,
/// bounded.
pub(crate) fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 256 && s.chars().all(|c| !c.is_control() && !c.is_whitespace())
}
