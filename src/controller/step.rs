//! The one step of the controller, as plain values: what the guards read for a module
//! ([`observe`]), what the machine decides from it ([`decide`]) and what that decision does to
//! the module and its flag's rollout ([`apply`]). The server's controller and `bench/guards`
//! both call these, so the bench can never drift from what the server decides.
//!
//! Invariant: one [`Observation`] (one guard verdict) per module per step; the decision and
//! its application both read that same observation.

use super::machine::{self, ApplyCtx, Decision, Inputs};
use crate::analysis::{self, Reading};
use crate::policies::Policy;
use crate::release::{Counts, Module};
use crate::signals::Aggregates;
use crate::sources::readings::ModuleAnswers;
use crate::sources::GuardSource;
use rollgate_eval::{FlagDef, Percentage};

/// Default cooldown before a guard-paused module resumes once back in band.
pub const DEFAULT_COOLDOWN_MS: u64 = 60_000;

/// What the guards read for one module at one moment.
#[derive(Debug, Clone)]
pub struct Observation {
    /// Wall-clock now, Unix ms.
    pub now_ms: u64,
    /// The verdict and every guard's reading.
    pub reading: Reading,
    /// Cumulative new-variant exposures (never below the stage's baseline).
    pub exposures_total: u64,
}

/// Reads the guards of `module` (ramping `def`) under `policy` at `now_ms`, every guard from
/// client signals (the rehearsal, hand guards).
pub fn observe(
    policy: Option<&Policy>,
    signals: &Aggregates,
    module: &Module,
    def: &FlagDef,
    now_ms: u64,
) -> Observation {
    observe_sourced(policy, signals, None, module, def, now_ms)
}

/// No Prometheus answers: what audience phases read (the poller does not query per phase, so
/// their Prometheus guards read as silent telemetry rather than as healthy).
pub static NO_ANSWERS: ModuleAnswers = ModuleAnswers::new();

/// Reads the guards like [`observe`]; with `answers`, Prometheus guards read the poller's
/// latest answers for this module, and their new-variant exposures count towards the stage's
/// `min_exposures` like client exposures do.
pub fn observe_sourced(
    policy: Option<&Policy>,
    signals: &Aggregates,
    answers: Option<&ModuleAnswers>,
    module: &Module,
    def: &FlagDef,
    now_ms: u64,
) -> Observation {
    let reading = analysis::verdict_sourced(policy, signals, answers, module, def, now_ms);
    let exposures = signals.totals(&def.key, &def.on_variant, "exposure").count;
    let sourced = reading
        .guards
        .iter()
        .filter(|g| g.source == GuardSource::Prometheus.as_str())
        .map(|g| {
            module
                .exposures_at_stage_start
                .saturating_add(g.new.exposures)
        })
        .max()
        .unwrap_or(0);
    Observation {
        now_ms,
        reading,
        // The machine measures exposures from the stage baseline it keeps.
        exposures_total: exposures.max(sourced).max(module.exposures_at_stage_start),
    }
}

/// The cooldown of `policy` (or the default).
pub fn cooldown_ms(policy: Option<&Policy>) -> u64 {
    policy
        .and_then(|p| p.cooldown.as_deref())
        .and_then(crate::policies::parse_duration)
        .map_or(DEFAULT_COOLDOWN_MS, |d| {
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
        })
}

/// What the machine decides for `module` given `obs`.
pub fn decide(module: &Module, obs: &Observation, may_start: bool, cooldown_ms: u64) -> Decision {
    let inputs = Inputs {
        now_ms: obs.now_ms,
        verdict: &obs.reading.verdict,
        exposures_total: obs.exposures_total,
        may_start,
        cooldown_ms,
    };
    machine::next(module, &inputs)
}

/// Applies `decision` to `module`; returns the flag's new rollout when it changes. `counts` are
/// the cumulative counts now (the new baselines when a stage starts), `rollout` the flag's
/// current rollout.
pub fn apply(
    module: &mut Module,
    decision: &Decision,
    obs: &Observation,
    counts: &Counts,
    rollout: Percentage,
    actor: &str,
    on_variant: &str,
) -> Option<Percentage> {
    let evidence = analysis::stage_evidence(&obs.reading);
    let ctx = ApplyCtx {
        now_ms: obs.now_ms,
        counts,
        stage_evidence: &evidence,
        rollout,
        actor,
        on_variant,
    };
    machine::apply(module, decision, &ctx)
}

/// The cumulative counts that [`apply`] takes as baselines: exposures and every guarded metric
/// of `def`'s on and off variants.
pub fn counts_now(signals: &Aggregates, def: &FlagDef, policy: Option<&Policy>) -> Counts {
    analysis::snapshot_counts(
        signals,
        def,
        policy
            .iter()
            .flat_map(|p| p.guards.iter().map(|g| g.metric.as_str())),
    )
}
