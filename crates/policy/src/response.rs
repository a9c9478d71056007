//! Judging and masking what the model sends back, before the agent sees it.
//!
//! JSON responses: every text block is masked, every `tool_use` block is checked
//! ([`Policy::check_tool_call`]) and its string inputs masked.
//!
//! Streams, per content block: text goes through a [`StreamMasker`] (released as soon as no
//! pending match could cover it); a `tool_use` block is held whole until its
//! `content_block_stop` — the agent cannot act on a partial call anyway — then checked, masked
//! and released as one `input_json_delta`; thinking blocks pass through untouched (their
//! signatures would break). A blocked tool call ends the stream with an error: the agent
//! never receives the call.

use crate::{Hit, Policy, Reject, RejectKind};
use airlock_detect::{MaskKey, Pseudonyms, StreamMasker};
use airlock_wire::Event;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// The per-response state: which blocks are open, what was masked, which rules hit.
#[derive(Debug)]
pub struct ResponseGuard {
    policy: Arc<Policy>,
    groups: Vec<String>,
    model: String,
    key: Arc<MaskKey>,
    pseudonyms: Pseudonyms,
    blocks: HashMap<u64, Block>,
    counts: Vec<u32>,
    /// Tool-call rules that matched, in order.
    pub hits: Vec<Hit>,
    /// Bound on one held tool_use block's input.
    max_tool_bytes: usize,
    /// What the client received, assembled for the audit log (when asked for).
    transcript: Option<Transcript>,
}

/// A response reassembled from the events released to the client, bounded.
#[derive(Debug, Default)]
struct Transcript {
    max_bytes: usize,
    bytes: usize,
    truncated: bool,
    /// The `message_start` event's message as sent: parsed only when the transcript is
    /// made, so an open stream holds its few hundred bytes, not a JSON tree of it.
    start: Option<String>,
    /// What `message_delta` events set since, in order.
    updates: Vec<(String, Value)>,
    blocks: std::collections::BTreeMap<u64, Value>,
    json: HashMap<u64, String>,
}

impl Transcript {
    fn room(&mut self, n: usize) -> bool {
        if self.bytes + n > self.max_bytes {
            self.truncated = true;
            return false;
        }
        self.bytes += n;
        true
    }

    fn observe(&mut self, event: &Event) {
        let Ok(v) = serde_json::from_str::<Value>(&event.data) else { return };
        let i = v.get("index").and_then(Value::as_u64).unwrap_or(0);
        match v.get("type").and_then(Value::as_str).unwrap_or("") {
            "message_start" => {
                #[derive(serde::Deserialize)]
                struct Start<'a> {
                    #[serde(borrow)]
                    message: &'a serde_json::value::RawValue,
                }
                if v.get("message").is_some_and(Value::is_object)
                    && let Ok(start) = serde_json::from_str::<Start>(&event.data)
                {
                    self.start = Some(start.message.get().to_owned());
                    self.updates.clear();
                }
            }
            "content_block_start" => {
                let block = v.get("content_block").cloned().unwrap_or(Value::Null);
                if self.room(airlock_wire::json_len(&block)) {
                    self.blocks.insert(i, block);
                }
            }
            "content_block_delta" => {
                let delta = &v["delta"];
                let (field, piece) = match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => ("text", delta.get("text")),
                    Some("thinking_delta") => ("thinking", delta.get("thinking")),
                    Some("input_json_delta") => ("", delta.get("partial_json")),
                    _ => return,
                };
                let Some(piece) = piece.and_then(Value::as_str) else { return };
                if !self.room(piece.len()) {
                    return;
                }
                if field.is_empty() {
                    self.json.entry(i).or_default().push_str(piece);
                } else if let Some(Value::Object(b)) = self.blocks.get_mut(&i) {
                    let s = b.entry(field).or_insert_with(|| Value::String(String::new()));
                    if let Value::String(s) = s {
                        s.push_str(piece);
                    }
                }
            }
            "content_block_stop" => {
                if let (Some(j), Some(Value::Object(b))) =
                    (self.json.remove(&i), self.blocks.get_mut(&i))
                    && let Ok(input) = serde_json::from_str::<Value>(&j)
                {
                    b.insert("input".into(), input);
                }
            }
            "message_delta" => {
                if let Some(Value::Object(d)) = v.get("delta") {
                    for (k, x) in d {
                        self.updates.push((k.clone(), x.clone()));
                    }
                }
                if let Some(u) = v.get("usage") {
                    self.updates.push(("usage".into(), u.clone()));
                }
            }
            _ => {}
        }
    }
}

#[derive(Debug)]
enum Block {
    Text(StreamMasker),
    Tool { start: Value, json: String },
    Pass,
}

impl ResponseGuard {
    pub fn new(
        policy: Arc<Policy>,
        groups: Vec<String>,
        model: String,
        key: Arc<MaskKey>,
        pseudonyms: Pseudonyms,
        max_tool_bytes: usize,
    ) -> ResponseGuard {
        let counts = vec![0; policy.mask.as_ref().map_or(0, |p| p.detectors().len())];
        ResponseGuard {
            policy,
            groups,
            model,
            key,
            pseudonyms,
            blocks: HashMap::new(),
            counts,
            hits: Vec::new(),
            max_tool_bytes,
            transcript: None,
        }
    }

    /// Keep an assembled copy of what the client receives, up to `max_bytes` of content,
    /// for the audit log ([`ResponseGuard::transcript`]).
    pub fn keep_transcript(&mut self, max_bytes: usize) {
        if max_bytes > 0 {
            self.transcript = Some(Transcript { max_bytes, ..Transcript::default() });
        }
    }

    /// What the client received so far, assembled (a stream's events as one message) and
    /// masked for the audit log: every detector's finds replaced by placeholders. `None`
    /// unless [`ResponseGuard::keep_transcript`] was called.
    pub fn transcript(&self) -> Option<Value> {
        let t = self.transcript.as_ref()?;
        let mut m: serde_json::Map<String, Value> =
            t.start.as_deref().and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default();
        for (k, v) in &t.updates {
            m.insert(k.clone(), v.clone());
        }
        m.insert("content".into(), Value::Array(t.blocks.values().cloned().collect()));
        if t.truncated {
            m.insert("airlock_truncated".into(), Value::Bool(true));
        }
        Some(self.policy.audit_copy(Value::Object(m)))
    }

    /// Values masked so far, per detector name (pseudonyms restored are not counted).
    pub fn masked(&self) -> Vec<(String, u32)> {
        let Some(pack) = &self.policy.mask else { return Vec::new() };
        let mut out = crate::eval::named_counts(pack, &self.counts);
        out.retain(|(name, _)| name != "pseudonym");
        out
    }

    fn mask_text(&mut self, text: &str) -> Option<String> {
        let pack = self.policy.mask.as_ref()?;
        let findings = pack.find_all(text);
        if findings.is_empty() {
            return None;
        }
        findings.iter().for_each(|f| self.counts[f.detector] += 1);
        Some(pack.render(text, &findings, &self.key, &mut self.pseudonyms))
    }

    /// Check a complete tool call and mask the strings in its input.
    fn tool_call(&mut self, block: &mut serde_json::Map<String, Value>) -> Result<(), Reject> {
        let name = block.get("name").and_then(Value::as_str).unwrap_or("").to_owned();
        let input = block.get("input").cloned().unwrap_or(Value::Null);
        let verdict = self.policy.check_tool_call(&self.groups, &self.model, &name, &input);
        self.hits.extend(verdict.hits);
        if let Some(deny) = verdict.deny {
            return Err(deny);
        }
        if let Some(input) = block.get_mut("input") {
            crate::parts::strings(input, &mut |_, s| {
                if let Some(m) = self.mask_text(s) {
                    *s = m;
                }
            });
        }
        Ok(())
    }

    /// A whole (non-streamed) Messages response: `Ok(true)` when it was changed. Once it is
    /// released, [`ResponseGuard::json_transcript`] makes its audit copy.
    pub fn json(&mut self, message: &mut Value) -> Result<bool, Reject> {
        self.json_inner(message)
    }

    /// The audit copy of a whole response that went through [`ResponseGuard::json`] and was
    /// released: `message` is taken as it is (no copy), `size` is its length as sent. A
    /// response longer than the transcript's bound keeps everything but its content
    /// (`airlock_truncated`). `None` unless [`ResponseGuard::keep_transcript`] was called.
    pub fn json_transcript(&self, message: Value, size: usize) -> Option<Value> {
        let t = self.transcript.as_ref()?;
        let Value::Object(mut m) = message else { return self.transcript() };
        if size > t.max_bytes {
            let mut m: serde_json::Map<String, Value> =
                m.into_iter().filter(|(k, _)| k != "content").collect();
            m.insert("content".into(), Value::Array(Vec::new()));
            m.insert("airlock_truncated".into(), Value::Bool(true));
            return Some(self.policy.audit_copy(Value::Object(m)));
        }
        let content = match m.remove("content") {
            Some(Value::Array(blocks)) => blocks,
            _ => Vec::new(),
        };
        m.insert("content".into(), Value::Array(content));
        Some(self.policy.audit_copy(Value::Object(m)))
    }

    fn json_inner(&mut self, message: &mut Value) -> Result<bool, Reject> {
        let Some(Value::Array(content)) = message.get_mut("content") else { return Ok(false) };
        let mut changed = false;
        for block in content {
            let Value::Object(b) = block else { continue };
            match b.get("type").and_then(Value::as_str) {
                Some("text") => {
                    let text = b.get("text").and_then(Value::as_str).unwrap_or("").to_owned();
                    if let Some(m) = self.mask_text(&text) {
                        b.insert("text".into(), Value::String(m));
                        changed = true;
                    }
                }
                Some("tool_use" | "server_tool_use") => {
                    let before = b.get("input").cloned();
                    self.tool_call(b)?;
                    changed |= b.get("input") != before.as_ref();
                }
                _ => {}
            }
        }
        Ok(changed)
    }

    fn text_delta(index: u64, text: String) -> Event {
        let data = json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}});
        Event::named("content_block_delta", data.to_string())
    }

    /// End a text block: release what its masker holds, count what it masked.
    fn close_text(&mut self, index: u64, mut m: StreamMasker, out: &mut Vec<Event>) {
        let rest = m.finish(&self.key, &mut self.pseudonyms);
        if !rest.is_empty() {
            out.push(Self::text_delta(index, rest));
        }
        for (i, c) in m.counts().iter().enumerate() {
            self.counts[i] += c;
        }
    }

    /// One upstream event in, the events to send on out (possibly none). An error means the
    /// stream must end with it (a blocked tool call, an oversized tool input).
    pub fn event(&mut self, event: Event) -> Result<Vec<Event>, Reject> {
        let out = self.event_inner(event)?;
        if let Some(t) = self.transcript.as_mut() {
            out.iter().for_each(|e| t.observe(e));
        }
        Ok(out)
    }

    fn event_inner(&mut self, event: Event) -> Result<Vec<Event>, Reject> {
        let name = event.effective_name();
        let mut out = Vec::new();
        match name.as_str() {
            "content_block_start" | "content_block_delta" | "content_block_stop" => {}
            "error" | "message_delta" | "message_stop" => {
                // Release what the text maskers hold before the message ends (or fails).
                // A tool call that never reached its stop is never released.
                let mut open: Vec<(u64, Block)> = self.blocks.drain().collect();
                open.sort_unstable_by_key(|(i, _)| *i);
                for (i, b) in open {
                    if let Block::Text(m) = b {
                        self.close_text(i, m, &mut out);
                    }
                }
                out.push(event);
                return Ok(out);
            }
            _ => return Ok(vec![event]),
        }
        let Ok(mut v) = serde_json::from_str::<Value>(&event.data) else { return Ok(vec![event]) };
        let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
        match name.as_str() {
            "content_block_start" => {
                let kind = v.pointer("/content_block/type").and_then(Value::as_str).unwrap_or("");
                match kind {
                    "text" => {
                        let masker =
                            self.policy.mask.as_ref().map(|p| StreamMasker::new(Arc::clone(p)));
                        let initial = v
                            .pointer("/content_block/text")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_owned();
                        match masker {
                            Some(mut m) => {
                                // Initial text (normally empty) is masked like any delta.
                                let released = m.push(&initial, &self.key, &mut self.pseudonyms);
                                if !initial.is_empty() {
                                    v["content_block"]["text"] = Value::String(String::new());
                                    out.push(Event::named("content_block_start", v.to_string()));
                                    if !released.is_empty() {
                                        out.push(Self::text_delta(index, released));
                                    }
                                } else {
                                    out.push(event);
                                }
                                self.blocks.insert(index, Block::Text(m));
                            }
                            None => {
                                self.blocks.insert(index, Block::Pass);
                                out.push(event);
                            }
                        }
                    }
                    "tool_use" | "server_tool_use" => {
                        self.blocks.insert(index, Block::Tool { start: v, json: String::new() });
                    }
                    _ => {
                        self.blocks.insert(index, Block::Pass);
                        out.push(event);
                    }
                }
            }
            "content_block_delta" => match self.blocks.get_mut(&index) {
                Some(Block::Text(m)) => {
                    match v.pointer("/delta/text").and_then(Value::as_str) {
                        Some(text)
                            if v.pointer("/delta/type").and_then(Value::as_str)
                                == Some("text_delta") =>
                        {
                            let released = m.push(text, &self.key, &mut self.pseudonyms);
                            if !released.is_empty() {
                                out.push(Self::text_delta(index, released));
                            }
                        }
                        // citations_delta and anything new pass through.
                        _ => out.push(event),
                    }
                }
                Some(Block::Tool { json, .. }) => {
                    let part =
                        v.pointer("/delta/partial_json").and_then(Value::as_str).unwrap_or("");
                    if json.len() + part.len() > self.max_tool_bytes {
                        return Err(Reject {
                            kind: RejectKind::Permission,
                            message: format!(
                                "a tool call's input exceeds {} bytes",
                                self.max_tool_bytes
                            ),
                            rule: None,
                        });
                    }
                    json.push_str(part);
                }
                Some(Block::Pass) | None => out.push(event),
            },
            _ => {
                // content_block_stop
                match self.blocks.remove(&index) {
                    Some(Block::Text(m)) => self.close_text(index, m, &mut out),
                    Some(Block::Tool { mut start, json }) => {
                        let input: Value = if json.trim().is_empty() {
                            // No deltas: the input came whole in the start event.
                            start.pointer("/content_block/input").cloned().unwrap_or(json!({}))
                        } else {
                            serde_json::from_str(&json).map_err(|_| Reject {
                                kind: RejectKind::Permission,
                                message: "the model sent a tool call whose input is not valid JSON"
                                    .into(),
                                rule: None,
                            })?
                        };
                        let mut block = start.get("content_block").cloned().unwrap_or(json!({}));
                        block["input"] = input;
                        let Value::Object(b) = &mut block else {
                            unreachable!("content_block is an object")
                        };
                        self.tool_call(b)?;
                        let input = b.remove("input").unwrap_or(json!({}));
                        start["content_block"]["input"] = json!({});
                        out.push(Event::named("content_block_start", start.to_string()));
                        let delta = json!({"type": "content_block_delta", "index": index,
                            "delta": {"type": "input_json_delta", "partial_json": input.to_string()}});
                        out.push(Event::named("content_block_delta", delta.to_string()));
                    }
                    _ => {}
                }
                out.push(event);
            }
        }
        Ok(out)
    }
}
