//! Parsing and applying a batch of signals (`POST /api/v1/signals`).
//!
//! Malformed input (bad JSON, wrong types, unknown fields, negative or non-finite numbers)
//! rejects the whole batch with the failing field named (400); so does a well-formed signal
//! beyond the bounds below (422, [`Malformed::out_of_bounds`]). A signal for an unknown flag
//! or variant is counted and reported, while the rest of the batch is applied.
//!
//! The bounds keep every total far from the counter ceiling: a batch adds at most
//! [`MAX_BATCH_COUNT`] events to any series, so a `u64` series would need more than 10^11
//! such batches to saturate, and sums of values stay finite. The aggregates saturate anyway
//! (see `aggregate.rs`), so no sequence of batches can lower or reset a count.

use super::aggregate::{Aggregates, Series};
pub use super::bounds::{
    Malformed, MAX_ABS_VALUE, MAX_APPLIED_MS_AGO, MAX_BATCH_COUNT, MAX_COUNT, MAX_SDK_CHARS,
};
use super::histogram::Histogram;
use crate::live::Live;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// The request body; strings borrow from the body when they need no unescaping.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalBatch<'a> {
    /// The signals (may be empty: a heartbeat).
    #[serde(borrow)]
    pub signals: Vec<Signal<'a>>,
    /// What the sending client has applied (docs/clients.md).
    #[serde(default, borrow)]
    pub client: Option<ClientReport<'a>>,
}

/// The `client` object: which revision the sending client instance has applied, and when.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientReport<'a> {
    /// A random id per client instance: 1–64 of `[A-Za-z0-9._:-]`.
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    /// The highest revision the client has applied.
    #[serde(deserialize_with = "crate::json_int::u64")]
    pub revision: u64,
    /// How long before sending it applied `revision`, 0 to [`MAX_APPLIED_MS_AGO`].
    #[serde(deserialize_with = "crate::json_int::u64")]
    pub applied_ms_ago: u64,
    /// Name/version of the client library (at most 64 characters).
    #[serde(default, borrow)]
    pub sdk: Option<Cow<'a, str>>,
    /// The client's last report before it shuts down: it stops counting as live at once.
    #[serde(default)]
    pub closing: bool,
}

impl ClientReport<'_> {
    /// The report as the reach tracker takes it.
    pub fn reach(&self) -> crate::reach::Report<'_> {
        crate::reach::Report {
            id: &self.id,
            revision: self.revision,
            applied_ms_ago: self.applied_ms_ago,
            closing: self.closing,
        }
    }
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
    /// A value such as a latency in seconds (`count` observations of it).
    #[serde(default)]
    pub value: Option<f64>,
    /// The release audience the evaluation named (`metadata.audience`); absent: everyone else.
    #[serde(default, borrow)]
    pub audience: Option<Cow<'a, str>>,
    /// Pre-aggregated observations (instead of `count` and `value`), see `histogram.rs`.
    #[serde(default, deserialize_with = "super::histogram::option")]
    pub histogram: Option<Histogram>,
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

/// A metric name or a client id: 1 to 64 of `[A-Za-z0-9_.:-]`.
fn valid_name(m: &str) -> bool {
    !m.is_empty()
        && m.len() <= 64
        && m.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b':'))
}

/// Checks the `client` report's shape and bounds; `Err` names the offending field.
fn check_client(client: &ClientReport<'_>) -> Result<(), Malformed> {
    if !valid_name(&client.id) {
        return Err(Malformed::shape(
            "client.id".into(),
            "1 to 64 of [A-Za-z0-9_.:-]",
        ));
    }
    if client.applied_ms_ago > MAX_APPLIED_MS_AGO {
        return Err(Malformed::bound(
            "client.applied_ms_ago".into(),
            format!("at most {MAX_APPLIED_MS_AGO} (a day)"),
        ));
    }
    if client
        .sdk
        .as_ref()
        .is_some_and(|sdk| sdk.chars().count() > MAX_SDK_CHARS)
    {
        return Err(Malformed::shape(
            "client.sdk".into(),
            format!("at most {MAX_SDK_CHARS} characters"),
        ));
    }
    Ok(())
}

/// Checks every signal's shape and bounds, and the `client` report's; `Err` names the first
/// offending field.
pub fn check(batch: &SignalBatch<'_>, max: usize) -> Result<(), Malformed> {
    if let Some(client) = &batch.client {
        check_client(client)?;
    }
    if batch.signals.len() > max {
        return Err(Malformed::shape(
            "signals".into(),
            format!("at most {max} signals per batch"),
        ));
    }
    let mut batch_count: u64 = 0;
    for (i, s) in batch.signals.iter().enumerate() {
        let at = |f: &str| format!("signals[{i}].{f}");
        if !valid_name(&s.metric) {
            return Err(Malformed::shape(at("metric"), "1 to 64 of [A-Za-z0-9_.:-]"));
        }
        if s.audience
            .as_deref()
            .is_some_and(|a| !rollgate_eval::valid_flag_key(a))
        {
            return Err(Malformed::shape(
                at("audience"),
                "a segment key: [a-z0-9][a-z0-9._-]{0,127}",
            ));
        }
        match s.value {
            Some(v) if !v.is_finite() => {
                return Err(Malformed::shape(at("value"), "must be a finite number"));
            }
            Some(v) if v.abs() > MAX_ABS_VALUE => {
                return Err(Malformed::bound(
                    at("value"),
                    format!("must be between -{MAX_ABS_VALUE:e} and {MAX_ABS_VALUE:e}"),
                ));
            }
            _ => {}
        }
        let count = match &s.histogram {
            Some(h) => {
                for (absent, field) in [(s.count.is_none(), "count"), (s.value.is_none(), "value")]
                {
                    if !absent {
                        return Err(Malformed::bound(
                            at(field),
                            "a signal with a histogram carries its counts and values in it",
                        ));
                    }
                }
                h.check(&format!("signals[{i}]"))?
            }
            None => s.count.unwrap_or(1),
        };
        if count == 0 {
            return Err(Malformed::shape(at("count"), "must be at least 1"));
        }
        if count > MAX_COUNT {
            return Err(Malformed::bound(
                at("count"),
                format!("at most {MAX_COUNT} events per signal"),
            ));
        }
        // Both terms are at most MAX_BATCH_COUNT + MAX_COUNT here: no overflow.
        batch_count += count;
        if batch_count > MAX_BATCH_COUNT {
            return Err(Malformed::bound(
                at("count"),
                format!("the counts of one batch add up to at most {MAX_BATCH_COUNT}; this signal exceeds that"),
            ));
        }
    }
    Ok(())
}

/// Checks every signal's `timestamp`: an RFC 3339 time (`2026-11-22T10:00:00Z`, any offset) or
/// Unix milliseconds (a non-negative integer). Informational, but a value that is neither is a
/// client bug worth reporting; `Err` names the first bad one (`signals[3].timestamp`).
pub fn check_timestamps(batch: &SignalBatch<'_>) -> Result<(), Malformed> {
    use time::format_description::well_known::Rfc3339;
    let valid = |t: &serde_json::Value| match t {
        serde_json::Value::String(text) => time::OffsetDateTime::parse(text, &Rfc3339).is_ok(),
        serde_json::Value::Number(n) => n.is_u64(),
        _ => false,
    };
    match batch
        .signals
        .iter()
        .position(|s| s.timestamp.as_ref().is_some_and(|t| !valid(t)))
    {
        Some(i) => Err(Malformed {
            field: format!("signals[{i}].timestamp"),
            message: "must be an RFC 3339 time (2026-11-22T10:00:00Z) or Unix milliseconds".into(),
            out_of_bounds: true,
        }),
        None => Ok(()),
    }
}

/// Applies a checked batch against the live flags at `now_ms`.
pub fn ingest(
    aggregates: &Aggregates,
    live: &Live,
    batch: &SignalBatch<'_>,
    now_ms: u64,
) -> IngestReport {
    let mut report = IngestReport::default();
    let mut current: Option<(&str, &str, Option<&str>, super::aggregate::VariantHandle)> = None;
    // Consecutive signals of one series are summed and applied once.
    let mut run: Option<Run<'_>> = None;
    for (index, s) in batch.signals.iter().enumerate() {
        let (flag, variant, audience) =
            (s.flag.as_ref(), s.variant.as_ref(), s.audience.as_deref());
        let cached =
            matches!(&current, Some((f, v, a, _)) if *f == flag && *v == variant && *a == audience);
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
            if let (Some(r), Some((_, _, _, handle))) = (run.take(), &current) {
                r.apply(handle);
            }
            let handle = aggregates.variant(flag, &super::aggregate::series_key(variant, audience));
            handle.touch(now_ms);
            if !report.touched.iter().any(|t| t == flag) {
                report.touched.push(flag.to_owned());
            }
            current = Some((flag, variant, audience, handle));
        }
        if let Some((_, _, _, handle)) = &current {
            let r = match &mut run {
                Some(r) if r.metric == s.metric.as_ref() => r,
                _ => {
                    if let Some(r) = run.take() {
                        r.apply(handle);
                    }
                    run.insert(Run {
                        metric: s.metric.as_ref(),
                        series: None,
                        count: 0,
                        sum: 0.0,
                        valued: 0,
                    })
                }
            };
            match &s.histogram {
                Some(h) => {
                    for (bound, count) in h.buckets() {
                        r.add(handle, count, Some(bound));
                    }
                }
                None => r.add(handle, s.count.unwrap_or(1), s.value),
            }
            report.accepted += 1;
        }
    }
    if let (Some(r), Some((_, _, _, handle))) = (run, &current) {
        r.apply(handle);
    }
    report
}

/// Totals of consecutive signals of one series; values go straight into the series'
/// sketch (one atomic add each), looked up once per run.
struct Run<'a> {
    metric: &'a str,
    series: Option<std::sync::Arc<Series>>,
    count: u64,
    sum: f64,
    valued: u64,
}

impl Run<'_> {
    fn add(&mut self, handle: &super::aggregate::VariantHandle, count: u64, value: Option<f64>) {
        self.count = self.count.saturating_add(count);
        if let Some(v) = value {
            self.sum = super::aggregate::saturating_sum(self.sum, v * count as f64);
            self.valued = self.valued.saturating_add(count);
            self.series
                .get_or_insert_with(|| handle.series(self.metric))
                .sketch()
                .add(v, count);
        }
    }

    fn apply(self, handle: &super::aggregate::VariantHandle) {
        handle.add_totals(self.metric, self.count, self.sum, self.valued);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(body: &str) -> SignalBatch<'_> {
        serde_json::from_str(body).unwrap()
    }

    #[test]
    fn bounds_are_inclusive_and_beyond_them_is_out_of_bounds_naming_the_field() {
        let ok = batch(
            r#"{"signals": [{"flag": "f", "variant": "on", "metric": "m", "count": 1000000, "value": -1e12}]}"#,
        );
        assert!(check(&ok, 10).is_ok());

        for (body, field) in [
            (
                r#"{"signals": [{"flag": "f", "variant": "on", "metric": "m", "count": 1000001}]}"#,
                "signals[0].count",
            ),
            (
                r#"{"signals": [{"flag": "f", "variant": "on", "metric": "m"}, {"flag": "f", "variant": "on", "metric": "m", "value": 1.0000001e12}]}"#,
                "signals[1].value",
            ),
        ] {
            let e = check(&batch(body), 10).unwrap_err();
            assert_eq!((e.field.as_str(), e.out_of_bounds), (field, true), "{body}");
        }
        let zero =
            batch(r#"{"signals": [{"flag": "f", "variant": "on", "metric": "m", "count": 0}]}"#);
        assert!(
            !check(&zero, 10).unwrap_err().out_of_bounds,
            "0 stays malformed (400)"
        );
    }

    #[test]
    fn a_client_report_is_checked_naming_its_field() {
        let ok = batch(
            r#"{"signals": [], "client": {"id": "a.B-9:_", "revision": 0, "applied_ms_ago": 86400000, "sdk": "rollgate-rust/0.1.0"}}"#,
        );
        assert!(check(&ok, 10).is_ok());
        assert_eq!(ok.client.as_ref().map(|c| c.reach().revision), Some(0));
        for (client, field, out_of_bounds) in [
            (
                r#"{"id": "", "revision": 1, "applied_ms_ago": 0}"#,
                "client.id",
                false,
            ),
            (
                r#"{"id": "a b", "revision": 1, "applied_ms_ago": 0}"#,
                "client.id",
                false,
            ),
            (
                &format!(
                    r#"{{"id": "{}", "revision": 1, "applied_ms_ago": 0}}"#,
                    "x".repeat(65)
                ),
                "client.id",
                false,
            ),
            (
                r#"{"id": "a", "revision": 1, "applied_ms_ago": 86400001}"#,
                "client.applied_ms_ago",
                true,
            ),
            (
                &format!(
                    r#"{{"id": "a", "revision": 1, "applied_ms_ago": 0, "sdk": "{}"}}"#,
                    "é".repeat(65)
                ),
                "client.sdk",
                false,
            ),
        ] {
            let body = format!(r#"{{"signals": [], "client": {client}}}"#);
            let e = check(&batch(&body), 10).unwrap_err();
            assert_eq!(
                (e.field.as_str(), e.out_of_bounds),
                (field, out_of_bounds),
                "{client}"
            );
        }
        for refused in [
            r#"{"id": "a", "revision": 1}"#,
            r#"{"id": "a", "revision": -1, "applied_ms_ago": 0}"#,
            r#"{"id": "a", "revision": 1, "applied_ms_ago": 0, "colour": 1}"#,
        ] {
            let body = format!(r#"{{"signals": [], "client": {refused}}}"#);
            assert!(
                serde_json::from_str::<SignalBatch<'_>>(&body).is_err(),
                "{refused}"
            );
        }
    }

    #[test]
    fn an_audience_must_be_a_segment_key() {
        let ok = r#"{"signals": [{"flag": "f", "variant": "on", "metric": "m", "audience": "innovation"}]}"#;
        assert!(check(&batch(ok), 10).is_ok());
        let bad = r#"{"signals": [{"flag": "f", "variant": "on", "metric": "m"}, {"flag": "f", "variant": "on", "metric": "m", "audience": "Not a key"}]}"#;
        let e = check(&batch(bad), 10).unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.out_of_bounds),
            ("signals[1].audience", false)
        );
    }

    #[test]
    fn a_batch_total_beyond_the_bound_names_the_signal_that_crosses_it() {
        let one = r#"{"flag": "f", "variant": "on", "metric": "m", "count": 1000000}"#;
        let at_bound = format!(r#"{{"signals": [{}]}}"#, vec![one; 100].join(","));
        let over = format!(r#"{{"signals": [{}]}}"#, vec![one; 101].join(","));

        assert!(check(&batch(&at_bound), 1000).is_ok());
        let e = check(&batch(&over), 1000).unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.out_of_bounds),
            ("signals[100].count", true)
        );
    }
}
