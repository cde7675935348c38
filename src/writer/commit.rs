//! The one commit: store (one transaction, flushed), then the reach tracker, the live snapshot,
//! the change hub, then the webhooks. Validation problems (a flag that does not compile) are found before
//! anything is written, so a refused batch leaves everything as it was.

use super::{events, invalid, Batch, OpsError, Writer};
use crate::auth::TokenBook;
use crate::hub::ChangeHub;
use crate::live::Live;
use crate::policies::PolicySet;
use crate::reach::Reach;
use crate::store::{Change, Store};
use crate::webhooks::Webhooks;
use arc_swap::ArcSwap;
use rollgate_eval::{compile_flag, FlagDef, SegmentDef};
use std::sync::Arc;

/// Where a commit goes: the durable store and everything published from it.
pub struct Sinks<'a> {
    /// Durable storage.
    pub store: &'a Store,
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

impl Sinks<'_> {
    /// Commits `batch` durably, then publishes it. Never calls back into the controller.
    pub async fn commit(&self, w: &mut Writer, mut batch: Batch) -> Result<(), OpsError> {
        let live = self.live.load_full();
        let ahead = batch.ahead.take();
        let mut next = match ahead.and_then(|a| a.fits(&live, &batch)) {
            Some(next) => Some(next),
            None => next_snapshot(&live, &batch)?,
        };
        // One revision per change event, stored with the change (docs/clients.md).
        let announced = batch.flags.len() + batch.deleted_flags.len() + batch.segments.len();
        let revision = (announced > 0).then(|| self.hub.last_seq() + announced as u64);
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
        changes.extend(batch.releases.iter().map(Change::PutRelease));
        changes.extend(batch.tokens.iter().map(Change::PutToken));
        changes.extend(batch.deleted_tokens.iter().map(|n| Change::DeleteToken(n)));
        changes.extend(
            policy_sources
                .iter()
                .map(|(name, source)| Change::PutPolicy { name, source }),
        );
        changes.extend(revision.map(Change::Revision));
        self.store.commit_all(&changes, &batch.audit).await?;

        // Durable. The reach tracker hears of the changes before any client can see them.
        if let Some(revision) = revision {
            self.reach.changed(events::reach_changes(
                &batch.flags,
                &batch.deleted_flags,
                &batch.segments,
                &batch.audit,
                revision + 1 - announced as u64,
                crate::clock::now_ms(),
            ));
        }
        // Publish.
        if let (Some(next), Some(revision)) = (next.as_mut(), revision) {
            next.revision = revision;
        }
        if let Some(next) = next {
            self.live.store(Arc::new(next));
        }
        if !batch.tokens.is_empty() || !batch.deleted_tokens.is_empty() {
            self.tokens.rebuild(&self.store.tokens()?);
        }
        for policy in batch.policies {
            let set = self.policies.load();
            self.policies.store(Arc::new(set.with(policy)));
        }
        for release in batch.releases {
            w.releases.insert(release.id, release);
        }
        events::announce(
            self.hub,
            &batch.flags,
            &batch.deleted_flags,
            &batch.segments,
            &batch.audit,
        );
        for event in batch.webhooks {
            self.webhooks.notify(event);
        }
        Ok(())
    }
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
            && batch.deleted_flags.is_empty();
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
fn next_snapshot(live: &Live, batch: &Batch) -> Result<Option<Live>, OpsError> {
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
            Some(served) if served.def.differs_only_in_switches(def) => {
                served.compiled.with_switches(def.enabled, def.rollout)
            }
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
    Ok(next)
}
