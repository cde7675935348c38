//! Policy write path: create or replace (validated by the caller); the controller then
//! re-arms the guards of flags ramped by hand under it.

use crate::auth::Actor;
use crate::controller::watch;
use crate::policies::Policy;
use crate::state::AppState;
use crate::writer::{Batch, OpsError};

/// Creates or replaces a policy. Returns whether it was created.
pub async fn put(state: &AppState, actor: &Actor, policy: Policy) -> Result<bool, OpsError> {
    let mut w = state.write().await?;
    let before = state.policies.load().get(&policy.name).cloned();
    let mut entry = w.audit_upsert(actor, "policy", before.as_ref(), &policy)?;
    entry.subject = Some(policy.name.clone());
    let name = policy.name.clone();
    let batch = Batch {
        policies: vec![policy],
        ..Batch::audit_only(entry)
    };
    state.commit(&mut w, batch).await?;
    watch::refresh(state, &mut w);
    tracing::info!(policy = %name, actor = %actor.name, "policy saved");
    Ok(before.is_none())
}
