//! Ops API for releases: create, list, status, and the operator commands.

use super::error::ApiError;
use super::extract::{parse_json, Admin, Body};
use crate::controller::ReleaseCommand;
use crate::release::ReleasePlan;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use serde_json::json;

/// `POST /api/v1/releases` — creates a release in state `pending`.
#[utoipa::path(post, path = "/api/v1/releases", tag = "releases", request_body = ReleasePlan,
    responses((status = 201, description = "{\"id\", \"name\", \"state\": \"pending\", ...}"), (status = 400, description = "Malformed"),
        (status = 409, description = "A flag already belongs to a live release"), (status = 422, description = "Unknown flag or policy, bad stages")),
    security(("bearer" = [])))]
pub async fn create(
    state: web::Data<AppState>,
    body: Body,
    Admin(actor): Admin,
) -> Result<HttpResponse, ApiError> {
    let plan: ReleasePlan = parse_json(&body.0)?;
    let release = state.create_release(&actor, plan).await?;
    Ok(HttpResponse::Created().json(state.status_json(&release)))
}

/// `GET /api/v1/releases`
#[utoipa::path(get, path = "/api/v1/releases", tag = "releases", responses((status = 200, description = "{\"releases\": [status]}")), security(("bearer" = [])))]
pub async fn list(state: web::Data<AppState>, _admin: Admin) -> HttpResponse {
    let releases = state.releases().await;
    let list: Vec<_> = releases.iter().map(|r| state.status_json(r)).collect();
    HttpResponse::Ok().json(json!({ "releases": list }))
}

/// `GET /api/v1/releases/{id}` — every module's state, percentage, stage and guard readings.
#[utoipa::path(get, path = "/api/v1/releases/{id}", tag = "releases", params(("id" = String, Path, description = "Release id (or name)")),
    responses((status = 200, description = "Release status"), (status = 404, description = "Unknown release")), security(("bearer" = [])))]
pub async fn get(
    state: web::Data<AppState>,
    id: web::Path<String>,
    _admin: Admin,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.release_status(&id).await?))
}

async fn command(
    state: web::Data<AppState>,
    id: &str,
    body: &[u8],
    actor: crate::ops::Actor,
    cmd: ReleaseCommand,
) -> Result<HttpResponse, ApiError> {
    let mut actor = actor;
    if !body.iter().all(u8::is_ascii_whitespace) {
        let request: super::flags::ReasonRequest = parse_json(body)?;
        actor.reason = request.reason.or(actor.reason);
    }
    let release = state.release_command(&actor, id, cmd).await?;
    Ok(HttpResponse::Ok().json(state.status_json(&release)))
}

/// `POST /api/v1/releases/{id}/start`
#[utoipa::path(post, path = "/api/v1/releases/{id}/start", tag = "releases", params(("id" = String, Path)),
    responses((status = 200, description = "Release status"), (status = 409, description = "Already started")), security(("bearer" = [])))]
pub async fn start(
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: Body,
    Admin(actor): Admin,
) -> Result<HttpResponse, ApiError> {
    command(state, &id, &body.0, actor, ReleaseCommand::Start).await
}

/// `POST /api/v1/releases/{id}/pause`
#[utoipa::path(post, path = "/api/v1/releases/{id}/pause", tag = "releases", params(("id" = String, Path)),
    responses((status = 200, description = "Release status"), (status = 409, description = "Nothing to pause")), security(("bearer" = [])))]
pub async fn pause(
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: Body,
    Admin(actor): Admin,
) -> Result<HttpResponse, ApiError> {
    command(state, &id, &body.0, actor, ReleaseCommand::Pause).await
}

/// `POST /api/v1/releases/{id}/resume`
#[utoipa::path(post, path = "/api/v1/releases/{id}/resume", tag = "releases", params(("id" = String, Path)),
    responses((status = 200, description = "Release status"), (status = 409, description = "Nothing to resume")), security(("bearer" = [])))]
pub async fn resume(
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: Body,
    Admin(actor): Admin,
) -> Result<HttpResponse, ApiError> {
    command(state, &id, &body.0, actor, ReleaseCommand::Resume).await
}

/// `POST /api/v1/releases/{id}/rollback`
#[utoipa::path(post, path = "/api/v1/releases/{id}/rollback", tag = "releases", params(("id" = String, Path)),
    responses((status = 200, description = "Release status"), (status = 409, description = "Nothing to roll back")), security(("bearer" = [])))]
pub async fn rollback(
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: Body,
    Admin(actor): Admin,
) -> Result<HttpResponse, ApiError> {
    command(state, &id, &body.0, actor, ReleaseCommand::Rollback).await
}
