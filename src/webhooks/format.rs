//! The words and numbers the typed messages (Slack, PagerDuty) share: the dashboard link, the
//! headline of each event kind, the key numbers of a decision, truncation. Pure functions.
//!
//! Invariant: the key numbers quoted in Slack and PagerDuty messages are read from the event's
//! `numbers` by the paths the controller writes (module decision records and reach figures),
//! absent paths are skipped.

use super::event::{WebhookEvent, WebhookKind};
use serde_json::Value;

/// The dashboard page of the event's release (`<public_url>/ui#/release/<id>`), or of the
/// flags list for a flag ramped by hand; `None` without a public URL.
pub(super) fn dashboard_link(event: &WebhookEvent, public_url: Option<&str>) -> Option<String> {
    let base = public_url?.trim_end_matches('/');
    Some(match &event.release_id {
        Some(id) => format!("{base}/ui#/release/{id}"),
        None => format!("{base}/ui#/flags"),
    })
}

/// What happened, in words: a verb phrase for the kind.
pub(super) fn headline(kind: WebhookKind) -> &'static str {
    match kind {
        WebhookKind::Pause => "Paused",
        WebhookKind::Rollback => "Rolled back",
        WebhookKind::Completion => "Completed",
        WebhookKind::Resume => "Resumed after a rollback",
        WebhookKind::RollbackUnconfirmed => "Rollback NOT confirmed by the fleet",
        WebhookKind::RollbackConfirmed => "Rollback confirmed by the fleet",
        WebhookKind::Drill => "Rollback drill",
        WebhookKind::DrillFailed => "Rollback drill FAILED",
    }
}

/// Whether a rollback came from a core guard's breach (its decision record names the guard's
/// class), as opposed to an operator, an alert or a basic guard after its grace.
pub(super) fn is_core_rollback(event: &WebhookEvent) -> bool {
    event.kind == WebhookKind::Rollback
        && event.numbers["guards"]["guard"]["class"].as_str() == Some("core")
}

/// The numbers worth quoting, as (label, value) pairs, in a fixed order.
pub(super) fn key_numbers(numbers: &Value) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let (before, after) = (&numbers["rollout_before"], &numbers["rollout_after"]);
    if let (Some(b), Some(a)) = (before.as_f64(), after.as_f64()) {
        out.push(("Rollout", format!("{} % → {} %", short(b), short(a))));
    }
    if let Some(n) = numbers["exposures_total"].as_u64() {
        out.push(("Exposures", n.to_string()));
    }
    let guard = &numbers["guards"]["guard"];
    if let Some(metric) = guard["metric"].as_str() {
        let class = guard["class"].as_str().unwrap_or("?");
        let state = guard["state"].as_str().unwrap_or("?");
        out.push(("Guard", format!("{metric} ({class}, {state})")));
        for (label, side) in [("New variant", "new"), ("Old variant", "old")] {
            let r = &guard[side];
            if let (Some(events), Some(exposures)) = (r["events"].as_u64(), r["exposures"].as_u64())
            {
                let rate = r["rate"].as_f64().map_or("n/a".into(), short);
                out.push((label, format!("{events} / {exposures} (rate {rate})")));
            }
        }
        if let Some(x) = guard["relative_increase"].as_f64() {
            out.push(("Relative increase", format!("{} %", short(x * 100.0))));
        }
        if let (Some(e), Some(t)) = (
            guard["ln_evidence"].as_f64(),
            guard["ln_threshold"].as_f64(),
        ) {
            out.push((
                "Evidence / threshold",
                format!("{} / {}", short(e), short(t)),
            ));
        }
    }
    if let (Some(confirmed), Some(live)) = (
        numbers["confirmed"].as_u64(),
        numbers["live_clients"].as_u64(),
    ) {
        let share = numbers["share"].as_f64().unwrap_or(0.0) * 100.0;
        out.push((
            "Confirmed by",
            format!("{confirmed} of {live} live clients ({} %)", short(share)),
        ));
    }
    if let Some(revision) = numbers["revision"].as_u64() {
        out.push(("Revision", revision.to_string()));
    }
    out
}

/// A number with at most 4 significant decimals, no trailing zeros.
fn short(x: f64) -> String {
    let text = format!("{x:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".into()
    } else {
        text.into()
    }
}

/// `text` cut to at most `max` characters, an ellipsis marking the cut.
pub(super) fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_numbers_read_decision_records_and_reach_figures() {
        let decision = json!({"rollout_before": 50.0, "rollout_after": 0.0, "exposures_total": 1200,
            "guards": {"guard": {"metric": "errors", "class": "core", "state": "breach",
                "new": {"events": 30, "exposures": 600, "rate": 0.05},
                "old": {"events": 6, "exposures": 600, "rate": 0.01},
                "relative_increase": 4.0, "ln_evidence": 7.25, "ln_threshold": 5.298317}}});
        let numbers = key_numbers(&decision);
        let find = |label: &str| {
            numbers
                .iter()
                .find(|(l, _)| *l == label)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(find("Rollout").as_deref(), Some("50 % → 0 %"));
        assert_eq!(find("Guard").as_deref(), Some("errors (core, breach)"));
        assert_eq!(find("New variant").as_deref(), Some("30 / 600 (rate 0.05)"));
        assert_eq!(find("Relative increase").as_deref(), Some("400 %"));
        assert_eq!(
            find("Evidence / threshold").as_deref(),
            Some("7.25 / 5.2983")
        );
        let reach = json!({"revision": 42, "confirmed": 8, "live_clients": 10, "share": 0.8});
        assert_eq!(
            key_numbers(&reach),
            vec![
                ("Confirmed by", "8 of 10 live clients (80 %)".into()),
                ("Revision", "42".into())
            ]
        );
        assert!(key_numbers(&Value::Null).is_empty());
    }

    #[test]
    fn truncation_counts_characters_and_marks_the_cut() {
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("ééééé", 3), "éé…");
        assert_eq!(truncate(&"x".repeat(2000), 1024).chars().count(), 1024);
    }

    #[test]
    fn links_point_at_the_release_page() {
        let mut event = WebhookEvent::new(WebhookKind::Rollback, "controller", "r");
        assert_eq!(dashboard_link(&event, None), None);
        assert_eq!(
            dashboard_link(&event, Some("https://rg.example/")).as_deref(),
            Some("https://rg.example/ui#/flags")
        );
        event.release_id = Some("0190-ab".into());
        assert_eq!(
            dashboard_link(&event, Some("https://rg.example")).as_deref(),
            Some("https://rg.example/ui#/release/0190-ab")
        );
    }
}
