//! Releases: the plan an operator submits, its validation, and the persisted state of a
//! release and its modules. Pure data and pure functions; the controller drives them.
//!
//! Stage plans resolve field by field: module override → release override → the policy's
//! `[stages]` → the defaults (`[1, 5, 25, 50, 100]`, no bake time, no exposure minimum).

use crate::policies::{parse_duration, Policy};
use rollgate_eval::Percentage;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use uuid::Uuid;

/// Stage overrides as written in a plan (every field optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StagesOverride {
    /// Strictly increasing percentages in (0, 100].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentages: Option<Vec<f64>>,
    /// Minimum bake time per stage: `500ms`, `30s`, `10m`, `2h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_duration: Option<String>,
    /// Minimum exposures of the new variant per stage.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::json_int::option_u64"
    )]
    pub min_exposures: Option<u64>,
}

/// One module of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModulePlan {
    /// The flag this module ramps.
    pub flag: String,
    /// Overrides of the release's stages for this module.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stages: Option<StagesOverride>,
    /// Audiences ramped separately (default: the plan's `audiences`); docs/releases.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audiences: Option<Vec<crate::audience_plan::AudiencePlan>>,
}

/// How modules of a release bucket users.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Cohort {
    /// Each module buckets with its own flag's salt.
    #[default]
    Independent,
    /// All modules bucket the same users (salt `release:<name>`).
    Shared,
}

/// `POST /api/v1/releases` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleasePlan {
    /// Human name, same syntax as a flag key.
    pub name: String,
    /// Policy whose guards watch the release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Modules in ramp order.
    pub modules: Vec<ModulePlan>,
    /// Overrides of the policy's stages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stages: Option<StagesOverride>,
    /// `true`: modules ramp together; `false` (default): one after another.
    #[serde(default)]
    pub overlap: bool,
    /// `independent` (default) or `shared`.
    #[serde(default)]
    pub cohort: Cohort,
    /// Default audiences of every module (docs/releases.md#audiences).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<crate::audience_plan::AudiencePlan>,
}

/// A fully resolved stage plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Stages {
    /// Percentages to walk.
    #[schema(value_type = Vec<f64>)]
    pub percentages: Vec<Percentage>,
    /// Minimum bake time per stage, milliseconds.
    pub min_duration_ms: u64,
    /// Minimum new-variant exposures per stage.
    pub min_exposures: u64,
}

/// Module states of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ModuleState {
    /// Not started yet.
    Pending,
    /// Walking its stages.
    Ramping,
    /// Stopped by an operator, a guard or a data-quality check.
    Paused,
    /// An operator set its percentage by hand; the controller does not advance it.
    Held,
    /// Reached the end of its plan.
    Completed,
    /// Rolled back (rollout 0); never re-ramps by itself.
    RolledBack,
}

impl ModuleState {
    /// Every state, in the contract's order.
    pub const ALL: [ModuleState; 6] = [
        ModuleState::Pending,
        ModuleState::Ramping,
        ModuleState::Paused,
        ModuleState::Held,
        ModuleState::Completed,
        ModuleState::RolledBack,
    ];

    /// The contract's name of the state (as serialized).
    pub fn as_str(self) -> &'static str {
        match self {
            ModuleState::Pending => "pending",
            ModuleState::Ramping => "ramping",
            ModuleState::Paused => "paused",
            ModuleState::Held => "held",
            ModuleState::Completed => "completed",
            ModuleState::RolledBack => "rolled_back",
        }
    }
}

/// Who paused a module, which decides how it may resume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", tag = "by")]
pub enum PauseCause {
    /// An operator (or an alert): only an operator resumes.
    Operator,
    /// A basic guard out of band: rolls back after `grace_ms`, resumes after a cooldown in band.
    Guard {
        metric: String,
        grace_ms: u64,
        /// The module was held by hand: a resume after the cooldown returns it to `held`.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        from_held: bool,
    },
    /// Broken or silent telemetry: resumes when the data is sound again.
    DataQuality,
}

/// A decision with the numbers behind it, kept on the module and in the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DecisionRecord {
    /// What was decided: `start`, `advance`, `complete`, `pause`, `resume`, `rollback`, `hold`.
    pub action: String,
    /// Why, in words.
    pub reason: String,
    /// When (Unix ms).
    pub at_ms: u64,
    /// Who: a token name or `controller`.
    pub actor: String,
    /// The numbers: stage, percentages, exposures, guard readings.
    #[schema(value_type = Object)]
    pub numbers: Value,
}

/// A module's persisted state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Module {
    /// The flag ramped by this module.
    pub flag: String,
    /// Resolved stages.
    pub stages: Stages,
    /// Current state.
    pub state: ModuleState,
    /// Index of the current stage (`None` before the module starts).
    pub stage: Option<usize>,
    /// When the current stage began (Unix ms, wall clock, so restarts honour it).
    pub stage_started_ms: Option<u64>,
    /// Cumulative new-variant exposures when the current stage began.
    pub exposures_at_stage_start: u64,
    /// When the module first started ramping (Unix ms).
    pub started_ms: Option<u64>,
    /// Why the module is in its state.
    pub reason: Option<String>,
    /// Set while paused.
    pub paused: Option<PauseCause>,
    /// When it was paused (Unix ms).
    pub paused_ms: Option<u64>,
    /// Since when a guard-paused module has been back in band (Unix ms).
    pub in_band_since_ms: Option<u64>,
    /// The last decision taken.
    pub decision: Option<DecisionRecord>,
    /// Signal counts (variant → metric → count) when the current stage began.
    #[serde(default)]
    pub stage_baseline: Counts,
    /// Signal counts when the module started ramping.
    #[serde(default)]
    pub module_baseline: Counts,
    /// Per guard metric: log evidence accumulated over completed stages (see `docs/guards.md`).
    #[serde(default)]
    pub evidence: BTreeMap<String, f64>,
    /// The module's audiences, each ramped as a phase of its own (docs/releases.md#audiences).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<crate::audience_plan::AudiencePhase>,
}

impl Module {
    /// A module of `flag` that has not started: no stage, no baselines, no evidence.
    pub fn pending(flag: String, stages: Stages) -> Module {
        Module {
            flag,
            stages,
            state: ModuleState::Pending,
            stage: None,
            stage_started_ms: None,
            exposures_at_stage_start: 0,
            started_ms: None,
            reason: None,
            paused: None,
            paused_ms: None,
            in_band_since_ms: None,
            decision: None,
            stage_baseline: Counts::new(),
            module_baseline: Counts::new(),
            evidence: BTreeMap::new(),
            audiences: Vec::new(),
        }
    }
}

/// Signal counts: variant → metric → cumulative count.
pub type Counts = BTreeMap<String, BTreeMap<String, u64>>;

/// `counts[variant][metric]`, 0 when absent.
pub fn count_of(counts: &Counts, variant: &str, metric: &str) -> u64 {
    counts
        .get(variant)
        .and_then(|m| m.get(metric))
        .copied()
        .unwrap_or(0)
}

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
            ModuleState::Completed => crate::audience_plan::unfinished(&self.modules[i]),
            ModuleState::RolledBack => false,
        }
    }

    /// Whether module `i`'s turn has come: the release runs and, unless its modules overlap,
    /// every earlier module has completed.
    pub fn module_may_start(&self, i: usize) -> bool {
        self.started
            && (self.overlap
                || self.modules[..i].iter().all(|m| {
                    m.state == ModuleState::Completed && !crate::audience_plan::unfinished(m)
                }))
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

/// A plan problem, naming the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PlanError {
    /// E.g. `modules[1].stages.percentages[0]`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn plan_err(field: impl Into<String>, message: impl Into<String>) -> PlanError {
    PlanError {
        field: field.into(),
        message: message.into(),
    }
}

/// Resolves the stages of one module: module → release → policy → defaults.
pub fn resolve_stages(
    at: &str,
    module: Option<&StagesOverride>,
    release: Option<&StagesOverride>,
    policy: Option<&Policy>,
) -> Result<Stages, PlanError> {
    let policy_stages = policy.and_then(|p| p.stages.as_ref());
    let pick = |f: fn(&StagesOverride) -> bool| {
        if module.is_some_and(f) {
            "module"
        } else if release.is_some_and(f) {
            "release"
        } else {
            "policy"
        }
    };
    let field_at = |source: &str, field: &str| match source {
        "module" => format!("{at}.stages.{field}"),
        "release" => format!("stages.{field}"),
        _ => format!("policy.stages.{field}"),
    };
    let percentages = module
        .and_then(|m| m.percentages.clone())
        .or_else(|| release.and_then(|r| r.percentages.clone()))
        .or_else(|| policy_stages.map(|s| s.percentages.clone()))
        .unwrap_or_else(|| vec![1.0, 5.0, 25.0, 50.0, 100.0]);
    let percentages_field = field_at(pick(|o| o.percentages.is_some()), "percentages");
    if percentages.is_empty() || percentages.len() > 100 {
        return Err(plan_err(
            percentages_field,
            "between 1 and 100 stages are required",
        ));
    }
    let mut parsed = Vec::with_capacity(percentages.len());
    for (i, p) in percentages.iter().enumerate() {
        let field = format!("{percentages_field}[{i}]");
        let value = Percentage::from_f64(*p).map_err(|e| plan_err(&field, e.to_string()))?;
        if value.is_zero() || parsed.last().is_some_and(|prev| *prev >= value) {
            return Err(plan_err(
                field,
                "stages must be strictly increasing and above 0",
            ));
        }
        parsed.push(value);
    }
    let duration = module
        .and_then(|m| m.min_duration.clone())
        .or_else(|| release.and_then(|r| r.min_duration.clone()))
        .or_else(|| policy_stages.map(|s| s.min_duration.clone()))
        .unwrap_or_else(|| "0s".to_owned());
    let duration_field = field_at(pick(|o| o.min_duration.is_some()), "min_duration");
    let min_duration = parse_duration(&duration).ok_or_else(|| {
        plan_err(
            duration_field,
            format!("{duration:?} is not a duration (use 500ms, 30s, 10m, 2h)"),
        )
    })?;
    let min_exposures = module
        .and_then(|m| m.min_exposures)
        .or_else(|| release.and_then(|r| r.min_exposures))
        .or_else(|| policy_stages.map(|s| s.min_exposures))
        .unwrap_or(0);
    Ok(Stages {
        percentages: parsed,
        min_duration_ms: u64::try_from(min_duration.as_millis()).unwrap_or(u64::MAX),
        min_exposures,
    })
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
        let audiences = crate::audience_plan::build_phases(
            &at,
            &m.flag,
            m.audiences.as_deref().unwrap_or(&plan.audiences),
            m.stages.as_ref(),
            plan.stages.as_ref(),
            policy,
        )?;
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
