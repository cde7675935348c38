//! The OpenAPI schemas of the OFREP endpoints: the shapes the OpenFeature providers depend on
//! (`shared/spec/ofrep.md`), and OFREP's own error answers.

// The types here exist for their schemas.
#![allow(dead_code)]

use super::{json_response, one, string_header};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::openapi::{RefOr, Response};
use utoipa::{IntoResponses, ToSchema};

/// OFREP's error body (single evaluation, and entries of the bulk answer).
#[derive(Serialize, ToSchema)]
pub struct OfrepError {
    /// The flag (absent on bulk-request errors).
    #[schema(nullable = false)]
    key: Option<String>,
    #[schema(rename = "errorCode")]
    error_code: OfrepErrorCode,
    /// For humans.
    #[schema(rename = "errorDetails")]
    error_details: String,
}

/// OFREP error codes rollgate answers with.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OfrepErrorCode {
    ParseError,
    TargetingKeyMissing,
    InvalidContext,
    FlagNotFound,
    General,
}

/// A successful OFREP evaluation.
#[derive(Serialize, ToSchema)]
pub struct OfrepSuccess {
    key: String,
    /// The variant's value (the flag's type).
    #[schema(value_type = Value)]
    value: Value,
    /// `STATIC`, `TARGETING_MATCH`, `SPLIT`, `DISABLED`, `DEFAULT`.
    reason: String,
    variant: String,
    metadata: OfrepFlagMetadata,
}

/// Flag metadata of a successful OFREP evaluation.
#[derive(Serialize, ToSchema)]
pub struct OfrepFlagMetadata {
    /// The config revision the answer was computed from (docs/clients.md).
    revision: u64,
    /// The segment key of the release audience that decided (absent when none did); clients
    /// copy it into the `audience` of the signals they send for this flag (docs/clients.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    audience: Option<String>,
}

/// One entry of the bulk answer.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum OfrepEntry {
    Success(OfrepSuccess),
    Error(OfrepError),
}

/// `eventStreams` entry (ADR-0008).
#[derive(ToSchema)]
pub struct OfrepEventStream {
    /// `sse`.
    r#type: String,
    /// The stream URL with a stream-only token.
    url: String,
    #[schema(rename = "inactivityDelaySec")]
    inactivity_delay_sec: u64,
}

/// The bulk answer.
#[derive(ToSchema)]
pub struct OfrepBulk {
    flags: Vec<OfrepEntry>,
    #[schema(value_type = Object)]
    metadata: Value,
    #[schema(rename = "eventStreams", nullable = false)]
    event_streams: Option<Vec<OfrepEventStream>>,
}

/// An OFREP request body: `{"context": {...}}`; other members are ignored.
#[derive(ToSchema)]
pub struct OfrepRequest {
    context: Option<OfrepContext>,
}

/// Evaluation context: any attributes; `targetingKey` a string when present.
#[derive(ToSchema)]
pub struct OfrepContext {
    #[schema(rename = "targetingKey")]
    targeting_key: Option<String>,
}

/// OFREP answers `$status` with its own error body.
macro_rules! ofrep_answer {
    ($name:ident, $status:literal, $description:literal) => {
        #[doc = $description]
        pub struct $name;
        impl IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                one($status, json_response($description, "OfrepError").build())
            }
        }
    };
}

ofrep_answer!(
    OfrepBadRequest,
    400,
    "PARSE_ERROR, INVALID_CONTEXT, TARGETING_KEY_MISSING"
);
ofrep_answer!(OfrepTooLarge, 413, "GENERAL: body over the OFREP limit");
ofrep_answer!(OfrepNotFound, 404, "FLAG_NOT_FOUND");

/// 403 in OFREP's shape.
pub struct OfrepForbidden;
impl IntoResponses for OfrepForbidden {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        one(
            403,
            json_response(
                "GENERAL: a viewer token (read-only) may not evaluate",
                "OfrepError",
            )
            .build(),
        )
    }
}

/// 401 in OFREP's shape.
pub struct OfrepUnauthorized;
impl IntoResponses for OfrepUnauthorized {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        one(
            401,
            json_response("GENERAL: no token, or an unknown one", "OfrepError")
                .header("WWW-Authenticate", string_header("`Bearer`"))
                .build(),
        )
    }
}
