//! Signal ingestion: validation, reporting, rate limiting.

use crate::helpers::{bool_flag, spawn_app, spawn_app_with};
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
