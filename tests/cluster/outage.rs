//! Degraded, not down; counted exactly once: with the database gone, every node keeps
//! evaluating, streaming and accepting signals and refuses ops writes with 503; when it comes
//! back the nodes catch up by themselves and every acknowledged signal is counted once, also
//! across a crash between the outbox flush's commit and its cleanup.

use crate::helpers::{bool_flag, SseReader};
use crate::support::{converge, counted, start_nodes, wait_for, Database, Node};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

/// Sends one batch of `count` exposures of `flag`'s `on` variant to `node`, asserting 200.
async fn exposures(node: &Node, token: &str, flag: &str, count: u64) {
    let (code, body) = node
        .signals(
            token,
            json!([{"flag": flag, "variant": "on", "metric": "exposure", "count": count}]),
        )
        .await;
    assert_eq!(code, 200, "signals on {}: {body}", node.name);
}

/// Waits (15 s at most) until the database counts `expected` exposures of `flag`, then checks
/// that the count stays there (nothing is counted twice by a late or repeated flush).
async fn counted_exactly(db: &Database, flag: &str, expected: i64) {
    wait_for(
        &format!("{expected} exposures counted"),
        Duration::from_secs(15),
        || async move { (counted(db, flag, "on", "exposure").await >= expected).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        counted(db, flag, "on", "exposure").await,
        expected,
        "counted exactly once"
    );
}

/// Evaluates `key` on `node` with `token`, returning the value.
async fn value_on(node: &Node, token: &str, key: &str) -> Value {
    let (code, body) = node
        .evaluate(token, key, json!({"targetingKey": "u-1"}))
        .await;
    assert_eq!(code, 200, "evaluate on {}: {body}", node.name);
    body["value"].clone()
}

/// Skips what `stream` has already sent (blocks that come without waiting), so the next block
/// read was sent after this call.
async fn drain(stream: &mut SseReader) {
    while tokio::time::timeout(Duration::from_millis(100), stream.next_block())
        .await
        .is_ok()
    {}
}

#[tokio::test]
async fn with_the_database_down_nodes_serve_stream_refuse_writes_and_count_signals_once_it_returns()
{
    let db = Database::own_server().await;
    let nodes = start_nodes(3, &db).await;
    let all: Vec<&Node> = nodes.iter().collect();
    nodes[0].put_flag(bool_flag("f", 100.0)).await;
    let token = nodes[0].create_token("app", "client").await;
    converge(&db, &all).await;
    let mut streams: Vec<SseReader> = Vec::new();
    for n in &all {
        let mut s = n.stream(&token, None).await;
        assert_eq!(s.next_event().await.event, "config");
        streams.push(s);
    }
    for n in &all {
        exposures(n, &token, "f", 10).await;
    }
    counted_exactly(&db, "f", 30).await;

    for s in streams.iter_mut() {
        drain(s).await;
    }
    db.server().kill().await;
    // Long enough for the leader's lease to lapse and every node to notice.
    for round in 0..3 {
        for (n, s) in all.iter().zip(streams.iter_mut()) {
            assert_eq!(
                value_on(n, &token, "f").await,
                true,
                "round {round} on {}",
                n.name
            );
            let block = s.next_block().await;
            assert!(
                block.starts_with(':'),
                "a heartbeat on {}: {block:?}",
                n.name
            );
            let r = n
                .admin(Method::PUT, "/api/v1/flags/f/rollout")
                .json(&json!({"percentage": 40}))
                .send()
                .await
                .unwrap();
            assert_eq!(
                r.status(),
                503,
                "an ops write on {} during the outage",
                n.name
            );
            let body: Value = r.json().await.unwrap();
            let message = body["error"]["message"].as_str().unwrap_or_default();
            assert!(!message.is_empty(), "503 with a message: {body}");
            exposures(n, &token, "f", 7).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    db.server().restart().await;

    counted_exactly(&db, "f", 30 + 3 * 3 * 7).await;
    let a = all[0];
    wait_for(
        "an ops write to succeed again",
        Duration::from_secs(15),
        || async move {
            let r = a
                .admin(Method::PUT, "/api/v1/flags/f/rollout")
                .json(&json!({"percentage": 40}))
                .send()
                .await
                .unwrap();
            r.status().is_success().then_some(())
        },
    )
    .await;
    for (n, s) in all.iter().zip(streams.iter_mut()) {
        let change = s.next_event().await;
        assert_eq!(change.event, "change", "on {}", n.name);
        assert_eq!(change.json()["flag"]["rollout"], 40.0, "on {}", n.name);
    }
    converge(&db, &all).await;
}

#[tokio::test]
async fn a_crash_between_the_flush_commit_and_the_outbox_cleanup_counts_each_batch_once() {
    let db = Database::fresh().await;
    let mut node = Node::start(
        "a",
        &db.url,
        &[("ROLLGATE_FAILPOINT", "outbox-after-commit")],
    )
    .await;
    node.put_flag(bool_flag("f", 50.0)).await;
    let token = node.create_token("app", "client").await;

    exposures(&node, &token, "f", 5).await;
    assert!(
        node.exits_within(Duration::from_secs(10)).await,
        "the failpoint aborts the node right after the flush commit"
    );
    assert_eq!(
        counted(&db, "f", "on", "exposure").await,
        5,
        "the commit happened"
    );
    node.restart(&[]).await;
    exposures(&node, &token, "f", 3).await;

    counted_exactly(&db, "f", 8).await;
}

/// Many batches at once on one node: the node's own figures (counted at once, then raised by
/// the global totals it mirrors after every flush) never count a batch twice, whatever the
/// order of the flush, the mirror and the answer; the database counts each batch once.
#[tokio::test]
async fn a_node_s_own_totals_never_count_a_batch_twice_while_it_flushes() {
    let db = Database::fresh().await;
    let nodes = start_nodes(2, &db).await;
    nodes[0].put_flag(bool_flag("busy", 100.0)).await;
    let token = nodes[0].create_token("app", "client").await;
    let (batches, per_batch) = (400u64, 7u64);
    let sends = (0..batches).map(|_| exposures(&nodes[0], &token, "busy", per_batch));
    futures_util::future::join_all(sends).await;
    let expected = batches * per_batch;

    let own = nodes[0]
        .signals_total(&token, "busy", "on", "exposure")
        .await;
    assert_eq!(own, Some(expected as f64), "the receiving node, at once");
    counted_exactly(&db, "busy", expected as i64).await;
    for n in &nodes {
        let shown = n.signals_total(&token, "busy", "on", "exposure").await;
        assert_eq!(
            shown,
            Some(expected as f64),
            "on {} after the flush",
            n.name
        );
    }
}
