//! Segment write paths: create or replace — every flag using the segment is recompiled in the
//! same commit (a segment that would break a flag is refused) — and delete, refused while a
//! flag or a live release uses it (`super::references`).

use super::{prepare_ahead, same_key};
use crate::auth::Actor;
use crate::state::AppState;
use crate::writer::{invalid, to_value, Batch, OpsError};
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

/// Deletes a segment (refused while a flag or a live release uses it).
pub async fn delete(state: &AppState, actor: &Actor, key: &str) -> Result<(), OpsError> {
    let mut w = state.write().await?;
    let live = state.live.load();
    let before = live.segments.get(key).ok_or_else(|| OpsError::NotFound {
        what: "segment",
        key: key.to_owned(),
    })?;
    let flags = live.flags().iter().map(|f| &f.def);
    if let Some(user) = super::references::segment_user(flags, w.releases.values(), key) {
        return Err(OpsError::Conflict(format!(
            "segment {key:?} is used by {user}; remove it from there first"
        )));
    }
    let mut entry = w.audit(actor, "segment.delete");
    entry.subject = Some(key.to_owned());
    entry.before = Some(to_value("segment", before)?);
    let batch = Batch {
        deleted_segments: vec![key.to_owned()],
        ..Batch::audit_only(entry)
    };
    state.commit(&mut w, batch).await?;
    tracing::info!(segment = %key, actor = %actor.name, "segment deleted");
    Ok(())
}
