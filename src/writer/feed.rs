//! Applying the cluster's change feed: rows other nodes committed, in revision order, become
//! this node's state exactly as its own commits do — written to the local replica, then
//! published (reach tracker, live snapshot, tokens, policies, releases, stream events at their
//! revisions). Called under the writer lock, with rows that continue the node's applied
//! revision without a gap.

use super::commit::{next_snapshot, Publish};
use super::events::Announced;
use super::{Batch, OpsError, Sinks, Writer};
use crate::auth::StoredToken;
use crate::cluster::pg::{FeedRow, Kind};
use crate::live::Live;
use crate::policies::Policy;
use crate::reach::Subject;
use crate::release::Release;
use crate::store::Change;
use rollgate_eval::{FlagDef, SegmentDef};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A feed row's body that does not decode: the row is skipped (and logged), never served.
fn decode<T: DeserializeOwned>(row: &FeedRow) -> Option<T> {
    let body = row.body.as_deref()?;
    match serde_json::from_str(body) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::error!(revision = row.revision, kind = ?row.kind, key = %row.key, error = %e,
                "feed row does not decode; skipped");
            None
        }
    }
}

impl Sinks<'_> {
    /// Applies `rows` (revisions after the applied one, in order). Returns the last revision
    /// applied.
    pub async fn apply_feed(&self, w: &mut Writer, rows: Vec<FeedRow>) -> Result<u64, OpsError> {
        let applied = self.hub.last_seq();
        let Some(last) = rows.last().map(|r| r.revision) else {
            return Ok(applied);
        };
        if let Some(first) = rows.first().filter(|r| r.revision != applied + 1) {
            return Err(OpsError::Conflict(format!(
                "change feed gap: applied revision {applied}, next row {}",
                first.revision
            )));
        }
        let base = self.live.load_full();
        let mut next: Option<Live> = None;
        let mut announced = Vec::new();
        let (mut flags, mut deleted_flags, mut segments) = (Vec::new(), Vec::new(), Vec::new());
        let (mut deleted_segments, mut deleted_policies) = (Vec::new(), Vec::<String>::new());
        let (mut tokens, mut deleted_tokens, mut policies, mut releases) = (
            Vec::new(),
            Vec::new(),
            Vec::<(Policy, String)>::new(),
            Vec::new(),
        );
        for row in &rows {
            let current = next.as_ref().unwrap_or(&base);
            match row.kind {
                Kind::Flag | Kind::Segment => {
                    let mut batch = Batch::default();
                    let subject = if row.kind == Kind::Flag {
                        match decode::<FlagDef>(row) {
                            Some(def) => batch.flags.push(def),
                            None if row.body.is_none() => batch.deleted_flags.push(row.key.clone()),
                            None => continue,
                        }
                        Subject::Flag
                    } else {
                        match decode::<SegmentDef>(row) {
                            Some(def) => batch.segments.push(def),
                            None if row.body.is_none() => {
                                batch.deleted_segments.push(row.key.clone())
                            }
                            None => continue,
                        }
                        Subject::Segment
                    };
                    match next_snapshot(current, &batch) {
                        Ok(Some(live)) => next = Some(live),
                        Ok(None) => {}
                        Err(e) => {
                            tracing::error!(revision = row.revision, key = %row.key, error = %e,
                            "changed definition does not compile here; not served")
                        }
                    }
                    flags.extend(batch.flags);
                    deleted_flags.extend(batch.deleted_flags);
                    segments.extend(batch.segments);
                    deleted_segments.extend(batch.deleted_segments);
                    announced.push(Announced {
                        revision: row.revision,
                        subject,
                        key: row.key.clone(),
                        body: row
                            .body
                            .as_deref()
                            .and_then(|b| serde_json::from_str(b).ok())
                            .unwrap_or(Value::Null),
                        cause: row
                            .cause
                            .as_deref()
                            .and_then(|c| serde_json::from_str(c).ok())
                            .unwrap_or_else(|| serde_json::json!({})),
                    });
                }
                Kind::Token => match decode::<StoredToken>(row) {
                    Some(t) => tokens.push(t),
                    None if row.body.is_none() => deleted_tokens.push(row.key.clone()),
                    None => {}
                },
                Kind::Policy => match (decode::<Policy>(row), row.body.clone()) {
                    (Some(p), Some(source)) => policies.push((p, source)),
                    (None, None) => deleted_policies.push(row.key.clone()),
                    _ => {}
                },
                Kind::Release => {
                    if let Some(r) = decode::<Release>(row) {
                        releases.push(r);
                    }
                }
            }
        }
        let mut changes: Vec<Change<'_>> = Vec::new();
        changes.extend(flags.iter().map(Change::PutFlag));
        changes.extend(deleted_flags.iter().map(|k| Change::DeleteFlag(k)));
        changes.extend(segments.iter().map(Change::PutSegment));
        changes.extend(deleted_segments.iter().map(|k| Change::DeleteSegment(k)));
        changes.extend(releases.iter().map(Change::PutRelease));
        changes.extend(tokens.iter().map(Change::PutToken));
        changes.extend(deleted_tokens.iter().map(|n| Change::DeleteToken(n)));
        changes.extend(policies.iter().map(|(p, source)| Change::PutPolicy {
            name: &p.name,
            source,
        }));
        changes.extend(deleted_policies.iter().map(|n| Change::DeletePolicy(n)));
        changes.push(Change::Revision(last));
        if let Err(e) = self.store.commit_all(&changes, &[]).await {
            tracing::error!(error = %e, revision = last, "local replica not updated");
        }
        let tokens_changed = !tokens.is_empty() || !deleted_tokens.is_empty();
        drop(changes);
        self.publish(
            w,
            Publish {
                next,
                announced,
                head: last,
                tokens_changed,
                policies: policies.into_iter().map(|(p, _)| p).collect(),
                deleted_policies,
                releases,
                webhooks: Vec::new(),
            },
        )?;
        Ok(last)
    }
}
