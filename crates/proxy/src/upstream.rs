//! The upstream client: pooled connections, rustls (ring) for TLS, HTTP/1.1, a connect
//! timeout, a time-to-headers timeout, and retries only when no byte was sent.
//!
//! HTTP/1.1 only, on purpose (ALPN offers `http/1.1` alone): hyper's pool keeps one HTTP/2
//! connection per host and never opens a second when the server's
//! `SETTINGS_MAX_CONCURRENT_STREAMS` is reached (hyperium/hyper#3623), so past that many
//! open streams — long SSE streams stay open for minutes — every new request would wait
//! for one to end, then time out. One connection per request in flight (pooled and reused)
//! is what the official SDKs do too.
//!
//! Redirects are never followed (hyper's client has no redirect logic, and a 3xx is turned
//! into a 502 by the pipeline), so the upstream credential cannot be sent to another host.

use crate::reject::Rejection;
use crate::route::Route;
use airlock_config::{Secret, UpstreamConfig};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamSetupError {
    #[error("no TLS root certificates could be loaded for the https upstream: {0}")]
    Roots(std::io::Error),
    #[error("TLS setup failed: {0}")]
    Tls(#[from] rustls::Error),
    #[error("{0}")]
    Redis(String),
}

pub struct Upstream {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    base: Uri,
    api_key: Secret,
    header_timeout: Duration,
    max_connect_attempts: u32,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream").field("base", &self.base).finish_non_exhaustive()
    }
}

impl Upstream {
    pub fn new(config: &UpstreamConfig, api_key: Secret) -> Result<Upstream, UpstreamSetupError> {
        let https = config.url.scheme_str() == Some("https");
        let connector = connector(config.connect_timeout, https)?;
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .retry_canceled_requests(true)
            .build(connector);
        Ok(Upstream {
            client,
            base: config.url.clone(),
            api_key,
            header_timeout: config.header_timeout,
            max_connect_attempts: config.max_connect_attempts.max(1),
        })
    }

    fn uri(&self, route: &Route, query: Option<&str>) -> Result<Uri, Rejection> {
        let base_path = self.base.path().trim_end_matches('/');
        let mut path_and_query = format!("{base_path}{}", route.upstream_path());
        if let Some(q) = query {
            path_and_query.push('?');
            path_and_query.push_str(q);
        }
        let mut parts = self.base.clone().into_parts();
        parts.path_and_query = Some(
            path_and_query
                .parse()
                .map_err(|_| Rejection::bad_request("invalid query string", "bad_query"))?,
        );
        Uri::from_parts(parts).map_err(|_| Rejection::internal("upstream_uri"))
    }

    /// Send a request and wait for the response head. Returns the response and the number of
    /// attempts made.
    pub async fn send(
        &self,
        method: Method,
        route: &Route,
        query: Option<&str>,
        client_headers: &HeaderMap,
        body: Bytes,
    ) -> Result<(Response<Incoming>, u32), Rejection> {
        let uri = self.uri(route, query)?;
        let headers = crate::headers::upstream_request_headers(client_headers, &self.api_key);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = Request::new(Full::new(body.clone()));
            *request.method_mut() = method.clone();
            *request.uri_mut() = uri.clone();
            *request.headers_mut() = headers.clone();
            let result =
                tokio::time::timeout(self.header_timeout, self.client.request(request)).await;
            match result {
                Ok(Ok(response)) => return Ok((response, attempt)),
                // A connect error means no byte of this request left the gateway: safe to retry.
                Ok(Err(e)) if e.is_connect() && attempt < self.max_connect_attempts => {
                    tracing::debug!(target: "airlock::upstream", error = %e, attempt, "connect failed, retrying");
                    tokio::time::sleep(Duration::from_millis(50 << attempt.min(4))).await;
                }
                Ok(Err(e)) if e.is_connect() => {
                    tracing::warn!(target: "airlock::upstream", error = %e, "upstream unreachable");
                    return Err(Rejection::upstream(
                        StatusCode::BAD_GATEWAY,
                        "upstream unreachable",
                        "upstream_connect",
                    ));
                }
                Ok(Err(e)) => {
                    tracing::warn!(target: "airlock::upstream", error = %e, "upstream request failed");
                    return Err(Rejection::upstream(
                        StatusCode::BAD_GATEWAY,
                        "upstream connection failed",
                        "upstream_error",
                    ));
                }
                Err(_) => {
                    return Err(Rejection::upstream(
                        StatusCode::GATEWAY_TIMEOUT,
                        "upstream did not respond in time",
                        "upstream_timeout",
                    ));
                }
            }
        }
    }
}

/// The TLS-capable connector shared by every outbound client (upstream, IdP): rustls with the
/// ring provider and the system's roots. When no roots can be loaded, plain-http targets (the
/// mock, a sidecar, a loopback IdP in tests) still work; https ones fail at setup.
pub(crate) fn connector(
    connect_timeout: Duration,
    need_roots: bool,
) -> Result<HttpsConnector<HttpConnector>, UpstreamSetupError> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let builder = match hyper_rustls::HttpsConnectorBuilder::new().with_native_roots() {
        Ok(b) => b,
        Err(_) if !need_roots => {
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(empty_tls_config()?)
        }
        Err(e) => return Err(UpstreamSetupError::Roots(e)),
    };
    Ok(builder.https_or_http().enable_http1().wrap_connector(http))
}

fn empty_tls_config() -> Result<rustls::ClientConfig, rustls::Error> {
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth())
}
