//! Compact JWS structure, shared by both token kinds: three non-empty base64url segments
//! without padding, a header that is a JSON object with unique member names, and a payload
//! that is a JSON object with unique member names. Everything here runs before any key is
//! chosen, so it must be cheap and strict: a size cap first, then segment count, then
//! decoding.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::de::{Deserialize, Deserializer, Error as _, MapAccess, Visitor};
use serde_json::{Map, Value};

/// A compact JWS split and decoded, signature not yet checked.
#[derive(Debug)]
pub(crate) struct Compact<'a> {
    pub header: Map<String, Value>,
    pub claims: Map<String, Value>,
    /// `base64(header) . base64(payload)`, the bytes the signature covers.
    pub signing_input: &'a str,
    pub signature: Vec<u8>,
}

impl Compact<'_> {
    pub fn header_str(&self, key: &str) -> Option<&str> {
        self.header.get(key).and_then(Value::as_str)
    }
}

/// Split `token`; `None` for anything that is not exactly a well-formed compact JWS.
/// A five-segment JWE is refused here, before any decryption or decompression could start.
pub(crate) fn split(token: &str, max_bytes: usize) -> Option<Compact<'_>> {
    if token.len() > max_bytes {
        return None;
    }
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    if h.is_empty() || c.is_empty() || s.is_empty() {
        return None;
    }
    let header = object(&B64.decode(h).ok()?)?;
    let claims = object(&B64.decode(c).ok()?)?;
    let signature = B64.decode(s).ok()?;
    Some(Compact { header, claims, signing_input: &token[..h.len() + 1 + c.len()], signature })
}

/// A JSON object whose member names are unique (`{"sub":"a","sub":"admin"}` is refused,
/// not resolved to the last value). serde_json also rejects invalid UTF-8 and deep nesting.
fn object(bytes: &[u8]) -> Option<Map<String, Value>> {
    serde_json::from_slice::<UniqueObject>(bytes).ok().map(|o| o.0)
}

struct UniqueObject(Map<String, Value>);

impl<'de> Deserialize<'de> for UniqueObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = UniqueObject;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object with unique member names")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<UniqueObject, A::Error> {
                let mut m = Map::new();
                while let Some((k, v)) = a.next_entry::<String, Value>()? {
                    if m.contains_key(&k) {
                        return Err(A::Error::custom("duplicate member name"));
                    }
                    m.insert(k, v);
                }
                Ok(UniqueObject(m))
            }
        }
        d.deserialize_map(V)
    }
}

/// An integer claim (`exp`, `nbf`, `iat`): a JSON integer from 0 to 2^53. Strings, floats,
/// negatives, `null` and arrays are errors, never "absent" (the CVE-2026-25537 class).
pub(crate) fn numeric_date(claims: &Map<String, Value>, key: &str) -> Result<Option<u64>, ()> {
    match claims.get(key) {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(v) if v <= (1 << 53) => Ok(Some(v)),
            _ => Err(()),
        },
        Some(_) => Err(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(s: &str) -> String {
        B64.encode(s)
    }

    #[test]
    fn structure() {
        let h = enc(r#"{"alg":"ES256"}"#);
        let c = enc(r#"{"sub":"a"}"#);
        let ok = format!("{h}.{c}.{}", enc("sig"));
        assert!(split(&ok, 8192).is_some());
        assert!(split(&ok, 10).is_none(), "size cap");
        for bad in [
            format!("{h}.{c}"),
            format!("{h}.{c}."),
            format!("{h}.{c}.{}.x", enc("sig")),
            format!("{h}.{c}.{}.x.y", enc("sig")),
            format!("{h}=.{c}.{}", enc("sig")),
            format!("{h}.{c}.a+b/"),
            format!(".{c}.{}", enc("sig")),
            format!("{}.{c}.{}", enc("[1]"), enc("sig")),
            format!("{}.{c}.{}", enc("\"x\""), enc("sig")),
            format!("{h}.{}.{}", enc(r#"{"sub":"a","sub":"admin"}"#), enc("sig")),
            format!(
                "{h}.{}.{}",
                enc(&format!("{}{}", "[".repeat(10_000), "]".repeat(10_000))),
                enc("s")
            ),
        ] {
            assert!(split(&bad, 1 << 20).is_none(), "{bad}");
        }
        let not_utf8 = format!("{}.{c}.{}", B64.encode(b"{\"alg\":\"\xff\"}"), enc("sig"));
        assert!(split(&not_utf8, 8192).is_none());
    }

    #[test]
    fn numeric_dates_are_strict() {
        let claims = |v: &str| object(format!(r#"{{"exp":{v}}}"#).as_bytes()).unwrap();
        assert_eq!(numeric_date(&claims("1800000000"), "exp"), Ok(Some(1_800_000_000)));
        assert_eq!(numeric_date(&claims("1"), "nbf"), Ok(None));
        for bad in ["\"99999999999\"", "1.5", "-1", "null", "[1]", "18446744073709551615"] {
            assert_eq!(numeric_date(&claims(bad), "exp"), Err(()), "{bad}");
        }
        assert!(object(br#"{"exp":1e309}"#).is_none());
    }
}
