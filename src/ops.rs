//! The control path: every operator change goes through here.
//!
//! Each operation validates, writes the change and its audit entry durably (flushed), and
//! only then publishes the new live snapshot — so what clients see is never ahead of disk,
//! and an acknowledged change survives `kill -9`. Writers are serialized by one async mutex
//! (control-path changes are rare; evaluation never takes it).

use crate::domain::{
    new_token_secret, now_rfc3339, token_digest, valid_token_name, Role, StoredToken,
};
use crate::live::Live;
use crate::policies::Policy;
use crate::state::AppState;
use crate::store::{AuditEntry, Change, StoreError};
use rollgate_eval::{compile_flag, validate_segment, FlagDef, Percentage, SegmentDef};
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
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
    /// Token name, or `controller`.
    pub name: String,
    /// Free-text reason, if given.
    pub reason: Option<String>,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> OpsError {
    OpsError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

fn to_value<T: Serialize>(v: &T) -> Option<Value> {
    serde_json::to_value(v).ok()
}

impl AppState {
    fn audit_entry(
        &self,
        last: &mut Uuid,
        actor: &Actor,
        action: &str,
        flag: Option<&str>,
        subject: Option<&str>,
        before: Option<Value>,
        after: Option<Value>,
    ) -> AuditEntry {
        // UUIDv7 is time-ordered; force strict monotonicity within the same millisecond.
        let mut id = Uuid::now_v7();
        if id <= *last {
            id = Uuid::from_u128(last.as_u128() + 1);
        }
        *last = id;
        AuditEntry {
            id,
            time: now_rfc3339(),
            actor: actor.name.clone(),
            action: action.to_owned(),
            flag: flag.map(str::to_owned),
            release: None,
            subject: subject.map(str::to_owned),
            reason: actor.reason.clone(),
            before,
            after,
        }
    }

    /// Creates or replaces a flag. Returns whether it was created.
    pub async fn put_flag(
        &self,
        actor: &Actor,
        path_key: &str,
        def: FlagDef,
    ) -> Result<bool, OpsError> {
        if def.key != path_key {
            return Err(invalid(
                "key",
                format!("body key {:?} differs from path key {path_key:?}", def.key),
            ));
        }
        let mut last = self.writer.lock().await;
        let live = self.live.load();
        let compiled =
            compile_flag(&def, &live.segments).map_err(|e| invalid(e.field, e.message))?;
        let before = live.get(&def.key).map(|f| f.def.clone());
        let entry = self.audit_entry(
            &mut last,
            actor,
            if before.is_some() {
                "flag.update"
            } else {
                "flag.create"
            },
            Some(&def.key),
            None,
            before.as_ref().and_then(to_value),
            to_value(&def),
        );
        self.store.commit(Change::PutFlag(&def), &entry).await?;
        tracing::info!(flag = %def.key, actor = %actor.name, action = %entry.action, "flag saved");
        self.live.store(Arc::new(live.with_flag(def, compiled)));
        Ok(before.is_none())
    }

    /// Deletes a flag.
    pub async fn delete_flag(&self, actor: &Actor, key: &str) -> Result<(), OpsError> {
        let mut last = self.writer.lock().await;
        let live = self.live.load();
        let before = live.get(key).ok_or_else(|| OpsError::NotFound {
            what: "flag",
            key: key.to_owned(),
        })?;
        let entry = self.audit_entry(
            &mut last,
            actor,
            "flag.delete",
            Some(key),
            None,
            to_value(&before.def),
            None,
        );
        self.store.commit(Change::DeleteFlag(key), &entry).await?;
        tracing::info!(flag = %key, actor = %actor.name, "flag deleted");
        self.live.store(Arc::new(live.without_flag(key)));
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
        let mut last = self.writer.lock().await;
        let live: Arc<Live> = self.live.load_full();
        let current = live.get(key).ok_or_else(|| OpsError::NotFound {
            what: "flag",
            key: key.to_owned(),
        })?;
        let mut def = current.def.clone();
        edit(&mut def);
        let compiled =
            compile_flag(&def, &live.segments).map_err(|e| invalid(e.field, e.message))?;
        let entry = self.audit_entry(
            &mut last,
            actor,
            action,
            Some(key),
            None,
            to_value(&current.def),
            to_value(&def),
        );
        self.store.commit(Change::PutFlag(&def), &entry).await?;
        tracing::info!(flag = %key, actor = %actor.name, action, rollout = def.rollout.as_f64(), enabled = def.enabled, "flag changed");
        self.live
            .store(Arc::new(live.with_flag(def.clone(), compiled)));
        Ok(def)
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
        let mut last = self.writer.lock().await;
        let live = self.live.load();
        let before = live.segments.get(&def.key).cloned();
        let action = if before.is_some() {
            "segment.update"
        } else {
            "segment.create"
        };
        let entry = self.audit_entry(
            &mut last,
            actor,
            action,
            None,
            Some(&def.key),
            before.as_ref().and_then(to_value),
            to_value(&def),
        );
        self.store.commit(Change::PutSegment(&def), &entry).await?;
        tracing::info!(segment = %def.key, actor = %actor.name, "segment saved");
        self.live.store(Arc::new(live.with_segment(def)));
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
        let mut last = self.writer.lock().await;
        let tokens = self.store.tokens()?;
        if !replace && tokens.iter().any(|t| t.name == name) {
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
        let after = serde_json::json!({"name": name, "role": role});
        let entry = self.audit_entry(
            &mut last,
            actor,
            "token.create",
            None,
            Some(name),
            None,
            Some(after),
        );
        self.store.commit(Change::PutToken(&record), &entry).await?;
        tracing::info!(token = %name, role = role.as_str(), actor = %actor.name, "token created");
        self.reload_tokens()?;
        Ok(())
    }

    /// Revokes a token. The last admin token cannot be revoked (that would lock everyone out).
    pub async fn delete_token(&self, actor: &Actor, name: &str) -> Result<(), OpsError> {
        let mut last = self.writer.lock().await;
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
        let before = serde_json::json!({"name": name, "role": target.role});
        let entry = self.audit_entry(
            &mut last,
            actor,
            "token.revoke",
            None,
            Some(name),
            Some(before),
            None,
        );
        self.store.commit(Change::DeleteToken(name), &entry).await?;
        tracing::info!(token = %name, actor = %actor.name, "token revoked");
        self.reload_tokens()?;
        Ok(())
    }

    /// Creates or replaces a policy (validated by the caller).
    pub async fn put_policy(&self, actor: &Actor, policy: Policy) -> Result<bool, OpsError> {
        let mut last = self.writer.lock().await;
        let set = self.policies.load();
        let before = set.get(&policy.name).cloned();
        let source = serde_json::to_string(&policy).unwrap_or_default();
        let action = if before.is_some() {
            "policy.update"
        } else {
            "policy.create"
        };
        let entry = self.audit_entry(
            &mut last,
            actor,
            action,
            None,
            Some(&policy.name),
            before.as_ref().and_then(to_value),
            to_value(&policy),
        );
        self.store
            .commit(
                Change::PutPolicy {
                    name: &policy.name,
                    source: &source,
                },
                &entry,
            )
            .await?;
        tracing::info!(policy = %policy.name, actor = %actor.name, "policy saved");
        self.policies.store(Arc::new(set.with(policy)));
        Ok(before.is_none())
    }
}
