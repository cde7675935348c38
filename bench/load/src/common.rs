//! Shared pieces: the admin/client HTTP helpers, percentiles, RSS reading, names.

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The server and the admin token every scenario talks to.
#[derive(Clone)]
pub struct Server {
    /// Base URL, e.g. `http://127.0.0.1:34567` (no trailing slash).
    pub base: String,
    /// Admin token.
    pub token: String,
    /// A keep-alive client for admin calls.
    pub http: reqwest::Client,
}

impl Server {
    pub fn new(url: &str, token: &str) -> Result<Self> {
        let base = url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://127.0.0.1") || base.starts_with("http://localhost")) {
            bail!("--url must be a loopback http:// URL (got {base})");
        }
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Server {
            base,
            token: token.to_owned(),
            http,
        })
    }

    /// host:port of the base URL.
    pub fn authority(&self) -> &str {
        self.base
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or("")
    }

    /// An admin call; fails on a non-2xx status and returns the JSON body (Null when empty).
    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        if !status.is_success() {
            bail!(
                "{method} {path} → {status}: {}",
                String::from_utf8_lossy(&bytes)
            );
        }
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        Ok(serde_json::from_slice(&bytes)?)
    }

    /// Creates (or replaces) a boolean flag `key` with variants off/on at `rollout` percent.
    pub async fn put_flag(&self, key: &str, rollout: f64) -> Result<()> {
        let flag = json!({
            "key": key, "type": "boolean",
            "variants": {"off": false, "on": true},
            "off_variant": "off", "on_variant": "on",
            "enabled": true, "rollout": rollout, "rules": []
        });
        self.admin(
            reqwest::Method::PUT,
            &format!("/api/v1/flags/{key}"),
            Some(flag),
        )
        .await?;
        Ok(())
    }

    /// Creates a client-role token named `name` and returns its secret.
    pub async fn client_token(&self, name: &str) -> Result<String> {
        let v = self
            .admin(
                reqwest::Method::POST,
                "/api/v1/tokens",
                Some(json!({"name": name, "role": "client"})),
            )
            .await?;
        v["token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("POST /api/v1/tokens: no token in {v}"))
    }

    /// `GET /metrics` as text.
    pub async fn metrics(&self) -> Result<String> {
        let resp = self
            .http
            .get(format!("{}/metrics", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("GET /metrics → {status}: {text}");
        }
        Ok(text)
    }
}

/// A short suffix that makes names unique per run (several runs may share a server).
pub fn run_suffix() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{:x}{:x}",
        now.as_millis() & 0xff_ffff,
        std::process::id() & 0xffff
    )
}

/// A field of `/proc/PID/status` in KiB (VmRSS, VmHWM).
pub fn proc_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| {
            let rest = l.strip_prefix(field)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .ok_or_else(|| anyhow!("no {field} in /proc/{pid}/status"))
}

/// Nearest-rank percentile of sorted values (`q` in 0..=1).
pub fn percentile<T: Copy>(sorted: &[T], q: f64) -> T {
    assert!(!sorted.is_empty());
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Signed microseconds as milliseconds with three decimals.
pub fn ms(us: i64) -> String {
    format!("{:.3}", us as f64 / 1000.0)
}

/// Signed microseconds between two instants (`b - a`).
pub fn signed_us(a: std::time::Instant, b: std::time::Instant) -> i64 {
    if b >= a {
        b.duration_since(a).as_micros() as i64
    } else {
        -(a.duration_since(b).as_micros() as i64)
    }
}

/// p50 / p99 / max line for a set of signed microsecond samples.
pub fn summary(samples: &[i64]) -> (i64, i64, i64, i64) {
    let mut s = samples.to_vec();
    s.sort_unstable();
    (
        percentile(&s, 0.5),
        percentile(&s, 0.99),
        *s.last().unwrap(),
        *s.first().unwrap(),
    )
}

/// Tiny deterministic PRNG (xorshift64*), so bodies are reproducible without a dependency.
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        XorShift(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The machine note every report carries.
pub fn machine_note() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into());
    format!(
        "note: load generator and server share this machine's {cores} cores \
         (1-min load average at start {load}); client-side timestamps include client scheduling"
    )
}

/// CPU time a process has run and has waited runnable for a CPU (ns), summed over its threads
/// (`/proc/PID/task/*/schedstat`; threads that ended are not counted).
pub fn sched_ns(pid: &str) -> (u64, u64) {
    let mut run = 0;
    let mut wait = 0;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
                let mut it = s.split_whitespace().map(|x| x.parse::<u64>().unwrap_or(0));
                run += it.next().unwrap_or(0);
                wait += it.next().unwrap_or(0);
            }
        }
    }
    (run, wait)
}

/// One timed request: what to send.
struct Job {
    method: reqwest::Method,
    url: String,
    token: String,
    body: Option<Vec<u8>>,
    reply: tokio::sync::oneshot::Sender<Result<Timed>>,
}

/// The outcome of a timed request, with when it was sent and when its body was read.
pub struct Timed {
    pub sent: std::time::Instant,
    pub answered: std::time::Instant,
    pub status: reqwest::StatusCode,
    pub body: bytes::Bytes,
}

/// Sends requests from a dedicated OS thread with its own single-threaded runtime and
/// keep-alive client, so their send / response timestamps are not delayed by the load
/// generator's other tasks (thousands of stream readers, background load).
pub struct Pinger {
    jobs: tokio::sync::mpsc::UnboundedSender<Job>,
}

impl Pinger {
    pub fn start() -> Result<Self> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Job>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(30))
            .build()?;
        std::thread::Builder::new()
            .name("pinger".into())
            .spawn(move || {
                runtime.block_on(async move {
                    while let Some(job) = rx.recv().await {
                        let mut req = http
                            .request(job.method, &job.url)
                            .bearer_auth(&job.token)
                            .header("content-type", "application/json");
                        if let Some(b) = job.body {
                            req = req.body(b);
                        }
                        let sent = std::time::Instant::now();
                        let outcome = async {
                            let resp = req.send().await?;
                            let status = resp.status();
                            let body = resp.bytes().await?;
                            Ok(Timed {
                                sent,
                                answered: std::time::Instant::now(),
                                status,
                                body,
                            })
                        }
                        .await;
                        let _ = job.reply.send(outcome);
                    }
                })
            })?;
        Ok(Pinger { jobs: tx })
    }

    /// Sends one request; fails on transport errors and non-2xx answers.
    pub async fn request(
        &self,
        method: reqwest::Method,
        url: String,
        token: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Timed> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let what = format!("{method} {url}");
        self.jobs
            .send(Job {
                method,
                url,
                token: token.to_owned(),
                body,
                reply,
            })
            .map_err(|_| anyhow!("the pinger thread is gone"))?;
        let t = answer
            .await
            .map_err(|_| anyhow!("the pinger thread is gone"))??;
        if !t.status.is_success() {
            bail!(
                "{what} → {}: {}",
                t.status,
                String::from_utf8_lossy(&t.body)
            );
        }
        Ok(t)
    }
}
