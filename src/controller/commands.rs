//! Operator commands on releases: create, start, pause, resume, roll back, and the hold that a
//! hand-set percentage puts on a ramping module. Each runs as one controller turn under the
//! writer lock and ends in one commit; the controller then refreshes what it watches.

use super::machine::{self, Command};
use super::transition::Turn;
use super::watch;
use crate::auth::Actor;
use crate::release::{build_release, DecisionRecord, ModuleState, Release, ReleasePlan};
use crate::state::AppState;
use crate::writer::{invalid, to_value, Batch, OpsError, Writer};
use rollgate_eval::Percentage;
use serde_json::json;
use uuid::Uuid;

/// A release operator command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseCommand {
    /// Begin: the first module (or every module, with overlap) ramps at once.
    Start,
    /// Pause every ramping or held module.
    Pause,
    /// Resume paused, held and rolled-back modules.
    Resume,
    /// Roll back every started module.
    Rollback,
    /// Release the protected audiences that wait for an operator (`advance = "manual"`).
    Advance,
}

impl ReleaseCommand {
    /// The command's name in audit actions and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseCommand::Start => "start",
            ReleaseCommand::Pause => "pause",
            ReleaseCommand::Resume => "resume",
            ReleaseCommand::Rollback => "rollback",
            ReleaseCommand::Advance => "advance",
        }
    }
}

/// Validates a plan and stores the release (state `pending`).
pub async fn create_release(
    state: &AppState,
    actor: &Actor,
    plan: ReleasePlan,
) -> Result<Release, OpsError> {
    let policies = state.policies.load();
    let policy = match &plan.policy {
        Some(name) => Some(
            policies
                .get(name)
                .ok_or_else(|| invalid("policy", format!("unknown policy {name:?}")))?,
        ),
        None => None,
    };
    let release = build_release(plan, policy, Uuid::now_v7(), crate::clock::now_rfc3339())
        .map_err(|e| invalid(e.field, e.message))?;
    let mut w = state.write().await?;
    let live = state.live.load();
    for (i, m) in release.modules.iter().enumerate() {
        if live.get(&m.flag).is_none() {
            return Err(invalid(
                format!("modules[{i}].flag"),
                format!("unknown flag {:?}", m.flag),
            ));
        }
        if let Some(j) = m
            .audiences
            .iter()
            .position(|a| !live.segments.contains_key(&a.segment))
        {
            return Err(invalid(
                format!("modules[{i}].audiences[{j}].segment"),
                format!("unknown segment {:?}", m.audiences[j].segment),
            ));
        }
        if let Some((other, _)) = w.live_release_of(&m.flag) {
            return Err(OpsError::Conflict(format!(
                "modules[{i}].flag: flag {:?} already belongs to live release {:?} ({})",
                m.flag, other.name, other.id
            )));
        }
    }
    if let Some(other) = w
        .releases
        .values()
        .find(|r| r.is_live() && r.name == release.name)
    {
        return Err(OpsError::Conflict(format!(
            "a live release is already named {:?} ({})",
            other.name, other.id
        )));
    }
    let mut entry = w.audit(actor, "release.create");
    entry.release = Some(release.id.to_string());
    entry.subject = Some(release.name.clone());
    entry.after = Some(to_value("release plan", &release.plan)?);
    let batch = Batch {
        releases: vec![release.clone()],
        audit: vec![entry],
        ..Batch::default()
    };
    state.commit(&mut w, batch).await?;
    watch::refresh(state, &mut w);
    tracing::info!(release = %release.name, id = %release.id, actor = %actor.name, "release created");
    Ok(release)
}

/// Applies an operator command to a release; returns the release after it.
pub async fn release_command(
    state: &AppState,
    actor: &Actor,
    id: &str,
    cmd: ReleaseCommand,
) -> Result<Release, OpsError> {
    let mut w = state.write().await?;
    let id = w.find_release(id)?;
    let mut release = w.releases[&id].clone();
    let mut turn = Turn::new(state);
    match cmd {
        ReleaseCommand::Start if release.started => {
            return Err(OpsError::Conflict(format!(
                "release {:?} was already started",
                release.name
            )));
        }
        ReleaseCommand::Start => release.started = true,
        _ if !release.started => {
            return Err(OpsError::Conflict(format!(
                "release {:?} has not been started",
                release.name
            )));
        }
        _ => apply_to_modules(&mut turn, &mut w, &mut release, actor, cmd)?,
    }
    let mut entry = w.audit(actor, &format!("release.{}", cmd.as_str()));
    entry.release = Some(release.id.to_string());
    entry.subject = Some(release.name.clone());
    turn.batch.audit.insert(0, entry);
    // Let the machine act right away (a started release ramps its first module at once).
    turn.step_release(&mut w, &mut release);
    turn.batch.releases.push(release.clone());
    turn.commit(&mut w).await?;
    watch::refresh(state, &mut w);
    tracing::info!(release = %release.name, id = %release.id, actor = %actor.name, command = cmd.as_str(), state = ?release.state(), "release command");
    Ok(release)
}

/// Pause, resume or roll back every module the command applies to; a conflict when none.
fn apply_to_modules(
    turn: &mut Turn<'_>,
    w: &mut Writer,
    release: &mut Release,
    actor: &Actor,
    cmd: ReleaseCommand,
) -> Result<(), OpsError> {
    let machine_cmd = match cmd {
        ReleaseCommand::Pause => Command::Pause,
        ReleaseCommand::Resume => Command::Resume,
        _ => Command::Rollback,
    };
    // `advance` applies to audiences only (None); the machine has no such command.
    let audience_cmd = (cmd != ReleaseCommand::Advance).then_some(machine_cmd);
    if cmd == ReleaseCommand::Resume {
        for m in release
            .modules
            .iter()
            .filter(|m| m.state == ModuleState::RolledBack)
        {
            if let Some((other, _)) = w
                .live_release_of(&m.flag)
                .filter(|(r, _)| r.id != release.id)
            {
                return Err(OpsError::Conflict(format!(
                    "flag {:?} now belongs to live release {:?}",
                    m.flag, other.name
                )));
            }
        }
    }
    let reason = actor
        .reason
        .clone()
        .unwrap_or_else(|| format!("{} by {}", cmd.as_str(), actor.name).to_lowercase());
    let mut acted = false;
    for i in 0..release.modules.len() {
        if !release.modules[i].audiences.is_empty() {
            acted |= turn.command_audiences(w, release, i, audience_cmd, &reason, actor);
            continue;
        }
        if cmd == ReleaseCommand::Advance {
            continue;
        }
        let Some(d) = machine::command(&release.modules[i], machine_cmd, &reason) else {
            continue;
        };
        acted = true;
        if let Some((def, obs)) = turn.observe(release, i) {
            turn.transition(w, release, i, &d, def, &obs, actor);
        }
    }
    if acted {
        return Ok(());
    }
    Err(OpsError::Conflict(format!(
        "nothing to {} in release {:?} (state {:?})",
        cmd.as_str(),
        release.name,
        release.state()
    )))
}

/// A hand-set percentage on a flag that a live release is ramping holds that module: the
/// controller stops advancing it until an operator resumes it (guards stay armed).
pub fn hold_for_manual_rollout(
    w: &mut Writer,
    batch: &mut Batch,
    actor: &Actor,
    key: &str,
    to: Percentage,
) {
    let Some((release, index)) = w.live_release_of(key) else {
        return;
    };
    if !matches!(
        release.modules[index].state,
        ModuleState::Ramping | ModuleState::Paused
    ) {
        return;
    }
    let mut release = release.clone();
    let module = &mut release.modules[index];
    let reason = format!("rollout set by hand to {to} by {}", actor.name);
    module.state = ModuleState::Held;
    module.paused = None;
    module.paused_ms = None;
    module.reason = Some(reason.clone());
    module.decision = Some(DecisionRecord {
        action: "hold".into(),
        reason: reason.clone(),
        at_ms: crate::clock::now_ms(),
        actor: actor.name.clone(),
        numbers: json!({"rollout_after": to.as_f64(), "stage": module.stage}),
    });
    let mut entry = w.audit(actor, "module.hold");
    entry.flag = Some(key.to_owned());
    entry.release = Some(release.id.to_string());
    entry.reason = Some(reason);
    batch.audit.push(entry);
    batch.releases.push(release);
}
