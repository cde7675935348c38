//! Releases: the plan an operator submits (`plan.rs`), the persisted state of a release and
//! its modules (`module.rs`, here), and their audiences (`audiences.rs`). Pure data and pure
//! functions; the controller drives them.
//!
//! Stage plans resolve field by field: module override → release override → the policy's
//! `[stages]` → the defaults (`[1, 5, 25, 50, 100]`, no bake time, no exposure minimum).

pub mod audiences;
mod module;
mod plan;

pub use module::{
    count_of, AudiencePhase, Counts, DecisionRecord, Module, ModuleState, PauseCause,
};
pub use plan::{
    resolve_stages, Advance, AudiencePlan, Cohort, ModulePlan, PlanError, ReleasePlan, Stages,
    StagesOverride,
};

use crate::policies::Policy;
use plan::plan_err;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Release states of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseState {
    /// Created, not started.
    Pending,
    /// Started; modules ramp.
    Running,
    /// Some module is paused.
    Paused,
    /// Every module completed.
    Completed,
    /// Nothing ramps any more and at least one module was rolled back.
    RolledBack,
}

/// A release as persisted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Release {
    /// Time-ordered id.
    pub id: Uuid,
    /// Name from the plan.
    pub name: String,
    /// Policy name, if any.
    pub policy: Option<String>,
    /// Modules ramp together.
    pub overlap: bool,
    /// Cohort mode.
    pub cohort: Cohort,
    /// Started by an operator (`start`).
    pub started: bool,
    /// Creation time, RFC 3339.
    pub created: String,
    /// The modules in ramp order.
    pub modules: Vec<Module>,
    /// The plan as submitted.
    pub plan: ReleasePlan,
}

impl Release {
    /// The release state, derived from its modules.
    pub fn state(&self) -> ReleaseState {
        if !self.started {
            return ReleaseState::Pending;
        }
        let any = |s: ModuleState| self.modules.iter().any(|m| m.state == s);
        let audience_paused = self.modules.iter().any(|m| {
            m.state != ModuleState::RolledBack
                && m.audiences
                    .iter()
                    .any(|a| a.phase.state == ModuleState::Paused)
        });
        if any(ModuleState::Paused) || audience_paused {
            ReleaseState::Paused
        } else if self
            .modules
            .iter()
            .enumerate()
            .any(|(i, _)| self.module_active(i))
        {
            ReleaseState::Running
        } else if any(ModuleState::RolledBack) {
            ReleaseState::RolledBack
        } else {
            ReleaseState::Completed
        }
    }

    /// Whether module `i` still ramps or may still start: ramping, paused or held, or
    /// pending with its turn still to come (without overlap, a rolled-back module blocks the
    /// modules after it).
    pub fn module_active(&self, i: usize) -> bool {
        match self.modules[i].state {
            ModuleState::Ramping | ModuleState::Paused | ModuleState::Held => true,
            ModuleState::Pending => {
                self.overlap
                    || !self.modules[..i]
                        .iter()
                        .any(|m| m.state == ModuleState::RolledBack)
            }
            ModuleState::Completed => audiences::unfinished(&self.modules[i]),
            ModuleState::RolledBack => false,
        }
    }

    /// Whether module `i`'s turn has come: the release runs and, unless its modules overlap,
    /// every earlier module has completed.
    pub fn module_may_start(&self, i: usize) -> bool {
        self.started
            && (self.overlap
                || self.modules[..i]
                    .iter()
                    .all(|m| m.state == ModuleState::Completed && !audiences::unfinished(m)))
    }

    /// True while the release holds its flags (a flag belongs to at most one live release).
    pub fn is_live(&self) -> bool {
        matches!(
            self.state(),
            ReleaseState::Pending | ReleaseState::Running | ReleaseState::Paused
        )
    }

    /// The bucketing salt modules use when the cohort is shared.
    pub fn shared_salt(&self) -> String {
        format!("release:{}", self.name)
    }
}

/// Checks a plan's shape and resolves its modules (flag existence and conflicts are
/// checked by the caller, which knows the live state).
pub fn build_release(
    plan: ReleasePlan,
    policy: Option<&Policy>,
    id: Uuid,
    created: String,
) -> Result<Release, PlanError> {
    if !rollgate_eval::valid_flag_key(&plan.name) {
        return Err(plan_err("name", "must match [a-z0-9][a-z0-9._-]{0,127}"));
    }
    if plan.modules.is_empty() {
        return Err(plan_err("modules", "a release needs at least one module"));
    }
    let mut modules = Vec::with_capacity(plan.modules.len());
    for (i, m) in plan.modules.iter().enumerate() {
        let at = format!("modules[{i}]");
        if plan.modules[..i]
            .iter()
            .any(|earlier| earlier.flag == m.flag)
        {
            return Err(plan_err(
                format!("{at}.flag"),
                format!("flag {:?} appears twice", m.flag),
            ));
        }
        let stages = resolve_stages(&at, m.stages.as_ref(), plan.stages.as_ref(), policy)?;
        let audiences = audiences::build_phases(
            &at,
            &m.flag,
            m.audiences.as_deref().unwrap_or(&plan.audiences),
            m.stages.as_ref(),
            plan.stages.as_ref(),
            policy,
        )?;
        if !audiences.is_empty() {
            refuse_prometheus_guards(&at, m.audiences.is_some(), policy)?;
        }
        modules.push(Module {
            audiences,
            ..Module::pending(m.flag.clone(), stages)
        });
    }
    Ok(Release {
        id,
        name: plan.name.clone(),
        policy: plan.policy.clone(),
        overlap: plan.overlap,
        cohort: plan.cohort,
        started: false,
        created,
        modules,
        plan,
    })
}

/// Audience phases are judged on their own client-signal series; a Prometheus query has no
/// audience to split by, so its guard could only ever pause the phase as silent. Refused when
/// the plan is made rather than discovered as a pause (docs/guards.md#prometheus-as-a-source).
fn refuse_prometheus_guards(
    at: &str,
    own_audiences: bool,
    policy: Option<&Policy>,
) -> Result<(), PlanError> {
    let Some(policy) = policy else {
        return Ok(());
    };
    let Some(guard) = policy
        .guards
        .iter()
        .find(|g| g.source == crate::sources::GuardSource::Prometheus)
    else {
        return Ok(());
    };
    let field = if own_audiences {
        format!("{at}.audiences")
    } else {
        "audiences".to_owned()
    };
    Err(plan_err(
        field,
        format!(
            "policy {:?} reads guard {:?} from Prometheus, which cannot judge audience phases; \
             use a policy whose guards read client signals, or release without audiences",
            policy.name, guard.metric
        ),
    ))
}

/// The synthetic `held` module that arms a policy's guards on a flag ramped by hand: one stage
/// at the flag's current rollout, baselines taken now, so only signals from now on count.
pub fn hand_module(def: &rollgate_eval::FlagDef, counts: Counts, now_ms: u64) -> Module {
    let stages = Stages {
        percentages: vec![def.rollout],
        min_duration_ms: 0,
        min_exposures: 0,
    };
    Module {
        state: ModuleState::Held,
        stage: Some(0),
        stage_started_ms: Some(now_ms),
        exposures_at_stage_start: count_of(&counts, &def.on_variant, "exposure"),
        started_ms: Some(now_ms),
        reason: Some("ramped by hand; guards armed by the flag's policy".into()),
        stage_baseline: counts.clone(),
        module_baseline: counts,
        ..Module::pending(def.key.clone(), stages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_state_names_are_the_serialized_ones() {
        for state in ModuleState::ALL {
            assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
        }
    }

    fn over(
        percentages: Option<Vec<f64>>,
        duration: Option<&str>,
        exposures: Option<u64>,
    ) -> StagesOverride {
        StagesOverride {
            percentages,
            min_duration: duration.map(str::to_owned),
            min_exposures: exposures,
        }
    }

    #[test]
    fn stages_resolve_field_by_field_module_over_release_over_policy() {
        let policy = Policy::from_toml(
            "name = \"p\"\n[stages]\npercentages = [1, 100]\nmin_duration = \"15m\"\nmin_exposures = 2000\n",
        )
        .unwrap();
        let release = over(None, Some("2s"), None);
        let module = over(Some(vec![10.0, 100.0]), None, None);

        let s = resolve_stages("modules[0]", Some(&module), Some(&release), Some(&policy)).unwrap();

        assert_eq!(
            s.percentages.iter().map(|p| p.as_f64()).collect::<Vec<_>>(),
            [10.0, 100.0]
        );
        assert_eq!(s.min_duration_ms, 2000);
        assert_eq!(s.min_exposures, 2000);
    }

    #[test]
    fn defaults_apply_without_policy_or_overrides() {
        let s = resolve_stages("modules[0]", None, None, None).unwrap();
        assert_eq!(s.percentages.len(), 5);
        assert_eq!((s.min_duration_ms, s.min_exposures), (0, 0));
    }

    #[test]
    fn bad_stages_name_the_field() {
        let cases = [
            (
                over(Some(vec![5.0, 5.0]), None, None),
                "modules[1].stages.percentages[1]",
            ),
            (
                over(Some(vec![0.0, 5.0]), None, None),
                "modules[1].stages.percentages[0]",
            ),
            (
                over(Some(vec![50.0, 101.0]), None, None),
                "modules[1].stages.percentages[1]",
            ),
            (
                over(Some(vec![]), None, None),
                "modules[1].stages.percentages",
            ),
            (
                over(None, Some("soon"), None),
                "modules[1].stages.min_duration",
            ),
        ];
        for (module, field) in cases {
            let err = resolve_stages("modules[1]", Some(&module), None, None).unwrap_err();
            assert_eq!(err.field, field);
        }
    }

    #[test]
    fn a_flag_may_appear_once_per_release() {
        let plan: ReleasePlan =
            serde_json::from_str(r#"{"name": "r", "modules": [{"flag": "a"}, {"flag": "a"}]}"#)
                .unwrap();
        let err = build_release(plan, None, Uuid::nil(), String::new()).unwrap_err();
        assert_eq!(err.field, "modules[1].flag");
    }
}
