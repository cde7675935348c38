//! Segments: reusable attribute conditions referenced by flag rules.

use crate::helpers::spawn_app;
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test]
async fn segment_membership_targets_and_follows_segment_changes() {
    let app = spawn_app().await;
    let token = app.create_token("app", "client").await;
    let seniors =
        json!({"key": "seniors", "when": [{"attribute": "age", "op": "gte", "values": [60]}]});
    assert_eq!(
        app.admin(Method::PUT, "/api/v1/segments/seniors")
            .json(&seniors)
            .send()
            .await
            .unwrap()
            .status(),
        201
    );
    app.put_flag(json!({
        "key": "points", "type": "boolean", "variants": {"off": false, "on": true},
        "off_variant": "off", "on_variant": "on", "rollout": 100,
        "rules": [{"when": [{"segment": "seniors"}], "variant": "off"}]
    }))
    .await;

    let senior = app
        .evaluate(&token, "points", json!({"targetingKey": "u1", "age": 61}))
        .await
        .1;
    let young = app
        .evaluate(&token, "points", json!({"targetingKey": "u1", "age": 30}))
        .await
        .1;
    assert_eq!(
        (senior["value"].as_bool(), senior["reason"].as_str()),
        (Some(false), Some("TARGETING_MATCH"))
    );
    assert_eq!(
        (young["value"].as_bool(), young["reason"].as_str()),
        (Some(true), Some("DEFAULT"))
    );

    let stricter =
        json!({"key": "seniors", "when": [{"attribute": "age", "op": "gte", "values": [65]}]});
    assert_eq!(
        app.admin(Method::PUT, "/api/v1/segments/seniors")
            .json(&stricter)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let now = app
        .evaluate(&token, "points", json!({"targetingKey": "u1", "age": 61}))
        .await
        .1;
    assert_eq!(
        now["value"], true,
        "the flag was recompiled against the new segment"
    );
    let read: Value = app
        .admin(Method::GET, "/api/v1/segments/seniors")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read, stricter);
}

#[tokio::test]
async fn invalid_segments_are_rejected() {
    let app = spawn_app().await;
    let put = |body: Value| {
        app.admin(Method::PUT, "/api/v1/segments/s")
            .json(&body)
            .send()
    };

    assert_eq!(
        put(json!({"key": "s", "when": [{"segment": "other"}]}))
            .await
            .unwrap()
            .status(),
        422
    );
    assert_eq!(
        put(json!({"key": "s", "when": [{"attribute": "a", "op": "lt", "values": ["x"]}]}))
            .await
            .unwrap()
            .status(),
        422
    );
    assert_eq!(
        put(json!({"key": "t", "when": []})).await.unwrap().status(),
        422
    );
    assert_eq!(
        put(json!({"key": "s", "when": [], "extra": 1}))
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        app.admin(Method::GET, "/api/v1/segments/s")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}
