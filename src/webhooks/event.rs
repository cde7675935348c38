//! What a webhook carries: one event per pause, rollback, completion or restart of a rolled-back
//! module, and the reach alert of a rollback (unconfirmed, then confirmed).

use serde::Serialize;
use uuid::Uuid;

/// One event: pause, rollback or completion of a release or of one of its modules.
#[derive(Debug, Clone, Serialize)]
pub struct WebhookEvent {
    /// UUIDv7; also sent as `X-Rollgate-Event-Id`, identical on retries.
    pub id: Uuid,
    /// What happened.
    pub kind: WebhookKind,
    /// When, RFC 3339 UTC.
    pub time: String,
    /// The release's id.
    pub release_id: Option<String>,
    /// The release's name.
    pub release: Option<String>,
    /// Flag key of the module; `None` for release-level events.
    pub module: Option<String>,
    /// Why, in words.
    pub reason: String,
    /// Token name of the operator, or `"controller"`.
    pub actor: String,
    /// The decision record behind it: counts, rates, thresholds.
    pub numbers: serde_json::Value,
}

impl WebhookEvent {
    /// An event stamped now with a fresh UUIDv7; release, module and numbers are empty, to be
    /// filled with struct update syntax.
    pub fn new(kind: WebhookKind, actor: impl Into<String>, reason: impl Into<String>) -> Self {
        WebhookEvent {
            id: Uuid::now_v7(),
            kind,
            time: crate::clock::now_rfc3339(),
            release_id: None,
            release: None,
            module: None,
            reason: reason.into(),
            actor: actor.into(),
            numbers: serde_json::Value::Null,
        }
    }
}

/// What happened to a release or module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookKind {
    /// Paused, by an operator or a guard.
    Pause,
    /// Rolled back, by an operator, a guard or an alert.
    Rollback,
    /// Every stage done.
    Completion,
    /// An operator resumed a rolled-back module (it ramps again from its first stage).
    Resume,
    /// A rollback that too few live clients applied within `reach_timeout` (sent once).
    #[serde(rename = "rollback_unconfirmed")]
    RollbackUnconfirmed,
    /// A rollback alerted on as unconfirmed reached the target share since.
    #[serde(rename = "rollback_confirmed")]
    RollbackConfirmed,
    /// A rollback drill killed its drill flag (the drill checks this event is delivered).
    Drill,
    /// A rollback drill failed a check (docs/operations.md, "Drills").
    #[serde(rename = "drill_failed")]
    DrillFailed,
}

impl WebhookKind {
    /// Every kind, in a fixed order (the index of [`super::WebhookStats::events`]).
    pub const ALL: [WebhookKind; 8] = [
        WebhookKind::Pause,
        WebhookKind::Rollback,
        WebhookKind::Completion,
        WebhookKind::Resume,
        WebhookKind::RollbackUnconfirmed,
        WebhookKind::RollbackConfirmed,
        WebhookKind::Drill,
        WebhookKind::DrillFailed,
    ];

    /// This kind's position in [`WebhookKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The serialized name, also sent as `X-Rollgate-Event`.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookKind::Pause => "pause",
            WebhookKind::Rollback => "rollback",
            WebhookKind::Completion => "completion",
            WebhookKind::Resume => "resume",
            WebhookKind::RollbackUnconfirmed => "rollback_unconfirmed",
            WebhookKind::RollbackConfirmed => "rollback_confirmed",
            WebhookKind::Drill => "drill",
            WebhookKind::DrillFailed => "drill_failed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialize_to_the_wire_shape() {
        let event = WebhookEvent {
            module: Some("qr-ordering".into()),
            ..WebhookEvent::new(WebhookKind::Completion, "controller", "all stages done")
        };
        let json = serde_json::to_value(&event).unwrap_or_default();
        assert_eq!(json["kind"], "completion");
        assert_eq!(json["module"], "qr-ordering");
        assert_eq!(json["release"], serde_json::Value::Null);
        assert_eq!(json["id"], event.id.to_string());
        assert_eq!(event.id.get_version_num(), 7);
        assert!(event.time.ends_with('Z'), "{}", event.time);
    }

    #[test]
    fn every_kind_is_listed_at_its_index() {
        for (i, kind) in WebhookKind::ALL.into_iter().enumerate() {
            assert_eq!(kind.index(), i, "{kind:?}");
        }
        assert_eq!(WebhookKind::Resume.as_str(), "resume");
        assert_eq!(
            serde_json::to_value(WebhookKind::Resume).unwrap_or_default(),
            "resume"
        );
    }
}
