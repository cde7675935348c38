//! The fast OFREP writers against a plain serde serialization of the same results (issue 15):
//! random flag sets (every type; static, rule, split, disabled, default and audience answers),
//! random contexts (with, without and with a bad targeting key) and revisions. The bulk answer
//! and its ETag, and every single answer, must be the same bytes.

use super::*;
use crate::live::Live;
use crate::ofrep_wire::reference::{Entry, Failure, Metadata, Success};
use proptest::prelude::*;
use rollgate_eval::{FlagDef, SegmentDef};
use serde_json::Value;
use std::collections::BTreeMap;

fn entry<'a>(key: &'a str, result: Result<Evaluation<'a>, EvalError>, revision: u64) -> Entry<'a> {
    match result {
        Ok(e) => Entry::Ok(Success {
            key,
            value: e.value,
            reason: e.reason.as_str(),
            variant: e.variant,
            metadata: Metadata {
                revision,
                audience: e.audience,
            },
        }),
        Err(err) => Entry::Err(Failure {
            key: Some(key),
            error_code: eval_error_code(err),
            error_details: err.to_string().into(),
        }),
    }
}

/// The bulk answer as serde writes it: `{"flags":[…]`.
fn plain_bulk(live: &Live, context: &Prepared<'_>) -> Vec<u8> {
    let entries: Vec<Entry<'_>> = live
        .flags()
        .iter()
        .map(|f| {
            entry(
                &f.def.key,
                f.compiled.evaluate_prepared(context),
                live.revision,
            )
        })
        .collect();
    let mut out = b"{\"flags\":".to_vec();
    serde_json::to_writer(&mut out, &entries).unwrap();
    out
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z]{1,6}", "[\"\\\\\\x00-\\x1f é☃😀a-z]{0,10}"]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
    ]
}

fn object() -> impl Strategy<Value = Value> {
    prop::collection::vec(
        (text(), prop_oneof![text().prop_map(Value::from), number()]),
        0..3,
    )
    .prop_map(|kv| Value::Object(kv.into_iter().collect()))
}

/// Two values of one flag type: `(type, off, on)`.
fn typed_values() -> impl Strategy<Value = (&'static str, Value, Value)> {
    prop_oneof![
        Just(("boolean", Value::Bool(false), Value::Bool(true))),
        (text(), text()).prop_map(|(a, b)| ("string", Value::from(a), Value::from(b))),
        (number(), number()).prop_map(|(a, b)| ("number", a, b)),
        (object(), object()).prop_map(|(a, b)| ("object", a, b)),
    ]
}

/// A flag with one of the shapes that give each reason (and the audience metadata).
fn flag(i: usize) -> impl Strategy<Value = FlagDef> {
    (
        typed_values(),
        0..6u8,
        any::<bool>(),
        prop_oneof![Just(0.0), Just(100.0), (0..100_000u32).prop_map(|m| f64::from(m) / 1000.0)],
    )
        .prop_map(move |((kind, off, on), shape, enabled, rollout)| {
            let mut def = serde_json::json!({
                "key": format!("flag-{i}"),
                "type": kind,
                "variants": {"off": off, "on \"quoted\"": on},
                "off_variant": "off",
                "on_variant": "on \"quoted\"",
                "enabled": enabled,
                "rollout": rollout,
            });
            match shape {
                1 => def["rules"] = serde_json::json!([
                    {"when": [{"attribute": "tier", "op": "in", "values": ["beta"]}], "variant": "on \"quoted\""}
                ]),
                2 => def["rules"] = serde_json::json!([
                    {"when": [{"segment": "eu"}], "rollout": 50}
                ]),
                3 => def["audiences"] = serde_json::json!([{"segment": "eu", "rollout": rollout}]),
                4 => def["rollout"] = serde_json::json!(100),
                _ => {}
            }
            serde_json::from_value(def).expect("a valid flag")
        })
}

fn flag_set() -> impl Strategy<Value = Vec<FlagDef>> {
    (0..12usize).prop_flat_map(|n| (0..n).map(flag).collect::<Vec<_>>())
}

fn context() -> impl Strategy<Value = Context> {
    (
        prop_oneof![
            Just(None),
            Just(Some(Value::from(""))),
            Just(Some(Value::Null)),
            Just(Some(Value::from(42))),
            "user-[0-9]{1,6}".prop_map(|k| Some(Value::from(k))),
        ],
        prop::sample::select(vec!["beta", "basic"]),
        prop::sample::select(vec!["de", "us"]),
    )
        .prop_map(|(key, tier, country)| {
            let mut c = Context::new();
            if let Some(key) = key {
                c.insert("targetingKey".into(), key);
            }
            c.insert("tier".into(), tier.into());
            c.insert("country".into(), country.into());
            c
        })
}

fn segments() -> BTreeMap<String, SegmentDef> {
    let eu: SegmentDef = serde_json::from_value(serde_json::json!({
        "key": "eu",
        "when": [{"attribute": "country", "op": "in", "values": ["de", "fr"]}]
    }))
    .unwrap();
    BTreeMap::from([("eu".to_owned(), eu)])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn answers_are_the_bytes_serde_writes(
        flags in flag_set(),
        contexts in prop::collection::vec(context(), 1..4),
        revision in any::<u64>(),
    ) {
        let count = flags.len();
        let (mut live, broken) = Live::build(flags, segments());
        prop_assert!(broken.is_empty(), "{broken:?}");
        prop_assert_eq!(live.flags().len(), count);
        live.revision = revision;
        for context in &contexts {
            // Single: every flag, errors (a bad targeting key included) as well as answers.
            for flag in live.flags() {
                let result = Prepared::single(context).and_then(|c| flag.compiled.evaluate_prepared(&c));
                let mut fast = Vec::new();
                match result {
                    Ok(e) => ofrep_wire::write_success(&mut fast, &flag.wire, &e, revision),
                    Err(err) => ofrep_wire::write_failure(
                        &mut fast,
                        Some(&flag.def.key),
                        eval_error_code(err),
                        &err.to_string(),
                    ),
                }
                let plain = serde_json::to_vec(&entry(&flag.def.key, result, revision)).unwrap();
                prop_assert_eq!(String::from_utf8_lossy(&fast), String::from_utf8_lossy(&plain));
            }
            // Bulk: a bad targeting key is refused before evaluation.
            let Ok(prepared) = Prepared::new(context) else { continue };
            let (fast, etag) = evaluate_into_buffer(&live, &prepared);
            let plain = plain_bulk(&live, &prepared);
            prop_assert_eq!(String::from_utf8_lossy(&fast), String::from_utf8_lossy(&plain));
            prop_assert_eq!(etag, crate::etag(&plain[b"{\"flags\":".len()..]));
        }
    }
}

/// The shapes above reach every reason, the audience metadata and the missing-key error
/// (so the comparison above covers them, not by luck of the draw).
#[test]
fn the_generated_shapes_reach_every_reason_and_error() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..400 {
        let flags = flag_set().new_tree(&mut runner).unwrap().current();
        let context = context().new_tree(&mut runner).unwrap().current();
        let (live, _) = Live::build(flags, segments());
        let Ok(prepared) = Prepared::new(&context) else {
            seen.insert("INVALID_CONTEXT".to_owned());
            continue;
        };
        for flag in live.flags() {
            match flag.compiled.evaluate_prepared(&prepared) {
                Ok(e) => {
                    seen.insert(e.reason.as_str().to_owned());
                    if e.audience.is_some() {
                        seen.insert("audience".to_owned());
                    }
                }
                Err(err) => {
                    seen.insert(eval_error_code(err).to_owned());
                }
            }
        }
    }
    let want = [
        "STATIC",
        "TARGETING_MATCH",
        "SPLIT",
        "DISABLED",
        "DEFAULT",
        "audience",
        "TARGETING_KEY_MISSING",
        "INVALID_CONTEXT",
    ];
    for w in want {
        assert!(seen.contains(w), "{w} never drawn: {seen:?}");
    }
}

#[test]
fn the_metrics_routes_are_the_registered_patterns() {
    assert_eq!(BULK_ROUTE, format!("{SCOPE}{BULK}"));
    assert_eq!(SINGLE_ROUTE, format!("{SCOPE}{SINGLE}"));
    assert_eq!(route_of("/ofrep/v1/evaluate/flags"), Some(BULK_ROUTE));
    assert_eq!(route_of("/ofrep/v1/evaluate/flags/a/b"), Some(SINGLE_ROUTE));
    assert_eq!(route_of("/ofrep/v1/evaluate/flags/"), Some(SINGLE_ROUTE));
    assert_eq!(route_of("/ofrep/v1/evaluate/flagsx"), None);
    assert_eq!(route_of("/api/v1/flags"), None);
}
