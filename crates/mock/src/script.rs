//! How a request tells the mock what to do: a `x-mock` header or a `[[mock ...]]` directive
//! anywhere in the request's text, both as `key=value` pairs separated by `;`.
//!
//! Keys: `scenario` (text | echo | thinking | tool_use | error | hang | drop | stall |
//! midstream_error | huge_event | fixture), `text`, `chunk` (characters per text delta), `delay_ms` (before each event),
//! `status` and `retry_after` (scenario=error), `after` (events before drop/stall/mid-stream
//! error), `fixture` (a path under the mock's fixtures directory), `tool` and `command`
//! (scenario=tool_use: the tool call to make; once the request carries the tool's result, the
//! mock ends the turn with a text block quoting it), `hop_headers=1` (answer with hop-by-hop
//! headers, one named in `Connection`, as a misbehaving upstream would).

use std::collections::HashMap;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Script {
    pub pairs: HashMap<String, String>,
}

impl Script {
    pub fn parse(text: &str) -> Script {
        let mut pairs = HashMap::new();
        for part in text.split(';') {
            if let Some((k, v)) = part.split_once('=') {
                pairs.insert(k.trim().to_owned(), v.trim().to_owned());
            }
        }
        Script { pairs }
    }

    /// A `[[mock ...]]` directive in the request body's text, if any.
    pub fn from_body(body: &str) -> Option<Script> {
        let start = body.find("[[mock ")? + "[[mock ".len();
        let end = body[start..].find("]]")? + start;
        Some(Script::parse(&body[start..end]))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs.get(key).map(String::as_str)
    }

    pub fn scenario(&self) -> &str {
        self.get("scenario").unwrap_or("text")
    }

    pub fn num(&self, key: &str, default: u64) -> u64 {
        self.get(key).and_then(|v| v.parse().ok()).unwrap_or(default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing() {
        let s = Script::parse("scenario=tool_use; chunk=3 ;delay_ms=10");
        assert_eq!(s.scenario(), "tool_use");
        assert_eq!(s.num("chunk", 5), 3);
        assert_eq!(s.num("delay_ms", 0), 10);
        assert_eq!(Script::parse("").scenario(), "text");
        let b = Script::from_body(
            r#"{"messages":[{"content":"hi [[mock scenario=error; status=529]] there"}]}"#,
        )
        .unwrap();
        assert_eq!(b.scenario(), "error");
        assert_eq!(b.num("status", 0), 529);
        assert!(Script::from_body("no directive").is_none());
    }
}
