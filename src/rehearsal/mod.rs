//! Rehearsal: what a policy would do to a release at a given traffic, before any user sees it.
//!
//! The release is simulated many times with the server's own controller step
//! (`controller::step`, see [`sim`]) on a simulated clock — no sleeping, no wall clock in
//! the model (the wall clock only bounds how long the computation may take). Scenarios: A/A
//! (the new variant as good as the old) for the ramp's duration and the false-rollback rate,
//! then every guarded metric regressed by 1.25×, 1.5× and 2× for the share caught and the time
//! to catch. [`figures`] also reports each stage's detection requirement against the traffic.
//!
//! Randomness: `rand::rngs::StdRng::seed_from_u64` (ChaCha12 in rand 0.8), one generator per
//! (scenario, run) derived from the request's seed by SplitMix64, so the figures depend on the
//! seed and the number of runs only — not on the threads or the machine. Pure computation:
//! nothing is read from or written to the server's state.

pub mod figures;
pub mod sim;

use crate::policies::Policy;
use crate::release::{self, Stages};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The regression factors every guarded metric is rehearsed with.
pub const FACTORS: [f64; 3] = [1.25, 1.5, 2.0];
/// Default and maximum runs per scenario.
pub const DEFAULT_RUNS: u64 = 200;
/// Maximum runs per scenario.
pub const MAX_RUNS: u64 = 10_000;
/// Default and maximum computation budget, seconds.
pub const DEFAULT_MAX_SECONDS: f64 = 10.0;
/// Maximum computation budget, seconds.
pub const MAX_MAX_SECONDS: f64 = 60.0;
/// Maximum traffic, exposures per minute.
pub const MAX_TRAFFIC: f64 = 1e9;
/// Maximum controller steps simulated per release (the tick grows to respect it).
const MAX_STEPS: u64 = 20_000;

/// What to rehearse (the body of `POST /api/v1/policies/{name}/rehearse`).
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RehearsalRequest {
    /// Expected exposures per minute reaching the flag (both variants), in (0, 1e9].
    pub traffic_per_minute: f64,
    /// Events per exposure on the old variant, for every guarded metric; each in (0, 1).
    pub base: BTreeMap<String, f64>,
    /// Simulated releases per scenario, 1..=10000 (default 200).
    #[serde(default, deserialize_with = "crate::json_int::option_u64")]
    pub runs: Option<u64>,
    /// Seed (default 1): the same seed and runs give the same figures.
    #[serde(default, deserialize_with = "crate::json_int::option_u64")]
    pub seed: Option<u64>,
    /// Computation budget in seconds, (0, 60] (default 10); stops early and says so.
    #[serde(default)]
    pub max_seconds: Option<f64>,
}

/// A request value that cannot be rehearsed: which field, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct RehearsalError {
    /// The field, e.g. `base.payment_error`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> RehearsalError {
    RehearsalError {
        field: field.into(),
        message: message.into(),
    }
}

/// Median and 90th percentile, in simulated minutes (`None` without data).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Quantiles {
    /// Median.
    pub median: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
}

/// The A/A scenario: the new variant exactly as good as the old one.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AaFigures {
    /// Simulated releases.
    pub runs: usize,
    /// Releases that completed every stage.
    pub completed: usize,
    /// Releases rolled back (false rollbacks).
    pub rolled_back: usize,
    /// Releases paused at least once (by a guard or for data quality).
    pub paused: usize,
    /// Releases still unfinished at the horizon.
    pub unfinished: usize,
    /// `rolled_back / runs`.
    pub false_rollback_rate: f64,
    /// Wilson 95 % interval of the false-rollback rate.
    pub false_rollback_ci95: [f64; 2],
    /// The policy's false-rollback budget.
    pub false_rollback_budget: f64,
    /// Ramp duration of the completed releases, minutes.
    pub ramp_minutes: Quantiles,
}

/// One guarded metric regressed by one factor.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RegressionFigures {
    /// The regressed metric.
    pub metric: String,
    /// New-variant rate / old-variant rate.
    pub factor: f64,
    /// Simulated releases.
    pub runs: usize,
    /// Releases where a guard on this metric paused or rolled back.
    pub caught: usize,
    /// `caught / runs`.
    pub caught_share: f64,
    /// Wilson 95 % interval of the caught share.
    pub caught_share_ci95: [f64; 2],
    /// Caught first by a rollback (core guard, or a basic one after its grace).
    pub by_rollback: usize,
    /// Caught first by a pause (basic guard).
    pub by_pause: usize,
    /// Releases that ended rolled back.
    pub rolled_back: usize,
    /// Time from the start to the catch, minutes (caught releases).
    pub minutes_to_catch: Quantiles,
}

/// One stage's detection requirement for one relative guard, at the expected traffic.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct StageGuard {
    /// Stage number, from 1.
    pub stage: usize,
    /// The stage's percentage.
    pub percentage: f64,
    /// The guard's metric.
    pub metric: String,
    /// The relative harm the stage must be able to see (`detect`, default 0.5).
    pub detect: f64,
    /// Expected new-variant exposures per minute at this stage.
    pub new_exposures_per_minute: f64,
    /// New-variant exposures the stage needs (`None`: more than the horizon brings).
    pub needed_new_exposures: Option<u64>,
    /// Minutes of traffic that takes.
    pub minutes_needed: Option<f64>,
    /// False: the stage can never satisfy its detection requirement within the horizon.
    pub within_horizon: bool,
}

/// The rehearsal's answer.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RehearsalReport {
    /// The policy rehearsed.
    pub policy: String,
    /// The seed used.
    pub seed: u64,
    /// Runs requested per scenario.
    pub runs_requested: u64,
    /// Runs completed per scenario (fewer when the budget ran out).
    pub runs_completed: usize,
    /// True when the computation budget stopped it early.
    pub budget_reached: bool,
    /// Wall-clock computation time, ms.
    pub elapsed_ms: u64,
    /// Expected exposures per minute.
    pub traffic_per_minute: f64,
    /// The stage percentages simulated.
    pub stages: Vec<f64>,
    /// Simulated seconds between two controller steps.
    pub tick_seconds: f64,
    /// Simulated hours after which a release counts as unfinished.
    pub horizon_hours: f64,
    /// The A/A scenario.
    pub aa: AaFigures,
    /// Every guarded metric × 1.25, 1.5, 2.
    pub regressions: Vec<RegressionFigures>,
    /// Each stage's detection requirement per relative guard.
    pub stage_requirements: Vec<StageGuard>,
    /// Stages that can never satisfy their detection requirement within the horizon.
    pub never_detectable: Vec<String>,
}

/// A validated rehearsal.
#[derive(Debug, Clone)]
pub struct Plan {
    policy: Policy,
    stages: Stages,
    traffic_per_minute: f64,
    base: Vec<(String, f64)>,
    runs: u64,
    seed: u64,
    budget: Duration,
    tick_ms: u64,
    horizon_ms: u64,
}

impl Plan {
    /// Checks `req` against `policy`; every problem names its field.
    pub fn new(policy: &Policy, req: &RehearsalRequest) -> Result<Plan, RehearsalError> {
        let t = req.traffic_per_minute;
        if !(t.is_finite() && t > 0.0 && t <= MAX_TRAFFIC) {
            return Err(invalid("traffic_per_minute", "must be in (0, 1e9]"));
        }
        let runs = req.runs.unwrap_or(DEFAULT_RUNS);
        if !(1..=MAX_RUNS).contains(&runs) {
            return Err(invalid("runs", format!("must be in 1..={MAX_RUNS}")));
        }
        let secs = req.max_seconds.unwrap_or(DEFAULT_MAX_SECONDS);
        if !(secs.is_finite() && secs > 0.0 && secs <= MAX_MAX_SECONDS) {
            return Err(invalid("max_seconds", "must be in (0, 60]"));
        }
        for (metric, rate) in &req.base {
            let field = format!("base.{metric}");
            if !policy.guards.iter().any(|g| g.metric == *metric) {
                return Err(invalid(
                    field,
                    format!("policy {:?} guards no metric {metric:?}", policy.name),
                ));
            }
            if !(rate.is_finite() && *rate > 0.0 && *rate < 1.0) {
                return Err(invalid(field, "a base rate must be in (0, 1)"));
            }
        }
        let mut base = Vec::new();
        for g in &policy.guards {
            let Some(rate) = req.base.get(&g.metric) else {
                return Err(invalid(
                    format!("base.{}", g.metric),
                    "every guarded metric needs a base rate",
                ));
            };
            base.push((g.metric.clone(), *rate));
        }
        let stages = release::resolve_stages("stages", None, None, Some(policy))
            .map_err(|e| invalid(e.field, e.message))?;
        let (tick_ms, horizon_ms) = clock(&stages, t);
        Ok(Plan {
            policy: policy.clone(),
            stages,
            traffic_per_minute: t,
            base,
            runs,
            seed: req.seed.unwrap_or(1),
            budget: Duration::from_secs_f64(secs),
            tick_ms,
            horizon_ms,
        })
    }
}

/// The simulated tick and horizon for `stages` at `traffic` per minute: a fifth of a stage's
/// bake time (or a tenth of the first stage's time to its minimum exposures), within 1 s..3 min
/// (each step costs the guards' incomplete-beta evaluations, so steps are kept few); the
/// horizon four times the planned bake (at least a day, at most 30 days), at most 20,000 steps.
fn clock(stages: &Stages, traffic: f64) -> (u64, u64) {
    let first = stages
        .percentages
        .first()
        .map_or(1.0, |p| f64::from(p.millis()) / 100_000.0);
    let to_exposures = (stages.min_exposures as f64 / (traffic * first) * 60_000.0) as u64;
    let tick = [stages.min_duration_ms / 5, to_exposures / 10]
        .into_iter()
        .filter(|t| *t > 0)
        .min()
        .unwrap_or(1_000)
        .clamp(1_000, 180_000);
    let planned = stages
        .min_duration_ms
        .saturating_mul(stages.percentages.len() as u64);
    let horizon = planned
        .saturating_mul(4)
        .clamp(24 * 3_600_000, 30 * 24 * 3_600_000);
    (tick.max(horizon / MAX_STEPS), horizon)
}

/// SplitMix64, to derive independent per-run seeds.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Runs the rehearsal of `plan` (blocking; bounded by the plan's budget).
pub fn rehearse(plan: &Plan) -> RehearsalReport {
    let started = Instant::now();
    // Scenario 0 is A/A; then (metric, factor) in order.
    let mut scenarios: Vec<Option<(usize, f64)>> = vec![None];
    for m in 0..plan.base.len() {
        scenarios.extend(FACTORS.iter().map(|f| Some((m, *f))));
    }
    let s = scenarios.len();
    let jobs = plan.runs as usize * s;
    let results: Mutex<Vec<Option<sim::Outcome>>> = Mutex::new(vec![None; jobs]);
    let next = AtomicUsize::new(0);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                // Run i of every scenario before run i + 1, so a cut is balanced.
                let job = next.fetch_add(1, Ordering::Relaxed);
                if job >= jobs || started.elapsed() >= plan.budget {
                    break;
                }
                let (run, scenario) = (job / s, job % s);
                let setup = sim::Setup {
                    policy: &plan.policy,
                    stages: &plan.stages,
                    traffic_per_minute: plan.traffic_per_minute,
                    base: &plan.base,
                    regression: scenarios[scenario],
                    tick_ms: plan.tick_ms,
                    horizon_ms: plan.horizon_ms,
                };
                let seed =
                    mix(mix(plan.seed) ^ mix(scenario as u64) ^ (run as u64).rotate_left(32));
                let outcome = sim::run(&setup, &mut StdRng::seed_from_u64(seed));
                if let Ok(mut r) = results.lock() {
                    r[job] = Some(outcome);
                }
            });
        }
    });
    let results = results.into_inner().unwrap_or_default();
    // Only whole rounds count, so every scenario has the same runs and a cut stays reproducible.
    let rounds = (0..plan.runs as usize)
        .take_while(|r| (0..s).all(|sc| results[r * s + sc].is_some()))
        .count();
    let of = |scenario: usize| -> Vec<sim::Outcome> {
        (0..rounds)
            .filter_map(|r| results[r * s + scenario].clone())
            .collect()
    };
    let aa = of(0);
    let count = |end: sim::End| aa.iter().filter(|o| o.end == end).count();
    let rolled_back = count(sim::End::RolledBack);
    let aa = AaFigures {
        runs: aa.len(),
        completed: count(sim::End::Completed),
        rolled_back,
        paused: aa.iter().filter(|o| o.first_pause.is_some()).count(),
        unfinished: count(sim::End::Unfinished),
        false_rollback_rate: if aa.is_empty() {
            0.0
        } else {
            rolled_back as f64 / aa.len() as f64
        },
        false_rollback_ci95: figures::wilson(rolled_back, aa.len()),
        false_rollback_budget: plan.policy.false_rollback_rate,
        ramp_minutes: figures::quantiles(
            aa.iter()
                .filter(|o| o.end == sim::End::Completed)
                .map(|o| o.end_ms),
        ),
    };
    let regressions = scenarios
        .iter()
        .enumerate()
        .filter_map(|(i, sc)| sc.map(|(m, f)| (i, m, f)))
        .map(|(i, m, f)| figures::regression(&plan.base[m].0, f, &of(i)))
        .collect();
    let stage_requirements = figures::stage_requirements(
        &plan.policy,
        &plan.stages,
        plan.traffic_per_minute,
        &plan.base,
        plan.horizon_ms,
    );
    let never_detectable = stage_requirements
        .iter()
        .filter(|g| !g.within_horizon)
        .map(|g| {
            format!(
                "stage {} ({}%): {} at {:.1} new-variant exposures per minute cannot reveal a +{:.0}% increase within {:.0} h",
                g.stage,
                g.percentage,
                g.metric,
                g.new_exposures_per_minute,
                g.detect * 100.0,
                plan.horizon_ms as f64 / 3_600_000.0
            )
        })
        .collect();
    RehearsalReport {
        policy: plan.policy.name.clone(),
        seed: plan.seed,
        runs_requested: plan.runs,
        runs_completed: rounds,
        budget_reached: rounds < plan.runs as usize,
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        traffic_per_minute: plan.traffic_per_minute,
        stages: plan
            .stages
            .percentages
            .iter()
            .map(|p| f64::from(p.millis()) / 1000.0)
            .collect(),
        tick_seconds: plan.tick_ms as f64 / 1000.0,
        horizon_hours: plan.horizon_ms as f64 / 3_600_000.0,
        aa,
        regressions,
        stage_requirements,
        never_detectable,
    }
}

#[cfg(test)]
mod tests;
