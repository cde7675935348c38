//! What counting signals exactly once across nodes costs one node: batches parsed, ingested,
//! appended to the durable outbox (sled + group-committed `fdatasync`) and flushed into
//! PostgreSQL by the background flusher, against plain in-memory `ingest` of the same batches
//! by the same number of workers, in the same run. Checks that the database's totals equal the
//! in-memory ones exactly.
//!
//! `cargo bench --bench outbox` (env: `BATCHES_100` / `BATCHES_1000`, batches per size, default
//! 3000 / 600; `WORKERS`, concurrent request workers, default 8; `BENCH_DIR`, default under
//! `target/`, on the disk you care about). Starts its own PostgreSQL with `scripts/pg.sh`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // bench code may panic on a broken fixture

use rollgate::cluster::{db, signals};
use rollgate::live::Live;
use rollgate::signals::{check, ingest, Aggregates, SavedAggregates, SignalBatch};
use rollgate::store::Store;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const FLAGS: usize = 20;
const NOW_MS: u64 = 1_700_000_000_000;

fn main() {
    let workers: usize = env_or("WORKERS", 8);
    let base = std::env::var_os("BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("outbox-bench"));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).expect("bench dir");
    std::fs::set_permissions(&base, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let pg_dir = base.join("pg");
    let url = pg_sh(&["start", pg_dir.to_str().unwrap()]);
    println!(
        "outbox bench: {workers} workers, data in {}, {url}",
        base.display()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (mut client, connection) = db::connect(&url, None).await.unwrap();
        tokio::spawn(connection);
        db::migrate(&mut client).await.unwrap();
        let pool = db::pool(&url, None, 4).unwrap();
        let live = Arc::new(live());
        for (size, batches) in [(100, env_or("BATCHES_100", 3000)), (1000, env_or("BATCHES_1000", 600))] {
            client
                .batch_execute("TRUNCATE rollgate_signal_batches, rollgate_signal_totals, rollgate_signal_seen")
                .await
                .unwrap();
            let bodies: Arc<Vec<Vec<u8>>> = Arc::new((0..batches).map(|b| body(size, b)).collect());
            let reference = in_memory(&live, &bodies, workers).await;
            let store = Store::open(&base.join(format!("store-{size}"))).unwrap();
            let outboxed = through_outbox(&live, &bodies, workers, &store, &pool).await;
            let global = signals::totals(&pool, &[]).await.unwrap();
            assert_eq!(global, reference.totals, "the database's totals are exact");
            let signals = (size * batches) as f64;
            let rate = |d: Duration| signals / d.as_secs_f64();
            println!(
                "batch of {size} signals, {batches} batches: in-memory ingest {:.0} signals/s; \
                 outbox: {:.0} appends/s, {:.0} signals/s acknowledged ({:.2}x of in-memory), \
                 {:.0} signals/s counted in PostgreSQL (appends + flush to empty); totals exact",
                rate(reference.elapsed),
                batches as f64 / outboxed.appended.as_secs_f64(),
                rate(outboxed.appended),
                reference.elapsed.as_secs_f64() / outboxed.appended.as_secs_f64(),
                rate(outboxed.counted),
            );
        }
    });
    drop(runtime);
    pg_sh(&["kill", pg_dir.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&base);
}

struct Reference {
    elapsed: Duration,
    totals: SavedAggregates,
}

/// Every batch parsed, checked and ingested into one shared `Aggregates` by `workers` tasks.
async fn in_memory(live: &Arc<Live>, bodies: &Arc<Vec<Vec<u8>>>, workers: usize) -> Reference {
    let aggregates = Arc::new(Aggregates::default());
    let started = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let (live, bodies, aggregates) = (live.clone(), bodies.clone(), aggregates.clone());
            tokio::spawn(async move {
                for body in bodies.iter().skip(w).step_by(workers) {
                    apply(&aggregates, &live, body);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    Reference {
        elapsed: started.elapsed(),
        totals: aggregates.save(),
    }
}

struct Outboxed {
    /// Until every append was acknowledged.
    appended: Duration,
    /// Until the outbox was empty again (everything counted in the database).
    counted: Duration,
}

/// Each batch as a node takes it: parsed, checked, ingested into a fresh `Aggregates` whose
/// delta is appended to the outbox; the flusher runs beside, woken by every append.
async fn through_outbox(
    live: &Arc<Live>,
    bodies: &Arc<Vec<Vec<u8>>>,
    workers: usize,
    store: &Store,
    pool: &db::Pool,
) -> Outboxed {
    let wake = Arc::new(tokio::sync::Notify::new());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let flusher = tokio::spawn(signals::run_flusher(
        store.clone(),
        pool.clone(),
        "bench".into(),
        wake.clone(),
        Duration::from_millis(100),
        stopped,
    ));
    let started = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let (live, bodies, store, wake) =
                (live.clone(), bodies.clone(), store.clone(), wake.clone());
            tokio::spawn(async move {
                for body in bodies.iter().skip(w).step_by(workers) {
                    let delta = Aggregates::default();
                    apply(&delta, &live, body);
                    store.outbox_append(&delta.save()).await.unwrap();
                    wake.notify_one();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let appended = started.elapsed();
    wake.notify_one();
    while store.outbox_len() > 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let counted = started.elapsed();
    stop.send(true).unwrap();
    flusher.await.unwrap();
    Outboxed { appended, counted }
}

fn apply(aggregates: &Aggregates, live: &Live, body: &[u8]) {
    let batch: SignalBatch<'_> = serde_json::from_slice(body).unwrap();
    check(&batch, 10_000).unwrap();
    let report = ingest(aggregates, live, &batch, NOW_MS);
    assert_eq!(report.rejected, 0);
}

/// A batch body of `size` signals over every flag: exposures, errors, and latencies whose
/// values are multiples of 1/8 (so every sum is exact in any order).
fn body(size: usize, seed: usize) -> Vec<u8> {
    let signals: Vec<_> = (0..size)
        .map(|i| {
            let n = seed * size + i;
            let flag = format!("flag-{}", n % FLAGS);
            let variant = if n % 3 == 0 { "on" } else { "off" };
            match n % 4 {
                0 | 1 => serde_json::json!({"flag": flag, "variant": variant, "metric": "exposure"}),
                2 => serde_json::json!({"flag": flag, "variant": variant, "metric": "errors", "count": 1 + n % 5}),
                _ => serde_json::json!({"flag": flag, "variant": variant, "metric": "latency", "value": (n % 16) as f64 * 0.125}),
            }
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({ "signals": signals })).unwrap()
}

fn live() -> Live {
    let flags = (0..FLAGS)
        .map(|f| {
            serde_json::from_value(serde_json::json!({
                "key": format!("flag-{f}"), "type": "boolean",
                "variants": {"off": false, "on": true}, "off_variant": "off", "on_variant": "on",
                "enabled": true, "rollout": 50
            }))
            .unwrap()
        })
        .collect();
    let (live, broken) = Live::build(flags, Default::default());
    assert!(broken.is_empty());
    live
}

fn pg_sh(args: &[&str]) -> String {
    let out =
        std::process::Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg.sh"))
            .args(args)
            .output()
            .expect("pg.sh runs");
    assert!(
        out.status.success(),
        "pg.sh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
