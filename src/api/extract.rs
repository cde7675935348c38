//! Request extraction shared by handlers: the bounded body, JSON parsing that names the
//! failing field, and the bearer-token principals.
//!
//! Handlers take the body *before* the principal, so a request is always read in full
//! before a 401/403 is sent (clients reuse keep-alive connections).

use super::error::ApiError;
use crate::domain::Role;
use crate::ops::Actor;
use crate::state::{AppState, Principal};
use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;

/// Header carrying a free-text reason recorded in the audit log.
pub const REASON_HEADER: &str = "x-rollgate-reason";

/// The raw request body, at most `Limits::max_body` bytes.
pub struct Body(pub web::Bytes);

impl FromRequest for Body {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = state(req)
            .map(|s| {
                if req.match_pattern().as_deref() == Some("/api/v1/signals") {
                    s.limits.max_signals_body
                } else {
                    s.limits.max_body
                }
            })
            .unwrap_or(1 << 20);
        let fut = web::Bytes::from_request(req, payload);
        Box::pin(async move { fut.await.map(Body).map_err(|e| payload_error(&e, limit)) })
    }
}

/// Maps a payload extraction failure to a typed error (413 for overflow).
pub fn payload_error(e: &actix_web::Error, limit: usize) -> ApiError {
    if e.as_response_error().status_code() == actix_web::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge { limit }
    } else {
        ApiError::BadRequest {
            field: None,
            message: format!("could not read the request body: {e}"),
        }
    }
}

/// Parses JSON into `T`: 400 for malformed JSON, wrong types, unknown or missing fields;
/// 422 for well-formed values that are out of range; both name the field.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.to_string();
        let path = field_path(path, &message);
        match inner.classify() {
            serde_json::error::Category::Data if !is_shape_error(&message) => ApiError::Invalid {
                field: Some(path),
                message,
            },
            serde_json::error::Category::Data => ApiError::BadRequest {
                field: Some(path),
                message,
            },
            _ => ApiError::BadRequest {
                field: None,
                message: format!("malformed JSON: {message}"),
            },
        }
    })?;
    de.end().map_err(|e| ApiError::BadRequest {
        field: None,
        message: format!("malformed JSON: {e}"),
    })?;
    Ok(value)
}

/// The failing field: the path, or at the top level (path `.` or empty) the field an
/// unknown / missing / duplicate field error names, so no error says `"field": ""`.
fn field_path(path: String, message: &str) -> String {
    if !path.is_empty() && path != "." {
        return path;
    }
    ["unknown field `", "missing field `", "duplicate field `"]
        .iter()
        .find_map(|p| message.strip_prefix(p)?.split('`').next())
        .filter(|name| !name.is_empty())
        .map_or_else(|| ".".to_owned(), str::to_owned)
}

fn is_shape_error(message: &str) -> bool {
    [
        "invalid type",
        "unknown field",
        "missing field",
        "invalid length",
        "unknown variant",
        "duplicate field",
    ]
    .iter()
    .any(|p| message.starts_with(p))
}

/// The shared state of a request.
pub fn state(req: &HttpRequest) -> Option<&web::Data<AppState>> {
    req.app_data::<web::Data<AppState>>()
}

/// The secret a request presents: `Authorization: Bearer …` or `X-API-Key`.
pub fn presented_token(req: &HttpRequest) -> Option<&str> {
    if let Some(value) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, token) = value.trim().split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then_some(token.trim())
            .filter(|t| !t.is_empty());
    }
    req.headers()
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Authenticates a request with any valid token.
pub fn authenticate(req: &HttpRequest) -> Result<Principal, ApiError> {
    let state = state(req).ok_or_else(|| ApiError::Internal("application state missing".into()))?;
    let secret = presented_token(req).ok_or(ApiError::Unauthorized)?;
    state
        .tokens
        .load()
        .authenticate(secret)
        .cloned()
        .ok_or(ApiError::Unauthorized)
}

/// Any valid token (client or admin).
pub struct Caller(pub Principal);

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(authenticate(req).map(Caller))
    }
}

/// An admin token; carries the audit actor (token name + `X-Rollgate-Reason`).
pub struct Admin(pub Actor);

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let result = authenticate(req).and_then(|p| {
            if p.role != Role::Admin {
                return Err(ApiError::Forbidden);
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

/// `If-None-Match` matches `etag` (handles lists, `W/` and `*`).
pub fn etag_matches(req: &HttpRequest, etag: &str) -> bool {
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .map(str::trim)
                .any(|candidate| candidate == "*" || candidate.trim_start_matches("W/") == etag)
        })
}
