//! The durable store: the only module that touches sled.
//!
//! Trees: `meta` (schema version, the config revision, the saved aggregates), `flags`, `segments`, `tokens` (SHA-256 hashes only, never
//! secrets), `policies` and `audit` (append-only, keyed by time-ordered UUIDv7); in cluster
//! mode `outbox` (signal batches not yet counted in PostgreSQL; `outbox.rs`); `history` (the
//! guard history of release modules, `history.rs`: not synced per write, see there).
//!
//! Invariants:
//! - Every change and its audit entry are written in one sled transaction, then the database
//!   is flushed *and synced* to stable storage before the call returns; callers acknowledge
//!   only after that. The same holds for [`Store::flush`] and the persisted aggregates.
//! - "Synced" means `fdatasync`/`fsync`, not sled's `sync_file_range` (which leaves the data in
//!   the drive's volatile cache and the file size unpersisted). sled's flush writes the log,
//!   then `durable.rs` syncs `db`, any new blob file and any changed directory; see its header
//!   for what sled 0.34 writes where and why this is the complete set. Concurrent commits share
//!   one flush-and-sync step (group commit); a failed one makes every later commit fail.
//! - Values are encoded by `codec`: one version byte followed by JSON, so the format can evolve.

mod audit;
mod codec;
mod durable;
mod history;
mod outbox;

pub use audit::{AuditEntry, AuditQuery};
pub use durable::Durability;
pub use history::{HistoryKey, StoredPoint};

use crate::auth::{Role, StoredToken};
use crate::release::Release;
use rollgate_eval::{FlagDef, SegmentDef};
use serde::de::DeserializeOwned;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;
use std::path::Path;
use std::sync::Arc;
use uuid::Uuid;

/// Key of the config revision in `meta`.
const REVISION: &[u8] = b"revision";

/// Current on-disk schema version, stored in `meta/schema_version`.
pub const SCHEMA_VERSION: u32 = 1;

/// Errors of the storage boundary.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A record could not be encoded; nothing was written.
    #[error("encoding a record: {0}")]
    Encode(serde_json::Error),
    /// sled failed (I/O, corruption).
    #[error("storage failure: {0}")]
    Sled(#[from] sled::Error),
    /// A stored value could not be decoded.
    #[error("corrupt record in {tree}/{key}: {message}")]
    Corrupt {
        tree: &'static str,
        key: String,
        message: String,
    },
    /// The data directory was written by a newer rollgate.
    #[error("data directory has schema version {found}, this build supports up to {supported}")]
    UnsupportedSchema { found: u32, supported: u32 },
    /// Syncing the data directory to stable storage failed; once it has, every later commit
    /// fails too (see `store/durable.rs`).
    #[error("storage sync failed: {0}")]
    Sync(String),
    /// Blocking work could not be scheduled.
    #[error("storage task failed: {0}")]
    Task(String),
}

impl From<TransactionError<StoreError>> for StoreError {
    fn from(e: TransactionError<StoreError>) -> Self {
        match e {
            TransactionError::Abort(inner) => inner,
            TransactionError::Storage(e) => StoreError::Sled(e),
        }
    }
}

/// One write inside a commit: tree index, key, value (`None` removes).
type TreeOp<'a> = (usize, &'a [u8], Option<Vec<u8>>);

/// Handle to the open database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    syncer: Arc<durable::Syncer>,
    flags: sled::Tree,
    segments: sled::Tree,
    tokens: sled::Tree,
    policies: sled::Tree,
    releases: sled::Tree,
    audit: sled::Tree,
    drills: sled::Tree,
    meta: sled::Tree,
    outbox: sled::Tree,
    outbox_state: Arc<outbox::OutboxState>,
    history: sled::Tree,
}

/// A change to apply atomically with its audit entry.
pub enum Change<'a> {
    /// Create or replace a flag.
    PutFlag(&'a FlagDef),
    /// Delete a flag.
    DeleteFlag(&'a str),
    /// Create or replace a segment.
    PutSegment(&'a SegmentDef),
    /// Delete a segment.
    DeleteSegment(&'a str),
    /// Create or replace a token record.
    PutToken(&'a StoredToken),
    /// Revoke a token.
    DeleteToken(&'a str),
    /// Create or replace a policy (stored as JSON).
    PutPolicy { name: &'a str, source: &'a str },
    /// Delete a policy.
    DeletePolicy(&'a str),
    /// Create or replace a release with its modules' states.
    PutRelease(&'a Release),
    /// The config revision after this commit (`meta/revision`; see docs/clients.md).
    Revision(u64),
}

/// sled's page cache. Its default (1 GiB) lets a long-running server keep every page it has
/// written (the audit log grows forever) in memory. Evaluation never reads sled (it reads the
/// in-memory snapshot), so the cache only serves the control path and 16 MiB is plenty.
const CACHE_BYTES: u64 = 16 * 1024 * 1024;

impl Store {
    /// Opens (or creates) the database in `dir` and checks the schema version.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, Durability::Fsync)
    }

    /// [`Store::open`] with a chosen [`Durability`]; anything but `Fsync` is for the commit
    /// bench only.
    pub fn open_with(dir: &Path, durability: Durability) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(CACHE_BYTES)
            .open()?;
        let syncer = Arc::new(durable::Syncer::open(&db, dir, durability)?);
        let meta = db.open_tree("meta")?;
        match meta.get("schema_version")? {
            None => {
                meta.insert("schema_version", &SCHEMA_VERSION.to_be_bytes())?;
                syncer.sync_blocking()?;
            }
            Some(raw) => {
                let found = <[u8; 4]>::try_from(raw.as_ref())
                    .map(u32::from_be_bytes)
                    .unwrap_or(u32::MAX);
                if found > SCHEMA_VERSION {
                    return Err(StoreError::UnsupportedSchema {
                        found,
                        supported: SCHEMA_VERSION,
                    });
                }
            }
        }
        let outbox = db.open_tree("outbox")?;
        let outbox_state = Arc::new(outbox::OutboxState::open(&outbox, &meta)?);
        Ok(Store {
            flags: db.open_tree("flags")?,
            segments: db.open_tree("segments")?,
            tokens: db.open_tree("tokens")?,
            policies: db.open_tree("policies")?,
            releases: db.open_tree("releases")?,
            audit: db.open_tree("audit")?,
            drills: db.open_tree("drills")?,
            meta,
            outbox,
            outbox_state,
            history: db.open_tree("history")?,
            syncer,
        })
    }

    /// All flags, in key order.
    pub fn flags(&self) -> Result<Vec<FlagDef>, StoreError> {
        load_all(&self.flags, "flags")
    }

    /// All segments, in key order.
    pub fn segments(&self) -> Result<Vec<SegmentDef>, StoreError> {
        load_all(&self.segments, "segments")
    }

    /// All token records, in name order.
    pub fn tokens(&self) -> Result<Vec<StoredToken>, StoreError> {
        load_all(&self.tokens, "tokens")
    }

    /// All stored policy sources, by name.
    pub fn policies(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.policies
            .iter()
            .map(|item| {
                let (k, v) = item?;
                let name = String::from_utf8_lossy(&k).into_owned();
                let source: String =
                    codec::decode(&v).map_err(|message| corrupt("policies", &k, message))?;
                Ok((name, source))
            })
            .collect()
    }

    /// True when at least one admin token exists.
    pub fn has_admin_token(&self) -> Result<bool, StoreError> {
        Ok(self.tokens()?.iter().any(|t| t.role == Role::Admin))
    }

    /// Applies `change` and appends `entry` atomically, then flushes and syncs to disk.
    pub async fn commit(&self, change: Change<'_>, entry: &AuditEntry) -> Result<(), StoreError> {
        self.commit_all(&[change], std::slice::from_ref(entry))
            .await
    }

    /// Applies every change and appends every audit entry in one transaction, then flushes
    /// and syncs ([`Store::flush`]). When this returns `Ok` all of it is on stable storage;
    /// when the transaction fails none of it was applied (a failed flush or sync after it
    /// returns `Err` though the change may reach the disk).
    pub async fn commit_all(
        &self,
        changes: &[Change<'_>],
        entries: &[AuditEntry],
    ) -> Result<(), StoreError> {
        const FLAGS: usize = 0;
        const SEGMENTS: usize = 1;
        const TOKENS: usize = 2;
        const POLICIES: usize = 3;
        const RELEASES: usize = 4;
        const AUDIT: usize = 5;
        const META: usize = 6;
        let ops: Vec<TreeOp<'_>> = changes
            .iter()
            .map(|change| {
                Ok(match change {
                    Change::PutFlag(f) => (FLAGS, f.key.as_bytes(), Some(codec::encode(f)?)),
                    Change::DeleteFlag(k) => (FLAGS, k.as_bytes(), None),
                    Change::PutSegment(s) => (SEGMENTS, s.key.as_bytes(), Some(codec::encode(s)?)),
                    Change::DeleteSegment(k) => (SEGMENTS, k.as_bytes(), None),
                    Change::DeletePolicy(n) => (POLICIES, n.as_bytes(), None),
                    Change::PutToken(t) => (TOKENS, t.name.as_bytes(), Some(codec::encode(t)?)),
                    Change::DeleteToken(n) => (TOKENS, n.as_bytes(), None),
                    Change::PutPolicy { name, source } => {
                        (POLICIES, name.as_bytes(), Some(codec::encode(source)?))
                    }
                    Change::PutRelease(r) => (
                        RELEASES,
                        r.id.as_bytes().as_slice(),
                        Some(codec::encode(r)?),
                    ),
                    Change::Revision(r) => (META, REVISION, Some(r.to_be_bytes().to_vec())),
                })
            })
            .collect::<Result<_, serde_json::Error>>()
            .map_err(StoreError::Encode)?;
        let audit: Vec<(Vec<u8>, Vec<u8>)> = entries
            .iter()
            .map(|e| Ok((e.id.as_bytes().to_vec(), codec::encode(e)?)))
            .collect::<Result<_, serde_json::Error>>()
            .map_err(StoreError::Encode)?;
        let trees = [
            &self.flags,
            &self.segments,
            &self.tokens,
            &self.policies,
            &self.releases,
            &self.audit,
            &self.meta,
        ];
        trees[..].transaction(|views| {
            for (tree, key, value) in &ops {
                match value {
                    Some(v) => views[*tree].insert(*key, v.as_slice())?,
                    None => views[*tree].remove(*key)?,
                };
            }
            for (key, value) in &audit {
                views[AUDIT].insert(key.as_slice(), value.as_slice())?;
            }
            Ok::<(), ConflictableTransactionError<StoreError>>(())
        })?;
        self.flush().await
    }

    /// The config revision of the last commit that changed a flag or segment (0 before any).
    pub fn revision(&self) -> Result<u64, StoreError> {
        match self.meta.get(REVISION)? {
            None => Ok(0),
            Some(bytes) => <[u8; 8]>::try_from(bytes.as_ref())
                .map(u64::from_be_bytes)
                .map_err(|_| corrupt("meta", REVISION, "not an 8-byte number".to_string())),
        }
    }

    /// All releases, oldest first.
    pub fn releases(&self) -> Result<Vec<Release>, StoreError> {
        load_all(&self.releases, "releases")
    }

    /// Persists the signal aggregates (flushed and synced) when their encoding differs from
    /// `last`, the bytes this caller persisted before; updates `last`. Returns whether it
    /// wrote. An idle server then does no periodic disk write at all.
    pub async fn put_aggregates_if_changed<T: serde::Serialize>(
        &self,
        value: &T,
        last: &mut Option<Vec<u8>>,
    ) -> Result<bool, StoreError> {
        let encoded = codec::encode(value).map_err(StoreError::Encode)?;
        if last.as_deref() == Some(encoded.as_slice()) {
            return Ok(false);
        }
        self.meta.insert("aggregates", encoded.as_slice())?;
        self.flush().await?;
        *last = Some(encoded);
        Ok(true)
    }

    /// The last persisted signal aggregates.
    pub fn aggregates<T: DeserializeOwned>(&self) -> Result<Option<T>, StoreError> {
        match self.meta.get("aggregates")? {
            None => Ok(None),
            Some(raw) => codec::decode(&raw)
                .map(Some)
                .map_err(|m| corrupt("meta", b"aggregates", m)),
        }
    }

    /// A random 32-byte server key, created on first use and kept in `meta`.
    pub fn server_key(&self) -> Result<[u8; 32], StoreError> {
        if let Some(raw) = self.meta.get("server_key")? {
            if let Ok(key) = <[u8; 32]>::try_from(raw.as_ref()) {
                return Ok(key);
            }
        }
        let key: [u8; 32] = rand::random();
        self.meta.insert("server_key", &key)?;
        self.syncer.sync_blocking()?;
        Ok(key)
    }

    /// Replaces the server key (a cluster node takes the key all nodes share).
    pub fn set_server_key(&self, key: [u8; 32]) -> Result<(), StoreError> {
        if self.meta.get("server_key")?.as_deref() != Some(key.as_slice()) {
            self.meta.insert("server_key", &key)?;
            self.syncer.sync_blocking()?;
        }
        Ok(())
    }

    /// Forces everything written so far to stable storage: sled writes its log buffer
    /// (`pwrite` + `sync_file_range`), then the syncer `fdatasync`s it; one such step is
    /// shared by concurrent callers. (Not sled's `flush_async`, which deadlocks when several
    /// run at once; see `durable.rs`.)
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.syncer.sync().await
    }

    /// Audit entries matching `query`, newest first.
    pub fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        audit::query(&self.audit, query)
    }

    /// Keeps a drill result (JSON) under its UUIDv7 `id`, durably, dropping the oldest beyond
    /// `keep`.
    pub async fn put_drill(&self, id: Uuid, body: &[u8], keep: usize) -> Result<(), StoreError> {
        self.drills.insert(id.as_bytes(), body)?;
        while self.drills.len() > keep {
            match self.drills.pop_min()? {
                Some(_) => {}
                None => break,
            }
        }
        self.flush().await
    }

    /// Up to `limit` kept drill results (JSON), newest first.
    pub fn drills(&self, limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        self.drills
            .iter()
            .rev()
            .take(limit)
            .map(|item| Ok(item?.1.to_vec()))
            .collect()
    }

    /// The drill result (JSON) of `id`, if kept.
    pub fn drill(&self, id: Uuid) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.drills.get(id.as_bytes())?.map(|v| v.to_vec()))
    }

    /// Every audit entry, oldest first (`rollgate migrate`), read lazily.
    pub fn audit_oldest_first(&self) -> impl Iterator<Item = Result<AuditEntry, StoreError>> + '_ {
        self.audit.iter().map(|item| {
            let (k, v) = item?;
            codec::decode(&v).map_err(|m| corrupt("audit", &k, m))
        })
    }
}

fn load_all<T: DeserializeOwned>(
    tree: &sled::Tree,
    name: &'static str,
) -> Result<Vec<T>, StoreError> {
    tree.iter()
        .map(|item| {
            let (k, v) = item?;
            codec::decode(&v).map_err(|message| corrupt(name, &k, message))
        })
        .collect()
}

fn corrupt(tree: &'static str, key: &[u8], message: String) -> StoreError {
    StoreError::Corrupt {
        tree,
        key: String::from_utf8_lossy(key).into_owned(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn aggregates_are_written_only_when_they_change() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("opens");
        let mut last = None;
        assert!(store
            .put_aggregates_if_changed(&[1u64, 2], &mut last)
            .await
            .expect("put"));
        assert!(!store
            .put_aggregates_if_changed(&[1u64, 2], &mut last)
            .await
            .expect("put"));
        assert!(store
            .put_aggregates_if_changed(&[1u64, 3], &mut last)
            .await
            .expect("put"));
        assert_eq!(
            store.aggregates::<Vec<u64>>().expect("reads"),
            Some(vec![1, 3])
        );
    }

    /// sled's `flush_async` deadlocks when several run at once (sled #1241); commits from
    /// many tasks at once must all finish.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_concurrent_commits_all_complete() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("opens");
        let tasks: Vec<_> = (0..16)
            .map(|t| {
                let store = store.clone();
                tokio::spawn(async move {
                    for i in 0..20 {
                        let (name, source) = (format!("p{t}"), format!("{i}"));
                        let entry = AuditEntry {
                            id: uuid::Uuid::now_v7(),
                            time: "2026-01-01T00:00:00.000Z".into(),
                            actor: "test".into(),
                            action: "policy.put".into(),
                            flag: None,
                            release: None,
                            subject: Some(name.clone()),
                            reason: None,
                            before: None,
                            after: None,
                            node: None,
                        };
                        let change = Change::PutPolicy {
                            name: &name,
                            source: &source,
                        };
                        store.commit(change, &entry).await.expect("commit");
                    }
                })
            })
            .collect();
        let all = async {
            for task in tasks {
                task.await.expect("task");
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(60), all)
            .await
            .expect("320 commits from 16 tasks finish within 60 s");
        assert_eq!(store.policies().expect("reads").len(), 16);
    }

    #[tokio::test]
    async fn drills_keep_the_newest_and_list_them_newest_first() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("opens");
        let ids: Vec<Uuid> = (0..5u128).map(|i| Uuid::from_u128(100 + i)).collect();
        for (i, id) in ids.iter().enumerate() {
            store
                .put_drill(*id, format!("{i}").as_bytes(), 3)
                .await
                .expect("kept");
        }
        let kept = store.drills(10).expect("lists");
        assert_eq!(kept, [b"4".to_vec(), b"3".to_vec(), b"2".to_vec()]);
        assert_eq!(store.drill(ids[0]).expect("reads"), None);
        assert_eq!(store.drill(ids[4]).expect("reads"), Some(b"4".to_vec()));
        assert_eq!(store.drills(1).expect("lists").len(), 1);
    }
}
