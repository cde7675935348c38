//! Evaluation cost, the number that bounds OFREP latency and client overhead.
//!
//! Targets: one flag with three rules and a rollout, in its worst case (every rule checked,
//! then the hash) ≤ 100 ns; all 50 flags of a mixed snapshot for one context ≤ 5 µs.
//!
//! Run: `cargo bench -p rollgate-eval -- --warm-up-time 1 --measurement-time 3`

use criterion::{criterion_group, criterion_main, Criterion};
use rollgate_eval::{compile_flag, Context, FlagDef, Prepared, SegmentDef, Snapshot};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::hint::black_box;

fn segments() -> BTreeMap<String, SegmentDef> {
    [
        json!({"key": "seniors", "when": [{"attribute": "age", "op": "gte", "values": [60]}]}),
        json!({"key": "innovation", "when": [{"attribute": "tier", "op": "in", "values": ["innovation"]}]}),
        json!({"key": "nl-modern-app", "when": [
            {"attribute": "country", "op": "eq", "values": ["NL"]},
            {"attribute": "app_version", "op": "semver_gte", "values": ["3.0.0"]},
        ]}),
    ]
    .into_iter()
    .map(|s| {
        let s: SegmentDef = serde_json::from_value(s).expect("valid segment");
        (s.key.clone(), s)
    })
    .collect()
}

fn flag(key: &str, rollout: f64, rules: Value) -> FlagDef {
    serde_json::from_value(json!({
        "key": key, "type": "boolean", "variants": {"off": false, "on": true},
        "off_variant": "off", "on_variant": "on", "rollout": rollout, "rules": rules,
    }))
    .expect("valid flag JSON")
}

/// A typical OFREP context that matches none of the rules below.
fn context() -> Context {
    let ctx = json!({
        "targetingKey": "8f14e45f-ceea-467f-a0e6-4e5b2c6a1b7d",
        "tier": "standard",
        "app_version": "3.0.2",
        "age": 42,
        "country": "DE",
        "email": "someone@example.org",
        "platform": "android",
    });
    match ctx {
        Value::Object(map) => map,
        _ => unreachable!("built as an object"),
    }
}

fn three_rules_and_a_rollout() -> FlagDef {
    flag(
        "qr-ordering",
        25.0,
        json!([
            {"when": [{"attribute": "tier", "op": "in", "values": ["innovation", "beta-testers"]}], "variant": "on"},
            {"when": [{"attribute": "app_version", "op": "semver_gte", "values": ["3.1.0"]}], "variant": "on"},
            {"when": [{"segment": "seniors"}], "variant": "off"},
        ]),
    )
}

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
