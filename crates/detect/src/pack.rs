//! A compiled set of detectors and the one scanning loop both whole-text masking and the
//! streaming masker use.
//!
//! The loop is *prefix-stable*: given a prefix of a text and `complete = false`, every finding
//! it reports, and every position it declares free of matches, is what it would report for
//! the whole text. That is what makes streamed masking equal whole-text masking. It holds
//! because every pattern has a bounded length `M`: a candidate starting at `s` is decided by
//! the bytes `s-1 ..= s+M` (look-behind and look-ahead included), so with `s + M + 1 <= len`
//! more text cannot change it, and leftmost-first search cannot find an earlier one later.

use crate::mask::{MaskKey, Pseudonyms, Strategy};
use crate::validate::Validator;
use crate::{ByteSet, Detector, Finding, Info, Pattern, RunEnd};
use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input, meta};
use std::fmt;

/// Limits a pack is built under.
#[derive(Debug, Clone, Copy)]
pub struct PackOptions {
    /// The longest match any bounded pattern may have: the streaming hold-back.
    pub max_match_bytes: usize,
    /// How long a run (PEM block, JWT) is held before it is masked without its end.
    pub max_run_hold_bytes: usize,
}

impl Default for PackOptions {
    fn default() -> Self {
        PackOptions { max_match_bytes: 256, max_run_hold_bytes: 16 * 1024 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError {
    pub detector: String,
    pub message: String,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "detector `{}`: {}", self.detector, self.message)
    }
}

impl std::error::Error for BuildError {}

/// Compiled detectors: one meta regex over every pattern, one aho-corasick automaton over
/// every keyword list.
#[derive(Debug)]
pub struct Pack {
    detectors: Vec<Info>,
    regex: Option<meta::Regex>,
    pats: Vec<Pat>,
    keywords: Option<Keywords>,
    max_len: usize,
    options: PackOptions,
}

#[derive(Debug)]
struct Pat {
    detector: usize,
    single: meta::Regex,
    validator: Option<Validator>,
    group: usize,
    confidence: f32,
    run: Option<Run>,
}

#[derive(Debug)]
pub(crate) enum Run {
    Class(ByteSet),
    Terminator(meta::Regex, usize),
}

#[derive(Debug)]
struct Keywords {
    ac: AhoCorasick,
    detector_of: Vec<usize>,
}

fn syntax_config() -> syntax::Config {
    // ASCII classes and byte-level matching: Unicode `\b`/`\d` make the lazy DFA give up.
    syntax::Config::new().unicode(false).utf8(false)
}

fn build_regex(patterns: &[&str]) -> Result<meta::Regex, String> {
    meta::Builder::new()
        .syntax(syntax_config())
        .configure(meta::Config::new().hybrid_cache_capacity(16 << 20))
        .build_many(patterns)
        .map_err(|e| e.to_string())
}

/// The longest match `pattern` can have, and whether it can match the empty string.
fn lengths(pattern: &str) -> Result<(Option<usize>, usize), String> {
    let hir = regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .build()
        .parse(pattern)
        .map_err(|e| e.to_string())?;
    let p = hir.properties();
    Ok((p.maximum_len(), p.minimum_len().unwrap_or(0)))
}

impl Pack {
    /// Compile `detectors`, each with how its values are replaced.
    pub fn build(
        detectors: &[(Detector, Strategy)],
        options: PackOptions,
    ) -> Result<Pack, BuildError> {
        let mut infos = Vec::new();
        let mut sources: Vec<String> = Vec::new();
        let mut pats = Vec::new();
        let mut words: Vec<String> = Vec::new();
        let mut detector_of = Vec::new();
        let mut max_len = 0;
        for (index, (d, strategy)) in detectors.iter().enumerate() {
            let err = |message: String| BuildError { detector: d.name.clone(), message };
            infos.push(Info {
                name: d.name.clone(),
                category: d.category,
                strategy: *strategy,
                label: d.name.to_ascii_uppercase(),
            });
            for p in &d.patterns {
                match p {
                    Pattern::Regex { regex, validator, group, confidence, run } => {
                        let (max, min) = lengths(regex).map_err(err)?;
                        let Some(max) = max else {
                            return Err(err(format!(
                                "`{regex}` has no maximum length; use bounded repeats like {{1,64}}"
                            )));
                        };
                        if min == 0 {
                            return Err(err(format!("`{regex}` can match the empty string")));
                        }
                        if max > options.max_match_bytes {
                            return Err(err(format!(
                                "`{regex}` can match {max} bytes, more than the {} allowed (the streaming hold-back)",
                                options.max_match_bytes
                            )));
                        }
                        max_len = max_len.max(max);
                        let single = build_regex(&[regex.as_str()]).map_err(err)?;
                        if *group >= single.group_info().group_len(0.into()) {
                            return Err(err(format!("`{regex}` has no capture group {group}")));
                        }
                        let run = match run {
                            None => None,
                            Some(RunEnd::Class(f)) => Some(Run::Class(f.clone())),
                            Some(RunEnd::Terminator(t)) => {
                                let (tmax, _) = lengths(t).map_err(err)?;
                                let tmax =
                                    tmax.ok_or_else(|| err("terminator must be bounded".into()))?;
                                Some(Run::Terminator(
                                    build_regex(&[t.as_str()]).map_err(err)?,
                                    tmax,
                                ))
                            }
                        };
                        sources.push(regex.clone());
                        pats.push(Pat {
                            detector: index,
                            single,
                            validator: *validator,
                            group: *group,
                            confidence: *confidence,
                            run,
                        });
                    }
                    Pattern::Keywords(list) => {
                        for w in list {
                            if w.is_empty() || w.len() > options.max_match_bytes {
                                return Err(err(format!(
                                    "keyword `{w}` must be 1 to {} bytes",
                                    options.max_match_bytes
                                )));
                            }
                            max_len = max_len.max(w.len());
                            words.push(w.clone());
                            detector_of.push(index);
                        }
                    }
                }
            }
        }
        let regex = if sources.is_empty() {
            None
        } else {
            let refs: Vec<&str> = sources.iter().map(String::as_str).collect();
            Some(
                build_regex(&refs)
                    .map_err(|message| BuildError { detector: "*".into(), message })?,
            )
        };
        let keywords = if words.is_empty() {
            None
        } else {
            let ac = AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::LeftmostLongest)
                .kind(Some(AhoCorasickKind::DFA))
                .build(&words)
                .map_err(|e| BuildError { detector: "keywords".into(), message: e.to_string() })?;
            Some(Keywords { ac, detector_of })
        };
        Ok(Pack { detectors: infos, regex, pats, keywords, max_len, options })
    }

    pub fn detectors(&self) -> &[Info] {
        &self.detectors
    }

    pub fn is_empty(&self) -> bool {
        self.regex.is_none() && self.keywords.is_none()
    }

    /// The longest bounded match: how much the streaming masker holds back.
    pub fn max_match_len(&self) -> usize {
        self.max_len
    }

    pub(crate) fn options(&self) -> PackOptions {
        self.options
    }

    /// Every finding in `text`, in order, non-overlapping.
    pub fn find_all(&self, text: &str) -> Vec<Finding> {
        let mut scan = Scan::new(self, text.as_bytes(), 0, true);
        let mut out = Vec::new();
        while let Step::Found(f, _) = scan.step() {
            out.push(f);
        }
        out
    }

    /// `text` with every finding replaced per its detector's strategy.
    pub fn mask(
        &self,
        text: &str,
        key: &MaskKey,
        pseudonyms: &mut Pseudonyms,
    ) -> (String, Vec<Finding>) {
        let findings = self.find_all(text);
        if findings.is_empty() {
            return (text.to_owned(), findings);
        }
        let out = self.render(text, &findings, key, pseudonyms);
        (out, findings)
    }

    pub(crate) fn replacement(
        &self,
        detector: usize,
        value: &str,
        key: &MaskKey,
        pseudonyms: &mut Pseudonyms,
    ) -> String {
        let info = &self.detectors[detector];
        let run = self.pats.iter().any(|p| p.detector == detector && p.run.is_some());
        crate::mask::replace(info, run, value, key, pseudonyms)
    }

    pub(crate) fn run_of(&self, pattern: usize) -> Option<&Run> {
        self.pats[pattern].run.as_ref()
    }
}

/// What one step of the scan found.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Step {
    /// A final finding, and where scanning resumes (the whole match's end).
    Found(Finding, usize),
    /// Something starting here might match once more text arrives (`pattern` is set when it
    /// is a run whose opener already matched).
    Undecided { at: usize, run: Option<(usize, usize)> },
    /// Nothing starts before the end of the text (or before the point more text could
    /// change, for an incomplete text: the caller holds back `max_match_len + 1` bytes).
    Done,
}

#[derive(Debug, Clone, Copy)]
enum Cand {
    Found(Finding, usize),
    Undecided(usize, Option<(usize, usize)>),
    None,
}

impl Cand {
    fn start(&self) -> usize {
        match self {
            Cand::Found(f, _) => f.start,
            Cand::Undecided(s, _) => *s,
            Cand::None => usize::MAX,
        }
    }
}

/// The scanning loop over one haystack: candidates from the regex and from the keywords are
/// found separately, cached until the scan passes them, and the earliest wins.
pub(crate) struct Scan<'a> {
    pack: &'a Pack,
    hay: &'a [u8],
    complete: bool,
    pos: usize,
    re: Option<Cand>,
    kw: Option<Cand>,
}

pub(crate) fn floor_char(hay: &[u8], mut i: usize) -> usize {
    while i > 0 && i < hay.len() && (hay[i] & 0xC0) == 0x80 {
        i -= 1;
    }
    i
}

fn ceil_char(hay: &[u8], mut i: usize) -> usize {
    while i < hay.len() && (hay[i] & 0xC0) == 0x80 {
        i += 1;
    }
    i
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

impl<'a> Scan<'a> {
    pub(crate) fn new(pack: &'a Pack, hay: &'a [u8], from: usize, complete: bool) -> Scan<'a> {
        Scan { pack, hay, complete, pos: from, re: None, kw: None }
    }

    /// Whether a candidate starting at `s` is decided by the text present.
    fn decided(&self, s: usize) -> bool {
        self.complete || s + self.pack.max_len < self.hay.len()
    }

    pub(crate) fn step(&mut self) -> Step {
        if self.re.is_none_or(|c| c.start() < self.pos) {
            self.re = Some(self.next_regex(self.pos));
        }
        if self.kw.is_none_or(|c| c.start() < self.pos) {
            self.kw = Some(self.next_keyword(self.pos));
        }
        let (re, kw) = (self.re.unwrap_or(Cand::None), self.kw.unwrap_or(Cand::None));
        let pick = match (re, kw) {
            (Cand::None, other) | (other, Cand::None) => other,
            (a, b) if a.start() != b.start() => {
                if a.start() < b.start() {
                    a
                } else {
                    b
                }
            }
            (u @ Cand::Undecided(..), _) | (_, u @ Cand::Undecided(..)) => u,
            (Cand::Found(fa, ra), Cand::Found(fb, rb)) => {
                if fb.end > fa.end {
                    Cand::Found(fb, rb)
                } else {
                    Cand::Found(fa, ra)
                }
            }
        };
        match pick {
            Cand::Found(f, resume) => {
                self.pos = resume;
                Step::Found(f, resume)
            }
            Cand::Undecided(at, run) => Step::Undecided { at, run },
            Cand::None => Step::Done,
        }
    }

    fn next_regex(&mut self, mut from: usize) -> Cand {
        let Some(re) = &self.pack.regex else { return Cand::None };
        let len = self.hay.len();
        while from <= len {
            let Some(m) = re.search(&Input::new(self.hay).range(from..)) else { return Cand::None };
            let s = m.start();
            if !self.decided(s) {
                return Cand::Undecided(s, None);
            }
            let first = m.pattern().as_usize();
            // The pattern that matched first, then any other that matches here, in order.
            let order =
                std::iter::once(first).chain((0..self.pack.pats.len()).filter(|&p| p != first));
            for p in order {
                match self.try_pattern(p, s) {
                    Cand::None => continue,
                    Cand::Found(f, resume) if self.pack.pats[p].group > 0 => {
                        // `token = ghp_…`: a specific detector for the value itself wins
                        // over the generic assignment that found it.
                        return self.specific_at(f.start, p).unwrap_or(Cand::Found(f, resume));
                    }
                    c => return c,
                }
            }
            from = s + 1;
        }
        Cand::None
    }

    /// A whole-match pattern other than `except` that matches and validates at `s`.
    fn specific_at(&self, s: usize, except: usize) -> Option<Cand> {
        (0..self.pack.pats.len())
            .filter(|&p| p != except && self.pack.pats[p].group == 0)
            .map(|p| self.try_pattern(p, s))
            .find(|c| matches!(c, Cand::Found(..)))
    }

    /// Pattern `p` anchored at `s`: its span, validated, extended if it is a run.
    fn try_pattern(&self, p: usize, s: usize) -> Cand {
        let pat = &self.pack.pats[p];
        let input = Input::new(self.hay).range(s..).anchored(Anchored::Yes);
        let (whole_end, start, end) = if pat.group == 0 {
            match pat.single.search(&input) {
                Some(m) => (m.end(), m.start(), m.end()),
                None => return Cand::None,
            }
        } else {
            let mut caps = pat.single.create_captures();
            pat.single.search_captures(&input, &mut caps);
            let (Some(m), Some(g)) = (caps.get_match(), caps.get_group(pat.group)) else {
                return Cand::None;
            };
            (m.end(), g.start, g.end)
        };
        let (start, end) = (floor_char(self.hay, start), ceil_char(self.hay, end));
        if let Some(v) = pat.validator {
            let ok = std::str::from_utf8(&self.hay[start..end]).is_ok_and(v);
            if !ok {
                return Cand::None;
            }
        }
        let finding =
            |end| Finding { detector: pat.detector, start, end, confidence: pat.confidence };
        match &pat.run {
            None => Cand::Found(finding(end), whole_end.max(end)),
            Some(Run::Class(class)) => {
                let mut e = end;
                while e < self.hay.len() && class.contains(self.hay[e]) {
                    e += 1;
                }
                if e == self.hay.len() && !self.complete {
                    return Cand::Undecided(start, Some((p, end)));
                }
                Cand::Found(finding(e), e)
            }
            Some(Run::Terminator(t, tmax)) => match t.search(&Input::new(self.hay).range(end..)) {
                Some(m) if self.complete || m.start() + tmax < self.hay.len() => {
                    Cand::Found(finding(m.end()), m.end())
                }
                _ if self.complete => Cand::Found(finding(self.hay.len()), self.hay.len()),
                _ => Cand::Undecided(start, Some((p, end))),
            },
        }
    }

    fn next_keyword(&self, mut from: usize) -> Cand {
        let Some(kw) = &self.pack.keywords else { return Cand::None };
        let hay = self.hay;
        while from <= hay.len() {
            let Some(m) = kw.ac.find(aho_corasick::Input::new(hay).span(from..hay.len())) else {
                return Cand::None;
            };
            let (s, e) = (m.start(), m.end());
            if !self.decided(s) {
                return Cand::Undecided(s, None);
            }
            let before = s == 0 || !is_word(hay[s - 1]) || !is_word(hay[s]);
            let after = e == hay.len() || !is_word(hay[e]) || !is_word(hay[e - 1]);
            if before && after {
                let f = Finding {
                    detector: kw.detector_of[m.pattern().as_usize()],
                    start: s,
                    end: e,
                    confidence: 0.9,
                };
                return Cand::Found(f, e);
            }
            from = s + 1;
        }
        Cand::None
    }
}

impl Pack {
    pub(crate) fn detector_of(&self, pattern: usize) -> usize {
        self.pats[pattern].detector
    }
}

impl Pack {
    /// `text` with the given findings replaced by their placeholders (`[EMAIL]`), whatever
    /// the detectors' strategies: for records that must hold no value at all.
    pub fn render_placeholders(&self, text: &str, findings: &[Finding]) -> String {
        render_with(text, findings, |f, _| format!("[{}]", self.detectors[f.detector].label))
    }

    /// `text` with the given findings (from [`Pack::find_all`] on this text) replaced.
    pub fn render(
        &self,
        text: &str,
        findings: &[Finding],
        key: &MaskKey,
        pseudonyms: &mut Pseudonyms,
    ) -> String {
        render_with(text, findings, |f, value| self.replacement(f.detector, value, key, pseudonyms))
    }
}

/// `text` with each finding's span replaced by what `replace` makes of it.
fn render_with(
    text: &str,
    findings: &[Finding],
    mut replace: impl FnMut(&Finding, &str) -> String,
) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for f in findings {
        out.push_str(&text[at..f.start]);
        out.push_str(&replace(f, &text[f.start..f.end]));
        at = f.end;
    }
    out.push_str(&text[at..]);
    out
}
