//! Starting a cluster node: connect, migrate, and bring the node's local replica (its sled
//! store) up to the database's state, so the server then loads exactly as a single node does.
//! With the database unreachable, a node that has a replica starts from it (degraded: it
//! serves, refuses writes, and catches up when the database returns); a node without one
//! refuses to start, because it has nothing true to serve.

use super::{db, pg, ClusterConfig, ClusterError, Node};
use crate::auth::StoredToken;
use crate::release::Release;
use crate::store::{Change, Store};
use rollgate_eval::{FlagDef, SegmentDef};
use std::collections::BTreeSet;
use std::time::Duration;

/// How long a starting node tries the database before starting from its replica.
const CONNECT_BUDGET: Duration = Duration::from_secs(5);

/// How long a node that has never joined (nothing to serve without the database) waits for a
/// database that answers slowly (a first migration on a loaded machine) before giving up.
const FIRST_JOIN_BUDGET: Duration = Duration::from_secs(30);

/// Why a node cannot start.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(
        "the database is unreachable ({0}) and this node has no local replica yet to serve from"
    )]
    NoReplica(String),
}

/// Opens this node's part of the cluster; the replica in `store` is then current (or, with
/// the database down, the last state this node applied).
pub async fn open(
    config: &ClusterConfig,
    store: &Store,
    node_id: String,
) -> Result<Node, BootError> {
    let pool = db::pool(&config.database_url, config.ca_file.as_deref(), 16)?;
    let node = Node::new(node_id, config.clone(), pool);
    let (budget, words) = if never_joined(store)? {
        (FIRST_JOIN_BUDGET, "no answer within 30 s")
    } else {
        (CONNECT_BUDGET, "no answer within 5 s")
    };
    let synced = tokio::time::timeout(budget, sync_replica(&node, store)).await;
    match synced {
        Ok(Ok(revision)) => {
            node.set_db_up(true);
            tracing::info!(node = %node.id, revision, "cluster state loaded from the database");
        }
        Ok(Err(
            e @ (ClusterError::SchemaTooNew { .. }
            | ClusterError::Corrupt { .. }
            | ClusterError::Url(_)),
        )) => return Err(e.into()),
        Ok(Err(e)) => degraded(store, e.to_string())?,
        Err(_) => degraded(store, words.into())?,
    }
    Ok(node)
}

/// True when the replica holds nothing: this node has never joined the cluster.
fn never_joined(store: &Store) -> Result<bool, BootError> {
    Ok(store.revision()? == 0 && store.flags()?.is_empty() && store.tokens()?.is_empty())
}

fn degraded(store: &Store, why: String) -> Result<(), BootError> {
    if never_joined(store)? {
        return Err(BootError::NoReplica(why));
    }
    let revision = store.revision()?;
    tracing::warn!(reason = %why, revision, "database unreachable: serving the local replica, refusing writes until it returns");
    Ok(())
}

/// Migrates, loads the whole state and writes it into the replica (one transaction, synced).
async fn sync_replica(node: &Node, store: &Store) -> Result<u64, ClusterError> {
    let mut client = node.pool.get().await?;
    db::migrate(&mut client).await?;
    let key = pg::server_key(&client, &store.server_key().map_err(replica)?).await?;
    store.set_server_key(key).map_err(replica)?;
    let state = pg::load(&mut client).await?;
    let corrupt = |row: &pg::FeedRow, e: serde_json::Error| ClusterError::Corrupt {
        table: "state",
        key: row.key.clone(),
        message: e.to_string(),
    };
    let (mut flags, mut segments, mut tokens, mut policies, mut releases) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for row in &state.rows {
        let body = row.body.as_deref().unwrap_or("null");
        match row.kind {
            pg::Kind::Flag => {
                flags.push(serde_json::from_str::<FlagDef>(body).map_err(|e| corrupt(row, e))?)
            }
            pg::Kind::Segment => segments
                .push(serde_json::from_str::<SegmentDef>(body).map_err(|e| corrupt(row, e))?),
            pg::Kind::Token => {
                tokens.push(serde_json::from_str::<StoredToken>(body).map_err(|e| corrupt(row, e))?)
            }
            pg::Kind::Policy => policies.push((row.key.clone(), body.to_owned())),
            pg::Kind::Release => {
                releases.push(serde_json::from_str::<Release>(body).map_err(|e| corrupt(row, e))?)
            }
        }
    }
    let keep_flags: BTreeSet<&str> = flags.iter().map(|f| f.key.as_str()).collect();
    let keep_tokens: BTreeSet<&str> = tokens.iter().map(|t| t.name.as_str()).collect();
    let old_flags = store.flags().map_err(replica)?;
    let old_tokens = store.tokens().map_err(replica)?;
    let keep_segments: BTreeSet<&str> = segments.iter().map(|s| s.key.as_str()).collect();
    let keep_policies: BTreeSet<&str> = policies.iter().map(|(n, _)| n.as_str()).collect();
    let old_segments = store.segments().map_err(replica)?;
    let old_policies = store.policies().map_err(replica)?;
    let mut changes: Vec<Change<'_>> = Vec::new();
    changes.extend(
        old_flags
            .iter()
            .filter(|f| !keep_flags.contains(f.key.as_str()))
            .map(|f| Change::DeleteFlag(&f.key)),
    );
    changes.extend(
        old_tokens
            .iter()
            .filter(|t| !keep_tokens.contains(t.name.as_str()))
            .map(|t| Change::DeleteToken(&t.name)),
    );
    changes.extend(
        old_segments
            .iter()
            .filter(|s| !keep_segments.contains(s.key.as_str()))
            .map(|s| Change::DeleteSegment(&s.key)),
    );
    changes.extend(
        old_policies
            .iter()
            .filter(|(n, _)| !keep_policies.contains(n.as_str()))
            .map(|(n, _)| Change::DeletePolicy(n)),
    );
    changes.extend(segments.iter().map(Change::PutSegment));
    changes.extend(flags.iter().map(Change::PutFlag));
    changes.extend(tokens.iter().map(Change::PutToken));
    changes.extend(
        policies
            .iter()
            .map(|(name, source)| Change::PutPolicy { name, source }),
    );
    changes.extend(releases.iter().map(Change::PutRelease));
    changes.push(Change::Revision(state.revision));
    store.commit_all(&changes, &[]).await.map_err(replica)?;
    Ok(state.revision)
}

fn replica(e: crate::store::StoreError) -> ClusterError {
    ClusterError::Corrupt {
        table: "local replica",
        key: String::new(),
        message: e.to_string(),
    }
}
