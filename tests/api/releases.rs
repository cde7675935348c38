//! Releases walked by the controller: stages, sequencing, operator commands, manual holds.

use crate::helpers::{bool_flag, spawn_app, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

fn module_states(status: &Value) -> Vec<String> {
    status["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["state"].as_str().unwrap().to_owned())
        .collect()
}

async fn two_flags(app: &TestApp) {
    app.put_flag(bool_flag("qr-ordering", 0.0)).await;
    app.put_flag(bool_flag("points", 0.0)).await;
}

fn fast_plan(name: &str) -> Value {
    json!({
        "name": name,
        "modules": [{"flag": "qr-ordering"}, {"flag": "points", "stages": {"percentages": [10, 100]}}],
        "stages": {"percentages": [1, 5, 25, 50, 100], "min_duration": "30ms", "min_exposures": 0}
    })
}

#[tokio::test]
async fn a_two_module_release_walks_to_completion_one_module_after_the_other() {
    let app = spawn_app().await;
    two_flags(&app).await;
    let id = app.create_release(fast_plan("membership-v2")).await;
    let created = app.admin_get(&format!("/api/v1/releases/{id}")).await;
    assert_eq!(created["state"], "pending");
    assert_eq!(module_states(&created), ["pending", "pending"]);

    let started = app
        .admin_post(&format!("/api/v1/releases/{id}/start"), json!({}))
        .await;
    assert_eq!(started.status(), 200);
    let started: Value = started.json().await.unwrap();
    assert_eq!(started["state"], "running");
    assert_eq!(
        started["modules"][0]["state"], "ramping",
        "the first module ramps at once"
    );
    assert_eq!(started["modules"][0]["percentage"], 1.0);
    assert_eq!(
        started["modules"][1]["state"], "pending",
        "sequential by default"
    );

    let done = app
        .wait_release(&id, "completion", |s| s["state"] == "completed")
        .await;

    assert_eq!(module_states(&done), ["completed", "completed"]);
    assert_eq!(app.rollout_of("qr-ordering").await, 100.0);
    assert_eq!(app.rollout_of("points").await, 100.0);
    let audit = app.admin_get("/api/v1/audit?flag=points&limit=1000").await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions[..3],
        ["module.complete", "module.advance", "module.start"],
        "{actions:?}"
    );
    let first_points_start = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "module.start")
        .unwrap();
    assert_eq!(first_points_start["actor"], "controller");
    let qr = app
        .admin_get("/api/v1/audit?flag=qr-ordering&limit=1000")
        .await;
    let qr_completed = qr["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "module.complete")
        .unwrap();
    assert!(
        qr_completed["id"].as_str() < first_points_start["id"].as_str(),
        "points started after qr-ordering completed"
    );
}

#[tokio::test]
async fn overlapping_modules_ramp_together() {
    let app = spawn_app().await;
    two_flags(&app).await;
    let mut plan = fast_plan("together");
    plan["overlap"] = json!(true);
    plan["stages"]["min_duration"] = json!("10s");
    let id = app.create_release(plan).await;

    let started: Value = app
        .admin_post(&format!("/api/v1/releases/{id}/start"), json!({}))
        .await
        .json()
        .await
        .unwrap();

    assert_eq!(module_states(&started), ["ramping", "ramping"]);
    assert_eq!(started["modules"][1]["percentage"], 10.0);
}

#[tokio::test]
async fn a_shared_cohort_buckets_every_module_alike() {
    let app = spawn_app().await;
    two_flags(&app).await;
    let token = app.create_token("app", "client").await;
    let mut plan = fast_plan("shared");
    plan["overlap"] = json!(true);
    plan["cohort"] = json!("shared");
    plan["modules"][1]["stages"] = json!({"percentages": [25, 100]});
    plan["stages"] = json!({"percentages": [25, 100], "min_duration": "1h"});
    let id = app.create_release(plan).await;
    app.admin_post(&format!("/api/v1/releases/{id}/start"), json!({}))
        .await;

    for i in 0..100 {
        let ctx = json!({"targetingKey": format!("user-{i}")});
        let a = app.evaluate(&token, "qr-ordering", ctx.clone()).await.1;
        let b = app.evaluate(&token, "points", ctx).await.1;
        assert_eq!(
            a["value"], b["value"],
            "user-{i} is in both cohorts or in neither"
        );
    }

    // An operator replaces one module's flag mid-release without mentioning the salt: the
    // shared cohort must not be reshuffled.
    let replaced: Value = app
        .admin(Method::PUT, "/api/v1/flags/qr-ordering")
        .json(&bool_flag("qr-ordering", 25.0))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(replaced["salt"], "release:shared");
    let mut on = 0;
    for i in 0..100 {
        let ctx = json!({"targetingKey": format!("user-{i}")});
        let a = app.evaluate(&token, "qr-ordering", ctx.clone()).await.1;
        let b = app.evaluate(&token, "points", ctx).await.1;
        assert_eq!(a["value"], b["value"], "user-{i} after the edit");
        on += usize::from(a["value"] == true);
    }
    assert!((10..=40).contains(&on), "25 % cohort, got {on} of 100");
}

#[tokio::test]
async fn operator_pause_resume_and_rollback() {
    let app = spawn_app().await;
    two_flags(&app).await;
    let mut plan = fast_plan("ops");
    plan["stages"]["min_duration"] = json!("1h");
    let id = app.create_release(plan).await;
    app.admin_post(&format!("/api/v1/releases/{id}/start"), json!({}))
        .await;

    let paused: Value = app
        .admin_post(
            &format!("/api/v1/releases/{id}/pause"),
            json!({"reason": "lunch"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(paused["state"], "paused");
    assert_eq!(paused["modules"][0]["state"], "paused");
    assert_eq!(paused["modules"][0]["reason"], "lunch");
    assert_eq!(
        app.rollout_of("qr-ordering").await,
        1.0,
        "a pause keeps the percentage"
    );

    let resumed: Value = app
        .admin_post(&format!("/api/v1/releases/{id}/resume"), json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(resumed["state"], "running");
    assert_eq!(resumed["modules"][0]["state"], "ramping");

    let rolled: Value = app
        .admin_post(
            &format!("/api/v1/releases/{id}/rollback"),
            json!({"reason": "bad smell"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(rolled["state"], "rolled_back");
    assert_eq!(rolled["modules"][0]["state"], "rolled_back");
    assert_eq!(app.rollout_of("qr-ordering").await, 0.0);
    assert_eq!(
        app.admin_get("/api/v1/flags/qr-ordering").await["enabled"],
        true,
        "the kill switch is untouched"
    );

    let again = app
        .admin_post(&format!("/api/v1/releases/{id}/rollback"), json!({}))
        .await;
    assert_eq!(again.status(), 409, "nothing left to roll back");
    let restarted: Value = app
        .admin_post(&format!("/api/v1/releases/{id}/resume"), json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(restarted["modules"][0]["state"], "ramping");
    assert_eq!(
        restarted["modules"][0]["stage"], 0,
        "an operator re-ramp starts from the first stage"
    );
    assert_eq!(app.rollout_of("qr-ordering").await, 1.0);
}

#[tokio::test]
async fn a_rolled_back_module_never_re_ramps_by_itself() {
    let app = spawn_app().await;
    two_flags(&app).await;
    let id = app.create_release(fast_plan("stays-down")).await;
    app.admin_post(&format!("/api/v1/releases/{id}/start"), json!({}))
        .await;
    app.admin_post(&format!("/api/v1/releases/{id}/rollback"), json!({}))
        .await;

    // Many controller ticks (20 ms each) later, it is still down.
    let mut last = Value::Null;
    for _ in 0..15 {
        last = app.admin_get(&format!("/api/v1/releases/{id}")).await;
        assert_eq!(module_states(&last)[0], "rolled_back");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        last["modules"][1]["state"], "pending",
        "the next module does not start either"
    );
    assert_eq!(app.rollout_of("qr-ordering").await, 0.0);
}

#[tokio::test]
async fn a_hand_set_percentage_holds_the_module_until_resumed() {
    let app = spawn_app().await;
    two_flags(&app).await;
    let id = app.create_release(fast_plan("held")).await;
    app.admin_post(&format!("/api/v1/releases/{id}/start"), json!({}))
        .await;

    let r = app
        .admin(reqwest::Method::PUT, "/api/v1/flags/qr-ordering/rollout")
        .json(&json!({"percentage": 7}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let held = app.admin_get(&format!("/api/v1/releases/{id}")).await;
    assert_eq!(held["modules"][0]["state"], "held");
    assert!(held["modules"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("by hand"));
    tokio::time::sleep(std::time::Duration::from_millis(100)).await; // > bake time: it would have advanced
    assert_eq!(
        app.rollout_of("qr-ordering").await,
        7.0,
        "the controller leaves a held module alone"
    );

    app.admin_post(&format!("/api/v1/releases/{id}/resume"), json!({}))
        .await;
    let done = app
        .wait_release(&id, "completion after resume", |s| {
            s["state"] == "completed"
        })
        .await;
    assert_eq!(module_states(&done), ["completed", "completed"]);
}

#[tokio::test]
async fn release_plans_are_validated() {
    let app = spawn_app().await;
    two_flags(&app).await;
    let post = |plan: Value| app.admin_post("/api/v1/releases", plan);
    let field_of = |v: Value| v["error"]["field"].as_str().unwrap_or_default().to_owned();

    let r = post(json!({"name": "r", "modules": [{"flag": "ghost"}]})).await;
    assert_eq!(r.status(), 422);
    assert_eq!(field_of(r.json().await.unwrap()), "modules[0].flag");
    let r = post(json!({"name": "r", "policy": "nope", "modules": [{"flag": "points"}]})).await;
    assert_eq!(r.status(), 422);
    assert_eq!(field_of(r.json().await.unwrap()), "policy");
    let r = post(
        json!({"name": "r", "modules": [{"flag": "points", "stages": {"percentages": [50, 10]}}]}),
    )
    .await;
    assert_eq!(r.status(), 422);
    assert_eq!(
        field_of(r.json().await.unwrap()),
        "modules[0].stages.percentages[1]"
    );
    let r = post(json!({"name": "r", "modules": [{"flag": "points"}], "stages": {"min_duration": "forever"}})).await;
    assert_eq!(r.status(), 422);
    assert_eq!(field_of(r.json().await.unwrap()), "stages.min_duration");
    assert_eq!(
        post(json!({"name": "r", "modules": [{"flag": "points"}], "speed": 3}))
            .await
            .status(),
        400
    );
    assert_eq!(
        post(json!({"name": "r", "modules": []})).await.status(),
        422
    );

    app.create_release(json!({"name": "first", "modules": [{"flag": "points"}]}))
        .await;
    let conflict = post(json!({"name": "second", "modules": [{"flag": "points"}]})).await;
    assert_eq!(
        conflict.status(),
        409,
        "a flag belongs to at most one live release"
    );
    assert_eq!(
        app.admin(reqwest::Method::GET, "/api/v1/releases/nope")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let list = app.admin_get("/api/v1/releases").await;
    assert_eq!(list["releases"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_stage_waits_for_its_minimum_exposures() {
    let app = spawn_app().await;
    app.put_flag(bool_flag("qr-ordering", 0.0)).await;
    let token = app.create_token("app", "client").await;
    let id = app
        .create_release(json!({"name": "exp", "modules": [{"flag": "qr-ordering", "stages": {"percentages": [10, 100], "min_duration": "0s", "min_exposures": 100}}]}))
        .await;
    app.admin_post(&format!("/api/v1/releases/{id}/start"), json!({}))
        .await;
    let waiting = app
        .wait_release(&id, "a waiting note", |s| {
            s["modules"][0]["waiting"]
                .as_str()
                .is_some_and(|w| w.contains("exposures"))
        })
        .await;
    assert_eq!(waiting["modules"][0]["stage"], 0);

    let (status, report) = app
        .signals(
            &token,
            json!([{"flag": "qr-ordering", "variant": "on", "metric": "exposure", "count": 100}]),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(report["accepted"], 1);

    let next = app
        .wait_release(&id, "stage 2", |s| s["modules"][0]["stage"] == 1)
        .await;
    assert_eq!(next["modules"][0]["percentage"], 100.0);
}

#[tokio::test]
async fn a_flag_in_a_live_release_cannot_be_deleted() {
    let app = spawn_app().await;
    two_flags(&app).await;
    app.create_release(fast_plan("keep")).await;

    let r = app
        .admin(reqwest::Method::DELETE, "/api/v1/flags/points")
        .send()
        .await
        .unwrap();

    assert_eq!(r.status(), 409);
    assert_eq!(app.rollout_of("points").await, 0.0, "still there");
}
