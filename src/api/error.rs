//! The one mapping from errors to HTTP responses for the rollgate API (OFREP endpoints use
//! OFREP's own shapes, see `ofrep.rs`).
//!
//! Body: `{"error": {"code": "...", "message": "...", "field": "..."}}`. 5xx bodies never carry
//! internal details; those go to the log. Messages speak JSON, not Rust ([`client_message`]).

use crate::auth::AuthError;
use crate::cluster::ClusterError;
use crate::store::StoreError;
use crate::writer::OpsError;
use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

/// Errors of the HTTP boundary.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed request: bad JSON, wrong type, unknown or missing field.
    #[error("{message}")]
    BadRequest {
        field: Option<String>,
        message: String,
    },
    /// Well-formed but semantically invalid.
    #[error("{message}")]
    Invalid {
        field: Option<String>,
        message: String,
    },
    /// No token, or a token that does not exist.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// A valid token whose role may not do this (the message names the role and what is
    /// needed).
    #[error("{0}")]
    Forbidden(String),
    /// Unknown resource.
    #[error("{0}")]
    NotFound(String),
    /// Conflicts with current state.
    #[error("{0}")]
    Conflict(String),
    /// Body over the limit.
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// Method not allowed on this path.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// Too many requests; retry after this many seconds.
    #[error("signal rate limit exceeded; retry in {retry_after} s")]
    RateLimited { retry_after: u64 },
    /// Something failed on our side; details are logged, not returned.
    #[error("internal error")]
    Internal(String),
    /// A cluster node cannot reach its database: writes are refused until it returns
    /// (evaluation, streams and signal intake go on). Details are logged.
    #[error("the database is unreachable: changes are refused until it returns (evaluation, streams and signals continue); retry later")]
    Unavailable(String),
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'static str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ApiError {
    /// A 400 naming `field`.
    pub fn bad_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    /// A 422 naming `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Invalid {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { .. } => "bad_request",
            ApiError::Invalid { .. } => "invalid",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Internal(_) => "internal",
            ApiError::Unavailable(_) => "unavailable",
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            ApiError::BadRequest { field, .. } | ApiError::Invalid { field, .. } => {
                field.as_deref()
            }
            _ => None,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            ApiError::Internal(detail) => tracing::error!(%detail, "internal error"),
            ApiError::Unavailable(detail) => {
                tracing::warn!(%detail, "write refused: database unreachable")
            }
            _ => {}
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: client_message(&self.to_string()),
                field: self.field(),
            },
        };
        let mut response = HttpResponse::build(self.status_code());
        match self {
            ApiError::Unauthorized => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            ApiError::RateLimited { retry_after } => {
                response.insert_header((header::RETRY_AFTER, retry_after.to_string()));
            }
            ApiError::Unavailable(_) => {
                response.insert_header((header::RETRY_AFTER, "2"));
            }
            _ => {}
        }
        response.json(body)
    }
}

impl From<OpsError> for ApiError {
    fn from(e: OpsError) -> Self {
        match e {
            OpsError::NotFound { .. } => ApiError::NotFound(e.to_string()),
            OpsError::Invalid { field, message } => ApiError::Invalid {
                field: Some(field),
                message,
            },
            OpsError::Conflict(m) => ApiError::Conflict(m),
            OpsError::Encode { .. } | OpsError::Store(_) => ApiError::Internal(e.to_string()),
            OpsError::Cluster(ClusterError::Fenced { .. }) => ApiError::Conflict(e.to_string()),
            OpsError::Cluster(ClusterError::Corrupt { .. } | ClusterError::SchemaTooNew { .. }) => {
                ApiError::Internal(e.to_string())
            }
            OpsError::Cluster(_) => ApiError::Unavailable(e.to_string()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unauthorized => ApiError::Unauthorized,
            e @ AuthError::Forbidden(..) => ApiError::Forbidden(e.to_string()),
        }
    }
}

/// The auth extractors' refusals go through this same mapping.
impl ResponseError for AuthError {
    fn status_code(&self) -> StatusCode {
        ApiError::from(*self).status_code()
    }

    fn error_response(&self) -> HttpResponse {
        ApiError::from(*self).error_response()
    }
}

/// A refused signal batch: malformed (400) or out of bounds (422), naming the field.
impl From<crate::signals::Malformed> for ApiError {
    fn from(m: crate::signals::Malformed) -> Self {
        if m.out_of_bounds {
            ApiError::invalid(m.field, m.message)
        } else {
            ApiError::bad_field(m.field, m.message)
        }
    }
}

/// A message fit for a client: serde's Rust type names become JSON terms (`expected struct
/// ReasonRequest` → `expected a JSON object`, `expected f64` → `expected a number`) and Rust's
/// `\u{13}` escapes of control characters become JSON's `\u0013`.
pub fn client_message(message: &str) -> String {
    const EXPECTED: &str = "expected ";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(EXPECTED) {
        let (before, after) = rest.split_at(at + EXPECTED.len());
        out.push_str(before);
        let (term, used) = json_term(after);
        out.push_str(term);
        rest = &after[used..];
    }
    out.push_str(rest);
    json_escapes(&out)
}

/// The JSON term for the Rust type name `text` starts with, and its length (0: none).
fn json_term(text: &str) -> (&str, usize) {
    const KINDS: [(&str, &str); 11] = [
        ("struct variant ", "a JSON object"),
        ("tuple variant ", "a JSON array"),
        ("unit variant ", "a string"),
        ("newtype variant ", "a value"),
        ("internally tagged enum ", "a JSON object"),
        ("adjacently tagged enum ", "a JSON object"),
        ("tuple struct ", "a JSON array"),
        ("unit struct ", "null"),
        ("newtype struct ", "a value"),
        ("struct ", "a JSON object"),
        ("enum ", "one of the allowed values"),
    ];
    let ident_len = |s: &str| {
        s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(s.len())
    };
    for (kind, term) in KINDS {
        if let Some(name) = text.strip_prefix(kind) {
            let len = ident_len(name);
            if len > 0 {
                return (term, kind.len() + len);
            }
        }
    }
    let len = ident_len(text);
    let term = match &text[..len] {
        "f32" | "f64" => "a number",
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a non-negative integer",
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "an integer",
        "bool" => "a boolean",
        "char" => "a single character",
        _ => return ("", 0),
    };
    (term, len)
}

/// Rust's `\u{13}` (from `{:?}` of a string) as JSON's `\u0013`.
fn json_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("\\u{") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 3..];
        match after.split_once('}') {
            Some((hex, tail))
                if (1..=4).contains(&hex.len()) && hex.chars().all(|c| c.is_ascii_hexdigit()) =>
            {
                out.push_str(&format!("\\u{hex:0>4}"));
                rest = tail;
            }
            _ => {
                out.push_str("\\u{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::client_message;

    #[test]
    fn messages_name_json_types_not_rust_ones() {
        let cases = [
            (
                "invalid type: string \"x\", expected struct ReasonRequest at line 1 column 3",
                "invalid type: string \"x\", expected a JSON object at line 1 column 3",
            ),
            (
                "invalid type: string \"lots\", expected f64 at line 1 column 21",
                "invalid type: string \"lots\", expected a number at line 1 column 21",
            ),
            (
                "invalid type: map, expected u64",
                "invalid type: map, expected a non-negative integer",
            ),
            (
                "invalid type: integer `1`, expected struct variant Rule::Match",
                "invalid type: integer `1`, expected a JSON object",
            ),
            (
                "invalid type: null, expected enum Role",
                "invalid type: null, expected one of the allowed values",
            ),
            ("expected a string", "expected a string"),
            ("expected value at line 1", "expected value at line 1"),
            (
                "unknown field `x`, expected `percentage` or `reason`",
                "unknown field `x`, expected `percentage` or `reason`",
            ),
        ];
        for (raw, clean) in cases {
            assert_eq!(client_message(raw), clean, "{raw}");
        }
    }

    #[test]
    fn control_characters_are_shown_as_json_escapes() {
        assert_eq!(
            client_message("flag \"a\\u{13}\" not found"),
            "flag \"a\\u0013\" not found"
        );
        assert_eq!(client_message("a \\u{200b} b"), "a \\u200b b");
        assert_eq!(
            client_message("not an escape \\u{zz}"),
            "not an escape \\u{zz}"
        );
    }
}
