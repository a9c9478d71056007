//! Validators: run only on candidates the automaton found, never on whole texts.

use base64::Engine as _;

/// A check on a candidate's text. `false` drops the candidate.
pub type Validator = fn(&str) -> bool;

fn digits(s: &str) -> impl Iterator<Item = u32> + '_ {
    s.bytes().filter(u8::is_ascii_digit).map(|b| u32::from(b - b'0'))
}

/// The Luhn checksum over the digits of `s` (separators ignored).
pub fn luhn(s: &str) -> bool {
    let d: Vec<u32> = digits(s).collect();
    if d.is_empty() {
        return false;
    }
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(
            |(i, &x)| {
                if !i.is_multiple_of(2) { if x * 2 > 9 { x * 2 - 9 } else { x * 2 } } else { x }
            },
        )
        .sum();
    sum.is_multiple_of(10)
}

/// A payment card: 13–19 digits, one kind of separator at most, Luhn, and a known issuer range.
pub fn credit_card(s: &str) -> bool {
    let d: String = s.bytes().filter(u8::is_ascii_digit).map(char::from).collect();
    let separators: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_digit()).collect();
    if separators.windows(2).any(|w| w[0] != w[1]) {
        return false;
    }
    (13..=19).contains(&d.len()) && known_issuer(&d) && luhn(&d)
}

fn known_issuer(d: &str) -> bool {
    let p = |n: usize| d[..n].parse::<u32>().unwrap_or(0);
    let len = d.len();
    match d.as_bytes()[0] {
        b'4' => matches!(len, 13 | 16 | 19),                // Visa
        b'5' => (51..=55).contains(&p(2)) && len == 16,     // Mastercard
        b'2' => (2221..=2720).contains(&p(4)) && len == 16, // Mastercard 2-series
        b'3' => {
            matches!(p(2), 34 | 37) && len == 15                                // Amex
                || (3528..=3589).contains(&p(4)) && (16..=19).contains(&len)    // JCB
                || ((300..=305).contains(&p(3)) || matches!(p(2), 36 | 38 | 39)) && (14..=19).contains(&len) // Diners
        }
        b'6' => {
            (p(4) == 6011 || p(2) == 65 || (644..=649).contains(&p(3))) && (16..=19).contains(&len) // Discover
                || p(2) == 62 && (16..=19).contains(&len)                       // UnionPay
                || matches!(p(2), 63 | 67) && (12..=19).contains(&len) // Maestro
        }
        _ => false,
    }
}

/// IBAN: known country, that country's length, mod-97 = 1.
pub fn iban(s: &str) -> bool {
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    let Some(len) = iban_length(&compact[..2.min(compact.len())]) else { return false };
    if compact.len() != len || !compact.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return false;
    }
    let rearranged = compact[4..].bytes().chain(compact[..4].bytes());
    let mut rem: u32 = 0;
    for b in rearranged {
        let v = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 { (rem * 100 + v) % 97 } else { (rem * 10 + v) % 97 };
    }
    rem == 1
}

/// IBAN lengths by country (the SWIFT registry's list of IBAN countries).
fn iban_length(country: &str) -> Option<usize> {
    const TABLE: &[(&str, usize)] = &[
        ("AD", 24),
        ("AE", 23),
        ("AL", 28),
        ("AT", 20),
        ("AZ", 28),
        ("BA", 20),
        ("BE", 16),
        ("BG", 22),
        ("BH", 22),
        ("BR", 29),
        ("BY", 28),
        ("CH", 21),
        ("CR", 22),
        ("CY", 28),
        ("CZ", 24),
        ("DE", 22),
        ("DK", 18),
        ("DO", 28),
        ("EE", 20),
        ("EG", 29),
        ("ES", 24),
        ("FI", 18),
        ("FO", 18),
        ("FR", 27),
        ("GB", 22),
        ("GE", 22),
        ("GI", 23),
        ("GL", 18),
        ("GR", 27),
        ("GT", 28),
        ("HR", 21),
        ("HU", 28),
        ("IE", 22),
        ("IL", 23),
        ("IQ", 23),
        ("IS", 26),
        ("IT", 27),
        ("JO", 30),
        ("KW", 30),
        ("KZ", 20),
        ("LB", 28),
        ("LC", 32),
        ("LI", 21),
        ("LT", 20),
        ("LU", 20),
        ("LV", 21),
        ("MC", 27),
        ("MD", 24),
        ("ME", 22),
        ("MK", 19),
        ("MR", 27),
        ("MT", 31),
        ("MU", 30),
        ("NL", 18),
        ("NO", 15),
        ("PK", 24),
        ("PL", 28),
        ("PS", 29),
        ("PT", 25),
        ("QA", 29),
        ("RO", 24),
        ("RS", 22),
        ("SA", 24),
        ("SC", 31),
        ("SE", 24),
        ("SI", 19),
        ("SK", 24),
        ("SM", 27),
        ("ST", 25),
        ("SV", 28),
        ("TL", 23),
        ("TN", 24),
        ("TR", 26),
        ("UA", 29),
        ("VA", 22),
        ("VG", 24),
        ("XK", 20),
    ];
    TABLE.iter().find(|(c, _)| *c == country).map(|(_, n)| *n)
}

/// US SSN written AAA-GG-SSSS (or with spaces): never-issued areas (000, 666, 900–999),
/// group 00 and serial 0000 are not SSNs.
pub fn us_ssn(s: &str) -> bool {
    let seps: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_digit()).collect();
    if seps.len() != 2 || seps[0] != seps[1] {
        return false;
    }
    let d: String = s.bytes().filter(u8::is_ascii_digit).map(char::from).collect();
    let (area, group, serial) = (&d[..3], &d[3..5], &d[5..]);
    area != "000" && area != "666" && !area.starts_with('9') && group != "00" && serial != "0000"
}

pub fn ipv4(s: &str) -> bool {
    s.parse::<std::net::Ipv4Addr>().is_ok()
        && !s.split('.').any(|o| o.len() > 1 && o.starts_with('0'))
}

/// IPv6: parses, and has at least three non-empty groups (so `std::` or `a::b` in code
/// and clock times are not addresses).
pub fn ipv6(s: &str) -> bool {
    s.parse::<std::net::Ipv6Addr>().is_ok() && s.split(':').filter(|g| !g.is_empty()).count() >= 3
}

/// Email: the shape the pattern found, plus no empty labels or dots at the edges.
pub fn email(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else { return false };
    !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && domain.split('.').all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-'))
}

/// Phone numbers: 8 to 15 digits for international form; NANP area and exchange codes
/// start 2–9.
pub fn phone_international(s: &str) -> bool {
    (8..=15).contains(&digits(s).count())
}

pub fn phone_nanp(s: &str) -> bool {
    let d: Vec<u32> = digits(s).collect();
    d.len() == 10 && d[0] >= 2 && d[3] >= 2
}

pub fn phone_uk(s: &str) -> bool {
    let n = digits(s).count();
    (10..=11).contains(&n) && s.contains([' ', '-'])
}

/// Shannon entropy in bits per character.
pub fn entropy(s: &str) -> f64 {
    let mut counts = [0u32; 256];
    for b in s.bytes() {
        counts[b as usize] += 1;
    }
    let n = s.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// A secret-looking value: long enough, mixed, and random-looking (not `changeme`,
/// `${VAR}` or `<your-token>`).
pub fn high_entropy(s: &str) -> bool {
    let classes = [
        s.bytes().any(|b| b.is_ascii_lowercase()),
        s.bytes().any(|b| b.is_ascii_uppercase()),
        s.bytes().any(|b| b.is_ascii_digit()),
        s.bytes().any(|b| !b.is_ascii_alphanumeric()),
    ];
    s.len() >= 8 && classes.iter().filter(|&&c| c).count() >= 2 && entropy(s) >= 3.0
}

pub fn aws_secret(s: &str) -> bool {
    s.len() == 40 && entropy(s) >= 4.0
}

/// A JWT opener `eyJ…header….eyJ`: the header segment decodes to a JSON object with `alg`.
pub fn jwt_header(s: &str) -> bool {
    let header = s.split('.').next().unwrap_or("");
    let Ok(bytes) =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header.trim_end_matches('='))
    else {
        return false;
    };
    serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("alg").map(|a| a.is_string()))
        .unwrap_or(false)
}

/// Looks up a validator by the name a policy uses.
pub fn by_name(name: &str) -> Option<Validator> {
    Some(match name {
        "luhn" => luhn,
        "credit_card" => credit_card,
        "iban" => iban,
        "us_ssn" => us_ssn,
        "ipv4" => ipv4,
        "ipv6" => ipv6,
        "email" => email,
        "high_entropy" => high_entropy,
        _ => return None,
    })
}

pub const NAMES: &[&str] =
    &["luhn", "credit_card", "iban", "us_ssn", "ipv4", "ipv6", "email", "high_entropy"];

#[cfg(test)]
mod tests {
    use super::*;

    fn check(v: Validator, yes: &[&str], no: &[&str]) {
        for s in yes {
            assert!(v(s), "should accept {s:?}");
        }
        for s in no {
            assert!(!v(s), "should reject {s:?}");
        }
    }

    #[test]
    fn validators() {
        check(
            credit_card,
            &[
                "4111 1111 1111 1111",
                "5555-5555-5555-4444",
                "378282246310005",
                "6011111111111117",
                "3530111333300000",
            ],
            &["4111 1111 1111 1112", "4111-1111 1111-1111", "1234567812345678", "0000000000000000"],
        );
        check(
            iban,
            &[
                "GB82 WEST 1234 5698 7654 32",
                "DE89370400440532013000",
                "FR1420041010050500013M02606",
            ],
            &["GB82 WEST 1234 5698 7654 33", "XX82WEST12345698765432", "DE8937040044053201300"],
        );
        check(
            us_ssn,
            &["123-45-6789", "078 05 1120"],
            &[
                "000-12-3456",
                "666-12-3456",
                "912-12-3456",
                "123-00-4567",
                "123-45-0000",
                "123-45 6789",
            ],
        );
        check(ipv4, &["10.0.0.1", "192.168.255.254"], &["256.1.1.1", "01.2.3.4", "1.2.3"]);
        check(
            ipv6,
            &["2001:db8::8a2e:370:7334", "fe80:0:0:0:0:0:0:1"],
            &["::", "a::b", "12:30:45"],
        );
        check(
            email,
            &["jane.doe@example.com"],
            &[".jane@example.com", "ja..ne@example.com", "jane@-example.com"],
        );
        check(
            high_entropy,
            &["hQ7vT2pLx9Zw", "S3cr3t-Val_9x!"],
            &["changeme", "password", "aaaaaaaaaaaa"],
        );
        check(jwt_header, &["eyJhbGciOiJIUzI1NiJ9.eyJ"], &["eyJub3QiOiJqd3QifQ.eyJ", "eyJ!!!.eyJ"]);
        check(phone_nanp, &["(415) 555-0134", "212.555.0199"], &["(115) 555-0134", "415 155 0134"]);
        check(
            phone_international,
            &["+44 20 7946 0958", "+14155550134"],
            &["+1 23", "+1234567890123456"],
        );
    }
}
