//! Ops API for rollback drills (`crate::drills`; docs/api.md, "Drills"): run one, list the
//! kept results newest first, read one.

use super::error::ApiError;
use super::extract::{parse_json, Body, Key, Query};
use super::resource;
use super::schemas::{AdminOnly, Conflict, Invalid, Malformed, NotFound, Readers, TooLarge};
use crate::auth::{Admin, Reader};
use crate::drills::{self, DrillResult};
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use serde::Deserialize;

/// Registers the drill routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/api/v1/drills")
            .route(web::get().to(list))
            .route(web::post().to(run)),
    )
    .service(resource("/api/v1/drills/{id}").route(web::get().to(get)));
}

/// Optional body of `POST /api/v1/drills`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DrillRequest {
    /// The drill flag (default `rollgate-drill`; created when missing). Never a flag in a live
    /// release or guarded by a policy.
    #[serde(default)]
    pub flag: Option<String>,
    /// Longest wait for the streams, the clients' reports and the webhook after each step, ms
    /// (default 3000, at most 60000).
    #[serde(default, deserialize_with = "crate::json_int::option_u64")]
    #[schema(minimum = 0, maximum = 60000)]
    pub wait_ms: Option<u64>,
}

/// Query of `GET /api/v1/drills`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DrillParams {
    /// At most this many results (1–1000, default 50).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// Answer of `GET /api/v1/drills`.
#[allow(dead_code)]
#[derive(utoipa::ToSchema)]
pub struct DrillList {
    /// Newest first.
    drills: Vec<DrillResult>,
}

/// `POST /api/v1/drills` — kill and revive the drill flag, measure, keep and answer the result.
#[utoipa::path(post, path = "/api/v1/drills", tag = "drills",
    request_body(content = Option<DrillRequest>, description = "Optional: an empty body drills `rollgate-drill`"),
    responses((status = 201, description = "The drill's result (`passed` false when a check failed)", body = DrillResult),
        Malformed, AdminOnly, Conflict, TooLarge, Invalid),
    security(("bearer" = [])))]
#[tracing::instrument(name = "drills.run", skip_all)]
pub async fn run(
    state: web::Data<AppState>,
    Admin(actor): Admin,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let request: DrillRequest = if body.0.iter().all(u8::is_ascii_whitespace) {
        DrillRequest::default()
    } else {
        parse_json(&body.0)?
    };
    let request = drills::request(request.flag, request.wait_ms)
        .map_err(|e| ApiError::invalid(e.field, e.message))?;
    let result = drills::run(&state, &actor, request).await?;
    Ok(HttpResponse::Created().json(result))
}

/// `GET /api/v1/drills?limit=` — newest first, from every node.
#[utoipa::path(get, path = "/api/v1/drills", tag = "drills", params(DrillParams),
    responses((status = 200, body = DrillList, description = "Newest first"), Malformed, Readers, Invalid),
    security(("bearer" = [])))]
#[tracing::instrument(name = "drills.list", skip_all)]
pub async fn list(
    state: web::Data<AppState>,
    _reader: Reader,
    params: Query<DrillParams>,
) -> Result<HttpResponse, ApiError> {
    let limit = params.into_inner().limit.unwrap_or(50);
    if !(1..=drills::MAX_KEPT).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be between 1 and 1000"));
    }
    let list = drills::list(&state, limit).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "drills": list })))
}

/// `GET /api/v1/drills/{id}`
#[utoipa::path(get, path = "/api/v1/drills/{id}", tag = "drills", params(("id" = String, Path, description = "Drill id")),
    responses((status = 200, body = DrillResult), Readers, NotFound), security(("bearer" = [])))]
#[tracing::instrument(name = "drills.get", skip_all, fields(drill = %id.as_str()))]
pub async fn get(
    state: web::Data<AppState>,
    _reader: Reader,
    id: Key,
) -> Result<HttpResponse, ApiError> {
    let not_found = || ApiError::NotFound(format!("drill {:?} not found", id.as_str()));
    let uuid = uuid::Uuid::parse_str(&id).map_err(|_| not_found())?;
    match drills::get(&state, uuid).await? {
        Some(result) => Ok(HttpResponse::Ok().json(result)),
        None => Err(not_found()),
    }
}
