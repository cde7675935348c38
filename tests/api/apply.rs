//! Flags as code: `rollgate apply` and `rollgate export` run as the real binary against a live
//! server (single node, or a cluster node in the cluster run of the suite).

use crate::helpers::{bool_flag, spawn_app, TestApp};
use reqwest::Method;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;
use tokio::process::Command;

const LIMIT: Duration = Duration::from_secs(10);

async fn run(app: &TestApp, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rollgate"));
    command
        .args(args)
        .env("ROLLGATE_URL", &app.address)
        .env("ROLLGATE_TOKEN", &app.admin_token)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    tokio::time::timeout(LIMIT, command.output())
        .await
        .unwrap_or_else(|_| panic!("rollgate {args:?} took over {LIMIT:?}"))
        .expect("run rollgate")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts exit code 0 and returns (stdout, stderr).
fn success(output: &Output) -> (String, String) {
    let (out, err) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout: {out}\nstderr: {err}"
    );
    (out, err)
}

/// Asserts exit code 1 and returns stderr.
fn failure(output: &Output) -> String {
    let (out, err) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(
        output.status.code(),
        Some(1),
        "stdout: {out}\nstderr: {err}"
    );
    err
}

fn write(dir: &Path, file: &str, body: &str) {
    let path = dir.join(file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, body).unwrap();
}

/// A document with every object type and flags of every type, rules, audiences and variants.
const FLAGS: &str = r#"
[[flag]]
key = "checkout-v2"
type = "boolean"
variants = { off = false, on = true }
off_variant = "off"
on_variant = "on"
rollout = 10
policy = "canary"
description = "The new checkout"
tags = ["payments", "web"]
[[flag.rules]]
when = [{ segment = "beta" }]
variant = "on"
[[flag.rules]]
when = [{ attribute = "country", op = "in", values = ["fr", "de"] }]
rollout = 50
[[flag.audiences]]
segment = "beta"
rollout = 20

[[flag]]
key = "search"
type = "string"
variants = { old = "bm25", new = "vector" }
off_variant = "old"
on_variant = "new"
enabled = false
rollout = 25.5
salt = "search-2026"

[[flag]]
key = "page-size"
type = "number"
variants = { small = 10, large = 50.5 }
off_variant = "small"
on_variant = "large"
"#;

const OBJECT_FLAG: &str = r#"{
  "flag": {
    "key": "theme",
    "type": "object",
    "variants": {"plain": {"colour": "grey", "accent": null}, "bold": {"colour": "red", "sizes": [1, 2.5]}},
    "off_variant": "plain",
    "on_variant": "bold",
    "rollout": 100
  }
}"#;

const SEGMENT: &str = r#"
key = "beta"
description = "Beta testers"
when = [{ attribute = "plan", op = "in", values = ["beta", "staff"] }, { attribute = "app_version", op = "semver_gte", values = ["2.0.0"] }]
"#;

const POLICY: &str = r#"
name = "canary"
scope = "release"
confidence = 0.95
false_rollback_rate = 0.02
cooldown = "2m"

[[guard]]
metric = "errors"
class = "core"
max_relative_increase = 0.1
max_rate = 0.05
confidence = 0.9
detect = 0.2
silence_after = "5m"

[[guard]]
metric = "latency"
class = "basic"
grace = "1m"
quantile = 0.95
max_value = 300.0

[[guard]]
metric = "data_loss"
class = "core"
max_count = 0

[stages]
percentages = [1, 10, 100]
min_duration = "10m"
min_exposures = 100
"#;

const RELEASE: &str = r#"{
  "name": "spring",
  "policy": "canary",
  "modules": [
    {"flag": "search", "stages": {"percentages": [5, 100]}},
    {"flag": "page-size", "audiences": [{"segment": "beta", "protected": true, "advance": "manual"}]}
  ],
  "stages": {"percentages": [1, 50, 100], "min_duration": "1h", "min_exposures": 10},
  "overlap": true,
  "cohort": "shared",
  "audiences": [{"segment": "beta", "stages": {"percentages": [50, 100]}}]
}"#;

/// Writes the full document into `dir`.
fn full_document(dir: &Path) {
    write(dir, "flags.toml", FLAGS);
    write(dir, "more/theme.json", OBJECT_FLAG);
    write(dir, "segments/beta.toml", SEGMENT);
    write(dir, "policies/canary.toml", POLICY);
    write(dir, "releases/spring.json", RELEASE);
}

async fn get(app: &TestApp, path: &str) -> (u16, Value) {
    let r = app.admin(Method::GET, path).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn revision(app: &TestApp) -> u64 {
    get(app, "/readyz").await.1["revision"].as_u64().unwrap()
}

/// Numbers as f64, so `10` (TOML) and `10.0` (the server's answer) compare equal.
fn norm(v: &Value) -> Value {
    match v {
        Value::Number(n) => json!(n.as_f64().unwrap()),
        Value::Array(a) => Value::Array(a.iter().map(norm).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), norm(v))).collect()),
        other => other.clone(),
    }
}

/// Every field of `expected` is in `actual` with the same value.
fn assert_has(actual: &Value, expected: &Value) {
    for (k, v) in expected.as_object().unwrap() {
        assert_eq!(norm(&actual[k]), norm(v), "field {k} of {actual}");
    }
}

fn toml_json(text: &str) -> Value {
    serde_json::to_value(toml::from_str::<toml::Table>(text).unwrap()).unwrap()
}

#[tokio::test]
async fn every_object_type_applies_to_an_empty_server_and_reads_back() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    full_document(dir.path());

    let output = run(
        &app,
        &["apply", "-f", dir.path().to_str().unwrap(), "-m", "seed"],
    )
    .await;

    let (out, err) = success(&output);
    for line in [
        "+ segment beta",
        "+ policy canary",
        "+ flag checkout-v2",
        "+ flag search",
        "+ flag page-size",
        "+ flag theme",
        "+ release spring",
    ] {
        assert!(
            out.lines().any(|l| l == line),
            "{line:?} missing from\n{out}"
        );
    }
    assert!(err.contains("applied: 7 create"), "{err}");
    let flags = toml_json(FLAGS);
    for flag in flags["flag"].as_array().unwrap() {
        let key = flag["key"].as_str().unwrap();
        let (status, body) = get(&app, &format!("/api/v1/flags/{key}")).await;
        assert_eq!(status, 200);
        assert_has(&body, flag);
    }
    let theme: Value = serde_json::from_str(OBJECT_FLAG).unwrap();
    assert_has(&get(&app, "/api/v1/flags/theme").await.1, &theme["flag"]);
    assert_has(
        &get(&app, "/api/v1/segments/beta").await.1,
        &toml_json(SEGMENT),
    );
    assert_has(
        &get(&app, "/api/v1/policies/canary").await.1,
        &toml_json(POLICY),
    );
    let (status, release) = get(&app, "/api/v1/releases/spring").await;
    assert_eq!(status, 200);
    assert_eq!(release["state"], "pending");
    let exported = get(&app, "/api/v1/export").await.1;
    let plan = exported["releases"].as_array().unwrap();
    assert_eq!(
        norm(&plan[0]),
        norm(&serde_json::from_str(RELEASE).unwrap())
    );

    // Audited: one entry per change, with the actor and the message.
    let audit = get(&app, "/api/v1/audit?limit=50").await.1;
    let entries: Vec<&Value> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["reason"] == "seed")
        .collect();
    let mut actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    actions.sort_unstable();
    assert_eq!(
        actions,
        [
            "flag.create",
            "flag.create",
            "flag.create",
            "flag.create",
            "policy.create",
            "release.create",
            "segment.create"
        ]
    );
    assert!(entries.iter().all(|e| e["actor"] == "admin"), "{entries:?}");
}

#[tokio::test]
async fn export_then_apply_changes_nothing() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    full_document(dir.path());
    success(&run(&app, &["apply", "-f", dir.path().to_str().unwrap()]).await);
    // And objects made without apply: a flag by PUT, the policy loaded from policies/.
    app.put_flag(bool_flag("by-hand", 30.0)).await;
    let out_dir = tempfile::tempdir().unwrap();
    let exported = out_dir.path().join("state");

    success(&run(&app, &["export", exported.to_str().unwrap()]).await);
    let before = revision(&app).await;
    let output = run(
        &app,
        &["apply", "-f", exported.to_str().unwrap(), "--prune"],
    )
    .await;

    let (out, err) = success(&output);
    assert_eq!(out, "", "export → apply must be a no-op");
    assert!(
        err.contains("0 create, 0 update, 0 delete, 9 unchanged"),
        "{err}"
    );
    assert_eq!(revision(&app).await, before);
    for file in [
        "flags/checkout-v2.toml",
        "flags/by-hand.toml",
        "flags/theme.json", // a null inside a variant: TOML cannot hold it
        "segments/beta.toml",
        "policies/canary.toml",
        "policies/checkout.toml",
        "releases/spring.toml",
    ] {
        assert!(exported.join(file).is_file(), "{file} not written");
    }
    // Export refuses to mix into a directory that holds files already.
    let again = run(&app, &["export", exported.to_str().unwrap()]).await;
    assert!(failure(&again).contains("not empty"));
}

#[tokio::test]
async fn a_dry_run_prints_the_diff_that_apply_then_performs_and_changes_nothing() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    full_document(dir.path());
    write(
        dir.path(),
        "flags/old.toml",
        &toml::to_string(&bool_flag("old", 5.0)).unwrap(),
    );
    let path = dir.path().to_str().unwrap();
    success(&run(&app, &["apply", "-f", path]).await);
    // Change: a rollout, a description; remove a flag; add one. (`search` is in the pending
    // release `spring`, whose rollout that release owns: `checkout-v2` is not.)
    write(
        dir.path(),
        "flags.toml",
        &FLAGS.replace("rollout = 10", "rollout = 40"),
    );
    write(
        dir.path(),
        "segments/beta.toml",
        &SEGMENT.replace("Beta testers", "Early adopters"),
    );
    std::fs::remove_file(dir.path().join("flags/old.toml")).unwrap();
    write(
        dir.path(),
        "flags/new.json",
        &bool_flag("new", 1.0).to_string(),
    );
    let before = revision(&app).await;

    let dry = run(&app, &["apply", "-f", path, "--prune", "--dry-run"]).await;

    let (dry_out, dry_err) = success(&dry);
    assert!(dry_err.contains("dry run"), "{dry_err}");
    assert_eq!(revision(&app).await, before, "a dry run changes nothing");
    assert_eq!(
        get(&app, "/api/v1/flags/checkout-v2").await.1["rollout"],
        10.0
    );
    assert_eq!(get(&app, "/api/v1/flags/old").await.0, 200);
    assert_eq!(get(&app, "/api/v1/flags/new").await.0, 404);
    assert_eq!(
        dry_out,
        "~ segment beta: description \"Beta testers\" → \"Early adopters\"\n\
         ! policy checkout: not in the document; kept (loaded from a policies/ file)\n\
         + flag new\n\
         ~ flag checkout-v2: rollout 10 → 40\n\
         - flag old\n"
    );

    let real = run(&app, &["apply", "-f", path, "--prune", "-m", "ramp"]).await;

    let (real_out, _) = success(&real);
    assert_eq!(
        real_out, dry_out,
        "apply performs exactly the diff the dry run printed"
    );
    assert!(revision(&app).await > before);
    assert_eq!(
        get(&app, "/api/v1/flags/checkout-v2").await.1["rollout"],
        40.0
    );
    assert_eq!(get(&app, "/api/v1/flags/old").await.0, 404);
    assert_eq!(get(&app, "/api/v1/flags/new").await.0, 200);
    let audit = get(&app, "/api/v1/audit?flag=old").await.1;
    assert_eq!(audit["entries"][0]["action"], "flag.delete");
    assert_eq!(audit["entries"][0]["reason"], "ramp");
}

#[tokio::test]
async fn a_bad_file_is_refused_with_file_and_field_and_nothing_is_applied() {
    let cases = [
        ("flags/bad.toml", "key = \"bad\"\ntype = \"boolean\"\nrollout = [", "flags/bad.toml", "invalid TOML"),
        (
            "flags/bad.toml",
            "key = \"bad\"\ntype = \"boolean\"\nvariants = { on = true, off = false }\noff_variant = \"off\"\non_variant = \"on\"\nrollout = \"ten\"",
            "flags/bad.toml",
            "field rollout",
        ),
        (
            "flags/bad.toml",
            "key = \"bad\"\ntype = \"boolean\"\nvariants = { on = true, off = false }\noff_variant = \"off\"\non_variant = \"on\"\ncolour = \"red\"",
            "flags/bad.toml",
            "colour",
        ),
        (
            "more.toml",
            "[[flag]]\nkey = \"fine\"\ntype = \"boolean\"\nvariants = { on = true, off = false }\noff_variant = \"off\"\non_variant = \"on\"\n\n[[flag]]\nkey = \"bad\"\ntype = \"boolean\"\nvariants = { on = true, off = false }\noff_variant = \"off\"\non_variant = \"on\"\nrollout = 150",
            "more.toml [[flag]] #2",
            "field rollout",
        ),
    ];
    let app = spawn_app().await;
    for (file, body, named, field) in cases {
        let dir = tempfile::tempdir().unwrap();
        full_document(dir.path());
        write(dir.path(), file, body);
        let before = revision(&app).await;

        let output = run(&app, &["apply", "-f", dir.path().to_str().unwrap()]).await;

        let err = failure(&output);
        assert!(err.contains(named), "{file}: {err}");
        assert!(err.contains(field), "{file}: {err}");
        // serde's position in the request body the CLI built means nothing in the user's file.
        assert!(!err.contains(" at line 1 column "), "{file}: {err}");
        assert_eq!(revision(&app).await, before, "{file}: nothing applied");
        assert_eq!(get(&app, "/api/v1/flags/search").await.0, 404, "{file}");
        assert_eq!(get(&app, "/api/v1/segments/beta").await.0, 404, "{file}");
        assert_eq!(get(&app, "/api/v1/policies/canary").await.0, 404, "{file}");
    }
}

#[tokio::test]
async fn prune_never_deletes_a_flag_in_a_live_release() {
    let app = spawn_app().await;
    for key in ["a", "b"] {
        app.put_flag(bool_flag(key, 0.0)).await;
    }
    let r = app
        .admin(Method::POST, "/api/v1/releases")
        .json(&json!({"name": "r1", "policy": "checkout", "modules": [{"flag": "b"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = app
        .admin(Method::POST, "/api/v1/releases/r1/start")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "flags/a.json", &bool_flag("a", 0.0).to_string());
    let before = revision(&app).await;

    let output = run(
        &app,
        &["apply", "-f", dir.path().to_str().unwrap(), "--prune"],
    )
    .await;

    let err = failure(&output);
    assert!(err.contains("\"b\"") && err.contains("r1"), "{err}");
    assert_eq!(revision(&app).await, before);
    assert_eq!(get(&app, "/api/v1/flags/b").await.0, 200);
}

#[tokio::test]
async fn the_endpoint_refuses_unknown_keys_and_names_the_object() {
    let app = spawn_app().await;
    let r = app
        .admin(Method::POST, "/api/v1/apply")
        .json(&json!({"flags": [bool_flag("a", 0.0)], "dry_run": "yes"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "dry_run must be a boolean");
    let r = app
        .admin(Method::POST, "/api/v1/apply")
        .json(&json!({"flags": [bool_flag("a", 0.0), bool_flag("b", 101.0)]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["field"], "flags[1].rollout");
    let r = app
        .admin(Method::POST, "/api/v1/apply")
        .json(&json!({"flagz": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let viewer = app.create_token("viewer", "viewer").await;
    let r = app
        .client
        .post(app.url("/api/v1/apply"))
        .bearer_auth(viewer)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn a_release_plan_is_created_once_and_never_changed_by_apply() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    full_document(dir.path());
    let path = dir.path().to_str().unwrap();
    success(&run(&app, &["apply", "-f", path]).await);
    let before = revision(&app).await;

    // The same plan again: unchanged (the --json answer says so).
    let output = run(&app, &["apply", "-f", path, "--dry-run", "--json"]).await;
    let answer: Value = serde_json::from_str(&success(&output).0).unwrap();
    let spring = answer["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "release")
        .unwrap();
    assert_eq!(spring["op"], "unchanged");
    assert_eq!(answer["dry_run"], true);

    // A different plan under the same name: refused, naming the file and what differs.
    write(
        dir.path(),
        "releases/spring.json",
        &RELEASE.replace("\"overlap\": true", "\"overlap\": false"),
    );
    let err = failure(&run(&app, &["apply", "-f", path]).await);
    assert!(err.contains("releases/spring.json"), "{err}");
    assert!(err.contains("overlap") && err.contains("new name"), "{err}");
    assert_eq!(revision(&app).await, before);
    let releases = get(&app, "/api/v1/releases").await.1;
    assert_eq!(releases["releases"].as_array().unwrap().len(), 1);
}
