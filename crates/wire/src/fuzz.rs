//! Entries for the fuzz targets (`fuzz/`), replayed over the checked-in corpora by the normal
//! tests.

use crate::{Decoder, encode};

/// `data` as an upstream event stream: decoded whole and in pieces (cut where the first byte
/// says), both give the same events; each event re-encodes to a frame that decodes back to it.
pub fn sse(data: &[u8]) {
    let Some((&seed, rest)) = data.split_first() else { return };
    let mut whole = Decoder::new(1 << 16);
    let a = whole.push(rest);
    let mut pieces = Decoder::new(1 << 16);
    let mut b = Vec::new();
    let mut failed = false;
    for chunk in rest.chunks(usize::from(seed % 17) + 1) {
        match pieces.push(chunk) {
            Ok(events) => b.extend(events),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    match a {
        Ok(events) if !failed => {
            assert_eq!(events, b, "split changed the events");
            for e in &events {
                let mut d = Decoder::new(1 << 20);
                let again = d.push(&encode(e)).expect("an encoded frame decodes");
                assert_eq!(again.len(), 1, "one frame, one event");
                assert_eq!(again[0].data, e.data);
                assert_eq!(again[0].effective_name(), e.effective_name());
            }
        }
        Ok(_) => panic!("pieces failed where the whole succeeded"),
        Err(_) => {}
    }
}

/// `data` as a Messages request body: inspected, never a panic.
pub fn request(data: &[u8]) {
    let _ = crate::inspect_messages(data);
}
