//! Signal ingestion: validation, reporting, rate limiting.

use crate::helpers::{
    bool_flag, policies_dir, spawn_app, spawn_app_with, spawn_app_with_aggregates, start_binary,
    ADMIN_TOKEN,
};
use serde_json::{json, Value};

#[tokio::test]
async fn unknown_flags_and_variants_are_counted_not_fatal() {
    let app = spawn_app().await;
    let token = app.create_token("app", "client").await;
    app.put_flag(bool_flag("qr", 5.0)).await;

    let (status, report) = app
        .signals(
            &token,
            json!([
                {"flag": "qr", "variant": "on", "metric": "exposure", "count": 950},
                {"flag": "ghost", "variant": "on", "metric": "exposure"},
                {"flag": "qr", "variant": "purple", "metric": "exposure"},
                {"flag": "qr", "variant": "on", "metric": "latency", "value": 0.25, "targetingKey": "u1", "timestamp": "2026-11-22T10:00:00Z"}
            ]),
        )
        .await;

    assert_eq!(status, 200);
    assert_eq!(report["accepted"], 2);
    assert_eq!(report["rejected"], 2);
    assert_eq!(report["errors"][0]["index"], 1);
    assert!(report["errors"][1]["error"]
        .as_str()
        .unwrap()
        .contains("purple"));
}

#[tokio::test]
async fn malformed_batches_are_400_naming_the_field() {
    let app = spawn_app().await;
    let token = app.create_token("app", "client").await;
    app.put_flag(bool_flag("qr", 5.0)).await;
    let send = |body: Value| {
        app.client
            .post(app.url("/api/v1/signals"))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };

    for (body, field) in [
        (
            json!({"signals": [{"flag": "qr", "variant": "on", "metric": "exposure", "count": -1}]}),
            "signals[0].count",
        ),
        (
            json!({"signals": [{"flag": "qr", "variant": "on"}]}),
            "signals[0]",
        ),
        (
            json!({"signals": [{"flag": "qr", "variant": "on", "metric": "", "count": 1}]}),
            "signals[0].metric",
        ),
        (
            json!({"signals": [{"flag": "qr", "variant": "on", "metric": "x", "colour": 1}]}),
            "signals[0]",
        ),
        (
            json!({"signals": [{"flag": "qr", "variant": "on", "metric": "x", "count": 0}]}),
            "signals[0].count",
        ),
    ] {
        let r = send(body.clone()).await.unwrap();
        assert_eq!(r.status(), 400, "{body}");
        let error: Value = r.json().await.unwrap();
        assert!(
            error["error"]["field"].as_str().unwrap().starts_with(field),
            "{body} → {error}"
        );
    }
    let r = app
        .client
        .post(app.url("/api/v1/signals"))
        .bearer_auth(&token)
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = app
        .client
        .post(app.url("/api/v1/signals"))
        .json(&json!({"signals": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn a_batch_of_ten_thousand_signals_is_accepted() {
    let app = spawn_app().await;
    let token = app.create_token("app", "client").await;
    app.put_flag(bool_flag("qr", 5.0)).await;
    let batch: Vec<Value> = (0..10_000).map(|i| json!({"flag": "qr", "variant": if i % 2 == 0 { "on" } else { "off" }, "metric": "exposure"})).collect();

    let (status, report) = app.signals(&token, json!(batch)).await;

    assert_eq!(status, 200);
    assert_eq!(report["accepted"], 10_000);
    let too_many: Vec<Value> = (0..10_001)
        .map(|_| json!({"flag": "qr", "variant": "on", "metric": "exposure"}))
        .collect();
    assert_eq!(app.signals(&token, json!(too_many)).await.0, 400);
}

#[tokio::test]
async fn the_per_token_rate_limit_answers_429_with_retry_after() {
    let app = spawn_app_with(|c| c.timing.signals_per_second = 100).await;
    let token = app.create_token("app", "client").await;
    let other = app.create_token("other", "client").await;
    app.put_flag(bool_flag("qr", 5.0)).await;
    let batch: Vec<Value> = (0..150)
        .map(|_| json!({"flag": "qr", "variant": "on", "metric": "exposure"}))
        .collect();

    assert_eq!(
        app.signals(&token, json!(batch)).await.0,
        200,
        "within the two-second burst"
    );
    let r = app
        .client
        .post(app.url("/api/v1/signals"))
        .bearer_auth(&token)
        .json(&json!({"signals": batch}))
        .send()
        .await
        .unwrap();

    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3).contains(&retry), "{retry}");
    assert_eq!(
        app.signals(&other, json!(batch)).await.0,
        200,
        "limits are per token"
    );
}

#[tokio::test]
async fn a_count_that_would_wrap_the_total_is_refused_and_counts_never_go_down() {
    let app = spawn_app().await;
    let token = app.create_token("app", "client").await;
    app.put_flag(bool_flag("qr", 5.0)).await;
    let exposure =
        |count: u64| json!([{"flag": "qr", "variant": "on", "metric": "exposure", "count": count}]);

    assert_eq!(app.signals(&token, exposure(3)).await.0, 200);
    let (status, error) = app
        .signals(&token, exposure(18_446_744_073_709_551_613))
        .await;

    assert_eq!(status, 422, "{error}");
    assert_eq!(error["error"]["code"], "invalid", "{error}");
    assert_eq!(error["error"]["field"], "signals[0].count", "{error}");
    assert_eq!(
        app.signals_total(&token, "qr", "on", "exposure").await,
        Some(3.0)
    );
    assert_eq!(app.signals(&token, exposure(2)).await.0, 200);
    assert_eq!(
        app.signals_total(&token, "qr", "on", "exposure").await,
        Some(5.0)
    );
}

#[tokio::test]
async fn counts_and_values_beyond_their_bounds_are_422_naming_the_field_and_change_nothing() {
    let app = spawn_app().await;
    let token = app.create_token("app", "client").await;
    app.put_flag(bool_flag("qr", 5.0)).await;
    let signal =
        |count: u64| json!({"flag": "qr", "variant": "on", "metric": "exposure", "count": count});
    let at_most_one_million = vec![signal(1_000_000); 100];
    let mut over_the_batch_total = at_most_one_million.clone();
    over_the_batch_total.push(signal(1));

    for (batch, field) in [
        (json!([signal(5), signal(1_000_001)]), "signals[1].count"),
        (json!(over_the_batch_total), "signals[100].count"),
        (
            json!([signal(5), {"flag": "qr", "variant": "on", "metric": "latency", "value": 2e12}]),
            "signals[1].value",
        ),
        (
            json!([{"flag": "qr", "variant": "on", "metric": "latency", "value": -1.5e12}]),
            "signals[0].value",
        ),
        (
            json!([{"flag": "qr", "variant": "on", "metric": "latency", "value": 1e308, "count": 2}]),
            "signals[0].value",
        ),
    ] {
        let (status, error) = app.signals(&token, batch.clone()).await;
        assert_eq!(status, 422, "{batch} → {error}");
        assert_eq!(error["error"]["field"], field, "{error}");
        assert!(!error["error"]["message"].as_str().unwrap().is_empty());
    }
    assert_eq!(
        app.signals_total(&token, "qr", "on", "exposure").await,
        None,
        "nothing applied"
    );
    assert_eq!(app.signals_total(&token, "qr", "on", "latency").await, None);

    // The bounds themselves are accepted.
    let (status, report) = app.signals(&token, json!(at_most_one_million)).await;
    assert_eq!(status, 200, "{report}");
    let (status, report) = app
        .signals(&token, json!([{"flag": "qr", "variant": "on", "metric": "latency", "value": -1e12, "count": 1_000_000}]))
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        app.signals_total(&token, "qr", "on", "exposure").await,
        Some(100_000_000.0)
    );
}

#[tokio::test]
async fn in_bound_batches_repeated_at_the_counter_ceiling_saturate_without_wrapping() {
    let ceiling = u64::MAX;
    let app = spawn_app_with_aggregates(json!({
        "series": {"qr": {"on": {
            "exposure": {"count": ceiling - 250_000_000, "sum": 0.0, "valued": 0},
            "latency": {"count": ceiling - 1_000_000, "sum": 1e300, "valued": ceiling - 1_000_000}
        }}},
        "last_signal_ms": {"qr": 1}
    }))
    .await;
    let token = app.create_token("app", "client").await;
    app.put_flag(bool_flag("qr", 5.0)).await;
    let batch = json!(vec![
        json!({"flag": "qr", "variant": "on", "metric": "exposure", "count": 1_000_000});
        100
    ]);
    let latency = json!([{"flag": "qr", "variant": "on", "metric": "latency", "value": 1e12, "count": 1_000_000}]);

    let mut seen = vec![app
        .signals_total(&token, "qr", "on", "exposure")
        .await
        .unwrap()];
    for _ in 0..6 {
        let (status, report) = app.signals(&token, batch.clone()).await;
        assert_eq!(status, 200, "{report}");
        assert_eq!(app.signals(&token, latency.clone()).await.0, 200);
        seen.push(
            app.signals_total(&token, "qr", "on", "exposure")
                .await
                .unwrap(),
        );
    }

    assert!(
        seen.windows(2).all(|w| w[1] >= w[0]),
        "counts went down: {seen:?}"
    );
    assert_eq!(*seen.last().unwrap(), ceiling as f64, "{seen:?}");
    assert_eq!(
        app.signals_total(&token, "qr", "on", "latency").await,
        Some(ceiling as f64)
    );
}

#[tokio::test]
async fn a_client_cannot_keep_the_server_from_restarting_with_a_huge_value() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let client = reqwest::Client::new();
    let server = start_binary(&data, &policies_dir()).await;
    let base = server.address.clone();
    let r = client
        .put(format!("{base}/api/v1/flags/qr"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&bool_flag("qr", 5.0))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let send = |body: String| {
        client
            .post(format!("{base}/api/v1/signals"))
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let ok = send(r#"{"signals": [{"flag": "qr", "variant": "on", "metric": "latency", "value": 0.5, "count": 4}]}"#.into())
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    // 1e308 × 4 is beyond f64: a sum of infinity, which JSON (the store's format) cannot hold.
    let huge = send(r#"{"signals": [{"flag": "qr", "variant": "on", "metric": "latency", "value": 1e308, "count": 4}]}"#.into())
        .await
        .unwrap();
    assert_eq!(huge.status(), 422);

    stop(server).await; // SIGTERM persists the aggregates
    let server = start_binary(&data, &policies_dir()).await;
    let metrics = client
        .get(format!("{}/metrics", server.address))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"rollgate_signals_total{flag="qr",variant="on",metric="latency"} 4"#),
        "{metrics}"
    );
}

/// SIGTERM, then wait for the process to exit (it persists aggregates on the way out).
async fn stop(mut server: crate::helpers::ServerProcess) {
    let pid = server.child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(std::time::Duration::from_secs(10), server.child.wait())
        .await
        .expect("stopped within 10 s")
        .unwrap();
    assert!(exit.success(), "{exit}");
}
