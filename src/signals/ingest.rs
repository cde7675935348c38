//! Parsing and applying a batch of signals (`POST /api/v1/signals`).
//!
//! Malformed input (bad JSON, wrong types, unknown fields, negative or non-finite numbers)
//! rejects the whole batch with the failing field named; a signal for an unknown flag or
//! variant is counted and reported, while the rest of the batch is applied.

use super::aggregate::Aggregates;
use crate::live::Live;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// The request body; strings borrow from the body when they need no unescaping.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalBatch<'a> {
    /// The signals.
    #[serde(borrow)]
    pub signals: Vec<Signal<'a>>,
}

/// One signal.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signal<'a> {
    /// Flag key.
    #[serde(borrow)]
    pub flag: Cow<'a, str>,
    /// Variant the user was served.
    #[serde(borrow)]
    pub variant: Cow<'a, str>,
    /// `exposure` (the denominator) or any metric name.
    #[serde(borrow)]
    pub metric: Cow<'a, str>,
    /// Number of events (default 1).
    #[serde(default, deserialize_with = "crate::json_int::option_u64")]
    pub count: Option<u64>,
    /// A value such as a latency in seconds.
    #[serde(default)]
    pub value: Option<f64>,
    /// The user, if known (not aggregated).
    #[serde(default, rename = "targetingKey", borrow)]
    pub targeting_key: Option<Cow<'a, str>>,
    /// When it happened (RFC 3339 or Unix ms; informational).
    #[serde(default)]
    pub timestamp: Option<serde_json::Value>,
}

/// A signal that was not applied, and why.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SignalError {
    /// Position in the batch.
    pub index: usize,
    /// What was wrong.
    pub error: String,
}

/// What happened to a batch.
#[derive(Debug, Default, Serialize)]
pub struct IngestReport {
    /// Signals applied.
    pub accepted: usize,
    /// Signals not applied (unknown flag or variant).
    pub rejected: usize,
    /// The first 100 problems.
    pub errors: Vec<SignalError>,
    /// Flags that received signals (for the controller).
    #[serde(skip)]
    pub touched: Vec<String>,
}

/// A malformed signal (the batch is refused).
#[derive(Debug, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Malformed {
    /// E.g. `signals[3].metric`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn valid_metric(m: &str) -> bool {
    !m.is_empty()
        && m.len() <= 64
        && m.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b':'))
}

/// Checks every signal's shape; `Err` names the first malformed field.
pub fn check(batch: &SignalBatch<'_>, max: usize) -> Result<(), Malformed> {
    if batch.signals.len() > max {
        return Err(Malformed {
            field: "signals".into(),
            message: format!("at most {max} signals per batch"),
        });
    }
    for (i, s) in batch.signals.iter().enumerate() {
        let at = |f: &str| format!("signals[{i}].{f}");
        if !valid_metric(&s.metric) {
            return Err(Malformed {
                field: at("metric"),
                message: "1 to 64 of [A-Za-z0-9_.:-]".into(),
            });
        }
        if s.value.is_some_and(|v| !v.is_finite()) {
            return Err(Malformed {
                field: at("value"),
                message: "must be a finite number".into(),
            });
        }
        if s.count == Some(0) {
            return Err(Malformed {
                field: at("count"),
                message: "must be at least 1".into(),
            });
        }
    }
    Ok(())
}

/// Applies a checked batch against the live flags at `now_ms`.
pub fn ingest(
    aggregates: &Aggregates,
    live: &Live,
    batch: &SignalBatch<'_>,
    now_ms: u64,
) -> IngestReport {
    let mut report = IngestReport::default();
    let mut current: Option<(&str, &str, super::aggregate::VariantHandle)> = None;
    // Consecutive signals of one series are summed and applied once.
    let mut run: Option<Run<'_>> = None;
    for (index, s) in batch.signals.iter().enumerate() {
        let (flag, variant) = (s.flag.as_ref(), s.variant.as_ref());
        let cached = matches!(&current, Some((f, v, _)) if *f == flag && *v == variant);
        if !cached {
            let problem = match live.get(flag) {
                None => Some(format!("unknown flag {flag:?}")),
                Some(f) if !f.compiled.variants().iter().any(|(n, _)| &**n == variant) => {
                    Some(format!("flag {flag:?} has no variant {variant:?}"))
                }
                Some(_) => None,
            };
            if let Some(error) = problem {
                report.rejected += 1;
                if report.errors.len() < 100 {
                    report.errors.push(SignalError { index, error });
                }
                continue;
            }
            if let (Some(r), Some((_, _, handle))) = (run.take(), &current) {
                r.apply(handle);
            }
            let handle = aggregates.variant(flag, variant);
            handle.touch(now_ms);
            if !report.touched.iter().any(|t| t == flag) {
                report.touched.push(flag.to_owned());
            }
            current = Some((flag, variant, handle));
        }
        if let Some((_, _, handle)) = &current {
            let count = s.count.unwrap_or(1);
            match &mut run {
                Some(r) if r.metric == s.metric.as_ref() => r.add(count, s.value),
                _ => {
                    if let Some(r) = run.take() {
                        r.apply(handle);
                    }
                    let mut r = Run {
                        metric: s.metric.as_ref(),
                        count: 0,
                        sum: 0.0,
                        valued: 0,
                    };
                    r.add(count, s.value);
                    run = Some(r);
                }
            }
            report.accepted += 1;
        }
    }
    if let (Some(r), Some((_, _, handle))) = (run, &current) {
        r.apply(handle);
    }
    report
}

/// Totals of consecutive signals of one series.
struct Run<'a> {
    metric: &'a str,
    count: u64,
    sum: f64,
    valued: u64,
}

impl Run<'_> {
    fn add(&mut self, count: u64, value: Option<f64>) {
        self.count = self.count.saturating_add(count);
        if let Some(v) = value {
            self.sum += v * count as f64;
            self.valued = self.valued.saturating_add(count);
        }
    }

    fn apply(self, handle: &super::aggregate::VariantHandle) {
        handle.add_totals(self.metric, self.count, self.sum, self.valued);
    }
}
