//! A deterministic "LLM-like" corpus: prose, code, JSON lines and logs, with a planted PII or
//! secret value every ~30 lines and near-misses (failing checksums, versions, times, hashes)
//! in between. Shared by the scan benchmark and the labelled evaluation set.

#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407))
    }

    pub fn next_u64(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    fn alnum(&mut self, n: usize, set: &[u8]) -> String {
        (0..n).map(|_| set[self.below(set.len())] as char).collect()
    }
}

const WORDS: &[&str] = &[
    "the", "agent", "reads", "file", "and", "calls", "tool", "with", "input", "result", "model",
    "returns", "function", "value", "request", "response", "cache", "token", "stream", "error",
    "config", "deploy", "service", "version", "latency", "budget", "review", "policy", "user",
    "session", "build", "test", "data", "schema", "table", "index", "query", "server", "client",
];
const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const DIGITS: &[u8] = b"0123456789";

fn luhn_complete(prefix: &str, len: usize, rng: &mut Rng) -> String {
    let mut d: Vec<u32> = prefix.bytes().map(|b| u32::from(b - b'0')).collect();
    while d.len() < len - 1 {
        d.push(rng.below(10) as u32);
    }
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| if i % 2 == 0 { if x * 2 > 9 { x * 2 - 9 } else { x * 2 } } else { x })
        .sum();
    d.push((10 - sum % 10) % 10);
    d.iter().map(|x| char::from(b'0' + *x as u8)).collect()
}

fn iban(rng: &mut Rng) -> String {
    // A German IBAN: DEkk + 18 digits, check digits computed.
    let bban: String = (0..18).map(|_| char::from(b'0' + rng.below(10) as u8)).collect();
    let numeric = format!("{bban}131400"); // D=13 E=14, then 00
    let rem = numeric.bytes().fold(0u32, |r, b| (r * 10 + u32::from(b - b'0')) % 97);
    format!("DE{:02}{bban}", 98 - rem)
}

/// A planted value: (detector, value).
pub fn planted(rng: &mut Rng) -> (&'static str, String) {
    match rng.below(19) {
        0 => (
            "email",
            format!(
                "{}.{}@{}.com",
                rng.pick(WORDS),
                rng.pick(WORDS),
                rng.pick(&["example", "corp", "mail"])
            ),
        ),
        1 => ("credit_card", {
            let c = luhn_complete(rng.pick(&["4", "51", "6011"]), 16, rng);
            if rng.below(2) == 0 {
                c
            } else {
                format!("{} {} {} {}", &c[..4], &c[4..8], &c[8..12], &c[12..])
            }
        }),
        2 => (
            "us_ssn",
            format!("{}-{:02}-{:04}", 100 + rng.below(500), 1 + rng.below(98), 1 + rng.below(9998)),
        ),
        3 => (
            "phone",
            format!(
                "({}{}{}) {}{}{}-{:04}",
                2 + rng.below(8),
                rng.below(10),
                rng.below(10),
                2 + rng.below(8),
                rng.below(10),
                rng.below(10),
                rng.below(10000)
            ),
        ),
        4 => ("phone", format!("+44 20 {} {}", 7000 + rng.below(2999), 1000 + rng.below(8999))),
        5 => ("iban", iban(rng)),
        6 => (
            "ip_address",
            format!("10.{}.{}.{}", rng.below(256), rng.below(256), 1 + rng.below(254)),
        ),
        7 => (
            "aws_access_key",
            format!("AKIA{}", rng.alnum(16, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")),
        ),
        8 => ("github_token", format!("ghp_{}", rng.alnum(36, ALNUM))),
        9 => ("anthropic_key", format!("sk-ant-api03-{}AA", rng.alnum(93, ALNUM))),
        10 => ("slack_token", format!("xoxb-{}-{}", rng.alnum(12, DIGITS), rng.alnum(24, ALNUM))),
        11 => ("google_api_key", format!("AIza{}", rng.alnum(35, ALNUM))),
        12 => ("stripe_key", format!("sk_live_{}", rng.alnum(24, ALNUM))),
        13 => ("credit_card", luhn_complete("37", 15, rng)),
        14 => ("openai_key", format!("sk-proj-{}", rng.alnum(48, ALNUM))),
        15 => ("jwt", {
            let b64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            format!(
                "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ{}.{}",
                rng.alnum(40, b64),
                rng.alnum(43, b64)
            )
        }),
        16 => (
            "private_key",
            format!(
                "-----BEGIN PRIVATE KEY-----\n{}\n{}\n-----END PRIVATE KEY-----",
                rng.alnum(64, ALNUM),
                rng.alnum(40, ALNUM)
            ),
        ),
        17 => (
            "aws_secret_key",
            rng.alnum(40, b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/+"),
        ),
        _ => ("generic_secret", rng.alnum(20, ALNUM)),
    }
}

/// A near-miss: looks like something, is not (its label is "none").
pub fn near_miss(rng: &mut Rng) -> String {
    match rng.below(16) {
        0 => {
            let mut c = luhn_complete("4", 16, rng);
            let last = (c.pop().unwrap() as u8 - b'0' + 1) % 10;
            c.push(char::from(b'0' + last));
            c
        }
        1 => format!("v{}.{}.{}", rng.below(20), rng.below(50), rng.below(100)),
        2 => format!("{:02}:{:02}:{:02}", rng.below(24), rng.below(60), rng.below(60)),
        3 => format!("2026-{:02}-{:02}", 1 + rng.below(12), 1 + rng.below(28)),
        4 => format!("sha256:{}", rng.alnum(64, b"0123456789abcdef")),
        5 => format!("000-{:02}-{:04}", 1 + rng.below(98), 1 + rng.below(9998)),
        6 => format!("order #{}", rng.alnum(9, DIGITS)),
        7 => "password=changeme".to_owned(),
        8 => format!("user@{}", rng.pick(WORDS)),
        9 => format!("{}::{}", rng.pick(&["std", "crate", "self"]), rng.pick(WORDS)),
        // Honest hard cases: these *can* be reported (see docs/detectors.md).
        10 => format!(
            "build {}.{}.{}.{}",
            rng.below(10),
            rng.below(30),
            rng.below(100),
            rng.below(1000)
        ),
        11 => format!("id {}", rng.alnum(16, DIGITS)),
        12 => format!(
            "{}-{}-{}-{}-{}",
            rng.alnum(8, b"0123456789abcdef"),
            rng.alnum(4, b"0123456789abcdef"),
            rng.alnum(4, b"0123456789abcdef"),
            rng.alnum(4, b"0123456789abcdef"),
            rng.alnum(12, b"0123456789abcdef")
        ),
        13 => format!("commit {}", rng.alnum(40, b"0123456789abcdef")),
        14 => format!("blob {}", rng.alnum(44, ALNUM)),
        _ => format!(
            "ticket {}-{}-{}",
            rng.alnum(3, DIGITS),
            rng.alnum(2, DIGITS),
            rng.alnum(5, DIGITS)
        ),
    }
}

fn sentence(rng: &mut Rng, n: usize) -> String {
    (0..n).map(|_| rng.pick(WORDS)).collect::<Vec<_>>().join(" ")
}

/// One line of the corpus, with the values planted in it.
pub fn line(rng: &mut Rng, non_ascii: bool) -> (String, Vec<(&'static str, String)>) {
    line_with(rng, non_ascii, 30)
}

/// A line with a planted value one time in `plant_every`.
pub fn line_with(
    rng: &mut Rng,
    non_ascii: bool,
    plant_every: usize,
) -> (String, Vec<(&'static str, String)>) {
    let mut labels = Vec::new();
    let value = |rng: &mut Rng, labels: &mut Vec<(&'static str, String)>| {
        if rng.below(plant_every) == 0 {
            let (d, v) = planted(rng);
            labels.push((d, v.clone()));
            v
        } else if rng.below(8) == 0 {
            near_miss(rng)
        } else {
            sentence(rng, 1)
        }
    };
    let text = match rng.below(4) {
        0 => {
            let extra =
                if non_ascii && rng.below(3) == 0 { " naïve café résumé 数据" } else { "" };
            let v = value(rng, &mut labels);
            let n = 6 + rng.below(8);
            let (a, b) = (sentence(rng, n), sentence(rng, 4));
            format!("{a} {v} {b}{extra}.")
        }
        1 => {
            let v = value(rng, &mut labels);
            let (a, b, n) = (rng.pick(WORDS), rng.pick(WORDS), rng.below(1000));
            format!("    let {a} = {b}(\"{v}\", {n});")
        }
        2 => {
            let v = value(rng, &mut labels);
            let (a, b, n) = (rng.pick(WORDS), rng.pick(WORDS), rng.below(100000));
            // A secret-named key would make the generic assignment detector claim any value.
            let a =
                if matches!(a, "token" | "session") && !labels.is_empty() { "field" } else { a };
            format!("{{\"{a}\": \"{v}\", \"{b}\": {n}, \"ok\": true}}")
        }
        _ => {
            let v = value(rng, &mut labels);
            let level = rng.pick(&["INFO", "WARN", "DEBUG", "ERROR"]);
            let (m, sec, words, ms) =
                (rng.below(60), rng.below(60), sentence(rng, 3), rng.below(900));
            format!("2026-11-25T04:{m:02}:{sec:02}Z {level} {words} {v} in {ms}ms")
        }
    };
    // generic_secret needs its assignment form to be a finding; aws_secret_key its context.
    let text = match labels.first() {
        Some(("generic_secret", v)) => text.replacen(v.as_str(), &format!("api_key={v}"), 1),
        Some(("aws_secret_key", v)) => {
            text.replacen(v.as_str(), &format!("aws_secret_access_key = {v}"), 1)
        }
        _ => text,
    };
    let _ = UPPER;
    (text, labels)
}

/// About `bytes` of corpus text.
pub fn corpus(seed: u64, bytes: usize, non_ascii: bool) -> String {
    let mut rng = Rng::new(seed);
    let mut out = String::with_capacity(bytes + 256);
    while out.len() < bytes {
        out.push_str(&line(&mut rng, non_ascii).0);
        out.push('\n');
    }
    out
}
