//! The upstream client: rustls (ring) for TLS, a connect timeout, a time-to-headers timeout,
//! and retries only when no byte was sent.
//!
//! Two transports, chosen by `upstream.http2` (`Http2`):
//!
//! - HTTP/1.1 (`false`, and `auto` over `http://`): hyper's pooled client, one connection per
//!   request in flight (pooled and reused), as the official SDKs do. ALPN offers `http/1.1`.
//! - HTTP/2 ([`H2Pool`]; `true`, and `auto` over `https://` while the server picks `h2`):
//!   requests share connections, at most `http2_max_streams` on each and never more than the
//!   server's `SETTINGS_MAX_CONCURRENT_STREAMS`; past that a new connection is opened.
//!   (hyper's own pool keeps one HTTP/2 connection per host and never opens a second when the
//!   server's stream limit is reached — hyperium/hyper#3623 — so past that many open streams,
//!   and SSE streams stay open for minutes, every new request would wait; that is why it is
//!   not used.) Each open stream then costs a few KB instead of an HTTP/1.1 connection's
//!   buffers (docs/benchmarks.md). With `true` the server must agree to `h2` by ALPN over TLS
//!   (over `http://` it is spoken with prior knowledge); with `auto` both are offered, and the
//!   first connection on which the server picks HTTP/1.1 switches the gateway to HTTP/1.1 for
//!   good (the request that found out goes over HTTP/1.1; nothing of it had been sent).
//!
//! Redirects are never followed (hyper's client has no redirect logic, and a 3xx is turned
//! into a 502 by the pipeline), so the upstream credential cannot be sent to another host.

use crate::reject::Rejection;
use crate::route::Route;
use airlock_config::{Http2, Secret, UpstreamConfig};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

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
    transport: Transport,
    base: Uri,
    api_key: Secret,
    header_timeout: Duration,
    max_connect_attempts: u32,
}

type Http1Client = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

enum Transport {
    Http1(Http1Client),
    Http2(H2Pool),
    Auto(Box<Auto>),
}

/// `upstream.http2: auto` over TLS: HTTP/2 until a connection's ALPN picks HTTP/1.1, then
/// HTTP/1.1 from that request on (`fell_back`).
struct Auto {
    h2: H2Pool,
    h1: Http1Client,
    fell_back: AtomicBool,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream").field("base", &self.base).finish_non_exhaustive()
    }
}

impl Upstream {
    pub fn new(config: &UpstreamConfig, api_key: Secret) -> Result<Upstream, UpstreamSetupError> {
        let https = config.url.scheme_str() == Some("https");
        let h2_pool = |alpn| -> Result<H2Pool, UpstreamSetupError> {
            Ok(H2Pool {
                connector: connector(config.connect_timeout, https, alpn)?,
                target: config.url.clone(),
                https,
                max_streams: config.http2_max_streams as usize,
                connect_timeout: config.connect_timeout,
                conns: Mutex::new(Vec::new()),
                connecting: tokio::sync::Mutex::new(None),
            })
        };
        let h1_client = || -> Result<Http1Client, UpstreamSetupError> {
            let connector = connector(config.connect_timeout, https, Alpn::Http1)?;
            Ok(Client::builder(TokioExecutor::new())
                .timer(TokioTimer::new())
                .pool_timer(TokioTimer::new())
                .pool_idle_timeout(Duration::from_secs(90))
                .pool_max_idle_per_host(256)
                .retry_canceled_requests(true)
                .build(connector))
        };
        let transport = match config.http2 {
            Http2::On => Transport::Http2(h2_pool(Alpn::H2)?),
            // Over plain http nothing is negotiated, and prior knowledge would break an
            // HTTP/1.1 server.
            Http2::Auto if https => Transport::Auto(Box::new(Auto {
                h2: h2_pool(Alpn::Both)?,
                h1: h1_client()?,
                fell_back: AtomicBool::new(false),
            })),
            Http2::Auto | Http2::Off => Transport::Http1(h1_client()?),
        };
        Ok(Upstream {
            transport,
            base: config.url.clone(),
            api_key,
            header_timeout: config.header_timeout,
            max_connect_attempts: config.max_connect_attempts.max(1),
        })
    }

    /// HTTP/2 connections open to the upstream now (`None` on HTTP/1.1).
    pub fn http2_connections(&self) -> Option<usize> {
        match &self.transport {
            Transport::Http1(_) => None,
            Transport::Http2(pool) => Some(pool.open()),
            Transport::Auto(auto) => Some(auto.h2.open()),
        }
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
    ) -> Result<(Response<UpstreamBody>, u32), Rejection> {
        let uri = self.uri(route, query)?;
        let headers = crate::headers::upstream_request_headers(client_headers, &self.api_key);
        let request = || {
            let mut request = Request::new(Full::new(body.clone()));
            *request.method_mut() = method.clone();
            *request.uri_mut() = uri.clone();
            *request.headers_mut() = headers.clone();
            request
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sent = match &self.transport {
                Transport::Http1(client) => {
                    tokio::time::timeout(self.header_timeout, send_http1(client, request())).await
                }
                Transport::Http2(pool) => {
                    tokio::time::timeout(self.header_timeout, pool.send(request())).await
                }
                Transport::Auto(auto) => {
                    let Auto { h2, h1, fell_back } = &**auto;
                    let call = async {
                        if !fell_back.load(Ordering::Relaxed) {
                            match h2.send(request()).await {
                                Err(Failure::NotH2) => {
                                    if !fell_back.swap(true, Ordering::Relaxed) {
                                        tracing::warn!(target: "airlock::upstream", "the upstream chose HTTP/1.1 by ALPN: using HTTP/1.1 from now on");
                                    }
                                }
                                other => return other,
                            }
                        }
                        send_http1(h1, request()).await
                    };
                    tokio::time::timeout(self.header_timeout, call).await
                }
            };
            match sent {
                Ok(Ok(response)) => return Ok((response, attempt)),
                Ok(Err(Failure::NotH2)) => {
                    tracing::warn!(target: "airlock::upstream", "the upstream did not agree to HTTP/2 (ALPN); set upstream.http2: auto or false");
                    return Err(Rejection::upstream(
                        StatusCode::BAD_GATEWAY,
                        "upstream unreachable",
                        "upstream_connect",
                    ));
                }
                // No byte of this request left the gateway: safe to retry.
                Ok(Err(Failure::NotSent(e))) if attempt < self.max_connect_attempts => {
                    tracing::debug!(target: "airlock::upstream", error = %e, attempt, "connect failed, retrying");
                    tokio::time::sleep(Duration::from_millis(50 << attempt.min(4))).await;
                }
                Ok(Err(Failure::NotSent(e))) => {
                    tracing::warn!(target: "airlock::upstream", error = %e, "upstream unreachable");
                    return Err(Rejection::upstream(
                        StatusCode::BAD_GATEWAY,
                        "upstream unreachable",
                        "upstream_connect",
                    ));
                }
                Ok(Err(Failure::Failed(e))) => {
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

async fn send_http1(
    client: &Http1Client,
    request: Request<Full<Bytes>>,
) -> Result<Response<UpstreamBody>, Failure> {
    match client.request(request).await {
        Ok(response) => Ok(response.map(|inner| UpstreamBody { inner, lease: None })),
        Err(e) if e.is_connect() => Err(Failure::NotSent(e.into())),
        Err(e) => Err(Failure::Failed(e.into())),
    }
}

/// Why an upstream call failed: before any byte was sent (retryable), or after; or, on
/// HTTP/2 over TLS, because the server picked another protocol by ALPN (nothing was sent).
enum Failure {
    NotSent(BoxError),
    Failed(BoxError),
    NotH2,
}

/// Why no HTTP/2 connection could be had; kept for the requests that waited on the attempt.
#[derive(Debug, Clone)]
enum ConnectError {
    NotH2,
    Failed(String),
}

/// An upstream response body. On HTTP/2 it holds its stream's place on its connection until
/// it is dropped.
pub struct UpstreamBody {
    inner: Incoming,
    lease: Option<Lease>,
}

impl std::fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamBody").field("http2", &self.lease.is_some()).finish()
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// HTTP/2 connections to the upstream, each carrying at most `max_streams` requests at once
/// (or fewer, if the server allows fewer). A request takes a place on the busiest connection
/// with room, so connections fill before new ones open and idle ones drain; a new connection
/// is opened only when none has room, one at a time (TCP, TLS and the HTTP/2 handshake within
/// `connect_timeout`), and the requests that waited on an attempt that failed share its
/// failure instead of each trying again in turn. At most one idle connection is kept.
struct H2Pool {
    connector: HttpsConnector<HttpConnector>,
    target: Uri,
    https: bool,
    max_streams: usize,
    connect_timeout: Duration,
    conns: Mutex<Vec<Arc<H2Conn>>>,
    /// Held while connecting; the last failed attempt (when it ended, and why).
    connecting: tokio::sync::Mutex<Option<(Instant, ConnectError)>>,
}

struct H2Conn {
    send: http2::SendRequest<Full<Bytes>>,
    /// Requests on this connection whose response body is still alive.
    streams: AtomicUsize,
    /// `min(max_streams, the server's SETTINGS_MAX_CONCURRENT_STREAMS)`, kept current by the
    /// connection's task.
    limit: Arc<AtomicUsize>,
}

/// A request's place on an HTTP/2 connection, given back when dropped.
struct Lease(Arc<H2Conn>);

impl Drop for Lease {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

/// HTTP/2 flow-control window per stream: how much of a response the gateway takes in ahead
/// of its client. Small enough to bound what a client that stops reading can pin (until
/// `write_stall_timeout`); the connection window is this times the streams on it, so one
/// stalled stream never starves the others.
const H2_STREAM_WINDOW: u32 = 256 * 1024;

impl H2Pool {
    fn open(&self) -> usize {
        let conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.iter().filter(|c| !c.send.is_closed()).count()
    }

    /// A place on a connection with room, if one has it.
    fn take(&self) -> Option<Lease> {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.retain(|c| !c.send.is_closed());
        // Keep one idle connection; close the rest (dropping the last handle closes it).
        let mut idle = 0;
        conns.retain(|c| {
            if c.streams.load(Ordering::Relaxed) > 0 {
                return true;
            }
            idle += 1;
            idle == 1
        });
        let conn = conns
            .iter()
            .filter(|c| c.streams.load(Ordering::Relaxed) < c.limit.load(Ordering::Relaxed))
            .max_by_key(|c| c.streams.load(Ordering::Relaxed))?;
        // Taken under the lock, so two requests never take the last place.
        conn.streams.fetch_add(1, Ordering::Relaxed);
        Some(Lease(conn.clone()))
    }

    async fn lease(&self) -> Result<Lease, ConnectError> {
        if let Some(lease) = self.take() {
            return Ok(lease);
        }
        let asked = Instant::now();
        let mut last_failure = self.connecting.lock().await;
        if let Some(lease) = self.take() {
            return Ok(lease);
        }
        if let Some((at, why)) = &*last_failure
            && *at >= asked
        {
            return Err(why.clone());
        }
        let connected = match tokio::time::timeout(self.connect_timeout, self.connect()).await {
            Ok(connected) => connected,
            Err(_) => Err(ConnectError::Failed(format!(
                "no HTTP/2 connection within {:?}",
                self.connect_timeout
            ))),
        };
        let conn = match connected {
            Ok(conn) => conn,
            Err(e) => {
                *last_failure = Some((Instant::now(), e.clone()));
                return Err(e);
            }
        };
        *last_failure = None;
        conn.streams.fetch_add(1, Ordering::Relaxed);
        self.conns.lock().unwrap_or_else(|e| e.into_inner()).push(conn.clone());
        Ok(Lease(conn))
    }

    async fn connect(&self) -> Result<Arc<H2Conn>, ConnectError> {
        use tower_service::Service;
        let failed = |e: BoxError| ConnectError::Failed(e.to_string());
        let mut connector = self.connector.clone();
        std::future::poll_fn(|cx| connector.poll_ready(cx)).await.map_err(failed)?;
        let io = connector.call(self.target.clone()).await.map_err(failed)?;
        if self.https && !io.connected().is_negotiated_h2() {
            return Err(ConnectError::NotH2);
        }
        let streams = self.max_streams.max(1);
        let (send, mut conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .initial_stream_window_size(H2_STREAM_WINDOW)
            .initial_connection_window_size(
                H2_STREAM_WINDOW.saturating_mul(streams as u32).min(i32::MAX as u32),
            )
            .keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(20))
            .keep_alive_while_idle(true)
            // Until the server's SETTINGS arrive (one round trip), assume our own cap.
            .initial_max_send_streams(streams)
            .handshake(io)
            .await
            .map_err(|e| ConnectError::Failed(e.to_string()))?;
        let limit = Arc::new(AtomicUsize::new(streams));
        let server_limit = limit.clone();
        tokio::spawn(async move {
            let ended = std::future::poll_fn(|cx| {
                let polled = Pin::new(&mut conn).poll(cx);
                server_limit.store(conn.current_max_send_streams().min(streams), Ordering::Relaxed);
                polled
            })
            .await;
            if let Err(e) = ended {
                tracing::debug!(target: "airlock::upstream", error = %e, "HTTP/2 connection ended");
            }
        });
        Ok(Arc::new(H2Conn { send, streams: AtomicUsize::new(0), limit }))
    }

    async fn send(&self, request: Request<Full<Bytes>>) -> Result<Response<UpstreamBody>, Failure> {
        let lease = self.lease().await.map_err(|e| match e {
            ConnectError::NotH2 => Failure::NotH2,
            ConnectError::Failed(why) => Failure::NotSent(why.into()),
        })?;
        let mut send = lease.0.send.clone();
        match send.try_send_request(request).await {
            Ok(response) => Ok(response.map(|inner| UpstreamBody { inner, lease: Some(lease) })),
            // The request never reached the connection (it closed meanwhile): safe to retry.
            Err(e) if e.message().is_some() => Err(Failure::NotSent(e.into_error().into())),
            Err(e) => Err(Failure::Failed(e.into_error().into())),
        }
    }
}

/// What a TLS connection offers by ALPN.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Alpn {
    Http1,
    H2,
    /// `h2` first, then `http/1.1`: the server picks.
    Both,
}

/// The TLS-capable connector shared by every outbound client (upstream, IdP): rustls with the
/// ring provider and the system's roots. When no roots can be loaded, plain-http targets (the
/// mock, a sidecar, a loopback IdP in tests) still work; https ones fail at setup.
pub(crate) fn connector(
    connect_timeout: Duration,
    need_roots: bool,
    alpn: Alpn,
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
    let builder = builder.https_or_http();
    Ok(match alpn {
        Alpn::Http1 => builder.enable_http1().wrap_connector(http),
        Alpn::H2 => builder.enable_http2().wrap_connector(http),
        Alpn::Both => builder.enable_all_versions().wrap_connector(http),
    })
}

fn empty_tls_config() -> Result<rustls::ClientConfig, rustls::Error> {
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth())
}
