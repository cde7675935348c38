//! Prometheus metrics. HTTP request counts and latencies use `prometheus-client` families;
//! evaluation counts are read straight from the live snapshot's per-variant atomics at scrape
//! time, so counting an evaluation is one relaxed atomic add and never allocates.

use crate::live::Live;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family as LabelFamily;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::Ordering;

/// Labels of HTTP metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// HTTP method.
    pub method: String,
    /// Route pattern, e.g. `/api/v1/flags/{key}`.
    pub route: String,
    /// Status code.
    pub status: u16,
}

/// Labels of evaluation error counts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// OFREP error code.
    pub code: &'static str,
}

type LatencyFamily = LabelFamily<RouteLabels, Histogram, fn() -> Histogram>;

/// All metric handles.
#[derive(Debug)]
pub struct Metrics {
    /// Requests by route and status.
    pub requests: LabelFamily<RouteLabels, Counter>,
    /// Latency by route and status, seconds.
    pub latency: LatencyFamily,
    /// Evaluations that ended in an OFREP error, by code.
    pub eval_errors: LabelFamily<ErrorLabels, Counter>,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: LabelFamily::default(),
            latency: LabelFamily::new_with_constructor(latency_histogram),
            eval_errors: LabelFamily::default(),
        }
    }
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
