//! Fuzz tests of the pure parsers that take outside input, run in CI with a bounded budget:
//! flag JSON (+ compile + evaluate), OFREP contexts (+ evaluate), policy TOML and JSON, and
//! signal batches (+ check + ingest). Inputs come from the structure-aware generators in
//! `gen.rs`; the oracles in `targets.rs` are shared with the libFuzzer targets in `fuzz/`.
//! The HTTP-facing half (status codes, error bodies, unchanged state) is `tests/api/fuzz.rs`.
//!
//! Deterministic by default (fixed seed); `PROPTEST_CASES=n` and `PROPTEST_RNG_SEED=s`
//! override the case count of every target and the seed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code may panic on a broken fixture

mod gen;
mod targets;

use proptest::prelude::*;
use proptest::test_runner::{TestError, TestRunner};

fn run<S: Strategy<Value = Vec<u8>>>(cases: u32, strategy: S, target: fn(&[u8])) {
    let mut runner = TestRunner::new(gen::config(cases));
    let result = runner.run(&strategy, |bytes| {
        target(&bytes);
        Ok(())
    });
    match result {
        Ok(()) => {}
        Err(TestError::Fail(why, bytes)) => panic!(
            "{why}\nminimal input ({} bytes): {}",
            bytes.len(),
            String::from_utf8_lossy(&bytes)
        ),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn flag_json_never_panics_and_accepted_flags_hold_together() {
    run(
        2000,
        gen::json_body(targets::flag_seeds()),
        targets::flag_json,
    );
}

#[test]
fn ofrep_contexts_never_panic_and_evaluate_to_a_declared_variant() {
    let strategy = prop_oneof![
        6 => gen::json_body(targets::context_seeds()),
        1 => gen::deep_json("{\"context\":{\"a\":", "}}"),
    ];
    run(3000, strategy, targets::ofrep_context);
}

#[test]
fn policy_toml_never_panics_and_errors_carry_a_message() {
    run(
        2000,
        gen::toml_body(targets::policy_toml_seeds()),
        targets::policy_toml,
    );
}

#[test]
fn policy_json_never_panics_and_errors_name_the_field() {
    run(
        1500,
        gen::json_body(targets::policy_json_seeds()),
        targets::policy_json,
    );
}

#[test]
fn signal_batches_never_panic_and_counts_add_up() {
    run(
        3000,
        gen::json_body(targets::signal_seeds()),
        targets::signal_batch,
    );
}
