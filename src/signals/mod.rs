//! Signal ingestion: what client apps report per flag and variant (exposures, errors,
//! complaints, latencies, any named metric), aggregated in memory.
//!
//! Invariants:
//! - Ingestion never waits on disk and never blocks evaluation: counters are atomics behind
//!   read-mostly maps; a write lock is taken only the first time a (flag, variant, metric)
//!   appears.
//! - Counts are cumulative since the series first appeared; the controller keeps the values
//!   it saw at module and stage starts, so windows are differences of two readings.
//! - Aggregates are persisted by a small task every second and on shutdown: a `kill -9` loses
//!   at most the last second of signals (documented in `docs/operations.md`).

mod aggregate;
mod bounds;
mod histogram;
mod ingest;
mod limit;
pub mod sketch;

pub use aggregate::{
    series_key, split_series_key, Aggregates, MetricTotals, SavedAggregates, AUDIENCE_SEPARATOR,
};
pub use histogram::Histogram;
pub use ingest::{
    check, check_timestamps, ingest, ClientReport, IngestReport, Malformed, SignalBatch,
    SignalError,
};
pub use limit::RateLimiter;
