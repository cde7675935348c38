//! Latencies reported through the SDK reach the server's latency guards with their quantiles
//! intact: the SDK sends its values as histograms of the server's sketch buckets, and the p95
//! the release status reads per variant is within the sketch's 1 % of the exact p95 of what was
//! reported (a mean, as an aggregating client might send, would have erased it).

use crate::helpers::{bool_flag, ctx, spawn_server};
use rollgate_client::Measure;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The exact q-quantile (the value at rank ⌈q·n⌉) of `values`.
fn exact_quantile(values: &mut [f64], q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let rank = (q * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reported_latencies_give_the_server_their_exact_quantiles_per_variant() {
    let server = spawn_server().await;
    let policy = json!({
        "name": "sdk-latency",
        "guard": [{"metric": "checkout_latency", "class": "core", "quantile": 0.95,
                   "max_relative_increase": 0.2, "max_value": 1000.0}],
        // The first stage never completes: the release stays at 50 % while the test reads it.
        "stages": {"percentages": [50, 100], "min_duration": "1h", "min_exposures": 1000000000u64}
    });
    let r = server
        .admin(reqwest::Method::PUT, "/api/v1/policies/sdk-latency")
        .json(&policy)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    server.put_flag(bool_flag("checkout", 0.0)).await;
    let (status, release) = server
        .admin_post(
            "/api/v1/releases",
            json!({"name": "sdk-latency", "policy": "sdk-latency", "modules": [{"flag": "checkout"}]}),
        )
        .await;
    assert_eq!(status, 201, "{release}");
    let id = release["id"].as_str().unwrap().to_owned();
    let (status, body) = server
        .admin_post(&format!("/api/v1/releases/{id}/start"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");

    let client = server
        .sdk("latency")
        .await
        .flush_interval(Duration::from_secs(3600))
        .connect()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while client
        .flags()
        .evaluate("checkout", &ctx(json!({"targetingKey": "probe"})))
        .is_err()
        || server.admin_get(&format!("/api/v1/releases/{id}")).await["modules"][0]["percentage"]
            != 50.0
    {
        assert!(Instant::now() < deadline, "the release did not reach 50 %");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await; // the SDK's stream applies the stage

    // 4,000 users, each reporting one latency: a long-tailed spread of distinct values.
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for i in 0..4000u32 {
        let user = ctx(json!({"targetingKey": format!("user-{i}")}));
        let flags = client.flags();
        let served = flags.evaluate("checkout", &user).unwrap();
        let latency =
            0.05 + 0.001 * f64::from(i % 97) + f64::from((i * 7919) % 1000).powi(3) * 1e-9;
        client.report_served(&served, "checkout_latency", Measure::Value(latency));
        if served.variant == "on" {
            on.push(latency)
        } else {
            off.push(latency)
        }
    }
    assert!(
        on.len() > 1000 && off.len() > 1000,
        "{} / {}",
        on.len(),
        off.len()
    );
    client.flush().await;

    let want = [
        ("new", exact_quantile(&mut on, 0.95), on.len()),
        ("old", exact_quantile(&mut off, 0.95), off.len()),
    ];
    let mut reading = Value::Null;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let status = server.admin_get(&format!("/api/v1/releases/{id}")).await;
        reading = status["modules"][0]["guards"][0]["quantile"].clone();
        if want
            .iter()
            .all(|(side, _, n)| reading[side]["observations"] == json!(n))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (side, exact, n) in want {
        assert_eq!(reading[side]["observations"], json!(n), "{reading:#}");
        let read = reading[side]["value"].as_f64().unwrap();
        assert!(
            (read - exact).abs() <= exact * 0.0101,
            "{side}: the server reads p95 {read}, the exact p95 is {exact}: {reading:#}"
        );
    }
}
