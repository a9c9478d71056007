//! Masking text that arrives in pieces (SSE `text_delta`s) so that the concatenated output is
//! exactly what masking the whole text gives, and no released prefix ever holds a fragment of
//! a value that gets masked.
//!
//! The masker releases everything up to `len - (max_match_len + 1)` unless a candidate starts
//! earlier, so it holds back at most the longest possible match plus one byte — except for a
//! run (PEM block, JWT) whose opener matched: that is held to its end, up to
//! `max_run_hold_bytes`; then its placeholder is released and the rest of the run is dropped
//! as it arrives, until its end.

use crate::ByteSet;
use crate::mask::{MaskKey, Pseudonyms};
use crate::pack::{Pack, Run, Scan, Step, floor_char};
use regex_automata::Input;
use std::sync::Arc;

#[derive(Debug)]
pub struct StreamMasker {
    pack: Arc<Pack>,
    /// Unreleased text; its first `ctx` bytes were already released and are kept only as
    /// look-behind for the next scan.
    buf: String,
    ctx: usize,
    suppress: Option<Suppress>,
    counts: Vec<u32>,
}

#[derive(Debug)]
enum Suppress {
    Class { class: ByteSet, last: u8 },
    Terminator { pattern: usize, tail: Vec<u8> },
}

impl StreamMasker {
    pub fn new(pack: Arc<Pack>) -> StreamMasker {
        let counts = vec![0; pack.detectors().len()];
        StreamMasker { pack, buf: String::new(), ctx: 0, suppress: None, counts }
    }

    /// Findings masked so far, per detector (indexes into [`Pack::detectors`]).
    pub fn counts(&self) -> &[u32] {
        &self.counts
    }

    /// Bytes received but not yet released.
    pub fn held(&self) -> usize {
        self.buf.len() - self.ctx
    }

    /// Take the next piece; returns what can be released now (possibly nothing).
    pub fn push(&mut self, text: &str, key: &MaskKey, pseudonyms: &mut Pseudonyms) -> String {
        let mut text = text;
        let resumed;
        if let Some(sup) = self.suppress.take() {
            match self.continue_suppressing(sup, text) {
                None => return String::new(),
                Some((last, rest)) => {
                    resumed = rest;
                    self.buf.clear();
                    self.buf.push(char::from(last));
                    self.ctx = 1;
                    text = &resumed;
                }
            }
        }
        self.buf.push_str(text);
        self.release(false, key, pseudonyms)
    }

    /// The end of the block: release everything, masked.
    pub fn finish(&mut self, key: &MaskKey, pseudonyms: &mut Pseudonyms) -> String {
        if let Some(sup) = self.suppress.take() {
            // At the end of the text a terminator ends the run however little follows it
            // (while streaming, it waited for enough look-ahead): release what comes after.
            if let Suppress::Terminator { pattern, tail } = sup
                && let Some(Run::Terminator(t, _)) = self.pack.run_of(pattern)
                && let Some(m) = t.search(&Input::new(&tail))
            {
                self.buf.clear();
                self.buf.push(char::from(tail[m.end() - 1]));
                self.buf.push_str(&String::from_utf8_lossy(&tail[m.end()..]));
                self.ctx = 1;
                return self.release(true, key, pseudonyms);
            }
            // The run lasts to the end of the text; its placeholder is already out.
            self.buf.clear();
            self.ctx = 0;
            return String::new();
        }
        self.release(true, key, pseudonyms)
    }

    /// While a run is being dropped: `None` if it goes on, else the run's last byte (the
    /// look-behind for what follows) and the text after it.
    fn continue_suppressing(&mut self, sup: Suppress, text: &str) -> Option<(u8, String)> {
        match sup {
            Suppress::Class { class, last } => {
                match text.bytes().position(|b| !class.contains(b)) {
                    None => {
                        let last = text.bytes().last().unwrap_or(last);
                        self.suppress = Some(Suppress::Class { class, last });
                        None
                    }
                    Some(0) => Some((last, text.to_owned())),
                    Some(i) => Some((text.as_bytes()[i - 1], text[i..].to_owned())),
                }
            }
            Suppress::Terminator { pattern, mut tail } => {
                let Some(Run::Terminator(t, tmax)) = self.pack.run_of(pattern) else {
                    unreachable!("suppressing a run without a terminator")
                };
                tail.extend_from_slice(text.as_bytes());
                match t.search(&Input::new(&tail)) {
                    Some(m) if m.start() + tmax < tail.len() => {
                        // The terminator ends in an ASCII byte, so what follows starts on a
                        // character boundary of the original text.
                        let rest = String::from_utf8_lossy(&tail[m.end()..]).into_owned();
                        Some((tail[m.end() - 1], rest))
                    }
                    _ => {
                        let keep = tail.len().min(tmax + 1);
                        tail.drain(..tail.len() - keep);
                        self.suppress = Some(Suppress::Terminator { pattern, tail });
                        None
                    }
                }
            }
        }
    }

    fn release(&mut self, complete: bool, key: &MaskKey, pseudonyms: &mut Pseudonyms) -> String {
        let pack = Arc::clone(&self.pack);
        let buf = std::mem::take(&mut self.buf);
        let hay = buf.as_bytes();
        let mut out = String::new();
        let mut at = self.ctx;
        let mut hold =
            if complete { hay.len() } else { hay.len().saturating_sub(pack.max_match_len() + 1) };
        let mut scan = Scan::new(&pack, hay, self.ctx, complete);
        loop {
            match scan.step() {
                Step::Found(f, resume) => {
                    out.push_str(&buf[at..f.start]);
                    out.push_str(&pack.replacement(
                        f.detector,
                        &buf[f.start..f.end],
                        key,
                        pseudonyms,
                    ));
                    self.counts[f.detector] += 1;
                    at = resume;
                }
                Step::Undecided { at: s, run: Some((pattern, opener_end)) }
                    if hay.len() - s > pack.options().max_run_hold_bytes =>
                {
                    // A run longer than the hold: mask it now, drop the rest as it comes.
                    out.push_str(&buf[at..s]);
                    let detector = pack.detector_of(pattern);
                    out.push_str(&pack.replacement(detector, &buf[s..], key, pseudonyms));
                    self.counts[detector] += 1;
                    self.suppress = Some(match pack.run_of(pattern) {
                        Some(Run::Class(class)) => {
                            Suppress::Class { class: class.clone(), last: hay[hay.len() - 1] }
                        }
                        Some(Run::Terminator(_, tmax)) => {
                            let from = opener_end.max(hay.len().saturating_sub(tmax + 1));
                            Suppress::Terminator { pattern, tail: hay[from..].to_vec() }
                        }
                        None => unreachable!("an undecided run has a run pattern"),
                    });
                    self.ctx = 0;
                    return out;
                }
                Step::Undecided { at: s, .. } => {
                    hold = hold.min(s);
                    break;
                }
                Step::Done => break,
            }
        }
        let cut = floor_char(hay, hold.max(at));
        out.push_str(&buf[at..cut]);
        // Keep the last released character as look-behind.
        let ctx_start = if cut == 0 { 0 } else { floor_char(hay, cut - 1) };
        self.buf = buf[ctx_start..].to_owned();
        self.ctx = cut - ctx_start;
        out
    }
}
