//! The client side of identity: `airlock login` (OIDC device authorization flow, RFC 8628;
//! or, where the IdP offers no device flow or `--browser` asks for it, the authorization
//! code flow with PKCE on a loopback redirect, RFC 8252) and `airlock token` (print a valid session token, refreshing through the IdP when needed —
//! built to be Claude Code's `apiKeyHelper`).
//!
//! The credentials file (`credentials.json` in the config directory, mode 0600) holds the
//! IdP refresh token and the current session token. Neither is ever printed except the
//! session token by `airlock token`, on stdout, which is its purpose.

use airlock_proxy::fetch::{Fetched, Fetcher};
use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A session token with less than this left is refreshed rather than printed.
const REFRESH_MARGIN_SECS: u64 = 60;
const CREDENTIALS: &str = "credentials.json";

fn fetcher() -> anyhow::Result<Fetcher> {
    Ok(Fetcher::new(Duration::from_secs(15))?)
}

fn json_of(answer: &Fetched, what: &str) -> anyhow::Result<Value> {
    serde_json::from_slice(&answer.body)
        .with_context(|| format!("{what} answered {} with a body that is not JSON", answer.status))
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// `airlock login --gateway URL [--issuer ISS]`.
pub async fn login(
    dir: &Path,
    gateway: &str,
    issuer: Option<&str>,
    browser: bool,
) -> anyhow::Result<()> {
    let gateway = gateway.trim_end_matches('/');
    let f = fetcher()?;
    let config = json_of(&f.get(&format!("{gateway}/auth/config")).await?, "the gateway")?;
    let issuers = config.get("issuers").and_then(Value::as_array).cloned().unwrap_or_default();
    let chosen = match issuer {
        Some(want) => issuers.iter().find(|i| text(i, "issuer").as_deref() == Some(want)),
        None if issuers.len() == 1 => issuers.first(),
        None => None,
    };
    let Some(chosen) = chosen else {
        let names: Vec<String> = issuers.iter().filter_map(|i| text(i, "issuer")).collect();
        bail!(
            "the gateway offers {} login issuer(s) ({}); pick one with --issuer",
            names.len(),
            names.join(", ")
        );
    };
    let iss = text(chosen, "issuer").context("the gateway's issuer has no URL")?;
    let client_id = text(chosen, "client_id").context("the gateway's issuer has no client_id")?;
    let scopes = text(chosen, "scopes").unwrap_or_else(|| "openid offline_access".into());
    let token_type = text(chosen, "token_type").unwrap_or_else(|| "access".into());

    let discovery = json_of(
        &f.get(&format!("{}/.well-known/openid-configuration", iss.trim_end_matches('/'))).await?,
        "the identity provider",
    )?;
    if text(&discovery, "issuer").as_deref() != Some(iss.as_str()) {
        bail!("the identity provider's discovery document names another issuer");
    }
    let token_endpoint = text(&discovery, "token_endpoint")
        .context("the identity provider has no token endpoint")?;
    let tokens = match text(&discovery, "device_authorization_endpoint") {
        Some(device_endpoint) if !browser => {
            device_flow(&f, &device_endpoint, &token_endpoint, &client_id, &scopes).await?
        }
        _ => {
            let authorization_endpoint = text(&discovery, "authorization_endpoint").context(
                "the identity provider offers neither the device flow nor an authorization endpoint",
            )?;
            code_flow(&f, &authorization_endpoint, &token_endpoint, &client_id, &scopes).await?
        }
    };
    let mut creds = json!({
        "gateway": gateway,
        "issuer": iss,
        "client_id": client_id,
        "token_endpoint": token_endpoint,
        "token_type": token_type,
        "refresh_token": text(&tokens, "refresh_token"),
    });
    exchange(&f, &mut creds, &tokens).await?;
    save(dir, &creds)?;
    eprintln!(
        "Signed in as {} (groups: {}). `airlock token` prints a session token.",
        creds["subject"].as_str().unwrap_or("?"),
        creds["groups"].as_array().map(|g| g.len()).unwrap_or(0)
    );
    Ok(())
}

/// RFC 8628: show a code, poll the token endpoint until the person confirms it.
async fn device_flow(
    f: &Fetcher,
    device_endpoint: &str,
    token_endpoint: &str,
    client_id: &str,
    scopes: &str,
) -> anyhow::Result<Value> {
    let start =
        f.post_form(device_endpoint, &[("client_id", client_id), ("scope", scopes)]).await?;
    let start = json_of(&start, "the device authorization endpoint")?;
    let device_code = text(&start, "device_code").context("no device_code in the answer")?;
    let user_code = text(&start, "user_code").unwrap_or_default();
    let uri = text(&start, "verification_uri_complete")
        .or_else(|| text(&start, "verification_uri"))
        .context("no verification URI in the answer")?;
    // Bounded whatever the IdP says: poll every 1-60 s, give up after at most 30 minutes.
    let mut interval = start.get("interval").and_then(Value::as_u64).unwrap_or(5).clamp(1, 60);
    let expires_in = start.get("expires_in").and_then(Value::as_u64).unwrap_or(600).min(1800);
    eprintln!("To sign in, open {uri}");
    eprintln!("and confirm the code {user_code}");

    let deadline = std::time::Instant::now() + Duration::from_secs(expires_in);
    loop {
        if std::time::Instant::now() >= deadline {
            bail!("the sign-in was not completed in time");
        }
        tokio::time::sleep(Duration::from_secs(interval)).await;
        let answer = f
            .post_form(
                token_endpoint,
                &[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                    ("device_code", &device_code),
                    ("client_id", client_id),
                ],
            )
            .await?;
        let body = json_of(&answer, "the token endpoint")?;
        if answer.status.is_success() {
            return Ok(body);
        }
        match text(&body, "error").as_deref() {
            Some("authorization_pending") => {}
            Some("slow_down") => interval = (interval + 5).min(60),
            Some(e) => bail!("sign-in failed: {e}"),
            None => bail!("sign-in failed: the token endpoint answered {}", answer.status),
        }
    }
}

/// How long the loopback redirect waits for the browser.
const CODE_FLOW_TIMEOUT: Duration = Duration::from_secs(600);

fn random_b64(n: usize) -> anyhow::Result<String> {
    use base64::Engine as _;
    let mut bytes = vec![0u8; n];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| anyhow::anyhow!("no randomness"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// RFC 6749 + RFC 7636 (PKCE, S256) + RFC 8252 (loopback redirect): the person signs in in a
/// browser; the IdP redirects to `http://127.0.0.1:PORT/callback` on this machine, where this
/// process waits for exactly one answer with the right `state`.
async fn code_flow(
    f: &Fetcher,
    authorization_endpoint: &str,
    token_endpoint: &str,
    client_id: &str,
    scopes: &str,
) -> anyhow::Result<Value> {
    use base64::Engine as _;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let redirect = format!("http://127.0.0.1:{}/callback", listener.local_addr()?.port());
    let verifier = random_b64(32)?;
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()));
    let state = random_b64(16)?;
    let query: Vec<String> = [
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", &redirect),
        ("scope", scopes),
        ("state", &state),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
        // Refresh tokens (offline_access) are granted on an explicit consent.
        ("prompt", "consent"),
    ]
    .iter()
    .map(|(k, v)| format!("{k}={}", percent(v)))
    .collect();
    let sep = if authorization_endpoint.contains('?') { '&' } else { '?' };
    eprintln!("To sign in, open {authorization_endpoint}{sep}{}", query.join("&"));

    let code = tokio::time::timeout(CODE_FLOW_TIMEOUT, async {
        loop {
            let (mut conn, _) = listener.accept().await?;
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                let n = conn.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            let line = String::from_utf8_lossy(&head).lines().next().unwrap_or("").to_owned();
            let target = line.split(' ').nth(1).unwrap_or("");
            let Some(q) = target.strip_prefix("/callback?") else {
                let _ = conn.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
                continue;
            };
            let params: Vec<(String, String)> = q
                .split('&')
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k.to_owned(), unpercent(v)))
                .collect();
            let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            let (page, result) = match (get("state"), get("code"), get("error")) {
                (Some(s), _, _) if s != state => ("The sign-in answer did not match this login; close this window.", Err(anyhow::anyhow!("the redirect carried the wrong state"))),
                (_, _, Some(e)) => ("The sign-in was refused; close this window.", Err(anyhow::anyhow!("sign-in failed: {e}"))),
                (Some(_), Some(code), None) => ("Airlock sign-in complete. You can close this window.", Ok(code)),
                _ => ("The sign-in answer was incomplete; close this window.", Err(anyhow::anyhow!("the redirect carried no code"))),
            };
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                page.len()
            );
            let _ = conn.write_all(response.as_bytes()).await;
            return result;
        }
    })
    .await
    .map_err(|_| anyhow::anyhow!("the sign-in was not completed in time"))??;

    let answer = f
        .post_form(
            token_endpoint,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", &redirect),
                ("client_id", client_id),
                ("code_verifier", &verifier),
            ],
        )
        .await?;
    let body = json_of(&answer, "the token endpoint")?;
    if !answer.status.is_success() {
        bail!(
            "sign-in failed: {}",
            text(&body, "error").unwrap_or_else(|| answer.status.to_string())
        );
    }
    Ok(body)
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn unpercent(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (
            b[i],
            b.get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok()),
        ) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `airlock token`: a session token valid for at least a minute, on stdout.
pub async fn token(dir: &Path, now: u64) -> anyhow::Result<String> {
    let mut creds = load(dir)?;
    let expires_at = creds.get("session_expires_at").and_then(Value::as_u64).unwrap_or(0);
    if let Some(token) = text(&creds, "session_token")
        && expires_at > now + REFRESH_MARGIN_SECS
    {
        return Ok(token);
    }
    let refresh_token = text(&creds, "refresh_token")
        .context("the session expired and there is no refresh token: run `airlock login`")?;
    let token_endpoint = text(&creds, "token_endpoint").context("credentials file incomplete")?;
    let client_id = text(&creds, "client_id").context("credentials file incomplete")?;
    let f = fetcher()?;
    let answer = f
        .post_form(
            &token_endpoint,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh_token),
                ("client_id", &client_id),
            ],
        )
        .await?;
    let tokens = json_of(&answer, "the token endpoint")?;
    if !answer.status.is_success() {
        bail!(
            "refreshing the sign-in failed ({}): run `airlock login`",
            text(&tokens, "error").unwrap_or_else(|| answer.status.to_string())
        );
    }
    // The IdP may rotate the refresh token.
    if let Some(rotated) = text(&tokens, "refresh_token") {
        creds["refresh_token"] = Value::String(rotated);
    }
    exchange(&f, &mut creds, &tokens).await?;
    save(dir, &creds)?;
    text(&creds, "session_token").context("no session token")
}

/// Trade the IdP token for a session token at the gateway and note it in `creds`.
async fn exchange(f: &Fetcher, creds: &mut Value, tokens: &Value) -> anyhow::Result<()> {
    let kind = if creds["token_type"] == "id" { "id_token" } else { "access_token" };
    let idp_token = text(tokens, kind).with_context(|| format!("the IdP sent no {kind}"))?;
    let gateway = text(creds, "gateway").context("credentials file incomplete")?;
    let answer = f.post_bearer(&format!("{gateway}/auth/token"), &idp_token).await?;
    let body = json_of(&answer, "the gateway")?;
    if !answer.status.is_success() {
        let message = body.pointer("/error/message").and_then(Value::as_str).unwrap_or("refused");
        bail!("the gateway refused the sign-in ({}): {message}", answer.status);
    }
    creds["session_token"] = body["token"].clone();
    creds["session_expires_at"] = body["expires_at"].clone();
    creds["subject"] = body["subject"].clone();
    creds["groups"] = body["groups"].clone();
    Ok(())
}

fn load(dir: &Path) -> anyhow::Result<Value> {
    let path = dir.join(CREDENTIALS);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!("not signed in ({} missing): run `airlock login`", path.display())
    })?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))
}

/// Write the credentials file atomically with owner-only permissions.
fn save(dir: &Path, creds: &Value) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp: PathBuf = dir.join(format!(".{CREDENTIALS}.{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp)?;
    file.write_all(serde_json::to_string_pretty(creds)?.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, dir.join(CREDENTIALS))?;
    Ok(())
}

/// POST a JSON body to the admin API as `operator`; the answer's JSON text.
pub async fn admin_post(
    admin: &str,
    path: &str,
    operator: &str,
    body: &Value,
) -> anyhow::Result<String> {
    let url = format!("{}{path}", admin.trim_end_matches('/'));
    admin_answer(fetcher()?.post_json_bearer(&url, operator, body.to_string()).await?)
}

/// GET from the admin API; the answer's text, or an error naming its status.
pub async fn admin_get(admin: &str, path: &str, operator: &str) -> anyhow::Result<String> {
    let url = format!("{}{path}", admin.trim_end_matches('/'));
    admin_answer(fetcher()?.get_bearer(&url, operator).await?)
}

fn admin_answer(answer: airlock_proxy::fetch::Fetched) -> anyhow::Result<String> {
    let text = String::from_utf8_lossy(&answer.body).into_owned();
    if !answer.status.is_success() {
        bail!("the admin API answered {}: {text}", answer.status);
    }
    Ok(text)
}
