//! What the bounds on `matches` patterns cost and save (`rollgate_eval::limits`): compiling a
//! normal flag, a flag of ordinary patterns, and refusing amplifying bodies, in one run so the
//! ratios compare like with like; then evaluating the heaviest flag the budget accepts, cold
//! (fresh search caches, as the first evaluation after a PUT) and warm, on a 60 KB attribute.
//!
//! Run: `cargo bench -p rollgate-eval --bench regex_limits -- --warm-up-time 1 --measurement-time 3`
#![allow(clippy::unwrap_used, clippy::expect_used)] // test and bench code may panic on a broken fixture

mod common;

use common::{flag, segments, three_rules_and_a_rollout};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use rollgate_eval::{compile_flag, Context};
use serde_json::{json, Value};
use std::hint::black_box;

fn matching(patterns: Vec<&str>) -> Value {
    json!([{"when": [{"attribute": "email", "op": "matches", "values": patterns}], "variant": "on"}])
}

fn bench(c: &mut Criterion) {
    let segments = segments();
    let ordinary = vec![
        r"^[a-z0-9._%+-]+@example\.com$",
        r"^[\w.-]+@([\w-]+\.)*corp\.com$",
        r"(?i)^qa-\d{1,6}@",
        r"^(ios|android)-\d+\.\d+$",
    ];
    let cases = [
        (
            "compile/accept: 3 rules + rollout (no regex)",
            three_rules_and_a_rollout(),
        ),
        (
            "compile/accept: 4 ordinary patterns",
            flag("ordinary", 5.0, matching(ordinary)),
        ),
        (
            "compile/refuse: 300 x \\w{20}",
            flag("amp", 5.0, matching(vec![r"\w{20}"; 300])),
        ),
        (
            "compile/refuse: 1000 x \\w{20}",
            flag("amp", 5.0, matching(vec![r"\w{20}"; 1000])),
        ),
        (
            "compile/refuse: 300 x \\w{5} (flag budget)",
            flag("amp", 5.0, matching(vec![r"\w{5}"; 300])),
        ),
    ];
    for (name, def) in &cases {
        let expect_ok = name.starts_with("compile/accept");
        assert_eq!(compile_flag(def, &segments).is_ok(), expect_ok, "{name}");
        c.bench_function(name, |b| {
            b.iter(|| compile_flag(black_box(def), &segments).is_ok())
        });
    }

    // The heaviest accepted flag: as many \w{5} as fit in the budget.
    let heaviest = (1..300)
        .map(|n| flag("heavy", 5.0, matching(vec![r"\w{5}"; n])))
        .take_while(|def| compile_flag(def, &segments).is_ok())
        .last()
        .expect("one fits");
    let heavy = compile_flag(&heaviest, &segments).expect("fits");
    eprintln!(
        "heaviest accepted: {} patterns, {} bytes compiled",
        heavy.regex_patterns(),
        heavy.regex_bytes()
    );
    // 60 KB of mixed Latin, Greek, CJK and digits that no pattern matches before its end.
    let text: String = (0..37_500u32)
        .map(|i| ['a', 'β', '中', '7', ' '][(i * 7 % 5) as usize])
        .collect();
    let ctx: Context = match json!({"targetingKey": "u1", "email": text}) {
        Value::Object(m) => m,
        _ => unreachable!(),
    };
    c.bench_function(
        "evaluate/heaviest accepted flag, 60 KB attribute, cold caches",
        |b| {
            b.iter_batched(
                || heavy.clone(),
                |f| f.evaluate(black_box(&ctx)).is_ok(),
                BatchSize::SmallInput,
            )
        },
    );
    c.bench_function(
        "evaluate/heaviest accepted flag, 60 KB attribute, warm",
        |b| b.iter(|| heavy.evaluate(black_box(&ctx)).is_ok()),
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
