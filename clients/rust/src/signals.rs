//! Signals waiting to be sent: aggregated per (flag, variant, metric), bounded, striped.
//!
//! Invariants:
//! - Memory is bounded by the number of distinct series (`max_series`): a report for a new
//!   series when the store is full is dropped and its events are counted in `dropped`.
//! - Counts add up exactly: a series holds a count of plain events and, separately, its
//!   measured values counted per bucket of the server's quantile sketch (`sketch.rs`), sent as
//!   a histogram: the server's latency guards read the same quantiles as if every value had
//!   been sent alone (a mean would have erased them).
//! - Reports take a short `std::sync::Mutex` section on the caller's stripe, never across an
//!   `.await`; exposures are not recorded here (they live in the snapshot's counters and are
//!   moved here by the flusher).

use crate::sketch;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
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

/// The largest count the server takes in one signal (also the most observations in one
/// histogram); bigger aggregates are split.
pub(crate) const MAX_COUNT: u64 = 1_000_000;
/// The most buckets the server takes in one histogram.
const MAX_BUCKETS: usize = 512;
/// The largest `|value|` the server takes; larger values are clamped.
const MAX_ABS_VALUE: f64 = 1e12;

#[derive(Debug, Default, Clone)]
pub(crate) struct Acc {
    plain: u64,
    /// Measured values: sketch bucket → observations (values within 1 % share a bucket).
    values: BTreeMap<i32, u64>,
}

impl Acc {
    fn add(&mut self, other: Acc) {
        self.plain = self.plain.saturating_add(other.plain);
        for (i, n) in other.values {
            let c = self.values.entry(i).or_default();
            *c = c.saturating_add(n);
        }
    }

    fn events(&self) -> u64 {
        self.values
            .values()
            .fold(self.plain, |a, &n| a.saturating_add(n))
    }

    pub(crate) fn from_measure(m: Measure) -> Option<Acc> {
        match m {
            Measure::Count(0) => None,
            Measure::Count(n) => Some(Acc {
                plain: n,
                ..Acc::default()
            }),
            Measure::Value(v) if v.is_finite() => Some(Acc {
                values: BTreeMap::from([(
                    sketch::index_of(v.clamp(-MAX_ABS_VALUE, MAX_ABS_VALUE)),
                    1,
                )]),
                ..Acc::default()
            }),
            Measure::Value(_) => None,
        }
    }

    /// A wire signal put back after a failed send.
    pub(crate) fn from_wire(s: &WireSignal) -> Acc {
        match &s.histogram {
            None => Acc::count(s.count.unwrap_or(0)),
            Some(h) => Acc {
                plain: 0,
                values: h
                    .bounds
                    .iter()
                    .zip(&h.counts)
                    .map(|(&b, &n)| (sketch::index_of(b), n))
                    .collect(),
            },
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
    /// Plain events (absent beside a histogram).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) count: Option<u64>,
    /// Measured values (docs/api.md, histograms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) histogram: Option<WireHistogram>,
    /// Events this signal carries: its count or its histogram's observations.
    #[serde(skip)]
    pub(crate) events: u64,
}

/// `{"bounds", "counts"}`: `counts[i]` observations at `bounds[i]` (a bucket's representative
/// value; the server files it in the same sketch bucket).
#[derive(Debug, Serialize, PartialEq)]
pub(crate) struct WireHistogram {
    pub(crate) bounds: Vec<f64>,
    pub(crate) counts: Vec<u64>,
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

/// The wire form of a set of series: counts split at the server's per-signal maximum, values as
/// histograms of at most 512 buckets and 10⁶ observations each.
pub(crate) fn to_wire(series: &HashMap<SeriesKey, Acc>) -> Vec<WireSignal> {
    let mut out = Vec::with_capacity(series.len());
    for ((flag, variant, audience, metric), acc) in series {
        let signal =
            |count: Option<u64>, histogram: Option<WireHistogram>, events: u64| WireSignal {
                flag: flag.clone(),
                variant: variant.clone(),
                audience: audience.clone(),
                metric: metric.clone(),
                count,
                histogram,
                events,
            };
        let mut left = acc.plain;
        while left > 0 {
            let n = left.min(MAX_COUNT);
            out.push(signal(Some(n), None, n));
            left -= n;
        }
        let mut current = WireHistogram {
            bounds: Vec::new(),
            counts: Vec::new(),
        };
        let mut observations = 0u64;
        for (&i, &n) in &acc.values {
            let mut left = n;
            while left > 0 {
                if current.bounds.len() == MAX_BUCKETS || observations == MAX_COUNT {
                    let full = std::mem::replace(
                        &mut current,
                        WireHistogram {
                            bounds: Vec::new(),
                            counts: Vec::new(),
                        },
                    );
                    out.push(signal(None, Some(full), observations));
                    observations = 0;
                }
                let take = left.min(MAX_COUNT - observations);
                current.bounds.push(sketch::representative(i));
                current.counts.push(take);
                observations += take;
                left -= take;
            }
        }
        if observations > 0 {
            out.push(signal(None, Some(current), observations));
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
        assert_eq!((wire[0].count, &wire[0].histogram), (Some(12), &None));
        // Values travel as a histogram of their sketch buckets, not as a mean.
        let h = wire[1].histogram.as_ref().unwrap();
        assert_eq!((wire[1].count, wire[1].events), (None, 2));
        assert_eq!(h.counts, vec![1, 1]);
        assert!((h.bounds[0] - 1.0).abs() < 0.01 && (h.bounds[1] - 3.0).abs() < 0.03);
        let json = serde_json::to_value(&wire[1]).unwrap();
        assert!(
            json.get("count").is_none() && json.get("value").is_none(),
            "{json}"
        );
        // Taking frees the places.
        p.add("f", ("off", None), "exposure", Acc::count(1));
        assert_eq!(p.take_all().len(), 1);
    }

    #[test]
    fn big_counts_are_split_at_the_server_maximum() {
        let p = Pending::new(10, 1);
        p.add("f", ("on", None), "exposure", Acc::count(2 * MAX_COUNT + 5));
        let wire = to_wire(&p.take_all());
        let counts: Vec<Option<u64>> = wire.iter().map(|w| w.count).collect();
        assert_eq!(counts, vec![Some(MAX_COUNT), Some(MAX_COUNT), Some(5)]);
    }

    #[test]
    fn histograms_stay_within_the_server_bounds_and_round_trip() {
        let p = Pending::new(10, 1);
        // 1,000 distinct buckets, one of them with 1.5 million observations.
        for k in 0..1000 {
            let v = 0.001 * 1.03f64.powi(k);
            p.add(
                "f",
                ("on", Some("beta")),
                "latency",
                Acc::from_measure(Measure::Value(v)).unwrap(),
            );
        }
        let mut many = Acc::from_measure(Measure::Value(0.5)).unwrap();
        many.values.values_mut().for_each(|n| *n = 1_500_000);
        p.add("f", ("on", Some("beta")), "latency", many);
        let all = p.take_all();
        let total: u64 = all.values().map(Acc::events).sum();
        let wire = to_wire(&all);
        for w in &wire {
            let h = w.histogram.as_ref().unwrap();
            assert!(h.bounds.len() <= MAX_BUCKETS && w.events <= MAX_COUNT);
            assert!(
                h.bounds.windows(2).all(|b| b[0] < b[1]),
                "strictly increasing"
            );
            assert_eq!(h.counts.iter().sum::<u64>(), w.events);
            assert_eq!(w.audience.as_deref(), Some("beta"));
        }
        assert_eq!(wire.iter().map(|w| w.events).sum::<u64>(), total);
        // Put back after a failed send: the same buckets again.
        let mut back = Acc::default();
        for w in &wire {
            back.add(Acc::from_wire(w));
        }
        let original: Acc = all.into_values().next().unwrap();
        assert_eq!(back.values, original.values);
    }

    #[test]
    fn zero_counts_and_non_finite_values_are_ignored() {
        assert!(Acc::from_measure(Measure::Count(0)).is_none());
        assert!(Acc::from_measure(Measure::Value(f64::NAN)).is_none());
    }
}
