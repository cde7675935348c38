//! Alerts from Prometheus Alertmanager turned into decisions: a firing alert that names a
//! release or a flag rolls it back (severity `critical`) or pauses it (any other severity);
//! resolved alerts and alerts naming nothing of ours are recorded in the audit log.
//!
//! Every alert of a notification is applied on its own: one that cannot be applied (an unknown
//! flag or release) is reported with its outcome and never stops the others.

use super::commands::{release_command, ReleaseCommand};
use super::machine::{self, Command};
use super::transition::Turn;
use super::watch;
use crate::auth::Actor;
use crate::state::AppState;
use crate::writer::{to_value, Batch, OpsError};
use rollgate_eval::Percentage;
use serde::Serialize;

/// One alert, as the controller needs it.
#[derive(Debug, Clone)]
pub struct AlertInput {
    /// `alertname`.
    pub name: String,
    /// Firing (true) or resolved.
    pub firing: bool,
    /// `severity = critical`.
    pub critical: bool,
    /// `rollgate_flag` label.
    pub flag: Option<String>,
    /// `rollgate_release` label.
    pub release: Option<String>,
    /// `summary` or `description` annotation.
    pub summary: Option<String>,
    /// Alertmanager's fingerprint.
    pub fingerprint: Option<String>,
}

/// What happened to one alert.
#[derive(Debug, Clone, Serialize)]
pub struct AlertOutcome {
    /// `alertname`.
    pub alert: String,
    /// Alertmanager's fingerprint.
    pub fingerprint: Option<String>,
    /// `firing` or `resolved`.
    pub status: &'static str,
    /// Whether it was critical.
    pub critical: bool,
    /// `applied` (something changed), `noop` (nothing to do), `recorded` (audit only),
    /// `not_found` (names an unknown flag or release).
    pub result: &'static str,
    /// In words.
    pub outcome: String,
}

/// Applies every alert of a notification in order; storage failures stop the notification
/// (nothing after them is acknowledged, so Alertmanager's retry is right).
pub async fn apply_all(
    state: &AppState,
    actor: &Actor,
    alerts: Vec<AlertInput>,
) -> Result<Vec<AlertOutcome>, OpsError> {
    let mut outcomes = Vec::with_capacity(alerts.len());
    for alert in alerts {
        let reason = match &alert.summary {
            Some(s) => format!("alert {}: {s}", alert.name),
            None => format!("alert {}", alert.name),
        };
        let actor = Actor {
            name: actor.name.clone(),
            reason: Some(reason),
        };
        let (result, outcome) = match apply_one(state, &actor, &alert).await {
            Ok(done) => done,
            Err(OpsError::NotFound { what, key }) => (
                "not_found",
                format!("{what} {key:?} not found; nothing done"),
            ),
            Err(e) => return Err(e),
        };
        outcomes.push(AlertOutcome {
            alert: alert.name,
            fingerprint: alert.fingerprint,
            status: if alert.firing { "firing" } else { "resolved" },
            critical: alert.critical,
            result,
            outcome,
        });
    }
    Ok(outcomes)
}

async fn apply_one(
    state: &AppState,
    actor: &Actor,
    alert: &AlertInput,
) -> Result<(&'static str, String), OpsError> {
    if alert.firing {
        let cmd = if alert.critical {
            ReleaseCommand::Rollback
        } else {
            ReleaseCommand::Pause
        };
        if let Some(id) = &alert.release {
            return match release_command(state, actor, id, cmd).await {
                Ok(r) => Ok((
                    "applied",
                    format!("release {} {:?}", r.name, r.state()).to_lowercase(),
                )),
                Err(OpsError::Conflict(why)) => Ok(("noop", format!("nothing to do: {why}"))),
                Err(e) => Err(e),
            };
        }
        if let Some(flag) = &alert.flag {
            return module_alert(state, actor, flag, alert.critical).await;
        }
    }
    let mut w = state.write().await?;
    let action = if alert.firing {
        "alert.ignored"
    } else {
        "alert.resolved"
    };
    let mut entry = w.audit(actor, action);
    entry.flag = alert.flag.clone();
    entry.release = alert.release.clone();
    state.commit(&mut w, Batch::audit_only(entry)).await?;
    Ok(if alert.firing {
        (
            "recorded",
            "recorded: the alert names no rollgate flag or release".into(),
        )
    } else {
        ("recorded", "resolved: recorded".into())
    })
}

/// A firing alert naming a flag: its module's command, or (ramped by hand) a rollback to 0 %.
async fn module_alert(
    state: &AppState,
    actor: &Actor,
    flag: &str,
    critical: bool,
) -> Result<(&'static str, String), OpsError> {
    let mut w = state.write().await?;
    let mut turn = Turn::new(state);
    let Some(current) = turn.flag(flag) else {
        return Err(OpsError::NotFound {
            what: "flag",
            key: flag.to_owned(),
        });
    };
    let reason = actor.reason.clone().unwrap_or_default();
    if let Some((release, index)) = w.live_release_of(flag) {
        let mut release = release.clone();
        let cmd = if critical {
            Command::Rollback
        } else {
            Command::Pause
        };
        if !release.modules[index].audiences.is_empty() {
            // Every audience: a critical alert rolls them all back, a warning pauses the one
            // ramping now.
            if !turn.command_audiences(&mut w, &mut release, index, Some(cmd), &reason, actor) {
                return Ok(("noop", format!("nothing to do: module {flag}")));
            }
            let outcome = format!("module {flag} of release {}: {cmd:?}", release.name);
            turn.batch.releases.push(release);
            turn.commit(&mut w).await?;
            watch::refresh(state, &mut w);
            return Ok(("applied", outcome.to_lowercase()));
        }
        let Some(decision) = machine::command(&release.modules[index], cmd, &reason) else {
            let state_now = release.modules[index].state.as_str();
            return Ok((
                "noop",
                format!("nothing to do: module {flag} is {state_now}"),
            ));
        };
        if let Some((def, obs)) = turn.observe(&release, index) {
            turn.transition(&mut w, &mut release, index, &decision, def, &obs, actor);
        }
        let outcome = format!(
            "module {flag} of release {}: {}",
            release.name,
            decision.action()
        );
        turn.batch.releases.push(release);
        turn.commit(&mut w).await?;
        watch::refresh(state, &mut w);
        return Ok(("applied", outcome));
    }
    if !critical || current.rollout.is_zero() {
        let mut entry = w.audit(actor, "alert.recorded");
        entry.flag = Some(flag.to_owned());
        state.commit(&mut w, Batch::audit_only(entry)).await?;
        return Ok((
            "recorded",
            format!("recorded: flag {flag} is not in a running release"),
        ));
    }
    // A flag ramped by hand: a critical alert still rolls it back.
    let mut def = current.clone();
    def.rollout = Percentage::ZERO;
    let mut entry = w.audit(actor, "flag.rollback");
    entry.flag = Some(flag.to_owned());
    entry.before = Some(to_value("flag", &current)?);
    entry.after = Some(to_value("flag", &def)?);
    let batch = Batch {
        flags: vec![def],
        audit: vec![entry],
        ..Batch::default()
    };
    state.commit(&mut w, batch).await?;
    watch::refresh(state, &mut w);
    tracing::warn!(flag = %flag, actor = %actor.name, reason = %reason, "flag rolled back by alert");
    Ok(("applied", format!("flag {flag} rolled back to 0%")))
}
