//! The shipped operations files (`deploy/`): the systemd unit verifies clean with
//! `systemd-analyze verify` (installed by tests/api/setup.sh when missing; missing → the test
//! FAILS with that pointer, never skips), runs `rollgate serve`, and gives the server the stop
//! time its shutdown needs. The Prometheus alert rules pass `promtool check rules` and their
//! unit tests (`promtool test rules`, promtool from Debian's `prometheus`, installed by
//! setup.sh), every alert has a test, and every metric the rules and the Grafana dashboard
//! query is exposed by a real server's /metrics (a renamed metric fails here).

use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

const UNIT: &str = include_str!("../../deploy/rollgate.service");
const RULES: &str = include_str!("../../deploy/prometheus/rollgate-rules.yml");
const RULE_TESTS: &str = include_str!("../../deploy/prometheus/rollgate-rules.test.yml");
const DASHBOARD: &str = include_str!("../../deploy/grafana/rollgate.json");

#[test]
fn the_systemd_unit_verifies_clean_and_runs_the_server() {
    // Verified against the binary this test built (the unit names its installed path).
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("rollgate.service");
    let binary = env!("CARGO_BIN_EXE_rollgate");
    assert!(
        UNIT.contains("ExecStart=/usr/local/bin/rollgate serve\n"),
        "{UNIT}"
    );
    std::fs::write(&unit, UNIT.replace("/usr/local/bin/rollgate", binary)).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap_or_else(|e| {
            panic!("systemd-analyze: {e}; run tests/api/setup.sh (scripts/test.sh does)")
        });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.trim().is_empty(),
        "warnings (an unknown or misspelt key?): {stderr}"
    );

    // The data dir is the unit's state directory; the stop time covers the 10 s drain.
    assert!(UNIT.contains("StateDirectory=rollgate\n"));
    assert!(UNIT.contains("Environment=ROLLGATE_DATA_DIR=/var/lib/rollgate\n"));
    let stop: u64 = UNIT
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(stop >= 15, "TimeoutStopSec={stop}");
    assert!(Path::new(binary).exists());
}

fn promtool(args: &[&str]) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus");
    let out = Command::new("promtool")
        .args(args)
        .current_dir(&dir)
        .output()
        .unwrap_or_else(|e| panic!("promtool: {e}; run tests/api/setup.sh (scripts/test.sh does)"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}: {text}");
    text
}

/// The names after `key:` on lines of `text` (YAML scalars, quotes stripped).
fn values_of<'a>(text: &'a str, key: &str) -> BTreeSet<&'a str> {
    text.lines()
        .filter_map(|line| line.trim().trim_start_matches("- ").strip_prefix(key))
        .map(|rest| rest.trim().trim_matches('"'))
        .collect()
}

#[test]
fn the_alert_rules_check_and_every_alert_is_unit_tested() {
    let checked = promtool(&["check", "rules", "rollgate-rules.yml"]);
    assert!(checked.contains("SUCCESS: 7 rules found"), "{checked}");
    let tested = promtool(&["test", "rules", "rollgate-rules.test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");

    let alerts = values_of(RULES, "alert:");
    let expected = [
        "RollgateRollback",
        "RollgateRollbackUnconfirmed",
        "RollgateGuardEvidenceRising",
        "RollgateTelemetrySilent",
        "RollgateNodeNotReady",
        "RollgateNodeDown",
        "RollgateControllerLeaderless",
    ];
    assert_eq!(alerts, expected.into_iter().collect());
    // Each alert is evaluated both with `exp_alerts: []` (does not fire) and with alerts.
    for alert in alerts {
        let cases: Vec<&str> = RULE_TESTS
            .split("- eval_time:")
            .filter(|case| case.contains(&format!("alertname: {alert}\n")))
            .collect();
        assert!(
            cases.iter().any(|c| c.contains("exp_alerts: []")),
            "{alert}: no case where it does not fire"
        );
        assert!(
            cases.iter().any(|c| c.contains("exp_labels:")),
            "{alert}: no case where it fires"
        );
    }
}

/// Every `rollgate_*` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("rollgate_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// The PromQL of the dashboard: every panel target's `expr` and the variables' queries.
fn dashboard_queries(dashboard: &Value) -> Vec<String> {
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            queries.push(target["expr"].as_str().expect("expr").to_owned());
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
    {
        if let Some(q) = variable["query"]["query"].as_str() {
            queries.push(q.to_owned());
        }
    }
    queries
}

#[tokio::test]
async fn every_metric_of_the_rules_and_the_dashboard_is_on_a_real_server() {
    // Arrange: a server with a started release, signals, an evaluation error and an operator
    // pause, so that the module, guard, signal, error and pause families have series.
    let app = crate::helpers::spawn_app().await;
    let token = app.create_token("app", "client").await;
    app.put_flag(crate::helpers::bool_flag("checkout", 0.0))
        .await;
    let plan = json!({"name": "deployed", "policy": "checkout", "modules": [{"flag": "checkout"}],
        "stages": {"percentages": [50, 100], "min_duration": "1h", "min_exposures": 0}});
    let id = app.create_release(plan).await;
    let r = app
        .admin_post(&format!("/api/v1/releases/{id}/start"), json!({}))
        .await;
    assert_eq!(r.status(), 200);
    let signals = json!([{"flag": "checkout", "variant": "on", "metric": "exposure", "count": 10},
        {"flag": "checkout", "variant": "off", "metric": "exposure", "count": 10}]);
    assert_eq!(app.signals(&token, signals).await.0, 200);
    // An evaluation of a missing flag: the error counter has a series only once counted.
    let (code, _) = app
        .evaluate(&token, "missing", json!({"targetingKey": "u1"}))
        .await;
    assert_eq!(code, 404);
    let r = app
        .admin_post(
            &format!("/api/v1/releases/{id}/pause"),
            json!({"reason": "deploy test"}),
        )
        .await;
    assert_eq!(r.status(), 200);

    // Act
    let scrape = app
        .admin(reqwest::Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    // Assert: a name exists when it has a sample or its family is declared (by type).
    let mut exposed = BTreeSet::new();
    for line in scrape.lines() {
        if let Some(declared) = line.strip_prefix("# TYPE ") {
            // A declared family without series still names its samples by type.
            let (name, kind) = declared.split_once(' ').unwrap_or((declared, ""));
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                _ => &[""],
            };
            exposed.extend(suffixes.iter().map(|s| format!("{name}{s}")));
        } else if !line.starts_with('#') {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            exposed.insert(line[..end].to_owned());
        }
    }
    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    let mut used = metric_names(RULES);
    for query in dashboard_queries(&dashboard) {
        used.extend(metric_names(&query));
    }
    let missing: Vec<&String> = used.iter().filter(|n| !exposed.contains(*n)).collect();
    assert!(missing.is_empty(), "not on /metrics: {missing:?}\n{scrape}");
    assert!(used.len() >= 20, "{used:?}");

    // The families the alert rules added, with their values on a ready single node.
    for line in [
        "rollgate_ready{} 1.0",
        "rollgate_controller_leader{} 1.0",
        "rollgate_module_paused{release=\"deployed\",flag=\"checkout\",cause=\"operator\"} 1.0",
        "rollgate_release_events_total{kind=\"pause\"} 1",
        "rollgate_release_events_total{kind=\"rollback\"} 0",
    ] {
        assert!(
            scrape.lines().any(|l| l == line),
            "{line} missing:\n{scrape}"
        );
    }

    // The dashboard: Grafana 10's schema, a Prometheus data source variable used by every
    // panel, the sections asked for.
    assert!(dashboard["schemaVersion"].as_u64() >= Some(39));
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    assert!(variables.iter().any(|v| v["type"] == "datasource"
        && v["query"] == "prometheus"
        && v["name"] == "datasource"));
    let panels = dashboard["panels"].as_array().unwrap();
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{}",
            panel["title"]
        );
        assert!(
            panel["gridPos"]["w"].as_u64().is_some(),
            "{}",
            panel["title"]
        );
    }
    let mut ids: Vec<u64> = panels.iter().map(|p| p["id"].as_u64().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), panels.len(), "panel ids are unique");
}
