//! `POST /api/v1/signals`: batches of client signals. Guards are evaluated as each batch
//! arrives: when a batch touches a flag that a running release watches, the controller runs
//! before the answer is sent, so a zero-tolerance breach is rolled back within the request.

use super::error::ApiError;
use super::extract::{Body, Caller};
use crate::signals::{ingest, SignalBatch};
use crate::state::AppState;
use actix_web::http::header;
use actix_web::{web, HttpResponse};

/// `POST /api/v1/signals`
#[utoipa::path(post, path = "/api/v1/signals", tag = "client",
    request_body(content = Object, description = "{\"signals\": [{\"flag\", \"variant\", \"metric\", \"count\"?, \"value\"?, \"targetingKey\"?, \"timestamp\"?}]}"),
    responses((status = 200, description = "{\"accepted\", \"rejected\", \"errors\": [{\"index\", \"error\"}]}"), (status = 400, description = "Malformed batch"), (status = 422, description = "A count or value beyond its bound"),
        (status = 401, description = "No or bad token"), (status = 413, description = "Too large"), (status = 429, description = "Rate limited; Retry-After")),
    security(("bearer" = [])))]
pub async fn ingest_batch(
    state: web::Data<AppState>,
    body: Body,
    Caller(caller): Caller,
) -> Result<HttpResponse, ApiError> {
    // Fast path: plain serde_json; only a failing body is parsed again to name the field.
    let batch: SignalBatch<'_> = match serde_json::from_slice(&body.0) {
        Ok(batch) => batch,
        Err(_) => {
            let mut de = serde_json::Deserializer::from_slice(&body.0);
            let error = match serde_path_to_error::deserialize::<_, SignalBatch<'_>>(&mut de) {
                Err(e) => ApiError::BadRequest {
                    field: Some(e.path().to_string()),
                    message: e.into_inner().to_string(),
                },
                Ok(_) => ApiError::BadRequest {
                    field: None,
                    message: "malformed JSON".into(),
                },
            };
            return Err(error);
        }
    };
    crate::signals::check(&batch, state.limits.max_signals).map_err(|m| match m.out_of_bounds {
        true => ApiError::invalid(m.field, m.message),
        false => ApiError::bad_field(m.field, m.message),
    })?;
    let weight = batch.signals.len() as u64;
    if let Err(wait) =
        state
            .rate_limiter
            .take(&caller.name, weight, state.timing.signals_per_second)
    {
        return Ok(HttpResponse::TooManyRequests()
            .insert_header((header::RETRY_AFTER, wait.to_string()))
            .json(serde_json::json!({"error": {"code": "rate_limited", "message": format!("signal rate limit exceeded; retry in {wait} s")}})));
    }
    let live = state.live.load();
    let report = ingest(&state.signals, &live, &batch, crate::ops::now_ms());
    drop(live);
    let watched = state.watched.load();
    let touched: Vec<String> = report
        .touched
        .iter()
        .filter(|f| watched.contains(*f))
        .cloned()
        .collect();
    if !touched.is_empty() {
        if let Err(e) = state.controller_step(Some(&touched)).await {
            tracing::error!(error = %e, "guard evaluation after a signal batch failed; the controller retries");
            state.wakeup.notify_one();
        }
    }
    Ok(HttpResponse::Ok().json(report))
}
