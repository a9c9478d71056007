//! A small, strict HTTP client for talking to identity providers (discovery documents, JWK
//! sets, and the device/token endpoints `airlock login` uses): `https://` only (plain http
//! only to a loopback host), redirects never followed, a total deadline per request and a cap
//! on the response size. Everything an IdP sends is untrusted input.

use crate::upstream::{Alpn, UpstreamSetupError, connector};
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::time::Duration;

/// Largest IdP response accepted (a JWK set is a few KiB).
pub const MAX_FETCH_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("refusing {0}: only https:// (or http:// to a loopback host) is allowed")]
    InsecureUrl(String),
    #[error("request to {0} failed: {1}")]
    Transport(String, String),
    #[error("{0} did not answer within the deadline")]
    Timeout(String),
    #[error("{0} answered with a redirect, which is never followed")]
    Redirect(String),
    #[error("{0} sent more than {MAX_FETCH_BYTES} bytes")]
    TooLarge(String),
}

/// An answer: status and the whole (bounded) body.
#[derive(Debug)]
pub struct Fetched {
    pub status: StatusCode,
    pub body: Bytes,
}

pub struct Fetcher {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    deadline: Duration,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher").field("deadline", &self.deadline).finish_non_exhaustive()
    }
}

impl Fetcher {
    /// `deadline` bounds each request from connect to the last body byte.
    pub fn new(deadline: Duration) -> Result<Fetcher, UpstreamSetupError> {
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector(deadline, false, Alpn::Http1)?);
        Ok(Fetcher { client, deadline })
    }

    pub async fn get(&self, url: &str) -> Result<Fetched, FetchError> {
        self.send(Method::GET, url, None, None).await
    }

    /// GET with `Authorization: Bearer` (the admin API).
    pub async fn get_bearer(&self, url: &str, token: &str) -> Result<Fetched, FetchError> {
        self.send(Method::GET, url, None, Some(token)).await
    }

    /// POST with `Authorization: Bearer` and no body (the gateway's token exchange).
    pub async fn post_bearer(&self, url: &str, token: &str) -> Result<Fetched, FetchError> {
        self.send(Method::POST, url, None, Some(token)).await
    }

    /// POST a JSON body with `Authorization: Bearer` (the admin API).
    pub async fn post_json_bearer(
        &self,
        url: &str,
        token: &str,
        json: String,
    ) -> Result<Fetched, FetchError> {
        self.send(Method::POST, url, Some((Bytes::from(json), "application/json")), Some(token))
            .await
    }

    /// POST a JSON body (a notification).
    pub async fn post_json(&self, url: &str, json: String) -> Result<Fetched, FetchError> {
        self.send(Method::POST, url, Some((Bytes::from(json), "application/json")), None).await
    }

    /// POST a `text/plain` body (a signed checkpoint note).
    pub async fn post_text(&self, url: &str, text: String) -> Result<Fetched, FetchError> {
        self.send(Method::POST, url, Some((Bytes::from(text), "text/plain; charset=utf-8")), None)
            .await
    }

    /// POST an `application/x-www-form-urlencoded` body.
    pub async fn post_form(&self, url: &str, form: &[(&str, &str)]) -> Result<Fetched, FetchError> {
        let body: Vec<String> =
            form.iter().map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v))).collect();
        let body = Bytes::from(body.join("&"));
        self.send(Method::POST, url, Some((body, "application/x-www-form-urlencoded")), None).await
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<(Bytes, &'static str)>,
        bearer: Option<&str>,
    ) -> Result<Fetched, FetchError> {
        let shown = display_url(url);
        if !airlock_config::is_https_or_loopback(url) {
            return Err(FetchError::InsecureUrl(shown));
        }
        let (body, content_type) = body.unzip();
        let mut request = Request::new(Full::new(body.unwrap_or_default()));
        *request.method_mut() = method;
        *request.uri_mut() = url.parse().map_err(|_| FetchError::InsecureUrl(shown.clone()))?;
        let headers = request.headers_mut();
        headers.insert(header::ACCEPT, http::HeaderValue::from_static("application/json"));
        headers.insert(header::ACCEPT_ENCODING, http::HeaderValue::from_static("identity"));
        if let Some(token) = bearer {
            let value = http::HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| FetchError::Transport(shown.clone(), "invalid token".into()))?;
            headers.insert(header::AUTHORIZATION, value);
        }
        if let Some(content_type) = content_type {
            headers.insert(header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
        }
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| FetchError::Transport(shown.clone(), e.to_string()))?;
            let status = response.status();
            if status.is_redirection() {
                return Err(FetchError::Redirect(shown.clone()));
            }
            let body = Limited::new(response.into_body(), MAX_FETCH_BYTES)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        FetchError::TooLarge(shown.clone())
                    } else {
                        FetchError::Transport(shown.clone(), e.to_string())
                    }
                })?
                .to_bytes();
            Ok(Fetched { status, body })
        };
        tokio::time::timeout(self.deadline, exchange)
            .await
            .unwrap_or_else(|_| Err(FetchError::Timeout(shown.clone())))
    }
}

/// The URL without its query (which may carry codes or tokens), for messages and logs.
fn display_url(url: &str) -> String {
    url.split(['?', '#']).next().unwrap_or_default().chars().take(200).collect()
}

/// `application/x-www-form-urlencoded` encoding of one name or value.
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_and_display() {
        assert_eq!(form_encode("a b&c=d/é"), "a+b%26c%3Dd%2F%C3%A9");
        assert_eq!(display_url("https://idp/token?code=secret"), "https://idp/token");
    }

    #[tokio::test]
    async fn refuses_insecure_urls_and_redirects_and_bounds_size() {
        let f = Fetcher::new(Duration::from_secs(2)).unwrap();
        assert!(matches!(f.get("http://idp.example.com/x").await, Err(FetchError::InsecureUrl(_))));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            for answer in [
                "HTTP/1.1 302 Found\r\nconnection: close\r\nlocation: https://evil.example/\r\ncontent-length: 0\r\n\r\n".to_owned(),
                format!("HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{}", MAX_FETCH_BYTES + 1, "x".repeat(MAX_FETCH_BYTES + 1)),
            ] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(answer.as_bytes()).await;
            }
            // Accept and never answer: hold the socket until the test ends.
            let (_s, _) = listener.accept().await.unwrap();
            std::future::pending::<()>().await;
        });
        let url = format!("http://127.0.0.1:{}/jwks", addr.port());
        assert!(matches!(f.get(&url).await, Err(FetchError::Redirect(_))));
        assert!(matches!(f.get(&url).await, Err(FetchError::TooLarge(_))));
        assert!(matches!(f.get(&url).await, Err(FetchError::Timeout(_))));
    }
}
