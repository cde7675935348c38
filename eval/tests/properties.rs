//! The cohort-bucketing consequences that the product contract says "must hold and be tested",
//! as properties and as counts over large, fixed populations.
//!
//! The population tests are deterministic (fixed keys, seeded generator), so their bounds are
//! checked once and never flake; the bounds are still the statistical ones a fair hash must meet
//! (for 100,000 users at 50 % the standard deviation is 158 users, so ±500 is about 3σ).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test and bench code may panic on a broken fixture

use proptest::prelude::*;
use proptest::sample::select;
use rollgate_eval::{
    compile_flag, in_rollout, targeting_key, CompiledFlag, Context, EvalError, FlagDef, Percentage,
    Reason, SegmentDef, Snapshot, TARGETING_KEY,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::OnceLock;

// ---------------------------------------------------------------------------------------------
// Fixtures.

fn segments() -> BTreeMap<String, SegmentDef> {
    let seniors: SegmentDef = serde_json::from_value(
        json!({"key": "seniors", "when": [{"attribute": "age", "op": "gte", "values": [60]}]}),
    )
    .expect("valid segment");
    BTreeMap::from([("seniors".to_string(), seniors)])
}

fn compile(def: Value) -> CompiledFlag {
    let def: FlagDef = serde_json::from_value(def).expect("valid flag JSON");
    compile_flag(&def, &segments()).expect("flag compiles")
}

/// A boolean flag ramping `on` to `rollout` % of everyone (salted with its key unless `salt`).
fn ramp(key: &str, salt: Option<&str>, rollout: Percentage) -> CompiledFlag {
    let mut def = json!({
        "key": key, "type": "boolean", "variants": {"off": false, "on": true},
        "off_variant": "off", "on_variant": "on", "rollout": rollout.as_f64(),
    });
    if let Some(salt) = salt {
        def["salt"] = json!(salt);
    }
    compile(def)
}

/// The contract's example flag: two rules and a fallthrough rollout.
fn targeted_ramp(rollout: Percentage, rule_rollout: Percentage) -> FlagDef {
    serde_json::from_value(json!({
        "key": "qr-ordering", "type": "boolean", "variants": {"off": false, "on": true},
        "off_variant": "off", "on_variant": "on", "rollout": rollout.as_f64(),
        "rules": [
            {"when": [{"attribute": "tier", "op": "in", "values": ["innovation"]}], "variant": "on"},
            {"when": [{"segment": "seniors"}], "variant": "off"},
            {"when": [{"attribute": "country", "op": "in", "values": ["NL"]}], "rollout": rule_rollout.as_f64()},
        ],
    }))
    .expect("valid flag JSON")
}

fn context(value: Value) -> Context {
    match value {
        Value::Object(map) => map,
        other => panic!("a context is a JSON object, not {other}"),
    }
}

fn percent(millis: u32) -> Percentage {
    Percentage::from_millis(millis).expect("at most 100 %")
}

fn is_on(flag: &CompiledFlag, ctx: &Context) -> bool {
    let served = flag.evaluate(ctx).expect("context has a targetingKey");
    served.variant == "on"
}

/// `user-0` … `user-{n-1}`.
fn sequential_keys(n: usize) -> impl Iterator<Item = String> {
    (0..n).map(|i| format!("user-{i}"))
}

/// `n` UUID-v4-shaped keys from a seeded SplitMix64, the same on every run and platform.
fn uuid_keys(n: usize, seed: u64) -> impl Iterator<Item = String> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    (0..n).map(move |_| {
        let (a, b) = (next(), next());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | ((b >> 48) & 0x3fff),
            b & 0xffff_ffff_ffff
        )
    })
}

/// Which of `keys` each flag serves `on`, as one bit vector per flag.
fn cohorts(flags: &[&CompiledFlag], keys: impl Iterator<Item = String>) -> Vec<Vec<bool>> {
    let mut out = vec![Vec::new(); flags.len()];
    let mut ctx = Context::new();
    for key in keys {
        ctx.insert(TARGETING_KEY.into(), Value::String(key));
        for (flag, cohort) in flags.iter().zip(&mut out) {
            cohort.push(is_on(flag, &ctx));
        }
    }
    out
}

fn count(cohort: &[bool]) -> usize {
    cohort.iter().filter(|&&on| on).count()
}

fn overlap(a: &[bool], b: &[bool]) -> usize {
    a.iter().zip(b).filter(|(&x, &y)| x && y).count()
}

// ---------------------------------------------------------------------------------------------
// Determinism and monotonicity, for arbitrary salts, keys and percentages.

fn attribute_context() -> impl Strategy<Value = Context> {
    (
        "\\PC{1,40}",
        select(vec!["innovation", "gold", "free"]),
        0u32..100,
        select(vec!["NL", "DE", "BE"]),
    )
        .prop_map(|(key, tier, age, country)| {
            context(json!({ TARGETING_KEY: key, "tier": tier, "age": age, "country": country }))
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_same_input_always_gets_the_same_answer(
        ctx in attribute_context(),
        rollout in 0u32..=100_000,
        rule_rollout in 0u32..=100_000,
    ) {
        let def = targeted_ramp(percent(rollout), percent(rule_rollout));
        let flag = compile_flag(&def, &segments()).expect("flag compiles");
        // What the server does after a restart: the stored JSON, parsed and compiled again.
        let stored: FlagDef = serde_json::from_str(&serde_json::to_string(&def).expect("serializes"))
            .expect("parses back");
        let recompiled = compile_flag(&stored, &segments()).expect("flag compiles");
        let snapshot = Snapshot::compile([&stored], &segments());
        let from_snapshot = snapshot.get("qr-ordering").expect("flag is in the snapshot");

        let first = flag.evaluate(&ctx);
        prop_assert_eq!(first, flag.evaluate(&ctx));
        prop_assert_eq!(first, recompiled.evaluate(&ctx));
        prop_assert_eq!(first, from_snapshot.evaluate(&ctx));
    }

    #[test]
    fn raising_a_percentage_only_adds_users(
        salt in "\\PC{0,64}",
        key in "\\PC{0,64}",
        a in 0u32..=100_000,
        b in 0u32..=100_000,
    ) {
        let (low, high) = (percent(a.min(b)), percent(a.max(b)));
        prop_assert!(!in_rollout(&salt, &key, low) || in_rollout(&salt, &key, high));
    }

    #[test]
    fn a_user_served_on_at_a_lower_rollout_is_served_on_at_any_higher_one(
        ctx in attribute_context(),
        a in 0u32..=100_000,
        b in 0u32..=100_000,
    ) {
        let (low, high) = (percent(a.min(b)), percent(a.max(b)));
        // Both the fallthrough and the rule's own rollout are raised together.
        let low_flag = compile_flag(&targeted_ramp(low, low), &segments()).expect("flag compiles");
        let high_flag = compile_flag(&targeted_ramp(high, high), &segments()).expect("flag compiles");

        prop_assert!(!is_on(&low_flag, &ctx) || is_on(&high_flag, &ctx));
    }
}

// ---------------------------------------------------------------------------------------------
// Ramps and rollbacks over a fixed population.

#[test]
fn each_stage_cohort_contains_the_previous_one_and_a_new_ramp_brings_back_the_same_users() {
    let stages =
        [1_000, 5_000, 25_000, 50_000, 100_000].map(|m| ramp("qr-ordering", None, percent(m)));
    let rolled_back = ramp("qr-ordering", None, Percentage::ZERO);
    let ramped_again = ramp("qr-ordering", None, percent(5_000));

    let flags: Vec<&CompiledFlag> = stages.iter().chain([&rolled_back, &ramped_again]).collect();
    let result = cohorts(&flags, sequential_keys(20_000));
    let (stage_cohorts, after) = result.split_at(stages.len());

    for pair in stage_cohorts.windows(2) {
        assert_eq!(
            overlap(&pair[0], &pair[1]),
            count(&pair[0]),
            "a stage dropped users of the previous stage"
        );
        assert!(count(&pair[1]) > count(&pair[0]));
    }
    assert_eq!(
        count(&after[0]),
        0,
        "a rollback to 0 % serves nobody the new variant"
    );
    assert_eq!(
        after[1], stage_cohorts[1],
        "the new 5 % ramp is the old 5 % cohort"
    );
}

// ---------------------------------------------------------------------------------------------
// Distribution.

#[test]
fn a_fifty_percent_rollout_serves_half_of_sequential_user_ids_within_half_a_percent() {
    let flag = ramp("qr-ordering", None, percent(50_000));

    let on = count(&cohorts(&[&flag], sequential_keys(100_000))[0]);

    assert!((49_500..=50_500).contains(&on), "{on} of 100,000 on");
}

#[test]
fn a_fifty_percent_rollout_serves_half_of_random_uuids_within_half_a_percent() {
    let flag = ramp("checkout.new-flow", None, percent(50_000));

    let on = count(&cohorts(&[&flag], uuid_keys(100_000, 2024))[0]);

    assert!((49_500..=50_500).contains(&on), "{on} of 100,000 on");
}

#[test]
fn two_flags_with_their_own_salts_pick_independent_cohorts() {
    let payments = ramp("payments-v2", None, percent(30_000));
    let search = ramp("search-v2", None, percent(30_000));

    let result = cohorts(&[&payments, &search], sequential_keys(100_000));

    // Independent 30 % cohorts share 30 % × 30 % = 9 % of users.
    let both = overlap(&result[0], &result[1]);
    assert!(
        (8_500..=9_500).contains(&both),
        "{both} of 100,000 in both cohorts"
    );
}

#[test]
fn two_flags_with_a_shared_cohort_salt_pick_the_same_users() {
    let points = ramp("points", Some("membership-v2"), percent(30_000));
    let wallet = ramp("wallet", Some("membership-v2"), percent(30_000));

    let result = cohorts(&[&points, &wallet], uuid_keys(100_000, 7));

    let on = count(&result[0]);
    assert!((29_500..=30_500).contains(&on), "{on} of 100,000 on");
    assert_eq!(
        result[0], result[1],
        "a shared salt must give identical cohorts"
    );
}

#[test]
fn a_thousandth_of_a_percent_serves_about_one_user_in_a_hundred_thousand() {
    let canary = ramp(
        "canary",
        None,
        Percentage::from_f64(0.001).expect("valid percentage"),
    );
    let nobody = ramp("canary", None, Percentage::ZERO);

    let result = cohorts(&[&canary, &nobody], sequential_keys(1_000_000));

    let on = count(&result[0]);
    assert!(
        (3..=25).contains(&on),
        "{on} of 1,000,000 on (expected about 10)"
    );
    assert_eq!(
        count(&result[1]),
        0,
        "0 % serves nobody, so 0.001 % is a real step"
    );
}

// ---------------------------------------------------------------------------------------------
// Robustness: arbitrary contexts against a flag that uses every operator.

/// A flag with one rule per operator (plus a segment and rule rollouts) and a 50 % fallthrough,
/// compiled once: building its regular expressions thousands of times would dominate the test.
fn every_operator_flag() -> &'static CompiledFlag {
    static FLAG: OnceLock<CompiledFlag> = OnceLock::new();
    FLAG.get_or_init(compile_every_operator_flag)
}

fn compile_every_operator_flag() -> CompiledFlag {
    let rule = |attribute: &str, op: &str, values: Value| json!({"when": [{"attribute": attribute, "op": op, "values": values}], "variant": "beta"});
    compile(json!({
        "key": "every-operator", "type": "string",
        "variants": {"stable": "stable", "beta": "beta", "new": "new"},
        "off_variant": "stable", "on_variant": "new", "rollout": 50,
        "rules": [
            rule("tier", "eq", json!(["gold", 1, true, null])),
            rule("tier", "neq", json!(["free"])),
            rule("country", "in", json!(["NL", "BE"])),
            rule("country", "not_in", json!(["DE"])),
            rule("age", "lt", json!([18])),
            rule("age", "lte", json!([18.5])),
            rule("score", "gt", json!([0.5])),
            rule("score", "gte", json!([-3])),
            rule("app_version", "semver_lt", json!(["2.0.0"])),
            rule("app_version", "semver_lte", json!(["2.1"])),
            rule("app_version", "semver_gt", json!(["v3.0.0-rc.1"])),
            rule("app_version", "semver_gte", json!(["10.0.0+build"])),
            rule("email", "starts_with", json!(["admin@", ""])),
            rule("email", "ends_with", json!(["@example.com"])),
            rule("email", "contains", json!(["+"])),
            rule("email", "matches", json!(["^[a-z]+@", "(?i)ROOT"])),
            {"when": [{"segment": "seniors"}], "variant": "stable"},
            {"when": [{"attribute": TARGETING_KEY, "op": "starts_with", "values": ["qa-"]}], "rollout": 10},
        ],
    }))
}

const ATTRIBUTES: [&str; 8] = [
    TARGETING_KEY,
    "tier",
    "country",
    "age",
    "score",
    "app_version",
    "email",
    "other",
];

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from), // NaN and infinities become null, as in JSON.
        "\\PC{0,24}".prop_map(Value::String),
        "[ v]?[0-9]{1,20}(\\.[0-9]{0,3}){0,3}(-[a-z0-9.-]{0,8})?(\\+[a-z0-9.]{0,5})?"
            .prop_map(Value::String),
        "[ +-]?[0-9]{0,4}(\\.[0-9]{0,4})?(e[0-9]{1,3})?|NaN|inf|-inf".prop_map(Value::String),
        select(vec![
            "gold",
            "free",
            "NL",
            "DE",
            "admin@x",
            "qa-1",
            "2.0.0-rc.1",
            "60",
            ""
        ])
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(3, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("\\PC{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn any_context() -> impl Strategy<Value = Context> {
    let name =
        prop_oneof![3 => select(ATTRIBUTES.to_vec()).prop_map(String::from), 1 => "\\PC{0,12}"];
    prop::collection::btree_map(name, any_json(), 0..10).prop_map(|m| m.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_context_gets_a_variant_of_the_flag_or_a_targeting_key_error(ctx in any_context()) {
        let flag = every_operator_flag();

        let result = flag.evaluate(&ctx);

        match (result, targeting_key(&ctx)) {
            (Ok(e), Ok(_)) => {
                let (name, value) = &flag.variants()[e.variant_index];
                prop_assert_eq!(&**name, e.variant);
                prop_assert_eq!(value, e.value);
                prop_assert!(matches!(e.reason, Reason::TargetingMatch | Reason::Split));
            }
            (Err(EvalError::TargetingKeyMissing), Ok(None)) => {}
            (Err(EvalError::InvalidTargetingKey), Err(EvalError::InvalidTargetingKey)) => {}
            (result, key) => prop_assert!(false, "answer {result:?} for targetingKey {key:?}"),
        }
    }
}
