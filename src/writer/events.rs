//! The change events a commit publishes to streaming clients: one per flag or segment change,
//! carrying its revision and its cause (actor, action, reason, audit id) from the batch's audit
//! entries.

use crate::hub::ChangeHub;
use crate::store::AuditEntry;
use rollgate_eval::{FlagDef, SegmentDef};
use serde_json::{json, Value};

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
        audit
            .iter()
            .rev()
            .find(|e| e.flag.as_deref() == Some(key) || e.subject.as_deref() == Some(key))
            .map_or(json!({}), |e| {
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
