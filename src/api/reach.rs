//! `GET /api/v1/reach`: the newest changes with how many live clients applied each and how
//! fast (docs/clients.md, "Reach"). Read from the reach tracker in one short lock.

use super::error::ApiError;
use super::extract::Query;
use super::resource;
use super::schemas::{Invalid, Malformed, Readers};
use crate::auth::Reader;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use utoipa::ToSchema;

/// Registers the reach route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/v1/reach").route(web::get().to(list)));
}

/// Query of `GET /api/v1/reach`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReachParams {
    /// Only changes of this flag.
    flag: Option<String>,
    /// At most this many changes (1–1024, default 50).
    #[param(minimum = 1, maximum = 1024)]
    limit: Option<usize>,
}

/// `GET /api/v1/reach?flag=&limit=` — newest first.
#[utoipa::path(get, path = "/api/v1/reach", tag = "reach", params(ReachParams),
    responses((status = 200, body = ReachList, description = "The live clients and the newest changes, newest first"),
        Malformed, Readers, Invalid),
    security(("bearer" = [])))]
#[tracing::instrument(name = "reach.list", skip_all)]
pub async fn list(
    state: web::Data<AppState>,
    _reader: Reader,
    params: Query<ReachParams>,
) -> Result<HttpResponse, ApiError> {
    let params = params.into_inner();
    let limit = params.limit.unwrap_or(50);
    if !(1..=1024).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be between 1 and 1024"));
    }
    let listing = state
        .reach
        .list(crate::clock::now_ms(), params.flag.as_deref(), limit);
    Ok(HttpResponse::Ok().json(listing))
}

// The two schemas below document the answer (`reach::Listing`, `reach::Figures`); they are
// never built, like those of `schemas.rs`.

/// Answer of `GET /api/v1/reach` (`reach::Listing`).
#[allow(dead_code)]
#[derive(ToSchema)]
pub struct ReachList {
    /// Clients heard from within the live window (`reach_live_window`, 60 s).
    live_clients: u64,
    /// Clients forgotten since start because 100,000 were live.
    evicted_clients: u64,
    /// The server's newest revision.
    revision: u64,
    /// Newest first.
    changes: Vec<ReachFigures>,
}

/// One change's reach (`reach::Figures`); also each module's `reach` in a release status.
#[allow(dead_code)]
#[derive(ToSchema)]
pub struct ReachFigures {
    /// The change's revision.
    revision: u64,
    /// `flag` or `segment`.
    #[schema(pattern = "^(flag|segment)$")]
    subject: String,
    /// The flag's or segment's key.
    key: String,
    /// The audit action that caused it (`module.rollback`, `flag.rollout`, …).
    action: Option<String>,
    /// Caused by a rollback (of a module, or of a flag ramped by hand).
    rollback: bool,
    /// Release id, if the change belongs to one.
    release: Option<String>,
    /// Commit time, RFC 3339 UTC.
    at: String,
    /// Commit time, Unix ms.
    at_ms: u64,
    /// Clients live now.
    live_clients: u64,
    /// Live clients whose revision is at or past the change's.
    confirmed: u64,
    /// `confirmed / live_clients`; `null` without live clients.
    share: Option<f64>,
    /// Latency samples: clients seen on an older revision that reported this one or later.
    samples: u64,
    /// Median time from the commit to a client's apply, ms (`null` without samples).
    p50_ms: Option<u64>,
    /// 99th percentile of the same, ms.
    p99_ms: Option<u64>,
    /// `confirming`, `confirmed`, `unconfirmed` or `no_live_clients`.
    #[schema(pattern = "^(confirming|confirmed|unconfirmed|no_live_clients)$")]
    state: String,
    /// Whether the unconfirmed-rollback alert fired for it.
    alerted: bool,
}
