//! Every way a request can end other than a relayed upstream response, and the one function
//! ([`Rejection::into_response`]) that turns each into an HTTP answer in the Anthropic error
//! envelope.
//!
//! Expected outcomes (unauthenticated, too large, unknown path) and failures (upstream down,
//! upstream timed out) are both a [`Rejection`]: a status, an error type, a public message,
//! and a [`Fault`] saying who was at fault. The public message never carries internal detail;
//! the internal reason goes to the request log only.

use crate::body::{ProxyBody, full};
use airlock_wire::ErrorType;
use http::{HeaderName, HeaderValue, Method, Response, StatusCode, header};

/// Who caused the outcome: decides logging level and whether a retry can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Client,
    Upstream,
    Internal,
}

#[derive(Debug, Clone)]
pub struct Rejection {
    pub status: StatusCode,
    pub kind: ErrorType,
    pub message: String,
    pub fault: Fault,
    /// A short machine-readable reason for logs and the audit record (`upstream_timeout`).
    pub reason: &'static str,
    /// `x-should-retry: false` for outcomes a retry cannot fix (Claude Code's contract).
    pub no_retry: bool,
    /// More headers for the answer (`retry-after`, a limit's `airlock-ratelimit-*`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub allow: Option<Method>,
    /// Close the connection after answering: the request's framing cannot be trusted, so
    /// nothing more is read from this connection (no desync, no smuggled second request).
    pub close: bool,
}

impl Rejection {
    pub fn new(
        kind: ErrorType,
        message: impl Into<String>,
        fault: Fault,
        reason: &'static str,
    ) -> Rejection {
        Rejection {
            status: StatusCode::from_u16(kind.default_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            kind,
            message: message.into(),
            fault,
            reason,
            no_retry: false,
            headers: Vec::new(),
            allow: None,
            close: false,
        }
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Rejection {
        self.headers.push((header::RETRY_AFTER, HeaderValue::from(seconds)));
        self
    }

    pub fn with_status(mut self, status: StatusCode) -> Rejection {
        self.status = status;
        self
    }

    /// Replace the machine-readable reason (the public message stays as it is).
    pub fn with_reason(mut self, reason: &'static str) -> Rejection {
        self.reason = reason;
        self
    }

    /// The policy refused the request (403 by a rule, 400 outside the caller's allowance) or
    /// a tool call the model made. A retry cannot help.
    pub fn policy(r: &airlock_policy::Reject, reason: &'static str) -> Rejection {
        let kind = match r.kind {
            airlock_policy::RejectKind::InvalidRequest => ErrorType::InvalidRequest,
            airlock_policy::RejectKind::Permission => ErrorType::Permission,
        };
        let mut out = Rejection::new(kind, r.message.clone(), Fault::Client, reason);
        out.no_retry = true;
        out
    }

    pub fn unauthenticated(message: impl Into<String>) -> Rejection {
        let mut r =
            Rejection::new(ErrorType::Authentication, message, Fault::Client, "unauthenticated");
        r.no_retry = true;
        r
    }

    pub fn not_found(_path: &str) -> Rejection {
        // The path is not echoed: it is client-controlled text.
        Rejection::new(
            ErrorType::NotFound,
            "not found: Airlock serves the Anthropic Messages API under /v1/",
            Fault::Client,
            "not_found",
        )
    }

    pub fn not_supported(path: &str) -> Rejection {
        let mut r = Rejection::new(
            ErrorType::NotSupported,
            format!("{} is not offered by this gateway", endpoint_name(path)),
            Fault::Client,
            "not_supported",
        );
        r.no_retry = true;
        r
    }

    pub fn method_not_allowed(method: &Method, allowed: Method) -> Rejection {
        let mut r = Rejection::new(
            ErrorType::InvalidRequest,
            format!("method {method} is not allowed here; use {allowed}"),
            Fault::Client,
            "method_not_allowed",
        )
        .with_status(StatusCode::METHOD_NOT_ALLOWED);
        r.allow = Some(allowed);
        r
    }

    pub fn bad_request(message: impl Into<String>, reason: &'static str) -> Rejection {
        Rejection::new(ErrorType::InvalidRequest, message, Fault::Client, reason)
    }

    pub fn too_large(limit: u64) -> Rejection {
        Rejection::new(
            ErrorType::RequestTooLarge,
            format!("request body exceeds the gateway's limit of {limit} bytes"),
            Fault::Client,
            "body_too_large",
        )
    }

    pub fn upstream(
        status: StatusCode,
        message: impl Into<String>,
        reason: &'static str,
    ) -> Rejection {
        let kind =
            if status == StatusCode::GATEWAY_TIMEOUT { ErrorType::Timeout } else { ErrorType::Api };
        Rejection::new(kind, message, Fault::Upstream, reason).with_status(status)
    }

    pub fn internal(reason: &'static str) -> Rejection {
        Rejection::new(ErrorType::Api, "internal gateway error", Fault::Internal, reason)
    }

    /// The single place a rejection becomes an HTTP response.
    pub fn into_response(self, request_id: &str) -> Response<ProxyBody> {
        let body = airlock_wire::envelope(self.kind, &self.message, request_id);
        let mut response = Response::new(full(body));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Ok(v) = HeaderValue::from_str(request_id) {
            headers.insert("request-id", v);
        }
        if self.kind == ErrorType::Authentication {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"airlock\", error=\"invalid_token\""),
            );
        }
        if self.no_retry {
            headers.insert("x-should-retry", HeaderValue::from_static("false"));
        }
        for (name, v) in self.headers {
            headers.insert(name, v);
        }
        if let Some(v) = self.allow.and_then(|m| HeaderValue::from_str(m.as_str()).ok()) {
            headers.insert(header::ALLOW, v);
        }
        if self.close {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

fn endpoint_name(path: &str) -> String {
    // Echo only a short, plain rendering of the endpoint.
    let clean: String = path
        .chars()
        .take(64)
        .filter(|c| c.is_ascii_alphanumeric() || "/_-.".contains(*c))
        .collect();
    format!("endpoint {clean}")
}
