//! The spread of the single-flag cost across many short batches, to tell the code's cost from
//! the machine's noise.
//!
//! Criterion reports a mean; on a shared VM the same loop runs in two speed modes (another
//! tenant on the sibling hyper-thread, frequency changes), so the mean moves by up to 1.7×
//! between runs. This prints the fastest batch (the cost on an uncontended core) and the
//! percentiles over 400 batches of 20,000 evaluations each.
//!
//! Run: `cargo bench -p rollgate-eval --bench spread`

use rollgate_eval::{compile_flag, Context, FlagDef, SegmentDef};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

const BATCHES: usize = 400;
const PER_BATCH: u32 = 20_000;

fn main() {
    let segments: BTreeMap<String, SegmentDef> = [(
        "seniors".to_string(),
        serde_json::from_value(
            json!({"key": "seniors", "when": [{"attribute": "age", "op": "gte", "values": [60]}]}),
        )
        .expect("valid segment"),
    )]
    .into_iter()
    .collect();
    // The same flag and context as `benches/evaluate.rs`.
    let def: FlagDef = serde_json::from_value(json!({
        "key": "qr-ordering", "type": "boolean", "variants": {"off": false, "on": true},
        "off_variant": "off", "on_variant": "on", "rollout": 25.0, "rules": [
            {"when": [{"attribute": "tier", "op": "in", "values": ["innovation", "beta-testers"]}], "variant": "on"},
            {"when": [{"attribute": "app_version", "op": "semver_gte", "values": ["3.1.0"]}], "variant": "on"},
            {"when": [{"segment": "seniors"}], "variant": "off"},
        ]
    }))
    .expect("valid flag JSON");
    let flag = compile_flag(&def, &segments).expect("flag compiles");
    let ctx: Context = match json!({
        "targetingKey": "8f14e45f-ceea-467f-a0e6-4e5b2c6a1b7d",
        "tier": "standard", "app_version": "3.0.2", "age": 42, "country": "DE",
        "email": "someone@example.org", "platform": "android",
    }) {
        Value::Object(map) => map,
        _ => unreachable!("built as an object"),
    };
    let mut batches: Vec<f64> = (0..BATCHES)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..PER_BATCH {
                black_box(flag.evaluate(black_box(&ctx)).is_ok());
            }
            started.elapsed().as_nanos() as f64 / f64::from(PER_BATCH)
        })
        .collect();
    batches.sort_by(f64::total_cmp);
    let at = |q: f64| batches[((batches.len() - 1) as f64 * q) as usize];
    println!(
        "one flag, 3 rules missed, then the rollout: min {:.1} ns, p10 {:.1}, median {:.1}, p90 {:.1} \
         ({BATCHES} batches of {PER_BATCH})",
        at(0.0),
        at(0.1),
        at(0.5),
        at(0.9)
    );
}
