//! What a cluster node follows in the database.
//!
//! The feed follower applies what other nodes committed, in revision order,
//! as soon as `LISTEN/NOTIFY` says so and at least every safety-poll interval (`--feed-poll`),
//! so a lost notification or a dead notification connection delays a change by at most that.
//!
//! Rows are read without any lock, then applied under the writer lock from the applied
//! revision on (rows this node already applied through its own commits are skipped). After
//! applying, the controller's watched set is refreshed (a release started on another node is
//! watched here too) and the controller is woken.
//!
//! The totals follower mirrors the global signal totals (every node's flushed outbox) into
//! `state.signals` when a node flushes (`rollgate_signals`) and at least every second, then
//! wakes the controller: the leader decides on global totals, and every node's status and
//! metrics show them.

use crate::cluster::{pg, Node};
use crate::state::AppState;
use actix_web::web;
use std::sync::Arc;
use tokio::sync::watch;

/// How many feed rows are read at a time.
const PAGE: i64 = 1000;

/// Follows the feed until `shutdown`.
pub async fn run(state: web::Data<AppState>, node: Arc<Node>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = node.wakes.feed.notified() => {}
            _ = tokio::time::sleep(node.config.feed_poll) => {}
            _ = shutdown.changed() => break,
        }
        if *shutdown.borrow() {
            break;
        }
        catch_up(&state, &node).await;
    }
    tracing::debug!("feed follower stopped");
}

/// Applies every committed row after this node's applied revision.
pub async fn catch_up(state: &AppState, node: &Node) {
    loop {
        let applied = state.hub.last_seq();
        let read = async {
            let client = node.pool.get().await?;
            pg::feed_after(&client, applied, PAGE).await
        };
        let rows = match read.await {
            Ok(rows) => {
                node.set_db_up(true);
                rows
            }
            Err(e) => {
                node.set_db_up(false);
                tracing::debug!(error = %e, "reading the change feed failed; retrying");
                return;
            }
        };
        let full_page = rows.len() as i64 == PAGE;
        let mut w = state.writer.lock().await;
        let applied = state.hub.last_seq();
        let rows: Vec<_> = rows.into_iter().filter(|r| r.revision > applied).collect();
        if rows.first().is_some_and(|r| r.revision != applied + 1) {
            // Something was applied in between that this page does not continue: read again.
            continue;
        }
        if !rows.is_empty() {
            match state.sinks().apply_feed(&mut w, rows).await {
                Ok(revision) => tracing::debug!(revision, "applied changes from the cluster"),
                Err(e) => {
                    tracing::error!(error = %e, "applying the change feed failed; retrying");
                    return;
                }
            }
            crate::controller::watch::refresh(state, &mut w);
            drop(w);
            state.wakeup.notify_one();
        }
        if !full_page {
            return;
        }
    }
}

/// How often the global totals are read when no flush is announced.
const TOTALS_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// Mirrors the global signal totals until `shutdown`.
pub async fn run_totals(
    state: web::Data<AppState>,
    node: Arc<Node>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = node.wakes.signals.notified() => {}
            _ = tokio::time::sleep(TOTALS_POLL) => {}
            _ = shutdown.changed() => break,
        }
        if *shutdown.borrow() {
            break;
        }
        match crate::cluster::signals::totals(&node.pool, &[]).await {
            Ok(totals) => {
                state.signals.set_totals(&totals);
                if state.lease.held() {
                    state.wakeup.notify_one();
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "reading the global signal totals failed; retrying")
            }
        }
    }
    tracing::debug!("totals follower stopped");
}
