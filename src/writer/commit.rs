//! The one commit: store (one transaction, flushed; in a cluster, the database's transaction
//! under the head lock, then the node's local replica), then the reach tracker, the live
//! snapshot, the change hub, then the webhooks. Validation problems (a flag that does not
//! compile) are found before anything is written, so a refused batch leaves everything as it was.

use super::events::{self, Announced};
use super::{invalid, Batch, OpsError, WriteGuard, Writer};
use crate::auth::TokenBook;
use crate::cluster::db::Pool;
use crate::cluster::pg::{Kind, NewRow, WriteTx};
use crate::hub::ChangeHub;
use crate::live::Live;
use crate::policies::{Policy, PolicySet};
use crate::reach::{Reach, Subject};
use crate::release::Release;
use crate::store::{Change, Store};
use crate::webhooks::{WebhookEvent, Webhooks};
use arc_swap::ArcSwap;
use rollgate_eval::{compile_flag, FlagDef, SegmentDef};
use std::sync::Arc;

/// Where a commit goes: the durable store and everything published from it.
pub struct Sinks<'a> {
    /// Durable storage (in a cluster: the node's local replica).
    pub store: &'a Store,
    /// The cluster's database; `None` on a single node.
    pub pool: Option<&'a Pool>,
    /// The snapshot evaluation reads.
    pub live: &'a ArcSwap<Live>,
    /// The token index.
    pub tokens: &'a TokenBook,
    /// Loaded policies.
    pub policies: &'a ArcSwap<PolicySet>,
    /// Change events for streaming clients.
    pub hub: &'a ChangeHub,
    /// Outgoing webhooks.
    pub webhooks: &'a Webhooks,
    /// Which clients applied which change.
    pub reach: &'a Reach,
}

/// What a durable commit publishes.
pub(super) struct Publish {
    pub next: Option<Live>,
    pub announced: Vec<Announced>,
    /// The last revision the commit wrote (the hub moves to it).
    pub head: u64,
    pub tokens_changed: bool,
    pub policies: Vec<Policy>,
    pub deleted_policies: Vec<String>,
    pub releases: Vec<Release>,
    pub webhooks: Vec<WebhookEvent>,
}

impl Sinks<'_> {
    /// Commits `batch` durably, then publishes it. Never calls back into the controller.
    pub async fn commit(&self, w: &mut WriteGuard<'_>, mut batch: Batch) -> Result<(), OpsError> {
        let live = self.live.load_full();
        let ahead = batch.ahead.take();
        let next = match ahead.and_then(|a| a.fits(&live, &batch)) {
            Some(next) => Some(next),
            None => next_snapshot(&live, &batch)?,
        };
        let policy_sources = batch
            .policies
            .iter()
            .map(|p| Ok((p.name.clone(), serde_json::to_string(p)?)))
            .collect::<Result<Vec<(String, String)>, serde_json::Error>>()
            .map_err(|source| OpsError::Encode {
                what: "policy",
                source,
            })?;
        let mut changes: Vec<Change<'_>> = Vec::new();
        changes.extend(batch.flags.iter().map(Change::PutFlag));
        changes.extend(batch.deleted_flags.iter().map(|k| Change::DeleteFlag(k)));
        changes.extend(batch.segments.iter().map(Change::PutSegment));
        changes.extend(
            batch
                .deleted_segments
                .iter()
                .map(|k| Change::DeleteSegment(k)),
        );
        changes.extend(batch.releases.iter().map(Change::PutRelease));
        changes.extend(batch.tokens.iter().map(Change::PutToken));
        changes.extend(batch.deleted_tokens.iter().map(|n| Change::DeleteToken(n)));
        changes.extend(
            policy_sources
                .iter()
                .map(|(name, source)| Change::PutPolicy { name, source }),
        );
        changes.extend(
            batch
                .deleted_policies
                .iter()
                .map(|n| Change::DeletePolicy(n)),
        );
        // One revision per change event, stored with the change (docs/clients.md); in a
        // cluster, one per changed object, handed out by the database (docs/cluster.md).
        let first = self.hub.last_seq() + 1;
        let announced = events::of_batch(
            &batch.flags,
            &batch.deleted_flags,
            &batch.segments,
            &batch.deleted_segments,
            &batch.audit,
            first,
        );
        let head = match self.pool {
            None => {
                let head = first + announced.len() as u64 - 1;
                changes.extend((!announced.is_empty()).then_some(Change::Revision(head)));
                self.store.commit_all(&changes, &batch.audit).await?;
                head
            }
            Some(pool) => {
                let tx = match w.tx.take() {
                    Some(tx) => tx,
                    None => WriteTx::begin(pool).await?,
                };
                if tx.head() != first - 1 {
                    return Err(OpsError::Conflict(format!(
                        "the cluster moved to revision {} while this node was at {}; retry",
                        tx.head(),
                        first - 1
                    )));
                }
                let rows = rows_of(&batch, &announced, &policy_sources)?;
                let at = tx.commit(&rows, &batch.audit, batch.fence.as_ref()).await?;
                debug_assert_eq!(at, first);
                let head = first + rows.len() as u64 - 1;
                changes.push(Change::Revision(head));
                // The change is committed for the whole cluster: a failing local replica only
                // costs this node its restart-while-the-database-is-down state.
                if let Err(e) = self.store.commit_all(&changes, &[]).await {
                    tracing::error!(error = %e, revision = head, "local replica not updated");
                }
                head
            }
        };
        let tokens_changed = !batch.tokens.is_empty() || !batch.deleted_tokens.is_empty();
        self.publish(
            w,
            Publish {
                next,
                announced,
                head,
                tokens_changed,
                policies: batch.policies,
                deleted_policies: batch.deleted_policies,
                releases: batch.releases,
                webhooks: batch.webhooks,
            },
        )
    }

    /// Publishes what was just made durable. The reach tracker hears of the changes before
    /// any client can see them.
    pub(super) fn publish(&self, w: &mut Writer, p: Publish) -> Result<(), OpsError> {
        if !p.announced.is_empty() {
            self.reach
                .changed(events::reach_changes(&p.announced, crate::clock::now_ms()));
        }
        if let Some(mut next) = p.next {
            if let Some(last) = p.announced.last() {
                next.revision = last.revision;
            }
            self.live.store(Arc::new(next));
        }
        if p.tokens_changed {
            self.tokens.rebuild(&self.store.tokens()?);
        }
        for policy in p.policies {
            let set = self.policies.load();
            self.policies.store(Arc::new(set.with(policy)));
        }
        for name in p.deleted_policies {
            let set = self.policies.load();
            self.policies.store(Arc::new(set.without(&name)));
        }
        for release in p.releases {
            w.releases.insert(release.id, release);
        }
        events::announce(self.hub, &p.announced);
        self.hub.advance(p.head);
        for event in p.webhooks {
            self.webhooks.notify(event);
        }
        Ok(())
    }
}

/// The feed rows of a batch, in revision order: the announced changes first (segments, flags,
/// deleted flags, deleted segments, numbered like `announced`), then releases, tokens, deleted
/// tokens, policies, deleted policies.
fn rows_of(
    batch: &Batch,
    announced: &[Announced],
    policies: &[(String, String)],
) -> Result<Vec<NewRow>, OpsError> {
    let json = |what: &'static str, v: Result<String, serde_json::Error>| {
        v.map_err(|source| OpsError::Encode { what, source })
    };
    let mut rows = Vec::with_capacity(announced.len() + batch.releases.len() + batch.tokens.len());
    for a in announced {
        rows.push(NewRow {
            kind: match a.subject {
                Subject::Flag => Kind::Flag,
                Subject::Segment => Kind::Segment,
            },
            key: a.key.clone(),
            body: (!a.body.is_null()).then(|| a.body.to_string()),
            cause: Some(a.cause.to_string()),
        });
    }
    for r in &batch.releases {
        rows.push(NewRow {
            kind: Kind::Release,
            key: r.id.to_string(),
            body: Some(json("release", serde_json::to_string(r))?),
            cause: None,
        });
    }
    for t in &batch.tokens {
        rows.push(NewRow {
            kind: Kind::Token,
            key: t.name.clone(),
            body: Some(json("token", serde_json::to_string(t))?),
            cause: None,
        });
    }
    for name in &batch.deleted_tokens {
        rows.push(NewRow {
            kind: Kind::Token,
            key: name.clone(),
            body: None,
            cause: None,
        });
    }
    for (name, source) in policies {
        rows.push(NewRow {
            kind: Kind::Policy,
            key: name.clone(),
            body: Some(source.clone()),
            cause: None,
        });
    }
    for name in &batch.deleted_policies {
        rows.push(NewRow {
            kind: Kind::Policy,
            key: name.clone(),
            body: None,
            cause: None,
        });
    }
    Ok(rows)
}

/// The heavy part of a commit — compiling flags, recompiling a segment's flags — done before
/// the writer lock is taken (on a blocking thread), so that one expensive write never delays
/// a kill switch or a rollback queued behind it. The commit uses it when it still fits the
/// snapshot in force; otherwise it compiles under the lock as before.
pub struct Ahead {
    base: Arc<Live>,
    flags: Vec<FlagDef>,
    segments: Vec<SegmentDef>,
    next: Live,
}

impl Ahead {
    /// The snapshot that `flags` and `segments` make of `base`.
    pub fn prepare(
        base: Arc<Live>,
        flags: Vec<FlagDef>,
        segments: Vec<SegmentDef>,
    ) -> Result<Ahead, OpsError> {
        let batch = Batch {
            flags: flags.clone(),
            segments: segments.clone(),
            ..Batch::default()
        };
        let next = next_snapshot(&base, &batch)?.unwrap_or_else(|| base.with_nothing());
        Ok(Ahead {
            base,
            flags,
            segments,
            next,
        })
    }

    /// The next snapshot for `batch` on `live`, when this preparation still fits: the batch
    /// changes exactly the prepared flags and segments, and either nothing was committed since
    /// (`live` is the base) or — for flags only — the segments are unchanged, so the compiled
    /// forms are reused on the current set.
    fn fits(self, live: &Arc<Live>, batch: &Batch) -> Option<Live> {
        let same_changes = batch.flags == self.flags
            && batch.segments == self.segments
            && batch.deleted_flags.is_empty()
            && batch.deleted_segments.is_empty();
        if !same_changes {
            return None;
        }
        if Arc::ptr_eq(&self.base, live) {
            return Some(self.next);
        }
        if !self.segments.is_empty() || self.base.segments != live.segments {
            return None;
        }
        let mut next = None::<Live>;
        for def in &self.flags {
            let compiled = self.next.get(&def.key)?.compiled.clone();
            // Over the snapshot budget on the current set: compile under the lock, which refuses.
            let base = next.as_ref().unwrap_or(live);
            next = Some(base.with_flag(def.clone(), compiled).ok()?);
        }
        next
    }
}

/// The snapshot after `batch`, or `None` when it changes no flag or segment.
pub(super) fn next_snapshot(live: &Live, batch: &Batch) -> Result<Option<Live>, OpsError> {
    let mut next = None::<Live>;
    for segment in &batch.segments {
        let base = next.as_ref().unwrap_or(live);
        let with = base
            .with_segment(segment.clone())
            .map_err(|e| invalid(e.field, e.message))?;
        next = Some(with);
    }
    for def in &batch.flags {
        let base = next.as_ref().unwrap_or(live);
        // A kill switch, a rollout or a rollback changes only plain values of the compiled
        // flag: nothing is compiled again, so the emergency path never waits on a compilation.
        let compiled = match base.get(&def.key) {
            Some(served) if served.def.differs_only_in_switches(def) => served
                .compiled
                .with_switches(def.enabled, def.rollout)
                .with_audience_rollouts(def.audiences.iter().map(|a| a.rollout)),
            _ => compile_flag(def, &base.segments).map_err(|e| invalid(e.field, e.message))?,
        };
        let with = base
            .with_flag(def.clone(), compiled)
            .map_err(|e| invalid(e.field, e.message))?;
        next = Some(with);
    }
    for key in &batch.deleted_flags {
        next = Some(next.as_ref().unwrap_or(live).without_flag(key));
    }
    for key in &batch.deleted_segments {
        next = Some(next.as_ref().unwrap_or(live).without_segment(key));
    }
    Ok(next)
}
