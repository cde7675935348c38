//! The `ordering-app` example, end to end, against a real server started in-process.
//!
//! The example's file is included as a module (`#[path]`): its `run` is what `main` calls, so
//! this test runs the same code as `cargo run --example ordering-app` (Cargo gives tests no
//! path to an example's binary). Everything asserted comes from the server: the release
//! status, the audit log and the signal totals in `/metrics`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
#[path = "../examples/ordering-app/main.rs"]
mod ordering_app;

use clap::Parser;
use rollgate::config::Config;
use rollgate::startup::Application;
use serde_json::Value;

const ADMIN_TOKEN: &str = "ordering-app-test-admin-token-0123";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_ramps_the_healthy_module_and_rollgate_rolls_the_faulty_one_back_by_itself() {
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = Config::defaults();
    config.bind = "127.0.0.1:0".into();
    config.data_dir = data_dir.path().join("data");
    config.policies_dir = data_dir.path().join("no-policies");
    config.admin_token = Some(ADMIN_TOKEN.into());
    config.workers = 2;
    let app = Application::build(config).await.unwrap();
    let base = app.url();
    tokio::spawn(app.run_until_stopped());

    let args = ordering_app::Args::try_parse_from([
        "ordering-app",
        "--url",
        &base,
        "--token",
        ADMIN_TOKEN,
        "--users",
        "5000",
        "--instances",
        "3",
        "--stage-seconds",
        "2",
        "--seconds",
        "60",
    ])
    .unwrap();
    let outcome = ordering_app::run(args).await.unwrap();
    assert!(outcome.finished, "{outcome:?}");

    // The server's view of the release.
    let http = reqwest::Client::new();
    let get = |path: String| {
        let http = http.clone();
        let url = format!("{base}{path}");
        async move {
            let r = http.get(url).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
            assert!(r.status().is_success(), "{}", r.status());
            r.text().await.unwrap()
        }
    };
    let status: Value =
        serde_json::from_str(&get(format!("/api/v1/releases/{}", outcome.release)).await).unwrap();
    assert_eq!(status["state"], "rolled_back", "{status:#}");
    let qr = &status["modules"][0];
    let points = &status["modules"][1];
    assert_eq!(qr["flag"], "qr-ordering");
    assert_eq!(qr["state"], "completed", "{qr:#}");
    assert_eq!(qr["percentage"], 100.0);
    assert_eq!(points["flag"], "points");
    assert_eq!(points["state"], "rolled_back", "{points:#}");
    assert_eq!(points["percentage"], 0.0);
    // Rolled back by the controller, from the payment errors the SDK reported.
    assert_eq!(points["decision"]["actor"], "controller", "{points:#}");
    let reason = points["decision"]["reason"].as_str().unwrap();
    assert!(reason.starts_with("core guard payment_error"), "{reason}");

    // The audit log has the controller's rollback and completion.
    let audit: Value = serde_json::from_str(
        &get(format!(
            "/api/v1/audit?release={}",
            status["id"].as_str().unwrap()
        ))
        .await,
    )
    .unwrap();
    let actions: Vec<(String, String, String)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
            (s("actor"), s("action"), s("flag"))
        })
        .collect();
    assert!(
        actions
            .iter()
            .any(|(actor, action, _)| actor == "controller" && action == "module.rollback"),
        "{actions:?}"
    );
    assert!(
        actions
            .iter()
            .any(|(_, action, _)| action == "module.complete"),
        "{actions:?}"
    );

    // The SDK's signals arrived: exposures of both variants and payment errors of the faulty
    // module's new variant, far above its old variant's rate.
    let metrics = get("/metrics".into()).await;
    let total = |flag: &str, variant: &str, metric: &str| -> f64 {
        let series = format!(
            r#"rollgate_signals_total{{flag="{flag}",variant="{variant}",metric="{metric}"}} "#
        );
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&series))
            .map_or(0.0, |v| v.trim().parse().unwrap())
    };
    let new_rate = total("points", "on", "payment_error") / total("points", "on", "exposure");
    let old_rate = total("points", "off", "payment_error") / total("points", "off", "exposure");
    assert!(new_rate > 4.0 * old_rate, "new {new_rate}, old {old_rate}");
    assert!(total("qr-ordering", "on", "exposure") > 10_000.0);

    // The users moved back within a second of the rollback decision, on every app server,
    // and no user is served the faulty module's new variant any more.
    assert_eq!(outcome.moved_back_ms.len(), 3, "{outcome:?}");
    for (apply, moved) in outcome
        .decision_to_apply_ms
        .iter()
        .zip(&outcome.moved_back_ms)
    {
        assert!(apply + moved <= 1_000.0, "{outcome:?}");
    }
    assert_eq!(outcome.users_on_faulty_after, 0);

    // Reach: the rollback's change was confirmed by the live clients (the 3 app servers) while
    // they ran — the state is settled once the deadline passed — within a second at the 99th
    // percentile. The status is read after the app servers shut down: their closing reports
    // took them out of the live clients at once.
    let reach = &points["reach"];
    assert_eq!(reach["rollback"], true, "{reach:#}");
    assert_eq!(reach["state"], "confirmed", "{reach:#}");
    assert_eq!(reach["alerted"], false, "{reach:#}");
    assert!(reach["p99_ms"].as_u64().unwrap_or(0) <= 1_000, "{reach:#}");
    assert_eq!(reach["live_clients"], 0, "{reach:#}");
}
