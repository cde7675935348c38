//! Cluster mode: the PostgreSQL backend shared by several nodes (see docs/cluster.md).
//!
//! - `schema.rs`: versioned migrations; `db.rs`: the pool, the `LISTEN` connection, migrating.
//! - `pg.rs`: loading the state, reading the feed, the write transaction (head lock, fence).
//! - `boot.rs`: starting a node (migrate, bring the local replica up to the database, or start degraded).
//! - `listen.rs`: the `LISTEN` connection that wakes the feed follower and the controller.
//! - `lease.rs`: the fenced controller lease (`PgLease`, `check_fence`), on the database clock.
//! - `migrate.rs`: `rollgate migrate`, copying a sled data dir into an empty database.
//! - `pg_tls.rs`: TLS to the database, libpq's `sslmode` (disable … verify-full) on rustls.
//! - `signals.rs`: the signal outbox flushed exactly once into global totals, and reading them.

pub mod boot;
pub mod db;
pub mod lease;
pub mod listen;
pub mod migrate;
pub mod pg;
pub mod pg_tls;
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
    /// Extra CA file trusted beside the system roots (`sslmode=verify-ca|verify-full`).
    pub ca_file: Option<std::path::PathBuf>,
}

impl ClusterConfig {
    /// Settings for `database_url` with every default.
    pub fn new(database_url: impl Into<String>) -> Self {
        ClusterConfig {
            database_url: database_url.into(),
            node_id: None,
            lease_ttl: Duration::from_secs(5),
            feed_poll: Duration::from_secs(1),
            ca_file: None,
        }
    }
}

/// `error` and its sources, each once ("error performing TLS handshake: invalid peer
/// certificate: UnknownIssuer"): the driver's own message leaves out the cause.
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

/// Errors of the cluster backend.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The database URL does not parse.
    #[error("database URL: {0}")]
    Url(String),
    /// The database could not be reached or refused a statement.
    #[error("database: {}", causes(.0))]
    Db(#[from] tokio_postgres::Error),
    /// No connection could be had from the pool.
    #[error("database unavailable: {}", causes(.0))]
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
    /// This node's lease epoch is no longer current: its decision was not committed.
    #[error("fenced: lease epoch {epoch} is no longer current")]
    Fenced { epoch: i64 },
    /// The database did not answer in time.
    #[error("database did not answer in time: {0}")]
    Timeout(&'static str),
    /// `rollgate migrate` found the database already holding state; it wrote nothing.
    #[error("the database already holds rollgate state ({0}); migrate refuses to merge into it")]
    NotEmpty(String),
    /// The node's local store (its replica, its signal outbox, or the sled data dir being
    /// migrated) failed.
    #[error("local store: {0}")]
    Store(#[from] crate::store::StoreError),
    /// An object could not be encoded as JSON.
    #[error("encoding {what}: {message}")]
    Encode { what: String, message: String },
}

/// This node's part of the cluster: its name, settings, the pool, and what wakes its tasks.
#[derive(Debug)]
pub struct Node {
    /// The stable node id (signal batch ids, logs).
    pub id: String,
    /// The settings.
    pub config: ClusterConfig,
    /// Connections for the control path (never evaluation).
    pub pool: db::Pool,
    /// Wakes for the feed follower and the controller.
    pub wakes: listen::Wakes,
    /// Wakes the outbox flusher (a signal batch was accepted).
    pub outbox: std::sync::Arc<tokio::sync::Notify>,
    /// Whether the last database operation succeeded (writes are refused while it is down).
    pub db_up: std::sync::atomic::AtomicBool,
}

impl Node {
    /// A node named `id` on `pool`.
    pub fn new(id: String, config: ClusterConfig, pool: db::Pool) -> Self {
        Node {
            id,
            config,
            pool,
            wakes: listen::Wakes {
                feed: Default::default(),
                signals: Default::default(),
                connected: Default::default(),
            },
            outbox: Default::default(),
            db_up: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Records whether the database answered.
    pub fn set_db_up(&self, up: bool) {
        let was = self.db_up.swap(up, std::sync::atomic::Ordering::Relaxed);
        if was != up {
            if up {
                tracing::info!("database reachable: writes accepted");
            } else {
                tracing::warn!(
                    "database unreachable: serving the last applied state, refusing writes"
                );
            }
        }
    }

    /// Whether writes are currently possible.
    pub fn db_up(&self) -> bool {
        self.db_up.load(std::sync::atomic::Ordering::Relaxed)
    }
}
