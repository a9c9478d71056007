//! A real OIDC provider for the tests: `tests/idp/oidc_provider.mjs` (panva's oidc-provider),
//! started per test on a free loopback port and killed when dropped.

use crate::harness::{Harness, guard};
use airlock_proxy::fetch::Fetcher;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

pub fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)
}

pub fn node_modules() -> String {
    std::env::var("AIRLOCK_TEST_NODE_MODULES").unwrap_or_else(|_| {
        panic!("AIRLOCK_TEST_NODE_MODULES is not set: run the tests with ./scripts/test")
    })
}

pub struct Idp {
    pub issuer: String,
    _child: tokio::process::Child,
    http: Fetcher,
}

impl Idp {
    pub async fn start() -> Idp {
        Idp::start_with(&[]).await
    }

    /// An IdP with extra environment (`AIRLOCK_IDP_NO_DEVICE=1`: no device flow).
    pub async fn start_with(env: &[(&str, &str)]) -> Idp {
        let mut child = tokio::process::Command::new("node")
            .arg(repo_file("tests/idp/oidc_provider.mjs"))
            .envs(env.iter().copied())
            .env("AIRLOCK_TEST_NODE_MODULES", node_modules())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("node must be installed to run the OIDC provider");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = guard(lines.next_line()).await.unwrap().expect("the IdP printed nothing");
        let issuer = serde_json::from_str::<serde_json::Value>(&first).unwrap()["issuer"]
            .as_str()
            .unwrap()
            .to_owned();
        // Keep draining stdout so the provider never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Idp { issuer, _child: child, http: Fetcher::new(Duration::from_secs(10)).unwrap() }
    }

    /// The `identity.oidc` entry for this IdP; `extra` is more keys at the same indentation.
    pub fn config(&self, extra: &str) -> String {
        let mut text = format!(
            "identity:\n  session:\n    ttl: 15m\n    max_ttl: 1h\n  oidc:\n    - issuer: {}\n      audience: urn:airlock\n      client_id: airlock-cli\n      scopes: openid offline_access api\n      algorithms: [ES256]\n",
            self.issuer
        );
        for line in extra.lines().filter(|l| !l.trim().is_empty()) {
            text.push_str(&format!("      {}\n", line.trim()));
        }
        text
    }

    /// A JWT access token for the service client, through the real client-credentials grant.
    pub async fn service_token(&self) -> String {
        let answer = self
            .http
            .post_form(
                &format!("{}/token", self.issuer),
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", "airlock-svc"),
                    ("client_secret", "svc-secret"),
                    ("scope", "api"),
                ],
            )
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
        assert!(answer.status.is_success(), "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// Requests the IdP has served, per path.
    pub async fn served(&self, path: &str) -> u64 {
        let answer = self.http.get(&format!("{}/__stats", self.issuer)).await.unwrap();
        let stats: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
        stats[path].as_u64().unwrap_or(0)
    }
}

/// The `airlock` binary with its credentials in `dir`.
pub fn airlock_cli(dir: &Path, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_airlock"));
    cmd.args(args)
        .env("AIRLOCK_CONFIG_DIR", dir)
        .env("AIRLOCK_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// `airlock login --gateway` through the IdP's device flow, with `approve_device.py` as the
/// person at the browser signing in as `user`. Credentials land in `dir`.
pub async fn device_login(h: &Harness, dir: &Path, user: &str) {
    browser_login(h, dir, user, &[]).await
}

/// `airlock login` with `extra` arguments (`--browser`), the browser played by
/// `approve_device.py` (it follows the IdP's forms, and for the code flow the redirect to the
/// CLI's loopback listener, whose page ends the walk).
pub async fn browser_login(h: &Harness, dir: &Path, user: &str, extra: &[&str]) {
    let gateway = h.url("");
    let mut args = vec!["login", "--gateway", gateway.as_str()];
    args.extend_from_slice(extra);
    let mut login = airlock_cli(dir, &args).spawn().unwrap();
    let mut lines = BufReader::new(login.stderr.take().unwrap()).lines();
    let url = guard(async {
        loop {
            let line = lines.next_line().await.unwrap().expect("login ended without a URL");
            if let Some(url) = line.strip_prefix("To sign in, open ") {
                return url.to_owned();
            }
        }
    })
    .await;
    let approve = tokio::process::Command::new("python3")
        .arg(repo_file("tests/idp/approve_device.py"))
        .args([&url, user])
        .output()
        .await
        .unwrap();
    assert!(approve.status.success(), "{}", String::from_utf8_lossy(&approve.stdout));
    let status = guard(login.wait()).await.unwrap();
    assert!(status.success(), "airlock login failed");
}
