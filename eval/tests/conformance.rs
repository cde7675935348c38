//! Runs the published conformance vectors in `tests/vectors/` against this crate.
//!
//! The expected values are literal data, written down once and reviewed (the buckets were
//! cross-checked with Python's and JavaScript's XXH64). Any change of the hash, of the
//! percentage threshold or of an evaluation rule makes these tests fail, which is the point:
//! every client in every language runs the same files.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test and bench code may panic on a broken fixture

use rollgate_eval::{
    bucket, compile_flag, in_rollout, validate_segment, Context, EvalError, FlagDef, Op,
    Percentage, RuleDef, SegmentDef, Snapshot, BUCKETS,
};
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

// ---------------------------------------------------------------------------------------------
// The file formats (documented in tests/vectors/README.md).

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BucketingFile {
    algorithm: String,
    buckets: u32,
    vectors: Vec<BucketVector>,
    rollouts: Vec<RolloutVector>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct BucketVector {
    salt: String,
    targeting_key: String,
    xxh64: String,
    bucket: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RolloutVector {
    salt: String,
    targeting_key: String,
    bucket: u32,
    percentage: f64,
    threshold: u32,
    in_rollout: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EvaluationFile {
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

/// Either a served variant or an error code; exactly one of the two shapes.
#[derive(Deserialize, Debug, PartialEq)]
#[serde(untagged)]
enum Expect {
    Served(Served),
    Error(Failed),
}

#[derive(Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
struct Served {
    value: Value,
    variant: String,
    reason: String,
}

#[derive(Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
struct Failed {
    error: String,
}

fn load<T: serde::de::DeserializeOwned>(file: &str) -> T {
    let path = format!("{}/tests/vectors/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is malformed: {e}"))
}

fn segments_by_key(segments: &[SegmentDef]) -> BTreeMap<String, SegmentDef> {
    segments
        .iter()
        .map(|s| (s.key.clone(), s.clone()))
        .collect()
}

/// The OFREP error code for an evaluation error.
fn ofrep_code(error: EvalError) -> &'static str {
    match error {
        EvalError::TargetingKeyMissing => "TARGETING_KEY_MISSING",
        EvalError::InvalidTargetingKey => "INVALID_CONTEXT",
    }
}

/// What the snapshot answers for a case, in the vectors' own shape.
fn answer(snapshot: &Snapshot, case: &Case) -> Expect {
    let Some(flag) = snapshot.get(&case.flag) else {
        return Expect::Error(Failed {
            error: "FLAG_NOT_FOUND".into(),
        });
    };
    match flag.evaluate(&case.context) {
        Ok(e) => Expect::Served(Served {
            value: e.value.clone(),
            variant: e.variant.into(),
            reason: e.reason.as_str().into(),
        }),
        Err(e) => Expect::Error(Failed {
            error: ofrep_code(e).into(),
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// Bucketing.

#[test]
fn every_bucketing_vector_hashes_to_its_published_bucket() {
    let file: BucketingFile = load("bucketing.json");
    assert!(
        file.algorithm.starts_with("bucket = XXH64(seed 0"),
        "{}",
        file.algorithm
    );
    assert_eq!(file.buckets, BUCKETS);
    assert!(
        file.vectors.len() >= 30,
        "the contract promises at least 30 vectors"
    );

    let mut failures = Vec::new();
    for v in &file.vectors {
        let input = format!("{}:{}", v.salt, v.targeting_key);
        let digest = format!("{:016x}", xxhash_rust::xxh64::xxh64(input.as_bytes(), 0));
        let got = bucket(&v.salt, &v.targeting_key);
        if digest != v.xxh64 || got != v.bucket {
            failures.push(format!(
                "salt {:?} key {:?}: want xxh64 {} bucket {}, got {digest} {got}",
                v.salt, v.targeting_key, v.xxh64, v.bucket
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} bucketing vectors failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_rollout_vector_compares_the_bucket_with_the_rounded_threshold() {
    let file: BucketingFile = load("bucketing.json");

    let mut failures = Vec::new();
    for v in &file.rollouts {
        let percentage = Percentage::from_f64(v.percentage).expect("vector percentages are valid");
        let got_bucket = bucket(&v.salt, &v.targeting_key);
        let got_in = in_rollout(&v.salt, &v.targeting_key, percentage);
        if got_bucket != v.bucket || percentage.millis() != v.threshold || got_in != v.in_rollout {
            failures.push(format!(
                "salt {:?} key {:?} at {}%: want bucket {} threshold {} in {}, got {got_bucket} {} {got_in}",
                v.salt,
                v.targeting_key,
                v.percentage,
                v.bucket,
                v.threshold,
                v.in_rollout,
                percentage.millis()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} rollout vectors failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Evaluation.

#[test]
fn every_vector_segment_and_flag_is_valid_as_the_api_would_check_it() {
    let file: EvaluationFile = load("evaluation.json");
    let segments = segments_by_key(&file.segments);

    for segment in &file.segments {
        validate_segment(segment).unwrap_or_else(|e| panic!("segment {}: {e}", segment.key));
    }
    for flag in &file.flags {
        compile_flag(flag, &segments).unwrap_or_else(|e| panic!("flag {}: {e}", flag.key));
    }
    let snapshot = Snapshot::compile(&file.flags, &segments);
    assert!(
        snapshot.broken().is_empty(),
        "broken flags: {:?}",
        snapshot.broken()
    );
    assert_eq!(snapshot.len(), file.flags.len(), "flag keys must be unique");
}

#[test]
fn every_evaluation_case_gets_its_expected_answer() {
    let file: EvaluationFile = load("evaluation.json");
    let snapshot = Snapshot::compile(&file.flags, &segments_by_key(&file.segments));

    let mut failures = Vec::new();
    for case in &file.cases {
        let got = answer(&snapshot, case);
        if got != case.expect {
            failures.push(format!(
                "{}\n    want {:?}\n    got  {:?}",
                case.name, case.expect, got
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        file.cases.len(),
        failures.join("\n")
    );
}

#[test]
fn case_names_are_unique_so_a_failure_names_one_case() {
    let file: EvaluationFile = load("evaluation.json");
    let mut seen = BTreeSet::new();
    let duplicates: Vec<&str> = file
        .cases
        .iter()
        .map(|c| c.name.as_str())
        .filter(|n| !seen.insert(*n))
        .collect();
    assert!(
        duplicates.is_empty(),
        "duplicate case names: {duplicates:?}"
    );
}

/// The JSON name of an operator, e.g. `semver_gte`.
fn op_name(op: Op) -> String {
    serde_json::to_value(op)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// The operators a rule uses, segments included.
fn ops_of(rule: &RuleDef, segments: &BTreeMap<String, SegmentDef>) -> Vec<String> {
    let mut ops = Vec::new();
    for cond in &rule.when {
        ops.extend(cond.op);
        if let Some(segment) = cond.segment.as_ref().and_then(|key| segments.get(key)) {
            ops.extend(segment.when.iter().filter_map(|c| c.op));
        }
    }
    ops.into_iter().map(op_name).collect()
}

#[test]
fn the_vectors_cover_every_operator_both_ways_every_reason_error_and_flag_type() {
    let file: EvaluationFile = load("evaluation.json");
    let segments = segments_by_key(&file.segments);
    let flags: BTreeMap<&str, &FlagDef> = file.flags.iter().map(|f| (f.key.as_str(), f)).collect();

    let mut matched = BTreeSet::new();
    let mut unmatched = BTreeSet::new();
    let mut outcomes = BTreeSet::new();
    let mut types = BTreeSet::new();
    let mut segment_rules = 0;
    for case in &file.cases {
        outcomes.insert(match &case.expect {
            Expect::Served(served) => served.reason.clone(),
            Expect::Error(failed) => failed.error.clone(),
        });
        let Some(flag) = flags.get(case.flag.as_str()) else {
            continue;
        };
        types.insert(flag.flag_type.as_str());
        // On a flag with one rule, TARGETING_MATCH means every operator of the rule held, and
        // DEFAULT means that the operator did not hold when it is the rule's only one.
        if let [rule] = flag.rules.as_slice() {
            segment_rules += usize::from(rule.when.iter().any(|c| c.segment.is_some()));
            let ops = ops_of(rule, &segments);
            match &case.expect {
                Expect::Served(served) if served.reason == "TARGETING_MATCH" => matched.extend(ops),
                Expect::Served(served) if served.reason == "DEFAULT" && ops.len() == 1 => {
                    unmatched.extend(ops)
                }
                _ => {}
            }
        }
    }

    let all_ops = [
        "eq",
        "neq",
        "in",
        "not_in",
        "lt",
        "lte",
        "gt",
        "gte",
        "semver_lt",
        "semver_lte",
        "semver_gt",
        "semver_gte",
        "starts_with",
        "ends_with",
        "contains",
        "matches",
    ];
    for op in all_ops {
        assert!(matched.contains(op), "no case where `{op}` matches");
        assert!(
            unmatched.contains(op),
            "no case where `{op}` does not match"
        );
    }
    assert!(segment_rules > 0, "no case on a segment rule");
    for outcome in [
        "STATIC",
        "TARGETING_MATCH",
        "SPLIT",
        "DISABLED",
        "DEFAULT",
        "TARGETING_KEY_MISSING",
        "INVALID_CONTEXT",
        "FLAG_NOT_FOUND",
    ] {
        assert!(outcomes.contains(outcome), "no case answering {outcome}");
    }
    assert_eq!(
        types,
        BTreeSet::from(["boolean", "string", "number", "object"])
    );
}
