//! The one wall clock of the server. Pure cores take `now` as a plain value; the shells read it
//! here, so a test or a future cluster node can reason about one source of time.

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock now in Unix milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Now as RFC 3339 with milliseconds, UTC.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}
