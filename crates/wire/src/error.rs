//! The Anthropic error envelope: `{"type":"error","error":{"type":..,"message":..},"request_id":..}`.
//!
//! Every error Airlock produces itself goes through [`envelope`] (JSON responses) or
//! [`sse_error_event`] (a stream that fails after it started), so clients see the same shapes
//! they see from the real API.

use bytes::Bytes;
use serde_json::json;

/// The `error.type` values Airlock emits, with the HTTP status each one goes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    InvalidRequest,
    Authentication,
    Billing,
    Permission,
    NotFound,
    RequestTooLarge,
    RateLimit,
    Api,
    Overloaded,
    Timeout,
    /// Claude Code's gateway contract: an endpoint the gateway does not offer.
    NotSupported,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::InvalidRequest => "invalid_request_error",
            ErrorType::Authentication => "authentication_error",
            ErrorType::Billing => "billing_error",
            ErrorType::Permission => "permission_error",
            ErrorType::NotFound => "not_found_error",
            ErrorType::RequestTooLarge => "request_too_large",
            ErrorType::RateLimit => "rate_limit_error",
            ErrorType::Api => "api_error",
            ErrorType::Overloaded => "overloaded_error",
            ErrorType::Timeout => "timeout_error",
            ErrorType::NotSupported => "not_supported",
        }
    }

    /// The status the real API (or Claude Code's gateway contract) pairs with this type.
    /// Callers may still choose another status (e.g. 405 with `invalid_request_error`).
    pub fn default_status(self) -> u16 {
        match self {
            ErrorType::InvalidRequest => 400,
            ErrorType::Authentication => 401,
            ErrorType::Billing => 429,
            ErrorType::Permission => 403,
            ErrorType::NotFound => 404,
            ErrorType::RequestTooLarge => 413,
            ErrorType::RateLimit => 429,
            ErrorType::Api => 500,
            ErrorType::Overloaded => 529,
            ErrorType::Timeout => 504,
            ErrorType::NotSupported => 501,
        }
    }
}

/// The JSON body of an error response.
pub fn envelope(kind: ErrorType, message: &str, request_id: &str) -> Bytes {
    let body = json!({
        "type": "error",
        "error": { "type": kind.as_str(), "message": message },
        "request_id": request_id,
    });
    Bytes::from(body.to_string())
}

/// A complete SSE `error` frame, shaped like the one the real API sends mid-stream.
pub fn sse_error_event(kind: ErrorType, message: &str, request_id: &str) -> Bytes {
    let data = json!({
        "type": "error",
        "error": { "type": kind.as_str(), "message": message },
        "request_id": request_id,
    });
    Bytes::from(format!("event: error\ndata: {data}\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_shape() {
        let body = envelope(ErrorType::Permission, "denied by rule r1", "req_1");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "permission_error");
        assert_eq!(v["error"]["message"], "denied by rule r1");
        assert_eq!(v["request_id"], "req_1");
    }

    #[test]
    fn sse_error_is_a_named_frame() {
        let frame = sse_error_event(ErrorType::Overloaded, "Overloaded", "req_2");
        let text = std::str::from_utf8(&frame).unwrap();
        assert!(text.starts_with("event: error\ndata: {"));
        assert!(text.ends_with("\n\n"));
        let mut d = crate::Decoder::new(1 << 20);
        let events = d.push(&frame).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].name.as_deref(), Some("error"));
    }

    #[test]
    fn statuses() {
        let cases = [
            (ErrorType::InvalidRequest, 400),
            (ErrorType::Authentication, 401),
            (ErrorType::Permission, 403),
            (ErrorType::NotFound, 404),
            (ErrorType::RequestTooLarge, 413),
            (ErrorType::RateLimit, 429),
            (ErrorType::Billing, 429),
            (ErrorType::Api, 500),
            (ErrorType::NotSupported, 501),
            (ErrorType::Timeout, 504),
            (ErrorType::Overloaded, 529),
        ];
        for (kind, status) in cases {
            assert_eq!(kind.default_status(), status, "{kind:?}");
        }
    }
}
