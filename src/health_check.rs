//! `rollgate health`: asks a running server's `/healthz`; exit code 0 when healthy.

use std::path::Path;
use std::time::Duration;

/// Returns `Ok(())` when `GET {url}/healthz` answers 200 within 3 seconds; an `https://` server's
/// certificate is checked against the system roots and `ca_file`.
pub fn check(url: &str, ca_file: Option<&Path>) -> Result<(), String> {
    let client = crate::tls::blocking_http_client(ca_file)
        .map_err(|e| e.to_string())?
        .timeout(Duration::from_secs(3))
        .build()
        .map_err(|e| format!("cannot build HTTP client: {e}"))?;
    let target = format!("{}/healthz", url.trim_end_matches('/'));
    match client.get(&target).send() {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!("{target} answered {}", r.status())),
        Err(e) => Err(format!("{target} unreachable: {}", innermost(&e))),
    }
}

/// The innermost cause ("invalid peer certificate: UnknownIssuer", "Connection refused"), which
/// says more than reqwest's outer "error sending request".
fn innermost(error: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}
