//! Per-token rate limiting of signal ingestion.
//!
//! A token bucket per token: `per_second` signals per second, a burst of two seconds. A batch
//! larger than the whole burst is admitted when the bucket is full and leaves it in debt, so
//! the token's next batches wait for the refill: such a batch is never refused forever, and
//! its `Retry-After` is the time until the bucket is full again.

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
        self.take_at(who, n, per_second, Instant::now())
    }

    fn take_at(
        &self,
        who: &std::sync::Arc<str>,
        n: u64,
        per_second: u64,
        now: Instant,
    ) -> Result<(), u64> {
        if per_second == 0 {
            return Ok(());
        }
        let rate = per_second as f64;
        let capacity = rate * 2.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let (level, at) = buckets.entry(who.clone()).or_insert((capacity, now));
        *level = (*level + now.saturating_duration_since(*at).as_secs_f64() * rate).min(capacity);
        *at = now;
        // What the batch needs before it may pass: all of it, or a full bucket if it is larger.
        let needed = (n as f64).min(capacity);
        if *level >= needed {
            *level -= n as f64;
            Ok(())
        } else {
            Err((((needed - *level) / rate).ceil() as u64).max(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_batch_within_the_burst_passes_then_waits_for_the_refill() {
        let limiter = RateLimiter::default();
        let who = std::sync::Arc::from("web");
        let t0 = Instant::now();
        assert_eq!(limiter.take_at(&who, 150, 100, t0), Ok(()));
        // 50 left; 120 more need 70, i.e. 0.7 s of refill: retry after 1 s.
        assert_eq!(limiter.take_at(&who, 120, 100, t0), Err(1));
        assert_eq!(
            limiter.take_at(&who, 120, 100, t0 + Duration::from_millis(700)),
            Ok(())
        );
    }

    #[test]
    fn a_batch_larger_than_the_burst_passes_on_a_full_bucket_and_leaves_a_debt() {
        let limiter = RateLimiter::default();
        let who = std::sync::Arc::from("web");
        let t0 = Instant::now();
        // Burst 200: a 500-signal batch passes on the full bucket…
        assert_eq!(limiter.take_at(&who, 500, 100, t0), Ok(()));
        // …and the next batch waits for the debt (300) to be paid and itself to fit.
        assert_eq!(limiter.take_at(&who, 10, 100, t0), Err(4));
        assert_eq!(
            limiter.take_at(&who, 10, 100, t0 + Duration::from_millis(3_050)),
            Err(1)
        );
        assert_eq!(
            limiter.take_at(&who, 10, 100, t0 + Duration::from_millis(3_100)),
            Ok(())
        );
        // Once the bucket is full again, another large batch passes; before that, the wait
        // is the time to fill it, never "forever".
        let later = t0 + Duration::from_millis(4_000);
        assert_eq!(limiter.take_at(&who, 500, 100, later), Err(2));
        assert_eq!(
            limiter.take_at(&who, 500, 100, later + Duration::from_secs(2)),
            Ok(())
        );
    }
}
