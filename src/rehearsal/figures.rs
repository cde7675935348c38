//! Turning simulated outcomes into figures: percentiles, Wilson intervals, and each stage's
//! detection requirement (what `analysis` demands before a stage may complete) against the
//! exposures the expected traffic brings.

use super::sim::{End, Outcome};
use super::{Quantiles, RegressionFigures, StageGuard};
use crate::analysis::{stats, DEFAULT_DETECT};
use crate::policies::Policy;
use crate::release::Stages;

/// Nearest-rank quantile of sorted `v` (minutes), `None` when empty.
fn quantile(v: &[f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

/// Median and p90 of `ms` values, in minutes.
pub fn quantiles(ms: impl Iterator<Item = u64>) -> Quantiles {
    let mut v: Vec<f64> = ms.map(|m| m as f64 / 60_000.0).collect();
    v.sort_by(f64::total_cmp);
    Quantiles {
        median: quantile(&v, 0.5),
        p90: quantile(&v, 0.9),
    }
}

/// Wilson 95 % interval of `k` successes in `n`.
pub fn wilson(k: usize, n: usize) -> [f64; 2] {
    if n == 0 {
        return [0.0, 1.0];
    }
    let (k, n, z) = (k as f64, n as f64, 1.96);
    let p = k / n;
    let centre = (p + z * z / (2.0 * n)) / (1.0 + z * z / n);
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / (1.0 + z * z / n);
    [(centre - half).max(0.0), (centre + half).min(1.0)]
}

/// The figures of one regression scenario (`metric` regressed by `factor`).
pub fn regression(metric: &str, factor: f64, outcomes: &[Outcome]) -> RegressionFigures {
    // Caught: the first guard action (a pause or a rollback) names the regressed metric.
    let caught: Vec<(u64, bool)> = outcomes
        .iter()
        .filter_map(|o| {
            let pause = o
                .first_pause
                .as_ref()
                .filter(|a| a.metric.as_deref() == Some(metric));
            let rollback = o
                .rollback
                .as_ref()
                .filter(|a| a.metric.as_deref() == Some(metric));
            match (pause, rollback) {
                (Some(p), Some(r)) if r.at_ms <= p.at_ms => Some((r.at_ms, true)),
                (Some(p), _) => Some((p.at_ms, false)),
                (None, Some(r)) => Some((r.at_ms, true)),
                (None, None) => None,
            }
        })
        .collect();
    let n = outcomes.len();
    RegressionFigures {
        metric: metric.to_owned(),
        factor,
        runs: n,
        caught: caught.len(),
        caught_share: if n == 0 {
            0.0
        } else {
            caught.len() as f64 / n as f64
        },
        caught_share_ci95: wilson(caught.len(), n),
        by_rollback: caught.iter().filter(|(_, r)| *r).count(),
        by_pause: caught.iter().filter(|(_, r)| !*r).count(),
        rolled_back: outcomes.iter().filter(|o| o.end == End::RolledBack).count(),
        minutes_to_catch: quantiles(caught.iter().map(|(ms, _)| *ms)),
    }
}

/// Smallest new-variant exposures with which a stage at `share` (0..1) can satisfy the
/// guard's detection requirement (`analysis::stats::could_detect` on the expected counts,
/// with at least one expected old-variant event),
/// searched up to `cap`; `None` if not even `cap` suffices.
fn needed_exposures(
    share: f64,
    base: f64,
    delta: f64,
    detect: f64,
    ln_threshold: f64,
    cap: u64,
) -> Option<u64> {
    let ok = |n1: u64| {
        let n0 = (n1 as f64 * (1.0 - share) / share).round() as u64;
        let x0 = (n0 as f64 * base).round() as u64;
        // Without an old-variant event the analysis has no rate to compare with (it lets the
        // stage pass on nothing): at least one expected event is required here.
        x0 >= 1 && stats::could_detect(n1, x0, n0, delta, detect, ln_threshold)
    };
    let mut hi = 16u64;
    while !ok(hi) {
        if hi >= cap {
            return None;
        }
        hi = hi.saturating_mul(2).min(cap);
    }
    let mut lo = hi / 2;
    while hi - lo > 1.max(hi / 200) {
        let mid = lo + (hi - lo) / 2;
        if ok(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(hi)
}

/// For every stage below 100 % and every relative guard: the new-variant exposures its
/// detection requirement needs at the base rate, and how long the traffic takes to bring them.
pub fn stage_requirements(
    policy: &Policy,
    stages: &Stages,
    traffic_per_minute: f64,
    base: &[(String, f64)],
    horizon_ms: u64,
) -> Vec<StageGuard> {
    let statistical = policy
        .guards
        .iter()
        .map(crate::policies::Guard::statistical_tests)
        .sum::<usize>()
        .max(1);
    let horizon_min = horizon_ms as f64 / 60_000.0;
    let mut out = Vec::new();
    for (i, p) in stages.percentages.iter().enumerate() {
        let share = f64::from(p.millis()) / 100_000.0;
        if p.is_full() {
            continue;
        }
        let per_minute = traffic_per_minute * share;
        for g in &policy.guards {
            // Latency guards (`quantile`) watch values, which the rehearsal does not simulate.
            let (Some(delta), None) = (g.max_relative_increase, g.quantile) else {
                continue;
            };
            let Some(rate) = base.iter().find(|(m, _)| *m == g.metric).map(|(_, r)| *r) else {
                continue;
            };
            let alpha = (1.0 - g.confidence.unwrap_or(policy.confidence))
                .min(policy.false_rollback_rate / statistical as f64);
            let detect = g.detect.unwrap_or(DEFAULT_DETECT);
            let cap = (per_minute * horizon_min).ceil().max(16.0) as u64;
            let needed = needed_exposures(share, rate, delta, detect, (1.0 / alpha).ln(), cap);
            let minutes = needed.map(|n| n as f64 / per_minute);
            out.push(StageGuard {
                stage: i + 1,
                percentage: share * 100.0,
                metric: g.metric.clone(),
                detect,
                new_exposures_per_minute: per_minute,
                needed_new_exposures: needed,
                minutes_needed: minutes,
                within_horizon: needed.is_some(),
            });
        }
    }
    out
}
