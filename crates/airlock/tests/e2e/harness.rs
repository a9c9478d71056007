//! Starts the real gateway and the mock upstream in-process on loopback, with a temp dir for
//! state, and offers a small raw HTTP client. Every test builds its own harness.

use airlock_authn::SessionKeys;
use airlock_config::Secret;
use airlock_mock::MockState;
use airlock_proxy::{Gateway, RecordData, RecordSink};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, oneshot};

static NEXT_DIR: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub const UPSTREAM_KEY: &str = "sk-ant-test-upstream-key-0123456789";

/// Collects request records so tests can check there is exactly one per request.
#[derive(Default)]
pub struct Records {
    pub list: Mutex<Vec<RecordData>>,
    pub changed: Notify,
}

impl RecordSink for Records {
    fn record(&self, r: &RecordData) {
        self.list.lock().unwrap().push(r.clone());
        self.changed.notify_waiters();
    }
}

impl Records {
    /// Wait until the record of request `id` has been delivered.
    pub async fn wait_for_request(&self, id: &str) -> RecordData {
        guard(async {
            loop {
                let notified = self.changed.notified();
                if let Some(r) = self.list.lock().unwrap().iter().find(|r| r.request_id == id) {
                    return r.clone();
                }
                notified.await;
            }
        })
        .await
    }

    pub async fn wait_for(&self, n: usize) -> Vec<RecordData> {
        guard(async {
            loop {
                let notified = self.changed.notified();
                {
                    let list = self.list.lock().unwrap();
                    if list.len() >= n {
                        return list.clone();
                    }
                }
                notified.await;
            }
        })
        .await
    }
}

/// Bound a wait so a broken gateway fails the test instead of hanging it. Not a timing
/// assertion: the bound is far above any expected duration.
pub async fn guard<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("test step did not finish within 30s")
}

pub struct Harness {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub mock_addr: SocketAddr,
    pub mock: Arc<MockState>,
    pub keys: Arc<SessionKeys>,
    pub records: Arc<Records>,
    pub issuers: Arc<airlock_proxy::idp::Issuers>,
    pub config: airlock_config::Config,
    pub revocations: Arc<airlock_proxy::revoke::Revocations>,
    /// The gateway's policy cell: tests wait on its reloads.
    pub policy: Arc<airlock_proxy::PolicyCell>,
    pub audit: airlock_proxy::audit::Audit,
    /// The running gateway: tests wait on its signals (approvals changed) instead of time.
    pub gateway: Arc<Gateway>,
    shutdown: Option<oneshot::Sender<()>>,
    pub stopped: Option<tokio::task::JoinHandle<()>>,
    client: Client<HttpConnector, Full<Bytes>>,
}

pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/anthropic")
}

pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::start_with("").await
    }

    /// A gateway judging by `policy` (YAML), with `extra` config as in [`Harness::start_with`].
    pub async fn start_with_policy(policy: &str, extra: &str) -> Harness {
        let path = std::env::temp_dir().join(format!(
            "airlock-e2e-policy-{}-{}.yaml",
            std::process::id(),
            NEXT_DIR.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::write(&path, policy).unwrap();
        Harness::start_with(&format!("policy: {}\n{extra}", path.display())).await
    }

    /// `extra` is YAML appended to the generated config (listeners and upstream are set here).
    pub async fn start_with(extra: &str) -> Harness {
        let mock_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mock_addr = mock_listener.local_addr().unwrap();
        let mock = MockState::new(Some(UPSTREAM_KEY.to_owned()), Some(fixtures_dir()));
        tokio::spawn(airlock_mock::serve(mock_listener, mock.clone(), std::future::pending()));
        Harness::start_against(&format!("http://{mock_addr}"), mock_addr, mock, extra).await
    }

    pub async fn start_against(
        upstream: &str,
        mock_addr: SocketAddr,
        mock: Arc<MockState>,
        extra: &str,
    ) -> Harness {
        Harness::start_full(upstream, mock_addr, mock, extra, None).await
    }

    /// A second gateway beside `self`: the same upstream and session key (as several
    /// instances behind one load balancer), its own `extra` config.
    pub async fn sibling(&self, extra: &str) -> Harness {
        let upstream = format!("http://{}", self.mock_addr);
        Harness::start_full(
            &upstream,
            self.mock_addr,
            self.mock.clone(),
            extra,
            Some(self.keys.clone()),
        )
        .await
    }

    async fn start_full(
        upstream: &str,
        mock_addr: SocketAddr,
        mock: Arc<MockState>,
        extra: &str,
        keys: Option<Arc<SessionKeys>>,
    ) -> Harness {
        let has_upstream_section = extra.contains("upstream:");
        let text = if has_upstream_section {
            format!("listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\n{extra}")
                .replace("UPSTREAM_URL", upstream)
        } else {
            format!(
                "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nupstream:\n  url: {upstream}\n{extra}"
            )
        };
        // Every harness has its own audit store (a temp SQLite file) unless the test names one.
        // Pids are reused: a directory of that name was left by a process that has exited
        // (perhaps with a store a test made refuse inserts), so it starts empty.
        let data_dir = std::env::temp_dir().join(format!(
            "airlock-e2e-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&data_dir);
        let text = if text.contains("\nstore:") {
            text
        } else {
            format!("{text}\nstore: sqlite://{}\n", data_dir.join("airlock.db").display())
        };
        // Keys default to `airlock-data/` in the working directory when the store is not a
        // SQLite file: keep them in the temp dir instead.
        let text = if text.contains("\nmasking_key_file:") {
            text
        } else {
            format!("{text}\nmasking_key_file: {}\n", data_dir.join("masking.key").display())
        };
        let config = airlock_config::parse("test.yaml", &text).unwrap_or_else(|e| panic!("{e}"));
        let audit = airlock_proxy::audit::start(&config).await.expect("audit log starts");
        let audit_handle = audit.clone();
        let keys = keys.unwrap_or_else(|| Arc::new(SessionKeys::generate().unwrap()));
        let records = Arc::new(Records::default());
        let gateway = Gateway::new(
            &config,
            keys.clone(),
            Secret::new(UPSTREAM_KEY),
            airlock_proxy::system_clock(),
            records.clone(),
        )
        .unwrap()
        .with_audit(audit)
        .with_policy(airlock_proxy::policy::load(&config).unwrap_or_else(|e| panic!("{e}")))
        .with_mask_key(airlock_proxy::policy::load_mask_key(&config).unwrap());
        let data = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (addr, admin_addr) = (data.local_addr().unwrap(), admin.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let issuers = gateway.issuers.clone();
        let policy = gateway.policy.clone();
        let revocations = gateway.revocations.clone();
        let gateway = Arc::new(gateway);
        let running = gateway.clone();
        let stopped = tokio::spawn(airlock_proxy::run(running, data, admin, async move {
            let _ = rx.await;
        }));
        Harness {
            addr,
            admin: admin_addr,
            mock_addr,
            mock,
            keys,
            records,
            issuers,
            revocations,
            policy,
            audit: audit_handle,
            gateway,
            config,
            shutdown: Some(tx),
            stopped: Some(stopped),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// A connection to this gateway's store (audit entries, checkpoints, revocations).
    pub fn store(&self) -> airlock_store::Store {
        airlock_store::Store::open(&self.config.store).unwrap()
    }

    /// Every audit entry of request `id`, oldest first, once its final entry is committed
    /// (the record is delivered after the entry is queued; then the writer is synced).
    pub async fn audit_entries(&self, id: &str) -> Vec<airlock_audit::Row> {
        self.records.wait_for_request(id).await;
        guard(self.audit.sync()).await.unwrap();
        let q = airlock_store::Query {
            request_id: Some(id.to_owned()),
            limit: 100,
            ..Default::default()
        };
        let mut rows = self.store().search(&q).unwrap();
        rows.sort_by_key(|r| r.seq);
        rows
    }

    /// A fresh schema in the PostgreSQL test database, as a `store:` URL.
    pub fn postgres_store() -> String {
        let url = std::env::var("AIRLOCK_TEST_POSTGRES_URL").expect(
            "AIRLOCK_TEST_POSTGRES_URL must name a PostgreSQL database (scripts/test sets it)",
        );
        let schema = format!(
            "e2e{}x{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        // Names carry the pid, and pids are reused: a schema of that name was left by a test
        // process that has exited, never by a live one.
        admin
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
            ))
            .unwrap();
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}options=-csearch_path%3D{schema}")
    }

    pub fn token(&self) -> String {
        self.keys.mint("alice", &["eng".to_owned()], 600, now()).unwrap().token
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Send a request; return the response with its body still streaming.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Response<Incoming> {
        self.send_to(self.addr, method, path, headers, body).await
    }

    pub async fn send_to(
        &self,
        addr: SocketAddr,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Response<Incoming> {
        let mut req = Request::builder().method(method).uri(format!("http://{addr}{path}"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
        guard(self.client.request(req)).await.unwrap()
    }

    /// Call the admin listener and read the whole response.
    pub async fn admin_call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (StatusCode, HeaderMap, Bytes) {
        self.read_whole(self.admin, method, path, headers, body).await
    }

    /// Send to the data listener and read the whole response.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (StatusCode, HeaderMap, Bytes) {
        self.read_whole(self.addr, method, path, headers, body).await
    }

    async fn read_whole(
        &self,
        addr: SocketAddr,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (StatusCode, HeaderMap, Bytes) {
        let (parts, body) = self.send_to(addr, method, path, headers, body).await.into_parts();
        (parts.status, parts.headers, guard(body.collect()).await.unwrap().to_bytes())
    }

    /// Wait until every OIDC issuer's keys are loaded, then check the admin listener agrees.
    pub async fn wait_ready(&self) {
        guard(self.issuers.wait_ready()).await;
        assert_eq!(self.admin_call(Method::GET, "/readyz", &[], "").await.0, StatusCode::OK);
    }

    /// Open a scripted streaming request; the body is left for the test to read (or drop).
    pub async fn open_stream(&self, script: &str) -> Response<Incoming> {
        let token = self.token();
        let headers = [
            ("x-api-key", token.as_str()),
            ("content-type", "application/json"),
            ("x-mock", script),
        ];
        self.send(Method::POST, "/v1/messages", &headers, STREAM).await
    }

    /// POST /v1/messages with a valid token and the usual headers.
    pub async fn messages(
        &self,
        body: &str,
        extra: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, Bytes) {
        let token = self.token();
        let mut headers = vec![
            ("x-api-key", token.as_str()),
            ("anthropic-version", "2023-06-01"),
            ("content-type", "application/json"),
        ];
        headers.extend_from_slice(extra);
        self.call(Method::POST, "/v1/messages", &headers, body).await
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// `promtool check metrics` reads `text` as valid exposition format, without lint problems.
pub fn assert_promtool_accepts(text: &str) {
    let promtool = std::env::var("AIRLOCK_TEST_PROMTOOL").expect(
        "AIRLOCK_TEST_PROMTOOL must name promtool (scripts/test finds it; .ci/run installs it)",
    );
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

/// Assert an Anthropic error envelope with the given type.
pub fn assert_envelope(bytes: &[u8], kind: &str) {
    let v = json(bytes);
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["type"], kind, "{v}");
    assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert!(v["request_id"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
}

pub fn decode_events(bytes: &[u8]) -> Vec<(String, String)> {
    let mut d = airlock_wire::Decoder::new(64 << 20);
    d.push(bytes).unwrap().into_iter().map(|e| (e.effective_name(), e.data)).collect()
}

pub const SIMPLE: &str = r#"{"model":"claude-sonnet-4-5","max_tokens":64,"messages":[{"role":"user","content":"Hello"}]}"#;
pub const STREAM: &str = r#"{"model":"claude-sonnet-4-5","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"Hello"}]}"#;

/// A policy that lets everything through unmasked: for tests of relay fidelity.
pub const PASSTHROUGH_POLICY: &str = "version: 1\ngroups:\n  default: {}\n";

/// Events with each tool call in the shape the response guard releases it: its start (input
/// `{}`), one `input_json_delta` with the whole input, its stop. Everything else as it was.
/// Applied to what the upstream sent and what the client got, the two must be equal.
pub fn canonical_tool_calls(events: &[(String, String)]) -> Vec<(String, String)> {
    use serde_json::{Value, json};
    let mut out = Vec::new();
    let mut open: std::collections::HashMap<u64, (Value, String)> = Default::default();
    for (name, data) in events {
        let v: Value = serde_json::from_str(data).unwrap_or(Value::Null);
        let i = v["index"].as_u64().unwrap_or(0);
        match name.as_str() {
            "content_block_start"
                if matches!(
                    v["content_block"]["type"].as_str(),
                    Some("tool_use" | "server_tool_use")
                ) =>
            {
                open.insert(i, (v, String::new()));
            }
            "content_block_delta" if open.contains_key(&i) => {
                open.get_mut(&i)
                    .unwrap()
                    .1
                    .push_str(v["delta"]["partial_json"].as_str().unwrap_or(""));
            }
            "content_block_stop" if open.contains_key(&i) => {
                let (mut start, json) = open.remove(&i).unwrap();
                let input: Value = if json.trim().is_empty() {
                    start["content_block"]["input"].clone()
                } else {
                    serde_json::from_str(&json).unwrap()
                };
                start["content_block"]["input"] = json!({});
                out.push(("content_block_start".into(), start.to_string()));
                let delta = json!({"type": "content_block_delta", "index": i,
                    "delta": {"type": "input_json_delta", "partial_json": input.to_string()}});
                out.push(("content_block_delta".into(), delta.to_string()));
                out.push((name.clone(), v.to_string()));
            }
            "message_delta" | "message_stop" | "error" => {
                // An unfinished call is never released.
                open.clear();
                out.push((name.clone(), reserialise(data)));
            }
            _ => out.push((name.clone(), reserialise(data))),
        }
    }
    out
}

/// JSON data in one canonical spelling (the guard re-serialises what it touches).
fn reserialise(data: &str) -> String {
    serde_json::from_str::<serde_json::Value>(data)
        .map_or_else(|_| data.to_owned(), |v| v.to_string())
}

/// The request id the gateway put on a response.
pub fn request_id(headers: &http::HeaderMap) -> String {
    headers["x-airlock-request-id"].to_str().unwrap().to_owned()
}

/// A webhook endpoint on loopback: answers 500 to the first `failures` posts, then 200; every
/// body it received (failed ones included) comes out of the channel, in order.
pub async fn webhook_receiver(
    failures: usize,
) -> (u16, tokio::sync::mpsc::UnboundedReceiver<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else { return };
            let (tx, seen) = (tx.clone(), seen.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Read the head, then Content-Length bytes of body.
                let (head_end, len) = loop {
                    let n = conn.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap())
                            })
                            .unwrap_or(0);
                        break (i + 4, len);
                    }
                };
                while buf.len() < head_end + len {
                    let n = conn.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let n = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let status = if n < failures { "500 Internal Server Error" } else { "200 OK" };
                let answer =
                    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                let _ = conn.write_all(answer.as_bytes()).await;
                let _ =
                    tx.send(String::from_utf8_lossy(&buf[head_end..head_end + len]).into_owned());
            });
        }
    });
    (port, rx)
}

/// Config for one of several gateways sharing the PostgreSQL `store`: its own chain `name`,
/// the audit key and its checkpoint file in `dir` (never the working directory).
pub fn shared_store_config(store: &str, dir: &std::path::Path, name: &str) -> String {
    format!(
        "store: {store}\naudit:\n  instance: {name}\n  signing_key_file: {}\n  checkpoint_file: {}\n",
        dir.join("audit.key").display(),
        dir.join(format!("{name}.jsonl")).display()
    )
}

/// An empty temp directory for one test. Names carry the pid, and pids are reused: whatever a
/// process that has exited left under this name is removed first.
pub fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "airlock-{name}-{}-{}",
        std::process::id(),
        NEXT_DIR.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
