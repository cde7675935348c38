//! Reach: proof that a change — above all a rollback — reached the fleet.
//!
//! Clients report the revision they have applied with each signal batch (`client` in
//! `POST /api/v1/signals`, docs/clients.md); the commit announces every change with its
//! revision, time and cause. From both, [`Tracker`] (the pure core, `tracker.rs`) knows for every
//! recent change how many live clients have applied it and how fast ([`Figures`]).
//!
//! [`Reach`] is the shell the server shares: the tracker behind one short `std::sync::Mutex`
//! section per call, never held across an `.await`, never around I/O. The signals handler
//! takes it once per batch (never per signal), the commit once per commit (before the new
//! snapshot is published, so no client can report a revision the tracker has not heard of),
//! readers (status, `/api/v1/reach`, `/metrics`) once per answer, and the controller's reach
//! check once per period. Acting on what the check finds (audit, webhook) is the controller's.
//!
//! Nothing here is persisted: after a restart the tracker starts empty (clients report again
//! within their heartbeat; changes before the restart are not tracked).

mod latency;
mod tracker;

pub use latency::Latency;
pub use tracker::{Change, Figures, Outcome, ReachState, Report, Settings, Subject, Tracker};

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The tracker, shared.
#[derive(Debug)]
pub struct Reach {
    tracker: Mutex<Tracker>,
    settings: Settings,
}

impl Reach {
    /// An empty tracker; `revision` is the server's revision now.
    pub fn new(settings: Settings, revision: u64) -> Self {
        Reach {
            tracker: Mutex::new(Tracker::new(settings, revision)),
            settings,
        }
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn lock(&self) -> MutexGuard<'_, Tracker> {
        // The tracker holds counts only; a panic elsewhere leaves nothing half-written that
        // matters more than losing the figures.
        self.tracker.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A client's report, received at `now`.
    pub fn heard(&self, report: Report<'_>, now: u64) {
        self.lock().report(report, now);
    }

    /// The changes of one commit, in revision order.
    pub fn changed(&self, changes: Vec<Change>) {
        let mut t = self.lock();
        for c in changes {
            t.change(c);
        }
    }

    /// The periodic check (see [`Tracker::settle`]).
    pub fn settle(&self, now: u64) -> Vec<Outcome> {
        self.lock().settle(now)
    }

    /// The newest changes (of flag `flag`, when given), newest first, and the fleet's figures.
    pub fn list(&self, now: u64, flag: Option<&str>, limit: usize) -> Listing {
        let mut t = self.lock();
        let changes = t.list(
            now,
            |c| flag.is_none_or(|f| c.subject == Subject::Flag && c.key == f),
            limit,
        );
        Listing {
            live_clients: t.live_clients(now),
            evicted_clients: t.evicted(),
            revision: t.revision(),
            changes,
        }
    }

    /// The figures of the newest change to flag `key`, if it is still kept.
    pub fn latest_of_flag(&self, now: u64, key: &str) -> Option<Figures> {
        self.lock().latest_of_flag(now, key)
    }

    /// What `/metrics` shows: fleet counters and each flag's newest change.
    pub fn gauges(&self, now: u64) -> Gauges {
        let mut t = self.lock();
        Gauges {
            live_clients: t.live_clients(now),
            evicted_clients: t.evicted(),
            unconfirmed_alerts: t.alerts(),
            latest: t.latest_per_flag(now),
        }
    }
}

/// The answer of `GET /api/v1/reach`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Listing {
    /// Clients heard from within the live window.
    pub live_clients: u64,
    /// Clients evicted since start because the tracker was full.
    pub evicted_clients: u64,
    /// The server's newest revision.
    pub revision: u64,
    /// Newest first.
    pub changes: Vec<Figures>,
}

/// The figures `/metrics` exports.
#[derive(Debug, Clone)]
pub struct Gauges {
    /// Clients heard from within the live window.
    pub live_clients: u64,
    /// Clients evicted since start.
    pub evicted_clients: u64,
    /// Unconfirmed-rollback alerts fired since start.
    pub unconfirmed_alerts: u64,
    /// Each flag's newest kept change.
    pub latest: BTreeMap<String, Figures>,
}
