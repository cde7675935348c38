//! The client report (docs/clients.md) feeds the server's reach figures: a client that applied
//! a change counts as confirmed with an apply latency, one that did not as live only.

use crate::helpers::{bool_flag, spawn_server, wait_until};
use serde_json::Value;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reach_counts_the_sdk_that_applied_a_change_and_the_one_that_did_not() {
    let server = spawn_server().await;
    server.put_flag(bool_flag("reached", 0.0)).await;
    let streaming = server
        .sdk("streaming")
        .await
        .flush_interval(Duration::from_millis(20))
        .heartbeat_interval(Duration::from_millis(50))
        .connect()
        .await
        .unwrap();
    // Polls once at start, then not for an hour: it will not apply the change.
    let stale = server
        .sdk("stale")
        .await
        .streaming(false)
        .poll_interval(Duration::from_secs(3600))
        .flush_interval(Duration::from_millis(20))
        .heartbeat_interval(Duration::from_millis(50))
        .connect()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.admin_get("/api/v1/reach").await["live_clients"] != 2 {
        assert!(
            Instant::now() < deadline,
            "both SDKs never became live (heartbeats)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    server.put_flag(bool_flag("reached", 50.0)).await;
    let revision = server.admin_get("/api/v1/client/config").await["revision"]
        .as_u64()
        .unwrap();
    wait_until(
        "the streaming SDK to apply it",
        Duration::from_secs(5),
        || streaming.status().revision == Some(revision),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let change = loop {
        let reach = server.admin_get("/api/v1/reach?flag=reached").await;
        let change: Value = reach["changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["revision"] == revision)
            .cloned()
            .unwrap_or(Value::Null);
        if change["confirmed"] == 1 && change["samples"] == 1 {
            break change;
        }
        assert!(Instant::now() < deadline, "never confirmed: {reach:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(change["live_clients"], 2, "{change}");
    assert_eq!(change["share"], 0.5, "{change}");
    assert!(change["p50_ms"].as_u64().unwrap() < 2_000, "{change}");
    assert_eq!(stale.status().revision, Some(revision - 1));

    // Shutting down sends the closing report: the server stops counting each SDK at once
    // (not a live window later), so a restarted app leaves no client behind that never confirms.
    streaming.shutdown().await;
    assert_eq!(server.admin_get("/api/v1/reach").await["live_clients"], 1);
    stale.shutdown().await;
    assert_eq!(server.admin_get("/api/v1/reach").await["live_clients"], 0);
}
