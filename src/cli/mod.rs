//! The ops CLI: `rollgate flags|release|audit|policy|watch|drill`, the same binary talking to a running
//! server over HTTP (`ROLLGATE_URL`, `ROLLGATE_TOKEN`, or `--url` / `--token`).
//!
//! Shape: each command group has its clap arguments and a thin `run` in its own file that
//! asks [`client::Client`] and hands the answer to a pure renderer (`output`, or the group's
//! own `render_*` functions). `--json` prints the server's JSON document unchanged for scripts.
//!
//! `rollgate migrate` (migrate.rs) is the one command that talks to no server: it copies a
//! stopped node's data dir into PostgreSQL.
//!
//! Exit codes: `0` success, `1` the server refused the request (its `error.message` is
//! printed) or the input was bad, `2` the server is unreachable, `3` the token is missing,
//! refused or lacks the admin role. Messages go to stderr, results to stdout.

pub mod audit;
pub mod client;
pub mod drill;
pub mod flags;
pub mod migrate;
pub mod output;
pub mod policy;
pub mod release;
pub mod watch;

use clap::{Args, Subcommand};
use client::{CliError, Client};
use std::process::ExitCode;
use std::time::Duration;

/// Where the server is and how to talk to it; accepted anywhere after the command group.
#[derive(Debug, Clone, Args)]
pub struct Remote {
    /// Base URL of the server (http:// or https://).
    #[arg(
        long,
        env = "ROLLGATE_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: String,
    /// Bearer token (admin role).
    #[arg(long, env = "ROLLGATE_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Extra CA certificates (PEM) trusted beside the system's, for an https:// server.
    #[arg(long, env = "ROLLGATE_CA_FILE", global = true)]
    pub ca_file: Option<std::path::PathBuf>,
    /// Print the server's JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

impl Remote {
    /// A client for this server.
    pub fn client(&self) -> Result<Client, CliError> {
        Client::new(&self.url, self.token.clone(), self.ca_file.as_deref())
    }

    /// A client for this server whose reads wait at most `timeout` (`None`: forever).
    pub fn client_with_timeout(&self, timeout: Option<Duration>) -> Result<Client, CliError> {
        Client::with_timeout(
            &self.url,
            self.token.clone(),
            timeout,
            self.ca_file.as_deref(),
        )
    }
}

/// The ops commands, flattened into the binary's top-level subcommands.
#[derive(Debug, Subcommand)]
pub enum OpsCommand {
    /// List, inspect, ramp and kill flags.
    Flags(flags::FlagsArgs),
    /// Apply release plans and operate releases.
    Release(release::ReleaseArgs),
    /// Read the audit log, newest first.
    Audit(audit::AuditArgs),
    /// Rehearse a policy: simulated releases at a given traffic.
    Policy(policy::PolicyArgs),
    /// Follow the live stream of changes until interrupted.
    Watch(watch::WatchArgs),
    /// Run a rollback drill: kill and revive the drill flag, report reach and checks
    /// (exit code 1 when it failed).
    Drill(drill::DrillArgs),
}

/// Runs one ops command, printing its error (if any) and mapping it to the exit code.
pub fn run(command: OpsCommand) -> ExitCode {
    let result = match command {
        OpsCommand::Flags(args) => flags::run(args),
        OpsCommand::Release(args) => release::run(args),
        OpsCommand::Audit(args) => audit::run(args),
        OpsCommand::Policy(args) => policy::run(args),
        OpsCommand::Watch(args) => watch::run(args),
        OpsCommand::Drill(args) => drill::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rollgate: {}", output::clean(&e.to_string()));
            ExitCode::from(e.exit_code())
        }
    }
}

/// Prints either the JSON document or its human rendering. Write errors (a closed pipe) are
/// deliberately ignored: the command itself succeeded.
fn show(json: bool, value: &serde_json::Value, human: impl FnOnce(&serde_json::Value) -> String) {
    let text = if json {
        output::json(value)
    } else {
        human(value)
    };
    let _ = output::emit(&text);
}
