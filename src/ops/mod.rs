//! The operators' write paths, one resource per file: [`flags`] (create, replace, delete,
//! rollout, kill switch), [`segments`], [`tokens`], [`policies`]. Each validates, takes the
//! writer lock, builds one batch with its audit entry, commits it through `writer`, and — where
//! the change can move what the controller watches — lets the controller refresh.
//! Release commands and alerts belong to the controller (`controller::commands`, `::alerts`).

pub mod flags;
pub mod policies;
pub mod segments;
pub mod tokens;

use crate::writer::invalid;
use crate::writer::OpsError;

/// Refuses a body whose key differs from the path's.
fn same_key(body_key: &str, path_key: &str) -> Result<(), OpsError> {
    if body_key == path_key {
        return Ok(());
    }
    Err(invalid(
        "key",
        format!("body key {body_key:?} differs from path key {path_key:?}"),
    ))
}
