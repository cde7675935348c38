//! The flag, segments and context that every evaluation bench measures, defined once.
//!
//! Each bench is its own crate and uses a subset, hence the `dead_code` allowance.
#![allow(dead_code)]

use rollgate_eval::{Context, FlagDef, SegmentDef};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// `seniors` (age ≥ 60), `innovation` (tier), `nl-modern-app` (country and app version).
pub fn segments() -> BTreeMap<String, SegmentDef> {
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

/// A boolean flag with `rollout` and `rules`.
pub fn flag(key: &str, rollout: f64, rules: Value) -> FlagDef {
    serde_json::from_value(json!({
        "key": key, "type": "boolean", "variants": {"off": false, "on": true},
        "off_variant": "off", "on_variant": "on", "rollout": rollout, "rules": rules,
    }))
    .expect("valid flag JSON")
}

/// The three rules of the single-flag target, each on its own.
pub fn tier_rule() -> Value {
    json!({"when": [{"attribute": "tier", "op": "in", "values": ["innovation", "beta-testers"]}], "variant": "on"})
}

/// See [`tier_rule`].
pub fn semver_rule() -> Value {
    json!({"when": [{"attribute": "app_version", "op": "semver_gte", "values": ["3.1.0"]}], "variant": "on"})
}

/// See [`tier_rule`].
pub fn segment_rule() -> Value {
    json!({"when": [{"segment": "seniors"}], "variant": "off"})
}

/// The single-flag target: three rules that the context misses, then a 25 % rollout.
pub fn three_rules_and_a_rollout() -> FlagDef {
    flag(
        "qr-ordering",
        25.0,
        json!([tier_rule(), semver_rule(), segment_rule()]),
    )
}

/// A typical OFREP context that matches none of the rules above.
pub fn context() -> Context {
    match json!({
        "targetingKey": "8f14e45f-ceea-467f-a0e6-4e5b2c6a1b7d",
        "tier": "standard",
        "app_version": "3.0.2",
        "age": 42,
        "country": "DE",
        "email": "someone@example.org",
        "platform": "android",
    }) {
        Value::Object(map) => map,
        _ => unreachable!("built as an object"),
    }
}
