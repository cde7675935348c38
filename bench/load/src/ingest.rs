//! `ingest`: signal ingestion throughput over keep-alive HTTP, checked against `/metrics`.

use crate::common::{machine_note, percentile, run_suffix, sched_ns, Server, XorShift};
use anyhow::{bail, Result};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Signals per request body.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Keep-alive connections, each with one request in flight.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Seconds of load.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Share of signals that are exposures (the rest are `error`, and 1 in 10 of those
    /// `payment_error`).
    #[arg(long, default_value_t = 0.85)]
    pub exposure_share: f64,
    /// Group the body by variant (best case for the server's per-variant handle cache)
    /// instead of a seeded shuffle of both variants.
    #[arg(long)]
    pub grouped: bool,
    /// Seed of the body's shuffle.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Put the flag in a started release first (policy `load-watch`, created here: basic guards
    /// on `error` and `payment_error` with a wide band), so every batch runs the controller
    /// step synchronously, as for a flag under rollout.
    #[arg(long)]
    pub watched: bool,
    /// The server's process id, to report its CPU time per batch (skipped without it).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Other nodes of a cluster (base URLs, comma separated or repeated) whose /metrics are
    /// also read afterwards: a node that mirrors the global totals (the leader) must show
    /// exactly what was accepted here.
    #[arg(long = "also-check", value_delimiter = ',')]
    pub also_check: Vec<String>,
    /// The signals/s the summary checks against.
    #[arg(long, default_value_t = 1_000_000.0)]
    pub target_per_s: f64,
    /// How long to wait for the counts to settle (a cluster flushes them asynchronously).
    #[arg(long, default_value_t = 0.0)]
    pub settle_s: f64,
    /// Latency signals instead of error events: every non-exposure signal is a
    /// `checkout_latency` observation, as a single `value` or as a 16-bucket `histogram`
    /// (issue 12). Off: the rate signals above.
    #[arg(long, value_enum)]
    pub latency: Option<Latency>,
}

/// How the latency signals of `--latency` are shaped.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum Latency {
    /// `{"metric": "checkout_latency", "value": 0.2}`: one observation per signal.
    Values,
    /// `{"metric": "checkout_latency", "histogram": {"bounds": [16], "counts": [16]}}`.
    Histogram,
}

#[derive(Deserialize)]
struct Report {
    accepted: u64,
    rejected: u64,
}

#[derive(Default)]
struct Tally {
    ok: u64,
    accepted: u64,
    rejected: u64,
    limited: u64,
    failed: u64,
    first_failure: Option<String>,
    latencies_us: Vec<u32>,
}

pub async fn run(server: Server, args: Args) -> Result<()> {
    if args.batch == 0 || args.connections == 0 || args.seconds == 0 {
        bail!("--batch, --connections and --seconds must be at least 1");
    }
    let suffix = run_suffix();
    let key = format!("load-ingest-{suffix}");
    let mut watched_release: Option<String> = None;
    server.put_flag(&key, 50.0).await?;
    let token = server.client_token(&key).await?;

    if args.watched {
        let policy = json!({
            "name": "load-watch",
            "guard": [
                {"metric": "error", "class": "basic", "max_relative_increase": 10.0, "grace": "1h"},
                {"metric": "payment_error", "class": "basic", "max_relative_increase": 10.0, "grace": "1h"}
            ]
        });
        server
            .admin(
                reqwest::Method::PUT,
                "/api/v1/policies/load-watch",
                Some(policy),
            )
            .await?;
        let plan = json!({
            "name": key, "policy": "load-watch",
            "modules": [{"flag": key, "stages": {"percentages": [50, 100], "min_duration": "1h", "min_exposures": 0}}]
        });
        let created = server
            .admin(reqwest::Method::POST, "/api/v1/releases", Some(plan))
            .await?;
        let id = created["id"].as_str().unwrap_or_default().to_owned();
        server
            .admin(
                reqwest::Method::POST,
                &format!("/api/v1/releases/{id}/start"),
                None,
            )
            .await?;
        watched_release = Some(id);
    }
    let (body, expected) = build_latency_body(
        &key,
        args.batch,
        args.exposure_share,
        args.grouped,
        args.seed,
        args.latency,
    )?;
    println!("{}", machine_note());
    println!(
        "ingest: POST /api/v1/signals, {} signals per body ({} bytes, {}), {} keep-alive \
         connections, {} s",
        args.batch,
        body.len(),
        match (args.grouped, args.watched) {
            (true, false) => "grouped by variant",
            (false, false) => "variants shuffled",
            (true, true) => "grouped by variant; flag in a running release",
            (false, true) => "variants shuffled; flag in a running release",
        },
        args.connections,
        args.seconds
    );

    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(args.connections)
        .timeout(Duration::from_secs(30))
        .build()?;
    let url = Arc::new(format!("{}/api/v1/signals", server.base));
    let auth = Arc::new(format!("Bearer {token}"));
    let server_pid = args.server_pid.map(|p| p.to_string());
    let server_sched0 = server_pid.as_deref().map(sched_ns);
    let self_sched0 = sched_ns("self");
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let batch = args.batch as u64;
    let mut tasks = Vec::new();
    for _ in 0..args.connections {
        let (client, url, auth, body) = (client.clone(), url.clone(), auth.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut t = Tally::default();
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let sent = client
                    .post(url.as_str())
                    .header("authorization", auth.as_str())
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                let outcome = match sent {
                    Ok(resp) => {
                        let status = resp.status();
                        match resp.bytes().await {
                            Ok(bytes) => Ok((status, bytes)),
                            Err(e) => Err(e.to_string()),
                        }
                    }
                    Err(e) => Err(e.to_string()),
                };
                t.latencies_us
                    .push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                match outcome {
                    Ok((s, bytes)) if s.is_success() => {
                        match serde_json::from_slice::<Report>(&bytes) {
                            Ok(r) => {
                                t.ok += 1;
                                t.accepted += r.accepted;
                                t.rejected += r.rejected;
                                if r.accepted != batch && t.first_failure.is_none() {
                                    t.first_failure = Some(format!(
                                        "only {} of {batch} accepted: {}",
                                        r.accepted,
                                        String::from_utf8_lossy(&bytes)
                                    ));
                                }
                            }
                            Err(e) => {
                                t.failed += 1;
                                t.first_failure.get_or_insert(format!("bad answer: {e}"));
                            }
                        }
                    }
                    Ok((s, _)) if s.as_u16() == 429 => {
                        t.limited += 1;
                        // Honour the limiter a little rather than spinning.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Ok((s, bytes)) => {
                        t.failed += 1;
                        t.first_failure
                            .get_or_insert(format!("{s}: {}", String::from_utf8_lossy(&bytes)));
                    }
                    Err(e) => {
                        t.failed += 1;
                        t.first_failure.get_or_insert(e);
                    }
                }
            }
            t
        }));
    }
    let mut all = Tally::default();
    for task in tasks {
        let t = task.await?;
        all.ok += t.ok;
        all.accepted += t.accepted;
        all.rejected += t.rejected;
        all.limited += t.limited;
        all.failed += t.failed;
        if all.first_failure.is_none() {
            all.first_failure = t.first_failure;
        }
        all.latencies_us.extend(t.latencies_us);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let server_sched1 = server_pid.as_deref().map(sched_ns);
    let self_sched1 = sched_ns("self");
    all.latencies_us.sort_unstable();
    let requests = all.latencies_us.len();
    let rate = all.accepted as f64 / elapsed;
    let (p50, p99, max) = if requests > 0 {
        (
            percentile(&all.latencies_us, 0.5),
            percentile(&all.latencies_us, 0.99),
            *all.latencies_us.last().unwrap(),
        )
    } else {
        (0, 0, 0)
    };
    println!(
        "  {requests} requests in {elapsed:.2} s: {} answered 200, {} answered 429, {} failed",
        all.ok, all.limited, all.failed
    );
    if let Some(f) = &all.first_failure {
        println!("  first problem: {f}");
    }
    println!(
        "  accepted {} signals ({} rejected) -> {:.0} signals/s ({:.0} requests/s) (target >= {:.0}) [{}]",
        all.accepted,
        all.rejected,
        rate,
        all.ok as f64 / elapsed,
        args.target_per_s,
        if rate >= args.target_per_s { "met" } else { "MISSED" }
    );
    println!(
        "  request latency: p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
        p50 as f64 / 1000.0,
        p99 as f64 / 1000.0,
        max as f64 / 1000.0
    );

    if let (Some(a), Some(b), true) = (server_sched0, server_sched1, all.ok > 0) {
        let server_ms = (b.0 - a.0) as f64 / 1e6;
        let client_ms = (self_sched1.0 - self_sched0.0) as f64 / 1e6;
        println!(
            "  CPU: server ran {:.0} ms of {:.0} ms wall ({:.2} cores), waited {:.0} ms runnable for \
             a core; {:.0} us of server CPU per {}-signal request = {:.2} M signals per server \
             CPU-second; load generator ran {:.0} ms ({:.2} cores)",
            server_ms,
            elapsed * 1000.0,
            server_ms / elapsed / 1000.0,
            (b.1 - a.1) as f64 / 1e6,
            server_ms * 1000.0 / all.ok as f64,
            args.batch,
            all.accepted as f64 / (server_ms / 1000.0) / 1e6,
            client_ms,
            client_ms / elapsed / 1000.0
        );
    }

    if let Some(id) = &watched_release {
        let st = server
            .admin(
                reqwest::Method::GET,
                &format!("/api/v1/releases/{id}"),
                None,
            )
            .await?;
        println!(
            "  release at the end: {}, module {} at {}% ({})",
            st["state"],
            st["modules"][0]["state"],
            st["modules"][0]["percentage"],
            st["modules"][0]["reason"]
        );
    }

    // --- server-side counts -------------------------------------------------------------
    let want: BTreeMap<(String, String), f64> = expected
        .iter()
        .map(|(s, n)| (s.clone(), (n * all.ok) as f64))
        .collect();
    let settle = Instant::now() + Duration::from_secs_f64(args.settle_s.max(0.0));
    let (mut exact, lines) = settled_counts(&server, &key, &want, settle).await?;
    println!("  /metrics rollgate_signals_total for flag {key} vs what was accepted:");
    for l in lines {
        println!("{l}");
    }
    let mut others_exact = 0;
    for url in &args.also_check {
        let other = Server::new(url, &server.token)?;
        let (same, lines) = settled_counts(&other, &key, &want, settle).await?;
        println!(
            "  {url}: {}",
            if same {
                "the same totals, exactly".to_owned()
            } else {
                format!("not the same:\n{}", lines.join("\n"))
            }
        );
        others_exact += usize::from(same);
    }
    if all.accepted != all.ok * batch {
        exact = false;
    }
    println!(
        "summary: ingest{} batch={} connections={} seconds={} signals_per_s={rate:.0} p50_ms={:.3} p99_ms={:.3} counts_exact={} others_exact={others_exact}/{} flag={key} accepted={} target={}",
        match (args.watched, args.latency) {
            (false, None) => "",
            (true, None) => " watched",
            (false, Some(Latency::Values)) => " latency-values",
            (true, Some(Latency::Values)) => " watched latency-values",
            (false, Some(Latency::Histogram)) => " latency-histogram",
            (true, Some(Latency::Histogram)) => " watched latency-histogram",
        },
        args.batch,
        args.connections,
        args.seconds,
        p50 as f64 / 1000.0,
        p99 as f64 / 1000.0,
        if exact { "yes" } else { "NO" },
        args.also_check.len(),
        all.accepted,
        if rate >= args.target_per_s { "met" } else { "MISSED" }
    );
    if !exact {
        bail!("server-side counts do not match what was accepted");
    }
    if all.failed > 0 {
        bail!("{} requests failed", all.failed);
    }
    Ok(())
}

/// Signals per (variant, metric) in one body.
pub type Expected = BTreeMap<(String, String), u64>;

/// One body of `batch` signals for `key`, serialized once, and what one accepted copy adds
/// per (variant, metric).
pub fn build_body(
    key: &str,
    batch: usize,
    exposure_share: f64,
    grouped: bool,
    seed: u64,
) -> Result<(Bytes, Expected)> {
    build_latency_body(key, batch, exposure_share, grouped, seed, None)
}

/// [`build_body`], with latency signals instead of error events when `latency` is set.
pub fn build_latency_body(
    key: &str,
    batch: usize,
    exposure_share: f64,
    grouped: bool,
    seed: u64,
    latency: Option<Latency>,
) -> Result<(Bytes, Expected)> {
    let mut rng = XorShift::new(seed);
    let mut signals = Vec::with_capacity(batch);
    let mut expected: BTreeMap<(String, String), u64> = BTreeMap::new();
    for i in 0..batch {
        let variant = if grouped {
            if i < batch / 2 {
                "off"
            } else {
                "on"
            }
        } else if rng.next() & 1 == 0 {
            "off"
        } else {
            "on"
        };
        let exposure = rng.unit() < exposure_share;
        let (signal, metric, count) = match latency {
            _ if exposure => (
                json!({"flag": key, "variant": variant, "metric": "exposure"}),
                "exposure",
                1,
            ),
            None => {
                let metric = if rng.unit() < 0.1 {
                    "payment_error"
                } else {
                    "error"
                };
                (
                    json!({"flag": key, "variant": variant, "metric": metric}),
                    metric,
                    1,
                )
            }
            // Latencies from 0.05 s to 2.7 s, log-uniform: many distinct sketch buckets.
            Some(Latency::Values) => (
                json!({"flag": key, "variant": variant, "metric": "checkout_latency",
                    "value": 0.05 * (4.0 * rng.unit()).exp()}),
                "checkout_latency",
                1,
            ),
            Some(Latency::Histogram) => {
                let bounds: Vec<f64> = (0..16).map(|k| 0.05 * 1.3f64.powi(k)).collect();
                let mut counts: Vec<u64> = (0..16).map(|_| rng.next() % 8).collect();
                if counts.iter().all(|c| *c == 0) {
                    counts[0] = 1;
                }
                let total = counts.iter().sum::<u64>();
                (
                    json!({"flag": key, "variant": variant, "metric": "checkout_latency",
                        "histogram": {"bounds": bounds, "counts": counts}}),
                    "checkout_latency",
                    total,
                )
            }
        };
        signals.push(signal);
        *expected
            .entry((variant.to_owned(), metric.to_owned()))
            .or_default() += count;
    }
    Ok((
        Bytes::from(serde_json::to_vec(&json!({ "signals": signals }))?),
        expected,
    ))
}

/// Reads the flag's counts from `server`'s /metrics until they equal `want` or `until` passes;
/// whether they did, and one line per series.
async fn settled_counts(
    server: &Server,
    key: &str,
    want: &BTreeMap<(String, String), f64>,
    until: Instant,
) -> Result<(bool, Vec<String>)> {
    loop {
        let seen = signals_total(&server.metrics().await?, key);
        let mut series: Vec<&(String, String)> = want.keys().collect();
        series.extend(seen.keys().filter(|s| !want.contains_key(*s)));
        let mut same = true;
        let mut lines = Vec::new();
        for s in series {
            let w = want.get(s).copied().unwrap_or(0.0);
            let got = seen.get(s).copied();
            let ok = got == Some(w);
            same &= ok;
            lines.push(format!(
                "    {:>3} {:<14} sent {w:>10.0}  server {:>10}  {}",
                s.0,
                s.1,
                got.map_or("absent".to_owned(), |g| format!("{g:.0}")),
                if ok { "ok" } else { "MISMATCH" }
            ));
        }
        if same || Instant::now() >= until {
            return Ok((same, lines));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `rollgate_signals_total{flag="KEY",variant=…,metric=…} N` lines of one flag.
fn signals_total(text: &str, flag: &str) -> BTreeMap<(String, String), f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("rollgate_signals_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let mut map = BTreeMap::new();
        for part in labels.split(',') {
            if let Some((k, v)) = part.split_once('=') {
                map.insert(k.trim(), v.trim().trim_matches('"'));
            }
        }
        if map.get("flag") != Some(&flag) {
            continue;
        }
        let value = value.split_whitespace().next().unwrap_or("");
        if let (Some(v), Some(m), Ok(n)) =
            (map.get("variant"), map.get("metric"), value.parse::<f64>())
        {
            out.insert((v.to_string(), m.to_string()), n);
        }
    }
    out
}
