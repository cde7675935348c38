//! The guard history (issue 13): a bounded time series of every release module's guard
//! readings, so that charts exist for whoever opens the page, even after a rollback.
//!
//! A sampler task ([`run`]) looks at every started release once per `tick`, through the very
//! status document the API serves (`controller::status`, read-only here), and turns each
//! module's sample into a point by [`rules::take`]: a marked point at every change of state,
//! stage or decision; while the module is live, a point every `period` when its readings moved
//! and every `heartbeat` anyway. Points go to the node's own store (the `history` tree,
//! `store/history.rs`) and to the live feed ([`History::subscribe`], served as SSE by
//! `api::history`); compaction ([`rules::compact`]) keeps them bounded.
//!
//! Each node samples its own state, in a cluster too: every node applies the same releases
//! and reads the same cluster-wide signal totals, so every node keeps the same series (from
//! the time it was up); see docs/api.md, "Guard history".

pub mod rules;

use crate::clock::now_ms;
use crate::controller::status;
use crate::state::AppState;
use crate::store::{HistoryKey, Store, StoreError};
pub use rules::Settings;
use rules::{Last, Take};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

/// A point as the live feed carries it: which series, and the point's JSON.
#[derive(Debug, Clone)]
pub struct LivePoint {
    /// The release.
    pub release: Uuid,
    /// The SSE frame (`event: point`), formatted once for every subscriber.
    pub frame: bytes::Bytes,
}

/// The history: the store it persists to, what the sampler remembers, the live feed.
pub struct History {
    store: Store,
    settings: Settings,
    last: Mutex<HashMap<HistoryKey, Last>>,
    /// Releases whose final state is recorded: not looked at again in this run.
    finished: Mutex<HashSet<Uuid>>,
    /// Times and marks of the series read so far (loaded on first read, kept in step with
    /// writes): a read picks its points here and fetches only those.
    times: Mutex<HashMap<HistoryKey, Vec<(u64, bool)>>>,
    feed: broadcast::Sender<Arc<LivePoint>>,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Why a history read failed.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl History {
    /// A history persisting to `store`.
    pub fn new(store: Store, settings: Settings) -> Self {
        History {
            store,
            settings,
            last: Mutex::new(HashMap::new()),
            finished: Mutex::new(HashSet::new()),
            times: Mutex::new(HashMap::new()),
            feed: broadcast::channel(4096).0,
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// New points as they are taken.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LivePoint>> {
        self.feed.subscribe()
    }

    /// Stores a point as if sampled (the sampler's own path; tests and benches seed history
    /// with it).
    pub fn record(
        &self,
        series: HistoryKey,
        flag: &str,
        point: &Value,
        mark: bool,
    ) -> Result<(), StoreError> {
        let at_ms = point["at_ms"].as_u64().unwrap_or(0);
        let bytes = serde_json::to_vec(point).map_err(StoreError::Encode)?;
        self.store.history_put(series, at_ms, mark, &bytes)?;
        if let Some(times) = self.lock_times().get_mut(&series) {
            let at = times.partition_point(|t| *t < (at_ms, mark));
            if times.get(at) != Some(&(at_ms, mark)) {
                times.insert(at, (at_ms, mark));
            }
        }
        let event = json!({
            "release": series.release,
            "module": series.module,
            "flag": flag,
            "point": point,
        });
        let frame = format!("event: point\ndata: {event}\n\n");
        // No subscriber is fine.
        let _ = self.feed.send(Arc::new(LivePoint {
            release: series.release,
            frame: bytes::Bytes::from(frame),
        }));
        Ok(())
    }

    /// The points of a series since `since_ms`, about `max_points` of them (marked points
    /// always), oldest first, each as its stored JSON (served as is, not re-encoded).
    pub fn points(
        &self,
        series: HistoryKey,
        since_ms: u64,
        max_points: usize,
    ) -> Result<Vec<sled::IVec>, HistoryError> {
        let times = {
            // Loaded under the lock, so that no point recorded meanwhile is missed.
            let mut all = self.lock_times();
            match all.get(&series) {
                Some(t) => t.clone(),
                None => {
                    let t = self.store.history_times(series)?;
                    all.insert(series, t.clone());
                    t
                }
            }
        };
        let from = times.partition_point(|t| t.0 < since_ms);
        let times = &times[from..];
        let mut out = Vec::new();
        for i in rules::thin(times, max_points) {
            let (at_ms, mark) = times[i];
            if let Some(json) = self.store.history_get(series, at_ms, mark)? {
                out.push(json);
            }
        }
        Ok(out)
    }

    /// The answer of `GET /api/v1/releases/{id}/history`: `{"release", "name", "modules":
    /// [{"module", "flag", "points"}]}` for every module of `flags` (or only `only`), assembled
    /// around the stored JSON of the points (not decoded and re-encoded).
    pub fn answer(
        &self,
        release: Uuid,
        name: &str,
        flags: &[String],
        only: Option<u16>,
        since_ms: u64,
        max_points: usize,
    ) -> Result<Vec<u8>, HistoryError> {
        let head = json!({"release": release, "name": name}).to_string();
        let mut body = head.into_bytes();
        body.pop(); // its closing brace
        body.extend_from_slice(b",\"modules\":[");
        let mut first = true;
        for (i, flag) in flags.iter().enumerate() {
            let Ok(module) = u16::try_from(i) else {
                break;
            };
            if only.is_some_and(|m| m != module) {
                continue;
            }
            let points = self.points(HistoryKey { release, module }, since_ms, max_points)?;
            if !first {
                body.push(b',');
            }
            first = false;
            let entry = json!({"module": module, "flag": flag}).to_string();
            body.extend_from_slice(&entry.as_bytes()[..entry.len() - 1]);
            body.extend_from_slice(b",\"points\":[");
            for (j, p) in points.iter().enumerate() {
                if j > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(p);
            }
            body.extend_from_slice(b"]}");
        }
        body.extend_from_slice(b"]}");
        Ok(body)
    }

    /// One look at every started release (see the module header).
    pub async fn sample(&self, state: &AppState) -> Result<(), StoreError> {
        let now = now_ms();
        for release in status::releases(state).await {
            if !release.started || self.is_finished(release.id) {
                continue;
            }
            let doc = status::status_json(state, &release);
            let modules = doc["modules"].as_array().cloned().unwrap_or_default();
            for (i, m) in modules.iter().enumerate() {
                let Ok(module) = u16::try_from(i) else {
                    break;
                };
                let series = HistoryKey {
                    release: release.id,
                    module,
                };
                self.sample_module(series, m, now)?;
            }
            // A release that no longer runs never changes again: its final state is recorded.
            if !release.is_live() {
                self.lock_finished().insert(release.id);
            }
        }
        Ok(())
    }

    fn is_finished(&self, release: Uuid) -> bool {
        self.lock_finished().contains(&release)
    }

    fn lock_finished(&self) -> std::sync::MutexGuard<'_, HashSet<Uuid>> {
        self.finished.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_times(&self) -> std::sync::MutexGuard<'_, HashMap<HistoryKey, Vec<(u64, bool)>>> {
        self.times.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_last(&self) -> std::sync::MutexGuard<'_, HashMap<HistoryKey, Last>> {
        self.last.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Samples one module.
    fn sample_module(&self, series: HistoryKey, m: &Value, now: u64) -> Result<(), StoreError> {
        let state = m["state"].as_str().unwrap_or("");
        let live = matches!(state, "ramping" | "paused" | "held");
        let signature = format!(
            "{state}|{}|{}|{}|{}",
            m["stage"], m["paused"], m["decision"]["at_ms"], m["decision"]["action"]
        );
        let guards = m["guards"].to_string();
        let known = self.lock_last().get(&series).cloned();
        let last = match known {
            Some(l) => Some(l),
            None => self.store.history_last(series)?.and_then(|p| {
                let point: Value = serde_json::from_slice(&p.json).ok()?;
                Some(Last {
                    at_ms: p.at_ms,
                    signature: point["signature"].as_str()?.to_owned(),
                    guards: point["guards"].to_string(),
                })
            }),
        };
        let mark = match rules::take(
            last.as_ref(),
            live,
            &signature,
            &guards,
            now,
            &self.settings,
        ) {
            Take::Skip => {
                if let Some(l) = last {
                    self.lock_last().insert(series, l);
                }
                return Ok(());
            }
            Take::Point { mark } => mark,
        };
        let mut point = json!({
            "at_ms": now,
            "state": state,
            "stage": m["stage"],
            "percentage": m["percentage"],
            "paused": m["paused"],
            "mark": mark,
            "signature": signature,
            "guards": m["guards"],
        });
        if mark {
            point["decision"] = m["decision"].clone();
        }
        let flag = m["flag"].as_str().unwrap_or("");
        self.record(series, flag, &point, mark)?;
        let l = Last {
            at_ms: now,
            signature,
            guards,
        };
        self.lock_last().insert(series, l);
        Ok(())
    }

    /// Drops what [`rules::compact`] says, in every series.
    pub fn compact(&self, now_ms: u64) -> Result<usize, StoreError> {
        let mut dropped = 0;
        for (series, points) in self.store.history_index()? {
            let drop = rules::compact(&points, now_ms, &self.settings);
            if !drop.is_empty() {
                dropped += drop.len();
                self.store.history_remove(series, &drop)?;
                // Read again on the next request.
                self.lock_times().remove(&series);
            }
        }
        Ok(dropped)
    }
}

/// The sampler and compaction, until `stopped`.
pub async fn run(
    state: actix_web::web::Data<AppState>,
    history: Arc<History>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(history.settings.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut compact = tokio::time::interval(history.settings.compact_every);
    compact.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(error) = history.sample(&state).await {
                    tracing::warn!(%error, "guard history: sampling failed");
                }
            }
            _ = compact.tick() => {
                let h = history.clone();
                let done = tokio::task::spawn_blocking(move || h.compact(now_ms())).await;
                match done {
                    Ok(Ok(n)) if n > 0 => tracing::debug!(dropped = n, "guard history compacted"),
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => tracing::warn!(%error, "guard history: compaction failed"),
                    Err(error) => tracing::warn!(%error, "guard history: compaction task failed"),
                }
            }
            _ = stopped.changed() => return,
        }
    }
}
