//! Guards over real HTTP with simulated, seeded client traffic: the A/A release completes,
//! core regressions roll back, zero-tolerance events roll back within the request, basic
//! bands pause and then roll back after their grace.

use crate::helpers::{bool_flag, spawn_app, spawn_app_with_aggregates, SseReader, TestApp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{json, Value};

/// Client apps reporting exposures and events per variant, with seeded noise.
struct Traffic {
    rng: StdRng,
    /// metric → (old-variant rate, new-variant rate) per exposure, per flag.
    rates: Vec<(String, String, f64, f64)>,
    per_batch: u64,
}

impl Traffic {
    fn new(seed: u64, per_batch: u64) -> Self {
        Traffic {
            rng: StdRng::seed_from_u64(seed),
            rates: Vec::new(),
            per_batch,
        }
    }

    fn rate(mut self, flag: &str, metric: &str, old: f64, new: f64) -> Self {
        self.rates.push((flag.into(), metric.into(), old, new));
        self
    }

    /// Binomial draw by the normal approximation (counts here are large).
    fn draw(&mut self, n: u64, p: f64) -> u64 {
        let (u1, u2): (f64, f64) = (self.rng.gen_range(1e-12..1.0), self.rng.gen());
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        let mean = n as f64 * p;
        (mean + z * (mean * (1.0 - p)).sqrt()).round().max(0.0) as u64
    }

    /// One batch for `flag` served at `percentage`.
    fn batch(&mut self, flag: &str, percentage: f64) -> Vec<Value> {
        let new_n = (self.per_batch as f64 * percentage / 100.0).round() as u64;
        let old_n = self.per_batch - new_n;
        let mut out = Vec::new();
        for (variant, n) in [("on", new_n), ("off", old_n)] {
            if n == 0 {
                continue;
            }
            out.push(json!({"flag": flag, "variant": variant, "metric": "exposure", "count": n}));
            let rates: Vec<_> = self.rates.iter().filter(|r| r.0 == flag).cloned().collect();
            for (_, metric, old, new) in rates {
                let p = if variant == "on" { new } else { old };
                let count = self.draw(n, p);
                if count > 0 {
                    out.push(
                        json!({"flag": flag, "variant": variant, "metric": metric, "count": count}),
                    );
                }
            }
        }
        out
    }
}

/// Sends traffic for every started module until `done(status)` holds.
async fn drive(
    app: &TestApp,
    token: &str,
    id: &str,
    traffic: &mut Traffic,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    for _ in 0..3000 {
        let status = app.admin_get(&format!("/api/v1/releases/{id}")).await;
        if done(&status) {
            return status;
        }
        for m in status["modules"].as_array().unwrap() {
            if m["state"] != "pending" {
                let batch = traffic.batch(
                    m["flag"].as_str().unwrap(),
                    m["percentage"].as_f64().unwrap(),
                );
                let (code, report) = app.signals(token, json!(batch)).await;
                assert_eq!(code, 200, "{report}");
            }
        }
    }
    panic!("gave up waiting for {what}");
}

async fn checkout_policy(app: &TestApp, grace: &str) {
    let policy = json!({
        "name": "test-checkout",
        "cooldown": "200ms",
        "guard": [
            {"metric": "payment_error", "class": "core", "max_relative_increase": 0.0, "detect": 1.0},
            {"metric": "data_loss", "class": "core", "max_count": 0},
            {"metric": "complaint", "class": "basic", "max_relative_increase": 0.25, "grace": grace, "detect": 1.0}
        ],
        "stages": {"percentages": [5, 25, 100], "min_duration": "20ms", "min_exposures": 2000}
    });
    let r = app
        .admin(Method::PUT, "/api/v1/policies/test-checkout")
        .json(&policy)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
}

async fn started_release(app: &TestApp, flags: &[&str]) -> String {
    for f in flags {
        app.put_flag(bool_flag(f, 0.0)).await;
    }
    let modules: Vec<Value> = flags.iter().map(|f| json!({"flag": f})).collect();
    let id = app
        .create_release(json!({"name": "guarded", "policy": "test-checkout", "modules": modules}))
        .await;
    let r = app
        .admin_post(&format!("/api/v1/releases/{id}/start"), json!({}))
        .await;
    assert_eq!(r.status(), 200);
    id
}

fn audit_actions(audit: &Value) -> Vec<String> {
    audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn an_a_a_release_completes_without_pause_or_rollback() {
    let app = spawn_app().await;
    let token = app.create_token("app", "client").await;
    checkout_policy(&app, "30m").await;
    let id = started_release(&app, &["qr-ordering", "points"]).await;
    let mut traffic = Traffic::new(7, 200_000)
        .rate("qr-ordering", "payment_error", 0.005, 0.005)
        .rate("qr-ordering", "complaint", 0.002, 0.002)
        .rate("points", "payment_error", 0.005, 0.005)
        .rate("points", "complaint", 0.002, 0.002);

    let done = drive(&app, &token, &id, &mut traffic, "completion", |s| {
        s["state"] != "running"
    })
    .await;

    assert_eq!(done["state"], "completed", "{done:#}");
    let audit = app.admin_get("/api/v1/audit?limit=1000").await;
    let actions = audit_actions(&audit);
    assert!(
        !actions
            .iter()
            .any(|a| a == "module.pause" || a == "module.rollback"),
        "{actions:?}"
    );
    let guard = &done["modules"][0]["guards"][0];
    assert_eq!(guard["metric"], "payment_error");
    assert!(guard["ln_threshold"].as_f64().unwrap() > 0.0);
}

#[tokio::test]
async fn a_tripled_core_error_rate_on_the_second_module_rolls_back_only_that_module() {
    let app = spawn_app().await;
    let token = app.create_token("app", "client").await;
    checkout_policy(&app, "30m").await;
    let id = started_release(&app, &["qr-ordering", "points"]).await;
    let mut traffic = Traffic::new(11, 200_000)
        .rate("qr-ordering", "payment_error", 0.005, 0.005)
        .rate("points", "payment_error", 0.005, 0.015);

    let done = drive(&app, &token, &id, &mut traffic, "a verdict", |s| {
        s["state"] == "rolled_back" || s["state"] == "completed"
    })
    .await;

    assert_eq!(done["state"], "rolled_back", "{done:#}");
    assert_eq!(done["modules"][0]["state"], "completed");
    assert_eq!(done["modules"][1]["state"], "rolled_back");
    assert_eq!(
        app.rollout_of("qr-ordering").await,
        100.0,
        "the first module stays at 100%"
    );
    assert_eq!(app.rollout_of("points").await, 0.0);
    let reason = done["modules"][1]["reason"].as_str().unwrap();
    assert!(reason.contains("payment_error"), "{reason}");
    let record = &done["modules"][1]["decision"];
    assert_eq!(record["action"], "rollback");
    assert_eq!(record["actor"], "controller");
    let guard = &record["numbers"]["guards"]["guard"];
    assert!(
        guard["new"]["rate"].as_f64().unwrap() > guard["old"]["rate"].as_f64().unwrap(),
        "{record:#}"
    );
    let audit = app.admin_get("/api/v1/audit?flag=points&limit=1").await;
    assert_eq!(audit["entries"][0]["action"], "module.rollback");
    assert_eq!(
        audit["entries"][0]["after"]["decision"]["numbers"]["guards"]["guard"]["metric"],
        "payment_error"
    );
}

#[tokio::test]
async fn one_data_loss_event_rolls_back_within_the_same_request() {
    let app = spawn_app().await;
    let token = app.create_token("app", "client").await;
    checkout_policy(&app, "30m").await;
    let id = started_release(&app, &["points"]).await;
    let mut stream = SseReader::open(&app, "/api/v1/stream", &token, None).await;
    assert_eq!(stream.next_event().await.event, "config");

    let (code, _) = app
        .signals(
            &token,
            json!([{"flag": "points", "variant": "on", "metric": "data_loss"}]),
        )
        .await;

    assert_eq!(code, 200);
    assert_eq!(
        app.rollout_of("points").await,
        0.0,
        "rolled back before the signals answer was sent"
    );
    let status = app.admin_get(&format!("/api/v1/releases/{id}")).await;
    assert_eq!(status["modules"][0]["state"], "rolled_back");
    let change = stream.next_event().await;
    assert_eq!(change.event, "change");
    assert_eq!(change.json()["flag"]["rollout"], 0.0);
    assert_eq!(change.json()["cause"]["action"], "module.rollback");
}

#[tokio::test]
async fn a_basic_metric_inside_its_band_changes_nothing() {
    let app = spawn_app().await;
    let token = app.create_token("app", "client").await;
    checkout_policy(&app, "30m").await;
    let id = started_release(&app, &["points"]).await;
    let mut traffic = Traffic::new(3, 200_000).rate("points", "complaint", 0.004, 0.004 * 1.15);

    let done = drive(&app, &token, &id, &mut traffic, "completion", |s| {
        s["state"] != "running"
    })
    .await;

    assert_eq!(done["state"], "completed", "{done:#}");
}

#[tokio::test]
async fn a_basic_metric_out_of_band_pauses_then_rolls_back_after_grace() {
    let app = spawn_app().await;
    let token = app.create_token("app", "client").await;
    checkout_policy(&app, "300ms").await;
    let id = started_release(&app, &["points"]).await;
    let mut traffic = Traffic::new(5, 200_000).rate("points", "complaint", 0.004, 0.008);

    let paused = drive(&app, &token, &id, &mut traffic, "a pause", |s| {
        s["state"] != "running"
    })
    .await;
    assert_eq!(paused["state"], "paused", "{paused:#}");
    assert!(paused["modules"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("complaint"));
    let rollout_when_paused = app.rollout_of("points").await;
    assert!(rollout_when_paused > 0.0, "a pause keeps the cohort");

    let done = drive(
        &app,
        &token,
        &id,
        &mut traffic,
        "rollback after grace",
        |s| s["state"] == "rolled_back",
    )
    .await;
    assert!(done["modules"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("grace"));
    assert_eq!(app.rollout_of("points").await, 0.0);
}

#[tokio::test]
async fn a_critical_alertmanager_alert_rolls_back_and_a_warning_pauses() {
    let app = spawn_app().await;
    app.put_flag(bool_flag("qr-ordering", 0.0)).await;
    app.put_flag(bool_flag("points", 0.0)).await;
    let plan = json!({"name": "alerted", "overlap": true, "modules": [{"flag": "qr-ordering"}, {"flag": "points"}], "stages": {"min_duration": "1h"}});
    let id = app.create_release(plan).await;
    app.admin_post(&format!("/api/v1/releases/{id}/start"), json!({}))
        .await;
    let alert = |flag: &str, severity: &str, status: &str| {
        json!({
            "version": "4", "groupKey": "{}:{}", "status": status, "receiver": "rollgate",
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am",
            "alerts": [{"status": status, "labels": {"alertname": "HighErrors", "severity": severity, "rollgate_flag": flag},
                        "annotations": {"summary": "5xx above SLO"}, "startsAt": "2026-11-22T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                        "generatorURL": "http://prom", "fingerprint": "abc"}]
        })
    };

    let warn = app
        .admin_post(
            "/api/v1/alerts/alertmanager",
            alert("qr-ordering", "warning", "firing"),
        )
        .await;
    let crit = app
        .admin_post(
            "/api/v1/alerts/alertmanager",
            alert("points", "critical", "firing"),
        )
        .await;
    let resolved = app
        .admin_post(
            "/api/v1/alerts/alertmanager",
            alert("points", "critical", "resolved"),
        )
        .await;

    assert_eq!(
        (
            warn.status().as_u16(),
            crit.status().as_u16(),
            resolved.status().as_u16()
        ),
        (200, 200, 200)
    );
    let status = app.admin_get(&format!("/api/v1/releases/{id}")).await;
    assert_eq!(status["modules"][0]["state"], "paused");
    assert_eq!(status["modules"][1]["state"], "rolled_back");
    assert!(status["modules"][1]["reason"]
        .as_str()
        .unwrap()
        .contains("HighErrors"));
    assert_eq!(app.rollout_of("points").await, 0.0);
    let actions = audit_actions(&app.admin_get("/api/v1/audit?limit=5").await);
    assert_eq!(actions[0], "alert.resolved");
    let malformed = app
        .admin_post(
            "/api/v1/alerts/alertmanager",
            json!({"version": "4", "alerts": "nope"}),
        )
        .await;
    assert_eq!(malformed.status(), 400);
    let wrong_version = app
        .admin_post(
            "/api/v1/alerts/alertmanager",
            json!({"version": "3", "status": "firing", "alerts": []}),
        )
        .await;
    assert_eq!(wrong_version.status(), 400);
}

#[tokio::test]
async fn guard_readings_are_exported_to_metrics() {
    let app = spawn_app().await;
    let token = app.create_token("app", "client").await;
    checkout_policy(&app, "30m").await;
    started_release(&app, &["points"]).await;
    let mut traffic = Traffic::new(9, 100_000).rate("points", "payment_error", 0.005, 0.005);
    app.signals(&token, json!(traffic.batch("points", 5.0)))
        .await;

    let text = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    assert!(
        text.contains(
            r#"rollgate_guard_evidence{release="guarded",flag="points",metric="payment_error"}"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"rollgate_signals_total{flag="points",variant="on",metric="exposure"}"#),
        "{text}"
    );
    assert!(text.contains("rollgate_module_state"), "{text}");
}

#[tokio::test]
async fn a_release_scope_policy_rolls_back_every_module_on_a_core_breach() {
    let app = spawn_app().await;
    let token = app.create_token("app", "client").await;
    let policy = json!({"name": "whole", "scope": "release", "guard": [{"metric": "data_loss", "class": "core", "max_count": 0}]});
    assert!(app
        .admin(Method::PUT, "/api/v1/policies/whole")
        .json(&policy)
        .send()
        .await
        .unwrap()
        .status()
        .is_success());
    for f in ["a", "b"] {
        app.put_flag(bool_flag(f, 0.0)).await;
    }
    let plan = json!({"name": "all-or-nothing", "policy": "whole", "overlap": true, "modules": [{"flag": "a"}, {"flag": "b"}], "stages": {"min_duration": "1h"}});
    let id = app.create_release(plan).await;
    app.admin_post(&format!("/api/v1/releases/{id}/start"), json!({}))
        .await;

    app.signals(
        &token,
        json!([{"flag": "b", "variant": "on", "metric": "data_loss"}]),
    )
    .await;

    let status = app.admin_get(&format!("/api/v1/releases/{id}")).await;
    assert_eq!(status["modules"][0]["state"], "rolled_back", "{status:#}");
    assert_eq!(status["modules"][1]["state"], "rolled_back");
    assert!(status["modules"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("release-scope"));
    assert_eq!(app.rollout_of("a").await, 0.0);
}

#[tokio::test]
async fn broken_exposure_reporting_pauses_on_sample_ratio_mismatch() {
    let app = spawn_app().await;
    let token = app.create_token("app", "client").await;
    checkout_policy(&app, "30m").await;
    let id = started_release(&app, &["points"]).await;

    // The app reports exposures of the old variant only, though 5% are served the new one.
    // (For the first second of a stage the check tolerates clients catching up.)
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        app.signals(
            &token,
            json!([{"flag": "points", "variant": "off", "metric": "exposure", "count": 20_000}]),
        )
        .await;
        let status = app.admin_get(&format!("/api/v1/releases/{id}")).await;
        if status["modules"][0]["state"] != "ramping" || tokio::time::Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(status["modules"][0]["state"], "paused", "{status:#}");
    assert!(status["modules"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("sample ratio mismatch"));
    assert_eq!(status["modules"][0]["paused"]["by"], "data_quality");
    assert!(
        app.rollout_of("points").await > 0.0,
        "broken data neither rolls back nor advances"
    );
}

#[tokio::test]
async fn silent_telemetry_pauses_the_ramp() {
    let app = spawn_app().await;
    let policy = json!({"name": "quiet", "guard": [{"metric": "payment_error", "class": "core", "max_relative_increase": 0.0, "silence_after": "150ms"}]});
    assert!(app
        .admin(Method::PUT, "/api/v1/policies/quiet")
        .json(&policy)
        .send()
        .await
        .unwrap()
        .status()
        .is_success());
    app.put_flag(bool_flag("points", 0.0)).await;
    let id = app.create_release(json!({"name": "q", "policy": "quiet", "modules": [{"flag": "points"}], "stages": {"min_duration": "1h"}})).await;
    app.admin_post(&format!("/api/v1/releases/{id}/start"), json!({}))
        .await;

    let paused = app
        .wait_release(&id, "a silence pause", |s| {
            s["modules"][0]["state"] == "paused"
        })
        .await;

    assert!(
        paused["modules"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("telemetry silent"),
        "{paused:#}"
    );
}

#[tokio::test]
async fn a_stage_that_could_not_have_seen_the_harm_is_extended_and_says_why() {
    let app = spawn_app().await;
    let token = app.create_token("app", "client").await;
    let policy = json!({"name": "careful", "guard": [{"metric": "payment_error", "class": "core", "max_relative_increase": 0.0, "detect": 0.5}]});
    assert!(app
        .admin(Method::PUT, "/api/v1/policies/careful")
        .json(&policy)
        .send()
        .await
        .unwrap()
        .status()
        .is_success());
    app.put_flag(bool_flag("points", 0.0)).await;
    let plan = json!({"name": "c", "policy": "careful", "modules": [{"flag": "points", "stages": {"percentages": [50, 100], "min_duration": "0s", "min_exposures": 100}}]});
    let id = app.create_release(plan).await;
    app.admin_post(&format!("/api/v1/releases/{id}/start"), json!({}))
        .await;

    // Enough exposures for the stage minimum, far too few to see a +50% rise at a 0.5% base rate.
    app.signals(
        &token,
        json!([
            {"flag": "points", "variant": "on", "metric": "exposure", "count": 500},
            {"flag": "points", "variant": "off", "metric": "exposure", "count": 500},
            {"flag": "points", "variant": "off", "metric": "payment_error", "count": 3}
        ]),
    )
    .await;

    let status = app
        .wait_release(&id, "the extension note", |s| {
            s["modules"][0]["waiting"]
                .as_str()
                .is_some_and(|w| w.contains("stage extended"))
        })
        .await;
    assert_eq!(status["modules"][0]["stage"], 0);
    assert_eq!(status["modules"][0]["guards"][0]["state"], "cannot_tell");
    assert_eq!(status["modules"][0]["guards"][0]["could_detect"], false);
}

#[tokio::test]
async fn a_flag_ramped_by_hand_with_a_policy_stays_guarded() {
    let app = spawn_app().await;
    let token = app.create_token("app", "client").await;
    let mut flag = bool_flag("wallet", 20.0);
    flag["policy"] = json!("checkout");
    app.put_flag(flag).await;
    let mut unknown = bool_flag("other", 20.0);
    unknown["policy"] = json!("nope");
    let r = app
        .admin(Method::PUT, "/api/v1/flags/other")
        .json(&unknown)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);

    app.signals(
        &token,
        json!([{"flag": "wallet", "variant": "on", "metric": "exposure", "count": 10}]),
    )
    .await;
    let (code, _) = app
        .signals(
            &token,
            json!([{"flag": "wallet", "variant": "on", "metric": "data_loss"}]),
        )
        .await;

    assert_eq!(code, 200);
    assert_eq!(
        app.rollout_of("wallet").await,
        0.0,
        "rolled back within the request"
    );
    let audit = app.admin_get("/api/v1/audit?flag=wallet&limit=1").await;
    assert_eq!(audit["entries"][0]["action"], "flag.rollback");
    assert_eq!(audit["entries"][0]["actor"], "controller");
    assert!(audit["entries"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("data_loss"));
}

#[tokio::test]
async fn guards_stay_armed_on_a_completed_release_s_flags() {
    let app = spawn_app().await;
    let token = app.create_token("app", "client").await;
    checkout_policy(&app, "30m").await;
    app.put_flag(bool_flag("points", 0.0)).await;
    let plan = json!({"name": "done", "policy": "test-checkout", "modules": [{"flag": "points", "stages": {"percentages": [100], "min_duration": "0s", "min_exposures": 0}}]});
    let id = app.create_release(plan).await;
    app.admin_post(&format!("/api/v1/releases/{id}/start"), json!({}))
        .await;
    app.wait_release(&id, "completion", |s| s["state"] == "completed")
        .await;
    assert_eq!(
        app.admin_get("/api/v1/flags/points").await["policy"],
        "test-checkout",
        "the flag keeps the release's policy"
    );

    app.signals(
        &token,
        json!([{"flag": "points", "variant": "on", "metric": "data_loss"}]),
    )
    .await;

    assert_eq!(app.rollout_of("points").await, 0.0);
}

#[tokio::test]
async fn with_overlap_one_module_s_rollback_leaves_the_others_ramping_under_guard() {
    let app = spawn_app().await;
    let token = app.create_token("app", "client").await;
    checkout_policy(&app, "30m").await;
    for f in ["a", "b"] {
        app.put_flag(bool_flag(f, 0.0)).await;
    }
    let plan = json!({"name": "ov", "policy": "test-checkout", "overlap": true, "modules": [{"flag": "a"}, {"flag": "b"}], "stages": {"min_duration": "1h"}});
    let id = app.create_release(plan).await;
    app.admin_post(&format!("/api/v1/releases/{id}/start"), json!({}))
        .await;

    app.signals(
        &token,
        json!([{"flag": "a", "variant": "on", "metric": "data_loss"}]),
    )
    .await;
    let status = app.admin_get(&format!("/api/v1/releases/{id}")).await;
    assert_eq!(status["modules"][0]["state"], "rolled_back");
    assert_eq!(status["modules"][1]["state"], "ramping");
    assert_eq!(status["state"], "running", "b still ramps");

    app.signals(
        &token,
        json!([{"flag": "b", "variant": "on", "metric": "data_loss"}]),
    )
    .await;
    let status = app.admin_get(&format!("/api/v1/releases/{id}")).await;
    assert_eq!(
        status["modules"][1]["state"], "rolled_back",
        "b was still guarded"
    );
    assert_eq!(status["state"], "rolled_back");
    let by_name = app.admin_get("/api/v1/audit?release=ov&limit=100").await;
    assert!(
        by_name["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "module.rollback"),
        "audit filters by release name too"
    );
}

/// A release of `points` under a policy whose stage at 5 % lasts an hour (so only the
/// sample-ratio check and the guards can change it), started; returns its id.
async fn steady_release(app: &TestApp, min_duration: &str) -> String {
    let policy = json!({"name": "steady", "guard": [{"metric": "complaint", "class": "basic", "max_relative_increase": 0.25}],
                        "stages": {"percentages": [5, 100], "min_duration": min_duration, "min_exposures": 1000}});
    let r = app
        .admin(Method::PUT, "/api/v1/policies/steady")
        .json(&policy)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    app.put_flag(bool_flag("points", 0.0)).await;
    let id = app
        .create_release(
            json!({"name": "steady", "policy": "steady", "modules": [{"flag": "points"}]}),
        )
        .await;
    app.admin_post(&format!("/api/v1/releases/{id}/start"), json!({}))
        .await;
    id
}

/// Waits until the current stage is older than the sample-ratio check's settling second, after
/// which the check compares against the served percentage alone.
async fn past_srm_settling(app: &TestApp, id: &str) {
    let status = app.admin_get(&format!("/api/v1/releases/{id}")).await;
    let started = status["modules"][0]["stage_started_ms"].as_u64().unwrap();
    let settled = started + rollgate::analysis::SRM_SETTLE_MS + 100;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    tokio::time::sleep(std::time::Duration::from_millis(
        settled.saturating_sub(now),
    ))
    .await;
}

/// Exposures at a 5 % split: `on` × 1,000,000 on the new variant, 19 × as many on the old.
fn split_exposures(on: usize) -> Value {
    let signal = |variant: &str| json!({"flag": "points", "variant": variant, "metric": "exposure", "count": 1_000_000});
    let mut batch = vec![signal("on"); on];
    batch.extend(vec![signal("off"); 19 * on]);
    json!(batch)
}

#[tokio::test]
async fn a_count_that_would_wrap_the_exposures_is_refused_and_pauses_nothing() {
    let app = spawn_app().await;
    let token = app.create_token("app", "client").await;
    let id = steady_release(&app, "1h").await;
    past_srm_settling(&app, &id).await;
    assert_eq!(app.signals(&token, split_exposures(1)).await.0, 200);

    // The exposures so far plus this count are 2^64: wrapped, they would read 0.
    let wrap = json!([{"flag": "points", "variant": "on", "metric": "exposure", "count": u64::MAX - 1_000_000 + 1}]);
    let (status, error) = app.signals(&token, wrap).await;
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["error"]["field"], "signals[0].count");
    assert_eq!(app.signals(&token, split_exposures(1)).await.0, 200);

    let status = app.admin_get(&format!("/api/v1/releases/{id}")).await;
    assert_eq!(status["modules"][0]["state"], "ramping", "{status:#}");
    assert_eq!(
        app.signals_total(&token, "points", "on", "exposure").await,
        Some(2_000_000.0)
    );
    let actions = audit_actions(&app.admin_get("/api/v1/audit?limit=1000").await);
    assert!(!actions.iter().any(|a| a == "module.pause"), "{actions:?}");
}

#[tokio::test]
async fn saturated_exposure_counts_raise_no_sample_ratio_mismatch_and_hold_the_stage() {
    // The new variant's exposures are one batch short of the counter ceiling.
    let app = spawn_app_with_aggregates(json!({
        "series": {"points": {
            "on": {"exposure": {"count": u64::MAX - 1_000_000, "sum": 0.0, "valued": 0}},
            "off": {"exposure": {"count": 1_000_000_000u64, "sum": 0.0, "valued": 0}}
        }},
        "last_signal_ms": {"points": 1}
    }))
    .await;
    let token = app.create_token("app", "client").await;
    let id = steady_release(&app, "0s").await;
    past_srm_settling(&app, &id).await;

    // A correct 5 % split: the new variant's count stops at the ceiling after 1,000,000 of
    // these, the old one's keeps growing, so the stage window reads 0.2 % on the new variant.
    for _ in 0..3 {
        let (status, report) = app.signals(&token, split_exposures(5)).await;
        assert_eq!(status, 200, "{report}");
    }

    let status = app
        .wait_release(&id, "the extension note", |s| {
            s["modules"][0]["waiting"]
                .as_str()
                .is_some_and(|w| w.contains("stage extended"))
                || s["modules"][0]["state"] != "ramping"
        })
        .await;
    let module = &status["modules"][0];
    assert_eq!(module["state"], "ramping", "{status:#}");
    assert_eq!(
        module["stage"], 0,
        "saturated counts do not advance the ramp"
    );
    assert_eq!(module["guards"][0]["state"], "cannot_tell", "{status:#}");
    assert!(
        module["guards"][0]["explanation"]
            .as_str()
            .unwrap()
            .contains("ceiling"),
        "{status:#}"
    );
    let actions = audit_actions(&app.admin_get("/api/v1/audit?limit=1000").await);
    assert!(
        !actions
            .iter()
            .any(|a| a == "module.pause" || a == "module.rollback"),
        "{actions:?}"
    );
}
