//! `rollgate signals send -f FILE|-`: posts one batch of signals, in the body format of
//! `POST /api/v1/signals` (docs/api.md#signals), for scripts and drills.
//!
//! The file must be a JSON (or TOML) object; its syntax is checked here (file and line), its
//! content by the server, whose 400/422 names the field (`signals[3].count`). The endpoint
//! takes a `client` or `admin` token (a viewer may not send). Signals the server could not
//! apply (unknown flag or variant) are listed, and make the exit code 1, so a drill script
//! notices a typo in a flag key.

use super::client::CliError;
use super::document;
use super::output::{text_of, Table};
use super::{show, Remote};
use clap::{Args, Subcommand};
use serde_json::Value;
use std::path::PathBuf;

/// `rollgate signals …`
#[derive(Debug, Args)]
pub struct SignalsArgs {
    #[command(flatten)]
    remote: Remote,
    #[command(subcommand)]
    command: SignalsCommand,
}

#[derive(Debug, Subcommand)]
enum SignalsCommand {
    /// Send one batch (`{"signals": [...]}`) from a file (`-` reads stdin); needs a client or
    /// admin token.
    Send {
        /// The batch, JSON (or TOML) as `POST /api/v1/signals` takes it.
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: PathBuf,
    },
}

/// Runs a `signals` subcommand.
pub fn run(args: SignalsArgs) -> Result<(), CliError> {
    let format = args.remote.format();
    let SignalsCommand::Send { file } = args.command;
    let batch = document::read(&file)?;
    let client = args.remote.client()?;
    let answer = client.post("/api/v1/signals", &batch)?;
    show(format, &answer, render);
    match answer["rejected"].as_u64() {
        Some(0) => Ok(()),
        Some(n) => Err(CliError::Failed(format!(
            "{n} signal(s) rejected by the server (see the errors above)"
        ))),
        None => Err(CliError::Protocol {
            url: client.base().to_owned(),
            detail: "the signals report has no `rejected` count".into(),
        }),
    }
}

/// The report: counts, then each rejected signal and why.
pub fn render(report: &Value) -> String {
    let mut out = format!(
        "accepted {}, rejected {}\n",
        text_of(&report["accepted"]),
        text_of(&report["rejected"])
    );
    let errors = report["errors"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if !errors.is_empty() {
        let mut table = Table::new(&["INDEX", "ERROR"]);
        for e in errors {
            table.row(vec![text_of(&e["index"]), text_of(&e["error"])]);
        }
        out += &table.render();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_report_lists_rejected_signals() {
        let text = render(&json!({"accepted": 1, "rejected": 1,
            "errors": [{"index": 1, "error": "unknown flag \"nope\""}]}));
        assert_eq!(
            text,
            "accepted 1, rejected 1\nINDEX  ERROR\n1      unknown flag \"nope\"\n"
        );
    }
}
