//! Outgoing webhooks: every configured URL receives a signed JSON event when a release or one
//! of its modules is paused, rolled back or completed.
//!
//! Invariants:
//! - [`Webhooks::notify`] never blocks or awaits. It serializes and signs the event once, then
//!   `try_send`s it to one bounded queue per URL; a full queue drops the event for that URL
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
//! What to make of an answer (`classify`, `backoff`, `retry_after`) and the signature are pure
//! functions, unit-tested below; the tasks around them only do I/O.

use bytes::Bytes;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};
use subtle::ConstantTimeEq;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};
use uuid::Uuid;

/// Header carrying the event kind (`pause`, `rollback`, `completion`).
pub const EVENT_HEADER: &str = "X-Rollgate-Event";
/// Header carrying the event id, identical on every attempt.
pub const EVENT_ID_HEADER: &str = "X-Rollgate-Event-Id";
/// Header carrying `sha256=<hex HMAC-SHA256 of the body>` when a secret is configured.
pub const SIGNATURE_HEADER: &str = "X-Rollgate-Signature";

/// Longest wait between two attempts, whatever the backoff or `Retry-After` says.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
const USER_AGENT: &str = concat!("rollgate/", env!("CARGO_PKG_VERSION"));

/// Webhook settings. `Debug` shows neither the secret nor URL credentials or queries.
#[derive(Clone)]
pub struct WebhookConfig {
    /// Plain `http://` URLs; each receives every event.
    pub urls: Vec<String>,
    /// HMAC-SHA256 key; when set, `X-Rollgate-Signature: sha256=<hex>` signs the body bytes.
    pub secret: Option<String>,
    /// Attempts per event and URL, the first included (default 6).
    pub max_attempts: u32,
    /// Wait before the first retry (default 200 ms); doubles each retry, capped at
    /// [`MAX_BACKOFF`], each wait jittered down to between half and all of it.
    pub initial_backoff: Duration,
    /// Limit of one attempt, connecting included (default 5 s).
    pub timeout: Duration,
    /// Capacity of each URL's queue of events waiting for delivery (default 1024).
    pub queue: usize,
}

impl WebhookConfig {
    /// Settings with the defaults above.
    pub fn new(urls: Vec<String>, secret: Option<String>) -> Self {
        WebhookConfig {
            urls,
            secret,
            max_attempts: 6,
            initial_backoff: Duration::from_millis(200),
            timeout: Duration::from_secs(5),
            queue: 1024,
        }
    }

    /// Checks what [`Webhooks::start`] would otherwise log and work around: unparsable or
    /// non-`http` URLs (this build has no TLS) are skipped, zero counts and durations raised.
    pub fn validate(&self) -> Result<(), WebhookConfigError> {
        for (index, url) in self.urls.iter().enumerate() {
            Target::parse(index, url)?;
        }
        let zero = [
            ("max_attempts", self.max_attempts == 0),
            ("timeout", self.timeout.is_zero()),
            ("queue", self.queue == 0),
        ];
        match zero.into_iter().find(|(_, is_zero)| *is_zero) {
            Some((field, _)) => Err(WebhookConfigError::Zero { field }),
            None => Ok(()),
        }
    }
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let urls: Vec<String> = self.urls.iter().map(|url| redact(url)).collect();
        f.debug_struct("WebhookConfig")
            .field("urls", &urls)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("max_attempts", &self.max_attempts)
            .field("initial_backoff", &self.initial_backoff)
            .field("timeout", &self.timeout)
            .field("queue", &self.queue)
            .finish()
    }
}

/// A webhook setting that cannot work. URLs are shown without credentials or query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookConfigError {
    /// The URL does not parse.
    #[error("webhook URL #{index} is not a valid URL: {reason}")]
    InvalidUrl { index: usize, reason: String },
    /// The URL is not `http://`.
    #[error("webhook URL #{index} ({url}) must be http:// (this build has no TLS)")]
    UnsupportedScheme { index: usize, url: String },
    /// A count or duration that must be positive is zero.
    #[error("webhook {field} must be greater than zero")]
    Zero { field: &'static str },
}

/// One event: pause, rollback or completion of a release or of one of its modules.
#[derive(Debug, Clone, Serialize)]
pub struct WebhookEvent {
    /// UUIDv7; also sent as `X-Rollgate-Event-Id`, identical on retries.
    pub id: Uuid,
    /// What happened.
    pub kind: WebhookKind,
    /// When, RFC 3339 UTC.
    pub time: String,
    /// The release's id.
    pub release_id: Option<String>,
    /// The release's name.
    pub release: Option<String>,
    /// Flag key of the module; `None` for release-level events.
    pub module: Option<String>,
    /// Why, in words.
    pub reason: String,
    /// Token name of the operator, or `"controller"`.
    pub actor: String,
    /// The decision record behind it: counts, rates, thresholds.
    pub numbers: serde_json::Value,
}

impl WebhookEvent {
    /// An event stamped now with a fresh UUIDv7; release, module and numbers are empty, to be
    /// filled with struct update syntax.
    pub fn new(kind: WebhookKind, actor: impl Into<String>, reason: impl Into<String>) -> Self {
        WebhookEvent {
            id: Uuid::now_v7(),
            kind,
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            release_id: None,
            release: None,
            module: None,
            reason: reason.into(),
            actor: actor.into(),
            numbers: serde_json::Value::Null,
        }
    }
}

/// What happened to a release or module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookKind {
    /// Paused, by an operator or a guard.
    Pause,
    /// Rolled back, by an operator, a guard or an alert.
    Rollback,
    /// Every stage done.
    Completion,
}

impl WebhookKind {
    /// The serialized name, also sent as `X-Rollgate-Event`.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookKind::Pause => "pause",
            WebhookKind::Rollback => "rollback",
            WebhookKind::Completion => "completion",
        }
    }
}

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
}

/// Handle to the delivery tasks; cheap to clone.
#[derive(Clone)]
pub struct Webhooks {
    inner: Arc<Inner>,
}

struct Inner {
    stats: Arc<WebhookStats>,
    secret: Option<String>,
    targets: usize,
    /// `None` once shut down.
    queues: Mutex<Option<Vec<Queue>>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

struct Queue {
    shown: Arc<str>,
    tx: mpsc::Sender<Arc<Job>>,
}

impl Webhooks {
    /// Starts one delivery task per valid URL on the current tokio runtime; invalid URLs are
    /// logged and skipped. With no URLs, events are discarded cheaply.
    ///
    /// # Panics
    /// Outside a tokio runtime, when there is a URL.
    pub fn start(config: WebhookConfig) -> Webhooks {
        let stats = Arc::new(WebhookStats::default());
        let mut targets = Vec::new();
        for (index, url) in config.urls.iter().enumerate() {
            match Target::parse(index, url) {
                Ok(target) => targets.push(target),
                Err(error) => error!(%error, "webhook URL skipped"),
            }
        }
        let client = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.timeout.max(Duration::from_millis(1)))
            .timeout(config.timeout.max(Duration::from_millis(1)))
            .build();
        let client = match client {
            Ok(client) => client,
            Err(error) => {
                let error = error_chain(&error);
                error!(%error, "webhook HTTP client unavailable; webhooks off");
                targets.clear();
                reqwest::Client::new()
            }
        };
        let (mut queues, mut workers) = (Vec::new(), Vec::new());
        for target in targets {
            let (tx, rx) = mpsc::channel(config.queue.max(1));
            queues.push(Queue {
                shown: Arc::clone(&target.shown),
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
                urls = queues.len(),
                signed = config.secret.is_some(),
                "webhooks started"
            );
        }
        Webhooks {
            inner: Arc::new(Inner {
                stats,
                secret: config.secret,
                targets: queues.len(),
                queues: Mutex::new(Some(queues)),
                workers: Mutex::new(workers),
            }),
        }
    }

    /// Queues `event` for every URL without blocking or awaiting. Where a URL's queue is full,
    /// or after shutdown, the event is dropped for it, counted in `dropped` and logged.
    pub fn notify(&self, event: WebhookEvent) {
        let inner = &self.inner;
        if inner.targets == 0 {
            return;
        }
        let job = match Job::new(&event, inner.secret.as_deref()) {
            Ok(job) => Arc::new(job),
            Err(error) => {
                inner.stats.dropped.fetch_add(inner.targets as u64, Relaxed);
                error!(event_id = %event.id, %error, "webhook event not serializable; dropped");
                return;
            }
        };
        let queues = lock(&inner.queues);
        let Some(queues) = queues.as_ref() else {
            inner.stats.dropped.fetch_add(inner.targets as u64, Relaxed);
            let (event_id, kind) = (job.id, job.kind.as_str());
            warn!(%event_id, kind, "webhooks shut down; event dropped");
            return;
        };
        for queue in queues {
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

/// `sha256=<hex HMAC-SHA256 of body keyed by secret>`, the `X-Rollgate-Signature` value.
pub fn sign(secret: &str, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(hmac_sha256(secret.as_bytes(), body))
    )
}

/// True when `header` is `sha256=<hex>` and the hex is the HMAC-SHA256 of `body` under
/// `secret`. The comparison takes the same time wherever the first difference is.
pub fn verify(secret: &str, body: &[u8], header: &str) -> bool {
    let Some(given) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(given) = hex::decode(given) else {
        return false;
    };
    hmac_sha256(secret.as_bytes(), body)
        .ct_eq(given.as_slice())
        .into()
}

/// HMAC-SHA256 (RFC 2104) over the vetted `sha2` hash; checked against RFC 4231 below.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let padded = |pad: u8| block.map(|byte| byte ^ pad);
    let inner = Sha256::new()
        .chain_update(padded(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(padded(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

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

/// `url` without credentials, query or fragment, for logs; unparsable URLs are not shown.
fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(url) => redact_url(url),
        Err(_) => "<invalid URL>".into(),
    }
}

fn redact_url(mut url: reqwest::Url) -> String {
    // Both fail only for URLs without a host, which have no credentials to hide.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.set_fragment(None);
    url.into()
}

/// `error` and its sources, one after the other; reqwest errors must be stripped of their URL.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A parsed URL and how logs show it.
struct Target {
    url: reqwest::Url,
    shown: Arc<str>,
}

impl Target {
    fn parse(index: usize, url: &str) -> Result<Target, WebhookConfigError> {
        let parsed = reqwest::Url::parse(url).map_err(|error| WebhookConfigError::InvalidUrl {
            index,
            reason: error.to_string(),
        })?;
        let shown: Arc<str> = redact_url(parsed.clone()).into();
        if parsed.scheme() != "http" {
            return Err(WebhookConfigError::UnsupportedScheme {
                index,
                url: shown.to_string(),
            });
        }
        Ok(Target { url: parsed, shown })
    }
}

/// An event ready to send: the exact bytes and their signature, shared by every URL.
struct Job {
    id: Uuid,
    kind: WebhookKind,
    body: Bytes,
    signature: Option<String>,
}

impl Job {
    fn new(event: &WebhookEvent, secret: Option<&str>) -> Result<Job, serde_json::Error> {
        let body = Bytes::from(serde_json::to_vec(event)?);
        let signature = secret.map(|secret| sign(secret, &body));
        Ok(Job {
            id: event.id,
            kind: event.kind,
            body,
            signature,
        })
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
struct Worker {
    target: Target,
    client: reqwest::Client,
    max_attempts: u32,
    initial_backoff: Duration,
    stats: Arc<WebhookStats>,
}

impl Worker {
    async fn run(self, mut rx: mpsc::Receiver<Arc<Job>>) {
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
    fn hmac_matches_rfc_4231_vectors() {
        let cases: [(&[u8], &[u8], &str); 3] = [
            (
                &[0x0b; 20],
                b"Hi There",
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            ),
            (
                b"Jefe",
                b"what do ya want for nothing?",
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
            (
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First",
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            ),
        ];
        for (key, message, expected) in cases {
            assert_eq!(hex::encode(hmac_sha256(key, message)), expected);
        }
    }

    #[test]
    fn verify_accepts_only_the_exact_signature() {
        let body = br#"{"kind":"pause"}"#;
        let header = sign("s3cret", body);
        assert!(header.starts_with("sha256=") && header.len() == 7 + 64);
        assert!(verify("s3cret", body, &header));
        assert!(verify(
            "s3cret",
            body,
            &header.to_uppercase().replace("SHA256=", "sha256=")
        ));
        assert!(!verify("other", body, &header));
        assert!(!verify("s3cret", br#"{"kind":"rollback"}"#, &header));
        assert!(!verify(
            "s3cret",
            body,
            header.trim_start_matches("sha256=")
        ));
        assert!(!verify("s3cret", body, &header[..header.len() - 2]));
        assert!(!verify("s3cret", body, "sha256=zz"));
        assert!(!verify("s3cret", body, ""));
    }

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

    #[test]
    fn logs_and_debug_never_show_secrets() {
        assert_eq!(
            redact("http://user:pw@hooks.local:8080/in?token=t#f"),
            "http://hooks.local:8080/in"
        );
        assert_eq!(redact("not a url"), "<invalid URL>");
        let config = WebhookConfig::new(
            vec!["http://user:pw@hooks.local/in?token=t".into()],
            Some("s3cret".into()),
        );
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret") && !shown.contains("pw") && !shown.contains("token"));
    }

    #[test]
    fn validate_names_the_problem() {
        let config = |url: &str| WebhookConfig::new(vec![url.into()], None);
        assert_eq!(config("http://127.0.0.1:9/hook").validate(), Ok(()));
        assert!(matches!(
            config("nope").validate(),
            Err(WebhookConfigError::InvalidUrl { index: 0, .. })
        ));
        assert_eq!(
            config("https://u:p@hooks.example/x?k=v").validate(),
            Err(WebhookConfigError::UnsupportedScheme {
                index: 0,
                url: "https://hooks.example/x".into()
            })
        );
        let mut zero = config("http://127.0.0.1:9/");
        zero.queue = 0;
        assert_eq!(
            zero.validate(),
            Err(WebhookConfigError::Zero { field: "queue" })
        );
    }

    #[test]
    fn events_serialize_to_the_wire_shape() {
        let event = WebhookEvent {
            module: Some("qr-ordering".into()),
            ..WebhookEvent::new(WebhookKind::Completion, "controller", "all stages done")
        };
        let json = serde_json::to_value(&event).unwrap_or_default();
        assert_eq!(json["kind"], "completion");
        assert_eq!(json["module"], "qr-ordering");
        assert_eq!(json["release"], serde_json::Value::Null);
        assert_eq!(json["id"], event.id.to_string());
        assert_eq!(event.id.get_version_num(), 7);
        assert!(event.time.ends_with('Z'), "{}", event.time);
    }

    #[tokio::test]
    async fn without_urls_events_are_discarded() {
        let webhooks = Webhooks::start(WebhookConfig::new(Vec::new(), None));
        webhooks.notify(WebhookEvent::new(WebhookKind::Pause, "ops", "manual"));
        webhooks.shutdown(Duration::ZERO).await;
        let stats = webhooks.stats();
        assert_eq!(stats.dropped.load(Relaxed) + stats.pending.load(Relaxed), 0);
    }
}
