//! [`ClientBuilder`]: where a client's server, token and timings are set.

use crate::error::BuildError;
use crate::Client;
use std::time::Duration;

/// Every setting of a client, with its default.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) base_url: String,
    pub(crate) token: String,
    pub(crate) start_timeout: Duration,
    pub(crate) streaming: bool,
    pub(crate) poll_interval: Duration,
    pub(crate) stream_retry_interval: Duration,
    pub(crate) stream_idle_timeout: Duration,
    pub(crate) backoff_initial: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) max_stream_failures: u32,
    pub(crate) request_timeout: Duration,
    pub(crate) flush_interval: Duration,
    pub(crate) heartbeat_interval: Duration,
    pub(crate) max_pending_series: usize,
    pub(crate) max_batch_signals: usize,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) stripes: usize,
}

/// Builds a [`Client`]; every setting has a default, so only the server and the token are
/// required.
///
/// ```no_run
/// use rollgate_client::Client;
/// use std::time::Duration;
///
/// # async fn demo() -> Result<(), rollgate_client::BuildError> {
/// let client = Client::builder("http://localhost:8080", "client-token")
///     .start_timeout(Duration::from_millis(500))
///     .flush_interval(Duration::from_secs(1))
///     .connect()
///     .await?;
/// # let _ = client;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    pub(crate) options: Options,
}

impl ClientBuilder {
    /// A builder for the server at `base_url` (e.g. `http://localhost:8080`) with a client
    /// token.
    ///
    /// ```
    /// let builder = rollgate_client::ClientBuilder::new("http://localhost:8080", "client-token");
    /// # let _ = builder;
    /// ```
    pub fn new(base_url: impl Into<String>, token: impl Into<String>) -> Self {
        ClientBuilder {
            options: Options {
                base_url: base_url.into(),
                token: token.into(),
                start_timeout: Duration::from_secs(2),
                streaming: true,
                poll_interval: Duration::from_secs(30),
                stream_retry_interval: Duration::from_secs(300),
                stream_idle_timeout: Duration::from_secs(60),
                backoff_initial: Duration::from_millis(250),
                backoff_max: Duration::from_secs(30),
                max_stream_failures: 3,
                request_timeout: Duration::from_secs(10),
                flush_interval: Duration::from_secs(1),
                heartbeat_interval: Duration::from_secs(15),
                max_pending_series: 10_000,
                max_batch_signals: 5_000,
                shutdown_timeout: Duration::from_secs(5),
                stripes: crate::counters::default_stripes(),
            },
        }
    }

    /// The longest [`connect`](Self::connect) waits for the first config (default 2 s). When
    /// the server does not answer in time, `connect` returns anyway: evaluations serve the
    /// caller's defaults until the config arrives in the background.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = rollgate_client::ClientBuilder::new("http://localhost:8080", "t")
    ///     .start_timeout(Duration::from_millis(300));
    /// # let _ = b;
    /// ```
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.options.start_timeout = timeout;
        self
    }

    /// Whether to follow `GET /api/v1/stream` (default `true`). Off, the client only polls
    /// the config every [`poll_interval`](Self::poll_interval).
    ///
    /// ```
    /// let b = rollgate_client::ClientBuilder::new("http://localhost:8080", "t").streaming(false);
    /// # let _ = b;
    /// ```
    pub fn streaming(mut self, on: bool) -> Self {
        self.options.streaming = on;
        self
    }

    /// How often the config is polled (with `If-None-Match`) while the stream is refused or
    /// keeps failing, or when streaming is off (default 30 s).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = rollgate_client::ClientBuilder::new("http://localhost:8080", "t")
    ///     .poll_interval(Duration::from_secs(10));
    /// # let _ = b;
    /// ```
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.options.poll_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// While polling because the stream was refused or kept failing, how often the stream is
    /// tried again (default 5 minutes).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = rollgate_client::ClientBuilder::new("http://localhost:8080", "t")
    ///     .stream_retry_interval(Duration::from_secs(60));
    /// # let _ = b;
    /// ```
    pub fn stream_retry_interval(mut self, interval: Duration) -> Self {
        self.options.stream_retry_interval = interval;
        self
    }

    /// A stream that delivers nothing (not even the server's heartbeat comments) for this
    /// long is considered dead and reconnected (default 60 s; the server beats every 10 s).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = rollgate_client::ClientBuilder::new("http://localhost:8080", "t")
    ///     .stream_idle_timeout(Duration::from_secs(30));
    /// # let _ = b;
    /// ```
    pub fn stream_idle_timeout(mut self, timeout: Duration) -> Self {
        self.options.stream_idle_timeout = timeout;
        self
    }

    /// Reconnect backoff: the first wait and the cap (defaults 250 ms and 30 s). Each failed
    /// attempt doubles the wait; the actual wait is drawn between half and all of it (jitter),
    /// so a fleet does not reconnect in step after a server restart.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = rollgate_client::ClientBuilder::new("http://localhost:8080", "t")
    ///     .reconnect_backoff(Duration::from_millis(100), Duration::from_secs(10));
    /// # let _ = b;
    /// ```
    pub fn reconnect_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.options.backoff_initial = initial.max(Duration::from_millis(1));
        self.options.backoff_max = max.max(self.options.backoff_initial);
        self
    }

    /// After this many stream attempts in a row that the server answers with an error or ends
    /// before delivering anything, fall back to polling (default 3). A refusal (404, 405,
    /// 501) falls back at once; an unreachable server is retried with backoff.
    ///
    /// ```
    /// let b = rollgate_client::ClientBuilder::new("http://localhost:8080", "t").max_stream_failures(5);
    /// # let _ = b;
    /// ```
    pub fn max_stream_failures(mut self, n: u32) -> Self {
        self.options.max_stream_failures = n.max(1);
        self
    }

    /// Timeout of each config fetch and signals request (default 10 s).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = rollgate_client::ClientBuilder::new("http://localhost:8080", "t")
    ///     .request_timeout(Duration::from_secs(3));
    /// # let _ = b;
    /// ```
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.options.request_timeout = timeout;
        self
    }

    /// How often signals are sent (default 1 s).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = rollgate_client::ClientBuilder::new("http://localhost:8080", "t")
    ///     .flush_interval(Duration::from_millis(500));
    /// # let _ = b;
    /// ```
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.options.flush_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// With nothing to send, the client still reports itself this often (default 15 s; the
    /// protocol asks for at least every 20 s).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = rollgate_client::ClientBuilder::new("http://localhost:8080", "t")
    ///     .heartbeat_interval(Duration::from_secs(10));
    /// # let _ = b;
    /// ```
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.options.heartbeat_interval = interval;
        self
    }

    /// The most distinct (flag, variant, metric) series held while waiting to be sent
    /// (default 10,000). Reports for a new series beyond it are dropped and counted
    /// ([`crate::Status::dropped_signals`]); existing series keep aggregating.
    ///
    /// ```
    /// let b = rollgate_client::ClientBuilder::new("http://localhost:8080", "t").max_pending_series(1_000);
    /// # let _ = b;
    /// ```
    pub fn max_pending_series(mut self, n: usize) -> Self {
        self.options.max_pending_series = n;
        self
    }

    /// The longest [`Client::shutdown`] spends on its final flush (default 5 s).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = rollgate_client::ClientBuilder::new("http://localhost:8080", "t")
    ///     .shutdown_timeout(Duration::from_secs(2));
    /// # let _ = b;
    /// ```
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.options.shutdown_timeout = timeout;
        self
    }

    /// Connects: starts the background tasks and waits for the first config at most
    /// [`start_timeout`](Self::start_timeout). Fails only on a configuration mistake (a bad
    /// URL or token, no Tokio runtime); an unreachable server is not an error.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), rollgate_client::BuildError> {
    /// let client = rollgate_client::ClientBuilder::new("http://localhost:8080", "client-token")
    ///     .connect()
    ///     .await?;
    /// # let _ = client;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect(self) -> Result<Client, BuildError> {
        Client::start(self.options).await
    }
}
