//! The change stream: config on connect, every change exactly once and in order, resume.

use crate::helpers::{bool_flag, revision_now, spawn_app, spawn_app_with, SseReader};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test]
async fn a_subscriber_gets_the_config_then_every_change_once_in_order() {
    let app = spawn_app().await;
    let token = app.create_token("web", "client").await;
    app.put_flag(bool_flag("qr", 0.0)).await;
    let base = revision_now(&app, 1).await;
    let mut stream = SseReader::open(&app, "/api/v1/stream", &token, None).await;

    let config = stream.next_event().await;
    assert_eq!(config.event, "config");
    assert_eq!(config.json()["flags"][0]["key"], "qr");
    // Ids are config revisions: the one flag written so far is revision 1.
    assert_eq!(config.id, Some(base.to_string()));
    assert_eq!(config.json()["revision"], base);

    for pct in [1, 5, 25, 50, 100] {
        app.admin(Method::PUT, "/api/v1/flags/qr/rollout")
            .json(&json!({"percentage": pct}))
            .send()
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    for _ in 0..5 {
        let change = stream.next_event().await;
        assert_eq!(change.event, "change");
        let data = change.json();
        assert_eq!(data["key"], "qr");
        assert_eq!(data["cause"]["action"], "flag.rollout");
        assert_eq!(data["revision"].to_string(), change.id.clone().unwrap());
        seen.push((
            change.id.unwrap(),
            data["flag"]["rollout"].as_f64().unwrap(),
        ));
    }
    assert_eq!(
        seen.iter().map(|(_, p)| *p).collect::<Vec<_>>(),
        [1.0, 5.0, 25.0, 50.0, 100.0]
    );
    let seqs: Vec<u64> = seen.iter().map(|(id, _)| id.parse().unwrap()).collect();
    assert_eq!(
        seqs,
        [base + 1, base + 2, base + 3, base + 4, base + 5],
        "consecutive revisions after the config's"
    );
}

#[tokio::test]
async fn last_event_id_replays_exactly_the_missed_changes() {
    let app = spawn_app().await;
    let token = app.create_token("web", "client").await;
    app.put_flag(bool_flag("qr", 0.0)).await;
    let mut first = SseReader::open(&app, "/api/v1/stream", &token, None).await;
    let config_id = first.next_event().await.id.unwrap();
    drop(first);

    for pct in [10, 20, 30] {
        app.admin(Method::PUT, "/api/v1/flags/qr/rollout")
            .json(&json!({"percentage": pct}))
            .send()
            .await
            .unwrap();
    }
    let mut resumed = SseReader::open(&app, "/api/v1/stream", &token, Some(&config_id)).await;

    let mut rollouts = Vec::new();
    for _ in 0..3 {
        let e = resumed.next_event().await;
        assert_eq!(e.event, "change", "no fresh config when resuming");
        rollouts.push(e.json()["flag"]["rollout"].as_f64().unwrap());
    }
    assert_eq!(rollouts, [10.0, 20.0, 30.0]);
    app.admin(Method::POST, "/api/v1/flags/qr/kill")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resumed.next_event().await.json()["flag"]["enabled"],
        false,
        "then live changes follow"
    );
}

#[tokio::test]
async fn an_unknown_last_event_id_gets_a_fresh_config() {
    let app = spawn_app().await;
    let token = app.create_token("web", "client").await;

    let mut stream = SseReader::open(&app, "/api/v1/stream", &token, Some("12345-9")).await;

    assert_eq!(stream.next_event().await.event, "config");
}

#[tokio::test]
async fn heartbeats_keep_the_stream_alive() {
    let app = spawn_app_with(|c| c.timing.heartbeat = Duration::from_millis(50)).await;
    let token = app.create_token("web", "client").await;
    let mut stream = SseReader::open(&app, "/api/v1/stream", &token, None).await;

    let mut heartbeats = 0;
    while heartbeats < 2 {
        if stream.next_block().await.starts_with(": heartbeat") {
            heartbeats += 1;
        }
    }
    assert_eq!(heartbeats, 2);
}

#[tokio::test]
async fn the_stream_needs_a_token_in_the_header_or_the_query() {
    let app = spawn_app().await;
    let token = app.create_token("web", "client").await;

    let none = app
        .client
        .get(app.url("/api/v1/stream"))
        .send()
        .await
        .unwrap();
    let bad = app
        .client
        .get(app.url("/api/v1/stream?token=nope"))
        .send()
        .await
        .unwrap();
    let query = app
        .client
        .get(app.url(&format!("/api/v1/stream?token={token}")))
        .send()
        .await
        .unwrap();

    assert_eq!(none.status(), 401);
    assert_eq!(bad.status(), 401);
    assert_eq!(query.status(), 200);
}

#[tokio::test]
async fn ofrep_bulk_advertises_a_stream_that_pushes_refetch_evaluation() {
    let app = spawn_app().await;
    let token = app.create_token("web", "client").await;
    app.put_flag(bool_flag("qr", 0.0)).await;
    let bulk: Value = app
        .client
        .post(app.url("/ofrep/v1/evaluate/flags"))
        .bearer_auth(&token)
        .json(&json!({"context": {"targetingKey": "u1"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let advertised = &bulk["eventStreams"][0];
    assert_eq!(advertised["type"], "sse");
    let url = advertised["url"].as_str().unwrap();
    assert!(
        !url.contains(&token),
        "the stream URL carries a scoped token, not the secret"
    );

    let mut response = app.client.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    app.admin(Method::PUT, "/api/v1/flags/qr/rollout")
        .json(&json!({"percentage": 50}))
        .send()
        .await
        .unwrap();
    let mut text = String::new();
    while !text.contains("refetchEvaluation") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), response.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(text.contains("event: message"));
    let data = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
    let msg: Value = serde_json::from_str(data).unwrap();
    assert_eq!(msg["type"], "refetchEvaluation");
    assert!(msg["etag"].is_string() && msg["lastModified"].is_u64());
}

#[tokio::test]
async fn unknown_stream_parameters_from_providers_are_ignored() {
    let app = spawn_app().await;
    let token = app.create_token("web", "client").await;

    let r = app
        .client
        .get(app.url(&format!("/api/v1/stream?format=ofrep&token={token}&flagConfigEtag=x&flagConfigLastModified=1&_=123")))
        .send()
        .await
        .unwrap();

    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn revoking_a_token_ends_its_open_streams_at_once_and_only_its_own() {
    let app = spawn_app().await;
    let doomed = app.create_token("doomed", "client").await;
    let kept = app.create_token("kept", "client").await;
    app.put_flag(bool_flag("qr", 0.0)).await;
    let bulk: Value = app
        .client
        .post(app.url("/ofrep/v1/evaluate/flags"))
        .bearer_auth(&doomed)
        .json(&json!({"context": {"targetingKey": "u1"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stream_url = bulk["eventStreams"][0]["url"].as_str().unwrap().to_owned();
    assert!(stream_url.contains("token=st_"), "{stream_url}");
    let by_header = SseReader::open(&app, "/api/v1/stream", &doomed, None).await;
    let by_query = SseReader::send(
        app.client
            .get(app.url(&format!("/api/v1/stream?token={doomed}"))),
    )
    .await;
    let by_stream_token = SseReader::send(app.client.get(&stream_url)).await;
    let mut other = SseReader::open(&app, "/api/v1/stream", &kept, None).await;
    assert_eq!(other.next_event().await.event, "config");

    let r = app
        .admin(Method::DELETE, "/api/v1/tokens/doomed")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);

    by_header.ends().await;
    by_query.ends().await;
    by_stream_token.ends().await;
    app.admin(Method::PUT, "/api/v1/flags/qr/rollout")
        .json(&json!({"percentage": 40}))
        .send()
        .await
        .unwrap();
    let change = other.next_event().await;
    assert_eq!(
        change.event, "change",
        "the other token's stream stays open"
    );
    assert_eq!(change.json()["flag"]["rollout"], 40.0);
    let reconnect = app.client.get(&stream_url).send().await.unwrap();
    assert_eq!(
        reconnect.status(),
        401,
        "the revoked stream token no longer opens a stream"
    );
}

#[tokio::test]
async fn creating_a_token_leaves_open_streams_alone() {
    let app = spawn_app().await;
    let token = app.create_token("web", "client").await;
    app.put_flag(bool_flag("qr", 0.0)).await;
    let mut stream = SseReader::open(&app, "/api/v1/stream", &token, None).await;
    assert_eq!(stream.next_event().await.event, "config");

    app.create_token("another", "client").await;
    app.admin(Method::PUT, "/api/v1/flags/qr/rollout")
        .json(&json!({"percentage": 5}))
        .send()
        .await
        .unwrap();

    assert_eq!(stream.next_event().await.event, "change");
}
