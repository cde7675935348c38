//! Delivery: one task per target sends its events one at a time, retrying what may pass later.
//! What to make of an answer (`classify`, `backoff`, `retry_after`) is pure and unit-tested
//! below; the task around it only does I/O.

use super::config::Target;
use super::event::{WebhookEvent, WebhookKind};
use super::render::Rendered;
use super::{WebhookStats, EVENT_HEADER, EVENT_ID_HEADER, MAX_BACKOFF, SIGNATURE_HEADER};
use bytes::Bytes;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{debug, error, warn};
use uuid::Uuid;

/// What an HTTP status means for a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Delivered,
    Retry,
    GiveUp,
}

/// 2xx delivers; 408, 429 and 5xx may pass later; anything else (3xx, 4xx) never will.
fn classify(status: u16) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered,
        408 | 429 | 500..=599 => Outcome::Retry,
        _ => Outcome::GiveUp,
    }
}

/// Wait after failed attempt number `attempt` (1-based): `initial` doubled per earlier retry,
/// capped at [`MAX_BACKOFF`], then scaled by `0.5 + jitter / 2` so that retries of many events
/// spread out; `jitter` is uniform in `[0, 1)`.
fn backoff(initial: Duration, attempt: u32, jitter: f64) -> Duration {
    let doubled = initial.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
    doubled
        .min(MAX_BACKOFF)
        .mul_f64(0.5 + jitter.clamp(0.0, 1.0) / 2.0)
}

/// A `Retry-After` header in seconds, capped at [`MAX_BACKOFF`]. The HTTP-date form is ignored
/// (the backoff applies).
fn retry_after(value: Option<&str>) -> Option<Duration> {
    let seconds: u64 = value?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds).min(MAX_BACKOFF))
}

/// `error` and its sources, one after the other; reqwest errors must be stripped of their URL.
pub(super) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// An event ready to send to one target: the exact bytes (in the target's format) and their
/// signature; every attempt sends these.
pub(super) struct Job {
    pub(super) id: Uuid,
    pub(super) kind: WebhookKind,
    body: Bytes,
    signature: Option<String>,
}

impl Job {
    pub(super) fn new(event: &WebhookEvent, rendered: Rendered) -> Job {
        Job {
            id: event.id,
            kind: event.kind,
            body: rendered.body,
            signature: rendered.signature,
        }
    }
}

/// Why one attempt did not deliver.
struct Failure {
    outcome: Outcome,
    status: Option<u16>,
    error: Option<String>,
    retry_after: Option<Duration>,
}

/// The delivery task of one URL.
pub(super) struct Worker {
    pub(super) target: Target,
    pub(super) client: reqwest::Client,
    pub(super) max_attempts: u32,
    pub(super) initial_backoff: Duration,
    pub(super) stats: Arc<WebhookStats>,
}

impl Worker {
    pub(super) async fn run(self, mut rx: mpsc::Receiver<Arc<Job>>) {
        while let Some(job) = rx.recv().await {
            self.deliver(&job).await;
            self.stats.pending.fetch_sub(1, Relaxed);
        }
        debug!(url = %self.target.shown, "webhook delivery task stopped");
    }

    async fn deliver(&self, job: &Job) {
        let max_attempts = self.max_attempts;
        for attempt in 1..=max_attempts {
            let failure = match self.attempt(job).await {
                Ok(status) => {
                    self.stats.delivered.fetch_add(1, Relaxed);
                    let (url, event_id) = (&self.target.shown, job.id);
                    debug!(%url, %event_id, attempt, status, "webhook delivered");
                    return;
                }
                Err(failure) => failure,
            };
            let (url, event_id, kind) = (&self.target.shown, job.id, job.kind.as_str());
            let (status, error) = (failure.status, failure.error.as_deref());
            if failure.outcome == Outcome::GiveUp || attempt == max_attempts {
                self.stats.failed.fetch_add(1, Relaxed);
                error!(
                    %url, %event_id, kind, attempt, max_attempts, status, error,
                    "webhook delivery failed; giving up"
                );
                return;
            }
            let wait = failure
                .retry_after
                .unwrap_or_else(|| backoff(self.initial_backoff, attempt, rand::random()));
            self.stats.retried.fetch_add(1, Relaxed);
            warn!(
                %url, %event_id, kind, attempt, max_attempts, status, error, ?wait,
                "webhook delivery failed; will retry"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// One POST; `Ok` with the 2xx status, or why not.
    async fn attempt(&self, job: &Job) -> Result<u16, Failure> {
        let mut request = self
            .client
            .post(self.target.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(EVENT_HEADER, job.kind.as_str())
            .header(EVENT_ID_HEADER, job.id.to_string())
            .body(job.body.clone());
        if let Some(signature) = &job.signature {
            request = request.header(SIGNATURE_HEADER, signature);
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let outcome = classify(status);
                if outcome == Outcome::Delivered {
                    return Ok(status);
                }
                let header = response.headers().get(reqwest::header::RETRY_AFTER);
                let honoured = matches!(status, 429 | 503);
                let retry_after = if honoured {
                    retry_after(header.and_then(|v| v.to_str().ok()))
                } else {
                    None
                };
                Err(Failure {
                    outcome,
                    status: Some(status),
                    error: None,
                    retry_after,
                })
            }
            Err(error) => Err(Failure {
                // A request that cannot even be built will not build next time either.
                outcome: if error.is_builder() {
                    Outcome::GiveUp
                } else {
                    Outcome::Retry
                },
                status: None,
                error: Some(error_chain(&error.without_url())),
                retry_after: None,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_timeouts_throttling_and_server_errors_are_retried() {
        for status in [200, 201, 204, 299] {
            assert_eq!(classify(status), Outcome::Delivered, "{status}");
        }
        for status in [408, 429, 500, 502, 503, 504, 599] {
            assert_eq!(classify(status), Outcome::Retry, "{status}");
        }
        for status in [100, 301, 302, 400, 401, 403, 404, 410, 422] {
            assert_eq!(classify(status), Outcome::GiveUp, "{status}");
        }
    }

    #[test]
    fn backoff_doubles_is_capped_and_jitters_down_to_half() {
        let initial = Duration::from_millis(200);
        assert_eq!(backoff(initial, 1, 1.0), Duration::from_millis(200));
        assert_eq!(backoff(initial, 2, 1.0), Duration::from_millis(400));
        assert_eq!(backoff(initial, 5, 1.0), Duration::from_millis(3200));
        assert_eq!(backoff(initial, 5, 0.0), Duration::from_millis(1600));
        assert_eq!(backoff(initial, 12, 1.0), MAX_BACKOFF);
        assert_eq!(backoff(initial, u32::MAX, 1.0), MAX_BACKOFF);
        assert_eq!(backoff(Duration::from_secs(60), 1, 0.0), MAX_BACKOFF / 2);
    }

    #[test]
    fn retry_after_reads_seconds_and_is_capped() {
        assert_eq!(retry_after(Some("3")), Some(Duration::from_secs(3)));
        assert_eq!(retry_after(Some(" 0 ")), Some(Duration::ZERO));
        assert_eq!(retry_after(Some("3600")), Some(MAX_BACKOFF));
        assert_eq!(retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")), None);
        assert_eq!(retry_after(Some("-1")), None);
        assert_eq!(retry_after(None), None);
    }
}
