//! Flags as code over HTTP: `POST /api/v1/apply` (a whole document, all or nothing, or its
//! diff with `dry_run`) and `GET /api/v1/export` (the state in force in the same shape).
//! docs/flags-as-code.md.

use super::error::ApiError;
use super::extract::{parse_json, Body};
use super::resource;
use super::schemas::{
    AdminOnly, ApplyDocument, ApplyOutcome, ErrorBody, Malformed, Readers, TooLarge,
};
use crate::auth::{Admin, Reader};
use crate::ops::apply::{self, ApplyRequest};
use crate::state::AppState;
use actix_web::{web, HttpResponse};

/// Registers the apply and export routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/v1/apply").route(web::post().to(apply_document)))
        .service(resource("/api/v1/export").route(web::get().to(export)));
}

/// `POST /api/v1/apply` — validates the whole document, then returns its diff (`dry_run`) or
/// applies all of it in one commit.
#[utoipa::path(post, path = "/api/v1/apply", tag = "apply", request_body = ApplyDocument,
    responses((status = 200, body = ApplyOutcome, description = "The diff; applied unless `dry_run`"), Malformed, AdminOnly,
        (status = 409, description = "`prune` would delete a flag a live release ramps or a segment or policy still used, or a plan's flag is in a live release", body = ErrorBody), TooLarge,
        (status = 422, description = "An object is invalid; `field` names it, e.g. `flags[2].rollout`", body = ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(name = "apply", skip_all)]
pub async fn apply_document(
    state: web::Data<AppState>,
    Admin(actor): Admin,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let req: ApplyRequest = parse_json(&body.0)?;
    let outcome = apply::apply(&state, &actor, req).await?;
    Ok(HttpResponse::Ok().json(outcome))
}

/// `GET /api/v1/export` — every flag, segment and policy, and the newest plan of each release
/// name, in the document shape `POST /api/v1/apply` takes.
#[utoipa::path(get, path = "/api/v1/export", tag = "apply",
    responses((status = 200, body = ApplyDocument), Readers), security(("bearer" = [])))]
#[tracing::instrument(name = "export", skip_all)]
pub async fn export(state: web::Data<AppState>, _reader: Reader) -> HttpResponse {
    HttpResponse::Ok().json(apply::export(&state).await)
}
