//! `GET /api/v1/client/config`: everything a local-evaluating SDK needs, with an ETag.

use super::extract::etag_matches;
use super::resource;
use super::schemas::{ClientConfig, Unauthorized};
use crate::auth::Caller;
use crate::state::AppState;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

/// Registers the client config route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/v1/client/config").route(web::get().to(config)));
}

/// `GET /api/v1/client/config` — flags, segments and the bucketing rule; 304 on a matching
/// `If-None-Match`.
#[utoipa::path(get, path = "/api/v1/client/config", tag = "client",
    responses((status = 200, body = ClientConfig, headers(("ETag" = String))), (status = 304, description = "Not modified"), Unauthorized),
    security(("bearer" = [])))]
#[tracing::instrument(name = "client.config", level = "debug", skip_all)]
pub async fn config(req: HttpRequest, state: web::Data<AppState>, _caller: Caller) -> HttpResponse {
    let live = state.live.load_full();
    let (body, etag) = live.client_config();
    if etag_matches(&req, etag) {
        return HttpResponse::NotModified()
            .insert_header((header::ETAG, etag.as_str()))
            .finish();
    }
    HttpResponse::Ok()
        .insert_header((header::ETAG, etag.as_str()))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .content_type("application/json")
        .body(body.clone())
}
