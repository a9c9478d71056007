//! The admin plane: its own listener, never the data plane's. Today it serves health
//! (`/healthz`: the process is up) and readiness (`/readyz`: the data plane is accepting and
//! not shutting down). The admin API, web UI and metrics join it in later issues.

use crate::body::{ProxyBody, full};
use crate::edge::Handler;
use crate::reject::Rejection;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Default)]
pub struct Admin {
    pub ready: AtomicBool,
}

impl Handler for Admin {
    async fn call(
        self: Arc<Self>,
        req: Request<Incoming>,
        _peer: SocketAddr,
    ) -> Response<ProxyBody> {
        let (status, text) = match (req.method(), req.uri().path()) {
            (&Method::GET, "/healthz") => (StatusCode::OK, "ok\n"),
            (&Method::GET, "/readyz") if self.ready.load(Ordering::Acquire) => {
                (StatusCode::OK, "ready\n")
            }
            (&Method::GET, "/readyz") => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
            (_, path) => return Rejection::not_found(path).into_response("admin"),
        };
        let mut r = Response::new(full(Bytes::from_static(text.as_bytes())));
        *r.status_mut() = status;
        r.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain"));
        r
    }
}
