//! Ops API for the guard history (`crate::history`): a release's points per module, and the
//! live feed of new points as Server-Sent Events. Readers (admin or viewer tokens) only.

use super::error::ApiError;
use super::extract::{Key, Query};
use super::resource;
use super::schemas::{Malformed, NotFound, Readers};
use crate::auth::extract::presented_token;
use crate::auth::{Held, Reader, Role, Via};
use crate::history::{History, LivePoint};
use crate::state::AppState;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;

/// Registers the history routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/v1/releases/{id}/history").route(web::get().to(history)))
        .service(resource("/api/v1/history/stream").route(web::get().to(stream)));
}

/// Most points per module an answer may ask for.
const MAX_POINTS: usize = 20_000;

/// Query of `GET /api/v1/releases/{id}/history`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HistoryParams {
    /// Only this module (its index in the release; 404 when there is no such module); every
    /// module by default.
    #[param(minimum = 0, maximum = 65535)]
    module: Option<u16>,
    /// Only points at or after this time (Unix ms); the whole kept history by default.
    #[param(minimum = 0)]
    since: Option<u64>,
    /// About this many points per module at most (1–20000, default 500): marked points
    /// (changes of state, stage or decision) and the newest point of each of that many equal
    /// time slots.
    #[param(minimum = 1, maximum = 20000)]
    max_points: Option<usize>,
}

/// Answer of `GET /api/v1/releases/{id}/history`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ReleaseHistory {
    /// The release id.
    release: String,
    /// Its name.
    name: String,
    /// One entry per module asked for.
    modules: Vec<ModuleHistory>,
}

/// One module's points.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ModuleHistory {
    /// The module's index.
    module: u16,
    /// Its flag.
    flag: String,
    /// Oldest first: `{at_ms, state, stage, percentage, paused, mark, signature, guards,
    /// decision?}` where `guards` are the status document's guard readings at that time.
    #[schema(value_type = Vec<Object>)]
    points: Vec<Value>,
}

/// `GET /api/v1/releases/{id}/history?module=&since=&max_points=`
#[utoipa::path(get, path = "/api/v1/releases/{id}/history", tag = "releases",
    params(("id" = String, Path, description = "Release id (or name)"), HistoryParams),
    responses((status = 200, body = ReleaseHistory), Malformed, Readers, NotFound),
    security(("bearer" = [])))]
#[tracing::instrument(name = "releases.history", skip_all, fields(release = %id.as_str()))]
pub async fn history(
    state: web::Data<AppState>,
    history: web::Data<History>,
    _reader: Reader,
    id: Key,
    params: Query<HistoryParams>,
) -> Result<HttpResponse, ApiError> {
    let params = params.into_inner();
    let max_points = params.max_points.unwrap_or(500);
    if !(1..=MAX_POINTS).contains(&max_points) {
        return Err(ApiError::bad_field(
            "max_points",
            format!("max_points must be 1–{MAX_POINTS}"),
        ));
    }
    // The release's modules, found as the status finds it, without computing its readings.
    let (release, name, modules) = {
        let w = state.writer.lock().await;
        let id = w.find_release(&id)?;
        let r = &w.releases[&id];
        let flags: Vec<String> = r.modules.iter().map(|m| m.flag.clone()).collect();
        (r.id, r.name.clone(), flags)
    };
    if let Some(m) = params.module {
        if usize::from(m) >= modules.len() {
            return Err(ApiError::NotFound(format!(
                "no module {m}: the release has {} modules",
                modules.len()
            )));
        }
    }
    let since = params.since.unwrap_or(0);
    let history = history.into_inner();
    let body = web::block(move || {
        history.answer(release, &name, &modules, params.module, since, max_points)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}

/// Query of `GET /api/v1/history/stream`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HistoryStreamParams {
    /// Only points of this release (its id); every release's by default.
    release: Option<uuid::Uuid>,
}

/// `GET /api/v1/history/stream?release=` — Server-Sent Events: one `point` event per new
/// point (`{release, module, flag, point}`), heartbeats as comments. Auth by header only.
#[utoipa::path(get, path = "/api/v1/history/stream", tag = "releases", params(HistoryStreamParams),
    responses((status = 200, description = "Server-Sent Events: `point` events, heartbeats", content_type = "text/event-stream", body = String),
        Malformed, Readers),
    security(("bearer" = [])))]
#[tracing::instrument(name = "history.stream", skip_all)]
pub async fn stream(
    req: HttpRequest,
    state: web::Data<AppState>,
    history: web::Data<History>,
    params: Result<Query<HistoryStreamParams>, ApiError>,
) -> Result<HttpResponse, ApiError> {
    let secret = presented_token(req.headers()).ok_or(ApiError::Unauthorized)?;
    let (principal, token) = state
        .tokens
        .hold(secret, Via::Header)
        .ok_or(ApiError::Unauthorized)?;
    if principal.role == Role::Client {
        return Err(crate::auth::AuthError::Forbidden(
            Role::Client,
            crate::auth::extract::Needs::Reader,
        )
        .into());
    }
    let only = params?.into_inner().release;
    let mut heartbeat = tokio::time::interval(state.timing.heartbeat);
    heartbeat.reset();
    let feed = Feed {
        rx: history.subscribe(),
        only,
        heartbeat,
        closing: state.hub.closing(),
        token,
        first: true,
    };
    let body = futures_util::stream::unfold(feed, next_frame);
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

struct Feed {
    rx: tokio::sync::broadcast::Receiver<Arc<LivePoint>>,
    only: Option<uuid::Uuid>,
    heartbeat: tokio::time::Interval,
    closing: tokio::sync::watch::Receiver<bool>,
    token: Held,
    first: bool,
}

async fn next_frame(mut feed: Feed) -> Option<(Result<Bytes, actix_web::Error>, Feed)> {
    if feed.first {
        feed.first = false;
        return Some((Ok(Bytes::from_static(b"retry: 1000\n\n")), feed));
    }
    loop {
        tokio::select! {
            received = feed.rx.recv() => match received {
                Ok(point) if feed.only.is_some_and(|r| r != point.release) => continue,
                Ok(point) => return Some((Ok(point.frame.clone()), feed)),
                // Too slow: end the stream; the client reloads the history and reconnects.
                Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => return None,
            },
            _ = feed.heartbeat.tick() => return Some((Ok(Bytes::from_static(b": heartbeat\n\n")), feed)),
            _ = feed.closing.changed() => return None,
            () = feed.token.revoked() => return None,
        }
    }
}
