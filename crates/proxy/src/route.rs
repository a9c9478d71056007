//! Which endpoint a request is for. Only the documented Messages API paths are forwarded
//! (an allow-list): the upstream path is always rebuilt from the matched [`Route`], never
//! copied from the client, so no client path can reach another upstream API.

use crate::reject::Rejection;
use http::Method;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Messages,
    CountTokens,
    ModelsList,
    ModelGet(String),
}

impl Route {
    /// The canonical path sent upstream (appended to the upstream base path).
    pub fn upstream_path(&self) -> String {
        match self {
            Route::Messages => "/v1/messages".to_owned(),
            Route::CountTokens => "/v1/messages/count_tokens".to_owned(),
            Route::ModelsList => "/v1/models".to_owned(),
            Route::ModelGet(id) => format!("/v1/models/{id}"),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Route::Messages => "messages",
            Route::CountTokens => "count_tokens",
            Route::ModelsList => "models_list",
            Route::ModelGet(_) => "model_get",
        }
    }

    /// True when the request carries a Messages-style JSON body the gateway must parse.
    pub fn has_body(&self) -> bool {
        matches!(self, Route::Messages | Route::CountTokens)
    }
}

/// Match method and path. An optional prefix of plain segments before `/v1/` is accepted
/// (`ANTHROPIC_BASE_URL=https://gw/anthropic`) and dropped.
pub fn route(method: &Method, path: &str) -> Result<Route, Rejection> {
    if !plain_path(path) {
        return Err(Rejection::not_found(path));
    }
    let Some(at) = path.find("/v1/").or_else(|| path.ends_with("/v1").then(|| path.len() - 3))
    else {
        return Err(Rejection::not_found(path));
    };
    let (prefix, rest) = path.split_at(at);
    if !prefix.split('/').skip(1).all(plain_segment) {
        return Err(Rejection::not_found(path));
    }
    let (route, allowed) = match rest {
        "/v1/messages" => (Route::Messages, Method::POST),
        "/v1/messages/count_tokens" => (Route::CountTokens, Method::POST),
        "/v1/models" => (Route::ModelsList, Method::GET),
        _ => match rest.strip_prefix("/v1/models/") {
            Some(id) if plain_segment(id) => (Route::ModelGet(id.to_owned()), Method::GET),
            _ => return Err(Rejection::not_supported(rest)),
        },
    };
    if *method != allowed {
        return Err(Rejection::method_not_allowed(method, allowed));
    }
    Ok(route)
}

/// The gateway's own endpoints on the data listener (exact paths, no prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    /// `POST /auth/token`: exchange an IdP token for a session token.
    Token,
    /// `GET /auth/config`: what `airlock login` needs to know.
    Config,
}

impl Local {
    pub fn name(self) -> &'static str {
        match self {
            Local::Token => "auth_token",
            Local::Config => "auth_config",
        }
    }
}

pub fn local_route(method: &Method, path: &str) -> Result<Option<Local>, Rejection> {
    let (local, allowed) = match path {
        "/auth/token" => (Local::Token, Method::POST),
        "/auth/config" => (Local::Config, Method::GET),
        _ => return Ok(None),
    };
    if *method != allowed {
        return Err(Rejection::method_not_allowed(method, allowed));
    }
    Ok(Some(local))
}

/// No percent-encoding, dot segments, empty segments, parameters or backslashes: nothing a
/// normaliser upstream could read differently from us.
fn plain_path(path: &str) -> bool {
    path.starts_with('/')
        && !path.contains("//")
        && path.bytes().all(|b| b.is_ascii_alphanumeric() || b"/-_.:@".contains(&b))
        && !path.split('/').any(|s| s == "." || s == "..")
}

fn plain_segment(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.len() <= 128
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:@".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(method: Method, path: &str, expected: Result<Route, u16>) {
        let got = route(&method, path).map_err(|r| r.status.as_u16());
        assert_eq!(got, expected, "{method} {path}");
    }

    #[test]
    fn routes() {
        use Route::*;
        check(Method::POST, "/v1/messages", Ok(Messages));
        check(Method::POST, "/anthropic/v1/messages", Ok(Messages));
        check(Method::POST, "/a/b-c/v1/messages/count_tokens", Ok(CountTokens));
        check(Method::GET, "/v1/models", Ok(ModelsList));
        check(
            Method::GET,
            "/v1/models/claude-sonnet-4-5",
            Ok(ModelGet("claude-sonnet-4-5".into())),
        );
        check(Method::GET, "/v1/messages", Err(405));
        check(Method::POST, "/v1/models", Err(405));
        check(Method::POST, "/v1/complete", Err(501));
        check(Method::POST, "/v1/messages/batches", Err(501));
        check(Method::GET, "/v1/files", Err(501));
        check(Method::GET, "/v1", Err(501));
        check(Method::GET, "/", Err(404));
        check(Method::GET, "/admin", Err(404));
        check(Method::POST, "/v1/../admin/v1/messages", Err(404));
        check(Method::POST, "/%2e%2e/v1/messages", Err(404));
        check(Method::POST, "//v1/messages", Err(404));
        check(Method::POST, "/v1/messages;x=1", Err(404));
        check(Method::POST, "/x\\y/v1/messages", Err(404));
        check(Method::GET, "/v1/models/a/b", Err(501));
        check(Method::GET, "/v1/models/..", Err(404));
    }
}
