//! The controller lease on PostgreSQL: one row (`rollgate_lease`, name `controller`) names the
//! node that may step releases, until a time on the DATABASE's clock; its epoch fences every
//! decision.
//!
//! Invariants and why they hold:
//! - Expiry is decided by the database alone (`clock_timestamp()`): one clock for every node,
//!   so two nodes never disagree about whether the lease has run out.
//! - Acquiring and renewing are one `UPDATE … WHERE holder = me OR expires_at < now`: at most
//!   one node matches at a time. The epoch grows by one whenever the holder changes, so a
//!   deposed holder's epoch is never current again.
//! - [`PgLease::held`] is a local belief, measured on the MONOTONIC clock from the moment the
//!   renewal was sent, and shorter than the ttl by a safety margin: the database's expiry
//!   (taken later, when the statement ran) is always after it. A process that was stopped
//!   past its lease wakes up believing nothing; a failed renewal (database down) ends the
//!   belief at the same deadline. The belief is an optimisation, not the guarantee.
//! - The guarantee is [`check_fence`], run inside the transaction that commits a decision: it
//!   locks the lease row `FOR SHARE`, so a takeover (an `UPDATE` of that row) waits until that
//!   transaction ends. Order: a decision that passed the fence commits BEFORE the new epoch
//!   exists, and the new holder, which reads the state after acquiring, sees it; a decision
//!   checked after the takeover committed sees the new holder or epoch and is refused.
//! - A renewal waits at most a third of the ttl (`statement_timeout`, then a client timeout that
//!   discards the connection), so a stuck database or a long fenced transaction costs a missed
//!   renewal, never a stuck loop.
//!
//! The transitions (acquired, kept, lost) are a pure function of the previous tenure and the
//! renewal's outcome ([`after_attempt`]); `run` is the thin loop around it.

use super::db::Pool;
use super::ClusterError;
use crate::lease::{Fence, Lease};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The lease row's name.
const NAME: &str = "controller";

/// Acquires or renews: matches only when this node holds the lease, it has expired, or its
/// holder is an earlier incarnation of this node (the part before `/` is the node id, unique
/// per data dir: a restarted node need not wait out its dead predecessor's lease; two live
/// processes given the same `--node-id` would take it from each other, which the fence keeps
/// safe); bumps the epoch when the holder changes. `SET` expressions read the row's old values.
const ACQUIRE: &str = "UPDATE rollgate_lease \
     SET epoch = CASE WHEN holder IS DISTINCT FROM $2 THEN epoch + 1 ELSE epoch END, \
         holder = $2, \
         expires_at = clock_timestamp() + $3::float8 * interval '1 second' \
     WHERE name = $1 AND (holder = $2 OR expires_at < clock_timestamp() \
         OR split_part(holder, '/', 1) = split_part($2, '/', 1)) \
     RETURNING epoch";

/// Gives the lease up at once (the holder stays named for the record).
const GIVE_UP: &str = "UPDATE rollgate_lease SET expires_at = '-infinity' \
     WHERE name = $1 AND holder = $2";

/// The fence's read: the row locked `FOR SHARE`, and whether it is still live.
const FENCE: &str = "SELECT holder, epoch, expires_at > clock_timestamp() \
     FROM rollgate_lease WHERE name = $1 FOR SHARE";

/// The controller lease of a cluster node.
#[derive(Debug)]
pub struct PgLease {
    holder: String,
    ttl: Duration,
    tenure: Mutex<Option<Tenure>>,
}

/// What this node believes it holds: the epoch, until a local monotonic deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tenure {
    epoch: i64,
    until: Instant,
}

/// What one acquire/renew attempt found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// This node holds the lease with this epoch.
    Held(i64),
    /// Another node holds it.
    Taken,
    /// The attempt failed (database unreachable, timeout).
    Failed,
}

/// A change of this node's tenure, to log and act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transition {
    Acquired(i64),
    Lost(i64),
    None,
}

/// How long a renewal sent at some instant lets this node believe it holds the lease: the ttl
/// minus a fifth of it, for clocks that run at slightly different rates.
fn validity(ttl: Duration) -> Duration {
    ttl.saturating_sub(ttl / 5)
}

/// The pure core: the tenure after an attempt sent at `sent` with `outcome`, seen at `now`.
fn after_attempt(
    prev: Option<Tenure>,
    outcome: Outcome,
    sent: Instant,
    now: Instant,
    validity: Duration,
) -> (Option<Tenure>, Transition) {
    let live = prev.filter(|t| now < t.until);
    match outcome {
        Outcome::Held(epoch) => {
            let next = Tenure {
                epoch,
                until: sent + validity,
            };
            if now >= next.until {
                // The answer came too late to be believed.
                let lost = live.map_or(Transition::None, |t| Transition::Lost(t.epoch));
                return (None, lost);
            }
            let transition = match live {
                Some(t) if t.epoch == epoch => Transition::None,
                _ => Transition::Acquired(epoch),
            };
            (Some(next), transition)
        }
        Outcome::Taken => (
            None,
            prev.map_or(Transition::None, |t| Transition::Lost(t.epoch)),
        ),
        Outcome::Failed => match (prev, live) {
            (_, Some(t)) => (Some(t), Transition::None),
            (Some(t), None) => (None, Transition::Lost(t.epoch)),
            (None, None) => (None, Transition::None),
        },
    }
}

impl PgLease {
    /// A lease for `holder` ("<node_id>/<incarnation uuid>", fresh per process) lasting `ttl`
    /// without renewal. Holds nothing until [`PgLease::run`] acquires it.
    pub fn new(holder: String, ttl: Duration) -> Arc<Self> {
        Arc::new(PgLease {
            holder,
            ttl: ttl.max(Duration::from_millis(30)),
            tenure: Mutex::new(None),
        })
    }

    /// This node's name as lease holder.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// The epoch while this node holds the lease.
    pub fn epoch(&self) -> Option<i64> {
        self.live().map(|t| t.epoch)
    }

    fn live(&self) -> Option<Tenure> {
        let tenure = *self.tenure.lock().unwrap_or_else(|e| e.into_inner());
        tenure.filter(|t| Instant::now() < t.until)
    }

    /// Acquires and renews every ttl/3 until `shutdown` turns true (or its sender is dropped),
    /// then gives the lease up so another node takes over at once. Calls `on_acquired` each
    /// time this node becomes the holder.
    pub async fn run(
        self: Arc<Self>,
        pool: Pool,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
        on_acquired: impl Fn() + Send + 'static,
    ) {
        let period = self.ttl / 3;
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if *shutdown.borrow() {
                break;
            }
            tokio::select! {
                _ = ticks.tick() => {}
                changed = shutdown.changed() => {
                    if changed.is_err() { break; }
                    continue;
                }
            }
            let sent = Instant::now();
            let outcome = match self.attempt(&pool, ACQUIRE, period).await {
                Ok(Some(epoch)) => Outcome::Held(epoch),
                Ok(None) => Outcome::Taken,
                Err(e) => {
                    tracing::warn!(holder = %self.holder, error = %e, "lease renewal failed");
                    Outcome::Failed
                }
            };
            if self.record(outcome, sent) {
                on_acquired();
            }
        }
        self.give_up(&pool, period).await;
    }

    /// Applies an attempt's outcome; logs the transition; true when this node just acquired.
    fn record(&self, outcome: Outcome, sent: Instant) -> bool {
        let transition = {
            let mut tenure = self.tenure.lock().unwrap_or_else(|e| e.into_inner());
            let (next, transition) =
                after_attempt(*tenure, outcome, sent, Instant::now(), validity(self.ttl));
            *tenure = next;
            transition
        };
        match transition {
            Transition::Acquired(epoch) => {
                tracing::info!(holder = %self.holder, epoch, "controller lease acquired");
                true
            }
            Transition::Lost(epoch) => {
                tracing::info!(holder = %self.holder, epoch, "controller lease lost");
                false
            }
            Transition::None => false,
        }
    }

    async fn give_up(&self, pool: &Pool, period: Duration) {
        let had = self.tenure.lock().unwrap_or_else(|e| e.into_inner()).take();
        match self.attempt(pool, GIVE_UP, period).await {
            Ok(_) => {
                if let Some(t) = had {
                    tracing::info!(holder = %self.holder, epoch = t.epoch, "controller lease given up");
                }
            }
            Err(e) => {
                tracing::warn!(holder = %self.holder, error = %e, "giving the lease up failed; it expires by itself")
            }
        }
    }

    /// Runs `sql` (ACQUIRE or GIVE_UP) in its own transaction, waiting at most `limit`: the
    /// database cancels it then, and a connection whose answer does not come back is dropped
    /// rather than returned to the pool with a statement still running.
    async fn attempt(
        &self,
        pool: &Pool,
        sql: &str,
        limit: Duration,
    ) -> Result<Option<i64>, ClusterError> {
        let mut client = tokio::time::timeout(limit, pool.get())
            .await
            .map_err(|_| ClusterError::Timeout("a connection for the lease"))??;
        let ttl = self.ttl.as_secs_f64();
        let work = async {
            let tx = client.transaction().await?;
            tx.batch_execute(&format!(
                "SET LOCAL statement_timeout = {}",
                limit.as_millis().max(1)
            ))
            .await?;
            let row = if sql == ACQUIRE {
                tx.query_opt(sql, &[&NAME, &self.holder, &ttl]).await?
            } else {
                tx.execute(sql, &[&NAME, &self.holder]).await?;
                None
            };
            tx.commit().await?;
            Ok::<_, ClusterError>(row.map(|r| r.get::<_, i64>(0)))
        };
        match tokio::time::timeout(limit + limit / 2, work).await {
            Ok(result) => result,
            Err(_) => {
                drop(deadpool_postgres::Object::take(client));
                Err(ClusterError::Timeout("the lease renewal"))
            }
        }
    }
}

impl Lease for PgLease {
    fn held(&self) -> bool {
        self.live().is_some()
    }

    fn fence(&self) -> Option<Fence> {
        self.live().map(|t| Fence {
            holder: self.holder.clone(),
            epoch: t.epoch,
        })
    }
}

/// The fence, run INSIDE the caller's transaction just before it writes a controller decision:
/// locks the lease row `FOR SHARE` (a takeover then waits for this transaction to end) and
/// checks that it still names `fence.holder` and `fence.epoch` and has not expired on the
/// database's clock. `Err(ClusterError::Fenced)` otherwise; the caller then rolls back.
pub async fn check_fence<C: tokio_postgres::GenericClient>(
    tx: &C,
    fence: &Fence,
) -> Result<(), ClusterError> {
    let row = tx.query_opt(FENCE, &[&NAME]).await?;
    let current = row.is_some_and(|r| {
        let holder: Option<String> = r.get(0);
        let epoch: i64 = r.get(1);
        let live: bool = r.get(2);
        live && epoch == fence.epoch && holder.as_deref() == Some(fence.holder.as_str())
    });
    if current {
        Ok(())
    } else {
        Err(ClusterError::Fenced { epoch: fence.epoch })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: Duration = Duration::from_secs(4);

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    #[test]
    fn a_first_success_acquires_until_the_send_time_plus_the_validity() {
        let t0 = Instant::now();
        let (next, tr) = after_attempt(None, Outcome::Held(3), t0, at(t0, 100), V);
        assert_eq!(tr, Transition::Acquired(3));
        assert_eq!(next.map(|t| t.until), Some(t0 + V));
    }

    #[test]
    fn a_renewal_with_the_same_epoch_is_no_transition() {
        let t0 = Instant::now();
        let prev = Some(Tenure {
            epoch: 3,
            until: t0 + V,
        });
        let (next, tr) = after_attempt(prev, Outcome::Held(3), at(t0, 1000), at(t0, 1010), V);
        assert_eq!(tr, Transition::None);
        assert_eq!(next.map(|t| t.until), Some(at(t0, 1000) + V));
    }

    #[test]
    fn a_failed_renewal_keeps_the_tenure_only_until_its_deadline() {
        let t0 = Instant::now();
        let prev = Some(Tenure {
            epoch: 3,
            until: t0 + V,
        });
        let (kept, tr) = after_attempt(prev, Outcome::Failed, at(t0, 1000), at(t0, 1500), V);
        assert_eq!((kept, tr), (prev, Transition::None));
        let (gone, tr) = after_attempt(prev, Outcome::Failed, at(t0, 4000), at(t0, 4001), V);
        assert_eq!((gone, tr), (None, Transition::Lost(3)));
    }

    #[test]
    fn a_success_answered_after_its_own_deadline_is_not_believed() {
        // A process stopped between sending and reading the answer.
        let t0 = Instant::now();
        let (next, tr) = after_attempt(None, Outcome::Held(5), t0, at(t0, 9000), V);
        assert_eq!((next, tr), (None, Transition::None));
    }

    #[test]
    fn being_taken_over_loses_and_regaining_after_a_lapse_acquires_again() {
        let t0 = Instant::now();
        let prev = Some(Tenure {
            epoch: 3,
            until: t0 + V,
        });
        let (next, tr) = after_attempt(prev, Outcome::Taken, at(t0, 10), at(t0, 20), V);
        assert_eq!((next, tr), (None, Transition::Lost(3)));
        // Lapsed locally (database down), then the database still names us: acquired again.
        let (_, tr) = after_attempt(prev, Outcome::Held(3), at(t0, 5000), at(t0, 5010), V);
        assert_eq!(tr, Transition::Acquired(3));
    }

    #[test]
    fn the_validity_is_shorter_than_the_ttl() {
        assert_eq!(validity(Duration::from_secs(5)), Duration::from_secs(4));
    }
}
