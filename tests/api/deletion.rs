//! Deleting segments and policies (`DELETE /api/v1/segments/{key}`, `DELETE
//! /api/v1/policies/{name}`, `rollgate segments|policy delete`, `apply --prune`): refused while
//! something uses them, audited, and gone from the config clients read and the stream.

use crate::helpers::{
    bool_flag, policies_dir, spawn_app, start_binary, SseReader, TestApp, ADMIN_TOKEN,
};
use reqwest::Method;
use serde_json::{json, Value};
use std::process::{Output, Stdio};
use std::time::Duration;
use tokio::process::Command;

const KIWIS: &str =
    r#"{"key": "kiwis", "when": [{"attribute": "country", "op": "in", "values": ["NZ"]}]}"#;
const SLOW: &str = "name = \"slow\"\n[stages]\npercentages = [1, 100]\nmin_duration = \"1m\"\n";

async fn call(app: &TestApp, method: Method, path: &str) -> (u16, Value) {
    let r = app.admin(method, path).send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn put_segment(app: &TestApp, body: &str) {
    let def: Value = serde_json::from_str(body).unwrap();
    let path = format!("/api/v1/segments/{}", def["key"].as_str().unwrap());
    let r = app
        .admin(Method::PUT, &path)
        .json(&def)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
}

async fn put_policy(app: &TestApp, toml: &str) {
    let name = toml.split('"').nth(1).unwrap();
    let r = app
        .admin(Method::PUT, &format!("/api/v1/policies/{name}"))
        .header("content-type", "application/toml")
        .body(toml.to_owned())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
}

fn message(body: &Value) -> String {
    body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The newest audit entry with `action`.
async fn audited(app: &TestApp, action: &str) -> Value {
    let audit = call(app, Method::GET, "/api/v1/audit?limit=50").await.1;
    audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == action)
        .cloned()
        .unwrap_or_else(|| panic!("no {action} entry in {audit}"))
}

#[tokio::test]
async fn a_segment_is_deleted_everywhere_clients_look_but_not_while_a_flag_uses_it() {
    let app = spawn_app().await;
    let token = app.create_token("web", "client").await;
    put_segment(&app, KIWIS).await;
    put_segment(
        &app,
        r#"{"key": "seniors", "when": [{"attribute": "age", "op": "gte", "values": [60]}]}"#,
    )
    .await;
    let mut points = bool_flag("points", 100.0);
    points["rules"] = json!([{"when": [{"segment": "seniors"}], "variant": "off"}]);
    app.put_flag(points).await;
    let mut stream = SseReader::open(&app, "/api/v1/stream", &token, None).await;
    assert_eq!(stream.next_event().await.event, "config");

    let (status, body) = call(&app, Method::DELETE, "/api/v1/segments/seniors").await;
    assert_eq!(status, 409, "{body}");
    assert!(message(&body).contains("flag \"points\""), "{body}");
    assert_eq!(
        call(&app, Method::DELETE, "/api/v1/segments/nope").await.0,
        404
    );
    let viewer = app.create_token("viewer", "viewer").await;
    let r = app
        .client
        .delete(app.url("/api/v1/segments/kiwis"))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "deleting takes an admin");

    assert_eq!(
        call(&app, Method::DELETE, "/api/v1/segments/kiwis").await.0,
        204
    );

    assert_eq!(
        call(&app, Method::GET, "/api/v1/segments/kiwis").await.0,
        404
    );
    let change = stream.next_event().await;
    assert_eq!(change.event, "change");
    let data = change.json();
    assert_eq!(
        (
            &data["type"],
            &data["key"],
            &data["action"],
            &data["segment"]
        ),
        (
            &json!("segment"),
            &json!("kiwis"),
            &json!("delete"),
            &Value::Null
        )
    );
    assert_eq!(data["cause"]["action"], "segment.delete");
    let config: Value = app
        .client
        .get(app.url("/api/v1/client/config"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys: Vec<&Value> = config["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["key"])
        .collect();
    assert_eq!(keys, [&json!("seniors")]);
    assert_eq!(config["revision"].to_string(), change.id.unwrap());
    // The segment still used keeps serving.
    let senior = app
        .evaluate(&token, "points", json!({"targetingKey": "u", "age": 70}))
        .await
        .1;
    assert_eq!(senior["reason"], "TARGETING_MATCH");

    let entry = audited(&app, "segment.delete").await;
    assert_eq!(entry["actor"], "admin");
    assert_eq!(entry["before"]["key"], "kiwis");
}

#[tokio::test]
async fn a_policy_is_deleted_unless_a_flag_a_release_or_a_file_holds_it() {
    let app = spawn_app().await;
    put_policy(&app, SLOW).await;
    put_policy(&app, &SLOW.replace("\"slow\"", "\"held\"")).await;
    let mut flag = bool_flag("points", 0.0);
    flag["policy"] = json!("slow");
    app.put_flag(flag.clone()).await;
    app.put_flag(bool_flag("other", 0.0)).await;
    app.create_release(json!({"name": "later", "policy": "held", "modules": [{"flag": "other"}]}))
        .await;

    let (status, body) = call(&app, Method::DELETE, "/api/v1/policies/slow").await;
    assert_eq!(status, 409, "{body}");
    assert!(message(&body).contains("flag \"points\""), "{body}");
    let (status, body) = call(&app, Method::DELETE, "/api/v1/policies/held").await;
    assert_eq!(status, 409, "{body}");
    assert!(message(&body).contains("release \"later\""), "{body}");
    // `checkout` comes from the repository's policies/ directory: it would come back.
    let (status, body) = call(&app, Method::DELETE, "/api/v1/policies/checkout").await;
    assert_eq!(status, 409, "{body}");
    assert!(message(&body).contains("checkout.toml"), "{body}");
    assert!(message(&body).contains("remove the file"), "{body}");
    assert_eq!(
        call(&app, Method::DELETE, "/api/v1/policies/nope").await.0,
        404
    );

    flag.as_object_mut().unwrap().remove("policy");
    app.put_flag(flag).await;
    assert_eq!(
        call(&app, Method::DELETE, "/api/v1/policies/slow").await.0,
        204
    );

    assert_eq!(
        call(&app, Method::GET, "/api/v1/policies/slow").await.0,
        404
    );
    let list = call(&app, Method::GET, "/api/v1/policies").await.1;
    assert!(!list.to_string().contains("\"slow\""), "{list}");
    let entry = audited(&app, "policy.delete").await;
    assert_eq!(entry["before"]["name"], "slow");
    // A flag can no longer name it.
    let mut again = bool_flag("points", 0.0);
    again["policy"] = json!("slow");
    let r = app
        .admin(Method::PUT, "/api/v1/flags/points")
        .json(&again)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
}

async fn run(app: &TestApp, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rollgate"));
    command
        .args(args)
        .env("ROLLGATE_URL", &app.address)
        .env("ROLLGATE_TOKEN", &app.admin_token)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(10), command.output())
        .await
        .expect("rollgate took over 10 s")
        .expect("run rollgate")
}

fn out(o: &Output) -> (Option<i32>, String, String) {
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_cli_deletes_a_segment_and_a_policy_and_reports_a_refusal() {
    let app = spawn_app().await;
    put_segment(&app, KIWIS).await;
    put_policy(&app, SLOW).await;
    let mut flag = bool_flag("shop", 0.0);
    flag["policy"] = json!("slow");
    app.put_flag(flag).await;

    let (code, _, err) = out(&run(&app, &["policy", "delete", "slow"]).await);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("flag \"shop\""), "{err}");
    let (code, stdout, err) = out(&run(&app, &["segments", "delete", "kiwis"]).await);
    assert_eq!(
        (code, stdout.as_str()),
        (Some(0), "segment kiwis deleted\n"),
        "{err}"
    );
    assert_eq!(
        call(&app, Method::GET, "/api/v1/segments/kiwis").await.0,
        404
    );

    app.put_flag(bool_flag("shop", 0.0)).await;
    let (code, stdout, err) =
        out(&run(&app, &["policy", "delete", "slow", "--output", "json"]).await);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&stdout).unwrap(),
        json!({"deleted": "slow"})
    );
    assert_eq!(
        call(&app, Method::GET, "/api/v1/policies/slow").await.0,
        404
    );
    let (code, _, err) = out(&run(&app, &["segments", "delete", "kiwis"]).await);
    assert_eq!(code, Some(1));
    assert!(err.contains("404") || err.contains("not found"), "{err}");
}

fn write(dir: &std::path::Path, file: &str, body: &str) {
    let path = dir.join(file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, body).unwrap();
}

#[tokio::test]
async fn apply_prune_deletes_removed_segments_and_policies_or_refuses_the_whole_run() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    let seg = |key: &str| {
        format!("key = \"{key}\"\nwhen = [{{ attribute = \"country\", op = \"in\", values = [\"NZ\"] }}]\n")
    };
    write(dir.path(), "segments/kiwis.toml", &seg("kiwis"));
    write(dir.path(), "segments/used.toml", &seg("used"));
    write(dir.path(), "policies/slow.toml", SLOW);
    let mut shop = bool_flag("shop", 5.0);
    shop["rules"] = json!([{"when": [{"segment": "used"}], "variant": "on"}]);
    write(dir.path(), "flags/shop.json", &shop.to_string());
    let (code, _, err) = out(&run(&app, &["apply", "-f", path, "--prune"]).await);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        call(&app, Method::GET, "/api/v1/segments/kiwis").await.0,
        200
    );

    std::fs::remove_file(dir.path().join("segments/kiwis.toml")).unwrap();
    std::fs::remove_file(dir.path().join("policies/slow.toml")).unwrap();
    let (code, dry, err) = out(&run(&app, &["apply", "-f", path, "--prune", "--dry-run"]).await);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        dry,
        "- segment kiwis\n\
         ! policy checkout: not in the document; kept (loaded from a policies/ file)\n\
         - policy slow\n"
    );
    assert_eq!(
        call(&app, Method::GET, "/api/v1/segments/kiwis").await.0,
        200
    );

    // A segment still used refuses the whole run: the rollout change is not applied either.
    std::fs::remove_file(dir.path().join("segments/used.toml")).unwrap();
    let mut ramped = shop.clone();
    ramped["rollout"] = json!(50.0);
    write(dir.path(), "flags/shop.json", &ramped.to_string());
    let (code, _, err) = out(&run(&app, &["apply", "-f", path, "--prune"]).await);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("segment \"used\"") && err.contains("flag \"shop\""),
        "{err}"
    );
    assert_eq!(
        call(&app, Method::GET, "/api/v1/segments/kiwis").await.0,
        200
    );
    assert_eq!(
        call(&app, Method::GET, "/api/v1/flags/shop").await.1["rollout"],
        5.0
    );

    // Without the rule, the run deletes both segments and the policy in one batch.
    ramped.as_object_mut().unwrap().remove("rules");
    write(dir.path(), "flags/shop.json", &ramped.to_string());
    let (code, _, err) = out(&run(&app, &["apply", "-f", path, "--prune", "-m", "tidy"]).await);
    assert_eq!(code, Some(0), "{err}");
    for gone in [
        "/api/v1/segments/kiwis",
        "/api/v1/segments/used",
        "/api/v1/policies/slow",
    ] {
        assert_eq!(call(&app, Method::GET, gone).await.0, 404, "{gone}");
    }
    assert_eq!(
        call(&app, Method::GET, "/api/v1/flags/shop").await.1["rollout"],
        50.0
    );
    let entry = audited(&app, "policy.delete").await;
    assert_eq!(entry["reason"], "tidy");
}

#[tokio::test]
async fn a_deleted_segment_and_policy_stay_deleted_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let http = reqwest::Client::new();
    let send = |address: &str, method: Method, path: &str| {
        http.request(method, format!("{address}{path}"))
            .bearer_auth(ADMIN_TOKEN)
    };
    let mut server = start_binary(&data, &policies_dir()).await;
    let kiwis: Value = serde_json::from_str(KIWIS).unwrap();
    let r = send(&server.address, Method::PUT, "/api/v1/segments/kiwis")
        .json(&kiwis)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = send(&server.address, Method::PUT, "/api/v1/policies/slow")
        .header("content-type", "application/toml")
        .body(SLOW)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    for path in ["/api/v1/segments/kiwis", "/api/v1/policies/slow"] {
        let r = send(&server.address, Method::DELETE, path)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204, "{path}");
    }
    server.child.kill().await.unwrap();

    let server = start_binary(&data, &policies_dir()).await;
    for path in ["/api/v1/segments/kiwis", "/api/v1/policies/slow"] {
        let r = send(&server.address, Method::GET, path)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path} came back after a restart");
    }
}
