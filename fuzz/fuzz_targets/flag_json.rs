//! Flag JSON (`PUT /api/v1/flags/{key}`): parse, compile, round-trip, evaluate.
//! The oracle is shared with the proptest run in CI: `tests/fuzz/targets.rs`.
#![no_main]

#[path = "../../tests/fuzz/targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::flag_json(data));
