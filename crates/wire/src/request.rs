//! Inspection of a `POST /v1/messages` (or `count_tokens`) body before anything acts on it.
//!
//! The body is parsed into a `serde_json::Value` (key order preserved) rather than a typed
//! struct: unknown fields, roles and block types must pass through untouched, and later stages
//! (policy, redaction) read and rewrite the parsed values, never the raw bytes, where JSON
//! escapes could hide what they look for.

use serde_json::{Map, Value};

/// A parsed request body: a JSON object, with the few fields the data plane needs lifted out.
#[derive(Debug, Clone)]
pub struct MessagesRequest {
    pub body: Map<String, Value>,
    pub model: Option<String>,
    pub stream: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InspectError {
    #[error("request body is not valid JSON: {0}")]
    Json(String),
    #[error("request body must be a JSON object")]
    NotAnObject,
    #[error("`{field}` must be {expected}")]
    FieldType { field: &'static str, expected: &'static str },
}

/// Parse and minimally check a Messages API body. Only the types of the fields the gateway
/// itself relies on are checked; everything else is the upstream's to judge.
/// The text of a `tool_result` block's `content`: the string, or its text parts joined by
/// newlines (image parts and the like have no text).
pub fn tool_result_text(content: &serde_json::Value) -> String {
    match content {
        serde_json::Value::String(t) => t.clone(),
        serde_json::Value::Array(parts) => {
            parts.iter().filter_map(|p| p["text"].as_str()).collect::<Vec<_>>().join("\n")
        }
        _ => String::new(),
    }
}

pub fn inspect_messages(bytes: &[u8]) -> Result<MessagesRequest, InspectError> {
    // serde_json bounds nesting depth (128), so hostile nesting is an error, not a stack overflow.
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| InspectError::Json(e.to_string()))?;
    let Value::Object(body) = value else {
        return Err(InspectError::NotAnObject);
    };
    let model = match body.get("model") {
        None | Some(Value::Null) => None,
        Some(Value::String(m)) => Some(m.clone()),
        Some(_) => return Err(InspectError::FieldType { field: "model", expected: "a string" }),
    };
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(InspectError::FieldType { field: "stream", expected: "a boolean" }),
    };
    Ok(MessagesRequest { body, model, stream })
}

/// The length of `value` as compact JSON text, counted without building the text (sizes for
/// bounds and token estimates on the request path).
pub fn json_len(value: &serde_json::Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut n = Count(0);
    // Writing to a counter cannot fail.
    let _ = serde_json::to_writer(&mut n, value);
    n.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_len_is_the_length_of_the_text() {
        for v in [
            serde_json::json!(null),
            serde_json::json!({"a": [1, "é\n\"x\"", {"b": true}], "c": 1.5}),
            serde_json::json!([{"name": "Bash", "input_schema": {"type": "object"}}]),
        ] {
            assert_eq!(json_len(&v), v.to_string().len(), "{v}");
        }
    }

    fn check(input: &str, expected: Result<(Option<&str>, bool), InspectError>) {
        let got = inspect_messages(input.as_bytes()).map(|r| (r.model, r.stream));
        let want = expected.map(|(m, s)| (m.map(str::to_owned), s));
        match (got, want) {
            (Ok(g), Ok(w)) => assert_eq!(g, w, "input: {input}"),
            (Err(g), Err(w)) => match (&g, &w) {
                (InspectError::Json(_), InspectError::Json(_)) => {}
                _ => assert_eq!(g, w, "input: {input}"),
            },
            (g, w) => panic!("input: {input}: got {g:?}, want {w:?}"),
        }
    }

    #[test]
    fn inspection() {
        check(
            r#"{"model":"claude-x","max_tokens":5,"messages":[]}"#,
            Ok((Some("claude-x"), false)),
        );
        check(r#"{"model":"m","stream":true}"#, Ok((Some("m"), true)));
        check(r#"{"stream":null}"#, Ok((None, false)));
        check(
            r#"{"model":5}"#,
            Err(InspectError::FieldType { field: "model", expected: "a string" }),
        );
        check(
            r#"{"stream":"yes"}"#,
            Err(InspectError::FieldType { field: "stream", expected: "a boolean" }),
        );
        check("[1,2]", Err(InspectError::NotAnObject));
        check("{", Err(InspectError::Json(String::new())));
        check("", Err(InspectError::Json(String::new())));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = "[".repeat(100_000);
        assert!(matches!(inspect_messages(deep.as_bytes()), Err(InspectError::Json(_))));
    }

    #[test]
    fn unknown_fields_and_order_survive() {
        let input = r#"{"zeta":1,"model":"m","messages":[{"role":"system","content":[{"type":"future_block","x":[1]}]}],"alpha":{"b":2,"a":1}}"#;
        let r = inspect_messages(input.as_bytes()).unwrap();
        assert_eq!(Value::Object(r.body).to_string(), input);
    }
}
