//! The controller's pass: every running release (or only those watching the flags a signal
//! batch touched) and every hand guard is stepped once, and all resulting transitions are
//! committed in one batch before they take effect.

use super::hand;
use super::transition::Turn;
use super::watch;
use crate::auth::Actor;
use crate::cluster::ClusterError;
use crate::state::AppState;
use crate::writer::{Batch, OpsError, WriteGuard};
use uuid::Uuid;

/// One controller pass over every running release, or only those watching `only` flags.
/// Does nothing on a node that does not hold the controller lease.
pub async fn run(state: &AppState, only: Option<&[String]>) -> Result<(), OpsError> {
    if !state.lease.held() {
        return Ok(());
    }
    // Decided on this node's applied state under the local lock only: a pass that decides
    // nothing costs no database round trip. A decision commits under the lease's fence and
    // only if no other node wrote since (otherwise the commit refuses it, and the next pass,
    // on the newer state, decides again).
    let mut w = WriteGuard::local(state.writer.lock().await);
    let mut turn = Turn::new(state);
    let ids: Vec<Uuid> = w
        .releases
        .values()
        .filter(|r| r.started && r.is_live())
        .filter(|r| only.is_none_or(|flags| r.modules.iter().any(|m| flags.contains(&m.flag))))
        .map(|r| r.id)
        .collect();
    for id in ids {
        let mut release = w.releases[&id].clone();
        if turn.step_release(&mut w, &mut release) {
            turn.batch.releases.push(release);
        }
    }
    hand::step(&mut turn, &mut w, only)?;
    if turn.batch.releases.is_empty() && turn.batch.audit.is_empty() {
        return Ok(());
    }
    turn.batch.fence = state.lease.fence();
    turn.commit(&mut w).await?;
    watch::refresh(state, &mut w);
    Ok(())
}

/// After a signal batch: steps the modules of the touched flags that the controller watches,
/// before the batch is answered (a zero-tolerance breach is rolled back within the request).
/// A failure is logged and left to the next tick, which the controller is woken for.
pub async fn after_signals(state: &AppState, touched: &[String]) {
    let watched = state.watched.load();
    let flags: Vec<String> = touched
        .iter()
        .filter(|f| watched.contains(*f))
        .cloned()
        .collect();
    if flags.is_empty() {
        return;
    }
    if let Err(e) = run(state, Some(&flags)).await {
        // A cluster's refusals (another node wrote first, the fence) are handled as the
        // controller loop handles them; anything else is logged. The loop retries.
        refused(state, e).await;
        state.wakeup.notify_one();
    }
}

/// What a failed pass means. In a cluster a decision may be refused because another node wrote
/// first (the pass decides again once this node has applied that write) or because this node's
/// lease tenure ended (the fence: it is recorded in the audit log, and this node stops deciding).
pub(super) async fn refused(state: &AppState, e: OpsError) {
    match (e, &state.cluster) {
        (OpsError::Conflict(why), Some(node)) => {
            tracing::debug!(%why, "controller decision refused: the cluster moved on; deciding again");
            node.wakes.feed.notify_one();
        }
        (OpsError::Cluster(ClusterError::Fenced { epoch }), _) => {
            tracing::warn!(
                epoch,
                "controller decision refused by the fence: this node no longer holds the lease"
            );
            let reason = format!(
                "lease epoch {epoch} is no longer current: this node's pending decision was not applied"
            );
            let record = async {
                let mut w = state.write().await?;
                let mut entry = w.audit(&Actor::controller(), "controller.fenced");
                entry.reason = Some(reason);
                state.commit(&mut w, Batch::audit_only(entry)).await
            };
            if let Err(e) = record.await {
                tracing::warn!(error = %e, "recording the fenced decision failed");
            }
        }
        (e, _) => tracing::error!(error = %e, "controller step failed; retrying on the next tick"),
    }
}
