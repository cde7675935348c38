//! Ops API for tokens. Secrets are returned once, at creation, and stored only as hashes.

use super::error::ApiError;
use super::extract::{parse_json, Body, Key};
use super::resource;
use super::schemas::{
    AdminOnly, Conflict, ErrorBody, Invalid, Malformed, NotFound, Readers, TokenList, TooLarge,
};
use crate::auth::{Admin, Reader, Role};
use crate::ops;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

/// Registers the token routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/api/v1/tokens")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .service(resource("/api/v1/tokens/{name}").route(web::delete().to(delete)));
}

/// Body of `POST /api/v1/tokens`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// Unique name, 1–64 of `[A-Za-z0-9._-]`.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub name: String,
    /// `client` or `admin`.
    pub role: Role,
}

/// Answer of `POST /api/v1/tokens`: the only time the secret is shown.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    name: String,
    role: Role,
    token: String,
}

/// `POST /api/v1/tokens`
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = CreateToken,
    responses((status = 201, body = CreatedToken), Malformed, AdminOnly, Conflict, TooLarge, Invalid), security(("bearer" = [])))]
#[tracing::instrument(name = "tokens.create", skip_all)]
pub async fn create(
    state: web::Data<AppState>,
    Admin(actor): Admin,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let request: CreateToken = parse_json(&body.0)?;
    let token = ops::tokens::create(&state, &actor, &request.name, request.role).await?;
    Ok(HttpResponse::Created().json(CreatedToken {
        name: request.name,
        role: request.role,
        token,
    }))
}

/// `GET /api/v1/tokens`
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens", responses((status = 200, body = TokenList), Readers), security(("bearer" = [])))]
#[tracing::instrument(name = "tokens.list", skip_all)]
pub async fn list(state: web::Data<AppState>, _reader: Reader) -> Result<HttpResponse, ApiError> {
    let tokens: Vec<_> = state
        .store
        .tokens()?
        .into_iter()
        .map(|t| serde_json::json!({"name": t.name, "role": t.role, "created": t.created}))
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "tokens": tokens })))
}

/// `DELETE /api/v1/tokens/{name}`
#[utoipa::path(delete, path = "/api/v1/tokens/{name}", tag = "tokens", params(("name" = String, Path)),
    responses((status = 204, description = "Revoked"), AdminOnly, NotFound, (status = 409, description = "The last admin token", body = ErrorBody)), security(("bearer" = [])))]
#[tracing::instrument(name = "tokens.revoke", skip_all, fields(token = %name.as_str()))]
pub async fn delete(
    state: web::Data<AppState>,
    Admin(actor): Admin,
    name: Key,
    _body: Body,
) -> Result<HttpResponse, ApiError> {
    ops::tokens::revoke(&state, &actor, &name).await?;
    Ok(HttpResponse::NoContent().finish())
}
