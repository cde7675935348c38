//! `GET /api/v1/stream`: Server-Sent Events.
//!
//! Default format: a full `config` event on connect (flags + segments, like
//! `/api/v1/client/config`), then one `change` event per flag or segment change, heartbeats
//! (`: heartbeat` comments), and `Last-Event-ID` resume (missed changes are replayed, or a
//! fresh `config` is sent when the client is too far behind or from another server run).
//! `?format=ofrep`: OFREP ADR-0008 messages (`event: message`, `{"type":
//! "refetchEvaluation", …}`) for the official web provider, which then re-fetches its bulk
//! evaluation. Auth: a bearer token, or `?token=` (a stream-only `st_…` token as advertised in
//! OFREP `eventStreams`, or a regular token) since `EventSource` cannot send headers. The stream
//! holds its token: when that token is revoked, the stream ends at once.

use super::error::ApiError;
use super::extract::Query;
use super::resource;
use super::schemas::{Malformed, Unauthorized};
use crate::auth::extract::presented_token;
use crate::auth::{Held, Principal, Via};
use crate::hub::{ChangeEvent, Resume, SubscriberGuard};
use crate::state::AppState;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde::Deserialize;
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;

/// Registers the stream route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/v1/stream").route(web::get().to(stream)));
}

/// Query of the stream endpoint.
/// Unknown parameters are ignored: providers append their own (e.g. cache busters).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct StreamParams {
    /// `rollgate` (default) or `ofrep`.
    #[param(value_type = Option<StreamFormat>)]
    format: Option<String>,
    /// Token for clients that cannot send headers.
    token: Option<String>,
    /// Sent back by the OFREP web provider; ignored.
    #[serde(rename = "flagConfigEtag")]
    flag_config_etag: Option<String>,
    /// Sent back by the OFREP web provider; ignored.
    #[serde(rename = "flagConfigLastModified")]
    flag_config_last_modified: Option<String>,
}

/// The stream's formats, as the document names them.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum StreamFormat {
    Rollgate,
    Ofrep,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Rollgate,
    Ofrep,
}

impl Format {
    fn parse(format: Option<&str>) -> Result<Format, ApiError> {
        match format {
            None | Some("rollgate") => Ok(Format::Rollgate),
            Some("ofrep") => Ok(Format::Ofrep),
            Some(other) => Err(ApiError::bad_field(
                "format",
                format!("unknown format {other:?} (rollgate or ofrep)"),
            )),
        }
    }
}

/// How long a cluster node waits to catch up to a resuming client's `Last-Event-ID`.
const CATCH_UP: std::time::Duration = std::time::Duration::from_secs(2);

/// In a cluster a client may resume on a node that has not applied its `Last-Event-ID` yet
/// (it read it from a node a few milliseconds ahead): the node catches up first (briefly), so
/// the client never receives a config older than what it already has.
async fn catch_up_to(state: &AppState, last_event_id: Option<&str>) {
    let (Some(node), Some(seen)) = (
        &state.cluster,
        last_event_id.and_then(|id| id.trim().parse::<u64>().ok()),
    ) else {
        return;
    };
    let deadline = tokio::time::Instant::now() + CATCH_UP;
    while state.hub.last_seq() < seen && tokio::time::Instant::now() < deadline {
        node.wakes.feed.notify_one();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// A header token, or else a `?token=` (stream-only or regular) for clients without headers;
/// held for the life of the stream.
fn hold_token(
    req: &HttpRequest,
    state: &AppState,
    url_token: Option<&str>,
) -> Result<(Principal, Held), ApiError> {
    let (secret, via) = match presented_token(req.headers()) {
        Some(secret) => (secret, Via::Header),
        None => (url_token.ok_or(ApiError::Unauthorized)?, Via::Url),
    };
    state.tokens.hold(secret, via).ok_or(ApiError::Unauthorized)
}

struct Subscription {
    rx: tokio::sync::broadcast::Receiver<Arc<ChangeEvent>>,
    pending: VecDeque<Bytes>,
    last_sent: u64,
    heartbeat: tokio::time::Interval,
    format: Format,
    closing: tokio::sync::watch::Receiver<bool>,
    token: Held,
    hub: Arc<crate::hub::ChangeHub>,
    _guard: SubscriberGuard,
}

impl Subscription {
    /// Subscribes to the hub: a fresh `config` (rollgate format) or the replay of what a
    /// resuming client missed comes first.
    fn open(
        state: &AppState,
        token: Held,
        last_event_id: Option<&str>,
        format: Format,
    ) -> Subscription {
        let hub = state.hub.clone();
        let (rx, resume) = hub.subscribe(last_event_id);
        let mut pending = VecDeque::new();
        pending.push_back(Bytes::from_static(b"retry: 1000\n\n"));
        let last_sent = match resume {
            Resume::Fresh { seq } => {
                if format == Format::Rollgate {
                    let live = state.live.load_full();
                    let (body, _) = live.client_config();
                    let data = std::str::from_utf8(body).unwrap_or("{}");
                    pending.push_back(Bytes::from(format!(
                        "id: {}\nevent: config\ndata: {data}\n\n",
                        hub.event_id(seq)
                    )));
                }
                seq
            }
            Resume::Replay { after, events } => {
                pending.extend(events.iter().map(|e| frame(format, e)));
                events.last().map_or(after, |e| e.seq)
            }
        };
        let mut heartbeat = tokio::time::interval(state.timing.heartbeat);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        heartbeat.reset();
        let guard = hub.track();
        let closing = hub.closing();
        Subscription {
            rx,
            pending,
            last_sent,
            heartbeat,
            format,
            closing,
            token,
            hub,
            _guard: guard,
        }
    }
}

fn frame(format: Format, event: &ChangeEvent) -> Bytes {
    match format {
        Format::Rollgate => event.change_frame.clone(),
        Format::Ofrep => event.ofrep_frame.clone(),
    }
}

/// `GET /api/v1/stream`
#[utoipa::path(get, path = "/api/v1/stream", tag = "client", params(StreamParams),
    responses((status = 200, description = "Server-Sent Events: config, change, heartbeats", content_type = "text/event-stream", body = String),
        Malformed, Unauthorized),
    security(("bearer" = [])))]
#[tracing::instrument(name = "stream", skip_all)]
pub async fn stream(
    req: HttpRequest,
    state: web::Data<AppState>,
    params: Result<Query<StreamParams>, ApiError>,
) -> Result<HttpResponse, ApiError> {
    // Auth first: a bad query string is answered only to a caller with a valid token.
    let url_token = params.as_ref().ok().and_then(|p| p.0.token.as_deref());
    let (_principal, token) = hold_token(&req, &state, url_token)?;
    let params = params?.into_inner();
    let _ = (&params.flag_config_etag, &params.flag_config_last_modified);
    let format = Format::parse(params.format.as_deref())?;
    let last_event_id = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok());
    catch_up_to(&state, last_event_id).await;
    let subscription = Subscription::open(&state, token, last_event_id, format);
    let body = futures_util::stream::unfold(subscription, next_frame);
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

async fn next_frame(
    mut sub: Subscription,
) -> Option<(Result<Bytes, actix_web::Error>, Subscription)> {
    if let Some(frame) = sub.pending.pop_front() {
        return Some((Ok(frame), sub));
    }
    loop {
        tokio::select! {
            received = sub.rx.recv() => match received {
                Ok(event) if event.seq <= sub.last_sent => continue,
                Ok(event) => {
                    sub.last_sent = event.seq;
                    let bytes = frame(sub.format, &event);
                    sub.hub.delivered(&event);
                    return Some((Ok(bytes), sub));
                }
                // Too slow: drop the connection; the client resumes with Last-Event-ID.
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "stream subscriber fell behind; disconnecting it");
                    return None;
                }
                Err(RecvError::Closed) => return None,
            },
            _ = sub.heartbeat.tick() => return Some((Ok(Bytes::from_static(b": heartbeat\n\n")), sub)),
            _ = sub.closing.changed() => return None,
            // The token was revoked: end the stream (the client's reconnect gets a 401).
            () = sub.token.revoked() => return None,
        }
    }
}
