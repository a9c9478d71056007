//! Token usage as the upstream reports it: `usage` in a message, or in a stream's
//! `message_start` (input) and `message_delta` (cumulative output) events.

use serde::Deserialize;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// `input_tokens` (cache reads and writes are reported separately upstream, not here).
    pub input: Option<u64>,
    pub output: Option<u64>,
}

#[derive(Deserialize)]
struct Counts {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct WithUsage {
    usage: Option<Counts>,
}

#[derive(Deserialize)]
struct Start {
    message: WithUsage,
}

fn of(counts: Option<Counts>) -> Usage {
    counts.map_or_else(Usage::default, |c| Usage { input: c.input_tokens, output: c.output_tokens })
}

/// The usage of a non-streaming message response (empty when the body has none).
pub fn usage_of(body: &[u8]) -> Usage {
    serde_json::from_slice::<WithUsage>(body).map(|m| of(m.usage)).unwrap_or_default()
}

/// The usage carried by one stream event, if it carries any.
pub fn usage_of_event(name: &str, data: &str) -> Option<Usage> {
    match name {
        "message_start" => serde_json::from_str::<Start>(data).ok().map(|s| of(s.message.usage)),
        "message_delta" => serde_json::from_str::<WithUsage>(data).ok().map(|m| of(m.usage)),
        _ => None,
    }
}

impl Usage {
    /// Fold a later report in: fields it carries replace earlier ones.
    pub fn update(&mut self, later: Usage) {
        self.input = later.input.or(self.input);
        self.output = later.output.or(self.output);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_events() {
        let body = br#"{"id":"m","usage":{"input_tokens":12,"output_tokens":34,"cache_read_input_tokens":0}}"#;
        assert_eq!(usage_of(body), Usage { input: Some(12), output: Some(34) });
        assert_eq!(usage_of(b"not json"), Usage::default());
        let mut u = usage_of_event(
            "message_start",
            r#"{"type":"message_start","message":{"id":"m","usage":{"input_tokens":7,"output_tokens":1}}}"#,
        )
        .unwrap();
        u.update(
            usage_of_event(
                "message_delta",
                r#"{"type":"message_delta","usage":{"output_tokens":40}}"#,
            )
            .unwrap(),
        );
        assert_eq!(u, Usage { input: Some(7), output: Some(40) });
        assert_eq!(usage_of_event("ping", "{}"), None);
    }
}
