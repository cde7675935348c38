//! The latest Prometheus answer per (release, module, guard), in memory.
//!
//! The poller (`controller::prom_poll`, on the node holding the controller lease) writes here;
//! the controller step and the status read plain copies ([`ModuleAnswers`]). Nothing is
//! persisted: a node that takes the lease over starts with no answers and queries again (the
//! analysis reads "no answer yet" as "cannot tell", then as silent telemetry).
//!
//! Invariant: an answer carries the window it was asked for (`stage_started_ms`), so a stage
//! that moved on never reads the previous stage's numbers.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;
use uuid::Uuid;

/// Events and exposures of one window, per variant (absent: no series for that variant).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct VariantCounts {
    /// Events per variant.
    pub events: BTreeMap<String, u64>,
    /// Exposures per variant.
    pub exposures: BTreeMap<String, u64>,
}

/// What a guard's queries returned.
#[derive(Debug, Clone, PartialEq)]
pub struct Counted {
    /// Since the current stage started (`$window` = the stage's age).
    pub stage: VariantCounts,
    /// Since the module started ramping (`$window` = the module's age).
    pub module: VariantCounts,
}

/// One guard's latest answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// When the queries were sent (Unix ms).
    pub fetched_ms: u64,
    /// The stage start the stage window was measured from.
    pub stage_started_ms: u64,
    /// The rendered queries of the stage window (events, exposures), for the records.
    pub queries: [String; 2],
    /// The counts, or why there are none (HTTP error, timeout, PromQL error, not a vector).
    pub outcome: Result<Counted, String>,
}

/// A module's answers by guard metric.
pub type ModuleAnswers = BTreeMap<String, Answer>;

/// The store: (release, module flag) → guard metric → answer.
#[derive(Debug, Default)]
pub struct Readings {
    inner: Mutex<BTreeMap<(Uuid, String), ModuleAnswers>>,
}

impl Readings {
    /// Records `answer` for guard `metric` of module `flag` of `release`.
    pub fn put(&self, release: Uuid, flag: &str, metric: &str, answer: Answer) {
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        map.entry((release, flag.to_owned()))
            .or_default()
            .insert(metric.to_owned(), answer);
    }

    /// A copy of the answers for module `flag` of `release` (empty when none).
    pub fn module(&self, release: Uuid, flag: &str) -> ModuleAnswers {
        let map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&(release, flag.to_owned()))
            .cloned()
            .unwrap_or_default()
    }

    /// When guard `metric` of module `flag` of `release` was last queried, and for which stage
    /// start.
    pub fn last(&self, release: Uuid, flag: &str, metric: &str) -> Option<(u64, u64)> {
        let map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&(release, flag.to_owned()))
            .and_then(|m| m.get(metric))
            .map(|a| (a.fetched_ms, a.stage_started_ms))
    }

    /// Keeps only the modules `keep` says are still watched.
    pub fn retain(&self, keep: impl Fn(Uuid, &str) -> bool) {
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|(release, flag), _| keep(*release, flag));
    }
}
