//! What a durable commit costs: the store's real commit (sled transaction, sled flush, then
//! `fdatasync`) against sled's flush alone (`sync_file_range`, what a commit cost before the
//! fix), both through the same group-commit step, in the same run, on the same disk,
//! alternating rounds so drift hits both.
//!
//! `cargo bench --bench commit` (env: `COMMITS` per round and mode, default 300; `ROUNDS`,
//! default 3; `BENCH_DIR`, default under `target/`: it must be on the disk you care about, a
//! tmpfs makes every sync free). Figures: bench/README.md.
#![allow(clippy::unwrap_used, clippy::expect_used)] // bench code may panic on a broken fixture

use rollgate::store::{AuditEntry, Change, Durability, Store};
use rollgate_eval::FlagDef;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Concurrent committers in the group-commit phase. The server serializes ops commits behind
/// its writer lock; only the aggregate persist runs beside them, so this shows the ceiling.
const CONCURRENT: usize = 8;

fn main() {
    let commits: usize = env_or("COMMITS", 300);
    let rounds: usize = env_or("ROUNDS", 3);
    let base = std::env::var_os("BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("commit-bench"));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).expect("bench dir");
    println!(
        "commit bench: {commits} commits per round and mode, {rounds} rounds, data in {}",
        base.display()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let fsync = Store::open_with(&base.join("fsync"), Durability::Fsync).expect("open");
        let old =
            Store::open_with(&base.join("sled-only"), Durability::SledFlushOnly).expect("open");
        for (phase, concurrency) in [("one committer at a time", 1), ("8 concurrent", CONCURRENT)] {
            let mut with_sync = Vec::new();
            let mut without = Vec::new();
            for _ in 0..rounds {
                without.extend(run(&old, commits, concurrency).await);
                with_sync.extend(run(&fsync, commits, concurrency).await);
            }
            report(phase, concurrency, &without, &with_sync);
        }
    });
    let _ = std::fs::remove_dir_all(&base);
}

/// `commits` commits split over `concurrency` tasks; returns each commit's latency and
/// the wall time of the whole batch (for the rate).
async fn run(store: &Store, commits: usize, concurrency: usize) -> Vec<Sample> {
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                for i in (t..commits).step_by(concurrency) {
                    let (flag, entry) = change(t, i);
                    let begun = Instant::now();
                    store
                        .commit(Change::PutFlag(&flag), &entry)
                        .await
                        .expect("commit");
                    latencies.push(begun.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("task"));
    }
    let wall = started.elapsed();
    latencies
        .into_iter()
        .map(|latency| Sample {
            latency,
            wall,
            n: commits,
        })
        .collect()
}

struct Sample {
    latency: Duration,
    /// Wall time of the batch this commit belonged to, and the batch's size.
    wall: Duration,
    n: usize,
}

/// A flag write shaped like a rollout PUT: the flag and an audit entry with before/after.
fn change(task: usize, i: usize) -> (FlagDef, AuditEntry) {
    let key = format!("bench-{task}");
    let def = |rollout: usize| {
        json!({
            "key": key, "type": "boolean", "variants": {"off": false, "on": true},
            "off_variant": "off", "on_variant": "on", "enabled": true,
            "rollout": (rollout % 100) as f64, "rules": []
        })
    };
    let flag: FlagDef = serde_json::from_value(def(i)).expect("flag");
    let entry = AuditEntry {
        id: uuid::Uuid::now_v7(),
        time: "2026-01-01T00:00:00.000Z".into(),
        actor: "bench".into(),
        action: "flag.rollout".into(),
        flag: Some(key.clone()),
        release: None,
        subject: None,
        reason: None,
        before: Some(def(i + 99)),
        after: Some(def(i)),
        node: None,
    };
    (flag, entry)
}

fn report(phase: &str, concurrency: usize, without: &[Sample], with_sync: &[Sample]) {
    let rate = |s: &[Sample]| {
        let batches: f64 = s.iter().map(|x| x.wall.as_secs_f64() / x.n as f64).sum();
        s.len() as f64 / batches
    };
    let pct = |s: &[Sample], p: f64| {
        let mut v: Vec<Duration> = s.iter().map(|x| x.latency).collect();
        v.sort();
        v[((v.len() - 1) as f64 * p).round() as usize]
    };
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "\n{phase} ({concurrency} task(s), {} commits per mode):",
        with_sync.len()
    );
    println!("  mode                         commits/s   p50 ms   p99 ms");
    for (name, s) in [
        ("sled flush only (before)", without),
        ("flush + fdatasync (now)", with_sync),
    ] {
        println!(
            "  {name:<28} {:>9.0} {:>8.3} {:>8.3}",
            rate(s),
            ms(pct(s, 0.5)),
            ms(pct(s, 0.99))
        );
    }
    println!(
        "  ratio now/before: {:.2}x the commits/s, {:.2}x the p50 latency",
        rate(with_sync) / rate(without),
        ms(pct(with_sync, 0.5)) / ms(pct(without, 0.5))
    );
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
