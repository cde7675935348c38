//! The control path: every change — by an operator, the controller or an alert — goes
//! through here.
//!
//! A change is collected into a [`Batch`] (flags, segments, releases, tokens, policies, audit
//! entries, webhook events), committed to sled in one transaction and flushed, and only then
//! published: the live snapshot is swapped, one `change` event per flag goes to the streams,
//! webhooks are queued. So what clients see is never ahead of disk, and an acknowledged change
//! survives `kill -9`. Writers are serialized by one async mutex around [`Writer`], which also
//! owns the releases; evaluation never takes it.

use crate::domain::{
    new_token_secret, now_rfc3339, token_digest, valid_token_name, Role, StoredToken,
};
use crate::policies::Policy;
use crate::release::{Module, ModuleState, Release};
use crate::state::AppState;
use crate::store::{AuditEntry, Change, StoreError};
use crate::webhooks::WebhookEvent;
use rollgate_eval::{compile_flag, validate_segment, FlagDef, Percentage, SegmentDef};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
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
    /// Storage failed; nothing was acknowledged.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Who asked for a change and why: recorded in the audit log.
#[derive(Debug, Clone)]
pub struct Actor {
    /// Token name, `controller`, `alertmanager` or `bootstrap`.
    pub name: String,
    /// Free-text reason, if given.
    pub reason: Option<String>,
}

impl Actor {
    /// The controller acting on its own.
    pub fn controller() -> Self {
        Actor {
            name: "controller".into(),
            reason: None,
        }
    }
}

pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> OpsError {
    OpsError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

pub(crate) fn to_value<T: Serialize>(v: &T) -> Option<Value> {
    serde_json::to_value(v).ok()
}

/// Wall-clock now in Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
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
}

impl Writer {
    /// A writer owning `releases`.
    pub fn new(releases: impl IntoIterator<Item = Release>) -> Self {
        Writer {
            last_audit: Uuid::nil(),
            releases: releases.into_iter().map(|r| (r.id, r)).collect(),
            hand: BTreeMap::new(),
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
            time: now_rfc3339(),
            actor: actor.name.clone(),
            action: action.to_owned(),
            flag: None,
            release: None,
            subject: None,
            reason: actor.reason.clone(),
            before: None,
            after: None,
        }
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
}

/// Changes committed together.
#[derive(Default)]
pub struct Batch {
    /// Flags created or replaced.
    pub flags: Vec<FlagDef>,
    /// Flags deleted.
    pub deleted_flags: Vec<String>,
    /// Segments created or replaced.
    pub segments: Vec<SegmentDef>,
    /// Releases created or changed.
    pub releases: Vec<Release>,
    /// Tokens created or replaced.
    pub tokens: Vec<StoredToken>,
    /// Tokens revoked.
    pub deleted_tokens: Vec<String>,
    /// Policies created or replaced.
    pub policies: Vec<Policy>,
    /// Audit entries.
    pub audit: Vec<AuditEntry>,
    /// Webhook events to send once committed.
    pub webhooks: Vec<WebhookEvent>,
}

impl AppState {
    /// Commits `batch` durably, then publishes it. Validation problems leave everything as it was.
    pub async fn commit(&self, w: &mut Writer, batch: Batch) -> Result<(), OpsError> {
        let live = self.live.load_full();
        let mut next = None::<crate::live::Live>;
        for segment in &batch.segments {
            next = Some(
                next.as_ref()
                    .unwrap_or(&live)
                    .with_segment(segment.clone())
                    .map_err(|e| invalid(e.field, e.message))?,
            );
        }
        for def in &batch.flags {
            let base = next.as_ref().unwrap_or(&live);
            let compiled =
                compile_flag(def, &base.segments).map_err(|e| invalid(e.field, e.message))?;
            next = Some(
                base.with_flag(def.clone(), compiled)
                    .map_err(|e| invalid(e.field, e.message))?,
            );
        }
        for key in &batch.deleted_flags {
            next = Some(next.as_ref().unwrap_or(&live).without_flag(key));
        }
        let policy_sources: Vec<(String, String)> = batch
            .policies
            .iter()
            .map(|p| (p.name.clone(), serde_json::to_string(p).unwrap_or_default()))
            .collect();
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
        self.store.commit_all(&changes, &batch.audit).await?;

        // Durable: publish.
        if let Some(next) = next {
            self.live.store(Arc::new(next));
        }
        if !batch.tokens.is_empty() || !batch.deleted_tokens.is_empty() {
            self.reload_tokens()?;
        }
        for policy in batch.policies {
            let set = self.policies.load();
            self.policies.store(Arc::new(set.with(policy)));
        }
        for release in batch.releases {
            w.releases.insert(release.id, release);
        }
        self.announce(
            &batch.flags,
            &batch.deleted_flags,
            &batch.segments,
            &batch.audit,
        );
        for event in batch.webhooks {
            self.webhooks.notify(event);
        }
        self.refresh_watched(w);
        self.arm_hand_guards(w);
        Ok(())
    }

    /// One stream event per flag or segment change.
    fn announce(
        &self,
        flags: &[FlagDef],
        deleted: &[String],
        segments: &[SegmentDef],
        audit: &[AuditEntry],
    ) {
        let unix_s = now_ms() / 1000;
        let why = |key: &str| {
            audit
                .iter()
                .rev()
                .find(|e| e.flag.as_deref() == Some(key) || e.subject.as_deref() == Some(key))
        };
        let cause = |key: &str| {
            why(key).map_or(json!({}), |e| json!({"actor": e.actor, "action": e.action, "reason": e.reason, "audit_id": e.id, "release": e.release}))
        };
        for s in segments {
            let data = json!({"type": "segment", "key": s.key, "action": "upsert", "segment": s, "cause": cause(&s.key)});
            self.hub.publish(data.to_string().into_bytes(), unix_s);
        }
        for f in flags {
            let data = json!({"type": "flag", "key": f.key, "action": "upsert", "flag": f, "cause": cause(&f.key)});
            self.hub.publish(data.to_string().into_bytes(), unix_s);
        }
        for key in deleted {
            let data = json!({"type": "flag", "key": key, "action": "delete", "flag": null, "cause": cause(key)});
            self.hub.publish(data.to_string().into_bytes(), unix_s);
        }
    }

    /// Creates or replaces a flag. Returns whether it was created.
    pub async fn put_flag(
        &self,
        actor: &Actor,
        path_key: &str,
        mut def: FlagDef,
    ) -> Result<bool, OpsError> {
        if def.key != path_key {
            return Err(invalid(
                "key",
                format!("body key {:?} differs from path key {path_key:?}", def.key),
            ));
        }
        if let Some(policy) = &def.policy {
            if self.policies.load().get(policy).is_none() {
                return Err(invalid("policy", format!("unknown policy {policy:?}")));
            }
        }
        let mut w = self.writer.lock().await;
        let live = self.live.load();
        let before = live.get(&def.key).map(|f| f.def.clone());
        // The salt decides who is in the cohort: a replacement that does not mention it keeps
        // the one in force (e.g. a shared release cohort's) instead of reshuffling the users.
        if def.salt.is_none() {
            def.salt = before.as_ref().and_then(|b| b.salt.clone());
        }
        let mut entry = w.audit(
            actor,
            if before.is_some() {
                "flag.update"
            } else {
                "flag.create"
            },
        );
        entry.flag = Some(def.key.clone());
        entry.before = before.as_ref().and_then(to_value);
        entry.after = to_value(&def);
        let mut batch = Batch {
            audit: vec![entry],
            ..Batch::default()
        };
        if let Some(before) = &before {
            if before.rollout != def.rollout {
                self.hold_for_manual_rollout(&mut w, &mut batch, actor, &def.key, def.rollout);
            }
        }
        batch.flags.push(def);
        self.commit(&mut w, batch).await?;
        tracing::info!(flag = %path_key, actor = %actor.name, created = before.is_none(), "flag saved");
        Ok(before.is_none())
    }

    /// Deletes a flag (refused while a live release ramps it).
    pub async fn delete_flag(&self, actor: &Actor, key: &str) -> Result<(), OpsError> {
        let mut w = self.writer.lock().await;
        let live = self.live.load();
        let before = live.get(key).ok_or_else(|| OpsError::NotFound {
            what: "flag",
            key: key.to_owned(),
        })?;
        if let Some((release, _)) = w.live_release_of(key) {
            return Err(OpsError::Conflict(format!(
                "flag {key:?} belongs to live release {:?}",
                release.name
            )));
        }
        let mut entry = w.audit(actor, "flag.delete");
        entry.flag = Some(key.to_owned());
        entry.before = to_value(&before.def);
        let batch = Batch {
            deleted_flags: vec![key.to_owned()],
            audit: vec![entry],
            ..Batch::default()
        };
        self.commit(&mut w, batch).await?;
        tracing::info!(flag = %key, actor = %actor.name, "flag deleted");
        Ok(())
    }

    /// Changes one flag with `edit`, durably, and returns the new definition.
    async fn edit_flag(
        &self,
        actor: &Actor,
        key: &str,
        action: &str,
        edit: impl FnOnce(&mut FlagDef),
    ) -> Result<FlagDef, OpsError> {
        let mut w = self.writer.lock().await;
        let live = self.live.load_full();
        let current = live.get(key).ok_or_else(|| OpsError::NotFound {
            what: "flag",
            key: key.to_owned(),
        })?;
        let mut def = current.def.clone();
        edit(&mut def);
        let mut entry = w.audit(actor, action);
        entry.flag = Some(key.to_owned());
        entry.before = to_value(&current.def);
        entry.after = to_value(&def);
        let mut batch = Batch {
            audit: vec![entry],
            ..Batch::default()
        };
        if def.rollout != current.def.rollout {
            self.hold_for_manual_rollout(&mut w, &mut batch, actor, key, def.rollout);
        }
        batch.flags.push(def.clone());
        self.commit(&mut w, batch).await?;
        tracing::info!(flag = %key, actor = %actor.name, action, rollout = def.rollout.as_f64(), enabled = def.enabled, "flag changed");
        Ok(def)
    }

    /// A hand-set percentage on a flag that a live release is ramping holds that module:
    /// the controller stops advancing it until an operator resumes it (guards stay armed).
    fn hold_for_manual_rollout(
        &self,
        w: &mut Writer,
        batch: &mut Batch,
        actor: &Actor,
        key: &str,
        to: Percentage,
    ) {
        let Some((release, index)) = w.live_release_of(key) else {
            return;
        };
        let module = &release.modules[index];
        if !matches!(module.state, ModuleState::Ramping | ModuleState::Paused) {
            return;
        }
        let mut release = release.clone();
        let module: &mut Module = &mut release.modules[index];
        let reason = format!("rollout set by hand to {to} by {}", actor.name);
        module.state = ModuleState::Held;
        module.paused = None;
        module.paused_ms = None;
        module.reason = Some(reason.clone());
        module.decision = Some(crate::release::DecisionRecord {
            action: "hold".into(),
            reason: reason.clone(),
            at_ms: now_ms(),
            actor: actor.name.clone(),
            numbers: json!({"rollout_after": to.as_f64(), "stage": module.stage}),
        });
        let mut entry = w.audit(actor, "module.hold");
        entry.flag = Some(key.to_owned());
        entry.release = Some(release.id.to_string());
        entry.reason = Some(reason);
        batch.audit.push(entry);
        batch.releases.push(release);
    }

    /// Sets a flag's rollout percentage by hand.
    pub async fn set_rollout(
        &self,
        actor: &Actor,
        key: &str,
        percentage: Percentage,
    ) -> Result<FlagDef, OpsError> {
        self.edit_flag(actor, key, "flag.rollout", |d| d.rollout = percentage)
            .await
    }

    /// Flips a flag's kill switch (`enabled = false` kills it).
    pub async fn set_enabled(
        &self,
        actor: &Actor,
        key: &str,
        enabled: bool,
    ) -> Result<FlagDef, OpsError> {
        let action = if enabled { "flag.unkill" } else { "flag.kill" };
        self.edit_flag(actor, key, action, |d| d.enabled = enabled)
            .await
    }

    /// Creates or replaces a segment; every flag using it is recompiled.
    pub async fn put_segment(
        &self,
        actor: &Actor,
        path_key: &str,
        def: SegmentDef,
    ) -> Result<bool, OpsError> {
        if def.key != path_key {
            return Err(invalid(
                "key",
                format!("body key {:?} differs from path key {path_key:?}", def.key),
            ));
        }
        validate_segment(&def).map_err(|e| invalid(e.field, e.message))?;
        let mut w = self.writer.lock().await;
        let before = self.live.load().segments.get(&def.key).cloned();
        let mut entry = w.audit(
            actor,
            if before.is_some() {
                "segment.update"
            } else {
                "segment.create"
            },
        );
        entry.subject = Some(def.key.clone());
        entry.before = before.as_ref().and_then(to_value);
        entry.after = to_value(&def);
        let batch = Batch {
            segments: vec![def],
            audit: vec![entry],
            ..Batch::default()
        };
        self.commit(&mut w, batch).await?;
        tracing::info!(segment = %path_key, actor = %actor.name, "segment saved");
        Ok(before.is_none())
    }

    /// Creates a token and returns its secret (shown once, stored only as a hash).
    pub async fn create_token(
        &self,
        actor: &Actor,
        name: &str,
        role: Role,
    ) -> Result<String, OpsError> {
        let secret = new_token_secret();
        self.store_token(actor, name, role, &secret, false).await?;
        Ok(secret)
    }

    /// Stores a token with a given secret; `replace` allows overwriting (bootstrap only).
    pub(crate) async fn store_token(
        &self,
        actor: &Actor,
        name: &str,
        role: Role,
        secret: &str,
        replace: bool,
    ) -> Result<(), OpsError> {
        if !valid_token_name(name) {
            return Err(invalid("name", "must be 1 to 64 of [A-Za-z0-9._-]"));
        }
        let mut w = self.writer.lock().await;
        if !replace && self.store.tokens()?.iter().any(|t| t.name == name) {
            return Err(OpsError::Conflict(format!(
                "a token named {name:?} already exists"
            )));
        }
        let record = StoredToken {
            name: name.to_owned(),
            role,
            sha256: hex::encode(token_digest(secret)),
            created: now_rfc3339(),
        };
        let mut entry = w.audit(actor, "token.create");
        entry.subject = Some(name.to_owned());
        entry.after = Some(json!({"name": name, "role": role}));
        self.commit(
            &mut w,
            Batch {
                tokens: vec![record],
                audit: vec![entry],
                ..Batch::default()
            },
        )
        .await?;
        tracing::info!(token = %name, role = role.as_str(), actor = %actor.name, "token created");
        Ok(())
    }

    /// Revokes a token. The last admin token cannot be revoked (that would lock everyone out).
    pub async fn delete_token(&self, actor: &Actor, name: &str) -> Result<(), OpsError> {
        let mut w = self.writer.lock().await;
        let tokens = self.store.tokens()?;
        let Some(target) = tokens.iter().find(|t| t.name == name) else {
            return Err(OpsError::NotFound {
                what: "token",
                key: name.to_owned(),
            });
        };
        if target.role == Role::Admin
            && tokens.iter().filter(|t| t.role == Role::Admin).count() == 1
        {
            return Err(OpsError::Conflict(
                "refusing to revoke the last admin token".to_owned(),
            ));
        }
        let mut entry = w.audit(actor, "token.revoke");
        entry.subject = Some(name.to_owned());
        entry.before = Some(json!({"name": name, "role": target.role}));
        let batch = Batch {
            deleted_tokens: vec![name.to_owned()],
            audit: vec![entry],
            ..Batch::default()
        };
        self.commit(&mut w, batch).await?;
        tracing::info!(token = %name, actor = %actor.name, "token revoked");
        Ok(())
    }

    /// Creates or replaces a policy (validated by the caller).
    pub async fn put_policy(&self, actor: &Actor, policy: Policy) -> Result<bool, OpsError> {
        let mut w = self.writer.lock().await;
        let before = self.policies.load().get(&policy.name).cloned();
        let mut entry = w.audit(
            actor,
            if before.is_some() {
                "policy.update"
            } else {
                "policy.create"
            },
        );
        entry.subject = Some(policy.name.clone());
        entry.before = before.as_ref().and_then(to_value);
        entry.after = to_value(&policy);
        let name = policy.name.clone();
        self.commit(
            &mut w,
            Batch {
                policies: vec![policy],
                audit: vec![entry],
                ..Batch::default()
            },
        )
        .await?;
        tracing::info!(policy = %name, actor = %actor.name, "policy saved");
        Ok(before.is_none())
    }
}
