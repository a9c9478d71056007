//! Recorded Anthropic traffic replayed by the mock: vercel/ai `*.chunks.txt` (one event's JSON
//! per line, no `event:` line) and pydantic-ai VCR cassettes (`*.yaml`, raw SSE bodies).

use airlock_wire::Event;
use std::path::{Component, Path, PathBuf};

/// A recorded response: raw SSE bytes or a JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recording {
    Sse(Vec<u8>),
    Json(Vec<u8>),
}

/// Resolve `name` under `dir`, refusing anything that could leave it.
pub fn resolve(dir: &Path, name: &str) -> Option<PathBuf> {
    let rel = Path::new(name);
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    Some(dir.join(rel))
}

pub fn load(path: &Path) -> Result<Recording, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let name = path.to_string_lossy();
    if name.ends_with(".chunks.txt") {
        Ok(Recording::Sse(chunks_to_sse(&text)?))
    } else if name.ends_with(".yaml") || name.ends_with(".yml") {
        cassette_stream(&text).map(Recording::Sse)
    } else if name.ends_with(".json") {
        Ok(Recording::Json(text.into_bytes()))
    } else {
        Err(format!("{}: unknown fixture kind", path.display()))
    }
}

/// vercel/ai chunk files: rebuild each frame as `event: <type>\ndata: <json>\n\n`.
pub fn chunks_to_sse(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("bad chunk line: {e}"))?;
        let name = v.get("type").and_then(|t| t.as_str()).unwrap_or("message");
        out.extend_from_slice(&airlock_wire::encode(&Event::named(name, line)));
    }
    Ok(out)
}

/// The first SSE response body in a VCR cassette.
pub fn cassette_stream(text: &str) -> Result<Vec<u8>, String> {
    let root = marked_yaml::parse_yaml(0, text).map_err(|e| e.to_string())?;
    let interactions = root
        .as_mapping()
        .and_then(|m| m.get_sequence("interactions"))
        .ok_or("cassette has no interactions")?;
    for interaction in interactions.iter() {
        let body = interaction
            .as_mapping()
            .and_then(|i| i.get_mapping("response"))
            .and_then(|r| r.get_mapping("body"))
            .and_then(|b| b.get_scalar("string"))
            .map(|s| s.as_str());
        if let Some(body) = body.filter(|b| b.starts_with("event:")) {
            return Ok(body.as_bytes().to_vec());
        }
    }
    Err("cassette has no SSE response".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside() {
        let dir = Path::new("/fixtures");
        assert_eq!(
            resolve(dir, "vercel-ai/a.chunks.txt"),
            Some(PathBuf::from("/fixtures/vercel-ai/a.chunks.txt"))
        );
        assert_eq!(resolve(dir, "../etc/passwd"), None);
        assert_eq!(resolve(dir, "/etc/passwd"), None);
        assert_eq!(resolve(dir, "a/../../b"), None);
    }

    #[test]
    fn chunk_lines_become_named_frames() {
        let sse = chunks_to_sse("{\"type\":\"ping\"}\n\n{\"type\":\"message_stop\"}\n").unwrap();
        assert_eq!(
            String::from_utf8(sse).unwrap(),
            "event: ping\ndata: {\"type\":\"ping\"}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
        );
    }
}
