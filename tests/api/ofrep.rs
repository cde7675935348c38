//! OFREP single and bulk evaluation, exactly per the protocol.

use crate::helpers::{bool_flag, revision_now, spawn_app, TestApp};
use reqwest::header::{ETAG, IF_NONE_MATCH};
use serde_json::{json, Value};

async fn app_with_client() -> (TestApp, String) {
    let app = spawn_app().await;
    let token = app.create_token("web-app", "client").await;
    (app, token)
}

fn targeted_flag(key: &str) -> Value {
    json!({
        "key": key, "type": "string", "variants": {"old": "classic", "new": "qr"},
        "off_variant": "old", "on_variant": "new", "rollout": 30,
        "rules": [{"when": [{"attribute": "tier", "op": "in", "values": ["innovation"]}], "variant": "new"}]
    })
}

#[tokio::test]
async fn static_flag_evaluates_with_key_value_variant_reason_and_metadata() {
    let (app, token) = app_with_client().await;
    app.put_flag(bool_flag("everyone", 100.0)).await;

    let revision = revision_now(&app, 1).await;

    let (status, body) = app.evaluate(&token, "everyone", json!({})).await;

    // The metadata names the config revision the answer came from: one flag written, so 1.
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"key": "everyone", "value": true, "reason": "STATIC", "variant": "on", "metadata": {"revision": revision}})
    );
}

#[tokio::test]
async fn matching_rule_is_a_targeting_match_even_without_targeting_key() {
    let (app, token) = app_with_client().await;
    app.put_flag(targeted_flag("ordering")).await;

    let (status, body) = app
        .evaluate(&token, "ordering", json!({"tier": "innovation"}))
        .await;

    assert_eq!(status, 200);
    assert_eq!(body["reason"], "TARGETING_MATCH");
    assert_eq!(body["value"], "qr");
    assert_eq!(body["variant"], "new");
}

#[tokio::test]
async fn partial_rollout_splits_deterministically_by_targeting_key() {
    let (app, token) = app_with_client().await;
    app.put_flag(targeted_flag("ordering")).await;

    let mut on = 0;
    for i in 0..200 {
        let ctx = json!({"targetingKey": format!("user-{i}"), "tier": "basic"});
        let (status, first) = app.evaluate(&token, "ordering", ctx.clone()).await;
        let (_, second) = app.evaluate(&token, "ordering", ctx).await;
        assert_eq!(status, 200);
        assert_eq!(first["reason"], "SPLIT");
        assert_eq!(first, second, "same user, same config, same answer");
        if first["variant"] == "new" {
            on += 1;
        }
    }
    assert!((30..=90).contains(&on), "about 30% of 200 users, got {on}");
}

#[tokio::test]
async fn partial_rollout_without_targeting_key_is_targeting_key_missing() {
    let (app, token) = app_with_client().await;
    app.put_flag(targeted_flag("ordering")).await;

    let (status, body) = app
        .evaluate(&token, "ordering", json!({"tier": "basic"}))
        .await;

    assert_eq!(status, 400);
    assert_eq!(body["key"], "ordering");
    assert_eq!(body["errorCode"], "TARGETING_KEY_MISSING");
    assert!(body["errorDetails"].as_str().is_some_and(|d| !d.is_empty()));
}

#[tokio::test]
async fn unknown_flag_is_flag_not_found_with_key_and_details() {
    let (app, token) = app_with_client().await;

    let (status, body) = app
        .evaluate(&token, "nope", json!({"targetingKey": "u"}))
        .await;

    assert_eq!(status, 404);
    assert_eq!(body["key"], "nope");
    assert_eq!(body["errorCode"], "FLAG_NOT_FOUND");
    assert!(body["errorDetails"].is_string());
}

#[tokio::test]
async fn malformed_body_is_parse_error_and_bad_context_is_invalid_context() {
    let (app, token) = app_with_client().await;
    app.put_flag(bool_flag("f", 100.0)).await;
    let url = app.url("/ofrep/v1/evaluate/flags/f");
    let send = |body: &'static str| {
        app.client
            .post(&url)
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    let r = send("{not json").await.unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (body["key"].as_str(), body["errorCode"].as_str()),
        (Some("f"), Some("PARSE_ERROR"))
    );

    let r = send(r#"{"context": [1, 2]}"#).await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["errorCode"],
        "INVALID_CONTEXT"
    );

    let r = send(r#"{"context": {"targetingKey": 42}}"#).await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["errorCode"],
        "INVALID_CONTEXT"
    );
}

#[tokio::test]
async fn empty_body_is_an_empty_context() {
    let (app, token) = app_with_client().await;
    app.put_flag(bool_flag("f", 0.0)).await;

    let r = app
        .client
        .post(app.url("/ofrep/v1/evaluate/flags/f"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();

    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["value"], false);
}

#[tokio::test]
async fn killed_flag_serves_off_variant_as_disabled() {
    let (app, token) = app_with_client().await;
    app.put_flag(targeted_flag("ordering")).await;
    let r = app
        .admin(reqwest::Method::POST, "/api/v1/flags/ordering/kill")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let (status, body) = app
        .evaluate(&token, "ordering", json!({"tier": "innovation"}))
        .await;

    assert_eq!(status, 200);
    assert_eq!(
        (
            body["reason"].as_str(),
            body["variant"].as_str(),
            body["value"].as_str()
        ),
        (Some("DISABLED"), Some("old"), Some("classic"))
    );
}

#[tokio::test]
async fn evaluation_needs_a_valid_token_but_accepts_x_api_key() {
    let (app, token) = app_with_client().await;
    app.put_flag(bool_flag("f", 100.0)).await;
    let url = app.url("/ofrep/v1/evaluate/flags/f");

    let none = app
        .client
        .post(&url)
        .json(&json!({"context": {}}))
        .send()
        .await
        .unwrap();
    let wrong = app
        .client
        .post(&url)
        .bearer_auth("rg_wrong")
        .json(&json!({"context": {}}))
        .send()
        .await
        .unwrap();
    let api_key = app
        .client
        .post(&url)
        .header("X-API-Key", &token)
        .json(&json!({"context": {}}))
        .send()
        .await
        .unwrap();

    assert_eq!(none.status(), 401);
    assert_eq!(wrong.status(), 401);
    assert_eq!(api_key.status(), 200);

    // Same checks, same revocation: a wrong key is refused, and a revoked token at once,
    // on the single and the bulk endpoint.
    let with_key = |key: &str, path: &str| {
        app.client
            .post(app.url(path))
            .header("X-API-Key", key)
            .json(&json!({"context": {}}))
            .send()
    };
    assert_eq!(
        with_key("rg_wrong", "/ofrep/v1/evaluate/flags/f")
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        with_key(&token, "/ofrep/v1/evaluate/flags")
            .await
            .unwrap()
            .status(),
        200
    );
    let revoked = app
        .admin(reqwest::Method::DELETE, "/api/v1/tokens/web-app")
        .send()
        .await
        .unwrap();
    assert!(revoked.status().is_success(), "{}", revoked.status());
    for path in ["/ofrep/v1/evaluate/flags/f", "/ofrep/v1/evaluate/flags"] {
        let r = with_key(&token, path).await.unwrap();
        assert_eq!(r.status(), 401, "{path} after revocation");
    }
}

#[tokio::test]
async fn percent_encoded_keys_are_decoded() {
    let (app, token) = app_with_client().await;
    app.put_flag(bool_flag("checkout.v2", 100.0)).await;

    let (status, body) = app.evaluate(&token, "checkout%2Ev2", json!({})).await;

    assert_eq!(status, 200);
    assert_eq!(body["key"], "checkout.v2");
}

#[tokio::test]
async fn numbers_keep_their_json_type() {
    let (app, token) = app_with_client().await;
    app.put_flag(json!({"key": "ratio", "type": "number", "variants": {"a": 1.0, "b": 3}, "off_variant": "a", "on_variant": "b", "rollout": 0})).await;

    let r = app
        .client
        .post(app.url("/ofrep/v1/evaluate/flags/ratio"))
        .bearer_auth(&token)
        .json(&json!({"context": {}}))
        .send()
        .await
        .unwrap();

    assert!(
        r.text().await.unwrap().contains("\"value\":1.0"),
        "floats are sent as floats"
    );
}

#[tokio::test]
async fn oversized_evaluation_body_is_rejected_with_413() {
    let (app, token) = app_with_client().await;
    let huge = format!(r#"{{"context": {{"blob": "{}"}}}}"#, "x".repeat(200_000));

    let r = app
        .client
        .post(app.url("/ofrep/v1/evaluate/flags/f"))
        .bearer_auth(&token)
        .body(huge)
        .send()
        .await
        .unwrap();

    assert_eq!(r.status(), 413);
}

#[tokio::test]
async fn bulk_evaluates_every_flag_and_reports_per_flag_errors() {
    let (app, token) = app_with_client().await;
    app.put_flag(bool_flag("a-static", 100.0)).await;
    app.put_flag(targeted_flag("b-split")).await;
    let revision = revision_now(&app, 2).await;

    let r = app
        .client
        .post(app.url("/ofrep/v1/evaluate/flags"))
        .bearer_auth(&token)
        .json(&json!({"context": {}}))
        .send()
        .await
        .unwrap();

    assert_eq!(r.status(), 200);
    assert!(r.headers().get(ETAG).is_some());
    let body: Value = r.json().await.unwrap();
    let flags = body["flags"].as_array().unwrap();
    assert_eq!(flags.len(), 2);
    assert_eq!(
        flags[0],
        json!({"key": "a-static", "value": true, "reason": "STATIC", "variant": "on", "metadata": {"revision": revision}})
    );
    assert_eq!(flags[1]["key"], "b-split");
    assert_eq!(flags[1]["errorCode"], "TARGETING_KEY_MISSING");
    assert!(flags[1]["errorDetails"].is_string());
}

#[tokio::test]
async fn bulk_answers_304_until_the_result_for_this_context_changes() {
    let (app, token) = app_with_client().await;
    app.put_flag(targeted_flag("ordering")).await;
    let bulk = |ctx: Value, etag: Option<String>| {
        let mut req = app
            .client
            .post(app.url("/ofrep/v1/evaluate/flags"))
            .bearer_auth(&token)
            .json(&json!({"context": ctx}));
        if let Some(tag) = etag {
            req = req.header(IF_NONE_MATCH, tag);
        }
        req.send()
    };
    let first = bulk(json!({"targetingKey": "u1", "tier": "innovation"}), None)
        .await
        .unwrap();
    let etag = first.headers()[ETAG].to_str().unwrap().to_owned();

    let same = bulk(
        json!({"targetingKey": "u1", "tier": "innovation", "country": "KR"}),
        Some(etag.clone()),
    )
    .await
    .unwrap();
    assert_eq!(
        same.status(),
        304,
        "an attribute that changes nothing keeps the ETag"
    );
    assert!(same.text().await.unwrap().is_empty());

    app.admin(reqwest::Method::POST, "/api/v1/flags/ordering/kill")
        .send()
        .await
        .unwrap();
    let changed = bulk(
        json!({"targetingKey": "u1", "tier": "innovation"}),
        Some(etag.clone()),
    )
    .await
    .unwrap();
    assert_eq!(changed.status(), 200);
    assert_ne!(changed.headers()[ETAG].to_str().unwrap(), etag);
}

#[tokio::test]
async fn a_doubled_slash_from_naive_url_joining_still_evaluates() {
    let (app, token) = app_with_client().await;
    app.put_flag(bool_flag("f", 100.0)).await;

    let r = app
        .client
        .post(format!("{}//ofrep/v1/evaluate/flags/f", app.address))
        .bearer_auth(&token)
        .json(&json!({"context": {}}))
        .send()
        .await
        .unwrap();

    assert_eq!(r.status(), 200);
}
