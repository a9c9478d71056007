//! Real agents through the gateway: the Claude Code CLI (`claude -p`, the binary bundled in
//! the `claude-agent-sdk` wheel) and the Python Agent SDK's `query()`, each once with a
//! session token in `ANTHROPIC_AUTH_TOKEN` and once with `apiKeyHelper` running
//! `airlock token` after an `airlock login` against a real OIDC provider. Every run completes
//! a turn with a tool round trip; the upstream only ever sees the gateway's key.
//!
//! Each agent gets a fresh HOME and `CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1`, so it calls
//! nothing but the gateway.

use crate::harness::*;
use crate::idp::{Idp, device_login, repo_file};
use std::path::{Path, PathBuf};

fn required_env(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run the tests with ./scripts/test, which installs the agents")
    })
}

enum Credential {
    /// `ANTHROPIC_AUTH_TOKEN`.
    Token(String),
    /// `apiKeyHelper: airlock token`, reading credentials from this directory.
    Helper(PathBuf),
}

/// A fresh HOME (and working directory) for one agent run.
fn fresh_home(name: &str, credential: &Credential) -> PathBuf {
    let home = fresh_dir(&format!("agent-{name}"));
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(home.join(".claude")).unwrap();
    std::fs::create_dir_all(home.join("work")).unwrap();
    if let Credential::Helper(_) = credential {
        let settings = serde_json::json!({ "apiKeyHelper": format!("{} token", env!("CARGO_BIN_EXE_airlock")) });
        std::fs::write(home.join(".claude/settings.json"), settings.to_string()).unwrap();
    }
    home
}

async fn run_agent(
    h: &Harness,
    program: &str,
    args: &[&str],
    home: &Path,
    credential: &Credential,
) -> String {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .current_dir(home.join("work"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("ANTHROPIC_BASE_URL", format!("http://{}", h.addr))
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .kill_on_drop(true);
    match credential {
        Credential::Token(t) => {
            cmd.env("ANTHROPIC_AUTH_TOKEN", t);
        }
        Credential::Helper(dir) => {
            cmd.env("AIRLOCK_CONFIG_DIR", dir)
                .env("AIRLOCK_LOG", "error")
                .env("CLAUDE_CODE_API_KEY_HELPER_TTL_MS", "60000");
        }
    }
    let out = tokio::time::timeout(std::time::Duration::from_secs(180), cmd.output())
        .await
        .expect("the agent timed out")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{program} failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    stdout
}

/// What every agent run must leave behind: at least the two turns of the round trip
/// recorded for `subject`, and an upstream that saw only the gateway's key.
async fn check_traffic(h: &Harness, subject: &str, secret: &str) {
    let records = h.records.list.lock().unwrap().clone();
    let turns: Vec<_> = records.iter().filter(|r| r.route == "messages").collect();
    assert!(turns.len() >= 2, "{} messages calls recorded", turns.len());
    for r in &turns {
        assert_eq!(r.subject.as_deref(), Some(subject));
        assert_eq!(r.reason, "completed", "{r:?}");
    }
    let received = h.mock.received();
    let tool_results = received
        .iter()
        .filter(|r| String::from_utf8_lossy(&r.body).contains("tool_result"))
        .count();
    assert!(tool_results >= 1, "the tool's result never reached the upstream");
    for r in &received {
        assert_eq!(r.headers["x-api-key"], UPSTREAM_KEY);
        assert!(!r.headers.contains_key("authorization"));
        for (_, v) in &r.headers {
            assert!(
                !v.to_str().unwrap_or("").contains(secret),
                "the agent's credential reached upstream"
            );
        }
    }
}

fn claude() -> String {
    required_env("AIRLOCK_TEST_CLAUDE")
}

async fn claude_cli(name: &str, h: &Harness, credential: Credential, subject: &str, secret: &str) {
    let home = fresh_home(name, &credential);
    let prompt =
        "Run the command. [[mock scenario=tool_use; tool=Bash; command=echo claude-cli-ok]]";
    let stdout =
        run_agent(h, &claude(), &["-p", prompt, "--allowedTools", "Bash"], &home, &credential)
            .await;
    assert!(stdout.contains("The tool returned: claude-cli-ok"), "{stdout}");
    check_traffic(h, subject, secret).await;
    let _ = std::fs::remove_dir_all(&home);
}

async fn agent_sdk(name: &str, h: &Harness, credential: Credential, subject: &str, secret: &str) {
    let home = fresh_home(name, &credential);
    let python = required_env("AIRLOCK_TEST_PYTHON_AGENT");
    let script = repo_file("tests/clients/agent_sdk.py");
    let stdout =
        run_agent(h, &python, &[script.to_str().unwrap(), "agent-sdk-ok"], &home, &credential)
            .await;
    assert!(stdout.contains("ALL CHECKS PASSED"), "{stdout}");
    check_traffic(h, subject, secret).await;
    let _ = std::fs::remove_dir_all(&home);
}

/// Sign `user` in through the real IdP; returns the credentials directory and the session
/// token `airlock token` hands out (to check it never reaches upstream).
async fn signed_in(h: &Harness, name: &str, user: &str) -> (PathBuf, String) {
    let dir = fresh_dir(&format!("creds-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    device_login(h, &dir, user).await;
    let out = crate::idp::airlock_cli(&dir, &["token"]).output().await.unwrap();
    assert!(out.status.success());
    (dir, String::from_utf8(out.stdout).unwrap().trim().to_owned())
}

#[tokio::test]
async fn claude_code_with_a_session_token() {
    let h = Harness::start().await;
    let token = h.token();
    claude_cli("cli-token", &h, Credential::Token(token.clone()), "alice", &token).await;
}

#[tokio::test]
async fn claude_code_with_api_key_helper() {
    let idp = Idp::start().await;
    let h = Harness::start_with(&idp.config("")).await;
    h.wait_ready().await;
    let (dir, token) = signed_in(&h, "cli-helper", "dana").await;
    claude_cli("cli-helper", &h, Credential::Helper(dir.clone()), "dana", &token).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn agent_sdk_with_a_session_token() {
    let h = Harness::start().await;
    let token = h.token();
    agent_sdk("sdk-token", &h, Credential::Token(token.clone()), "alice", &token).await;
}

#[tokio::test]
async fn agent_sdk_with_api_key_helper() {
    let idp = Idp::start().await;
    let h = Harness::start_with(&idp.config("")).await;
    h.wait_ready().await;
    let (dir, token) = signed_in(&h, "sdk-helper", "erin").await;
    agent_sdk("sdk-helper", &h, Credential::Helper(dir.clone()), "erin", &token).await;
    let _ = std::fs::remove_dir_all(&dir);
}
