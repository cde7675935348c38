//! The unconfirmed-rollback alert: a rollback that `reach_target` of the live clients have not
//! applied within `reach_timeout` of its commit is its own alert, fired once — an audit entry
//! (actor `controller`), a `rollback_unconfirmed` webhook and a warning with the numbers; the
//! release status shows the module's `reach.state = "unconfirmed"` meanwhile. When such a
//! rollback reaches the target later, a `rollback_confirmed` webhook and audit entry follow,
//! so the receiver can resolve what it opened. Rollbacks that were never alerted on send
//! nothing more when they confirm: a rollback's own `rollback` event already said it happened.
//!
//! The check runs on a task of its own (`runner::run_reach_check`), never on the signal or
//! evaluation path: one short lock of the reach tracker per period, and the writer lock only
//! when there is something to record. Only the controller lease's holder checks.

use crate::auth::Actor;
use crate::reach::{Figures, Outcome};
use crate::state::AppState;
use crate::webhooks::{WebhookEvent, WebhookKind};
use crate::writer::{to_value, Batch, OpsError};
use std::time::Duration;
use uuid::Uuid;

/// How often the check runs for a given timeout: a tenth of it, between 20 ms and 1 s, so an
/// alert comes at most 10 % (or a second) after its deadline.
pub fn check_period(timeout_ms: u64) -> Duration {
    Duration::from_millis((timeout_ms / 10).clamp(20, 1_000))
}

/// One check: settles the tracker at the current time and records what it found.
pub async fn check(state: &AppState) -> Result<(), OpsError> {
    if !state.lease.held() {
        return Ok(());
    }
    let outcomes = state.reach.settle(crate::clock::now_ms());
    if outcomes.is_empty() {
        return Ok(());
    }
    let target = state.reach.settings().target;
    let actor = Actor::controller();
    let mut w = state.write().await?;
    let mut batch = Batch::default();
    for outcome in outcomes {
        let (figures, kind, action) = match outcome {
            Outcome::Unconfirmed(f) => (f, WebhookKind::RollbackUnconfirmed, "reach.unconfirmed"),
            Outcome::ConfirmedLate(f) => (f, WebhookKind::RollbackConfirmed, "reach.confirmed"),
        };
        let release = figures
            .release
            .as_deref()
            .and_then(|id| Uuid::parse_str(id).ok())
            .and_then(|id| w.releases.get(&id))
            .map(|r| (r.id.to_string(), r.name.clone()));
        let reason = words(&figures, kind, target);
        match kind {
            WebhookKind::RollbackUnconfirmed => tracing::warn!(
                flag = %figures.key, revision = figures.revision, live_clients = figures.live_clients,
                confirmed = figures.confirmed, share = figures.share.unwrap_or(0.0),
                p50_ms = figures.p50_ms, p99_ms = figures.p99_ms, "{reason}"
            ),
            _ => tracing::info!(flag = %figures.key, revision = figures.revision, "{reason}"),
        }
        let numbers = to_value("reach figures", &figures)?;
        let mut entry = w.audit(&actor, action);
        entry.flag = Some(figures.key.clone());
        entry.release = release.as_ref().map(|(id, _)| id.clone());
        entry.reason = Some(reason.clone());
        entry.after = Some(numbers.clone());
        batch.audit.push(entry);
        batch.webhooks.push(WebhookEvent {
            release_id: release.as_ref().map(|(id, _)| id.clone()),
            release: release.map(|(_, name)| name),
            module: Some(figures.key.clone()),
            numbers,
            ..WebhookEvent::new(kind, actor.name.clone(), reason)
        });
    }
    state.commit(&mut w, batch).await
}

/// The alert in words, e.g. "rollback of checkout (revision 42) reached 80.0% of 10 live
/// clients within 10000 ms; the target is 99.0%".
fn words(f: &Figures, kind: WebhookKind, target: f64) -> String {
    let share = f.share.unwrap_or(0.0) * 100.0;
    match kind {
        WebhookKind::RollbackConfirmed => format!(
            "rollback of {} (revision {}) now confirmed by {} of {} live clients ({share:.1}%)",
            f.key, f.revision, f.confirmed, f.live_clients
        ),
        _ => format!(
            "rollback of {} (revision {}) unconfirmed: {} of {} live clients ({share:.1}%) applied it by its deadline; the target is {:.1}%",
            f.key,
            f.revision,
            f.confirmed,
            f.live_clients,
            target * 100.0
        ),
    }
}
