//! rollgate — a feature-flag server that releases service changes module by module to
//! percentage cohorts and rolls them back automatically.
//!
//! Rooms, from the top (a room only imports from rooms below it; `docs/architecture.md` draws
//! them and the two main flows):
//! - [`startup`] wires everything once (`Application::build`); [`config`] and [`telemetry`]
//!   feed it; [`cli`] and [`health_check`] are the binary's other commands.
//! - [`api`]: HTTP handlers, one `configure_*` per area, the one error mapping.
//! - [`ops`]: the operators' write paths, one resource per file.
//! - [`rehearsal`]: a policy's releases simulated with the controller's own step (pure; the
//!   API runs it on a blocking thread).
//! - [`controller`]: the release controller (pure machine, the step, turns, commands, alerts,
//!   hand guards, the watched set, status, metrics, the loop).
//! - [`state`]: the shared `AppState` holding the parts below.
//! - [`writer`]: the single writer and the one commit (store, then live snapshot, then change
//!   hub, then webhooks) — the seam for durable writes and the change feed.
//! - [`analysis`] (pure statistics: guards → `Verdict`), [`release`] (release model and plan
//!   validation), [`policies`], [`signals`] (ingestion and aggregates).
//! - [`live`] (the lock-free evaluation snapshot; [`ofrep_wire`] its answers' bytes, written
//!   once per flag), [`hub`] (change events for streams),
//!   [`store`] (sled, durable), [`webhooks`], [`auth`] (tokens, stream tokens, HMAC,
//!   extractors), [`metrics`], [`lease`] ("am I the controller"), [`clock`], [`proxies`]
//!   (which peers' forwarded headers are believed), [`json_int`], [`reach`] (which clients
//!   applied which change, and how fast).
//!
//! Evaluation itself is the pure `rollgate-eval` crate.

pub mod analysis;
pub mod api;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod controller;
pub mod drills;
pub mod follow;
pub mod health_check;
pub mod history;
pub mod hub;
pub mod json_int;
pub mod lease;
pub mod live;
pub mod metrics;
pub mod ofrep_wire;
pub mod ops;
pub mod policies;
pub mod proxies;
pub mod reach;
pub mod rehearsal;
pub mod release;
pub mod signals;
pub mod sources;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod webhooks;
pub mod writer;

/// A strong ETag for `bytes`: a quoted hex XXH3-64 of the content (XXH3 reads long inputs
/// several times faster than XXH64, which stays the frozen cohort hash; issue 15).
pub fn etag(bytes: &[u8]) -> String {
    format!("\"{:016x}\"", twox_hash::XxHash3_64::oneshot(bytes))
}
