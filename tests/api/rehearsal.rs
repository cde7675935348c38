//! `POST /api/v1/policies/{name}/rehearse`: figures, bad input, and the agreement between the
//! rehearsal and real releases run by the server's controller over HTTP.

use crate::helpers::{bool_flag, spawn_app, TestApp};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Binomial, Distribution, Poisson};
use reqwest::Method;
use serde_json::{json, Value};

const TRAFFIC: f64 = 60_000.0;
const BASE: f64 = 0.01;

async fn put_policy(app: &TestApp) {
    let policy = json!({
        "name": "rehearsed",
        "guard": [{"metric": "payment_error", "class": "core", "max_relative_increase": 0.0}],
        "stages": {"percentages": [10, 50, 100], "min_duration": "0s", "min_exposures": 2000}
    });
    let r = app
        .admin(Method::PUT, "/api/v1/policies/rehearsed")
        .json(&policy)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
}

async fn rehearse(app: &TestApp, name: &str, body: Value) -> (u16, Value) {
    let r = app
        .admin_post(&format!("/api/v1/policies/{name}/rehearse"), body)
        .await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn binomial(rng: &mut StdRng, n: u64, p: f64) -> u64 {
    if n == 0 || p <= 0.0 {
        return 0;
    }
    Binomial::new(n, p.min(1.0)).unwrap().sample(rng)
}

/// One real release of a fresh flag under the policy, fed ticks of traffic (the rehearsal's
/// model: Poisson exposures split at the served percentage, binomial events, the new variant
/// at `factor` × the base rate) until the controller completes or rolls it back. Returns the tick of
/// the rollback, if any.
async fn real_release(
    app: &TestApp,
    token: &str,
    i: u64,
    per_tick: f64,
    factor: f64,
) -> Option<u64> {
    let flag = format!("agree-{i}");
    app.put_flag(bool_flag(&flag, 0.0)).await;
    let id = app
        .create_release(json!({"name": flag, "policy": "rehearsed", "modules": [{"flag": flag}]}))
        .await;
    let r = app
        .admin_post(&format!("/api/v1/releases/{id}/start"), json!({}))
        .await;
    assert_eq!(r.status(), 200);
    let mut rng = StdRng::seed_from_u64(1000 + i);
    for tick in 1..=400u64 {
        let status = app.admin_get(&format!("/api/v1/releases/{id}")).await;
        let module = &status["modules"][0];
        match module["state"].as_str().unwrap() {
            "completed" => return None,
            "rolled_back" => return Some(tick - 1),
            _ => {}
        }
        let share = module["percentage"].as_f64().unwrap() / 100.0;
        let total = Poisson::new(per_tick).unwrap().sample(&mut rng) as u64;
        let on = binomial(&mut rng, total, share);
        let off = total - on;
        let batch = json!([
            {"flag": flag, "variant": "on", "metric": "exposure", "count": on},
            {"flag": flag, "variant": "off", "metric": "exposure", "count": off},
            {"flag": flag, "variant": "on", "metric": "payment_error", "count": binomial(&mut rng, on, factor * BASE)},
            {"flag": flag, "variant": "off", "metric": "payment_error", "count": binomial(&mut rng, off, BASE)},
        ]);
        let batch: Vec<Value> = batch
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["count"].as_u64() != Some(0))
            .cloned()
            .collect();
        let (code, body) = app.signals(token, json!(batch)).await;
        assert_eq!(code, 200, "{body}");
    }
    panic!("release {flag} neither completed nor rolled back");
}

#[tokio::test]
async fn a_rehearsal_agrees_with_real_releases_over_http() {
    let app = spawn_app().await;
    put_policy(&app).await;
    let (code, report) = rehearse(
        &app,
        "rehearsed",
        json!({"traffic_per_minute": TRAFFIC, "base": {"payment_error": BASE}, "runs": 300, "seed": 5, "max_seconds": 30}),
    )
    .await;
    assert_eq!(code, 200, "{report}");
    assert_eq!(report["runs_completed"], 300, "{report}");
    let tick = report["tick_seconds"].as_f64().unwrap();
    let token = app.create_token("app", "client").await;
    agree(&app, &token, &report, tick, 2.0, 0).await;
    agree(&app, &token, &report, tick, 1.25, 100).await;
}

/// Runs 12 real releases with the new variant at `factor` × the base rate and checks them
/// against the rehearsal's figures for that factor.
async fn agree(app: &TestApp, token: &str, report: &Value, tick: f64, factor: f64, first: u64) {
    let figures = report["regressions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["factor"] == factor)
        .unwrap()
        .clone();
    let p = figures["caught_share"].as_f64().unwrap();
    let median = figures["minutes_to_catch"]["median"].as_f64().unwrap() * 60.0 / tick;
    let p90 = figures["minutes_to_catch"]["p90"].as_f64().unwrap() * 60.0 / tick;
    let per_tick = TRAFFIC * tick / 60.0;
    const K: u64 = 12;
    let mut caught = Vec::new();
    for i in first..first + K {
        if let Some(t) = real_release(app, token, i, per_tick, factor).await {
            caught.push(t as f64);
        }
    }
    caught.sort_by(f64::total_cmp);
    eprintln!(
        "rehearsal {factor}x: share {p}, median {median} ticks, p90 {p90}; real: {caught:?} of {K}"
    );
    // Catch share: the real count lies within the binomial range of K draws at the rehearsed
    // share (mean ± 3 sd, plus one for the share's own sampling error over 300 runs).
    let k = K as f64;
    let sd = (k * p * (1.0 - p)).sqrt();
    let n = caught.len() as f64;
    assert!(
        (n - k * p).abs() <= 3.0 * sd + 1.0,
        "{factor}x: real releases caught {n} of {K}, rehearsal says {p}: {figures}"
    );
    // The seeds are fixed: both factors give catches to time (2×: 12, 1.25×: 4 of 12).
    assert!(!caught.is_empty(), "{factor}x: no real release was caught");
    // Time to catch (ticks): the median of the real catches lies, with > 99 % probability,
    // between the 10th and the 90th percentile of the rehearsed times; the lower side is
    // checked against half the rehearsed median, with one tick of slack for the discretisation.
    let real_median = caught[caught.len() / 2];
    assert!(
        real_median <= p90 + 1.0 && real_median >= median / 2.0 - 1.0,
        "{factor}x: real median catch tick {real_median} vs rehearsed median {median}, p90 {p90} ({caught:?})"
    );
}

#[tokio::test]
async fn a_rehearsal_answers_with_figures_and_refuses_bad_input_naming_the_field() {
    let app = spawn_app().await;
    put_policy(&app).await;
    let body = json!({"traffic_per_minute": 2000, "base": {"payment_error": 0.005}, "runs": 20, "seed": 3});
    let (code, a) = rehearse(&app, "rehearsed", body).await;
    assert_eq!(code, 200, "{a}");
    // Integral floats are integers (JSON Schema's `integer`): the same request.
    let floats = json!({"traffic_per_minute": 2000, "base": {"payment_error": 0.005}, "runs": 20.0, "seed": 3.0});
    let (code, b) = rehearse(&app, "rehearsed", floats).await;
    assert_eq!(code, 200, "{b}");
    assert_eq!(
        a["regressions"], b["regressions"],
        "same seed, same figures"
    );
    assert_eq!(a["aa"], b["aa"]);
    assert_eq!(a["aa"]["runs"], 20);
    assert_eq!(a["regressions"].as_array().unwrap().len(), 3);
    assert_eq!(a["stages"], json!([10.0, 50.0, 100.0]));
    assert_eq!(a["stage_requirements"].as_array().unwrap().len(), 2);

    let (code, e) = rehearse(&app, "nope", json!({"traffic_per_minute": 1, "base": {}})).await;
    assert_eq!(code, 404, "{e}");
    for (body, field) in [
        (
            json!({"traffic_per_minute": 0, "base": {"payment_error": 0.01}}),
            "traffic_per_minute",
        ),
        (
            json!({"traffic_per_minute": 10, "base": {"payment_error": 0.01}, "runs": 0}),
            "runs",
        ),
        (
            json!({"traffic_per_minute": 10, "base": {"payment_error": 0.01}, "max_seconds": 600}),
            "max_seconds",
        ),
        (
            json!({"traffic_per_minute": 10, "base": {"payment_error": 1.5}}),
            "base.payment_error",
        ),
        (
            json!({"traffic_per_minute": 10, "base": {"payment_error": 0.01, "latency": 0.1}}),
            "base.latency",
        ),
        (
            json!({"traffic_per_minute": 10, "base": {}}),
            "base.payment_error",
        ),
    ] {
        let (code, e) = rehearse(&app, "rehearsed", body.clone()).await;
        assert_eq!(code, 422, "{body}: {e}");
        assert_eq!(e["error"]["field"], field, "{body}: {e}");
    }
    for body in [
        json!({"base": {}}),
        json!({"traffic_per_minute": "fast", "base": {}}),
        json!([1]),
    ] {
        let (code, e) = rehearse(&app, "rehearsed", body.clone()).await;
        assert_eq!(code, 400, "{body}: {e}");
    }
    let token = app.create_token("app", "client").await;
    let r = app
        .client
        .post(app.url("/api/v1/policies/rehearsed/rehearse"))
        .bearer_auth(token)
        .json(&json!({"traffic_per_minute": 10, "base": {"payment_error": 0.01}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn the_cli_prints_the_rehearsal_as_tables_and_the_servers_error() {
    let app = spawn_app().await;
    put_policy(&app).await;
    let cli = |args: &[&str]| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_rollgate"))
            .args(args)
            .env("ROLLGATE_URL", &app.address)
            .env("ROLLGATE_TOKEN", &app.admin_token)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output()
    };
    let args = [
        "policy",
        "rehearse",
        "rehearsed",
        "--traffic",
        "2000/min",
        "--base",
        "payment_error=0.005",
        "--runs",
        "10",
        "--seed",
        "4",
    ];
    let out = cli(&args).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("policy rehearsed — 10 runs per scenario"),
        "{text}"
    );
    assert!(text.contains("A/A: ramp"), "{text}");
    for factor in ["1.25×", "1.5×", "2×"] {
        assert!(text.contains(factor), "{text}");
    }
    assert!(text.contains("payment_error"), "{text}");

    let bad = [
        "policy",
        "rehearse",
        "rehearsed",
        "--traffic",
        "2000/min",
        "--base",
        "payment_error=2",
    ];
    let out = cli(&bad).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("base rate must be in (0, 1)"), "{err}");
}
