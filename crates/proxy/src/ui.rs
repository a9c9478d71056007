//! The admin web UI at `/ui` on the admin listener: server-rendered HTML, one stylesheet and
//! one small script (the live approvals queue), both built into the binary.
//!
//! ```text
//! /ui/login ─► /ui/login/start?issuer=N ─► IdP (code + PKCE) ─► /ui/callback
//!            ─► the IdP token verified like any other ─► admin or reviewer? ─► an Airlock
//!               session token in an HttpOnly SameSite=Strict cookie, and a CSRF cookie
//! /ui (overview, admins) · /ui/approvals (reviewers: their rules; admins: all)
//! /ui/audit, /ui/audit/{request_id} (admins) · /ui/policy (admins)
//! ```
//!
//! Invariant: every value shown is HTML-escaped; the Content-Security-Policy allows only the
//! UI's own script and stylesheet (no inline script), and no framing.
//! Invariant: every state-changing request is a POST carrying the CSRF token that matches
//! its cookie; every UI request is a request record (and so an audit entry) naming the
//! person.

use crate::Gateway;
use crate::body::{ProxyBody, full};
use crate::record::{Outcome, RequestRecord};
use crate::reject::Rejection;
use airlock_authn::Identity;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use serde_json::Value;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

const CSS: &str = include_str!("../ui/app.css");
const JS: &str = include_str!("../ui/app.js");
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
const SESSION: &str = "airlock_ui";
const CSRF: &str = "airlock_csrf";
const LOGIN: &str = "airlock_login";
/// A sign-in started must finish within this.
const LOGIN_WINDOW: Duration = Duration::from_secs(600);
/// Forms are small.
const MAX_FORM: u64 = 16 * 1024;

/// HTML-escape text for element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Text with every redaction tag (`[EMAIL]`, `<EMAIL_3f9a>`) marked: the type is shown, a
/// value never is (the stored text holds none).
pub fn marked(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find(['[', '<']) {
        out.push_str(&esc(&rest[..i]));
        let tail = &rest[i..];
        let close = if tail.starts_with('[') { ']' } else { '>' };
        let tag = tail[1..].find(close).map(|j| &tail[1..=j]).filter(|t| {
            let name = t.split('_').next().unwrap_or("");
            t.len() <= 48
                && !name.is_empty()
                && t.bytes().all(|b| {
                    b.is_ascii_uppercase()
                        || b.is_ascii_digit()
                        || b == b'_'
                        || b.is_ascii_hexdigit()
                })
                && name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
        });
        match tag {
            Some(t) => {
                let kind = t
                    .split('_')
                    .filter(|p| p.bytes().all(|b| b.is_ascii_uppercase()))
                    .collect::<Vec<_>>()
                    .join("_");
                let _ = write!(
                    out,
                    "<mark class=\"masked\" title=\"masked: {}\">{}</mark>",
                    esc(&kind.to_ascii_lowercase()),
                    esc(&tail[..t.len() + 2])
                );
                rest = &tail[t.len() + 2..];
            }
            None => {
                out.push_str(&esc(&tail[..1]));
                rest = &tail[1..];
            }
        }
    }
    out.push_str(&esc(rest));
    out
}

fn cookies(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|p| p.trim().split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    cookies(headers).into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn b64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Constant-time equality for secrets compared with what the client sent.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn decode(s: &str) -> String {
    let s = s.replace('+', " ");
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) =
                u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn params(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn param(list: &[(String, String)], key: &str) -> Option<String> {
    list.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).filter(|v| !v.is_empty())
}

/// The UI's state: where browsers reach it, and how it signs people in.
#[derive(Debug)]
pub struct Ui {
    gateway: Arc<Gateway>,
    public_url: String,
    secure: bool,
    dev_token_login: bool,
    fetcher: crate::fetch::Fetcher,
}

/// The signed-in person.
struct Person {
    identity: Identity,
    admin: bool,
    csrf: String,
}

enum Page {
    Html(StatusCode, String),
    Redirect(String),
    Raw(Response<ProxyBody>),
}

impl Ui {
    /// The UI of `gateway`, whose admin listener is bound to `admin_addr` (the default public
    /// URL when `ui.public_url` is not set).
    pub fn new(
        gateway: Arc<Gateway>,
        admin_addr: std::net::SocketAddr,
    ) -> Result<Ui, crate::UpstreamSetupError> {
        let config = gateway.ui_config.clone();
        let public_url = config
            .public_url
            .unwrap_or_else(|| format!("http://{admin_addr}"))
            .trim_end_matches('/')
            .to_owned();
        Ok(Ui {
            gateway,
            secure: public_url.starts_with("https://"),
            public_url,
            dev_token_login: config.dev_token_login,
            fetcher: crate::fetch::Fetcher::new(Duration::from_secs(10))?,
        })
    }

    fn set_cookie(&self, name: &str, value: &str, max_age: u64, same_site: &str) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{name}={value}; Path=/ui; HttpOnly; SameSite={same_site}; Max-Age={max_age}{secure}"
        ))
        .unwrap_or_else(|_| HeaderValue::from_static("x=; Max-Age=0"))
    }

    pub async fn handle(&self, req: Request<Incoming>) -> Response<ProxyBody> {
        let gw = &self.gateway;
        let request_id = gw.request_ids.next();
        let mut record = RequestRecord::start(
            request_id.clone(),
            req.method(),
            gw.sink.clone(),
            gw.audit.clone(),
        );
        record.data.route = "ui";
        let page = self.route(req, &mut record).await;
        let mut response = match page {
            Ok(Page::Html(status, body)) => {
                let mut r = Response::new(full(Bytes::from(body)));
                *r.status_mut() = status;
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                );
                r
            }
            Ok(Page::Redirect(to)) => {
                let mut r = Response::new(full(Bytes::new()));
                *r.status_mut() = StatusCode::SEE_OTHER;
                if let Ok(v) = HeaderValue::from_str(&to) {
                    r.headers_mut().insert(header::LOCATION, v);
                }
                r
            }
            Ok(Page::Raw(r)) => r,
            Err(rejection) => {
                record.finish(Outcome::Rejected, rejection.reason);
                let status = rejection.status;
                let body = layout(
                    None,
                    "",
                    "Airlock",
                    &format!(
                        "<h1>{}</h1><p class=\"error\">{}</p><p><a href=\"/ui\">Back</a></p>",
                        status.as_u16(),
                        esc(&rejection.message)
                    ),
                );
                let mut r = Response::new(full(Bytes::from(body)));
                *r.status_mut() = status;
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                );
                r
            }
        };
        if record.data.outcome == Outcome::ClientAborted {
            record.finish(Outcome::Completed, "ui_page");
        }
        record.data.status = Some(response.status().as_u16());
        let h = response.headers_mut();
        h.insert("content-security-policy", HeaderValue::from_static(CSP));
        h.insert("x-frame-options", HeaderValue::from_static("DENY"));
        h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
        h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
        h.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
        response
    }

    async fn route(
        &self,
        req: Request<Incoming>,
        record: &mut RequestRecord,
    ) -> Result<Page, Rejection> {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path().to_owned();
        let query = params(parts.uri.query().unwrap_or(""));
        match (&parts.method, path.as_str()) {
            (&Method::GET, "/ui/static/app.css") => {
                return Ok(asset(CSS, "text/css; charset=utf-8"));
            }
            (&Method::GET, "/ui/static/app.js") => {
                return Ok(asset(JS, "text/javascript; charset=utf-8"));
            }
            (&Method::GET, "/ui/login") => return Ok(self.login_page(&parts.headers, None)),
            (&Method::GET, "/ui/login/start") => return self.login_start(&query).await,
            (&Method::GET, "/ui/callback") => {
                return self.callback(&parts.headers, &query, record).await;
            }
            (&Method::POST, "/ui/login/token") if self.dev_token_login => {
                let form = self.form(body, &parts.headers).await?;
                let pre = cookie(&parts.headers, LOGIN).unwrap_or_default();
                if pre.is_empty() || !same(&pre, &param(&form, "csrf").unwrap_or_default()) {
                    return Err(csrf_refused());
                }
                let token = param(&form, "token").unwrap_or_default();
                let identity =
                    crate::auth::session(&self.gateway, token.trim(), (self.gateway.clock)())?;
                return self.signed_in(identity, token.trim().to_owned(), record);
            }
            _ => {}
        }
        let person = match self.person(&parts.headers, record) {
            Some(p) => p?,
            None if parts.method == Method::GET => return Ok(Page::Redirect("/ui/login".into())),
            None => return Err(not_signed_in()),
        };
        if parts.method == Method::POST {
            let form = self.form(body, &parts.headers).await?;
            if !same(&person.csrf, &param(&form, "csrf").unwrap_or_default()) {
                return Err(csrf_refused());
            }
            return self.post(&path, &form, &person, record).await;
        }
        match path.as_str() {
            "/ui" | "/ui/" => self.admin_only(&person)?.overview(&person).await,
            "/ui/approvals" => self.approvals(&person, param(&query, "fragment").is_some()).await,
            "/ui/approvals/events" => Ok(self.events()),
            "/ui/audit" => self.admin_only(&person)?.audit_search(&person, &query).await,
            p if p.starts_with("/ui/audit/") => {
                self.admin_only(&person)?.conversation(&person, &p["/ui/audit/".len()..]).await
            }
            "/ui/policy" => Ok(self.admin_only(&person)?.policy(&person)),
            _ => Err(Rejection::not_found(&path)),
        }
    }

    fn admin_only(&self, p: &Person) -> Result<&Ui, Rejection> {
        if p.admin {
            Ok(self)
        } else {
            Err(Rejection::new(
                airlock_wire::ErrorType::Permission,
                "this page is for members of an admin group; reviewers have the approvals queue",
                crate::reject::Fault::Client,
                "ui_admin_only",
            ))
        }
    }

    async fn form(
        &self,
        body: Incoming,
        headers: &HeaderMap,
    ) -> Result<Vec<(String, String)>, Rejection> {
        // A browser posting from another site says so: refuse before reading.
        if headers.get("sec-fetch-site").is_some_and(|v| v.as_bytes() == b"cross-site") {
            return Err(csrf_refused());
        }
        let bytes = crate::pipeline::read_body(
            body,
            headers,
            MAX_FORM,
            self.gateway.limits.body_read_timeout,
        )
        .await?;
        Ok(params(&String::from_utf8_lossy(&bytes)))
    }

    /// The person behind the session cookie; `None` when there is none. Only admins and
    /// reviewers (members of a group some rule names as approvers) get in.
    fn person(
        &self,
        headers: &HeaderMap,
        record: &mut RequestRecord,
    ) -> Option<Result<Person, Rejection>> {
        let token = cookie(headers, SESSION)?;
        let gw = &self.gateway;
        let identity = match crate::auth::session(gw, &token, (gw.clock)()) {
            Ok(i) => i,
            Err(_) => return None,
        };
        record.data.subject = Some(identity.subject().to_owned());
        record.data.groups = identity.groups().to_vec();
        record.data.token_id = Some(identity.token_id().to_owned());
        let admin = identity.groups().iter().any(|g| gw.admin_groups.contains(g));
        let reviewers = gw.policy.current().approver_groups();
        let reviewer = identity.groups().iter().any(|g| reviewers.contains(g));
        if !admin && !reviewer {
            return Some(Err(Rejection::new(
                airlock_wire::ErrorType::Permission,
                "the admin UI is for members of an admin or a reviewer group",
                crate::reject::Fault::Client,
                "ui_forbidden",
            )));
        }
        let csrf = cookie(headers, CSRF).unwrap_or_default();
        Some(Ok(Person { identity, admin, csrf }))
    }

    fn login_page(&self, _headers: &HeaderMap, error: Option<&str>) -> Page {
        let pre = random_hex(16);
        let mut body = String::from("<div class=\"login\"><h1>Sign in to Airlock</h1>");
        if let Some(e) = error {
            let _ = write!(body, "<p class=\"error\">{}</p>", esc(e));
        }
        for (i, issuer) in self.gateway.issuers.all().iter().enumerate() {
            if issuer.config.client_id.is_some() {
                let _ = write!(
                    body,
                    "<a class=\"button\" href=\"/ui/login/start?issuer={i}\">Sign in with {}</a>",
                    esc(&issuer.config.issuer)
                );
            }
        }
        if self.dev_token_login {
            let _ = write!(
                body,
                "<form method=\"post\" action=\"/ui/login/token\"><p class=\"muted\">Development mode: paste a session token.</p>\
                 <input type=\"hidden\" name=\"csrf\" value=\"{pre}\"><label>Session token<textarea name=\"token\" required></textarea></label>\
                 <button type=\"submit\">Sign in with a token</button></form>"
            );
        }
        body.push_str("</div>");
        let mut r = Response::new(full(Bytes::from(layout(None, "", "Sign in", &body))));
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
        r.headers_mut().insert(
            header::SET_COOKIE,
            self.set_cookie(LOGIN, &pre, LOGIN_WINDOW.as_secs(), "Strict"),
        );
        Page::Raw(r)
    }

    /// Start the authorization code flow with PKCE at issuer `N`.
    async fn login_start(&self, query: &[(String, String)]) -> Result<Page, Rejection> {
        let i: usize = param(query, "issuer").and_then(|v| v.parse().ok()).unwrap_or(usize::MAX);
        let issuer = self
            .gateway
            .issuers
            .all()
            .get(i)
            .cloned()
            .ok_or_else(|| Rejection::not_found("issuer"))?;
        let client_id =
            issuer.config.client_id.clone().ok_or_else(|| Rejection::not_found("issuer"))?;
        let discovery = self.discovery(&issuer.config.issuer).await?;
        let endpoint =
            discovery["authorization_endpoint"].as_str().ok_or_else(idp_down)?.to_owned();
        let (state, verifier) = (random_hex(16), b64url(random_hex(32).as_bytes()));
        let challenge =
            b64url(ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()).as_ref());
        let redirect = format!("{}/ui/callback", self.public_url);
        let q = [
            ("response_type", "code"),
            ("client_id", client_id.as_str()),
            ("redirect_uri", redirect.as_str()),
            ("scope", issuer.config.scopes.as_str()),
            ("state", state.as_str()),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ]
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&");
        let sep = if endpoint.contains('?') { '&' } else { '?' };
        let mut r = Response::new(full(Bytes::new()));
        *r.status_mut() = StatusCode::SEE_OTHER;
        r.headers_mut().insert(
            header::LOCATION,
            HeaderValue::from_str(&format!("{endpoint}{sep}{q}")).map_err(|_| idp_down())?,
        );
        // Lax: the IdP's redirect back is a cross-site navigation that must carry it.
        let value = format!("{state}.{verifier}.{i}");
        r.headers_mut().insert(
            header::SET_COOKIE,
            self.set_cookie(LOGIN, &value, LOGIN_WINDOW.as_secs(), "Lax"),
        );
        Ok(Page::Raw(r))
    }

    async fn discovery(&self, issuer: &str) -> Result<Value, Rejection> {
        let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
        let got = self.fetcher.get(&url).await.map_err(|_| idp_down())?;
        if !got.status.is_success() {
            return Err(idp_down());
        }
        serde_json::from_slice(&got.body).map_err(|_| idp_down())
    }

    /// The IdP's redirect back: check the state against the cookie, redeem the code, verify
    /// the token like any IdP token, and sign the person in.
    async fn callback(
        &self,
        headers: &HeaderMap,
        query: &[(String, String)],
        record: &mut RequestRecord,
    ) -> Result<Page, Rejection> {
        let stored = cookie(headers, LOGIN).unwrap_or_default();
        let mut it = stored.splitn(3, '.');
        let (state, verifier, i) =
            (it.next().unwrap_or(""), it.next().unwrap_or(""), it.next().unwrap_or(""));
        let given = param(query, "state").unwrap_or_default();
        if state.is_empty() || verifier.is_empty() || !same(state, &given) {
            return Ok(self.login_page(
                headers,
                Some("That sign-in did not start here (or took too long); try again."),
            ));
        }
        if let Some(e) = param(query, "error") {
            return Ok(self.login_page(
                headers,
                Some(&format!("The identity provider refused the sign-in: {e}")),
            ));
        }
        let code = param(query, "code").ok_or_else(idp_down)?;
        let issuer = i
            .parse::<usize>()
            .ok()
            .and_then(|i| self.gateway.issuers.all().get(i).cloned())
            .ok_or_else(idp_down)?;
        let client_id = issuer.config.client_id.clone().ok_or_else(idp_down)?;
        let discovery = self.discovery(&issuer.config.issuer).await?;
        let token_endpoint = discovery["token_endpoint"].as_str().ok_or_else(idp_down)?;
        let redirect = format!("{}/ui/callback", self.public_url);
        let answer = self
            .fetcher
            .post_form(
                token_endpoint,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", &redirect),
                    ("client_id", &client_id),
                    ("code_verifier", verifier),
                ],
            )
            .await
            .map_err(|_| idp_down())?;
        let tokens: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
        let field = match issuer.config.token_type {
            airlock_authn::oidc::TokenKind::Access => "access_token",
            airlock_authn::oidc::TokenKind::Id => "id_token",
        };
        let idp_token = tokens[field].as_str().ok_or_else(idp_down)?;
        let gw = &self.gateway;
        let identity = gw.issuers.verify(idp_token, (gw.clock)(), false).await.map_err(|_| {
            Rejection::unauthenticated("the identity provider's token was not accepted")
        })?;
        let minted = gw
            .keys
            .mint(identity.subject(), identity.groups(), gw.session_ttl.as_secs(), (gw.clock)())
            .map_err(|e| Rejection::bad_request(e.to_string(), "ui_mint_failed"))?;
        record.data.minted_token_id = Some(minted.token_id.clone());
        let session = gw
            .keys
            .verify(&minted.token, (gw.clock)(), gw.session_max_ttl.as_secs())
            .map_err(|_| idp_down())?;
        self.signed_in(session, minted.token, record)
    }

    /// Set the session and CSRF cookies; continue with a same-site navigation (a Strict
    /// cookie set during a cross-site redirect chain would not be sent on its next hop).
    fn signed_in(
        &self,
        identity: Identity,
        token: String,
        record: &mut RequestRecord,
    ) -> Result<Page, Rejection> {
        let gw = &self.gateway;
        let admin = identity.groups().iter().any(|g| gw.admin_groups.contains(g));
        let reviewers = gw.policy.current().approver_groups();
        if !admin && !identity.groups().iter().any(|g| reviewers.contains(g)) {
            return Err(Rejection::new(
                airlock_wire::ErrorType::Permission,
                "the admin UI is for members of an admin or a reviewer group",
                crate::reject::Fault::Client,
                "ui_forbidden",
            ));
        }
        record.data.subject = Some(identity.subject().to_owned());
        record.data.groups = identity.groups().to_vec();
        record.finish(Outcome::Completed, "ui_signed_in");
        let next = if admin { "/ui" } else { "/ui/approvals" };
        let body = layout(
            None,
            "",
            "Signed in",
            &format!(
                "<meta http-equiv=\"refresh\" content=\"0;url={next}\"><p>Signed in. <a href=\"{next}\">Continue</a></p>"
            ),
        );
        let mut r = Response::new(full(Bytes::from(body)));
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
        let ttl = gw.session_ttl.as_secs();
        let h = r.headers_mut();
        h.append(header::SET_COOKIE, self.set_cookie(SESSION, &token, ttl, "Strict"));
        h.append(header::SET_COOKIE, self.set_cookie(CSRF, &random_hex(24), ttl, "Strict"));
        h.append(header::SET_COOKIE, self.set_cookie(LOGIN, "", 0, "Lax"));
        Ok(Page::Raw(r))
    }

    async fn post(
        &self,
        path: &str,
        form: &[(String, String)],
        person: &Person,
        record: &mut RequestRecord,
    ) -> Result<Page, Rejection> {
        if path == "/ui/logout" {
            let mut r = Response::new(full(Bytes::new()));
            *r.status_mut() = StatusCode::SEE_OTHER;
            r.headers_mut().insert(header::LOCATION, HeaderValue::from_static("/ui/login"));
            r.headers_mut().append(header::SET_COOKIE, self.set_cookie(SESSION, "", 0, "Strict"));
            r.headers_mut().append(header::SET_COOKIE, self.set_cookie(CSRF, "", 0, "Strict"));
            record.finish(Outcome::Completed, "ui_signed_out");
            return Ok(Page::Raw(r));
        }
        let rest = path.strip_prefix("/ui/approvals/").ok_or_else(|| Rejection::not_found(path))?;
        let (id, verb) = rest.split_once('/').ok_or_else(|| Rejection::not_found(path))?;
        let approve = match verb {
            "approve" => true,
            "deny" => false,
            _ => return Err(Rejection::not_found(path)),
        };
        let caller = crate::approvals::Caller { identity: &person.identity, admin: person.admin };
        let grant = param(form, "grant");
        let (reason, _) = crate::approvals::decide(
            &self.gateway,
            caller,
            id,
            approve,
            param(form, "reason"),
            grant.as_deref(),
            record,
        )
        .await?;
        record.finish(Outcome::Completed, reason);
        Ok(Page::Redirect("/ui/approvals".into()))
    }

    async fn overview(&self, p: &Person) -> Result<Page, Rejection> {
        let gw = &self.gateway;
        let o = gw.metrics.overview();
        let pending = match &gw.audit {
            Some(a) => a.read(|s| s.count_approvals("pending")).await.ok(),
            None => None,
        };
        let in_flight =
            gw.limits.max_concurrent_requests as usize - gw.in_flight.available_permits();
        let mut b = String::from("<h1>Overview</h1><div class=\"cards\">");
        for (label, value) in [
            ("Requests, last minute", o.last_minute.to_string()),
            ("In flight", in_flight.to_string()),
            ("Approvals pending", pending.map_or("?".into(), |n| n.to_string())),
        ] {
            let _ = write!(
                b,
                "<div class=\"card\"><div class=\"muted\">{}</div><div class=\"big\">{}</div></div>",
                esc(label),
                esc(&value)
            );
        }
        let version: String = gw.policy.current().version.chars().take(23).collect();
        let _ = write!(
            b,
            "<div class=\"card\"><div class=\"muted\">Policy</div><div class=\"mono\"><a href=\"/ui/policy\">{}</a></div></div>",
            esc(&version)
        );
        b.push_str("</div><h2>Requests per minute, by decision (last hour)</h2>");
        b.push_str(&chart(&o.per_minute));
        b.push_str(
            "<h2>Top rules</h2><table><tr><th>rule</th><th>mode</th><th>matches</th><th></th></tr>",
        );
        let top = o.rules.first().map_or(1, |r| r.2);
        for (rule, mode, n) in o.rules.iter().take(10) {
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{n}</td><td>{}</td></tr>",
                esc(rule),
                esc(mode),
                bar(*n, top)
            );
        }
        b.push_str("</table><h2>Tokens by group and model</h2><table><tr><th>group</th><th>model</th><th>direction</th><th>tokens</th><th></th></tr>");
        let top = o.tokens.first().map_or(1, |t| t.3);
        for (dir, model, group, n) in o.tokens.iter().take(20) {
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{n}</td><td>{}</td></tr>",
                esc(group),
                esc(model),
                esc(dir),
                bar(*n, top)
            );
        }
        b.push_str("</table>");
        Ok(Page::Html(StatusCode::OK, layout(Some(p), "/ui", "Overview", &b)))
    }

    async fn approvals(&self, p: &Person, fragment: bool) -> Result<Page, Rejection> {
        let audit = self.gateway.audit.clone().ok_or_else(crate::audit::unavailable)?;
        let all = audit
            .read(|s| s.approvals(None, 200))
            .await
            .map_err(|_| crate::audit::unavailable())?;
        let caller = crate::approvals::Caller { identity: &p.identity, admin: p.admin };
        let visible: Vec<_> = all.into_iter().filter(|a| caller.sees(a)).collect();
        let now = airlock_store::now_ms();
        let mut b = String::from("<h2>Waiting</h2>");
        let pending: Vec<_> = visible.iter().filter(|a| a.state == "pending").collect();
        if pending.is_empty() {
            b.push_str("<p class=\"muted\" id=\"none-pending\">Nothing is waiting.</p>");
        } else {
            b.push_str("<table><tr><th>requester</th><th>rule</th><th>model</th><th>waiting</th><th>request</th><th>decision</th></tr>");
            for a in &pending {
                let view: Value = serde_json::from_str(&a.view).unwrap_or(Value::Null);
                let own = a.subject == p.identity.subject();
                let may = caller.may_decide(a).is_ok();
                let _ = write!(
                    b,
                    "<tr class=\"approval\" data-id=\"{id}\"><td>{subj}<br><span class=\"muted\">{groups}</span></td><td>{rule}</td><td>{model}</td><td>{wait}s<br><span class=\"muted\">expires in {left}s</span></td><td>{req}<div class=\"muted\">sha256 {hash}</div></td><td>",
                    id = esc(&a.id),
                    subj = esc(&a.subject),
                    groups = esc(&a.groups.join(", ")),
                    rule = esc(&a.rule),
                    model = esc(a.model.as_deref().unwrap_or("-")),
                    wait = (now - a.created_ms).max(0) / 1000,
                    left = (a.expires_ms - now).max(0) / 1000,
                    req = transcript(&view),
                    hash = esc(&a.body_hash[..16.min(a.body_hash.len())]),
                );
                if may {
                    let _ = write!(
                        b,
                        "<form class=\"inline\" method=\"post\" action=\"/ui/approvals/{id}/approve\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"text\" name=\"reason\" placeholder=\"reason (optional)\" aria-label=\"reason for approving\"><button class=\"approve\" type=\"submit\">Approve</button></form>\
                         <form class=\"inline\" method=\"post\" action=\"/ui/approvals/{id}/deny\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"text\" name=\"reason\" required placeholder=\"reason (required)\" aria-label=\"reason for denying\"><button class=\"deny\" type=\"submit\">Deny</button></form>",
                        id = esc(&a.id),
                        csrf = esc(&p.csrf)
                    );
                } else if own {
                    b.push_str(
                        "<span class=\"muted\">your own request: someone else decides</span>",
                    );
                } else {
                    b.push_str("<span class=\"muted\">not in an approver group</span>");
                }
                b.push_str("</td></tr>");
            }
            b.push_str("</table>");
        }
        b.push_str("<h2>Decided</h2><table><tr><th>requester</th><th>rule</th><th>state</th><th>by</th><th>reason</th><th>when</th></tr>");
        for a in visible.iter().filter(|a| a.state != "pending").take(50) {
            let _ = write!(
                b,
                "<tr class=\"decided\" data-id=\"{}\"><td>{}</td><td>{}</td><td><span class=\"badge {}\">{}</span></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&a.id),
                esc(&a.subject),
                esc(&a.rule),
                esc(&a.state),
                esc(&a.state),
                esc(a.decided_by.as_deref().unwrap_or("-")),
                esc(a.reason.as_deref().unwrap_or("")),
                a.decided_ms.map(format_ms).unwrap_or_default()
            );
        }
        b.push_str("</table>");
        if fragment {
            return Ok(Page::Html(StatusCode::OK, b));
        }
        let page = format!("<h1>Approvals</h1><div id=\"approvals-live\">{b}</div>");
        Ok(Page::Html(StatusCode::OK, layout(Some(p), "/ui/approvals", "Approvals", &page)))
    }

    /// `changed` whenever the queue changes (a decision here wakes it at once; anything
    /// else is seen within a second), and a comment every 15 s to keep the connection.
    fn events(&self) -> Page {
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
        let gw = Arc::clone(&self.gateway);
        tokio::spawn(async move {
            let mut last = String::new();
            let mut quiet = 0u32;
            loop {
                let notified = gw.approvals.changed();
                if let Some(audit) = &gw.audit {
                    let now = audit.read(|s| s.approvals(None, 200)).await.ok();
                    let print: String = now
                        .into_iter()
                        .flatten()
                        .map(|a| format!("{}:{};", a.id, a.state))
                        .collect();
                    if !last.is_empty()
                        && print != last
                        && tx
                            .send(Bytes::from_static(b"event: changed\ndata: {}\n\n"))
                            .await
                            .is_err()
                    {
                        return;
                    }
                    last = print;
                }
                quiet += 1;
                if quiet >= 15 {
                    quiet = 0;
                    if tx.send(Bytes::from_static(b": keep-alive\n\n")).await.is_err() {
                        return;
                    }
                }
                tokio::select! {
                    () = notified => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = tx.closed() => return,
                }
            }
        });
        let mut r = Response::new(crate::body::channel(rx));
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        Page::Raw(r)
    }

    async fn audit_search(
        &self,
        p: &Person,
        query: &[(String, String)],
    ) -> Result<Page, Rejection> {
        let field = |k: &str| param(query, k);
        let ms = |k: &str| field(k).and_then(|v| parse_local_datetime(&v));
        let q = airlock_store::Query {
            subject: field("subject"),
            group: field("group"),
            rule: field("rule"),
            decision: field("decision"),
            model: field("model"),
            request_id: None,
            since_ms: ms("since"),
            until_ms: ms("until"),
            limit: 200,
        };
        let audit = self.gateway.audit.clone().ok_or_else(crate::audit::unavailable)?;
        let rows =
            audit.read(move |s| s.search(&q)).await.map_err(|_| crate::audit::unavailable())?;
        let mut b = String::from(
            "<h1>Audit log</h1><form class=\"search\" method=\"get\" action=\"/ui/audit\">",
        );
        for (k, label, kind) in [
            ("subject", "Subject", "search"),
            ("group", "Group", "search"),
            ("rule", "Rule", "search"),
            ("decision", "Decision", "search"),
            ("model", "Model", "search"),
            ("since", "Since (UTC)", "datetime-local"),
            ("until", "Until (UTC)", "datetime-local"),
        ] {
            let _ = write!(
                b,
                "<label>{label}<input type=\"{kind}\" name=\"{k}\" value=\"{}\"></label>",
                esc(&field(k).unwrap_or_default())
            );
        }
        b.push_str("<button type=\"submit\">Search</button></form><table><tr><th>time</th><th>request</th><th>kind</th><th>subject</th><th>model</th><th>decision</th><th>status</th></tr>");
        let mut seen = std::collections::HashSet::new();
        for r in &rows {
            if !seen.insert(r.request_id.clone()) {
                continue;
            }
            let _ = write!(
                b,
                "<tr><td>{}</td><td><a href=\"/ui/audit/{id}\">{id}</a></td><td>{}</td><td>{}</td><td>{}</td><td><span class=\"badge {d}\">{d}</span></td><td>{}</td></tr>",
                format_ms(r.at_ms),
                esc(&r.kind),
                esc(r.subject.as_deref().unwrap_or("-")),
                esc(r.model.as_deref().unwrap_or("-")),
                r.status.map_or(String::new(), |s| s.to_string()),
                id = esc(&r.request_id),
                d = esc(r.decision.as_deref().unwrap_or("-")),
            );
        }
        b.push_str("</table>");
        Ok(Page::Html(StatusCode::OK, layout(Some(p), "/ui/audit", "Audit", &b)))
    }

    /// One record as a conversation: the request as forwarded and the response as received,
    /// every masked value marked by type, with usage, timings and chain verification.
    async fn conversation(&self, p: &Person, id: &str) -> Result<Page, Rejection> {
        if id.is_empty()
            || id.len() > 128
            || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(Rejection::not_found(id));
        }
        let audit = self.gateway.audit.clone().ok_or_else(crate::audit::unavailable)?;
        let q = airlock_store::Query {
            request_id: Some(id.to_owned()),
            limit: 100,
            ..Default::default()
        };
        let mut rows =
            audit.read(move |s| s.search(&q)).await.map_err(|_| crate::audit::unavailable())?;
        if rows.is_empty() {
            return Err(Rejection::not_found(id));
        }
        rows.sort_by(|a, b| (&a.chain, a.seq).cmp(&(&b.chain, b.seq)));
        let first: Value = serde_json::from_str(&rows[0].body).unwrap_or(Value::Null);
        let last: Value = serde_json::from_str(&rows[rows.len() - 1].body).unwrap_or(Value::Null);
        let (f, l) = (&first["detail"], &last["detail"]);
        let reports = audit.verify().await.map_err(|_| crate::audit::unavailable())?;
        let verified = rows.iter().all(|r| {
            reports.iter().any(|c| {
                c.chain == r.chain
                    && c.problem.as_ref().is_none_or(|pr| pr.seq.is_some_and(|s| s > r.seq))
            })
        });
        let store_ok = reports.iter().all(|c| c.problem.is_none());
        let s = |v: &Value| {
            esc(&v.as_str().map_or_else(
                || if v.is_null() { "-".into() } else { v.to_string() },
                str::to_owned,
            ))
        };
        let mut b = format!("<h1>Request {}</h1><dl class=\"facts\">", esc(id));
        let usage = format!(
            "{} in / {} out",
            s(&l["usage"]["input_tokens"]),
            s(&l["usage"]["output_tokens"])
        );
        let timing = |k: &str| {
            l["timings_us"][k]
                .as_u64()
                .map_or("-".into(), |us| format!("{:.1} ms", us as f64 / 1000.0))
        };
        let facts: Vec<(&str, String)> = vec![
            ("time", format_ms(rows[0].at_ms)),
            (
                "identity",
                format!(
                    "{} ({})",
                    s(&first["subject"]),
                    esc(&first["groups"].as_array().map_or(String::new(), |g| g
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")))
                ),
            ),
            ("model", s(&first["model"])),
            (
                "decision",
                format!("<span class=\"badge {d}\">{d}</span>", d = s(&first["decision"])),
            ),
            (
                "rules",
                esc(&f["policy"]["rules"].as_array().map_or(String::new(), |r| {
                    r.iter()
                        .map(|x| {
                            format!(
                                "{} ({})",
                                x["id"].as_str().unwrap_or("?"),
                                x["mode"].as_str().unwrap_or("?")
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                })),
            ),
            ("redacted", esc(&l["policy"]["redactions"].to_string())),
            ("masked", esc(&l["masked"].to_string())),
            ("outcome", format!("{} — {}", s(&l["outcome"]), s(&l["reason"]))),
            ("status", s(&last["status"])),
            ("usage", usage),
            (
                "timings",
                format!(
                    "total {}, upstream {}, first byte {}",
                    timing("total"),
                    timing("upstream"),
                    timing("first_byte")
                ),
            ),
            (
                "approval",
                if f["approval"].is_null() && l["approval"].is_null() {
                    "-".into()
                } else {
                    esc(&l["approval"].to_string())
                },
            ),
            ("policy", s(&f["policy"]["version"])),
            (
                "chain",
                format!(
                    "{} <span class=\"muted\">store: {}</span>",
                    if verified {
                        "<span class=\"ok\" id=\"record-verified\">this record verifies</span>"
                    } else {
                        "<span class=\"error\" id=\"record-verified\">this record does NOT verify</span>"
                    },
                    if store_ok {
                        "every chain verifies"
                    } else {
                        "a chain has a problem (see airlock audit verify)"
                    }
                ),
            ),
        ];
        for (k, v) in facts {
            let _ = write!(b, "<dt>{k}</dt><dd>{v}</dd>");
        }
        b.push_str("</dl><h2>Conversation</h2><div class=\"chat\">");
        b.push_str(&transcript(&f["request_body"]));
        if let Some(content) = l["response_body"].get("content") {
            b.push_str(&turn("assistant", content));
        }
        b.push_str("</div>");
        Ok(Page::Html(StatusCode::OK, layout(Some(p), "/ui/audit", "Conversation", &b)))
    }

    fn policy(&self, p: &Person) -> Page {
        let gw = &self.gateway;
        let st = gw.policy.status();
        let policy = gw.policy.current();
        let counts = gw.metrics.rule_matches();
        let secs = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
        };
        let mut b = format!(
            "<h1>Policy</h1><dl class=\"facts\"><dt>version</dt><dd id=\"policy-version\">{}</dd><dt>source</dt><dd>{}</dd><dt>loaded</dt><dd>{}</dd><dt>last reload</dt><dd>{}</dd><dt>reload failures</dt><dd>{}</dd></dl>",
            esc(&st.version),
            esc(&st.source),
            format_ms(secs(st.loaded_at)),
            st.last_error.as_deref().map_or(
                "<span class=\"ok\">ok</span>".to_owned(),
                |e| format!("<span class=\"error\">refused: {}</span>", esc(e))
            ),
            st.reload_failures
        );
        b.push_str("<h2>Rules</h2><table><tr><th>rule</th><th>action</th><th>mode</th><th>matches (this gateway, since start)</th></tr>");
        for (id, action, mode) in policy.rules() {
            let n: u64 = counts.iter().filter(|(r, _, _)| r == id).map(|(_, _, n)| n).sum();
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{n}</td></tr>",
                esc(id),
                action.as_str(),
                mode.as_str()
            );
        }
        b.push_str("</table>");
        Page::Html(StatusCode::OK, layout(Some(p), "/ui/policy", "Policy", &b))
    }
}

fn asset(text: &'static str, kind: &'static str) -> Page {
    let mut r = Response::new(full(Bytes::from_static(text.as_bytes())));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=300"));
    Page::Raw(r)
}

fn csrf_refused() -> Rejection {
    Rejection::new(
        airlock_wire::ErrorType::Permission,
        "the form's CSRF token is missing or wrong; reload the page and try again",
        crate::reject::Fault::Client,
        "ui_csrf",
    )
}

fn not_signed_in() -> Rejection {
    Rejection::unauthenticated("sign in first")
}

fn idp_down() -> Rejection {
    Rejection::new(
        airlock_wire::ErrorType::Api,
        "the identity provider could not complete the sign-in",
        crate::reject::Fault::Upstream,
        "ui_idp_failed",
    )
    .with_status(StatusCode::BAD_GATEWAY)
}

/// `2026-11-25 10:00:00 UTC`.
fn format_ms(ms: i64) -> String {
    airlock_config::civil::rfc3339(ms.div_euclid(1000)).replace('T', " ").replace('Z', " UTC")
}

/// `2026-11-25T10:00` (a datetime-local field, read as UTC) → unix ms.
fn parse_local_datetime(v: &str) -> Option<i64> {
    let (date, time) = v.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':').map(|x| x.parse::<i64>());
    let (h, min) = (t.next()?.ok()?, t.next()?.ok()?);
    let days = airlock_config::civil::days_from_civil(y, m, day);
    Some(((days * 86_400) + h * 3600 + min * 60) * 1000)
}

/// The request part of a stored body as chat turns.
fn transcript(body: &Value) -> String {
    if body["airlock_truncated"] == true {
        return format!(
            "<div class=\"turn system\"><div class=\"role\">request (cut)</div><pre>{}</pre></div>",
            marked(body["text"].as_str().unwrap_or(""))
        );
    }
    let mut out = String::new();
    match &body["system"] {
        Value::String(t) => out.push_str(&turn("system", &Value::String(t.clone()))),
        Value::Array(blocks) => out.push_str(&turn("system", &Value::Array(blocks.clone()))),
        _ => {}
    }
    for m in body["messages"].as_array().into_iter().flatten() {
        out.push_str(&turn(m["role"].as_str().unwrap_or("user"), &m["content"]));
    }
    out
}

fn turn(role: &str, content: &Value) -> String {
    let role_class = match role {
        "assistant" => "assistant",
        "system" => "system",
        _ => "user",
    };
    let mut out =
        format!("<div class=\"turn {role_class}\"><div class=\"role\">{}</div>", esc(role));
    let blocks: Vec<Value> = match content {
        Value::String(t) => vec![serde_json::json!({"type": "text", "text": t})],
        Value::Array(b) => b.clone(),
        _ => Vec::new(),
    };
    for b in blocks {
        match b["type"].as_str().unwrap_or("") {
            "text" => {
                let _ = write!(
                    out,
                    "<div class=\"text\">{}</div>",
                    marked(b["text"].as_str().unwrap_or(""))
                );
            }
            "thinking" | "redacted_thinking" => {
                out.push_str("<div class=\"muted\">(thinking, not shown)</div>")
            }
            "tool_use" | "server_tool_use" => {
                let input = serde_json::to_string_pretty(&b["input"]).unwrap_or_default();
                let _ = write!(
                    out,
                    "<div class=\"muted\">tool call: {}</div><pre>{}</pre>",
                    esc(b["name"].as_str().unwrap_or("?")),
                    marked(&input)
                );
            }
            "tool_result" => {
                let text = airlock_wire::tool_result_text(&b["content"]);
                let _ = write!(
                    out,
                    "<div class=\"muted\">tool result</div><pre>{}</pre>",
                    marked(&text)
                );
            }
            other => {
                let _ = write!(out, "<div class=\"muted\">({} block)</div>", esc(other));
            }
        }
    }
    out.push_str("</div>");
    out
}

/// A horizontal bar for `n` of `max`, as inline SVG.
fn bar(n: u64, max: u64) -> String {
    let w = (n as f64 / max.max(1) as f64 * 200.0).max(1.0);
    format!(
        "<svg width=\"200\" height=\"12\" aria-hidden=\"true\"><rect width=\"{w:.1}\" height=\"12\" fill=\"#2a5bd7\"/></svg>"
    )
}

/// Stacked bars of requests per minute by decision, as inline SVG (no script).
fn chart(per_minute: &[(i64, Vec<(String, u64)>)]) -> String {
    let colors = [
        ("allow", "#1f7a4d"),
        ("redact", "#a15c07"),
        ("require_approval", "#6b4fbb"),
        ("deny", "#b42318"),
        ("none", "#8a94a6"),
    ];
    let color = |d: &str| colors.iter().find(|(k, _)| *k == d).map_or("#5b6475", |(_, c)| c);
    let max = per_minute
        .iter()
        .map(|(_, v)| v.iter().map(|(_, n)| n).sum::<u64>())
        .max()
        .unwrap_or(0)
        .max(1);
    let mut svg = String::from(
        "<svg class=\"chart\" viewBox=\"0 0 600 160\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"requests per minute\">",
    );
    let w = 600.0 / 60.0;
    let first = per_minute.last().map_or(0, |(m, _)| m - 59);
    for (minute, decisions) in per_minute {
        let x = (minute - first) as f64 * w;
        let mut y = 160.0;
        for (d, n) in decisions {
            let h = *n as f64 / max as f64 * 150.0;
            y -= h;
            let _ = write!(
                svg,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{}\"><title>{} {}</title></rect>",
                w - 1.0,
                color(d),
                esc(d),
                n
            );
        }
    }
    svg.push_str("</svg><div class=\"legend\">");
    for (d, c) in colors {
        // Swatches are SVG too: the CSP allows no inline style.
        let _ = write!(
            svg,
            "<span><svg width=\"12\" height=\"12\" aria-hidden=\"true\"><rect width=\"12\" height=\"12\" fill=\"{c}\"/></svg> {d}</span>"
        );
    }
    svg.push_str("</div>");
    svg
}

fn layout(person: Option<&Person>, current: &str, title: &str, body: &str) -> String {
    let nav = match person {
        None => String::new(),
        Some(p) => {
            let mut links = vec![("/ui/approvals", "Approvals")];
            if p.admin {
                links.insert(0, ("/ui", "Overview"));
                links.push(("/ui/audit", "Audit"));
                links.push(("/ui/policy", "Policy"));
            }
            let mut n = String::from("<nav>");
            for (href, label) in links {
                let cur = if href == current { " aria-current=\"page\"" } else { "" };
                let _ = write!(n, "<a href=\"{href}\"{cur}>{label}</a>");
            }
            let _ = write!(
                n,
                "</nav><span class=\"who\">{}</span><form class=\"inline\" method=\"post\" action=\"/ui/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\">Sign out</button></form>",
                esc(p.identity.subject()),
                esc(&p.csrf)
            );
            n
        }
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{} · Airlock</title><link rel=\"stylesheet\" href=\"/ui/static/app.css\"><script src=\"/ui/static/app.js\" defer></script></head><body><header><span class=\"brand\">Airlock</span>{nav}</header><main>{body}</main></body></html>",
        esc(title)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_marking() {
        assert_eq!(esc("<a href='x'>&\""), "&lt;a href=&#39;x&#39;&gt;&amp;&quot;");
        let m = marked("mail [EMAIL] or <PHONE_3f9a> not [lowercase] <script>");
        assert!(m.contains("<mark class=\"masked\" title=\"masked: email\">[EMAIL]</mark>"), "{m}");
        assert!(m.contains("title=\"masked: phone\">&lt;PHONE_3f9a&gt;</mark>"), "{m}");
        assert!(m.contains("[lowercase]") && m.contains("&lt;script&gt;"), "{m}");
        assert!(!m.contains("<script>"));
    }

    #[test]
    fn dates() {
        assert_eq!(format_ms(1_795_600_800_000), "2026-11-25 10:00:00 UTC");
        assert_eq!(parse_local_datetime("2026-11-25T10:00"), Some(1_795_600_800_000));
        assert_eq!(parse_local_datetime("garbage"), None);
    }
}
