//! The single writer: the state every control-path change is serialized on, and the one
//! commit that makes a change durable and then visible.
//!
//! A change — by an operator, the controller or an alert — is collected into a [`Batch`] while
//! the caller holds the writer lock (`AppState::writer`), then [`Sinks::commit`] writes it to
//! the store in one transaction and flushes it, and only then publishes it, in this order:
//! the live snapshot (and token index, policies, releases), the change events for streaming
//! clients, the webhooks. So what clients see is never ahead of disk, and an acknowledged
//! change survives `kill -9`.
//!
//! In a cluster (docs/cluster.md) the commit goes to PostgreSQL under the global head lock,
//! then to the node's local replica; `feed.rs` applies what other nodes committed, publishing
//! it the same way.
//!
//! This room is the seam for durable writes and for the change feed: nothing here calls back
//! into the controller or the API; whoever owns derived state (the controller's watched set)
//! refreshes it after its commit. Evaluation never takes the writer lock.

mod batch;
mod commit;
mod events;
mod feed;
mod guard;

pub use batch::Batch;
pub use commit::{Ahead, Sinks};
pub use guard::WriteGuard;

use crate::auth::Actor;
use crate::release::{Module, Release};
use crate::store::{AuditEntry, StoreError};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use uuid::Uuid;

/// Errors of the control path.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The subject does not exist.
    #[error("{what} {key:?} not found")]
    NotFound { what: &'static str, key: String },
    /// A field is semantically invalid.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// The change conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// A value could not be encoded for the audit log or the store; nothing was written.
    #[error("encoding {what}: {source}")]
    Encode {
        what: &'static str,
        source: serde_json::Error,
    },
    /// Storage failed; nothing was acknowledged.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The cluster's database failed or refused (unreachable, or a decision fenced off).
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
}

/// A 422 naming `field`.
pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> OpsError {
    OpsError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// `v` as JSON for the audit log.
pub fn to_value<T: Serialize>(what: &'static str, v: &T) -> Result<Value, OpsError> {
    serde_json::to_value(v).map_err(|source| OpsError::Encode { what, source })
}

/// State owned by the single writer.
#[derive(Debug, Default)]
pub struct Writer {
    last_audit: Uuid,
    /// Every release, by id.
    pub releases: BTreeMap<Uuid, Release>,
    /// Guards armed on flags ramped by hand (a flag `policy`, no live release): one synthetic
    /// `held` module per flag, armed with fresh baselines when first seen (in memory).
    pub hand: BTreeMap<String, Module>,
    /// In a cluster: this node's id, written into every audit entry it makes.
    pub node: Option<String>,
}

impl Writer {
    /// A writer owning `releases`.
    pub fn new(releases: impl IntoIterator<Item = Release>) -> Self {
        Writer {
            last_audit: Uuid::nil(),
            releases: releases.into_iter().map(|r| (r.id, r)).collect(),
            hand: BTreeMap::new(),
            node: None,
        }
    }

    /// A new audit entry with a strictly increasing time-ordered id.
    pub fn audit(&mut self, actor: &Actor, action: &str) -> AuditEntry {
        let mut id = Uuid::now_v7();
        if id <= self.last_audit {
            id = Uuid::from_u128(self.last_audit.as_u128() + 1);
        }
        self.last_audit = id;
        AuditEntry {
            id,
            time: crate::clock::now_rfc3339(),
            actor: actor.name.clone(),
            action: action.to_owned(),
            flag: None,
            release: None,
            subject: None,
            reason: actor.reason.clone(),
            before: None,
            after: None,
            node: self.node.clone(),
        }
    }

    /// The audit entry of creating or replacing a `resource` (`flag`, `segment`, `policy`):
    /// action `<resource>.create` or `<resource>.update`, with the values before and after.
    pub fn audit_upsert<T: Serialize>(
        &mut self,
        actor: &Actor,
        resource: &'static str,
        before: Option<&T>,
        after: &T,
    ) -> Result<AuditEntry, OpsError> {
        let verb = if before.is_some() { "update" } else { "create" };
        let mut entry = self.audit(actor, &format!("{resource}.{verb}"));
        entry.before = before.map(|b| to_value(resource, b)).transpose()?;
        entry.after = Some(to_value(resource, after)?);
        Ok(entry)
    }

    /// The live release whose modules include `flag`, with the module index.
    pub fn live_release_of(&self, flag: &str) -> Option<(&Release, usize)> {
        self.releases
            .values()
            .filter(|r| r.is_live())
            .find_map(|r| {
                r.modules
                    .iter()
                    .position(|m| m.flag == flag)
                    .map(|i| (r, i))
            })
    }

    /// A release by id, or the newest of that name.
    pub fn find_release(&self, id: &str) -> Result<Uuid, OpsError> {
        if let Ok(uuid) = Uuid::parse_str(id) {
            if self.releases.contains_key(&uuid) {
                return Ok(uuid);
            }
        }
        self.releases
            .values()
            .rev()
            .find(|r| r.name == id)
            .map(|r| r.id)
            .ok_or_else(|| OpsError::NotFound {
                what: "release",
                key: id.to_owned(),
            })
    }
}
