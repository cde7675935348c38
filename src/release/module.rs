//! The persisted state of a release's modules: states, pause causes, decision records, the
//! signal-count baselines, and the phase of each audience (itself a [`Module`]). Pure data.

use super::plan::{Advance, Stages};
use rollgate_eval::Percentage;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

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
    pub audiences: Vec<AudiencePhase>,
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

/// The persisted phase of one audience of a module.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudiencePhase {
    /// The segment key.
    pub segment: String,
    /// Ramps after everyone else.
    pub protected: bool,
    /// How a protected audience starts.
    pub advance: Advance,
    /// A manual protected audience was released by an operator.
    #[serde(default)]
    pub released: bool,
    /// The audience's current percentage of the new variant.
    pub percentage: Percentage,
    /// The phase's own state, stages, baselines and evidence.
    pub phase: Module,
}
