//! Evaluation cost, the number that bounds OFREP latency and client overhead.
//!
//! Targets: one flag with three rules and a rollout, in its worst case (every rule checked,
//! then the hash) ≤ 100 ns; all 50 flags of a mixed snapshot for one context ≤ 5 µs.
//!
//! Run: `cargo bench -p rollgate-eval -- --warm-up-time 1 --measurement-time 3`
#![allow(clippy::unwrap_used, clippy::expect_used)] // test and bench code may panic on a broken fixture

mod common;

use common::{context, flag, segments, three_rules_and_a_rollout};
use criterion::{criterion_group, criterion_main, Criterion};
use rollgate_eval::{compile_flag, FlagDef, Prepared, Snapshot};
use serde_json::{json, Value};
use std::hint::black_box;

/// Fifty flags shaped like a real release train: static flags, plain ramps, and ramps behind
/// list, version, segment, string, regex and numeric rules, some with their own rollout.
fn fifty_flags() -> Vec<FlagDef> {
    let shapes: [(f64, Value); 10] = [
        (100.0, json!([])),
        (25.0, json!([])),
        (
            5.0,
            json!([{"when": [{"attribute": "tier", "op": "in", "values": ["innovation", "gold"]}], "variant": "on"}]),
        ),
        (
            50.0,
            json!([{"when": [{"attribute": "app_version", "op": "semver_lt", "values": ["2.0.0"]}], "variant": "off"}]),
        ),
        (
            10.0,
            json!([{"when": [{"segment": "seniors"}], "variant": "off"}, {"when": [{"segment": "innovation"}], "variant": "on"}]),
        ),
        (
            1.0,
            json!([{"when": [{"segment": "nl-modern-app"}], "rollout": 50}]),
        ),
        (
            0.0,
            json!([{"when": [{"attribute": "email", "op": "ends_with", "values": ["@rollgate.dev"]}], "variant": "on"}]),
        ),
        (
            33.333,
            json!([{"when": [{"attribute": "email", "op": "matches", "values": ["^qa\\+.*@example\\.com$"]}], "variant": "on"}]),
        ),
        (
            75.0,
            json!([
                {"when": [{"attribute": "age", "op": "lt", "values": [18]}], "variant": "off"},
                {"when": [{"attribute": "country", "op": "not_in", "values": ["DE", "NL", "BE"]}, {"attribute": "platform", "op": "eq", "values": ["ios"]}], "variant": "off"},
            ]),
        ),
        (
            12.5,
            json!([
                {"when": [{"attribute": "platform", "op": "starts_with", "values": ["web"]}], "rollout": 100},
                {"when": [{"attribute": "country", "op": "in", "values": ["DE"]}], "rollout": 40},
            ]),
        ),
    ];
    (0..50)
        .map(|i| {
            let (rollout, rules) = &shapes[i % shapes.len()];
            flag(&format!("module-{i:02}"), *rollout, rules.clone())
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let segments = segments();
    let ctx = context();

    let single = compile_flag(&three_rules_and_a_rollout(), &segments).expect("flag compiles");
    c.bench_function("one flag, 3 rules missed, then the rollout", |b| {
        b.iter(|| black_box(single.evaluate(black_box(&ctx))).is_ok())
    });

    let snapshot = Snapshot::compile(&fifty_flags(), &segments);
    assert_eq!(
        snapshot.len(),
        50,
        "every bench flag compiles: {:?}",
        snapshot.broken()
    );
    c.bench_function("all 50 flags of a snapshot, one context", |b| {
        // As the server's bulk endpoint does: prepare the context once, then every flag.
        b.iter(|| {
            let ctx = black_box(&ctx);
            let Ok(prepared) = Prepared::new(ctx) else {
                return 0;
            };
            snapshot
                .flags()
                .iter()
                .filter(|f| matches!(f.evaluate_prepared(&prepared), Ok(e) if e.variant == "on"))
                .count()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
