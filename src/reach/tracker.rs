//! The pure core of reach: which clients are live and which revision each has applied, the
//! last changes, and for each change how many live clients have applied it and how fast.
//! Plain values in, plain values out; `now` (Unix ms, the server's clock) is always an argument.
//!
//! Invariants:
//! - A client is live while it was heard from less than `live_window_ms` ago; older clients are
//!   forgotten (their next report makes them new). At most `max_clients` are kept: a new one
//!   beyond that evicts the one heard from longest ago (counted in `evicted`).
//! - A client's revision never goes down (a late batch cannot un-apply a change), and never
//!   exceeds the newest revision the server has announced (a client cannot claim the future).
//! - The last `max_changes` changes are kept, in revision order; each keeps its latencies in a
//!   bounded histogram ([`Latency`]).
//! - A latency sample is the time from a change's commit to the moment a client applied it
//!   (receive time − `applied_ms_ago`, never below 0), taken when a client that was seen on an
//!   older revision reports one at or past the change. A client first seen already past a
//!   change counts as confirmed for it but adds no sample: when it applied is unknown.

use super::latency::Latency;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

/// The core's bounds and the alert's rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// A client is live while heard from within this many ms (60,000).
    pub live_window_ms: u64,
    /// Most clients kept (100,000).
    pub max_clients: usize,
    /// Most changes kept (1,024).
    pub max_changes: usize,
    /// Share of live clients that confirms a change (0.99).
    pub target: f64,
    /// A rollback not confirmed this many ms after its commit is unconfirmed (10,000).
    pub timeout_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            live_window_ms: 60_000,
            max_clients: 100_000,
            max_changes: 1_024,
            target: 0.99,
            timeout_ms: 10_000,
        }
    }
}

/// What a client said about itself in a signal batch (already validated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report<'a> {
    /// The client instance's id.
    pub id: &'a str,
    /// The highest revision it has applied.
    pub revision: u64,
    /// How long before sending it applied `revision`.
    pub applied_ms_ago: u64,
    /// The client is shutting down: this is its last report, and it stops counting as live.
    pub closing: bool,
}

/// What a change was about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Subject {
    /// A flag (created, changed or deleted).
    Flag,
    /// A segment.
    Segment,
}

/// One committed change, as the commit announces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Its revision.
    pub revision: u64,
    /// Flag or segment.
    pub subject: Subject,
    /// The flag's or segment's key.
    pub key: String,
    /// The audit action that caused it (`module.rollback`, `flag.update`, …), if any.
    pub action: Option<String>,
    /// Caused by a rollback (a module's, or a hand-ramped flag's set to 0 %).
    pub rollback: bool,
    /// The release it belongs to, by id, if any.
    pub release: Option<String>,
    /// Commit time, Unix ms.
    pub at_ms: u64,
}

/// Where a change stands with the live clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReachState {
    /// Below the target share, still within the timeout.
    Confirming,
    /// The target share of live clients applied it (once reached, it stays).
    Confirmed,
    /// Below the target share after the timeout.
    Unconfirmed,
    /// No live client to apply it (and it was never confirmed).
    NoLiveClients,
}

/// A change's figures at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figures {
    /// The change's revision.
    pub revision: u64,
    /// `flag` or `segment`.
    pub subject: Subject,
    /// Its key.
    pub key: String,
    /// The audit action that caused it.
    pub action: Option<String>,
    /// Caused by a rollback.
    pub rollback: bool,
    /// Release id, if any.
    pub release: Option<String>,
    /// Commit time, RFC 3339 UTC.
    pub at: String,
    /// Commit time, Unix ms.
    pub at_ms: u64,
    /// Clients live now.
    pub live_clients: u64,
    /// Live clients whose revision is at or past the change's.
    pub confirmed: u64,
    /// `confirmed / live_clients`; `None` without live clients.
    pub share: Option<f64>,
    /// Latency samples (clients seen moving from an older revision to this one or later).
    pub samples: u64,
    /// Median latency from the commit to a client's apply, ms.
    pub p50_ms: Option<u64>,
    /// 99th percentile of the same, ms.
    pub p99_ms: Option<u64>,
    /// Where it stands.
    pub state: ReachState,
    /// Whether the unconfirmed-rollback alert fired for it.
    pub alerted: bool,
}

/// What a check found that the shell must act on.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A rollback is below the target share at its deadline, with live clients: alert once.
    Unconfirmed(Figures),
    /// A rollback that was alerted on reached the target share since.
    ConfirmedLate(Figures),
}

#[derive(Debug)]
struct Client {
    revision: u64,
    /// Key in `by_seen`: (last heard, Unix ms; a sequence number).
    seen: (u64, u64),
}

#[derive(Debug)]
struct Tracked {
    change: Change,
    latency: Latency,
    confirmed: bool,
    decided: bool,
    alerted: bool,
}

/// The tracker.
#[derive(Debug)]
pub struct Tracker {
    settings: Settings,
    /// The newest revision announced.
    revision: u64,
    clients: HashMap<Arc<str>, Client>,
    by_seen: BTreeMap<(u64, u64), Arc<str>>,
    /// Clients per revision.
    by_revision: BTreeMap<u64, u64>,
    changes: VecDeque<Tracked>,
    seq: u64,
    evicted: u64,
    alerts: u64,
}

impl Tracker {
    /// An empty tracker; `revision` is the server's revision now (from the store).
    pub fn new(settings: Settings, revision: u64) -> Self {
        Tracker {
            settings,
            revision,
            clients: HashMap::new(),
            by_seen: BTreeMap::new(),
            by_revision: BTreeMap::new(),
            changes: VecDeque::new(),
            seq: 0,
            evicted: 0,
            alerts: 0,
        }
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Records a client's report received at `now`.
    pub fn report(&mut self, r: Report<'_>, now: u64) {
        self.expire(now);
        let revision = r.revision.min(self.revision);
        let applied_at = now.saturating_sub(r.applied_ms_ago);
        self.seq += 1;
        let seen = (now, self.seq);
        if let Some(c) = self.clients.get_mut(r.id) {
            if let Some(id) = self.by_seen.remove(&c.seen) {
                self.by_seen.insert(seen, id);
            }
            c.seen = seen;
            if revision > c.revision {
                for t in changes_in(&mut self.changes, c.revision, revision) {
                    t.latency.add(applied_at.saturating_sub(t.change.at_ms));
                }
                move_count(&mut self.by_revision, Some(c.revision), revision);
                c.revision = revision;
            }
            if r.closing {
                self.by_seen.remove(&seen);
                self.forget(r.id);
            }
            return;
        }
        if r.closing {
            // A client closing without having counted: nothing to forget.
            return;
        }
        if self.clients.len() >= self.settings.max_clients.max(1) {
            if let Some((_, id)) = self.by_seen.pop_first() {
                self.forget(&id);
                self.evicted += 1;
            }
        }
        let id: Arc<str> = Arc::from(r.id);
        self.by_seen.insert(seen, id.clone());
        self.clients.insert(id, Client { revision, seen });
        move_count(&mut self.by_revision, None, revision);
    }

    /// Records a committed change. Changes come in revision order; one that does not (it cannot,
    /// under the single writer) is ignored.
    pub fn change(&mut self, change: Change) {
        if self
            .changes
            .back()
            .is_some_and(|t| t.change.revision >= change.revision)
        {
            return;
        }
        self.revision = self.revision.max(change.revision);
        self.changes.push_back(Tracked {
            change,
            latency: Latency::default(),
            confirmed: false,
            decided: false,
            alerted: false,
        });
        while self.changes.len() > self.settings.max_changes.max(1) {
            self.changes.pop_front();
        }
    }

    /// Clients live at `now`.
    pub fn live_clients(&mut self, now: u64) -> u64 {
        self.expire(now);
        self.clients.len() as u64
    }

    /// Clients evicted because `max_clients` were live.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Unconfirmed-rollback alerts fired.
    pub fn alerts(&self) -> u64 {
        self.alerts
    }

    /// The newest revision announced.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The figures of the kept changes that `keep` selects, newest first, at most `limit`.
    pub fn list(&mut self, now: u64, keep: impl Fn(&Change) -> bool, limit: usize) -> Vec<Figures> {
        self.expire(now);
        let confirmed = self.confirmed_counts();
        let live = self.clients.len() as u64;
        self.changes
            .iter()
            .zip(confirmed)
            .rev()
            .filter(|(t, _)| keep(&t.change))
            .take(limit)
            .map(|(t, c)| figures(t, live, c, now, &self.settings))
            .collect()
    }

    /// The figures of the newest change to flag `key`.
    pub fn latest_of_flag(&mut self, now: u64, key: &str) -> Option<Figures> {
        self.list(now, |c| c.subject == Subject::Flag && c.key == key, 1)
            .pop()
    }

    /// The figures of each flag's newest change, by key.
    pub fn latest_per_flag(&mut self, now: u64) -> BTreeMap<String, Figures> {
        let mut out = BTreeMap::new();
        for f in self.list(now, |c| c.subject == Subject::Flag, usize::MAX) {
            out.entry(f.key.clone()).or_insert(f);
        }
        out
    }

    /// The periodic check: marks changes that reached the target share as confirmed, and
    /// decides each rollback once at its deadline — with live clients below the target share
    /// it is [`Outcome::Unconfirmed`] (alert once); without live clients nothing fires. A
    /// rollback alerted on that reaches the target later is [`Outcome::ConfirmedLate`].
    pub fn settle(&mut self, now: u64) -> Vec<Outcome> {
        self.expire(now);
        let confirmed = self.confirmed_counts();
        let live = self.clients.len() as u64;
        let mut out = Vec::new();
        for (t, c) in self.changes.iter_mut().zip(confirmed) {
            if t.confirmed {
                continue;
            }
            if reached(live, c, self.settings.target) {
                t.confirmed = true;
                if t.alerted {
                    out.push(Outcome::ConfirmedLate(figures(
                        t,
                        live,
                        c,
                        now,
                        &self.settings,
                    )));
                }
                continue;
            }
            let due = now >= t.change.at_ms.saturating_add(self.settings.timeout_ms);
            if t.change.rollback && !t.decided && due {
                t.decided = true;
                if live > 0 {
                    t.alerted = true;
                    self.alerts += 1;
                    out.push(Outcome::Unconfirmed(figures(
                        t,
                        live,
                        c,
                        now,
                        &self.settings,
                    )));
                }
            }
        }
        out
    }

    /// Forgets clients not heard from within the live window.
    fn expire(&mut self, now: u64) {
        let window = self.settings.live_window_ms;
        while let Some((&(seen, _), _)) = self.by_seen.first_key_value() {
            if now.saturating_sub(seen) < window {
                break;
            }
            if let Some((_, id)) = self.by_seen.pop_first() {
                self.forget(&id);
            }
        }
    }

    /// Removes a client (already out of `by_seen`).
    fn forget(&mut self, id: &str) {
        if let Some(c) = self.clients.remove(id) {
            if let Some(n) = self.by_revision.get_mut(&c.revision) {
                *n -= 1;
                if *n == 0 {
                    self.by_revision.remove(&c.revision);
                }
            }
        }
    }

    /// For each kept change (in order), the clients at or past its revision: one merge of the
    /// two sorted sequences, so the cost is the number of changes plus distinct revisions.
    fn confirmed_counts(&self) -> Vec<u64> {
        let mut out = vec![0; self.changes.len()];
        let mut clients = self.by_revision.iter().rev().peekable();
        let mut at_or_past = 0;
        for (i, t) in self.changes.iter().enumerate().rev() {
            while let Some((_, n)) = clients.next_if(|&(r, _)| *r >= t.change.revision) {
                at_or_past += n;
            }
            out[i] = at_or_past;
        }
        out
    }
}

/// The kept changes with a revision in `(from, to]`.
fn changes_in(
    changes: &mut VecDeque<Tracked>,
    from: u64,
    to: u64,
) -> impl Iterator<Item = &mut Tracked> {
    let start = changes.partition_point(|t| t.change.revision <= from);
    let end = changes.partition_point(|t| t.change.revision <= to);
    changes.range_mut(start..end.max(start))
}

fn move_count(by_revision: &mut BTreeMap<u64, u64>, from: Option<u64>, to: u64) {
    if let Some(from) = from {
        if let Some(n) = by_revision.get_mut(&from) {
            *n -= 1;
            if *n == 0 {
                by_revision.remove(&from);
            }
        }
    }
    *by_revision.entry(to).or_insert(0) += 1;
}

/// Whether `confirmed` of `live` clients meet the target share.
fn reached(live: u64, confirmed: u64, target: f64) -> bool {
    live > 0 && confirmed as f64 / live as f64 >= target - 1e-12
}

fn figures(t: &Tracked, live: u64, confirmed: u64, now: u64, settings: &Settings) -> Figures {
    let c = &t.change;
    let state = if t.confirmed || reached(live, confirmed, settings.target) {
        ReachState::Confirmed
    } else if live == 0 {
        ReachState::NoLiveClients
    } else if now < c.at_ms.saturating_add(settings.timeout_ms) {
        ReachState::Confirming
    } else {
        ReachState::Unconfirmed
    };
    Figures {
        revision: c.revision,
        subject: c.subject,
        key: c.key.clone(),
        action: c.action.clone(),
        rollback: c.rollback,
        release: c.release.clone(),
        at: humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(c.at_ms))
            .to_string(),
        at_ms: c.at_ms,
        live_clients: live,
        confirmed,
        share: (live > 0).then(|| confirmed as f64 / live as f64),
        samples: t.latency.samples(),
        p50_ms: t.latency.quantile(0.5),
        p99_ms: t.latency.quantile(0.99),
        state,
        alerted: t.alerted,
    }
}

#[cfg(test)]
#[path = "tracker_tests.rs"]
mod tests;
