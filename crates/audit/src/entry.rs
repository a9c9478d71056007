//! Audit entries and the hash chain that links them.
//!
//! A request leaves one or two entries in its instance's chain: `request` (what will be sent
//! upstream, committed before it is sent) then `response` (how it ended), or a single
//! `record` for a request that never reached the upstream. `interrupted` is written at start
//! for a `request` whose `response` never committed because the gateway stopped.
//!
//! The entry's body is a JSON object holding everything, including its chain, sequence
//! number and kind; the searchable fields ([`Index`]) are also stored as columns, and the
//! verifier checks that the columns agree with the signed body.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Request,
    Response,
    Record,
    Interrupted,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Request => "request",
            Kind::Response => "response",
            Kind::Record => "record",
            Kind::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "request" => Kind::Request,
            "response" => Kind::Response,
            "record" => Kind::Record,
            "interrupted" => Kind::Interrupted,
            _ => return None,
        })
    }
}

/// The searchable fields of an entry: in the signed body and in indexed columns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    pub subject: Option<String>,
    pub groups: Vec<String>,
    pub model: Option<String>,
    pub decision: Option<String>,
    pub rules: Vec<String>,
    pub status: Option<u16>,
}

/// An entry before it has a place in the chain.
#[derive(Debug, Clone)]
pub struct Draft {
    pub kind: Kind,
    pub request_id: String,
    /// Wall-clock milliseconds; informational only (order is the sequence number).
    pub at_ms: i64,
    pub index: Index,
    /// Everything else about the request (no prompt text, tokens or keys), as JSON text.
    pub detail: Detail,
}

/// An entry's `detail`, serialised once where it is made (the writer copies it into the
/// signed body as it is).
pub type Detail = Box<serde_json::value::RawValue>;

/// `value` as an entry's detail.
pub fn detail(value: &impl Serialize) -> Detail {
    // Plain data with string keys always serialises; `null` stands in if it ever did not.
    serde_json::value::to_raw_value(value)
        .unwrap_or_else(|_| serde_json::value::RawValue::NULL.to_owned())
}

/// The signed body of an entry. Field order is the serialisation order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Body {
    pub v: u32,
    pub chain: String,
    pub seq: u64,
    pub kind: Kind,
    pub request_id: String,
    pub at_ms: i64,
    #[serde(flatten)]
    pub index: Index,
    pub detail: serde_json::Value,
}

/// The body format version written today.
pub const FORMAT_VERSION: u32 = 1;

/// [`Body`] as it is written: the same fields in the same order, `detail` copied as it is.
#[derive(Serialize)]
struct Signed<'a> {
    v: u32,
    chain: &'a str,
    seq: u64,
    kind: Kind,
    request_id: &'a str,
    at_ms: i64,
    #[serde(flatten)]
    index: &'a Index,
    detail: &'a serde_json::value::RawValue,
}

/// An entry with its place in the chain: what a store writes.
#[derive(Debug, Clone)]
pub struct Sealed {
    /// The entry's fields (its `detail` is left out: it lives in `body`).
    pub entry: Body,
    /// The exact bytes the hash covers.
    pub body: String,
    pub prev_hash: String,
    pub hash: String,
}

/// `hex(SHA-256("airlock-audit-v1" 0x00 prev_hash 0x00 body))`.
pub fn entry_hash(prev_hash: &str, body: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"airlock-audit-v1\0");
    ctx.update(prev_hash.as_bytes());
    ctx.update(b"\0");
    ctx.update(body.as_bytes());
    crate::hex(ctx.finish().as_ref())
}

/// The "previous hash" of a chain's first entry: bound to the chain's name, so entries cannot
/// be moved between chains.
pub fn genesis(chain: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"airlock-audit-genesis\0");
    ctx.update(chain.as_bytes());
    crate::hex(ctx.finish().as_ref())
}

/// Chain names appear in checkpoint origins: 1–64 of `[A-Za-z0-9._-]`.
pub fn valid_chain_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A chain's head: how many entries it has and the hash of the last one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub name: String,
    pub seq: u64,
    pub head: String,
}

impl Chain {
    pub fn start(name: &str) -> Chain {
        Chain { name: name.to_owned(), seq: 0, head: genesis(name) }
    }

    /// Seal `drafts` after this head. Returns the entries and the head they lead to; the
    /// caller adopts the new head only once the entries are committed.
    pub fn seal(&self, drafts: Vec<Draft>) -> (Vec<Sealed>, Chain) {
        let mut next = self.clone();
        let sealed = drafts
            .into_iter()
            .map(|d| {
                next.seq += 1;
                let signed = Signed {
                    v: FORMAT_VERSION,
                    chain: &next.name,
                    seq: next.seq,
                    kind: d.kind,
                    request_id: &d.request_id,
                    at_ms: d.at_ms,
                    index: &d.index,
                    detail: &d.detail,
                };
                // Serialising plain data into a String cannot fail.
                let body = serde_json::to_string(&signed).unwrap_or_default();
                let entry = Body {
                    v: FORMAT_VERSION,
                    chain: next.name.clone(),
                    seq: next.seq,
                    kind: d.kind,
                    request_id: d.request_id,
                    at_ms: d.at_ms,
                    index: d.index,
                    detail: serde_json::Value::Null,
                };
                let hash = entry_hash(&next.head, &body);
                let prev_hash = std::mem::replace(&mut next.head, hash.clone());
                Sealed { entry, body, prev_hash, hash }
            })
            .collect();
        (sealed, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn draft(id: &str) -> Draft {
        Draft {
            kind: Kind::Record,
            request_id: id.to_owned(),
            at_ms: 1,
            index: Index { subject: Some("alice".into()), ..Index::default() },
            detail: detail(&serde_json::json!({"route": "messages"})),
        }
    }

    #[test]
    fn sealing_links_entries_and_leaves_the_head_alone() {
        let chain = Chain::start("a");
        let (sealed, next) = chain.seal(vec![draft("r1"), draft("r2")]);
        assert_eq!(chain.seq, 0);
        assert_eq!(next.seq, 2);
        assert_eq!((sealed[1].entry.seq, sealed[1].entry.request_id.as_str()), (2, "r2"));
        assert_eq!(sealed[0].prev_hash, genesis("a"));
        assert_eq!(sealed[1].prev_hash, sealed[0].hash);
        assert_eq!(next.head, sealed[1].hash);
        assert_eq!(sealed[1].hash, entry_hash(&sealed[1].prev_hash, &sealed[1].body));
        let body: Body = serde_json::from_str(&sealed[1].body).unwrap();
        assert_eq!((body.seq, body.chain.as_str(), body.request_id.as_str()), (2, "a", "r2"));
        assert_ne!(genesis("a"), genesis("b"));
    }

    #[test]
    fn chain_names() {
        assert!(valid_chain_name("gw-1.eu_west"));
        assert!(!valid_chain_name(""));
        assert!(!valid_chain_name("a/b"));
        assert!(!valid_chain_name(&"x".repeat(65)));
    }
}
