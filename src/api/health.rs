//! Operations endpoints: liveness, readiness, Prometheus metrics.

use super::error::ApiError;
use super::resource;
use super::schemas::{HealthStatus, Unauthorized};
use crate::auth::Caller;
use crate::controller::{metrics as control_metrics, status};
use crate::state::AppState;
use actix_web::{web, HttpResponse};

/// Registers the operations routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/healthz").route(web::get().to(healthz)))
        .service(resource("/readyz").route(web::get().to(readyz)))
        .service(resource("/metrics").route(web::get().to(metrics)));
}

/// `GET /healthz` — the process is up (no token).
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = HealthStatus)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// `GET /readyz` — the store answers and flags are loaded (no token).
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = HealthStatus), (status = 503, body = HealthStatus, description = "Store unavailable")))]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    match state.store.tokens() {
        Ok(_) => HttpResponse::Ok()
            .json(serde_json::json!({"status": "ready", "flags": state.live.load().flags().len()})),
        Err(e) => {
            tracing::error!(error = %e, "readiness check failed");
            HttpResponse::ServiceUnavailable().json(serde_json::json!({"status": "unavailable"}))
        }
    }
}

/// `GET /metrics` — Prometheus text format (any valid token: it names flags).
#[utoipa::path(get, path = "/metrics", tag = "operations", responses(
    (status = 200, description = "Prometheus text format", content_type = "text/plain; version=0.0.4; charset=utf-8", body = String),
    Unauthorized), security(("bearer" = [])))]
#[tracing::instrument(name = "metrics", level = "debug", skip_all)]
pub async fn metrics(
    state: web::Data<AppState>,
    Caller(caller): Caller,
) -> Result<HttpResponse, ApiError> {
    tracing::debug!(caller = %caller.name, "metrics scraped");
    let releases = status::releases(&state).await;
    let families = control_metrics::families(&state, &releases);
    let text = state.metrics.render(state.live.load_full(), families);
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text))
}
