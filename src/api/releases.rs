//! Ops API for releases: create, list, status, and the operator commands.

use super::error::ApiError;
use super::extract::{parse_json, Body, Key};
use super::resource;
use super::schemas::{
    AdminOnly, ErrorBody, Malformed, NotFound, Readers, ReleaseList, ReleaseStatus, TooLarge,
};
use crate::auth::{Actor, Admin, Reader};
use crate::controller::{commands, status, ReleaseCommand};
use crate::release::ReleasePlan;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use serde_json::json;

/// Registers the release routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/api/v1/releases")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .service(resource("/api/v1/releases/{id}").route(web::get().to(get)))
    .service(resource("/api/v1/releases/{id}/start").route(web::post().to(start)))
    .service(resource("/api/v1/releases/{id}/pause").route(web::post().to(pause)))
    .service(resource("/api/v1/releases/{id}/resume").route(web::post().to(resume)))
    .service(resource("/api/v1/releases/{id}/rollback").route(web::post().to(rollback)))
    .service(resource("/api/v1/releases/{id}/advance").route(web::post().to(advance)));
}

/// `POST /api/v1/releases` — creates a release in state `pending`.
#[utoipa::path(post, path = "/api/v1/releases", tag = "releases", request_body = ReleasePlan,
    responses((status = 201, body = ReleaseStatus, description = "The release, in state `pending`"), Malformed, AdminOnly,
        (status = 409, description = "A flag already belongs to a live release", body = ErrorBody), TooLarge,
        (status = 422, description = "Unknown flag or policy, bad stages", body = ErrorBody)),
    security(("bearer" = [])))]
#[tracing::instrument(name = "releases.create", skip_all)]
pub async fn create(
    state: web::Data<AppState>,
    Admin(actor): Admin,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let plan: ReleasePlan = parse_json(&body.0)?;
    let release = commands::create_release(&state, &actor, plan).await?;
    Ok(HttpResponse::Created().json(status::status_json(&state, &release)))
}

/// `GET /api/v1/releases`
#[utoipa::path(get, path = "/api/v1/releases", tag = "releases", responses((status = 200, body = ReleaseList), Readers), security(("bearer" = [])))]
#[tracing::instrument(name = "releases.list", skip_all)]
pub async fn list(state: web::Data<AppState>, _reader: Reader) -> HttpResponse {
    let releases = status::releases(&state).await;
    let list: Vec<_> = releases
        .iter()
        .map(|r| status::status_json(&state, r))
        .collect();
    HttpResponse::Ok().json(json!({ "releases": list }))
}

/// `GET /api/v1/releases/{id}` — every module's state, percentage, stage and guard readings.
#[utoipa::path(get, path = "/api/v1/releases/{id}", tag = "releases", params(("id" = String, Path, description = "Release id (or name)")),
    responses((status = 200, body = ReleaseStatus), Readers, NotFound), security(("bearer" = [])))]
#[tracing::instrument(name = "releases.get", skip_all, fields(release = %id.as_str()))]
pub async fn get(
    state: web::Data<AppState>,
    _reader: Reader,
    id: Key,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(status::release_status(&state, &id).await?))
}

#[tracing::instrument(name = "releases.command", skip(state, body, actor))]
async fn command(
    state: web::Data<AppState>,
    id: &str,
    body: &[u8],
    actor: Actor,
    cmd: ReleaseCommand,
) -> Result<HttpResponse, ApiError> {
    let mut actor = actor;
    if !body.iter().all(u8::is_ascii_whitespace) {
        let request: super::flags::ReasonRequest = parse_json(body)?;
        actor.reason = request.reason.or(actor.reason);
    }
    let release = commands::release_command(&state, &actor, id, cmd).await?;
    Ok(HttpResponse::Ok().json(status::status_json(&state, &release)))
}

/// `POST /api/v1/releases/{id}/start`
#[utoipa::path(post, path = "/api/v1/releases/{id}/start", tag = "releases", params(("id" = String, Path)),
    request_body(content = Option<super::flags::ReasonRequest>, description = "Optional: an empty body is no reason"),
    responses((status = 200, body = ReleaseStatus), Malformed, AdminOnly, NotFound,
        (status = 409, description = "Already started", body = ErrorBody), TooLarge), security(("bearer" = [])))]
pub async fn start(
    state: web::Data<AppState>,
    Admin(actor): Admin,
    id: Key,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    command(state, &id, &body.0, actor, ReleaseCommand::Start).await
}

/// `POST /api/v1/releases/{id}/pause`
#[utoipa::path(post, path = "/api/v1/releases/{id}/pause", tag = "releases", params(("id" = String, Path)),
    request_body(content = Option<super::flags::ReasonRequest>, description = "Optional: an empty body is no reason"),
    responses((status = 200, body = ReleaseStatus), Malformed, AdminOnly, NotFound,
        (status = 409, description = "Nothing to pause", body = ErrorBody), TooLarge), security(("bearer" = [])))]
pub async fn pause(
    state: web::Data<AppState>,
    Admin(actor): Admin,
    id: Key,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    command(state, &id, &body.0, actor, ReleaseCommand::Pause).await
}

/// `POST /api/v1/releases/{id}/resume`
#[utoipa::path(post, path = "/api/v1/releases/{id}/resume", tag = "releases", params(("id" = String, Path)),
    request_body(content = Option<super::flags::ReasonRequest>, description = "Optional: an empty body is no reason"),
    responses((status = 200, body = ReleaseStatus), Malformed, AdminOnly, NotFound,
        (status = 409, description = "Nothing to resume", body = ErrorBody), TooLarge), security(("bearer" = [])))]
pub async fn resume(
    state: web::Data<AppState>,
    Admin(actor): Admin,
    id: Key,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    command(state, &id, &body.0, actor, ReleaseCommand::Resume).await
}

/// `POST /api/v1/releases/{id}/rollback`
#[utoipa::path(post, path = "/api/v1/releases/{id}/rollback", tag = "releases", params(("id" = String, Path)),
    request_body(content = Option<super::flags::ReasonRequest>, description = "Optional: an empty body is no reason"),
    responses((status = 200, body = ReleaseStatus), Malformed, AdminOnly, NotFound,
        (status = 409, description = "Nothing to roll back", body = ErrorBody), TooLarge), security(("bearer" = [])))]
pub async fn rollback(
    state: web::Data<AppState>,
    Admin(actor): Admin,
    id: Key,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    command(state, &id, &body.0, actor, ReleaseCommand::Rollback).await
}

/// `POST /api/v1/releases/{id}/advance` — releases the protected audiences that wait for an
/// operator (`"advance": "manual"`, docs/releases.md#audiences).
#[utoipa::path(post, path = "/api/v1/releases/{id}/advance", tag = "releases", params(("id" = String, Path)),
    request_body(content = Option<super::flags::ReasonRequest>, description = "Optional: an empty body is no reason"),
    responses((status = 200, body = ReleaseStatus), Malformed, AdminOnly, NotFound,
        (status = 409, description = "No audience waits for an advance", body = ErrorBody), TooLarge), security(("bearer" = [])))]
pub async fn advance(
    state: web::Data<AppState>,
    Admin(actor): Admin,
    id: Key,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    command(state, &id, &body.0, actor, ReleaseCommand::Advance).await
}
