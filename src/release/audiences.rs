//! Audiences of a release (docs/releases.md#audiences): checking a module's audiences and
//! resolving their phases, which phase ramps now, and what the flag serves each audience.
//! Pure functions over [`Module`] (the plan types are in `plan.rs`, the phase in `module.rs`).
//!
//! A module with audiences ramps in phases: the non-protected audiences first (listed order),
//! then everyone else (the module's own fields), then the protected audiences (listed order;
//! `advance = "manual"` waits for an operator). Each phase is a [`Module`] of its own, so the
//! same state machine and guards drive every phase.

use super::module::{AudiencePhase, Module, ModuleState};
use super::plan::{resolve_stages, Advance, AudiencePlan, PlanError, StagesOverride};
use crate::policies::Policy;
use rollgate_eval::Percentage;

/// Which phase of a module ramps now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Active {
    /// Audience `i` of the module.
    Audience(usize),
    /// Everyone else (the module's own fields).
    EveryoneElse,
    /// Every phase is done (or the module is rolled back).
    Done,
}

fn perr(field: String, message: impl Into<String>) -> PlanError {
    PlanError {
        field,
        message: message.into(),
    }
}

/// Checks a module's audiences (syntax, duplicates, `advance`) and resolves their stages:
/// audience → module → release → policy → defaults.
pub fn build_phases(
    at: &str,
    flag: &str,
    audiences: &[AudiencePlan],
    module_stages: Option<&StagesOverride>,
    release_stages: Option<&StagesOverride>,
    policy: Option<&Policy>,
) -> Result<Vec<AudiencePhase>, PlanError> {
    let mut out = Vec::with_capacity(audiences.len());
    for (j, a) in audiences.iter().enumerate() {
        let here = format!("{at}.audiences[{j}]");
        if !rollgate_eval::valid_flag_key(&a.segment) {
            return Err(perr(
                format!("{here}.segment"),
                "must be a segment key: [a-z0-9][a-z0-9._-]{0,127}",
            ));
        }
        if audiences[..j].iter().any(|b| b.segment == a.segment) {
            return Err(perr(
                format!("{here}.segment"),
                format!(
                    "segment {:?} is already an audience of this module",
                    a.segment
                ),
            ));
        }
        if a.advance.is_some() && !a.protected {
            return Err(perr(
                format!("{here}.advance"),
                "only a protected audience waits for an advance",
            ));
        }
        // The audience's stages override the module's, which override the release's.
        let merged = merge(a.stages.as_ref(), module_stages);
        let stages = resolve_stages(&here, merged.as_ref(), release_stages, policy)?;
        out.push(AudiencePhase {
            segment: a.segment.clone(),
            protected: a.protected,
            advance: a.advance.unwrap_or_default(),
            released: false,
            percentage: Percentage::ZERO,
            phase: Module::pending(flag.to_owned(), stages),
        });
    }
    Ok(out)
}

fn merge(top: Option<&StagesOverride>, below: Option<&StagesOverride>) -> Option<StagesOverride> {
    match (top, below) {
        (None, None) => None,
        (Some(t), None) => Some(t.clone()),
        (None, Some(b)) => Some(b.clone()),
        (Some(t), Some(b)) => Some(StagesOverride {
            percentages: t.percentages.clone().or_else(|| b.percentages.clone()),
            min_duration: t.min_duration.clone().or_else(|| b.min_duration.clone()),
            min_exposures: t.min_exposures.or(b.min_exposures),
        }),
    }
}

/// The phase that ramps now: the first early audience not completed, then everyone else, then
/// the first protected audience not completed. `Done` once rolled back.
pub fn active(module: &Module) -> Active {
    if module.state == ModuleState::RolledBack {
        return Active::Done;
    }
    let unfinished = |protected: bool| {
        module
            .audiences
            .iter()
            .position(|a| a.protected == protected && a.phase.state != ModuleState::Completed)
    };
    if let Some(j) = unfinished(false) {
        return Active::Audience(j);
    }
    if module.state != ModuleState::Completed {
        return Active::EveryoneElse;
    }
    unfinished(true).map_or(Active::Done, Active::Audience)
}

/// Whether the module still has phases to ramp after (or besides) everyone else: used so a
/// release is not complete, and the next module does not start, before them.
pub fn unfinished(module: &Module) -> bool {
    !module.audiences.is_empty() && active(module) != Active::Done
}

/// Whether a protected manual audience is waiting for an operator's advance.
pub fn waiting(a: &AudiencePhase) -> bool {
    a.protected
        && a.advance == Advance::Manual
        && !a.released
        && a.phase.state == ModuleState::Pending
}

/// The flag's `audiences` for the module's phases: the protected ones first (so a protected
/// user who also matches an early segment stays protected), then the early ones, each at its
/// current percentage.
pub fn flag_audiences(module: &Module) -> Vec<rollgate_eval::AudienceDef> {
    let of = |protected: bool| {
        module
            .audiences
            .iter()
            .filter(move |a| a.protected == protected)
            .map(|a| rollgate_eval::AudienceDef {
                segment: a.segment.clone(),
                rollout: a.percentage,
            })
    };
    of(true).chain(of(false)).collect()
}

/// Whether a phase is watched by its guards: it has started and is not rolled back.
pub fn watched(phase: &Module) -> bool {
    matches!(
        phase.state,
        ModuleState::Ramping | ModuleState::Paused | ModuleState::Held | ModuleState::Completed
    )
}

/// How many phases of `module` its guards test at once (at least 1): every watched phase.
pub fn tested_phases(module: &Module) -> usize {
    (usize::from(watched(module))
        + module
            .audiences
            .iter()
            .filter(|a| watched(&a.phase))
            .count())
    .max(1)
}

/// `policy` with every guard's α divided by `n` (the phases tested at once), so the phases
/// share the module's false-rollback budget (docs/guards.md#audiences-like-with-like).
pub fn share_budget(policy: &Policy, n: usize) -> Policy {
    let n = n.max(1) as f64;
    let mut shared = policy.clone();
    shared.false_rollback_rate /= n;
    shared.confidence = 1.0 - (1.0 - policy.confidence) / n;
    for g in &mut shared.guards {
        g.confidence = g.confidence.map(|c| 1.0 - (1.0 - c) / n);
    }
    shared
}

/// The status name of audience `j` of `module`: `pending`, `ramping`, `completed`, `waiting`
/// (its turn has come and it waits for an operator's advance), `rolled_back`, or the machine's
/// `paused` / `held`.
pub fn state_name(module: &Module, j: usize) -> &'static str {
    let a = &module.audiences[j];
    if active(module) == Active::Audience(j) && waiting(a) {
        "waiting"
    } else {
        a.phase.state.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plans(v: serde_json::Value) -> Vec<AudiencePlan> {
        serde_json::from_value(v).unwrap()
    }

    fn module(v: serde_json::Value) -> Module {
        let stages = resolve_stages("m", None, None, None).unwrap();
        Module {
            audiences: build_phases("modules[0]", "f", &plans(v), None, None, None).unwrap(),
            ..Module::pending("f".into(), stages)
        }
    }

    #[test]
    fn phases_run_early_then_everyone_else_then_protected() {
        let mut m = module(json!([
            {"segment": "seniors", "protected": true, "advance": "manual"},
            {"segment": "innovation"}, {"segment": "staff"}
        ]));
        assert_eq!(active(&m), Active::Audience(1));
        m.audiences[1].phase.state = ModuleState::Completed;
        assert_eq!(active(&m), Active::Audience(2));
        m.audiences[2].phase.state = ModuleState::Completed;
        assert_eq!(active(&m), Active::EveryoneElse);
        assert_eq!(state_name(&m, 0), "pending", "not its turn yet");
        m.state = ModuleState::Completed;
        assert_eq!(active(&m), Active::Audience(0));
        assert_eq!(state_name(&m, 0), "waiting");
        assert!(unfinished(&m));
        m.audiences[0].phase.state = ModuleState::Completed;
        assert_eq!(active(&m), Active::Done);
        assert!(!unfinished(&m));
        m.state = ModuleState::RolledBack;
        assert_eq!(active(&m), Active::Done);
    }

    #[test]
    fn watched_phases_share_the_budget() {
        let policy = Policy::from_toml(
            "name = \"p\"\nconfidence = 0.99\nfalse_rollback_rate = 0.01\n[[guard]]\nmetric = \"e\"\nclass = \"core\"\nmax_relative_increase = 0.0\nconfidence = 0.999\n",
        )
        .unwrap();
        let mut m = module(json!([{"segment": "a"}, {"segment": "b", "protected": true}]));
        assert_eq!(tested_phases(&m), 1);
        m.audiences[0].phase.state = ModuleState::Completed;
        m.state = ModuleState::Ramping;
        assert_eq!(tested_phases(&m), 2);
        let shared = share_budget(&policy, 2);
        assert!((shared.false_rollback_rate - 0.005).abs() < 1e-12);
        assert!((shared.confidence - 0.995).abs() < 1e-12);
        assert!((shared.guards[0].confidence.unwrap() - 0.9995).abs() < 1e-12);
    }

    #[test]
    fn the_flag_lists_protected_audiences_first() {
        let mut m =
            module(json!([{"segment": "innovation"}, {"segment": "seniors", "protected": true}]));
        m.audiences[0].percentage = Percentage::from_f64(25.0).unwrap();
        let listed: Vec<(String, f64)> = flag_audiences(&m)
            .into_iter()
            .map(|a| (a.segment, a.rollout.as_f64()))
            .collect();
        assert_eq!(
            listed,
            [("seniors".into(), 0.0), ("innovation".into(), 25.0)]
        );
    }

    #[test]
    fn bad_audiences_name_the_field() {
        for (v, field) in [
            (
                json!([{"segment": "a"}, {"segment": "a", "protected": true}]),
                "modules[0].audiences[1].segment",
            ),
            (
                json!([{"segment": "Bad Key"}]),
                "modules[0].audiences[0].segment",
            ),
            (
                json!([{"segment": "a", "advance": "manual"}]),
                "modules[0].audiences[0].advance",
            ),
            (
                json!([{"segment": "a", "stages": {"percentages": [0]}}]),
                "modules[0].audiences[0].stages.percentages[0]",
            ),
        ] {
            let err =
                build_phases("modules[0]", "f", &plans(v.clone()), None, None, None).unwrap_err();
            assert_eq!(err.field, field, "{v}");
        }
    }

    #[test]
    fn an_audience_stage_override_falls_back_to_the_module_field_by_field() {
        let module_stages = StagesOverride {
            percentages: Some(vec![10.0, 100.0]),
            min_duration: Some("2s".into()),
            min_exposures: None,
        };
        let phases = build_phases(
            "modules[0]",
            "f",
            &plans(json!([{"segment": "a", "stages": {"percentages": [50, 100]}}])),
            Some(&module_stages),
            None,
            None,
        )
        .unwrap();
        let stages = &phases[0].phase.stages;
        assert_eq!(stages.percentages.len(), 2);
        assert_eq!(stages.percentages[0].as_f64(), 50.0);
        assert_eq!(stages.min_duration_ms, 2000);
    }
}
