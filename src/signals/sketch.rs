//! A mergeable quantile sketch with a 1 % relative error: log-spaced buckets (DDSketch
//! style), hand-written so that ingestion adds to a fixed array of atomics and the database
//! stores one row per non-empty bucket.
//!
//! Mapping: with γ = (1 + [`RELATIVE_ACCURACY`]) / (1 − [`RELATIVE_ACCURACY`]), a value
//! `v ≥ MIN_VALUE` goes to bucket `i = ⌈ln v / ln γ⌉`, which covers `(γ^(i−1), γ^i]`; its
//! representative value `2γ^i / (γ + 1)` is within 1 % of every value of the bucket. Values
//! below [`MIN_VALUE`] (zero, negatives) go to one "zero" bucket read as 0. Values above
//! `MAX_ABS_VALUE` are refused at ingestion, so the index range is fixed and small.
//!
//! Merging two sketches is bucket-wise addition, so a sketch of the concatenation of two
//! streams equals the merge of their sketches exactly; a window is a bucket-wise difference.
//! Every addition saturates at `u64::MAX`, like the counts.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// The sketch's relative accuracy: every quantile it returns is within 1 % of a value of the
/// data at that rank.
pub const RELATIVE_ACCURACY: f64 = 0.01;
/// The smallest value with its own bucket; smaller values (0, negatives) share the zero bucket.
pub const MIN_VALUE: f64 = 1e-9;
/// The largest value a signal may carry (`ingest::MAX_ABS_VALUE`).
const MAX_VALUE: f64 = 1e12;

/// ln γ.
fn ln_gamma() -> f64 {
    ((1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY)).ln()
}

/// Index of the zero bucket (below every other).
pub const ZERO_INDEX: i32 = MIN_INDEX - 1;
/// Smallest index of a positive value (that of `MIN_VALUE`).
const MIN_INDEX: i32 = -1036;
/// Largest index (that of `MAX_VALUE`).
const MAX_INDEX: i32 = 1382;
/// Buckets of the dense array: the zero bucket, then `MIN_INDEX..=MAX_INDEX`.
const SLOTS: usize = (MAX_INDEX - ZERO_INDEX + 1) as usize;

/// The bucket of `value`.
pub fn index_of(value: f64) -> i32 {
    if value.is_nan() || value < MIN_VALUE {
        return ZERO_INDEX;
    }
    let i = (value.min(MAX_VALUE).ln() / ln_gamma()).ceil();
    (i as i32).clamp(MIN_INDEX, MAX_INDEX)
}

/// Upper edge of bucket `i`: every value in it is at most this.
pub fn upper_edge(i: i32) -> f64 {
    if i <= ZERO_INDEX {
        MIN_VALUE
    } else {
        (f64::from(i) * ln_gamma()).exp()
    }
}

/// Lower edge of bucket `i`: every value in it is above this.
pub fn lower_edge(i: i32) -> f64 {
    if i <= ZERO_INDEX {
        f64::NEG_INFINITY
    } else {
        (f64::from(i - 1) * ln_gamma()).exp()
    }
}

/// The value a bucket reads as: within [`RELATIVE_ACCURACY`] of each of its values.
pub fn representative(i: i32) -> f64 {
    if i <= ZERO_INDEX {
        0.0
    } else {
        let g = ln_gamma().exp();
        2.0 * upper_edge(i) / (g + 1.0)
    }
}

/// The live sketch of one series: a fixed array of atomic bucket counters (about 19 KiB),
/// allocated on the series' first value.
#[derive(Debug)]
pub struct AtomicSketch {
    buckets: Box<[AtomicU64]>,
}

impl Default for AtomicSketch {
    fn default() -> Self {
        AtomicSketch {
            buckets: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

fn slot(i: i32) -> usize {
    (i.clamp(ZERO_INDEX, MAX_INDEX) - ZERO_INDEX) as usize
}

fn index_of_slot(s: usize) -> i32 {
    s as i32 + ZERO_INDEX
}

/// Adds `n` to `counter`, stopping at `u64::MAX`.
fn saturating_add(counter: &AtomicU64, n: u64) {
    let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
        Some(c.saturating_add(n))
    });
}

impl AtomicSketch {
    /// Adds `count` observations of `value`.
    pub fn add(&self, value: f64, count: u64) {
        self.add_at(index_of(value), count);
    }

    /// Adds `count` observations to bucket `i`.
    pub fn add_at(&self, i: i32, count: u64) {
        if let Some(b) = self.buckets.get(slot(i)) {
            saturating_add(b, count);
        }
    }

    /// Raises bucket `i` to `count` (never lowers it): mirroring global buckets.
    pub fn raise_at(&self, i: i32, count: u64) {
        if let Some(b) = self.buckets.get(slot(i)) {
            b.fetch_max(count, Ordering::Relaxed);
        }
    }

    /// Sets bucket `i` (restoring a saved sketch).
    pub fn set_at(&self, i: i32, count: u64) {
        if let Some(b) = self.buckets.get(slot(i)) {
            b.store(count, Ordering::Relaxed);
        }
    }

    /// The non-empty buckets.
    pub fn save(&self) -> SavedSketch {
        let buckets = self
            .buckets
            .iter()
            .enumerate()
            .filter_map(|(s, b)| {
                let c = b.load(Ordering::Relaxed);
                (c > 0).then(|| (index_of_slot(s), c))
            })
            .collect();
        SavedSketch { buckets }
    }
}

/// A sketch as plain data: bucket index → observations (non-empty buckets only). The
/// persisted form, the outbox delta and the analysis' windows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SavedSketch {
    /// Bucket index → observations.
    pub buckets: BTreeMap<i32, u64>,
}

impl SavedSketch {
    /// Adds `count` observations of `value`.
    pub fn add(&mut self, value: f64, count: u64) {
        self.add_at(index_of(value), count);
    }

    /// Adds `count` observations to bucket `i`.
    pub fn add_at(&mut self, i: i32, count: u64) {
        if count > 0 {
            let c = self.buckets.entry(i).or_default();
            *c = c.saturating_add(count);
        }
    }

    /// Bucket-wise sum (the sketch of both streams together).
    pub fn merge(&mut self, other: &SavedSketch) {
        for (&i, &c) in &other.buckets {
            self.add_at(i, c);
        }
    }

    /// Bucket-wise difference, saturating at 0: the window since `baseline` was taken.
    pub fn minus(&self, baseline: &SavedSketch) -> SavedSketch {
        let buckets = self
            .buckets
            .iter()
            .filter_map(|(&i, &c)| {
                let d = c.saturating_sub(baseline.buckets.get(&i).copied().unwrap_or(0));
                (d > 0).then_some((i, d))
            })
            .collect();
        SavedSketch { buckets }
    }

    /// Number of observations (saturating).
    pub fn total(&self) -> u64 {
        self.buckets
            .values()
            .fold(0u64, |a, &c| a.saturating_add(c))
    }

    /// The bucket holding the observation of rank `rank` (1-based), if there are that many.
    pub fn bucket_at_rank(&self, rank: u64) -> Option<i32> {
        let mut seen = 0u64;
        for (&i, &c) in &self.buckets {
            seen = seen.saturating_add(c);
            if seen >= rank.max(1) {
                return Some(i);
            }
        }
        None
    }

    /// The `q`-quantile (the value of rank ⌈q·n⌉), within 1 % of the true one; `None` when
    /// empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.total();
        if n == 0 {
            return None;
        }
        let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
        self.bucket_at_rank(rank).map(representative)
    }

    /// Observations certainly above `threshold`: those of buckets whose lower edge is at least
    /// `threshold` (a bucket straddling it is not counted, so this never overcounts).
    pub fn count_above(&self, threshold: f64) -> u64 {
        self.buckets
            .iter()
            .filter(|(&i, _)| lower_edge(i) >= threshold)
            .fold(0u64, |a, (_, &c)| a.saturating_add(c))
    }

    /// Iterates `(bucket, observations)` in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = (i32, u64)> + '_ {
        self.buckets.iter().map(|(&i, &c)| (i, c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_index_range_covers_every_accepted_value() {
        assert_eq!(index_of(MIN_VALUE), MIN_INDEX);
        assert_eq!(index_of(MAX_VALUE), MAX_INDEX);
        assert_eq!(index_of(0.0), ZERO_INDEX);
        assert_eq!(index_of(-5.0), ZERO_INDEX);
        assert_eq!(index_of(f64::NAN), ZERO_INDEX);
        for v in [MIN_VALUE, 1e-6, 0.001, 0.1, 1.0, 2.5, 1e6, MAX_VALUE] {
            let i = index_of(v);
            assert!(lower_edge(i) < v * (1.0 + 1e-12) && v <= upper_edge(i) * (1.0 + 1e-12));
        }
    }

    #[test]
    fn an_atomic_sketch_saves_what_it_was_given() {
        let a = AtomicSketch::default();
        a.add(0.2, 3);
        a.add(0.0, 1);
        a.add_at(index_of(0.2), u64::MAX);
        let mut expected = SavedSketch::default();
        expected.add(0.2, u64::MAX);
        expected.add(-1.0, 1);
        assert_eq!(a.save(), expected);
        a.raise_at(index_of(0.0), 0);
        a.raise_at(index_of(7.0), 4);
        a.set_at(index_of(0.0), 9);
        let saved = a.save();
        assert_eq!(saved.buckets.get(&ZERO_INDEX), Some(&9));
        assert_eq!(saved.buckets.get(&index_of(7.0)), Some(&4));
    }

    proptest! {
        /// Every quantile is within 1 % of the exact value at the same rank.
        #[test]
        fn quantiles_are_within_the_relative_accuracy(
            values in prop::collection::vec(1e-6..1e6f64, 1..400),
            q in 0.01..0.99f64,
        ) {
            let mut s = SavedSketch::default();
            for v in &values {
                s.add(*v, 1);
            }
            let mut sorted = values.clone();
            sorted.sort_by(f64::total_cmp);
            let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
            let exact = sorted[rank - 1];
            let got = s.quantile(q).unwrap();
            prop_assert!((got - exact).abs() <= RELATIVE_ACCURACY * exact * (1.0 + 1e-9),
                "q {} exact {} got {}", q, exact, got);
        }

        /// The merge of two sketches is the sketch of the concatenated data, and a window
        /// (minus) gives the second part back.
        #[test]
        fn merge_is_concatenation_and_minus_undoes_it(
            a in prop::collection::vec((-1.0..1e4f64, 1..1000u64), 0..100),
            b in prop::collection::vec((-1.0..1e4f64, 1..1000u64), 0..100),
        ) {
            let (mut sa, mut sb, mut all) =
                (SavedSketch::default(), SavedSketch::default(), SavedSketch::default());
            for (v, c) in &a { sa.add(*v, *c); all.add(*v, *c); }
            for (v, c) in &b { sb.add(*v, *c); all.add(*v, *c); }
            let mut merged = sa.clone();
            merged.merge(&sb);
            prop_assert_eq!(&merged, &all);
            prop_assert_eq!(merged.minus(&sa), sb.clone());
            prop_assert_eq!(merged.total(), sa.total() + sb.total());
            let threshold = 50.0;
            let above = b.iter().filter(|(v, _)| *v > threshold * (1.0 + 2.0 * RELATIVE_ACCURACY / (1.0 - RELATIVE_ACCURACY)) ).map(|(_, c)| c).sum::<u64>();
            let certain = sb.count_above(threshold);
            prop_assert!(certain >= above && certain <= b.iter().filter(|(v, _)| *v > threshold).map(|(_, c)| c).sum::<u64>());
        }
    }
}
