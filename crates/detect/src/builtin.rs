//! The built-in detectors. Patterns are ASCII-only (`\d`, `\w`, `\b` are ASCII: Unicode
//! classes make the lazy DFA give up), bounded (the streaming masker's hold-back is the
//! longest possible match), and kept loose where a validator does the precise check.
//! Unbounded secrets (PEM blocks, JWTs) are *runs*: a bounded opener, then a body that
//! lasts to a terminator.

use crate::validate as v;
use crate::{ByteSet, Category, Detector, Pattern, RunEnd};

fn regex(regex: &str, validator: Option<v::Validator>, confidence: f32) -> Pattern {
    Pattern::Regex { regex: regex.to_owned(), validator, group: 0, confidence, run: None }
}

fn det(name: &str, category: Category, patterns: Vec<Pattern>) -> Detector {
    Detector { name: name.to_owned(), category, patterns }
}

fn jwt_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'=')
}

/// Every built-in detector, in priority order (earlier wins when two match at one place).
pub fn builtins() -> Vec<Detector> {
    use Category::{Pii, Secret};
    vec![
        // Secrets first: a key that happens to contain digits is a key, not a phone number.
        det("private_key", Secret, vec![Pattern::Regex {
            regex: r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY( BLOCK)?-----".into(),
            validator: None,
            group: 0,
            confidence: 1.0,
            run: Some(RunEnd::Terminator(r"-----END[A-Z0-9 ]{0,40}PRIVATE KEY( BLOCK)?-----".into())),
        }]),
        det("jwt", Secret, vec![Pattern::Regex {
            regex: r"\beyJ[A-Za-z0-9_-]{8,200}\.eyJ".into(),
            validator: Some(v::jwt_header),
            group: 0,
            confidence: 0.95,
            run: Some(RunEnd::Class(ByteSet::from_fn(jwt_char))),
        }]),
        det("anthropic_key", Secret, vec![regex(r"\bsk-ant-[a-z]{3,8}[0-9]{2}-[A-Za-z0-9_-]{20,120}", None, 1.0)]),
        det("openai_key", Secret, vec![regex(
            r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,180}",
            Some(v::high_entropy),
            0.9,
        )]),
        det("aws_access_key", Secret, vec![regex(r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b", None, 0.95)]),
        det("aws_secret_key", Secret, vec![Pattern::Regex {
            regex: r#"(?i)aws[a-z0-9_ .-]{0,20}(?:secret|sk)[a-z0-9_ .-]{0,20}["']?\s{0,3}[:=]\s{0,3}["']?([A-Za-z0-9/+]{40})(?:[^A-Za-z0-9/+=]|$)"#.into(),
            validator: Some(v::aws_secret),
            group: 1,
            confidence: 0.9,
            run: None,
        }]),
        det("github_token", Secret, vec![regex(
            r"\b(?:gh[pousr]_[A-Za-z0-9]{36,76}|github_pat_[A-Za-z0-9_]{60,100})\b",
            None,
            1.0,
        )]),
        det("slack_token", Secret, vec![
            regex(r"\bxox[abposr]-[A-Za-z0-9-]{10,100}", None, 0.95),
            regex(r"https://hooks\.slack\.com/services/[A-Za-z0-9/_]{20,100}", None, 0.95),
        ]),
        det("google_api_key", Secret, vec![regex(r"\bAIza[0-9A-Za-z_-]{35}\b", None, 0.95)]),
        det("stripe_key", Secret, vec![regex(r"\b(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{10,99}\b", None, 0.95)]),
        det("generic_secret", Secret, vec![Pattern::Regex {
            regex: r#"(?i)\b(?:password|passwd|pwd|secret|client_secret|token|api_?key|access_?key|auth)["']?\s{0,3}[:=]\s{0,3}["']?([A-Za-z0-9_+/=!@#$%^&*.~-]{8,128})"#.into(),
            validator: Some(v::high_entropy),
            group: 1,
            confidence: 0.7,
            run: None,
        }]),
        det("email", Pii, vec![regex(
            r"\b[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9][A-Za-z0-9.-]{0,150}\.[A-Za-z]{2,24}\b",
            Some(v::email),
            0.95,
        )]),
        det("credit_card", Pii, vec![regex(r"\b\d(?:[ -]?\d){12,18}\b", Some(v::credit_card), 1.0)]),
        det("iban", Pii, vec![regex(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b", Some(v::iban), 1.0)]),
        det("us_ssn", Pii, vec![regex(r"\b\d{3}[- ]\d{2}[- ]\d{4}\b", Some(v::us_ssn), 0.85)]),
        det("phone", Pii, vec![
            regex(r"\+[1-9]\d{0,2}[ .-]?(?:\(?\d{1,4}\)?[ .-]?){1,4}\d{2,4}\b", Some(v::phone_international), 0.8),
            regex(r"(?:\(\d{3}\) ?|\b\d{3}[-. ])\d{3}[-. ]\d{4}\b", Some(v::phone_nanp), 0.7),
            regex(r"\b0\d{2,4}[ -]?\d{3,4}[ -]?\d{3,4}\b", Some(v::phone_uk), 0.5),
        ]),
        det("ip_address", Pii, vec![
            regex(r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b", Some(v::ipv4), 0.8),
            // Eight groups, or fewer around one `::` (clock times like 12:30:45 are neither).
            regex(
                r"(?i)\b(?:[0-9a-f]{1,4}:){7}[0-9a-f]{1,4}\b|\b[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){0,5}::(?:[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){0,5}\b)?|::[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){0,5}\b",
                Some(v::ipv6),
                0.8,
            ),
        ]),
    ]
}

/// Names that stand for a whole category in a policy's detector lists.
pub fn category_alias(name: &str) -> Option<Category> {
    match name {
        "pii" => Some(Category::Pii),
        "secrets" | "secret" => Some(Category::Secret),
        _ => None,
    }
}

/// The shape of a pseudonym this gateway writes (`<EMAIL_3f9a2c1b>`): a response pack with
/// this detector and [`crate::Strategy::Restore`] maps them back to the caller's values.
pub fn pseudonym_detector() -> Detector {
    det("pseudonym", Category::Pii, vec![regex(r"<[A-Z][A-Z0-9_]{0,40}_[0-9a-f]{8}>", None, 1.0)])
}
