//! `rollgate migrate --from-data-dir DIR --to postgres://…`: the thin shell around
//! `cluster::migrate::from_sled` (open the stopped node's sled dir, connect, copy, print the
//! summary). Exit codes: `0` copied, `1` refused (the database already holds state) or the
//! data dir could not be read or written, `2` the database is unreachable.

use crate::cluster::{db, migrate, ClusterError};
use crate::store::Store;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// `rollgate migrate` arguments.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The sled data dir of a STOPPED single node (its `--data-dir`).
    #[arg(long)]
    pub from_data_dir: PathBuf,
    /// The PostgreSQL URL the cluster will use.
    #[arg(long, env = "ROLLGATE_DATABASE_URL", hide_env_values = true)]
    pub to: String,
    /// Extra CA file (PEM) trusted beside the system roots (`sslmode=verify-full` in the URL).
    #[arg(long, env = "ROLLGATE_CA_FILE")]
    pub ca_file: Option<PathBuf>,
}

/// Runs the migration, printing the summary or the error; returns the exit code.
pub fn run(args: MigrateArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("rollgate: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(migrate_dir(&args)) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(Failure::Unreachable(e)) => {
            eprintln!("rollgate: cannot reach the database: {e}");
            ExitCode::from(2)
        }
        Err(Failure::Other(message)) => {
            eprintln!("rollgate: {message}");
            ExitCode::FAILURE
        }
    }
}

enum Failure {
    Unreachable(ClusterError),
    Other(String),
}

async fn migrate_dir(args: &MigrateArgs) -> Result<migrate::MigrateReport, Failure> {
    let dir = &args.from_data_dir;
    // sled keeps its settings in `conf`: without it this is not a data dir (and opening it
    // would create an empty store and "migrate" nothing).
    if !dir.join("conf").is_file() {
        return Err(Failure::Other(format!(
            "{} is not a rollgate data directory",
            dir.display()
        )));
    }
    let (mut client, connection) = db::connect(&args.to, args.ca_file.as_deref())
        .await
        .map_err(|e| match e {
            ClusterError::Url(_) => Failure::Other(e.to_string()),
            e => Failure::Unreachable(e),
        })?;
    let driver = tokio::spawn(connection);
    let store = Store::open(dir).map_err(|e| {
        Failure::Other(format!(
            "opening {} (is its server still running?): {e}",
            dir.display()
        ))
    })?;
    let result = migrate::from_sled(&store, &mut client).await;
    drop(client);
    let _ = driver.await;
    result.map_err(|e| match e {
        ClusterError::NotEmpty(_) => Failure::Other(format!("{e}; nothing was written")),
        e => Failure::Other(format!(
            "{e}; the copy is one transaction, all or nothing: it is safe to run again"
        )),
    })
}
