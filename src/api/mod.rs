//! The HTTP surface: one `configure` per API area, thin handlers, one error mapping.
//!
//! Handlers extract, convert to validated domain types, call the control path or the live
//! snapshot, and respond. Business rules live in `ops`, `live` and the `eval` crate.

mod alerts;
mod audit;
mod client;
pub mod error;
mod extract;
mod flags;
mod health;
mod ofrep;
mod openapi;
mod policies;
mod releases;
mod segments;
mod signals;
mod stream;
mod tokens;

use crate::state::AppState;
use actix_web::{web, HttpResponse};
use error::ApiError;

pub use openapi::ApiDoc;

/// A resource whose unsupported methods get a JSON 405.
fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(|| async {
        HttpResponse::from_error(ApiError::MethodNotAllowed)
    }))
}

/// Registers every route of the server.
pub fn configure(cfg: &mut web::ServiceConfig, state: &AppState) {
    ofrep::configure(cfg, state.limits.max_eval_body);
    cfg.app_data(web::PayloadConfig::new(state.limits.max_body))
        .app_data(web::QueryConfig::default().error_handler(|e, _| {
            ApiError::BadRequest {
                field: None,
                message: e.to_string(),
            }
            .into()
        }))
        .app_data(web::PathConfig::default().error_handler(|e, _| {
            ApiError::BadRequest {
                field: None,
                message: e.to_string(),
            }
            .into()
        }))
        .service(resource("/healthz").route(web::get().to(health::healthz)))
        .service(resource("/readyz").route(web::get().to(health::readyz)))
        .service(resource("/metrics").route(web::get().to(health::metrics)))
        .service(resource("/api/v1/openapi.json").route(web::get().to(openapi::document)))
        .service(resource("/api/v1/client/config").route(web::get().to(client::config)))
        .service(resource("/api/v1/flags").route(web::get().to(flags::list)))
        .service(
            resource("/api/v1/flags/{key}")
                .route(web::get().to(flags::get))
                .route(web::put().to(flags::put))
                .route(web::delete().to(flags::delete)),
        )
        .service(resource("/api/v1/flags/{key}/rollout").route(web::put().to(flags::rollout)))
        .service(resource("/api/v1/flags/{key}/kill").route(web::post().to(flags::kill)))
        .service(resource("/api/v1/flags/{key}/unkill").route(web::post().to(flags::unkill)))
        .service(resource("/api/v1/segments").route(web::get().to(segments::list)))
        .service(
            resource("/api/v1/segments/{key}")
                .route(web::get().to(segments::get))
                .route(web::put().to(segments::put)),
        )
        .service(resource("/api/v1/policies").route(web::get().to(policies::list)))
        .service(
            resource("/api/v1/policies/{name}")
                .route(web::get().to(policies::get))
                .route(web::put().to(policies::put)),
        )
        .service(
            resource("/api/v1/tokens")
                .route(web::get().to(tokens::list))
                .route(web::post().to(tokens::create)),
        )
        .service(resource("/api/v1/tokens/{name}").route(web::delete().to(tokens::delete)))
        .service(resource("/api/v1/audit").route(web::get().to(audit::list)))
        .service(resource("/api/v1/stream").route(web::get().to(stream::stream)))
        .service(
            resource("/api/v1/signals")
                .app_data(web::PayloadConfig::new(state.limits.max_signals_body))
                .route(web::post().to(signals::ingest_batch)),
        )
        .service(
            resource("/api/v1/alerts/alertmanager").route(web::post().to(alerts::alertmanager)),
        )
        .service(
            resource("/api/v1/releases")
                .route(web::get().to(releases::list))
                .route(web::post().to(releases::create)),
        )
        .service(resource("/api/v1/releases/{id}").route(web::get().to(releases::get)))
        .service(resource("/api/v1/releases/{id}/start").route(web::post().to(releases::start)))
        .service(resource("/api/v1/releases/{id}/pause").route(web::post().to(releases::pause)))
        .service(resource("/api/v1/releases/{id}/resume").route(web::post().to(releases::resume)))
        .service(
            resource("/api/v1/releases/{id}/rollback").route(web::post().to(releases::rollback)),
        );
}

/// The answer for paths that match nothing.
pub async fn not_found() -> HttpResponse {
    HttpResponse::from_error(ApiError::NotFound("no such endpoint".to_owned()))
}
