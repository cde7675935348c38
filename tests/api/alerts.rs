//! Alertmanager notifications: every alert is applied on its own and reported.

use crate::helpers::{bool_flag, spawn_app};
use serde_json::{json, Value};

fn alert(flag: &str, severity: &str) -> Value {
    json!({"status": "firing", "labels": {"alertname": format!("Alert-{flag}"), "severity": severity, "rollgate_flag": flag},
           "annotations": {"summary": "errors above SLO"}, "fingerprint": format!("fp-{flag}")})
}

fn notification(alerts: Vec<Value>) -> Value {
    json!({"version": "4", "status": "firing", "receiver": "rollgate", "groupKey": "{}:{}", "alerts": alerts})
}

#[tokio::test]
async fn an_unknown_flag_in_a_notification_does_not_drop_the_other_alerts() {
    // Arrange: two modules of a running release.
    let app = spawn_app().await;
    app.put_flag(bool_flag("qr-ordering", 0.0)).await;
    app.put_flag(bool_flag("points", 0.0)).await;
    let plan = json!({"name": "alerted", "overlap": true, "modules": [{"flag": "qr-ordering"}, {"flag": "points"}], "stages": {"min_duration": "1h"}});
    let id = app.create_release(plan).await;
    app.admin_post(&format!("/api/v1/releases/{id}/start"), json!({}))
        .await;
    let body = notification(vec![
        alert("points", "critical"),
        alert("ghost", "critical"),
        alert("qr-ordering", "warning"),
    ]);

    // Act
    let answer = app
        .admin_post("/api/v1/alerts/alertmanager", body.clone())
        .await;

    // Assert: 200 (Alertmanager must not retry what was applied), each alert's outcome.
    assert_eq!(answer.status(), 200);
    let answer: Value = answer.json().await.unwrap();
    let results: Vec<&str> = answer["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["result"].as_str().unwrap())
        .collect();
    assert_eq!(results, ["applied", "not_found", "applied"], "{answer}");
    assert_eq!(answer["actions"][1]["fingerprint"], "fp-ghost");
    assert!(answer["actions"][1]["outcome"]
        .as_str()
        .unwrap()
        .contains("ghost"));
    let status = app.admin_get(&format!("/api/v1/releases/{id}")).await;
    assert_eq!(status["modules"][1]["state"], "rolled_back");
    assert_eq!(status["modules"][0]["state"], "paused");

    // A retried notification changes nothing and says so.
    let again: Value = app
        .admin_post("/api/v1/alerts/alertmanager", body)
        .await
        .json()
        .await
        .unwrap();
    let results: Vec<&str> = again["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["result"].as_str().unwrap())
        .collect();
    assert_eq!(results, ["noop", "not_found", "noop"], "{again}");
    let status = app.admin_get(&format!("/api/v1/releases/{id}")).await;
    assert_eq!(status["modules"][1]["state"], "rolled_back");
    assert_eq!(status["modules"][0]["state"], "paused");
}
