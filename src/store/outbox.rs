//! The signal outbox of a cluster node: batches of signals accepted by this node and not yet
//! counted in PostgreSQL (`cluster::signals` moves them there), and the node's id.
//!
//! Tree `outbox`: key = the entry's sequence number (8 bytes, big-endian, so key order is
//! sequence order), value = the batch's delta (`SavedAggregates`, `codec`-encoded).
//!
//! Invariants (what exactly-once in the database rests on; `(node, seq)` is the batch id):
//! - A sequence number is never reused for another delta once the database may have seen it.
//!   Numbers are handed out and inserted in one step under a lock, so the tree receives them in
//!   increasing order; the flusher sees only entries already synced to disk (`durable`), so an
//!   entry lost by a crash before its sync was never sent and its number may be reused. When
//!   entries are removed, the highest removed number is kept in `meta/outbox_seq` in the same
//!   transaction, so numbering resumes above it after a restart even with an empty outbox.
//! - Because entries arrive in order and only a synced prefix is visible, [`Store::outbox_pending`]
//!   returns every entry below the last one it returns: removing "through" that one removes
//!   only what was sent.
//! - An append returns only once the entry is on stable storage; concurrent appends share one
//!   flush-and-sync step (the store's group commit, `durable.rs`).

use super::{codec, corrupt, Store, StoreError};
use crate::signals::SavedAggregates;
use sled::transaction::ConflictableTransactionError;
use sled::Transactional;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// Key of the removal high-water mark in `meta`.
const HIGH_WATER: &[u8] = b"outbox_seq";
/// Key of the node id in `meta`.
const NODE_ID: &[u8] = b"node_id";

/// Sequence numbering and counters of the outbox, shared by every clone of the store.
pub(super) struct OutboxState {
    /// The next number to hand out; held while the entry is inserted.
    next: Mutex<u64>,
    /// Every entry numbered up to this one that is still in the tree is on stable storage.
    durable: AtomicU64,
    /// Entries in the tree (sled's own `len` scans the whole tree).
    len: AtomicU64,
}

impl OutboxState {
    /// Numbering state of `tree` after a (re)start: everything found on disk is durable, and
    /// numbering continues above both the last entry and the removal high-water mark.
    pub(super) fn open(tree: &sled::Tree, meta: &sled::Tree) -> Result<Self, StoreError> {
        let last = match tree.last()? {
            Some((key, _)) => decode_seq(&key)?,
            None => 0,
        };
        let high_water = match meta.get(HIGH_WATER)? {
            Some(raw) => decode_seq(&raw)?,
            None => 0,
        };
        Ok(OutboxState {
            next: Mutex::new(last.max(high_water) + 1),
            durable: AtomicU64::new(last),
            len: AtomicU64::new(tree.len() as u64),
        })
    }
}

fn decode_seq(raw: &[u8]) -> Result<u64, StoreError> {
    <[u8; 8]>::try_from(raw)
        .map(u64::from_be_bytes)
        .map_err(|_| corrupt("outbox", raw, "not an 8-byte sequence number".to_owned()))
}

impl Store {
    /// Appends one encoded delta durably (inserted, then flushed and synced by the store's
    /// group commit before returning); returns its sequence number, strictly increasing and
    /// never reused after a restart.
    pub async fn outbox_append(&self, delta: &SavedAggregates) -> Result<u64, StoreError> {
        let value = codec::encode(delta).map_err(StoreError::Encode)?;
        let seq = {
            let mut next = self
                .outbox_state
                .next
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let seq = *next;
            // A failed insert burns the number: gaps are harmless, reuse is not.
            *next += 1;
            self.outbox.insert(seq.to_be_bytes(), value)?;
            seq
        };
        self.outbox_state.len.fetch_add(1, Ordering::Relaxed);
        self.flush().await?;
        // The sync started after this entry was inserted, and every smaller number was
        // inserted before it: all of them are on disk now.
        self.outbox_state.durable.fetch_max(seq, Ordering::Release);
        Ok(seq)
    }

    /// Up to `limit` pending entries, oldest first: only entries already synced to disk (an
    /// append still syncing is not yet acknowledged and is left for the next call).
    pub fn outbox_pending(&self, limit: usize) -> Result<Vec<(u64, SavedAggregates)>, StoreError> {
        let durable = self.outbox_state.durable.load(Ordering::Acquire);
        self.outbox
            .range(..=durable.to_be_bytes())
            .take(limit)
            .map(|item| {
                let (key, value) = item?;
                let delta = codec::decode(&value).map_err(|m| corrupt("outbox", &key, m))?;
                Ok((decode_seq(&key)?, delta))
            })
            .collect()
    }

    /// Removes the entries numbered up to `upto` and raises the high-water mark to it, in one
    /// transaction. Not synced: a lost removal only re-sends entries the database skips (the
    /// flusher syncs before it prunes the database's batch ids; `cluster::signals`).
    pub fn outbox_remove_through(&self, upto: u64) -> Result<(), StoreError> {
        let keys: Vec<sled::IVec> = self
            .outbox
            .range(..=upto.to_be_bytes())
            .keys()
            .collect::<Result<_, _>>()?;
        let removed = [&self.outbox, &self.meta].transaction(|trees| {
            let (outbox, meta) = (&trees[0], &trees[1]);
            let high_water = match meta.get(HIGH_WATER)? {
                Some(raw) => decode_seq(&raw).map_err(ConflictableTransactionError::Abort)?,
                None => 0,
            };
            meta.insert(HIGH_WATER, &high_water.max(upto).to_be_bytes())?;
            let mut removed = 0u64;
            for key in &keys {
                if outbox.remove(key)?.is_some() {
                    removed += 1;
                }
            }
            Ok::<u64, ConflictableTransactionError<StoreError>>(removed)
        })?;
        self.outbox_state.len.fetch_sub(removed, Ordering::Relaxed);
        Ok(())
    }

    /// Entries waiting in the outbox (synced or still syncing).
    pub fn outbox_len(&self) -> usize {
        usize::try_from(self.outbox_state.len.load(Ordering::Relaxed)).unwrap_or(usize::MAX)
    }

    /// The number the next append will take: every number ever used is below it.
    pub fn outbox_next_seq(&self) -> u64 {
        *self
            .outbox_state
            .next
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The node id kept in the data dir: `configured` when given (then stored), else the
    /// stored one, else a new random one (stored and synced).
    pub fn node_id(&self, configured: Option<&str>) -> Result<String, StoreError> {
        let stored = match self.meta.get(NODE_ID)? {
            Some(raw) => {
                Some(codec::decode::<String>(&raw).map_err(|m| corrupt("meta", NODE_ID, m))?)
            }
            None => None,
        };
        let id = match (configured, stored) {
            (Some(configured), Some(stored)) if configured == stored => return Ok(stored),
            (Some(configured), _) => configured.to_owned(),
            (None, Some(stored)) => return Ok(stored),
            (None, None) => format!("node-{:016x}", rand::random::<u64>()),
        };
        let encoded = codec::encode(&id).map_err(StoreError::Encode)?;
        self.meta.insert(NODE_ID, encoded)?;
        self.syncer.sync_blocking()?;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signals::{MetricTotals, SavedAggregates};

    fn delta(count: u64) -> SavedAggregates {
        let mut d = SavedAggregates::default();
        d.add(
            "f",
            "on",
            "exposure",
            MetricTotals {
                count,
                sum: 0.0,
                valued: 0,
            },
        );
        d
    }

    #[tokio::test]
    async fn pending_is_oldest_first_and_removal_stops_at_upto() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for count in 1..=5 {
            store.outbox_append(&delta(count)).await.unwrap();
        }

        let two = store.outbox_pending(2).unwrap();
        assert_eq!(two.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(two[1].1, delta(2));
        store.outbox_remove_through(3).unwrap();

        let rest = store.outbox_pending(10).unwrap();
        assert_eq!(rest.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [4, 5]);
        assert_eq!(store.outbox_len(), 2);
        assert_eq!(store.outbox_next_seq(), 6);
    }

    // Holding the stall across awaits is the point: the append's sync waits behind it.
    #[allow(clippy::await_holding_lock)]
    #[tokio::test]
    async fn an_append_still_syncing_is_not_pending_yet() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let stalled = store.syncer.stall();
        let append = tokio::spawn({
            let store = store.clone();
            async move { store.outbox_append(&delta(1)).await }
        });
        while store.outbox_len() == 0 {
            tokio::task::yield_now().await;
        }

        assert!(store.outbox_pending(10).unwrap().is_empty());
        drop(stalled);
        let seq = append.await.unwrap().unwrap();
        assert_eq!(store.outbox_pending(10).unwrap(), [(seq, delta(1))]);
    }

    #[tokio::test]
    async fn the_node_id_is_generated_once_and_a_configured_one_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let generated = {
            let store = Store::open(dir.path()).unwrap();
            let id = store.node_id(None).unwrap();
            assert!(id.starts_with("node-"), "{id}");
            assert_eq!(store.node_id(None).unwrap(), id);
            id
        };
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.node_id(None).unwrap(), generated);
        assert_eq!(store.node_id(Some("b")).unwrap(), "b");
        assert_eq!(store.node_id(None).unwrap(), "b");
    }
}
