//! The one mapping from errors to HTTP responses for the rollgate API (OFREP endpoints use
//! OFREP's own shapes, see `ofrep.rs`).
//!
//! Body: `{"error": {"code": "...", "message": "...", "field": "..."}}`. 5xx bodies never carry
//! internal details; those go to the log.

use crate::auth::AuthError;
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
    /// A valid token whose role may not do this.
    #[error("this endpoint needs an admin token")]
    Forbidden,
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
            ApiError::Forbidden => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Internal(_) => "internal",
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
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(detail) = self {
            tracing::error!(%detail, "internal error");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: self.to_string(),
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
            AuthError::Forbidden => ApiError::Forbidden,
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
