//! Minting and verifying session tokens.

use crate::jws::split;
use crate::{Identity, SessionKeys, valid_name};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::rand::SecureRandom;
use ring::signature::{ED25519, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

pub const SESSION_ISSUER: &str = "airlock";
pub const SESSION_AUDIENCE: &str = "airlock";
/// Distinct from any IdP token's `typ`, so one kind is never accepted as the other.
pub const SESSION_TYP: &str = "airlock-session+jwt";
/// Longer tokens are refused before any decoding work.
const MAX_TOKEN_BYTES: usize = 4096;
/// Clock skew tolerated on `iat` and `exp`, in seconds.
const LEEWAY: u64 = 10;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub groups: Vec<String>,
    pub jti: String,
    pub iat: u64,
    pub exp: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token was not signed by this gateway")]
    BadSignature,
    #[error("the token is not a session token of this gateway")]
    WrongKind,
    #[error("the session token has expired")]
    Expired,
    #[error("the session token is not valid yet")]
    NotYetValid,
    #[error("the session token's lifetime exceeds the allowed maximum")]
    LifetimeTooLong,
    #[error("subject must be non-empty and groups must be plain names")]
    BadClaims,
    #[error("the system random source failed")]
    Random,
}

/// A freshly signed session token and what a record needs to know about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Minted {
    pub token: String,
    pub token_id: String,
    /// Unix seconds.
    pub expires_at: u64,
}

impl SessionKeys {
    /// Sign a session token for `sub` valid from `now` for `ttl_secs`.
    pub fn mint(
        &self,
        sub: &str,
        groups: &[String],
        ttl_secs: u64,
        now: u64,
    ) -> Result<Minted, TokenError> {
        if !valid_name(sub) || !groups.iter().all(|g| valid_name(g)) {
            return Err(TokenError::BadClaims);
        }
        let mut jti = [0u8; 16];
        self.rng.fill(&mut jti).map_err(|_| TokenError::Random)?;
        let claims = Claims {
            iss: SESSION_ISSUER.to_owned(),
            aud: SESSION_AUDIENCE.to_owned(),
            sub: sub.to_owned(),
            groups: groups.to_vec(),
            jti: jti.iter().map(|b| format!("{b:02x}")).collect(),
            iat: now,
            exp: now.saturating_add(ttl_secs),
        };
        let header = serde_json::json!({ "alg": "EdDSA", "typ": SESSION_TYP, "kid": self.kid });
        let body = serde_json::to_vec(&claims).map_err(|_| TokenError::Malformed)?;
        let signing_input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(body));
        let sig = self.pair.sign(signing_input.as_bytes());
        Ok(Minted {
            token: format!("{signing_input}.{}", B64.encode(sig.as_ref())),
            token_id: claims.jti,
            expires_at: claims.exp,
        })
    }

    /// Verify a session token at time `now`, allowing at most `max_ttl_secs` of lifetime.
    /// A token this key verified before is not verified again; its times are.
    pub fn verify(&self, token: &str, now: u64, max_ttl_secs: u64) -> Result<Identity, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed);
        }
        let digest = crate::verified::Verified::digest(token);
        if let Some(identity) = self.verified.get(&digest) {
            check_times(identity.issued_at, identity.expires_at, now, max_ttl_secs)?;
            return Ok(identity);
        }
        let identity = self.verify_uncached(token, now, max_ttl_secs)?;
        self.verified.insert(digest, &identity, now);
        Ok(identity)
    }

    fn verify_uncached(
        &self,
        token: &str,
        now: u64,
        max_ttl_secs: u64,
    ) -> Result<Identity, TokenError> {
        let c = split(token, MAX_TOKEN_BYTES).ok_or(TokenError::Malformed)?;
        // Checked before the signature so that a token of another kind (an IdP JWT, alg none,
        // an HMAC token) is refused without any key being chosen from its header.
        let is = |k: &str, v: &str| c.header_str(k) == Some(v);
        if !is("alg", "EdDSA") || !is("typ", SESSION_TYP) || c.header.contains_key("crit") {
            return Err(TokenError::WrongKind);
        }
        if !is("kid", &self.kid) {
            return Err(TokenError::BadSignature);
        }
        UnparsedPublicKey::new(&ED25519, self.pair.public_key().as_ref())
            .verify(c.signing_input.as_bytes(), &c.signature)
            .map_err(|_| TokenError::BadSignature)?;
        // Strict types: an `exp` given as a string is an error, not "absent".
        let claims: Claims = serde_json::from_value(serde_json::Value::Object(c.claims))
            .map_err(|_| TokenError::Malformed)?;
        if claims.iss != SESSION_ISSUER || claims.aud != SESSION_AUDIENCE {
            return Err(TokenError::WrongKind);
        }
        check_times(claims.iat, claims.exp, now, max_ttl_secs)?;
        if !valid_name(&claims.sub)
            || !valid_name(&claims.jti)
            || !claims.groups.iter().all(|g| valid_name(g))
        {
            return Err(TokenError::BadClaims);
        }
        Ok(Identity {
            subject: claims.sub,
            groups: claims.groups,
            token_id: claims.jti,
            issued_at: claims.iat,
            expires_at: claims.exp,
            issuer: SESSION_ISSUER.to_owned(),
        })
    }
}

/// What depends on the clock: expired, not yet valid, or living longer than allowed.
fn check_times(iat: u64, exp: u64, now: u64, max_ttl_secs: u64) -> Result<(), TokenError> {
    if exp.saturating_add(LEEWAY) <= now {
        return Err(TokenError::Expired);
    }
    if iat > now.saturating_add(LEEWAY) {
        return Err(TokenError::NotYetValid);
    }
    if exp < iat || exp - iat > max_ttl_secs {
        return Err(TokenError::LifetimeTooLong);
    }
    Ok(())
}

/// True when `token`'s header declares it a gateway session token. Routing only: which
/// verification path a bearer takes. Each path then checks everything itself, so a token
/// that lies here simply fails there.
pub fn is_session_token(token: &str) -> bool {
    let Some(h) = token.split('.').next().filter(|h| h.len() <= 512) else { return false };
    B64.decode(h)
        .ok()
        .and_then(|h| serde_json::from_slice::<serde_json::Value>(&h).ok())
        .is_some_and(|h| h.get("typ").and_then(|t| t.as_str()) == Some(SESSION_TYP))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;
    const MAX: u64 = 3600;

    fn keys() -> SessionKeys {
        SessionKeys::generate().unwrap()
    }

    fn forge(keys: &SessionKeys, header: serde_json::Value, claims: serde_json::Value) -> String {
        let input =
            format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()));
        let sig = keys.pair.sign(input.as_bytes());
        format!("{input}.{}", B64.encode(sig.as_ref()))
    }

    /// The same token with `sub` changed and the original signature kept.
    fn tamper_claims(token: &str) -> String {
        let parts: Vec<&str> = token.split('.').collect();
        let claims =
            String::from_utf8(B64.decode(parts[1]).unwrap()).unwrap().replace("alice", "admin");
        format!("{}.{}.{}", parts[0], B64.encode(claims), parts[2])
    }

    fn good_claims() -> serde_json::Value {
        serde_json::json!({"iss":"airlock","aud":"airlock","sub":"alice","groups":["eng"],"jti":"j1","iat":NOW,"exp":NOW+600})
    }

    #[test]
    fn round_trip() {
        let k = keys();
        let t = k.mint("alice", &["eng".into(), "ops".into()], 600, NOW).unwrap().token;
        let id = k.verify(&t, NOW + 1, MAX).unwrap();
        assert_eq!(id.subject(), "alice");
        assert_eq!(id.groups(), ["eng", "ops"]);
        assert_eq!(id.expires_at(), NOW + 600);
        assert_eq!(id.token_id().len(), 32);
    }

    #[test]
    fn rejections() {
        let k = keys();
        let other = keys();
        let header = serde_json::json!({"alg":"EdDSA","typ":SESSION_TYP,"kid":k.kid});
        let t = k.mint("alice", &[], 600, NOW).unwrap().token;
        let cases: Vec<(String, u64, TokenError)> = vec![
            (t.clone(), NOW + 611, TokenError::Expired),
            (t.clone(), NOW - 20, TokenError::NotYetValid),
            (other.mint("alice", &[], 600, NOW).unwrap().token, NOW, TokenError::BadSignature),
            (tamper_claims(&t), NOW, TokenError::BadSignature),
            ("a.b".into(), NOW, TokenError::Malformed),
            ("a.b.c.d".into(), NOW, TokenError::Malformed),
            ("x".repeat(5000), NOW, TokenError::Malformed),
            (k.mint("alice", &[], 7200, NOW).unwrap().token, NOW, TokenError::LifetimeTooLong),
            // alg none, HMAC, another typ, crit: refused before any key is used.
            (
                forge(
                    &k,
                    serde_json::json!({"alg":"none","typ":SESSION_TYP,"kid":k.kid}),
                    good_claims(),
                ),
                NOW,
                TokenError::WrongKind,
            ),
            (
                forge(
                    &k,
                    serde_json::json!({"alg":"HS256","typ":SESSION_TYP,"kid":k.kid}),
                    good_claims(),
                ),
                NOW,
                TokenError::WrongKind,
            ),
            (
                forge(
                    &k,
                    serde_json::json!({"alg":"EdDSA","typ":"JWT","kid":k.kid}),
                    good_claims(),
                ),
                NOW,
                TokenError::WrongKind,
            ),
            (
                forge(
                    &k,
                    serde_json::json!({"alg":"EdDSA","typ":SESSION_TYP,"kid":k.kid,"crit":["exp"]}),
                    good_claims(),
                ),
                NOW,
                TokenError::WrongKind,
            ),
            (
                forge(
                    &k,
                    header.clone(),
                    serde_json::json!({"iss":"idp","aud":"airlock","sub":"a","groups":[],"jti":"j","iat":NOW,"exp":NOW+60}),
                ),
                NOW,
                TokenError::WrongKind,
            ),
            // A string-typed exp is malformed, never "no expiry".
            (
                forge(
                    &k,
                    header.clone(),
                    serde_json::json!({"iss":"airlock","aud":"airlock","sub":"a","groups":[],"jti":"j","iat":NOW,"exp":"9999999999"}),
                ),
                NOW,
                TokenError::Malformed,
            ),
            (
                forge(
                    &k,
                    header.clone(),
                    serde_json::json!({"iss":"airlock","aud":"airlock","sub":"a","groups":[],"jti":"j","iat":NOW}),
                ),
                NOW,
                TokenError::Malformed,
            ),
            (
                forge(
                    &k,
                    header.clone(),
                    serde_json::json!({"iss":"airlock","aud":"airlock","sub":"","groups":[],"jti":"j","iat":NOW,"exp":NOW+5}),
                ),
                NOW,
                TokenError::BadClaims,
            ),
        ];
        for (i, (token, now, want)) in cases.into_iter().enumerate() {
            assert_eq!(k.verify(&token, now, MAX), Err(want), "case {i}");
        }
    }

    #[test]
    fn embedded_keys_are_ignored() {
        // A token carrying its own `jwk` signed by an attacker key still fails: only our key
        // is ever used.
        let k = keys();
        let attacker = keys();
        let header = serde_json::json!({"alg":"EdDSA","typ":SESSION_TYP,"kid":k.kid,
            "jwk":{"kty":"OKP","crv":"Ed25519","x":B64.encode(attacker.pair.public_key().as_ref())},
            "jku":"http://127.0.0.1:1/jwks"});
        let t = forge(&attacker, header, good_claims());
        assert_eq!(k.verify(&t, NOW, MAX), Err(TokenError::BadSignature));
    }

    #[test]
    fn minting_checks_names() {
        let k = keys();
        assert_eq!(k.mint("", &[], 60, NOW), Err(TokenError::BadClaims));
        assert_eq!(k.mint("a b", &[], 60, NOW), Err(TokenError::BadClaims));
        assert_eq!(k.mint("a", &["x\ny".into()], 60, NOW), Err(TokenError::BadClaims));
    }

    #[test]
    fn a_remembered_token_is_still_checked_against_the_clock() {
        let k = keys();
        let t = k.mint("alice", &["eng".into()], 600, NOW).unwrap().token;
        assert!(k.verify(&t, NOW, MAX).is_ok());
        assert_eq!(k.verified.len(), 1);
        // Remembered, and its times are checked on every use.
        assert!(k.verify(&t, NOW + 300, MAX).is_ok());
        assert_eq!(k.verify(&t, NOW + 600 + LEEWAY, MAX), Err(TokenError::Expired));
        assert_eq!(k.verify(&t, NOW - LEEWAY - 1, MAX), Err(TokenError::NotYetValid));
        assert_eq!(k.verify(&t, NOW, 60), Err(TokenError::LifetimeTooLong));
        // A changed byte is another token: verified in full, and refused.
        assert_eq!(k.verify(&tamper_claims(&t), NOW, MAX), Err(TokenError::BadSignature));
        // Another key remembers nothing of this one's tokens.
        assert_eq!(keys().verify(&t, NOW, MAX), Err(TokenError::BadSignature));
        // Refused tokens are not remembered.
        assert_eq!(k.verified.len(), 1);
    }

    #[test]
    fn the_memory_of_verified_tokens_is_bounded() {
        let k = keys();
        let max = crate::verified::MAX_ENTRIES;
        for i in 0..max + 10 {
            let t = k.mint(&format!("u{i}"), &[], 600, NOW).unwrap().token;
            assert!(k.verify(&t, NOW, MAX).is_ok());
            assert!(k.verified.len() <= max);
        }
    }
}
