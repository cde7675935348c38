//! # rollgate-eval — the pure evaluation core
//!
//! Everything that decides *which variant a user gets* lives here and nowhere else: the flag
//! model, targeting rules, segments and cohort bucketing. The server and every Rust client link
//! this crate, so they cannot disagree; the JSON conformance vectors under `tests/vectors/` pin
//! the behaviour for clients in other languages.
//!
//! Invariants:
//! - No I/O, no clock, no async runtime, no global state.
//! - Flags are compiled once ([`compile_flag`], [`Snapshot::compile`]) and evaluated many times;
//!   [`CompiledFlag::evaluate`] performs no heap allocation (a `matches` regex builds its
//!   search cache once per thread, on first use; `tests/no_alloc.rs` checks both).
//! - What `matches` patterns may cost is bounded by their compiled size, per pattern, per flag
//!   (segments included) and per snapshot ([`limits`]); a definition over a limit is refused with
//!   the field of the pattern, and never costs more than one flag's budget to refuse.
//! - Evaluation never panics: a condition that cannot apply (missing attribute, wrong type,
//!   unknown segment) is simply false.

mod bucket;
mod compile;
mod error;
mod evaluate;
mod key_hash;
pub mod limits;
mod model;
mod pattern;
mod percentage;
mod semver;
mod snapshot;

pub use bucket::{bucket, in_rollout, BUCKETS};
pub use compile::{compile_flag, validate_segment, CompiledFlag, SegmentLookup};
pub use error::CompileError;
pub use evaluate::{targeting_key, EvalError, Evaluation, Prepared, Reason};
pub use model::{
    valid_flag_key, AudienceDef, ConditionDef, FlagDef, FlagType, Op, RuleDef, SegmentDef,
};
pub use percentage::{Percentage, PercentageError};
pub use snapshot::{check_snapshot_budget, Snapshot};

/// The evaluation context: `targetingKey` plus free attributes, exactly as OFREP sends it.
pub type Context = serde_json::Map<String, serde_json::Value>;

/// The context attribute that carries the stable user or device id used for bucketing.
pub const TARGETING_KEY: &str = "targetingKey";
