//! Tokens and roles.

use crate::helpers::{bool_flag, spawn_app};
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test]
async fn requests_without_a_valid_token_get_401_with_a_json_error() {
    let app = spawn_app().await;

    let none = app
        .client
        .get(app.url("/api/v1/flags"))
        .send()
        .await
        .unwrap();
    let bad = app
        .client
        .get(app.url("/api/v1/flags"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();

    assert_eq!(none.status(), 401);
    assert_eq!(none.headers()["www-authenticate"], "Bearer");
    assert_eq!(
        none.json::<Value>().await.unwrap()["error"]["code"],
        "unauthorized"
    );
    assert_eq!(bad.status(), 401);
}

#[tokio::test]
async fn client_tokens_evaluate_but_cannot_change_anything() {
    let app = spawn_app().await;
    app.put_flag(bool_flag("f", 100.0)).await;
    let client = app.create_token("web", "client").await;

    let eval = app.evaluate(&client, "f", json!({})).await;
    let list = app
        .client
        .get(app.url("/api/v1/flags"))
        .bearer_auth(&client)
        .send()
        .await
        .unwrap();
    let ramp = app
        .client
        .put(app.url("/api/v1/flags/f/rollout"))
        .bearer_auth(&client)
        .json(&json!({"percentage": 0}))
        .send()
        .await
        .unwrap();

    assert_eq!(eval.0, 200);
    assert_eq!(list.status(), 403);
    assert_eq!(ramp.status(), 403);
    assert_eq!(
        app.evaluate(&client, "f", json!({})).await.1["value"],
        true,
        "the forbidden ramp changed nothing"
    );
}

#[tokio::test]
async fn tokens_are_listed_without_secrets_and_revocation_takes_effect_at_once() {
    let app = spawn_app().await;
    let secret = app.create_token("web", "client").await;
    assert!(secret.starts_with("rg_"));

    let listed = app
        .admin(Method::GET, "/api/v1/tokens")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(listed.contains("\"web\""));
    assert!(!listed.contains(&secret), "secrets are never shown again");

    let revoked = app
        .admin(Method::DELETE, "/api/v1/tokens/web")
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204);
    let r = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn token_requests_are_validated() {
    let app = spawn_app().await;
    let post = |body: Value| app.admin(Method::POST, "/api/v1/tokens").json(&body).send();

    assert_eq!(
        post(json!({"name": "web", "role": "client"}))
            .await
            .unwrap()
            .status(),
        201
    );
    assert_eq!(
        post(json!({"name": "web", "role": "client"}))
            .await
            .unwrap()
            .status(),
        409
    );
    assert_eq!(
        post(json!({"name": "x", "role": "root"}))
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        post(json!({"name": "has space", "role": "client"}))
            .await
            .unwrap()
            .status(),
        422
    );
    assert_eq!(
        app.admin(Method::DELETE, "/api/v1/tokens/ghost")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn the_last_admin_token_cannot_be_revoked() {
    let app = spawn_app().await;

    let r = app
        .admin(Method::DELETE, "/api/v1/tokens/admin")
        .send()
        .await
        .unwrap();

    assert_eq!(r.status(), 409);
    assert_eq!(
        app.admin(Method::GET, "/api/v1/flags")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn a_new_admin_token_has_full_rights() {
    let app = spawn_app().await;
    let ops = app.create_token("ops", "admin").await;

    let r = app
        .client
        .put(app.url("/api/v1/flags/f"))
        .bearer_auth(&ops)
        .json(&bool_flag("f", 1.0))
        .send()
        .await
        .unwrap();

    assert_eq!(r.status(), 201);
}
