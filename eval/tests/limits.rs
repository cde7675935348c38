//! The bounds on what `matches` patterns may cost (`rollgate_eval::limits`): per pattern, per
//! flag (segments included) and per snapshot. Refusals name the field of the pattern.
//!
//! No timing is asserted here; `bench/README.md` measures how fast refusals are.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test and bench code may panic on a broken fixture

use proptest::prelude::*;
use proptest::sample::select;
use rollgate_eval::limits::{FLAG_PATTERNS, FLAG_REGEX_BYTES, SNAPSHOT_REGEX_BYTES};
use rollgate_eval::{
    check_snapshot_budget, compile_flag, validate_segment, CompileError, CompiledFlag, FlagDef,
    SegmentDef, Snapshot,
};
use serde_json::{json, Value};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

fn flag_def(key: &str, rules: Value) -> FlagDef {
    serde_json::from_value(json!({
        "key": key, "type": "boolean", "variants": {"off": false, "on": true},
        "off_variant": "off", "on_variant": "on", "rollout": 0, "rules": rules,
    }))
    .expect("valid flag JSON")
}

/// A flag with one rule: `email` matches any of `patterns`.
fn matching(key: &str, patterns: &[&str]) -> FlagDef {
    flag_def(
        key,
        json!([{"when": [{"attribute": "email", "op": "matches", "values": patterns}], "variant": "on"}]),
    )
}

fn segment(key: &str, patterns: &[&str]) -> SegmentDef {
    serde_json::from_value(
        json!({"key": key, "when": [{"attribute": "email", "op": "matches", "values": patterns}]}),
    )
    .expect("valid segment JSON")
}

fn no_segments() -> BTreeMap<String, SegmentDef> {
    BTreeMap::new()
}

fn compile(def: &FlagDef) -> Result<CompiledFlag, CompileError> {
    compile_flag(def, &no_segments())
}

/// The error of a compilation expected to fail (without printing a whole compiled flag if not).
fn refused(result: Result<CompiledFlag, CompileError>) -> CompileError {
    match result {
        Ok(flag) => panic!("compiled, {} bytes of patterns", flag.regex_bytes()),
        Err(e) => e,
    }
}

/// Compiled size of one pattern alone (remembered: the property test asks often).
fn size_of(pattern: &str) -> usize {
    thread_local! {
        static SIZES: RefCell<HashMap<String, usize>> = RefCell::default();
    }
    SIZES.with_borrow_mut(|sizes| {
        *sizes.entry(pattern.to_owned()).or_insert_with(|| {
            compile(&matching("one", &[pattern]))
                .expect("pattern compiles alone")
                .regex_bytes()
        })
    })
}

/// Patterns as people write them in targeting rules.
const REAL: &[&str] = &[
    r"^[a-z0-9._%+-]+@example\.com$",
    r"\w+@corp\.com",
    r"^[\w.-]+@([\w-]+\.)+[a-z]{2,}$",
    r"^(ios|android)-\d+\.\d+$",
    r"(?i)^beta-.*$",
    r"^user-[0-9]{1,6}$",
    r"(?i)\b(admin|root|staff)\b",
    r"^.{0,64}$",
    r"^(?:[0-9]{1,3}\.){3}[0-9]{1,3}$",
    r"^Mozilla/5\.0 .*(iPhone|iPad).*OS 1[5-7]_",
    r"\d{3}\s\w{3}",
    r"^\d+\.\d+\.\d+-beta\.\d+$",
    r"\w{10}",
];

#[test]
fn real_patterns_compile_together_in_one_flag() {
    let flag = compile(&matching("real", REAL)).expect("real patterns fit");

    assert_eq!(flag.regex_patterns(), REAL.len());
    assert_eq!(
        flag.regex_bytes(),
        REAL.iter().map(|p| size_of(p)).sum::<usize>()
    );
    assert!(
        flag.regex_bytes() <= FLAG_REGEX_BYTES,
        "{}",
        flag.regex_bytes()
    );
}

#[test]
fn an_amplifying_pattern_is_refused_on_its_own_naming_it() {
    let err = refused(compile(&matching("amp", &["^user-", r"\w{20}"])));

    assert_eq!(err.field, "rules[0].when[0].values[1]");
    assert!(err.message.contains("512.0 KiB"), "{}", err.message);
    // Where the per-pattern limit falls, as documented.
    refused(compile(&matching("amp", &[r"\w{11}"])));
    compile(&matching("ok", &[r"\w{10}"])).expect("fits");
    // The same length without Unicode is tiny.
    let ascii = size_of(r"(?-u:\w){20}");
    assert!(ascii < 8 << 10, "{ascii}");
}

#[test]
fn three_hundred_amplifiers_are_refused_at_the_first() {
    let body = vec![r"\w{20}"; 300];
    let err = refused(compile(&matching("amp", &body)));

    assert_eq!(err.field, "rules[0].when[0].values[0]");
}

#[test]
fn patterns_each_within_the_limit_are_refused_where_the_flag_goes_over_its_budget() {
    let each = size_of(r"\w{5}");
    let fit = FLAG_REGEX_BYTES / each;
    assert!(fit > 1 && fit < 300, "{each} bytes each");

    let err = refused(compile(&matching("many", &vec![r"\w{5}"; 300])));

    assert_eq!(err.field, format!("rules[0].when[0].values[{fit}]"));
    assert!(err.message.contains("4.0 MiB per flag"), "{}", err.message);
    let fits = compile(&matching("many", &vec![r"\w{5}"; fit])).expect("fits");
    assert_eq!(fits.regex_bytes(), fit * each);
}

#[test]
fn the_budget_spans_rules_and_conditions() {
    let each = size_of(r"\w{5}");
    let per_rule = FLAG_REGEX_BYTES / each / 2 + 1;
    let rule = json!({"when": [
        {"attribute": "country", "op": "in", "values": ["NL"]},
        {"attribute": "email", "op": "matches", "values": vec![r"\w{5}"; per_rule]},
    ], "variant": "on"});
    let def = flag_def("split", json!([rule.clone(), rule]));

    let err = refused(compile(&def));

    let first_over = FLAG_REGEX_BYTES / each - per_rule;
    assert_eq!(err.field, format!("rules[1].when[1].values[{first_over}]"));
}

#[test]
fn a_flag_may_use_a_bounded_number_of_patterns() {
    let body: Vec<String> = (0..=FLAG_PATTERNS).map(|i| format!("^u{i}$")).collect();
    let body: Vec<&str> = body.iter().map(String::as_str).collect();

    let err = refused(compile(&matching("count", &body)));

    assert_eq!(
        err.field,
        format!("rules[0].when[0].values[{FLAG_PATTERNS}]")
    );
    assert!(err.message.contains("at most 256"), "{}", err.message);
    compile(&matching("count", &body[..FLAG_PATTERNS])).expect("the limit itself is fine");
}

#[test]
fn segment_patterns_count_towards_the_flag_once_per_use() {
    let each = size_of(r"\w{5}");
    let in_segment = FLAG_REGEX_BYTES / each / 2 + 1;
    let segments = BTreeMap::from([(
        "heavy".to_string(),
        segment("heavy", &vec![r"\w{5}"; in_segment]),
    )]);
    validate_segment(&segments["heavy"]).expect("the segment alone fits");
    let once = flag_def(
        "once",
        json!([{"when": [{"segment": "heavy"}], "variant": "on"}]),
    );
    let twice = flag_def(
        "twice",
        json!([
            {"when": [{"segment": "heavy"}], "variant": "on"},
            {"when": [{"attribute": "tier", "op": "eq", "values": ["gold"]}, {"segment": "heavy"}], "variant": "off"},
        ]),
    );

    let once = compile_flag(&once, &segments).expect("one use fits");
    let err = refused(compile_flag(&twice, &segments));

    assert_eq!(once.regex_bytes(), in_segment * each);
    let first_over = FLAG_REGEX_BYTES / each - in_segment;
    assert_eq!(
        err.field,
        format!("rules[1].when[1].segment(heavy)[0].values[{first_over}]")
    );
    // Restated for the segment's own definition, as `PUT /segments/heavy` answers it.
    let restated = err.in_segment("heavy", "twice");
    assert_eq!(restated.field, format!("when[0].values[{first_over}]"));
    assert!(
        restated
            .message
            .starts_with("flag \"twice\" (which uses this segment at rules[1].when[1]): "),
        "{}",
        restated.message
    );
}

#[test]
fn a_segment_over_a_flag_budget_on_its_own_is_refused() {
    let err = validate_segment(&segment("huge", &vec![r"\w{5}"; 300])).expect_err("over");

    assert!(err.field.starts_with("when[0].values["), "{}", err.field);
    assert!(err.message.contains("per flag"), "{}", err.message);
}

#[test]
fn an_error_outside_the_segment_is_restated_on_its_when() {
    let err = CompileError {
        field: "rules[2].when[0].values[3]".into(),
        message: "over".into(),
    };

    let restated = err.in_segment("beta", "f");

    assert_eq!(restated.field, "when");
    assert_eq!(
        restated.message,
        "flag \"f\": rules[2].when[0].values[3]: over"
    );
}

#[test]
fn syntax_errors_still_name_the_pattern_and_say_why() {
    let err = refused(compile(&matching("bad", &["ok", "("])));

    assert_eq!(err.field, "rules[0].when[0].values[1]");
    assert!(
        err.message.starts_with("invalid regular expression: ")
            && err.message.contains("unclosed group"),
        "{}",
        err.message
    );
}

#[test]
fn the_snapshot_budget_is_checked_against_the_other_flags() {
    let flag = compile(&matching("real", REAL)).expect("compiles");
    let room = SNAPSHOT_REGEX_BYTES - flag.regex_bytes();

    check_snapshot_budget(room, &flag).expect("exactly full is fine");
    let err = check_snapshot_budget(room + 1, &flag).expect_err("one byte over");

    let (heaviest, _) = flag.heaviest_regex().expect("has patterns");
    assert_eq!(err.field, heaviest);
    assert!(
        err.message.contains("64.0 MiB for the server"),
        "{}",
        err.message
    );
}

#[test]
fn a_snapshot_leaves_out_the_flags_over_its_budget_in_key_order() {
    // Flags just under the per-flag budget, enough of them to go over the snapshot's.
    let each = size_of(r"\w{5}");
    let body = vec![r"\w{5}"; FLAG_REGEX_BYTES / each];
    let per_flag = compile(&matching("x", &body)).expect("fits").regex_bytes();
    let kept = SNAPSHOT_REGEX_BYTES / per_flag;
    let keys: Vec<String> = (0..kept + 2).rev().map(|i| format!("f{i:02}")).collect();
    let defs: Vec<FlagDef> = keys.iter().map(|k| matching(k, &body)).collect();

    let snapshot = Snapshot::compile(&defs, &no_segments());

    assert_eq!(snapshot.len(), kept);
    let broken: Vec<&str> = snapshot.broken().iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(broken, [format!("f{kept:02}"), format!("f{:02}", kept + 1)]);
    let total: usize = snapshot.flags().iter().map(|f| f.regex_bytes()).sum();
    assert!(total <= SNAPSHOT_REGEX_BYTES);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Whatever patterns a flag lists, it compiles exactly when their sizes (each measured
    /// alone) add up to the budget, and otherwise is refused at the first pattern that crosses.
    #[test]
    fn a_flag_compiles_exactly_when_its_patterns_fit(
        patterns in prop::collection::vec(
            select(vec![r"^a$", r"\w", r"\w{3}", r"\w{5}", r"\d{4}", r"[a-z]+@x\.io", r"\w{10}"]),
            1..40,
        ),
    ) {
        let mut total = 0;
        let first_over = patterns.iter().position(|p| {
            total += size_of(p);
            total > FLAG_REGEX_BYTES
        });

        match (compile(&matching("p", &patterns)), first_over) {
            (Ok(flag), None) => {
                prop_assert_eq!(flag.regex_bytes(), total);
                prop_assert!(flag.regex_bytes() <= FLAG_REGEX_BYTES);
            }
            (Err(e), Some(i)) => {
                prop_assert_eq!(e.field, format!("rules[0].when[0].values[{i}]"));
            }
            (result, expected) => {
                prop_assert!(false, "{:?} but first over at {:?}", result.map(|f| f.regex_bytes()), expected);
            }
        }
    }
}
