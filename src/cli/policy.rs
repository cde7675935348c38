//! `rollgate policy list|show NAME|delete NAME|validate FILE…|rehearse NAME …`.
//!
//! `list` and `show` read the server's policies (`show` prints the policy as the TOML of a
//! `policies/NAME.toml` file in table mode). `delete` asks the server, which refuses (409) while
//! a flag or a release names the policy or a `policies/` file defines it. `validate` needs no server (policy_check.rs).
//! `rehearse NAME --traffic 2000/min --base METRIC=RATE… [--runs N] [--seed S]
//! [--max-seconds T]` asks the server to rehearse a policy and prints the figures as tables.

use super::client::CliError;
use super::output::{number, text_of, Table};
use super::{policy_check, show, Remote};
use crate::policies::Policy;
use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::time::Duration;

/// `rollgate policy …`
#[derive(Debug, Args)]
pub struct PolicyArgs {
    #[command(subcommand)]
    command: PolicyCommand,
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Every policy on the server: scope, guards, confidence, false-rollback budget.
    List(Remote),
    /// One policy, as the TOML of its file (`--output json|yaml`: the server's document).
    Show {
        #[command(flatten)]
        remote: Remote,
        /// The policy's name.
        name: String,
    },
    /// Delete a policy; refused while a flag or a release names it, or a policies/ file defines it.
    Delete {
        #[command(flatten)]
        remote: Remote,
        /// The policy's name.
        name: String,
    },
    /// Check policy files offline with the server's own validation (exit 1 when one is bad).
    Validate {
        /// Policy files: `.toml` (named NAME.toml, as in policies/) or `.json`; `-` is stdin.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Simulate releases under the policy: ramp time, false rollbacks, regressions caught.
    Rehearse(RehearseArgs),
}

#[derive(Debug, Args)]
struct RehearseArgs {
    #[command(flatten)]
    remote: Remote,
    /// The policy's name.
    name: String,
    /// Expected exposures reaching the flag: `2000/min`, `30/s`, `50000/h` or a number per minute.
    #[arg(long)]
    traffic: String,
    /// Base rate of a guarded metric on the old variant, `METRIC=RATE` (repeatable).
    #[arg(long, required = true)]
    base: Vec<String>,
    /// Simulated releases per scenario (server default 200).
    #[arg(long)]
    runs: Option<u64>,
    /// Seed (server default 1).
    #[arg(long)]
    seed: Option<u64>,
    /// Computation budget in seconds (server default 10).
    #[arg(long)]
    max_seconds: Option<f64>,
}

/// Runs `policy …`.
pub fn run(args: PolicyArgs) -> Result<(), CliError> {
    match args.command {
        PolicyCommand::Rehearse(args) => rehearse(args),
        PolicyCommand::Validate { files } => policy_check::run(&files),
        PolicyCommand::List(remote) => {
            let answer = remote.client()?.get("/api/v1/policies")?;
            show(remote.format(), &answer, render_list);
            Ok(())
        }
        PolicyCommand::Show { remote, name } => {
            let path = format!("/api/v1/policies/{}", super::client::segment(&name));
            let answer = remote.client()?.get(&path)?;
            show(remote.format(), &answer, render_toml);
            Ok(())
        }
        PolicyCommand::Delete { remote, name } => {
            let path = format!("/api/v1/policies/{}", super::client::segment(&name));
            remote.client()?.delete(&path)?;
            let answer = json!({ "deleted": name });
            show(remote.format(), &answer, |_| {
                format!("policy {name} deleted")
            });
            Ok(())
        }
    }
}

/// The `GET /api/v1/policies` document as a table.
pub fn render_list(answer: &Value) -> String {
    let policies = answer["policies"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if policies.is_empty() {
        return "no policies".to_owned();
    }
    let mut table = Table::new(&["NAME", "SCOPE", "GUARDS", "CONFIDENCE", "FALSE ROLLBACKS"]);
    for p in policies {
        let guards: Vec<String> = p["guard"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|g| format!("{} ({})", text_of(&g["metric"]), text_of(&g["class"])))
            .collect();
        table.row(vec![
            text_of(&p["name"]),
            text_of(&p["scope"]),
            if guards.is_empty() {
                "-".into()
            } else {
                guards.join(", ")
            },
            p["confidence"].as_f64().map_or("-".into(), number),
            p["false_rollback_rate"].as_f64().map_or("-".into(), number),
        ]);
    }
    table.render()
}

/// A policy document as the TOML of its `policies/NAME.toml` file (JSON if it is not one).
pub fn render_toml(policy: &Value) -> String {
    serde_json::from_value::<Policy>(policy.clone())
        .ok()
        .and_then(|p| toml::to_string(&p).ok())
        .unwrap_or_else(|| super::output::json(policy))
}

/// `2000/min` → 2000, `30/s` → 1800, `50000/h` → 833.3, `2000` → 2000.
pub fn parse_traffic(text: &str) -> Result<f64, CliError> {
    let bad = || {
        CliError::Input(format!(
            "--traffic: {text:?} is not a rate (use 2000/min, 30/s, 50000/h)"
        ))
    };
    let (n, per) = text.split_once('/').unwrap_or((text, "min"));
    let n: f64 = n.trim().parse().map_err(|_| bad())?;
    let factor = match per.trim() {
        "s" | "sec" | "second" => 60.0,
        "m" | "min" | "minute" => 1.0,
        "h" | "hour" => 1.0 / 60.0,
        _ => return Err(bad()),
    };
    Ok(n * factor)
}

/// `payment_error=0.005` pairs → the `base` object.
pub fn parse_base(pairs: &[String]) -> Result<Map<String, Value>, CliError> {
    let mut base = Map::new();
    for pair in pairs {
        let (metric, rate) = pair
            .split_once('=')
            .ok_or_else(|| CliError::Input(format!("--base: {pair:?} is not METRIC=RATE")))?;
        let rate: f64 = rate
            .trim()
            .parse()
            .map_err(|_| CliError::Input(format!("--base: {rate:?} is not a number")))?;
        base.insert(metric.trim().to_owned(), json!(rate));
    }
    Ok(base)
}

fn rehearse(args: RehearseArgs) -> Result<(), CliError> {
    let mut body = json!({
        "traffic_per_minute": parse_traffic(&args.traffic)?,
        "base": parse_base(&args.base)?,
    });
    for (key, value) in [
        ("runs", args.runs.map(Value::from)),
        ("seed", args.seed.map(Value::from)),
        ("max_seconds", args.max_seconds.map(Value::from)),
    ] {
        if let Some(v) = value {
            body[key] = v;
        }
    }
    // The server may compute for up to a minute.
    let client = args
        .remote
        .client_with_timeout(Some(Duration::from_secs(90)))?;
    let path = format!(
        "/api/v1/policies/{}/rehearse",
        super::client::segment(&args.name)
    );
    let answer = client.post(&path, &body)?;
    show(args.remote.format(), &answer, render);
    Ok(())
}

fn minutes(v: &Value) -> String {
    v.as_f64().map_or("-".into(), |m| format!("{}m", number(m)))
}

fn share(v: &Value) -> String {
    v.as_f64()
        .map_or("-".into(), |x| format!("{:.1}%", x * 100.0))
}

fn ci(v: &Value) -> String {
    format!("[{}, {}]", share(&v[0]), share(&v[1]))
}

/// The rehearsal report as text: the A/A scenario, the regressions, the stages.
pub fn render(r: &Value) -> String {
    let aa = &r["aa"];
    let mut out = format!(
        "policy {} — {} runs per scenario{} (seed {}, {} ms), stages {}, tick {} s\n\n",
        r["policy"].as_str().unwrap_or("?"),
        r["runs_completed"],
        if r["budget_reached"] == true {
            format!(" of {} (time budget reached)", r["runs_requested"])
        } else {
            String::new()
        },
        r["seed"],
        r["elapsed_ms"],
        r["stages"],
        r["tick_seconds"],
    );
    out += &format!(
        "A/A: ramp {} median, {} p90; false rollbacks {} {} (budget {}); paused {}, unfinished {}\n\n",
        minutes(&aa["ramp_minutes"]["median"]),
        minutes(&aa["ramp_minutes"]["p90"]),
        share(&aa["false_rollback_rate"]),
        ci(&aa["false_rollback_ci95"]),
        share(&aa["false_rollback_budget"]),
        aa["paused"],
        aa["unfinished"],
    );
    let mut table = Table::new(&[
        "METRIC",
        "REGRESSION",
        "CAUGHT",
        "95% CI",
        "BY",
        "MEDIAN",
        "P90",
    ]);
    for g in r["regressions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        let by = format!("{} rollback, {} pause", g["by_rollback"], g["by_pause"]);
        table.row(vec![
            g["metric"].as_str().unwrap_or("?").to_owned(),
            g["factor"].as_f64().map_or("?".into(), |f| format!("{f}×")),
            share(&g["caught_share"]),
            ci(&g["caught_share_ci95"]),
            by,
            minutes(&g["minutes_to_catch"]["median"]),
            minutes(&g["minutes_to_catch"]["p90"]),
        ]);
    }
    out += &table.render();
    let mut stages = Table::new(&["STAGE", "%", "METRIC", "NEW EXP/MIN", "NEEDS", "TIME"]);
    for s in r["stage_requirements"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        stages.row(vec![
            s["stage"].to_string(),
            s["percentage"].to_string(),
            s["metric"].as_str().unwrap_or("?").to_owned(),
            s["new_exposures_per_minute"]
                .as_f64()
                .map_or("-".into(), number),
            s["needed_new_exposures"]
                .as_u64()
                .map_or("never".into(), |n| n.to_string()),
            minutes(&s["minutes_needed"]),
        ]);
    }
    if !stages.is_empty() {
        out += "\n";
        out += &stages.render();
    }
    for line in r["never_detectable"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        out += &format!("\nwarning: {}", line.as_str().unwrap_or(""));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traffic_and_base_parse_or_name_the_option() {
        assert_eq!(parse_traffic("2000/min").unwrap(), 2000.0);
        assert_eq!(parse_traffic("30/s").unwrap(), 1800.0);
        assert_eq!(parse_traffic("600/h").unwrap(), 10.0);
        assert_eq!(parse_traffic("500").unwrap(), 500.0);
        assert!(parse_traffic("fast")
            .unwrap_err()
            .to_string()
            .contains("--traffic"));
        assert!(parse_traffic("5/week").is_err());
        let base = parse_base(&["payment_error=0.005".into()]).unwrap();
        assert_eq!(base["payment_error"], 0.005);
        assert!(parse_base(&["payment_error".into()])
            .unwrap_err()
            .to_string()
            .contains("--base"));
    }
}
