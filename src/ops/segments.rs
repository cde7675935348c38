//! Segment write path: create or replace; every flag using the segment is recompiled in the
//! same commit (a segment that would break a flag is refused).

use super::{prepare_ahead, same_key};
use crate::auth::Actor;
use crate::state::AppState;
use crate::writer::{invalid, Batch, OpsError};
use rollgate_eval::{validate_segment, SegmentDef};

/// Creates or replaces a segment. Returns whether it was created.
pub async fn put(
    state: &AppState,
    actor: &Actor,
    path_key: &str,
    def: SegmentDef,
) -> Result<bool, OpsError> {
    same_key(&def.key, path_key)?;
    validate_segment(&def).map_err(|e| invalid(e.field, e.message))?;
    let ahead = prepare_ahead(state, Vec::new(), vec![def.clone()]).await?;
    let mut w = state.write().await?;
    let before = state.live.load().segments.get(&def.key).cloned();
    let mut entry = w.audit_upsert(actor, "segment", before.as_ref(), &def)?;
    entry.subject = Some(def.key.clone());
    let batch = Batch {
        segments: vec![def],
        ahead,
        ..Batch::audit_only(entry)
    };
    state.commit(&mut w, batch).await?;
    tracing::info!(segment = %path_key, actor = %actor.name, "segment saved");
    Ok(before.is_none())
}
