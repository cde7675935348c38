//! Ops API for the audit log.

use super::error::ApiError;
use super::extract::Query;
use super::resource;
use super::schemas::{AuditList, Invalid, Malformed, Readers};
use crate::auth::Reader;
use crate::controller::status;
use crate::state::AppState;
use crate::store::AuditQuery;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use std::time::{Duration, UNIX_EPOCH};

/// Registers the audit route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/v1/audit").route(web::get().to(list)));
}

/// Query of `GET /api/v1/audit`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// Only entries about this flag.
    flag: Option<String>,
    /// Only entries about this release.
    release: Option<String>,
    /// Only entries at or after this time: RFC 3339 (`2026-11-22T10:00:00Z`) or Unix milliseconds.
    #[param(
        pattern = r"^([0-9]{1,19}|(19[7-9][0-9]|2[0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?Z)$"
    )]
    since: Option<String>,
    /// At most this many entries (1–1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

fn since_bound(text: &str) -> Result<uuid::Uuid, ApiError> {
    let time = match text.parse::<u64>() {
        Ok(ms) => UNIX_EPOCH + Duration::from_millis(ms),
        Err(_) => humantime::parse_rfc3339_weak(text).map_err(|_| {
            ApiError::bad_field(
                "since",
                "use RFC 3339 (2026-11-22T10:00:00Z) or Unix milliseconds",
            )
        })?,
    };
    let ms = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    // The smallest UUIDv7 of that millisecond: 48-bit timestamp, everything else zero.
    Ok(uuid::Uuid::from_u128((ms & 0xFFFF_FFFF_FFFF) << 80))
}

/// `GET /api/v1/audit?flag=&release=&since=&limit=` — newest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditParams),
    responses((status = 200, body = AuditList, description = "Newest first"), Malformed, Readers, Invalid), security(("bearer" = [])))]
#[tracing::instrument(name = "audit.list", skip_all)]
pub async fn list(
    state: web::Data<AppState>,
    _reader: Reader,
    params: Query<AuditParams>,
) -> Result<HttpResponse, ApiError> {
    let params = params.into_inner();
    let limit = params.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be between 1 and 1000"));
    }
    let since = params.since.as_deref().map(since_bound).transpose()?;
    // A release may be named by id or by name (every release of that name).
    let Some(releases) = release_ids(&state, params.release).await else {
        return Ok(HttpResponse::Ok().json(serde_json::json!({ "entries": [] })));
    };
    let query = AuditQuery {
        flag: params.flag,
        releases,
        since,
        limit,
    };
    // In a cluster the audit log lives in the database (every node's entries).
    let entries = match &state.cluster {
        None => state.store.audit(&query)?,
        Some(node) => {
            let read = async {
                let client = node.pool.get().await?;
                crate::cluster::pg::audit(&client, &query).await
            };
            read.await
                .map_err(|e| ApiError::from(crate::writer::OpsError::from(e)))?
        }
    };
    Ok(HttpResponse::Ok().json(serde_json::json!({ "entries": entries })))
}

/// The release ids a `release` filter names: an id as is, a name as every release of that
/// name; `None` when a name matches no release (so nothing can match).
async fn release_ids(state: &AppState, release: Option<String>) -> Option<Vec<String>> {
    match release {
        None => Some(Vec::new()),
        Some(r) if uuid::Uuid::parse_str(&r).is_ok() => Some(vec![r]),
        Some(name) => {
            let ids: Vec<String> = status::releases(state)
                .await
                .iter()
                .filter(|x| x.name == name)
                .map(|x| x.id.to_string())
                .collect();
            (!ids.is_empty()).then_some(ids)
        }
    }
}
