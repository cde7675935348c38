//! Connections and migrations: a small pool for the control path, a dedicated connection for
//! `LISTEN`, and the versioned schema applied at start. Both connect through `pg_tls`, which
//! honours the URL's `sslmode` (libpq semantics) with the system roots plus `ca_file`.

use super::schema::{MIGRATIONS, SCHEMA_VERSION};
use super::ClusterError;
use std::path::Path;
use std::time::Duration;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres_rustls::MakeRustlsConnect;

/// The TLS stream of a connection (plain when `sslmode` or the server says so).
pub type TlsStream = <MakeRustlsConnect as MakeTlsConnect<tokio_postgres::Socket>>::Stream;

/// A pool of connections to the database (the control path, the feed reader, the outbox
/// flusher, the lease; never evaluation).
pub type Pool = deadpool_postgres::Pool;

/// Parses `url` and builds a pool of at most `size` connections; connects lazily. `ca_file` is
/// trusted beside the system's roots when `sslmode` asks for verification.
pub fn pool(url: &str, ca_file: Option<&Path>, size: usize) -> Result<Pool, ClusterError> {
    let (mut config, tls) = super::pg_tls::config(url, ca_file)?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(3));
    }
    config.application_name("rollgate");
    // A node that stops (SIGSTOP, a long GC-like pause, a hung disk) while its write holds the
    // global head lock must not freeze every other node's writes: the database ends a
    // transaction left idle for 5 s (releasing the lock), and a writer waits at most 10 s for
    // the lock before its request fails with 503.
    config.options("-c idle_in_transaction_session_timeout=5000 -c lock_timeout=10000");
    config.keepalives_idle(Duration::from_secs(10));
    let manager = deadpool_postgres::Manager::from_config(
        config,
        tls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    deadpool_postgres::Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(Duration::from_secs(5)))
        .create_timeout(Some(Duration::from_secs(3)))
        .recycle_timeout(Some(Duration::from_secs(3)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| ClusterError::Url(format!("{e}")))
}

/// One dedicated connection (for `LISTEN`): the client, and its connection driven by `on_message`
/// until it closes.
pub async fn connect(
    url: &str,
    ca_file: Option<&Path>,
) -> Result<
    (
        tokio_postgres::Client,
        tokio_postgres::Connection<tokio_postgres::Socket, TlsStream>,
    ),
    ClusterError,
> {
    let (mut config, tls): (_, MakeRustlsConnect) = super::pg_tls::config(url, ca_file)?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(3));
    }
    config.application_name("rollgate-listen");
    config.keepalives_idle(Duration::from_secs(10));
    Ok(config.connect(tls).await?)
}

/// The advisory lock key under which migrations run (several nodes may start at once).
const MIGRATION_LOCK: i64 = 0x726f_6c6c_6761_7465; // "rollgate"

/// Applies every migration the database lacks, in one transaction under an advisory lock.
/// Refuses a database whose schema is newer than this build knows. Returns the version.
pub async fn migrate(client: &mut tokio_postgres::Client) -> Result<i32, ClusterError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let exists: bool = tx
        .query_one("SELECT to_regclass('rollgate_schema') IS NOT NULL", &[])
        .await?
        .get(0);
    let found: i32 = if exists {
        tx.query_one("SELECT coalesce(max(version), 0) FROM rollgate_schema", &[])
            .await?
            .get(0)
    } else {
        0
    };
    if found > SCHEMA_VERSION {
        return Err(ClusterError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = i as i32 + 1;
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO rollgate_schema (version) VALUES ($1)",
            &[&version],
        )
        .await?;
        tracing::info!(version, "database schema migrated");
    }
    tx.commit().await?;
    Ok(SCHEMA_VERSION)
}
