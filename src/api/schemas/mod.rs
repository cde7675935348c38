//! Schemas of the OpenAPI document that no handler type carries: the error bodies and the
//! reusable error answers, mirrors of the pure `rollgate-eval` model (which stays free of
//! utoipa), the signal batch (a borrowed, zero-copy type in `signals`), and the answers that
//! handlers build as JSON.
//!
//! Mirrors are kept honest by `tests/api/openapi.rs` (every property of a mirror is accepted by
//! the real type over HTTP, every required one is required) and by the schemathesis run
//! (`tests/schemathesis/run.sh`): a schema-valid body the server refuses with 400, or a
//! schema-invalid one it accepts, fails the test command.

// The types here exist for their schemas (and the mirrors for the sync test's parsing).
#![allow(dead_code)]

use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::openapi::{
    header::HeaderBuilder, ContentBuilder, Ref, RefOr, Response, ResponseBuilder, Schema,
};
use utoipa::{IntoResponses, ToSchema};

mod apply;
mod ofrep;
pub use apply::*;
pub use ofrep::*;

// ---------------------------------------------------------------- rollgate errors

/// Every rollgate (non-OFREP) error answer.
#[derive(ToSchema)]
#[schema(as = ErrorBody)]
pub struct ErrorBody {
    error: ErrorDetail,
}

/// The error itself.
#[derive(ToSchema)]
pub struct ErrorDetail {
    code: ErrorCode,
    /// For humans.
    message: String,
    /// The request field at fault (`rules[1].when[0].values`), when there is one.
    #[schema(nullable = false)]
    field: Option<String>,
}

/// Machine-readable error codes (see `api/error.rs`).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    Invalid,
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    PayloadTooLarge,
    MethodNotAllowed,
    RateLimited,
    Internal,
}

fn json_response(description: &str, schema: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name(schema)))
            .build(),
    )
}

fn string_header(description: &str) -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(<String as utoipa::PartialSchema>::schema())
        .description(Some(description))
        .build()
}

fn one(status: u16, response: Response) -> BTreeMap<String, RefOr<Response>> {
    BTreeMap::from([(status.to_string(), RefOr::T(response))])
}

/// Declares a reusable rollgate error answer (`responses(..., NotFound)` in a handler).
macro_rules! error_answer {
    ($name:ident, $status:literal, $description:literal) => {
        #[doc = $description]
        pub struct $name;
        impl IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                one($status, json_response($description, "ErrorBody").build())
            }
        }
    };
}

error_answer!(
    Malformed,
    400,
    "Malformed request: bad JSON, wrong type, unknown or missing field (`field` names it)"
);
error_answer!(
    Invalid,
    422,
    "Well-formed but invalid: a rule the schema cannot express (cross-field, path vs body, \
     references to other resources); `field` names it"
);
error_answer!(NotFound, 404, "No such resource");
error_answer!(Conflict, 409, "Conflicts with the current state");
error_answer!(TooLarge, 413, "Body over the route's limit");

/// 401: no token, or an unknown one (`WWW-Authenticate: Bearer`).
pub struct Unauthorized;
impl IntoResponses for Unauthorized {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        one(
            401,
            json_response("No token, or an unknown one", "ErrorBody")
                .header("WWW-Authenticate", string_header("`Bearer`"))
                .build(),
        )
    }
}

/// 401 and 403: the admin endpoints.
pub struct AdminOnly;
impl IntoResponses for AdminOnly {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let mut map = Unauthorized::responses();
        map.insert(
            "403".into(),
            RefOr::T(
                json_response("A client or viewer token on an admin endpoint", "ErrorBody").build(),
            ),
        );
        map
    }
}

/// 401 and 403: the ops API's reads (admin or viewer tokens).
pub struct Readers;
impl IntoResponses for Readers {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let mut map = Unauthorized::responses();
        map.insert(
            "403".into(),
            RefOr::T(json_response("A client token on an ops read", "ErrorBody").build()),
        );
        map
    }
}

/// 429 with `Retry-After`.
pub struct RateLimited;
impl IntoResponses for RateLimited {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        one(
            429,
            json_response("Signal rate limit exceeded", "ErrorBody")
                .header("Retry-After", string_header("Seconds to wait"))
                .build(),
        )
    }
}

// ---------------------------------------------------------------- flags and segments

fn null_only() -> Schema {
    Schema::Object(
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Null)
            .build(),
    )
}

/// A flag (`FlagDef` of `rollgate-eval`), as written and as answered.
#[derive(Deserialize, ToSchema)]
#[schema(as = Flag)]
#[serde(deny_unknown_fields)]
pub struct FlagSchema {
    /// Same as the path's key.
    #[schema(pattern = "^[a-z0-9][a-z0-9._-]{0,127}$")]
    pub key: String,
    /// The JSON type of every variant value.
    #[serde(rename = "type")]
    pub flag_type: FlagTypeSchema,
    /// Variant name → value (of the flag's type); must hold `off_variant` and `on_variant`.
    #[schema(value_type = Object, additional_properties)]
    pub variants: BTreeMap<String, Value>,
    /// A key of `variants`: what everyone gets when killed or rolled back.
    pub off_variant: String,
    /// A key of `variants`: what the rollout serves its cohort.
    pub on_variant: String,
    /// Kill switch (default `true`).
    #[serde(default)]
    pub enabled: bool,
    /// 0–100, resolution 0.001 (default 0).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 100)]
    pub rollout: f64,
    /// Ordered targeting rules; the first match wins.
    #[serde(default)]
    pub rules: Vec<RuleSchema>,
    /// Release audiences, after the rules, before `rollout`: the first whose segment matches
    /// serves its own `rollout` (written by the release controller; docs/releases.md).
    #[serde(default)]
    pub audiences: Vec<AudienceSchema>,
    /// Bucketing salt (default: the key; a PUT without it keeps the salt in force).
    #[serde(default)]
    pub salt: Option<String>,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// Free labels.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Policy guarding the flag when ramped by hand (must exist).
    #[serde(default)]
    pub policy: Option<String>,
}

/// A release audience of a flag (docs/bucketing.md).
#[derive(Deserialize, ToSchema)]
#[schema(as = FlagAudience)]
#[serde(deny_unknown_fields)]
pub struct AudienceSchema {
    /// An existing segment's key (each segment at most once per flag).
    pub segment: String,
    /// 0–100, resolution 0.001 (default 0): the audience's share of `on_variant`.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 100)]
    pub rollout: f64,
}

/// `boolean`, `string`, `number` or `object`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = FlagType)]
pub enum FlagTypeSchema {
    Boolean,
    String,
    Number,
    Object,
}

/// A targeting rule: `variant` or `rollout` (exactly one).
#[derive(Deserialize, ToSchema)]
#[schema(as = Rule)]
#[serde(deny_unknown_fields)]
pub struct RuleSchema {
    /// All must hold (empty: always).
    #[serde(default)]
    pub when: Vec<ConditionSchema>,
    /// A key of the flag's `variants`.
    #[serde(default)]
    pub variant: Option<String>,
    /// 0–100, resolution 0.001: the matching users' share of `on_variant`.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 100)]
    pub rollout: Option<f64>,
}

/// A condition: an attribute test or a segment reference.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[schema(as = Condition)]
pub enum ConditionSchema {
    Attribute(AttributeCondition),
    Segment(SegmentCondition),
}

/// `{"attribute", "op", "values"}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttributeCondition {
    /// Context attribute (`targetingKey` included).
    pub attribute: String,
    pub op: OpSchema,
    /// Operands (non-empty; their type must fit the operator).
    pub values: Vec<Value>,
    /// Absent or `null`.
    #[serde(default)]
    #[schema(schema_with = null_only)]
    pub segment: Option<()>,
}

/// `{"segment"}`: every condition of that segment holds.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentCondition {
    /// Key of an existing segment.
    pub segment: String,
    /// Absent or `null`.
    #[serde(default)]
    #[schema(schema_with = null_only)]
    pub attribute: Option<()>,
    /// Absent or `null`.
    #[serde(default)]
    #[schema(schema_with = null_only)]
    pub op: Option<()>,
    /// Absent or `null`.
    #[serde(default)]
    #[schema(schema_with = null_only)]
    pub values: Option<()>,
}

/// Condition operators.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = Op)]
pub enum OpSchema {
    Eq,
    Neq,
    In,
    NotIn,
    Lt,
    Lte,
    Gt,
    Gte,
    SemverLt,
    SemverLte,
    SemverGt,
    SemverGte,
    StartsWith,
    EndsWith,
    Contains,
    Matches,
}

/// A segment (`SegmentDef` of `rollgate-eval`).
#[derive(Deserialize, ToSchema)]
#[schema(as = Segment)]
#[serde(deny_unknown_fields)]
pub struct SegmentSchema {
    /// Same as the path's key.
    #[schema(pattern = "^[a-z0-9][a-z0-9._-]{0,127}$")]
    pub key: String,
    /// All must hold; no `segment` conditions here.
    pub when: Vec<ConditionSchema>,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
}

/// `GET /api/v1/flags`.
#[derive(ToSchema)]
pub struct FlagList {
    flags: Vec<FlagSchema>,
}

/// `GET /api/v1/segments`.
#[derive(ToSchema)]
pub struct SegmentList {
    segments: Vec<SegmentSchema>,
}

/// `GET /api/v1/client/config`.
#[derive(ToSchema)]
pub struct ClientConfig {
    /// The config revision of this snapshot (docs/clients.md).
    revision: u64,
    flags: Vec<FlagSchema>,
    segments: Vec<SegmentSchema>,
    /// The bucketing rule, for local evaluators.
    bucketing: String,
}

// ---------------------------------------------------------------- signals

/// `POST /api/v1/signals` body (`signals::SignalBatch`).
#[derive(Deserialize, ToSchema)]
#[schema(as = SignalBatch)]
#[serde(deny_unknown_fields)]
pub struct SignalBatchSchema {
    /// At most `max_signals_per_batch` (10,000 by default).
    #[schema(max_items = 10000)]
    pub signals: Vec<SignalSchema>,
    /// What the sending client has applied (docs/clients.md); with `signals: []`, a heartbeat.
    #[serde(default)]
    pub client: Option<ClientReportSchema>,
}

/// The `client` report of a signal batch (`signals::ClientReport`).
#[derive(Deserialize, ToSchema)]
#[schema(as = ClientReport)]
#[serde(deny_unknown_fields)]
pub struct ClientReportSchema {
    /// A random id per client instance, stable for its life.
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,64}$")]
    pub id: String,
    /// The highest revision the client has applied.
    #[schema(minimum = 0)]
    pub revision: u64,
    /// How long before sending the client applied `revision`, in ms (at most a day).
    #[schema(minimum = 0, maximum = 86_400_000)]
    pub applied_ms_ago: u64,
    /// Name/version of the client library.
    #[serde(default)]
    #[schema(max_length = 64)]
    pub sdk: Option<String>,
    /// The client's last report before it shuts down: it stops counting as live at once.
    #[serde(default)]
    pub closing: bool,
}

/// One signal.
#[derive(Deserialize, ToSchema)]
#[schema(as = Signal)]
#[serde(deny_unknown_fields)]
pub struct SignalSchema {
    /// Flag key (an unknown flag is reported in `errors`, not refused).
    pub flag: String,
    /// Variant served.
    pub variant: String,
    /// `exposure` or a metric name.
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,64}$")]
    pub metric: String,
    /// Number of events (default 1).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub count: Option<u64>,
    /// A value such as a latency in seconds (`count` observations of it).
    #[serde(default)]
    #[schema(minimum = -1e12, maximum = 1e12)]
    pub value: Option<f64>,
    /// The release audience the evaluation named (OFREP `metadata.audience`); absent: the
    /// signal counts for everyone else (docs/clients.md).
    #[serde(default)]
    #[schema(pattern = "^[a-z0-9][a-z0-9._-]{0,127}$")]
    pub audience: Option<String>,
    /// Pre-aggregated observations of a value metric (then no `count` and no `value`).
    #[serde(default)]
    pub histogram: Option<HistogramSchema>,
    /// The user, if known (not aggregated).
    #[serde(default, rename = "targetingKey")]
    pub targeting_key: Option<String>,
    /// When it happened (informational): an RFC 3339 time or Unix milliseconds.
    #[serde(default)]
    #[schema(schema_with = timestamp_schema)]
    pub timestamp: Option<Value>,
}

/// A signal's pre-aggregated histogram (`signals::Histogram`, docs/api.md): `counts[i]`
/// observations in `(bounds[i-1], bounds[i]]`, each recorded at `bounds[i]`.
#[derive(Deserialize, ToSchema)]
#[schema(as = Histogram)]
#[serde(deny_unknown_fields)]
pub struct HistogramSchema {
    /// Bucket upper bounds, strictly increasing, each in [0, 1e12].
    #[schema(min_items = 1, max_items = 512)]
    pub bounds: Vec<f64>,
    /// Observations per bucket, as many as bounds, at least one in all, at most 1,000,000.
    #[schema(min_items = 1, max_items = 512)]
    pub counts: Vec<u64>,
}

/// Answer of `POST /api/v1/signals`.
#[derive(ToSchema)]
pub struct SignalReport {
    accepted: u64,
    rejected: u64,
    errors: Vec<SignalErrorSchema>,
}

/// A signal that was not applied.
#[derive(ToSchema)]
#[schema(as = SignalError)]
pub struct SignalErrorSchema {
    index: u64,
    error: String,
}

// ---------------------------------------------------------------- other answers

/// `{"status": "ok"}` / `{"status": "ready", "flags": N}`.
#[derive(ToSchema)]
pub struct HealthStatus {
    /// `ok` (healthz), `ready`, `degraded` (a cluster node without its database: serving, not
    /// writing) or `unavailable`.
    status: String,
    #[schema(nullable = false)]
    flags: Option<u64>,
    /// The last applied revision.
    #[schema(nullable = false)]
    revision: Option<u64>,
    /// Whether writes are accepted.
    #[schema(nullable = false)]
    writes: Option<bool>,
    /// Cluster only: this node's id.
    #[schema(nullable = false)]
    node: Option<String>,
    /// Cluster only: `up` or `unreachable`.
    #[schema(nullable = false)]
    database: Option<String>,
    /// Cluster only: whether this node holds the controller lease.
    #[schema(nullable = false)]
    leader: Option<bool>,
}

/// `GET /api/v1/policies`.
#[derive(ToSchema)]
pub struct PolicyList {
    policies: Vec<crate::policies::Policy>,
}

/// A token as listed (no secret).
#[derive(ToSchema)]
pub struct TokenInfo {
    name: String,
    role: crate::auth::Role,
    /// RFC 3339.
    created: String,
}

/// `GET /api/v1/tokens`.
#[derive(ToSchema)]
pub struct TokenList {
    tokens: Vec<TokenInfo>,
}

/// `GET /api/v1/audit`.
#[derive(ToSchema)]
pub struct AuditList {
    entries: Vec<crate::store::AuditEntry>,
}

/// A release's status (`controller::status::status_json`).
#[derive(ToSchema)]
pub struct ReleaseStatus {
    id: String,
    name: String,
    /// `pending`, `running`, `paused`, `completed`, `rolled_back`.
    state: String,
    policy: Option<String>,
    overlap: bool,
    cohort: crate::release::Cohort,
    /// Each module's state, percentage, stage and guard readings.
    #[schema(value_type = Vec<Object>)]
    modules: Vec<Value>,
}

/// `GET /api/v1/releases`.
#[derive(ToSchema)]
pub struct ReleaseList {
    releases: Vec<ReleaseStatus>,
}

/// Answer of the Alertmanager webhook: one outcome per alert.
#[derive(ToSchema)]
pub struct AlertActions {
    #[schema(value_type = Vec<Object>)]
    actions: Vec<Value>,
}

/// A signal's `timestamp`: an RFC 3339 time or a non-negative integer of Unix milliseconds
/// (`null` is the same as leaving it out).
fn timestamp_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, Type};
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0)),
        )
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .build()
        .into()
}
