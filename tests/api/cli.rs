//! The ops CLI (`rollgate flags|release|audit|watch`) run as the real binary (the newer
//! commands: cli_objects.rs, cli_output.rs) against a live
//! server: what it prints and how it exits.

use crate::helpers::{bool_flag, spawn_app, TestApp};
use reqwest::Method;
use serde_json::Value;
use std::process::{Output, Stdio};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// The longest any single CLI run may take in these tests.
const LIMIT: Duration = Duration::from_secs(5);

/// A CLI invocation against `url` with `token`.
pub(crate) fn rollgate(url: &str, token: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rollgate"));
    command
        .args(args)
        .env("ROLLGATE_URL", url)
        .env("ROLLGATE_TOKEN", token)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// Runs the CLI with the admin token and waits for it.
pub(crate) async fn run(app: &TestApp, args: &[&str]) -> Output {
    run_as(&app.address, &app.admin_token, args).await
}

pub(crate) async fn run_as(url: &str, token: &str, args: &[&str]) -> Output {
    let output = rollgate(url, token, args).output();
    tokio::time::timeout(LIMIT, output)
        .await
        .unwrap_or_else(|_| panic!("rollgate {args:?} took over {LIMIT:?}"))
        .expect("run rollgate")
}

pub(crate) fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub(crate) fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts exit code 0 and returns stdout.
pub(crate) fn success(output: &Output) -> String {
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        stdout(output),
        stderr(output)
    );
    stdout(output)
}

pub(crate) async fn flag(app: &TestApp, key: &str) -> Value {
    let r = app
        .admin(Method::GET, &format!("/api/v1/flags/{key}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn app_with_flags(keys: &[&str]) -> TestApp {
    let app = spawn_app().await;
    for key in keys {
        app.put_flag(bool_flag(key, 10.0)).await;
    }
    app
}

const PLAN: &str = r#"
name = "membership-v2"
policy = "checkout"

[[modules]]
flag = "qr-ordering"

[[modules]]
flag = "points"
[modules.stages]
percentages = [10, 100]

[stages]
percentages = [5, 25, 100]
min_duration = "1h"
min_exposures = 0
"#;

fn plan_file(dir: &tempfile::TempDir, text: &str) -> String {
    let path = dir.path().join("plan.toml");
    std::fs::write(&path, text).expect("write plan");
    path.to_string_lossy().into_owned()
}

#[tokio::test]
async fn flags_list_shows_every_flag_in_a_table() {
    let app = app_with_flags(&["qr-ordering", "points"]).await;

    let out = success(&run(&app, &["flags", "list"]).await);

    let header = out.lines().next().unwrap_or_default();
    assert!(
        header.starts_with("KEY") && header.contains("ROLLOUT"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("qr-ordering") && l.contains("10%")),
        "{out}"
    );
    assert!(out.lines().any(|l| l.starts_with("points")), "{out}");
}

#[tokio::test]
async fn set_rollout_changes_the_flag() {
    let app = app_with_flags(&["qr-ordering"]).await;

    let output = run(
        &app,
        &[
            "flags",
            "set-rollout",
            "qr-ordering",
            "25%",
            "--reason",
            "ramp up",
        ],
    )
    .await;

    assert!(success(&output).contains("qr-ordering: rollout set to 25%"));
    assert_eq!(flag(&app, "qr-ordering").await["rollout"], 25.0);
}

#[tokio::test]
async fn kill_and_unkill_flip_the_switch() {
    let app = app_with_flags(&["qr-ordering"]).await;

    let killed = success(&run(&app, &["flags", "kill", "qr-ordering", "--reason", "fire"]).await);
    assert!(killed.contains("killed"), "{killed}");
    assert_eq!(flag(&app, "qr-ordering").await["enabled"], false);
    let listed = success(&run(&app, &["flags", "list"]).await);
    assert!(listed.contains("KILLED"), "{listed}");

    let revived = success(&run(&app, &["flags", "unkill", "qr-ordering"]).await);
    assert!(revived.contains("enabled again"), "{revived}");
    assert_eq!(flag(&app, "qr-ordering").await["enabled"], true);
}

#[tokio::test]
async fn json_output_is_the_servers_document() {
    let app = app_with_flags(&["qr-ordering"]).await;

    let list: Value =
        serde_json::from_str(&success(&run(&app, &["flags", "list", "--json"]).await))
            .expect("flags list --json is JSON");
    let one: Value = serde_json::from_str(&success(
        &run(&app, &["flags", "--json", "get", "qr-ordering"]).await,
    ))
    .expect("flags get --json is JSON");

    assert_eq!(list["flags"][0]["key"], "qr-ordering");
    assert_eq!(one, flag(&app, "qr-ordering").await);
}

#[tokio::test]
async fn release_apply_reads_a_toml_plan_and_status_shows_its_modules() {
    let app = app_with_flags(&["qr-ordering", "points"]).await;
    let dir = tempfile::tempdir().unwrap();
    let plan = plan_file(&dir, PLAN);

    let id = success(&run(&app, &["release", "apply", "-f", &plan]).await)
        .trim()
        .to_owned();
    let status = success(&run(&app, &["release", "status", &id]).await);

    assert!(
        status.contains("release membership-v2  PENDING"),
        "{status}"
    );
    let row = |flag: &str| {
        status
            .lines()
            .find(|l| l.starts_with(flag))
            .unwrap_or_else(|| panic!("no row for {flag}:\n{status}"))
            .to_owned()
    };
    assert!(row("qr-ordering").contains("pending") && row("qr-ordering").contains("0/3"));
    assert!(row("qr-ordering").contains("[□□□] 10%"), "{status}");
    assert!(row("points").contains("[□□] 10%"), "{status}");
    assert!(row("points").contains("release not started"), "{status}");
    let listed = success(&run(&app, &["release", "list"]).await);
    assert!(
        listed.contains(&id) && listed.contains("membership-v2"),
        "{listed}"
    );
}

#[tokio::test]
async fn release_start_pause_resume_and_rollback_print_the_new_status() {
    let app = app_with_flags(&["qr-ordering", "points"]).await;
    let dir = tempfile::tempdir().unwrap();
    let plan = plan_file(&dir, PLAN);
    let id = success(&run(&app, &["release", "apply", "-f", &plan]).await)
        .trim()
        .to_owned();

    let started = success(&run(&app, &["release", "start", &id]).await);
    let module = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("qr-ordering"))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(module(&started).contains("ramping"), "{started}");
    assert!(module(&started).contains("[■□□] 5%"), "{started}");
    assert!(
        started.contains("payment_error"),
        "guards are listed: {started}"
    );

    let paused = success(&run(&app, &["release", "pause", &id, "--reason", "look"]).await);
    assert!(
        paused.contains("PAUSED") && module(&paused).contains("paused"),
        "{paused}"
    );

    let resumed = success(&run(&app, &["release", "resume", &id]).await);
    assert!(module(&resumed).contains("ramping"), "{resumed}");

    let rolled = success(&run(&app, &["release", "rollback", &id, "--reason", "bad"]).await);
    assert!(module(&rolled).contains("rolled_back"), "{rolled}");
    assert_eq!(flag(&app, "qr-ordering").await["rollout"], 0.0);
}

#[tokio::test]
async fn release_apply_can_start_at_once() {
    let app = app_with_flags(&["qr-ordering", "points"]).await;
    let dir = tempfile::tempdir().unwrap();
    let plan = plan_file(&dir, PLAN);

    let output = run(&app, &["release", "apply", "-f", &plan, "--start"]).await;

    let id = success(&output).trim().to_owned();
    assert!(stderr(&output).contains("membership-v2 created (running)"));
    let status = success(&run(&app, &["release", "status", &id, "--json"]).await);
    let status: Value = serde_json::from_str(&status).expect("status --json is JSON");
    assert_eq!(status["modules"][0]["state"], "ramping");
}

#[tokio::test]
async fn a_plan_with_a_typo_is_refused_before_sending() {
    let app = app_with_flags(&["qr-ordering"]).await;
    let dir = tempfile::tempdir().unwrap();
    let plan = plan_file(
        &dir,
        "name = \"x\"\npolicyy = \"checkout\"\n[[modules]]\nflag = \"qr-ordering\"\n",
    );

    let output = run(&app, &["release", "apply", "-f", &plan]).await;

    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("policyy"), "{}", stderr(&output));
}

#[tokio::test]
async fn audit_lists_entries_newest_first() {
    let app = app_with_flags(&["qr-ordering"]).await;
    for (pct, reason) in [("20", "first step"), ("30", "second step")] {
        success(
            &run(
                &app,
                &[
                    "flags",
                    "set-rollout",
                    "qr-ordering",
                    pct,
                    "--reason",
                    reason,
                ],
            )
            .await,
        );
    }

    let out = success(&run(&app, &["audit", "--flag", "qr-ordering", "--limit", "10"]).await);

    let first = out.find("first step").expect("first entry listed");
    let second = out.find("second step").expect("second entry listed");
    assert!(second < first, "newest first:\n{out}");
    assert!(out.contains("rollout 20 → 30"), "{out}");
    let json: Value = serde_json::from_str(&success(
        &run(&app, &["audit", "--flag", "qr-ordering", "--json"]).await,
    ))
    .expect("audit --json is JSON");
    assert_eq!(json["entries"][0]["reason"], "second step");
}

/// Starts `watch --max-events 1`, waits until it reports being connected, makes a change
/// over HTTP, and returns what the watcher printed.
async fn watch_one_change(app: &TestApp, extra: &[&str]) -> Output {
    let mut args = vec!["watch", "--max-events", "1"];
    args.extend_from_slice(extra);
    let mut child = rollgate(&app.address, &app.admin_token, &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn watch");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    tokio::time::timeout(LIMIT, async {
        while let Some(line) = lines.next_line().await.expect("read stderr") {
            if line.contains("watching") {
                return;
            }
        }
        panic!("watch exited before connecting");
    })
    .await
    .expect("watch connected in time");

    let r = app
        .admin(Method::PUT, "/api/v1/flags/qr-ordering/rollout")
        .json(&serde_json::json!({"percentage": 42, "reason": "watched"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    tokio::time::timeout(LIMIT, child.wait_with_output())
        .await
        .expect("watch exits after one change")
        .expect("watch output")
}

#[tokio::test]
async fn watch_prints_the_change_made_after_it_connects() {
    let app = app_with_flags(&["qr-ordering"]).await;

    let output = watch_one_change(&app, &[]).await;

    let out = success(&output);
    assert_eq!(out.lines().count(), 1, "{out}");
    for part in [
        "qr-ordering",
        "flag.rollout",
        "42%",
        "  on  ",
        "admin",
        "watched",
    ] {
        assert!(out.contains(part), "{part} missing in {out}");
    }
}

#[tokio::test]
async fn watch_json_prints_the_raw_change_event() {
    let app = app_with_flags(&["qr-ordering"]).await;

    let output = watch_one_change(&app, &["--json"]).await;

    let change: Value = serde_json::from_str(success(&output).trim()).expect("one JSON line");
    assert_eq!(change["type"], "flag");
    assert_eq!(change["flag"]["rollout"], 42.0);
    assert_eq!(change["cause"]["reason"], "watched");
}

#[tokio::test]
async fn watch_yaml_prints_each_change_as_a_yaml_document() {
    let app = app_with_flags(&["qr-ordering"]).await;

    let output = watch_one_change(&app, &["--output", "yaml"]).await;

    let text = success(&output);
    assert!(text.starts_with("---\n"), "{text}");
    let change: Value = serde_yaml_ng::from_str(&text).expect("one YAML document");
    assert_eq!(change["type"], "flag");
    assert_eq!(change["flag"]["rollout"], 42.0);
    assert_eq!(change["cause"]["reason"], "watched");
}

#[tokio::test]
async fn a_refused_token_exits_3_with_a_clear_message() {
    let app = spawn_app().await;

    let output = run_as(&app.address, "not-a-real-token", &["flags", "list"]).await;

    assert_eq!(output.status.code(), Some(3));
    assert!(stderr(&output).contains("the token was refused (ROLLGATE_TOKEN)"));
    assert!(stdout(&output).is_empty());
}

#[tokio::test]
async fn a_client_token_is_told_it_needs_admin() {
    let app = spawn_app().await;
    let token = app.create_token("web-app", "client").await;

    let output = run_as(&app.address, &token, &["release", "list"]).await;

    assert_eq!(output.status.code(), Some(3));
    assert!(
        stderr(&output).contains("needs an admin token"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn an_unreachable_server_exits_2() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{closed}");

    for args in [&["flags", "list"][..], &["watch"][..]] {
        let output = run_as(&url, "some-token", args).await;

        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&output).contains(&format!("cannot reach rollgate at {url}")),
            "{}",
            stderr(&output)
        );
    }
}

#[tokio::test]
async fn api_errors_print_the_servers_message() {
    let app = spawn_app().await;

    let output = run(&app, &["flags", "get", "no-such-flag"]).await;

    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("no-such-flag"),
        "{}",
        stderr(&output)
    );
    assert!(stderr(&output).contains("not found"), "{}", stderr(&output));
}
