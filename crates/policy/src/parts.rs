//! The text-bearing parts of a Messages request, visited in a fixed order so a scan and the
//! rewrite that follows it see the same strings.

use serde_json::{Map, Value};

/// Where a piece of text sits in the request; rules can be limited to some parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    System,
    User,
    Assistant,
    ToolResults,
    ToolInputs,
}

impl Part {
    pub const ALL: [Part; 5] =
        [Part::System, Part::User, Part::Assistant, Part::ToolResults, Part::ToolInputs];

    pub fn parse(s: &str) -> Option<Part> {
        Some(match s {
            "system" => Part::System,
            "user" => Part::User,
            "assistant" => Part::Assistant,
            "tool_results" => Part::ToolResults,
            "tool_inputs" => Part::ToolInputs,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Part::System => "system",
            Part::User => "user",
            Part::Assistant => "assistant",
            Part::ToolResults => "tool_results",
            Part::ToolInputs => "tool_inputs",
        }
    }
}

/// Visit every text-bearing string of a request: the system prompt (string or text blocks),
/// message text (string content or text blocks; a `role: "system"` turn counts as system),
/// text documents, `tool_result` content, and every string inside `tool_use` inputs.
/// Thinking blocks are never visited: their signatures would break.
pub fn visit(body: &mut Map<String, Value>, f: &mut dyn FnMut(Part, &mut String)) {
    if let Some(system) = body.get_mut("system") {
        text_or_blocks(system, Part::System, f);
    }
    let Some(Value::Array(messages)) = body.get_mut("messages") else { return };
    for message in messages {
        let Value::Object(m) = message else { continue };
        let part = match m.get("role").and_then(Value::as_str) {
            Some("assistant") => Part::Assistant,
            Some("system") => Part::System,
            _ => Part::User,
        };
        if let Some(content) = m.get_mut("content") {
            text_or_blocks(content, part, f);
        }
    }
}

fn text_or_blocks(v: &mut Value, part: Part, f: &mut dyn FnMut(Part, &mut String)) {
    match v {
        Value::String(s) => f(part, s),
        Value::Array(blocks) => {
            for b in blocks {
                block(b, part, f);
            }
        }
        _ => {}
    }
}

fn block(b: &mut Value, part: Part, f: &mut dyn FnMut(Part, &mut String)) {
    let Value::Object(b) = b else { return };
    match b.get("type").and_then(Value::as_str) {
        Some("text") => {
            if let Some(Value::String(s)) = b.get_mut("text") {
                f(part, s);
            }
        }
        Some("tool_result") => {
            if let Some(c) = b.get_mut("content") {
                text_or_blocks(c, Part::ToolResults, f);
            }
        }
        Some("tool_use" | "server_tool_use") => {
            if let Some(input) = b.get_mut("input") {
                strings(input, f);
            }
        }
        Some("document") => {
            if let Some(Value::Object(source)) = b.get_mut("source")
                && source.get("type").and_then(Value::as_str) == Some("text")
                && let Some(Value::String(s)) = source.get_mut("data")
            {
                f(part, s);
            }
        }
        _ => {}
    }
}

/// Every string value in a JSON value (tool inputs), depth-first in key order.
pub fn strings(v: &mut Value, f: &mut dyn FnMut(Part, &mut String)) {
    match v {
        Value::String(s) => f(Part::ToolInputs, s),
        Value::Array(items) => items.iter_mut().for_each(|i| strings(i, f)),
        Value::Object(m) => m.values_mut().for_each(|i| strings(i, f)),
        _ => {}
    }
}
