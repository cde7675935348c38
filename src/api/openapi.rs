//! The OpenAPI 3 document, generated from the handlers' annotations so it cannot drift.

use super::resource;
use actix_web::{web, HttpResponse};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
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
        super::segments::list, super::segments::get, super::segments::put,
        super::policies::list, super::policies::get, super::policies::put,
        super::tokens::create, super::tokens::list, super::tokens::delete,
        super::audit::list,
        super::stream::stream, super::signals::ingest_batch, super::alerts::alertmanager,
        super::releases::create, super::releases::list, super::releases::get,
        super::releases::start, super::releases::pause, super::releases::resume, super::releases::rollback,
        super::health::healthz, super::health::readyz, super::health::metrics,
        document,
    ),
    components(schemas(
        super::flags::RolloutRequest, super::flags::ReasonRequest,
        super::tokens::CreateToken, super::tokens::CreatedToken,
        crate::store::AuditEntry, crate::auth::Role,
        crate::policies::Policy, crate::policies::Guard, crate::policies::StagePlan,
        crate::policies::Scope, crate::policies::GuardClass,
        crate::release::ReleasePlan, crate::release::ModulePlan, crate::release::StagesOverride, crate::release::Cohort,
        super::alerts::AlertmanagerPayload, super::alerts::Alert,
    )),
    modifiers(&BearerAuth)
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

/// `GET /api/v1/openapi.json`
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations", responses((status = 200, description = "This document")))]
pub async fn document() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
