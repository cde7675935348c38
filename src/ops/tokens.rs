//! Token write paths: create (the secret is returned once and stored only as a hash), store a
//! given secret (bootstrap), revoke. The last admin token cannot be revoked.

use crate::auth::{new_token_secret, token_digest, valid_token_name, Actor, Role, StoredToken};
use crate::state::AppState;
use crate::writer::{invalid, Batch, OpsError};
use serde_json::json;

/// Creates a token and returns its secret (shown once, stored only as a hash).
pub async fn create(
    state: &AppState,
    actor: &Actor,
    name: &str,
    role: Role,
) -> Result<String, OpsError> {
    let secret = new_token_secret();
    store(state, actor, name, role, &secret, false).await?;
    Ok(secret)
}

/// Stores a token with a given secret; `replace` allows overwriting (bootstrap only).
pub async fn store(
    state: &AppState,
    actor: &Actor,
    name: &str,
    role: Role,
    secret: &str,
    replace: bool,
) -> Result<(), OpsError> {
    if !valid_token_name(name) {
        return Err(invalid("name", "must be 1 to 64 of [A-Za-z0-9._-]"));
    }
    let mut w = state.write().await?;
    if !replace && state.store.tokens()?.iter().any(|t| t.name == name) {
        return Err(OpsError::Conflict(format!(
            "a token named {name:?} already exists"
        )));
    }
    let record = StoredToken {
        name: name.to_owned(),
        role,
        sha256: hex::encode(token_digest(secret)),
        created: crate::clock::now_rfc3339(),
    };
    let mut entry = w.audit(actor, "token.create");
    entry.subject = Some(name.to_owned());
    entry.after = Some(json!({"name": name, "role": role}));
    let batch = Batch {
        tokens: vec![record],
        ..Batch::audit_only(entry)
    };
    state.commit(&mut w, batch).await?;
    tracing::info!(token = %name, role = role.as_str(), actor = %actor.name, "token created");
    Ok(())
}

/// Revokes a token. The last admin token cannot be revoked (that would lock everyone out).
pub async fn revoke(state: &AppState, actor: &Actor, name: &str) -> Result<(), OpsError> {
    let mut w = state.write().await?;
    let tokens = state.store.tokens()?;
    let Some(target) = tokens.iter().find(|t| t.name == name) else {
        return Err(OpsError::NotFound {
            what: "token",
            key: name.to_owned(),
        });
    };
    if target.role == Role::Admin && tokens.iter().filter(|t| t.role == Role::Admin).count() == 1 {
        return Err(OpsError::Conflict(
            "refusing to revoke the last admin token".to_owned(),
        ));
    }
    let mut entry = w.audit(actor, "token.revoke");
    entry.subject = Some(name.to_owned());
    entry.before = Some(json!({"name": name, "role": target.role}));
    let batch = Batch {
        deleted_tokens: vec![name.to_owned()],
        ..Batch::audit_only(entry)
    };
    state.commit(&mut w, batch).await?;
    tracing::info!(token = %name, actor = %actor.name, "token revoked");
    Ok(())
}
