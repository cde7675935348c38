//! Evaluating a boolean flag with a rollout and three rules through the SDK, recording its
//! exposure included, performs no heap allocation (`Client::bool_value`).
//!
//! A counting global allocator counts each thread's allocations separately (as in
//! `eval/tests/no_alloc.rs`), so the server and the SDK's background tasks running on other
//! threads cannot disturb the count.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on a broken fixture

use rollgate::config::Config;
use rollgate::startup::Application;
use rollgate_client::{Client, Context};
use serde_json::json;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;

struct CountingAllocator;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn note_allocation() {
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; counting has no effect on it.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn allocations_during(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(Cell::get) - before
}

const ADMIN: &str = "no-alloc-admin-token-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evaluating_and_recording_a_flag_with_a_rollout_and_three_rules_allocates_nothing() {
    let data = tempfile::tempdir().unwrap();
    let mut config = Config::defaults();
    config.bind = "127.0.0.1:0".into();
    config.data_dir = data.path().join("data");
    config.policies_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../policies").into();
    config.admin_token = Some(ADMIN.into());
    config.workers = 1;
    let app = Application::build(config).await.unwrap();
    let base = app.url();
    tokio::spawn(app.run_until_stopped());
    let http = reqwest::Client::new();
    let put = |path: String, body: serde_json::Value| {
        http.put(format!("{base}{path}"))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
    };
    assert!(put(
        "/api/v1/segments/seniors".into(),
        json!({"key": "seniors", "when": [{"attribute": "age", "op": "gte", "values": [60]}]})
    )
    .await
    .unwrap()
    .status()
    .is_success());
    assert!(put("/api/v1/flags/qr-ordering".into(), json!({
        "key": "qr-ordering", "type": "boolean", "variants": {"off": false, "on": true},
        "off_variant": "off", "on_variant": "on", "rollout": 25,
        "rules": [
            {"when": [{"attribute": "tier", "op": "in", "values": ["innovation", "beta-testers"]}], "variant": "on"},
            {"when": [{"attribute": "app_version", "op": "semver_gte", "values": ["3.1.0"]}], "variant": "on"},
            {"when": [{"segment": "seniors"}], "variant": "off"},
        ],
    })).await.unwrap().status().is_success());
    let token: serde_json::Value = http
        .post(format!("{base}/api/v1/tokens"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "no-alloc", "role": "client"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let client = Client::builder(&base, token["token"].as_str().unwrap())
        .flush_interval(std::time::Duration::from_secs(3600))
        .connect()
        .await
        .unwrap();
    assert!(client.status().ready);

    let tiers = ["innovation", "gold", "free"];
    let versions = ["2.9.1", "3.0.0", "3.2.0-beta.1", "v4.1", "garbage"];
    let contexts: Vec<Context> = (0..10_000)
        .map(|i| {
            match json!({"targetingKey": format!("user-{i}"), "tier": tiers[i % 3],
            "app_version": versions[i % 5], "age": (i * 7) % 90, "country": "NL"})
            {
                serde_json::Value::Object(map) => map,
                _ => unreachable!(),
            }
        })
        .collect();
    // Each thread's first use of the snapshot pointer registers it with arc-swap (once per
    // thread); that and nothing else happens before counting.
    for ctx in contexts.iter().take(10) {
        black_box(client.bool_value("qr-ordering", ctx, false));
    }
    let mut on = 0usize;

    let allocations = allocations_during(|| {
        for ctx in &contexts {
            on += usize::from(client.bool_value("qr-ordering", black_box(ctx), false));
        }
    });

    assert_eq!(
        allocations, 0,
        "{allocations} allocations over 10,000 evaluations"
    );
    assert!(
        on > 2_000 && on < 8_000,
        "{on} of 10,000 on: rules and rollout both exercised"
    );
    // And every one of them was recorded as an exposure.
    client.flush().await;
    let metrics = http
        .get(format!("{base}/metrics"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let total = |variant: &str| -> u64 {
        let series = format!(
            r#"rollgate_signals_total{{flag="qr-ordering",variant="{variant}",metric="exposure"}} "#
        );
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&series))
            .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
    };
    assert_eq!(total("on") + total("off"), 10_010);
    assert_eq!(
        total("on"),
        on as u64
            + contexts
                .iter()
                .take(10)
                .filter(|c| client.flags().variant_for("qr-ordering", c) == Some("on"))
                .count() as u64
    );
    client.shutdown().await;
}
