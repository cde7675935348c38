//! Prometheus as a guard source, against a real Prometheus (Debian's `prometheus`, installed by
//! tests/api/setup.sh) scraping a small exporter on loopback started by the test: a regression
//! seen in Prometheus rolls the module back, equal rates let the release advance, a failing
//! query (bad PromQL, Prometheus stopped) pauses the module as silent telemetry, and bad
//! `[guard.prometheus]` fields are refused with 422 naming the field.

use crate::helpers::{bool_flag, spawn_app, TestApp};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Counters served in the Prometheus text format: series (name + labels) → value.
type Series = Arc<Mutex<BTreeMap<String, f64>>>;

/// A tiny exporter on 127.0.0.1: answers every request with the current counters; stops on drop.
struct Exporter {
    port: u16,
    series: Series,
    stop: Arc<AtomicBool>,
}

impl Exporter {
    fn start() -> Exporter {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let series: Series = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (s, halt) = (series.clone(), stop.clone());
        std::thread::spawn(move || {
            while !halt.load(Ordering::Relaxed) {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                conn.set_nonblocking(false).unwrap();
                conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf);
                let mut body = String::new();
                for (k, v) in s.lock().unwrap().iter() {
                    let name = k.split('{').next().unwrap();
                    body.push_str(&format!("# TYPE {name} counter\n{k} {v}\n"));
                }
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Exporter { port, series, stop }
    }

    /// Raises the counters of `flag`: `n` requests per variant, errors at the given rates.
    fn serve(&self, flag: &str, n: f64, old_rate: f64, new_rate: f64) {
        let mut s = self.series.lock().unwrap();
        for (variant, rate) in [("off", old_rate), ("on", new_rate)] {
            let labels =
                format!(r#"{{feature_flag_key="{flag}",feature_flag_result_variant="{variant}"}}"#);
            *s.entry(format!("checkout_requests_total{labels}"))
                .or_default() += n;
            *s.entry(format!("checkout_errors_total{labels}"))
                .or_default() += (n * rate).round();
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A Prometheus server scraping the exporter every second; killed on drop (also when a test
/// fails), with its data in a temporary directory.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    async fn start(exporter: &Exporter) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
                exporter.port
            ),
        )
        .unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the prometheus binary (Debian package prometheus; run tests/api/setup.sh)");
        let p = Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        let client = reqwest::Client::new();
        for _ in 0..300 {
            let ready = client.get(format!("{}/-/ready", p.url)).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("prometheus did not become ready in 15 s");
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Prometheus guard on `checkout_error` reading the exporter's counters through `url`.
fn prom_guard(url: &str, events: &str, extra: Value) -> Value {
    let mut g = json!({
        "metric": "checkout_error",
        "class": "core",
        "max_relative_increase": 0.5,
        "source": "prometheus",
        "prometheus": {
            "url": url,
            "events": events,
            "exposures": "sum by ($variant_label) (increase(checkout_requests_total{feature_flag_key=\"$flag\"}[$window]))",
            "interval": "300ms",
            "timeout": "2s"
        }
    });
    for (k, v) in extra.as_object().unwrap() {
        g[k] = v.clone();
    }
    g
}

const EVENTS: &str = "sum by ($variant_label) (increase(checkout_errors_total{feature_flag_key=\"$flag\"}[$window]))";

/// Puts policy `name` with `guard`, the flag `checkout`, and starts a release of it.
async fn release(app: &TestApp, name: &str, guard: Value, stages: Value) -> String {
    let policy = json!({"name": name, "guard": [guard]});
    let r = app
        .admin(Method::PUT, &format!("/api/v1/policies/{name}"))
        .json(&policy)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    app.put_flag(bool_flag("checkout", 0.0)).await;
    let plan =
        json!({"name": name, "policy": name, "modules": [{"flag": "checkout", "stages": stages}]});
    let id = app.create_release(plan).await;
    app.admin_post(&format!("/api/v1/releases/{id}/start"), json!({}))
        .await;
    id
}

/// Raises the exporter's counters every 100 ms until dropped.
fn traffic(exporter: &Exporter, old_rate: f64, new_rate: f64) -> tokio::task::JoinHandle<()> {
    let series = exporter.series.clone();
    let e = Exporter {
        port: exporter.port,
        series,
        stop: Arc::new(AtomicBool::new(false)),
    };
    tokio::spawn(async move {
        loop {
            e.serve("checkout", 200.0, old_rate, new_rate);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// Polls the release until `done` holds (`secs` at most).
async fn wait(
    app: &TestApp,
    id: &str,
    secs: u64,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let status = app.admin_get(&format!("/api/v1/releases/{id}")).await;
        if done(&status) {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {status:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The decision record of the module's last transition, from the audit log.
async fn last_decision(app: &TestApp, action: &str) -> Value {
    let audit = app.admin_get("/api/v1/audit?limit=50").await;
    let entries = audit["entries"]
        .as_array()
        .or(audit.as_array())
        .cloned()
        .unwrap_or_default();
    entries
        .into_iter()
        .find(|e| e["action"] == action)
        .unwrap_or_else(|| panic!("no {action} in the audit log: {audit:#}"))
}

#[tokio::test]
async fn a_regression_seen_in_prometheus_rolls_the_module_back() {
    let exporter = Exporter::start();
    let prom = Prometheus::start(&exporter).await;
    let _traffic = traffic(&exporter, 0.01, 0.30);
    let app = spawn_app().await;

    let id = release(
        &app,
        "prom-core",
        prom_guard(&prom.url, EVENTS, json!({})),
        json!({"percentages": [50, 100], "min_duration": "1h"}),
    )
    .await;

    let done = wait(&app, &id, 30, "a rollback", |s| {
        s["modules"][0]["state"] == "rolled_back"
    })
    .await;
    let reason = done["modules"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("core guard checkout_error"), "{done:#}");
    assert_eq!(app.rollout_of("checkout").await, 0.0);
    let entry = last_decision(&app, "module.rollback").await;
    let guard = &entry["after"]["decision"]["numbers"]["guards"]["guard"];
    assert_eq!(guard["source"], "prometheus", "{entry:#}");
    assert!(
        guard["query"]["events"]
            .as_str()
            .unwrap()
            .contains("increase(checkout_errors_total{feature_flag_key=\"checkout\"}["),
        "{entry:#}"
    );
    assert!(guard["new"]["rate"].as_f64().unwrap() > 0.2, "{entry:#}");
    assert!(guard["old"]["rate"].as_f64().unwrap() < 0.05, "{entry:#}");
}

#[tokio::test]
async fn equal_rates_in_prometheus_advance_the_release_and_a_stopped_prometheus_pauses_it() {
    let exporter = Exporter::start();
    let mut prom = Prometheus::start(&exporter).await;
    let _traffic = traffic(&exporter, 0.05, 0.05);
    let app = spawn_app().await;
    let guard = prom_guard(&prom.url, EVENTS, json!({"detect": 3.0}));

    let id = release(
        &app,
        "prom-healthy",
        guard,
        json!({"percentages": [10, 50, 100], "min_duration": "3s"}),
    )
    .await;

    let advanced = wait(&app, &id, 40, "the next stage", |s| {
        s["modules"][0]["stage"].as_u64() >= Some(1)
    })
    .await;
    assert_eq!(advanced["modules"][0]["state"], "ramping", "{advanced:#}");
    let reading = &advanced["modules"][0]["guards"][0];
    assert_eq!(reading["source"], "prometheus", "{advanced:#}");

    prom.stop();
    let paused = wait(&app, &id, 20, "a silent-telemetry pause", |s| {
        s["modules"][0]["state"] == "paused"
    })
    .await;
    let reason = paused["modules"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("telemetry silent")
            && reason.contains("Prometheus query of guard checkout_error failed"),
        "{paused:#}"
    );
    assert!(
        app.rollout_of("checkout").await > 0.0,
        "a failing source neither rolls back nor advances"
    );
}

#[tokio::test]
async fn a_failing_promql_query_pauses_the_module_as_silent_telemetry() {
    let exporter = Exporter::start();
    let prom = Prometheus::start(&exporter).await;
    let _traffic = traffic(&exporter, 0.01, 0.01);
    let app = spawn_app().await;
    let broken = "sum by ($variant_label) (increase(checkout_errors_total[$window])";

    let id = release(
        &app,
        "prom-broken",
        prom_guard(&prom.url, broken, json!({})),
        json!({"percentages": [50, 100], "min_duration": "1h"}),
    )
    .await;

    let paused = wait(&app, &id, 20, "a silent-telemetry pause", |s| {
        s["modules"][0]["state"] == "paused"
    })
    .await;
    let reason = paused["modules"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("telemetry silent"), "{paused:#}");
    assert!(
        reason.contains("events query: Prometheus error (bad_data)"),
        "{paused:#}"
    );
    let entry = last_decision(&app, "module.pause").await;
    assert_eq!(
        entry["after"]["decision"]["numbers"]["guards"]["guard"]["source"], "prometheus",
        "{entry:#}"
    );
}

#[tokio::test]
async fn bad_prometheus_guard_fields_are_refused_naming_the_field() {
    let app = spawn_app().await;
    let ok = "http://127.0.0.1:9090";
    let cases = [
        (
            prom_guard("prometheus:9090", EVENTS, json!({})),
            "guard[0].prometheus.url",
        ),
        (
            prom_guard(ok, "sum(increase(x[5m]))", json!({})),
            "guard[0].prometheus.events",
        ),
        (
            prom_guard(ok, "x[$window] $flagg", json!({})),
            "guard[0].prometheus.events",
        ),
        (
            prom_guard(ok, EVENTS, json!({"source": "signals"})),
            "guard[0].source",
        ),
        (
            json!({"metric": "e", "class": "core", "max_count": 0, "source": "prometheus"}),
            "guard[0].prometheus",
        ),
        (
            prom_guard(ok, EVENTS, json!({"quantile": 0.9})),
            "guard[0].quantile",
        ),
    ];
    for (guard, field) in cases {
        let body = json!({"name": "p", "guard": [guard]});
        let r = app
            .admin(Method::PUT, "/api/v1/policies/p")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "{body}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"]["field"],
            field,
            "{body}"
        );
    }
    let mut timeout = prom_guard(ok, EVENTS, json!({}));
    timeout["prometheus"]["timeout"] = json!("soon");
    let r = app
        .admin(Method::PUT, "/api/v1/policies/p")
        .json(&json!({"name": "p", "guard": [timeout]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["field"],
        "guard[0].prometheus.timeout"
    );
}

#[tokio::test]
async fn a_plan_with_audiences_is_refused_when_its_policy_reads_prometheus() {
    let app = spawn_app().await;
    let guard = prom_guard("http://127.0.0.1:9090", EVENTS, json!({}));
    let r = app
        .admin(Method::PUT, "/api/v1/policies/prom")
        .json(&json!({"name": "prom", "guard": [guard]}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let r = app
        .admin(Method::PUT, "/api/v1/segments/innovation")
        .json(&json!({"key": "innovation", "when": [{"attribute": "tier", "op": "in", "values": ["innovation"]}]}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    app.put_flag(bool_flag("checkout", 0.0)).await;
    app.put_flag(bool_flag("search", 0.0)).await;
    let audiences = json!([{"segment": "innovation"}]);
    let cases = [
        (
            json!({"name": "r1", "policy": "prom", "modules": [{"flag": "checkout", "audiences": audiences}]}),
            "modules[0].audiences",
        ),
        (
            json!({"name": "r2", "policy": "prom", "audiences": audiences,
                   "modules": [{"flag": "checkout"}, {"flag": "search"}]}),
            "audiences",
        ),
    ];
    for (plan, field) in cases {
        let r = app.admin_post("/api/v1/releases", plan.clone()).await;
        assert_eq!(r.status(), 422, "{plan}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["field"], field, "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("checkout_error") && message.contains("Prometheus"),
            "{message}"
        );
    }
    // The same plan without audiences is a plain Prometheus-guarded release.
    app.create_release(json!({"name": "r3", "policy": "prom", "modules": [{"flag": "checkout"}]}))
        .await;
}
