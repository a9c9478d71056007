//! Who is calling, on the data plane and at the token exchange.
//!
//! - [`authenticate`]: every `/v1/` request. A bearer whose header says it is a session token
//!   goes to session verification only; any other bearer goes to IdP verification only, and
//!   only for issuers with `accept_direct`. The two paths never fall back to each other.
//! - [`exchange`] (`POST /auth/token`): an IdP token in `Authorization: Bearer` becomes a
//!   session token. Session tokens are refused here (one is never renewed from another).
//! - [`login_config`] (`GET /auth/config`): the public facts `airlock login` needs.
//!
//! Clients only ever learn "invalid credentials"; the specific reason goes to the record.

use crate::Gateway;
use crate::body::{ProxyBody, full};
use crate::record::RequestRecord;
use crate::reject::Rejection;
use airlock_authn::oidc::TokenKind;
use airlock_authn::{Identity, TokenError, is_session_token};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};

/// The bearer token a request carries: `x-api-key` or `Authorization: Bearer` (scheme
/// case-insensitive). Both at once must agree (Claude Code's `apiKeyHelper` sends both).
pub(crate) fn credential(headers: &HeaderMap, allow_api_key: bool) -> Result<&str, Rejection> {
    let api_key = headers.get("x-api-key").map(|v| v.to_str().map(str::trim));
    let mut authorization = headers.get_all(header::AUTHORIZATION).iter();
    let first = authorization.next();
    if authorization.next().is_some() {
        return Err(Rejection::bad_request(
            "send exactly one Authorization header",
            "duplicate_authorization",
        ));
    }
    let bearer = first.map(|v| {
        v.to_str().map(|s| match s.trim().split_once(' ') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
            _ => "",
        })
    });
    let api_key = if allow_api_key { api_key } else { None };
    match (api_key, bearer) {
        (None, None) => Err(Rejection::unauthenticated(if allow_api_key {
            "missing credentials: send an Airlock session token as x-api-key or Authorization: Bearer"
        } else {
            "missing credentials: send a token as Authorization: Bearer"
        })
        .with_reason("missing_credentials")),
        (Some(Err(_)), _) | (_, Some(Err(_))) | (_, Some(Ok(""))) | (Some(Ok("")), _) => Err(
            Rejection::unauthenticated("malformed credentials header")
                .with_reason("malformed_credentials"),
        ),
        (Some(Ok(a)), Some(Ok(b))) if a != b => Err(Rejection::unauthenticated(
            "x-api-key and Authorization carry different credentials",
        )
        .with_reason("conflicting_credentials")),
        (Some(Ok(t)), _) | (None, Some(Ok(t))) => Ok(t),
    }
}

fn invalid(reason: &'static str) -> Rejection {
    Rejection::unauthenticated("invalid credentials").with_reason(reason)
}

fn note(record: &mut RequestRecord, identity: &Identity) {
    record.data.subject = Some(identity.subject().to_owned());
    record.data.groups = identity.groups().to_vec();
    record.data.issuer = Some(identity.issuer().to_owned());
    record.data.token_id = Some(identity.token_id().to_owned());
}

/// Authenticate a data-plane request (before its body is read).
pub async fn authenticate(
    gw: &Gateway,
    headers: &HeaderMap,
    record: &mut RequestRecord,
) -> Result<Identity, Rejection> {
    let token = credential(headers, true)?;
    let now = (gw.clock)();
    let identity = if is_session_token(token) {
        session(gw, token, now)?
    } else if gw.issuers.all().iter().any(|i| i.config.accept_direct) {
        let idp = gw.issuers.verify(token, now, true).await.map_err(|e| invalid(e.reason()))?;
        not_revoked(gw, idp)?
    } else {
        return Err(Rejection::unauthenticated(
            "invalid credentials: this gateway accepts only Airlock session tokens",
        )
        .with_reason("not_a_session_token"));
    };
    note(record, &identity);
    Ok(identity)
}

/// Verify a session token (signature, kind, lifetime) and check it is not revoked.
pub(crate) fn session(gw: &Gateway, token: &str, now: u64) -> Result<Identity, Rejection> {
    let identity =
        gw.keys.verify(token, now, gw.session_max_ttl.as_secs()).map_err(|e| match e {
            TokenError::Expired => Rejection::unauthenticated(
                "session token expired: get a fresh one with `airlock token`",
            )
            .with_reason("session_expired"),
            TokenError::NotYetValid => {
                Rejection::unauthenticated("session token is not valid yet: check the clocks")
                    .with_reason("session_not_yet_valid")
            }
            TokenError::LifetimeTooLong => invalid("session_lifetime_too_long"),
            TokenError::BadSignature => invalid("session_bad_signature"),
            _ => invalid("session_invalid"),
        })?;
    not_revoked(gw, identity)
}

fn not_revoked(gw: &Gateway, identity: Identity) -> Result<Identity, Rejection> {
    if gw.revocations.is_revoked(&identity) {
        return Err(invalid("token_revoked"));
    }
    Ok(identity)
}

/// `POST /auth/token`: exchange an IdP token for a session token.
pub async fn exchange(
    gw: &Gateway,
    headers: &HeaderMap,
    record: &mut RequestRecord,
) -> Result<Response<ProxyBody>, Rejection> {
    if gw.issuers.is_empty() {
        return Err(Rejection::not_supported("/auth/token"));
    }
    let token = credential(headers, false)?;
    if is_session_token(token) {
        return Err(invalid("session_token_not_exchangeable"));
    }
    let now = (gw.clock)();
    let idp = gw.issuers.verify(token, now, false).await.map_err(|e| invalid(e.reason()))?;
    note(record, &idp);
    let idp = not_revoked(gw, idp)?;
    // Never longer than configured, and never beyond the IdP token's own expiry.
    let ttl = gw.session_ttl.as_secs().min(gw.session_max_ttl.as_secs());
    let ttl = ttl.min(idp.expires_at().saturating_sub(now));
    if ttl == 0 {
        return Err(invalid("idp_token_expires_now"));
    }
    let minted = gw
        .keys
        .mint(idp.subject(), idp.groups(), ttl, now)
        .map_err(|_| Rejection::internal("mint_failed"))?;
    record.data.minted_token_id = Some(minted.token_id.clone());
    let body = serde_json::json!({
        "token": minted.token,
        "token_type": "airlock-session",
        "expires_at": minted.expires_at,
        "subject": idp.subject(),
        "groups": idp.groups(),
    });
    Ok(json_response(StatusCode::OK, body.to_string()))
}

/// `GET /auth/config`: issuers that offer interactive login, and their public client ids.
pub fn login_config(gw: &Gateway) -> Response<ProxyBody> {
    let issuers: Vec<serde_json::Value> = gw
        .issuers
        .all()
        .iter()
        .filter_map(|i| {
            let c = &i.config;
            Some(serde_json::json!({
                "issuer": c.issuer,
                "client_id": c.client_id.as_deref()?,
                "scopes": c.scopes,
                "token_type": match c.token_type { TokenKind::Access => "access", TokenKind::Id => "id" },
            }))
        })
        .collect();
    json_response(StatusCode::OK, serde_json::json!({ "issuers": issuers }).to_string())
}

fn json_response(status: StatusCode, body: String) -> Response<ProxyBody> {
    let mut response = Response::new(full(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
