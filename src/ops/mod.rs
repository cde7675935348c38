//! The operators' write paths, one resource per file: [`flags`] (create, replace, delete,
//! rollout, kill switch), [`segments`], [`tokens`], [`policies`] (each create, replace,
//! delete; [`references`] says what still uses one), and [`apply`] (a whole
//! document of them in one batch). Each validates, takes the
//! writer lock, builds one batch with its audit entry, commits it through `writer`, and — where
//! the change can move what the controller watches — lets the controller refresh.
//! Release commands and alerts belong to the controller (`controller::commands`, `::alerts`).
//!
//! Compiling is done before the writer lock (`prepare_ahead`): a write that takes long to
//! compile never delays a kill switch, a rollback or a controller decision queued behind it.

pub mod apply;
pub mod flags;
pub mod policies;
pub mod references;
pub mod segments;
pub mod tokens;

use crate::state::AppState;
use crate::writer::{invalid, Ahead, OpsError};
use rollgate_eval::{FlagDef, SegmentDef};

/// Refuses a body whose key differs from the path's.
fn same_key(body_key: &str, path_key: &str) -> Result<(), OpsError> {
    if body_key == path_key {
        return Ok(());
    }
    Err(invalid(
        "key",
        format!("body key {body_key:?} differs from path key {path_key:?}"),
    ))
}

/// Prepares the next snapshot on a blocking thread, outside the writer lock. A definition that
/// does not compile is refused here, before anything waits; `None` when the preparation could
/// not run (the commit then compiles under the lock).
async fn prepare_ahead(
    state: &AppState,
    flags: Vec<FlagDef>,
    segments: Vec<SegmentDef>,
) -> Result<Option<Ahead>, OpsError> {
    let base = state.live.load_full();
    match tokio::task::spawn_blocking(move || Ahead::prepare(base, flags, segments)).await {
        Ok(prepared) => prepared.map(Some),
        Err(e) => {
            tracing::warn!(error = %e, "preparing a snapshot ahead of the lock failed; compiling under it");
            Ok(None)
        }
    }
}
