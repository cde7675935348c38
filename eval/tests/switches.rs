//! `CompiledFlag::with_switches` serves exactly what compiling the changed definition serves:
//! the kill switch and rollout are plain values of the compiled flag.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code may panic on a broken fixture

use proptest::prelude::*;
use rollgate_eval::{compile_flag, Context, FlagDef, Percentage, SegmentDef};
use serde_json::json;
use std::collections::BTreeMap;

fn flag(enabled: bool, rollout: f64) -> FlagDef {
    serde_json::from_value(json!({
        "key": "qr-ordering", "type": "string",
        "variants": {"old": "a", "new": "b", "beta": "c"},
        "off_variant": "old", "on_variant": "new", "enabled": enabled, "rollout": rollout,
        "rules": [
            {"when": [{"attribute": "tier", "op": "in", "values": ["innovation"]}], "variant": "beta"},
            {"when": [{"segment": "seniors"}], "variant": "old"},
            {"when": [{"attribute": "name", "op": "matches", "values": ["^ann?a$"]}], "rollout": 50.0}
        ]
    }))
    .unwrap()
}

fn segments() -> BTreeMap<String, SegmentDef> {
    let seniors: SegmentDef = serde_json::from_value(
        json!({"key": "seniors", "when": [{"attribute": "age", "op": "gte", "values": [60]}]}),
    )
    .unwrap();
    BTreeMap::from([("seniors".to_owned(), seniors)])
}

fn context(user: u32, tier: &str, age: u32, name: &str) -> Context {
    json!({"targetingKey": format!("user-{user}"), "tier": tier, "age": age, "name": name})
        .as_object()
        .unwrap()
        .clone()
}

proptest! {
    #[test]
    fn switching_a_compiled_flag_serves_what_compiling_the_switched_definition_serves(
        from_enabled in any::<bool>(), from_rollout in 0u32..=100_000,
        to_enabled in any::<bool>(), to_rollout in 0u32..=100_000,
    ) {
        let segments = segments();
        let pct = |millis: u32| f64::from(millis) / 1000.0;
        let before = flag(from_enabled, pct(from_rollout));
        let after = flag(to_enabled, pct(to_rollout));
        prop_assert!(before.differs_only_in_switches(&after));
        let switched = compile_flag(&before, &segments)
            .unwrap()
            .with_switches(after.enabled, Percentage::from_f64(pct(to_rollout)).unwrap());
        let compiled = compile_flag(&after, &segments).unwrap();
        for user in 0..300u32 {
            let tier = ["basic", "innovation"][(user % 2) as usize];
            let name = ["ann", "bob", "anna"][(user % 3) as usize];
            let ctx = context(user, tier, 20 + user % 60, name);
            let a = switched.evaluate(&ctx).map(|e| (e.variant_index, e.reason));
            let b = compiled.evaluate(&ctx).map(|e| (e.variant_index, e.reason));
            prop_assert_eq!(format!("{a:?}"), format!("{b:?}"));
        }
    }
}

#[test]
fn anything_but_the_switches_is_a_real_change() {
    let base = flag(true, 10.0);
    let mut salted = base.clone();
    salted.salt = Some("shared".into());
    let mut ruled = base.clone();
    ruled.rules.pop();
    let mut described = base.clone();
    described.description = Some("docs only".into());
    described.policy = Some("checkout".into());
    assert!(!base.differs_only_in_switches(&salted));
    assert!(!base.differs_only_in_switches(&ruled));
    assert!(base.differs_only_in_switches(&described));
}
