//! `airlock mock-upstream`: an Anthropic-compatible mock shared by the tests, the demo and the
//! benchmarks. It answers `POST /v1/messages` (JSON and SSE), `count_tokens` and the models
//! endpoints under any path prefix and query string; it records every request it receives
//! (so tests can check what the gateway really sent) and notices when a stream is cancelled.
//! Behaviour is chosen per request by a script (see [`script`]); recorded real streams are
//! replayed from a fixtures directory (see [`fixture`]).

pub mod fixture;
pub mod script;

use airlock_wire::{ErrorType, Event};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use script::Script;
use serde_json::{Value, json};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};

type MockBody = UnsyncBoxBody<Bytes, std::io::Error>;

/// A request as the mock received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    pub version: http::Version,
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Shared state: configuration, the request log, and stream cancellation counts.
#[derive(Debug, Default)]
pub struct MockState {
    /// When set, requests must carry this `x-api-key` or get a 401.
    pub expected_key: Option<String>,
    pub fixtures_dir: Option<PathBuf>,
    /// HTTP/2's `SETTINGS_MAX_CONCURRENT_STREAMS` (hyper's default when unset).
    pub h2_max_streams: Option<u32>,
    received: Mutex<Vec<Received>>,
    connections: AtomicU64,
    cancelled: AtomicU64,
    /// Bytes of SSE frames handed to the connection (what back-pressure lets through).
    sent_bytes: AtomicU64,
    next_id: AtomicU64,
    pub changed: Notify,
}

/// How many received requests are kept (the oldest are dropped first).
const MAX_RECORDED: usize = 1000;

impl MockState {
    pub fn new(expected_key: Option<String>, fixtures_dir: Option<PathBuf>) -> Arc<MockState> {
        Arc::new(MockState { expected_key, fixtures_dir, ..MockState::default() })
    }

    /// As [`MockState::new`], allowing at most `h2_max_streams` concurrent streams on each
    /// HTTP/2 connection.
    pub fn with_h2_max_streams(
        expected_key: Option<String>,
        fixtures_dir: Option<PathBuf>,
        h2_max_streams: u32,
    ) -> Arc<MockState> {
        let h2_max_streams = Some(h2_max_streams);
        Arc::new(MockState { expected_key, fixtures_dir, h2_max_streams, ..MockState::default() })
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Bytes of SSE frames the mock has managed to hand to its connections so far.
    pub fn sent_bytes(&self) -> u64 {
        self.sent_bytes.load(Ordering::Acquire)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Acquire)
    }

    /// Streams whose client (the gateway) went away before the mock finished sending.
    pub fn cancelled(&self) -> u64 {
        self.cancelled.load(Ordering::Acquire)
    }

    /// Wait until `pred` holds, re-checking whenever the mock's state changes.
    pub async fn wait_until(&self, pred: impl Fn(&MockState) -> bool) {
        loop {
            let notified = self.changed.notified();
            if pred(self) {
                return;
            }
            notified.await;
        }
    }
}

/// Serve until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: Arc<MockState>,
    shutdown: impl Future<Output = ()>,
) {
    serve_with(listener, state, None, shutdown).await
}

/// Serve over TLS (`tls_config`) until `shutdown` resolves.
pub async fn serve_tls(
    listener: TcpListener,
    state: Arc<MockState>,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()>,
) {
    serve_with(listener, state, Some(tokio_rustls::TlsAcceptor::from(tls)), shutdown).await
}

/// A TLS server configuration from PEM files (a certificate chain and its PKCS#8 key),
/// offering `alpn` (e.g. `h2`, `http/1.1`) in that order.
pub fn tls_config(
    cert_pem: &std::path::Path,
    key_pem: &std::path::Path,
    alpn: &[&str],
) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert_pem)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", cert_pem.display()))?;
    let key =
        PrivateKeyDer::from_pem_file(key_pem).map_err(|e| format!("{}: {e}", key_pem.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Ok(Arc::new(config))
}

async fn serve_with(
    listener: TcpListener,
    state: Arc<MockState>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
            () = &mut shutdown => return,
        };
        // Small SSE frames must not wait on Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        state.connections.fetch_add(1, Ordering::AcqRel);
        let state = state.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_connection(TokioIo::new(stream), state).await,
                Some(tls) => {
                    if let Ok(stream) = tls.accept(stream).await {
                        serve_connection(TokioIo::new(stream), state).await;
                    }
                }
            }
        });
    }
}

/// HTTP/1.1 or HTTP/2 (by its preface, as with prior knowledge), whatever ALPN said.
async fn serve_connection<I>(io: I, state: Arc<MockState>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    if let Some(n) = state.h2_max_streams {
        builder.http2().max_concurrent_streams(n);
    }
    let service = service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, std::convert::Infallible>(handle(state, req).await) }
    });
    let _ = builder.serve_connection(io, service).await;
}

async fn handle(state: Arc<MockState>, req: Request<Incoming>) -> Response<MockBody> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return error(ErrorType::InvalidRequest, 400, "unreadable body"),
    };
    let path = parts.uri.path().to_owned();
    {
        if let Ok(mut log) = state.received.lock() {
            if log.len() >= MAX_RECORDED {
                log.remove(0);
            }
            log.push(Received {
                method: parts.method.clone(),
                version: parts.version,
                path_and_query: parts
                    .uri
                    .path_and_query()
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
                headers: parts.headers.clone(),
                body: body.clone(),
            });
        }
        state.changed.notify_waiters();
    }
    if let Some(expected) = &state.expected_key {
        let got = parts.headers.get("x-api-key").and_then(|v| v.to_str().ok()).unwrap_or("");
        if got != expected {
            // Echo what was received, as some real services do: the gateway must scrub it.
            return error(ErrorType::Authentication, 401, &format!("invalid x-api-key: {got}"));
        }
    }
    let script = parts
        .headers
        .get("x-mock")
        .and_then(|v| v.to_str().ok())
        .map(Script::parse)
        .or_else(|| Script::from_body(&String::from_utf8_lossy(&body)))
        .unwrap_or_default();
    let id = state.next_id.fetch_add(1, Ordering::Relaxed);
    let mut response = route(&state, &parts.method, &path, &body, &script, id).await;
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("req_mock_{id:06}")) {
        headers.insert("request-id", v);
    }
    headers.insert("anthropic-ratelimit-requests-remaining", HeaderValue::from_static("999"));
    if script.get("hop_headers") == Some("1") {
        // A misbehaving upstream: hop-by-hop headers, one of them named in Connection.
        headers.insert("connection", HeaderValue::from_static("x-hop-secret"));
        headers.insert("x-hop-secret", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("proxy-authenticate", HeaderValue::from_static("Basic"));
        headers.insert("upgrade", HeaderValue::from_static("h2c"));
    }
    response
}

async fn route(
    state: &Arc<MockState>,
    method: &Method,
    path: &str,
    body: &Bytes,
    script: &Script,
    id: u64,
) -> Response<MockBody> {
    let rest = path.find("/v1/").map(|i| &path[i..]).unwrap_or(path);
    match (method, rest) {
        (&Method::POST, "/v1/messages") => messages(state, body, script, id).await,
        (&Method::POST, "/v1/messages/count_tokens") => {
            json_response(200, &json!({ "input_tokens": (body.len() / 4).max(1) }))
        }
        (&Method::GET, "/v1/models") => json_response(200, &models_page()),
        (&Method::GET, r) if r.starts_with("/v1/models/") => {
            let id = &r["/v1/models/".len()..];
            match models().into_iter().find(|m| m["id"] == id) {
                Some(m) => json_response(200, &m),
                None => error(ErrorType::NotFound, 404, &format!("model: {id}")),
            }
        }
        _ => error(ErrorType::NotFound, 404, "not found"),
    }
}

fn models() -> Vec<Value> {
    ["claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-5"]
        .iter()
        .map(|id| json!({"type":"model","id":id,"display_name":id,"created_at":"2025-09-29T00:00:00Z"}))
        .collect()
}

fn models_page() -> Value {
    let data = models();
    json!({"data": data, "has_more": false, "first_id": data[0]["id"], "last_id": data[data.len()-1]["id"]})
}

/// One content block of a scripted answer.
#[derive(Debug, Clone)]
enum Block {
    Text(String),
    Thinking { thinking: String, signature: String },
    ToolUse { id: String, name: String, input: String },
}

async fn messages(
    state: &Arc<MockState>,
    body: &Bytes,
    script: &Script,
    id: u64,
) -> Response<MockBody> {
    let request: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => return error(ErrorType::InvalidRequest, 400, "body is not JSON"),
    };
    let stream = request.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let model = request.get("model").and_then(Value::as_str).unwrap_or("claude-mock").to_owned();
    let scenario = script.scenario().to_owned();
    if scenario == "hang" {
        // Never answer: the gateway's time-to-headers limit must fire.
        std::future::pending::<()>().await;
    }
    if scenario == "error" {
        let status = script.num("status", 529) as u16;
        let kind = match status {
            400 => ErrorType::InvalidRequest,
            401 => ErrorType::Authentication,
            403 => ErrorType::Permission,
            404 => ErrorType::NotFound,
            429 => ErrorType::RateLimit,
            529 => ErrorType::Overloaded,
            _ => ErrorType::Api,
        };
        let mut r = error(kind, status, "scripted error");
        if let Some(ra) = script.get("retry_after").and_then(|v| HeaderValue::from_str(v).ok()) {
            r.headers_mut().insert(header::RETRY_AFTER, ra);
        }
        return r;
    }
    if scenario == "fixture" {
        let recording = state
            .fixtures_dir
            .as_deref()
            .zip(script.get("fixture"))
            .and_then(|(dir, name)| fixture::resolve(dir, name))
            .ok_or_else(|| "no fixtures directory, or a fixture path outside it".to_owned())
            .and_then(|p| fixture::load(&p));
        return match recording {
            Ok(fixture::Recording::Json(bytes)) => {
                raw_response(200, "application/json", Bytes::from(bytes))
            }
            Ok(fixture::Recording::Sse(bytes)) => sse_response(
                state.clone(),
                split_frames(&bytes, script.num("chunk", 0) as usize),
                script,
            ),
            Err(e) => error(ErrorType::InvalidRequest, 400, &e),
        };
    }
    let reply = match scenario.as_str() {
        "echo" => format!("Echo: {}", last_user_text(&request)),
        _ => script.get("text").unwrap_or("Hello from the Airlock mock upstream.").to_owned(),
    };
    let mut blocks = Vec::new();
    let mut stop_reason = "end_turn";
    match scenario.as_str() {
        "thinking" => {
            blocks.push(Block::Thinking {
                thinking: "The user wants a greeting. I will keep it short.".to_owned(),
                signature: "EqQBCkYIBxgCKkBmocksignatureAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=="
                    .to_owned(),
            });
            blocks.push(Block::Text(reply));
        }
        // The agent ran the tool and sent its result back: finish the turn with it, so a
        // real agent loop (Claude Code, the Agent SDK) completes one full round trip.
        "tool_use" if last_tool_result(&request).is_some() => {
            let result = last_tool_result(&request).unwrap_or_default();
            blocks.push(Block::Text(format!("The tool returned: {}", result.trim())));
        }
        "tool_use" => {
            blocks.push(Block::Text("I'll run that command.".to_owned()));
            let command = script.get("command").unwrap_or("echo hello");
            blocks.push(Block::ToolUse {
                id: format!("toolu_mock{id:06}"),
                name: script.get("tool").unwrap_or("Bash").to_owned(),
                input: json!({ "command": command, "description": "Print a greeting" }).to_string(),
            });
            stop_reason = "tool_use";
        }
        _ => blocks.push(Block::Text(reply)),
    }
    let msg_id = format!("msg_mock{id:06}");
    if !stream {
        return json_response(200, &message_json(&msg_id, &model, &blocks, stop_reason));
    }
    let events = stream_events(
        &msg_id,
        &model,
        &blocks,
        stop_reason,
        script.num("chunk", 5).max(1) as usize,
    );
    let mut frames: Vec<Bytes> = events.iter().map(airlock_wire::encode).collect();
    if let Some(i) = events.iter().position(|e| e.effective_name() == "content_block_delta") {
        // `repeat=N`: the first delta N times in all (shared bytes, so a long stream is cheap).
        let n = script.num("repeat", 1).max(1) as usize;
        let frame = frames[i].clone();
        frames.splice(i..i, std::iter::repeat_n(frame, n - 1));
    }
    if scenario == "huge_event" {
        let big = json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x".repeat(5 << 20)}});
        frames
            .insert(3, airlock_wire::encode(&Event::named("content_block_delta", big.to_string())));
    }
    sse_response(state.clone(), frames, script)
}

fn last_user_text(request: &Value) -> String {
    let Some(last) = request
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
    else {
        return String::new();
    };
    joined_text(&last["content"])
}

/// A content value as text: a string as is, or the `text` of each block, space-joined.
fn joined_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// The text of a `tool_result` block in the last user message, if it carries one.
fn last_tool_result(request: &Value) -> Option<String> {
    let last = request.get("messages")?.as_array()?.iter().rev().find(|m| m["role"] == "user")?;
    let result = last["content"].as_array()?.iter().find(|b| b["type"] == "tool_result")?;
    Some(joined_text(&result["content"]))
}

fn usage(output_tokens: u64) -> Value {
    json!({"input_tokens":17,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,
           "cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":0},
           "output_tokens":output_tokens,"service_tier":"standard","inference_geo":"not_available"})
}

fn message_json(id: &str, model: &str, blocks: &[Block], stop_reason: &str) -> Value {
    let content: Vec<Value> = blocks
        .iter()
        .map(|b| match b {
            Block::Text(t) => json!({"type":"text","text":t}),
            Block::Thinking { thinking, signature } => json!({"type":"thinking","thinking":thinking,"signature":signature}),
            Block::ToolUse { id, name, input } => {
                json!({"type":"tool_use","id":id,"name":name,"input":serde_json::from_str::<Value>(input).unwrap_or(json!({}))})
            }
        })
        .collect();
    json!({"id":id,"type":"message","role":"assistant","model":model,"content":content,
           "stop_reason":stop_reason,"stop_sequence":null,"usage":usage(12)})
}

/// Split `s` into pieces of at most `n` characters (never inside a UTF-8 sequence).
fn pieces(s: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    chars.chunks(n).map(|c| c.iter().collect()).collect()
}

fn stream_events(
    id: &str,
    model: &str,
    blocks: &[Block],
    stop_reason: &str,
    chunk: usize,
) -> Vec<Event> {
    let mut message = message_json(id, model, &[], "end_turn");
    message["stop_reason"] = Value::Null;
    message["usage"] = usage(1);
    let mut events = vec![Event::named(
        "message_start",
        json!({"type":"message_start","message":message}).to_string(),
    )];
    for (index, block) in blocks.iter().enumerate() {
        let (start, deltas): (Value, Vec<Value>) = match block {
            Block::Text(t) => (
                json!({"type":"text","text":""}),
                pieces(t, chunk)
                    .into_iter()
                    .map(|p| json!({"type":"text_delta","text":p}))
                    .collect(),
            ),
            Block::Thinking { thinking, signature } => {
                let mut d: Vec<Value> = pieces(thinking, chunk)
                    .into_iter()
                    .map(|p| json!({"type":"thinking_delta","thinking":p}))
                    .collect();
                d.push(json!({"type":"signature_delta","signature":signature}));
                (json!({"type":"thinking","thinking":"","signature":""}), d)
            }
            Block::ToolUse { id, name, input } => {
                let mut d = vec![json!({"type":"input_json_delta","partial_json":""})];
                d.extend(
                    pieces(input, chunk)
                        .into_iter()
                        .map(|p| json!({"type":"input_json_delta","partial_json":p})),
                );
                (json!({"type":"tool_use","id":id,"name":name,"input":{}}), d)
            }
        };
        events.push(Event::named(
            "content_block_start",
            json!({"type":"content_block_start","index":index,"content_block":start}).to_string(),
        ));
        if index == 0 {
            events.push(Event::named("ping", "{\"type\": \"ping\"}"));
        }
        for delta in deltas {
            events.push(Event::named(
                "content_block_delta",
                json!({"type":"content_block_delta","index":index,"delta":delta}).to_string(),
            ));
        }
        events.push(Event::named(
            "content_block_stop",
            json!({"type":"content_block_stop","index":index}).to_string(),
        ));
    }
    events.push(Event::named(
        "message_delta",
        json!({"type":"message_delta","delta":{"stop_reason":stop_reason,"stop_sequence":null},"usage":{"output_tokens":12}}).to_string(),
    ));
    events.push(Event::named("message_stop", "{\"type\":\"message_stop\"}"));
    events
}

/// Raw SSE bytes as frames: whole events (`chunk == 0`) or fixed-size byte pieces.
fn split_frames(bytes: &[u8], chunk: usize) -> Vec<Bytes> {
    if chunk > 0 {
        return bytes.chunks(chunk).map(Bytes::copy_from_slice).collect();
    }
    let mut out = Vec::new();
    let mut start = 0;
    while let Some(pos) = bytes[start..].windows(2).position(|w| w == b"\n\n") {
        out.push(Bytes::copy_from_slice(&bytes[start..start + pos + 2]));
        start += pos + 2;
    }
    if start < bytes.len() {
        out.push(Bytes::copy_from_slice(&bytes[start..]));
    }
    out
}

/// Send frames with the script's timing and faults: `delay_ms` before each frame; for
/// `scenario=drop|stall|midstream_error`, the fault after `after` frames.
fn sse_response(state: Arc<MockState>, frames: Vec<Bytes>, script: &Script) -> Response<MockBody> {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let delay = Duration::from_millis(script.num("delay_ms", 0));
    let scenario = script.scenario().to_owned();
    let after = script.num("after", 3) as usize;
    tokio::spawn(async move {
        for (i, frame) in frames.into_iter().enumerate() {
            if i == after {
                match scenario.as_str() {
                    "drop" => {
                        let _ =
                            tx.send(Err(std::io::Error::other("scripted connection drop"))).await;
                        return;
                    }
                    "stall" => {
                        // Hold the stream open until the other side goes away.
                        tx.closed().await;
                        state.cancelled.fetch_add(1, Ordering::AcqRel);
                        state.changed.notify_waiters();
                        return;
                    }
                    "midstream_error" => {
                        let frame = airlock_wire::sse_error_event(
                            ErrorType::Overloaded,
                            "Overloaded",
                            "req_mock",
                        );
                        let _ = tx.send(Ok(frame)).await;
                        return;
                    }
                    _ => {}
                }
            }
            if !delay.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = tx.closed() => {}
                }
            }
            let len = frame.len() as u64;
            if tx.send(Ok(frame)).await.is_err() {
                state.cancelled.fetch_add(1, Ordering::AcqRel);
                state.changed.notify_waiters();
                return;
            }
            state.sent_bytes.fetch_add(len, Ordering::AcqRel);
        }
    });
    let mut r = Response::new(ChannelBody(rx).boxed_unsync());
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream; charset=utf-8"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

struct ChannelBody(mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.0.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data)))
    }
}

fn raw_response(status: u16, content_type: &'static str, body: Bytes) -> Response<MockBody> {
    let mut r = Response::new(Full::new(body).map_err(|never| match never {}).boxed_unsync());
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json_response(status: u16, value: &Value) -> Response<MockBody> {
    raw_response(status, "application/json", Bytes::from(value.to_string()))
}

fn error(kind: ErrorType, status: u16, message: &str) -> Response<MockBody> {
    raw_response(
        status,
        "application/json",
        airlock_wire::envelope(kind, message, "req_mock_error"),
    )
}
