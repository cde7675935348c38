//! The controller's pure state machine: `next(module, inputs) → Decision` and
//! `apply(module, decision, …) → new rollout`. No clock, no I/O: `now` is an input, so every
//! transition is unit-tested exhaustively and replays identically after a restart.
//!
//! Rules (contract "Module states"):
//! - `pending` starts when the release runs and, unless modules overlap, every earlier
//!   module has completed.
//! - `ramping` advances when the stage's bake time has passed AND the new variant has the
//!   stage's minimum exposures AND no guard objects; the last stage completes the module.
//! - A core breach (or a basic one still out of band after `grace`) rolls back from
//!   `ramping`, `paused`, `held` and `completed`; a basic breach or broken telemetry pauses.
//! - A guard-paused module resumes after a cooldown back in band; an operator pause waits
//!   for an operator. `held` is never advanced. `rolled_back` never re-ramps by itself.

use crate::analysis::Verdict;
use crate::release::{count_of, Counts, DecisionRecord, Module, ModuleState, PauseCause};
use rollgate_eval::Percentage;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Everything `next` needs besides the module itself.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    /// Wall-clock now, Unix ms.
    pub now_ms: u64,
    /// The guards' verdict.
    pub verdict: &'a Verdict,
    /// Cumulative exposures of the module's new variant.
    pub exposures_total: u64,
    /// The release runs and the module's turn has come.
    pub may_start: bool,
    /// How long a guard-paused module must be back in band before it resumes.
    pub cooldown_ms: u64,
}

/// What to do with a module.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Nothing to do; `note` says what the module waits for.
    Wait { note: Option<String> },
    /// Begin ramping at stage 0.
    Start,
    /// Move to stage `to`.
    Advance { to: usize },
    /// The last stage baked: done.
    Complete,
    /// Stop ramping.
    Pause {
        cause: PauseCause,
        reason: String,
        numbers: Value,
    },
    /// Continue ramping (after a pause, a hold, or — operator only — a rollback).
    Resume { reason: String },
    /// Roll back: rollout to 0.
    Rollback { reason: String, numbers: Value },
    /// The guard-paused module is back in band; remember since when.
    BackInBand,
    /// It left the band again before the cooldown ended: the cooldown starts over.
    LeftBand,
}

impl Decision {
    /// True when applying it changes the module.
    pub fn changes_state(&self) -> bool {
        !matches!(self, Decision::Wait { .. })
    }

    /// Short name for logs and the audit log.
    pub fn action(&self) -> &'static str {
        match self {
            Decision::Wait { .. } => "wait",
            Decision::Start => "start",
            Decision::Advance { .. } => "advance",
            Decision::Complete => "complete",
            Decision::Pause { .. } => "pause",
            Decision::Resume { .. } => "resume",
            Decision::Rollback { .. } => "rollback",
            Decision::BackInBand => "in_band",
            Decision::LeftBand => "out_of_band",
        }
    }
}

fn human_ms(ms: u64) -> String {
    humantime::format_duration(std::time::Duration::from_millis(ms)).to_string()
}

/// The controller's decision for `module`.
pub fn next(module: &Module, inputs: &Inputs<'_>) -> Decision {
    let verdict = inputs.verdict;
    if let Verdict::Rollback { reason, numbers } = verdict {
        if matches!(
            module.state,
            ModuleState::Ramping | ModuleState::Paused | ModuleState::Held | ModuleState::Completed
        ) {
            return Decision::Rollback {
                reason: reason.clone(),
                numbers: numbers.clone(),
            };
        }
    }
    match module.state {
        ModuleState::Pending if inputs.may_start => Decision::Start,
        ModuleState::Pending => Decision::Wait {
            note: Some("waiting for the previous module to complete".into()),
        },
        ModuleState::Ramping => ramping(module, inputs),
        ModuleState::Paused => paused(module, inputs),
        ModuleState::Held => held(inputs),
        ModuleState::Completed | ModuleState::RolledBack => Decision::Wait { note: None },
    }
}

fn ramping(module: &Module, inputs: &Inputs<'_>) -> Decision {
    match inputs.verdict {
        Verdict::Pause {
            metric,
            reason,
            grace_ms,
            numbers,
        } => {
            return Decision::Pause {
                cause: PauseCause::Guard {
                    metric: metric.clone(),
                    grace_ms: *grace_ms,
                    from_held: false,
                },
                reason: reason.clone(),
                numbers: numbers.clone(),
            };
        }
        Verdict::DataQuality { reason, numbers } => {
            return Decision::Pause {
                cause: PauseCause::DataQuality,
                reason: reason.clone(),
                numbers: numbers.clone(),
            };
        }
        Verdict::Healthy | Verdict::CannotTell { .. } | Verdict::Rollback { .. } => {}
    }
    let (Some(stage), Some(started)) = (module.stage, module.stage_started_ms) else {
        // A ramping module always has a stage; repair by starting over rather than panicking.
        return Decision::Start;
    };
    let baked = inputs.now_ms.saturating_sub(started);
    if baked < module.stages.min_duration_ms {
        let note = format!(
            "baking: {} of {}",
            human_ms(baked),
            human_ms(module.stages.min_duration_ms)
        );
        return Decision::Wait { note: Some(note) };
    }
    let exposures = inputs
        .exposures_total
        .saturating_sub(module.exposures_at_stage_start);
    // At 100 % there is no old variant left: only the bake time and the absolute bands apply.
    let at_full = module
        .stages
        .percentages
        .get(stage)
        .is_some_and(|p| p.is_full());
    if exposures < module.stages.min_exposures && !at_full {
        let note = format!(
            "waiting for exposures: {exposures} of {}",
            module.stages.min_exposures
        );
        return Decision::Wait { note: Some(note) };
    }
    if let Verdict::CannotTell { reason, .. } = inputs.verdict {
        return Decision::Wait {
            note: Some(format!("stage extended: {reason}")),
        };
    }
    if stage + 1 >= module.stages.percentages.len() {
        Decision::Complete
    } else {
        Decision::Advance { to: stage + 1 }
    }
}

/// A held module is not advanced, but its basic guards still pause it (and roll it back
/// after their grace); a resume after the cooldown returns it to `held`.
fn held(inputs: &Inputs<'_>) -> Decision {
    match inputs.verdict {
        Verdict::Pause {
            metric,
            reason,
            grace_ms,
            numbers,
        } => Decision::Pause {
            cause: PauseCause::Guard {
                metric: metric.clone(),
                grace_ms: *grace_ms,
                from_held: true,
            },
            reason: reason.clone(),
            numbers: numbers.clone(),
        },
        _ => Decision::Wait {
            note: Some("held by hand: resume to let the controller ramp it".into()),
        },
    }
}

fn paused(module: &Module, inputs: &Inputs<'_>) -> Decision {
    let paused_for = inputs
        .now_ms
        .saturating_sub(module.paused_ms.unwrap_or(inputs.now_ms));
    match (&module.paused, inputs.verdict) {
        (
            Some(PauseCause::Guard {
                grace_ms, metric, ..
            }),
            Verdict::Pause {
                reason, numbers, ..
            },
        ) if paused_for >= *grace_ms => Decision::Rollback {
            reason: format!(
                "{metric} still out of band after the {} grace: {reason}",
                human_ms(*grace_ms)
            ),
            numbers: numbers.clone(),
        },
        (Some(PauseCause::Guard { .. }), Verdict::Pause { .. })
            if module.in_band_since_ms.is_some() =>
        {
            Decision::LeftBand
        }
        (Some(PauseCause::Guard { .. }), Verdict::Pause { .. }) => Decision::Wait {
            note: Some("paused: a basic guard is out of band".into()),
        },
        (Some(PauseCause::Guard { metric, .. }), Verdict::Healthy | Verdict::CannotTell { .. }) => {
            match module.in_band_since_ms {
                None => Decision::BackInBand,
                Some(since) if inputs.now_ms.saturating_sub(since) >= inputs.cooldown_ms => {
                    Decision::Resume {
                        reason: format!(
                            "{metric} back in band for {}",
                            human_ms(inputs.cooldown_ms)
                        ),
                    }
                }
                Some(_) => Decision::Wait {
                    note: Some("back in band; cooling down before resuming".into()),
                },
            }
        }
        // Broken telemetry first, then a basic guard out of band: the guard's grace starts now.
        (
            Some(PauseCause::DataQuality),
            Verdict::Pause {
                metric,
                reason,
                grace_ms,
                numbers,
            },
        ) => Decision::Pause {
            cause: PauseCause::Guard {
                metric: metric.clone(),
                grace_ms: *grace_ms,
                from_held: false,
            },
            reason: reason.clone(),
            numbers: numbers.clone(),
        },
        (Some(PauseCause::DataQuality), Verdict::Healthy | Verdict::CannotTell { .. }) => {
            Decision::Resume {
                reason: "telemetry is sound again".into(),
            }
        }
        _ => Decision::Wait {
            note: module.reason.clone(),
        },
    }
}

/// Operator commands on one module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Stop ramping.
    Pause,
    /// Continue (from paused or held) or re-ramp from the first stage (from rolled back).
    Resume,
    /// Roll back now.
    Rollback,
}

/// The decision an operator command means for `module`; `None` when it does not apply.
pub fn command(module: &Module, cmd: Command, reason: &str) -> Option<Decision> {
    use ModuleState::*;
    match (cmd, module.state) {
        (Command::Pause, Ramping | Held) => Some(Decision::Pause {
            cause: PauseCause::Operator,
            reason: reason.to_owned(),
            numbers: json!({}),
        }),
        (Command::Resume, Paused | Held | RolledBack) => Some(Decision::Resume {
            reason: reason.to_owned(),
        }),
        (Command::Rollback, Ramping | Paused | Held | Completed) => Some(Decision::Rollback {
            reason: reason.to_owned(),
            numbers: json!({}),
        }),
        _ => None,
    }
}

/// What [`apply`] needs besides the module and the decision.
#[derive(Debug, Clone)]
pub struct ApplyCtx<'a> {
    /// Wall-clock now, Unix ms.
    pub now_ms: u64,
    /// Current cumulative signal counts of the module's flag (new stage baselines).
    pub counts: &'a Counts,
    /// Log evidence of the stage that ends now, per guard metric (carried into the next).
    pub stage_evidence: &'a BTreeMap<String, f64>,
    /// The flag's current rollout.
    pub rollout: Percentage,
    /// Who decided.
    pub actor: &'a str,
    /// The flag's new variant (for exposure counts in the record).
    pub on_variant: &'a str,
}

/// Applies `decision` to `module`; returns the flag's new rollout when it changes.
pub fn apply(module: &mut Module, decision: &Decision, ctx: &ApplyCtx<'_>) -> Option<Percentage> {
    let now_ms = ctx.now_ms;
    let rollout = ctx.rollout;
    let exposures_total = count_of(ctx.counts, ctx.on_variant, "exposure");
    let before = (module.state, module.stage);
    // Starting a stage: new baselines; the ending stage's evidence is carried over.
    let start_stage = |m: &mut Module, stage: usize, fresh: bool| {
        if fresh {
            m.evidence.clear();
            m.module_baseline = ctx.counts.clone();
        } else {
            for (metric, e) in ctx.stage_evidence {
                *m.evidence.entry(metric.clone()).or_insert(0.0) += e;
            }
        }
        m.stage = Some(stage);
        m.stage_started_ms = Some(now_ms);
        m.exposures_at_stage_start = exposures_total;
        m.stage_baseline = ctx.counts.clone();
        m.stages.percentages.get(stage).copied()
    };
    let new_rollout = match decision {
        Decision::Wait { .. } => return None,
        Decision::BackInBand => {
            module.in_band_since_ms = Some(now_ms);
            return None;
        }
        Decision::LeftBand => {
            module.in_band_since_ms = None;
            return None;
        }
        Decision::Start => {
            module.state = ModuleState::Ramping;
            module.started_ms = Some(now_ms);
            module.reason = Some("ramping: stage 1".into());
            start_stage(module, 0, true)
        }
        Decision::Advance { to } => {
            module.reason = Some(format!("ramping: stage {}", to + 1));
            start_stage(module, *to, false)
        }
        Decision::Complete => {
            module.state = ModuleState::Completed;
            module.reason = Some("completed every stage".into());
            None
        }
        Decision::Pause { cause, reason, .. } => {
            module.state = ModuleState::Paused;
            module.paused = Some(cause.clone());
            module.paused_ms = Some(now_ms);
            module.in_band_since_ms = None;
            module.reason = Some(reason.clone());
            None
        }
        Decision::Resume { reason } => {
            let from = module.state;
            if let Some(PauseCause::Guard {
                from_held: true, ..
            }) = &module.paused
            {
                // Back in band: the module returns to the hold it was in.
                module.state = ModuleState::Held;
                module.paused = None;
                module.paused_ms = None;
                module.in_band_since_ms = None;
                module.reason = Some(format!("back to held: {reason}"));
                return finish(module, decision, ctx, before, None);
            }
            module.state = ModuleState::Ramping;
            module.paused = None;
            module.paused_ms = None;
            module.in_band_since_ms = None;
            module.reason = Some(format!("resumed: {reason}"));
            match from {
                // Bake at the current percentage as the stage it has reached (the last stage at
                // or below it; a hand-set percentage may lie between stages), then continue
                // upwards: a resume never jumps up and never takes users away.
                ModuleState::Paused | ModuleState::Held => {
                    match module
                        .stages
                        .percentages
                        .iter()
                        .rposition(|p| *p <= rollout)
                    {
                        Some(stage) => {
                            start_stage(module, stage, false);
                            None
                        }
                        None => start_stage(module, 0, false),
                    }
                }
                // Only an operator gets here (rolled back): the same users come back first.
                _ => {
                    module.started_ms = Some(now_ms);
                    start_stage(module, 0, true)
                }
            }
        }
        Decision::Rollback { reason, .. } => {
            module.state = ModuleState::RolledBack;
            module.paused = None;
            module.paused_ms = None;
            module.in_band_since_ms = None;
            module.reason = Some(reason.clone());
            Some(Percentage::ZERO)
        }
    };
    finish(module, decision, ctx, before, new_rollout)
}

/// Records the decision on the module and returns the rollout change, if any.
fn finish(
    module: &mut Module,
    decision: &Decision,
    ctx: &ApplyCtx<'_>,
    before: (ModuleState, Option<usize>),
    new_rollout: Option<Percentage>,
) -> Option<Percentage> {
    let rollout = ctx.rollout;
    module.decision = Some(DecisionRecord {
        action: decision.action().to_owned(),
        reason: module.reason.clone().unwrap_or_default(),
        at_ms: ctx.now_ms,
        actor: ctx.actor.to_owned(),
        numbers: json!({
            "from": {"state": before.0, "stage": before.1},
            "to": {"state": module.state, "stage": module.stage},
            "rollout_before": rollout.as_f64(),
            "rollout_after": new_rollout.unwrap_or(rollout).as_f64(),
            "exposures_total": count_of(ctx.counts, ctx.on_variant, "exposure"),
            "guards": decision_numbers(decision),
        }),
    });
    new_rollout.filter(|p| *p != rollout)
}

fn decision_numbers(decision: &Decision) -> Value {
    match decision {
        Decision::Pause { numbers, .. } | Decision::Rollback { numbers, .. } => numbers.clone(),
        _ => Value::Null,
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
