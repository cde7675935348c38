//! Operations endpoints: liveness, readiness, Prometheus metrics.

use super::error::ApiError;
use super::resource;
use super::schemas::{HealthStatus, Malformed, Unauthorized};
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

/// `GET /readyz` — the node can serve (no token). Body: `status` (`ready`, or `degraded` when a
/// cluster node cannot reach its database: it still serves evaluation, streams and signal
/// intake from its last applied state, and refuses writes), `flags`, `revision` (applied),
/// `writes`, and in a cluster `node`, `database`, `leader`. `?writes=true` asks whether
/// writes are possible: 503 while they are not.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    params(("writes" = Option<bool>, Query, description = "Also require that writes are accepted (503 while a cluster node cannot reach its database)")),
    responses((status = 200, body = HealthStatus), Malformed, (status = 503, body = HealthStatus, description = "Store unavailable (or, with `writes=true`, writes refused)")))]
pub async fn readyz(
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let mut writes_asked = false;
    for (k, v) in form_urlencoded::parse(req.query_string().as_bytes()) {
        if k == "writes" {
            writes_asked |= match v.as_ref() {
                "true" => true,
                "false" => false,
                _ => return Err(ApiError::bad_field("writes", "must be true or false")),
            };
        }
    }
    if let Err(e) = state.store.tokens() {
        tracing::error!(error = %e, "readiness check failed");
        return Ok(
            HttpResponse::ServiceUnavailable().json(serde_json::json!({"status": "unavailable"}))
        );
    }
    let flags = state.live.load().flags().len();
    let revision = state.hub.last_seq();
    let Some(node) = &state.cluster else {
        return Ok(HttpResponse::Ok().json(
            serde_json::json!({"status": "ready", "flags": flags, "revision": revision, "writes": true}),
        ));
    };
    let up = node.db_up();
    let body = serde_json::json!({
        "status": if up { "ready" } else { "degraded" },
        "flags": flags,
        "revision": revision,
        "writes": up,
        "node": node.id,
        "database": if up { "up" } else { "unreachable" },
        "leader": state.lease.held(),
    });
    if !up && writes_asked {
        return Ok(HttpResponse::ServiceUnavailable().json(body));
    }
    Ok(HttpResponse::Ok().json(body))
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
