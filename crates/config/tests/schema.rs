//! `docs/config.schema.json`, the JSON Schema editors use for `airlock.yaml`, kept true to the
//! loader: every mapping has exactly the keys the loader reads and requires, and the defaults
//! the schema states are the loader's own.

use serde_json::{Map, Value, json};

fn schema() -> Value {
    let text = include_str!("../../../docs/config.schema.json");
    serde_json::from_str(text).expect("docs/config.schema.json is JSON")
}

/// Every object schema under `node`, with the YAML path segments leading to it (`[]` for a
/// list's item).
fn objects<'a>(node: &'a Value, path: Vec<String>, out: &mut Vec<(Vec<String>, &'a Value)>) {
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        out.push((path.clone(), node));
        for (key, child) in props {
            let mut p = path.clone();
            p.push(key.clone());
            objects(child, p, out);
        }
    }
    if let Some(items) = node.get("items") {
        let mut p = path;
        p.push("[]".into());
        objects(items, p, out);
    }
}

/// A document with `leaf` placed at `path`.
fn nest(path: &[String], leaf: Value) -> Value {
    match path.split_first() {
        None => leaf,
        Some((seg, rest)) if seg == "[]" => json!([nest(rest, leaf)]),
        Some((seg, rest)) => json!({ seg.as_str(): nest(rest, leaf) }),
    }
}

/// The keys the loader accepts in the mapping at `path`, as its "unknown key" error lists them,
/// and those it says are required when absent.
fn loader_keys(path: &[String]) -> (Vec<String>, Vec<String>) {
    let doc = nest(path, json!({"zz_not_a_key": 1}));
    // JSON is YAML: the loader reads the document as it would a file.
    let errors = match airlock_config::parse("schema", &doc.to_string()) {
        Ok(_) => panic!("an unknown key at {path:?} was accepted"),
        Err(e) => e.0,
    };
    let unknown = errors
        .iter()
        .find(|e| e.path.ends_with("zz_not_a_key"))
        .unwrap_or_else(|| panic!("no unknown-key error at {path:?}: {errors:?}"));
    let listed = unknown.message.strip_prefix("unknown key; expected one of: ").unwrap();
    let mut keys: Vec<String> = listed.split(", ").map(str::to_owned).collect();
    keys.sort();
    let prefix = path.join(".").replace(".[]", "[0]") + ".";
    let mut required: Vec<String> = errors
        .iter()
        .filter(|e| e.message == "required")
        .filter_map(|e| e.path.strip_prefix(&prefix).map(str::to_owned))
        .collect();
    required.sort();
    (keys, required)
}

#[test]
fn every_mapping_has_exactly_the_keys_the_loader_reads_and_requires() {
    let schema = schema();
    let mut found = Vec::new();
    objects(&schema, Vec::new(), &mut found);
    assert!(found.len() >= 12, "the schema's mappings were not all found: {}", found.len());
    for (path, node) in found {
        assert_eq!(node["additionalProperties"], json!(false), "{path:?} allows unknown keys");
        let mut keys: Vec<String> =
            node["properties"].as_object().unwrap().keys().cloned().collect();
        keys.sort();
        let mut required: Vec<String> = node["required"]
            .as_array()
            .map(|r| r.iter().map(|k| k.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default();
        required.sort();
        assert_eq!((keys, required), loader_keys(&path), "keys, required keys at {path:?}");
    }
}

/// Values for the keys a list item requires (the schema states no default for them).
fn required_value(key: &str) -> Value {
    match key {
        "issuer" => json!("https://idp.example.com"),
        "audience" => json!("airlock"),
        "url" => json!("https://hooks.example.com/airlock"),
        other => panic!("no test value for the required key `{other}`: add one here"),
    }
}

/// A document holding every default the schema states, lists included: each list holds one
/// item with its required keys and (when `with_defaults`) every default its schema states.
fn document(node: &Value, with_defaults: bool) -> Value {
    let mut out = Map::new();
    for key in node["required"].as_array().into_iter().flatten() {
        let key = key.as_str().unwrap();
        out.insert(key.to_owned(), required_value(key));
    }
    for (key, child) in node["properties"].as_object().unwrap() {
        if child.get("properties").is_some() {
            out.insert(key.clone(), document(child, with_defaults));
        } else if let Some(items) = child.get("items").filter(|i| i.get("properties").is_some()) {
            out.insert(key.clone(), json!([document(items, with_defaults)]));
        } else if let Some(d) = child.get("default").filter(|_| with_defaults) {
            out.insert(key.clone(), d.clone());
        }
    }
    Value::Object(out)
}

#[test]
fn the_schemas_defaults_are_the_loaders_defaults() {
    let schema = schema();
    let load = |doc: Value| {
        airlock_config::parse("schema", &doc.to_string())
            .unwrap_or_else(|e| panic!("{doc}\ndoes not load:\n{e}"))
    };
    let stated = load(document(&schema, true));
    let bare = load(document(&schema, false));
    // The bare document lists one OIDC issuer and one webhook, with only their required keys.
    assert_eq!((bare.oidc.len(), bare.approvals.webhooks.len()), (1, 1));
    // Giving `upstream.url` at all is remembered (a missing key then is an error, not the mock).
    let shown = format!("{stated:?}").replace("url_is_default: false", "url_is_default: true");
    assert_eq!(shown, format!("{bare:?}"));
}
