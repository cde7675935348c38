//! Structured logging through `tracing`: human lines by default, JSON with `--log-format json`.
//! Level from `RUST_LOG` (default `info`). Logs go to stderr; stdout carries only the
//! listening address and a generated admin token. Human lines are coloured only when stderr is
//! a terminal and `NO_COLOR` is unset or empty (no-color.org), so a log file or a journal
//! never holds escape codes.
//!
//! actix's HTTP/1 dispatcher logs every broken connection at ERROR (`stream error: request
//! parse error …`: a malformed request, a head too large, a peer that hung up mid-read). Those
//! are the client's faults, answered with a 400/431 or nothing, and would bury real errors, so
//! that target is off unless `RUST_LOG` names `actix_http` itself (e.g.
//! `RUST_LOG=info,actix_http=debug` to debug connections). A body we fail to read is logged by
//! the API at DEBUG.

use crate::config::LogFormat;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Whether log lines may carry colour codes: a terminal, and no `NO_COLOR`.
fn colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Installs the global subscriber (once; later calls are ignored).
pub fn init(format: LogFormat) {
    let mut filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sled=warn,actix_server=warn"));
    let asked_for_actix = std::env::var("RUST_LOG").is_ok_and(|v| v.contains("actix_http"));
    if !asked_for_actix {
        if let Ok(quiet) = "actix_http::h1::dispatcher=off".parse() {
            filter = filter.add_directive(quiet);
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
