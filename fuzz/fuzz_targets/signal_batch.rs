//! A signal batch (`POST /api/v1/signals`): parse, check, ingest; counts add up.
//! The oracle is shared with the proptest run in CI: `tests/fuzz/targets.rs`.
#![no_main]

#[path = "../../tests/fuzz/targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::signal_batch(data));
