//! Prometheus metrics. HTTP request counts and latencies use `prometheus-client` families
//! (the latency histogram is our own, lock-free: `prometheus-client`'s takes a write lock per
//! observation, which every worker contended for on every request); evaluation counts are read
//! straight from the live snapshot's per-variant atomics at scrape time, so counting an
//! evaluation is one relaxed atomic add and never allocates.

use crate::live::Live;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::encoding::{MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family as LabelFamily;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;
use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Labels of HTTP metrics (borrowed for the standard methods and the OFREP routes, so that
/// counting an evaluation request allocates nothing).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// HTTP method.
    pub method: Cow<'static, str>,
    /// Route pattern, e.g. `/api/v1/flags/{key}`.
    pub route: Cow<'static, str>,
    /// Status code.
    pub status: u16,
}

/// Labels of evaluation error counts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// OFREP error code.
    pub code: &'static str,
}

type LatencyFamily = LabelFamily<RouteLabels, LatencyHistogram>;

/// Upper bounds of the latency buckets: 50 µs · 2^i for i in 0..16 (50 µs … 1.64 s), then +Inf.
const LATENCY_BOUNDS_NANOS: [u64; 16] = {
    let mut bounds = [0u64; 16];
    let mut i = 0;
    while i < bounds.len() {
        bounds[i] = 50_000 << i;
        i += 1;
    }
    bounds
};

/// A latency histogram updated with two relaxed atomic adds and no lock. The count is the
/// sum of the buckets (so the `+Inf` bucket always equals `_count`, even in a scrape that races
/// with requests); the sum is kept in whole nanoseconds (exact; 584 years before it wraps).
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Per-bucket counts (not cumulative); the last one is +Inf.
    buckets: [AtomicU64; LATENCY_BOUNDS_NANOS.len() + 1],
    sum_nanos: AtomicU64,
}

impl LatencyHistogram {
    /// Records one request that took `elapsed`.
    pub fn observe(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BOUNDS_NANOS
            .iter()
            .position(|&bound| nanos <= bound)
            .unwrap_or(LATENCY_BOUNDS_NANOS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> = self
            .buckets
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let bound = LATENCY_BOUNDS_NANOS
                    .get(i)
                    .map_or(f64::MAX, |&n| n as f64 / 1e9);
                (bound, b.load(Ordering::Relaxed))
            })
            .collect();
        let count: u64 = buckets.iter().map(|(_, n)| n).sum();
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// All metric handles.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Requests by route and status.
    pub requests: LabelFamily<RouteLabels, Counter>,
    /// Latency by route and status, seconds.
    pub latency: LatencyFamily,
    /// Evaluations that ended in an OFREP error, by code.
    pub eval_errors: LabelFamily<ErrorLabels, Counter>,
}

impl Metrics {
    /// Renders everything in the Prometheus text exposition format; `extra` carries the
    /// control-plane gauges computed by the caller (guards, modules, signals, webhooks).
    pub fn render(&self, live: std::sync::Arc<Live>, extra: Vec<Family>) -> String {
        let mut registry = Registry::with_prefix("rollgate");
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            self.requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            self.latency.clone(),
        );
        registry.register(
            "evaluation_errors",
            "Evaluations answered with an OFREP error",
            self.eval_errors.clone(),
        );
        registry.register_collector(Box::new(EvalCollector { live }));
        registry.register_collector(Box::new(Families(extra)));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

#[derive(Debug)]
struct EvalCollector {
    live: std::sync::Arc<Live>,
}

impl Collector for EvalCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        {
            let counter = ConstCounter::new(0u64);
            let mut family = encoder.encode_descriptor(
                "evaluations",
                "Flag evaluations by flag and served variant",
                None,
                counter.metric_type(),
            )?;
            for flag in self.live.flags() {
                for (i, (variant, _)) in flag.compiled.variants().iter().enumerate() {
                    let labels = [("flag", flag.def.key.as_str()), ("variant", &**variant)];
                    let count = ConstCounter::new(flag.served[i].load(Ordering::Relaxed));
                    count.encode(family.encode_family(&labels)?)?;
                }
            }
        }
        let gauge = ConstGauge::new(self.live.flags().len() as i64);
        gauge.encode(encoder.encode_descriptor(
            "flags",
            "Flags currently loaded",
            None,
            gauge.metric_type(),
        )?)?;
        {
            let gauge = ConstGauge::new(0.0f64);
            let mut family = encoder.encode_descriptor(
                "flag_rollout_percent",
                "Flag rollout percentage",
                None,
                gauge.metric_type(),
            )?;
            for flag in self.live.flags() {
                let labels = [("flag", flag.def.key.as_str())];
                ConstGauge::new(flag.def.rollout.as_f64())
                    .encode(family.encode_family(&labels)?)?;
            }
        }
        let gauge = ConstGauge::new(0i64);
        let mut family = encoder.encode_descriptor(
            "flag_enabled",
            "1 when the kill switch is on (flag live)",
            None,
            gauge.metric_type(),
        )?;
        for flag in self.live.flags() {
            let labels = [("flag", flag.def.key.as_str())];
            ConstGauge::new(i64::from(flag.def.enabled)).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// A computed metric family: name, help, kind and labelled values.
#[derive(Debug)]
pub struct Family {
    /// Name without the `rollgate_` prefix.
    pub name: &'static str,
    /// Help text.
    pub help: &'static str,
    /// Counter (monotonic) or gauge.
    pub counter: bool,
    /// (labels, value) rows.
    pub rows: Vec<(Vec<(&'static str, String)>, f64)>,
}

impl Family {
    /// An empty gauge family.
    pub fn gauge(name: &'static str, help: &'static str) -> Self {
        Family {
            name,
            help,
            counter: false,
            rows: Vec::new(),
        }
    }

    /// An empty counter family.
    pub fn counter(name: &'static str, help: &'static str) -> Self {
        Family {
            name,
            help,
            counter: true,
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn push(&mut self, labels: Vec<(&'static str, String)>, value: f64) {
        self.rows.push((labels, value));
    }
}

#[derive(Debug)]
struct Families(Vec<Family>);

impl Collector for Families {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for family in &self.0 {
            if family.counter {
                let kind = ConstCounter::new(0u64).metric_type();
                let mut enc = encoder.encode_descriptor(family.name, family.help, None, kind)?;
                for (labels, value) in &family.rows {
                    let labels: Vec<(&str, &str)> =
                        labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
                    ConstCounter::new(*value as u64).encode(enc.encode_family(&labels)?)?;
                }
            } else {
                let kind = ConstGauge::new(0.0f64).metric_type();
                let mut enc = encoder.encode_descriptor(family.name, family.help, None, kind)?;
                for (labels, value) in &family.rows {
                    let labels: Vec<(&str, &str)> =
                        labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
                    ConstGauge::new(*value).encode(enc.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_histogram_buckets_and_renders_consistently() {
        let metrics = Metrics::default();
        let labels = RouteLabels {
            method: "POST".into(),
            route: "/ofrep/v1/evaluate/flags/{key}".into(),
            status: 200,
        };
        let h = metrics.latency.get_or_create(&labels);
        h.observe(Duration::from_micros(50)); // on the first bound: first bucket
        h.observe(Duration::from_micros(51)); // second bucket (100 µs)
        h.observe(Duration::from_secs(5)); // beyond 1.64 s: +Inf only
        drop(h);
        let mut registry = Registry::default();
        registry.register("lat", "latency", metrics.latency.clone());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        let line = |needle: &str| {
            text.lines()
                .find(|l| l.starts_with(needle))
                .unwrap_or_else(|| panic!("no line {needle:?} in\n{text}"))
                .rsplit(' ')
                .next()
                .unwrap_or_default()
                .to_owned()
        };
        assert_eq!(line("lat_count"), "3");
        assert_eq!(line("lat_sum"), "5.000101");
        assert!(
            text.contains(r#"le="5e-5""#) || text.contains(r#"le="0.00005""#),
            "{text}"
        );
        let first = text
            .lines()
            .find(|l| l.starts_with("lat_bucket"))
            .expect("a bucket");
        assert!(
            first.ends_with(" 1"),
            "first bucket holds the 50 µs request: {first}"
        );
        let inf = text
            .lines()
            .find(|l| l.contains(r#"le="+Inf""#))
            .expect("+Inf bucket");
        assert!(inf.ends_with(" 3"), "{inf}");
        let second = text
            .lines()
            .filter(|l| l.starts_with("lat_bucket"))
            .nth(1)
            .expect("2nd");
        assert!(second.ends_with(" 2"), "cumulative: {second}");
    }
}
