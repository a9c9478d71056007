//! The admin web UI's security, over HTTP (the browser tests in `ui_browser` drive the same
//! pages in Chromium): no page without signing in, no access for a non-reviewer, admin pages
//! for admins only, CSRF tokens required on every action, the security headers on every
//! page, and values escaped.

use crate::harness::*;
use http::Method;

const POLICY: &str = r#"
version: 1
detectors:
  wait_word: { keywords: [bluebird], category: pii }
groups:
  default: {}
redact_request: [email]
rules:
  - id: codename-review
    when: { detected: [wait_word] }
    action: require_approval
    approvers: [security]
    hold: ticket
    timeout: 60s
"#;

fn set_cookies(headers: &http::HeaderMap) -> Vec<(String, String)> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next()?.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Sign in with a pasted session token (development mode); the cookie header to send after.
async fn sign_in(h: &Harness, token: &str) -> (u16, String, String) {
    let (code, headers, _) = h.admin_call(Method::GET, "/ui/login", &[], "").await;
    assert_eq!(code, 200);
    let pre = set_cookies(&headers).into_iter().find(|(k, _)| k == "airlock_login").unwrap().1;
    let cookie = format!("airlock_login={pre}");
    let body = format!("csrf={pre}&token={token}");
    let (code, headers, _) = h
        .admin_call(
            Method::POST,
            "/ui/login/token",
            &[("cookie", &cookie), ("content-type", "application/x-www-form-urlencoded")],
            &body,
        )
        .await;
    let jar = set_cookies(&headers);
    let get =
        |k: &str| jar.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
    (
        code.as_u16(),
        format!("airlock_ui={}; airlock_csrf={}", get("airlock_ui"), get("airlock_csrf")),
        get("airlock_csrf"),
    )
}

#[tokio::test]
async fn the_ui_needs_a_reviewer_and_a_csrf_token() {
    let h = Harness::start_with_policy(POLICY, "ui:\n  dev_token_login: true\n").await;
    let mint = |sub: &str, groups: &[&str]| {
        let g: Vec<String> = groups.iter().map(|s| s.to_string()).collect();
        h.keys.mint(sub, &g, 600, now()).unwrap().token
    };
    // Not signed in: every page sends you to sign in; actions are refused.
    let (code, headers, _) = h.admin_call(Method::GET, "/ui/approvals", &[], "").await;
    assert_eq!((code.as_u16(), headers["location"].to_str().unwrap()), (303, "/ui/login"));
    let (code, _, _) =
        h.admin_call(Method::POST, "/ui/approvals/apr_x/approve", &[], "csrf=x").await;
    assert_eq!(code, 401);
    // The headers every page carries.
    let (_, headers, body) = h.admin_call(Method::GET, "/ui/login", &[], "").await;
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'")
            && csp.contains("script-src 'self'")
            && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(!String::from_utf8_lossy(&body).contains("<script>"), "no inline script");
    let login_cookie = headers["set-cookie"].to_str().unwrap();
    assert!(
        login_cookie.contains("HttpOnly") && login_cookie.contains("SameSite=Strict"),
        "{login_cookie}"
    );

    // Someone in no admin or reviewer group is refused.
    let (code, _, _) = sign_in(&h, &mint("mallory", &["eng"])).await;
    assert_eq!(code, 403);
    // A reviewer gets the queue, not the admin pages.
    let (code, cookies, csrf) = sign_in(&h, &mint("bob", &["security"])).await;
    assert_eq!(code, 200);
    let as_bob = [("cookie", cookies.as_str())];
    let (code, _, _) = h.admin_call(Method::GET, "/ui/approvals", &as_bob, "").await;
    assert_eq!(code, 200);
    for admin_page in ["/ui", "/ui/audit", "/ui/policy"] {
        assert_eq!(h.admin_call(Method::GET, admin_page, &as_bob, "").await.0, 403, "{admin_page}");
    }

    // A held request (ticket mode answers at once) whose prompt holds markup. (A subject
    // cannot: session tokens refuse such names.)
    let evil = mint("alice", &["eng"]);
    let auth = format!("Bearer {evil}");
    let body = r#"{"model":"claude-sonnet-4-5","max_tokens":5,"messages":[{"role":"user","content":"bluebird <img src=x onerror=alert(1)> <b>bold</b> jane@example.com"}]}"#;
    let (code, _, text) = h
        .call(
            Method::POST,
            "/v1/messages",
            &[("authorization", &auth), ("content-type", "application/json")],
            body,
        )
        .await;
    assert_eq!(code, 403);
    let id = String::from_utf8_lossy(&text).split("(approval ").nth(1).unwrap()[..28].to_owned();
    let (_, _, page) = h.admin_call(Method::GET, "/ui/approvals", &as_bob, "").await;
    let page = String::from_utf8_lossy(&page);
    assert!(page.contains(&id), "{page}");
    assert!(
        page.contains("&lt;img src=x onerror=alert(1)&gt;") && !page.contains("<img src=x"),
        "escaped"
    );
    assert!(
        page.contains("&lt;b&gt;bold&lt;/b&gt;") && !page.contains("jane@example.com"),
        "escaped and masked"
    );
    assert!(
        page.contains("<mark class=\"masked\" title=\"masked: email\">[EMAIL]</mark>"),
        "{page}"
    );

    // Actions need the CSRF token that matches the cookie.
    let approve = format!("/ui/approvals/{id}/approve");
    let form =
        [("cookie", cookies.as_str()), ("content-type", "application/x-www-form-urlencoded")];
    assert_eq!(h.admin_call(Method::POST, &approve, &form, "reason=ok").await.0, 403, "no token");
    assert_eq!(
        h.admin_call(Method::POST, &approve, &form, "csrf=0000&reason=ok").await.0,
        403,
        "wrong token"
    );
    let cross = [form[0], form[1], ("sec-fetch-site", "cross-site")];
    let (code, _, _) =
        h.admin_call(Method::POST, &approve, &cross, &format!("csrf={csrf}&reason=ok")).await;
    assert_eq!(code, 403, "a cross-site post");
    let (code, headers, _) = h
        .admin_call(Method::POST, &approve, &form, &format!("csrf={csrf}&reason=looks+fine"))
        .await;
    assert_eq!((code.as_u16(), headers["location"].to_str().unwrap()), (303, "/ui/approvals"));
    let row = h.store().approval(&id).unwrap().unwrap();
    assert_eq!(
        (row.state.as_str(), row.decided_by.as_deref(), row.reason.as_deref()),
        ("approved", Some("bob"), Some("looks fine"))
    );

    // An admin gets every page.
    let (code, admin_cookies, _) = sign_in(&h, &mint("root", &["airlock-admins"])).await;
    assert_eq!(code, 200);
    let as_root = [("cookie", admin_cookies.as_str())];
    for page in ["/ui", "/ui/audit", "/ui/policy", "/ui/approvals"] {
        let (code, headers, _) = h.admin_call(Method::GET, page, &as_root, "").await;
        assert_eq!(code, 200, "{page}");
        assert!(headers.contains_key("content-security-policy"));
    }
}

/// In headless Chromium (tests/ui/ui_flow.mjs): sign in through the real OIDC provider; a
/// client call held by the policy appears in the queue; approving it in the browser lets the
/// Python SDK's call complete; a second one, denied in the browser, fails with the reason;
/// the conversation view marks masked values and shows no raw one. Screenshots of every page
/// go to target/ui-screenshots.
#[tokio::test]
async fn a_reviewer_decides_in_the_browser() {
    use tokio::io::AsyncBufReadExt;
    let chromium = crate::clients::required_env("AIRLOCK_TEST_CHROMIUM");
    let node_modules = crate::clients::required_env("AIRLOCK_TEST_NODE_MODULES");
    let idp = crate::idp::Idp::start().await;
    let policy = POLICY.replace("    hold: ticket\n", "");
    let h = Harness::start_with_policy(&policy, &idp.config("")).await;
    h.issuers.wait_ready().await;
    let shots =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/ui-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let alice = h.keys.mint("alice", &["eng".to_owned()], 600, now()).unwrap().token;
    let raw = "jane.doe.raw@example.com";
    let first =
        crate::approvals::held_client(&h, &alice, &format!("bluebird status; mail {raw}"), false);
    let mut browser = tokio::process::Command::new("node")
        .arg(crate::clients::client_script("../ui/ui_flow.mjs"))
        .env("AIRLOCK_UI", format!("http://{}", h.admin))
        .env("AIRLOCK_CHROMIUM", chromium)
        .env("AIRLOCK_TEST_NODE_MODULES", node_modules)
        .env("AIRLOCK_SHOTS", &shots)
        .env("AIRLOCK_RAW", raw)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node must be installed");
    let mut lines = tokio::io::BufReader::new(browser.stdout.take().unwrap()).lines();
    let mut expect = async |prefix: &str| -> String {
        let wait = async {
            loop {
                let line = lines
                    .next_line()
                    .await
                    .unwrap()
                    .unwrap_or_else(|| panic!("the browser script ended before {prefix}"));
                assert!(!line.starts_with("FAILED"), "{line}");
                if let Some(rest) = line.strip_prefix(prefix) {
                    return rest.trim().to_owned();
                }
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(120), wait)
            .await
            .expect("the browser script stalled")
    };
    expect("READY").await;
    let approved = expect("APPROVED").await;
    let result = guard(first).await.unwrap();
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(h.store().approval(&approved).unwrap().unwrap().decided_by.as_deref(), Some("root"));
    // The second call streams: it gets the denial as an SSE error with the reason.
    let second = crate::approvals::held_client(&h, &alice, "bluebird again", true);
    let denied = expect("DENIED").await;
    let result = guard(second).await.unwrap();
    assert_eq!(result["ok"], false, "{result}");
    assert!(result["message"].as_str().unwrap().contains("not this quarter"), "{result}");
    assert_ne!(approved, denied);
    expect("DONE").await;
    assert!(guard(browser.wait()).await.unwrap().success());
    for shot in
        ["login", "approvals", "approvals-decided", "audit", "conversation", "policy", "overview"]
    {
        assert!(shots.join(format!("{shot}.png")).exists(), "{shot}.png");
    }
    assert_eq!(h.mock.received().len(), 1, "only the approved call went upstream");
}
