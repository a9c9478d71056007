//! Server-sent events: an incremental, bounded decoder and the matching encoder.
//!
//! The decoder follows the WHATWG event-stream rules (lines end in LF, CRLF or CR; `data`
//! lines join with LF; a blank line dispatches; `:` starts a comment) and keeps each field's
//! text exactly as sent, so JSON whitespace padding inside `data:` survives a relay.
//!
//! Invariant: the events the decoder yields do not depend on how the byte stream was split
//! into chunks (property-tested below).
//! Invariant: memory is bounded by `max_event_bytes`; a longer line or event is an error,
//! never an unbounded buffer.

use bytes::{Bytes, BytesMut};

/// One dispatched event. `name` is the `event:` field; Anthropic always sends one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    pub name: Option<String>,
    pub data: String,
    pub id: Option<String>,
    pub retry: Option<String>,
}

impl Event {
    pub fn named(name: &str, data: impl Into<String>) -> Event {
        Event { name: Some(name.to_owned()), data: data.into(), id: None, retry: None }
    }

    /// The name the event goes out under. SDKs drop frames without an `event:` line, so an
    /// unnamed upstream frame is named after its JSON `type` (the Anthropic convention that
    /// `data.type` equals the event name), or `message`, the SSE default, when it has none —
    /// or when the `type` is not a plain token: a `type` holding a line break would otherwise
    /// write extra SSE lines into the frame (found by the sse_decoder fuzz target).
    pub fn effective_name(&self) -> String {
        if let Some(name) = &self.name {
            return name.clone();
        }
        serde_json::from_str::<serde_json::Value>(&self.data)
            .ok()
            .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned))
            .filter(|t| {
                !t.is_empty()
                    && t.len() <= 64
                    && t.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
            })
            .unwrap_or_else(|| "message".to_owned())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecoderError {
    #[error("event stream line or event exceeds {limit} bytes")]
    TooLarge { limit: usize },
    #[error("event stream is not valid UTF-8")]
    InvalidUtf8,
}

/// Incremental SSE decoder. Feed it chunks with [`Decoder::push`]; it returns the events each
/// chunk completes.
#[derive(Debug)]
pub struct Decoder {
    buf: BytesMut,
    /// Bytes of `buf` already known to hold no line terminator.
    scanned: usize,
    max_event_bytes: usize,
    /// The previous chunk ended in CR: a leading LF in the next one belongs to it.
    pending_cr: bool,
    at_start: bool,
    current: Event,
    has_data: bool,
    event_bytes: usize,
}

impl Decoder {
    pub fn new(max_event_bytes: usize) -> Decoder {
        Decoder {
            buf: BytesMut::new(),
            scanned: 0,
            max_event_bytes,
            pending_cr: false,
            at_start: true,
            current: Event::default(),
            has_data: false,
            event_bytes: 0,
        }
    }

    /// Feed bytes; returns every event completed by them, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Event>, DecoderError> {
        let mut chunk = chunk;
        if self.pending_cr && !chunk.is_empty() {
            self.pending_cr = false;
            if let Some(rest) = chunk.strip_prefix(b"\n") {
                chunk = rest;
            }
        }
        self.buf.extend_from_slice(chunk);
        if self.at_start && self.buf.len() >= 3 {
            if self.buf.starts_with(b"\xEF\xBB\xBF") {
                let _ = self.buf.split_to(3);
                // What was scanned for a line end included the BOM (found by fuzzing).
                self.scanned = 0;
            }
            self.at_start = false;
        }
        let mut events = Vec::new();
        loop {
            let Some(pos) = self.buf[self.scanned..].iter().position(|&b| b == b'\n' || b == b'\r')
            else {
                self.scanned = self.buf.len();
                if self.buf.len() > self.max_event_bytes {
                    return Err(DecoderError::TooLarge { limit: self.max_event_bytes });
                }
                return Ok(events);
            };
            let end = self.scanned + pos;
            let terminator = self.buf[end];
            let mut consumed = end + 1;
            if terminator == b'\r' {
                match self.buf.get(end + 1) {
                    Some(b'\n') => consumed += 1,
                    Some(_) => {}
                    // A CR at the very end: its LF, if any, arrives with the next chunk.
                    None => self.pending_cr = true,
                }
            }
            let line = self.buf.split_to(consumed);
            self.scanned = 0;
            self.at_start = false;
            if let Some(event) = self.line(&line[..end])? {
                events.push(event);
            }
        }
    }

    /// True when bytes of an unfinished event are buffered: a stream that ends here was cut.
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty() || self.has_data || self.current.name.is_some()
    }

    fn line(&mut self, line: &[u8]) -> Result<Option<Event>, DecoderError> {
        if line.is_empty() {
            let event = std::mem::take(&mut self.current);
            let had_data = std::mem::replace(&mut self.has_data, false);
            self.event_bytes = 0;
            // Per the SSE rules an event with no data is not dispatched.
            return Ok(had_data.then_some(event));
        }
        self.event_bytes += line.len();
        if self.event_bytes > self.max_event_bytes {
            return Err(DecoderError::TooLarge { limit: self.max_event_bytes });
        }
        if line[0] == b':' {
            return Ok(None);
        }
        let line = std::str::from_utf8(line).map_err(|_| DecoderError::InvalidUtf8)?;
        let (field, value) = match line.find(':') {
            Some(i) => {
                let value = &line[i + 1..];
                (&line[..i], value.strip_prefix(' ').unwrap_or(value))
            }
            None => (line, ""),
        };
        match field {
            "event" => self.current.name = Some(value.to_owned()),
            "data" => {
                if self.has_data {
                    self.current.data.push('\n');
                }
                self.current.data.push_str(value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.current.id = Some(value.to_owned()),
            "retry" => self.current.retry = Some(value.to_owned()),
            _ => {}
        }
        Ok(None)
    }
}

/// Encode one event as a frame. Every frame carries an `event:` line (see
/// [`Event::effective_name`]); data is written verbatim, one `data:` line per line.
pub fn encode(event: &Event) -> Bytes {
    let name = event.effective_name();
    let mut out = String::with_capacity(event.data.len() + name.len() + 16);
    out.push_str("event: ");
    out.push_str(&name);
    out.push('\n');
    if let Some(id) = &event.id {
        out.push_str("id: ");
        out.push_str(id);
        out.push('\n');
    }
    if let Some(retry) = &event.retry {
        out.push_str("retry: ");
        out.push_str(retry);
        out.push('\n');
    }
    // Split on every SSE line ending, so no byte of the data can end a line early.
    for line in event.data.split(['\n', '\r']) {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(input: &[u8]) -> Vec<Event> {
        let mut d = Decoder::new(1 << 20);
        d.push(input).unwrap()
    }

    fn check(input: &str, expected: &[(&str, &str)]) {
        let got: Vec<(String, String)> = decode_all(input.as_bytes())
            .into_iter()
            .map(|e| (e.effective_name(), e.data))
            .collect();
        let want: Vec<(String, String)> =
            expected.iter().map(|(n, d)| (n.to_string(), d.to_string())).collect();
        assert_eq!(got, want, "input: {input:?}");
    }

    #[test]
    fn decoding() {
        check("event: ping\ndata: {\"type\": \"ping\"}\n\n", &[("ping", "{\"type\": \"ping\"}")]);
        check("event: a\r\ndata: 1\r\n\r\n", &[("a", "1")]);
        check("event: a\rdata: 1\r\r", &[("a", "1")]);
        check("data: x\ndata: y\n\n", &[("message", "x\ny")]);
        check("data:nospace\n\n", &[("message", "nospace")]);
        check("data:  two spaces\n\n", &[("message", " two spaces")]);
        check(": comment\nevent: a\ndata: 1\n\n", &[("a", "1")]);
        check("event: a\n\n", &[]);
        check("data: {\"type\":\"ping\"}\n\n", &[("ping", "{\"type\":\"ping\"}")]);
        check("\u{feff}event: a\ndata: 1\n\n", &[("a", "1")]);
        check("event: a\ndata: {\"x\":1}      }\n\n", &[("a", "{\"x\":1}      }")]);
        check("event: a\ndata: 1\n", &[]);
        check("data\n\n", &[("message", "")]);
    }

    #[test]
    fn partial_is_reported() {
        let mut d = Decoder::new(1024);
        assert!(d.push(b"event: a\ndata: 1\n\n").unwrap().len() == 1);
        assert!(!d.has_partial());
        d.push(b"event: b\nda").unwrap();
        assert!(d.has_partial());
    }

    #[test]
    fn oversized_event_is_an_error() {
        let mut d = Decoder::new(16);
        assert_eq!(d.push(&[b'a'; 17]), Err(DecoderError::TooLarge { limit: 16 }));
        let mut d = Decoder::new(16);
        assert!(d.push(b"data: 0123456789\ndata: 0123456789\n").is_err());
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let mut d = Decoder::new(1024);
        assert_eq!(d.push(b"data: \xff\n\n"), Err(DecoderError::InvalidUtf8));
    }

    #[test]
    fn encode_round_trips() {
        let e = Event::named("content_block_delta", "{\"a\":1}   }");
        assert_eq!(&encode(&e)[..], b"event: content_block_delta\ndata: {\"a\":1}   }\n\n");
        assert_eq!(decode_all(&encode(&e)), vec![e]);
    }

    fn stream_strategy() -> impl Strategy<Value = Vec<u8>> {
        let line = prop_oneof![
            Just("event: message_start".to_owned()),
            Just("event: content_block_delta".to_owned()),
            "data: [ -~]{0,40}".prop_map(|s| s),
            "data: é€😀[a-z ]{0,5}".prop_map(|s| s),
            Just(": keepalive".to_owned()),
            Just("".to_owned()),
            Just("id: 7".to_owned()),
        ];
        let ending = prop_oneof![Just("\n"), Just("\r\n"), Just("\r")];
        proptest::collection::vec((line, ending), 0..40).prop_map(|lines| {
            let mut s = String::new();
            for (l, e) in lines {
                s.push_str(&l);
                s.push_str(e);
            }
            s.push_str("\n\n");
            s.into_bytes()
        })
    }

    proptest! {
        #[test]
        fn split_invariance(input in stream_strategy(), cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12)) {
            let whole = decode_all(&input);
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
            points.sort_unstable();
            let mut d = Decoder::new(1 << 20);
            let mut got = Vec::new();
            let mut prev = 0;
            for p in points.into_iter().chain([input.len()]) {
                got.extend(d.push(&input[prev..p]).unwrap());
                prev = p;
            }
            prop_assert_eq!(got, whole);
        }

        #[test]
        fn encode_then_decode_is_identity(name in "[a-z_]{1,20}", data in "[ -~]{0,60}(\n[ -~]{0,20}){0,3}") {
            let e = Event::named(&name, data);
            prop_assert_eq!(decode_all(&encode(&e)), vec![e]);
        }
    }

    #[test]
    fn a_type_with_a_line_break_cannot_inject_lines() {
        let e = Event {
            name: None,
            data: r#"{"type":"x\ndata: {\"injected\":1}"}"#.into(),
            id: None,
            retry: None,
        };
        assert_eq!(e.effective_name(), "message");
        let frame = String::from_utf8(encode(&e).to_vec()).unwrap();
        assert!(
            frame.starts_with("event: message\n") && frame.matches('\n').count() == 3,
            "{frame:?}"
        );
        let cr = Event { name: Some("x".into()), data: "a\rdata: b".into(), id: None, retry: None };
        let mut d = Decoder::new(1024);
        let back = d.push(&encode(&cr)).unwrap();
        assert_eq!(back.len(), 1);
    }

    #[test]
    fn a_byte_order_mark_split_across_chunks_is_dropped() {
        // Found by the sse_decoder fuzz target: the BOM completing in a later chunk used to
        // leave the line scan pointing past the end of the buffer.
        let mut d = Decoder::new(1024);
        let mut events = d.push(b"\xEF\xBB").unwrap();
        events.extend(d.push(b"\xBF\r").unwrap());
        events.extend(d.push(b"data: x\n\n").unwrap());
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data, "x");
    }
}
