//! `soak`: minutes of mixed load, sampling the server's RSS and open file descriptors.
//!
//! Load, all at fixed paces so the run measures leaks, not saturation: OFREP single and bulk
//! evaluation, signal batches, ops writes (flag PUTs, rollout changes, kill / unkill), SSE
//! streams held open (and some torn down and reopened), and releases created, ramping and
//! rolled back by a core guard breached with injected errors (`payment_error` and
//! `data_loss` on the new variant, under a policy `soak` with count ceilings that the run
//! creates). Each minute (`--sample-seconds`) prints RSS, open fds and
//! the work done; at the end, RSS and fds of the last sample are compared with the sample
//! after the warm-up (`--warmup-samples`, default the second minute): both must stay within
//! the stated tolerance, or the exit code is 1.

use crate::common::{proc_kib, run_suffix, Server, XorShift};
use crate::sse::{self, Event, Kind};
use anyhow::{anyhow, bail, Result};
use reqwest::Method;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Length of the run.
    #[arg(long, default_value_t = 600)]
    pub seconds: u64,
    /// The server's pid (RSS from /proc/PID/status, fds from /proc/PID/fd).
    #[arg(long)]
    pub server_pid: u32,
    /// Interval between samples.
    #[arg(long, default_value_t = 60)]
    pub sample_seconds: u64,
    /// The sample the last one is compared with (1 = after the first interval).
    #[arg(long, default_value_t = 2)]
    pub baseline_sample: usize,
    /// SSE streams held open.
    #[arg(long, default_value_t = 200)]
    pub streams: usize,
    /// Of those, streams closed and reopened every few seconds.
    #[arg(long, default_value_t = 20)]
    pub reconnecting: usize,
    /// Flags evaluated and written.
    #[arg(long, default_value_t = 50)]
    pub flags: usize,
    /// OFREP single evaluations per second.
    #[arg(long, default_value_t = 300)]
    pub single_rate: u64,
    /// OFREP bulk evaluations per second.
    #[arg(long, default_value_t = 30)]
    pub bulk_rate: u64,
    /// Signal batches (of 100) per second.
    #[arg(long, default_value_t = 20)]
    pub signal_rate: u64,
    /// Ops writes per second.
    #[arg(long, default_value_t = 4)]
    pub ops_rate: u64,
    /// Allowed RSS growth, last sample vs. baseline, in percent.
    #[arg(long, default_value_t = 10.0)]
    pub rss_tolerance_pct: f64,
    /// Allowed growth of open fds, last sample vs. baseline.
    #[arg(long, default_value_t = 25)]
    pub fd_tolerance: i64,
}

/// Per-kind counters of requests and of failures.
#[derive(Default)]
struct Counters {
    single: AtomicU64,
    bulk: AtomicU64,
    signals: AtomicU64,
    ops: AtomicU64,
    releases: AtomicU64,
    rolled_back: AtomicU64,
    ramped: AtomicU64,
    reconnects: AtomicU64,
    events: AtomicU64,
    client_errors: AtomicU64,
    server_errors: AtomicU64,
    transport_errors: AtomicU64,
    open_streams: AtomicU64,
}

impl Counters {
    /// Counts the status of an answer (or the transport failure); the response to drain.
    fn answer(&self, r: reqwest::Result<reqwest::Response>) -> Option<reqwest::Response> {
        match r {
            Ok(r) => {
                let s = r.status().as_u16();
                if s >= 500 {
                    self.server_errors.fetch_add(1, Ordering::Relaxed);
                } else if s >= 400 {
                    self.client_errors.fetch_add(1, Ordering::Relaxed);
                }
                Some(r)
            }
            Err(_) => {
                self.transport_errors.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }
}

fn fds(pid: u32) -> Result<i64> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count() as i64)
}

struct Load {
    server: Server,
    token: String,
    keys: Vec<String>,
    counters: Counters,
    stop: AtomicBool,
}

/// Runs `tick` `rate` times per second until the stop flag.
async fn paced<F, Fut>(load: Arc<Load>, rate: u64, seed: u64, tick: F)
where
    F: Fn(Arc<Load>, XorShift) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    if rate == 0 {
        return;
    }
    let mut rng = XorShift::new(seed);
    let mut interval = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while !load.stop.load(Ordering::Relaxed) {
        interval.tick().await;
        rng.next();
        tick(load.clone(), XorShift::new(rng.next())).await;
    }
}

async fn evaluate_single(load: Arc<Load>, mut rng: XorShift) {
    let key = &load.keys[rng.next() as usize % load.keys.len()];
    let user = rng.next() % 100_000;
    let r = load
        .server
        .http
        .post(format!(
            "{}/ofrep/v1/evaluate/flags/{key}",
            load.server.base
        ))
        .bearer_auth(&load.token)
        .json(&json!({"context": {"targetingKey": format!("user-{user}"), "country": "NL"}}))
        .send()
        .await;
    if let Some(r) = load.counters.answer(r) {
        let _ = r.bytes().await;
    }
    load.counters.single.fetch_add(1, Ordering::Relaxed);
}

async fn evaluate_bulk(load: Arc<Load>, mut rng: XorShift) {
    let user = rng.next() % 100_000;
    let r = load
        .server
        .http
        .post(format!("{}/ofrep/v1/evaluate/flags", load.server.base))
        .bearer_auth(&load.token)
        .json(&json!({"context": {"targetingKey": format!("user-{user}")}}))
        .send()
        .await;
    if let Some(r) = load.counters.answer(r) {
        let _ = r.bytes().await;
    }
    load.counters.bulk.fetch_add(1, Ordering::Relaxed);
}

async fn send_signals(load: Arc<Load>, mut rng: XorShift) {
    let signals: Vec<Value> = (0..100)
        .map(|_| {
            let key = &load.keys[rng.next() as usize % load.keys.len()];
            let variant = if rng.next() & 1 == 0 { "on" } else { "off" };
            let metric = match rng.next() % 10 {
                0 => "complaint",
                1 => "latency",
                _ => "exposure",
            };
            json!({"flag": key, "variant": variant, "metric": metric, "value": 0.1,
                   "targetingKey": format!("user-{}", rng.next() % 100_000)})
        })
        .collect();
    let r = load
        .server
        .http
        .post(format!("{}/api/v1/signals", load.server.base))
        .bearer_auth(&load.token)
        .json(&json!({ "signals": signals }))
        .send()
        .await;
    if let Some(r) = load.counters.answer(r) {
        let _ = r.bytes().await;
    }
    load.counters.signals.fetch_add(1, Ordering::Relaxed);
}

async fn ops_write(load: Arc<Load>, mut rng: XorShift) {
    let key = &load.keys[rng.next() as usize % load.keys.len()];
    let base = &load.server.base;
    let http = &load.server.http;
    let token = &load.server.token;
    let rollout = (rng.next() % 100_001) as f64 / 1000.0;
    let req = match rng.next() % 4 {
        0 => http.put(format!("{base}/api/v1/flags/{key}")).json(&json!({
            "key": key, "type": "boolean", "variants": {"off": false, "on": true},
            "off_variant": "off", "on_variant": "on", "rollout": rollout,
            "rules": [{"when": [{"attribute": "country", "op": "in", "values": ["BE"]}], "variant": "on"}],
        })),
        1 => http
            .put(format!("{base}/api/v1/flags/{key}/rollout"))
            .json(&json!({"percentage": rollout, "reason": "soak"})),
        2 => http.post(format!("{base}/api/v1/flags/{key}/kill")),
        _ => http.post(format!("{base}/api/v1/flags/{key}/unkill")),
    };
    let r = req.bearer_auth(token).send().await;
    if let Some(r) = load.counters.answer(r) {
        let _ = r.bytes().await;
    }
    load.counters.ops.fetch_add(1, Ordering::Relaxed);
}

/// One stream, reopened whenever it ends; a reconnecting one is torn down after 3–12 s.
async fn stream(load: Arc<Load>, addr: SocketAddr, conn: usize, reconnecting: bool) {
    let mut rng = XorShift::new(0x50a4 + conn as u64);
    while !load.stop.load(Ordering::Relaxed) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
        let sub = tokio::spawn(sse::subscribe(
            addr,
            load.server.authority().to_owned(),
            load.token.clone(),
            conn,
            tx,
        ));
        load.counters.open_streams.fetch_add(1, Ordering::Relaxed);
        let lifetime = if reconnecting {
            Duration::from_millis(3_000 + rng.next() % 9_000)
        } else {
            Duration::from_secs(24 * 3600)
        };
        let until = tokio::time::Instant::now() + lifetime;
        loop {
            tokio::select! {
                e = rx.recv() => match e {
                    Some(Event { kind: Kind::Closed(_), .. }) | None => break,
                    Some(_) => { load.counters.events.fetch_add(1, Ordering::Relaxed); }
                },
                _ = tokio::time::sleep_until(until) => break,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {
                    if load.stop.load(Ordering::Relaxed) { break; }
                }
            }
        }
        sub.abort();
        let _ = sub.await;
        load.counters.open_streams.fetch_sub(1, Ordering::Relaxed);
        if !load.stop.load(Ordering::Relaxed) {
            load.counters.reconnects.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Release cycles: create, start, let it ramp, breach a core guard, wait for the rollback.
async fn releases(load: Arc<Load>, suffix: String) {
    let server = &load.server;
    let mut cycle = 0u64;
    while !load.stop.load(Ordering::Relaxed) {
        cycle += 1;
        let key = format!("soak-release-{suffix}-{}", cycle % 4);
        let result: Result<()> = async {
            server.put_flag(&key, 0.0).await?;
            let plan = json!({
                "name": format!("soak-{suffix}-{cycle}"),
                "policy": "soak",
                "modules": [{"flag": key, "stages": {"percentages": [10, 50, 100], "min_duration": "2s", "min_exposures": 0}}]
            });
            let created = server.admin(Method::POST, "/api/v1/releases", Some(plan)).await?;
            let id = created["id"].as_str().ok_or_else(|| anyhow!("no release id"))?.to_owned();
            load.counters.releases.fetch_add(1, Ordering::Relaxed);
            server.admin(Method::POST, &format!("/api/v1/releases/{id}/start"), None).await?;
            // Ramp: exposures on both variants for a few seconds, then look at the rollout.
            // Exposures split as served, so the sample-ratio check stays quiet.
            for _ in 0..12 {
                let flag = server.admin(Method::GET, &format!("/api/v1/flags/{key}"), None).await?;
                let on = (flag["rollout"].as_f64().unwrap_or(0.0) * 10.0).round() as u64;
                let exposures: Vec<Value> = [("on", on), ("off", 1000 - on.min(1000))]
                    .iter()
                    .filter(|(_, n)| *n > 0)
                    .map(|(v, n)| json!({"flag": key, "variant": v, "metric": "exposure", "count": n}))
                    .collect();
                server.admin(Method::POST, "/api/v1/signals", Some(json!({"signals": exposures}))).await?;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            let flag = server.admin(Method::GET, &format!("/api/v1/flags/{key}"), None).await?;

            if flag["rollout"].as_f64().unwrap_or(0.0) > 10.0 {
                load.counters.ramped.fetch_add(1, Ordering::Relaxed);
            }
            // Injected errors: a payment_error rate far above 2 % and one data_loss.
            let breach = json!({"signals": [
                {"flag": key, "variant": "on", "metric": "exposure", "count": 200},
                {"flag": key, "variant": "on", "metric": "payment_error", "count": 100},
                {"flag": key, "variant": "on", "metric": "data_loss"},
            ]});
            server.admin(Method::POST, "/api/v1/signals", Some(breach)).await?;
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let r = server.admin(Method::GET, &format!("/api/v1/releases/{id}"), None).await?;
                if r["state"] == "rolled_back" {
                    load.counters.rolled_back.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                if Instant::now() > deadline {
                    bail!("release {id} not rolled back 10 s after the breach: {r}");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            eprintln!("soak: release cycle {cycle}: {e:#}");
            load.counters.client_errors.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

pub async fn run(server: Server, args: Args) -> Result<()> {
    if args.sample_seconds == 0 || args.seconds < args.sample_seconds {
        bail!("--seconds must be at least --sample-seconds (> 0)");
    }
    let suffix = run_suffix();
    let keys: Vec<String> = (0..args.flags.max(1))
        .map(|i| format!("soak-{suffix}-{i}"))
        .collect();
    for key in &keys {
        server.put_flag(key, 50.0).await?;
    }
    // Count ceilings only: with no errors the verdict is healthy at once, so stages advance
    // after their 2 s bake; the injected errors exceed both ceilings.
    let policy = json!({"name": "soak", "guard": [
        {"metric": "data_loss", "class": "core", "max_count": 0},
        {"metric": "payment_error", "class": "core", "max_count": 10},
    ]});
    server
        .admin(Method::PUT, "/api/v1/policies/soak", Some(policy))
        .await?;
    let token = server.client_token(&format!("soak-{suffix}")).await?;
    let addr: SocketAddr = tokio::net::lookup_host(server.authority())
        .await?
        .next()
        .ok_or_else(|| anyhow!("cannot resolve {}", server.authority()))?;
    let load = Arc::new(Load {
        server,
        token,
        keys,
        counters: Counters::default(),
        stop: AtomicBool::new(false),
    });
    println!(
        "soak: {} s; {} streams ({} reconnecting every 3-12 s), {} flags; per second: {} OFREP single, \
         {} bulk, {} signal batches of 100, {} ops writes; releases ramp and roll back in a loop",
        args.seconds, args.streams, args.reconnecting, load.keys.len(), args.single_rate,
        args.bulk_rate, args.signal_rate, args.ops_rate
    );
    let mut tasks = Vec::new();
    for conn in 0..args.streams {
        tasks.push(tokio::spawn(stream(
            load.clone(),
            addr,
            conn,
            conn < args.reconnecting,
        )));
    }
    tasks.push(tokio::spawn(paced(
        load.clone(),
        args.single_rate,
        1,
        evaluate_single,
    )));
    tasks.push(tokio::spawn(paced(
        load.clone(),
        args.bulk_rate,
        2,
        evaluate_bulk,
    )));
    tasks.push(tokio::spawn(paced(
        load.clone(),
        args.signal_rate,
        3,
        send_signals,
    )));
    tasks.push(tokio::spawn(paced(
        load.clone(),
        args.ops_rate,
        4,
        ops_write,
    )));
    tasks.push(tokio::spawn(releases(load.clone(), suffix)));

    let pid = args.server_pid;
    let sample = |minute: u64| -> Result<(u64, i64)> {
        let rss = proc_kib(pid, "VmRSS")?;
        let fds = fds(pid)?;
        let c = &load.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        println!(
            "t={:>4}s rss {:>7.1} MiB  fds {:>5}  | single {:>7} bulk {:>6} signal batches {:>6} ops {:>5} \
             releases {:>4} (ramped {:>4}, rolled back {:>4}) | streams open {:>3}, reconnects {:>5}, events {:>8} \
             | 4xx {} 5xx {} transport {}",
            minute,
            rss as f64 / 1024.0,
            fds,
            get(&c.single), get(&c.bulk), get(&c.signals), get(&c.ops),
            get(&c.releases), get(&c.ramped), get(&c.rolled_back),
            get(&c.open_streams), get(&c.reconnects), get(&c.events),
            get(&c.client_errors), get(&c.server_errors), get(&c.transport_errors),
        );
        Ok((rss, fds))
    };
    let mut samples = vec![sample(0)?];
    let started = Instant::now();
    let mut next = args.sample_seconds;
    while next <= args.seconds {
        let at = started + Duration::from_secs(next);
        tokio::time::sleep_until(at.into()).await;
        samples.push(sample(next)?);
        next += args.sample_seconds;
    }
    load.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(15), t).await;
    }

    let base = args.baseline_sample.min(samples.len() - 1);
    let (rss0, fd0) = samples[base];
    let (rss1, fd1) = *samples.last().unwrap();
    let growth = (rss1 as f64 - rss0 as f64) / rss0 as f64 * 100.0;
    let rss_flat = growth <= args.rss_tolerance_pct;
    let fd_flat = fd1 - fd0 <= args.fd_tolerance;
    let max_rss = samples.iter().map(|s| s.0).max().unwrap_or(0);
    println!(
        "summary: RSS {:.1} MiB at t={}s -> {:.1} MiB at the end ({growth:+.1} %, tolerance +{} %): {}; \
         peak {:.1} MiB",
        rss0 as f64 / 1024.0,
        base as u64 * args.sample_seconds,
        rss1 as f64 / 1024.0,
        args.rss_tolerance_pct,
        if rss_flat { "flat" } else { "GROWING" },
        max_rss as f64 / 1024.0,
    );
    println!(
        "summary: open fds {fd0} at t={}s -> {fd1} at the end ({:+}, tolerance +{}): {}",
        base as u64 * args.sample_seconds,
        fd1 - fd0,
        args.fd_tolerance,
        if fd_flat { "flat" } else { "GROWING" }
    );
    let fivexx = load.counters.server_errors.load(Ordering::Relaxed);
    println!("summary: 5xx answers: {fivexx}");
    if !(rss_flat && fd_flat) || fivexx > 0 {
        bail!("the soak did not stay flat (or saw 5xx answers)");
    }
    Ok(())
}
