//! The release controller: the pure [`machine`] decides, the rooms around it act.
//!
//! - [`step`]: one module's step as plain values — observe the guards, decide, apply. The
//!   server and `bench/guards` both call it.
//! - `transition`: a controller turn, turning decisions into one batch (module states, flag
//!   rollouts, audit entries with the numbers, webhook events).
//! - [`pass`]: the controller's pass over running releases and hand guards (after a signal
//!   batch, on a tick), one commit.
//! - [`commands`]: operator commands (create, start, pause, resume, roll back, hold).
//! - [`alerts`]: Alertmanager alerts turned into commands.
//! - `hand`: guards on flags ramped by hand; [`watch`]: the watched set the signals handler
//!   reads, refreshed by the controller after each of its commits.
//! - [`status`] and [`metrics`]: what the controller shows.
//! - [`reach`]: the unconfirmed-rollback alert, from the reach tracker's periodic check.
//! - [`runner`]: the tokio loops; [`prom_poll`]: the Prometheus poller feeding Prometheus
//!   guards (on the lease holder, off the hot paths).
//!
//! Every action runs under the writer lock and commits once, through `writer`, before it takes
//! effect. Nothing here is called back from below.

pub mod alerts;
mod audiences;
pub mod commands;
mod hand;
pub mod machine;
pub mod metrics;
pub mod pass;
pub mod prom_poll;
pub mod reach;
pub mod runner;
pub mod status;
pub mod step;
mod transition;
pub mod watch;

pub use commands::ReleaseCommand;
