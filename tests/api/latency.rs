//! Latency guards over real HTTP (both storage backends): seeded client traffic reporting
//! latencies as single values (`count` + `value`) or as histograms. A/A completes, a +30 % p95
//! against a 20 % band rolls back (core) or pauses (basic), both shapes give the same
//! decision and quantiles, and bad histograms and policies are refused naming the field.

use crate::helpers::{bool_flag, spawn_app, TestApp};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, LogNormal};
use reqwest::Method;
use serde_json::{json, Value};

/// Latencies reported on a grid of values 5 % apart (0.02 s × 1.05^k), so that a histogram
/// with those values as bounds carries exactly what the single values carry.
const GRID: usize = 100;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Shape {
    Values,
    Histogram,
}

struct Traffic {
    rng: StdRng,
    per_batch: u64,
    /// The new variant's latencies are the old ones × this.
    slowdown: f64,
    shape: Shape,
}

impl Traffic {
    fn new(seed: u64, slowdown: f64, shape: Shape) -> Self {
        Traffic {
            rng: StdRng::seed_from_u64(seed),
            per_batch: 100_000,
            slowdown,
            shape,
        }
    }

    /// Observations per grid value for `n` latencies (lognormal around 0.2 s, p95 ≈ 0.46 s).
    fn latencies(&mut self, n: u64) -> Vec<u64> {
        let d = LogNormal::new(0.2f64.ln(), 0.5).unwrap();
        let mut counts = vec![0u64; GRID];
        for _ in 0..n {
            let k = ((d.sample(&mut self.rng) / 0.02).ln() / 1.05f64.ln()).round();
            counts[(k.max(0.0) as usize).min(GRID - 1)] += 1;
        }
        counts
    }

    fn batch(&mut self, flag: &str, percentage: f64) -> Vec<Value> {
        let new_n = (self.per_batch as f64 * percentage / 100.0).round() as u64;
        let mut out = Vec::new();
        for (variant, n, scale) in [
            ("on", new_n, self.slowdown),
            ("off", self.per_batch - new_n, 1.0),
        ] {
            if n == 0 {
                continue;
            }
            out.push(json!({"flag": flag, "variant": variant, "metric": "exposure", "count": n}));
            let counts = self.latencies(n);
            let values: Vec<f64> = (0..GRID)
                .map(|k| 0.02 * 1.05f64.powi(k as i32) * scale)
                .collect();
            match self.shape {
                Shape::Values => {
                    for (v, c) in values.iter().zip(&counts).filter(|(_, c)| **c > 0) {
                        out.push(json!({"flag": flag, "variant": variant, "metric": "checkout_latency", "value": v, "count": c}));
                    }
                }
                Shape::Histogram => out.push(json!({
                    "flag": flag, "variant": variant, "metric": "checkout_latency",
                    "histogram": {"bounds": values, "counts": counts},
                })),
            }
        }
        out
    }
}

async fn latency_policy(app: &TestApp, class: &str) {
    let mut guard = json!({"metric": "checkout_latency", "class": class, "quantile": 0.95,
        "max_relative_increase": 0.2, "max_value": 5.0});
    if class == "basic" {
        guard["grace"] = json!("30m");
    }
    let policy = json!({
        "name": "test-latency",
        "guard": [guard],
        "stages": {"percentages": [5, 25, 100], "min_duration": "20ms", "min_exposures": 20000}
    });
    let r = app
        .admin(Method::PUT, "/api/v1/policies/test-latency")
        .json(&policy)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
}

/// Starts a release of one flag under the latency policy; sends traffic until `done`.
async fn run(class: &str, traffic: &mut Traffic, done: impl Fn(&Value) -> bool) -> Value {
    let app = spawn_app().await;
    let token = app.create_token("app", "client").await;
    latency_policy(&app, class).await;
    app.put_flag(bool_flag("checkout", 0.0)).await;
    let id = app
        .create_release(
            json!({"name": "latency", "policy": "test-latency", "modules": [{"flag": "checkout"}]}),
        )
        .await;
    let r = app
        .admin_post(&format!("/api/v1/releases/{id}/start"), json!({}))
        .await;
    assert_eq!(r.status(), 200);
    for _ in 0..200 {
        let status = app.admin_get(&format!("/api/v1/releases/{id}")).await;
        if done(&status) {
            let audit = app.admin_get("/api/v1/audit?limit=1000").await;
            return json!({"status": status, "audit": audit});
        }
        let m = &status["modules"][0];
        let batch = traffic.batch("checkout", m["percentage"].as_f64().unwrap());
        let (code, report) = app.signals(&token, json!(batch)).await;
        assert_eq!(code, 200, "{report}");
        assert_eq!(report["rejected"], 0, "{report}");
    }
    panic!("gave up waiting for a verdict");
}

fn actions(audit: &Value) -> Vec<String> {
    audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect()
}

fn close(a: &Value, b: &Value, tolerance: f64) -> bool {
    let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
    (a - b).abs() <= tolerance * b.abs()
}

#[tokio::test]
async fn an_a_a_latency_release_completes_through_every_stage() {
    let mut traffic = Traffic::new(21, 1.0, Shape::Values);
    let out = run("core", &mut traffic, |s| s["state"] != "running").await;

    let status = &out["status"];
    assert_eq!(status["state"], "completed", "{status:#}");
    let acts = actions(&out["audit"]);
    assert!(
        !acts
            .iter()
            .any(|a| a == "module.pause" || a == "module.rollback"),
        "{acts:?}"
    );
    assert_eq!(
        acts.iter().filter(|a| *a == "module.advance").count(),
        2,
        "{acts:?}"
    );
    // At 100 % the ceiling still reads the new variant's p95.
    let q = &status["modules"][0]["guards"][0]["quantile"];
    assert_eq!(q["quantile"], 0.95, "{q:#}");
    assert!(close(&q["new"]["value"], &json!(0.46), 0.05), "{q:#}");
    assert_eq!(q["max_value"], 5.0);
    assert_eq!(q["above_max_value"], 0);
}

/// The same seeded regression reported as single values and as histograms: both roll back,
/// and the records name (nearly) the same quantiles.
#[tokio::test]
async fn a_30_percent_slower_p95_rolls_back_a_core_guard_with_values_and_with_histograms() {
    let mut records = Vec::new();
    for shape in [Shape::Values, Shape::Histogram] {
        let mut traffic = Traffic::new(22, 1.3, shape);
        let out = run("core", &mut traffic, |s| s["state"] != "running").await;
        let status = &out["status"];
        assert_eq!(status["state"], "rolled_back", "{shape:?}: {status:#}");
        let module = &status["modules"][0];
        let reason = module["reason"].as_str().unwrap();
        assert!(
            reason.contains("checkout_latency") && reason.contains("p95"),
            "{reason}"
        );
        let record = &module["decision"];
        assert_eq!(record["action"], "rollback");
        let q = record["numbers"]["guards"]["guard"]["quantile"].clone();
        assert!(q["share_above_threshold"].as_f64().unwrap() > 0.05, "{q:#}");
        assert!(
            q["ln_evidence"].as_f64() >= q["ln_threshold"].as_f64(),
            "{q:#}"
        );
        assert!(close(&q["relative_increase"], &json!(0.3), 0.2), "{q:#}");
        let audit_record = out["audit"]["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["action"] == "module.rollback")
            .expect("a rollback in the audit log")["after"]["decision"]["numbers"]["guards"]
            ["guard"]["quantile"]
            .clone();
        assert_eq!(audit_record["quantile"], 0.95);
        records.push(q);
    }
    for field in ["new", "old"] {
        assert!(
            close(
                &records[0][field]["value"],
                &records[1][field]["value"],
                0.02
            ),
            "{field}: {:#} vs {:#}",
            records[0],
            records[1]
        );
    }
}

#[tokio::test]
async fn a_30_percent_slower_p95_pauses_a_basic_guard() {
    let mut traffic = Traffic::new(23, 1.3, Shape::Histogram);
    let out = run("basic", &mut traffic, |s| {
        s["modules"][0]["state"] == "paused" || s["state"] != "running"
    })
    .await;
    let module = &out["status"]["modules"][0];
    assert_eq!(module["state"], "paused", "{module:#}");
    assert!(
        module["reason"]
            .as_str()
            .unwrap()
            .starts_with("basic guard checkout_latency out of band: p95"),
        "{module:#}"
    );
    assert_eq!(module["guards"][0]["state"], "breach");
}

#[tokio::test]
async fn bad_histograms_are_refused_naming_the_field() {
    let app = spawn_app().await;
    let token = app.create_token("app", "client").await;
    app.put_flag(bool_flag("checkout", 50.0)).await;
    let ok = json!({"flag": "checkout", "variant": "on", "metric": "checkout_latency",
        "histogram": {"bounds": [0.1, 0.2], "counts": [3, 4.0]}});
    let h = |histogram: Value| json!({"flag": "checkout", "variant": "on", "metric": "checkout_latency", "histogram": histogram});
    for (signals, code, field) in [
        (
            json!([ok, h(json!({"bounds": [0.1, 0.2], "counts": [1]}))]),
            422,
            "signals[1].histogram.counts",
        ),
        (
            json!([h(json!({"bounds": [0.1, 0.3, 0.2], "counts": [1, 1, 1]}))]),
            422,
            "signals[0].histogram.bounds[2]",
        ),
        (
            json!([h(json!({"bounds": [], "counts": []}))]),
            400,
            "signals[0].histogram.bounds",
        ),
        (
            json!([h(json!({"bounds": [0.1], "counts": [0]}))]),
            422,
            "signals[0].histogram.counts",
        ),
        (
            json!([h(json!({"bounds": [-0.1, 0.1], "counts": [1, 1]}))]),
            422,
            "signals[0].histogram.bounds[0]",
        ),
        (
            json!([h(json!({"bounds": [0.1, 0.2], "counts": [600000, 400001]}))]),
            422,
            "signals[0].histogram.counts",
        ),
        (
            json!([h(json!({"bounds": [0.1], "counts": [1], "sum": 3}))]),
            400,
            "signals[0].histogram",
        ),
        (json!([h(json!([[0.1], [1]]))]), 400, "signals[0].histogram"),
        (
            json!([h(json!({"bounds": [0.1], "counts": [-1]}))]),
            400,
            "signals[0].histogram.counts",
        ),
        (
            json!([{"flag": "checkout", "variant": "on", "metric": "checkout_latency", "value": 0.2,
            "histogram": {"bounds": [0.1], "counts": [1]}}]),
            422,
            "signals[0].value",
        ),
        (
            json!([{"flag": "checkout", "variant": "on", "metric": "checkout_latency", "count": 2,
            "histogram": {"bounds": [0.1], "counts": [1]}}]),
            422,
            "signals[0].count",
        ),
    ] {
        let (status, body) = app.signals(&token, signals.clone()).await;
        assert_eq!(status, code, "{signals}: {body}");
        let named = body["error"]["field"].as_str().unwrap_or_default();
        assert!(named.starts_with(field), "{signals}: {body}");
    }
    let (status, body) = app.signals(&token, json!([ok])).await;
    assert_eq!((status, &body["accepted"]), (200, &json!(1)), "{body}");
}

#[tokio::test]
async fn bad_latency_guards_are_refused_naming_the_field() {
    let app = spawn_app().await;
    let guard = |extra: Value| {
        let mut g = json!({"metric": "checkout_latency", "class": "core"});
        for (k, v) in extra.as_object().unwrap() {
            g[k] = v.clone();
        }
        json!({"name": "bad-latency", "guard": [{"metric": "errors", "class": "core", "max_count": 0}, g]})
    };
    for (extra, field) in [
        (
            json!({"quantile": 1.0, "max_relative_increase": 0.2}),
            "guard[1].quantile",
        ),
        (
            json!({"quantile": 0.0, "max_value": 1.0}),
            "guard[1].quantile",
        ),
        (json!({"quantile": 0.95}), "guard[1].quantile"),
        (
            json!({"quantile": 0.95, "max_relative_increase": 0.2, "max_rate": 0.1}),
            "guard[1].max_rate",
        ),
        (
            json!({"quantile": 0.95, "max_value": 0.8, "max_count": 3}),
            "guard[1].max_count",
        ),
        (
            json!({"quantile": 0.95, "max_value": -1.0}),
            "guard[1].max_value",
        ),
        (
            json!({"max_value": 0.8, "max_relative_increase": 0.2}),
            "guard[1].max_value",
        ),
    ] {
        let r = app
            .admin(Method::PUT, "/api/v1/policies/bad-latency")
            .json(&guard(extra.clone()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "{extra}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["field"], field, "{extra}: {body}");
    }
    let toml = "name = \"good-latency\"\n[[guard]]\nmetric = \"checkout_latency\"\nclass = \"basic\"\nquantile = 0.95\nmax_relative_increase = 0.2\nmax_value = 0.8\n";
    let r = app
        .admin(Method::PUT, "/api/v1/policies/good-latency")
        .header("content-type", "application/toml")
        .body(toml)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
}

/// Too few latencies to see a p95 +50 % above the band: the stage is extended, not advanced;
/// once enough arrive (same distribution on both variants) it advances.
#[tokio::test]
async fn a_stage_that_cannot_yet_tell_a_latency_harm_is_extended_until_it_can() {
    let app = spawn_app().await;
    let token = app.create_token("app", "client").await;
    latency_policy(&app, "core").await;
    app.put_flag(bool_flag("checkout", 0.0)).await;
    let plan = json!({"name": "c", "policy": "test-latency", "modules": [{"flag": "checkout",
        "stages": {"percentages": [50, 100], "min_duration": "0s", "min_exposures": 100}}]});
    let id = app.create_release(plan).await;
    app.admin_post(&format!("/api/v1/releases/{id}/start"), json!({}))
        .await;
    let few = |n: u64| {
        json!([
            {"flag": "checkout", "variant": "on", "metric": "exposure", "count": 500},
            {"flag": "checkout", "variant": "off", "metric": "exposure", "count": 500},
            {"flag": "checkout", "variant": "on", "metric": "checkout_latency", "value": 0.2, "count": n},
            {"flag": "checkout", "variant": "off", "metric": "checkout_latency", "value": 0.2, "count": n},
        ])
    };
    let (code, _) = app.signals(&token, few(20)).await;
    assert_eq!(code, 200);

    let status = app
        .wait_release(&id, "the extension note", |s| {
            s["modules"][0]["waiting"]
                .as_str()
                .is_some_and(|w| w.contains("stage extended"))
        })
        .await;
    let m = &status["modules"][0];
    assert_eq!(m["stage"], 0);
    assert_eq!(m["guards"][0]["state"], "cannot_tell", "{m:#}");
    assert_eq!(m["guards"][0]["could_detect"], false);
    assert!(
        m["waiting"]
            .as_str()
            .unwrap()
            .contains("observations of checkout_latency"),
        "{m:#}"
    );

    let (code, _) = app.signals(&token, few(5000)).await;
    assert_eq!(code, 200);
    let status = app
        .wait_release(&id, "the next stage", |s| s["modules"][0]["stage"] == 1)
        .await;
    assert_eq!(status["modules"][0]["percentage"], 100.0, "{status:#}");
}
