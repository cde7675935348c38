//! The controller's pass: every running release (or only those watching the flags a signal
//! batch touched) and every hand guard is stepped once, and all resulting transitions are
//! committed in one batch before they take effect.

use super::hand;
use super::transition::Turn;
use super::watch;
use crate::state::AppState;
use crate::writer::{OpsError, WriteGuard};
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
        super::runner::refused(state, e).await;
        state.wakeup.notify_one();
    }
}
