//! The OpenAPI 3 document, generated from the handlers' annotations so it cannot drift. The
//! schemas that no handler type carries are in `schemas.rs`; 405 answers take their `Allow`
//! header from this document ([`allowed_methods`]), and `tests/api/openapi.rs` checks that the
//! routes and the document agree.

use super::resource;
use super::schemas;
use crate::state::{AppState, Limits};
use actix_web::{web, HttpResponse};
use std::collections::HashMap;
use std::sync::LazyLock;
use utoipa::openapi::path::Operation;
use utoipa::openapi::request_body::RequestBody;
use utoipa::openapi::schema::{Schema, SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{RefOr, Required};
use utoipa::{Modify, OpenApi};

/// Registers the document's route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/v1/openapi.json").route(web::get().to(document)));
}

/// Every endpoint of the server.
#[derive(OpenApi)]
#[openapi(
    info(title = "rollgate", description = "Feature flags with module-by-module staged rollouts and automatic rollback."),
    paths(
        super::ofrep::evaluate_one, super::ofrep::evaluate_all,
        super::client::config,
        super::flags::list, super::flags::get, super::flags::put, super::flags::delete,
        super::flags::rollout, super::flags::kill, super::flags::unkill,
        super::segments::list, super::segments::get, super::segments::put, super::segments::delete,
        super::apply::apply_document, super::apply::export,
        super::policies::list, super::policies::get, super::policies::put, super::policies::delete, super::policies::rehearse,
        super::tokens::create, super::tokens::list, super::tokens::delete,
        super::audit::list,
        super::stream::stream, super::signals::ingest_batch, super::alerts::alertmanager,
        super::releases::create, super::releases::list, super::releases::get,
        super::releases::start, super::releases::pause, super::releases::resume, super::releases::rollback, super::releases::advance,
        super::history::history, super::history::stream, super::ui::whoami,
        super::reach::list,
        super::drills::run, super::drills::list, super::drills::get,
        super::health::healthz, super::health::readyz, super::health::metrics,
        document,
    ),
    components(schemas(
        super::flags::RolloutRequest, super::flags::ReasonRequest,
        super::tokens::CreateToken, super::tokens::CreatedToken,
        crate::store::AuditEntry, crate::auth::Role,
        crate::policies::Policy, crate::policies::Guard, crate::policies::StagePlan,
        crate::policies::Scope, crate::policies::GuardClass,
        crate::sources::GuardSource, crate::sources::PromQuery,
        crate::rehearsal::RehearsalRequest, crate::rehearsal::RehearsalReport,
        crate::rehearsal::AaFigures, crate::rehearsal::RegressionFigures,
        crate::rehearsal::StageGuard, crate::rehearsal::Quantiles,
        crate::release::ReleasePlan, crate::release::ModulePlan, crate::release::StagesOverride, crate::release::Cohort, crate::release::AudiencePlan, crate::release::Advance,
        super::alerts::AlertmanagerPayload, super::alerts::Alert,
        super::stream::StreamFormat,
        schemas::ErrorBody, schemas::ErrorDetail, schemas::ErrorCode,
        schemas::ApplyDocument, schemas::ApplyOutcome, schemas::ApplyChange, schemas::ApplyField, schemas::ApplyOp, schemas::ApplyKind,
        schemas::OfrepError, schemas::OfrepErrorCode, schemas::OfrepSuccess, schemas::OfrepEntry,
        schemas::OfrepEventStream, schemas::OfrepBulk, schemas::OfrepRequest, schemas::OfrepContext,
        schemas::FlagSchema, schemas::FlagTypeSchema, schemas::RuleSchema, schemas::AudienceSchema, schemas::ConditionSchema,
        schemas::AttributeCondition, schemas::SegmentCondition, schemas::OpSchema, schemas::SegmentSchema,
        schemas::FlagList, schemas::SegmentList, schemas::ClientConfig,
        schemas::SignalBatchSchema, schemas::ClientReportSchema, schemas::SignalSchema, schemas::HistogramSchema, schemas::SignalReport, schemas::SignalErrorSchema,
        schemas::HealthStatus, schemas::PolicyList, schemas::TokenInfo, schemas::TokenList,
        schemas::AuditList, schemas::ReleaseStatus, schemas::ReleaseList, schemas::AlertActions,
        super::reach::ReachList, super::reach::ReachFigures,
        super::history::ReleaseHistory, super::history::ModuleHistory, super::ui::WhoAmI,
        super::drills::DrillRequest, super::drills::DrillList, crate::drills::DrillResult, crate::drills::DrillStep,
        crate::drills::DrillStream, crate::drills::DrillReach, crate::drills::DrillCheck,
    )),
    modifiers(&BearerAuth, &OptionalBodies)
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Optional is not nullable where the wire has no null: an optional body (`content =
/// Option<T>`) may be absent, but a JSON `null` is no body and the server refuses it; an
/// optional query parameter is absent or a string, never null.
struct OptionalBodies;

impl Modify for OptionalBodies {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for op in operations_mut(item) {
                if let Some(body) = op.request_body.as_mut() {
                    strip_null_if_optional(body);
                }
                for param in op.parameters.iter_mut().flatten() {
                    if let Some(schema) = param.schema.as_mut() {
                        strip_null(schema);
                    }
                }
            }
        }
    }
}

/// `T | null` → `T`, for `oneOf` and for `type: [T, "null"]`.
fn strip_null(schema: &mut RefOr<Schema>) {
    match schema {
        RefOr::T(Schema::OneOf(one_of)) => {
            let rest: Vec<_> = one_of
                .items
                .iter()
                .filter(|s| !is_null(s))
                .cloned()
                .collect();
            if let [only] = rest.as_slice() {
                *schema = only.clone();
            }
        }
        RefOr::T(Schema::Object(object)) => {
            if let SchemaType::Array(types) = &object.schema_type {
                let rest: Vec<Type> = types
                    .iter()
                    .filter(|t| **t != Type::Null)
                    .cloned()
                    .collect();
                if let [only] = rest.as_slice() {
                    object.schema_type = SchemaType::Type(only.clone());
                }
            }
        }
        _ => {}
    }
}

fn operations_mut(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.patch.as_mut(),
    ]
    .into_iter()
    .flatten()
}

fn strip_null_if_optional(body: &mut RequestBody) {
    if matches!(body.required, Some(Required::True)) {
        return;
    }
    body.required = Some(Required::False);
    for content in body.content.values_mut() {
        if let Some(schema) = content.schema.as_mut() {
            strip_null(schema);
        }
    }
}

fn is_null(schema: &RefOr<Schema>) -> bool {
    matches!(schema, RefOr::T(Schema::Object(o)) if o.schema_type == Type::Null.into())
}

/// The methods each documented path answers (the OpenAPI path, `{param}` style), for `Allow`.
static METHODS: LazyLock<HashMap<String, String>> = LazyLock::new(|| {
    let doc = ApiDoc::openapi();
    doc.paths
        .paths
        .iter()
        .map(|(path, item)| {
            let methods: Vec<&str> = [
                ("GET", item.get.is_some()),
                ("POST", item.post.is_some()),
                ("PUT", item.put.is_some()),
                ("DELETE", item.delete.is_some()),
                ("PATCH", item.patch.is_some()),
            ]
            .into_iter()
            .filter_map(|(m, present)| present.then_some(m))
            .collect();
            (path.clone(), methods.join(", "))
        })
        .collect()
});

/// The `Allow` value for an actix route pattern (`/api/v1/flags/{key}`, `{key:.*}` too).
pub fn allowed_methods(pattern: &str) -> Option<&'static str> {
    let mut path = String::with_capacity(pattern.len());
    let mut in_regex = false;
    for c in pattern.chars() {
        match c {
            ':' if path.ends_with(|p: char| p.is_alphanumeric() || p == '_') && open(&path) => {
                in_regex = true;
            }
            '}' => {
                in_regex = false;
                path.push(c);
            }
            _ if in_regex => {}
            _ => path.push(c),
        }
    }
    METHODS.get(&path).map(String::as_str)
}

/// Inside an unclosed `{`.
fn open(path: &str) -> bool {
    path.rfind('{') > path.rfind('}')
}

/// The document as served: the configured limits filled in.
fn served(limits: &Limits) -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    if let Some(RefOr::T(Schema::Object(batch))) = doc
        .components
        .as_mut()
        .and_then(|c| c.schemas.get_mut("SignalBatch"))
    {
        if let Some(RefOr::T(Schema::Array(signals))) = batch.properties.get_mut("signals") {
            signals.max_items = Some(limits.max_signals);
        }
    }
    doc
}

/// `GET /api/v1/openapi.json`
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "This document", content_type = "application/json", body = Object)))]
pub async fn document(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(served(&state.limits))
}
