//! Where the single-flag time goes: each piece of the 3-rules-and-a-rollout flag on its own.
//!
//! Run: `cargo bench -p rollgate-eval --bench parts -- --warm-up-time 1 --measurement-time 3`

use criterion::{criterion_group, criterion_main, Criterion};
use rollgate_eval::{bucket, compile_flag, Context, FlagDef, SegmentDef};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::hint::black_box;

fn flag(rules: Value) -> FlagDef {
    serde_json::from_value(json!({
        "key": "qr-ordering", "type": "boolean", "variants": {"off": false, "on": true},
        "off_variant": "off", "on_variant": "on", "rollout": 25.0, "rules": rules,
    }))
    .expect("valid flag JSON")
}

fn context() -> Context {
    match json!({
        "targetingKey": "8f14e45f-ceea-467f-a0e6-4e5b2c6a1b7d",
        "tier": "standard", "app_version": "3.0.2", "age": 42, "country": "DE",
        "email": "someone@example.org", "platform": "android",
    }) {
        Value::Object(map) => map,
        _ => unreachable!("built as an object"),
    }
}

fn bench(c: &mut Criterion) {
    let ctx = context();
    let segments: BTreeMap<String, SegmentDef> = [(
        "seniors".to_string(),
        serde_json::from_value(
            json!({"key": "seniors", "when": [{"attribute": "age", "op": "gte", "values": [60]}]}),
        )
        .expect("valid segment"),
    )]
    .into_iter()
    .collect();
    c.bench_function("parts/bucket only", |b| {
        b.iter(|| {
            bucket(
                black_box("qr-ordering"),
                black_box("8f14e45f-ceea-467f-a0e6-4e5b2c6a1b7d"),
            )
        })
    });
    let cases = [
        ("parts/rollout only", json!([])),
        (
            "parts/in rule + rollout",
            json!([{"when": [{"attribute": "tier", "op": "in", "values": ["innovation", "beta-testers"]}], "variant": "on"}]),
        ),
        (
            "parts/semver rule + rollout",
            json!([{"when": [{"attribute": "app_version", "op": "semver_gte", "values": ["3.1.0"]}], "variant": "on"}]),
        ),
        (
            "parts/segment rule + rollout",
            json!([{"when": [{"segment": "seniors"}], "variant": "off"}]),
        ),
    ];
    for (name, rules) in cases {
        let f = compile_flag(&flag(rules), &segments).expect("compiles");
        c.bench_function(name, |b| {
            b.iter(|| black_box(f.evaluate(black_box(&ctx))).is_ok())
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
