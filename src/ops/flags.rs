//! Flag write paths: create or replace, delete, manual rollout, kill switch. A hand-set
//! rollout on a flag that a live release ramps holds that module (`controller::commands`).

use super::{prepare_ahead, same_key};
use crate::auth::Actor;
use crate::controller::commands::hold_for_manual_rollout;
use crate::controller::watch;
use crate::state::AppState;
use crate::writer::{invalid, to_value, Batch, OpsError};
use rollgate_eval::{FlagDef, Percentage};

/// Creates or replaces a flag. Returns whether it was created.
pub async fn put(
    state: &AppState,
    actor: &Actor,
    path_key: &str,
    mut def: FlagDef,
) -> Result<bool, OpsError> {
    same_key(&def.key, path_key)?;
    if let Some(policy) = &def.policy {
        if state.policies.load().get(policy).is_none() {
            return Err(invalid("policy", format!("unknown policy {policy:?}")));
        }
    }
    let salt_given = def.salt.is_some();
    let in_force = state.live.load_full();
    keep_salt(&mut def, in_force.get(path_key).map(|f| &f.def), salt_given);
    let ahead = prepare_ahead(state, vec![def.clone()], Vec::new()).await?;
    let mut w = state.write().await?;
    let live = state.live.load();
    let before = live.get(&def.key).map(|f| f.def.clone());
    keep_salt(&mut def, before.as_ref(), salt_given);
    // The audiences of a flag whose live release ramps audiences are the controller's: a
    // replacement without `audiences` keeps them (docs/releases.md#audiences).
    if def.audiences.is_empty()
        && w.live_release_of(&def.key)
            .is_some_and(|(r, i)| !r.modules[i].audiences.is_empty())
    {
        def.audiences = before
            .as_ref()
            .map(|b| b.audiences.clone())
            .unwrap_or_default();
    }
    let mut entry = w.audit_upsert(actor, "flag", before.as_ref(), &def)?;
    entry.flag = Some(def.key.clone());
    let mut batch = Batch::audit_only(entry);
    if let Some(before) = &before {
        if before.rollout != def.rollout {
            hold_for_manual_rollout(&mut w, &mut batch, actor, &def.key, def.rollout);
        }
    }
    batch.flags.push(def);
    batch.ahead = ahead;
    state.commit(&mut w, batch).await?;
    watch::refresh(state, &mut w);
    tracing::info!(flag = %path_key, actor = %actor.name, created = before.is_none(), "flag saved");
    Ok(before.is_none())
}

/// Deletes a flag (refused while a live release ramps it).
pub async fn delete(state: &AppState, actor: &Actor, key: &str) -> Result<(), OpsError> {
    let mut w = state.write().await?;
    let live = state.live.load();
    let before = live.get(key).ok_or_else(|| OpsError::NotFound {
        what: "flag",
        key: key.to_owned(),
    })?;
    if let Some((release, _)) = w.live_release_of(key) {
        return Err(OpsError::Conflict(format!(
            "flag {key:?} belongs to live release {:?}",
            release.name
        )));
    }
    let mut entry = w.audit(actor, "flag.delete");
    entry.flag = Some(key.to_owned());
    entry.before = Some(to_value("flag", &before.def)?);
    let batch = Batch {
        deleted_flags: vec![key.to_owned()],
        ..Batch::audit_only(entry)
    };
    state.commit(&mut w, batch).await?;
    watch::refresh(state, &mut w);
    tracing::info!(flag = %key, actor = %actor.name, "flag deleted");
    Ok(())
}

/// Sets a flag's rollout percentage by hand.
pub async fn set_rollout(
    state: &AppState,
    actor: &Actor,
    key: &str,
    percentage: Percentage,
) -> Result<FlagDef, OpsError> {
    edit(state, actor, key, "flag.rollout", |d| {
        d.rollout = percentage
    })
    .await
}

/// Flips a flag's kill switch (`enabled = false` kills it).
pub async fn set_enabled(
    state: &AppState,
    actor: &Actor,
    key: &str,
    enabled: bool,
) -> Result<FlagDef, OpsError> {
    let action = if enabled { "flag.unkill" } else { "flag.kill" };
    edit(state, actor, key, action, |d| d.enabled = enabled).await
}

/// Changes one flag with `change`, durably, and returns the new definition.
async fn edit(
    state: &AppState,
    actor: &Actor,
    key: &str,
    action: &str,
    change: impl Fn(&mut FlagDef),
) -> Result<FlagDef, OpsError> {
    // Compiled ahead from the definition in force now; used if it is still the one in force.
    let ahead = match state.live.load().get(key) {
        Some(flag) => {
            let mut def = flag.def.clone();
            change(&mut def);
            prepare_ahead(state, vec![def], Vec::new()).await?
        }
        None => None,
    };
    let mut w = state.write().await?;
    let live = state.live.load_full();
    let current = live.get(key).ok_or_else(|| OpsError::NotFound {
        what: "flag",
        key: key.to_owned(),
    })?;
    let mut def = current.def.clone();
    change(&mut def);
    let mut entry = w.audit(actor, action);
    entry.flag = Some(key.to_owned());
    entry.before = Some(to_value("flag", &current.def)?);
    entry.after = Some(to_value("flag", &def)?);
    let mut batch = Batch::audit_only(entry);
    if def.rollout != current.def.rollout {
        hold_for_manual_rollout(&mut w, &mut batch, actor, key, def.rollout);
    }
    batch.flags.push(def.clone());
    batch.ahead = ahead;
    state.commit(&mut w, batch).await?;
    watch::refresh(state, &mut w);
    tracing::info!(flag = %key, actor = %actor.name, action, rollout = def.rollout.as_f64(), enabled = def.enabled, "flag changed");
    Ok(def)
}

/// The salt decides who is in the cohort: a replacement that does not mention it keeps the one
/// in force (e.g. a shared release cohort's) instead of reshuffling the users.
fn keep_salt(def: &mut FlagDef, in_force: Option<&FlagDef>, salt_given: bool) {
    if !salt_given {
        def.salt = in_force.and_then(|b| b.salt.clone());
    }
}
