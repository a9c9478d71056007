//! Header hygiene in both directions.
//!
//! Towards the upstream: hop-by-hop headers (and every header named in `Connection`) are
//! dropped, the client's credentials and forwarding headers are dropped, names with `_` are
//! dropped, and only then are the gateway's own headers set — so no client header can remove
//! or replace the upstream credential.
//! Towards the client: hop-by-hop headers, framing and cookies are dropped; everything else
//! the upstream sends (`request-id`, `anthropic-ratelimit-*`, `retry-after`, ...) passes.

use airlock_config::Secret;
use http::{HeaderMap, HeaderName, HeaderValue, header};

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Client headers never forwarded upstream, beyond hop-by-hop ones.
const CLIENT_ONLY: &[&str] = &[
    "host",
    "content-length",
    "authorization",
    "x-api-key",
    "cookie",
    "accept-encoding",
    "expect",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-real-ip",
    "via",
];

/// Upstream headers never passed back to the client, beyond hop-by-hop ones.
const UPSTREAM_ONLY: &[&str] = &["content-length", "content-encoding", "set-cookie", "alt-svc"];

fn connection_listed(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

fn copy_filtered(from: &HeaderMap, drop: &[&str]) -> HeaderMap {
    let listed = connection_listed(from);
    let mut out = HeaderMap::with_capacity(from.len());
    for (name, value) in from {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n) || drop.contains(&n) || listed.iter().any(|l| l == n) {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

/// The headers sent upstream for a client request.
pub fn upstream_request_headers(client: &HeaderMap, api_key: &Secret) -> HeaderMap {
    let mut out = copy_filtered(client, CLIENT_ONLY);
    out.retain_names(|n| !n.as_str().contains('_') && !n.as_str().starts_with("x-airlock-"));
    // Set after filtering: the credential cannot be stripped or overridden by the client.
    if let Ok(mut key) = HeaderValue::from_str(api_key.expose()) {
        key.set_sensitive(true);
        out.insert(HeaderName::from_static("x-api-key"), key);
    }
    // Identity encoding, so every response body can be inspected as it arrives.
    out.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    out
}

/// The headers returned to the client for an upstream response.
pub fn client_response_headers(upstream: &HeaderMap) -> HeaderMap {
    copy_filtered(upstream, UPSTREAM_ONLY)
}

/// `HeaderMap::retain` exists only for values; names are filtered by rebuilding.
trait RetainNames {
    fn retain_names(&mut self, keep: impl Fn(&HeaderName) -> bool);
}

impl RetainNames for HeaderMap {
    fn retain_names(&mut self, keep: impl Fn(&HeaderName) -> bool) {
        let doomed: Vec<HeaderName> = self.keys().filter(|n| !keep(n)).cloned().collect();
        for n in doomed {
            self.remove(&n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    #[test]
    fn request_side() {
        let client = map(&[
            ("connection", "close, x-api-key, anthropic-beta, x-custom"),
            ("x-custom", "1"),
            ("x-api-key", "client-token"),
            ("authorization", "Bearer client-token"),
            ("keep-alive", "5"),
            ("proxy-authorization", "x"),
            ("upgrade", "websocket"),
            ("te", "trailers"),
            ("x-forwarded-for", "1.2.3.4"),
            ("x_api_key", "smuggled"),
            ("anthropic-version", "2023-06-01"),
            ("anthropic-beta", "a,b"),
            ("user-agent", "claude-cli/2"),
            ("accept-encoding", "gzip, br"),
            ("content-type", "application/json"),
            ("cookie", "s=1"),
            ("x-stainless-retry-count", "0"),
        ]);
        let out = upstream_request_headers(&client, &Secret::new("sk-upstream"));
        let mut names: Vec<&str> = out.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "accept-encoding",
                "anthropic-version",
                "content-type",
                "user-agent",
                "x-api-key",
                "x-stainless-retry-count"
            ]
        );
        assert_eq!(out["x-api-key"], "sk-upstream");
        assert_eq!(out["accept-encoding"], "identity");
        assert_eq!(out.get_all("x-api-key").iter().count(), 1);
    }

    #[test]
    fn response_side() {
        let upstream = map(&[
            ("request-id", "req_1"),
            ("anthropic-ratelimit-requests-remaining", "10"),
            ("retry-after", "2"),
            ("content-type", "text/event-stream; charset=utf-8"),
            ("content-length", "10"),
            ("transfer-encoding", "chunked"),
            ("connection", "keep-alive"),
            ("set-cookie", "cf=1"),
        ]);
        let out = client_response_headers(&upstream);
        let mut names: Vec<&str> = out.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            ["anthropic-ratelimit-requests-remaining", "content-type", "request-id", "retry-after"]
        );
    }
}
