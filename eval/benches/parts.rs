//! Where the single-flag time goes: each piece of the 3-rules-and-a-rollout flag on its own.
//!
//! Run: `cargo bench -p rollgate-eval --bench parts -- --warm-up-time 1 --measurement-time 3`
#![allow(clippy::unwrap_used, clippy::expect_used)] // test and bench code may panic on a broken fixture

mod common;

use common::{context, flag, segment_rule, segments, semver_rule, tier_rule};
use criterion::{criterion_group, criterion_main, Criterion};
use rollgate_eval::{bucket, compile_flag};
use serde_json::json;
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let ctx = context();
    let segments = segments();
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
        ("parts/in rule + rollout", json!([tier_rule()])),
        ("parts/semver rule + rollout", json!([semver_rule()])),
        ("parts/segment rule + rollout", json!([segment_rule()])),
    ];
    for (name, rules) in cases {
        let f = compile_flag(&flag("qr-ordering", 25.0, rules), &segments).expect("compiles");
        c.bench_function(name, |b| {
            b.iter(|| black_box(f.evaluate(black_box(&ctx))).is_ok())
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
