//! The transport edge: our own accept loop instead of `axum::serve`, because a security
//! boundary needs bounds that helper sets none of (research/security-tests.md §0):
//! a connection cap, a header-read timeout (hyper enforces it only with a timer set; it also
//! runs while a keep-alive connection waits for its next request, so it is the idle timeout
//! too), header count and size limits, a write-stall timeout on the socket, and graceful
//! shutdown with a deadline.
//!
//! HTTP/1.1 only on the client side: clients reach Airlock over loopback or behind a TLS
//! terminator, and one protocol is a smaller surface (no h2 flood classes).

use crate::body::ProxyBody;
use airlock_config::Limits;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};

/// hyper's read-buffer cap: a backstop for the head; the pipeline enforces the exact header
/// limit (`pipeline::MAX_HEADER_BYTES`, 431 in the envelope).
const MAX_HEAD_BYTES: usize = 128 * 1024;

/// Set on a connection whose client stopped reading (see [`StallGuard`]); every request
/// carries its connection's flag as an extension, so its record can say why it ended.
#[derive(Debug, Clone, Default)]
pub struct Stalled(pub Arc<AtomicBool>);

impl Stalled {
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Anything that answers requests on a listener.
pub trait Handler: Send + Sync + 'static {
    fn call(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> impl Future<Output = Response<ProxyBody>> + Send;
}

/// Serve `listener` until `shutdown` resolves, then stop accepting and give open connections
/// up to `limits.shutdown_grace` to finish.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    limits: &Limits,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections as usize));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // Take a connection slot before accepting: past the cap, clients wait in the backlog.
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(target: "airlock::edge", error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let stalled = Stalled::default();
        let io = StallGuard::new(stream, limits.write_stall_timeout, stalled.clone());
        let service = service_fn(move |mut req: Request<Incoming>| {
            let handler = handler.clone();
            req.extensions_mut().insert(stalled.clone());
            // Boxed: the request's future is large, and freed once the response starts
            // (a stream then costs only the connection and its relay, not the whole path).
            let call = Box::pin(async move { handler.call(req, peer).await });
            async move { Ok::<_, Infallible>(call.await) }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_headers(limits.max_headers as usize)
            .max_buf_size(MAX_HEAD_BYTES)
            .keep_alive(true);
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(io), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(target: "airlock::edge", error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!(target: "airlock::edge", "shutdown grace period over; closing remaining connections");
        }
    }
}

/// The client socket with a write-stall timer. hyper writes a response only as fast as the
/// client reads it (back-pressure reaches the upstream socket through the relay); a client
/// that stops reading altogether would hold its connection, its upstream call and its
/// buffers forever, so a write that makes no progress for `limit` fails the connection, and
/// `stalled` tells the request's record why it ended.
struct StallGuard {
    inner: TcpStream,
    limit: Duration,
    timer: Pin<Box<Sleep>>,
    armed: bool,
    stalled: Stalled,
}

impl StallGuard {
    fn new(inner: TcpStream, limit: Duration, stalled: Stalled) -> StallGuard {
        StallGuard {
            inner,
            limit,
            timer: Box::pin(tokio::time::sleep(limit)),
            armed: false,
            stalled,
        }
    }

    /// A write returned `r`: arm the timer on the first `Pending`, disarm on progress.
    fn watch<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if r.is_ready() {
            self.armed = false;
            return r;
        }
        if !self.armed {
            self.armed = true;
            self.timer.as_mut().reset(Instant::now() + self.limit);
        }
        ready!(self.timer.as_mut().poll(cx));
        self.stalled.0.store(true, Ordering::Relaxed);
        Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "client stopped reading")))
    }
}

impl AsyncRead for StallGuard {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for StallGuard {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
