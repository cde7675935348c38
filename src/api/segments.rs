//! Ops API for segments.

use super::error::ApiError;
use super::extract::{parse_json, Body, Key};
use super::resource;
use super::schemas::{
    AdminOnly, Conflict, Invalid, Malformed, NotFound, Readers, SegmentList, SegmentSchema,
    TooLarge,
};
use crate::auth::{Admin, Reader};
use crate::ops;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use rollgate_eval::SegmentDef;

/// Registers the segment routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/v1/segments").route(web::get().to(list)))
        .service(
            resource("/api/v1/segments/{key}")
                .route(web::get().to(get))
                .route(web::put().to(put))
                .route(web::delete().to(delete)),
        );
}

/// `GET /api/v1/segments`
#[utoipa::path(get, path = "/api/v1/segments", tag = "segments", responses((status = 200, body = SegmentList), Readers), security(("bearer" = [])))]
#[tracing::instrument(name = "segments.list", skip_all)]
pub async fn list(state: web::Data<AppState>, _reader: Reader) -> HttpResponse {
    let live = state.live.load();
    HttpResponse::Ok()
        .json(serde_json::json!({ "segments": live.segments.values().collect::<Vec<_>>() }))
}

/// `GET /api/v1/segments/{key}`
#[utoipa::path(get, path = "/api/v1/segments/{key}", tag = "segments", params(("key" = String, Path)),
    responses((status = 200, body = SegmentSchema), Readers, NotFound), security(("bearer" = [])))]
#[tracing::instrument(name = "segments.get", skip_all, fields(segment = %key.as_str()))]
pub async fn get(
    state: web::Data<AppState>,
    _reader: Reader,
    key: Key,
) -> Result<HttpResponse, ApiError> {
    let live = state.live.load();
    let segment = live
        .segments
        .get(key.as_str())
        .ok_or_else(|| ApiError::NotFound(format!("segment {:?} not found", key.as_str())))?;
    Ok(HttpResponse::Ok().json(segment))
}

/// `PUT /api/v1/segments/{key}` — create (201) or replace (200); flags using it are recompiled.
#[utoipa::path(put, path = "/api/v1/segments/{key}", tag = "segments", params(("key" = String, Path)),
    request_body = SegmentSchema,
    responses((status = 200, description = "Replaced", body = SegmentSchema), (status = 201, description = "Created", body = SegmentSchema),
        Malformed, AdminOnly, TooLarge, Invalid), security(("bearer" = [])))]
#[tracing::instrument(name = "segments.put", skip_all, fields(segment = %key.as_str()))]
pub async fn put(
    state: web::Data<AppState>,
    Admin(actor): Admin,
    key: Key,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let def: SegmentDef = parse_json(&body.0)?;
    let created = ops::segments::put(&state, &actor, &key, def.clone()).await?;
    Ok(if created {
        HttpResponse::Created().json(def)
    } else {
        HttpResponse::Ok().json(def)
    })
}

/// `DELETE /api/v1/segments/{key}` — refused (409) while a flag or a live release uses it.
#[utoipa::path(delete, path = "/api/v1/segments/{key}", tag = "segments", params(("key" = String, Path)),
    responses((status = 204, description = "Deleted"), AdminOnly, NotFound, Conflict), security(("bearer" = [])))]
#[tracing::instrument(name = "segments.delete", skip_all, fields(segment = %key.as_str()))]
pub async fn delete(
    state: web::Data<AppState>,
    Admin(actor): Admin,
    key: Key,
    _body: Body,
) -> Result<HttpResponse, ApiError> {
    ops::segments::delete(&state, &actor, &key).await?;
    Ok(HttpResponse::NoContent().finish())
}
