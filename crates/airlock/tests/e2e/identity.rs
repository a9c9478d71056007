//! Identity against a real OIDC provider: token exchange, direct IdP tokens, key fetching
//! under attack, fail-closed start, revocation, and `airlock login` / `airlock token`.

use crate::harness::*;
use crate::idp::{Idp, airlock_cli, browser_login, device_login};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use http::{Method, StatusCode};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use serde_json::{Value, json};

const JSON: (&str, &str) = ("content-type", "application/json");

async fn exchange(h: &Harness, idp_token: &str) -> (StatusCode, Value) {
    let bearer = format!("Bearer {idp_token}");
    let (status, _, body) =
        h.call(Method::POST, "/auth/token", &[("authorization", &bearer)], "").await;
    (status, json(&body))
}

async fn messages_with(h: &Harness, token: &str) -> StatusCode {
    let bearer = format!("Bearer {token}");
    h.call(Method::POST, "/v1/messages", &[("authorization", &bearer), JSON], SIMPLE).await.0
}

/// A token signed by a key the IdP never published, with any header and claims.
fn forge(header: Value, claims: Value) -> String {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()));
    let sig = pair.sign(&rng, input.as_bytes()).unwrap();
    format!("{input}.{}", B64.encode(sig.as_ref()))
}

fn claims_for(idp: &Idp) -> Value {
    json!({"iss": idp.issuer, "aud": "urn:airlock", "sub": "mallory", "groups": ["airlock-admins"],
           "iat": now(), "exp": now() + 300})
}

#[tokio::test]
async fn a_real_idp_token_becomes_a_session_token() {
    let idp = Idp::start().await;
    let h = Harness::start_with(&idp.config("")).await;
    h.wait_ready().await;
    let idp_token = idp.service_token().await;

    let (status, session) = exchange(&h, &idp_token).await;
    assert_eq!(status, 200, "{session}");
    assert_eq!(
        (session["subject"].as_str(), &session["groups"]),
        (Some("airlock-svc"), &json!(["services"]))
    );
    let token = session["token"].as_str().unwrap();
    // S-02: never longer than the configured ttl (15m), nor than the IdP token (10m here).
    let expires_at = session["expires_at"].as_u64().unwrap();
    assert!(expires_at <= now() + 600 && expires_at > now() + 500, "{expires_at}");
    assert_eq!(messages_with(&h, token).await, 200);

    // S-01: the IdP token is not a data-plane credential here (accept_direct is off), and a
    // session token cannot be exchanged for another.
    assert_eq!(messages_with(&h, &idp_token).await, 401);
    assert_eq!(exchange(&h, token).await.0, 401);
    // J-03's persistence check: a tampered copy fails, the original still works.
    let mut tampered = idp_token.clone().into_bytes();
    let at = tampered.len() - 10;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    assert_eq!(exchange(&h, &tampered).await.0, 401);
    assert_eq!(exchange(&h, &idp_token).await.0, 200);

    // S-06: upstream saw only the gateway key; no IdP or session token ever left.
    for r in h.mock.received() {
        assert_eq!(r.headers["x-api-key"], UPSTREAM_KEY);
        assert!(!r.headers.contains_key("authorization"));
    }
    // One record per request, with who and why, and never the token itself.
    let records = h.records.wait_for(6).await;
    let reasons: Vec<&str> = records.iter().map(|r| r.reason).collect();
    assert_eq!(
        reasons,
        [
            "completed",
            "completed",
            "not_a_session_token",
            "session_token_not_exchangeable",
            "idp_bad_signature",
            "completed",
        ]
    );
    assert_eq!(records[0].route, "auth_token");
    assert_eq!(records[0].issuer.as_deref(), Some(idp.issuer.as_str()));
    assert!(records[0].minted_token_id.is_some());
    assert_eq!(records[1].issuer.as_deref(), Some("airlock"));
    assert_eq!(records[1].groups, ["services"]);
    for r in &records {
        let text = format!("{r:?}");
        assert!(!text.contains(&idp_token) && !text.contains(token), "a token reached a record");
    }
}

#[tokio::test]
async fn accept_direct_takes_idp_tokens_on_the_data_plane() {
    let idp = Idp::start().await;
    let h = Harness::start_with(&idp.config("accept_direct: true")).await;
    h.wait_ready().await;
    let idp_token = idp.service_token().await;
    assert_eq!(messages_with(&h, &idp_token).await, 200);
    let records = h.records.wait_for(1).await;
    assert_eq!(records[0].subject.as_deref(), Some("airlock-svc"));
    assert_eq!(records[0].issuer.as_deref(), Some(idp.issuer.as_str()));
    // A forged token naming the same issuer is still refused.
    let forged = forge(json!({"alg":"ES256","typ":"at+jwt","kid":"ec-1"}), claims_for(&idp));
    assert_eq!(messages_with(&h, &forged).await, 401);
    assert_eq!(h.mock.received().len(), 1);
}

#[tokio::test]
async fn forged_and_malformed_tokens_are_refused_without_detail() {
    let idp = Idp::start().await;
    let h = Harness::start_with(&idp.config("accept_direct: true")).await;
    h.wait_ready().await;
    let real = idp.service_token().await;
    let (h64, c64) = {
        let mut p = real.split('.');
        (p.next().unwrap().to_owned(), p.next().unwrap().to_owned())
    };
    let none = B64.encode(r#"{"alg":"none","typ":"at+jwt"}"#);
    let hs = B64.encode(r#"{"alg":"HS256","typ":"at+jwt","kid":"ec-1"}"#);
    let mut string_exp = claims_for(&idp);
    string_exp["exp"] = json!("99999999999");
    let cases = [
        format!("{none}.{c64}."),                         // J-01
        format!("{none}.{c64}.{}", B64.encode("x")),      // J-01
        format!("{h64}.{c64}."),                          // J-02
        format!("{hs}.{c64}.{}", B64.encode([0u8; 32])),  // J-04/J-05
        format!("{h64}.{c64}.{}", B64.encode([0u8; 64])), // J-06
        "a.b.c.d.e".to_owned(),                           // J-12
        forge(json!({"alg":"ES256","typ":"at+jwt","kid":"ec-1","crit":["b64"]}), claims_for(&idp)), // J-11
        forge(json!({"alg":"ES256","typ":"at+jwt","kid":"ec-1"}), string_exp), // J-32
        format!("{h64}.{c64}"),                                                // J-41
        format!("{h64}=.{c64}.sig"),                                           // J-41
        format!("{}.{c64}.sig", B64.encode("[1,2]")),                          // J-41
        format!("{}.{c64}.sig", B64.encode("[".repeat(10_000))),               // J-41
    ];
    for token in &cases {
        let bearer = format!("Bearer {token}");
        let (status, headers, body) =
            h.call(Method::POST, "/v1/messages", &[("authorization", &bearer), JSON], SIMPLE).await;
        assert_eq!(status, 401, "{token}");
        assert_envelope(&body, "authentication_error");
        // J-43: the client learns nothing about which check failed.
        assert_eq!(json(&body)["error"]["message"], "invalid credentials");
        assert!(
            headers[http::header::WWW_AUTHENTICATE].to_str().unwrap().contains("invalid_token")
        );
    }
    assert!(h.mock.received().is_empty());
    // The record does say why.
    let records = h.records.wait_for(cases.len()).await;
    assert!(
        records.iter().all(|r| r.reason.starts_with("idp_")),
        "{:?}",
        records.iter().map(|r| r.reason).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn unknown_kid_storm_costs_at_most_one_jwks_fetch() {
    // J-22: a thousand distinct unknown kids within the cooldown → at most one forced fetch.
    let idp = Idp::start().await;
    let h = Harness::start_with(&idp.config("accept_direct: true\njwks_cooldown: 1h")).await;
    h.wait_ready().await;
    let before = idp.served("/jwks").await;
    let h = std::sync::Arc::new(h);
    let mut tasks = Vec::new();
    for i in 0..200 {
        let (h, claims) = (h.clone(), claims_for(&idp));
        tasks.push(tokio::spawn(async move {
            let token =
                forge(json!({"alg":"ES256","typ":"at+jwt","kid":format!("kid-{i}")}), claims);
            messages_with(&h, &token).await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 401);
    }
    let after = idp.served("/jwks").await;
    assert!(after - before <= 1, "{} JWKS fetches for 200 unknown kids", after - before);
    // Known keys survived: a real token still works.
    assert_eq!(messages_with(&h, &idp.service_token().await).await, 200);
}

#[tokio::test]
async fn header_key_hints_make_no_outbound_request() {
    // J-07: jku/x5u point at a listener that counts connections; it must see none.
    let idp = Idp::start().await;
    let h = Harness::start_with(&idp.config("accept_direct: true\njwks_cooldown: 1h")).await;
    h.wait_ready().await;
    let trap = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks", trap.local_addr().unwrap());
    let header = json!({"alg":"ES256","typ":"at+jwt","kid":"ec-1","jku":url,"x5u":url,
        "jwk":{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}});
    for _ in 0..3 {
        assert_eq!(messages_with(&h, &forge(header.clone(), claims_for(&idp))).await, 401);
    }
    // Any fetch would have happened inside the request path, before the 401 was sent, so a
    // connection would already sit in the listener's backlog; the short wait is only slack.
    let accepted = tokio::time::timeout(std::time::Duration::from_millis(300), trap.accept()).await;
    assert!(accepted.is_err(), "the gateway connected to a URL named in a token header");
}

#[tokio::test]
async fn an_unreachable_idp_keeps_the_gateway_not_ready_and_closed() {
    // J-24: no keys at start → not ready, and IdP tokens are refused (never accepted blind).
    // The "IdP" accepts a connection and hangs up: discovery fails. Waiting for that accept
    // proves the gateway tried (and failed) before readiness is checked.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", dead.local_addr().unwrap());
    let cfg = format!(
        "identity:\n  oidc:\n    - issuer: {issuer}\n      audience: urn:airlock\n      accept_direct: true\n      algorithms: [ES256]\n"
    );
    let h = Harness::start_with(&cfg).await;
    drop(guard(dead.accept()).await.unwrap());
    let (status, _, body) = h.admin_call(Method::GET, "/readyz", &[], "").await;
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    let token = forge(
        json!({"alg":"ES256","typ":"at+jwt","kid":"k"}),
        json!({"iss":issuer,"aud":"urn:airlock","sub":"a","exp":now()+60}),
    );
    assert_eq!(messages_with(&h, &token).await, 401);
    assert_eq!(exchange(&h, &token).await.0, 401);
    // Session tokens keep working: they do not depend on the IdP.
    assert_eq!(messages_with(&h, &h.token()).await, 200);
    let records = h.records.wait_for(3).await;
    assert_eq!(records[0].reason, "idp_keys_unavailable");
}

#[tokio::test]
async fn authorization_header_rules() {
    // J-40.
    let h = Harness::start().await;
    let t = h.token();
    let lower = format!("bearer {t}");
    let (status, _, _) =
        h.call(Method::POST, "/v1/messages", &[("authorization", &lower), JSON], SIMPLE).await;
    assert_eq!(status, 200, "the scheme is case-insensitive");
    let upper = format!("Bearer {t}");
    let (status, _, body) = h
        .call(
            Method::POST,
            "/v1/messages",
            &[("authorization", &upper), ("authorization", &upper), JSON],
            SIMPLE,
        )
        .await;
    assert_eq!(status, 400, "two Authorization headers");
    assert_envelope(&body, "invalid_request_error");
    let (status, _, _) = h
        .call(
            Method::POST,
            &format!("/v1/messages?access_token={t}"),
            &[("x-api-key", &t), JSON],
            SIMPLE,
        )
        .await;
    assert_eq!(status, 400, "a token in the query string is refused");
    let huge = format!("Bearer {}", "a".repeat(40 * 1024));
    let (status, _, _) =
        h.call(Method::POST, "/v1/messages", &[("authorization", &huge), JSON], SIMPLE).await;
    assert_eq!(status, 431);
    let big = format!("Bearer {}.{}.{}", "a".repeat(4000), "b".repeat(4000), "c".repeat(400));
    let (status, _, _) =
        h.call(Method::POST, "/v1/messages", &[("authorization", &big), JSON], SIMPLE).await;
    assert_eq!(status, 401, "an oversized bearer is refused");
    assert!(h.mock.received().len() == 1);
    let records = h.records.wait_for(5).await;
    let reasons: Vec<(&str, &str)> = records.iter().map(|r| (r.route, r.reason)).collect();
    assert_eq!(
        reasons,
        [
            ("messages", "completed"),
            ("messages", "duplicate_authorization"),
            ("messages", "token_in_query"),
            ("-", "headers_too_large"),
            ("messages", "not_a_session_token"),
        ]
    );
    for r in &records {
        assert!(!format!("{r:?}").contains(&t), "a token reached a record");
    }
}

#[tokio::test]
async fn revocation_by_token_id_and_by_subject() {
    let idp = Idp::start().await;
    let h = Harness::start_with(&idp.config("")).await;
    h.wait_ready().await;
    let admin = h.keys.mint("ops", &["airlock-admins".to_owned()], 600, now()).unwrap().token;
    let user = h.keys.mint("bob", &["eng".to_owned()], 600, now()).unwrap();
    let other = h.keys.mint("carol", &["eng".to_owned()], 600, now()).unwrap().token;
    assert_eq!(messages_with(&h, &user.token).await, 200);

    // Non-admins may not use the admin API.
    let bearer = format!("Bearer {other}");
    let body = json!({"token_id": user.token_id}).to_string();
    let (status, _, _) = h
        .admin_call(Method::POST, "/admin/revocations", &[("authorization", &bearer), JSON], &body)
        .await;
    assert_eq!(status, 403);

    // `airlock token revoke` as the operator.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args([
            "token",
            "revoke",
            "--admin",
            &format!("http://{}", h.admin),
            "--token-id",
            &user.token_id,
        ])
        .env("AIRLOCK_ADMIN_TOKEN", &admin)
        .env("AIRLOCK_LOG", "error")
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(messages_with(&h, &user.token).await, 401);
    assert_eq!(messages_with(&h, &other).await, 200);

    // By subject: every current token of the subject, including ones minted by exchange.
    let svc =
        exchange(&h, &idp.service_token().await).await.1["token"].as_str().unwrap().to_owned();
    assert_eq!(messages_with(&h, &svc).await, 200);
    let bearer = format!("Bearer {admin}");
    let (status, _, body) = h
        .admin_call(
            Method::POST,
            "/admin/revocations",
            &[("authorization", &bearer), JSON],
            r#"{"subject":"airlock-svc"}"#,
        )
        .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(messages_with(&h, &svc).await, 401);
    let (status, _, body) =
        h.admin_call(Method::GET, "/admin/revocations", &[("authorization", &bearer)], "").await;
    assert_eq!(status, 200);
    assert_eq!(json(&body)["revocations"].as_array().unwrap().len(), 2);

    // Minting a service identity through the admin API is recorded with the operator.
    let (status, _, body) = h
        .admin_call(
            Method::POST,
            "/admin/tokens",
            &[("authorization", &bearer), JSON],
            r#"{"subject":"ci-bot","groups":["ci"],"ttl":"5m"}"#,
        )
        .await;
    assert_eq!(status, 200);
    let minted = json(&body);
    assert_eq!(messages_with(&h, minted["token"].as_str().unwrap()).await, 200);
    let records = h.records.list.lock().unwrap().clone();
    let mint = records.iter().find(|r| r.reason == "admin_mint").unwrap();
    assert_eq!(mint.subject.as_deref(), Some("ops"));
    assert_eq!(mint.minted_token_id.as_deref(), minted["token_id"].as_str());
}

#[tokio::test]
async fn login_with_the_device_flow_then_token_refreshes() {
    let idp = Idp::start().await;
    let h = Harness::start_with(&idp.config("")).await;
    h.wait_ready().await;
    let dir = fresh_dir("login");
    let _ = std::fs::remove_dir_all(&dir);
    device_login(&h, &dir, "bob").await;
    let airlock = |args: &[&str]| airlock_cli(&dir, args);
    let creds_path = dir.join("credentials.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&creds_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let out = airlock(&["token"]).output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let first = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(messages_with(&h, &first).await, 200);
    let records = h.records.list.lock().unwrap().clone();
    assert_eq!(records.last().unwrap().subject.as_deref(), Some("bob"));
    assert_eq!(records.last().unwrap().groups, ["eng"]);

    // An expiring session is refreshed through the IdP with the stored refresh token.
    let mut creds: Value =
        serde_json::from_str(&std::fs::read_to_string(&creds_path).unwrap()).unwrap();
    creds["session_expires_at"] = json!(now() + 5);
    std::fs::write(&creds_path, creds.to_string()).unwrap();
    let out = airlock(&["token"]).output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let second = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_ne!(first, second);
    assert_eq!(messages_with(&h, &second).await, 200);
    assert!(idp.served("/token").await >= 2, "the refresh went through the IdP");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Where the IdP offers no device flow, `airlock login` signs in with the authorization code
/// flow, PKCE (S256) and a loopback redirect; `--browser` asks for it even where the device
/// flow exists. Either way the session works and refreshes.
#[tokio::test]
async fn login_with_the_code_flow_and_pkce_on_a_loopback_redirect() {
    for (env, extra) in
        [(&[("AIRLOCK_IDP_NO_DEVICE", "1")][..], &[][..]), (&[][..], &["--browser"][..])]
    {
        let idp = Idp::start_with(env).await;
        let h = Harness::start_with(&idp.config("")).await;
        h.wait_ready().await;
        let dir = std::env::temp_dir().join(format!(
            "airlock-login-code-{}-{}",
            std::process::id(),
            extra.len()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        browser_login(&h, &dir, "carol", extra).await;
        assert!(idp.served("/auth").await >= 1, "the authorization endpoint was used");
        assert_eq!(idp.served("/device/auth").await, 0, "the device flow was not");
        let out = airlock_cli(&dir, &["token"]).output().await.unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        assert_eq!(messages_with(&h, &token).await, 200);
        let records = h.records.list.lock().unwrap().clone();
        assert_eq!(records.last().unwrap().subject.as_deref(), Some("carol"));
        // The refresh token from the code flow works too.
        let creds_path = dir.join("credentials.json");
        let mut creds: Value =
            serde_json::from_str(&std::fs::read_to_string(&creds_path).unwrap()).unwrap();
        assert!(creds["refresh_token"].is_string(), "offline access was granted");
        creds["session_expires_at"] = json!(now() + 5);
        std::fs::write(&creds_path, creds.to_string()).unwrap();
        let out = airlock_cli(&dir, &["token"]).output().await.unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_ne!(String::from_utf8(out.stdout).unwrap().trim(), token);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
