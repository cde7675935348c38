//! The change events a commit publishes to streaming clients: one per flag or segment change,
//! carrying its revision and its cause (actor, action, reason, audit id) from the batch's audit
//! entries; and the same changes as the reach tracker records them.

use crate::hub::ChangeHub;
use crate::reach::{Change, Subject};
use crate::store::AuditEntry;
use rollgate_eval::{FlagDef, SegmentDef};
use serde_json::{json, Value};

/// The audit actions of a rollback: a module's (by a guard, an operator or an alert) and a flag
/// ramped by hand set to 0 % (by its guards or an alert).
const ROLLBACK_ACTIONS: [&str; 2] = ["module.rollback", "flag.rollback"];

/// The batch's last audit entry about `key`.
fn cause_of<'a>(audit: &'a [AuditEntry], key: &str) -> Option<&'a AuditEntry> {
    audit
        .iter()
        .rev()
        .find(|e| e.flag.as_deref() == Some(key) || e.subject.as_deref() == Some(key))
}

/// The changes of a batch for the reach tracker, numbered from `first` in the order
/// [`announce`] publishes them (segments, flags, deleted flags), committed at `at_ms`.
pub(super) fn reach_changes(
    flags: &[FlagDef],
    deleted: &[String],
    segments: &[SegmentDef],
    audit: &[AuditEntry],
    first: u64,
    at_ms: u64,
) -> Vec<Change> {
    let subjects = segments
        .iter()
        .map(|s| (Subject::Segment, s.key.as_str()))
        .chain(flags.iter().map(|f| (Subject::Flag, f.key.as_str())))
        .chain(deleted.iter().map(|k| (Subject::Flag, k.as_str())));
    subjects
        .zip(first..)
        .map(|((subject, key), revision)| {
            let cause = cause_of(audit, key);
            let action = cause.map(|e| e.action.clone());
            Change {
                revision,
                subject,
                key: key.to_owned(),
                rollback: subject == Subject::Flag
                    && action
                        .as_deref()
                        .is_some_and(|a| ROLLBACK_ACTIONS.contains(&a)),
                action,
                release: cause.and_then(|e| e.release.clone()),
                at_ms,
            }
        })
        .collect()
}

/// Publishes one stream event per flag or segment change.
pub(super) fn announce(
    hub: &ChangeHub,
    flags: &[FlagDef],
    deleted: &[String],
    segments: &[SegmentDef],
    audit: &[AuditEntry],
) {
    let unix_s = crate::clock::now_ms() / 1000;
    let cause = |key: &str| -> Value {
        cause_of(audit, key).map_or(json!({}), |e| {
                json!({"actor": e.actor, "action": e.action, "reason": e.reason, "audit_id": e.id, "release": e.release})
            })
    };
    // Events are published one after another under the writer lock: the next one's revision is
    // always `last_seq() + 1`.
    let next = || hub.last_seq() + 1;
    for s in segments {
        let data = json!({"type": "segment", "key": s.key, "action": "upsert", "segment": s, "revision": next(), "cause": cause(&s.key)});
        hub.publish(data.to_string().into_bytes(), unix_s);
    }
    for f in flags {
        let data = json!({"type": "flag", "key": f.key, "action": "upsert", "flag": f, "revision": next(), "cause": cause(&f.key)});
        hub.publish(data.to_string().into_bytes(), unix_s);
    }
    for key in deleted {
        let data = json!({"type": "flag", "key": key, "action": "delete", "flag": null, "revision": next(), "cause": cause(key)});
        hub.publish(data.to_string().into_bytes(), unix_s);
    }
}
