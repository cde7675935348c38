//! [`Client`]: local evaluation, exposures, reports and the client's lifecycle.
//!
//! Invariants:
//! - Evaluation loads the published snapshot (`arc-swap`, lock-free, wait-free for readers),
//!   evaluates it and records the exposure in the snapshot's striped counters: no lock, no
//!   I/O, no allocation for the typed getters other than `string_value`/`json_value` (which
//!   return owned values), no panic.
//! - Background work (config sync and signal flushing) runs in two Tokio tasks; both end on
//!   [`Client::shutdown`] or when the last clone of the client is dropped.

use crate::error::BuildError;
use crate::flags::Flags;
use crate::flagset::FlagSet;
use crate::options::Options;
use crate::shared::Shared;
use crate::signals::{Acc, Measure, Pending};
use crate::ClientBuilder;
use arc_swap::ArcSwap;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use rollgate_eval::Context;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// Closes the background tasks when the last handle goes.
struct Handle {
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    flush: mpsc::Sender<oneshot::Sender<()>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

/// A rollgate client: evaluates flags locally from a config it keeps up to date over the
/// stream, records exposures, and sends signals in the background. Cheap to clone (all
/// clones share one config and one signal queue).
///
/// ```no_run
/// use rollgate_client::{Client, Context};
/// use serde_json::json;
///
/// # async fn demo() -> Result<(), rollgate_client::BuildError> {
/// let client = Client::builder("http://localhost:8080", "client-token").connect().await?;
/// let Ok(serde_json::Value::Object(user)) = serde_json::from_value::<serde_json::Value>(
///     json!({"targetingKey": "user-42", "tier": "gold"})) else { unreachable!() };
/// if client.bool_value("qr-ordering", &user, false) {
///     // the new module
/// }
/// client.shutdown().await; // sends what is left
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.handle.shared.base)
            .field("client_id", &self.handle.shared.client_id)
            .finish_non_exhaustive()
    }
}

/// A snapshot of a client's state, for health checks and tests.
///
/// ```no_run
/// # fn demo(client: &rollgate_client::Client) {
/// let status = client.status();
/// println!("ready={} revision={:?} dropped={}", status.ready, status.revision, status.dropped_signals);
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Status {
    /// A config from the server is loaded.
    pub ready: bool,
    /// The revision of the config applied last (when the server numbers its changes).
    pub revision: Option<u64>,
    /// How long ago the current config was applied.
    pub applied_ago: Option<Duration>,
    /// The stream is connected (false while polling or reconnecting).
    pub streaming: bool,
    /// Number of flags in the config.
    pub flags: usize,
    /// Signal events dropped: the pending store was full, or the server refused a batch for
    /// good.
    pub dropped_signals: u64,
    /// Evaluation errors with no variant to attribute them to (counted, not sent).
    pub unattributed_errors: u64,
    /// Reports and complaints dropped because no variant was known for them.
    pub unattributed_reports: u64,
    /// Batches the server accepted.
    pub batches_sent: u64,
    /// This client's id in its reports to the server.
    pub client_id: String,
}

impl Client {
    /// A [`ClientBuilder`] for the server at `base_url` with a client token.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), rollgate_client::BuildError> {
    /// let client = rollgate_client::Client::builder("http://localhost:8080", "client-token")
    ///     .connect()
    ///     .await?;
    /// # let _ = client;
    /// # Ok(())
    /// # }
    /// ```
    pub fn builder(base_url: impl Into<String>, token: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(base_url, token)
    }

    pub(crate) async fn start(options: Options) -> Result<Client, BuildError> {
        let base = options.base_url.trim_end_matches('/').to_owned();
        let url = reqwest::Url::parse(&base).map_err(|e| BuildError::InvalidUrl(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(BuildError::InvalidUrl(format!(
                "{base}: an http or https URL is needed"
            )));
        }
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", options.token))
            .map_err(|_| BuildError::InvalidToken)?;
        auth.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, auth);
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(options.request_timeout)
            .build()
            .map_err(|e| BuildError::Http(e.to_string()))?;
        let (ready, mut ready_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            set: ArcSwap::from_pointee(FlagSet::empty()),
            retired: Mutex::new(Vec::new()),
            pending: Pending::new(options.max_pending_series, options.stripes),
            http,
            base,
            client_id: random_id(),
            ready,
            streaming: AtomicBool::new(false),
            unattributed_errors: AtomicU64::new(0),
            unattributed_reports: AtomicU64::new(0),
            batches_sent: AtomicU64::new(0),
            client_report_refused: AtomicBool::new(false),
            options,
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (flush, flush_rx) = mpsc::channel(16);
        let tasks = vec![
            runtime.spawn(crate::sync::run(shared.clone(), shutdown_rx.clone())),
            runtime.spawn(crate::flusher::run(shared.clone(), shutdown_rx, flush_rx)),
        ];
        let start_timeout = shared.options.start_timeout;
        let _ = tokio::time::timeout(start_timeout, ready_rx.wait_for(|r| *r)).await;
        Ok(Client {
            handle: Arc::new(Handle {
                shared,
                shutdown,
                flush,
                tasks: Mutex::new(tasks),
            }),
        })
    }

    fn shared(&self) -> &Shared {
        &self.handle.shared
    }

    /// The config in force now, to evaluate one or many flags against.
    ///
    /// ```no_run
    /// # fn demo(client: &rollgate_client::Client, user: &rollgate_client::Context) {
    /// let flags = client.flags();
    /// let on = flags.evaluate("qr-ordering", user).is_ok_and(|s| s.value == true);
    /// # let _ = on;
    /// # }
    /// ```
    pub fn flags(&self) -> Flags<'_> {
        Flags {
            set: self.shared().set.load(),
            shared: self.shared(),
        }
    }

    /// The value of boolean flag `flag` for `ctx`, or `default` (on any error: no config
    /// yet, unknown flag, wrong type, no targeting key for a rollout). Records the exposure.
    /// Never blocks, never allocates.
    ///
    /// ```no_run
    /// # fn demo(client: &rollgate_client::Client, user: &rollgate_client::Context) {
    /// let new_checkout = client.bool_value("new-checkout", user, false);
    /// # let _ = new_checkout;
    /// # }
    /// ```
    pub fn bool_value(&self, flag: &str, ctx: &Context, default: bool) -> bool {
        self.flags()
            .evaluate_typed(flag, ctx, "boolean")
            .ok()
            .and_then(|s| s.value.as_bool())
            .unwrap_or(default)
    }

    /// The value of number flag `flag` for `ctx`, or `default`. Records the exposure.
    ///
    /// ```no_run
    /// # fn demo(client: &rollgate_client::Client, user: &rollgate_client::Context) {
    /// let discount = client.number_value("discount", user, 0.0);
    /// # let _ = discount;
    /// # }
    /// ```
    pub fn number_value(&self, flag: &str, ctx: &Context, default: f64) -> f64 {
        self.flags()
            .evaluate_typed(flag, ctx, "number")
            .ok()
            .and_then(|s| s.value.as_f64())
            .unwrap_or(default)
    }

    /// The value of number flag `flag` for `ctx` as an integer, or `default` (also when the
    /// served value is not a whole number: a `TYPE_MISMATCH`). Records the exposure.
    ///
    /// ```no_run
    /// # fn demo(client: &rollgate_client::Client, user: &rollgate_client::Context) {
    /// let limit = client.integer_value("basket-limit", user, 10);
    /// # let _ = limit;
    /// # }
    /// ```
    pub fn integer_value(&self, flag: &str, ctx: &Context, default: i64) -> i64 {
        self.flags()
            .evaluate_typed(flag, ctx, "integer")
            .ok()
            .and_then(|s| s.value.as_i64())
            .unwrap_or(default)
    }

    /// The value of string flag `flag` for `ctx`, or `default`. Records the exposure.
    ///
    /// ```no_run
    /// # fn demo(client: &rollgate_client::Client, user: &rollgate_client::Context) {
    /// let theme = client.string_value("theme", user, "classic");
    /// # let _ = theme;
    /// # }
    /// ```
    pub fn string_value(&self, flag: &str, ctx: &Context, default: &str) -> String {
        self.flags()
            .evaluate_typed(flag, ctx, "string")
            .ok()
            .and_then(|s| s.value.as_str().map(str::to_owned))
            .unwrap_or_else(|| default.to_owned())
    }

    /// The value of object flag `flag` for `ctx`, or `default`. Records the exposure.
    ///
    /// ```no_run
    /// # fn demo(client: &rollgate_client::Client, user: &rollgate_client::Context) {
    /// let limits = client.json_value("limits", user, serde_json::json!({"max": 3}));
    /// # let _ = limits;
    /// # }
    /// ```
    pub fn json_value(&self, flag: &str, ctx: &Context, default: Value) -> Value {
        match self.flags().evaluate_typed(flag, ctx, "object") {
            Ok(s) => s.value.clone(),
            Err(_) => default,
        }
    }

    /// A complaint about `flag` from the user of this process, attributed to the variant
    /// this process served last for the flag (on this thread first, else on any). Meant for
    /// processes that serve one user (a desktop app, a device, a CLI); a server serving many
    /// users passes the user's context with [`complaint_for`](Self::complaint_for).
    ///
    /// ```no_run
    /// # fn demo(client: &rollgate_client::Client) {
    /// client.complaint("new-checkout");
    /// # }
    /// ```
    pub fn complaint(&self, flag: &str) {
        self.report(flag, "complaint", Measure::Count(1));
    }

    /// A complaint about `flag` from the user with context `ctx`, attributed to the variant
    /// that user is served (the flag evaluated again for the same context: the same answer
    /// as long as the config has not changed in between).
    ///
    /// ```no_run
    /// # fn demo(client: &rollgate_client::Client, user: &rollgate_client::Context) {
    /// client.complaint_for("new-checkout", user);
    /// # }
    /// ```
    pub fn complaint_for(&self, flag: &str, ctx: &Context) {
        self.report_for(flag, ctx, "complaint", Measure::Count(1));
    }

    /// Reports `measure` of `metric` for `flag`, attributed like
    /// [`complaint`](Self::complaint) (the variant this process served last).
    /// Metric names are 1 to 64 of `[A-Za-z0-9_.:-]`; others are dropped and counted.
    ///
    /// ```no_run
    /// use rollgate_client::Measure;
    /// # fn demo(client: &rollgate_client::Client) {
    /// client.report("new-checkout", "payment_failed", Measure::Count(1));
    /// client.report("new-checkout", "latency", Measure::Value(0.180));
    /// # }
    /// ```
    pub fn report(&self, flag: &str, metric: &str, measure: Measure) {
        let flags = self.flags();
        let served = flags
            .set
            .position(flag)
            .and_then(|i| flags.set.last_served(i));
        self.record_report(flag, served, metric, measure);
    }

    /// Reports `measure` of `metric` for `flag`, attributed to the variant the user with
    /// context `ctx` is served.
    ///
    /// ```no_run
    /// use rollgate_client::Measure;
    /// # fn demo(client: &rollgate_client::Client, user: &rollgate_client::Context) {
    /// client.report_for("new-checkout", user, "payment_failed", Measure::Count(1));
    /// # }
    /// ```
    pub fn report_for(&self, flag: &str, ctx: &Context, metric: &str, measure: Measure) {
        let flags = self.flags();
        let served = flags.served_for(flag, ctx);
        self.record_report(flag, served, metric, measure);
    }

    /// Reports `measure` of `metric` for `variant` of `flag`, when the app kept the variant
    /// it served (e.g. from [`Served::variant`](crate::Served::variant)). Attributed to
    /// everyone else; for an answer a release audience decided, use
    /// [`report_served`](Self::report_served).
    ///
    /// ```no_run
    /// use rollgate_client::Measure;
    /// # fn demo(client: &rollgate_client::Client) {
    /// client.report_variant("new-checkout", "on", "complaint", Measure::Count(1));
    /// # }
    /// ```
    pub fn report_variant(&self, flag: &str, variant: &str, metric: &str, measure: Measure) {
        self.record_report(flag, Some((variant, None)), metric, measure);
    }

    /// Reports `measure` of `metric` for what an evaluation served (its variant and release
    /// audience), when the app kept the answer.
    ///
    /// ```no_run
    /// use rollgate_client::Measure;
    /// # fn demo(client: &rollgate_client::Client, user: &rollgate_client::Context) {
    /// let flags = client.flags();
    /// if let Ok(served) = flags.evaluate("new-checkout", user) {
    ///     client.report_served(&served, "checkout_latency", Measure::Value(0.180));
    /// }
    /// # }
    /// ```
    pub fn report_served(&self, served: &crate::Served<'_>, metric: &str, measure: Measure) {
        let cohort = Some((served.variant, served.audience));
        self.record_report(served.flag, cohort, metric, measure);
    }

    fn record_report(
        &self,
        flag: &str,
        served: Option<(&str, Option<&str>)>,
        metric: &str,
        measure: Measure,
    ) {
        let Some(acc) = Acc::from_measure(measure) else {
            return;
        };
        let Some(served) = served else {
            self.shared()
                .unattributed_reports
                .fetch_add(1, Ordering::Relaxed);
            return;
        };
        if !valid_metric(metric) {
            self.shared()
                .pending
                .dropped
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.shared().pending.add(flag, served, metric, acc);
    }

    /// The client's state now.
    ///
    /// ```no_run
    /// # fn demo(client: &rollgate_client::Client) {
    /// assert!(client.status().dropped_signals == 0);
    /// # }
    /// ```
    pub fn status(&self) -> Status {
        let s = self.shared();
        let set = s.set.load();
        Status {
            ready: set.is_ready(),
            revision: set.revision,
            applied_ago: set.applied_at.map(|t| t.elapsed()),
            streaming: s.streaming.load(Ordering::Relaxed),
            flags: set.snapshot.len(),
            dropped_signals: s.pending.dropped(),
            unattributed_errors: s.unattributed_errors.load(Ordering::Relaxed),
            unattributed_reports: s.unattributed_reports.load(Ordering::Relaxed),
            batches_sent: s.batches_sent.load(Ordering::Relaxed),
            client_id: s.client_id.clone(),
        }
    }

    /// Sends everything recorded so far now (one round of the flusher) and waits for it,
    /// at most the request timeout. Never fails: what could not be sent stays queued.
    ///
    /// ```no_run
    /// # async fn demo(client: &rollgate_client::Client) {
    /// client.flush().await;
    /// # }
    /// ```
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.handle.flush.send(tx).await.is_ok() {
            let limit = self.shared().options.request_timeout + Duration::from_secs(1);
            let _ = tokio::time::timeout(limit, rx).await;
        }
    }

    /// Stops the background tasks after one last flush (at most the shutdown timeout).
    /// Evaluations keep working on the last config afterwards; nothing more is sent.
    ///
    /// ```no_run
    /// # async fn demo(client: rollgate_client::Client) {
    /// client.shutdown().await;
    /// # }
    /// ```
    pub async fn shutdown(&self) {
        self.handle.shutdown.send_replace(true);
        let tasks =
            std::mem::take(&mut *self.handle.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        let limit = self.shared().options.shutdown_timeout + Duration::from_secs(1);
        let deadline = Instant::now() + limit;
        for mut task in tasks {
            let left = deadline.saturating_duration_since(Instant::now());
            if tokio::time::timeout(left, &mut task).await.is_err() {
                task.abort();
            }
        }
    }
}

fn valid_metric(m: &str) -> bool {
    !m.is_empty()
        && m.len() <= 64
        && m.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b':'))
}

/// 16 random hex digits: unique enough for a fleet, valid as a `client.id`.
fn random_id() -> String {
    let n: u64 = rand::random();
    format!("{n:016x}")
}
