//! The background tasks: the controller loop, the aggregate flusher and the reach check.
//!
//! The controller wakes on its tick or at once when signals or commands arrive; a failed step
//! (storage error) is logged and retried on the next tick — nothing is acknowledged or acted on
//! until it is durable. Every task stops when the shutdown signal fires; the flusher then
//! persists the aggregates one last time.

use crate::state::AppState;
use actix_web::web;
use std::time::Duration;
use tokio::sync::watch;

/// Runs the controller until `shutdown` becomes true.
pub async fn run_controller(state: web::Data<AppState>, mut shutdown: watch::Receiver<bool>) {
    let tick = state.timing.controller_tick;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = state.wakeup.notified() => {}
            _ = shutdown.changed() => break,
        }
        if *shutdown.borrow() {
            break;
        }
        if let Err(e) = super::pass::run(&state, None).await {
            super::pass::refused(&state, e).await;
        }
    }
    tracing::debug!("controller stopped");
}

/// Persists signal aggregates every `aggregate_flush` when they changed, and once more at
/// shutdown.
pub async fn run_aggregate_flusher(
    state: web::Data<AppState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let every = state.timing.aggregate_flush.max(Duration::from_millis(50));
    let mut persisted = None;
    loop {
        let stop = tokio::select! {
            _ = tokio::time::sleep(every) => false,
            _ = shutdown.changed() => true,
        };
        let saved = state.signals.save();
        if let Err(e) = state
            .store
            .put_aggregates_if_changed(&saved, &mut persisted)
            .await
        {
            tracing::error!(error = %e, "persisting signal aggregates failed");
        }
        if stop || *shutdown.borrow() {
            break;
        }
    }
    tracing::debug!("aggregate flusher stopped");
}

/// Checks the reach of recent rollbacks every [`super::reach::check_period`] (a tenth of
/// `reach_timeout`), off the signal and evaluation paths; a failed check (storage error) is
/// logged and the next one goes on.
pub async fn run_reach_check(state: web::Data<AppState>, mut shutdown: watch::Receiver<bool>) {
    let every = super::reach::check_period(state.reach.settings().timeout_ms);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => break,
        }
        if *shutdown.borrow() {
            break;
        }
        if let Err(e) = super::reach::check(&state).await {
            tracing::error!(error = %e, "recording a reach outcome failed");
        }
    }
    tracing::debug!("reach check stopped");
}
