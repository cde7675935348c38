//! `rollgate health`: asks a running server's `/healthz`; exit code 0 when healthy.

use std::time::Duration;

/// Returns `Ok(())` when `GET {url}/healthz` answers 200 within 3 seconds.
pub fn check(url: &str) -> Result<(), String> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .map_err(|e| format!("cannot build HTTP client: {e}"))?;
    let target = format!("{}/healthz", url.trim_end_matches('/'));
    match client.get(&target).send() {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!("{target} answered {}", r.status())),
        Err(e) => Err(format!("{target} unreachable: {e}")),
    }
}
