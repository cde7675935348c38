//! The audit log: every change, by whom, why, before/after, newest first.

use crate::helpers::{bool_flag, spawn_app};
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test]
async fn every_change_is_audited_newest_first_with_actor_reason_and_states() {
    let app = spawn_app().await;
    app.put_flag(bool_flag("f", 0.0)).await;
    app.admin(Method::PUT, "/api/v1/flags/f/rollout")
        .header("X-Rollgate-Reason", "ramp after canary")
        .json(&json!({"percentage": 5}))
        .send()
        .await
        .unwrap();
    app.admin(Method::POST, "/api/v1/flags/f/kill")
        .json(&json!({"reason": "pager"}))
        .send()
        .await
        .unwrap();

    let body: Value = app
        .admin(Method::GET, "/api/v1/audit?flag=f")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entries = body["entries"].as_array().unwrap();

    let actions: Vec<_> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["flag.kill", "flag.rollout", "flag.create"]);
    assert_eq!(entries[0]["reason"], "pager");
    assert_eq!(entries[1]["reason"], "ramp after canary");
    assert_eq!(entries[1]["actor"], "admin");
    assert_eq!(entries[1]["before"]["rollout"], 0.0);
    assert_eq!(entries[1]["after"]["rollout"], 5.0);
    assert_eq!(entries[2]["before"], Value::Null);
    assert!(
        entries
            .windows(2)
            .all(|w| w[0]["id"].as_str() > w[1]["id"].as_str()),
        "ids are time-ordered"
    );
}

#[tokio::test]
async fn audit_filters_by_flag_limit_and_since() {
    let app = spawn_app().await;
    app.put_flag(bool_flag("a", 0.0)).await;
    app.put_flag(bool_flag("b", 0.0)).await;
    app.put_flag(bool_flag("c", 0.0)).await;

    let only_b: Value = app
        .admin(Method::GET, "/api/v1/audit?flag=b")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let limited: Value = app
        .admin(Method::GET, "/api/v1/audit?limit=2")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let future: Value = app
        .admin(Method::GET, "/api/v1/audit?since=2999-01-01T00:00:00Z")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let past: Value = app
        .admin(Method::GET, "/api/v1/audit?since=0")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    assert_eq!(only_b["entries"].as_array().unwrap().len(), 1);
    assert_eq!(limited["entries"].as_array().unwrap().len(), 2);
    assert_eq!(limited["entries"][0]["flag"], "c");
    assert_eq!(future["entries"], json!([]));
    assert!(past["entries"].as_array().unwrap().len() >= 3);
}

#[tokio::test]
async fn bad_audit_queries_are_rejected() {
    let app = spawn_app().await;

    assert_eq!(
        app.admin(Method::GET, "/api/v1/audit?since=yesterday")
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        app.admin(Method::GET, "/api/v1/audit?limit=0")
            .send()
            .await
            .unwrap()
            .status(),
        422
    );
    assert_eq!(
        app.admin(Method::GET, "/api/v1/audit?limit=abc")
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        app.admin(Method::GET, "/api/v1/audit?colour=red")
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
}
