//! A policy as TOML (`policies/*.toml`, `PUT /api/v1/policies/{name}`): parse, validate, round-trip.
//! The oracle is shared with the proptest run in CI: `tests/fuzz/targets.rs`.
#![no_main]

#[path = "../../tests/fuzz/targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::policy_toml(data));
