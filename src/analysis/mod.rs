//! Pure statistics: a policy's guards + signal counts → a [`Verdict`] with every reading.
//!
//! Windows: relative comparisons use the current stage (the split is constant there), with
//! the evidence of completed stages carried in `Module::evidence` so the test runs over the
//! whole ramp; `max_rate` and `max_count` use everything since the module started.
//!
//! The false-rollback budget: each statistical guard gets `α = min(1 − confidence,
//! false_rollback_rate / k)` where `k` counts the policy's statistical guards, so adding guards
//! does not multiply false rollbacks. `max_count` is exact and needs no budget.
//!
//! Extreme counts: a series at `u64::MAX` has saturated (see `signals/aggregate.rs`) and no
//! longer counts, so windows over it mean nothing. A statistical test or the sample-ratio
//! check that would read one cannot tell (the stage is extended, nothing is paused or rolled
//! back on it); `max_count` still fires, since a saturated count is a lower bound.

pub mod quantile;
pub mod sourced;
pub mod stats;

use crate::policies::{parse_duration, Guard, GuardClass, Policy};
use crate::release::{count_of, Counts, Module, ModuleState};
use crate::signals::Aggregates;
use crate::sources::readings::ModuleAnswers;
use crate::sources::GuardSource;
use rollgate_eval::FlagDef;
use serde::Serialize;
use serde_json::{json, Value};

/// Default `detect`: a stage must have been able to see a +50 % harm.
pub const DEFAULT_DETECT: f64 = 0.5;
/// How long after a stage starts the sample-ratio check accepts any share between the
/// previous and the current percentage (clients catching up with the change).
pub const SRM_SETTLE_MS: u64 = 1000;
/// Default telemetry silence that pauses a ramping module.
pub const DEFAULT_SILENCE_MS: u64 = 10 * 60 * 1000;

/// What the guards say about a module right now.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// In band, and the data could have shown the harm the policy cares about.
    Healthy,
    /// In band so far, but too little data to tell: the stage is extended.
    CannotTell { reason: String, numbers: Value },
    /// A basic guard is out of its band: pause, roll back after `grace_ms`.
    Pause {
        metric: String,
        reason: String,
        grace_ms: u64,
        numbers: Value,
    },
    /// Telemetry is broken or silent: pause until it is sound again.
    DataQuality { reason: String, numbers: Value },
    /// A core guard breached: roll back at once.
    Rollback { reason: String, numbers: Value },
}

/// One guard's live reading.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GuardReading {
    /// Metric name.
    pub metric: String,
    /// `core` or `basic`.
    pub class: GuardClass,
    /// Where the numbers come from: `signals` or `prometheus`.
    pub source: &'static str,
    /// Prometheus guards: the queries behind the numbers (URL, rendered PromQL, fetch time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<Value>,
    /// `ok`, `breach`, `cannot_tell`, `idle` (module not ramping) or `n/a` (no old variant at 100 %).
    pub state: &'static str,
    /// Stage window: new variant events / exposures / rate.
    pub new: Rates,
    /// Stage window: old variant events / exposures / rate.
    pub old: Rates,
    /// Estimated relative increase of the new rate over the old (stage window).
    pub relative_increase: Option<f64>,
    /// Allowed relative increase.
    pub max_relative_increase: Option<f64>,
    /// Log evidence against "within band" (completed stages + current stage).
    pub ln_evidence: Option<f64>,
    /// Log evidence of the current stage alone.
    pub stage_ln_evidence: Option<f64>,
    /// Log threshold `ln(1/α)` at which the guard fires.
    pub ln_threshold: f64,
    /// This guard's share of the false-rollback budget.
    pub alpha: f64,
    /// New-variant events since the module started.
    pub count_since_start: u64,
    /// New-variant exposures since the module started.
    pub exposures_since_start: u64,
    /// Absolute count ceiling.
    pub max_count: Option<u64>,
    /// New-variant rate since the module started.
    pub rate_since_start: Option<f64>,
    /// Absolute rate ceiling.
    pub max_rate: Option<f64>,
    /// Whether the stage's data could have detected a `detect` increase (80 % power).
    pub could_detect: Option<bool>,
    /// Latency guards: the quantiles per variant, the threshold, the share above it and the
    /// evidence (module window; see `quantile.rs`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantile: Option<quantile::QuantileReading>,
    /// Why it is in its state.
    pub explanation: String,
}

/// Events, exposures and their ratio.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Default)]
pub struct Rates {
    /// Events of the metric.
    pub events: u64,
    /// Exposures.
    pub exposures: u64,
    /// Events per exposure.
    pub rate: Option<f64>,
}

impl Rates {
    fn new(events: u64, exposures: u64) -> Self {
        Rates {
            events,
            exposures,
            rate: (exposures > 0).then(|| events as f64 / exposures as f64),
        }
    }
}

/// The verdict with the readings behind it.
#[derive(Debug, Clone)]
pub struct Reading {
    /// What the controller should do.
    pub verdict: Verdict,
    /// Each guard's reading.
    pub guards: Vec<GuardReading>,
}

/// Current cumulative counts of `flag` for its on/off variants, exposures and `metrics`.
pub fn snapshot_counts<'a>(
    signals: &Aggregates,
    def: &FlagDef,
    metrics: impl Iterator<Item = &'a str>,
) -> Counts {
    let metrics: Vec<&str> = std::iter::once("exposure").chain(metrics).collect();
    let mut counts = Counts::new();
    for variant in [&def.on_variant, &def.off_variant] {
        let row = counts.entry(variant.clone()).or_default();
        for m in &metrics {
            row.insert((*m).to_owned(), signals.totals(&def.key, variant, m).count);
        }
        for m in &metrics[1..] {
            if let Some(sketch) = signals.sketch(&def.key, variant, m) {
                quantile::put_sketch(&mut counts, variant, m, &sketch);
            }
        }
    }
    counts
}

/// The guards' verdict on `module` (ramping `def`) under `policy` at `now_ms`, every guard read
/// from client signals (the rehearsal's simulated traffic, hand guards).
pub fn verdict(
    policy: Option<&Policy>,
    signals: &Aggregates,
    module: &Module,
    def: &FlagDef,
    now_ms: u64,
) -> Reading {
    verdict_sourced(policy, signals, None, module, def, now_ms)
}

/// The guards' verdict on `module` (ramping `def`) under `policy` at `now_ms`. With `answers`,
/// Prometheus guards read the poller's latest answers for this module (see [`sourced`]);
/// without, every guard reads client signals.
pub fn verdict_sourced(
    policy: Option<&Policy>,
    signals: &Aggregates,
    answers: Option<&ModuleAnswers>,
    module: &Module,
    def: &FlagDef,
    now_ms: u64,
) -> Reading {
    let Some(policy) = policy else {
        return Reading {
            verdict: Verdict::Healthy,
            guards: Vec::new(),
        };
    };
    let counts = snapshot_counts(
        signals,
        def,
        policy.guards.iter().map(|g| g.metric.as_str()),
    );
    let active = matches!(
        module.state,
        ModuleState::Ramping | ModuleState::Paused | ModuleState::Held | ModuleState::Completed
    );
    let (on, off) = (def.on_variant.as_str(), def.off_variant.as_str());
    let window = |base: &Counts, variant: &str, metric: &str| {
        count_of(&counts, variant, metric).saturating_sub(count_of(base, variant, metric))
    };
    let at_full = def.rollout.is_full();
    // One share of the false-rollback budget per statistical test (a guard may run two).
    let statistical = policy
        .guards
        .iter()
        .map(Guard::statistical_tests)
        .sum::<usize>()
        .max(1);

    let mut readings = Vec::with_capacity(policy.guards.len());
    let (mut rollback, mut pause, mut cannot_tell, mut silent) = (None, None, None, None);
    for g in &policy.guards {
        let alpha = (1.0 - g.confidence.unwrap_or(policy.confidence))
            .min(policy.false_rollback_rate / statistical as f64);
        let ln_threshold = (1.0 / alpha).ln();
        let prom = (g.source == GuardSource::Prometheus && active)
            .then_some(answers)
            .flatten()
            .map(|answers| {
                let ctx = sourced::Ctx {
                    guard: g,
                    on,
                    off,
                    needs_old: g.max_relative_increase.is_some() && !at_full,
                    stage_started_ms: module.stage_started_ms.unwrap_or(now_ms),
                    silence_ms: silence_of(g),
                    now_ms,
                };
                sourced::view(&ctx, answers.get(&g.metric))
            });
        let (new, old, since_start, query) = match &prom {
            Some(view) => view.rates(),
            None => (
                Rates::new(
                    window(&module.stage_baseline, on, &g.metric),
                    window(&module.stage_baseline, on, "exposure"),
                ),
                Rates::new(
                    window(&module.stage_baseline, off, &g.metric),
                    window(&module.stage_baseline, off, "exposure"),
                ),
                Rates::new(
                    window(&module.module_baseline, on, &g.metric),
                    window(&module.module_baseline, on, "exposure"),
                ),
                None,
            ),
        };
        let mut r = GuardReading {
            metric: g.metric.clone(),
            class: g.class,
            source: if prom.is_some() {
                GuardSource::Prometheus.as_str()
            } else {
                GuardSource::Signals.as_str()
            },
            query,
            state: "ok",
            new,
            old,
            relative_increase: match (new.rate, old.rate) {
                (Some(n), Some(o)) if o > 0.0 => Some(n / o - 1.0),
                _ => None,
            },
            max_relative_increase: g.max_relative_increase,
            ln_evidence: None,
            stage_ln_evidence: None,
            ln_threshold,
            alpha,
            count_since_start: since_start.events,
            exposures_since_start: since_start.exposures,
            max_count: g.max_count,
            rate_since_start: since_start.rate,
            max_rate: g.max_rate,
            could_detect: None,
            quantile: None,
            explanation: "within band".into(),
        };
        if !active {
            r.state = "idle";
            r.explanation = "module is not ramping".into();
            readings.push(r);
            continue;
        }
        if let Some(v) = prom.and_then(|view| view.unread(&mut r)) {
            match v {
                Verdict::DataQuality { .. } => silent.get_or_insert(v),
                _ => cannot_tell.get_or_insert(v),
            };
            readings.push(r);
            continue;
        }
        let frozen: Vec<String> = [(on, g.metric.as_str()), (on, "exposure")]
            .into_iter()
            .chain(
                (g.max_relative_increase.is_some() && !at_full)
                    .then_some([(off, g.metric.as_str()), (off, "exposure")])
                    .into_iter()
                    .flatten(),
            )
            .filter(|(v, m)| count_of(&counts, v, m) == u64::MAX)
            .map(|(v, m)| format!("{v}/{m}"))
            .collect();
        let breach = match g.quantile {
            Some(q) => {
                let window =
                    |variant: &str| {
                        quantile::sketch_of(&counts, variant, &g.metric).minus(
                            &quantile::sketch_of(&module.module_baseline, variant, &g.metric),
                        )
                    };
                let params = quantile::QuantileGuard {
                    quantile: q,
                    max_relative_increase: g.max_relative_increase,
                    max_value: g.max_value,
                    alpha,
                    detect: g.detect.unwrap_or(DEFAULT_DETECT),
                };
                let out = quantile::evaluate(&params, &window(off), &window(on), at_full);
                if out.relative_not_applicable {
                    r.state = "n/a";
                }
                r.ln_evidence = out.ln_evidence;
                r.could_detect = out.could_detect;
                r.quantile = Some(out.reading);
                out.breach
            }
            None => check_guard(g, &mut r, module, at_full, ln_threshold, frozen.is_empty()),
        };
        if let Some(why) = breach {
            r.state = "breach";
            r.explanation = why.clone();
            let numbers = json!({"guard": &r});
            match g.class {
                GuardClass::Core => {
                    rollback.get_or_insert(Verdict::Rollback {
                        reason: format!("core guard {}: {why}", g.metric),
                        numbers,
                    });
                }
                GuardClass::Basic => {
                    let grace_ms = g
                        .grace
                        .as_deref()
                        .and_then(parse_duration)
                        .map_or(30 * 60 * 1000, |d| d.as_millis() as u64);
                    pause.get_or_insert(Verdict::Pause {
                        metric: g.metric.clone(),
                        reason: format!("basic guard {} out of band: {why}", g.metric),
                        grace_ms,
                        numbers,
                    });
                }
            }
        } else if !frozen.is_empty()
            && (g.max_rate.is_some() || (g.max_relative_increase.is_some() && !at_full))
        {
            r.state = "cannot_tell";
            r.explanation = format!(
                "the counts of {} reached the counter ceiling and no longer change; this guard cannot judge the module",
                frozen.join(", ")
            );
            cannot_tell.get_or_insert(Verdict::CannotTell {
                reason: r.explanation.clone(),
                numbers: json!({"guard": &r}),
            });
        } else if r.could_detect == Some(false) {
            r.state = "cannot_tell";
            let detect = g.detect.unwrap_or(DEFAULT_DETECT);
            r.explanation = match &r.quantile {
                Some(qr) => format!(
                    "{} new-variant and {} old-variant observations of {} could not yet reveal a p{} +{:.0}% above the band",
                    qr.new.observations,
                    qr.old.observations,
                    g.metric,
                    quantile::fmt_q(qr.quantile),
                    detect * 100.0
                ),
                None => format!(
                "{} new-variant exposures could not yet reveal a +{:.0}% increase of {} (base rate {})",
                new.exposures,
                detect * 100.0,
                g.metric,
                old.rate.map_or("unknown".into(), |x| format!("{x:.5}"))
                ),
            };
            cannot_tell.get_or_insert(Verdict::CannotTell {
                reason: r.explanation.clone(),
                numbers: json!({"guard": &r}),
            });
        }
        readings.push(r);
    }
    let data_quality = if active && !policy.guards.is_empty() {
        silent.or_else(|| data_quality(policy, signals, answers, module, def, &counts, now_ms))
    } else {
        None
    };
    let verdict = rollback
        .or(pause)
        .or(data_quality)
        .or(cannot_tell)
        .unwrap_or(Verdict::Healthy);
    Reading {
        verdict,
        guards: readings,
    }
}

/// Fills the reading of one guard; returns why it breaches, if it does.
fn check_guard(
    g: &Guard,
    r: &mut GuardReading,
    module: &Module,
    at_full: bool,
    ln_threshold: f64,
    readable: bool,
) -> Option<String> {
    if let Some(max) = g.max_count {
        if r.count_since_start > max {
            return Some(format!(
                "{} events on the new variant, at most {max} allowed",
                r.count_since_start
            ));
        }
    }
    if !readable {
        // A saturated series: `verdict` reports that this guard cannot tell.
        return None;
    }
    if let Some(max_rate) = g.max_rate {
        let ln = stats::ln_rate_lr(r.count_since_start, r.exposures_since_start, max_rate);
        if ln >= ln_threshold {
            return Some(format!(
                "rate {:.5} per exposure is above the ceiling {max_rate} (evidence {:.1} ≥ {:.1})",
                r.rate_since_start.unwrap_or(0.0),
                ln,
                ln_threshold
            ));
        }
    }
    if let Some(delta) = g.max_relative_increase {
        if at_full {
            r.state = "n/a";
            return None;
        }
        let stage = stats::ln_relative_lr(
            r.new.events,
            r.new.exposures,
            r.old.events,
            r.old.exposures,
            delta,
        );
        let total = module.evidence.get(&g.metric).copied().unwrap_or(0.0) + stage;
        r.stage_ln_evidence = Some(stage);
        r.ln_evidence = Some(total);
        let detect = g.detect.unwrap_or(DEFAULT_DETECT);
        r.could_detect = Some(stats::could_detect(
            r.new.exposures,
            r.old.events,
            r.old.exposures,
            delta,
            detect,
            ln_threshold,
        ));
        if total >= ln_threshold {
            return Some(format!(
                "new rate {} vs old {} is more than +{:.0}% (evidence {:.1} ≥ {:.1})",
                r.new.rate.map_or("-".into(), |x| format!("{x:.5}")),
                r.old.rate.map_or("-".into(), |x| format!("{x:.5}")),
                delta * 100.0,
                total,
                ln_threshold
            ));
        }
    }
    None
}

/// Sample-ratio mismatch and silent telemetry: pause instead of deciding on broken data.
fn data_quality(
    policy: &Policy,
    signals: &Aggregates,
    answers: Option<&ModuleAnswers>,
    module: &Module,
    def: &FlagDef,
    counts: &Counts,
    now_ms: u64,
) -> Option<Verdict> {
    let silence_applies = module.state == ModuleState::Ramping
        || (module.state == ModuleState::Paused
            && module.paused == Some(crate::release::PauseCause::DataQuality));
    // Client-signal silence concerns the guards that read client signals (Prometheus guards
    // judge their own answers).
    let from_signals = |g: &&Guard| answers.is_none() || g.source == GuardSource::Signals;
    if silence_applies && policy.guards.iter().any(|g| from_signals(&g)) {
        let silence = policy
            .guards
            .iter()
            .filter(from_signals)
            .filter_map(|g| g.silence_after.as_deref().and_then(parse_duration))
            .map(|d| d.as_millis() as u64)
            .min()
            .unwrap_or(DEFAULT_SILENCE_MS);
        let since = signals
            .last_signal_ms(&def.key)
            .unwrap_or(0)
            .max(module.stage_started_ms.unwrap_or(now_ms));
        if now_ms.saturating_sub(since) >= silence {
            let reason = format!(
                "telemetry silent: no signal for {} (silence_after {})",
                ms(now_ms.saturating_sub(since)),
                ms(silence)
            );
            return Some(Verdict::DataQuality {
                reason,
                numbers: json!({"last_signal_ms": signals.last_signal_ms(&def.key), "silence_after_ms": silence}),
            });
        }
    }
    // SRM: only for pure percentage splits (rules serve variants outside the split).
    if !def.rules.is_empty() || def.rollout.is_full() || def.rollout.is_zero() || !def.enabled {
        return None;
    }
    let window = |variant: &str| {
        count_of(counts, variant, "exposure").saturating_sub(count_of(
            &module.stage_baseline,
            variant,
            "exposure",
        ))
    };
    // A saturated exposure count no longer counts: its window says nothing about the split.
    if [&def.on_variant, &def.off_variant]
        .iter()
        .any(|v| count_of(counts, v, "exposure") == u64::MAX)
    {
        return None;
    }
    let (n1, n0) = (window(&def.on_variant), window(&def.off_variant));
    let total = n1.checked_add(n0)?;
    if total < 1000 {
        return None;
    }
    // Clients pick up a new percentage within moments, so early in a stage the window may mix
    // the previous and the current split: any share between the two is legitimate then.
    let current = def.rollout.as_f64() / 100.0;
    let previous = module
        .stage
        .and_then(|s| s.checked_sub(1))
        .and_then(|s| module.stages.percentages.get(s))
        .map_or(0.0, |p| p.as_f64() / 100.0);
    let young = now_ms.saturating_sub(module.stage_started_ms.unwrap_or(0)) < SRM_SETTLE_MS;
    let (low, high) = if young {
        (previous.min(current), previous.max(current))
    } else {
        (current, current)
    };
    let observed = n1 as f64 / total as f64;
    let nearest = observed.clamp(low, high);
    if nearest <= 0.0 || nearest >= 1.0 {
        return None;
    }
    let z = (observed - nearest) / (nearest * (1.0 - nearest) / total as f64).sqrt();
    if z.abs() > 6.0 && (observed - nearest).abs() / nearest > 0.2 {
        let reason = format!(
            "sample ratio mismatch: {:.2}% of exposures on the new variant, {:.3}% served (z = {z:.1}); check the client's exposure reporting",
            observed * 100.0,
            current * 100.0
        );
        return Some(Verdict::DataQuality {
            reason,
            numbers: json!({"new_exposures": n1, "old_exposures": n0, "expected_share": current, "previous_share": previous, "observed_share": observed, "z": z}),
        });
    }
    None
}

/// A guard's `silence_after` (or the default), in ms.
fn silence_of(g: &Guard) -> u64 {
    g.silence_after
        .as_deref()
        .and_then(parse_duration)
        .map_or(DEFAULT_SILENCE_MS, |d| d.as_millis() as u64)
}

fn ms(v: u64) -> String {
    humantime::format_duration(std::time::Duration::from_millis(v)).to_string()
}

/// Per-guard log evidence of the current stage, to carry over when the stage ends.
pub fn stage_evidence(reading: &Reading) -> std::collections::BTreeMap<String, f64> {
    reading
        .guards
        .iter()
        .filter_map(|g| g.stage_ln_evidence.map(|e| (g.metric.clone(), e)))
        .collect()
}

#[cfg(test)]
mod tests;
