//! Tokens issued by the organisation's identity provider (OIDC ID tokens or RFC 9068 JWT
//! access tokens), verified against a JWK set the caller fetched.
//!
//! Verification is a separate path from session tokens: its own `typ` rules, the issuer's own
//! `iss`/`aud`, and only that issuer's keys. The order is fixed — structure and size, header
//! (`alg` allow-list, `crit`, `typ`), key choice by exact `kid` (header key hints such as `jwk`,
//! `jku`, `x5u`, `x5c` are never read), signature, then claims — and every check fails closed.

use crate::jws::{Compact, numeric_date, split};
use crate::{Identity, valid_name};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::{Map, Value};

/// IdP tokens longer than this are refused before decoding.
pub const MAX_IDP_TOKEN_BYTES: usize = 8192;
/// The largest leeway the configuration accepts (RFC 7519 speaks of "a few minutes" at most;
/// we allow one).
pub const MAX_LEEWAY_SECS: u64 = 60;
const MIN_RSA_BITS: usize = 2048;

/// Signature algorithms an issuer may be allowed to use. HMAC algorithms are deliberately
/// absent: a shared secret has no place between an IdP and a gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

impl Alg {
    pub const ALL: [Alg; 9] = [
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
        Alg::ES256,
        Alg::ES384,
        Alg::EdDSA,
    ];

    pub fn parse(name: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|a| a.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::EdDSA => "EdDSA",
        }
    }
}

/// Which kind of IdP token an issuer's tokens are accepted as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// RFC 9068 JWT access tokens: `typ` must be `at+jwt`.
    Access,
    /// OIDC ID tokens: `typ` absent or `JWT`; `aud` is the client id.
    Id,
}

/// One issuer's validation rules, from the configuration.
#[derive(Debug, Clone)]
pub struct IssuerRules {
    pub issuer: String,
    pub audience: String,
    pub algorithms: Vec<Alg>,
    pub kind: TokenKind,
    /// Dotted path to the groups claim (`groups`, `realm_access.roles`).
    pub groups_claim: String,
    pub leeway_secs: u64,
}

/// Why an IdP token was refused. The client only ever sees a generic message; `reason` is
/// the code the request record carries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdpError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token's algorithm is not allowed")]
    AlgorithmNotAllowed,
    #[error("the token is not an IdP token of the expected kind")]
    WrongKind,
    #[error("the token names a critical header extension")]
    Critical,
    #[error("no trusted issuer matches the token")]
    UnknownIssuer,
    #[error("no key in the issuer's key set matches the token")]
    UnknownKey,
    #[error("the issuer's keys are unavailable (never fetched, or too stale to trust)")]
    KeysUnavailable,
    #[error("this issuer's tokens are not accepted here")]
    NotAcceptedHere,
    #[error("the token has no kid and the key set holds several keys")]
    AmbiguousKey,
    #[error("the signature does not verify")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("a required claim is missing or invalid: {0}")]
    BadClaim(&'static str),
}

impl IdpError {
    /// Stable reason code for records and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            IdpError::Malformed => "idp_token_malformed",
            IdpError::AlgorithmNotAllowed => "idp_alg_not_allowed",
            IdpError::WrongKind => "idp_token_wrong_kind",
            IdpError::Critical => "idp_crit_header",
            IdpError::UnknownIssuer => "idp_unknown_issuer",
            IdpError::UnknownKey => "idp_unknown_kid",
            IdpError::KeysUnavailable => "idp_keys_unavailable",
            IdpError::NotAcceptedHere => "idp_not_accepted_here",
            IdpError::AmbiguousKey => "idp_ambiguous_kid",
            IdpError::BadSignature => "idp_bad_signature",
            IdpError::Expired => "idp_token_expired",
            IdpError::NotYetValid => "idp_token_not_yet_valid",
            IdpError::BadClaim(_) => "idp_bad_claim",
        }
    }
}

#[derive(Debug, Clone)]
enum Material {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    P256(Vec<u8>),
    P384(Vec<u8>),
    Ed25519(Vec<u8>),
}

/// A public verification key from a JWK set.
#[derive(Debug, Clone)]
pub struct Jwk {
    kid: Option<String>,
    /// The JWK's own `alg`, when it declares one: then only that algorithm may use it.
    alg: Option<Alg>,
    material: Material,
}

impl Jwk {
    /// True when this key may verify a token signed with `alg` (the algorithm family is
    /// bound to the key type: an RSA key never verifies an EC or HMAC token).
    fn fits(&self, alg: Alg) -> bool {
        let family = matches!(
            (&self.material, alg),
            (Material::Rsa { .. }, Alg::RS256 | Alg::RS384 | Alg::RS512)
                | (Material::Rsa { .. }, Alg::PS256 | Alg::PS384 | Alg::PS512)
                | (Material::P256(_), Alg::ES256)
                | (Material::P384(_), Alg::ES384)
                | (Material::Ed25519(_), Alg::EdDSA)
        );
        family && self.alg.is_none_or(|a| a == alg)
    }

    fn verify(&self, alg: Alg, message: &[u8], sig: &[u8]) -> bool {
        let rsa = |params, n: &[u8], e: &[u8]| {
            RsaPublicKeyComponents { n, e }.verify(params, message, sig).is_ok()
        };
        match (&self.material, alg) {
            (Material::Rsa { n, e }, Alg::RS256) => {
                rsa(&signature::RSA_PKCS1_2048_8192_SHA256, n, e)
            }
            (Material::Rsa { n, e }, Alg::RS384) => {
                rsa(&signature::RSA_PKCS1_2048_8192_SHA384, n, e)
            }
            (Material::Rsa { n, e }, Alg::RS512) => {
                rsa(&signature::RSA_PKCS1_2048_8192_SHA512, n, e)
            }
            (Material::Rsa { n, e }, Alg::PS256) => rsa(&signature::RSA_PSS_2048_8192_SHA256, n, e),
            (Material::Rsa { n, e }, Alg::PS384) => rsa(&signature::RSA_PSS_2048_8192_SHA384, n, e),
            (Material::Rsa { n, e }, Alg::PS512) => rsa(&signature::RSA_PSS_2048_8192_SHA512, n, e),
            // The FIXED variants take raw R‖S only: a DER signature or a wrong length fails.
            (Material::P256(point), Alg::ES256) => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, sig)
                    .is_ok()
            }
            (Material::P384(point), Alg::ES384) => {
                UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
                    .verify(message, sig)
                    .is_ok()
            }
            (Material::Ed25519(x), Alg::EdDSA) => {
                UnparsedPublicKey::new(&signature::ED25519, x).verify(message, sig).is_ok()
            }
            _ => false,
        }
    }
}

/// Why a JWK set was refused as a whole (the previous good set stays in use).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("the JWK set is not a JSON object with a `keys` array")]
    NotJwks,
    #[error("the JWK set holds the kid `{0}` more than once")]
    DuplicateKid(String),
    #[error("the JWK set holds no usable signing key")]
    NoUsableKey,
}

/// A validated JWK set: only public signing keys of supported types and sizes.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<Jwk>,
}

impl KeySet {
    /// Parse a JWK set. Keys that cannot be used are skipped, each with a reason in the
    /// returned list (for the log); a duplicate kid or no usable key refuses the whole set.
    pub fn from_jwks(bytes: &[u8]) -> Result<(KeySet, Vec<String>), JwksError> {
        let doc: Value = serde_json::from_slice(bytes).map_err(|_| JwksError::NotJwks)?;
        let list = doc.get("keys").and_then(Value::as_array).ok_or(JwksError::NotJwks)?;
        let mut keys: Vec<Jwk> = Vec::new();
        let mut skipped = Vec::new();
        for (i, key) in list.iter().enumerate() {
            let kid = key.get("kid").and_then(Value::as_str).map(str::to_owned);
            if let Some(k) = &kid
                && keys.iter().any(|x| x.kid.as_deref() == Some(k))
            {
                return Err(JwksError::DuplicateKid(k.clone()));
            }
            match parse_jwk(key) {
                Ok(material_and_alg) => {
                    let (material, alg) = material_and_alg;
                    keys.push(Jwk { kid, alg, material });
                }
                Err(why) => skipped.push(format!("key {i} ({}): {why}", kid.unwrap_or_default())),
            }
        }
        if keys.is_empty() {
            return Err(JwksError::NoUsableKey);
        }
        Ok((KeySet { keys }, skipped))
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn contains_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }
}

fn parse_jwk(key: &Value) -> Result<(Material, Option<Alg>), &'static str> {
    let s = |name: &str| key.get(name).and_then(Value::as_str);
    let bytes = |name: &str| -> Result<Vec<u8>, &'static str> {
        B64.decode(s(name).ok_or("missing key member")?).map_err(|_| "key member is not base64url")
    };
    if key.get("d").is_some() {
        return Err("private key material in a public key set");
    }
    if s("use").is_some_and(|u| u != "sig") {
        return Err("not a signing key (use)");
    }
    if let Some(ops) = key.get("key_ops") {
        let verify = ops.as_array().is_some_and(|o| o.iter().any(|x| x == "verify"));
        if !verify {
            return Err("key_ops does not allow verify");
        }
    }
    let alg = match key.get("alg") {
        None => None,
        Some(v) => Some(v.as_str().and_then(Alg::parse).ok_or("unsupported alg")?),
    };
    let material = match (s("kty"), s("crv")) {
        (Some("RSA"), _) => {
            let n = bytes("n")?;
            let e = bytes("e")?;
            let n = strip_leading_zeros(n);
            if n.len() * 8 < MIN_RSA_BITS {
                return Err("RSA key shorter than 2048 bits");
            }
            Material::Rsa { n, e }
        }
        (Some("EC"), Some(crv @ ("P-256" | "P-384"))) => {
            let (x, y) = (bytes("x")?, bytes("y")?);
            let size = if crv == "P-256" { 32 } else { 48 };
            if x.len() != size || y.len() != size {
                return Err("EC coordinates of the wrong length");
            }
            let mut point = vec![4u8];
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            if crv == "P-256" { Material::P256(point) } else { Material::P384(point) }
        }
        (Some("OKP"), Some("Ed25519")) => {
            let x = bytes("x")?;
            if x.len() != 32 {
                return Err("Ed25519 key of the wrong length");
            }
            Material::Ed25519(x)
        }
        _ => return Err("unsupported key type or curve"),
    };
    Ok((material, alg))
}

fn strip_leading_zeros(mut n: Vec<u8>) -> Vec<u8> {
    let zeros = n.iter().take_while(|b| **b == 0).count();
    n.drain(..zeros);
    n
}

/// An IdP token parsed but not yet verified: enough to pick the issuer (exact `iss` match)
/// and to know which `kid` it wants, nothing more.
#[derive(Debug)]
pub struct Unverified<'a> {
    compact: Compact<'a>,
    fingerprint: String,
}

/// Split a bearer token that is not a session token. Cheap checks only.
pub fn peek(token: &str) -> Result<Unverified<'_>, IdpError> {
    let compact = split(token, MAX_IDP_TOKEN_BYTES).ok_or(IdpError::Malformed)?;
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let fingerprint = digest.as_ref()[..12].iter().map(|b| format!("{b:02x}")).collect();
    Ok(Unverified { compact, fingerprint })
}

impl Unverified<'_> {
    /// The `iss` claim as written, for choosing the issuer. Unverified: never trust it alone.
    pub fn issuer(&self) -> Option<&str> {
        self.compact.claims.get("iss").and_then(Value::as_str)
    }

    /// The `kid` header as an exact string (a number or object is no kid and fails later).
    pub fn kid(&self) -> Option<&str> {
        self.compact.header_str("kid")
    }

    /// Verify against one issuer's rules and key set at `now` (unix seconds).
    pub fn verify(
        &self,
        rules: &IssuerRules,
        keys: &KeySet,
        now: u64,
    ) -> Result<Identity, IdpError> {
        let c = &self.compact;
        // Header: algorithm allow-list, no critical extensions, the right token type.
        let alg = c
            .header_str("alg")
            .and_then(Alg::parse)
            .filter(|a| rules.algorithms.contains(a))
            .ok_or(IdpError::AlgorithmNotAllowed)?;
        if c.header.contains_key("crit") {
            return Err(IdpError::Critical);
        }
        let typ = match c.header.get("typ") {
            None => None,
            Some(Value::String(t)) => Some(t.to_ascii_lowercase()),
            Some(_) => return Err(IdpError::WrongKind),
        };
        let typ_ok = match rules.kind {
            TokenKind::Access => {
                matches!(typ.as_deref(), Some("at+jwt" | "application/at+jwt"))
            }
            TokenKind::Id => matches!(typ.as_deref(), None | Some("jwt")),
        };
        if !typ_ok {
            return Err(IdpError::WrongKind);
        }
        // Key: an exact kid lookup, or the only key when the token names none.
        let key = match c.header.get("kid") {
            Some(Value::String(kid)) => keys
                .keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid.as_str()))
                .ok_or(IdpError::UnknownKey)?,
            Some(_) => return Err(IdpError::Malformed),
            None => match keys.keys.as_slice() {
                [only] => only,
                [] => return Err(IdpError::UnknownKey),
                _ => return Err(IdpError::AmbiguousKey),
            },
        };
        if !key.fits(alg) || !key.verify(alg, c.signing_input.as_bytes(), &c.signature) {
            return Err(IdpError::BadSignature);
        }
        self.check_claims(rules, now)
    }

    fn check_claims(&self, rules: &IssuerRules, now: u64) -> Result<Identity, IdpError> {
        let claims = &self.compact.claims;
        let str_claim = |k: &str| claims.get(k).and_then(Value::as_str);
        if str_claim("iss") != Some(rules.issuer.as_str()) {
            return Err(IdpError::UnknownIssuer);
        }
        let aud_ok = match claims.get("aud") {
            Some(Value::String(a)) => *a == rules.audience,
            Some(Value::Array(list)) => {
                list.iter().all(Value::is_string) && list.iter().any(|a| *a == *rules.audience)
            }
            _ => false,
        };
        if !aud_ok {
            return Err(IdpError::BadClaim("aud"));
        }
        let date = |k: &'static str| numeric_date(claims, k).map_err(|_| IdpError::BadClaim(k));
        let exp = date("exp")?.ok_or(IdpError::BadClaim("exp"))?;
        let (nbf, iat) = (date("nbf")?, date("iat")?);
        let leeway = rules.leeway_secs.min(MAX_LEEWAY_SECS);
        if exp.saturating_add(leeway) <= now {
            return Err(IdpError::Expired);
        }
        if nbf.is_some_and(|t| t > now.saturating_add(leeway))
            || iat.is_some_and(|t| t > now.saturating_add(leeway))
        {
            return Err(IdpError::NotYetValid);
        }
        if rules.kind == TokenKind::Access
            && (claims.contains_key("nonce") || claims.contains_key("at_hash"))
        {
            return Err(IdpError::WrongKind);
        }
        let subject =
            str_claim("sub").filter(|s| valid_name(s)).ok_or(IdpError::BadClaim("sub"))?;
        let groups = groups(claims, &rules.groups_claim).ok_or(IdpError::BadClaim("groups"))?;
        let token_id = match str_claim("jti") {
            Some(j) if valid_name(j) => j.to_owned(),
            _ => format!("fp:{}", self.fingerprint),
        };
        Ok(Identity {
            subject: subject.to_owned(),
            groups,
            token_id,
            issued_at: iat.unwrap_or(0),
            expires_at: exp,
            issuer: rules.issuer.clone(),
        })
    }
}

/// Groups from a dotted claim path: a string or an array of strings; absent means none.
fn groups(claims: &Map<String, Value>, path: &str) -> Option<Vec<String>> {
    let mut parts = path.split('.');
    let mut value = claims.get(parts.next()?);
    for part in parts {
        value = value.and_then(|v| v.get(part));
    }
    let names: Vec<String> = match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        Some(Value::Array(list)) => {
            list.iter().map(|g| g.as_str().map(str::to_owned)).collect::<Option<_>>()?
        }
        Some(_) => return None,
    };
    (names.len() <= 256 && names.iter().all(|g| valid_name(g))).then_some(names)
}

#[cfg(test)]
#[path = "oidc_tests.rs"]
mod tests;
