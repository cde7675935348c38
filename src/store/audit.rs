//! The append-only audit log: who changed what, why, with the state before and after.
//!
//! Keys are UUIDv7 (16 big-endian bytes), so key order is time order and "newest first" is
//! a reverse scan. Entries are never updated or deleted.

use super::{codec, corrupt, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// One audit record.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// Time-ordered id (UUIDv7).
    pub id: Uuid,
    /// RFC 3339 time with milliseconds, UTC.
    pub time: String,
    /// Token name, or `controller`.
    pub actor: String,
    /// What happened, e.g. `flag.rollout`.
    pub action: String,
    /// The flag concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flag: Option<String>,
    /// The release concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    /// Other subject (segment, token, policy key), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Why, as given by the actor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// State before the change (`null` when created).
    pub before: Option<Value>,
    /// State after the change (`null` when deleted).
    pub after: Option<Value>,
    /// In a cluster: the node that wrote the entry (docs/cluster.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// Filters for reading the audit log.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only entries about this flag.
    pub flag: Option<String>,
    /// Only entries about one of these releases (ids); empty = any.
    pub releases: Vec<String>,
    /// Only entries at or after this UUIDv7 bound.
    pub since: Option<Uuid>,
    /// At most this many entries.
    pub limit: usize,
}

pub(super) fn query(tree: &sled::Tree, q: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
    let lower = q.since.map(|u| u.as_bytes().to_vec()).unwrap_or_default();
    let mut out = Vec::new();
    for item in tree.range(lower..).rev() {
        if out.len() >= q.limit {
            break;
        }
        let (k, v) = item?;
        let entry: AuditEntry = codec::decode(&v).map_err(|m| corrupt("audit", &k, m))?;
        if q.flag
            .as_ref()
            .is_some_and(|f| entry.flag.as_ref() != Some(f))
        {
            continue;
        }
        if !q.releases.is_empty()
            && !entry
                .release
                .as_ref()
                .is_some_and(|r| q.releases.contains(r))
        {
            continue;
        }
        out.push(entry);
    }
    Ok(out)
}
