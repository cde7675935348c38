//! The fenced controller lease on a real PostgreSQL: one holder at a time, hand-over on
//! shutdown, takeover after a paused holder's ttl with a new epoch, the fence refusing a
//! deposed holder, and a takeover waiting for a transaction that passed the fence.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code may panic on a broken fixture

#[path = "support/pg.rs"]
mod pg;

use pg::TestPg;
use rollgate::cluster::db;
use rollgate::cluster::lease::{check_fence, PgLease};
use rollgate::cluster::ClusterError;
use rollgate::lease::{Fence, Lease};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// One node's lease loop.
struct Node {
    lease: Arc<PgLease>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    /// When `on_acquired` was called, in order.
    acquired: mpsc::UnboundedReceiver<Instant>,
}

fn start(pg: &TestPg, name: &str, ttl: Duration) -> Node {
    let lease = PgLease::new(format!("{name}/{}", uuid::Uuid::now_v7()), ttl);
    let pool = db::pool(&pg.url, None, 4).unwrap();
    let (stop, shutdown) = watch::channel(false);
    let (tx, acquired) = mpsc::unbounded_channel();
    let task = tokio::spawn(lease.clone().run(pool, shutdown, move || {
        let _ = tx.send(Instant::now());
    }));
    Node {
        lease,
        stop,
        task,
        acquired,
    }
}

async fn migrated(pg: &TestPg) -> tokio_postgres::Client {
    let mut client = pg.connect().await;
    db::migrate(&mut client).await.unwrap();
    client
}

/// Waits (at most `within`) until `cond` holds; returns how long it took.
async fn wait_until(within: Duration, what: &str, cond: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < within, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    start.elapsed()
}

/// The lease row as the database has it: (holder, epoch, live on the database clock).
async fn row(client: &tokio_postgres::Client) -> (Option<String>, i64, bool) {
    let r = client
        .query_one(
            "SELECT holder, epoch, expires_at > clock_timestamp() FROM rollgate_lease WHERE name = 'controller'",
            &[],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1), r.get(2))
}

#[tokio::test]
async fn only_one_of_two_nodes_holds_the_lease() {
    let pg = TestPg::fresh().await;
    let client = migrated(&pg).await;
    let ttl = Duration::from_millis(600);
    let (a, b) = (start(&pg, "a", ttl), start(&pg, "b", ttl));

    wait_until(Duration::from_secs(5), "a holder", || {
        a.lease.held() || b.lease.held()
    })
    .await;
    // Over several renewal periods, never both and never neither.
    let until = Instant::now() + ttl * 3;
    while Instant::now() < until {
        assert!(
            a.lease.held() != b.lease.held(),
            "exactly one holds the lease"
        );
        tokio::time::sleep(Duration::from_millis(3)).await;
    }

    let holder = if a.lease.held() { &a } else { &b };
    let (name, epoch, live) = row(&client).await;
    assert_eq!(name.as_deref(), Some(holder.lease.holder()));
    assert_eq!(holder.lease.epoch(), Some(epoch));
    assert!(live);
    assert_eq!(epoch, 1, "the first holder of a new database has epoch 1");
    let fence = holder.lease.fence().unwrap();
    assert_eq!(
        (fence.holder.as_str(), fence.epoch),
        (holder.lease.holder(), epoch)
    );
}

#[tokio::test]
async fn a_holder_that_shuts_down_hands_the_lease_over_at_once() {
    let pg = TestPg::fresh().await;
    let client = migrated(&pg).await;
    let ttl = Duration::from_secs(3);
    let mut a = start(&pg, "a", ttl);
    wait_until(Duration::from_secs(5), "a to hold", || a.lease.held()).await;
    assert!(a.acquired.try_recv().is_ok(), "on_acquired was called");
    let epoch = a.lease.epoch().unwrap();
    let fence = a.lease.fence().unwrap();
    let mut b = start(&pg, "b", ttl);

    let stopped = Instant::now();
    a.stop.send(true).unwrap();
    a.task.await.unwrap();
    assert!(!a.lease.held(), "a stopped node holds nothing");
    // Given up, the lease still names a with its epoch, but has expired: a's fence fails.
    let mut client = client;
    let tx = client.transaction().await.unwrap();
    assert!(matches!(
        check_fence(&tx, &fence).await,
        Err(ClusterError::Fenced { .. })
    ));
    drop(tx);
    let took = wait_until(ttl, "b to take over", || b.lease.held()).await;

    // Waiting for expiry would take at least ttl - ttl/3 = 2 s after a's last renewal;
    // given up, the lease goes at b's next attempt (every ttl/3 = 1 s).
    assert!(
        stopped.elapsed() < Duration::from_millis(1_500),
        "took {took:?}"
    );
    assert_eq!(b.lease.epoch(), Some(epoch + 1));
    assert!(b.acquired.try_recv().is_ok(), "b's on_acquired was called");
    let (name, db_epoch, live) = row(&client).await;
    assert_eq!(
        (name.as_deref(), db_epoch, live),
        (Some(b.lease.holder()), epoch + 1, true)
    );
}

#[tokio::test]
async fn a_paused_holder_is_replaced_after_the_ttl_and_its_decision_is_fenced() {
    let pg = TestPg::fresh().await;
    let mut client = migrated(&pg).await;
    let ttl = Duration::from_millis(900);
    let a = start(&pg, "a", ttl);
    wait_until(Duration::from_secs(5), "a to hold", || a.lease.held()).await;
    let old = a.lease.fence().unwrap();
    let mut b = start(&pg, "b", ttl);

    // "Pause" a: its loop stops without giving anything up.
    a.task.abort();
    let paused = Instant::now();
    wait_until(ttl * 4, "b to take over", || b.lease.held()).await;
    let took = paused.elapsed();

    // a's last renewal was at most ttl/3 before the pause; its database expiry is ttl after it.
    assert!(
        took >= ttl - ttl / 3,
        "taken over after {took:?}, before a's lease ran out"
    );
    assert_eq!(b.lease.epoch(), Some(old.epoch + 1));
    assert!(b.acquired.try_recv().is_ok());
    assert!(
        !a.lease.held(),
        "a's local belief ran out before the database's expiry"
    );

    // a wakes up with a decision under its old fence: refused, and nothing it wrote stays.
    let tx = client.transaction().await.unwrap();
    tx.execute(
        "INSERT INTO rollgate_meta (key, value) VALUES ('decision', 'a')",
        &[],
    )
    .await
    .unwrap();
    let refused = check_fence(&tx, &old).await;
    assert!(
        matches!(refused, Err(ClusterError::Fenced { epoch }) if epoch == old.epoch),
        "{refused:?}"
    );
    drop(tx); // the caller rolls back on Err
    let written: i64 = client
        .query_one(
            "SELECT count(*) FROM rollgate_meta WHERE key = 'decision'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(written, 0, "the fenced transaction wrote nothing");

    // The same name with a stale epoch is refused too; the current fence passes.
    let stale = Fence {
        holder: b.lease.holder().to_owned(),
        epoch: old.epoch,
    };
    let tx = client.transaction().await.unwrap();
    assert!(matches!(
        check_fence(&tx, &stale).await,
        Err(ClusterError::Fenced { .. })
    ));
    drop(tx);
    let tx = client.transaction().await.unwrap();
    check_fence(&tx, &b.lease.fence().unwrap()).await.unwrap();
    tx.commit().await.unwrap();
}

/// The order a takeover and a fenced decision take: the decision's transaction locks the lease
/// row FOR SHARE in `check_fence`; the new holder's UPDATE of that row waits until the decision
/// commits; only then does the new epoch exist, and the decision is already visible to it.
#[tokio::test]
async fn a_takeover_waits_for_an_open_transaction_that_passed_the_fence() {
    let pg = TestPg::fresh().await;
    let mut client = migrated(&pg).await;
    let observer = pg.connect().await;
    let ttl = Duration::from_millis(600);
    let a = start(&pg, "a", ttl);
    wait_until(Duration::from_secs(5), "a to hold", || a.lease.held()).await;
    let fence = a.lease.fence().unwrap();

    let tx = client.transaction().await.unwrap();
    check_fence(&tx, &fence).await.unwrap();
    a.task.abort(); // a pauses mid-decision
    let mut b = start(&pg, "b", ttl);

    // Well past a's lease, b still cannot take it: its UPDATE waits for the open transaction.
    tokio::time::sleep(ttl * 3).await;
    let (name, epoch, live) = row(&observer).await;
    assert_eq!(
        (name.as_deref(), epoch),
        (Some(fence.holder.as_str()), fence.epoch)
    );
    assert!(!live, "a's lease has expired on the database clock");
    assert!(!b.lease.held());

    tx.execute(
        "INSERT INTO rollgate_meta (key, value) VALUES ('decision', 'a')",
        &[],
    )
    .await
    .unwrap();
    // (b's UPDATE and this commit's answer race back to two clients, so the instant taken is
    // the one before committing.)
    let committing = Instant::now();
    tx.commit().await.unwrap();
    wait_until(ttl * 3, "b to take over", || b.lease.held()).await;

    let acquired_at = b.acquired.recv().await.unwrap();
    assert!(
        acquired_at > committing,
        "b acquired only once the decision was committing"
    );
    assert_eq!(b.lease.epoch(), Some(fence.epoch + 1));
    let decision: String = observer
        .query_one(
            "SELECT value FROM rollgate_meta WHERE key = 'decision'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(decision, "a");
}

#[tokio::test]
async fn a_holder_that_loses_the_database_stops_believing_by_its_deadline_and_regains_it() {
    let pg = TestPg::own();
    migrated(&pg).await;
    let ttl = Duration::from_millis(900);
    let mut a = start(&pg, "a", ttl);
    wait_until(Duration::from_secs(5), "a to hold", || a.lease.held()).await;
    let epoch = a.lease.epoch().unwrap();
    a.acquired.recv().await.unwrap();

    pg.kill();
    let lost = wait_until(ttl * 2, "a to stop holding", || !a.lease.held()).await;
    // Believed at most the validity (4/5 ttl) after the last renewal was sent.
    assert!(
        lost <= ttl,
        "held for {lost:?} after the database went away"
    );

    pg.restart();
    wait_until(Duration::from_secs(10), "a to hold again", || {
        a.lease.held()
    })
    .await;
    assert_eq!(
        a.lease.epoch(),
        Some(epoch),
        "nobody else held it: same holder, same epoch"
    );
    assert!(
        a.acquired.recv().await.is_some(),
        "on_acquired is called again: the controller must wake"
    );
}
