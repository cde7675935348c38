//! Lock-light cumulative aggregates per (flag, variant, metric).
//!
//! The audience a signal was attributed to (docs/clients.md) is part of its series: a signal
//! tagged with audience `a` for variant `v` counts in the series [`series_key`]`(v, Some(a))`
//! = `v` + U+001F + `a`; an untagged one ("everyone else") in `v` itself. The separator cannot
//! occur in a variant name (refused when a flag is compiled) nor in an audience (a segment key),
//! so the key is unambiguous, and persistence (sled, the cluster outbox and totals, the mirror)
//! stores it like any variant name.
//!
//! Every accumulation saturates: counts stop at `u64::MAX` and sums of values at
//! `±f64::MAX`, so no input can lower, reset or wrap a series (batches are bounded too, see
//! `ingest.rs`, so the ceiling is out of reach of real traffic). A series at `u64::MAX` is
//! frozen; the guards treat it as unreadable (`docs/guards.md`).
//!
//! A series that receives values also keeps a quantile sketch (`sketch.rs`), allocated on its
//! first value: the latency guards read quantiles from it. Sketches are saved, merged and
//! mirrored exactly like the counts, keyed the same way (flag → variant → metric).

use super::sketch::{AtomicSketch, SavedSketch};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

/// Joins a variant and an audience in a series key (see the module header).
pub const AUDIENCE_SEPARATOR: char = '\u{1f}';

/// The series key of `variant` for signals attributed to `audience` (`None`: everyone else).
pub fn series_key<'a>(variant: &'a str, audience: Option<&str>) -> std::borrow::Cow<'a, str> {
    match audience {
        None => std::borrow::Cow::Borrowed(variant),
        Some(a) => std::borrow::Cow::Owned(format!("{variant}{AUDIENCE_SEPARATOR}{a}")),
    }
}

/// The variant and audience of a series key made by [`series_key`].
pub fn split_series_key(key: &str) -> (&str, Option<&str>) {
    match key.split_once(AUDIENCE_SEPARATOR) {
        Some((variant, audience)) => (variant, Some(audience)),
        None => (key, None),
    }
}

/// Running totals of one metric for one variant.
#[derive(Debug, Default)]
pub struct Series {
    count: AtomicU64,
    /// Sum of `value`s, as f64 bits.
    sum_bits: AtomicU64,
    /// Number of signals that carried a `value`.
    valued: AtomicU64,
    /// The values' quantile sketch, from the first value on.
    sketch: OnceLock<AtomicSketch>,
}

impl Series {
    /// The sketch, allocated on first use.
    pub(super) fn sketch(&self) -> &AtomicSketch {
        self.sketch.get_or_init(AtomicSketch::default)
    }

    /// The sketch's buckets, if the series ever received a value.
    fn saved_sketch(&self) -> Option<SavedSketch> {
        self.sketch.get().map(AtomicSketch::save)
    }

    pub(super) fn add_many(&self, count: u64, sum: f64, valued: u64) {
        saturating_add(&self.count, count);
        if valued > 0 {
            saturating_add(&self.valued, valued);
            let _ = self
                .sum_bits
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                    Some(saturating_sum(f64::from_bits(bits), sum).to_bits())
                });
        }
    }

    fn add(&self, count: u64, value: Option<f64>) {
        let sum = value.map_or(0.0, |v| v * count as f64);
        let valued = if value.is_some() { count } else { 0 };
        if let Some(v) = value {
            self.sketch().add(v, count);
        }
        self.add_many(count, sum, valued);
    }

    /// Raises the series to `t` (the global totals): a count is never lowered; the sum is
    /// taken with the count it belongs to.
    fn raise_to(&self, t: &MetricTotals) {
        let before = self.count.fetch_max(t.count, Ordering::Relaxed);
        if t.count >= before {
            self.sum_bits
                .store(saturating_sum(0.0, t.sum).to_bits(), Ordering::Relaxed);
        }
        self.valued.fetch_max(t.valued, Ordering::Relaxed);
    }

    fn totals(&self) -> MetricTotals {
        MetricTotals {
            count: self.count.load(Ordering::Relaxed),
            sum: f64::from_bits(self.sum_bits.load(Ordering::Relaxed)),
            valued: self.valued.load(Ordering::Relaxed),
        }
    }
}

/// Adds `n` to `counter`, stopping at `u64::MAX` instead of wrapping.
fn saturating_add(counter: &AtomicU64, n: u64) {
    // The closure always returns `Some`, so the update cannot fail.
    let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
        Some(c.saturating_add(n))
    });
}

/// `a + b` kept finite: an overflow stops at `±f64::MAX`. A non-finite `b` (which bounded
/// input never produces) counts as `±f64::MAX`, or as 0 if NaN.
pub(super) fn saturating_sum(a: f64, b: f64) -> f64 {
    let b = if b.is_nan() {
        0.0
    } else {
        b.clamp(-f64::MAX, f64::MAX)
    };
    // Two finite numbers add up to a number or ±infinity, never NaN.
    (a + b).clamp(-f64::MAX, f64::MAX)
}

/// A reading of one series.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricTotals {
    /// Events (or exposures).
    pub count: u64,
    /// Sum of values (latencies). A `null` (an infinite sum written by an older version) reads
    /// as 0, so such a store still starts.
    #[serde(deserialize_with = "finite_or_zero")]
    pub sum: f64,
    /// Events that carried a value.
    pub valued: u64,
}

fn finite_or_zero<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?
        .filter(|s| s.is_finite())
        .unwrap_or(0.0))
}

type MetricMap = RwLock<HashMap<Box<str>, Arc<Series>>>;

#[derive(Debug, Default)]
struct FlagSeries {
    variants: RwLock<HashMap<Box<str>, Arc<MetricMap>>>,
    last_signal_ms: AtomicU64,
}

/// All aggregates.
#[derive(Debug, Default)]
pub struct Aggregates {
    flags: RwLock<HashMap<Box<str>, Arc<FlagSeries>>>,
}

/// The persisted form: flag → variant → metric → totals, plus last-signal times. Also the
/// shape of one batch's delta in a cluster node's outbox and of the global totals.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedAggregates {
    series: BTreeMap<String, BTreeMap<String, BTreeMap<String, MetricTotals>>>,
    last_signal_ms: BTreeMap<String, u64>,
    /// flag → variant → metric → the values' sketch (series that received values only).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    sketches: BTreeMap<String, BTreeMap<String, BTreeMap<String, SavedSketch>>>,
}

fn get_or_insert<V: Default>(map: &RwLock<HashMap<Box<str>, Arc<V>>>, key: &str) -> Arc<V> {
    if let Some(v) = map.read().unwrap_or_else(|e| e.into_inner()).get(key) {
        return v.clone();
    }
    map.write()
        .unwrap_or_else(|e| e.into_inner())
        .entry(key.into())
        .or_default()
        .clone()
}

fn get<V>(map: &RwLock<HashMap<Box<str>, Arc<V>>>, key: &str) -> Option<Arc<V>> {
    map.read()
        .unwrap_or_else(|e| e.into_inner())
        .get(key)
        .cloned()
}

/// A handle to one (flag, variant) for adding many signals without repeated lookups.
pub struct VariantHandle {
    flag: Arc<FlagSeries>,
    metrics: Arc<MetricMap>,
}

impl VariantHandle {
    /// Adds `count` events of `metric` (with an optional value each).
    pub fn add(&self, metric: &str, count: u64, value: Option<f64>) {
        get_or_insert(&self.metrics, metric).add(count, value);
    }

    /// Adds pre-summed totals of `metric`: `count` events, `sum` of their values, `valued` of
    /// them carrying a value.
    pub fn add_totals(&self, metric: &str, count: u64, sum: f64, valued: u64) {
        get_or_insert(&self.metrics, metric).add_many(count, sum, valued);
    }

    /// The series of `metric`, created on first use (for adding many values to its sketch
    /// without repeated lookups).
    pub(super) fn series(&self, metric: &str) -> Arc<Series> {
        get_or_insert(&self.metrics, metric)
    }

    /// Adds the buckets of `sketch` to the sketch of `metric` (counts are not touched).
    pub fn add_sketch(&self, metric: &str, sketch: &SavedSketch) {
        let series = get_or_insert(&self.metrics, metric);
        let live = series.sketch();
        for (i, c) in sketch.iter() {
            live.add_at(i, c);
        }
    }

    /// Marks the flag as heard from at `now_ms`.
    pub fn touch(&self, now_ms: u64) {
        self.flag
            .last_signal_ms
            .fetch_max(now_ms, Ordering::Relaxed);
    }
}

impl Aggregates {
    /// The handle for (flag, variant), creating the series on first use.
    pub fn variant(&self, flag: &str, variant: &str) -> VariantHandle {
        let flag_series = get_or_insert(&self.flags, flag);
        let metrics = get_or_insert(&flag_series.variants, variant);
        VariantHandle {
            flag: flag_series,
            metrics,
        }
    }

    /// Current totals of (flag, variant, metric); zero when never seen.
    pub fn totals(&self, flag: &str, variant: &str, metric: &str) -> MetricTotals {
        get(&self.flags, flag)
            .and_then(|f| get(&f.variants, variant))
            .and_then(|m| get(&m, metric))
            .map(|s| s.totals())
            .unwrap_or_default()
    }

    /// The values' sketch of (flag, variant, metric); `None` when it never received a value.
    pub fn sketch(&self, flag: &str, variant: &str, metric: &str) -> Option<SavedSketch> {
        get(&self.flags, flag)
            .and_then(|f| get(&f.variants, variant))
            .and_then(|m| get(&m, metric))
            .and_then(|s| s.saved_sketch())
    }

    /// When the flag last received a signal (Unix ms), if ever.
    pub fn last_signal_ms(&self, flag: &str) -> Option<u64> {
        get(&self.flags, flag)
            .map(|f| f.last_signal_ms.load(Ordering::Relaxed))
            .filter(|ms| *ms > 0)
    }

    /// A consistent-enough copy for persistence (each series is read atomically).
    pub fn save(&self) -> SavedAggregates {
        let mut saved = SavedAggregates::default();
        for (flag, fs) in self.flags.read().unwrap_or_else(|e| e.into_inner()).iter() {
            saved
                .last_signal_ms
                .insert(flag.to_string(), fs.last_signal_ms.load(Ordering::Relaxed));
            let variants = saved.series.entry(flag.to_string()).or_default();
            for (variant, metrics) in fs.variants.read().unwrap_or_else(|e| e.into_inner()).iter() {
                let out = variants.entry(variant.to_string()).or_default();
                for (metric, series) in metrics.read().unwrap_or_else(|e| e.into_inner()).iter() {
                    out.insert(metric.to_string(), series.totals());
                    if let Some(sketch) = series.saved_sketch() {
                        saved
                            .sketches
                            .entry(flag.to_string())
                            .or_default()
                            .entry(variant.to_string())
                            .or_default()
                            .insert(metric.to_string(), sketch);
                    }
                }
            }
        }
        saved
    }
}

impl SavedAggregates {
    /// Adds `t` to the series (flag, variant, metric), saturating like [`Aggregates`].
    pub fn add(&mut self, flag: &str, variant: &str, metric: &str, t: MetricTotals) {
        let series = self
            .series
            .entry(flag.to_owned())
            .or_default()
            .entry(variant.to_owned())
            .or_default()
            .entry(metric.to_owned())
            .or_default();
        series.count = series.count.saturating_add(t.count);
        series.valued = series.valued.saturating_add(t.valued);
        series.sum = saturating_sum(series.sum, t.sum);
    }

    /// Adds `sketch`'s buckets to the sketch of (flag, variant, metric).
    pub fn add_sketch(&mut self, flag: &str, variant: &str, metric: &str, sketch: &SavedSketch) {
        self.sketches
            .entry(flag.to_owned())
            .or_default()
            .entry(variant.to_owned())
            .or_default()
            .entry(metric.to_owned())
            .or_default()
            .merge(sketch);
    }

    /// Iterates the saved sketches.
    pub fn sketches(&self) -> impl Iterator<Item = (&str, &str, &str, &SavedSketch)> {
        self.sketches.iter().flat_map(|(f, vs)| {
            vs.iter().flat_map(move |(v, ms)| {
                ms.iter()
                    .map(move |(m, s)| (f.as_str(), v.as_str(), m.as_str(), s))
            })
        })
    }

    /// Marks `flag` as heard from at `ms` (keeps the latest).
    pub fn touch(&mut self, flag: &str, ms: u64) {
        let last = self.last_signal_ms.entry(flag.to_owned()).or_default();
        *last = (*last).max(ms);
    }

    /// Adds every series and last-signal time of `other` to this one.
    pub fn merge(&mut self, other: &SavedAggregates) {
        for (flag, variant, metric, t) in other.iter() {
            self.add(flag, variant, metric, *t);
        }
        for (flag, ms) in other.last_signals() {
            self.touch(flag, ms);
        }
        for (flag, variant, metric, s) in other.sketches() {
            self.add_sketch(flag, variant, metric, s);
        }
    }

    /// True when it holds no series and no last-signal time.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty() && self.last_signal_ms.is_empty() && self.sketches.is_empty()
    }

    /// When each flag last received a signal (Unix ms).
    pub fn last_signals(&self) -> impl Iterator<Item = (&str, u64)> {
        self.last_signal_ms.iter().map(|(f, ms)| (f.as_str(), *ms))
    }

    /// Iterates the saved series.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str, &str, &MetricTotals)> {
        self.series.iter().flat_map(|(f, vs)| {
            vs.iter().flat_map(move |(v, ms)| {
                ms.iter()
                    .map(move |(m, t)| (f.as_str(), v.as_str(), m.as_str(), t))
            })
        })
    }
}

impl Aggregates {
    /// Rebuilds aggregates from a persisted copy.
    pub fn restore(saved: SavedAggregates) -> Self {
        let aggregates = Aggregates::default();
        for (flag, variant, metric, sketch) in saved.sketches() {
            let series = aggregates.variant(flag, variant).series(metric);
            for (i, c) in sketch.iter() {
                series.sketch().set_at(i, c);
            }
        }
        for (flag, variants) in saved.series {
            for (variant, metrics) in variants {
                let handle = aggregates.variant(&flag, &variant);
                for (metric, t) in metrics {
                    let series = get_or_insert(&handle.metrics, &metric);
                    series.count.store(t.count, Ordering::Relaxed);
                    series.sum_bits.store(t.sum.to_bits(), Ordering::Relaxed);
                    series.valued.store(t.valued, Ordering::Relaxed);
                }
            }
        }
        for (flag, ms) in saved.last_signal_ms {
            get_or_insert(&aggregates.flags, &flag)
                .last_signal_ms
                .store(ms, Ordering::Relaxed);
        }
        aggregates
    }

    /// Adds the deltas in `saved` (a cluster node's own accepted batch, counted locally at
    /// once so that it reads its own writes; the global totals then only ever raise it).
    pub fn add_saved(&self, saved: &SavedAggregates) {
        for (flag, variant, metric, t) in saved.iter() {
            self.variant(flag, variant)
                .add_totals(metric, t.count, t.sum, t.valued);
        }
        for (flag, variant, metric, s) in saved.sketches() {
            self.variant(flag, variant).add_sketch(metric, s);
        }
        for (flag, ms) in saved.last_signals() {
            get_or_insert(&self.flags, flag)
                .last_signal_ms
                .fetch_max(ms, Ordering::Relaxed);
        }
    }

    /// Raises every series to the totals in `saved` (the global totals a cluster leader
    /// mirrors before each controller pass): counts are never lowered, a sum follows its
    /// count, last-signal times keep the latest. Series absent here are created.
    pub fn set_totals(&self, saved: &SavedAggregates) {
        for (flag, variant, metric, t) in saved.iter() {
            let handle = self.variant(flag, variant);
            get_or_insert(&handle.metrics, metric).raise_to(t);
        }
        // Buckets are raised like counts: a bucket is never lowered.
        for (flag, variant, metric, s) in saved.sketches() {
            let series = self.variant(flag, variant).series(metric);
            for (i, c) in s.iter() {
                series.sketch().raise_at(i, c);
            }
        }
        for (flag, ms) in saved.last_signals() {
            get_or_insert(&self.flags, flag)
                .last_signal_ms
                .fetch_max(ms, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
#[path = "aggregate_tests.rs"]
mod tests;
