//! `rollgate drill [--flag KEY] [--wait 3s]`: runs a rollback drill on the server
//! (`POST /api/v1/drills`) and prints its result; exit code 0 when it passed, 1 when it failed.

use super::client::CliError;
use super::output::{number, Table};
use super::{show, Remote};
use clap::Args;
use serde_json::{json, Value};
use std::time::Duration;

/// `rollgate drill …`
#[derive(Debug, Args)]
pub struct DrillArgs {
    #[command(flatten)]
    remote: Remote,
    /// The drill flag (default on the server: `rollgate-drill`, created when missing).
    #[arg(long)]
    flag: Option<String>,
    /// Longest wait for streams, client reports and webhooks after each step (e.g. `3s`,
    /// at most `60s`).
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    wait: Duration,
}

/// Runs `drill`.
pub fn run(args: DrillArgs) -> Result<(), CliError> {
    // Two waits (kill, revive) plus the commits: the read timeout must outlast them.
    let timeout = args.wait * 2 + Duration::from_secs(30);
    let client = args.remote.client_with_timeout(Some(timeout))?;
    let mut body = json!({ "wait_ms": args.wait.as_millis() as u64 });
    if let Some(flag) = args.flag {
        body["flag"] = json!(flag);
    }
    let result = client.post("/api/v1/drills", &body)?;
    show(args.remote.format(), &result, render);
    if result["passed"] == true {
        Ok(())
    } else {
        Err(CliError::Failed(format!(
            "drill {} failed",
            result["id"].as_str().unwrap_or("?")
        )))
    }
}

fn ms(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "-".to_owned(), |x| format!("{} ms", number(x)))
}

/// The drill result as tables: the steps with their stream figures, the reach, the checks.
pub fn render(r: &Value) -> String {
    let verdict = if r["passed"] == true {
        "PASSED"
    } else {
        "FAILED"
    };
    let mut out = format!(
        "drill {} of {}: {verdict} ({} → {})\n\n",
        r["id"].as_str().unwrap_or("?"),
        r["flag"].as_str().unwrap_or("?"),
        r["started"].as_str().unwrap_or("?"),
        r["finished"].as_str().unwrap_or("?"),
    );
    let mut steps = Table::new(&["STEP", "REVISION", "COMMIT", "STREAMS", "P50", "P99", "MAX"]);
    for s in r["steps"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let st = &s["stream"];
        steps.row(vec![
            s["action"].as_str().unwrap_or("?").to_owned(),
            s["revision"].to_string(),
            ms(&s["commit_ms"]),
            format!("{}/{}", st["reached"], st["subscribers"]),
            ms(&st["p50_ms"]),
            ms(&st["p99_ms"]),
            ms(&st["max_ms"]),
        ]);
    }
    out.push_str(&steps.render());
    let reach = &r["reach"];
    out.push_str(&format!(
        "\nreach: {} of {} live clients confirmed the kill (share {}, target {}), p50 {}, p99 {}\n\n",
        reach["confirmed"],
        reach["live_clients"],
        reach["share"].as_f64().map_or_else(|| "-".to_owned(), number),
        reach["target"],
        ms(&reach["p50_ms"]),
        ms(&reach["p99_ms"]),
    ));
    let mut checks = Table::new(&["CHECK", "RESULT", "REASON"]);
    for c in r["checks"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        checks.row(vec![
            c["name"].as_str().unwrap_or("?").to_owned(),
            if c["passed"] == true { "pass" } else { "FAIL" }.to_owned(),
            c["reason"].as_str().unwrap_or("").to_owned(),
        ]);
    }
    out.push_str(&checks.render());
    out
}
