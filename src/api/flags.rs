//! Ops API for flags: CRUD, manual rollout, kill switch.

use super::error::ApiError;
use super::extract::{parse_json, Body, Key};
use super::resource;
use super::schemas::{
    AdminOnly, Conflict, FlagSchema, Invalid, Malformed, NotFound, Readers, TooLarge,
};
use crate::auth::{Admin, Reader};
use crate::ops;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use rollgate_eval::{FlagDef, Percentage};
use serde::{Deserialize, Serialize};

/// Registers the flag routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/v1/flags").route(web::get().to(list)))
        .service(
            resource("/api/v1/flags/{key}")
                .route(web::get().to(get))
                .route(web::put().to(put))
                .route(web::delete().to(delete)),
        )
        .service(resource("/api/v1/flags/{key}/rollout").route(web::put().to(rollout)))
        .service(resource("/api/v1/flags/{key}/kill").route(web::post().to(kill)))
        .service(resource("/api/v1/flags/{key}/unkill").route(web::post().to(unkill)));
}

/// Body of `PUT /api/v1/flags/{key}/rollout`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutRequest {
    /// New percentage, 0–100 with 0.001 resolution.
    #[schema(value_type = f64, example = 12.5, minimum = 0, maximum = 100)]
    pub percentage: Percentage,
    /// Why (recorded in the audit log; overrides `X-Rollgate-Reason`).
    #[serde(default)]
    pub reason: Option<String>,
}

/// Optional body of kill / unkill.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonRequest {
    /// Why (recorded in the audit log).
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Serialize)]
struct FlagList<'a> {
    flags: Vec<&'a FlagDef>,
}

/// `GET /api/v1/flags`
#[utoipa::path(get, path = "/api/v1/flags", tag = "flags",
    responses((status = 200, body = super::schemas::FlagList), Readers), security(("bearer" = [])))]
#[tracing::instrument(name = "flags.list", skip_all)]
pub async fn list(state: web::Data<AppState>, _reader: Reader) -> HttpResponse {
    let live = state.live.load();
    HttpResponse::Ok().json(FlagList {
        flags: live.flags().iter().map(|f| &f.def).collect(),
    })
}

/// `GET /api/v1/flags/{key}`
#[utoipa::path(get, path = "/api/v1/flags/{key}", tag = "flags", params(("key" = String, Path)),
    responses((status = 200, body = FlagSchema), Readers, NotFound), security(("bearer" = [])))]
#[tracing::instrument(name = "flags.get", skip_all, fields(flag = %key.as_str()))]
pub async fn get(
    state: web::Data<AppState>,
    _reader: Reader,
    key: Key,
) -> Result<HttpResponse, ApiError> {
    let live = state.live.load();
    let flag = live
        .get(&key)
        .ok_or_else(|| ApiError::NotFound(format!("flag {:?} not found", key.as_str())))?;
    Ok(HttpResponse::Ok().json(&flag.def))
}

/// `PUT /api/v1/flags/{key}` — create (201) or replace (200).
#[utoipa::path(put, path = "/api/v1/flags/{key}", tag = "flags", params(("key" = String, Path)),
    request_body = FlagSchema,
    responses((status = 200, description = "Replaced", body = FlagSchema), (status = 201, description = "Created", body = FlagSchema),
        Malformed, AdminOnly, TooLarge, Invalid), security(("bearer" = [])))]
#[tracing::instrument(name = "flags.put", skip_all, fields(flag = %key.as_str()))]
pub async fn put(
    state: web::Data<AppState>,
    Admin(actor): Admin,
    key: Key,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let def: FlagDef = parse_json(&body.0)?;
    let created = ops::flags::put(&state, &actor, &key, def).await?;
    let live = state.live.load();
    let saved = live.get(&key).map(|f| &f.def);
    Ok(if created {
        HttpResponse::Created().json(saved)
    } else {
        HttpResponse::Ok().json(saved)
    })
}

/// `DELETE /api/v1/flags/{key}`
#[utoipa::path(delete, path = "/api/v1/flags/{key}", tag = "flags", params(("key" = String, Path)),
    responses((status = 204, description = "Deleted"), AdminOnly, NotFound, Conflict), security(("bearer" = [])))]
#[tracing::instrument(name = "flags.delete", skip_all, fields(flag = %key.as_str()))]
pub async fn delete(
    state: web::Data<AppState>,
    Admin(actor): Admin,
    key: Key,
    _body: Body,
) -> Result<HttpResponse, ApiError> {
    ops::flags::delete(&state, &actor, &key).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `PUT /api/v1/flags/{key}/rollout` — manual ramp.
#[utoipa::path(put, path = "/api/v1/flags/{key}/rollout", tag = "flags", params(("key" = String, Path)),
    request_body = RolloutRequest, responses((status = 200, description = "The updated flag", body = FlagSchema),
        Malformed, AdminOnly, NotFound, TooLarge, Invalid), security(("bearer" = [])))]
#[tracing::instrument(name = "flags.rollout", skip_all, fields(flag = %key.as_str()))]
pub async fn rollout(
    state: web::Data<AppState>,
    Admin(mut actor): Admin,
    key: Key,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let request: RolloutRequest = parse_json(&body.0)?;
    actor.reason = request.reason.or(actor.reason);
    let def = ops::flags::set_rollout(&state, &actor, &key, request.percentage).await?;
    Ok(HttpResponse::Ok().json(def))
}

/// `POST /api/v1/flags/{key}/kill`
#[utoipa::path(post, path = "/api/v1/flags/{key}/kill", tag = "flags", params(("key" = String, Path)),
    request_body(content = Option<ReasonRequest>, description = "Optional: an empty body is no reason"),
    responses((status = 200, description = "The killed flag", body = FlagSchema), Malformed, AdminOnly, NotFound, TooLarge),
    security(("bearer" = [])))]
#[tracing::instrument(name = "flags.kill", skip_all, fields(flag = %key.as_str()))]
pub async fn kill(
    state: web::Data<AppState>,
    admin: Admin,
    key: Key,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    switch(state, key, body, admin, false).await
}

/// `POST /api/v1/flags/{key}/unkill`
#[utoipa::path(post, path = "/api/v1/flags/{key}/unkill", tag = "flags", params(("key" = String, Path)),
    request_body(content = Option<ReasonRequest>, description = "Optional: an empty body is no reason"),
    responses((status = 200, description = "The revived flag", body = FlagSchema), Malformed, AdminOnly, NotFound, TooLarge),
    security(("bearer" = [])))]
#[tracing::instrument(name = "flags.unkill", skip_all, fields(flag = %key.as_str()))]
pub async fn unkill(
    state: web::Data<AppState>,
    admin: Admin,
    key: Key,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    switch(state, key, body, admin, true).await
}

async fn switch(
    state: web::Data<AppState>,
    key: Key,
    body: Body,
    Admin(mut actor): Admin,
    enabled: bool,
) -> Result<HttpResponse, ApiError> {
    let request: ReasonRequest = if body.0.iter().all(u8::is_ascii_whitespace) {
        ReasonRequest::default()
    } else {
        parse_json(&body.0)?
    };
    actor.reason = request.reason.or(actor.reason);
    let def = ops::flags::set_enabled(&state, &actor, &key, enabled).await?;
    Ok(HttpResponse::Ok().json(def))
}
