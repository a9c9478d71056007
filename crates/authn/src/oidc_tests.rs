//! The P0 JWT cases of security-tests.md §1.4 against the verifier, with real keys: each
//! test would fail if its check were missing.

use super::*;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RsaKeyPair};
use serde_json::json;

const NOW: u64 = 1_800_000_000;
const ISS: &str = "https://idp.example.com";
const RSA_PEM: &str = include_str!("testdata_rsa2048.pem");
const RSA_N: &str = "myJhVunYspXcMqQmK7xb39aFpAVxnVQFVMHZfoZrG9VAJdEzIx9k0A3Xc387s1gfyqYRWDQFxzrX6Ty6qFSCNH3eJ5oz6Uf4x-hXvKUxUbQfH_rpb62mYvGe965NFhDYEfcGOjKO_T61b8jQTr-Wo-DEC85jaquVJG7YkTqTtekbQnGnbGpI0X9f2H4CDudWPdnTgiMPrQY9f-2ESfiYFO4zjPA0jJ7K5VYkRGrpZuU6qI_IF1iF-4y84Wd74SAz5DNANe5-ASiEM6bqoqngGyWBSONHY4eGq4wCuQgEWM0G8Mt3UI9lc-S6LpRGww0ohp-Q4PGAXYXe4IODQahf8Q";
const RSA_1024_N: &str = "vONuIkDtaG6vEwErkdSgtfudEybRCNVXXEAnvK9J5Wr7wByuqEq8UjU9uRJqFxxiTCk1WkGD9_lUADnZT73tcvBTX9zIUjXeCDqPqVAwqzj7kLcfQOW38Gy0kln2Vdg6giOJRJ1n-dTP2Jp-MzPl1_FDSOsqFgdebVp8NA-QxRU";

struct Ec {
    pair: EcdsaKeyPair,
    rng: SystemRandom,
}

impl Ec {
    fn new() -> Ec {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        Ec { pair, rng }
    }

    fn jwk(&self, kid: &str) -> Value {
        let point = self.pair.public_key().as_ref();
        json!({"kty":"EC","crv":"P-256","kid":kid,"use":"sig",
               "x":B64.encode(&point[1..33]),"y":B64.encode(&point[33..])})
    }

    fn sign(&self, header: Value, claims: Value) -> String {
        let input = signing_input(&header, &claims);
        let sig = self.pair.sign(&self.rng, input.as_bytes()).unwrap();
        format!("{input}.{}", B64.encode(sig.as_ref()))
    }
}

fn rsa() -> RsaKeyPair {
    let der: String = RSA_PEM.lines().filter(|l| !l.starts_with("-----")).collect();
    RsaKeyPair::from_pkcs8(&base64::engine::general_purpose::STANDARD.decode(der).unwrap()).unwrap()
}

fn rsa_jwk(kid: &str) -> Value {
    json!({"kty":"RSA","kid":kid,"n":RSA_N,"e":"AQAB"})
}

fn rsa_sign(header: Value, claims: Value) -> String {
    let input = signing_input(&header, &claims);
    let mut sig = vec![0u8; rsa().public().modulus_len()];
    rsa()
        .sign(&signature::RSA_PKCS1_SHA256, &SystemRandom::new(), input.as_bytes(), &mut sig)
        .unwrap();
    format!("{input}.{}", B64.encode(sig))
}

fn hmac_sign(secret: &[u8], header: Value, claims: Value) -> String {
    let input = signing_input(&header, &claims);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    format!("{input}.{}", B64.encode(ring::hmac::sign(&key, input.as_bytes()).as_ref()))
}

fn signing_input(header: &Value, claims: &Value) -> String {
    format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()))
}

fn keyset(keys: Vec<Value>) -> KeySet {
    KeySet::from_jwks(json!({ "keys": keys }).to_string().as_bytes()).unwrap().0
}

fn rules() -> IssuerRules {
    IssuerRules {
        issuer: ISS.into(),
        audience: "urn:airlock".into(),
        algorithms: vec![Alg::RS256, Alg::ES256],
        kind: TokenKind::Access,
        groups_claim: "groups".into(),
        leeway_secs: 30,
    }
}

fn header(kid: &str, alg: &str) -> Value {
    json!({"alg":alg,"typ":"at+jwt","kid":kid})
}

fn claims() -> Value {
    json!({"iss":ISS,"aud":"urn:airlock","sub":"alice","groups":["eng","ops"],
           "iat":NOW,"exp":NOW+300,"jti":"at-1"})
}

fn with(mut v: Value, key: &str, value: Value) -> Value {
    if value.is_null() {
        v.as_object_mut().unwrap().remove(key);
    } else {
        v[key] = value;
    }
    v
}

fn check(token: &str, keys: &KeySet, now: u64) -> Result<Identity, IdpError> {
    peek(token)?.verify(&rules(), keys, now)
}

#[test]
fn accepts_good_tokens_and_maps_the_identity() {
    let ec = Ec::new();
    let keys = keyset(vec![ec.jwk("k1"), rsa_jwk("r1")]);
    let id = check(&ec.sign(header("k1", "ES256"), claims()), &keys, NOW).unwrap();
    assert_eq!(
        (id.subject(), id.groups(), id.token_id()),
        ("alice", &["eng".to_owned(), "ops".to_owned()][..], "at-1")
    );
    assert_eq!((id.issuer(), id.expires_at()), (ISS, NOW + 300));
    assert!(check(&rsa_sign(header("r1", "RS256"), claims()), &keys, NOW).is_ok());
    // J-20: no kid and a single key.
    let single = keyset(vec![ec.jwk("k1")]);
    let no_kid = ec.sign(json!({"alg":"ES256","typ":"at+jwt"}), claims());
    assert!(check(&no_kid, &single, NOW).is_ok());
    // J-21: no kid and several keys.
    assert_eq!(check(&no_kid, &keys, NOW).unwrap_err(), IdpError::AmbiguousKey);
    // Nested groups claim, a string of names, and a token without jti gets a fingerprint id.
    let mut r = rules();
    r.groups_claim = "realm_access.roles".into();
    let c = with(with(claims(), "realm_access", json!({"roles":["a","b"]})), "jti", Value::Null);
    let id = peek(&ec.sign(header("k1", "ES256"), c)).unwrap().verify(&r, &keys, NOW).unwrap();
    assert_eq!(id.groups(), ["a", "b"]);
    assert!(id.token_id().starts_with("fp:"));
    let c = with(claims(), "groups", json!("eng ops"));
    assert_eq!(check(&ec.sign(header("k1", "ES256"), c), &keys, NOW).unwrap().groups().len(), 2);
}

#[test]
fn algorithm_and_signature_attacks_are_refused() {
    let ec = Ec::new();
    let keys = keyset(vec![ec.jwk("k1"), rsa_jwk("r1")]);
    let good = ec.sign(header("k1", "ES256"), claims());
    let (input, _) = good.rsplit_once('.').unwrap();
    // J-01: alg none in any case, with or without a signature.
    for alg in ["none", "None", "NONE", "nOnE"] {
        let h = B64.encode(header("k1", alg).to_string());
        let c = B64.encode(claims().to_string());
        assert_eq!(check(&format!("{h}.{c}."), &keys, NOW).unwrap_err(), IdpError::Malformed);
        assert_eq!(
            check(&format!("{h}.{c}.{}", B64.encode("x")), &keys, NOW).unwrap_err(),
            IdpError::AlgorithmNotAllowed
        );
    }
    // J-02: signature removed.
    assert!(check(&format!("{input}."), &keys, NOW).is_err());
    // J-03: last bytes of the signature changed; the original still verifies.
    let mut sig = B64.decode(good.rsplit_once('.').unwrap().1).unwrap();
    *sig.last_mut().unwrap() ^= 1;
    let tampered = format!("{input}.{}", B64.encode(&sig));
    assert_eq!(check(&tampered, &keys, NOW).unwrap_err(), IdpError::BadSignature);
    assert!(check(&good, &keys, NOW).is_ok());
    // J-04 / J-05: HS256 keyed with the IdP's public key (JWK JSON, raw modulus) or empty.
    for secret in [rsa_jwk("r1").to_string().into_bytes(), B64.decode(RSA_N).unwrap(), vec![]] {
        let t = hmac_sign(&secret, header("r1", "HS256"), claims());
        assert_eq!(check(&t, &keys, NOW).unwrap_err(), IdpError::AlgorithmNotAllowed);
    }
    // J-06: all-zero, DER-encoded and wrong-length ECDSA signatures.
    for sig in [
        vec![0u8; 64],
        der_of(&B64.decode(good.rsplit_once('.').unwrap().1).unwrap()),
        vec![1u8; 63],
    ] {
        let t = format!("{input}.{}", B64.encode(sig));
        assert_eq!(check(&t, &keys, NOW).unwrap_err(), IdpError::BadSignature);
    }
    // J-08: an allowed algorithm that does not fit the key (ES256 claimed on the RSA kid), and
    // one outside the allow-list (PS256 signed by the right RSA key).
    let t = ec.sign(header("r1", "ES256"), claims());
    assert_eq!(check(&t, &keys, NOW).unwrap_err(), IdpError::BadSignature);
    let t = rsa_sign(header("r1", "PS256"), claims());
    assert_eq!(check(&t, &keys, NOW).unwrap_err(), IdpError::AlgorithmNotAllowed);
    // A JWK that declares its own alg refuses every other one.
    let mut pinned = rsa_jwk("r1");
    pinned["alg"] = json!("RS384");
    let t = rsa_sign(header("r1", "RS256"), claims());
    assert_eq!(check(&t, &keyset(vec![pinned]), NOW).unwrap_err(), IdpError::BadSignature);
    // J-11: crit.
    let t = ec.sign(with(header("k1", "ES256"), "crit", json!(["b64"])), claims());
    assert_eq!(check(&t, &keys, NOW).unwrap_err(), IdpError::Critical);
    // J-12: a five-segment JWE.
    assert_eq!(check("a.b.c.d.e", &keys, NOW).unwrap_err(), IdpError::Malformed);
}

/// Raw R‖S as an ASN.1 DER ECDSA-Sig-Value.
fn der_of(raw: &[u8]) -> Vec<u8> {
    let int = |b: &[u8]| {
        let mut v = b.to_vec();
        if v[0] & 0x80 != 0 {
            v.insert(0, 0);
        }
        let mut out = vec![2u8, v.len() as u8];
        out.extend(v);
        out
    };
    let body = [int(&raw[..32]), int(&raw[32..])].concat();
    [vec![0x30, body.len() as u8], body].concat()
}

#[test]
fn header_key_hints_are_never_used() {
    // J-07: the token embeds the attacker's key and points at URLs for more; the verifier
    // has no way to fetch (it is pure) and only looks the kid up in the given set.
    let ec = Ec::new();
    let attacker = Ec::new();
    let keys = keyset(vec![ec.jwk("k1")]);
    let mut h = header("k1", "ES256");
    h["jwk"] = attacker.jwk("k1");
    h["jku"] = json!("http://127.0.0.1:9/jwks");
    h["x5u"] = json!("http://127.0.0.1:9/cert");
    h["x5c"] = json!(["MIIB"]);
    let t = attacker.sign(h, claims());
    assert_eq!(check(&t, &keys, NOW).unwrap_err(), IdpError::BadSignature);
    // J-23: hostile kids are exact map keys and simply unknown; non-string kids are malformed.
    for kid in ["../../../../dev/null", "' UNION SELECT 'k'--", "$(sleep 10)", "a\u{0}b"] {
        let t = ec.sign(header(kid, "ES256"), claims());
        assert_eq!(check(&t, &keys, NOW).unwrap_err(), IdpError::UnknownKey, "{kid}");
    }
    let t = ec.sign(header(&"k".repeat(10 * 1024), "ES256"), claims());
    assert_eq!(check(&t, &keys, NOW).unwrap_err(), IdpError::Malformed, "size cap");
    for kid in [json!(1), json!({"a":1})] {
        let t = ec.sign(with(header("k1", "ES256"), "kid", kid), claims());
        assert_eq!(check(&t, &keys, NOW).unwrap_err(), IdpError::Malformed);
    }
}

#[test]
fn claims_and_time() {
    let ec = Ec::new();
    let keys = keyset(vec![ec.jwk("k1")]);
    let sign = |c: Value| ec.sign(header("k1", "ES256"), c);
    // J-30: expiry and leeway.
    assert_eq!(check(&sign(claims()), &keys, NOW + 331).unwrap_err(), IdpError::Expired);
    assert!(check(&sign(claims()), &keys, NOW + 320).is_ok());
    // J-31: exp required; nbf and iat in the future beyond the leeway.
    assert_eq!(
        check(&sign(with(claims(), "exp", Value::Null)), &keys, NOW).unwrap_err(),
        IdpError::BadClaim("exp")
    );
    assert_eq!(
        check(&sign(with(claims(), "nbf", json!(NOW + 120))), &keys, NOW).unwrap_err(),
        IdpError::NotYetValid
    );
    assert!(check(&sign(with(claims(), "nbf", json!(NOW + 20))), &keys, NOW).is_ok());
    assert_eq!(
        check(&sign(with(claims(), "iat", json!(NOW + 3600))), &keys, NOW).unwrap_err(),
        IdpError::NotYetValid
    );
    // J-32: numeric dates of the wrong type.
    for bad in [json!("99999999999"), json!(1.5), json!(-1), json!([1]), json!(u64::MAX)] {
        for key in ["exp", "nbf", "iat"] {
            let t = sign(with(claims(), key, bad.clone()));
            assert!(matches!(check(&t, &keys, NOW), Err(IdpError::BadClaim(_))), "{key}={bad}");
        }
    }
    // J-33: iss must match exactly.
    for iss in [
        json!("https://idp.example.com/"),
        json!("https://IDP.example.com"),
        json!("http://idp.example.com"),
        Value::Null,
    ] {
        let t = sign(with(claims(), "iss", iss.clone()));
        assert_eq!(check(&t, &keys, NOW).unwrap_err(), IdpError::UnknownIssuer, "{iss}");
    }
    // J-34: aud as a string, in an array, or anything else.
    assert!(check(&sign(with(claims(), "aud", json!(["x", "urn:airlock"]))), &keys, NOW).is_ok());
    for aud in
        [Value::Null, json!(1), json!({"a":"urn:airlock"}), json!(["x"]), json!("urn:airlock2")]
    {
        let t = sign(with(claims(), "aud", aud.clone()));
        assert_eq!(check(&t, &keys, NOW).unwrap_err(), IdpError::BadClaim("aud"), "{aud}");
    }
    let t = sign(with(claims(), "aud", json!(vec!["x"; 10_000])));
    assert_eq!(check(&t, &keys, NOW).unwrap_err(), IdpError::Malformed, "size cap");
    // J-35: sub.
    for sub in [Value::Null, json!(""), json!(7), json!("a b")] {
        let t = sign(with(claims(), "sub", sub.clone()));
        assert_eq!(check(&t, &keys, NOW).unwrap_err(), IdpError::BadClaim("sub"), "{sub}");
    }
    // Groups of the wrong shape.
    let t = sign(with(claims(), "groups", json!([1])));
    assert_eq!(check(&t, &keys, NOW).unwrap_err(), IdpError::BadClaim("groups"));
    // J-37: duplicate claim names.
    let dup = format!(
        "{}.{}",
        B64.encode(header("k1", "ES256").to_string()),
        B64.encode(format!(
            r#"{{"iss":"{ISS}","aud":"urn:airlock","sub":"a","sub":"admin","exp":{}}}"#,
            NOW + 60
        ))
    );
    let sig = ec.pair.sign(&ec.rng, dup.as_bytes()).unwrap();
    assert_eq!(
        check(&format!("{dup}.{}", B64.encode(sig.as_ref())), &keys, NOW).unwrap_err(),
        IdpError::Malformed
    );
}

#[test]
fn token_kinds_are_not_interchangeable() {
    // J-36 / S-01.
    let ec = Ec::new();
    let keys = keyset(vec![ec.jwk("k1")]);
    let id_token =
        ec.sign(json!({"alg":"ES256","kid":"k1","typ":"JWT"}), with(claims(), "nonce", json!("n")));
    assert_eq!(check(&id_token, &keys, NOW).unwrap_err(), IdpError::WrongKind);
    let mut sneaky = header("k1", "ES256");
    sneaky["typ"] = json!("at+jwt");
    let t = ec.sign(sneaky, with(claims(), "at_hash", json!("h")));
    assert_eq!(check(&t, &keys, NOW).unwrap_err(), IdpError::WrongKind);
    let session = ec.sign(json!({"alg":"ES256","kid":"k1","typ":crate::SESSION_TYP}), claims());
    assert_eq!(check(&session, &keys, NOW).unwrap_err(), IdpError::WrongKind);
    // An ID-token issuer refuses access tokens.
    let mut r = rules();
    r.kind = TokenKind::Id;
    assert!(peek(&id_token).unwrap().verify(&r, &keys, NOW).is_ok());
    let at = ec.sign(header("k1", "ES256"), claims());
    assert_eq!(peek(&at).unwrap().verify(&r, &keys, NOW).unwrap_err(), IdpError::WrongKind);
    // A real session token is never an IdP token, even with the gateway's issuer configured.
    let sk = crate::SessionKeys::generate().unwrap();
    let st = sk.mint("alice", &[], 60, NOW).unwrap().token;
    assert!(peek(&st).unwrap().verify(&r, &keys, NOW).is_err());
    assert!(crate::is_session_token(&st) && !crate::is_session_token(&at));
}

#[test]
fn jwk_sets_are_validated() {
    let ec = Ec::new();
    let small = json!({"kty":"RSA","kid":"small","n":RSA_1024_N,"e":"AQAB"});
    let enc = with(ec.jwk("enc"), "use", json!("enc"));
    let ops = with(Ec::new().jwk("ops"), "key_ops", json!(["encrypt"]));
    let private = with(Ec::new().jwk("priv"), "d", json!("AAAA"));
    let curve = with(Ec::new().jwk("curve"), "crv", json!("P-521"));
    let hmac = json!({"kty":"oct","kid":"hs","k":"c2VjcmV0"});
    let doc = json!({"keys":[small, enc, ops, private, curve, hmac, rsa_jwk("r1")]});
    let (set, skipped) = KeySet::from_jwks(doc.to_string().as_bytes()).unwrap();
    // J-09, J-10: only the good RSA key survives; every other one is reported.
    assert_eq!(set.len(), 1);
    assert!(set.contains_kid("r1"));
    assert_eq!(skipped.len(), 6, "{skipped:?}");
    let dup = json!({"keys":[ec.jwk("a"), rsa_jwk("a")]});
    assert_eq!(
        KeySet::from_jwks(dup.to_string().as_bytes()).unwrap_err(),
        JwksError::DuplicateKid("a".into())
    );
    assert_eq!(KeySet::from_jwks(b"<html>").unwrap_err(), JwksError::NotJwks);
    assert_eq!(KeySet::from_jwks(br#"{"keys":[]}"#).unwrap_err(), JwksError::NoUsableKey);
    // J-26: a key from another issuer's set never verifies this issuer's token.
    let other = Ec::new();
    let t = other.sign(header("k1", "ES256"), claims());
    assert_eq!(check(&t, &keyset(vec![ec.jwk("k1")]), NOW).unwrap_err(), IdpError::BadSignature);
}
