use airlock_detect::{
    Detector, MaskKey, Pack, PackOptions, Pattern, Pseudonyms, Strategy, StreamMasker, builtins,
    pseudonym_detector,
};
use proptest::prelude::{ProptestConfig, prop, prop_assert, prop_assert_eq, proptest};
use proptest::strategy::Strategy as _;
use std::sync::{Arc, LazyLock};

fn pack_of(detectors: Vec<Detector>, strategy: Strategy) -> Pack {
    let with: Vec<_> = detectors.into_iter().map(|d| (d, strategy)).collect();
    Pack::build(&with, PackOptions::default()).expect("pack builds")
}

static ALL: LazyLock<Arc<Pack>> = LazyLock::new(|| {
    let mut d = builtins();
    d.push(Detector {
        name: "codenames".into(),
        category: airlock_detect::Category::Pii,
        patterns: vec![Pattern::Keywords(vec!["bluebird".into(), "night jar".into()])],
    });
    Arc::new(pack_of(d, Strategy::Placeholder))
});

fn key() -> MaskKey {
    MaskKey::new(b"test key")
}

/// `text` → the (detector, value) pairs the built-in pack finds.
fn check(text: &str, expected: &[(&str, &str)]) {
    let found: Vec<(String, String)> = ALL
        .find_all(text)
        .iter()
        .map(|f| (ALL.detectors()[f.detector].name.clone(), text[f.start..f.end].to_owned()))
        .collect();
    let expected: Vec<(String, String)> =
        expected.iter().map(|(d, v)| (d.to_string(), v.to_string())).collect();
    assert_eq!(found, expected, "in {text:?}");
}

const PEM: &str = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA1c7+9z5Pad7OejecsQ0bu3aumB3GGkN5UoOeVYxBa3OMm8dQ\n-----END RSA PRIVATE KEY-----";
const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";

#[test]
fn built_in_detectors_find_values_and_skip_near_misses() {
    check("mail jane.doe@example.com now", &[("email", "jane.doe@example.com")]);
    check(
        "card 4111 1111 1111 1111, bad 4111 1111 1111 1112",
        &[("credit_card", "4111 1111 1111 1111")],
    );
    check("IBAN GB82 WEST 1234 5698 7654 32.", &[("iban", "GB82 WEST 1234 5698 7654 32")]);
    check("ssn 078-05-1120 not 000-12-3456", &[("us_ssn", "078-05-1120")]);
    check(
        "call (415) 555-0134 or +44 20 7946 0958",
        &[("phone", "(415) 555-0134"), ("phone", "+44 20 7946 0958")],
    );
    check(
        "hosts 10.0.0.1 and 2001:db8::8a2e:370:7334; version 1.2.3; std::vec",
        &[("ip_address", "10.0.0.1"), ("ip_address", "2001:db8::8a2e:370:7334")],
    );
    check("key AKIAIOSFODNN7EXAMPLE here", &[("aws_access_key", "AKIAIOSFODNN7EXAMPLE")]);
    check(
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        &[("aws_secret_key", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")],
    );
    check(
        "t ghp_abcdefghijklmnopqrstuvwxyzABCDEFGHIJ done",
        &[("github_token", "ghp_abcdefghijklmnopqrstuvwxyzABCDEFGHIJ")],
    );
    let ant = format!("sk-ant-api03-{}AA", "a1B2c3D4e5".repeat(9));
    check(&format!("ANTHROPIC_API_KEY={ant}"), &[("anthropic_key", &ant)]);
    check(
        "OPENAI sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv",
        &[("openai_key", "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv")],
    );
    check("slack xoxb-1234567890-abcdefghij", &[("slack_token", "xoxb-1234567890-abcdefghij")]);
    check(
        "g AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q",
        &[("google_api_key", "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q")],
    );
    check(
        "stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc",
        &[("stripe_key", "sk_live_4eC39HqLyjWDarjtT1zdp7dc")],
    );
    check("password=hQ7vT2pLx9Zw and password=changeme", &[("generic_secret", "hQ7vT2pLx9Zw")]);
    check(&format!("key:\n{PEM}\nend"), &[("private_key", PEM)]);
    check(&format!("Bearer {JWT} ok"), &[("jwt", JWT)]);
    check(
        "Project BlueBird and NIGHT JAR, not bluebirds",
        &[("codenames", "BlueBird"), ("codenames", "NIGHT JAR")],
    );
    check("nothing here: 12:30:45, v2.0, 2026-11-25, order #123456", &[]);
}

#[test]
fn unbounded_and_empty_custom_patterns_are_refused() {
    for (regex, message) in
        [(r"EMP-\d+", "no maximum length"), (r"a?", "empty string"), (r"[a-z]{300}", "more than")]
    {
        let d = Detector {
            name: "custom".into(),
            category: airlock_detect::Category::Pii,
            patterns: vec![Pattern::Regex {
                regex: regex.into(),
                validator: None,
                group: 0,
                confidence: 1.0,
                run: None,
            }],
        };
        let e = Pack::build(&[(d, Strategy::Placeholder)], PackOptions::default()).unwrap_err();
        assert!(e.message.contains(message), "{regex}: {e}");
    }
}

#[test]
fn strategies() {
    let k = key();
    let mut ps = Pseudonyms::default();
    let text = "mail jane@example.com card 4111111111111111";
    for (strategy, expected) in [
        (Strategy::Placeholder, "mail [EMAIL] card [CREDIT_CARD]"),
        (Strategy::Partial, "mail ****.com card ****1111"),
    ] {
        let p = pack_of(builtins(), strategy);
        assert_eq!(p.mask(text, &k, &mut ps).0, expected);
    }
    let hashed = pack_of(builtins(), Strategy::Hash).mask(text, &k, &mut ps).0;
    assert!(
        hashed.starts_with("mail [EMAIL:") && hashed.contains(" card [CREDIT_CARD:"),
        "{hashed}"
    );
    assert!(
        !hashed.contains("jane")
            && hashed.len() == "mail [EMAIL:12345678] card [CREDIT_CARD:12345678]".len()
    );
    // Pseudonyms: stable per value and key, different for another key, restored on the way back.
    let p = pack_of(builtins(), Strategy::Pseudonym);
    let (once, _) = p.mask(text, &k, &mut ps);
    let (again, _) = p.mask(text, &k, &mut Pseudonyms::default());
    assert_eq!(once, again);
    assert_ne!(once, p.mask(text, &MaskKey::new(b"other"), &mut Pseudonyms::default()).0);
    assert!(!once.contains("jane@example.com") && once.contains("<EMAIL_"), "{once}");
    let restore = pack_of(vec![pseudonym_detector()], Strategy::Restore);
    let reply =
        format!("I wrote to {} and <EMAIL_00000000>", &once[5..once.find(" card").unwrap()]);
    assert_eq!(
        restore.mask(&reply, &k, &mut ps).0,
        "I wrote to jane@example.com and <EMAIL_00000000>"
    );
}

fn masked_whole(text: &str) -> String {
    ALL.mask(text, &key(), &mut Pseudonyms::default()).0
}

fn masked_in_pieces(text: &str, cuts: &[usize]) -> (String, Vec<String>) {
    let k = key();
    let mut ps = Pseudonyms::default();
    let mut m = StreamMasker::new(Arc::clone(&ALL));
    let mut pieces = Vec::new();
    let mut last = 0;
    for &c in cuts {
        let c = c.min(text.len()).max(last);
        if !text.is_char_boundary(c) {
            continue;
        }
        pieces.push(m.push(&text[last..c], &k, &mut ps));
        let runs = text.contains("eyJ") || text.contains("BEGIN");
        assert!(m.held() <= ALL.max_match_len() + 4 || runs, "held {}", m.held());
        last = c;
    }
    pieces.push(m.push(&text[last..], &k, &mut ps));
    pieces.push(m.finish(&k, &mut ps));
    (pieces.concat(), pieces)
}

fn corpus_piece() -> impl proptest::strategy::Strategy<Value = String> {
    prop::sample::select(vec![
        "jane.doe@example.com",
        "4111 1111 1111 1111",
        "GB82 WEST 1234 5698 7654 32",
        "078-05-1120",
        "(415) 555-0134",
        "+44 20 7946 0958",
        "10.0.0.1",
        "AKIAIOSFODNN7EXAMPLE",
        PEM,
        JWT,
        "password=hQ7vT2pLx9Zw",
        "bluebird",
        " ",
        "\n",
        "héllo wörld ",
        "日本語のテキスト",
        "4111 1111 1111 1112",
        "{\"k\": \"v\"}",
        "version 1.2.3 ",
        "@",
        "-----",
        "eyJ",
        "sk-",
        "😀",
    ])
    .prop_map(str::to_owned)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// However a text is split into deltas, streamed masking equals whole-text masking, and
    /// no released piece holds a fragment of a masked value.
    #[test]
    fn streamed_equals_whole(parts in prop::collection::vec(corpus_piece(), 1..24), cuts in prop::collection::vec(0usize..4000, 0..40)) {
        let text = parts.concat();
        let mut cuts = cuts;
        cuts.sort_unstable();
        let whole = masked_whole(&text);
        let (streamed, pieces) = masked_in_pieces(&text, &cuts);
        prop_assert_eq!(&streamed, &whole);
        let secrets = ["jane.doe", "4111 1111 1111 1111", "AKIAIOSFODNN7", "hQ7vT2pLx9Zw", "MIIEowIBAAKCAQEA", "dozjgNryP4J3"];
        let mut released = String::new();
        for p in &pieces {
            released.push_str(p);
            for s in secrets {
                // A raw fragment (any 6-byte window of a secret) never appears in what was released.
                for w in s.as_bytes().windows(6) {
                    let w = std::str::from_utf8(w).unwrap();
                    prop_assert!(!released.contains(w) || whole.contains(w), "fragment {w:?} of {s:?} released");
                }
            }
        }
    }
}

#[test]
fn byte_by_byte_and_long_runs() {
    let long_jwt = format!("{}{}", JWT, "A".repeat(40_000));
    for text in [
        format!("a {PEM} b jane@example.com"),
        format!("x {long_jwt} y 4111 1111 1111 1111"),
        format!(
            "{}\n{}\nmore 078-05-1120",
            PEM.replace("-----END RSA PRIVATE KEY-----", ""),
            "Z".repeat(30_000)
        ),
    ] {
        let whole = masked_whole(&text);
        let every: Vec<usize> = (1..text.len()).collect();
        assert_eq!(masked_in_pieces(&text, &every).0, whole);
        let chunks: Vec<usize> = (1..text.len()).step_by(977).collect();
        assert_eq!(masked_in_pieces(&text, &chunks).0, whole);
    }
}

/// The labelled evaluation set (eval/labelled.jsonl): every detector keeps its precision and
/// recall floors, so a pattern change that loses values or floods false positives fails here.
#[test]
fn the_labelled_set_keeps_precision_and_recall() {
    let set = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/eval/labelled.jsonl"))
        .unwrap();
    assert!(set.lines().count() >= 5000);
    let stats = airlock_detect::eval::evaluate(&set);
    for (name, (tp, fp, fneg)) in &stats {
        assert!(*tp >= 50, "{name}: only {tp} labelled values");
        let precision = f64::from(*tp) / f64::from(tp + fp);
        let recall = f64::from(*tp) / f64::from(tp + fneg);
        assert!(
            precision >= 0.9 && recall >= 0.95,
            "{name}: precision {precision:.3} recall {recall:.3}\n{}",
            airlock_detect::eval::table(&stats)
        );
    }
}

/// The fuzz corpora (fuzz/corpus/, seeds plus anything a fuzz run found) replayed as normal
/// tests: a crash found once stays fixed.
#[test]
fn fuzz_corpora_replay() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    for (target, run) in [
        ("stream_masker", airlock_detect::fuzz::stream_equivalence as fn(&[u8])),
        ("detectors", airlock_detect::fuzz::detectors),
    ] {
        let mut n = 0;
        for entry in std::fs::read_dir(root.join(target)).unwrap() {
            run(&std::fs::read(entry.unwrap().path()).unwrap());
            n += 1;
        }
        assert!(n >= 5, "{target}: {n} inputs");
    }
}
