//! Guard sources other than client signals: today a Prometheus-compatible HTTP API.
//!
//! - this file: the `[guard.prometheus]` table of a policy, its validation and the rendering of
//!   its PromQL templates (pure);
//! - [`prometheus`]: the one HTTP call (an instant query) and the parsing of its answer;
//! - [`readings`]: the latest answer per (release, module, guard), kept in memory on the node
//!   holding the controller lease, which the controller step reads as plain numbers.
//!
//! Invariant: nothing here decides. An answer is numbers or the reason there are none; the
//! analysis turns a missing or failed answer into silent telemetry, never into "healthy".

pub mod prometheus;
pub mod readings;

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Where a guard reads its events and exposures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GuardSource {
    /// Client signals (`POST /api/v1/signals`).
    #[default]
    Signals,
    /// A Prometheus-compatible HTTP API (`[guard.prometheus]`).
    Prometheus,
}

impl GuardSource {
    /// The name used in readings and decision records.
    pub fn as_str(self) -> &'static str {
        match self {
            GuardSource::Signals => "signals",
            GuardSource::Prometheus => "prometheus",
        }
    }

    /// Whether `self` is the default (for `skip_serializing_if`).
    pub fn is_signals(&self) -> bool {
        *self == GuardSource::Signals
    }
}

/// Default label carrying the variant (OpenFeature's `feature_flag.result.variant` attribute
/// as the OpenTelemetry Prometheus exporter names it).
pub const DEFAULT_VARIANT_LABEL: &str = "feature_flag_result_variant";
/// Default timeout of one query.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time between two queries of the same guard.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// The `[guard.prometheus]` table: where and what to query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromQuery {
    /// Base URL of the Prometheus-compatible HTTP API, e.g. `http://prometheus:9090`
    /// (`/api/v1/query` is appended).
    pub url: String,
    /// PromQL template giving the metric's events per variant over the window, e.g.
    /// `sum by ($variant_label) (increase(checkout_errors_total{feature_flag_key="$flag"}[$window]))`.
    pub events: String,
    /// PromQL template giving the exposures per variant over the window.
    pub exposures: String,
    /// Label whose value is the variant (default `feature_flag_result_variant`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant_label: Option<String>,
    /// Timeout of one query (default `5s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Time between two queries of this guard (default `10s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
}

/// A problem in a `[guard.prometheus]` table: the field (below the table) and what is wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct QueryError {
    /// `url`, `events`, …
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

fn bad(field: &'static str, message: impl Into<String>) -> QueryError {
    QueryError {
        field,
        message: message.into(),
    }
}

impl PromQuery {
    /// Checks every field; the first problem found is returned.
    pub fn validate(&self) -> Result<(), QueryError> {
        match reqwest::Url::parse(&self.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => {
                return Err(bad(
                    "url",
                    format!(
                        "{:?} is not an http(s) URL such as http://prometheus:9090",
                        self.url
                    ),
                ))
            }
        }
        for (field, template) in [("events", &self.events), ("exposures", &self.exposures)] {
            if template.trim().is_empty() {
                return Err(bad(field, "a PromQL query is required"));
            }
            if !template.contains("$window") {
                return Err(bad(
                    field,
                    "must use $window (the stage's age, e.g. increase(x[$window])) so the query counts since the stage started",
                ));
            }
            if let Some(unknown) = unknown_placeholder(template) {
                return Err(bad(
                    field,
                    format!("unknown placeholder ${unknown} (use $flag, $window, $variant_label)"),
                ));
            }
        }
        if let Some(label) = &self.variant_label {
            let mut chars = label.chars();
            let first_ok = chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
            if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(bad(
                    "variant_label",
                    format!("{label:?} is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)"),
                ));
            }
        }
        for (field, value) in [("timeout", &self.timeout), ("interval", &self.interval)] {
            if let Some(text) = value {
                match parse_duration(text) {
                    Some(d) if !d.is_zero() => {}
                    _ => {
                        return Err(bad(
                            field,
                            format!("{text:?} is not a duration above 0 (use 500ms, 5s, 1m)"),
                        ))
                    }
                }
            }
        }
        Ok(())
    }

    /// The label naming the variant.
    pub fn variant_label(&self) -> &str {
        self.variant_label
            .as_deref()
            .unwrap_or(DEFAULT_VARIANT_LABEL)
    }

    /// The timeout of one query.
    pub fn timeout(&self) -> Duration {
        self.timeout
            .as_deref()
            .and_then(parse_duration)
            .unwrap_or(DEFAULT_TIMEOUT)
    }

    /// The time between two queries.
    pub fn interval(&self) -> Duration {
        self.interval
            .as_deref()
            .and_then(parse_duration)
            .unwrap_or(DEFAULT_INTERVAL)
    }

    /// `template` with its placeholders filled: `$flag` (the flag key), `$window` (`window_ms`
    /// as whole seconds, at least `1s`) and `$variant_label`.
    pub fn render(&self, template: &str, flag: &str, window_ms: u64) -> String {
        template
            .replace("$variant_label", self.variant_label())
            .replace("$window", &window(window_ms))
            .replace("$flag", flag)
    }
}

/// A duration such as `500ms`, `5s`, `1m` (the policies' format, without importing them).
fn parse_duration(text: &str) -> Option<Duration> {
    humantime::parse_duration(text.trim()).ok()
}

/// A window of `ms` as a Prometheus duration in whole seconds, rounded up, at least `1s`.
pub fn window(ms: u64) -> String {
    format!("{}s", ms.div_ceil(1000).max(1))
}

/// The first `$name` in `template` that is not a known placeholder.
fn unknown_placeholder(template: &str) -> Option<String> {
    const KNOWN: [&str; 3] = ["variant_label", "window", "flag"];
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        let after = &rest[i + 1..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !KNOWN.contains(&name.as_str()) {
            return Some(name);
        }
        rest = &after[name.len()..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query() -> PromQuery {
        PromQuery {
            url: "http://127.0.0.1:9090".into(),
            events: r#"sum by ($variant_label) (increase(errors_total{feature_flag_key="$flag"}[$window]))"#.into(),
            exposures: r#"sum by ($variant_label) (increase(requests_total{feature_flag_key="$flag"}[$window]))"#.into(),
            variant_label: None,
            timeout: None,
            interval: None,
        }
    }

    #[test]
    fn render_fills_flag_window_and_label() {
        let q = query();
        assert_eq!(
            q.render(&q.events, "checkout", 12_001),
            r#"sum by (feature_flag_result_variant) (increase(errors_total{feature_flag_key="checkout"}[13s]))"#
        );
        assert_eq!(window(0), "1s");
        assert_eq!(window(1000), "1s");
    }

    #[test]
    fn validation_names_the_field() {
        let field = |f: &dyn Fn(&mut PromQuery)| {
            let mut q = query();
            f(&mut q);
            q.validate().unwrap_err().field
        };
        assert!(query().validate().is_ok());
        assert_eq!(field(&|q| q.url = "prometheus:9090".into()), "url");
        assert_eq!(field(&|q| q.events = " ".into()), "events");
        assert_eq!(
            field(&|q| q.exposures = "requests_total".into()),
            "exposures"
        );
        assert_eq!(field(&|q| q.events = "x[$window] $flagg".into()), "events");
        assert_eq!(
            field(&|q| q.variant_label = Some("a-b".into())),
            "variant_label"
        );
        assert_eq!(field(&|q| q.timeout = Some("soon".into())), "timeout");
        assert_eq!(field(&|q| q.interval = Some("0s".into())), "interval");
    }
}
