//! Health, readiness, metrics, OpenAPI and the client config endpoint.

use crate::helpers::{bool_flag, spawn_app};
use reqwest::header::{ETAG, IF_NONE_MATCH};
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test]
async fn health_and_readiness_need_no_token() {
    let app = spawn_app().await;

    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();

    assert_eq!(health.status(), 200);
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.json::<Value>().await.unwrap()["status"], "ready");
}

#[tokio::test]
async fn readiness_for_writes_is_asked_with_a_boolean_and_reports_the_revision() {
    let app = spawn_app().await;
    app.put_flag(bool_flag("qr", 100.0)).await;

    let writes = app
        .client
        .get(app.url("/readyz?writes=true"))
        .send()
        .await
        .unwrap();
    let bad = app
        .client
        .get(app.url("/readyz?writes=maybe"))
        .send()
        .await
        .unwrap();

    assert_eq!(writes.status(), 200);
    let body: Value = writes.json().await.unwrap();
    assert_eq!(body["writes"], true);
    assert!(body["revision"].as_u64().unwrap() >= 1, "{body}");
    assert_eq!(bad.status(), 400);
    let error: Value = bad.json().await.unwrap();
    assert_eq!(error["error"]["field"], "writes");
}

#[tokio::test]
async fn metrics_need_a_token_and_count_requests_and_evaluations_per_variant() {
    let app = spawn_app().await;
    let token = app.create_token("app", "client").await;
    app.put_flag(bool_flag("qr", 100.0)).await;
    for _ in 0..3 {
        app.evaluate(&token, "qr", json!({})).await;
    }
    app.evaluate(&token, "missing", json!({})).await;
    // Bulk, a wrong method on the single route, a doubled slash: each under its route.
    let bulk = app
        .client
        .post(app.url("/ofrep/v1/evaluate/flags"))
        .bearer_auth(&token)
        .json(&json!({"context": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(bulk.status(), 200);
    let wrong_method = app
        .client
        .get(app.url("/ofrep/v1/evaluate/flags/qr"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status(), 405);
    let doubled = app
        .client
        .post(format!("{}//ofrep/v1/evaluate/flags", app.address))
        .bearer_auth(&token)
        .json(&json!({"context": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(doubled.status(), 200);

    assert_eq!(
        app.client
            .get(app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
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

    // Three single evaluations and the two bulk ones.
    assert!(
        text.contains(r#"rollgate_evaluations_total{flag="qr",variant="on"} 5"#),
        "{text}"
    );
    assert!(
        text.contains(r#"rollgate_evaluation_errors_total{code="FLAG_NOT_FOUND"} 1"#),
        "{text}"
    );
    assert!(text.contains("rollgate_http_requests_total{method=\"POST\",route=\"/ofrep/v1/evaluate/flags/{key:.*}\",status=\"200\"} 3"), "{text}");
    assert!(text.contains("rollgate_http_requests_total{method=\"POST\",route=\"/ofrep/v1/evaluate/flags/{key:.*}\",status=\"404\"} 1"), "{text}");
    assert!(text.contains("rollgate_http_requests_total{method=\"POST\",route=\"/ofrep/v1/evaluate/flags\",status=\"200\"} 2"), "{text}");
    assert!(text.contains("rollgate_http_requests_total{method=\"GET\",route=\"/ofrep/v1/evaluate/flags/{key:.*}\",status=\"405\"} 1"), "{text}");
    assert!(text.contains("rollgate_http_request_duration_seconds_bucket"));
    assert!(
        text.contains(r#"rollgate_flag_rollout_percent{flag="qr"} 100"#),
        "{text}"
    );
}

#[tokio::test]
async fn openapi_document_lists_every_endpoint() {
    let app = spawn_app().await;

    let doc: Value = app
        .client
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/ofrep/v1/evaluate/flags/{key}",
        "/ofrep/v1/evaluate/flags",
        "/api/v1/client/config",
        "/api/v1/flags",
        "/api/v1/flags/{key}",
        "/api/v1/flags/{key}/rollout",
        "/api/v1/flags/{key}/kill",
        "/api/v1/flags/{key}/unkill",
        "/api/v1/segments/{key}",
        "/api/v1/policies/{name}",
        "/api/v1/tokens",
        "/api/v1/tokens/{name}",
        "/api/v1/audit",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(paths.contains_key(path), "missing {path}");
    }
}

#[tokio::test]
async fn client_config_carries_flags_and_segments_with_an_etag() {
    let app = spawn_app().await;
    let token = app.create_token("sdk", "client").await;
    app.put_flag(bool_flag("f", 10.0)).await;
    let get = |etag: Option<String>| {
        let mut req = app
            .client
            .get(app.url("/api/v1/client/config"))
            .bearer_auth(&token);
        if let Some(tag) = etag {
            req = req.header(IF_NONE_MATCH, tag);
        }
        req.send()
    };

    let first = get(None).await.unwrap();
    let etag = first.headers()[ETAG].to_str().unwrap().to_owned();
    let body: Value = first.json().await.unwrap();
    assert_eq!(body["flags"][0]["key"], "f");
    assert!(body["segments"].is_array());

    assert_eq!(get(Some(etag.clone())).await.unwrap().status(), 304);
    app.admin(Method::PUT, "/api/v1/flags/f/rollout")
        .json(&json!({"percentage": 20}))
        .send()
        .await
        .unwrap();
    let changed = get(Some(etag)).await.unwrap();
    assert_eq!(changed.status(), 200);
    assert_eq!(
        changed.json::<Value>().await.unwrap()["flags"][0]["rollout"],
        20.0
    );
}
