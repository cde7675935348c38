//! Cluster mode: the PostgreSQL backend shared by several nodes (see docs/cluster.md).
//!
//! - `schema.rs`: versioned migrations; `db.rs`: the pool, the `LISTEN` connection, migrating.
//! - `signals.rs`: the signal outbox flushed exactly once into global totals, and reading them.

pub mod db;
pub mod schema;
pub mod signals;

use std::time::Duration;

/// Cluster settings (`rollgate serve --database-url …`; docs/cluster.md).
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// PostgreSQL URL.
    pub database_url: String,
    /// This node's stable name; generated once and kept in the data dir when `None`.
    pub node_id: Option<String>,
    /// Lifetime of the controller lease without renewal (renewed every third of it).
    pub lease_ttl: Duration,
    /// Safety poll of the change feed, beside `LISTEN/NOTIFY`.
    pub feed_poll: Duration,
}

impl ClusterConfig {
    /// Settings for `database_url` with every default.
    pub fn new(database_url: impl Into<String>) -> Self {
        ClusterConfig {
            database_url: database_url.into(),
            node_id: None,
            lease_ttl: Duration::from_secs(5),
            feed_poll: Duration::from_secs(1),
        }
    }
}

/// Errors of the cluster backend.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The database URL does not parse.
    #[error("database URL: {0}")]
    Url(String),
    /// The database could not be reached or refused a statement.
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
    /// No connection could be had from the pool.
    #[error("database unavailable: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// The database was migrated by a newer rollgate.
    #[error("database has schema version {found}, this build supports up to {supported}")]
    SchemaTooNew { found: i32, supported: i32 },
    /// A stored row could not be decoded.
    #[error("corrupt row in {table}/{key}: {message}")]
    Corrupt {
        table: &'static str,
        key: String,
        message: String,
    },
    /// The node's local store (its signal outbox) failed.
    #[error("local store: {0}")]
    Store(#[from] crate::store::StoreError),
    /// This node's lease epoch is no longer current: its decision was not committed.
    #[error("fenced: lease epoch {epoch} is no longer current")]
    Fenced { epoch: i64 },
}
