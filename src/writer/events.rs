//! The change events a commit publishes to streaming clients: one per flag or segment change,
//! carrying its revision and its cause (actor, action, reason, audit id, release); and the same
//! changes as the reach tracker records them. A local commit finds each cause in its batch's
//! audit entries; a change applied from the cluster's feed carries it in its feed row.

use crate::hub::ChangeHub;
use crate::reach::{Change, Subject};
use crate::store::AuditEntry;
use rollgate_eval::{FlagDef, SegmentDef};
use serde_json::{json, Value};

/// The audit actions of a rollback: a module's (by a guard, an operator or an alert) and a flag
/// ramped by hand set to 0 % (by its guards or an alert).
const ROLLBACK_ACTIONS: [&str; 2] = ["module.rollback", "flag.rollback"];

/// One flag or segment change to announce.
#[derive(Debug, Clone)]
pub struct Announced {
    /// Its revision (the stream event id).
    pub revision: u64,
    /// Flag or segment.
    pub subject: Subject,
    /// Its key.
    pub key: String,
    /// The new definition; `Value::Null` when deleted.
    pub body: Value,
    /// What caused it (`{}` when unknown).
    pub cause: Value,
}

/// The cause of `key`'s change: the batch's last audit entry about it.
pub fn cause_of(audit: &[AuditEntry], key: &str) -> Value {
    audit
        .iter()
        .rev()
        .find(|e| e.flag.as_deref() == Some(key) || e.subject.as_deref() == Some(key))
        .map_or(json!({}), |e| {
            json!({"actor": e.actor, "action": e.action, "reason": e.reason, "audit_id": e.id, "release": e.release})
        })
}

/// A batch's changes in publishing order (segments, flags, deleted flags, deleted segments —
/// last, once no flag of the batch uses them), numbered from `first`.
pub fn of_batch(
    flags: &[FlagDef],
    deleted: &[String],
    segments: &[SegmentDef],
    deleted_segments: &[String],
    audit: &[AuditEntry],
    first: u64,
) -> Vec<Announced> {
    let segments = segments
        .iter()
        .map(|s| (Subject::Segment, s.key.clone(), json!(s)));
    let flags = flags
        .iter()
        .map(|f| (Subject::Flag, f.key.clone(), json!(f)));
    let deleted = deleted
        .iter()
        .map(|k| (Subject::Flag, k.clone(), Value::Null));
    let deleted_segments = deleted_segments
        .iter()
        .map(|k| (Subject::Segment, k.clone(), Value::Null));
    segments
        .chain(flags)
        .chain(deleted)
        .chain(deleted_segments)
        .zip(first..)
        .map(|((subject, key, body), revision)| Announced {
            revision,
            subject,
            cause: cause_of(audit, &key),
            key,
            body,
        })
        .collect()
}

/// The changes for the reach tracker, committed at `at_ms`.
pub(super) fn reach_changes(announced: &[Announced], at_ms: u64) -> Vec<Change> {
    announced
        .iter()
        .map(|a| {
            let action = a.cause["action"].as_str().map(str::to_owned);
            Change {
                revision: a.revision,
                subject: a.subject,
                key: a.key.clone(),
                rollback: a.subject == Subject::Flag
                    && action
                        .as_deref()
                        .is_some_and(|a| ROLLBACK_ACTIONS.contains(&a)),
                action,
                release: a.cause["release"].as_str().map(str::to_owned),
                at_ms,
            }
        })
        .collect()
}

/// Publishes one stream event per change, at its revision.
pub(super) fn announce(hub: &ChangeHub, announced: &[Announced]) {
    let unix_s = crate::clock::now_ms() / 1000;
    for a in announced {
        let (kind, action) = match (a.subject, a.body.is_null()) {
            (Subject::Segment, false) => ("segment", "upsert"),
            (Subject::Segment, true) => ("segment", "delete"),
            (Subject::Flag, false) => ("flag", "upsert"),
            (Subject::Flag, true) => ("flag", "delete"),
        };
        let mut data = json!({"type": kind, "key": a.key, "action": action, "revision": a.revision, "cause": a.cause});
        data[kind] = a.body.clone();
        hub.publish_at(a.revision, data.to_string().into_bytes(), unix_s);
    }
}
