//! The OpenAPI schemas of flags as code (`POST /api/v1/apply`, `GET /api/v1/export`); the
//! handler types are `ops::apply`'s, which carry no schema of their own.

// The types here exist for their schemas.
#![allow(dead_code)]

use super::{FlagSchema, SegmentSchema};
use crate::policies::Policy;
use crate::release::ReleasePlan;
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

/// `POST /api/v1/apply` body, and `GET /api/v1/export`'s answer (without the options).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyDocument {
    /// Flags, as `PUT /api/v1/flags/{key}` takes them.
    #[serde(default)]
    flags: Vec<FlagSchema>,
    /// Segments, as `PUT /api/v1/segments/{key}` takes them.
    #[serde(default)]
    segments: Vec<SegmentSchema>,
    /// Policies, as `PUT /api/v1/policies/{name}` takes them.
    #[serde(default)]
    policies: Vec<Policy>,
    /// Release plans, as `POST /api/v1/releases` takes them.
    #[serde(default)]
    releases: Vec<ReleasePlan>,
    /// Delete the flags, segments and policies the document does not have (never one still
    /// used; policies loaded from `policies/` files are kept).
    #[serde(default)]
    prune: bool,
    /// Answer the diff only; change nothing.
    #[serde(default)]
    dry_run: bool,
    /// Recorded as the reason of every audit entry of the run (`null`: none).
    #[serde(default)]
    message: Option<String>,
}

/// What applying does to one object.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum ApplyOp {
    Create,
    Update,
    Delete,
    Unchanged,
    /// Missing from the document under `prune`, but kept: a policy the server loads from its
    /// `policies/` directory.
    Kept,
}

/// The kind of an object.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum ApplyKind {
    Segment,
    Policy,
    Flag,
    Release,
}

/// One top-level field that differs.
#[derive(ToSchema)]
pub struct ApplyField {
    field: String,
    /// Absent when the field was.
    before: Option<Value>,
    /// Absent when the field is removed.
    after: Option<Value>,
}

/// One line of the diff.
#[derive(ToSchema)]
pub struct ApplyChange {
    kind: ApplyKind,
    key: String,
    op: ApplyOp,
    /// For `update`: the fields that differ.
    fields: Option<Vec<ApplyField>>,
}

/// `POST /api/v1/apply` answer.
#[derive(ToSchema)]
pub struct ApplyOutcome {
    dry_run: bool,
    /// Whether something was written.
    applied: bool,
    /// The config revision after the run.
    revision: u64,
    changes: Vec<ApplyChange>,
}
