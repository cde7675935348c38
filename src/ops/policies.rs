//! Policy write paths: create or replace (validated by the caller) — the controller then
//! re-arms the guards of flags ramped by hand under it — and delete, refused while a flag or
//! any release names the policy (`super::references`) or while this node loaded it from its
//! `policies/` directory (the file would bring it back at the next start).

use crate::auth::Actor;
use crate::controller::watch;
use crate::policies::Policy;
use crate::state::AppState;
use crate::writer::{to_value, Batch, OpsError};

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

/// Deletes a policy (refused while a flag or a release names it, or a file of this node's
/// `policies/` directory defines it).
pub async fn delete(state: &AppState, actor: &Actor, name: &str) -> Result<(), OpsError> {
    let mut w = state.write().await?;
    let set = state.policies.load();
    let before = set.get(name).ok_or_else(|| OpsError::NotFound {
        what: "policy",
        key: name.to_owned(),
    })?;
    if let Some(file) = set.file_of(name) {
        return Err(OpsError::Conflict(format!(
            "policy {name:?} is loaded from {file} at start; remove the file (on every node) \
             and restart, or it comes back"
        )));
    }
    let live = state.live.load();
    let flags = live.flags().iter().map(|f| &f.def);
    if let Some(user) = super::references::policy_user(flags, w.releases.values(), name) {
        return Err(OpsError::Conflict(format!(
            "policy {name:?} is used by {user}; remove it from there first"
        )));
    }
    let mut entry = w.audit(actor, "policy.delete");
    entry.subject = Some(name.to_owned());
    entry.before = Some(to_value("policy", before)?);
    let batch = Batch {
        deleted_policies: vec![name.to_owned()],
        ..Batch::audit_only(entry)
    };
    state.commit(&mut w, batch).await?;
    watch::refresh(state, &mut w);
    tracing::info!(policy = %name, actor = %actor.name, "policy deleted");
    Ok(())
}
