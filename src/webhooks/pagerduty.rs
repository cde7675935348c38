//! PagerDuty Events API v2 events for a webhook event: a `trigger` on a rollback and on a
//! rollback the fleet did not confirm, a `resolve` when the module completes or an operator
//! resumes it. Pauses, late confirmations and drills do not page (a pause holds the rollout
//! where it is, nothing got worse; Slack and generic targets still hear of them).
//!
//! Invariants: one incident per release module: the `dedup_key` is
//! `rollgate/<release id>/<flag>` (`rollgate/flag/<flag>` for a flag ramped by hand), the same
//! for the trigger and the resolve, at most 255 characters; `summary` is at most 1024
//! characters; `severity` is `critical` for a core guard's rollback and for an unconfirmed
//! rollback, `warning` for other rollbacks; `timestamp` is the event's RFC 3339 time.

use super::event::{WebhookEvent, WebhookKind};
use super::format::{dashboard_link, headline, is_core_rollback, key_numbers, truncate};
use serde_json::{json, Map, Value};

/// Whether a PagerDuty target takes events of `kind` (a module's: a completion of the whole
/// release is not sent).
pub(super) fn takes(kind: WebhookKind) -> bool {
    matches!(
        kind,
        WebhookKind::Rollback
            | WebhookKind::RollbackUnconfirmed
            | WebhookKind::Completion
            | WebhookKind::Resume
    )
}

/// The Events API v2 body for `event`, or `None` when this kind does not page.
pub(super) fn event(
    event: &WebhookEvent,
    routing_key: &str,
    public_url: Option<&str>,
) -> Option<Value> {
    let action = match (event.kind, &event.module) {
        (WebhookKind::Rollback | WebhookKind::RollbackUnconfirmed, _) => "trigger",
        (WebhookKind::Completion | WebhookKind::Resume, Some(_)) => "resolve",
        _ => return None,
    };
    let dedup_key = truncate(&dedup_key(event), 255);
    if action == "resolve" {
        return Some(json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": dedup_key,
        }));
    }
    let severity = if is_core_rollback(event) || event.kind == WebhookKind::RollbackUnconfirmed {
        "critical"
    } else {
        "warning"
    };
    let subject = match (&event.module, &event.release) {
        (Some(flag), Some(release)) => format!("{flag} in release {release}"),
        (Some(flag), None) => flag.clone(),
        (None, Some(release)) => format!("release {release}"),
        (None, None) => "rollgate".into(),
    };
    let summary = truncate(
        &format!("{}: {subject}: {}", headline(event.kind), event.reason),
        1024,
    );
    let mut details = Map::new();
    for (key, value) in [
        ("reason", Some(&event.reason)),
        ("actor", Some(&event.actor)),
        ("release", event.release.as_ref()),
        ("release_id", event.release_id.as_ref()),
        ("flag", event.module.as_ref()),
    ] {
        if let Some(value) = value {
            details.insert(key.into(), Value::String(value.clone()));
        }
    }
    details.insert("event_id".into(), Value::String(event.id.to_string()));
    for (label, value) in key_numbers(&event.numbers) {
        details.insert(
            label.to_lowercase().replace([' ', '/'], "_"),
            Value::String(value),
        );
    }
    details.insert("numbers".into(), event.numbers.clone());
    let source = public_url
        .and_then(|u| reqwest::Url::parse(u).ok())
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| "rollgate".into());
    let mut body = json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "payload": {
            "summary": summary,
            "source": source,
            "severity": severity,
            "timestamp": event.time,
            "component": event.module.clone().unwrap_or_else(|| "release".into()),
            "group": event.release.clone().unwrap_or_else(|| "flags".into()),
            "class": event.kind.as_str(),
            "custom_details": details,
        },
        "client": "rollgate",
    });
    if let Some(link) = dashboard_link(event, public_url) {
        let text = match &event.release {
            Some(release) => format!("Release {release} in the rollgate dashboard"),
            None => "Flags in the rollgate dashboard".into(),
        };
        body["client_url"] = Value::String(link.clone());
        body["links"] = json!([{"href": link, "text": text}]);
    }
    Some(body)
}

/// One incident per release module.
fn dedup_key(event: &WebhookEvent) -> String {
    match (&event.release_id, &event.module) {
        (Some(id), Some(flag)) => format!("rollgate/{id}/{flag}"),
        (Some(id), None) => format!("rollgate/{id}"),
        (None, Some(flag)) => format!("rollgate/flag/{flag}"),
        (None, None) => "rollgate".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollback(class: &str) -> WebhookEvent {
        WebhookEvent {
            release_id: Some("rel-1".into()),
            release: Some("spring".into()),
            module: Some("checkout".into()),
            numbers: json!({"guards": {"guard": {"metric": "errors", "class": class}}}),
            ..WebhookEvent::new(WebhookKind::Rollback, "controller", "x".repeat(3000))
        }
    }

    #[test]
    fn a_rollback_triggers_and_a_completion_resolves_the_same_incident() {
        let trigger = event(&rollback("core"), "key", Some("https://rg.example")).unwrap();
        assert_eq!(trigger["event_action"], "trigger");
        assert_eq!(trigger["dedup_key"], "rollgate/rel-1/checkout");
        assert_eq!(trigger["payload"]["severity"], "critical");
        assert_eq!(trigger["payload"]["source"], "rg.example");
        let summary = trigger["payload"]["summary"].as_str().unwrap();
        assert_eq!(summary.chars().count(), 1024);
        assert_eq!(
            trigger["links"][0]["href"],
            "https://rg.example/ui#/release/rel-1"
        );
        let basic = event(&rollback("basic"), "key", None).unwrap();
        assert_eq!(basic["payload"]["severity"], "warning");
        assert!(basic.get("links").is_none());

        let done = WebhookEvent {
            kind: WebhookKind::Completion,
            ..rollback("core")
        };
        let resolve = event(&done, "key", None).unwrap();
        assert_eq!(
            resolve,
            json!({"routing_key": "key", "event_action": "resolve", "dedup_key": "rollgate/rel-1/checkout"})
        );
    }

    #[test]
    fn pauses_confirmations_drills_and_release_completions_do_not_page() {
        for kind in [
            WebhookKind::Pause,
            WebhookKind::RollbackConfirmed,
            WebhookKind::Drill,
            WebhookKind::DrillFailed,
        ] {
            let e = WebhookEvent {
                kind,
                ..rollback("core")
            };
            assert_eq!(event(&e, "k", None), None, "{kind:?}");
            assert!(!takes(kind), "{kind:?}");
        }
        let release_done = WebhookEvent {
            kind: WebhookKind::Completion,
            module: None,
            ..rollback("core")
        };
        assert_eq!(event(&release_done, "k", None), None);
        let unconfirmed = WebhookEvent {
            kind: WebhookKind::RollbackUnconfirmed,
            ..rollback("basic")
        };
        let page = event(&unconfirmed, "k", None).unwrap();
        assert_eq!(page["payload"]["severity"], "critical");
        assert_eq!(page["dedup_key"], "rollgate/rel-1/checkout");
    }
}
