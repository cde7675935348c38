//! Release audiences: the vectors in `tests/vectors/audiences.json` (order, reasons, the
//! `audience` of an evaluation), the refusals (unknown and repeated segments, named by field),
//! and that raising an audience's percentage only adds users to the new variant.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code may panic on a broken fixture

use rollgate_eval::{compile_flag, AudienceDef, Context, FlagDef, SegmentDef, Snapshot};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[allow(dead_code)] // For people reading the file.
    description: String,
    segments: Vec<SegmentDef>,
    flags: Vec<FlagDef>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    flag: String,
    context: Context,
    expect: Expect,
}

#[derive(Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
struct Expect {
    #[serde(default)]
    value: Option<Value>,
    #[serde(default)]
    variant: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    audience: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

fn load() -> (File, BTreeMap<String, SegmentDef>) {
    let path = format!(
        "{}/tests/vectors/audiences.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let file: File = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let segments = file
        .segments
        .iter()
        .map(|s| (s.key.clone(), s.clone()))
        .collect();
    (file, segments)
}

#[test]
fn every_audience_case_gets_its_expected_answer() {
    let (file, segments) = load();
    for flag in &file.flags {
        compile_flag(flag, &segments).unwrap_or_else(|e| panic!("flag {}: {e}", flag.key));
    }
    let snapshot = Snapshot::compile(&file.flags, &segments);
    let mut failures = Vec::new();
    for case in &file.cases {
        let got = match snapshot.get(&case.flag).unwrap().evaluate(&case.context) {
            Ok(e) => Expect {
                value: Some(e.value.clone()),
                variant: Some(e.variant.into()),
                reason: Some(e.reason.as_str().into()),
                audience: e.audience.map(Into::into),
                error: None,
            },
            Err(_) => Expect {
                value: None,
                variant: None,
                reason: None,
                audience: None,
                error: Some("TARGETING_KEY_MISSING".into()),
            },
        };
        if got != case.expect {
            failures.push(format!(
                "{}: want {:?}, got {got:?}",
                case.name, case.expect
            ));
        }
    }
    assert!(file.cases.len() >= 12);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn flag(audiences: Value) -> FlagDef {
    serde_json::from_value(json!({
        "key": "qr-ordering", "type": "boolean", "variants": {"off": false, "on": true},
        "off_variant": "off", "on_variant": "on", "rollout": 0, "audiences": audiences
    }))
    .unwrap()
}

#[test]
fn unknown_and_repeated_audience_segments_are_refused_naming_the_field() {
    let (_, segments) = load();
    let unknown = flag(json!([{"segment": "innovation", "rollout": 1}, {"segment": "nobody"}]));
    let err = compile_flag(&unknown, &segments).unwrap_err();
    assert_eq!(err.field, "audiences[1].segment");
    assert!(err.message.contains("unknown segment"), "{err}");

    let twice = flag(json!([{"segment": "innovation"}, {"segment": "innovation"}]));
    let err = compile_flag(&twice, &segments).unwrap_err();
    assert_eq!(err.field, "audiences[1].segment");

    let typo = serde_json::from_value::<AudienceDef>(json!({"segment": "a", "percent": 5}));
    assert!(typo.unwrap_err().to_string().contains("percent"));
}

#[test]
fn a_flag_without_audiences_serialises_as_before_and_uses_segment_sees_audiences() {
    let plain = flag(json!([]));
    assert!(!serde_json::to_value(&plain)
        .unwrap()
        .as_object()
        .unwrap()
        .contains_key("audiences"));
    let with = flag(json!([{"segment": "innovation", "rollout": 5}]));
    assert!(with.uses_segment("innovation"));
    assert!(!with.uses_segment("seniors"));
    assert_eq!(
        serde_json::to_value(&with).unwrap()["audiences"][0]["rollout"],
        5.0
    );
}

#[test]
fn raising_an_audience_percentage_only_adds_users() {
    let (_, segments) = load();
    let mut on_before = vec![false; 2000];
    for step in [1.0, 5.0, 25.0, 50.0, 100.0] {
        let def = flag(json!([{"segment": "innovation", "rollout": step}]));
        let compiled = compile_flag(&def, &segments).unwrap();
        for (user, before) in on_before.iter_mut().enumerate() {
            let ctx: Context = json!({"targetingKey": format!("u{user}"), "tier": "innovation"})
                .as_object()
                .unwrap()
                .clone();
            let on = compiled.evaluate(&ctx).unwrap().variant == "on";
            assert!(
                on || !*before,
                "user {user} lost the new variant at {step} %"
            );
            *before = on;
        }
    }
    assert!(on_before.iter().all(|on| *on));
}

#[test]
fn switching_audience_rollouts_serves_what_compiling_them_serves() {
    let (_, segments) = load();
    let before = flag(
        json!([{"segment": "seniors", "rollout": 0}, {"segment": "innovation", "rollout": 5}]),
    );
    let after = flag(
        json!([{"segment": "seniors", "rollout": 30}, {"segment": "innovation", "rollout": 60}]),
    );
    assert!(before.differs_only_in_switches(&after));
    let reordered = flag(
        json!([{"segment": "innovation", "rollout": 5}, {"segment": "seniors", "rollout": 0}]),
    );
    assert!(!before.differs_only_in_switches(&reordered));
    assert!(!before.differs_only_in_switches(&flag(json!([]))));

    let switched = compile_flag(&before, &segments)
        .unwrap()
        .with_audience_rollouts(after.audiences.iter().map(|a| a.rollout));
    let compiled = compile_flag(&after, &segments).unwrap();
    for user in 0..600u32 {
        let tier = ["basic", "innovation"][(user % 2) as usize];
        let ctx: Context =
            json!({"targetingKey": format!("user-{user}"), "tier": tier, "age": 40 + user % 40})
                .as_object()
                .unwrap()
                .clone();
        let a = switched
            .evaluate(&ctx)
            .map(|e| (e.variant_index, e.reason, e.audience));
        let b = compiled
            .evaluate(&ctx)
            .map(|e| (e.variant_index, e.reason, e.audience));
        assert_eq!(a, b, "user {user}");
    }
}
