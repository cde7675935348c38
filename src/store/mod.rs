//! The durable store: the only module that touches sled.
//!
//! Trees: `meta` (schema version), `flags`, `segments`, `tokens` (SHA-256 hashes only, never
//! secrets), `policies` and `audit` (append-only, keyed by time-ordered UUIDv7).
//!
//! Invariants:
//! - Every change and its audit entry are written in one sled transaction, then the database
//!   is flushed to disk *before* the call returns; callers acknowledge only after that.
//!   Concurrent flushes are coalesced by sled (group commit).
//! - Values are encoded by [`codec`]: one version byte followed by JSON, so the format can evolve.

mod audit;
mod codec;

pub use audit::{AuditEntry, AuditQuery};

use crate::domain::{Role, StoredToken};
use rollgate_eval::{FlagDef, SegmentDef};
use serde::de::DeserializeOwned;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;
use std::path::Path;

/// Current on-disk schema version, stored in `meta/schema_version`.
pub const SCHEMA_VERSION: u32 = 1;

/// Errors of the storage boundary.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
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

/// Handle to the open database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    flags: sled::Tree,
    segments: sled::Tree,
    tokens: sled::Tree,
    policies: sled::Tree,
    audit: sled::Tree,
}

/// A change to apply atomically with its audit entry.
pub enum Change<'a> {
    /// Create or replace a flag.
    PutFlag(&'a FlagDef),
    /// Delete a flag.
    DeleteFlag(&'a str),
    /// Create or replace a segment.
    PutSegment(&'a SegmentDef),
    /// Create or replace a token record.
    PutToken(&'a StoredToken),
    /// Revoke a token.
    DeleteToken(&'a str),
    /// Create or replace a policy (stored as its TOML source).
    PutPolicy { name: &'a str, source: &'a str },
}

impl Store {
    /// Opens (or creates) the database in `dir` and checks the schema version.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            .open()?;
        let meta = db.open_tree("meta")?;
        match meta.get("schema_version")? {
            None => {
                meta.insert("schema_version", &SCHEMA_VERSION.to_be_bytes())?;
                db.flush()?;
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
        Ok(Store {
            flags: db.open_tree("flags")?,
            segments: db.open_tree("segments")?,
            tokens: db.open_tree("tokens")?,
            policies: db.open_tree("policies")?,
            audit: db.open_tree("audit")?,
            db,
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

    /// Applies `change` and appends `entry` atomically, then flushes to disk.
    pub async fn commit(&self, change: Change<'_>, entry: &AuditEntry) -> Result<(), StoreError> {
        let (tree, key, value): (&sled::Tree, &[u8], Option<Vec<u8>>) = match change {
            Change::PutFlag(f) => (&self.flags, f.key.as_bytes(), Some(codec::encode(f))),
            Change::DeleteFlag(k) => (&self.flags, k.as_bytes(), None),
            Change::PutSegment(s) => (&self.segments, s.key.as_bytes(), Some(codec::encode(s))),
            Change::PutToken(t) => (&self.tokens, t.name.as_bytes(), Some(codec::encode(t))),
            Change::DeleteToken(n) => (&self.tokens, n.as_bytes(), None),
            Change::PutPolicy { name, source } => (
                &self.policies,
                name.as_bytes(),
                Some(codec::encode(&source)),
            ),
        };
        let audit_key = entry.id.as_bytes().to_vec();
        let audit_value = codec::encode(entry);
        (tree, &self.audit).transaction(|(t, audit)| {
            match &value {
                Some(v) => t.insert(key, v.as_slice())?,
                None => t.remove(key)?,
            };
            audit.insert(audit_key.as_slice(), audit_value.as_slice())?;
            Ok::<(), ConflictableTransactionError<StoreError>>(())
        })?;
        self.flush().await
    }

    /// Forces everything written so far to disk.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_async().await?;
        Ok(())
    }

    /// Audit entries matching `query`, newest first.
    pub fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        audit::query(&self.audit, query)
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
