//! A server restart: the SDK keeps its last config while the server is down, reconnects to the
//! restarted server (same data dir, same port), catches up on what changed while it was away
//! and follows changes made after the restart.

use crate::helpers::{bool_flag, ctx, start_binary, wait_until};
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_reconnects_and_catches_up_after_a_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first = start_binary(&data, "127.0.0.1:0").await;
    let api = first.api();
    api.put_flag(bool_flag("while-away", 0.0)).await;
    api.put_flag(bool_flag("after-restart", 0.0)).await;
    let token = api.client_token("restart").await;
    let client = rollgate_client::Client::builder(&first.address, &token)
        .poll_interval(Duration::from_secs(3600))
        .stream_retry_interval(Duration::from_secs(3600))
        .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(200))
        .connect()
        .await
        .unwrap();
    let user = ctx(json!({"targetingKey": "u1"}));
    wait_until("the stream to connect", Duration::from_secs(5), || {
        client.status().streaming
    })
    .await;
    let port = first.address.rsplit(':').next().unwrap().to_owned();
    let bind = format!("127.0.0.1:{port}");

    // Down: the last config stays in force, and evaluation does not wait.
    first.stop().await;
    wait_until("the SDK to notice", Duration::from_secs(5), || {
        !client.status().streaming
    })
    .await;
    let started = Instant::now();
    assert!(
        !client.bool_value("while-away", &user, true),
        "last known config, not the default"
    );
    assert!(started.elapsed() < Duration::from_millis(50));

    // A change while this SDK is away (a second start on another port, then stopped).
    let other = start_binary(&data, "127.0.0.1:0").await;
    other.api().put_flag(bool_flag("while-away", 100.0)).await;
    other.stop().await;

    // The server comes back on the same port: the SDK reconnects and catches up.
    let back = start_binary(&data, &bind).await;
    wait_until(
        "the catch-up after the restart",
        Duration::from_secs(10),
        || client.bool_value("while-away", &user, false),
    )
    .await;
    wait_until("the stream to reconnect", Duration::from_secs(5), || {
        client.status().streaming
    })
    .await;

    // And follows the restarted server's changes over the stream.
    back.api().put_flag(bool_flag("after-restart", 100.0)).await;
    wait_until("a change after the restart", Duration::from_secs(5), || {
        client.bool_value("after-restart", &user, false)
    })
    .await;
    let config = back.api().admin_get("/api/v1/client/config").await;
    assert_eq!(client.status().revision, config["revision"].as_u64());
    client.shutdown().await;
    back.stop().await;
}
