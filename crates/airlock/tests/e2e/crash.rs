//! Crash consistency: the real `airlock serve` process under load, killed with SIGKILL at
//! random moments (after a random number of answered requests, so every kill lands under
//! load whatever the machine's speed), 10 times in `request` mode and 10 in `strict` mode. After each series:
//! `airlock audit verify` passes, and every request a client got an answer for has its
//! entries (in `strict`, its final entry too).

use crate::harness::*;
use airlock_authn::SessionKeys;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Start `airlock serve` in `dir`; return the child and its data-plane address.
async fn serve(dir: &Path) -> (tokio::process::Child, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_airlock"));
    cmd.args(["serve", "--config", "airlock.yaml"]).env_remove("ANTHROPIC_API_KEY");
    let (child, addr, _) = start(cmd, dir).await;
    (child, addr)
}

/// Run `cmd` (an `airlock serve`, possibly wrapped) in `dir` until it says it started;
/// return the child, its data-plane and admin addresses.
pub(crate) async fn start(
    mut cmd: tokio::process::Command,
    dir: &Path,
) -> (tokio::process::Child, String, String) {
    let mut child = cmd
        .current_dir(dir)
        .env("AIRLOCK_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let (addr, admin) = guard(async {
        loop {
            let line = lines.next_line().await.unwrap().expect("serve exited before starting");
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
            if v["message"] == "airlock started" {
                return (
                    v["listen"].as_str().unwrap().to_owned(),
                    v["admin"].as_str().unwrap().to_owned(),
                );
            }
        }
    })
    .await;
    // Keep draining stderr so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr, admin)
}

/// A small deterministic generator; the seed is printed so a failure can be replayed.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

/// Answered request ids, and a wake-up for each new one.
#[derive(Default)]
struct Acked {
    ids: Mutex<Vec<String>>,
    more: tokio::sync::Notify,
}

impl Acked {
    fn len(&self) -> usize {
        self.ids.lock().unwrap().len()
    }

    async fn wait_for(&self, n: usize) {
        loop {
            let more = self.more.notified();
            if self.len() >= n {
                return;
            }
            more.await;
        }
    }
}

async fn load(addr: String, token: String, acked: Arc<Acked>) {
    let client = reqwest_like::Client::new();
    while let Some(id) = client.post_messages(&addr, &token).await {
        acked.ids.lock().unwrap().push(id);
        acked.more.notify_waiters();
    }
}

/// A minimal keep-alive HTTP/1 client for the load loops.
pub(crate) mod reqwest_like {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client as Inner;
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::TokioExecutor;

    pub struct Client(Inner<HttpConnector, Full<Bytes>>);

    impl Client {
        pub fn new() -> Client {
            Client(Inner::builder(TokioExecutor::new()).build_http())
        }

        /// The status of one call (its body read to the end); `None` once the gateway is gone.
        pub async fn status(&self, url: &str, token: Option<&str>) -> Option<u16> {
            let mut req = if url.ends_with("/v1/messages") {
                http::Request::post(url).header("content-type", "application/json")
            } else {
                http::Request::get(url)
            };
            if let Some(t) = token {
                req = req.header("x-api-key", t);
            }
            let body = if url.ends_with("/v1/messages") { super::SIMPLE } else { "" };
            let response = self
                .0
                .request(req.body(Full::new(Bytes::from_static(body.as_bytes()))).unwrap())
                .await
                .ok()?;
            let status = response.status().as_u16();
            response.into_body().collect().await.ok()?;
            Some(status)
        }

        /// The request id of an answered (200) call; `None` once the gateway is gone.
        pub async fn post_messages(&self, addr: &str, token: &str) -> Option<String> {
            let req = http::Request::post(format!("http://{addr}/v1/messages"))
                .header("x-api-key", token)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from_static(super::SIMPLE.as_bytes())))
                .unwrap();
            let response = self.0.request(req).await.ok()?;
            let id = response.headers().get("x-airlock-request-id")?.to_str().ok()?.to_owned();
            let ok = response.status() == http::StatusCode::OK;
            // Answered means the whole body arrived.
            response.into_body().collect().await.ok()?;
            ok.then_some(id)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_load_loses_no_answered_request() {
    let seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
            as u64;
    println!("crash test seed {seed}");
    let mut rng = Lcg(seed);
    for mode in ["request", "strict"] {
        let dir = std::env::temp_dir().join(format!("airlock-crash-{}-{mode}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("airlock.yaml"),
            format!("listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\naudit:\n  durability: {mode}\n  instance: crash\n  checkpoint_every: 50\n"),
        )
        .unwrap();
        let acked = Arc::new(Acked::default());
        for _ in 0..10 {
            let (mut child, addr) = serve(&dir).await;
            let keys = SessionKeys::load_or_create(&dir.join("airlock-data/session.key")).unwrap();
            let token = keys.mint("crash", &[], 600, now()).unwrap().token;
            let loops: Vec<_> = (0..6)
                .map(|_| tokio::spawn(load(addr.clone(), token.clone(), acked.clone())))
                .collect();
            let target = acked.len() + 20 + rng.next(600) as usize;
            guard(acked.wait_for(target)).await;
            child.start_kill().unwrap(); // SIGKILL
            child.wait().await.unwrap();
            for l in loops {
                guard(l).await.unwrap();
            }
        }
        // One more start recovers the last crash; a clean stop signs a final checkpoint.
        let (mut child, _) = serve(&dir).await;
        let pid = child.id().unwrap().to_string();
        std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        guard(child.wait()).await.unwrap();

        let verify = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
            .args(["audit", "verify", "--config", "airlock.yaml"])
            .current_dir(&dir)
            .env("AIRLOCK_LOG", "error")
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&verify.stdout);
        assert_eq!(verify.status.code(), Some(0), "{mode}: verify failed (seed {seed}):\n{report}");
        assert!(!report.contains("without a final entry"), "{mode}: {report}");

        let acked = acked.ids.lock().unwrap().clone();
        assert!(
            acked.len() >= 200,
            "{mode}: every kill follows at least 20 answers ({})",
            acked.len()
        );
        let config = airlock_config::parse(
            "crash.yaml",
            &format!("store: sqlite://{}\n", dir.join("airlock-data/airlock.db").display()),
        )
        .unwrap();
        let mut store = airlock_store::Store::open(&config.store).unwrap();
        for id in &acked {
            let q = airlock_store::Query {
                request_id: Some(id.clone()),
                limit: 10,
                ..Default::default()
            };
            let kinds: Vec<String> =
                store.search(&q).unwrap().into_iter().map(|r| r.kind).collect();
            assert!(
                kinds.contains(&"request".to_owned()),
                "{mode}: {id} answered but not recorded (seed {seed})"
            );
            if mode == "strict" {
                assert!(
                    kinds.contains(&"response".to_owned()),
                    "{mode}: {id} answered without its final entry: {kinds:?} (seed {seed})"
                );
            }
        }
        println!("{mode}: {} answered requests, all recorded", acked.len());
    }
}

/// A full disk (the file-size limit reached, as `RLIMIT_FSIZE` makes it) while serving:
/// the audit store cannot commit, so requests get 503 and **no** upstream call, and
/// readiness goes false. The gateway does not die of SIGXFSZ (ignored, as a service manager
/// would) — it fails closed.
#[tokio::test]
async fn a_full_disk_fails_closed() {
    let dir = fresh_dir("diskfull");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mock_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mock_addr = mock_listener.local_addr().unwrap();
    let mock = airlock_mock::MockState::new(Some(UPSTREAM_KEY.to_owned()), None);
    tokio::spawn(airlock_mock::serve(mock_listener, mock.clone(), std::future::pending()));
    std::fs::write(
        dir.join("airlock.yaml"),
        format!("listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nupstream:\n  url: http://{mock_addr}\naudit:\n  instance: diskfull\n"),
    )
    .unwrap();
    // 768 KiB per file: the store starts fine and fills up after a few hundred requests.
    let mut cmd = tokio::process::Command::new("bash");
    cmd.args([
        "-c",
        &format!(
            "trap '' XFSZ; ulimit -f 768; exec {} serve --config airlock.yaml",
            env!("CARGO_BIN_EXE_airlock")
        ),
    ])
    .env("ANTHROPIC_API_KEY", UPSTREAM_KEY);
    let (mut child, addr, admin) = start(cmd, &dir).await;
    let keys = SessionKeys::load_or_create(&dir.join("airlock-data/session.key")).unwrap();
    let token = keys.mint("alice", &["eng".to_owned()], 600, now()).unwrap().token;
    let client = reqwest_like::Client::new();
    let url = format!("http://{addr}/v1/messages");
    let mut answered = 0;
    let mut refused = None;
    for i in 0..20_000 {
        match client.status(&url, Some(&token)).await.expect("the gateway stays up") {
            200 => answered += 1,
            503 => {
                refused = Some(i);
                break;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(refused.is_some(), "the store never filled up ({answered} answered)");
    assert!(answered > 10, "the store filled up at once");
    println!("{answered} answered before the disk was full");
    // Refused requests never reach the upstream; readiness says so.
    let upstream_calls = mock.received().len();
    for _ in 0..3 {
        assert_eq!(client.status(&url, Some(&token)).await, Some(503));
    }
    assert_eq!(mock.received().len(), upstream_calls, "a refused request reached the upstream");
    assert!(
        upstream_calls <= answered + 1,
        "{upstream_calls} upstream calls for {answered} answers"
    );
    assert_eq!(client.status(&format!("http://{admin}/readyz"), None).await, Some(503));
    assert!(child.try_wait().unwrap().is_none(), "the gateway died instead of failing closed");
    let _ = child.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
}
