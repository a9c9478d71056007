//! The `airlock` binary: argument parsing and wiring, nothing else. Every behaviour lives in
//! the library crates; this file reads the environment (here and nowhere else), loads the
//! configuration, and starts what the command asks for.

use airlock_authn::SessionKeys;
use airlock_config::{ApiKeySource, Config, Secret};
use airlock_proxy::{Gateway, LogSink};
use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpListener;

/// mimalloc rather than glibc's malloc: under load the gateway spent a fifth of its CPU in
/// glibc's allocator, part of it waiting on arena locks (docs/benchmarks.md has the before
/// and after). Built without transparent huge pages (`no_thp`): with them a fresh gateway
/// was 33 MiB instead of 20.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod approvals_cmd;
mod audit_cmd;
mod login;
mod policy_cmd;

#[derive(Debug, Parser)]
#[command(
    name = "airlock",
    version,
    about = "A policy-as-code, identity-aware gateway for LLM agent traffic"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway (data plane and admin plane).
    Serve {
        /// Configuration file. Default: ./airlock.yaml if present, else built-in defaults.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run the Anthropic-compatible mock upstream.
    MockUpstream {
        #[arg(long, default_value = "127.0.0.1:9090")]
        listen: SocketAddr,
        /// Require this x-api-key on every request (401 otherwise).
        #[arg(long)]
        expect_key: Option<String>,
        /// Directory of recorded streams for `x-mock: scenario=fixture; fixture=PATH`.
        #[arg(long)]
        fixtures: Option<PathBuf>,
        /// Serve over TLS with this certificate chain (PEM), offering `h2` and `http/1.1`.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The certificate's private key (PKCS#8 PEM).
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
    /// Gateway + mock upstream + a fresh token, with instructions for curl, the SDKs and Claude Code.
    Demo {
        #[arg(long)]
        config: Option<PathBuf>,
        /// `mock` (default, no API key needed) or `anthropic` (needs ANTHROPIC_API_KEY).
        #[arg(long, default_value = "mock")]
        upstream: String,
    },
    /// Sign in through the organisation's identity provider (OIDC device flow) and keep a
    /// refreshable session for `airlock token`.
    Login {
        /// The gateway's base URL, e.g. https://airlock.example.com
        #[arg(long)]
        gateway: String,
        /// Which of the gateway's issuers to use, when it offers several.
        #[arg(long)]
        issuer: Option<String>,
        /// Sign in in a browser (authorization code + PKCE on a loopback redirect) even when
        /// the IdP offers the device flow.
        #[arg(long)]
        browser: bool,
    },
    /// Print a valid session token (refreshing through the IdP when needed); use it as
    /// Claude Code's apiKeyHelper. Subcommands manage tokens as an operator.
    Token {
        #[command(subcommand)]
        command: Option<TokenCommand>,
    },
    /// Read, verify and prune the audit log (straight from the store).
    Audit {
        #[command(subcommand)]
        command: audit_cmd::AuditCommand,
    },
    /// One screen: version, policy, store, Redis, pending approvals, request rate (through
    /// the admin API, as an admin: AIRLOCK_ADMIN_TOKEN or the signed-in session).
    Status {
        /// The gateway's admin base URL, e.g. http://127.0.0.1:8081
        #[arg(long, default_value = "http://127.0.0.1:8081")]
        admin: String,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Review held requests: list, show, approve, deny (through the admin API).
    /// Authenticates with AIRLOCK_ADMIN_TOKEN, or else the signed-in session.
    Approvals {
        #[command(subcommand)]
        command: approvals_cmd::ApprovalsCommand,
    },
    /// Check a policy file, run its test cases, explain a decision.
    Policy {
        #[command(subcommand)]
        command: policy_cmd::PolicyCommand,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Sign a session token with the gateway's key (operators and service identities).
    Mint {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        sub: String,
        /// Comma-separated group names.
        #[arg(long, default_value = "", value_delimiter = ',')]
        groups: Vec<String>,
        /// Lifetime (e.g. 10m); at most identity.session.max_ttl. Default: identity.session.ttl.
        #[arg(long)]
        ttl: Option<String>,
    },
    /// Revoke a session by token id, or every session of a subject, through the admin API.
    /// Authenticates with AIRLOCK_ADMIN_TOKEN, or else the signed-in session.
    Revoke {
        /// The gateway's admin base URL, e.g. http://127.0.0.1:8081
        #[arg(long)]
        admin: String,
        #[arg(long, conflicts_with = "subject", required_unless_present = "subject")]
        token_id: Option<String>,
        #[arg(long)]
        subject: Option<String>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging();

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve { config } => serve(load_config(config.as_deref())?).await,
            Command::MockUpstream { listen, expect_key, fixtures, tls_cert, tls_key } => {
                mock_upstream(listen, expect_key, fixtures, tls_cert.zip(tls_key)).await
            }
            Command::Demo { config, upstream } => {
                demo(load_config(config.as_deref())?, &upstream).await
            }
            Command::Token { command: Some(TokenCommand::Mint { config, sub, groups, ttl }) } => {
                let config = load_config(config.as_deref())?;
                let token = mint(&config, &sub, &groups, ttl.as_deref())?;
                println!("{token}");
                Ok(())
            }
            Command::Approvals { command } => approvals_cmd::run(command, &caller().await?).await,
            Command::Status { admin, json } => {
                let text = login::admin_get(&admin, "/admin/status", &caller().await?).await?;
                if json {
                    println!("{text}");
                } else {
                    print!("{}", status_screen(&serde_json::from_str(&text)?));
                }
                Ok(())
            }
            Command::Token { command: Some(TokenCommand::Revoke { admin, token_id, subject }) } => {
                let operator = caller().await?;
                let body = match (token_id, subject) {
                    (Some(id), _) => serde_json::json!({ "token_id": id }),
                    (None, Some(s)) => serde_json::json!({ "subject": s }),
                    (None, None) => bail!("give --token-id or --subject"),
                };
                let answer =
                    login::admin_post(&admin, "/admin/revocations", &operator, &body).await?;
                println!("{answer}");
                Ok(())
            }
            Command::Token { command: None } => {
                println!("{}", login::token(&config_dir()?, now()).await?);
                Ok(())
            }
            Command::Login { gateway, issuer, browser } => {
                login::login(&config_dir()?, &gateway, issuer.as_deref(), browser).await
            }
            Command::Audit { command } => {
                // The store is synchronous: read it on a blocking thread. Exit status 2 when
                // the command could not run (verify uses 1 for tampering).
                let status =
                    tokio::task::spawn_blocking(move || audit_cmd::run(command, load_config))
                        .await?
                        .unwrap_or_else(|e| {
                            eprintln!("error: {e:#}");
                            2
                        });
                std::process::exit(status)
            }
            Command::Policy { command } => {
                let status = policy_cmd::run(command).unwrap_or_else(|e| {
                    eprintln!("error: {e:#}");
                    2
                });
                std::process::exit(status)
            }
        }
    })
}

/// `airlock status` for a person at a terminal.
fn status_screen(s: &serde_json::Value) -> String {
    let or = |v: &serde_json::Value, d: &str| match v {
        serde_json::Value::Null => d.to_owned(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let store = if s["store"].is_null() {
        "none".to_owned()
    } else {
        format!(
            "{} (chain {}, queue {})",
            if s["store"]["healthy"] == true { "healthy" } else { "FAILING" },
            or(&s["store"]["chain"], "?"),
            or(&s["store"]["queue_depth"], "?")
        )
    };
    let redis = match &s["redis"] {
        serde_json::Value::Null => "not used (limits in process)".to_owned(),
        r if r["up"] == true => "up".to_owned(),
        _ => "DOWN".to_owned(),
    };
    let reload = match &s["policy"]["last_reload_error"] {
        serde_json::Value::Null => String::new(),
        e => format!(
            "
  last reload REFUSED: {}",
            or(e, "")
        ),
    };
    format!(
        "airlock {} — {}
policy    {} ({}){reload}
store     {store}
redis     {redis}
approvals {} pending
requests  {} in flight, {} in the last minute
",
        or(&s["version"], "?"),
        if s["ready"] == true { "ready" } else { "NOT READY" },
        or(&s["policy"]["version"], "?"),
        or(&s["policy"]["source"], "?"),
        or(&s["approvals"]["pending"], "?"),
        or(&s["requests"]["in_flight"], "?"),
        or(&s["requests"]["last_minute"], "?"),
    )
}

/// The admin API caller's token: AIRLOCK_ADMIN_TOKEN, else the signed-in session.
async fn caller() -> anyhow::Result<String> {
    match std::env::var("AIRLOCK_ADMIN_TOKEN") {
        Ok(t) if !t.is_empty() => Ok(t),
        _ => login::token(&config_dir()?, now()).await,
    }
}

/// Logs are JSON lines on stderr (`AIRLOCK_LOG_FORMAT=text` for humans); level from
/// `AIRLOCK_LOG` (default `info`). They never contain prompt text, tokens or keys.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AIRLOCK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if std::env::var("AIRLOCK_LOG_FORMAT").as_deref() == Ok("text") {
        builder.init();
    } else {
        builder.json().flatten_event(true).init();
    }
}

/// Where `airlock login` keeps its credentials: `AIRLOCK_CONFIG_DIR`, else
/// `$XDG_CONFIG_HOME/airlock`, else `~/.config/airlock`.
fn config_dir() -> anyhow::Result<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = var("AIRLOCK_CONFIG_DIR") {
        return Ok(dir);
    }
    if let Some(dir) = var("XDG_CONFIG_HOME") {
        return Ok(dir.join("airlock"));
    }
    let home = var("HOME").context("cannot find the config directory: set AIRLOCK_CONFIG_DIR")?;
    Ok(home.join(".config").join("airlock"))
}

fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    let (name, text) = match path {
        Some(p) => (
            p.display().to_string(),
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?,
        ),
        None if Path::new("airlock.yaml").exists() => {
            ("airlock.yaml".to_owned(), std::fs::read_to_string("airlock.yaml")?)
        }
        None => ("(built-in defaults)".to_owned(), String::new()),
    };
    airlock_config::parse(&name, &text).map_err(|e| anyhow::anyhow!("{e}"))
}

fn read_api_key(source: &ApiKeySource) -> anyhow::Result<Option<Secret>> {
    let value = match source {
        ApiKeySource::Env(var) => std::env::var(var).ok(),
        ApiKeySource::File(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read upstream.api_key_file {}", path.display()))?,
        ),
    };
    Ok(value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()).map(Secret::new))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn mint(
    config: &Config,
    sub: &str,
    groups: &[String],
    ttl: Option<&str>,
) -> anyhow::Result<String> {
    let ttl = match ttl {
        Some(t) => airlock_config::parse_duration(t).map_err(|e| anyhow::anyhow!("--ttl: {e}"))?,
        None => config.session.ttl,
    };
    if ttl > config.session.max_ttl {
        bail!(
            "--ttl exceeds identity.session.max_ttl ({})",
            airlock_config::format_duration(config.session.max_ttl)
        );
    }
    let keys = SessionKeys::load_or_create(&config.session.signing_key_file)?;
    let groups: Vec<String> = groups.iter().filter(|g| !g.is_empty()).cloned().collect();
    Ok(keys.mint(sub, &groups, ttl.as_secs(), now())?.token)
}

/// A random key for the embedded mock: the gateway holds it, the mock demands it.
fn random_key() -> anyhow::Result<String> {
    Ok(format!(
        "mock-upstream-key-{}",
        airlock_authn::random_hex(24).context("no system randomness")?
    ))
}

async fn start_mock(key: &str) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let state = airlock_mock::MockState::new(Some(key.to_owned()), None);
    tokio::spawn(airlock_mock::serve(listener, state, std::future::pending()));
    Ok(addr)
}

/// Resolve the upstream: the configured one with its key, or the embedded mock when no key
/// is set and no upstream was configured.
async fn resolve_upstream(config: &mut Config, force_mock: bool) -> anyhow::Result<Secret> {
    let key = read_api_key(&config.upstream.api_key)?;
    match key {
        Some(key) if !force_mock => Ok(key),
        None if !force_mock && !config.upstream.url_is_default => {
            bail!(
                "no upstream API key: set {:?} (upstream.api_key_env / api_key_file)",
                config.upstream.api_key
            )
        }
        _ => {
            let key = random_key()?;
            let addr = start_mock(&key).await?;
            config.upstream.url = format!("http://{addr}").parse()?;
            tracing::warn!(mock = %addr, "no upstream API key set: forwarding to the embedded mock upstream");
            Ok(Secret::new(key))
        }
    }
}

async fn start_gateway(
    config: &Config,
    key: Secret,
) -> anyhow::Result<(Arc<Gateway>, TcpListener, TcpListener)> {
    let keys = Arc::new(SessionKeys::load_or_create(&config.session.signing_key_file)?);
    let audit = airlock_proxy::audit::start(config).await.context("cannot start the audit log")?;
    let policy = airlock_proxy::policy::load(config).map_err(|e| anyhow::anyhow!(e))?;
    let mask_key = airlock_proxy::policy::load_mask_key(config).map_err(|e| anyhow::anyhow!(e))?;
    tracing::info!(policy = %policy.source, version = %policy.version, "policy loaded");
    let gateway =
        Gateway::new(config, keys, key, airlock_proxy::system_clock(), Arc::new(LogSink))?
            .with_audit(audit)
            .with_policy(policy)
            .with_mask_key(mask_key);
    let data = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let admin = TcpListener::bind(config.admin_listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.admin_listen))?;
    tracing::info!(listen = %data.local_addr()?, admin = %admin.local_addr()?, upstream = %config.upstream.url, "airlock started");
    Ok((Arc::new(gateway), data, admin))
}

async fn serve(mut config: Config) -> anyhow::Result<()> {
    let key = resolve_upstream(&mut config, false).await?;
    let (gateway, data, admin) = start_gateway(&config, key).await?;
    reload_on_sighup(gateway.clone());
    airlock_proxy::run(gateway, data, admin, shutdown_signal()).await;
    tracing::info!("airlock stopped");
    Ok(())
}

/// SIGHUP reloads the policy file (the file is also followed for changes).
fn reload_on_sighup(gateway: Arc<Gateway>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!(target: "airlock::policy", "SIGHUP: reloading the policy");
            let _ = airlock_proxy::policy::reload(&gateway).await;
        }
    });
}

async fn demo(mut config: Config, upstream: &str) -> anyhow::Result<()> {
    let key = match upstream {
        "mock" => resolve_upstream(&mut config, true).await?,
        "anthropic" => read_api_key(&config.upstream.api_key)?.context(
            "--upstream anthropic needs ANTHROPIC_API_KEY (or upstream.api_key_env/api_key_file)",
        )?,
        other => bail!("--upstream must be `mock` or `anthropic`, not `{other}`"),
    };
    let (gateway, data, admin) = start_gateway(&config, key).await?;
    let addr = data.local_addr()?;
    let ttl = config.session.ttl.min(config.session.max_ttl);
    let token =
        gateway.keys.mint("demo-user", &["developers".to_owned()], ttl.as_secs(), now())?.token;
    println!(
        r#"
Airlock demo is running ({upstream} upstream). A session token for `demo-user` (group `developers`),
valid for {ttl}:

  export ANTHROPIC_BASE_URL=http://{addr}
  export ANTHROPIC_AUTH_TOKEN={token}

curl:
  curl -s $ANTHROPIC_BASE_URL/v1/messages -H "x-api-key: $ANTHROPIC_AUTH_TOKEN" \
    -H 'anthropic-version: 2023-06-01' -H 'content-type: application/json' \
    -d '{{"model":"claude-sonnet-4-5","max_tokens":256,"messages":[{{"role":"user","content":"Hello"}}]}}'

Python SDK:
  python -c 'import anthropic; print(anthropic.Anthropic(api_key="'$ANTHROPIC_AUTH_TOKEN'").messages.create(model="claude-sonnet-4-5", max_tokens=256, messages=[{{"role":"user","content":"Hello"}}]).content[0].text)'

Claude Code:
  CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 claude -p "Hello"

Ctrl-C to stop.
"#,
        ttl = airlock_config::format_duration(ttl),
    );
    airlock_proxy::run(gateway, data, admin, shutdown_signal()).await;
    Ok(())
}

async fn mock_upstream(
    listen: SocketAddr,
    expect_key: Option<String>,
    fixtures: Option<PathBuf>,
    tls: Option<(PathBuf, PathBuf)>,
) -> anyhow::Result<()> {
    let tls = match tls {
        Some((cert, key)) => Some(
            airlock_mock::tls_config(&cert, &key, &["h2", "http/1.1"])
                .map_err(anyhow::Error::msg)?,
        ),
        None => None,
    };
    let listener =
        TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(listen = %listener.local_addr()?, tls = tls.is_some(), "mock upstream started");
    let state = airlock_mock::MockState::new(expect_key, fixtures);
    match tls {
        Some(tls) => airlock_mock::serve_tls(listener, state, tls, shutdown_signal()).await,
        None => airlock_mock::serve(listener, state, shutdown_signal()).await,
    }
    Ok(())
}

/// SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutdown signal received; draining");
}
