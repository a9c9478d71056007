//! How a found value is replaced.

use crate::Info;
use ring::hmac;
use std::collections::HashMap;
use std::fmt;

/// A replacement strategy, chosen per detector by the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// `[EMAIL]`
    Placeholder,
    /// `****1234`: the last four letters or digits (placeholder for values under 8 bytes
    /// and for runs, whose end may be unknown when the mask is written).
    Partial,
    /// `[EMAIL:3f9a2c1b]`: keyed, stable per value, so records correlate without disclosing.
    Hash,
    /// `<EMAIL_3f9a2c1b>` in a request, remembered so the model's use of it can be restored
    /// in the response to the same caller.
    Pseudonym,
    /// In a response: a pseudonym this request introduced becomes its value again; any
    /// other text matching the pseudonym shape is left as it is.
    Restore,
}

impl Strategy {
    pub fn parse(s: &str) -> Option<Strategy> {
        Some(match s {
            "placeholder" => Strategy::Placeholder,
            "partial" => Strategy::Partial,
            "hash" => Strategy::Hash,
            "pseudonym" => Strategy::Pseudonym,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Placeholder => "placeholder",
            Strategy::Partial => "partial",
            Strategy::Hash => "hash",
            Strategy::Pseudonym => "pseudonym",
            Strategy::Restore => "restore",
        }
    }
}

/// The gateway's masking key: placeholders derived from it are stable across requests and
/// instances sharing the key, and reveal nothing about the value without it.
pub struct MaskKey(hmac::Key);

impl MaskKey {
    pub fn new(secret: &[u8]) -> MaskKey {
        MaskKey(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// Eight hex digits of HMAC-SHA256(key, label ‖ 0 ‖ value).
    pub fn tag(&self, label: &str, value: &str) -> String {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(label.as_bytes());
        ctx.update(&[0]);
        ctx.update(value.as_bytes());
        let tag = ctx.sign();
        tag.as_ref()[..4].iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for MaskKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MaskKey(..)")
    }
}

/// Pseudonyms one request introduced: placeholder → original value. Lives only as long as
/// the request; never stored or logged.
#[derive(Default)]
pub struct Pseudonyms(HashMap<String, String>);

impl Pseudonyms {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Pseudonyms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pseudonyms({} values)", self.0.len())
    }
}

/// A hash or pseudonym of a run covers at most this much of it, so a run masked before its
/// end was seen (streaming) gets the same tag as the whole run.
const RUN_TAG_PREFIX: usize = 256;

pub(crate) fn replace(
    info: &Info,
    run: bool,
    value: &str,
    key: &MaskKey,
    pseudonyms: &mut Pseudonyms,
) -> String {
    let tagged = if run { prefix(value, RUN_TAG_PREFIX) } else { value };
    match info.strategy {
        Strategy::Placeholder => format!("[{}]", info.label),
        Strategy::Partial => {
            let chars: Vec<char> = value.chars().collect();
            if run || chars.len() < 8 {
                format!("[{}]", info.label)
            } else {
                let last: String = chars[chars.len() - 4..].iter().collect();
                format!("****{last}")
            }
        }
        Strategy::Hash => format!("[{}:{}]", info.label, key.tag(&info.label, tagged)),
        Strategy::Pseudonym => {
            let p = format!("<{}_{}>", info.label, key.tag(&info.label, tagged));
            pseudonyms.0.entry(p.clone()).or_insert_with(|| value.to_owned());
            p
        }
        Strategy::Restore => pseudonyms.0.get(value).cloned().unwrap_or_else(|| value.to_owned()),
    }
}

fn prefix(s: &str, n: usize) -> &str {
    if s.len() <= n {
        return s;
    }
    let mut i = n;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    &s[..i]
}
