//! The `viewer` role (issue 13): a read-only operator token. It reads every `GET` of the
//! OpenAPI document (the ops API, the stream, the client config, metrics) and every other
//! operation answers it 403 `forbidden`, naming the role — walked from the document itself, so
//! a new endpoint is covered the day it is documented.

use crate::helpers::{bool_flag, spawn_app, SseReader, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

/// What the walk's paths point at: a flag, a segment, a release, a drill, a token.
struct Fixtures {
    release: String,
    drill: String,
}

async fn fixtures(app: &TestApp) -> Fixtures {
    app.put_flag(bool_flag("f", 0.0)).await;
    let segment = app
        .admin(Method::PUT, "/api/v1/segments/s")
        .json(&json!({"key": "s", "when": [{"attribute": "age", "op": "gte", "values": [60]}]}))
        .send()
        .await
        .unwrap();
    assert!(segment.status().is_success());
    let release = app
        .create_release(json!({"name": "r", "policy": "checkout", "modules": [{"flag": "f"}]}))
        .await;
    let r = app
        .admin_post(&format!("/api/v1/releases/{release}/start"), json!({}))
        .await;
    assert_eq!(r.status(), 200);
    let r = app
        .admin_post("/api/v1/drills", json!({"wait_ms": 0}))
        .await;
    assert_eq!(r.status(), 201);
    let drill = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    Fixtures { release, drill }
}

/// A documented path with its parameters filled from the fixtures.
fn concrete(path: &str, f: &Fixtures) -> String {
    let id = if path.starts_with("/api/v1/drills") {
        &f.drill
    } else {
        &f.release
    };
    let key = if path.starts_with("/api/v1/segments") {
        "s"
    } else {
        "f"
    };
    let name = if path.starts_with("/api/v1/tokens") {
        "watcher"
    } else {
        "checkout"
    };
    path.replace("{id}", id)
        .replace("{key}", key)
        .replace("{name}", name)
}

fn operations(doc: &Value) -> Vec<(Method, String)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            ops.push((method, path.clone()));
        }
    }
    ops
}

#[tokio::test]
async fn a_viewer_reads_every_get_of_the_document_and_every_other_operation_is_403() {
    let app = spawn_app().await;
    let f = fixtures(&app).await;
    let viewer = app.create_token("watcher", "viewer").await;
    let doc = app.admin_get("/api/v1/openapi.json").await;
    let before_flags = app.admin_get("/api/v1/flags").await;
    let before_tokens = app.admin_get("/api/v1/tokens").await;
    assert_eq!(
        doc["components"]["schemas"]["Role"]["enum"],
        json!(["client", "admin", "viewer"]),
        "the document's Role lists viewer"
    );
    let ops = operations(&doc);
    let (mut reads, mut writes) = (0, 0);

    for (method, path) in &ops {
        let url = app.url(&concrete(path, &f));
        let mut request = app
            .client
            .request(method.clone(), &url)
            .bearer_auth(&viewer);
        if *method != Method::GET {
            request = request.json(&json!({}));
        }
        let r = request.send().await.unwrap();
        let status = r.status();
        if *method == Method::GET {
            reads += 1;
            assert_eq!(status, 200, "GET {path} with a viewer token");
            continue;
        }
        writes += 1;
        assert_eq!(status, 403, "{method} {path} with a viewer token");
        let body: Value = r.json().await.unwrap();
        let message = if path.starts_with("/ofrep/") {
            assert_eq!(body["errorCode"], "GENERAL", "{method} {path}: {body}");
            body["errorDetails"].as_str().unwrap().to_owned()
        } else {
            assert_eq!(
                body["error"]["code"], "forbidden",
                "{method} {path}: {body}"
            );
            body["error"]["message"].as_str().unwrap().to_owned()
        };
        assert!(
            message.contains("viewer"),
            "{method} {path}: the refusal names the role: {message}"
        );
    }

    assert!(
        reads >= 15 && writes >= 20,
        "{reads} reads, {writes} writes"
    );
    assert_eq!(app.admin_get("/api/v1/flags").await, before_flags);
    assert_eq!(app.admin_get("/api/v1/tokens").await, before_tokens);
    let status = app
        .admin_get(&format!("/api/v1/releases/{}", f.release))
        .await;
    assert_eq!(status["state"], "running", "the viewer paused nothing");
}

#[tokio::test]
async fn viewer_tokens_are_created_listed_and_follow_the_stream() {
    let app = spawn_app().await;
    app.put_flag(bool_flag("f", 10.0)).await;
    let r = app
        .admin_post(
            "/api/v1/tokens",
            json!({"name": "ops-screen", "role": "viewer"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    assert_eq!(created["role"], "viewer");
    let viewer = created["token"].as_str().unwrap().to_owned();
    let list = app.admin_get("/api/v1/tokens").await;
    let listed = list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "ops-screen")
        .cloned()
        .unwrap();
    assert_eq!(listed["role"], "viewer");

    let mut stream = SseReader::open(&app, "/api/v1/stream", &viewer, None).await;
    assert_eq!(stream.next_event().await.event, "config");
    let r = app
        .admin(Method::PUT, "/api/v1/flags/f/rollout")
        .json(&json!({"percentage": 30}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let change = stream.next_event().await;
    assert_eq!(change.event, "change");
    assert_eq!(change.json()["flag"]["rollout"], 30.0);
}

#[tokio::test]
async fn a_client_token_is_refused_the_ops_reads_and_the_refusal_names_its_role() {
    let app = spawn_app().await;
    let client = app.create_token("web", "client").await;
    let r = app
        .client
        .get(app.url("/api/v1/releases"))
        .bearer_auth(&client)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "forbidden");
    assert_eq!(
        body["error"]["message"],
        "this endpoint needs an admin or viewer token; this is a client token"
    );
}
