//! The real SDK clients, unchanged but for base URL and token, through the gateway to the
//! mock: the Python `anthropic` SDK 1.x (x-api-key, 2023-06-01) and 2.x (Bearer, 2026-10-21),
//! and `@anthropic-ai/sdk`. `./scripts/test` installs them and sets the variables below.

use crate::harness::*;
use std::path::PathBuf;

pub(crate) fn client_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients").join(name)
}

pub(crate) fn required_env(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: run the tests with ./scripts/test, which installs the SDK clients"
        )
    })
}

pub(crate) async fn run_client(
    h: &Harness,
    program: &str,
    args: &[PathBuf],
    envs: &[(&str, String)],
) {
    let token = h.token();
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", std::env::temp_dir())
        .env("ANTHROPIC_BASE_URL", format!("http://{}", h.addr))
        .env("ANTHROPIC_API_KEY", &token)
        .env("AIRLOCK_BAD_TOKEN", h.keys.mint("alice", &[], 60, now() - 3600).unwrap().token)
        .kill_on_drop(true);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(std::time::Duration::from_secs(120), cmd.output())
        .await
        .expect("client timed out")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{program} failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("ALL CHECKS PASSED"), "{stdout}\n{stderr}");
    // The mock saw only the gateway's key, never the client's token.
    let received = h.mock.received();
    assert!(received.len() >= 6, "{} requests reached the mock", received.len());
    for r in &received {
        assert_eq!(r.headers["x-api-key"], UPSTREAM_KEY);
        assert!(!r.headers.contains_key("authorization"));
        for (_, v) in &r.headers {
            assert!(!v.to_str().unwrap_or("").contains(&token), "client token reached upstream");
        }
    }
}

async fn python_sdk(var: &str, version: &str) {
    let h = Harness::start().await;
    let python = required_env(var);
    run_client(
        &h,
        &python,
        &[client_script("python_sdk.py")],
        &[("EXPECT_SDK_MAJOR", version.to_owned())],
    )
    .await;
    let first = &h.mock.received()[0];
    // The SDK's own API version reaches the upstream unchanged.
    let expected_version = if version == "1" { "2023-06-01" } else { "2026-10-21" };
    assert_eq!(first.headers["anthropic-version"], expected_version);
}

#[tokio::test]
async fn python_anthropic_1x() {
    python_sdk("AIRLOCK_TEST_PYTHON_ANTHROPIC1", "1").await;
}

#[tokio::test]
async fn python_anthropic_2x() {
    python_sdk("AIRLOCK_TEST_PYTHON_ANTHROPIC2", "2").await;
}

#[tokio::test]
async fn typescript_anthropic_sdk() {
    let h = Harness::start().await;
    let node = std::env::var("AIRLOCK_TEST_NODE").unwrap_or_else(|_| "node".to_owned());
    let modules = required_env("AIRLOCK_TEST_NODE_MODULES");
    run_client(&h, &node, &[client_script("node_sdk.mjs")], &[("NODE_PATH", modules)]).await;
}
