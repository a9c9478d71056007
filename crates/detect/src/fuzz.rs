//! Entry points for the fuzz targets (`fuzz/`), also replayed over the checked-in corpus by
//! the normal test suite, so a crash found once stays fixed.

use crate::{MaskKey, Pack, PackOptions, Pseudonyms, Strategy, StreamMasker, builtins};
use std::sync::{Arc, LazyLock};

static PACK: LazyLock<Arc<Pack>> = LazyLock::new(|| {
    let all: Vec<_> = builtins().into_iter().map(|d| (d, Strategy::Placeholder)).collect();
    Arc::new(
        Pack::build(&all, PackOptions { max_match_bytes: 256, max_run_hold_bytes: 1024 })
            .expect("built-ins build"),
    )
});

/// `data`: the first byte picks how the text is cut into deltas, the rest is the text (lossy
/// UTF-8). Panics if streamed masking differs from whole-text masking, or if any released
/// piece holds a raw fragment (8 bytes or more) of a value that was masked.
pub fn stream_equivalence(data: &[u8]) {
    let Some((&seed, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    let key = MaskKey::new(b"fuzz");
    let (whole, findings) = PACK.mask(&text, &key, &mut Pseudonyms::default());
    let mut m = StreamMasker::new(Arc::clone(&PACK));
    let mut ps = Pseudonyms::default();
    let mut out = String::new();
    let mut at = 0;
    let mut step = usize::from(seed % 31) + 1;
    while at < text.len() {
        let mut end = (at + step).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        let piece = m.push(&text[at..end], &key, &mut ps);
        out.push_str(&piece);
        at = end;
        step = (step * 7 + usize::from(seed)) % 53 + 1;
    }
    out.push_str(&m.finish(&key, &mut ps));
    assert_eq!(out, whole, "streamed masking differs from whole-text masking");
    for f in findings {
        let value = &text[f.start..f.end];
        if value.len() >= 8 && !whole.contains(value) {
            for w in value.as_bytes().windows(8) {
                if let Ok(w) = std::str::from_utf8(w) {
                    assert!(!out.contains(w) || whole.contains(w), "fragment {w:?} released");
                }
            }
        }
    }
}

/// Every detector over arbitrary bytes: findings are in order, inside the text, on
/// character boundaries, and masking never panics.
pub fn detectors(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut last = 0;
    for f in PACK.find_all(&text) {
        assert!(f.start >= last && f.start < f.end && f.end <= text.len());
        assert!(text.is_char_boundary(f.start) && text.is_char_boundary(f.end));
        last = f.end;
    }
    let _ = PACK.mask(&text, &MaskKey::new(b"fuzz"), &mut Pseudonyms::default());
}
