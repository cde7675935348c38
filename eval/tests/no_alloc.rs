//! `CompiledFlag::evaluate` performs no heap allocation (an invariant stated in the crate docs):
//! the server evaluates on every request and a client on every flag check, so evaluation must
//! stay cheap and predictable.
//!
//! A counting global allocator counts the allocations of each thread separately, so the test
//! harness's threads and the other test cannot disturb a count.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test and bench code may panic on a broken fixture

use rollgate_eval::{compile_flag, CompiledFlag, Context, FlagDef, Reason, SegmentDef};
use serde_json::json;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::hint::black_box;

struct CountingAllocator;

thread_local! {
    // Const-initialised thread locals without destructors never allocate themselves.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn note_allocation() {
    // `try_with`: the allocator may be called while this thread's locals are being torn down.
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; counting has no effect on it.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Heap allocations made by this thread while `f` runs.
fn allocations_during(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(Cell::get) - before
}

fn compile(flag: serde_json::Value) -> CompiledFlag {
    let seniors: SegmentDef = serde_json::from_value(
        json!({"key": "seniors", "when": [{"attribute": "age", "op": "gte", "values": [60]}]}),
    )
    .expect("valid segment");
    let segments = BTreeMap::from([("seniors".to_string(), seniors)]);
    let def: FlagDef = serde_json::from_value(flag).expect("valid flag JSON");
    compile_flag(&def, &segments).expect("flag compiles")
}

/// Contexts that take every path: each rule, the rollout in and out, and no match at all.
fn varied_contexts(n: usize) -> Vec<Context> {
    let tiers = ["innovation", "gold", "free"];
    let versions = ["2.9.1", "3.0.0", "3.2.0-beta.1", "v4.1", "garbage"];
    (0..n)
        .map(|i| {
            let ctx = json!({
                "targetingKey": format!("user-{i}"),
                "tier": tiers[i % tiers.len()],
                "app_version": versions[i % versions.len()],
                "age": (i * 7) % 90,
                "country": "NL",
            });
            match ctx {
                serde_json::Value::Object(map) => map,
                _ => unreachable!("built as an object"),
            }
        })
        .collect()
}

#[test]
fn evaluating_a_flag_with_three_rules_and_a_rollout_allocates_nothing() {
    let flag = compile(json!({
        "key": "qr-ordering", "type": "boolean", "variants": {"off": false, "on": true},
        "off_variant": "off", "on_variant": "on", "rollout": 25,
        "rules": [
            {"when": [{"attribute": "tier", "op": "in", "values": ["innovation", "beta-testers"]}], "variant": "on"},
            {"when": [{"attribute": "app_version", "op": "semver_gte", "values": ["3.1.0"]}], "variant": "on"},
            {"when": [{"segment": "seniors"}], "variant": "off"},
        ],
    }));
    let contexts = varied_contexts(10_000);
    let mut reasons = [0usize; 2]; // [TARGETING_MATCH, SPLIT]
    let mut on = 0usize;

    let allocations = allocations_during(|| {
        for ctx in &contexts {
            let e =
                black_box(flag.evaluate(black_box(ctx))).expect("every context has a targetingKey");
            reasons[usize::from(e.reason == Reason::Split)] += 1;
            on += usize::from(e.variant == "on");
        }
    });

    assert_eq!(
        allocations, 0,
        "evaluate allocated {allocations} times over 10,000 evaluations"
    );
    // The contexts really exercised the rules and both sides of the rollout.
    assert!(
        reasons[0] > 1_000 && reasons[1] > 1_000,
        "rule matches / splits: {reasons:?}"
    );
    assert!(on > 2_000 && on < 8_000, "{on} of 10,000 on");
}

#[test]
fn evaluating_every_operator_allocates_nothing_once_regexes_are_warm() {
    let rule = |attribute: &str, op: &str, values: serde_json::Value| json!({"when": [{"attribute": attribute, "op": op, "values": values}], "variant": "beta"});
    let flag = compile(json!({
        "key": "every-operator", "type": "string",
        "variants": {"stable": "stable", "beta": "beta", "new": "new"},
        "off_variant": "stable", "on_variant": "new", "rollout": 50,
        "rules": [
            rule("tier", "eq", json!(["gold"])),
            rule("tier", "neq", json!(["free", "innovation", "gold"])),
            rule("tier", "not_in", json!(["free", "innovation", "gold"])),
            rule("age", "lt", json!([3])),
            rule("age", "lte", json!([3])),
            rule("age", "gt", json!([88])),
            rule("age", "gte", json!([89])),
            rule("app_version", "semver_lt", json!(["1.0.0"])),
            rule("app_version", "semver_lte", json!(["1.0.0"])),
            rule("app_version", "semver_gt", json!(["9.0.0"])),
            rule("app_version", "semver_gte", json!(["9.0.0"])),
            rule("app_version", "starts_with", json!(["3.2"])),
            rule("app_version", "ends_with", json!([".1"])),
            rule("app_version", "contains", json!(["beta"])),
            rule("targetingKey", "matches", json!(["^user-\\d*7$"])),
            {"when": [{"segment": "seniors"}], "variant": "stable"},
        ],
    }));
    let contexts = varied_contexts(10_000);
    // The regex engine builds its per-thread search cache on first use; that is the only
    // allocation evaluation is allowed, and it happens once per thread.
    for ctx in contexts.iter().take(100) {
        black_box(flag.evaluate(ctx)).expect("every context has a targetingKey");
    }
    let mut beta = 0usize;

    let allocations = allocations_during(|| {
        for ctx in &contexts {
            let e =
                black_box(flag.evaluate(black_box(ctx))).expect("every context has a targetingKey");
            beta += usize::from(e.variant == "beta");
        }
    });

    assert_eq!(
        allocations, 0,
        "evaluate allocated {allocations} times over 10,000 evaluations"
    );
    assert!(
        beta > 1_000,
        "only {beta} of 10,000 contexts matched an operator rule"
    );
}

#[test]
fn evaluating_a_flag_with_release_audiences_allocates_nothing() {
    let flag = compile(json!({
        "key": "qr-ordering", "type": "boolean", "variants": {"off": false, "on": true},
        "off_variant": "off", "on_variant": "on", "rollout": 25,
        "audiences": [{"segment": "seniors", "rollout": 0}],
    }));
    let contexts = varied_contexts(10_000);
    let mut in_audience = 0usize;

    let allocations = allocations_during(|| {
        for ctx in &contexts {
            let e =
                black_box(flag.evaluate(black_box(ctx))).expect("every context has a targetingKey");
            in_audience += usize::from(e.audience == Some("seniors"));
        }
    });

    assert_eq!(
        allocations, 0,
        "evaluate allocated {allocations} times over 10,000 evaluations"
    );
    assert!(
        in_audience > 2_000 && in_audience < 8_000,
        "{in_audience} seniors"
    );
}
