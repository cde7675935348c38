//! An OFREP request body as `serde_json::Value`: its context evaluated against every seed flag.
//! The oracle is shared with the proptest run in CI: `tests/fuzz/targets.rs`.
#![no_main]

#[path = "../../tests/fuzz/targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::ofrep_context(data));
