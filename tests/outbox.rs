//! The signal outbox of a cluster node (real sled in a temp dir) and its exactly-once flush into
//! PostgreSQL (a real server from `scripts/pg.sh`, or a fresh database on `ROLLGATE_TEST_PG`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code may panic on a broken fixture

use rollgate::cluster::db::{self, Pool};
use rollgate::cluster::signals::{flush_outbox, prune_batches, run_flusher, totals};
use rollgate::signals::{MetricTotals, SavedAggregates};
use rollgate::store::Store;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// A database for one test: on a server of its own (which the test may stop), or a fresh
/// database on the server named by `ROLLGATE_TEST_PG`.
struct Pg {
    /// The server's directory when this test owns the server.
    server: Option<TempDir>,
    url: String,
}

fn pg_sh(args: &[&str]) -> Result<String, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = root.join("scripts/pg.sh");
    // pg.sh builds its initdb template on first use; tests starting at once (nextest runs each
    // in a process) would replace it under each other's copy, so the first ones take turns.
    let mut command = if root.join("target/pg-template/ready").exists() {
        std::process::Command::new(script)
    } else {
        std::fs::create_dir_all(root.join("target")).map_err(|e| e.to_string())?;
        let mut flock = std::process::Command::new("flock");
        flock.arg(root.join("target/pg-template.lock")).arg(script);
        flock
    };
    let out = command.args(args).output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

impl Pg {
    /// A server of this test's own, migrated.
    async fn own() -> Pg {
        let server = tempfile::tempdir().unwrap();
        // The server may run as another user (initdb refuses root): it needs to reach DIR/pg.
        std::fs::set_permissions(
            server.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let dir = server.path().join("pg");
        let url = pg_sh(&["start", dir.to_str().unwrap()]).expect("pg.sh start");
        let pg = Pg {
            server: Some(server),
            url,
        };
        pg.migrate().await;
        pg
    }

    /// A fresh migrated database: on `ROLLGATE_TEST_PG` when set, else on a server of its own.
    async fn any() -> Pg {
        let Ok(shared) = std::env::var("ROLLGATE_TEST_PG") else {
            return Pg::own().await;
        };
        let name = format!("t_{:016x}", rand::random::<u64>());
        let (client, connection) = db::connect(&shared, None).await.unwrap();
        tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let url = format!(
            "{}/{name}",
            shared
                .rsplit_once('/')
                .map_or(shared.as_str(), |(base, _)| base)
        );
        let pg = Pg { server: None, url };
        pg.migrate().await;
        pg
    }

    fn dir(&self) -> PathBuf {
        self.server.as_ref().expect("own server").path().join("pg")
    }

    async fn migrate(&self) {
        let (mut client, connection) = db::connect(&self.url, None).await.unwrap();
        tokio::spawn(connection);
        db::migrate(&mut client).await.unwrap();
    }

    fn pool(&self) -> Pool {
        db::pool(&self.url, None, 4).unwrap()
    }

    /// Stops the server the hard way (a crash).
    fn kill(&self) {
        pg_sh(&["kill", self.dir().to_str().unwrap()]).expect("pg.sh kill");
    }

    fn restart(&self) {
        pg_sh(&["restart", self.dir().to_str().unwrap()]).expect("pg.sh restart");
    }

    /// Rows of `rollgate_signal_batches` for `node`.
    async fn batch_ids(&self, node: &str) -> i64 {
        let client = self.pool().get().await.unwrap();
        client
            .query_one(
                "SELECT count(*) FROM rollgate_signal_batches WHERE node = $1",
                &[&node],
            )
            .await
            .unwrap()
            .get(0)
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        if self.server.is_some() {
            let _ = pg_sh(&["kill", self.dir().to_str().unwrap()]);
        }
    }
}

/// Opens the store in `dir`, waiting (up to 10 s) for a store just dropped to let go of it:
/// sled 0.34 may still be finishing a background write that holds its file lock.
fn reopen(dir: &Path) -> Store {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Store::open(dir) {
            Ok(store) => return store,
            Err(e)
                if e.to_string().contains("could not acquire lock")
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("opening the store: {e}"),
        }
    }
}

fn totals_of(count: u64, sum: f64, valued: u64) -> MetricTotals {
    MetricTotals { count, sum, valued }
}

/// The delta of a batch of `n` signals: `n` exposures of `flag`/on, `n` latencies of 0.5 s
/// (sums of halves are exact in any order), heard at `ms`.
fn batch(flag: &str, n: u64, ms: u64) -> SavedAggregates {
    let mut d = SavedAggregates::default();
    d.add(flag, "on", "exposure", totals_of(n, 0.0, 0));
    d.add(flag, "on", "latency", totals_of(n, 0.5 * n as f64, n));
    d.touch(flag, ms);
    d
}

/// The sum of `deltas`, as the database should hold it.
fn sum_of<'a>(deltas: impl IntoIterator<Item = &'a SavedAggregates>) -> SavedAggregates {
    let mut all = SavedAggregates::default();
    for d in deltas {
        all.merge(d);
    }
    all
}

/// Waits up to 20 s for `check` to hold.
async fn eventually<F: std::future::Future<Output = bool>>(what: &str, check: impl Fn() -> F) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn appends_survive_reopening_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let deltas: Vec<_> = (1..=3).map(|n| batch("f", n, n)).collect();
    let seqs = {
        let store = reopen(dir.path());
        let mut seqs = Vec::new();
        for d in &deltas {
            seqs.push(store.outbox_append(d).await.unwrap());
        }
        seqs
    };

    let store = reopen(dir.path());

    assert_eq!(store.outbox_len(), 3);
    assert_eq!(
        store.outbox_pending(10).unwrap(),
        seqs.into_iter().zip(deltas).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn numbering_continues_above_every_used_number_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = reopen(dir.path());
        for n in 1..=3 {
            assert_eq!(store.outbox_append(&batch("f", n, 1)).await.unwrap(), n);
        }
        store.outbox_remove_through(3).unwrap();
        assert_eq!(store.outbox_len(), 0);
        store.flush().await.unwrap();
    }
    let store = reopen(dir.path());
    assert_eq!(store.outbox_append(&batch("f", 1, 1)).await.unwrap(), 4);
    drop(store);

    let store = reopen(dir.path());
    assert_eq!(
        store.outbox_append(&batch("f", 1, 1)).await.unwrap(),
        5,
        "numbering continues above the entry still waiting too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_appends_are_all_durable_and_distinct() {
    let dir = tempfile::tempdir().unwrap();
    let store = reopen(dir.path());
    let tasks: Vec<_> = (1..=100u64)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                let seq = store.outbox_append(&batch("f", n, n)).await.unwrap();
                (seq, n)
            })
        })
        .collect();
    let mut appended = Vec::new();
    for task in tasks {
        appended.push(task.await.unwrap());
    }
    drop(store);

    let seqs: BTreeSet<u64> = appended.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, (1..=100).collect(), "100 distinct numbers, no gap");
    let store = reopen(dir.path());
    let pending = store.outbox_pending(1000).unwrap();
    appended.sort();
    assert_eq!(
        pending,
        appended
            .iter()
            .map(|(seq, n)| (*seq, batch("f", *n, *n)))
            .collect::<Vec<_>>(),
        "each acknowledged append is on disk under its number"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushing_counts_each_entry_once_and_reads_totals_by_flag() {
    let pg = Pg::any().await;
    let pool = pg.pool();
    let dir = tempfile::tempdir().unwrap();
    let store = reopen(dir.path());
    let deltas = [batch("f", 3, 10), batch("g", 4, 20), batch("f", 5, 5)];
    for d in &deltas {
        store.outbox_append(d).await.unwrap();
    }

    assert_eq!(flush_outbox(&store, &pool, "a", 2).await.unwrap(), 2);
    assert_eq!(flush_outbox(&store, &pool, "a", 2).await.unwrap(), 1);
    assert_eq!(flush_outbox(&store, &pool, "a", 2).await.unwrap(), 0);

    assert_eq!(store.outbox_len(), 0);
    assert_eq!(totals(&pool, &[]).await.unwrap(), sum_of(&deltas));
    assert_eq!(
        totals(&pool, &["f".to_owned()]).await.unwrap(),
        sum_of([&deltas[0], &deltas[2]])
    );
    let mut expected = SavedAggregates::default();
    expected.add("f", "on", "exposure", totals_of(8, 0.0, 0));
    expected.add("f", "on", "latency", totals_of(8, 4.0, 8));
    expected.touch("f", 10);
    assert_eq!(sum_of([&deltas[0], &deltas[2]]), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_clamp_at_the_column_maximum_and_sums_stay_finite() {
    let pg = Pg::any().await;
    let pool = pg.pool();
    let dir = tempfile::tempdir().unwrap();
    let store = reopen(dir.path());
    let mut huge = SavedAggregates::default();
    huge.add(
        "f",
        "on",
        "latency",
        totals_of(u64::MAX, f64::MAX, u64::MAX),
    );
    let mut negative = SavedAggregates::default();
    negative.add("f", "off", "latency", totals_of(1, -f64::MAX, 1));

    for _ in 0..2 {
        store.outbox_append(&huge).await.unwrap();
        store.outbox_append(&negative).await.unwrap();
        flush_outbox(&store, &pool, "a", 100).await.unwrap();
    }

    let got = totals(&pool, &[]).await.unwrap();
    let series: Vec<_> = got.iter().map(|(f, v, m, t)| (f, v, m, *t)).collect();
    let max = i64::MAX as u64;
    assert_eq!(
        series,
        [
            ("f", "off", "latency", totals_of(2, -f64::MAX, 2)),
            ("f", "on", "latency", totals_of(max, f64::MAX, max)),
        ]
    );
}

/// Set in the child process of the crash test: the data dir and database to flush.
const CHILD_DIR: &str = "OUTBOX_TEST_CHILD_DIR";
const CHILD_URL: &str = "OUTBOX_TEST_CHILD_URL";
const CRASH_TEST: &str = "a_crash_between_commit_and_cleanup_counts_nothing_twice";

/// Runs twice: as the test, and (with `CHILD_DIR` set) as the child process it starts, which
/// flushes with the failpoint set and aborts right after the commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_commit_and_cleanup_counts_nothing_twice() {
    if let (Ok(dir), Ok(url)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_URL)) {
        let store = reopen(Path::new(&dir));
        let pool = db::pool(&url, None, 2).unwrap();
        let flushed = flush_outbox(&store, &pool, "crashy", 100).await;
        panic!("the failpoint did not abort the flush: {flushed:?}");
    }
    let pg = Pg::any().await;
    let pool = pg.pool();
    let dir = tempfile::tempdir().unwrap();
    let deltas: Vec<_> = (1..=5).map(|n| batch("f", n, n)).collect();
    {
        let store = reopen(dir.path());
        for d in &deltas {
            store.outbox_append(d).await.unwrap();
        }
    }

    let child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([CRASH_TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir.path())
        .env(CHILD_URL, &pg.url)
        .env("ROLLGATE_FAILPOINT", "outbox-after-commit")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&child.stderr);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&child.status),
        Some(6),
        "the child aborts (SIGABRT) at the failpoint: {stderr}"
    );
    assert!(
        stderr.contains("aborting after the flush commit"),
        "{stderr}"
    );

    // The commit happened, the cleanup did not.
    let store = reopen(dir.path());
    assert_eq!(store.outbox_len(), 5);
    assert_eq!(totals(&pool, &[]).await.unwrap(), sum_of(&deltas));
    assert_eq!(
        prune_batches(&store, &pool, "crashy").await.unwrap(),
        0,
        "the ids of entries still pending are kept"
    );

    assert_eq!(flush_outbox(&store, &pool, "crashy", 100).await.unwrap(), 5);

    assert_eq!(store.outbox_len(), 0);
    assert_eq!(totals(&pool, &[]).await.unwrap(), sum_of(&deltas), "exact");
    assert_eq!(prune_batches(&store, &pool, "crashy").await.unwrap(), 5);
    assert_eq!(pg.batch_ids("crashy").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_flushing_concurrently_give_exact_sums() {
    let pg = Pg::any().await;
    let pool = pg.pool();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let nodes = [
        (Store::open(dir_a.path()).unwrap(), "a"),
        (Store::open(dir_b.path()).unwrap(), "b"),
    ];
    let mut all = Vec::new();
    for (i, (store, id)) in nodes.iter().enumerate() {
        assert_eq!(store.node_id(Some(id)).unwrap(), *id);
        for n in 1..=60u64 {
            let d = batch(if n % 3 == 0 { "g" } else { "f" }, n + i as u64, n * 7);
            store.outbox_append(&d).await.unwrap();
            all.push(d);
        }
    }

    let flushers: Vec<_> = nodes
        .iter()
        .map(|(store, id)| {
            let (store, pool, id) = (store.clone(), pool.clone(), id.to_string());
            tokio::spawn(async move {
                let mut flushed = 0;
                loop {
                    match flush_outbox(&store, &pool, &id, 7).await.unwrap() {
                        0 => return flushed,
                        n => flushed += n,
                    }
                }
            })
        })
        .collect();
    for flusher in flushers {
        assert_eq!(flusher.await.unwrap(), 60);
    }

    assert_eq!(totals(&pool, &[]).await.unwrap(), sum_of(&all));
    assert_eq!(pg.batch_ids("a").await + pg.batch_ids("b").await, 120);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_while_the_database_is_down_loses_nothing() {
    let pg = Pg::own().await;
    let pool = pg.pool();
    let dir = tempfile::tempdir().unwrap();
    let store = reopen(dir.path());
    let deltas: Vec<_> = (1..=4).map(|n| batch("f", n, n)).collect();
    store.outbox_append(&deltas[0]).await.unwrap();
    assert_eq!(flush_outbox(&store, &pool, "a", 100).await.unwrap(), 1);

    pg.kill();
    for d in &deltas[1..] {
        store.outbox_append(d).await.unwrap();
    }
    let failed = flush_outbox(&store, &pool, "a", 100).await;

    assert!(failed.is_err(), "{failed:?}");
    assert_eq!(store.outbox_len(), 3, "nothing left the outbox");
    pg.restart();
    assert_eq!(flush_outbox(&store, &pool, "a", 100).await.unwrap(), 3);
    assert_eq!(totals(&pool, &[]).await.unwrap(), sum_of(&deltas));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flusher_retries_through_an_outage_prunes_and_stops() {
    let pg = Pg::own().await;
    let pool = pg.pool();
    let dir = tempfile::tempdir().unwrap();
    let store = reopen(dir.path());
    let wake = Arc::new(tokio::sync::Notify::new());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let flusher = tokio::spawn(run_flusher(
        store.clone(),
        pool.clone(),
        "a".into(),
        wake.clone(),
        Duration::from_secs(3600), // only a wake flushes before the outage
        stopped,
    ));
    let first: Vec<_> = (1..=5).map(|n| batch("f", n, n)).collect();
    let second: Vec<_> = (6..=9).map(|n| batch("g", n, n)).collect();
    for d in &first {
        store.outbox_append(d).await.unwrap();
    }
    wake.notify_one();
    let (store, pool, pg) = (&store, &pool, &pg);
    let (first, second) = (&first, &second);
    eventually(
        "the first entries are counted and their ids pruned",
        move || async move {
            store.outbox_len() == 0
                && totals(pool, &[]).await.unwrap() == sum_of(first)
                && pg.batch_ids("a").await == 0
        },
    )
    .await;

    pg.kill();
    for d in second {
        store.outbox_append(d).await.unwrap();
    }
    wake.notify_one();
    tokio::time::sleep(Duration::from_millis(500)).await; // the outage: a few failed attempts
    assert_eq!(store.outbox_len(), 4);
    pg.restart();

    // The retries (not a wake, not the hour-long period) flush them once it is back.
    eventually("every entry is counted once", move || async move {
        store.outbox_len() == 0
            && totals(pool, &[])
                .await
                .is_ok_and(|t| t == sum_of(first.iter().chain(second)))
    })
    .await;
    assert_eq!(
        pg.batch_ids("a").await,
        4,
        "ids are pruned at most once a minute"
    );
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), flusher)
        .await
        .expect("the flusher stops on shutdown")
        .unwrap();
}
