//! Rollback drills in a cluster: a drill run on one node is kept in the database, so every
//! node lists it and serves it by id; its change reaches the streams of the other nodes too.

use crate::support::{converge, start_nodes, Database};
use serde_json::{json, Value};

#[tokio::test]
async fn a_drill_run_on_one_node_is_listed_on_every_node() {
    let db = Database::fresh().await;
    let nodes = start_nodes(2, &db).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let token = a.create_token("web", "client").await;
    converge(&db, &[a, b]).await;
    let mut on_a = a.stream(&token, None).await;
    let mut on_b = b.stream(&token, None).await;
    for s in [&mut on_a, &mut on_b] {
        assert_eq!(s.next_event().await.event, "config");
    }

    let r = a
        .admin_post("/api/v1/drills", json!({"wait_ms": 2000}))
        .await;
    assert_eq!(r.status(), 201);
    let result: Value = r.json().await.unwrap();
    assert_eq!(result["passed"], true, "{result}");
    assert_eq!(result["node"], "a", "{result}");
    // The stream figures are the running node's: its one stream.
    assert_eq!(result["steps"][0]["stream"]["subscribers"], 1, "{result}");
    assert_eq!(result["steps"][0]["stream"]["reached"], 1, "{result}");

    let listed = b.admin_get("/api/v1/drills").await;
    assert_eq!(listed["drills"][0]["id"], result["id"], "{listed}");
    let one = b
        .admin_get(&format!(
            "/api/v1/drills/{}",
            result["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(one, result);
    // Node b's stream got the kill and the revive, with the drill's revisions as ids.
    let kill = result["steps"][0]["revision"].as_u64().unwrap();
    let revive = result["steps"][1]["revision"].as_u64().unwrap();
    let mut ids = Vec::new();
    while ids.last() != Some(&revive) {
        let e = on_b.next_event().await;
        if e.event == "change" {
            ids.push(e.id.unwrap().parse::<u64>().unwrap());
        }
    }
    assert!(ids.contains(&kill), "{ids:?}");

    // At most 1,000 are kept: with 999 older results stored, the next drill drops the oldest.
    db.query(
        "INSERT INTO rollgate_drills (id, body) SELECT ('00000000-0000-7000-8000-' || lpad(i::text, 12, '0'))::uuid, $1 FROM generate_series(1, 999) i",
        &[&result.to_string()],
    )
    .await;
    let r = b.admin_post("/api/v1/drills", json!({"wait_ms": 0})).await;
    assert_eq!(r.status(), 201);
    let count: i64 = db.query("SELECT count(*) FROM rollgate_drills", &[]).await[0].get(0);
    assert_eq!(count, 1000);
    let oldest = db
        .query(
            "SELECT 1 FROM rollgate_drills WHERE id = '00000000-0000-7000-8000-000000000001'",
            &[],
        )
        .await;
    assert!(oldest.is_empty(), "the oldest result was dropped");
}
