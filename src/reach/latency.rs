//! Apply latencies of one change, in bounded memory.
//!
//! The first [`EXACT_SAMPLES`] samples are kept as they are, so a small fleet's quantiles are
//! exact. Beyond that they go into a log-linear histogram of milliseconds: below 32 ms every
//! millisecond has its own bucket (exact); above, each power of two is cut
//! into 32 buckets of equal width, so a bucket is at most 1/32 of its lower bound wide and the
//! value a quantile reports (the bucket's midpoint) is within 1/64 (1.6 %) of every sample in
//! it. Latencies are capped at 2^36 − 1 ms (about two years), so there are at most 1,024
//! buckets; only buckets that hold a sample are stored (sorted), 8 bytes each, so a change
//! takes at most 8.5 KiB however many clients report it, and typically a few hundred bytes.

/// Samples below this many ms each get their own bucket.
const EXACT: u64 = 32;
/// Sub-buckets per power of two (log2 = 5).
const SUB_BITS: u32 = 5;
/// The largest latency kept apart; longer ones count as this.
pub const MAX_MS: u64 = (1 << 36) - 1;
/// Samples kept exactly before the histogram takes over.
pub const EXACT_SAMPLES: usize = 64;

/// Latencies in milliseconds: exact while few, then a histogram.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Latency {
    /// The samples, while there are at most [`EXACT_SAMPLES`].
    exact: Vec<u64>,
    /// (bucket index, samples), sorted by index; only non-empty buckets (once past exact).
    buckets: Vec<(u16, u32)>,
    samples: u64,
}

impl Latency {
    /// Adds one sample of `ms` milliseconds.
    pub fn add(&mut self, ms: u64) {
        let ms = ms.min(MAX_MS);
        self.samples += 1;
        if self.buckets.is_empty() && self.exact.len() < EXACT_SAMPLES {
            self.exact.push(ms);
            return;
        }
        for kept in std::mem::take(&mut self.exact) {
            self.count(kept);
        }
        self.count(ms);
    }

    fn count(&mut self, ms: u64) {
        let index = bucket(ms);
        match self.buckets.binary_search_by_key(&index, |&(i, _)| i) {
            Ok(at) => self.buckets[at].1 = self.buckets[at].1.saturating_add(1),
            Err(at) => self.buckets.insert(at, (index, 1)),
        }
    }

    /// Samples added.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// The `q`-quantile (0 < q ≤ 1) by nearest rank: the ⌈q·n⌉-th smallest sample (at least
    /// the first); exact up to [`EXACT_SAMPLES`] samples, then its bucket's midpoint; `None`
    /// without samples. With samples 200, 400 and 2,000 ms, p50 is the 2nd (400) and p99 the
    /// 3rd (2,000).
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.samples == 0 {
            return None;
        }
        // The product is at most `samples`, a u64 count: the cast back is exact enough (a rank).
        let rank = ((q * self.samples as f64).ceil() as u64).clamp(1, self.samples);
        if !self.exact.is_empty() {
            let mut sorted = self.exact.clone();
            sorted.sort_unstable();
            return usize::try_from(rank - 1)
                .ok()
                .and_then(|i| sorted.get(i).copied());
        }
        let mut seen = 0u64;
        for &(index, n) in &self.buckets {
            seen += u64::from(n);
            if seen >= rank {
                let (lo, hi) = bounds(index);
                return Some(lo + (hi - lo) / 2);
            }
        }
        self.buckets.last().map(|&(index, _)| bounds(index).1)
    }
}

/// The bucket of `ms`.
fn bucket(ms: u64) -> u16 {
    let v = ms.min(MAX_MS);
    if v < EXACT {
        return v as u16;
    }
    let e = 63 - v.leading_zeros(); // ≥ 5
    let sub = (v >> (e - SUB_BITS)) & (EXACT - 1);
    (EXACT + u64::from(e - SUB_BITS) * EXACT + sub) as u16
}

/// The smallest and largest latency of bucket `index`.
fn bounds(index: u16) -> (u64, u64) {
    let i = u64::from(index);
    if i < EXACT {
        return (i, i);
    }
    let shift = (i - EXACT) / EXACT;
    let sub = (i - EXACT) % EXACT;
    let lo = (EXACT + sub) << shift;
    (lo, lo + (1 << shift) - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn three_known_delays_give_the_documented_quantiles() {
        let mut l = Latency::default();
        for ms in [2_000, 200, 400] {
            l.add(ms);
        }
        assert_eq!(l.samples(), 3);
        assert_eq!(l.quantile(0.5), Some(400));
        assert_eq!(l.quantile(0.99), Some(2_000));
        assert_eq!(Latency::default().quantile(0.5), None);
    }

    #[test]
    fn small_latencies_are_exact_and_huge_ones_are_capped() {
        let mut l = Latency::default();
        l.add(7);
        assert_eq!(l.quantile(1.0), Some(7));
        let mut huge = Latency::default();
        huge.add(u64::MAX);
        assert_eq!(huge.quantile(0.5), Some(MAX_MS));
        assert!(bucket(MAX_MS) < 1024);
    }

    #[test]
    fn past_the_exact_samples_a_quantile_is_its_bucket_midpoint() {
        let mut l = Latency::default();
        for _ in 0..EXACT_SAMPLES {
            l.add(100);
        }
        l.add(400);
        assert!(l.exact.is_empty());
        assert_eq!(l.samples(), EXACT_SAMPLES as u64 + 1);
        assert_eq!(l.quantile(0.5), Some(100), "bucket [100, 101]");
        assert_eq!(l.quantile(1.0), Some(403), "bucket [400, 407]");
    }

    proptest! {
        #[test]
        fn every_value_lies_in_its_bucket_and_the_midpoint_is_within_1_6_percent(ms in 0u64..=MAX_MS) {
            let (lo, hi) = bounds(bucket(ms));
            prop_assert!(lo <= ms && ms <= hi, "{ms} not in [{lo}, {hi}]");
            let mid = lo + (hi - lo) / 2;
            prop_assert!(mid.abs_diff(ms) as f64 <= ms as f64 / 64.0 + 0.5, "{ms} → {mid}");
        }

        #[test]
        fn buckets_are_ordered_like_their_values(a in 0u64..=MAX_MS, b in 0u64..=MAX_MS) {
            if a <= b {
                prop_assert!(bucket(a) <= bucket(b), "{a} → {}, {b} → {}", bucket(a), bucket(b));
            }
        }

        #[test]
        fn a_quantile_is_the_nearest_rank_sample_within_the_bucket_error(
            mut samples in proptest::collection::vec(0u64..10_000_000, 1..400),
            q in 0.01f64..=1.0,
        ) {
            let mut l = Latency::default();
            for &s in &samples {
                l.add(s);
            }
            samples.sort_unstable();
            let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
            let want = samples[rank - 1];
            let got = l.quantile(q).unwrap();
            prop_assert!(got.abs_diff(want) as f64 <= want as f64 / 64.0 + 0.5, "q {q}: {got} vs {want}");
            prop_assert!(l.buckets.len() <= 1024);
        }
    }
}
