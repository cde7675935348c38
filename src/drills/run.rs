//! Performs one drill: creates the drill flag if missing, kills it and revives it through the
//! normal commit path (audited as `drill.kill` / `drill.revive`, reason `drill <id>`), waits a
//! bounded time for the streams, the clients' reports and the webhook, then checks the audit
//! log and the store, keeps the result, and alerts (`drill_failed`) when a check failed.

use super::{
    keep, passed, reach_check, streams_check, DrillCheck, DrillReach, DrillRequest, DrillResult,
    DrillStep, DrillStream,
};
use crate::auth::Actor;
use crate::controller::watch;
use crate::state::AppState;
use crate::webhooks::{WebhookEvent, WebhookKind};
use crate::writer::{to_value, Batch, OpsError};
use rollgate_eval::FlagDef;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// What a drill can fail with before it has a result.
pub type DrillError = OpsError;

/// How often the wait looks at the figures.
const POLL: Duration = Duration::from_millis(5);

/// Runs a drill and keeps its result.
pub async fn run(
    state: &AppState,
    actor: &Actor,
    req: DrillRequest,
) -> Result<DrillResult, OpsError> {
    let id = Uuid::now_v7();
    let started = crate::clock::now_rfc3339();
    let created_flag = ensure_flag(state, actor, &req.flag).await?;
    let webhooks_before = delivered(state);
    // Streams record their deliveries while the probe lives (see `hub.rs`).
    let _probe = state.hub.probe();

    let kill = switch(state, actor, &req.flag, false, id).await?;
    let killed_stored = keep::stored_enabled(state, &req.flag).await?;
    let deadline = Instant::now() + Duration::from_millis(req.wait_ms);
    let targets = state.webhooks.targets_for(WebhookKind::Drill) as u64;
    let reach = loop {
        let now = crate::clock::now_ms();
        let reach = reach_of(state, &req.flag, kill.revision, now);
        let streams_done = state.hub.delivered_of(kill.revision).len() as u64 >= kill.subscribers;
        let clients_done = reach.live_clients == 0 || reach.confirmed >= reach.live_clients;
        let hooks_done = delivered(state) >= webhooks_before + targets;
        if (streams_done && clients_done && hooks_done) || Instant::now() >= deadline {
            break reach;
        }
        tokio::time::sleep(POLL).await;
    };
    let kill_step = kill.step("kill", state);

    let revive = switch(state, actor, &req.flag, true, id).await?;
    let revived_stored = keep::stored_enabled(state, &req.flag).await?;
    let deadline = Instant::now() + Duration::from_millis(req.wait_ms);
    while (state.hub.delivered_of(revive.revision).len() as u64) < revive.subscribers
        && Instant::now() < deadline
    {
        tokio::time::sleep(POLL).await;
    }
    let steps = vec![kill_step, revive.step("revive", state)];

    let mut checks = vec![streams_check(&steps), reach_check(&reach)];
    checks.push(audit_check(state, &req.flag, id).await?);
    checks.push(webhook_check(state, webhooks_before, targets));
    checks.push(durable_check(killed_stored, revived_stored));
    let result = DrillResult {
        id: id.to_string(),
        flag: req.flag.clone(),
        actor: actor.name.clone(),
        node: state.cluster.as_ref().map(|n| n.id.clone()),
        started,
        finished: crate::clock::now_rfc3339(),
        created_flag,
        steps,
        reach,
        passed: passed(&checks),
        checks,
    };
    keep::save(state, &result).await?;
    if result.passed {
        tracing::info!(drill = %result.id, flag = %result.flag, "rollback drill passed");
    } else {
        alert(state, &result);
    }
    Ok(result)
}

/// Creates the drill flag (boolean, owned by drills) when it does not exist; returns whether it
/// did.
async fn ensure_flag(state: &AppState, actor: &Actor, key: &str) -> Result<bool, OpsError> {
    if state.live.load().get(key).is_some() {
        return Ok(false);
    }
    let def: FlagDef = serde_json::from_value(serde_json::json!({
        "key": key,
        "type": "boolean",
        "variants": {"off": false, "on": true},
        "off_variant": "off",
        "on_variant": "on",
        "rollout": 0,
        "description": "rollback drill flag (owned by drills; killed and revived by each drill)",
        "tags": ["drill"],
    }))
    .map_err(|source| OpsError::Encode {
        what: "drill flag",
        source,
    })?;
    crate::ops::flags::put(state, actor, key, def).await?;
    Ok(true)
}

/// One committed step, before its stream figures are read.
struct Switched {
    revision: u64,
    committed_at: String,
    commit_ms: f64,
    subscribers: u64,
}

impl Switched {
    fn step(&self, action: &str, state: &AppState) -> DrillStep {
        DrillStep {
            action: action.to_owned(),
            revision: self.revision,
            committed_at: self.committed_at.clone(),
            commit_ms: self.commit_ms,
            stream: DrillStream::of(self.subscribers, &state.hub.delivered_of(self.revision)),
        }
    }
}

/// Kills (`enabled = false`) or revives the drill flag; refused (409) when the flag is in a live
/// release or guarded by a policy, or is not in the state the step expects.
async fn switch(
    state: &AppState,
    actor: &Actor,
    key: &str,
    enabled: bool,
    id: Uuid,
) -> Result<Switched, OpsError> {
    let begun = Instant::now();
    let mut w = state.write().await?;
    let live = state.live.load_full();
    let current = live.get(key).ok_or_else(|| OpsError::NotFound {
        what: "flag",
        key: key.to_owned(),
    })?;
    if let Some((release, _)) = w.live_release_of(key) {
        return Err(OpsError::Conflict(format!(
            "flag {key:?} belongs to live release {:?}; a drill never touches a real rollout",
            release.name
        )));
    }
    if let Some(policy) = &current.def.policy {
        return Err(OpsError::Conflict(format!(
            "flag {key:?} is guarded by policy {policy:?}; a drill never touches a real rollout"
        )));
    }
    if !enabled && !current.def.enabled {
        return Err(OpsError::Conflict(format!(
            "flag {key:?} is killed already; unkill it before a drill"
        )));
    }
    let mut def = current.def.clone();
    def.enabled = enabled;
    let action = if enabled {
        "drill.revive"
    } else {
        "drill.kill"
    };
    let mut entry = w.audit(actor, action);
    entry.flag = Some(key.to_owned());
    entry.reason = Some(format!("drill {id}"));
    entry.before = Some(to_value("flag", &current.def)?);
    entry.after = Some(to_value("flag", &def)?);
    let mut batch = Batch::audit_only(entry);
    batch.flags.push(def);
    if !enabled {
        batch.webhooks.push(WebhookEvent {
            module: Some(key.to_owned()),
            ..WebhookEvent::new(
                WebhookKind::Drill,
                actor.name.clone(),
                format!("drill {id}: kill of {key}"),
            )
        });
    }
    let subscribers = state.hub.subscribers().max(0) as u64;
    state.commit(&mut w, batch).await?;
    let revision = state.hub.last_seq();
    let committed_at = crate::clock::now_rfc3339();
    watch::refresh(state, &mut w);
    drop(w);
    tracing::info!(flag = %key, drill = %id, action, revision, "drill step committed");
    Ok(Switched {
        revision,
        committed_at,
        commit_ms: begun.elapsed().as_secs_f64() * 1e3,
        subscribers,
    })
}

/// Webhook deliveries so far, successful or given up (each settles the event for its URL).
fn delivered(state: &AppState) -> u64 {
    let stats = state.webhooks.stats();
    stats.delivered.load(Relaxed)
}

fn reach_of(state: &AppState, flag: &str, revision: u64, now: u64) -> DrillReach {
    let listing = state.reach.list(now, Some(flag), 16);
    let figures = listing.changes.iter().find(|f| f.revision == revision);
    DrillReach {
        live_clients: figures.map_or(listing.live_clients, |f| f.live_clients),
        confirmed: figures.map_or(0, |f| f.confirmed),
        share: figures.and_then(|f| f.share),
        p50_ms: figures.and_then(|f| f.p50_ms),
        p99_ms: figures.and_then(|f| f.p99_ms),
        target: state.reach.settings().target,
    }
}

async fn audit_check(state: &AppState, flag: &str, id: Uuid) -> Result<DrillCheck, OpsError> {
    let reason = format!("drill {id}");
    let entries = keep::audit_of(state, flag).await?;
    let has = |action: &str| {
        entries
            .iter()
            .any(|e| e.action == action && e.reason.as_deref() == Some(reason.as_str()))
    };
    Ok(match (has("drill.kill"), has("drill.revive")) {
        (true, true) => DrillCheck::new(
            "audit",
            true,
            "drill.kill and drill.revive are in the audit log",
        ),
        (kill, revive) => DrillCheck::new(
            "audit",
            false,
            format!("missing from the audit log: {}", missing(kill, revive)),
        ),
    })
}

fn missing(kill: bool, revive: bool) -> &'static str {
    match (kill, revive) {
        (false, false) => "drill.kill and drill.revive",
        (false, true) => "drill.kill",
        _ => "drill.revive",
    }
}

fn webhook_check(state: &AppState, before: u64, targets: u64) -> DrillCheck {
    let stats = state.webhooks.stats();
    let now = delivered(state);
    if targets == 0 {
        return DrillCheck::new(
            "webhooks",
            true,
            "no webhook URL configured; nothing to deliver",
        );
    }
    let passed = now >= before + targets;
    DrillCheck::new(
        "webhooks",
        passed,
        format!(
            "drill event delivered to {} of {targets} URLs (failed {}, dropped {}, pending {})",
            (now - before).min(targets),
            stats.failed.load(Relaxed),
            stats.dropped.load(Relaxed),
            stats.pending.load(Relaxed)
        ),
    )
}

fn durable_check(killed: Option<bool>, revived: Option<bool>) -> DrillCheck {
    match (killed, revived) {
        (Some(false), Some(true)) => DrillCheck::new(
            "durable",
            true,
            "the store held the kill (enabled=false) and the revive (enabled=true)",
        ),
        (k, r) => DrillCheck::new(
            "durable",
            false,
            format!("read back from the store: after the kill enabled={k:?}, after the revive enabled={r:?}"),
        ),
    }
}

/// A failed drill: logged at warn and sent as a `drill_failed` webhook.
fn alert(state: &AppState, result: &DrillResult) {
    let failed: Vec<String> = result
        .checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| format!("{}: {}", c.name, c.reason))
        .collect();
    let reason = format!(
        "rollback drill {} of {} failed: {}",
        result.id,
        result.flag,
        failed.join("; ")
    );
    tracing::warn!(drill = %result.id, flag = %result.flag, "{reason}");
    state.webhooks.notify(WebhookEvent {
        module: Some(result.flag.clone()),
        numbers: serde_json::to_value(result).unwrap_or_default(),
        ..WebhookEvent::new(WebhookKind::DrillFailed, result.actor.clone(), reason)
    });
}
