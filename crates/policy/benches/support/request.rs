//! The agent request the policy benchmarks judge (shared by `evaluate.rs` and the criterion
//! micro-benchmarks in crates/microbench).

use serde_json::{Map, Value, json};

pub const PROSE: &str = "The agent reads the repository, runs the tests and proposes a change to the \
    function that parses the configuration file; it then explains the change and the risk. ";

/// An agent request of about `target` bytes: system prompt, a tool, a history of Bash calls
/// and their results, one e-mail address (so the body is also redacted).
pub fn request(target: usize) -> Map<String, Value> {
    let mut messages = vec![
        json!({"role": "user", "content": "Fix the failing test in crates/config and tell jane.doe@example.com when done."}),
    ];
    let mut i = 0;
    while json!(messages).to_string().len() < target {
        let id = format!("toolu_{i:04}");
        messages.push(json!({"role": "assistant", "content": [
            {"type": "text", "text": PROSE},
            {"type": "tool_use", "id": id, "name": "Bash", "input": {"command": format!("cargo test -p airlock-config -- case_{i}")}}]}));
        messages.push(json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": id, "content": format!("running 12 tests\n{}test result: ok. 12 passed; 0 failed; finished in 0.{i:02}s\n", PROSE.repeat(2))}]}));
        i += 1;
    }
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 4096,
        "system": [{"type": "text", "text": "You are a careful coding agent. Follow the repository's style."}],
        "tools": [{"name": "Bash", "description": "Run a shell command", "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}],
        "messages": messages,
    })
    .as_object()
    .unwrap()
    .clone()
}
