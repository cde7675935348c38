//! The Slack incoming-webhook message for an event: `{"text", "blocks"}` with the decision in
//! words (what happened, to which module of which release, why, by whom), the key numbers as
//! section fields, and a link to the release's dashboard page when `public_url` is set.
//!
//! Invariants: every piece of user text (release and flag names, reason, actor) is escaped for
//! Slack mrkdwn (`&`, `<`, `>`), so a name can never inject a link or a mention; Slack's limits
//! hold (section text ≤ 3000 characters, at most 10 fields of ≤ 2000); `text` is the same
//! message without blocks, for notifications and clients that show no blocks.

use super::event::WebhookEvent;
use super::format::{dashboard_link, headline, key_numbers, truncate};
use serde_json::{json, Value};

/// Slack mrkdwn escaping of user text: `&`, `<` and `>` become entities.
pub(super) fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The message for `event`.
pub(super) fn message(event: &WebhookEvent, public_url: Option<&str>) -> Value {
    let what = headline(event.kind);
    let subject = match (&event.module, &event.release) {
        (Some(flag), Some(release)) => {
            format!("module `{}` of release *{}*", escape(flag), escape(release))
        }
        (Some(flag), None) => format!("flag `{}`", escape(flag)),
        (None, Some(release)) => format!("release *{}*", escape(release)),
        (None, None) => "rollgate".into(),
    };
    let reason = truncate(&escape(&event.reason), 2500);
    let by = escape(&event.actor);
    let text = format!("*{what}*: {subject}: {reason} (by {by})");
    let mut blocks = vec![json!({
        "type": "section",
        "text": {"type": "mrkdwn", "text": truncate(&text, 3000)},
    })];
    let fields: Vec<Value> = key_numbers(&event.numbers)
        .into_iter()
        .take(10)
        .map(|(label, value)| {
            json!({"type": "mrkdwn", "text": truncate(&format!("*{label}*\n{}", escape(&value)), 2000)})
        })
        .collect();
    if !fields.is_empty() {
        blocks.push(json!({"type": "section", "fields": fields}));
    }
    let mut context = format!("event `{}` at {}", event.id, escape(&event.time));
    if let Some(link) = dashboard_link(event, public_url) {
        context = format!("<{link}|Open in the rollgate dashboard> · {context}");
    }
    blocks.push(json!({
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": context}],
    }));
    json!({"text": text, "blocks": blocks})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhooks::WebhookKind;

    #[test]
    fn user_text_is_escaped_and_the_link_is_the_release_page() {
        let event = WebhookEvent {
            release_id: Some("rel-1".into()),
            release: Some("a<b>&c".into()),
            module: Some("checkout".into()),
            ..WebhookEvent::new(WebhookKind::Pause, "<!channel>", "x > y & z")
        };
        let msg = message(&event, Some("https://rg.example"));
        let text = msg["text"].as_str().unwrap();
        assert_eq!(
            text,
            "*Paused*: module `checkout` of release *a&lt;b&gt;&amp;c*: x &gt; y &amp; z (by &lt;!channel&gt;)"
        );
        let blocks = msg["blocks"].as_array().unwrap();
        assert_eq!(blocks.len(), 2, "no numbers, no fields section");
        let context = blocks[1]["elements"][0]["text"].as_str().unwrap();
        assert!(
            context.starts_with("<https://rg.example/ui#/release/rel-1|"),
            "{context}"
        );
        let without = message(&event, None);
        assert!(!without.to_string().contains("ui#/release"));
    }
}
