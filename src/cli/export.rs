//! `rollgate export DIR`: the server's flags, segments, policies and release plans written as
//! a document tree that `rollgate apply -f DIR` reads back as "no changes".
//!
//! One bare object per file, in a directory named after its kind: `flags/<key>.toml`,
//! `segments/<key>.toml`, `policies/<name>.toml` (the shape of the server's own policy files),
//! `releases/<name>.toml` (the newest plan of each name). An object TOML cannot hold (a JSON
//! `null` inside a variant value) is written as `<key>.json` instead. DIR must be empty or
//! absent, so a stale file can never slip into the next apply.

use super::apply::KINDS;
use super::client::CliError;
use super::Remote;
use clap::Args;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// `rollgate export DIR`
#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    remote: Remote,
    /// Where to write (created; must be empty if it exists).
    dir: PathBuf,
}

/// Runs `rollgate export`.
pub fn run(args: ExportArgs) -> Result<(), CliError> {
    let state = args.remote.client()?.get("/api/v1/export")?;
    let io = |e: std::io::Error| CliError::Input(format!("{}: {e}", args.dir.display()));
    if args.dir.exists() && std::fs::read_dir(&args.dir).map_err(io)?.next().is_some() {
        return Err(CliError::Input(format!(
            "{}: not empty; export writes into an empty or new directory",
            args.dir.display()
        )));
    }
    let mut written = 0;
    for (_, list, dir) in KINDS {
        for object in state[list].as_array().into_iter().flatten() {
            let name = object
                .get("key")
                .or_else(|| object.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| CliError::Protocol {
                    url: "/api/v1/export".into(),
                    detail: format!("an object of {list} has no key or name"),
                })?;
            write_object(&args.dir.join(dir), name, object)?;
            written += 1;
        }
    }
    eprintln!("exported {written} objects to {}", args.dir.display());
    Ok(())
}

/// Writes `object` as `dir/<name>.toml` (or `.json` when TOML cannot hold it).
fn write_object(dir: &Path, name: &str, object: &Value) -> Result<(), CliError> {
    let io = |e: std::io::Error| CliError::Input(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(io)?;
    let (file, text) = match toml::to_string(object) {
        Ok(text) => (dir.join(format!("{name}.toml")), text),
        Err(_) => {
            let text = serde_json::to_string_pretty(object).map_err(|e| CliError::Protocol {
                url: "/api/v1/export".into(),
                detail: e.to_string(),
            })?;
            (dir.join(format!("{name}.json")), text + "\n")
        }
    };
    std::fs::write(&file, text).map_err(io)
}
