//! Ops API for policies. `PUT` accepts the policy as JSON, or as TOML when the
//! `Content-Type` says so (`application/toml`), exactly like the files in `policies/`.

use super::error::ApiError;
use super::extract::{parse_json, Admin, Body};
use crate::policies::Policy;
use crate::state::AppState;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

/// `GET /api/v1/policies`
#[utoipa::path(get, path = "/api/v1/policies", tag = "policies", responses((status = 200, description = "{\"policies\": [Policy]}")), security(("bearer" = [])))]
pub async fn list(state: web::Data<AppState>, _admin: Admin) -> HttpResponse {
    let set = state.policies.load();
    HttpResponse::Ok().json(serde_json::json!({ "policies": set.iter().collect::<Vec<_>>() }))
}

/// `GET /api/v1/policies/{name}`
#[utoipa::path(get, path = "/api/v1/policies/{name}", tag = "policies", params(("name" = String, Path)),
    responses((status = 200, body = Policy), (status = 404, description = "Unknown policy")), security(("bearer" = [])))]
pub async fn get(
    state: web::Data<AppState>,
    name: web::Path<String>,
    _admin: Admin,
) -> Result<HttpResponse, ApiError> {
    let set = state.policies.load();
    let policy = set
        .get(&name)
        .ok_or_else(|| ApiError::NotFound(format!("policy {:?} not found", name.as_str())))?;
    Ok(HttpResponse::Ok().json(policy))
}

/// `PUT /api/v1/policies/{name}` — create (201) or replace (200).
#[utoipa::path(put, path = "/api/v1/policies/{name}", tag = "policies", params(("name" = String, Path)), request_body = Policy,
    responses((status = 200, body = Policy), (status = 201, body = Policy), (status = 422, description = "Invalid field")), security(("bearer" = [])))]
pub async fn put(
    req: HttpRequest,
    state: web::Data<AppState>,
    name: web::Path<String>,
    body: Body,
    Admin(actor): Admin,
) -> Result<HttpResponse, ApiError> {
    let is_toml = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("toml"));
    let policy = if is_toml {
        let text = std::str::from_utf8(&body.0).map_err(|_| ApiError::BadRequest {
            field: None,
            message: "body is not UTF-8".into(),
        })?;
        let policy = Policy::parse_toml(text).map_err(|e| ApiError::BadRequest {
            field: (!e.field.is_empty()).then_some(e.field),
            message: e.message,
        })?;
        policy
            .validate()
            .map_err(|e| ApiError::invalid(e.field, e.message))?;
        policy
    } else {
        let policy: Policy = parse_json(&body.0)?;
        policy
            .validate()
            .map_err(|e| ApiError::invalid(e.field, e.message))?;
        policy
    };
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
    let created = state.put_policy(&actor, policy.clone()).await?;
    Ok(if created {
        HttpResponse::Created().json(policy)
    } else {
        HttpResponse::Ok().json(policy)
    })
}
