//! `POST /api/v1/signals`: batches of client signals. Guards are evaluated as each batch
//! arrives: when a batch touches a flag the controller watches, the controller steps those
//! flags' modules before the answer is sent, so a zero-tolerance breach is rolled back within
//! the request. The path reads top-down: parse → rate limit → reach (the batch's `client`
//! report, one short lock) → ingest (signals) → controller pass (one verdict per module, one
//! commit) → answer. A cluster node instead counts the batch into its durable outbox and
//! answers; the leader decides on the global totals (docs/cluster.md).

use super::error::ApiError;
use super::extract::{limited, Body};
use super::resource;
use super::schemas::{
    Invalid, Malformed, RateLimited, SignalBatchSchema, SignalReport, TooLarge, Unauthorized,
};
use crate::auth::Sender;
use crate::controller::pass;
use crate::signals::{ingest, Aggregates, SignalBatch};
use crate::state::AppState;
use actix_web::{web, HttpResponse};

/// Registers the signals route, with its own body limit.
pub fn configure(cfg: &mut web::ServiceConfig, max_body: usize) {
    cfg.service(limited(resource("/api/v1/signals"), max_body).route(web::post().to(ingest_batch)));
}

/// `POST /api/v1/signals`
#[utoipa::path(post, path = "/api/v1/signals", tag = "client",
    request_body = SignalBatchSchema,
    responses((status = 200, body = SignalReport, description = "Signals for unknown flags or variants are counted in `rejected` and listed in `errors`"),
        Malformed, Unauthorized, TooLarge, Invalid, RateLimited),
    security(("bearer" = [])))]
#[tracing::instrument(name = "signals.ingest", skip_all, fields(caller = %caller.name))]
pub async fn ingest_batch(
    state: web::Data<AppState>,
    Sender(caller): Sender,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let batch = parse_batch(&body.0)?;
    crate::signals::check(&batch, state.limits.max_signals)?;
    crate::signals::check_timestamps(&batch)?;
    let weight = batch.signals.len() as u64;
    state
        .rate_limiter
        .take(&caller.name, weight, state.timing.signals_per_second)
        .map_err(|retry_after| ApiError::RateLimited { retry_after })?;
    let now = crate::clock::now_ms();
    if let Some(client) = &batch.client {
        state.reach.heard(client.reach(), now);
    }
    let report = match &state.cluster {
        None => {
            let report = ingest(&state.signals, &state.live.load(), &batch, now);
            pass::after_signals(&state, &report.touched).await;
            report
        }
        // A cluster node counts the batch into its durable outbox before answering; the
        // flusher moves it into the global totals exactly once, and the leader decides on
        // those (docs/cluster.md).
        Some(node) => {
            let delta = Aggregates::default();
            let report = ingest(&delta, &state.live.load(), &batch, now);
            let delta = delta.save();
            if !delta.is_empty() {
                // Counted here at once too, so this node reads its own writes and a leader
                // steps the touched modules before answering, as a single node does. Before
                // the outbox append: once appended, the batch may be flushed and mirrored
                // back as part of the global totals at any moment, and the mirror only ever
                // raises a count — adding it after that would count it twice. (A failing
                // append, a broken disk, leaves it counted here until a restart.)
                state.signals.add_saved(&delta);
                state.store.outbox_append(&delta).await?;
                node.outbox.notify_one();
                pass::after_signals(&state, &report.touched).await;
            }
            report
        }
    };
    Ok(HttpResponse::Ok().json(report))
}

/// Parses a batch: plain serde_json first (fast); only a failing body is parsed again to name
/// the field.
fn parse_batch(body: &[u8]) -> Result<SignalBatch<'_>, ApiError> {
    if let Ok(batch) = serde_json::from_slice(body) {
        return Ok(batch);
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    Err(
        match serde_path_to_error::deserialize::<_, SignalBatch<'_>>(&mut de) {
            Err(e) => {
                let field = Some(e.path().to_string());
                let message = e.into_inner().to_string();
                // A well-formed whole number too large for a count is out of bounds (422), like
                // a count over the per-signal bound; every other problem is malformed (400).
                if message.starts_with("invalid value: integer `")
                    && message[24..].starts_with(|c: char| c.is_ascii_digit())
                {
                    ApiError::Invalid { field, message }
                } else {
                    ApiError::BadRequest { field, message }
                }
            }
            Ok(_) => ApiError::BadRequest {
                field: None,
                message: "malformed JSON".into(),
            },
        },
    )
}
