//! docs/admin-api.openapi.json against the running server: every documented operation is
//! called (as an admin who also reviews), must answer 200 with a body that validates
//! against its documented schema, and answers 401 without a token where it needs one.

use crate::harness::*;
use http::Method;
use serde_json::Value;

fn spec() -> Value {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/admin-api.openapi.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Follow `$ref`s within the document.
fn resolve<'a>(doc: &'a Value, mut v: &'a Value) -> &'a Value {
    while let Some(r) = v.get("$ref").and_then(Value::as_str) {
        let mut at = doc;
        for part in r.trim_start_matches("#/").split('/') {
            at = &at[part];
        }
        v = at;
    }
    v
}

/// The JSON Schema subset the document uses: $ref, type (or a list of types), required,
/// properties, items, enum, const, allOf. (`pattern` and bounds are not checked.)
fn validate(doc: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(doc, schema);
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for s in all {
            validate(doc, s, v, at)?;
        }
    }
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let actual = match v {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        if !types.iter().any(|t| *t == actual || (*t == "number" && actual == "integer")) {
            return Err(format!("{at}: expected {types:?}, found {actual}: {v}"));
        }
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        return Err(format!("{at}: {v} is not one of {e:?}"));
    }
    if let Some(c) = schema.get("const")
        && c != v
    {
        return Err(format!("{at}: {v} is not {c}"));
    }
    if let Some(req) = schema.get("required").and_then(Value::as_array) {
        for k in req.iter().filter_map(Value::as_str) {
            if v.get(k).is_none() {
                return Err(format!("{at}: missing `{k}` in {v}"));
            }
        }
    }
    if let (Some(props), Some(obj)) =
        (schema.get("properties").and_then(Value::as_object), v.as_object())
    {
        for (k, s) in props {
            if let Some(x) = obj.get(k) {
                validate(doc, s, x, &format!("{at}.{k}"))?;
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), v.as_array()) {
        for (i, x) in arr.iter().enumerate() {
            validate(doc, items, x, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

#[tokio::test]
async fn every_documented_operation_answers_as_documented() {
    let doc = spec();
    let h = Harness::start_with_policy(crate::approvals::POLICY, "").await;
    let admin_groups = ["airlock-admins".to_owned(), "security".to_owned()];
    let admin = h.keys.mint("root", &admin_groups, 600, now()).unwrap().token;
    let alice = h.keys.mint("alice", &["eng".to_owned()], 600, now()).unwrap().token;
    let call = |method: Method, path: String, token: Option<String>, body: String| {
        let h = &h;
        async move {
            let auth = token.map(|t| format!("Bearer {t}"));
            let mut headers = vec![("content-type", "application/json")];
            if let Some(a) = &auth {
                headers.push(("authorization", a.as_str()));
            }
            let (code, _, bytes) = h.admin_call(method, &path, &headers, &body).await;
            (code.as_u16(), bytes)
        }
    };
    // State for the path parameters: three ticket approvals, a grant, a request id.
    let mut ids = Vec::new();
    let mut request = String::new();
    for word in ["a", "b", "c"] {
        let body = format!(
            r#"{{"model":"claude-sonnet-4-5","max_tokens":5,"messages":[{{"role":"user","content":"nightjar {word}"}}]}}"#
        );
        let a = format!("Bearer {alice}");
        let headers = [("authorization", a.as_str()), ("content-type", "application/json")];
        let (code, headers, text) = h.call(Method::POST, "/v1/messages", &headers, &body).await;
        assert_eq!(code, 403);
        let text = String::from_utf8_lossy(&text).into_owned();
        ids.push(text.split("(approval ").nth(1).unwrap()[..28].to_owned());
        request = request_id(&headers);
    }
    // A refused request's entry is not waited on (it commits with the next group, within
    // `audit.commit_window`): the lookup below needs it committed.
    h.audit_entries(&request).await;
    let (code, granted) = call(
        Method::POST,
        format!("/admin/approvals/{}/approve", ids[0]),
        Some(admin.clone()),
        r#"{"grant":"5m"}"#.into(),
    )
    .await;
    assert_eq!(code, 200);
    let grant = json(&granted)["grant"]["id"].as_str().unwrap().to_owned();

    let paths = doc["paths"].as_object().unwrap();
    let mut called = 0;
    for (template, ops) in paths {
        for (method, op) in ops.as_object().unwrap() {
            let approval = if template.ends_with("/deny") { &ids[2] } else { &ids[1] };
            let path = template
                .replace("{approval_id}", approval)
                .replace("{grant_id}", &grant)
                .replace("{request_id}", &request);
            let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
            let body = op["requestBody"]["content"]["application/json"]["example"].to_string();
            let body = if body == "null" { String::new() } else { body };
            let public = op.get("security").is_some_and(|s| s == &Value::Array(vec![]));
            if !public {
                let (code, _) = call(method.clone(), path.clone(), None, body.clone()).await;
                assert_eq!(code, 401, "{method} {path} without a token");
                assert!(
                    op["responses"].get("401").is_some(),
                    "{method} {template}: 401 undocumented"
                );
            }
            let (code, bytes) = call(method.clone(), path.clone(), Some(admin.clone()), body).await;
            assert_eq!(code, 200, "{method} {path}: {}", String::from_utf8_lossy(&bytes));
            let ok = &op["responses"]["200"]["content"];
            if let Some(schema) = ok.get("application/json").map(|c| &c["schema"]) {
                let v: Value = serde_json::from_slice(&bytes).unwrap();
                validate(&doc, schema, &v, &format!("{method} {template}"))
                    .unwrap_or_else(|e| panic!("{e}"));
            }
            called += 1;
        }
    }
    assert_eq!(called, 18, "every documented operation was called");
    // An error answer matches the documented envelope.
    let (code, bytes) =
        call(Method::POST, format!("/admin/approvals/{}/deny", ids[2]), Some(admin), "{}".into())
            .await;
    assert_eq!(code, 400);
    let env = doc["components"]["schemas"]["ErrorEnvelope"].clone();
    validate(&doc, &env, &json(&bytes), "error").unwrap();
}
