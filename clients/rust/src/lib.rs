//! # rollgate-client — the Rust SDK of rollgate
//!
//! Evaluates flags **locally**, with the same pure `rollgate-eval` crate as the server (so the
//! two cannot disagree), from a config it keeps up to date:
//!
//! - fetches `GET /api/v1/client/config` (with `ETag`), then follows `GET /api/v1/stream`
//!   (a full `config` event, then one `change` event per flag or segment change), reconnecting
//!   with exponential backoff and jitter and resuming with `Last-Event-ID`; falls back to
//!   polling the config when the stream is refused or keeps failing;
//! - records an exposure per evaluation, aggregated per (flag, variant), plus the app's
//!   reports and complaints, and sends them to `POST /api/v1/signals` in the background,
//!   with the client report of `docs/clients.md` (which revision it applied, and when);
//! - implements OpenFeature's `FeatureProvider` ([`RollgateProvider`]).
//!
//! It never hurts its app: evaluation is a lock-free read of an immutable snapshot that never
//! waits on the network, never panics and (for the typed getters returning plain values)
//! never allocates; a server down at start means the caller's defaults after
//! [`ClientBuilder::start_timeout`]; a server down later means the last config stays in force;
//! memory for pending signals is bounded (drops are counted in [`Status::dropped_signals`]).
//!
//! ```no_run
//! use rollgate_client::{Client, Context, Measure};
//! use serde_json::json;
//!
//! # async fn demo() -> Result<(), rollgate_client::BuildError> {
//! let client = Client::builder("http://localhost:8080", "client-token").connect().await?;
//!
//! let user: Context = match json!({"targetingKey": "user-42", "tier": "gold"}) {
//!     serde_json::Value::Object(map) => map,
//!     _ => unreachable!(),
//! };
//! if client.bool_value("qr-ordering", &user, false) {
//!     // new behaviour; the exposure is recorded
//! }
//! // Something went wrong for this user: attributed to the variant they were served.
//! client.report_for("qr-ordering", &user, "payment_failed", Measure::Count(1));
//! client.complaint_for("qr-ordering", &user);
//!
//! client.shutdown().await; // flushes
//! # Ok(())
//! # }
//! ```
//!
//! ## Attribution of reports and complaints
//! A report counts against the variant *that user* was served. Three ways to say which:
//! [`Client::report_for`] / [`Client::complaint_for`] take the user's context and evaluate
//! the flag again (deterministic: the same variant while the config is unchanged);
//! [`Client::report_variant`] takes the variant the app kept; [`Client::report`] /
//! [`Client::complaint`] use the variant this process served last for the flag, which is
//! right for a process that serves one user (a desktop app, a device).
//!
//! ## Modules
//! `client` (evaluation and the public handle), `options` (the builder), `flagset` (the
//! immutable snapshot) and `counters` (its striped exposure counters), `sync` (config and
//! stream), `sse` (the event-stream parser), `signals` (the bounded pending store),
//! `flusher` (sending), `provider` (OpenFeature), `error`.

#![deny(missing_docs)]

mod client;
mod counters;
mod error;
mod flags;
mod flagset;
mod flusher;
mod options;
mod provider;
mod shared;
mod signals;
mod sketch;
mod sse;
mod sync;

pub use client::{Client, Status};
pub use error::{BuildError, EvaluationError};
pub use flags::{Flags, Served};
pub use options::ClientBuilder;
pub use provider::RollgateProvider;
pub use signals::Measure;

/// The evaluation context: `targetingKey` plus free attributes, as a JSON object
/// (re-exported from `rollgate-eval`).
///
/// ```
/// let mut user = rollgate_client::Context::new();
/// user.insert("targetingKey".into(), "user-42".into());
/// user.insert("tier".into(), "gold".into());
/// ```
pub use rollgate_eval::Context;

/// Why a variant was served, in OFREP's vocabulary (re-exported from `rollgate-eval`).
///
/// ```
/// assert_eq!(rollgate_client::Reason::Split.as_str(), "SPLIT");
/// ```
pub use rollgate_eval::Reason;

/// A flag's value type (re-exported from `rollgate-eval`).
///
/// ```
/// assert_eq!(rollgate_client::FlagType::Boolean.as_str(), "boolean");
/// ```
pub use rollgate_eval::FlagType;
