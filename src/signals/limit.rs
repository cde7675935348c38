//! Per-token rate limiting of signal ingestion.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Per-token token buckets (signals per second, burst of two seconds).
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<std::sync::Arc<str>, (f64, Instant)>>,
}

impl RateLimiter {
    /// Takes `n` signals from `who`'s bucket; `Err(seconds)` to wait when it is empty.
    pub fn take(&self, who: &std::sync::Arc<str>, n: u64, per_second: u64) -> Result<(), u64> {
        if per_second == 0 {
            return Ok(());
        }
        let capacity = (per_second * 2) as f64;
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let (level, at) = buckets.entry(who.clone()).or_insert((capacity, now));
        *level = (*level + now.duration_since(*at).as_secs_f64() * per_second as f64).min(capacity);
        *at = now;
        if *level >= n as f64 {
            *level -= n as f64;
            Ok(())
        } else {
            Err((((n as f64 - *level) / per_second as f64).ceil() as u64).max(1))
        }
    }
}
