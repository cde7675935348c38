//! Changes reach the SDK over the stream, without polling, and quickly.

use crate::helpers::{bool_flag, ctx, spawn_server, wait_until};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_change_and_a_rollback_reach_the_sdk_over_the_stream_within_a_second() {
    let server = spawn_server().await;
    server.put_flag(bool_flag("qr-ordering", 0.0)).await;
    let client = server
        .sdk("stream")
        .await
        // The config is fetched once at start; with this interval, any later change can
        // only come over the stream.
        .poll_interval(Duration::from_secs(3600))
        .stream_retry_interval(Duration::from_secs(3600))
        .connect()
        .await
        .unwrap();
    let users: Vec<_> = (0..200)
        .map(|i| ctx(json!({"targetingKey": format!("user-{i}")})))
        .collect();
    let on_count = |c: &rollgate_client::Client| {
        users
            .iter()
            .filter(|u| c.bool_value("qr-ordering", u, false))
            .count()
    };
    assert_eq!(on_count(&client), 0);
    wait_until("the stream to connect", Duration::from_secs(5), || {
        client.status().streaming
    })
    .await;
    let revision_before = client
        .status()
        .revision
        .expect("the server numbers its changes");

    // Ramp to 100 %.
    server.put_flag(bool_flag("qr-ordering", 100.0)).await;
    let ramp = wait_until("the ramp to reach the SDK", Duration::from_secs(5), || {
        on_count(&client) == 200
    })
    .await;

    // Roll back (rollout 0) and kill (enabled false): both reach it.
    server.put_flag(bool_flag("qr-ordering", 0.0)).await;
    let rollback = wait_until(
        "the rollback to reach the SDK",
        Duration::from_secs(5),
        || on_count(&client) == 0,
    )
    .await;

    let config = server.admin_get("/api/v1/client/config").await;
    let server_revision = config["revision"].as_u64().unwrap();
    wait_until(
        "the SDK to report the server's revision",
        Duration::from_secs(5),
        || client.status().revision == Some(server_revision),
    )
    .await;
    assert_eq!(server_revision, revision_before + 2);
    assert!(client.status().applied_ago.unwrap() < Duration::from_secs(5));
    assert!(ramp < Duration::from_secs(1), "ramp took {ramp:?}");
    assert!(
        rollback < Duration::from_secs(1),
        "rollback took {rollback:?}"
    );
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_streaming_off_the_sdk_follows_changes_by_polling_with_etags() {
    let server = spawn_server().await;
    server.put_flag(bool_flag("polled", 0.0)).await;
    let client = server
        .sdk("poll")
        .await
        .streaming(false)
        .poll_interval(Duration::from_millis(50))
        .connect()
        .await
        .unwrap();
    let user = ctx(json!({"targetingKey": "u1"}));
    assert!(!client.bool_value("polled", &user, true));
    server.put_flag(bool_flag("polled", 100.0)).await;
    wait_until(
        "the poll to pick the change up",
        Duration::from_secs(5),
        || client.bool_value("polled", &user, false),
    )
    .await;
    assert!(!client.status().streaming);
    // Unchanged config: the polls get 304s and nothing is applied again (the config applied
    // grows older while several polls go by).
    let applied = client.status().revision;
    wait_until("several polls", Duration::from_secs(5), || {
        client.status().applied_ago.unwrap() >= Duration::from_millis(300)
    })
    .await;
    assert_eq!(client.status().revision, applied);
    assert!(client.bool_value("polled", &user, false));
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_deletion_reaches_the_sdk_over_the_stream() {
    let server = spawn_server().await;
    server.put_flag(bool_flag("plain", 100.0)).await;
    server
        .put_segment(json!({"key": "kiwis", "when": [{"attribute": "country", "op": "in", "values": ["NZ"]}]}))
        .await;
    let client = server
        .sdk("segment-delete")
        .await
        .poll_interval(Duration::from_secs(3600))
        .stream_retry_interval(Duration::from_secs(3600))
        .connect()
        .await
        .unwrap();
    wait_until("the stream to connect", Duration::from_secs(5), || {
        client.status().streaming
    })
    .await;
    let status = server
        .admin(reqwest::Method::DELETE, "/api/v1/segments/kiwis")
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 204);
    let config = server.admin_get("/api/v1/client/config").await;
    assert_eq!(config["segments"], json!([]));
    let server_revision = config["revision"].as_u64().unwrap();
    // The SDK only moves to a revision once it has applied the event that carries it (an
    // event it cannot read is an error and leaves the revision behind).
    wait_until(
        "the SDK to apply the segment deletion",
        Duration::from_secs(5),
        || client.status().revision == Some(server_revision),
    )
    .await;
    assert!(client.bool_value("plain", &ctx(json!({"targetingKey": "u"})), false));
    client.shutdown().await;
}
