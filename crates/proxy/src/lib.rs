//! The Airlock data plane and admin plane: the transport edge ([`edge`]), the request path
//! ([`pipeline`]), the upstream client ([`upstream`]), response relaying ([`body`]), header
//! hygiene ([`headers`]), and the single mapping from outcomes to HTTP errors ([`reject`]).
//!
//! [`run`] takes already-bound listeners and a shutdown future, so tests start the gateway
//! in-process on `127.0.0.1:0`.

pub mod admin;
pub mod audit;
pub mod auth;
pub mod body;
pub mod edge;
pub mod fetch;
pub mod headers;
pub mod idp;
pub mod pipeline;
pub mod record;
pub mod reject;
pub mod revoke;
pub mod route;
pub mod upstream;

use airlock_authn::SessionKeys;
use airlock_config::{Config, Limits, Secret};
use http::{Request, Response};
use hyper::body::Incoming;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use record::{LogSink, Outcome, RecordData, RecordSink};
pub use upstream::{Upstream, UpstreamSetupError};

/// Unix seconds; injectable so tests can move time.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    })
}

/// Request ids: a random per-process prefix and a counter; unique across instances and cheap.
#[derive(Debug)]
pub struct RequestIds {
    prefix: String,
    next: AtomicU64,
}

impl RequestIds {
    pub fn new() -> RequestIds {
        let mut seed = [0u8; 6];
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed);
        RequestIds {
            prefix: seed.iter().map(|b| format!("{b:02x}")).collect(),
            next: AtomicU64::new(1),
        }
    }

    pub fn next(&self) -> String {
        format!("req_airlock_{}{:010}", self.prefix, self.next.fetch_add(1, Ordering::Relaxed))
    }
}

impl Default for RequestIds {
    fn default() -> Self {
        RequestIds::new()
    }
}

/// Deadline for one request to an identity provider (discovery, JWK set).
const IDP_FETCH_DEADLINE: Duration = Duration::from_secs(10);

/// Everything the data plane needs, built once at start.
pub struct Gateway {
    pub keys: Arc<SessionKeys>,
    pub issuers: Arc<idp::Issuers>,
    pub revocations: Arc<revoke::Revocations>,
    pub upstream: Upstream,
    pub limits: Limits,
    pub session_ttl: Duration,
    pub session_max_ttl: Duration,
    /// Groups whose members may use the admin API.
    pub admin_groups: Vec<String>,
    pub upstream_idle_timeout: Duration,
    pub clock: Clock,
    pub sink: Arc<dyn RecordSink>,
    /// The audit log; `None` only in tests that do not exercise it.
    pub audit: Option<audit::Audit>,
    pub request_ids: RequestIds,
    upstream_key: Secret,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").field("upstream", &self.upstream).finish_non_exhaustive()
    }
}

impl Gateway {
    pub fn new(
        config: &Config,
        keys: Arc<SessionKeys>,
        upstream_key: Secret,
        clock: Clock,
        sink: Arc<dyn RecordSink>,
    ) -> Result<Gateway, UpstreamSetupError> {
        let fetcher = Arc::new(fetch::Fetcher::new(IDP_FETCH_DEADLINE)?);
        Ok(Gateway {
            keys,
            issuers: Arc::new(idp::Issuers::new(&config.oidc, fetcher)),
            revocations: Arc::new(revoke::Revocations::default()),
            upstream: Upstream::new(&config.upstream, upstream_key.clone())?,
            limits: config.limits.clone(),
            session_ttl: config.session.ttl,
            session_max_ttl: config.session.max_ttl,
            admin_groups: config.admin_groups.clone(),
            upstream_idle_timeout: config.upstream.idle_timeout,
            clock,
            sink,
            audit: None,
            request_ids: RequestIds::new(),
            upstream_key,
        })
    }

    pub fn with_audit(mut self, audit: audit::Audit) -> Gateway {
        self.audit = Some(audit);
        self
    }

    pub(crate) fn upstream_key_bytes(&self) -> &[u8] {
        self.upstream_key.expose().as_bytes()
    }
}

impl edge::Handler for Gateway {
    async fn call(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<body::ProxyBody> {
        pipeline::handle(&self, req, peer.ip()).await
    }
}

/// Run both planes until `shutdown` resolves; returns when both have drained.
pub async fn run(
    gateway: Arc<Gateway>,
    data: tokio::net::TcpListener,
    admin: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let limits = gateway.limits.clone();
    let admin_state = Arc::new(admin::Admin::new(gateway.clone()));
    let (tx, rx) = tokio::sync::watch::channel(false);
    gateway.issuers.spawn_refreshers(rx.clone());
    let stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let admin_task = {
        let limits = limits.clone();
        let admin_state = admin_state.clone();
        let rx = rx.clone();
        tokio::spawn(async move { edge::serve(admin, admin_state, &limits, stop(rx)).await })
    };
    admin_state.ready.store(true, Ordering::Release);
    let ready = admin_state.clone();
    tokio::spawn(async move {
        shutdown.await;
        // Not ready as soon as shutdown starts, so load balancers stop sending new work.
        ready.ready.store(false, Ordering::Release);
        let _ = tx.send(true);
    });
    if let Some(audit) = gateway.audit.clone() {
        tokio::spawn(revoke::follow_store(
            audit,
            gateway.revocations.clone(),
            gateway.clock.clone(),
            stop(rx.clone()),
        ));
    }
    edge::serve(data, gateway.clone(), &limits, stop(rx)).await;
    let _ = admin_task.await;
    // Every request has ended: commit what is queued and sign a last checkpoint.
    if let Some(audit) = gateway.audit.clone() {
        let _ = tokio::task::spawn_blocking(move || audit.close()).await;
    }
}
