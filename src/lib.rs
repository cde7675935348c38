//! rollgate — a feature-flag server that releases service changes module by module to
//! percentage cohorts and rolls them back automatically.
//!
//! Layout: `api` (HTTP), `ops` (the control path), `live` (the lock-free evaluation snapshot),
//! `store` (sled, durable), `policies`, `config`, `startup` (wiring). Evaluation itself is the
//! pure `rollgate-eval` crate.

pub mod analysis;
pub mod api;
pub mod cli;
pub mod config;
pub mod controller;
pub mod domain;
pub mod health_check;
pub mod hub;
pub mod live;
pub mod metrics;
pub mod ops;
pub mod policies;
pub mod release;
pub mod signals;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod webhooks;

/// A strong ETag for `bytes`: a quoted hex XXH64 of the content.
pub fn etag(bytes: &[u8]) -> String {
    format!("\"{:016x}\"", twox_hash::XxHash64::oneshot(0, bytes))
}
