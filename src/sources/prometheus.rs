//! One instant query against a Prometheus-compatible HTTP API (`GET /api/v1/query`), and the
//! parsing of its answer into a number per variant.
//!
//! Every way a query can fail comes back as a [`PromError`] whose text names the problem
//! (HTTP status, timeout, PromQL error, result type); the caller records it and the analysis
//! reads it as silent telemetry. Values are rounded to whole counts: `increase()` extrapolates
//! to the window's edges, so it returns non-integers even for integer counters.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Why a query gave no numbers.
#[derive(Debug, thiserror::Error)]
pub enum PromError {
    /// Connection refused, DNS, TLS, …
    #[error("request to {url} failed: {message}")]
    Request { url: String, message: String },
    /// No answer within the timeout.
    #[error("no answer from {url} within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    /// Prometheus answered with an error (bad PromQL answers 400 with `status: error`).
    #[error("Prometheus error ({kind}): {message}")]
    Query { kind: String, message: String },
    /// An HTTP status without a Prometheus error body.
    #[error("HTTP {status} from {url}")]
    Status { url: String, status: u16 },
    /// The answer is not an instant vector of finite, non-negative numbers.
    #[error("unexpected answer: {0}")]
    Shape(String),
}

/// The HTTP client for Prometheus queries (rustls, the system roots plus `ca_file`, through
/// [`crate::tls`]). The one place it is built.
pub fn http_client(ca_file: Option<&std::path::Path>) -> Result<reqwest::Client, String> {
    crate::tls::http_client(ca_file)
        .map_err(|e| e.to_string())?
        .user_agent(concat!("rollgate/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())
}

#[derive(Deserialize)]
struct Body {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct Sample {
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

/// Runs `query` at `time_s` (Unix seconds) against `base` and sums the samples per value of
/// `label` (series without the label are ignored), each rounded to a whole count.
pub async fn query_by_label(
    client: &reqwest::Client,
    base: &str,
    query: &str,
    time_s: f64,
    label: &str,
    timeout: Duration,
) -> Result<BTreeMap<String, u64>, PromError> {
    let url = format!("{}/api/v1/query", base.trim_end_matches('/'));
    let time = format!("{time_s:.3}");
    let request = client
        .get(&url)
        .query(&[("query", query), ("time", time.as_str())])
        .timeout(timeout)
        .send();
    let response = request.await.map_err(|e| failed(&url, timeout, e))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|e| failed(&url, timeout, e))?;
    match serde_json::from_str::<Body>(&text) {
        Ok(body) if body.status != "success" => Err(PromError::Query {
            kind: body.error_type.unwrap_or_else(|| "unknown".into()),
            message: body.error.unwrap_or_default(),
        }),
        Ok(body) if status.is_success() => by_label(body.data, label),
        _ => Err(PromError::Status {
            url,
            status: status.as_u16(),
        }),
    }
}

fn failed(url: &str, timeout: Duration, e: reqwest::Error) -> PromError {
    if e.is_timeout() {
        PromError::Timeout {
            url: url.to_owned(),
            timeout,
        }
    } else {
        PromError::Request {
            url: url.to_owned(),
            message: match std::error::Error::source(&e) {
                Some(cause) => format!("{e}: {cause}"),
                None => e.to_string(),
            },
        }
    }
}

fn by_label(data: Option<Data>, label: &str) -> Result<BTreeMap<String, u64>, PromError> {
    let data = data.ok_or_else(|| PromError::Shape("no data".into()))?;
    if data.result_type != "vector" {
        return Err(PromError::Shape(format!(
            "result type {:?}, not an instant vector",
            data.result_type
        )));
    }
    let samples: Vec<Sample> = serde_json::from_value(data.result)
        .map_err(|e| PromError::Shape(format!("vector samples: {e}")))?;
    let mut out = BTreeMap::new();
    for s in samples {
        let Some(variant) = s.metric.get(label) else {
            continue;
        };
        let v: f64 = s.value.1.parse().unwrap_or(f64::NAN);
        if !(v.is_finite() && v >= 0.0) {
            return Err(PromError::Shape(format!(
                "value {:?} for {label}={variant:?} is not a count",
                s.value.1
            )));
        }
        let total: &mut u64 = out.entry(variant.clone()).or_default();
        *total = total.saturating_add(v.round() as u64);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(v: serde_json::Value) -> Option<Data> {
        serde_json::from_value(v).ok()
    }

    #[test]
    fn vector_is_summed_and_rounded_per_variant() {
        let d = data(json!({"resultType": "vector", "result": [
            {"metric": {"v": "on", "instance": "a"}, "value": [1.0, "10.4"]},
            {"metric": {"v": "on", "instance": "b"}, "value": [1.0, "2.6"]},
            {"metric": {"v": "off"}, "value": [1.0, "7"]},
            {"metric": {}, "value": [1.0, "99"]}
        ]}));
        let got = by_label(d, "v").unwrap();
        assert_eq!(got, BTreeMap::from([("on".into(), 13), ("off".into(), 7)]));
    }

    #[test]
    fn a_matrix_or_a_nan_is_not_a_count() {
        let m = data(json!({"resultType": "matrix", "result": []}));
        assert!(by_label(m, "v").unwrap_err().to_string().contains("matrix"));
        let nan = data(json!({"resultType": "vector", "result": [
            {"metric": {"v": "on"}, "value": [1.0, "NaN"]}]}));
        assert!(matches!(by_label(nan, "v"), Err(PromError::Shape(_))));
    }
}
