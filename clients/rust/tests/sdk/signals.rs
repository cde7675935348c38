//! Signals: exposures and complaints arrive aggregated and exact; a 429 is honoured; the
//! pending store is bounded and counts what it drops.

use crate::helpers::{bool_flag, ctx, spawn_server, spawn_server_with, wait_until, Server};
use rollgate_client::Measure;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exposures_and_complaints_arrive_aggregated_and_exact_in_one_batch() {
    let server = spawn_server().await;
    server.put_flag(bool_flag("checkout", 50.0)).await;
    let client = server
        .sdk("signals")
        .await
        // Only the explicit flush below sends, so the batch count is exact.
        .flush_interval(Duration::from_secs(3600))
        .connect()
        .await
        .unwrap();
    assert!(client.status().ready);

    // N evaluations on 4 threads, K complaints attributed to each user's variant.
    const N: usize = 20_000;
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let client = client.clone();
            std::thread::spawn(move || {
                let (mut on, mut off, mut complaints_on, mut complaints_off) =
                    (0u64, 0u64, 0u64, 0u64);
                for i in 0..N / 4 {
                    let user = ctx(json!({"targetingKey": format!("user-{t}-{i}")}));
                    let served = client.bool_value("checkout", &user, false);
                    if served {
                        on += 1
                    } else {
                        off += 1
                    }
                    if i % 997 == 0 {
                        client.complaint_for("checkout", &user);
                        if served {
                            complaints_on += 1
                        } else {
                            complaints_off += 1
                        }
                    }
                }
                (on, off, complaints_on, complaints_off)
            })
        })
        .collect();
    let mut want = (0u64, 0u64, 0u64, 0u64);
    for t in threads {
        let (a, b, c, d) = t.join().unwrap();
        want = (want.0 + a, want.1 + b, want.2 + c, want.3 + d);
    }
    assert_eq!(want.0 + want.1, N as u64);
    assert!(
        want.0 > 8_000 && want.1 > 8_000,
        "both variants served: {want:?}"
    );
    assert!(want.2 + want.3 > 10, "complaints sent: {want:?}");

    client.flush().await;

    assert_eq!(
        server.signal_total("checkout", "on", "exposure").await,
        want.0
    );
    assert_eq!(
        server.signal_total("checkout", "off", "exposure").await,
        want.1
    );
    assert_eq!(
        server.signal_total("checkout", "on", "complaint").await,
        want.2
    );
    assert_eq!(
        server.signal_total("checkout", "off", "complaint").await,
        want.3
    );
    let status = client.status();
    assert_eq!(status.batches_sent, 1, "{status:?}");
    assert_eq!(status.dropped_signals, 0);

    // Exposures counted on a config that was replaced meanwhile are not lost either.
    let user = ctx(json!({"targetingKey": "late"}));
    let served_before = client
        .flags()
        .variant_for("checkout", &user)
        .unwrap()
        .to_owned();
    for _ in 0..10 {
        client.bool_value("checkout", &user, false);
    }
    let before = server
        .signal_total("checkout", &served_before, "exposure")
        .await;
    server.put_flag(json!({"key": "other", "type": "boolean", "variants": {"off": false, "on": true}, "off_variant": "off", "on_variant": "on"})).await;
    wait_until("the new config", Duration::from_secs(5), || {
        client.status().flags == 2
    })
    .await;
    // shutdown flushes
    client.shutdown().await;
    assert_eq!(
        server
            .signal_total("checkout", &served_before, "exposure")
            .await,
        before + 10
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_are_attributed_to_the_variant_served() {
    let server = spawn_server().await;
    server.put_flag(bool_flag("pay", 50.0)).await;
    let client = server
        .sdk("attribution")
        .await
        .flush_interval(Duration::from_secs(3600))
        .connect()
        .await
        .unwrap();
    let users: Vec<_> = (0..40)
        .map(|i| ctx(json!({"targetingKey": format!("u{i}")})))
        .collect();
    let on_user = users
        .iter()
        .find(|u| client.flags().variant_for("pay", u) == Some("on"))
        .unwrap();
    let off_user = users
        .iter()
        .find(|u| client.flags().variant_for("pay", u) == Some("off"))
        .unwrap();

    client.report_for("pay", on_user, "payment_failed", Measure::Count(3));
    client.report_for("pay", off_user, "latency", Measure::Value(0.5));
    client.report_for("pay", off_user, "latency", Measure::Value(1.5));
    client.report_variant("pay", "on", "payment_failed", Measure::Count(1));
    // The variant this process served last.
    assert!(client.bool_value("pay", on_user, false));
    client.complaint("pay");
    client.flush().await;

    assert_eq!(server.signal_total("pay", "on", "payment_failed").await, 4);
    assert_eq!(server.signal_total("pay", "off", "latency").await, 2);
    assert_eq!(server.signal_total("pay", "on", "complaint").await, 1);
    assert_eq!(server.signal_total("pay", "off", "complaint").await, 0);
    client.shutdown().await;
}

/// `POST /api/v1/signals` answers counted from `/metrics`, by status.
async fn signal_posts(server: &Server, status: u16) -> u64 {
    let text = server
        .admin(reqwest::Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| {
            l.starts_with("rollgate_http_requests_total{")
                && l.contains(r#"route="/api/v1/signals""#)
                && l.contains(&format!(r#"status="{status}""#))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_waited_out_and_every_signal_still_arrives_exactly() {
    // 4 signals per second, bursts of 8: a first batch of 12 series passes on the full bucket
    // and leaves it in debt, so the second batch of 12 is refused until the refill.
    let server = spawn_server_with(|c| c.timing.signals_per_second = 4).await;
    server.put_flag(bool_flag("limited", 0.0)).await;
    let client = server
        .sdk("limited")
        .await
        .flush_interval(Duration::from_millis(20))
        .connect()
        .await
        .unwrap();
    let started = Instant::now();
    for round in 0..2u64 {
        for m in 0..12 {
            client.report_variant(
                "limited",
                "off",
                &format!("metric_{}", round * 12 + m),
                Measure::Count(m + 1),
            );
        }
        let mut arrived = 0;
        let deadline = Instant::now() + Duration::from_secs(20);
        while arrived < 12 {
            assert!(
                Instant::now() < deadline,
                "round {round}: only {arrived} of 12 series arrived"
            );
            arrived = 0;
            for m in 0..12u64 {
                let metric = format!("metric_{}", round * 12 + m);
                if server.signal_total("limited", "off", &metric).await == m + 1 {
                    arrived += 1;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let elapsed = started.elapsed();
    let limited = signal_posts(&server, 429).await;
    assert!(limited >= 1, "the server never rate limited the client");
    // At a 20 ms flush interval, ignoring Retry-After (≥ 1 s) would mean ~50 refusals a second.
    let bound = elapsed.as_secs() + 2;
    assert!(
        limited <= bound,
        "{limited} refusals in {elapsed:?}: Retry-After not honoured"
    );
    assert_eq!(client.status().dropped_signals, 0);
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pending_store_drops_and_counts_new_series_and_keeps_aggregating_old_ones() {
    let server = spawn_server().await;
    server.put_flag(bool_flag("bounded", 0.0)).await;
    let client = server
        .sdk("bounded")
        .await
        .max_pending_series(3)
        .flush_interval(Duration::from_secs(3600))
        .connect()
        .await
        .unwrap();
    for m in ["a", "b", "c", "d", "e"] {
        client.report_variant("bounded", "off", m, Measure::Count(10));
    }
    client.report_variant("bounded", "off", "a", Measure::Count(5)); // an existing series: kept
    assert_eq!(client.status().dropped_signals, 20);
    client.flush().await;
    assert_eq!(server.signal_total("bounded", "off", "a").await, 15);
    assert_eq!(server.signal_total("bounded", "off", "c").await, 10);
    assert_eq!(server.signal_total("bounded", "off", "d").await, 0);
    // Sent series free their places.
    client.report_variant("bounded", "off", "d", Measure::Count(1));
    client.flush().await;
    assert_eq!(server.signal_total("bounded", "off", "d").await, 1);
    assert_eq!(client.status().dropped_signals, 20);
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_are_attributed_to_the_release_audience_that_decided() {
    let server = spawn_server().await;
    server
        .put_segment(json!({"key": "innovation",
            "when": [{"attribute": "tier", "op": "in", "values": ["innovation"]}]}))
        .await;
    server
        .put_segment(json!({"key": "seniors",
            "when": [{"attribute": "age", "op": "gte", "values": [60]}]}))
        .await;
    let mut flag = bool_flag("qr", 20.0);
    flag["audiences"] = json!([{"segment": "seniors", "rollout": 0},
        {"segment": "innovation", "rollout": 100}]);
    server.put_flag(flag).await;
    let client = server
        .sdk("audiences")
        .await
        .flush_interval(Duration::from_secs(3600))
        .connect()
        .await
        .unwrap();

    let mut want = std::collections::BTreeMap::<(String, Option<String>), u64>::new();
    let mut complaints = want.clone();
    for i in 0..600 {
        let mut user = json!({"targetingKey": format!("user-{i}")});
        if i % 3 == 0 {
            user["tier"] = json!("innovation");
        }
        if i % 8 == 0 {
            user["age"] = json!(70);
        }
        let user = ctx(user);
        let flags = client.flags();
        let served = flags.evaluate("qr", &user).unwrap();
        let cohort = (
            served.variant.to_string(),
            served.audience.map(str::to_string),
        );
        *want.entry(cohort.clone()).or_default() += 1;
        if i % 7 == 0 {
            client.complaint_for("qr", &user);
            *complaints.entry(cohort).or_default() += 1;
        }
    }
    let cohort = |v: &str, a: Option<&str>| (v.to_string(), a.map(str::to_string));
    assert!(
        want.contains_key(&cohort("on", Some("innovation"))),
        "{want:?}"
    );
    assert!(
        want.contains_key(&cohort("off", Some("seniors"))),
        "{want:?}"
    );
    assert!(
        !want.contains_key(&cohort("on", Some("seniors"))),
        "{want:?}"
    );
    client.flush().await;

    for ((variant, audience), n) in &want {
        let got = server
            .audience_total("qr", variant, audience.as_deref(), "exposure")
            .await;
        assert_eq!(got, *n, "exposures of {variant}/{audience:?}");
    }
    for ((variant, audience), n) in &complaints {
        let got = server
            .audience_total("qr", variant, audience.as_deref(), "complaint")
            .await;
        assert_eq!(got, *n, "complaints of {variant}/{audience:?}");
    }
}
