//! `rollgate release apply|list|status|start|pause|resume|rollback`.
//!
//! `apply -f plan.toml` reads a plan written in TOML (or JSON) with exactly the structure of
//! the JSON plan, checks it against the server's own [`ReleasePlan`] type (so a typo is
//! reported with its line before anything is sent), and posts it as JSON. The operator
//! commands print the release status the server answers with.

use super::client::{segment, CliError};
use super::output::{percent, progress_bar, text_of, Table};
use super::{show, Remote};
use crate::release::ReleasePlan;
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// `rollgate release …`
#[derive(Debug, Args)]
pub struct ReleaseArgs {
    #[command(flatten)]
    remote: Remote,
    #[command(subcommand)]
    command: ReleaseCommand,
}

#[derive(Debug, Subcommand)]
enum ReleaseCommand {
    /// Create a release from a plan file (TOML or JSON) and print its id.
    Apply {
        /// The plan: `.toml` or `.json` (`-` reads stdin).
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Start the release right away.
        #[arg(long)]
        start: bool,
        /// Why (recorded in the audit log when starting).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Every release and its state.
    List,
    /// One release: each module's state, stage and guards.
    Status {
        /// Release id (or name).
        id: String,
    },
    /// Start a pending release (its first module ramps at once).
    Start(Operate),
    /// Pause every ramping module.
    Pause(Operate),
    /// Resume paused or held modules.
    Resume(Operate),
    /// Roll every module back to 0%.
    Rollback(Operate),
    /// Release the protected audiences that wait for an operator (`advance = "manual"`).
    Advance(Operate),
}

#[derive(Debug, Args)]
struct Operate {
    /// Release id (or name).
    id: String,
    /// Why (recorded in the audit log).
    #[arg(long)]
    reason: Option<String>,
}

/// Runs a `release` subcommand.
pub fn run(args: ReleaseArgs) -> Result<(), CliError> {
    let client = args.remote.client()?;
    let json = args.remote.format();
    let operate = |action: &str, op: Operate| -> Result<(), CliError> {
        let path = format!("/api/v1/releases/{}/{action}", segment(&op.id));
        let answer = client.post(&path, &json!({ "reason": op.reason }))?;
        show(json, &answer, render_status);
        Ok(())
    };
    match args.command {
        ReleaseCommand::Apply {
            file,
            start,
            reason,
        } => {
            let plan = read_plan(&file)?;
            let mut answer = client.post("/api/v1/releases", &plan)?;
            let id = text_of(&answer["id"]);
            if start {
                let path = format!("/api/v1/releases/{}/start", segment(&id));
                answer = client.post(&path, &json!({ "reason": reason }))?;
            }
            eprintln!(
                "release {} created ({})",
                text_of(&answer["name"]),
                text_of(&answer["state"])
            );
            // The id alone on stdout, so `ID=$(rollgate release apply -f plan.toml)` works.
            show(json, &answer, |_| id.clone());
        }
        ReleaseCommand::List => {
            let answer = client.get("/api/v1/releases")?;
            show(json, &answer, render_list);
        }
        ReleaseCommand::Status { id } => {
            let answer = client.get(&format!("/api/v1/releases/{}", segment(&id)))?;
            show(json, &answer, render_status);
        }
        ReleaseCommand::Start(op) => operate("start", op)?,
        ReleaseCommand::Pause(op) => operate("pause", op)?,
        ReleaseCommand::Resume(op) => operate("resume", op)?,
        ReleaseCommand::Rollback(op) => operate("rollback", op)?,
        ReleaseCommand::Advance(op) => operate("advance", op)?,
    }
    Ok(())
}

/// Reads a plan file and returns it as the JSON body of `POST /api/v1/releases`.
pub fn read_plan(path: &Path) -> Result<Value, CliError> {
    let text = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(path)
    }
    .map_err(|e| CliError::Input(format!("cannot read {}: {e}", path.display())))?;
    let is_json = match path.extension().and_then(|e| e.to_str()) {
        Some(ext) => ext.eq_ignore_ascii_case("json"),
        None => text.trim_start().starts_with('{'),
    };
    parse_plan(&text, is_json).map_err(|e| CliError::Input(format!("{}: {e}", path.display())))
}

/// Parses a plan (TOML, or JSON when `is_json`) into the JSON the server expects.
pub fn parse_plan(text: &str, is_json: bool) -> Result<Value, String> {
    let plan: ReleasePlan = if is_json {
        serde_json::from_str(text).map_err(|e| e.to_string())?
    } else {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())?
    };
    serde_json::to_value(&plan).map_err(|e| e.to_string())
}

/// The `GET /api/v1/releases` document as a table.
pub fn render_list(answer: &Value) -> String {
    let releases = answer["releases"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if releases.is_empty() {
        return "no releases".to_owned();
    }
    let mut table = Table::new(&["ID", "NAME", "STATE", "POLICY", "MODULES", "CREATED"]);
    for r in releases {
        let modules = r["modules"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        let done = modules.iter().filter(|m| m["state"] == "completed").count();
        table.row(vec![
            text_of(&r["id"]),
            text_of(&r["name"]),
            text_of(&r["state"]),
            text_of(&r["policy"]),
            format!("{done}/{} completed", modules.len()),
            text_of(&r["created"]),
        ]);
    }
    table.render()
}

/// A release status document: a heading, one row per module with its stage progress, and
/// the readings of the guards that are watching something.
pub fn render_status(status: &Value) -> String {
    let modules = status["modules"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let ramping = if status["overlap"].as_bool() == Some(true) {
        "modules ramp together"
    } else {
        "modules ramp one after another"
    };
    let mut text = format!(
        "release {}  {}  (id {})\npolicy {} · {ramping} · cohort {} · created {}\n\n",
        text_of(&status["name"]),
        text_of(&status["state"]).to_uppercase(),
        text_of(&status["id"]),
        text_of(&status["policy"]),
        text_of(&status["cohort"]),
        text_of(&status["created"]),
    );
    let mut table = Table::new(&[
        "MODULE", "STATE", "ROLLOUT", "STAGE", "PROGRESS", "GUARDS", "NOTE",
    ]);
    let mut guards = Table::new(&["MODULE", "GUARD", "CLASS", "STATE", "NEW", "OLD", "WHY"]);
    for m in modules {
        let stages = m["stages"].as_array().map_or(0, Vec::len);
        let state = text_of(&m["state"]);
        let reached = match state.as_str() {
            "completed" => stages,
            "pending" | "rolled_back" => 0,
            _ => m["stage"].as_u64().map_or(0, |s| s as usize + 1),
        };
        let percentage = m["percentage"].as_f64().unwrap_or(0.0);
        // Before `start`, the controller's "waiting for the previous module" is misleading.
        let note = if status["state"] == "pending" && state == "pending" {
            "release not started"
        } else {
            m["waiting"]
                .as_str()
                .or_else(|| m["reason"].as_str())
                .unwrap_or("")
        };
        let readings = m["guards"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        table.row(vec![
            text_of(&m["flag"]),
            state,
            percent(percentage),
            format!("{reached}/{stages}"),
            progress_bar(stages, reached, percentage),
            guard_summary(readings),
            note.to_owned(),
        ]);
        audience_rows(&mut table, m);
        if readings.iter().all(|g| g["state"] == "idle") {
            continue;
        }
        for g in readings {
            guards.row(vec![
                text_of(&m["flag"]),
                text_of(&g["metric"]),
                text_of(&g["class"]),
                text_of(&g["state"]),
                reading(g, "new"),
                reading(g, "old"),
                text_of(&g["explanation"]),
            ]);
        }
    }
    if modules.is_empty() {
        text.push_str("no modules\n");
    } else {
        text.push_str(&table.render());
    }
    if !guards.is_empty() {
        text.push('\n');
        text.push_str(&guards.render());
    }
    text
}

/// One row per audience phase of a module (in ramp order), under the module's row.
fn audience_rows(table: &mut Table, m: &Value) {
    for a in m["audiences"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let stages = a["stages"].as_array().map_or(0, Vec::len);
        let state = text_of(&a["state"]);
        let reached = match state.as_str() {
            "completed" => stages,
            "pending" | "rolled_back" | "waiting" => 0,
            _ => a["stage"].as_u64().map_or(0, |s| s as usize + 1),
        };
        let percentage = a["percentage"].as_f64().unwrap_or(0.0);
        let name = match a["segment"].as_str() {
            None => "everyone else".to_owned(),
            Some(s) if a["protected"] == true => format!("{s} (protected)"),
            Some(s) => s.to_owned(),
        };
        let readings = a["guards"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        table.row(vec![
            format!("  └ {name}"),
            state,
            percent(percentage),
            format!("{reached}/{stages}"),
            progress_bar(stages, reached, percentage),
            guard_summary(readings),
            a["reason"].as_str().unwrap_or("").to_owned(),
        ]);
    }
}

/// `2 ok, 1 cannot_tell` — how many guards of a module are in each state.
fn guard_summary(readings: &[Value]) -> String {
    if readings.is_empty() {
        return "-".to_owned();
    }
    let mut counts: Vec<(String, usize)> = Vec::new();
    for g in readings {
        let state = text_of(&g["state"]);
        match counts.iter_mut().find(|(s, _)| *s == state) {
            Some((_, n)) => *n += 1,
            None => counts.push((state, 1)),
        }
    }
    counts
        .iter()
        .map(|(s, n)| format!("{n} {s}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `3/950 (0.316%)`: events, exposures and their rate.
/// A variant's cell: its quantile for a latency guard (`p95 0.4612 of 12000`), else its rate.
fn reading(g: &Value, variant: &str) -> String {
    let q = &g["quantile"];
    let Some(quantile) = q["quantile"].as_f64() else {
        return rates(&g[variant]);
    };
    let v = &q[variant];
    let p = format!("{:.3}", quantile * 100.0);
    let p = p.trim_end_matches('0').trim_end_matches('.');
    match v["value"].as_f64() {
        Some(value) => format!("p{p} {value:.4} of {}", v["observations"]),
        None => format!("p{p} - of {}", v["observations"]),
    }
}

fn rates(r: &Value) -> String {
    let events = r["events"].as_u64().unwrap_or(0);
    let exposures = r["exposures"].as_u64().unwrap_or(0);
    match r["rate"].as_f64() {
        Some(rate) => format!("{events}/{exposures} ({})", percent(rate * 100.0)),
        None => format!("{events}/{exposures}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAN: &str = r#"
name = "membership-v2"
policy = "checkout"

[[modules]]
flag = "qr-ordering"

[[modules]]
flag = "points"
[modules.stages]
percentages = [10, 100]
min_duration = "2s"

[stages]
min_exposures = 100
"#;

    #[test]
    fn a_toml_plan_becomes_the_json_plan() {
        let plan = parse_plan(PLAN, false).expect("valid plan");
        assert_eq!(plan["name"], "membership-v2");
        assert_eq!(plan["modules"][0]["flag"], "qr-ordering");
        assert_eq!(
            plan["modules"][1]["stages"]["percentages"],
            json!([10.0, 100.0])
        );
        assert_eq!(plan["stages"]["min_exposures"], 100);
    }

    #[test]
    fn a_typo_in_a_plan_is_named() {
        let error = parse_plan("name = \"x\"\nmodules = []\npolicyy = \"a\"\n", false)
            .expect_err("unknown field");
        assert!(error.contains("policyy"), "{error}");
    }

    #[test]
    fn status_rows_show_stage_progress_and_guards() {
        let status = json!({
            "id": "r1", "name": "membership-v2", "state": "running", "policy": "checkout",
            "overlap": false, "cohort": "independent", "created": "2026-11-22T10:00:00Z",
            "modules": [
                {"flag": "qr-ordering", "state": "ramping", "percentage": 25.0, "stage": 2,
                 "stages": [1.0, 5.0, 25.0, 50.0, 100.0], "waiting": "baking: 3s of 15m",
                 "guards": [{"metric": "payment_error", "class": "core", "state": "ok",
                   "new": {"events": 1, "exposures": 400, "rate": 0.0025},
                   "old": {"events": 4, "exposures": 1200, "rate": 0.0033},
                   "explanation": "within band"}]},
                {"flag": "points", "state": "pending", "percentage": 0.0, "stage": null,
                 "stages": [10.0, 100.0], "waiting": "waiting for the previous module to complete",
                 "guards": [{"metric": "payment_error", "class": "core", "state": "idle"}]}
            ]
        });
        let text = render_status(&status);
        assert!(text.contains("[■■■□□] 25%"), "{text}");
        assert!(text.contains("3/5"), "{text}");
        assert!(text.contains("[□□] 0%"), "{text}");
        assert!(text.contains("baking: 3s of 15m"), "{text}");
        assert!(text.contains("1/400 (0.25%)"), "{text}");
        assert!(text.contains("1 idle"), "{text}");
    }

    #[test]
    fn status_rows_show_each_audience_stage() {
        let status = json!({
            "id": "r1", "name": "m", "state": "running", "policy": null, "overlap": false,
            "cohort": "independent", "created": "2026-11-22T10:00:00Z",
            "modules": [{"flag": "qr-ordering", "state": "pending", "percentage": 0.0,
                "stage": null, "stages": [5.0, 100.0], "guards": [],
                "audiences": [
                    {"segment": "innovation", "protected": false, "state": "ramping", "stage": 1,
                     "stages": [50.0, 100.0], "percentage": 100.0, "guards": []},
                    {"segment": null, "protected": false, "state": "pending", "stage": null,
                     "stages": [5.0, 100.0], "percentage": 0.0, "guards": []},
                    {"segment": "seniors", "protected": true, "state": "waiting", "stage": null,
                     "stages": [100.0], "percentage": 0.0, "guards": []}]}]
        });
        let text = render_status(&status);
        assert!(text.contains("└ innovation"), "{text}");
        assert!(text.contains("2/2"), "{text}");
        assert!(text.contains("└ everyone else"), "{text}");
        assert!(text.contains("└ seniors (protected)"), "{text}");
        assert!(text.contains("waiting"), "{text}");
    }

    #[test]
    fn latency_guards_show_their_quantile_per_variant() {
        let status = json!({
            "id": "r1", "name": "checkout", "state": "running", "modules": [
                {"flag": "checkout", "state": "ramping", "percentage": 5.0, "stage": 0,
                 "stages": [5.0, 100.0],
                 "guards": [{"metric": "checkout_latency", "class": "core", "state": "ok",
                   "new": {"events": 900, "exposures": 900}, "old": {"events": 0, "exposures": 9},
                   "quantile": {"quantile": 0.95, "new": {"observations": 900, "value": 0.4612},
                                "old": {"observations": 0, "value": null}},
                   "explanation": "within band"}]}
            ]
        });
        let text = render_status(&status);
        assert!(text.contains("p95 0.4612 of 900"), "{text}");
        assert!(text.contains("p95 - of 0"), "{text}");
    }
}
