//! The traffic model and one simulated rollout.
//!
//! A rollout walks the stages `[1, 5, 25, 50] %` (the 100 % stage has no old variant left to
//! compare with). Each stage receives `batches_per_stage` batches of `users_per_batch` users;
//! each user lands on the new variant with the stage's probability and errs with `p_new` or
//! `p_old` (binomial draws). The guard is checked after every batch with the evidence of
//! the completed stages plus the current stage's log likelihood ratio, exactly as
//! `rollgate::analysis` does it, against `ln(1/α)`.

use crate::shadow::Shadow;
use crate::ztest;
use rand::Rng;
use rand_distr::{Binomial, Distribution};
use rollgate::analysis::stats;

/// Stage percentages that have an old variant to compare with.
pub const STAGES: [f64; 4] = [1.0, 5.0, 25.0, 50.0];
/// One guard at confidence 0.99: the whole false-rollback budget.
pub const ALPHA: f64 = 0.01;
/// The policy's default `detect`: a stage should be able to reveal +50 %.
pub const DETECT: f64 = 0.5;

/// Traffic and error rates of one scenario.
#[derive(Debug, Clone, Copy)]
pub struct Model {
    /// Users arriving per batch (split by the stage percentage).
    pub users_per_batch: u64,
    /// Batches (guard checks) per stage.
    pub batches_per_stage: u32,
    /// Error rate of the old variant.
    pub p_old: f64,
    /// Error rate of the new variant.
    pub p_new: f64,
}

impl Model {
    /// Expected cumulative (new, old) exposures after `batches` batches of the ramp.
    pub fn expected_exposures(&self, batches: u32) -> (f64, f64) {
        let (mut new, mut old) = (0.0, 0.0);
        for b in 0..batches {
            let share = STAGES[(b / self.batches_per_stage) as usize] / 100.0;
            new += self.users_per_batch as f64 * share;
            old += self.users_per_batch as f64 * (1.0 - share);
        }
        (new, old)
    }

    /// Total batches of a ramp.
    pub fn batches(&self) -> u32 {
        self.batches_per_stage * STAGES.len() as u32
    }
}

/// Events and exposures of both variants over a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    /// New-variant events.
    pub x1: u64,
    /// New-variant exposures.
    pub n1: u64,
    /// Old-variant events.
    pub x0: u64,
    /// Old-variant exposures.
    pub n0: u64,
}

impl Window {
    fn add(&mut self, b: Window) {
        self.x1 += b.x1;
        self.n1 += b.n1;
        self.x0 += b.x0;
        self.n0 += b.n0;
    }

    fn z(&self) -> f64 {
        ztest::z(self.x1, self.n1, self.x0, self.n0)
    }
}

fn binomial(rng: &mut impl Rng, n: u64, p: f64) -> u64 {
    if n == 0 || p <= 0.0 {
        return 0;
    }
    Binomial::new(n, p.min(1.0)).map_or(0, |d| d.sample(rng))
}

fn batch(rng: &mut impl Rng, model: &Model, share: f64) -> Window {
    let n1 = binomial(rng, model.users_per_batch, share);
    let n0 = model.users_per_batch - n1;
    Window {
        x1: binomial(rng, n1, model.p_new),
        n1,
        x0: binomial(rng, n0, model.p_old),
        n0,
    }
}

/// How the sequential evidence of one stage is computed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Evidence {
    /// As shipped: `rollgate::analysis::stats::ln_relative_lr`.
    Rollgate,
    /// The first release's formula (floored tails, no shortcut) with this prior
    /// concentration (`crate::variants`).
    Concentration(f64),
    /// The mixture with exact log-space tails (`crate::variants`), shipped concentration.
    LogSpace,
}

impl Evidence {
    fn stage_ln_lr(self, w: &Window) -> f64 {
        match self {
            Evidence::Rollgate => stats::ln_relative_lr(w.x1, w.n1, w.x0, w.n0, 0.0),
            Evidence::Concentration(c) => {
                crate::variants::ln_relative_lr(w.x1, w.n1, w.x0, w.n0, 0.0, c)
            }
            Evidence::LogSpace => crate::variants::ln_relative_lr_log_space(
                w.x1,
                w.n1,
                w.x0,
                w.n0,
                0.0,
                stats::PRIOR_CONCENTRATION,
            ),
        }
    }
}

/// What happened in one rollout.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Cumulative new-variant exposures when the sequential guard fired.
    pub sequential: Option<u64>,
    /// The stage (0-based) in which it fired.
    pub sequential_stage: Option<usize>,
    /// Cumulative new-variant exposures when a z-test re-checked after every batch first
    /// crossed `z_α` (cumulative data since the module started).
    pub naive: Option<u64>,
    /// The single planned look of the fixed-horizon z-test: rejected or not (`None` when the
    /// ramp ended before the planned sample size).
    pub fixed_look: Option<bool>,
    /// Per stage: whether, at the stage's end, its data could have revealed +50 %.
    pub could_detect: [Option<bool>; 4],
    /// Batch decisions compared with `analysis::verdict`, and how many disagreed.
    pub shadow_checks: u64,
    /// Disagreements found by the shadow run.
    pub shadow_disagreements: u64,
}

/// Settings of one simulated rollout.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    /// Traffic and rates.
    pub model: Model,
    /// Evidence formula.
    pub evidence: Evidence,
    /// New-variant exposures at which the fixed-horizon z-test takes its one look.
    pub fixed_n: f64,
    /// Stop as soon as the sequential guard fired and the planned look is done.
    pub stop_early: bool,
    /// Also drive the real `analysis::verdict` + `controller::machine::apply` and compare.
    pub shadow: bool,
}

/// Simulates one rollout.
pub fn rollout(run: &Run, rng: &mut impl Rng) -> Outcome {
    let ln_threshold = (1.0 / ALPHA).ln();
    let mut out = Outcome::default();
    let mut shadow = run.shadow.then(Shadow::new);
    let mut carried = 0.0;
    let mut total = Window::default();
    for (s, percentage) in STAGES.iter().enumerate() {
        let mut stage = Window::default();
        let mut stage_ln = 0.0;
        for _ in 0..run.model.batches_per_stage {
            let b = batch(rng, &run.model, percentage / 100.0);
            stage.add(b);
            total.add(b);
            if out.sequential.is_none() {
                stage_ln = run.evidence.stage_ln_lr(&stage);
                let fire = carried + stage_ln >= ln_threshold;
                if let Some(shadow) = shadow.as_mut() {
                    let (real_fire, real_ln) = shadow.feed((b.x1, b.n1), (b.x0, b.n0));
                    out.shadow_checks += 1;
                    let same_ln =
                        real_ln.is_some_and(|ln| (ln - (carried + stage_ln)).abs() < 1e-9);
                    out.shadow_disagreements += u64::from(real_fire != fire || !same_ln);
                }
                if fire {
                    out.sequential = Some(total.n1);
                    out.sequential_stage = Some(s);
                }
            }
            if out.naive.is_none() && total.z() > ztest::Z_ALPHA {
                out.naive = Some(total.n1);
            }
            if out.fixed_look.is_none() && total.n1 as f64 >= run.fixed_n {
                out.fixed_look = Some(total.z() > ztest::Z_ALPHA);
            }
            let look_done = out.fixed_look.is_some() || !run.fixed_n.is_finite();
            if run.stop_early && out.sequential.is_some() && look_done {
                return out;
            }
        }
        out.could_detect[s] = Some(stats::could_detect(
            stage.n1,
            stage.x0,
            stage.n0,
            0.0,
            DETECT,
            ln_threshold,
        ));
        carried += stage_ln;
        // Once the guard fired the module is rolled back: the shadow has nothing to compare.
        if out.sequential.is_none() && s + 1 < STAGES.len() {
            if let Some(shadow) = shadow.as_mut() {
                shadow.advance(s + 1);
            }
        } else {
            shadow = None;
        }
    }
    out
}
