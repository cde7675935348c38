//! Signals waiting to be sent: aggregated per (flag, variant, metric), bounded, striped.
//!
//! Invariants:
//! - Memory is bounded by the number of distinct series (`max_series`): a report for a new
//!   series when the store is full is dropped and its events are counted in `dropped`.
//! - Counts add up exactly: a series holds a count of plain events and, separately, a count
//!   and sum of valued events, so nothing is lost by aggregating; the wire form sends the mean
//!   with its count, which the server turns back into the same sum.
//! - Reports take a short `std::sync::Mutex` section on the caller's stripe, never across an
//!   `.await`; exposures are not recorded here (they live in the snapshot's counters and are
//!   moved here by the flusher).

use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// What a report measures: a number of events, or one measured value.
///
/// ```
/// use rollgate_client::Measure;
/// let failed_payments = Measure::Count(3);
/// let latency_seconds = Measure::Value(0.25);
/// # let _ = (failed_payments, latency_seconds);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Measure {
    /// This many events (e.g. failed payments). A zero count is ignored.
    Count(u64),
    /// One event carrying a value (e.g. a latency in seconds). A non-finite value is ignored.
    Value(f64),
}

/// The largest count the server takes in one signal; bigger aggregates are split.
pub(crate) const MAX_COUNT: u64 = 1_000_000;
/// The largest `|value|` the server takes; larger values are clamped.
const MAX_ABS_VALUE: f64 = 1e12;

#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Acc {
    plain: u64,
    valued: u64,
    sum: f64,
}

impl Acc {
    fn add(&mut self, other: Acc) {
        self.plain = self.plain.saturating_add(other.plain);
        self.valued = self.valued.saturating_add(other.valued);
        self.sum += other.sum;
    }

    fn events(&self) -> u64 {
        self.plain.saturating_add(self.valued)
    }

    pub(crate) fn from_measure(m: Measure) -> Option<Acc> {
        match m {
            Measure::Count(0) => None,
            Measure::Count(n) => Some(Acc {
                plain: n,
                ..Acc::default()
            }),
            Measure::Value(v) if v.is_finite() => Some(Acc {
                valued: 1,
                sum: v.clamp(-MAX_ABS_VALUE, MAX_ABS_VALUE),
                ..Acc::default()
            }),
            Measure::Value(_) => None,
        }
    }

    /// `n` valued events whose mean is `mean` (a wire signal put back after a failed send).
    pub(crate) fn valued(n: u64, mean: f64) -> Acc {
        Acc {
            valued: n,
            sum: mean * n as f64,
            ..Acc::default()
        }
    }

    pub(crate) fn count(n: u64) -> Acc {
        Acc {
            plain: n,
            ..Acc::default()
        }
    }
}

/// (flag, variant, audience, metric): the audience is the release audience that decided the
/// served variant (`None`: everyone else), so the server compares like with like.
pub(crate) type SeriesKey = (Box<str>, Box<str>, Option<Box<str>>, Box<str>);

/// One signal as `POST /api/v1/signals` takes it.
#[derive(Debug, Serialize, PartialEq)]
pub(crate) struct WireSignal {
    pub(crate) flag: Box<str>,
    pub(crate) variant: Box<str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) audience: Option<Box<str>>,
    pub(crate) metric: Box<str>,
    pub(crate) count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) value: Option<f64>,
}

/// The bounded, striped store of pending series.
pub(crate) struct Pending {
    stripes: Box<[Mutex<HashMap<SeriesKey, Acc>>]>,
    series: AtomicUsize,
    max_series: usize,
    /// Events dropped because the store was full (or a batch was refused for good).
    pub(crate) dropped: AtomicU64,
}

static NEXT: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    static STRIPE: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
}

fn stripe_of_thread() -> usize {
    STRIPE
        .try_with(|s| {
            if s.get() == usize::MAX {
                s.set(NEXT.fetch_add(1, Ordering::Relaxed));
            }
            s.get()
        })
        .unwrap_or(0)
}

impl Pending {
    pub(crate) fn new(max_series: usize, stripes: usize) -> Self {
        Pending {
            stripes: (0..stripes.max(1))
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            series: AtomicUsize::new(0),
            max_series,
            dropped: AtomicU64::new(0),
        }
    }

    /// Adds `acc` to the series (flag, variant, audience, metric), or drops and counts it
    /// when full.
    pub(crate) fn add(
        &self,
        flag: &str,
        (variant, audience): (&str, Option<&str>),
        metric: &str,
        acc: Acc,
    ) {
        let stripe = stripe_of_thread() % self.stripes.len();
        let Some(cell) = self.stripes.get(stripe) else {
            return;
        };
        let mut map = cell.lock().unwrap_or_else(|e| e.into_inner());
        let key: SeriesKey = (
            flag.into(),
            variant.into(),
            audience.map(Into::into),
            metric.into(),
        );
        if let Some(existing) = map.get_mut(&key) {
            existing.add(acc);
            return;
        }
        // Reserve a place first, so concurrent stripes never overshoot the bound together.
        let reserved = self
            .series
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_series).then_some(n + 1)
            })
            .is_ok();
        if reserved {
            map.insert(key, acc);
        } else {
            self.dropped.fetch_add(acc.events(), Ordering::Relaxed);
        }
    }

    /// Takes every pending series, merged across stripes.
    pub(crate) fn take_all(&self) -> HashMap<SeriesKey, Acc> {
        let mut all: HashMap<SeriesKey, Acc> = HashMap::new();
        for cell in self.stripes.iter() {
            let map = std::mem::take(&mut *cell.lock().unwrap_or_else(|e| e.into_inner()));
            self.series.fetch_sub(map.len(), Ordering::AcqRel);
            for (k, v) in map {
                all.entry(k).or_default().add(v);
            }
        }
        all
    }

    /// Events dropped so far.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The wire form of a set of series, each count split at the server's per-signal maximum.
pub(crate) fn to_wire(series: &HashMap<SeriesKey, Acc>) -> Vec<WireSignal> {
    let mut out = Vec::with_capacity(series.len());
    for ((flag, variant, audience, metric), acc) in series {
        let mut push = |count: u64, value: Option<f64>| {
            let mut left = count;
            while left > 0 {
                let n = left.min(MAX_COUNT);
                out.push(WireSignal {
                    flag: flag.clone(),
                    variant: variant.clone(),
                    audience: audience.clone(),
                    metric: metric.clone(),
                    count: n,
                    value,
                });
                left -= n;
            }
        };
        push(acc.plain, None);
        if acc.valued > 0 {
            push(acc.valued, Some(acc.sum / acc.valued as f64));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_aggregate_and_the_bound_drops_and_counts() {
        let p = Pending::new(2, 1);
        p.add("f", ("on", None), "exposure", Acc::count(5));
        p.add("f", ("on", None), "exposure", Acc::count(7));
        p.add(
            "f",
            ("on", None),
            "latency",
            Acc::from_measure(Measure::Value(1.0)).unwrap(),
        );
        p.add(
            "f",
            ("on", None),
            "latency",
            Acc::from_measure(Measure::Value(3.0)).unwrap(),
        );
        p.add("f", ("off", None), "exposure", Acc::count(4)); // third series: dropped
        assert_eq!(p.dropped(), 4);
        let all = p.take_all();
        let mut wire = to_wire(&all);
        wire.sort_by(|a, b| a.metric.cmp(&b.metric));
        assert_eq!(wire.len(), 2);
        assert_eq!((wire[0].count, wire[0].value), (12, None));
        assert_eq!((wire[1].count, wire[1].value), (2, Some(2.0)));
        // Taking frees the places.
        p.add("f", ("off", None), "exposure", Acc::count(1));
        assert_eq!(p.take_all().len(), 1);
    }

    #[test]
    fn big_counts_are_split_at_the_server_maximum() {
        let p = Pending::new(10, 1);
        p.add("f", ("on", None), "exposure", Acc::count(2 * MAX_COUNT + 5));
        let wire = to_wire(&p.take_all());
        let counts: Vec<u64> = wire.iter().map(|w| w.count).collect();
        assert_eq!(counts, vec![MAX_COUNT, MAX_COUNT, 5]);
    }

    #[test]
    fn zero_counts_and_non_finite_values_are_ignored() {
        assert!(Acc::from_measure(Measure::Count(0)).is_none());
        assert!(Acc::from_measure(Measure::Value(f64::NAN)).is_none());
    }
}
