//! Request extraction shared by handlers: the bounded body (its limit declared with the route,
//! [`limited`]), JSON parsing that names the failing field, and `If-None-Match`. The token
//! extractors are `crate::auth`'s.
//!
//! Handlers take the body *before* the principal, so a request is always read in full
//! before a 401/403 is sent (clients reuse keep-alive connections).

use super::error::ApiError;
use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;

/// The body limit of a route, declared where the route is (see [`limited`]).
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// `resource` with a body limit: actix's payload limit and the one [`Body`] reports on 413.
pub fn limited(resource: actix_web::Resource, limit: usize) -> actix_web::Resource {
    resource
        .app_data(web::PayloadConfig::new(limit))
        .app_data(BodyLimit(limit))
}

/// The raw request body, at most the route's [`BodyLimit`].
pub struct Body(pub web::Bytes);

impl FromRequest for Body {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req.app_data::<BodyLimit>().map_or(1 << 20, |l| l.0);
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
