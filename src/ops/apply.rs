//! Flags as code, the server's write path (`POST /api/v1/apply`) and its read path
//! (`GET /api/v1/export`): a whole document of flags, segments, policies and release plans,
//! validated together, diffed against the state in force, and written in ONE batch — one
//! store transaction, in a cluster one PostgreSQL transaction — or not at all.
//!
//! The state is read and the plan computed under the writer lock, for a dry run too, so the
//! diff a dry run returns is the one an apply of the same document performs on the same
//! state. Every change gets its own audit entry (actor, the run's `message` as the reason).
//! The pure planning is `plan.rs`.

mod plan;

pub use plan::{ApplyRequest, Change, FieldChange, Kind, Op};

use crate::auth::Actor;
use crate::controller::watch;
use crate::release::{build_release, ReleasePlan};
use crate::state::AppState;
use crate::writer::{invalid, to_value, Batch, OpsError, WriteGuard};
use plan::Current;
use serde::Serialize;
use uuid::Uuid;

/// What a run did (or, dry, would do).
#[derive(Debug, Serialize)]
pub struct Outcome {
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Whether something was written.
    pub applied: bool,
    /// The config revision after the run.
    pub revision: u64,
    /// Every object of the document (and, with `prune`, every one missing from it).
    pub changes: Vec<Change>,
}

/// The state in force in the apply document's shape (what `rollgate export` writes).
#[derive(Debug, Serialize)]
pub struct Exported {
    pub flags: Vec<rollgate_eval::FlagDef>,
    pub segments: Vec<rollgate_eval::SegmentDef>,
    pub policies: Vec<crate::policies::Policy>,
    /// The plan of the newest release of each name.
    pub releases: Vec<ReleasePlan>,
}

/// Validates, diffs and (unless `dry_run`) applies `req` as one batch.
pub async fn apply(
    state: &AppState,
    actor: &Actor,
    req: ApplyRequest,
) -> Result<Outcome, OpsError> {
    let mut w = state.write().await?;
    let current = current(state, &w);
    let plan::Plan { changes, writes } = plan::plan(&req, &current)?;
    let changed = changes
        .iter()
        .any(|c| matches!(c.op, Op::Create | Op::Update | Op::Delete));
    if req.dry_run || !changed {
        return Ok(Outcome {
            dry_run: req.dry_run,
            applied: false,
            revision: state.live.load().revision,
            changes,
        });
    }
    let mut actor = actor.clone();
    if let Some(message) = &req.message {
        actor.reason = Some(message.clone());
    }
    let batch = batch_of(state, &mut w, &actor, &current, writes)?;
    state.commit(&mut w, batch).await?;
    watch::refresh(state, &mut w);
    tracing::info!(actor = %actor.name, changes = changes.len(), "document applied");
    Ok(Outcome {
        dry_run: false,
        applied: true,
        revision: state.live.load().revision,
        changes,
    })
}

/// The state in force, in the apply document's shape.
pub async fn export(state: &AppState) -> Exported {
    let w = state.writer.lock().await;
    let live = state.live.load();
    let mut releases: Vec<ReleasePlan> = Vec::new();
    // Releases are keyed by time-ordered ids: the last of a name is the newest.
    let mut newest = std::collections::BTreeMap::new();
    for r in w.releases.values() {
        newest.insert(r.name.clone(), r.plan.clone());
    }
    releases.extend(newest.into_values());
    Exported {
        flags: live.flags().iter().map(|f| f.def.clone()).collect(),
        segments: live.segments.values().cloned().collect(),
        policies: state.policies.load().iter().cloned().collect(),
        releases,
    }
}

/// The state the planner compares with, read under the writer lock.
fn current(state: &AppState, w: &WriteGuard<'_>) -> Current {
    let live = state.live.load();
    let mut current = Current {
        flags: live
            .flags()
            .iter()
            .map(|f| (f.def.key.clone(), f.def.clone()))
            .collect(),
        segments: live.segments.clone(),
        policies: state
            .policies
            .load()
            .iter()
            .map(|p| (p.name.clone(), p.clone()))
            .collect(),
        ..Current::default()
    };
    let policies = state.policies.load();
    for name in current.policies.keys() {
        if let Some(file) = policies.file_of(name) {
            current.policy_files.insert(name.clone(), file.to_owned());
        }
    }
    for r in w.releases.values() {
        current
            .releases
            .insert(r.name.clone(), (r.plan.clone(), r.is_live()));
        if let Some(policy) = &r.policy {
            current
                .policy_users
                .insert(policy.clone(), format!("release {:?}", r.name));
        }
        if r.is_live() {
            for m in &r.modules {
                current.live_flags.insert(m.flag.clone(), r.name.clone());
                for a in &m.audiences {
                    current
                        .segment_users
                        .insert(a.segment.clone(), format!("live release {:?}", r.name));
                }
            }
        }
    }
    current
}

/// The one batch of a run: every write and one audit entry per change.
fn batch_of(
    state: &AppState,
    w: &mut WriteGuard<'_>,
    actor: &Actor,
    current: &Current,
    writes: plan::Writes,
) -> Result<Batch, OpsError> {
    let mut batch = Batch::default();
    for s in writes.segments {
        let mut entry = w.audit_upsert(actor, "segment", current.segments.get(&s.key), &s)?;
        entry.subject = Some(s.key.clone());
        batch.audit.push(entry);
        batch.segments.push(s);
    }
    for key in writes.deleted_segments {
        let mut entry = w.audit(actor, "segment.delete");
        entry.subject = Some(key.clone());
        entry.before = current
            .segments
            .get(&key)
            .map(|s| to_value("segment", s))
            .transpose()?;
        batch.audit.push(entry);
        batch.deleted_segments.push(key);
    }
    for p in writes.policies {
        let mut entry = w.audit_upsert(actor, "policy", current.policies.get(&p.name), &p)?;
        entry.subject = Some(p.name.clone());
        batch.audit.push(entry);
        batch.policies.push(p);
    }
    for name in writes.deleted_policies {
        let mut entry = w.audit(actor, "policy.delete");
        entry.subject = Some(name.clone());
        entry.before = current
            .policies
            .get(&name)
            .map(|p| to_value("policy", p))
            .transpose()?;
        batch.audit.push(entry);
        batch.deleted_policies.push(name);
    }
    for f in writes.flags {
        let mut entry = w.audit_upsert(actor, "flag", current.flags.get(&f.key), &f)?;
        entry.flag = Some(f.key.clone());
        batch.audit.push(entry);
        batch.flags.push(f);
    }
    for key in writes.deleted_flags {
        let mut entry = w.audit(actor, "flag.delete");
        entry.flag = Some(key.clone());
        entry.before = current
            .flags
            .get(&key)
            .map(|d| to_value("flag", d))
            .transpose()?;
        batch.audit.push(entry);
        batch.deleted_flags.push(key);
    }
    let policies = state.policies.load();
    for plan in writes.releases {
        let policy = match &plan.policy {
            Some(name) => batch
                .policies
                .iter()
                .find(|p| &p.name == name)
                .or_else(|| policies.get(name)),
            None => None,
        };
        let release = build_release(plan, policy, Uuid::now_v7(), crate::clock::now_rfc3339())
            .map_err(|e| invalid(e.field, e.message))?;
        let mut entry = w.audit(actor, "release.create");
        entry.release = Some(release.id.to_string());
        entry.subject = Some(release.name.clone());
        entry.after = Some(to_value("release plan", &release.plan)?);
        batch.audit.push(entry);
        batch.releases.push(release);
    }
    Ok(batch)
}
