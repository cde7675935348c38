//! The actix extractors handlers take to authenticate: [`Caller`] (any valid token) and
//! [`Admin`] (an admin token, carrying the audit [`Actor`]). They read the [`TokenBook`]
//! registered as its own `web::Data`. Their [`AuthError`] is rendered by the API's one error
//! mapping (`api::error`).

use super::index::{Principal, TokenBook};
use super::Role;
use crate::auth::Actor;
use actix_web::dev::Payload;
use actix_web::http::header::{self, HeaderMap};
use actix_web::{web, FromRequest, HttpRequest};

/// Header carrying a free-text reason recorded in the audit log.
pub const REASON_HEADER: &str = "x-rollgate-reason";

/// Why a request is not let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token, or a token that does not exist (or was revoked).
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// A valid token whose role may not do this.
    #[error("this endpoint needs an admin token")]
    Forbidden,
}

/// The secret a request presents: `Authorization: Bearer …` or `X-API-Key`.
pub fn presented_token(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, token) = value.trim().split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then_some(token.trim())
            .filter(|t| !t.is_empty());
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Authenticates a request's header token with any valid token.
pub fn authenticate(req: &HttpRequest) -> Result<Principal, AuthError> {
    let book = req
        .app_data::<web::Data<TokenBook>>()
        .ok_or(AuthError::Unauthorized)?;
    let secret = presented_token(req.headers()).ok_or(AuthError::Unauthorized)?;
    book.load()
        .authenticate(secret)
        .cloned()
        .ok_or(AuthError::Unauthorized)
}

/// Any valid token (client or admin).
pub struct Caller(pub Principal);

impl FromRequest for Caller {
    type Error = AuthError;
    type Future = std::future::Ready<Result<Self, AuthError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(authenticate(req).map(Caller))
    }
}

/// An admin token; carries the audit actor (token name + `X-Rollgate-Reason`).
pub struct Admin(pub Actor);

impl FromRequest for Admin {
    type Error = AuthError;
    type Future = std::future::Ready<Result<Self, AuthError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let result = authenticate(req).and_then(|p| {
            if p.role != Role::Admin {
                return Err(AuthError::Forbidden);
            }
            let reason = req
                .headers()
                .get(REASON_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(|r| r.chars().take(1000).collect());
            Ok(Admin(Actor {
                name: p.name.to_string(),
                reason,
            }))
        });
        std::future::ready(result)
    }
}
