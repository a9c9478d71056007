//! Entries for the fuzz targets (`fuzz/`), replayed over the checked-in corpora by the normal
//! tests: the token and JWK-set parsers never panic on any input.

use crate::SessionKeys;
use crate::oidc::{Alg, IssuerRules, KeySet, TokenKind, peek};
use std::sync::LazyLock;

static KEYS: LazyLock<SessionKeys> = LazyLock::new(|| SessionKeys::generate().expect("a key"));

/// A modulus for a fixed RS256 key, so tokens meet a real key set.
const RSA_N: &str = "myJhVunYspXcMqQmK7xb39aFpAVxnVQFVMHZfoZrG9VAJdEzIx9k0A3Xc387s1gfyqYRWDQFxzrX6Ty6qFSCNH3eJ5oz6Uf4x-hXvKUxUbQfH_rpb62mYvGe965NFhDYEfcGOjKO_T61b8jQTr-Wo-DEC85jaquVJG7YkTqTtekbQnGnbGpI0X9f2H4CDudWPdnTgiMPrQY9f-2ESfiYFO4zjPA0jJ7K5VYkRGrpZuU6qI_IF1iF-4y84Wd74SAz5DNANe5-ASiEM6bqoqngGyWBSONHY4eGq4wCuQgEWM0G8Mt3UI9lc-S6LpRGww0ohp-Q4PGAXYXe4IODQahf8Q";

/// `data` as a token: verified as a session token and as an IdP token; never a panic, and
/// never accepted (no valid signature can be produced by a fuzzer).
pub fn tokens(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    assert!(KEYS.verify(&text, 1_800_000_000, 3600).is_err(), "a fuzzed session token verified");
    if let Ok(unverified) = peek(&text) {
        let _ = (unverified.issuer(), unverified.kid());
        let jwks = format!(r#"{{"keys":[{{"kty":"RSA","kid":"k1","n":"{RSA_N}","e":"AQAB"}}]}}"#);
        let (keys, _) = KeySet::from_jwks(jwks.as_bytes()).expect("the fixed key set parses");
        let rules = IssuerRules {
            issuer: "https://idp.example.com".into(),
            audience: "urn:airlock".into(),
            algorithms: vec![Alg::parse("RS256").expect("RS256")],
            kind: TokenKind::Access,
            groups_claim: "groups".into(),
            leeway_secs: 30,
        };
        assert!(
            unverified.verify(&rules, &keys, 1_800_000_000).is_err(),
            "a fuzzed IdP token verified"
        );
    }
}

/// `data` as a JWK set document.
pub fn jwks(data: &[u8]) {
    let _ = KeySet::from_jwks(data);
}
