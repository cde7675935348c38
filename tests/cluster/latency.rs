//! Latency sketches across nodes: two nodes each ingest half of a flag's latency signals
//! (one as single values, one as a histogram); every node, the leader included, reads the
//! merged sketch, and the database holds it bucket by bucket (`rollgate_signal_sketches`).

use crate::helpers::bool_flag;
use crate::support::{converge, start_nodes, the_leader, wait_for, Database, TAKEOVER};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test]
async fn two_nodes_each_ingesting_half_of_the_latencies_give_every_node_the_merged_sketch() {
    let db = Database::fresh().await;
    let nodes = start_nodes(2, &db).await;
    let all: Vec<_> = nodes.iter().collect();
    let (a, b) = (&nodes[0], &nodes[1]);
    let policy = json!({"name": "latency", "guard": [{"metric": "checkout_latency", "class": "core",
        "quantile": 0.95, "max_value": 10.0}]});
    let r = a
        .admin(Method::PUT, "/api/v1/policies/latency")
        .json(&policy)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    a.put_flag(bool_flag("checkout", 0.0)).await;
    let id = a
        .create_release(
            json!({"name": "l", "policy": "latency", "modules": [{"flag": "checkout"}],
            "stages": {"percentages": [50, 100], "min_duration": "1h"}}),
        )
        .await;
    let r = a
        .admin_post(&format!("/api/v1/releases/{id}/start"), json!({}))
        .await;
    assert_eq!(r.status(), 200);
    let token = a.create_token("app", "client").await;
    converge(&db, &all).await;
    the_leader(&all, TAKEOVER).await;

    // Node a: 1,000 observations of 0.1 s; node b: 1,000 of 0.3 s. Alone, each node's p95
    // would be its own value; merged, the 1,900th of 2,000 is 0.3 s.
    let on = |extra: Value| {
        let mut s = json!({"flag": "checkout", "variant": "on", "metric": "checkout_latency"});
        for (k, v) in extra.as_object().unwrap() {
            s[k] = v.clone();
        }
        s
    };
    let (code, body) = a
        .signals(&token, json!([on(json!({"value": 0.1, "count": 1000}))]))
        .await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = b
        .signals(
            &token,
            json!([on(
                json!({"histogram": {"bounds": [0.1, 0.3], "counts": [0, 1000]}})
            )]),
        )
        .await;
    assert_eq!(code, 200, "{body}");

    let path = format!("/api/v1/releases/{id}");
    for node in &nodes {
        let path = &path;
        let q = wait_for(
            "the merged sketch on every node",
            Duration::from_secs(10),
            || async move {
                let status = node.admin_get(path).await;
                let q = status["modules"][0]["guards"][0]["quantile"].clone();
                (q["new"]["observations"] == 2000).then_some(q)
            },
        )
        .await;
        let p95 = q["new"]["value"].as_f64().unwrap();
        assert!((p95 - 0.3).abs() <= 0.01 * 0.3, "{}: {q:#}", node.name);
        assert_eq!(q["above_max_value"], 0);
    }
    let rows = db
        .query(
            "SELECT coalesce(sum(count), 0)::bigint, count(*) FROM rollgate_signal_sketches \
             WHERE flag = 'checkout' AND variant = 'on' AND metric = 'checkout_latency'",
            &[],
        )
        .await;
    let (observations, buckets): (i64, i64) = (rows[0].get(0), rows[0].get(1));
    assert_eq!((observations, buckets), (2000, 2));
}
