//! The state in PostgreSQL: loading it whole, reading the change feed, and the write
//! transaction that every change of a cluster goes through ([`WriteTx`]).
//!
//! A write locks the one `rollgate_head` row first (`SELECT … FOR UPDATE`), so all writes of
//! all nodes are serialized: the node catches up to the head it locked, builds its change on
//! that state, then appends the change's feed rows at `head + 1 …`, updates the state tables
//! and the head, notifies `rollgate_feed`, and commits. Revisions are therefore handed out in
//! commit order without gaps. A controller decision also locks the lease row `FOR SHARE` and
//! checks its fence in the same transaction.

use super::ClusterError;
use crate::lease::Fence;
use crate::store::{AuditEntry, AuditQuery};
use futures_util::FutureExt;
use tokio_postgres::Client;

/// What a feed row changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Flag,
    Segment,
    Token,
    Policy,
    Release,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Flag => "flag",
            Kind::Segment => "segment",
            Kind::Token => "token",
            Kind::Policy => "policy",
            Kind::Release => "release",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "flag" => Kind::Flag,
            "segment" => Kind::Segment,
            "token" => Kind::Token,
            "policy" => Kind::Policy,
            "release" => Kind::Release,
            _ => return None,
        })
    }

    /// The state table and its key column.
    fn table(self) -> (&'static str, &'static str) {
        match self {
            Kind::Flag => ("rollgate_flags", "key"),
            Kind::Segment => ("rollgate_segments", "key"),
            Kind::Token => ("rollgate_tokens", "name"),
            Kind::Policy => ("rollgate_policies", "name"),
            Kind::Release => ("rollgate_releases", "id"),
        }
    }
}

/// One committed change, as every node reads it.
#[derive(Debug, Clone)]
pub struct FeedRow {
    /// Its global revision.
    pub revision: u64,
    /// What it changes.
    pub kind: Kind,
    /// The object's key (a release's id as text).
    pub key: String,
    /// The object's JSON; `None` when deleted.
    pub body: Option<String>,
    /// For flags and segments: the JSON of the change's cause.
    pub cause: Option<String>,
}

/// A change to write (the revision is assigned at commit).
#[derive(Debug, Clone)]
pub struct NewRow {
    pub kind: Kind,
    pub key: String,
    pub body: Option<String>,
    pub cause: Option<String>,
}

/// The whole state at one revision.
#[derive(Debug, Default)]
pub struct State {
    pub revision: u64,
    pub rows: Vec<FeedRow>,
}

fn rev(v: i64) -> u64 {
    v.max(0) as u64
}

/// The current head revision.
pub async fn head(client: &Client) -> Result<u64, ClusterError> {
    let row = client
        .query_one("SELECT revision FROM rollgate_head WHERE id = 1", &[])
        .await?;
    Ok(rev(row.get(0)))
}

/// Feed rows after `after`, oldest first, at most `limit`.
pub async fn feed_after(
    client: &Client,
    after: u64,
    limit: i64,
) -> Result<Vec<FeedRow>, ClusterError> {
    let rows = client
        .query(
            "SELECT revision, kind, key, body, cause FROM rollgate_feed \
             WHERE revision > $1 ORDER BY revision LIMIT $2",
            &[&(after as i64), &limit],
        )
        .await?;
    rows.into_iter()
        .map(|r| {
            let kind: String = r.get(1);
            Ok(FeedRow {
                revision: rev(r.get(0)),
                kind: Kind::parse(&kind).ok_or_else(|| ClusterError::Corrupt {
                    table: "rollgate_feed",
                    key: kind.clone(),
                    message: "unknown kind".into(),
                })?,
                key: r.get(2),
                body: r.get(3),
                cause: r.get(4),
            })
        })
        .collect()
}

/// The whole state (every object as an upsert row) at one consistent revision.
pub async fn load(client: &mut Client) -> Result<State, ClusterError> {
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let revision = rev(tx
        .query_one("SELECT revision FROM rollgate_head WHERE id = 1", &[])
        .await?
        .get(0));
    let mut rows = Vec::new();
    // Segments before flags (flags compile against them).
    for kind in [
        Kind::Segment,
        Kind::Flag,
        Kind::Token,
        Kind::Policy,
        Kind::Release,
    ] {
        let (table, key) = kind.table();
        let sql = format!("SELECT {key}::text, body, revision FROM {table} ORDER BY revision");
        for r in tx.query(&sql, &[]).await? {
            rows.push(FeedRow {
                revision: rev(r.get(2)),
                kind,
                key: r.get(0),
                body: Some(r.get(1)),
                cause: None,
            });
        }
    }
    tx.commit().await?;
    Ok(State { revision, rows })
}

/// The server key shared by every node (signs stream tokens): the stored one, or `proposed`
/// stored now when there is none.
pub async fn server_key(client: &Client, proposed: &[u8; 32]) -> Result<[u8; 32], ClusterError> {
    client
        .execute(
            "INSERT INTO rollgate_meta (key, value) VALUES ('server_key', $1) ON CONFLICT DO NOTHING",
            &[&hex::encode(proposed)],
        )
        .await?;
    let value: String = client
        .query_one(
            "SELECT value FROM rollgate_meta WHERE key = 'server_key'",
            &[],
        )
        .await?
        .get(0);
    hex::decode(&value)
        .ok()
        .and_then(|v| <[u8; 32]>::try_from(v).ok())
        .ok_or_else(|| ClusterError::Corrupt {
            table: "rollgate_meta",
            key: "server_key".into(),
            message: "not 32 bytes of hex".into(),
        })
}

/// Audit entries matching `q`, newest first.
pub async fn audit(client: &Client, q: &AuditQuery) -> Result<Vec<AuditEntry>, ClusterError> {
    let since = q.since;
    let releases: Vec<String> = q.releases.clone();
    let rows = client
        .query(
            "SELECT id::text, body FROM rollgate_audit \
             WHERE ($1::text IS NULL OR flag = $1) \
               AND (cardinality($2::text[]) = 0 OR release = ANY($2)) \
               AND ($3::uuid IS NULL OR id >= $3) \
             ORDER BY id DESC LIMIT $4",
            &[
                &q.flag,
                &releases,
                &since,
                &(q.limit.min(i64::MAX as usize) as i64),
            ],
        )
        .await?;
    rows.into_iter()
        .map(|r| {
            let body: String = r.get(1);
            serde_json::from_str(&body).map_err(|e| ClusterError::Corrupt {
                table: "rollgate_audit",
                key: r.get(0),
                message: e.to_string(),
            })
        })
        .collect()
}

/// An open write transaction holding the head lock. Dropped without [`WriteTx::commit`], it
/// rolls back: the `ROLLBACK` is queued on the connection at once (before the connection can
/// serve anyone else), so the head lock is released without waiting for a later user.
pub struct WriteTx {
    client: deadpool_postgres::Object,
    head: u64,
    open: bool,
}

impl WriteTx {
    /// Begins a transaction and locks the head.
    pub async fn begin(pool: &super::db::Pool) -> Result<WriteTx, ClusterError> {
        let client = pool.get().await?;
        client.batch_execute("BEGIN").await?;
        let mut tx = WriteTx {
            client,
            head: 0,
            open: true,
        };
        let row = tx
            .client
            .query_one(
                "SELECT revision FROM rollgate_head WHERE id = 1 FOR UPDATE",
                &[],
            )
            .await?;
        tx.head = rev(row.get(0));
        Ok(tx)
    }

    /// The head revision this transaction locked.
    pub fn head(&self) -> u64 {
        self.head
    }

    /// Feed rows after `after` up to the locked head.
    pub async fn rows_after(&self, after: u64) -> Result<Vec<FeedRow>, ClusterError> {
        feed_after(&self.client, after, i64::MAX).await
    }

    /// Writes `rows` at `head + 1 …` (state tables and feed), appends `audit`, checks `fence`
    /// when given, moves the head, notifies `rollgate_feed` and commits. Returns the revision
    /// of the first row (`head + 1`). On any error nothing is written.
    pub async fn commit(
        mut self,
        rows: &[NewRow],
        audit: &[AuditEntry],
        fence: Option<&Fence>,
    ) -> Result<u64, ClusterError> {
        if let Some(fence) = fence {
            let current = self
                .client
                .query_opt(
                    "SELECT 1 FROM rollgate_lease WHERE name = 'controller' AND holder = $1 \
                     AND epoch = $2 AND expires_at > clock_timestamp() FOR SHARE",
                    &[&fence.holder, &fence.epoch],
                )
                .await?;
            if current.is_none() {
                return Err(ClusterError::Fenced { epoch: fence.epoch });
            }
        }
        let first = self.head + 1;
        for (i, row) in rows.iter().enumerate() {
            let revision = (first + i as u64) as i64;
            self.client
                .execute(
                    "INSERT INTO rollgate_feed (revision, kind, key, body, cause) VALUES ($1, $2, $3, $4, $5)",
                    &[&revision, &row.kind.as_str(), &row.key, &row.body, &row.cause],
                )
                .await?;
            let (table, key) = row.kind.table();
            let cast = if row.kind == Kind::Release {
                "::uuid"
            } else {
                ""
            };
            match &row.body {
                Some(body) => {
                    let sql = format!(
                        "INSERT INTO {table} ({key}, body, revision) VALUES ($1{cast}, $2, $3) \
                         ON CONFLICT ({key}) DO UPDATE SET body = EXCLUDED.body, revision = EXCLUDED.revision"
                    );
                    self.client
                        .execute(&sql, &[&row.key, body, &revision])
                        .await?;
                }
                None => {
                    let sql = format!("DELETE FROM {table} WHERE {key} = $1{cast}");
                    self.client.execute(&sql, &[&row.key]).await?;
                }
            }
        }
        for entry in audit {
            let body = serde_json::to_string(entry).map_err(|e| ClusterError::Corrupt {
                table: "rollgate_audit",
                key: entry.id.to_string(),
                message: e.to_string(),
            })?;
            self.client
                .execute(
                    "INSERT INTO rollgate_audit (id, flag, release, body) VALUES ($1, $2, $3, $4)",
                    &[&entry.id, &entry.flag, &entry.release, &body],
                )
                .await?;
        }
        let new_head = self.head + rows.len() as u64;
        if !rows.is_empty() {
            self.client
                .execute(
                    "UPDATE rollgate_head SET revision = $1 WHERE id = 1",
                    &[&(new_head as i64)],
                )
                .await?;
            self.client
                .execute(
                    "SELECT pg_notify('rollgate_feed', $1)",
                    &[&new_head.to_string()],
                )
                .await?;
        }
        self.client.batch_execute("COMMIT").await?;
        self.open = false;
        Ok(first)
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        if self.open {
            // The first poll queues the statement on the connection (as tokio-postgres's own
            // `Transaction` does on drop); its answer is not awaited.
            let _ = self.client.batch_execute("ROLLBACK").now_or_never();
        }
    }
}
