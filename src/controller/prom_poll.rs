//! The Prometheus poller: on the node holding the controller lease, queries the Prometheus
//! guards of every live release module and keeps the latest answer per (release, module,
//! guard) in `AppState::prom`, which the controller step reads as plain numbers.
//!
//! It runs on a task of its own, never on the evaluation or signal-ingestion paths. Each guard
//! is queried every `interval` (and at once when its module's stage changed), each query
//! bounded by its `timeout`; a failure is recorded as the answer (the analysis reads it as
//! silent telemetry). A node without the lease keeps no answers.

use crate::policies::Guard;
use crate::release::ModuleState;
use crate::sources::prometheus::{self, PromError};
use crate::sources::readings::{Answer, Counted, VariantCounts};
use crate::sources::{GuardSource, PromQuery};
use crate::state::AppState;
use actix_web::web;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;

/// How often the poller looks for guards that are due.
const TICK: Duration = Duration::from_millis(200);

/// One guard of one module to query now.
struct Job {
    release: Uuid,
    flag: String,
    metric: String,
    query: PromQuery,
    /// Whether the module window is needed (`max_rate`, `max_count`).
    module_window: bool,
    stage_started_ms: u64,
    module_started_ms: u64,
}

/// Runs the poller until `shutdown` becomes true.
/// HTTPS to Prometheus trusts the system's roots plus `ca_file`.
pub async fn run_prom_poller(
    state: web::Data<AppState>,
    ca_file: Option<std::path::PathBuf>,
    mut shutdown: watch::Receiver<bool>,
) {
    let client = match prometheus::http_client(ca_file.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "building the Prometheus client failed; Prometheus guards will read as silent");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.changed() => break,
        }
        if *shutdown.borrow() {
            break;
        }
        if !state.lease.held() {
            state.prom.retain(|_, _| false);
            continue;
        }
        let jobs = due(&state).await;
        if jobs.is_empty() {
            continue;
        }
        let now_ms = crate::clock::now_ms();
        let fetched =
            futures_util::future::join_all(jobs.iter().map(|job| fetch(&client, job, now_ms)))
                .await;
        for (job, answer) in jobs.iter().zip(fetched) {
            if let Err(e) = &answer.outcome {
                tracing::warn!(flag = %job.flag, metric = %job.metric, error = %e, "Prometheus guard query failed");
            }
            state.prom.put(job.release, &job.flag, &job.metric, answer);
        }
        state.wakeup.notify_one();
    }
    tracing::debug!("Prometheus poller stopped");
}

/// The guards due for a query now; forgets the answers of modules no longer watched.
async fn due(state: &AppState) -> Vec<Job> {
    let now_ms = crate::clock::now_ms();
    let policies = state.policies.load_full();
    let live = state.live.load_full();
    let mut watched: Vec<(Uuid, String)> = Vec::new();
    let mut jobs = Vec::new();
    let sourced = |g: &Guard| g.source == GuardSource::Prometheus;
    if !policies.iter().any(|p| p.guards.iter().any(sourced)) {
        // No policy reads Prometheus: no need for the writer lock.
        state.prom.retain(|_, _| false);
        return jobs;
    }
    let w = state.writer.lock().await;
    for release in w.releases.values().filter(|r| r.started && r.is_live()) {
        let Some(policy) = release.policy.as_ref().and_then(|p| policies.get(p)) else {
            continue;
        };
        for m in &release.modules {
            let ramping = matches!(
                m.state,
                ModuleState::Ramping
                    | ModuleState::Paused
                    | ModuleState::Held
                    | ModuleState::Completed
            );
            let (Some(stage_started_ms), true, true) =
                (m.stage_started_ms, ramping, m.audiences.is_empty())
            else {
                continue;
            };
            if live.get(&m.flag).is_none() {
                continue;
            }
            watched.push((release.id, m.flag.clone()));
            for g in policy
                .guards
                .iter()
                .filter(|g| g.source == GuardSource::Prometheus)
            {
                let Some(query) = &g.prometheus else {
                    continue;
                };
                let fresh = state.prom.last(release.id, &m.flag, &g.metric).is_some_and(
                    |(fetched, stage)| {
                        stage == stage_started_ms
                            && now_ms.saturating_sub(fetched) < query.interval().as_millis() as u64
                    },
                );
                if !fresh {
                    jobs.push(Job {
                        release: release.id,
                        flag: m.flag.clone(),
                        metric: g.metric.clone(),
                        query: query.clone(),
                        module_window: needs_module_window(g),
                        stage_started_ms,
                        module_started_ms: m.started_ms.unwrap_or(stage_started_ms),
                    });
                }
            }
        }
    }
    drop(w);
    state
        .prom
        .retain(|release, flag| watched.iter().any(|(r, f)| *r == release && f == flag));
    jobs
}

fn needs_module_window(g: &Guard) -> bool {
    g.max_rate.is_some() || g.max_count.is_some()
}

/// Queries one guard: events and exposures over the stage window (and the module window when
/// the guard needs it), concurrently.
async fn fetch(client: &reqwest::Client, job: &Job, now_ms: u64) -> Answer {
    let q = &job.query;
    let render =
        |template: &str, since: u64| q.render(template, &job.flag, now_ms.saturating_sub(since));
    let queries = [
        render(&q.events, job.stage_started_ms),
        render(&q.exposures, job.stage_started_ms),
    ];
    let run = |query: String| async move {
        prometheus::query_by_label(
            client,
            &q.url,
            &query,
            now_ms as f64 / 1000.0,
            q.variant_label(),
            q.timeout(),
        )
        .await
    };
    let stage = async {
        let (e, x) =
            futures_util::future::join(run(queries[0].clone()), run(queries[1].clone())).await;
        counts(e, x)
    };
    let module = async {
        if !job.module_window {
            return Ok(VariantCounts::default());
        }
        let (e, x) = futures_util::future::join(
            run(render(&q.events, job.module_started_ms)),
            run(render(&q.exposures, job.module_started_ms)),
        )
        .await;
        counts(e, x)
    };
    let (stage, module) = futures_util::future::join(stage, module).await;
    Answer {
        fetched_ms: now_ms,
        stage_started_ms: job.stage_started_ms,
        queries,
        outcome: stage.and_then(|stage| module.map(|module| Counted { stage, module })),
    }
}

fn counts(
    events: Result<BTreeMap<String, u64>, PromError>,
    exposures: Result<BTreeMap<String, u64>, PromError>,
) -> Result<VariantCounts, String> {
    Ok(VariantCounts {
        events: events.map_err(|e| format!("events query: {e}"))?,
        exposures: exposures.map_err(|e| format!("exposures query: {e}"))?,
    })
}
