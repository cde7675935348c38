//! Signal totals across nodes, counted exactly once: each node's outbox (`store/outbox.rs`) is
//! flushed into PostgreSQL idempotently, and the leader reads the global totals.
//!
//! Invariants:
//! - A batch id is `(node, seq)`. One transaction inserts the ids of the flushed entries into
//!   `rollgate_signal_batches` (`ON CONFLICT DO NOTHING`) and adds to the totals only the
//!   deltas of the ids it actually inserted, so a flush retried or replayed after a crash
//!   (between the commit and the outbox cleanup) counts nothing twice.
//! - Entries leave the outbox only after that transaction committed; an unreachable database
//!   leaves them where they are (never dropped).
//! - Batch ids are pruned only below the node's smallest pending sequence number, and only
//!   after the outbox's removals are synced: an id whose entry might reappear is never pruned.
//! - Counts are clamped at `i64::MAX` (the column type) and sums kept finite, in SQL too.
//! - Latency sketches travel in the same deltas and are added bucket by bucket into
//!   `rollgate_signal_sketches` in the same transaction as the counts.

use super::db::Pool;
use super::ClusterError;
use crate::signals::sketch::SavedSketch;
use crate::signals::{MetricTotals, SavedAggregates};
use crate::store::Store;
use std::collections::HashSet;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

/// The failpoint that aborts the process between the flush commit and the outbox cleanup
/// (test only; docs/cluster.md).
const FAILPOINT_AFTER_COMMIT: &str = "outbox-after-commit";

/// How often the flusher prunes this node's batch ids at most.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Longest wait between two attempts while the database is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Entries per flush transaction in the background loop.
const FLUSH_LIMIT: usize = 1000;

/// Whether `ROLLGATE_FAILPOINT=outbox-after-commit` was set when first asked.
fn abort_after_commit() -> bool {
    static SET: OnceLock<bool> = OnceLock::new();
    *SET.get_or_init(|| {
        std::env::var("ROLLGATE_FAILPOINT").is_ok_and(|v| v == FAILPOINT_AFTER_COMMIT)
    })
}

/// Clamps a count to the database's `bigint`.
fn to_db(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// Sums of a series in the database (a `float8` addition that would overflow raises an error
/// in PostgreSQL, so large operands are added as `numeric` and clamped).
const ADD_SUM: &str = "CASE WHEN abs(t.sum) < 8.9e307 AND abs(EXCLUDED.sum) < 8.9e307 \
     THEN t.sum + EXCLUDED.sum \
     ELSE greatest(least(t.sum::numeric + EXCLUDED.sum::numeric, 1.7976931348623157e308::numeric), \
                   -1.7976931348623157e308::numeric)::float8 END";

/// Adds two `bigint` counts, clamped at `i64::MAX`.
fn add_count(column: &str) -> String {
    format!("least(t.{column}::numeric + EXCLUDED.{column}::numeric, 9223372036854775807)::bigint")
}

/// Flushes up to `limit` pending outbox entries in one transaction (see the module header),
/// sends `NOTIFY rollgate_signals, '<node>'` in it, commits, then removes them from the
/// outbox. Returns how many entries left the outbox (0 when none were pending), counting those
/// the database had already counted.
pub async fn flush_outbox(
    store: &Store,
    pool: &Pool,
    node: &str,
    limit: usize,
) -> Result<usize, ClusterError> {
    let pending = store.outbox_pending(limit)?;
    let Some(&(upto, _)) = pending.last() else {
        return Ok(0);
    };
    let seqs: Vec<i64> = pending.iter().map(|(seq, _)| to_db(*seq)).collect();
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let inserted: HashSet<i64> = tx
        .query(
            "INSERT INTO rollgate_signal_batches (node, seq) SELECT $1, unnest($2::bigint[]) \
             ON CONFLICT DO NOTHING RETURNING seq",
            &[&node, &seqs],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut delta = SavedAggregates::default();
    for (seq, entry) in &pending {
        if inserted.contains(&to_db(*seq)) {
            delta.merge(entry);
        }
    }
    add_totals(&tx, &delta).await?;
    tx.execute("SELECT pg_notify('rollgate_signals', $1)", &[&node])
        .await?;
    tx.commit().await?;
    if abort_after_commit() {
        eprintln!("ROLLGATE_FAILPOINT={FAILPOINT_AFTER_COMMIT}: aborting after the flush commit");
        std::process::abort();
    }
    store.outbox_remove_through(upto)?;
    tracing::debug!(
        node,
        entries = pending.len(),
        counted = inserted.len(),
        upto,
        "signal outbox flushed"
    );
    Ok(pending.len())
}

/// Adds `delta` (series with unique keys) to the global totals and last-signal times.
async fn add_totals(
    tx: &deadpool_postgres::Transaction<'_>,
    delta: &SavedAggregates,
) -> Result<(), ClusterError> {
    let (mut flags, mut variants, mut metrics) = (Vec::new(), Vec::new(), Vec::new());
    let (mut counts, mut sums, mut valued) = (Vec::new(), Vec::new(), Vec::new());
    for (flag, variant, metric, t) in delta.iter() {
        flags.push(flag);
        variants.push(variant);
        metrics.push(metric);
        counts.push(to_db(t.count));
        sums.push(if t.sum.is_finite() { t.sum } else { 0.0 });
        valued.push(to_db(t.valued));
    }
    if !flags.is_empty() {
        let sql = format!(
            "INSERT INTO rollgate_signal_totals AS t (flag, variant, metric, count, sum, valued) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], \
                                  $5::float8[], $6::bigint[]) \
             ON CONFLICT (flag, variant, metric) DO UPDATE SET \
             count = {}, sum = {ADD_SUM}, valued = {}",
            add_count("count"),
            add_count("valued"),
        );
        tx.execute(
            &sql,
            &[&flags, &variants, &metrics, &counts, &sums, &valued],
        )
        .await?;
    }
    add_sketches(tx, delta).await?;
    let (seen_flags, seen_ms): (Vec<&str>, Vec<i64>) =
        delta.last_signals().map(|(f, ms)| (f, to_db(ms))).unzip();
    if !seen_flags.is_empty() {
        tx.execute(
            "INSERT INTO rollgate_signal_seen AS t (flag, last_signal_ms) \
             SELECT * FROM unnest($1::text[], $2::bigint[]) \
             ON CONFLICT (flag) DO UPDATE SET \
             last_signal_ms = greatest(t.last_signal_ms, EXCLUDED.last_signal_ms)",
            &[&seen_flags, &seen_ms],
        )
        .await?;
    }
    Ok(())
}

/// Adds the sketch buckets of `delta` to the global sketches (also used by
/// `rollgate migrate` to copy a single server's sketches).
pub(crate) async fn add_sketches(
    tx: &tokio_postgres::Transaction<'_>,
    delta: &SavedAggregates,
) -> Result<(), ClusterError> {
    let (mut flags, mut variants, mut metrics) = (Vec::new(), Vec::new(), Vec::new());
    let (mut buckets, mut counts) = (Vec::new(), Vec::new());
    for (flag, variant, metric, sketch) in delta.sketches() {
        for (bucket, count) in sketch.iter() {
            flags.push(flag);
            variants.push(variant);
            metrics.push(metric);
            buckets.push(bucket);
            counts.push(to_db(count));
        }
    }
    if flags.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO rollgate_signal_sketches AS t (flag, variant, metric, bucket, count) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::bigint[]) \
         ON CONFLICT (flag, variant, metric, bucket) DO UPDATE SET count = {}",
        add_count("count"),
    );
    tx.execute(&sql, &[&flags, &variants, &metrics, &buckets, &counts])
        .await?;
    Ok(())
}

/// Global totals of `flags` (of every flag when empty).
pub async fn totals(pool: &Pool, flags: &[String]) -> Result<SavedAggregates, ClusterError> {
    let client = pool.get().await?;
    let all = flags.is_empty();
    let series = client
        .query(
            "SELECT flag, variant, metric, count, sum, valued FROM rollgate_signal_totals \
             WHERE $1 OR flag = ANY($2)",
            &[&all, &flags],
        )
        .await?;
    let seen = client
        .query(
            "SELECT flag, last_signal_ms FROM rollgate_signal_seen WHERE $1 OR flag = ANY($2)",
            &[&all, &flags],
        )
        .await?;
    let mut out = SavedAggregates::default();
    for row in &series {
        let (count, sum, valued): (i64, f64, i64) = (row.get(3), row.get(4), row.get(5));
        out.add(
            row.get(0),
            row.get(1),
            row.get(2),
            MetricTotals {
                count: u64::try_from(count).unwrap_or(0),
                sum,
                valued: u64::try_from(valued).unwrap_or(0),
            },
        );
    }
    for row in &seen {
        let ms: i64 = row.get(1);
        out.touch(row.get(0), u64::try_from(ms).unwrap_or(0));
    }
    let sketches = client
        .query(
            "SELECT flag, variant, metric, bucket, count FROM rollgate_signal_sketches \
             WHERE $1 OR flag = ANY($2)",
            &[&all, &flags],
        )
        .await?;
    for row in &sketches {
        let (bucket, count): (i32, i64) = (row.get(3), row.get(4));
        let mut one = SavedSketch::default();
        one.add_at(bucket, u64::try_from(count).unwrap_or(0));
        out.add_sketch(row.get(0), row.get(1), row.get(2), &one);
    }
    Ok(out)
}

/// Deletes this node's batch ids below its smallest pending sequence number (the next number
/// when the outbox is empty), after syncing the outbox so no removed entry can come back.
/// Returns how many ids it deleted.
pub async fn prune_batches(store: &Store, pool: &Pool, node: &str) -> Result<u64, ClusterError> {
    store.flush().await?;
    let below = match store.outbox_pending(1)?.first() {
        Some((seq, _)) => *seq,
        // Entries still syncing are not pending yet, but their numbers are below the next one
        // and were never sent: no id of theirs is in the database.
        None => store.outbox_next_seq(),
    };
    let client = pool.get().await?;
    let deleted = client
        .execute(
            "DELETE FROM rollgate_signal_batches WHERE node = $1 AND seq < $2",
            &[&node, &to_db(below)],
        )
        .await?;
    Ok(deleted)
}

/// The background flusher: flushes whenever `wake` is notified and at least every `every`,
/// draining the whole outbox each time; retries with backoff (up to 1 s) while the database
/// is unreachable, never dropping an entry; prunes batch ids at most once a minute (after a
/// flush that moved entries). Ends when
/// `shutdown` turns true (or its sender is dropped), after one last bounded attempt.
pub async fn run_flusher(
    store: Store,
    pool: Pool,
    node: String,
    wake: Arc<Notify>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut last_prune: Option<Instant> = None;
    let mut flushed_since_prune = false;
    let mut backoff = Duration::ZERO;
    loop {
        let wait = if backoff.is_zero() { every } else { backoff };
        // While backing off, new batches do not cut the wait short: an unreachable database
        // is not retried once per batch (the retry after the wait sends them too).
        let stopping = *shutdown.borrow()
            || tokio::select! {
                _ = wake.notified(), if backoff.is_zero() => false,
                _ = tokio::time::sleep(wait) => false,
                changed = shutdown.changed() => changed.is_err() || *shutdown.borrow(),
            };
        if stopping {
            let last = drain(&store, &pool, &node);
            if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(2), last).await {
                tracing::warn!(error = %e, pending = store.outbox_len(), "signal outbox not flushed at shutdown; it is kept for the next start");
            }
            return;
        }
        match drain(&store, &pool, &node).await {
            Ok(flushed) => {
                backoff = Duration::ZERO;
                flushed_since_prune |= flushed > 0;
            }
            Err(e) => {
                backoff = (backoff * 2).clamp(Duration::from_millis(50), MAX_BACKOFF);
                tracing::warn!(error = %e, pending = store.outbox_len(), retry_in = ?backoff, "flushing the signal outbox failed");
                continue;
            }
        }
        if flushed_since_prune && last_prune.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
            match prune_batches(&store, &pool, &node).await {
                Ok(deleted) => {
                    last_prune = Some(Instant::now());
                    flushed_since_prune = false;
                    tracing::debug!(node, deleted, "signal batch ids pruned");
                }
                Err(e) => tracing::warn!(error = %e, "pruning signal batch ids failed"),
            }
        }
    }
}

/// Flushes until fewer than a full transaction's worth remained; returns how many entries
/// left the outbox.
async fn drain(store: &Store, pool: &Pool, node: &str) -> Result<usize, ClusterError> {
    let mut total = 0;
    loop {
        let flushed = flush_outbox(store, pool, node, FLUSH_LIMIT).await?;
        total += flushed;
        if flushed < FLUSH_LIMIT {
            return Ok(total);
        }
    }
}
