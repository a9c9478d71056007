//! Response bodies: a full (buffered, bounded) body, or a live SSE relay.
//!
//! The relay decodes upstream SSE event by event and re-encodes each event as soon as its
//! frame is complete; events completed by one upstream chunk go out together in one frame,
//! nothing is held longer — except what the response guard holds between decode and encode:
//! the text a pending mask might still cover, and a tool call until its block stops.
//!
//! In `strict` audit mode the frame carrying the terminal event (`message_stop` or `error`) is
//! held until the request's final audit entry commits; if it cannot commit, the client gets
//! an SSE `error` event instead.
//!
//! Invariant: a stream that fails after it started ends with an SSE `error` event, never with
//! a `message_stop` the upstream did not send.
//! Invariant: dropping the relay (client gone) drops the upstream body, which cancels the
//! upstream call (HTTP/1.1: its connection is closed; HTTP/2: its stream is reset), and the
//! record says `client_aborted`.

use crate::audit::Pending;
use crate::record::{Outcome, RequestRecord};
use airlock_policy::ResponseGuard;
use airlock_wire::{Decoder, ErrorType, Usage};
use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

pub type ProxyBody = UnsyncBoxBody<Bytes, Infallible>;

pub fn full(bytes: Bytes) -> ProxyBody {
    http_body_util::Full::new(bytes).map_err(|never| match never {}).boxed_unsync()
}

/// A body fed by a task (a held stream): frames as they are sent, the end when the sender
/// is dropped. Dropping the body (the client went away) closes the channel.
pub fn channel(rx: tokio::sync::mpsc::Receiver<Bytes>) -> ProxyBody {
    ChannelBody(rx).boxed_unsync()
}

struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

/// Relays an upstream SSE body to the client event by event.
pub struct SseRelay {
    upstream: crate::upstream::UpstreamBody,
    decoder: Decoder,
    idle_timeout: Duration,
    idle: Pin<Box<Sleep>>,
    record: Option<RequestRecord>,
    /// `message_stop` or `error` seen: the stream ended the way the protocol ends it.
    terminal_seen: bool,
    /// The upstream sent its own `error` event: the client already has the failure.
    upstream_error: bool,
    done: bool,
    usage: Usage,
    /// Strict mode: the terminal frame, released once `closing` (its audit entry) commits.
    held: Option<Bytes>,
    closing: Option<Pending>,
    /// Masking and tool-call checks between decode and encode.
    guard: Option<ResponseGuard>,
    /// Rules the request matched (the guard's tool-call hits are appended after them).
    request_rules: usize,
}

impl std::fmt::Debug for SseRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseRelay").field("done", &self.done).finish_non_exhaustive()
    }
}

impl SseRelay {
    pub fn new(
        upstream: crate::upstream::UpstreamBody,
        max_event_bytes: usize,
        idle_timeout: Duration,
        record: RequestRecord,
        guard: Option<ResponseGuard>,
    ) -> SseRelay {
        let request_rules = record.data.rules.len();
        SseRelay {
            upstream,
            decoder: Decoder::new(max_event_bytes),
            idle_timeout,
            idle: Box::pin(tokio::time::sleep(idle_timeout)),
            record: Some(record),
            terminal_seen: false,
            upstream_error: false,
            done: false,
            usage: Usage::default(),
            held: None,
            closing: None,
            guard,
            request_rules,
        }
    }

    /// Copy what the guard knows into the record; `transcript` also assembles the response
    /// as received so far (at the end of the stream, however it ends).
    fn sync_guard(&mut self, transcript: bool) {
        if let (Some(guard), Some(r)) = (&self.guard, &mut self.record) {
            r.data.rules.truncate(self.request_rules);
            r.data.rules.extend(guard.hits.iter().map(crate::record::RuleHit::from));
            r.data.masked = guard.masked();
            if transcript {
                r.data.response_body =
                    guard.transcript().and_then(|t| crate::audit::capped_body(t, usize::MAX));
            }
        }
    }

    /// End the stream with an SSE `error` event (unless the upstream already sent its own).
    fn fail(&mut self, kind: ErrorType, message: &str, reason: &'static str) -> Option<Bytes> {
        self.done = true;
        self.sync_guard(true);
        if self.upstream_error {
            if let Some(r) = &mut self.record {
                r.finish(Outcome::StreamFailed, "upstream_error_event");
            }
            return None;
        }
        let request_id = match &mut self.record {
            Some(r) => {
                r.finish(Outcome::StreamFailed, reason);
                r.data.request_id.clone()
            }
            None => String::new(),
        };
        tracing::warn!(target: "airlock::relay", request_id = %request_id, reason, "stream failed");
        Some(airlock_wire::sse_error_event(kind, message, &request_id))
    }

    fn on_chunk(&mut self, chunk: &[u8]) -> Option<Bytes> {
        let events = match self.decoder.push(chunk) {
            Ok(events) => events,
            Err(e) => {
                return self.fail(
                    ErrorType::Api,
                    &format!("upstream sent an invalid event stream: {e}"),
                    "upstream_bad_sse",
                );
            }
        };
        if events.is_empty() {
            return None;
        }
        let mut out = BytesMut::new();
        let mut terminal = false;
        let mut blocked = None;
        for event in &events {
            if let Some(usage) = airlock_wire::usage_of_event(&event.effective_name(), &event.data)
            {
                self.usage.update(usage);
            }
            let released = match &mut self.guard {
                None => vec![event.clone()],
                Some(guard) => match guard.event(event.clone()) {
                    Ok(released) => released,
                    Err(reject) => {
                        blocked = Some(reject);
                        break;
                    }
                },
            };
            for event in &released {
                let name = event.effective_name();
                if name == "message_stop" || name == "error" {
                    terminal = !self.terminal_seen;
                    self.terminal_seen = true;
                    self.upstream_error |= name == "error";
                }
                out.extend_from_slice(&airlock_wire::encode(event));
            }
        }
        self.sync_guard(terminal || blocked.is_some());
        if let Some(reject) = blocked {
            // The call is never released: what came before it goes out, then the error.
            if let Some(r) = &mut self.record {
                r.data.decision = Some("deny");
                r.mark_first_byte();
            }
            let error = self.fail(ErrorType::Permission, &reject.message, "tool_call_blocked");
            out.extend_from_slice(&error.unwrap_or_default());
            return Some(out.freeze());
        }
        let out = out.freeze();
        let Some(r) = &mut self.record else { return Some(out) };
        r.data.events += events.len() as u64;
        (r.data.input_tokens, r.data.output_tokens) = (self.usage.input, self.usage.output);
        if out.is_empty() {
            // Everything in this chunk is held by the guard (a pending mask, a tool call).
            return None;
        }
        r.mark_first_byte();
        if terminal {
            match self.upstream_error {
                true => r.finish(Outcome::StreamFailed, "upstream_error_event"),
                false => r.finish(Outcome::Completed, "completed"),
            }
            if let Some(pending) = r.close_strict() {
                self.held = Some(out);
                self.closing = Some(pending);
                return None;
            }
        }
        Some(out)
    }

    fn on_end(&mut self) -> Option<Bytes> {
        self.sync_guard(true);
        if self.terminal_seen && !self.decoder.has_partial() {
            self.done = true;
            if let Some(r) = &mut self.record {
                match self.upstream_error {
                    true => r.finish(Outcome::StreamFailed, "upstream_error_event"),
                    false => r.finish(Outcome::Completed, "completed"),
                }
            }
            return None;
        }
        self.fail(ErrorType::Api, "upstream stream ended unexpectedly", "upstream_truncated")
    }
}

impl Drop for SseRelay {
    fn drop(&mut self) {
        // A client gone mid-stream: the record still gets what it had received.
        if self.record.as_ref().is_some_and(|r| r.data.response_body.is_none()) {
            self.sync_guard(true);
        }
    }
}

impl Body for SseRelay {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        loop {
            if let Some(closing) = this.closing.as_mut() {
                let committed = ready!(closing.as_mut().poll(cx));
                this.closing = None;
                let held = this.held.take().unwrap_or_default();
                let out = match committed {
                    Ok(()) => held,
                    Err(_) => {
                        let request_id = match &mut this.record {
                            Some(r) => {
                                r.reopen_after_failed_close();
                                r.data.request_id.clone()
                            }
                            None => String::new(),
                        };
                        this.done = true;
                        airlock_wire::sse_error_event(
                            ErrorType::Api,
                            "the response could not be recorded",
                            &request_id,
                        )
                    }
                };
                return Poll::Ready(Some(Ok(Frame::data(out))));
            }
            if this.done {
                // Deliver the record now rather than when hyper drops the body.
                this.record.take();
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.upstream).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    this.idle.as_mut().reset(Instant::now() + this.idle_timeout);
                    let Ok(data) = frame.into_data() else { continue };
                    if let Some(out) = this.on_chunk(&data) {
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    tracing::debug!(target: "airlock::relay", error = %e, "upstream body error");
                    let out = this.fail(
                        ErrorType::Api,
                        "upstream connection failed mid-stream",
                        "upstream_reset",
                    );
                    return Poll::Ready(out.map(|b| Ok(Frame::data(b))));
                }
                Poll::Ready(None) => {
                    let out = this.on_end();
                    if let Some(b) = out {
                        return Poll::Ready(Some(Ok(Frame::data(b))));
                    }
                }
                Poll::Pending => {
                    ready!(this.idle.as_mut().poll(cx));
                    let out =
                        this.fail(ErrorType::Timeout, "upstream stream stalled", "upstream_idle");
                    return Poll::Ready(out.map(|b| Ok(Frame::data(b))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.record.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
