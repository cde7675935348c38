//! Outgoing webhooks: every configured target receives an event when a release or one of its
//! modules is paused, rolled back, completed or resumed after a rollback: generic targets the
//! signed JSON event, Slack targets a message, PagerDuty targets an Events API v2 trigger or
//! resolve (only for the kinds that page).
//!
//! Invariants:
//! - [`Webhooks::notify`] never blocks or awaits. It serializes the event once, renders it per
//!   target's format (signing generic bodies), then `try_send`s it to one bounded queue per
//!   target; a full queue drops the event for that URL
//!   (counted in `dropped`, logged). A receiver can never slow the controller.
//! - Each URL has its own delivery task, so a slow or dead receiver delays only its own events.
//!   A URL receives events one at a time, in the order they were notified.
//! - Every attempt of an event sends the same body bytes and the same `X-Rollgate-Event-Id`
//!   (receivers dedupe retries on it); `X-Rollgate-Signature` is an HMAC-SHA256 of those bytes.
//! - Connection errors, timeouts, 408, 429 and 5xx are retried with exponential backoff and
//!   jitter (a `Retry-After` in seconds is honoured, capped) until `max_attempts`; any other
//!   non-2xx answer is final. Redirects are not followed.
//! - Every outcome is counted in [`WebhookStats`], every failure is logged with the URL stripped
//!   of credentials and query, the event id, the attempt and the status or error. The secret
//!   never appears in logs or `Debug` output.
//! - [`Webhooks::shutdown`] stops accepting, lets the tasks drain their queues for at most the
//!   grace period, then aborts them. Dropping every handle without it also ends the tasks, once
//!   their queues are drained.
//!
//! - Every notified event is counted by kind (`events`), with or without targets: the
//!   `rollgate_release_events_total` metric the shipped alert rules read.
//!
//! Rooms: `config` (settings and their validation, URL redaction), `event` (what is sent),
//! `render` (the body per target type, pure) over `slack` and `pagerduty` (the typed messages)
//! over `format` (the words and numbers they share), `delivery` (one task per
//! target: attempts, retry policy; what to make of an answer is pure and unit-tested there),
//! and this file, the dispatcher handle. Signatures come from
//! [`crate::auth::hmac`].

mod config;
mod delivery;
mod event;
mod format;
mod pagerduty;
mod render;
mod slack;

/// Signing and checking `X-Rollgate-Signature` (HMAC-SHA256 lives in `auth::hmac`).
pub use crate::auth::hmac::{sign, verify};
pub use config::{
    TargetConfig, TargetKind, WebhookConfig, WebhookConfigError, PAGERDUTY_EVENTS_URL,
};
pub use event::{WebhookEvent, WebhookKind};

use bytes::Bytes;
use config::{Format, Resolved, Target};
use delivery::{error_chain, Job, Worker};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

/// Header carrying the event kind (`pause`, `rollback`, `completion`, `resume`,
/// `rollback_unconfirmed`, `rollback_confirmed`, `drill`, `drill_failed`).
pub const EVENT_HEADER: &str = "X-Rollgate-Event";
/// Header carrying the event id, identical on every attempt.
pub const EVENT_ID_HEADER: &str = "X-Rollgate-Event-Id";
/// Header carrying `sha256=<hex HMAC-SHA256 of the body>` when a secret is configured.
pub const SIGNATURE_HEADER: &str = "X-Rollgate-Signature";

/// Longest wait between two attempts, whatever the backoff or `Retry-After` says.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
const USER_AGENT: &str = concat!("rollgate/", env!("CARGO_PKG_VERSION"));

/// Delivery counters, each per event and URL (an event sent to two URLs counts twice).
#[derive(Debug, Default)]
pub struct WebhookStats {
    /// Answered 2xx.
    pub delivered: AtomicU64,
    /// Given up: a final answer, or `max_attempts` used.
    pub failed: AtomicU64,
    /// Attempts that failed and were scheduled again.
    pub retried: AtomicU64,
    /// Never queued: the URL's queue was full, or webhooks were shut down.
    pub dropped: AtomicU64,
    /// Gauge: queued or being delivered now.
    pub pending: AtomicU64,
    /// Events notified, by kind (index of [`WebhookKind::ALL`]), whether or not any target
    /// takes them.
    pub events: [AtomicU64; WebhookKind::ALL.len()],
}

impl WebhookStats {
    /// Events notified of `kind`.
    pub fn events_of(&self, kind: WebhookKind) -> u64 {
        self.events[kind.index()].load(Relaxed)
    }
}

/// Handle to the delivery tasks; cheap to clone.
#[derive(Clone)]
pub struct Webhooks {
    inner: Arc<Inner>,
}

struct Inner {
    stats: Arc<WebhookStats>,
    public_url: Option<String>,
    targets: usize,
    /// How many of `targets` are PagerDuty targets (they take only some kinds).
    pagerduty: usize,
    /// `None` once shut down.
    queues: Mutex<Option<Vec<Queue>>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

struct Queue {
    shown: Arc<str>,
    format: Format,
    tx: mpsc::Sender<Arc<Job>>,
}

impl Webhooks {
    /// Starts one delivery task per valid target (`urls`, then typed `targets`) on the current
    /// tokio runtime; invalid ones are logged and skipped. With no target, events are only
    /// counted.
    ///
    /// # Panics
    /// Outside a tokio runtime, when there is a target.
    pub fn start(config: WebhookConfig) -> Webhooks {
        let stats = Arc::new(WebhookStats::default());
        let mut targets = Vec::new();
        for (index, url) in config.urls.iter().enumerate() {
            match Target::parse(index, url) {
                Ok(target) => targets.push(Resolved {
                    target,
                    format: Format::Generic {
                        secret: config.secret.clone(),
                    },
                }),
                Err(error) => error!(%error, "webhook URL skipped"),
            }
        }
        for index in 0..config.targets.len() {
            match config.resolve(index) {
                Ok(resolved) => targets.push(resolved),
                Err(error) => error!(%error, "webhook target skipped"),
            }
        }
        let client = crate::tls::http_client(config.ca_file.as_deref())
            .map_err(|e| e.to_string())
            .and_then(|builder| {
                builder
                    .user_agent(USER_AGENT)
                    .redirect(reqwest::redirect::Policy::none())
                    .connect_timeout(config.timeout.max(Duration::from_millis(1)))
                    .timeout(config.timeout.max(Duration::from_millis(1)))
                    .build()
                    .map_err(|e| error_chain(&e))
            });
        let client = match client {
            Ok(client) => client,
            Err(error) => {
                error!(%error, "webhook HTTP client unavailable; webhooks off");
                targets.clear();
                reqwest::Client::new()
            }
        };
        let (mut queues, mut workers) = (Vec::new(), Vec::new());
        let pagerduty = targets
            .iter()
            .filter(|t| matches!(t.format, Format::Pagerduty { .. }))
            .count();
        for Resolved { target, format } in targets {
            let (tx, rx) = mpsc::channel(config.queue.max(1));
            queues.push(Queue {
                shown: Arc::clone(&target.shown),
                format,
                tx,
            });
            let worker = Worker {
                target,
                client: client.clone(),
                max_attempts: config.max_attempts.max(1),
                initial_backoff: config.initial_backoff,
                stats: Arc::clone(&stats),
            };
            workers.push(tokio::spawn(worker.run(rx)));
        }
        if !queues.is_empty() {
            info!(
                targets = queues.len(),
                signed = config.secret.is_some(),
                "webhooks started"
            );
        }
        Webhooks {
            inner: Arc::new(Inner {
                stats,
                public_url: config.public_url,
                targets: queues.len(),
                pagerduty,
                queues: Mutex::new(Some(queues)),
                workers: Mutex::new(workers),
            }),
        }
    }

    /// How many targets each event is offered to (a PagerDuty target takes only some kinds).
    pub fn targets(&self) -> usize {
        self.inner.targets
    }

    /// How many targets take events of `kind` (PagerDuty targets only take the kinds that
    /// page or resolve; the drill counts deliveries against this).
    pub fn targets_for(&self, kind: WebhookKind) -> usize {
        if pagerduty::takes(kind) {
            self.inner.targets
        } else {
            self.inner.targets - self.inner.pagerduty
        }
    }

    /// Queues `event` for every target that takes its kind, without blocking or awaiting.
    /// Where a target's queue is full, or after shutdown, the event is dropped for it, counted
    /// in `dropped` and logged.
    pub fn notify(&self, event: WebhookEvent) {
        let inner = &self.inner;
        inner.stats.events[event.kind.index()].fetch_add(1, Relaxed);
        if inner.targets == 0 {
            return;
        }
        let generic = match serde_json::to_vec(&event) {
            Ok(bytes) => Bytes::from(bytes),
            Err(error) => {
                inner.stats.dropped.fetch_add(inner.targets as u64, Relaxed);
                error!(event_id = %event.id, %error, "webhook event not serializable; dropped");
                return;
            }
        };
        let queues = lock(&inner.queues);
        let Some(queues) = queues.as_ref() else {
            inner.stats.dropped.fetch_add(inner.targets as u64, Relaxed);
            let (event_id, kind) = (event.id, event.kind.as_str());
            warn!(%event_id, kind, "webhooks shut down; event dropped");
            return;
        };
        let public_url = inner.public_url.as_deref();
        for queue in queues {
            let job = match render::render(&queue.format, &event, &generic, public_url) {
                Ok(Some(rendered)) => Arc::new(Job::new(&event, rendered)),
                Ok(None) => continue,
                Err(error) => {
                    inner.stats.dropped.fetch_add(1, Relaxed);
                    error!(url = %queue.shown, event_id = %event.id, %error, "webhook body not serializable; dropped");
                    continue;
                }
            };
            // Counted before sending so that the task's decrement can never come first.
            inner.stats.pending.fetch_add(1, Relaxed);
            let why = match queue.tx.try_send(Arc::clone(&job)) {
                Ok(()) => continue,
                Err(TrySendError::Full(_)) => "webhook queue full; event dropped",
                Err(TrySendError::Closed(_)) => "webhook delivery task gone; event dropped",
            };
            inner.stats.pending.fetch_sub(1, Relaxed);
            inner.stats.dropped.fetch_add(1, Relaxed);
            warn!(url = %queue.shown, event_id = %job.id, kind = job.kind.as_str(), "{why}");
        }
    }

    /// Delivery counters.
    pub fn stats(&self) -> &WebhookStats {
        &self.inner.stats
    }

    /// Stops accepting events, lets the tasks deliver what is queued for at most `grace`, then
    /// aborts what is left (logged) and returns. Later calls return at once.
    pub async fn shutdown(&self, grace: Duration) {
        // Dropping the senders lets each task end once its queue is empty.
        drop(lock(&self.inner.queues).take());
        let workers = std::mem::take(&mut *lock(&self.inner.workers));
        let deadline = tokio::time::Instant::now() + grace;
        let mut aborted = false;
        for mut worker in workers {
            if tokio::time::timeout_at(deadline, &mut worker)
                .await
                .is_err()
            {
                worker.abort();
                // Returns at once; afterwards the task touches no counter.
                let _ = worker.await;
                aborted = true;
            }
        }
        let abandoned = if aborted {
            self.inner.stats.pending.swap(0, Relaxed)
        } else {
            0
        };
        if abandoned > 0 {
            warn!(
                abandoned,
                ?grace,
                "webhook shutdown grace elapsed; undelivered events abandoned"
            );
        }
    }
}

impl fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhooks")
            .field("urls", &self.inner.targets)
            .field("stats", &self.inner.stats)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn without_urls_events_are_discarded() {
        let webhooks = Webhooks::start(WebhookConfig::new(Vec::new(), None));
        webhooks.notify(WebhookEvent::new(WebhookKind::Pause, "ops", "manual"));
        webhooks.shutdown(Duration::ZERO).await;
        let stats = webhooks.stats();
        assert_eq!(stats.dropped.load(Relaxed) + stats.pending.load(Relaxed), 0);
    }
}
