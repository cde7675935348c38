//! One simulated release: a single module ramping one flag under the policy, driven by the
//! server's own controller step (`controller::step::observe` → `decide` → `apply`) on a
//! simulated clock. Per tick, exposures (Poisson) split between the variants at the module's
//! current percentage (binomial) and events per variant (binomial) go into a fresh
//! `signals::Aggregates`, exactly as a signal batch would, and the step runs once.

use crate::controller::machine::Decision;
use crate::controller::step;
use crate::policies::Policy;
use crate::release::{Module, ModuleState, PauseCause, Stages};
use crate::signals::Aggregates;
use rand::Rng;
use rand_distr::{Binomial, Distribution, Poisson};
use rollgate_eval::FlagDef;

/// The simulated clock's origin (any fixed instant: nothing reads the wall clock).
const EPOCH_MS: u64 = 1_700_000_000_000;
const FLAG: &str = "rehearsal";
const ON: &str = "on";
const OFF: &str = "off";

/// What one simulated release is given.
#[derive(Debug, Clone)]
pub struct Setup<'a> {
    /// The policy whose guards watch the release.
    pub policy: &'a Policy,
    /// The module's resolved stage plan.
    pub stages: &'a Stages,
    /// Exposures per minute reaching the flag (both variants together).
    pub traffic_per_minute: f64,
    /// Events per exposure per guarded metric, on the old variant.
    pub base: &'a [(String, f64)],
    /// The regressed metric and its factor on the new variant (`None`: A/A).
    pub regression: Option<(usize, f64)>,
    /// Simulated time between two controller steps.
    pub tick_ms: u64,
    /// Simulated time after which an unfinished release is given up.
    pub horizon_ms: u64,
}

/// How a simulated release ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Every stage completed.
    Completed,
    /// The controller rolled it back.
    RolledBack,
    /// Still ramping (or paused) at the horizon.
    Unfinished,
}

/// A guard action: when (ms since the start) and on which metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    /// Simulated ms since the module started.
    pub at_ms: u64,
    /// The guarded metric that caused it (`None`: data quality).
    pub metric: Option<String>,
}

/// The outcome of one simulated release.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// How it ended.
    pub end: End,
    /// Simulated ms from start to its end (or the horizon).
    pub end_ms: u64,
    /// The first pause, if any.
    pub first_pause: Option<Action>,
    /// The rollback, if any.
    pub rollback: Option<Action>,
}

/// The flag the module ramps: boolean, `off` → `on`, at 0 %.
fn flag() -> Option<FlagDef> {
    serde_json::from_value(serde_json::json!({
        "key": FLAG, "type": "boolean", "variants": {"off": false, "on": true},
        "off_variant": OFF, "on_variant": ON, "rollout": 0.0
    }))
    .ok()
}

/// Draws a binomial count, `0` for impossible parameters (never panics).
fn binomial(rng: &mut impl Rng, n: u64, p: f64) -> u64 {
    if n == 0 || p <= 0.0 {
        return 0;
    }
    Binomial::new(n, p.min(1.0)).map_or(0, |d| d.sample(rng))
}

fn poisson(rng: &mut impl Rng, mean: f64) -> u64 {
    if mean <= 0.0 {
        return 0;
    }
    Poisson::new(mean).map_or(0, |d: Poisson<f64>| d.sample(rng) as u64)
}

/// The metric of the first breaching guard in `obs` (what a pause or rollback is about).
fn breached(obs: &step::Observation) -> Option<String> {
    obs.reading
        .guards
        .iter()
        .find(|g| g.state == "breach")
        .map(|g| g.metric.clone())
}

/// Simulates one release under `setup` with `rng`.
pub fn run(setup: &Setup<'_>, rng: &mut impl Rng) -> Outcome {
    let Some(mut def) = flag() else {
        return Outcome {
            end: End::Unfinished,
            end_ms: 0,
            first_pause: None,
            rollback: None,
        };
    };
    let policy = Some(setup.policy);
    let signals = Aggregates::default();
    let on = signals.variant(FLAG, ON);
    let off = signals.variant(FLAG, OFF);
    let mut module = Module::pending(FLAG.into(), setup.stages.clone());
    let cooldown = step::cooldown_ms(policy);
    let per_tick = setup.traffic_per_minute * setup.tick_ms as f64 / 60_000.0;
    let mut now = EPOCH_MS;
    let (mut first_pause, mut rollback) = (None, None);
    let mut end = End::Unfinished;
    loop {
        // Exposures and events of the tick that just passed, at the current percentage.
        let total = poisson(rng, per_tick);
        let share = f64::from(def.rollout.millis()) / 100_000.0;
        let n_on = binomial(rng, total, share);
        let n_off = total - n_on;
        if total > 0 {
            on.add("exposure", n_on, None);
            off.add("exposure", n_off, None);
            for (i, (metric, rate)) in setup.base.iter().enumerate() {
                let factor = match setup.regression {
                    Some((m, f)) if m == i => f,
                    _ => 1.0,
                };
                on.add(metric, binomial(rng, n_on, rate * factor), None);
                off.add(metric, binomial(rng, n_off, *rate), None);
            }
            on.touch(now);
        }
        // The controller's step, as `controller::transition` runs it for one module.
        let obs = step::observe(policy, &signals, &module, &def, now);
        let decision = step::decide(&module, &obs, true, cooldown);
        if decision.changes_state() {
            let at_ms = now - EPOCH_MS;
            match &decision {
                Decision::Pause { cause, .. } if first_pause.is_none() => {
                    let metric = match cause {
                        PauseCause::Guard { metric, .. } => Some(metric.clone()),
                        _ => None,
                    };
                    first_pause = Some(Action { at_ms, metric });
                }
                Decision::Rollback { .. } => {
                    rollback = Some(Action {
                        at_ms,
                        metric: breached(&obs).or_else(|| match &module.paused {
                            Some(PauseCause::Guard { metric, .. }) => Some(metric.clone()),
                            _ => None,
                        }),
                    });
                }
                _ => {}
            }
            let counts = step::counts_now(&signals, &def, policy);
            if let Some(p) = step::apply(
                &mut module,
                &decision,
                &obs,
                &counts,
                def.rollout,
                "rehearsal",
                ON,
            ) {
                def.rollout = p;
            }
            match module.state {
                ModuleState::Completed => end = End::Completed,
                ModuleState::RolledBack => end = End::RolledBack,
                _ => {}
            }
            if end != End::Unfinished {
                break;
            }
        }
        if now - EPOCH_MS >= setup.horizon_ms {
            break;
        }
        now += setup.tick_ms;
    }
    Outcome {
        end,
        end_ms: now - EPOCH_MS,
        first_pause,
        rollback,
    }
}
