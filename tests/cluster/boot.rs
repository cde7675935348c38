//! Starting a node: one restarted while the database is down serves its last applied state
//! from its local replica (and refuses writes until the database returns); one that never
//! joined refuses to start without the database; a database migrated by a newer rollgate is
//! refused.

use crate::helpers::{bool_flag, ADMIN_TOKEN};
use crate::support::{Database, Node};
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

/// Runs `rollgate serve` on `database_url` with a fresh data dir until it exits (at most
/// 30 s); returns its exit success and stderr.
async fn serve_until_exit(database_url: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_rollgate"))
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--policies-dir")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"))
        .args(["--database-url", database_url])
        .env("ROLLGATE_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("RUST_LOG", "error")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the node exits by itself")
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_node_restarted_while_the_database_is_down_serves_its_last_state() {
    let db = Database::own_server().await;
    let mut node = Node::start("a", &db.url, &[]).await;
    node.put_flag(bool_flag("checkout", 100.0)).await;
    let token = node.create_token("till", "client").await;
    let (code, before) = node
        .evaluate(&token, "checkout", json!({"targetingKey": "u1"}))
        .await;
    assert_eq!((code, &before["value"]), (200, &json!(true)));

    db.server().kill().await;
    node.sigkill().await;
    node.restart(&[]).await;

    let (code, after) = node
        .evaluate(&token, "checkout", json!({"targetingKey": "u1"}))
        .await;
    assert_eq!(
        code, 200,
        "the client token and the flag come from the replica: {after}"
    );
    assert_eq!(after["value"], json!(true));
    let ready = node.readyz().await;
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_eq!(ready["writes"], false, "{ready}");
    let r = node
        .admin(Method::PUT, "/api/v1/flags/checkout/rollout")
        .json(&json!({"percentage": 10}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let writes = node
        .client
        .get(node.url("/readyz?writes=true"))
        .send()
        .await
        .unwrap();
    assert_eq!(writes.status(), 503, "writes are not ready");

    db.server().restart().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let r = node
            .admin(Method::PUT, "/api/v1/flags/checkout/rollout")
            .json(&json!({"percentage": 10}))
            .send()
            .await
            .unwrap();
        if r.status().is_success() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "writes never resumed: {}",
            r.status()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(node.readyz().await["status"], "ready");
}

#[tokio::test]
async fn a_node_that_never_joined_refuses_to_start_without_the_database() {
    let db = Database::own_server().await;
    db.server().kill().await;

    let (ok, stderr) = serve_until_exit(&db.url).await;

    assert!(!ok, "refused");
    assert!(stderr.contains("no local replica"), "says why: {stderr}");
}

#[tokio::test]
async fn a_database_migrated_by_a_newer_rollgate_is_refused() {
    let db = Database::fresh().await;
    let mut node = Node::start("a", &db.url, &[]).await;
    node.sigkill().await;
    db.query("INSERT INTO rollgate_schema (version) VALUES (99)", &[])
        .await;

    let (ok, stderr) = serve_until_exit(&db.url).await;

    assert!(!ok, "refused");
    assert!(stderr.contains("schema version 99"), "says why: {stderr}");
}
