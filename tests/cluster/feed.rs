//! The change feed across nodes: a change made on one node reaches the streams of the others,
//! a client resumes on any node with `Last-Event-ID`, every node reports the revision it has
//! applied, and a node whose notification connection dies catches up by its safety poll.

use crate::helpers::{bool_flag, SseEvent};
use crate::support::{
    applied_revision, converge, metrics_revision, start_nodes, wait_for, Database, FEED_POLL,
};
use reqwest::Method;
use serde_json::json;
use std::time::Duration;
use tokio::time::Instant;

/// Sets the flag's rollout on `node`, asserting success.
async fn set_rollout(node: &crate::support::Node, key: &str, percentage: u32) {
    let r = node
        .admin(Method::PUT, &format!("/api/v1/flags/{key}/rollout"))
        .json(&json!({ "percentage": percentage }))
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success(),
        "rollout on {}: {}",
        node.name,
        r.status()
    );
}

/// `(id, rollout)` of a `change` event about flag `key`.
fn change_of(event: &SseEvent, key: &str) -> (u64, f64) {
    assert_eq!(event.event, "change", "{event:?}");
    let data = event.json();
    assert_eq!(data["key"], key, "{event:?}");
    let id: u64 = event.id.as_deref().unwrap().parse().unwrap();
    assert_eq!(
        data["revision"], id,
        "the event id is the change's revision"
    );
    (id, data["flag"]["rollout"].as_f64().unwrap())
}

#[tokio::test]
async fn a_change_on_one_node_reaches_streams_on_the_others_and_resumes_on_any_node() {
    let db = Database::fresh().await;
    let nodes = start_nodes(3, &db).await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    a.put_flag(bool_flag("qr", 0.0)).await;
    let token = a.create_token("web", "client").await;
    converge(&db, &[a, b, c]).await;
    let mut live_b = b.stream(&token, None).await;
    let mut live_c = c.stream(&token, None).await;
    let mut client = b.stream(&token, None).await;
    for s in [&mut live_b, &mut live_c, &mut client] {
        let config = s.next_event().await;
        assert_eq!(config.event, "config");
        assert_eq!(config.json()["flags"][0]["key"], "qr");
    }

    for pct in [1, 5, 25, 50, 100] {
        set_rollout(a, "qr", pct).await;
    }
    // The client reads two changes on node b, then its connection drops.
    let read = change_of(&client.next_event().await, "qr");
    let last_read = change_of(&client.next_event().await, "qr");
    drop(client);
    let mut on_b = Vec::new();
    let mut on_c = Vec::new();
    for _ in 0..5 {
        on_b.push(change_of(&live_b.next_event().await, "qr"));
        on_c.push(change_of(&live_c.next_event().await, "qr"));
    }
    for pct in [10, 20, 30] {
        set_rollout(a, "qr", pct).await;
    }
    for _ in 0..3 {
        on_c.push(change_of(&live_c.next_event().await, "qr"));
    }
    let id = last_read.0.to_string();
    let mut resumed = c.stream(&token, Some(&id)).await;
    let mut replayed = Vec::new();
    for _ in 0..6 {
        replayed.push(change_of(&resumed.next_event().await, "qr"));
    }
    set_rollout(a, "qr", 40).await;
    let after = change_of(&resumed.next_event().await, "qr");

    let rollouts = |events: &[(u64, f64)]| events.iter().map(|e| e.1).collect::<Vec<_>>();
    assert_eq!(rollouts(&on_b), [1.0, 5.0, 25.0, 50.0, 100.0]);
    assert_eq!(
        on_b[..],
        on_c[..5],
        "nodes b and c stream the same revisions"
    );
    assert!(
        on_c.windows(2).all(|w| w[0].0 < w[1].0),
        "ids grow: {on_c:?}"
    );
    assert_eq!([read, last_read], on_b[..2], "the client saw b's first two");
    assert_eq!(
        replayed[..],
        on_c[2..],
        "resuming on c after {id} replays exactly the changes the client missed, in order"
    );
    assert_eq!(
        after.1, 40.0,
        "then the stream goes on live, nothing extra in between"
    );
    assert!(after.0 > on_c[7].0);
}

#[tokio::test]
async fn every_node_reports_its_applied_revision_and_all_converge_after_a_change() {
    let db = Database::fresh().await;
    let nodes = start_nodes(3, &db).await;
    let all: Vec<_> = nodes.iter().collect();
    nodes[0].put_flag(bool_flag("qr", 0.0)).await;
    let before = converge(&db, &all).await;

    set_rollout(&nodes[1], "qr", 50).await;
    let head = db.head().await;
    let all = &all;
    let reported = wait_for(
        "every node to report the new revision",
        Duration::from_secs(5),
        || async move {
            let mut reported = Vec::new();
            for n in all {
                reported.push((applied_revision(n).await?, metrics_revision(n).await?));
            }
            reported
                .iter()
                .all(|r| *r == (head, head))
                .then_some(reported)
        },
    )
    .await;

    assert!(
        head > before,
        "the change took a new revision ({before} -> {head})"
    );
    assert_eq!(
        reported,
        vec![(head, head); 3],
        "/readyz and /metrics agree on every node"
    );
}

#[tokio::test]
async fn a_node_whose_notification_connection_is_killed_catches_up_within_the_safety_poll() {
    let db = Database::fresh().await;
    let nodes = start_nodes(2, &db).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    a.put_flag(bool_flag("qr", 0.0)).await;
    let token = a.create_token("web", "client").await;
    converge(&db, &[a, b]).await;
    let mut on_b = b.stream(&token, None).await;
    assert_eq!(on_b.next_event().await.event, "config");

    for (round, pct) in [10, 20, 30].into_iter().enumerate() {
        let killed = db
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE application_name = 'rollgate-listen' AND datname = current_database()",
                &[],
            )
            .await;
        // Later rounds find one only if the nodes listen again; catching up must not need it.
        assert!(
            round > 0 || !killed.is_empty(),
            "no notification connection to kill"
        );
        let start = Instant::now();
        set_rollout(a, "qr", pct).await;
        let change = change_of(&on_b.next_event().await, "qr");
        let took = start.elapsed();

        assert_eq!(change.1, f64::from(pct));
        assert!(
            took <= FEED_POLL + Duration::from_millis(1000),
            "round {round}: node b saw the change after {took:?} (safety poll {FEED_POLL:?})"
        );
    }
}

/// A write refused after it took the global head lock (a 404, a 422) releases that lock at
/// once: the other nodes' writes do not wait for anything.
#[tokio::test]
async fn refused_writes_on_one_node_never_hold_up_writes_on_another() {
    let db = Database::fresh().await;
    let nodes = start_nodes(2, &db).await;
    nodes[0].put_flag(bool_flag("f", 10.0)).await;
    for round in 0..20u32 {
        let missing = nodes[0]
            .admin(Method::PUT, "/api/v1/flags/no-such-flag/rollout")
            .json(&json!({ "percentage": 5 }))
            .send()
            .await
            .unwrap();
        assert_eq!(missing.status(), 404);
        let bad = nodes[0]
            .admin(Method::PUT, "/api/v1/flags/f/rollout")
            .json(&json!({ "percentage": 500 }))
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status(), 422);
        let started = Instant::now();
        set_rollout(&nodes[1], "f", round % 100).await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "round {round}: the other node's write waited {:?}",
            started.elapsed()
        );
    }
}

/// A node frozen while its write holds the global head lock (here: a transaction begun the way
/// every node begins one, then left idle) cannot freeze the cluster: the database ends the idle
/// transaction after 5 s and the other nodes' writes go on.
#[tokio::test]
async fn a_head_lock_left_idle_by_a_frozen_node_is_released_by_the_database() {
    let db = Database::fresh().await;
    let nodes = start_nodes(1, &db).await;
    nodes[0].put_flag(bool_flag("f", 10.0)).await;
    let pool = rollgate::cluster::db::pool(&db.url, None, 1).unwrap();
    let frozen = rollgate::cluster::pg::WriteTx::begin(&pool).await.unwrap();

    let started = Instant::now();
    set_rollout(&nodes[0], "f", 20).await;
    let waited = started.elapsed();

    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_secs(9),
        "the write waited for the idle transaction's end (5 s): {waited:?}"
    );
    drop(frozen);
}

#[tokio::test]
async fn a_segment_and_a_policy_deleted_on_one_node_are_gone_on_the_others_and_stay_gone() {
    let db = Database::fresh().await;
    let mut nodes = start_nodes(2, &db).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let put = a
        .admin(Method::PUT, "/api/v1/segments/kiwis")
        .json(&json!({"key": "kiwis", "when": [{"attribute": "country", "op": "in", "values": ["NZ"]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    let put = a
        .admin(Method::PUT, "/api/v1/policies/slow")
        .header("content-type", "application/toml")
        .body("name = \"slow\"\n[stages]\npercentages = [1, 100]\nmin_duration = \"1m\"\n")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    let token = a.create_token("web", "client").await;
    converge(&db, &[a, b]).await;
    let mut on_b = b.stream(&token, None).await;
    let config = on_b.next_event().await;
    assert_eq!(config.json()["segments"][0]["key"], "kiwis");

    for path in ["/api/v1/segments/kiwis", "/api/v1/policies/slow"] {
        let r = a.admin(Method::DELETE, path).send().await.unwrap();
        assert_eq!(r.status(), 204, "{path}");
    }

    let change = on_b.next_event().await;
    assert_eq!(change.event, "change");
    let data = change.json();
    assert_eq!(
        (&data["type"], &data["key"], &data["action"]),
        (&json!("segment"), &json!("kiwis"), &json!("delete"))
    );
    converge(&db, &[a, b]).await;
    let gone = |node: &crate::support::Node, path: &'static str| {
        let r = node.admin(Method::GET, path).send();
        async move { r.await.unwrap().status().as_u16() }
    };
    assert_eq!(gone(b, "/api/v1/segments/kiwis").await, 404);
    assert_eq!(gone(b, "/api/v1/policies/slow").await, 404);
    // A restarted node reads the state again: neither comes back.
    drop(on_b);
    nodes[1].sigkill().await;
    nodes[1].restart(&[]).await;
    let b = &nodes[1];
    assert_eq!(gone(b, "/api/v1/segments/kiwis").await, 404);
    assert_eq!(gone(b, "/api/v1/policies/slow").await, 404);
}
