//! The actix extractors handlers take to authenticate: [`Caller`] (any valid token),
//! [`Sender`] (a client or admin token: what may send signals), [`Reader`] (an admin or viewer
//! token: the ops API's reads) and [`Admin`] (an admin token, carrying the audit [`Actor`]). They read the [`TokenBook`]
//! registered as its own `web::Data`. Their [`AuthError`] is rendered by the API's one error
//! mapping (`api::error`).
//!
//! Auth first: handlers list the auth extractor before any other fallible one. A refusal is
//! recorded on the request ([`refusal`]) so that the extractors after it (path, query, body)
//! answer with the refusal instead of their own error, and the refused request's body is read
//! and dropped (up to [`DRAIN_LIMIT`]) before the answer, so a keep-alive connection stays
//! usable.

use super::index::{Principal, TokenBook};
use super::Role;
use crate::auth::Actor;
use actix_web::dev::Payload;
use actix_web::http::header::{self, HeaderMap};
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use futures_util::future::{self, Either, LocalBoxFuture, Ready};
use futures_util::StreamExt;

/// Header carrying a free-text reason recorded in the audit log.
pub const REASON_HEADER: &str = "x-rollgate-reason";

/// Why a request is not let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token, or a token that does not exist (or was revoked).
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// A valid token whose role may not do this: the role it has, and what the endpoint needs.
    #[error("{}", forbidden_message(*.0, *.1))]
    Forbidden(Role, Needs),
}

/// What an endpoint needs of a token's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// An admin token.
    Admin,
    /// An admin or viewer token (the ops API's reads).
    Reader,
    /// A client or admin token (signals, OFREP evaluation).
    Sender,
}

/// The refusal's words: what the endpoint needs and which role was presented.
fn forbidden_message(role: Role, needs: Needs) -> String {
    let needs = match needs {
        Needs::Admin => "this endpoint needs an admin token",
        Needs::Reader => "this endpoint needs an admin or viewer token",
        Needs::Sender => "this endpoint needs a client or admin token",
    };
    match role {
        Role::Viewer => format!("{needs}; a viewer token is read-only"),
        other => format!("{needs}; this is a {} token", other.as_str()),
    }
}

/// The principal of a request when its role is one of `allowed`, else the refusal.
pub fn authorize(
    req: &HttpRequest,
    allowed: &[Role],
    needs: Needs,
) -> Result<Principal, AuthError> {
    let p = authenticate(req)?;
    if allowed.contains(&p.role) {
        Ok(p)
    } else {
        Err(AuthError::Forbidden(p.role, needs))
    }
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

/// Most bytes of a refused request's body that are read (and dropped) before the refusal is
/// sent. A longer body is not read; the connection is closed after the answer.
pub const DRAIN_LIMIT: u64 = 1 << 20;

/// A refusal recorded on the request by the auth extractor.
#[derive(Debug, Clone, Copy)]
struct Refused(AuthError);

/// The auth extractor's refusal of this request, if it refused it: extractors that run after
/// it answer with this instead of their own error.
pub fn refusal(req: &HttpRequest) -> Option<AuthError> {
    req.extensions().get::<Refused>().map(|r| r.0)
}

type Checked<T> =
    Either<Ready<Result<T, AuthError>>, LocalBoxFuture<'static, Result<T, AuthError>>>;

/// Lets the request in, or records the refusal and answers it once the body is drained.
fn check<T: 'static>(
    req: &HttpRequest,
    payload: &mut Payload,
    outcome: Result<T, AuthError>,
) -> Checked<T> {
    let error = match outcome {
        Ok(value) => return Either::Left(future::ready(Ok(value))),
        Err(error) => error,
    };
    req.extensions_mut().insert(Refused(error));
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut body = payload.take();
    Either::Right(Box::pin(async move {
        if declared.is_none_or(|n| n <= DRAIN_LIMIT) {
            let mut read = 0u64;
            while let Some(Ok(chunk)) = body.next().await {
                read += chunk.len() as u64;
                if read > DRAIN_LIMIT {
                    break;
                }
            }
        }
        Err(error)
    }))
}

/// Any valid token (client, admin or viewer).
pub struct Caller(pub Principal);

impl FromRequest for Caller {
    type Error = AuthError;
    type Future = Checked<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        check(req, payload, authenticate(req).map(Caller))
    }
}

/// An admin token; carries the audit actor (token name + `X-Rollgate-Reason`).
pub struct Admin(pub Actor);

impl FromRequest for Admin {
    type Error = AuthError;
    type Future = Checked<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let result = authorize(req, &[Role::Admin], Needs::Admin).map(|p| {
            let reason = req
                .headers()
                .get(REASON_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(|r| r.chars().take(1000).collect());
            Admin(Actor {
                name: p.name.to_string(),
                reason,
            })
        });
        check(req, payload, result)
    }
}

/// An admin or viewer token: the ops API's reads.
pub struct Reader(pub Principal);

impl FromRequest for Reader {
    type Error = AuthError;
    type Future = Checked<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let result = authorize(req, &[Role::Admin, Role::Viewer], Needs::Reader).map(Reader);
        check(req, payload, result)
    }
}

/// A client or admin token: what may send signals (a viewer changes nothing).
pub struct Sender(pub Principal);

impl FromRequest for Sender {
    type Error = AuthError;
    type Future = Checked<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let result = authorize(req, &[Role::Client, Role::Admin], Needs::Sender).map(Sender);
        check(req, payload, result)
    }
}
