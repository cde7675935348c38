//! Request extraction shared by handlers: the bounded body (its limit declared with the route,
//! [`limited`]), the path key and the query string (both naming what is wrong), JSON parsing
//! that names the failing field, and `If-None-Match`. The token extractors are `crate::auth`'s.
//!
//! Auth first: handlers take the principal *before* anything else that can fail. A refused
//! request's body is drained by the auth extractor (so keep-alive connections stay usable),
//! and [`Body`], [`Key`] and [`Query`] answer a refused request with the refusal, never with
//! their own error.

use super::error::ApiError;
use crate::auth::extract::refusal;
use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::future::{ready, LocalBoxFuture, Ready};
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
        if refusal(req).is_some() {
            // The auth extractor drained the body and answers the request.
            return Box::pin(async { Ok(Body(web::Bytes::new())) });
        }
        let limit = req.app_data::<BodyLimit>().map_or(1 << 20, |l| l.0);
        let fut = web::Bytes::from_request(req, payload);
        Box::pin(async move { fut.await.map(Body).map_err(|e| payload_error(&e, limit)) })
    }
}

/// Maps a payload extraction failure to a typed error (413 for overflow). A body that could
/// not be read (most often a client that hung up mid-request) is the client's problem: it is
/// logged at DEBUG, not as a server error.
pub fn payload_error(e: &actix_web::Error, limit: usize) -> ApiError {
    if e.as_response_error().status_code() == actix_web::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge { limit }
    } else {
        tracing::debug!(error = %e, "request body could not be read");
        ApiError::BadRequest {
            field: None,
            message: format!("could not read the request body: {e}"),
        }
    }
}

/// The one parameter of a route such as `/api/v1/flags/{key}`, percent-decoded strictly: a
/// path that does not decode to UTF-8 is a 400 naming the parameter (actix's own `Path` turns
/// it into U+FFFD and looks up a different name). The literal parts of our routes are ASCII,
/// so any such bytes are the parameter's.
#[derive(Debug)]
pub struct Key(pub String);

impl std::ops::Deref for Key {
    type Target = String;

    fn deref(&self) -> &String {
        &self.0
    }
}

impl FromRequest for Key {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        if refusal(req).is_some() {
            // Never seen by the handler: the auth extractor answers once the body is drained.
            return ready(Ok(Key(String::new())));
        }
        let Some((name, segment)) = req.match_info().iter().next() else {
            return ready(Err(ApiError::Internal(
                "Key extractor on a route without a parameter".into(),
            )));
        };
        // actix has decoded the URL once (lossily); the segment keeps `%25`, `%2F`, … encoded.
        let path = req.uri().path();
        if percent_encoding::percent_decode_str(path)
            .decode_utf8()
            .is_err()
        {
            return ready(Err(ApiError::bad_field(
                name,
                format!("the path {path:?} is not valid UTF-8 once percent-decoded"),
            )));
        }
        ready(decode_segment(name, segment).map(Key))
    }
}

/// A percent-encoded path segment as UTF-8, or a 400 naming `name`.
pub fn decode_segment(name: &str, raw: &str) -> Result<String, ApiError> {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map(|k| k.into_owned())
        .map_err(|_| {
            ApiError::bad_field(
                name,
                format!("{raw:?} is not valid UTF-8 once percent-decoded"),
            )
        })
}

/// A query string parsed into `T`; an error names the parameter at fault (`field`).
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T> Query<T> {
    /// The parsed parameters.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T: DeserializeOwned> FromRequest for Query<T> {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        if let Some(refused) = refusal(req) {
            return ready(Err(refused.into()));
        }
        ready(parse_query(req.query_string()).map(Query))
    }
}

/// Parses a query string into `T`: 400 naming the parameter (`limit`), or the unknown one.
pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        let field = unknown_field(&message)
            .map(str::to_owned)
            .or((path != ".").then_some(path));
        ApiError::BadRequest {
            field,
            message: format!("bad query string: {message}"),
        }
    })
}

/// How serde_json names a JSON value in "invalid type" messages.
fn kind(value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean `{b}`"),
        Value::Number(n) if n.is_f64() => format!("floating point `{n}`"),
        Value::Number(n) => format!("integer `{n}`"),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "sequence".into(),
        Value::Object(_) => "map".into(),
    }
}

/// The name in serde's "unknown field `name`, expected …".
fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split_once('`').map(|(name, _)| name)
}

/// Parses JSON into `T`: 400 for malformed JSON, wrong types, unknown or missing fields;
/// 422 for well-formed values that are out of range; both name the field.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // Every request body of the API is an object; serde's derived structs would also take
    // their fields as an array (`[null, null]`), which no client means.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
            return Err(ApiError::BadRequest {
                field: None,
                message: format!("invalid type: {}, expected a JSON object", kind(&value)),
            });
        }
    }
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
