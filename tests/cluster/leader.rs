//! One controller, fenced: a killed leader is replaced within the lease time and the ramp goes
//! on from its stored stage (no stage twice, none skipped, the bake timer not restarted); a
//! leader frozen past its lease changes nothing when it wakes; a zero-tolerance event sent to
//! a follower still rolls back within a second.

use crate::helpers::bool_flag;
use crate::support::{
    applied_stages, converge, decided_by, deciding_node, is_leader, release_audit, start_nodes,
    the_leader, wait_for, Database, Node, LEASE_TTL, TAKEOVER,
};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::time::Instant;

/// Creates and starts a release of flag `points` (rollout 0) through `stages` on `node`.
async fn started_release(node: &Node, stages: Value) -> String {
    node.put_flag(bool_flag("points", 0.0)).await;
    let id = node
        .create_release(json!({"name": "ha", "modules": [{"flag": "points"}], "stages": stages}))
        .await;
    let r = node
        .admin_post(&format!("/api/v1/releases/{id}/start"), json!({}))
        .await;
    assert_eq!(r.status(), 200, "start: {}", r.text().await.unwrap());
    id
}

/// The release's one module, as `node` reports it.
async fn module(node: &Node, id: &str) -> Value {
    node.admin_get(&format!("/api/v1/releases/{id}")).await["modules"][0].clone()
}

/// Waits (`within`) until the release's module, read on `node`, satisfies `done`.
async fn wait_module(
    node: &Node,
    id: &str,
    what: &str,
    within: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let done = &done;
    wait_for(what, within, || async move {
        let m = module(node, id).await;
        done(&m).then_some(m)
    })
    .await
}

#[tokio::test]
async fn a_killed_leader_is_replaced_within_the_lease_and_the_ramp_resumes_from_its_stored_stage() {
    let db = Database::fresh().await;
    let mut nodes = start_nodes(3, &db).await;
    let bake = Duration::from_secs(4);
    let id = started_release(
        &nodes[0],
        json!({"percentages": [10, 50, 100], "min_duration": "4s", "min_exposures": 0}),
    )
    .await;
    let stage1 = wait_module(&nodes[1], &id, "stage 1", Duration::from_secs(10), |m| {
        m["stage"] == 1
    })
    .await;
    let stored_start = stage1["stage_started_ms"].as_u64().unwrap();

    let leader = {
        let all: Vec<&Node> = nodes.iter().collect();
        the_leader(&all, TAKEOVER).await.name.clone()
    };
    let killed = nodes.iter().position(|n| n.name == leader).unwrap();
    nodes[killed].sigkill().await;
    let killed_at = Instant::now();
    let survivors: Vec<&Node> = nodes.iter().filter(|n| n.name != leader).collect();
    let new_leader = the_leader(&survivors, TAKEOVER).await;
    let takeover = killed_at.elapsed();
    let after_takeover = module(new_leader, &id).await;
    let stage2 = wait_module(new_leader, &id, "stage 2", Duration::from_secs(15), |m| {
        m["stage"] == 2 || m["state"] == "completed"
    })
    .await;
    let done = wait_module(
        new_leader,
        &id,
        "completion",
        Duration::from_secs(15),
        |m| m["state"] == "completed",
    )
    .await;

    assert!(
        takeover <= TAKEOVER,
        "node {} took over after {takeover:?}",
        new_leader.name
    );
    assert_eq!(done["percentage"], 100.0);
    let stages = applied_stages(&release_audit(new_leader, &id).await);
    assert_eq!(stages, [0, 1, 2], "each stage applied once, in order");
    if after_takeover["stage"] == 1 {
        assert_eq!(
            after_takeover["stage_started_ms"], stored_start,
            "the new leader keeps the stored stage start"
        );
    }
    let advanced_at = stage2["stage_started_ms"].as_u64().unwrap();
    let baked = Duration::from_millis(advanced_at - stored_start);
    assert!(
        baked >= bake && baked < bake + Duration::from_millis(1500),
        "stage 1 baked {baked:?}: its timer runs from the stored start, not from the takeover"
    );
}

#[tokio::test]
async fn a_paused_leader_that_lost_its_lease_changes_nothing_when_it_wakes() {
    let db = Database::fresh().await;
    let nodes = start_nodes(3, &db).await;
    let all: Vec<&Node> = nodes.iter().collect();
    let id = started_release(
        &nodes[0],
        json!({"percentages": [10, 25, 50, 100], "min_duration": "1500ms", "min_exposures": 0}),
    )
    .await;
    let old = the_leader(&all, TAKEOVER).await;
    // Freeze it just before its next decision is due, so one is likely in flight.
    let m = wait_module(old, &id, "stage 0", Duration::from_secs(10), |m| {
        m["stage"] == 0
    })
    .await;
    let due = m["stage_started_ms"].as_u64().unwrap() + 1400;
    let now = rollgate::clock::now_ms();
    tokio::time::sleep(Duration::from_millis(due.saturating_sub(now))).await;
    old.sigstop();
    let others: Vec<&Node> = all.iter().copied().filter(|n| n.name != old.name).collect();
    let new = the_leader(&others, TAKEOVER + LEASE_TTL).await;
    let before_wake = release_audit(new, &id).await;
    let by_old_before: Vec<Value> = before_wake
        .iter()
        .filter(|e| decided_by(e, &old.name))
        .cloned()
        .collect();

    old.sigcont();
    wait_module(new, &id, "completion", Duration::from_secs(20), |m| {
        m["state"] == "completed"
    })
    .await;
    // Time for anything the woken node still had in flight to commit or be refused.
    tokio::time::sleep(LEASE_TTL).await;
    let entries = release_audit(new, &id).await;

    assert!(
        entries
            .iter()
            .filter(|e| e["actor"] == "controller")
            .all(|e| deciding_node(e).is_some()),
        "every controller decision names its node: {entries:#?}"
    );
    let by_old: Vec<Value> = entries
        .iter()
        .filter(|e| decided_by(e, &old.name))
        .cloned()
        .collect();
    assert_eq!(
        by_old, by_old_before,
        "the woken node committed nothing after losing its lease"
    );
    assert_eq!(
        applied_stages(&entries),
        [0, 1, 2, 3],
        "each stage applied once, in order"
    );
    assert!(
        !is_leader(old).await,
        "the woken node does not think it leads"
    );
    assert_eq!(the_leader(&all, TAKEOVER).await.name, new.name);
    converge(&db, &all).await;
    for n in &all {
        let m = module(n, &id).await;
        assert_eq!(
            (m["state"].as_str(), m["percentage"].as_f64()),
            (Some("completed"), Some(100.0)),
            "on {}",
            n.name
        );
    }
}

#[tokio::test]
async fn a_zero_tolerance_event_sent_to_a_follower_rolls_back_within_a_second() {
    let db = Database::fresh().await;
    let nodes = start_nodes(3, &db).await;
    let all: Vec<&Node> = nodes.iter().collect();
    let a = &nodes[0];
    let policy = json!({"name": "zero", "guard": [{"metric": "data_loss", "class": "core", "max_count": 0}]});
    let r = a
        .admin(Method::PUT, "/api/v1/policies/zero")
        .json(&policy)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    a.put_flag(bool_flag("points", 0.0)).await;
    let id = a
        .create_release(json!({"name": "z", "policy": "zero", "modules": [{"flag": "points"}], "stages": {"min_duration": "1h"}}))
        .await;
    let r = a
        .admin_post(&format!("/api/v1/releases/{id}/start"), json!({}))
        .await;
    assert_eq!(r.status(), 200);
    let token = a.create_token("app", "client").await;
    converge(&db, &all).await;
    let leader = the_leader(&all, TAKEOVER).await;
    let follower = *all.iter().find(|n| n.name != leader.name).unwrap();
    let mut stream = follower.stream(&token, None).await;
    assert_eq!(stream.next_event().await.event, "config");

    let sent = Instant::now();
    let (code, body) = follower
        .signals(
            &token,
            json!([{"flag": "points", "variant": "on", "metric": "data_loss"}]),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let change = stream.next_event().await;
    let took = sent.elapsed();

    assert_eq!(change.event, "change");
    assert_eq!(change.json()["flag"]["rollout"], 0.0, "{change:?}");
    assert!(
        took <= Duration::from_secs(1),
        "the rollback reached the follower's clients after {took:?}"
    );
    let m = module(follower, &id).await;
    assert_eq!(m["state"], "rolled_back");
}
