//! The CLI's object commands run as the real binary against a live server: `flags create|edit`,
//! `segments`, `tokens`, `signals send`, with their bad inputs (exit code and message).

use crate::cli::{flag, run, run_as, stderr, stdout, success};
use crate::helpers::{bool_flag, spawn_app, TestApp};
use reqwest::Method;
use serde_json::{json, Value};
use std::process::Stdio;
use tokio::io::AsyncWriteExt;

fn file(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write file");
    path.to_string_lossy().into_owned()
}

/// Asserts exit code 1 and a stderr containing every one of `parts`.
fn refused(output: &std::process::Output, parts: &[&str]) {
    let err = stderr(output);
    assert_eq!(
        output.status.code(),
        Some(1),
        "stdout: {}\nstderr: {err}",
        stdout(output)
    );
    for part in parts {
        assert!(err.contains(part), "{part:?} not in: {err}");
    }
}

async fn get(app: &TestApp, path: &str) -> (u16, Value) {
    let r = app.admin(Method::GET, path).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn flags_create_from_options_then_edit_changes_only_what_is_given() {
    let app = spawn_app().await;

    let created = run(
        &app,
        &[
            "flags",
            "create",
            "dark-mode",
            "--description",
            "new theme",
            "--tag",
            "ui",
        ],
    )
    .await;
    assert!(success(&created).contains("dark-mode"));
    let f = flag(&app, "dark-mode").await;
    assert_eq!(f["variants"], json!({"off": false, "on": true}));
    assert_eq!(
        (f["rollout"].as_f64(), &f["enabled"]),
        (Some(0.0), &json!(true))
    );
    assert_eq!(f["description"], "new theme");

    success(
        &run(
            &app,
            &[
                "flags",
                "edit",
                "dark-mode",
                "--rollout",
                "5%",
                "--disabled",
            ],
        )
        .await,
    );
    let f = flag(&app, "dark-mode").await;
    assert_eq!(f["rollout"].as_f64(), Some(5.0));
    assert_eq!(f["enabled"], false);
    assert_eq!(f["description"], "new theme", "untouched fields stay");
    assert_eq!(f["tags"], json!(["ui"]));

    let again = run(&app, &["flags", "create", "dark-mode"]).await;
    refused(&again, &["already exists", "rollgate flags edit dark-mode"]);
    let nothing = run(&app, &["flags", "edit", "dark-mode"]).await;
    refused(&nothing, &["nothing to change"]);
}

#[tokio::test]
async fn flags_create_from_a_toml_file_with_options_on_top() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let path = file(
        &dir,
        "page-size.toml",
        "type = \"number\"\noff_variant = \"small\"\non_variant = \"large\"\nrollout = 10\n\n[variants]\nsmall = 20\nlarge = 50\n",
    );

    let out = run(
        &app,
        &[
            "flags",
            "create",
            "page-size",
            "-f",
            &path,
            "--variant",
            "huge=100",
            "--on",
            "huge",
            "--output",
            "json",
        ],
    )
    .await;

    let printed: Value = serde_json::from_str(&success(&out)).expect("json output");
    let f = flag(&app, "page-size").await;
    assert_eq!(printed, f, "prints the flag the server committed");
    assert_eq!(
        f["variants"],
        json!({"small": 20, "large": 50, "huge": 100})
    );
    assert_eq!(f["on_variant"], "huge");
    assert_eq!(f["rollout"].as_f64(), Some(10.0));
}

#[tokio::test]
async fn flag_files_and_options_that_are_wrong_are_named_and_nothing_is_written() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.json").to_string_lossy().into_owned();
    let bad_json = file(&dir, "bad.json", "{\"type\": \"boolean\",");
    let unknown = file(
        &dir,
        "unknown.json",
        r#"{"type": "boolean", "variants": {"off": false, "on": true}, "off_variant": "off", "on_variant": "on", "colour": "red"}"#,
    );
    let other_key = file(&dir, "other.json", r#"{"key": "other"}"#);

    refused(
        &run(&app, &["flags", "create", "x", "-f", &missing]).await,
        &["cannot read", "nope.json"],
    );
    refused(
        &run(&app, &["flags", "create", "x", "-f", &bad_json]).await,
        &["bad.json: invalid JSON", "line 1"],
    );
    refused(
        &run(&app, &["flags", "create", "x", "-f", &unknown]).await,
        &["unknown.json:", "colour"],
    );
    refused(
        &run(&app, &["flags", "create", "x", "-f", &other_key]).await,
        &["other.json: field key"],
    );
    refused(
        &run(&app, &["flags", "create", "x", "--type", "integer"]).await,
        &["--type: \"integer\"", "number"],
    );
    refused(
        &run(&app, &["flags", "create", "x", "--variant", "on=maybe"]).await,
        &["--variant on", "boolean"],
    );
    // Judged by the server: its message and field come back.
    refused(
        &run(&app, &["flags", "create", "x", "--on", "nope"]).await,
        &["(field: on_variant)"],
    );
    refused(
        &run(&app, &["flags", "edit", "never-made", "--rollout", "5"]).await,
        &["never-made", "not found"],
    );

    assert_eq!(
        get(&app, "/api/v1/flags/x").await.0,
        404,
        "nothing was created"
    );
}

#[tokio::test]
async fn segments_create_show_edit_and_list() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let toml = file(&dir, "beta.toml", "description = \"early users\"\n[[when]]\nattribute = \"plan\"\nop = \"in\"\nvalues = [\"beta\"]\n");

    success(&run(&app, &["segments", "create", "beta", "-f", &toml]).await);
    success(
        &run(
            &app,
            &[
                "segments",
                "create",
                "pro",
                "--when",
                r#"{"attribute":"plan","op":"in","values":["pro"]}"#,
            ],
        )
        .await,
    );
    let (status, pro) = get(&app, "/api/v1/segments/pro").await;
    assert_eq!((status, &pro["when"][0]["values"]), (200, &json!(["pro"])));

    let shown = success(&run(&app, &["segments", "show", "beta"]).await);
    assert!(
        shown.contains("early users") && shown.contains("plan in [\"beta\"]"),
        "{shown}"
    );
    success(
        &run(
            &app,
            &["segments", "edit", "beta", "--description", "testers"],
        )
        .await,
    );
    let (_, beta) = get(&app, "/api/v1/segments/beta").await;
    assert_eq!(
        (&beta["description"], &beta["when"][0]["attribute"]),
        (&json!("testers"), &json!("plan"))
    );

    let listed = success(&run(&app, &["segments", "list"]).await);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("beta") && l.contains("testers")),
        "{listed}"
    );
    assert!(listed.lines().any(|l| l.starts_with("pro ")), "{listed}");

    refused(
        &run(&app, &["segments", "create", "beta"]).await,
        &["already exists"],
    );
    let unknown = file(
        &dir,
        "bad.json",
        r#"{"when": [{"attribute": "plan", "operator": "in"}]}"#,
    );
    refused(
        &run(&app, &["segments", "create", "bad", "-f", &unknown]).await,
        &["bad.json: field when[0]", "operator"],
    );
    refused(
        &run(&app, &["segments", "create", "bad", "--when", "{plan"]).await,
        &["--when #1: invalid JSON"],
    );
    refused(
        &run(
            &app,
            &[
                "segments",
                "create",
                "bad",
                "--when",
                r#"{"attribute":"plan","op":"in"}"#,
            ],
        )
        .await,
        &["field: when[0]"],
    );
    assert_eq!(get(&app, "/api/v1/segments/bad").await.0, 404);
}

#[tokio::test]
async fn tokens_create_prints_the_secret_once_list_and_revoke() {
    let app = spawn_app().await;
    app.put_flag(bool_flag("qr-ordering", 10.0)).await;

    let out = run(
        &app,
        &["tokens", "create", "--name", "web", "--role", "client"],
    )
    .await;
    let secret = success(&out).trim().to_owned();
    assert!(
        stderr(&out).contains("token web (client) created"),
        "{}",
        stderr(&out)
    );
    let (status, _) = app
        .evaluate(&secret, "qr-ordering", json!({"targetingKey": "u1"}))
        .await;
    assert_eq!(status, 200, "the printed secret works");

    let listed = success(&run(&app, &["tokens", "list"]).await);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("web") && l.contains("client")),
        "{listed}"
    );
    assert!(!listed.contains(&secret), "the secret is never listed");

    refused(
        &run(
            &app,
            &["tokens", "create", "--name", "ops", "--role", "root"],
        )
        .await,
        &["--role: \"root\"", "admin, client, viewer"],
    );
    refused(
        &run(
            &app,
            &["tokens", "create", "--name", "web", "--role", "viewer"],
        )
        .await,
        &["web"],
    );

    assert!(success(&run(&app, &["tokens", "revoke", "web"]).await).contains("token web revoked"));
    let (status, _) = app
        .evaluate(&secret, "qr-ordering", json!({"targetingKey": "u1"}))
        .await;
    assert_eq!(status, 401, "revoked at once");
    refused(
        &run(&app, &["tokens", "revoke", "web"]).await,
        &["not found"],
    );
    let listed = success(&run(&app, &["tokens", "list", "--output", "json"]).await);
    let names: Vec<Value> = serde_json::from_str::<Value>(&listed).unwrap()["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].clone())
        .collect();
    assert!(
        !names.contains(&json!("web")) && !names.contains(&json!("ops")),
        "{listed}"
    );
}

#[tokio::test]
async fn signals_send_posts_a_batch_from_a_file_or_stdin() {
    let app = spawn_app().await;
    app.put_flag(bool_flag("qr-ordering", 10.0)).await;
    let client = app.create_token("drill-app", "client").await;
    let dir = tempfile::tempdir().unwrap();
    let good = file(
        &dir,
        "batch.json",
        r#"{"signals": [{"flag": "qr-ordering", "variant": "on", "metric": "exposure", "count": 40}]}"#,
    );
    let typo = file(
        &dir,
        "typo.json",
        r#"{"signals": [{"flag": "qr-ordering", "variant": "on", "metric": "exposure"}, {"flag": "qr-orderin", "variant": "on", "metric": "exposure"}]}"#,
    );
    let malformed = file(
        &dir,
        "count.json",
        r#"{"signals": [{"flag": "qr-ordering", "variant": "on", "metric": "exposure", "count": "x"}]}"#,
    );

    let out = run_as(&app.address, &client, &["signals", "send", "-f", &good]).await;
    assert_eq!(success(&out).trim(), "accepted 1, rejected 0");

    let out = run_as(&app.address, &client, &["signals", "send", "-f", &typo]).await;
    refused(&out, &["1 signal(s) rejected"]);
    assert!(
        stdout(&out).contains("accepted 1, rejected 1") && stdout(&out).contains("qr-orderin"),
        "{}",
        stdout(&out)
    );
    refused(
        &run_as(
            &app.address,
            &client,
            &["signals", "send", "-f", &malformed],
        )
        .await,
        &["field: signals[0].count"],
    );
    let bad = file(&dir, "bad.json", "{\"signals\": [");
    refused(
        &run_as(&app.address, &client, &["signals", "send", "-f", &bad]).await,
        &["bad.json: invalid JSON"],
    );

    let viewer = app.create_token("looker", "viewer").await;
    let out = run_as(&app.address, &viewer, &["signals", "send", "-f", &good]).await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));

    let mut child = crate::cli::rollgate(
        &app.address,
        &client,
        &["signals", "send", "-f", "-", "--output", "yaml"],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(std::fs::read(&good).unwrap().as_slice())
        .await
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    let report: Value = serde_yaml_ng::from_str(&success(&out)).expect("yaml report");
    assert_eq!(
        (&report["accepted"], &report["rejected"]),
        (&json!(1), &json!(0))
    );
}
