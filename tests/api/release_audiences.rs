//! Releases with audiences (docs/releases.md#audiences) over real HTTP with seeded client
//! traffic tagged per audience: the early audience ramps first while everyone else stays at
//! 0 %, protected users wait for everyone else (and here for an operator's advance), a harmless
//! change whose early audience has 3× the base error rate completes, a regression only inside
//! the early audience rolls every audience back, and bad plans are refused naming the field.

use crate::audiences::put_segments;
use crate::helpers::{bool_flag, spawn_app, TestApp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{json, Value};

/// Seeded traffic per audience: segment (None: everyone else) → (old rate, new rate).
struct Traffic {
    rng: StdRng,
    rates: Vec<(Option<&'static str>, f64, f64)>,
    per_batch: u64,
    /// When set, only this flag's new variant has the new rates (the others: the old ones).
    changed_flag: Option<&'static str>,
}

impl Traffic {
    fn draw(&mut self, n: u64, p: f64) -> u64 {
        let (u1, u2): (f64, f64) = (self.rng.gen_range(1e-12..1.0), self.rng.gen());
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        let mean = n as f64 * p;
        (mean + z * (mean * (1.0 - p)).sqrt()).round().max(0.0) as u64
    }

    /// One batch for every audience phase in `audiences` (status), at its percentage.
    fn batch(&mut self, flag: &str, audiences: &[Value]) -> Vec<Value> {
        let mut out = Vec::new();
        for phase in audiences {
            let segment = phase["segment"].as_str();
            let pct = phase["percentage"].as_f64().unwrap();
            let Some(&(_, old, new)) = self.rates.iter().find(|r| r.0 == segment) else {
                continue;
            };
            let new = if self.changed_flag.is_some_and(|f| f != flag) {
                old
            } else {
                new
            };
            let new_n = (self.per_batch as f64 * pct / 100.0).round() as u64;
            for (variant, n, p) in [("on", new_n, new), ("off", self.per_batch - new_n, old)] {
                if n == 0 {
                    continue;
                }
                let errors = self.draw(n, p);
                let mut exposure =
                    json!({"flag": flag, "variant": variant, "metric": "exposure", "count": n});
                let mut error = json!({"flag": flag, "variant": variant, "metric": "payment_error", "count": errors.max(1)});
                if let Some(s) = segment {
                    exposure["audience"] = json!(s);
                    error["audience"] = json!(s);
                }
                out.push(exposure);
                out.push(error);
            }
        }
        out
    }
}

async fn policy(app: &TestApp) {
    let policy = json!({
        "name": "test-checkout", "cooldown": "200ms",
        "guard": [{"metric": "payment_error", "class": "core", "max_relative_increase": 0.0, "max_rate": 0.02, "detect": 1.0}],
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

fn plan(audiences: Value) -> Value {
    json!({"name": "aud", "policy": "test-checkout",
           "modules": [{"flag": "qr-ordering", "audiences": audiences}]})
}

async fn setup(app: &TestApp, audiences: Value) -> String {
    put_segments(app).await;
    policy(app).await;
    app.put_flag(bool_flag("qr-ordering", 0.0)).await;
    let id = app.create_release(plan(audiences)).await;
    let r = app
        .admin_post(&format!("/api/v1/releases/{id}/start"), json!({}))
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    id
}

/// Sends traffic until `done`; `check` sees every status on the way.
async fn drive(
    app: &TestApp,
    token: &str,
    id: &str,
    traffic: &mut Traffic,
    done: impl Fn(&Value) -> bool,
    check: impl Fn(&Value),
) -> Value {
    for _ in 0..3000 {
        let status = app.admin_get(&format!("/api/v1/releases/{id}")).await;
        check(&status);
        if done(&status) {
            return status;
        }
        for m in status["modules"].as_array().unwrap() {
            let batch = traffic.batch(
                m["flag"].as_str().unwrap(),
                m["audiences"].as_array().unwrap(),
            );
            let (code, report) = app.signals(token, json!(batch)).await;
            assert_eq!(code, 200, "{report}");
        }
    }
    panic!("gave up");
}

fn phase(status: &Value, segment: Value) -> &Value {
    status["modules"][0]["audiences"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["segment"] == segment)
        .unwrap()
}

async fn served(app: &TestApp, token: &str, ctx: Value) -> (bool, Value) {
    let (code, body) = app.evaluate(token, "qr-ordering", ctx).await;
    assert_eq!(code, 200, "{body}");
    (
        body["value"].as_bool().unwrap(),
        body["metadata"]["audience"].clone(),
    )
}

#[tokio::test]
async fn early_first_protected_last_and_a_3x_base_rate_in_the_early_audience_does_not_roll_back() {
    let app = spawn_app().await;
    let token = app.create_token("app", "client").await;
    let id = setup(
        &app,
        json!([{"segment": "innovation", "stages": {"percentages": [50, 100]}},
               {"segment": "seniors", "protected": true, "advance": "manual", "stages": {"percentages": [100]}}]),
    )
    .await;

    // Stage 1 of the early audience: 50 % of innovation users, nobody else.
    let status = app.admin_get(&format!("/api/v1/releases/{id}")).await;
    assert_eq!(
        phase(&status, json!("innovation"))["state"],
        "ramping",
        "{status:#}"
    );
    assert_eq!(phase(&status, json!("innovation"))["percentage"], 50.0);
    assert_eq!(phase(&status, Value::Null)["percentage"], 0.0);
    // Buckets with salt qr-ordering: user-2 40721 (in at 50 %), user-1 77993 (out).
    let innovator = json!({"targetingKey": "user-2", "tier": "innovation"});
    assert_eq!(
        served(&app, &token, innovator.clone()).await,
        (true, json!("innovation"))
    );
    assert_eq!(
        served(&app, &token, json!({"targetingKey": "user-2"})).await,
        (false, Value::Null)
    );
    // A replacement of the flag that does not mention `audiences` keeps the release's.
    let mut edited = bool_flag("qr-ordering", 0.0);
    edited["description"] = json!("edited during the release");
    app.put_flag(edited).await;
    assert_eq!(
        served(&app, &token, innovator.clone()).await,
        (true, json!("innovation"))
    );
    let senior_innovator = json!({"targetingKey": "user-2", "tier": "innovation", "age": 70});
    assert_eq!(
        served(&app, &token, senior_innovator.clone()).await,
        (false, json!("seniors"))
    );

    // Innovation's base error rate is 3× everyone else's; the new variant changes nothing.
    let mut traffic = Traffic {
        rng: StdRng::seed_from_u64(5),
        rates: vec![
            (Some("innovation"), 0.015, 0.015),
            (None, 0.005, 0.005),
            (Some("seniors"), 0.005, 0.005),
        ],
        per_batch: 200_000,
        changed_flag: None,
    };
    let order = |s: &Value| {
        let early = phase(s, json!("innovation"));
        let rest = phase(s, Value::Null);
        let seniors = phase(s, json!("seniors"));
        if early["state"] != "completed" {
            assert_eq!(
                rest["percentage"], 0.0,
                "everyone else waits for the early audience: {s:#}"
            );
        }
        if rest["state"] != "completed" {
            assert_eq!(seniors["percentage"], 0.0, "protected users wait: {s:#}");
        }
        assert_ne!(s["state"], "rolled_back", "{s:#}");
    };
    let waiting = drive(
        &app,
        &token,
        &id,
        &mut traffic,
        |s| phase(s, json!("seniors"))["state"] == "waiting",
        order,
    )
    .await;
    assert_eq!(
        phase(&waiting, Value::Null)["state"],
        "completed",
        "{waiting:#}"
    );
    assert_eq!(waiting["modules"][0]["state"], "completed");
    assert_eq!(
        waiting["state"], "running",
        "the release waits for the protected audience"
    );
    assert_eq!(
        served(&app, &token, json!({"targetingKey": "user-1"})).await,
        (true, Value::Null)
    );
    assert_eq!(
        served(&app, &token, senior_innovator.clone()).await,
        (false, json!("seniors"))
    );

    // The operator releases the protected audience; it ramps and the release completes.
    let r = app
        .admin_post(&format!("/api/v1/releases/{id}/advance"), json!({}))
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let done = drive(
        &app,
        &token,
        &id,
        &mut traffic,
        |s| s["state"] != "running",
        order,
    )
    .await;
    assert_eq!(done["state"], "completed", "{done:#}");
    assert_eq!(
        served(&app, &token, senior_innovator).await,
        (true, json!("seniors"))
    );

    let audit = app.admin_get("/api/v1/audit?limit=1000").await;
    let entries = audit["entries"].as_array().unwrap();
    assert!(
        !entries
            .iter()
            .any(|e| e["action"] == "module.rollback" || e["action"] == "module.pause"),
        "{audit:#}"
    );
    assert!(
        entries.iter().any(|e| e["reason"]
            .as_str()
            .is_some_and(|r| r == "innovation: stage 2 → 100 %")),
        "{audit:#}"
    );
    // A second advance has nothing to release.
    let again = app
        .admin_post(&format!("/api/v1/releases/{id}/advance"), json!({}))
        .await;
    assert_eq!(again.status(), 409);
}

#[tokio::test]
async fn a_regression_only_inside_the_early_audience_rolls_back_every_audience() {
    let app = spawn_app().await;
    let token = app.create_token("app", "client").await;
    let id = setup(
        &app,
        json!([{"segment": "innovation", "stages": {"percentages": [50, 100]}},
               {"segment": "seniors", "protected": true}]),
    )
    .await;
    let mut traffic = Traffic {
        rng: StdRng::seed_from_u64(9),
        rates: vec![
            (Some("innovation"), 0.005, 0.015),
            (None, 0.005, 0.005),
            (Some("seniors"), 0.005, 0.005),
        ],
        per_batch: 200_000,
        changed_flag: None,
    };
    let done = drive(
        &app,
        &token,
        &id,
        &mut traffic,
        |s| s["state"] != "running",
        |_| {},
    )
    .await;
    assert_eq!(done["state"], "rolled_back", "{done:#}");
    for segment in [json!("innovation"), Value::Null, json!("seniors")] {
        let p = phase(&done, segment.clone());
        assert_eq!(
            (p["state"].as_str(), p["percentage"].as_f64()),
            (Some("rolled_back"), Some(0.0)),
            "{segment}: {done:#}"
        );
    }
    let record = &done["modules"][0]["decision"];
    assert_eq!(record["action"], "rollback");
    assert_eq!(record["numbers"]["audience"], "innovation", "{record:#}");
    assert!(done["modules"][0]["reason"]
        .as_str()
        .unwrap()
        .starts_with("innovation: "));
    let flag = app.admin_get("/api/v1/flags/qr-ordering").await;
    assert_eq!(flag["rollout"], 0.0);
    assert!(
        flag["audiences"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["rollout"] == 0.0),
        "{flag}"
    );
    let innovator = json!({"targetingKey": "user-2", "tier": "innovation"});
    assert_eq!(
        served(&app, &token, innovator).await,
        (false, json!("innovation"))
    );

    // Resume restarts from the first audience.
    let r = app
        .admin_post(&format!("/api/v1/releases/{id}/resume"), json!({}))
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let status = app.admin_get(&format!("/api/v1/releases/{id}")).await;
    assert_eq!(
        phase(&status, json!("innovation"))["state"],
        "ramping",
        "{status:#}"
    );
    assert_eq!(phase(&status, json!("innovation"))["percentage"], 50.0);
    assert_eq!(phase(&status, Value::Null)["state"], "pending");
    // The restart is a `resume` event (it resolves what the rollback raised, e.g. a PagerDuty
    // incident), counted where the alert rules read events.
    let metrics = app
        .admin(reqwest::Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let resumed = "rollgate_release_events_total{kind=\"resume\"} 1";
    assert!(metrics.lines().any(|l| l == resumed), "{metrics}");
}

#[tokio::test]
async fn an_operator_rollback_covers_every_audience() {
    let app = spawn_app().await;
    let id = setup(&app, json!([{"segment": "innovation"}])).await;
    let r = app
        .admin_post(&format!("/api/v1/releases/{id}/rollback"), json!({}))
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let status: Value = r.json().await.unwrap();
    assert_eq!(status["state"], "rolled_back", "{status:#}");
    assert_eq!(phase(&status, json!("innovation"))["state"], "rolled_back");
    assert_eq!(phase(&status, json!("innovation"))["percentage"], 0.0);
}

#[tokio::test]
async fn bad_audiences_in_a_plan_are_refused_naming_the_field() {
    let app = spawn_app().await;
    put_segments(&app).await;
    app.put_flag(bool_flag("qr-ordering", 0.0)).await;
    for (audiences, status, field) in [
        (
            json!([{"segment": "innovation"}, {"segment": "nobody"}]),
            422,
            "modules[0].audiences[1].segment",
        ),
        (
            json!([{"segment": "innovation"}, {"segment": "innovation", "protected": true}]),
            422,
            "modules[0].audiences[1].segment",
        ),
        (
            json!([{"segment": "innovation", "advance": "manual"}]),
            422,
            "modules[0].audiences[0].advance",
        ),
        (
            json!([{"segment": "seniors", "protected": true, "advance": "soon"}]),
            400,
            "advance",
        ),
        (
            json!([{"segment": "seniors", "stages": {"percentages": [5, 5]}}]),
            422,
            "modules[0].audiences[0].stages.percentages[1]",
        ),
    ] {
        let r = app.admin_post("/api/v1/releases", json!({"name": "bad", "modules": [{"flag": "qr-ordering", "audiences": audiences}]})).await;
        let code = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        assert_eq!(code, status, "{audiences}: {body}");
        let named = body["error"]["field"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
            + body["error"]["message"].as_str().unwrap_or_default();
        assert!(named.contains(field), "{audiences}: {body}");
    }
    // The plan's audiences are the default of every module.
    let r = app.admin_post("/api/v1/releases", json!({"name": "bad", "audiences": [{"segment": "nobody"}], "modules": [{"flag": "qr-ordering"}]})).await;
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["error"]["field"], "modules[0].audiences[0].segment",
        "{body}"
    );
}

#[tokio::test]
async fn a_completed_audience_stays_guarded_while_everyone_else_ramps() {
    let app = spawn_app().await;
    let token = app.create_token("app", "client").await;
    let id = setup(
        &app,
        json!([{"segment": "innovation", "stages": {"percentages": [50, 100]}}]),
    )
    .await;
    let mut traffic = Traffic {
        rng: StdRng::seed_from_u64(13),
        rates: vec![(Some("innovation"), 0.005, 0.005), (None, 0.005, 0.005)],
        per_batch: 200_000,
        changed_flag: None,
    };
    let early_done = |s: &Value| phase(s, json!("innovation"))["state"] == "completed";
    let status = drive(&app, &token, &id, &mut traffic, early_done, |_| {}).await;
    assert_eq!(phase(&status, json!("innovation"))["percentage"], 100.0);
    // Now innovation users on the new variant fail at 5 %, above the 2 % ceiling.
    traffic.rates[0] = (Some("innovation"), 0.005, 0.05);
    let done = drive(
        &app,
        &token,
        &id,
        &mut traffic,
        |s| s["state"] != "running",
        |_| {},
    )
    .await;
    assert_eq!(done["state"], "rolled_back", "{done:#}");
    let reason = done["modules"][0]["reason"].as_str().unwrap();
    assert!(reason.starts_with("innovation: "), "{reason}");
    assert_eq!(
        done["modules"][0]["decision"]["numbers"]["audience"],
        "innovation"
    );
    assert_eq!(phase(&done, Value::Null)["percentage"], 0.0);
    assert_eq!(phase(&done, json!("innovation"))["percentage"], 0.0);
}

#[tokio::test]
async fn an_alert_on_the_flag_pauses_the_ramping_audience_or_rolls_back_every_audience() {
    let app = spawn_app().await;
    let id = setup(&app, json!([{"segment": "innovation"}])).await;
    let alert = |severity: &str| {
        json!({"version": "4", "status": "firing", "receiver": "rollgate", "groupKey": "{}:{}",
               "alerts": [{"status": "firing", "labels": {"alertname": "Errors", "severity": severity,
                 "rollgate_flag": "qr-ordering"}, "annotations": {}, "fingerprint": format!("fp-{severity}")}]})
    };
    let answer: Value = app
        .admin_post("/api/v1/alerts/alertmanager", alert("warning"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["actions"][0]["result"], "applied", "{answer}");
    let status = app.admin_get(&format!("/api/v1/releases/{id}")).await;
    assert_eq!(
        phase(&status, json!("innovation"))["state"],
        "paused",
        "{status:#}"
    );
    assert_eq!(status["state"], "paused");

    let answer: Value = app
        .admin_post("/api/v1/alerts/alertmanager", alert("critical"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["actions"][0]["result"], "applied", "{answer}");
    let status = app.admin_get(&format!("/api/v1/releases/{id}")).await;
    assert_eq!(status["state"], "rolled_back", "{status:#}");
    for segment in [json!("innovation"), Value::Null] {
        assert_eq!(
            phase(&status, segment.clone())["state"],
            "rolled_back",
            "{segment}"
        );
        assert_eq!(phase(&status, segment)["percentage"], 0.0);
    }
}

#[tokio::test]
async fn a_release_with_audiences_resumes_its_phase_after_sigkill() {
    use crate::helpers::{policies_dir, start_binary, ADMIN_TOKEN};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let client = reqwest::Client::new();
    let call = |method: Method, url: String, body: Option<Value>| {
        let client = client.clone();
        async move {
            let mut req = client.request(method, url).bearer_auth(ADMIN_TOKEN);
            if let Some(b) = body {
                req = req.json(&b);
            }
            let r = req.send().await.unwrap();
            assert!(r.status().is_success(), "{}", r.status());
            r.json::<Value>().await.unwrap_or(Value::Null)
        }
    };
    let mut server = start_binary(&data, &policies_dir()).await;
    let base = server.address.clone();
    let innovation = json!({"key": "innovation", "when": [{"attribute": "tier", "op": "in", "values": ["innovation"]}]});
    call(
        Method::PUT,
        format!("{base}/api/v1/segments/innovation"),
        Some(innovation),
    )
    .await;
    call(
        Method::PUT,
        format!("{base}/api/v1/flags/qr-ordering"),
        Some(bool_flag("qr-ordering", 0.0)),
    )
    .await;
    let plan = json!({"name": "durable", "modules": [{"flag": "qr-ordering",
        "audiences": [{"segment": "innovation", "stages": {"percentages": [50, 100], "min_duration": "1h"}}]}]});
    let created = call(Method::POST, format!("{base}/api/v1/releases"), Some(plan)).await;
    let id = created["id"].as_str().unwrap().to_owned();
    call(
        Method::POST,
        format!("{base}/api/v1/releases/{id}/start"),
        Some(json!({})),
    )
    .await;

    server.child.kill().await.unwrap(); // SIGKILL mid-stage
    let server = start_binary(&data, &policies_dir()).await;
    let base = server.address.clone();

    let after = call(Method::GET, format!("{base}/api/v1/releases/{id}"), None).await;
    let early = phase(&after, json!("innovation"));
    assert_eq!(
        (early["state"].as_str(), early["percentage"].as_f64()),
        (Some("ramping"), Some(50.0)),
        "{after:#}"
    );
    assert_eq!(phase(&after, Value::Null)["state"], "pending");
    let flag = call(
        Method::GET,
        format!("{base}/api/v1/flags/qr-ordering"),
        None,
    )
    .await;
    assert_eq!(
        flag["audiences"],
        json!([{"segment": "innovation", "rollout": 50.0}])
    );
    let answer = client
        .post(format!("{base}/ofrep/v1/evaluate/flags/qr-ordering"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"context": {"targetingKey": "user-2", "tier": "innovation"}}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(
        (&answer["value"], &answer["metadata"]["audience"]),
        (&json!(true), &json!("innovation")),
        "{answer}"
    );
}

#[tokio::test]
async fn a_release_scope_rollback_covers_the_audiences_of_every_module() {
    let app = spawn_app().await;
    let token = app.create_token("app", "client").await;
    put_segments(&app).await;
    let policy = json!({
        "name": "release-wide", "scope": "release",
        "guard": [{"metric": "payment_error", "class": "core", "max_relative_increase": 0.0, "detect": 1.0}],
        "stages": {"percentages": [5, 25, 100], "min_duration": "20ms", "min_exposures": 2000}
    });
    let r = app
        .admin(Method::PUT, "/api/v1/policies/release-wide")
        .json(&policy)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    app.put_flag(bool_flag("qr-ordering", 0.0)).await;
    app.put_flag(bool_flag("points", 0.0)).await;
    // `qr-ordering` bakes its early audience for an hour; `points` regresses in its own.
    let id = app
        .create_release(json!({"name": "wide", "policy": "release-wide", "overlap": true,
            "audiences": [{"segment": "innovation", "stages": {"percentages": [50, 100]}}],
            "modules": [
                {"flag": "qr-ordering", "audiences": [{"segment": "innovation", "stages": {"percentages": [50, 100], "min_duration": "1h"}}]},
                {"flag": "points"}]}))
        .await;
    let r = app
        .admin_post(&format!("/api/v1/releases/{id}/start"), json!({}))
        .await;
    assert_eq!(r.status(), 200);
    let mut traffic = Traffic {
        rng: StdRng::seed_from_u64(17),
        rates: vec![(Some("innovation"), 0.005, 0.015), (None, 0.005, 0.005)],
        per_batch: 200_000,
        changed_flag: Some("points"),
    };
    let done = drive(
        &app,
        &token,
        &id,
        &mut traffic,
        |s| s["state"] != "running",
        |_| {},
    )
    .await;
    assert_eq!(done["state"], "rolled_back", "{done:#}");
    for m in done["modules"].as_array().unwrap() {
        for a in m["audiences"].as_array().unwrap() {
            assert_eq!(
                (a["state"].as_str(), a["percentage"].as_f64()),
                (Some("rolled_back"), Some(0.0)),
                "{m:#}"
            );
        }
    }
    let first = done["modules"][0]["reason"].as_str().unwrap();
    assert!(
        first.starts_with("release-scope policy: innovation: "),
        "{first}"
    );
}
