//! Latency guards: a quantile of a metric's values on the new variant, against the old
//! variant's (`max_relative_increase`) and against a ceiling (`max_value`). Pure: two window
//! sketches and the guard's numbers in, a reading and a verdict out. The maths, and why the
//! tests stay valid under continuous monitoring, are in `docs/guards.md`.
//!
//! Windows are the module window (current sketch minus the one at module start): a variant's
//! latency distribution does not depend on the split, so unlike the rate band no stage window
//! and no carried evidence are needed. Sketch buckets travel in the module's baselines as
//! entries `metric#<bucket>` of [`Counts`] (metric names cannot contain `#`), so every place
//! that takes a baseline takes the sketches with it.

use super::stats::{ln_share_lr_with, PRIOR_CONCENTRATION};

/// The share test of the latency guards: the Beta mixture with a prior worth about
/// [`PRIOR_CONCENTRATION`] events of the rarer outcome (the tail), tuned to the small shifts of
/// a tail share that a latency band is about.
pub fn ln_share_lr(successes: u64, failures: u64, pi0: f64) -> f64 {
    let rare = pi0.min(1.0 - pi0).clamp(1e-3, 0.5);
    ln_share_lr_with(successes, failures, pi0, PRIOR_CONCENTRATION / rare)
}
use crate::release::Counts;
use crate::signals::sketch::{upper_edge, SavedSketch, RELATIVE_ACCURACY};
use serde::Serialize;

/// The key of a sketch bucket in a [`Counts`] row.
pub fn sketch_key(metric: &str, bucket: i32) -> String {
    format!("{metric}#{bucket}")
}

/// Adds the buckets of `sketch` to `counts[variant]` as `metric#<bucket>` entries.
pub fn put_sketch(counts: &mut Counts, variant: &str, metric: &str, sketch: &SavedSketch) {
    let row = counts.entry(variant.to_owned()).or_default();
    for (i, c) in sketch.iter() {
        row.insert(sketch_key(metric, i), c);
    }
}

/// The sketch of `metric` stored in `counts[variant]` (empty when absent).
pub fn sketch_of(counts: &Counts, variant: &str, metric: &str) -> SavedSketch {
    let mut out = SavedSketch::default();
    let Some(row) = counts.get(variant) else {
        return out;
    };
    let prefix = format!("{metric}#");
    for (key, &c) in row.range(prefix.clone()..) {
        let Some(index) = key.strip_prefix(&prefix) else {
            break;
        };
        if let Ok(i) = index.parse::<i32>() {
            out.add_at(i, c);
        }
    }
    out
}

/// One variant's window.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Default)]
pub struct VariantQuantile {
    /// Observations (values) in the window.
    pub observations: u64,
    /// The quantile's estimate (within `relative_accuracy`).
    pub value: Option<f64>,
    /// Old variant: an upper confidence bound of its quantile, valid at all times (see
    /// `docs/guards.md`); `None` until there are enough observations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upper_bound: Option<f64>,
}

/// A latency guard's reading (`GuardReading::quantile`).
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct QuantileReading {
    /// The quantile watched, e.g. 0.95.
    pub quantile: f64,
    /// The sketch's relative error.
    pub relative_accuracy: f64,
    /// New variant, module window.
    pub new: VariantQuantile,
    /// Old variant, module window.
    pub old: VariantQuantile,
    /// new / old − 1 of the estimates.
    pub relative_increase: Option<f64>,
    /// Under "within band", at most this share of new observations lies above the threshold
    /// (1 − quantile).
    pub allowed_share: f64,
    /// Relative band: `(1 + max_relative_increase) ×` the old quantile's upper bound.
    pub threshold: Option<f64>,
    /// New observations certainly above `threshold`.
    pub above_threshold: Option<u64>,
    /// Their share of the new observations.
    pub share_above_threshold: Option<f64>,
    /// Log evidence of the relative test.
    pub ln_evidence: Option<f64>,
    /// Where the relative test fires: ln(2/α) (half of α bounds the old quantile).
    pub ln_threshold: Option<f64>,
    /// The ceiling.
    pub max_value: Option<f64>,
    /// New observations certainly above `max_value`.
    pub above_max_value: Option<u64>,
    /// Their share of the new observations.
    pub share_above_max_value: Option<f64>,
    /// Log evidence of the ceiling test (fires at ln(1/α)).
    pub max_value_ln_evidence: Option<f64>,
}

/// A latency guard's numbers.
#[derive(Debug, Clone, Copy)]
pub struct QuantileGuard {
    /// The quantile, in (0, 1).
    pub quantile: f64,
    /// Relative band δ.
    pub max_relative_increase: Option<f64>,
    /// Ceiling.
    pub max_value: Option<f64>,
    /// The guard's α (one test's share of the budget).
    pub alpha: f64,
    /// The relative harm above the band a stage must be able to see.
    pub detect: f64,
}

/// What the guard says.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The numbers.
    pub reading: QuantileReading,
    /// Why it breaches, if it does.
    pub breach: Option<String>,
    /// Whether the data could have shown a `detect` harm (relative band, below 100 % only).
    pub could_detect: Option<bool>,
    /// The larger evidence of the two tests on the scale of ln(1/α) (the relative test's minus
    /// ln 2), for the guard's `ln_evidence`.
    pub ln_evidence: Option<f64>,
    /// True when the relative band does not apply (100 %: no old variant left).
    pub relative_not_applicable: bool,
}

/// The smallest bucket whose upper edge is, with evidence `ln_threshold`, at or above the
/// `q`-quantile of `old`: the evidence that the share of observations at or below it exceeds
/// `q` (binary search: the evidence grows with the bucket).
pub fn upper_bound_bucket(old: &SavedSketch, q: f64, ln_threshold: f64) -> Option<i32> {
    let n = old.total();
    let cumulative: Vec<(i32, u64)> = old
        .iter()
        .scan(0u64, |c, (i, k)| {
            *c = c.saturating_add(k);
            Some((i, *c))
        })
        .collect();
    let holds = |&(_, c): &(i32, u64)| ln_share_lr(c, n - c, q) >= ln_threshold;
    let first = cumulative.partition_point(|x| !holds(x));
    cumulative.get(first).map(|&(i, _)| i)
}

fn share(x: u64, n: u64) -> Option<f64> {
    (n > 0).then(|| x as f64 / n as f64)
}

/// Evaluates a latency guard on the module windows `old` and `new`.
pub fn evaluate(g: &QuantileGuard, old: &SavedSketch, new: &SavedSketch, at_full: bool) -> Outcome {
    let q = g.quantile;
    let allowed = 1.0 - q;
    let ln_alpha = (1.0 / g.alpha).ln();
    let (n0, n1) = (old.total(), new.total());
    let mut r = QuantileReading {
        quantile: q,
        relative_accuracy: RELATIVE_ACCURACY,
        new: VariantQuantile {
            observations: n1,
            value: new.quantile(q),
            upper_bound: None,
        },
        old: VariantQuantile {
            observations: n0,
            value: old.quantile(q),
            upper_bound: None,
        },
        allowed_share: allowed,
        max_value: g.max_value,
        ..QuantileReading::default()
    };
    r.relative_increase = match (r.new.value, r.old.value) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b - 1.0),
        _ => None,
    };
    let mut out = Outcome {
        reading: QuantileReading::default(),
        breach: None,
        could_detect: None,
        ln_evidence: None,
        relative_not_applicable: false,
    };
    let name = format!("p{}", fmt_q(q));
    let fmt = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.4}"));
    if let Some(ceiling) = g.max_value {
        let x = new.count_above(ceiling);
        let ln = ln_share_lr(x, n1 - x, allowed);
        r.above_max_value = Some(x);
        r.share_above_max_value = share(x, n1);
        r.max_value_ln_evidence = Some(ln);
        out.ln_evidence = Some(ln);
        if ln >= ln_alpha {
            out.breach = Some(format!(
                "{name} {} on the new variant is above the ceiling {ceiling}: {:.2}% of {n1} observations above it, at most {:.2}% allowed (evidence {ln:.1} ≥ {ln_alpha:.1})",
                fmt(r.new.value),
                r.share_above_max_value.unwrap_or(0.0) * 100.0,
                allowed * 100.0
            ));
        }
    }
    if let Some(delta) = g.max_relative_increase {
        if at_full {
            out.relative_not_applicable = true;
        } else {
            let ln_test = (2.0 / g.alpha).ln();
            r.ln_threshold = Some(ln_test);
            let ucb = upper_bound_bucket(old, q, ln_test);
            r.old.upper_bound = ucb.map(upper_edge);
            out.could_detect = Some(match ucb {
                // No value on the old variant: nothing to compare with (like a base rate of 0).
                None if n0 == 0 => true,
                None => false,
                Some(_) if n1 == 0 => false,
                Some(i) => {
                    let harm = old.count_above(upper_edge(i) / (1.0 + g.detect)) as f64 / n0 as f64;
                    let mean = n1 as f64 * harm;
                    let low = ((mean - 0.84 * mean.sqrt()).max(0.0).floor() as u64).min(n1);
                    ln_share_lr(low, n1 - low, allowed) >= ln_test
                }
            });
            if let Some(i) = ucb {
                let threshold = (1.0 + delta) * upper_edge(i);
                let x = new.count_above(threshold);
                let ln = ln_share_lr(x, n1 - x, allowed);
                r.threshold = Some(threshold);
                r.above_threshold = Some(x);
                r.share_above_threshold = share(x, n1);
                r.ln_evidence = Some(ln);
                let scaled = ln - 2f64.ln();
                out.ln_evidence = Some(out.ln_evidence.map_or(scaled, |e: f64| e.max(scaled)));
                if ln >= ln_test && out.breach.is_none() {
                    out.breach = Some(format!(
                        "{name} {} on the new variant vs {} on the old is more than +{:.0}%: {:.2}% of {n1} new observations above {threshold:.4}, at most {:.2}% allowed (evidence {ln:.1} ≥ {ln_test:.1})",
                        fmt(r.new.value),
                        fmt(r.old.value),
                        delta * 100.0,
                        r.share_above_threshold.unwrap_or(0.0) * 100.0,
                        allowed * 100.0
                    ));
                }
            }
        }
    }
    out.reading = r;
    out
}

/// `0.95` → `95`, `0.999` → `99.9`.
pub fn fmt_q(q: f64) -> String {
    let p = format!("{:.3}", q * 100.0);
    p.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
#[path = "quantile_tests.rs"]
mod tests;
