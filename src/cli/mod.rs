//! The ops CLI: `rollgate flags|segments|tokens|policy|signals|release|audit|watch|drill`, the
//! same binary talking to a running server over HTTP (`ROLLGATE_URL`, `ROLLGATE_TOKEN`, or
//! `--url` / `--token`). docs/cli.md documents every command.
//!
//! Shape: each command group has its clap arguments and a thin `run` in its own file that
//! asks [`client::Client`] and hands the answer to a pure renderer (`output`, or the group's
//! own `render_*` functions). `--output json|yaml` (`--json` is `--output json`) prints the
//! server's document unchanged for scripts; tables are coloured only on a terminal without
//! `NO_COLOR` (output.rs). Documents read from files (`-f`) are checked against the server's
//! own types first (document.rs), so a typo is reported with its file and field before
//! anything is sent.
//!
//! Commands that talk to no server: `rollgate migrate` (migrate.rs) copies a stopped node's
//! data dir into PostgreSQL; `rollgate policy validate` (policy_check.rs) runs the server's
//! policy validation on files; `rollgate completions` (completions.rs, wired in main.rs,
//! which owns the root command) prints a shell completion script.
//!
//! Flags as code: `rollgate apply` (apply.rs) sends a directory of flags, segments, policies and
//! release plans in one all-or-nothing request and prints its diff; `rollgate export`
//! (export.rs) writes the server's state as such a directory.
//!
//! Exit codes: `0` success, `1` the server refused the request (its `error.message` and
//! `error.field` are printed), the input was bad (file and field named), or what the command
//! checked failed (a drill, an invalid policy file, rejected signals), `2` the server is
//! unreachable — and, as for every clap program, a command line clap itself refuses (an unknown
//! option), `3` the token is missing, refused or lacks the role the command needs. Messages go
//! to stderr, results to stdout.

pub mod apply;
pub mod audit;
pub mod client;
pub mod completions;
pub mod document;
pub mod drill;
pub mod export;
pub mod flag_fields;
pub mod flags;
pub mod migrate;
pub mod output;
pub mod policy;
pub mod policy_check;
pub mod release;
pub mod segments;
pub mod signals;
pub mod tokens;
pub mod watch;
pub mod yaml;

use clap::{Args, Subcommand};
use client::{CliError, Client};
use output::Format;
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
    /// How to print results: tables for people, or the server's document as JSON or YAML.
    #[arg(long, value_enum, global = true, default_value_t = Format::Table)]
    pub output: Format,
    /// Same as `--output json`.
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

    /// The output format; `--json` wins over `--output`.
    pub fn format(&self) -> Format {
        if self.json {
            Format::Json
        } else {
            self.output
        }
    }
}

/// The ops commands, flattened into the binary's top-level subcommands.
#[derive(Debug, Subcommand)]
pub enum OpsCommand {
    /// Create, edit, list, inspect, ramp and kill flags.
    Flags(flags::FlagsArgs),
    /// Create, edit, list and inspect segments.
    Segments(segments::SegmentsArgs),
    /// Create, list and revoke API tokens.
    Tokens(tokens::TokensArgs),
    /// Apply release plans and operate releases.
    Release(release::ReleaseArgs),
    /// Read the audit log, newest first.
    Audit(audit::AuditArgs),
    /// List, show and validate policies; rehearse one at a given traffic.
    Policy(policy::PolicyArgs),
    /// Send a batch of signals from a file, for scripts and drills.
    Signals(signals::SignalsArgs),
    /// Follow the live stream of changes until interrupted.
    Watch(watch::WatchArgs),
    /// Run a rollback drill: kill and revive the drill flag, report reach and checks
    /// (exit code 1 when it failed).
    Drill(drill::DrillArgs),
    /// Print a shell completion script (bash, zsh, fish, …) to stdout.
    Completions(completions::CompletionsArgs),
    /// Flags as code: apply a directory or file of flags, segments, policies and release
    /// plans in one all-or-nothing request (docs/flags-as-code.md).
    Apply(apply::ApplyArgs),
    /// Write the server's flags, segments, policies and release plans as files for `apply`.
    Export(export::ExportArgs),
}

/// Runs one ops command, printing its error (if any) and mapping it to the exit code.
pub fn run(command: OpsCommand) -> ExitCode {
    let result = match command {
        OpsCommand::Flags(args) => flags::run(args),
        OpsCommand::Segments(args) => segments::run(args),
        OpsCommand::Tokens(args) => tokens::run(args),
        OpsCommand::Signals(args) => signals::run(args),
        OpsCommand::Release(args) => release::run(args),
        OpsCommand::Audit(args) => audit::run(args),
        OpsCommand::Policy(args) => policy::run(args),
        OpsCommand::Watch(args) => watch::run(args),
        OpsCommand::Drill(args) => drill::run(args),
        // main.rs answers it with the root command; reaching this arm is a wiring mistake.
        OpsCommand::Completions(_) => Err(CliError::Input(
            "completions are printed by the binary's entry point".into(),
        )),
        OpsCommand::Apply(args) => apply::run(args),
        OpsCommand::Export(args) => export::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rollgate: {}", output::clean(&e.to_string()));
            ExitCode::from(e.exit_code())
        }
    }
}

/// Prints the document in `format` (`human` renders tables). Write errors (a closed pipe) are
/// deliberately ignored: the command itself succeeded.
fn show(
    format: Format,
    value: &serde_json::Value,
    human: impl FnOnce(&serde_json::Value) -> String,
) {
    let _ = output::emit(&output::render(format, value, human));
}
