//! Kept drill results: the sled tree `drills` on one server, the table `rollgate_drills` in a
//! cluster (schema version 2), so a drill run on any node is listed on every node. At most
//! [`MAX_KEPT`], the oldest dropped first; ids are UUIDv7, so id order is time order.

use super::DrillResult;
use crate::state::AppState;
use crate::store::{AuditEntry, AuditQuery, StoreError};
use crate::writer::OpsError;
use uuid::Uuid;

/// The most results kept.
pub const MAX_KEPT: usize = 1_000;

fn decode(body: &[u8], id: &str) -> Result<DrillResult, OpsError> {
    serde_json::from_slice(body).map_err(|e| {
        OpsError::Store(StoreError::Corrupt {
            tree: "drills",
            key: id.to_owned(),
            message: e.to_string(),
        })
    })
}

/// Keeps `result` durably.
pub async fn save(state: &AppState, result: &DrillResult) -> Result<(), OpsError> {
    let body = serde_json::to_string(result).map_err(|source| OpsError::Encode {
        what: "drill result",
        source,
    })?;
    let id = Uuid::parse_str(&result.id).unwrap_or_else(|_| Uuid::now_v7());
    match &state.cluster {
        None => Ok(state.store.put_drill(id, body.as_bytes(), MAX_KEPT).await?),
        Some(node) => {
            let write = async {
                let client = node.pool.get().await?;
                client
                    .execute(
                        "INSERT INTO rollgate_drills (id, body) VALUES ($1, $2)",
                        &[&id, &body],
                    )
                    .await?;
                client
                    .execute(
                        "DELETE FROM rollgate_drills WHERE id < (SELECT id FROM rollgate_drills \
                         ORDER BY id DESC OFFSET $1 LIMIT 1)",
                        &[&(MAX_KEPT as i64 - 1)],
                    )
                    .await?;
                Ok::<_, crate::cluster::ClusterError>(())
            };
            Ok(write.await?)
        }
    }
}

/// Up to `limit` results, newest first.
pub async fn list(state: &AppState, limit: usize) -> Result<Vec<DrillResult>, OpsError> {
    match &state.cluster {
        None => state
            .store
            .drills(limit)?
            .iter()
            .map(|b| decode(b, "?"))
            .collect(),
        Some(node) => {
            let read = async {
                let client = node.pool.get().await?;
                let rows = client
                    .query(
                        "SELECT id, body FROM rollgate_drills ORDER BY id DESC LIMIT $1",
                        &[&(limit as i64)],
                    )
                    .await?;
                Ok::<_, crate::cluster::ClusterError>(rows)
            };
            read.await?
                .iter()
                .map(|r| {
                    decode(
                        r.get::<_, String>(1).as_bytes(),
                        &r.get::<_, Uuid>(0).to_string(),
                    )
                })
                .collect()
        }
    }
}

/// The result of `id`, if kept.
pub async fn get(state: &AppState, id: Uuid) -> Result<Option<DrillResult>, OpsError> {
    match &state.cluster {
        None => state
            .store
            .drill(id)?
            .map(|b| decode(&b, &id.to_string()))
            .transpose(),
        Some(node) => {
            let read = async {
                let client = node.pool.get().await?;
                let row = client
                    .query_opt("SELECT body FROM rollgate_drills WHERE id = $1", &[&id])
                    .await?;
                Ok::<_, crate::cluster::ClusterError>(row)
            };
            read.await?
                .map(|r| decode(r.get::<_, String>(0).as_bytes(), &id.to_string()))
                .transpose()
        }
    }
}

/// The newest audit entries of `flag` (from the database in a cluster).
pub(super) async fn audit_of(state: &AppState, flag: &str) -> Result<Vec<AuditEntry>, OpsError> {
    let query = AuditQuery {
        flag: Some(flag.to_owned()),
        releases: Vec::new(),
        since: None,
        limit: 20,
    };
    match &state.cluster {
        None => Ok(state.store.audit(&query)?),
        Some(node) => {
            let read = async {
                let client = node.pool.get().await?;
                crate::cluster::pg::audit(&client, &query).await
            };
            Ok(read.await?)
        }
    }
}

/// Whether the stored flag `key` is enabled, read back from the store (the database in a
/// cluster); `None` when it is not stored.
pub(super) async fn stored_enabled(state: &AppState, key: &str) -> Result<Option<bool>, OpsError> {
    match &state.cluster {
        None => Ok(state
            .store
            .flags()?
            .into_iter()
            .find(|f| f.key == key)
            .map(|f| f.enabled)),
        Some(node) => {
            let read = async {
                let client = node.pool.get().await?;
                let row = client
                    .query_opt("SELECT body FROM rollgate_flags WHERE key = $1", &[&key])
                    .await?;
                Ok::<_, crate::cluster::ClusterError>(row)
            };
            Ok(read.await?.and_then(|r| {
                serde_json::from_str::<rollgate_eval::FlagDef>(&r.get::<_, String>(0))
                    .ok()
                    .map(|f| f.enabled)
            }))
        }
    }
}
