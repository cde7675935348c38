//! Ops API for policies. `PUT` accepts the policy as JSON, or as TOML when the
//! `Content-Type` says so (`application/toml`), exactly like the files in `policies/`.

use super::error::ApiError;
use super::extract::{parse_json, Body, Key};
use super::resource;
use super::schemas::{
    AdminOnly, Conflict, Invalid, Malformed, NotFound, PolicyList, Readers, TooLarge,
};
use crate::auth::{Admin, Reader};
use crate::ops;
use crate::policies::Policy;
use crate::rehearsal::{self, RehearsalReport, RehearsalRequest};
use crate::state::AppState;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

/// Registers the policy routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/v1/policies").route(web::get().to(list)))
        .service(
            resource("/api/v1/policies/{name}")
                .route(web::get().to(get))
                .route(web::put().to(put))
                .route(web::delete().to(delete)),
        )
        .service(resource("/api/v1/policies/{name}/rehearse").route(web::post().to(rehearse)));
}

/// `GET /api/v1/policies`
#[utoipa::path(get, path = "/api/v1/policies", tag = "policies", responses((status = 200, body = PolicyList), Readers), security(("bearer" = [])))]
#[tracing::instrument(name = "policies.list", skip_all)]
pub async fn list(state: web::Data<AppState>, _reader: Reader) -> HttpResponse {
    let set = state.policies.load();
    HttpResponse::Ok().json(serde_json::json!({ "policies": set.iter().collect::<Vec<_>>() }))
}

/// `GET /api/v1/policies/{name}`
#[utoipa::path(get, path = "/api/v1/policies/{name}", tag = "policies", params(("name" = String, Path)),
    responses((status = 200, body = Policy), Readers, NotFound), security(("bearer" = [])))]
#[tracing::instrument(name = "policies.get", skip_all, fields(policy = %name.as_str()))]
pub async fn get(
    state: web::Data<AppState>,
    _reader: Reader,
    name: Key,
) -> Result<HttpResponse, ApiError> {
    let set = state.policies.load();
    let policy = set
        .get(&name)
        .ok_or_else(|| ApiError::NotFound(format!("policy {:?} not found", name.as_str())))?;
    Ok(HttpResponse::Ok().json(policy))
}

/// `PUT /api/v1/policies/{name}` — create (201) or replace (200).
#[utoipa::path(put, path = "/api/v1/policies/{name}", tag = "policies", params(("name" = String, Path)),
    request_body(content(
        (Policy = "application/json"),
        (Policy = "application/toml"),
    ), description = "The policy, as JSON or as TOML (like the files in `policies/`; the same schema)"),
    responses((status = 200, body = Policy), (status = 201, body = Policy), Malformed, AdminOnly, TooLarge, Invalid), security(("bearer" = [])))]
#[tracing::instrument(name = "policies.put", skip_all, fields(policy = %name.as_str()))]
pub async fn put(
    req: HttpRequest,
    state: web::Data<AppState>,
    Admin(actor): Admin,
    name: Key,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let policy = parse_policy(&req, &body.0)?;
    if policy.name != *name {
        return Err(ApiError::invalid(
            "name",
            format!(
                "body name {:?} differs from path name {:?}",
                policy.name,
                name.as_str()
            ),
        ));
    }
    let created = ops::policies::put(&state, &actor, policy.clone()).await?;
    Ok(if created {
        HttpResponse::Created().json(policy)
    } else {
        HttpResponse::Ok().json(policy)
    })
}

/// `DELETE /api/v1/policies/{name}` — refused (409) while a flag or any release names it, or a
/// file of this node's `policies/` directory defines it.
#[utoipa::path(delete, path = "/api/v1/policies/{name}", tag = "policies", params(("name" = String, Path)),
    responses((status = 204, description = "Deleted"), AdminOnly, NotFound, Conflict), security(("bearer" = [])))]
#[tracing::instrument(name = "policies.delete", skip_all, fields(policy = %name.as_str()))]
pub async fn delete(
    state: web::Data<AppState>,
    Admin(actor): Admin,
    name: Key,
    _body: Body,
) -> Result<HttpResponse, ApiError> {
    ops::policies::delete(&state, &actor, &name).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /api/v1/policies/{name}/rehearse` — simulates releases under the policy with the
/// controller's own step (pure computation on a blocking thread; nothing is stored, so any
/// node of a cluster answers).
#[utoipa::path(post, path = "/api/v1/policies/{name}/rehearse", tag = "policies", params(("name" = String, Path)),
    request_body = RehearsalRequest,
    responses((status = 200, body = RehearsalReport), Malformed, AdminOnly, NotFound, TooLarge, Invalid), security(("bearer" = [])))]
#[tracing::instrument(name = "policies.rehearse", skip_all, fields(policy = %name.as_str()))]
pub async fn rehearse(
    state: web::Data<AppState>,
    _admin: Admin,
    name: Key,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let req: RehearsalRequest = parse_json(&body.0)?;
    let policy = state
        .policies
        .load()
        .get(&name)
        .cloned()
        .ok_or_else(|| ApiError::NotFound(format!("policy {:?} not found", name.as_str())))?;
    let plan =
        rehearsal::Plan::new(&policy, &req).map_err(|e| ApiError::invalid(e.field, e.message))?;
    let report = tokio::task::spawn_blocking(move || rehearsal::rehearse(&plan))
        .await
        .map_err(|e| ApiError::Internal(format!("rehearsal thread: {e}")))?;
    Ok(HttpResponse::Ok().json(report))
}

/// The body as a validated policy: TOML when the `Content-Type` says so, JSON otherwise.
fn parse_policy(req: &HttpRequest, body: &[u8]) -> Result<Policy, ApiError> {
    let is_toml = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("toml"));
    let policy = if is_toml {
        let text = std::str::from_utf8(body).map_err(|_| ApiError::BadRequest {
            field: None,
            message: "body is not UTF-8".into(),
        })?;
        Policy::parse_toml(text).map_err(|e| ApiError::BadRequest {
            field: (!e.field.is_empty()).then_some(e.field),
            message: e.message,
        })?
    } else {
        parse_json(body)?
    };
    policy
        .validate()
        .map_err(|e| ApiError::invalid(e.field, e.message))?;
    Ok(policy)
}
