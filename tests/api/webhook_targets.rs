//! Typed webhook targets end to end: a real release on the real server completes one module,
//! rolls another back on a core guard's breach and is resumed; a local Slack receiver and a
//! local PagerDuty receiver (the bare listener of `webhooks.rs`) get those decisions, and
//! every body is checked strictly against the documented shapes: Slack's incoming-webhook
//! message (`text`, Block Kit `section` / `context` blocks and their limits) and PagerDuty's
//! Events API v2 (`routing_key`, `event_action`, `dedup_key`, `payload` with its required
//! fields and types, `links`). A generic target beside them still gets the signed event.

use crate::webhooks::{fast_config, spawn_receiver, Reply, Request};
use rollgate::webhooks::{verify, TargetConfig, TargetKind, SIGNATURE_HEADER};
use serde_json::{json, Map, Value};

const PUBLIC_URL: &str = "https://rollgate.example.com/";
const ROUTING_KEY: &str = "R0UTINGKEY0123456789abcdef012345";

/// The keys of `object`, which must all be among `allowed`.
fn only_keys<'a>(object: &'a Value, allowed: &[&str], what: &str) -> &'a Map<String, Value> {
    let map = object
        .as_object()
        .unwrap_or_else(|| panic!("{what}: not an object: {object}"));
    for key in map.keys() {
        assert!(
            allowed.contains(&key.as_str()),
            "{what}: unknown key {key:?}"
        );
    }
    map
}

fn string<'a>(object: &'a Value, key: &str, what: &str) -> &'a str {
    object[key]
        .as_str()
        .unwrap_or_else(|| panic!("{what}.{key}: not a string: {object}"))
}

/// A mrkdwn text object; `<` appears only as a link opener to the release page.
fn check_mrkdwn(text: &Value, max: usize, what: &str) {
    only_keys(text, &["type", "text", "verbatim"], what);
    assert_eq!(text["type"], "mrkdwn", "{what}");
    let body = string(text, "text", what);
    assert!(
        !body.is_empty() && body.chars().count() <= max,
        "{what}: {body}"
    );
    for (i, _) in body.match_indices('<') {
        assert!(
            body[i..].starts_with("<https://rollgate.example.com/ui#/release/"),
            "{what}: unescaped '<' in {body}"
        );
    }
}

/// Slack's incoming-webhook message: `text` plus Block Kit blocks, checked strictly.
fn check_slack(request: &Request, release_id: &str) -> Value {
    assert_eq!(request.method, "POST");
    assert_eq!(request.header("content-type"), "application/json");
    let message = request.json();
    only_keys(&message, &["text", "blocks"], "slack message");
    assert!(!string(&message, "text", "slack").is_empty());
    let blocks = message["blocks"].as_array().expect("blocks array");
    assert!((1..=50).contains(&blocks.len()));
    let mut link = None;
    for (i, block) in blocks.iter().enumerate() {
        let what = format!("blocks[{i}]");
        match string(block, "type", &what) {
            "section" => {
                only_keys(block, &["type", "text", "fields", "block_id"], &what);
                assert!(block.get("text").is_some() || block.get("fields").is_some());
                if let Some(text) = block.get("text") {
                    check_mrkdwn(text, 3000, &what);
                }
                if let Some(fields) = block.get("fields") {
                    let fields = fields.as_array().expect("fields array");
                    assert!((1..=10).contains(&fields.len()), "{what}");
                    for field in fields {
                        check_mrkdwn(field, 2000, &what);
                    }
                }
            }
            "context" => {
                only_keys(block, &["type", "elements", "block_id"], &what);
                let elements = block["elements"].as_array().expect("elements");
                assert!((1..=10).contains(&elements.len()), "{what}");
                for element in elements {
                    check_mrkdwn(element, 3000, &what);
                    let text = string(element, "text", &what);
                    if let Some(rest) = text.strip_prefix('<') {
                        link = rest.split('|').next().map(str::to_owned);
                    }
                }
            }
            other => panic!("{what}: unexpected block type {other}"),
        }
    }
    assert_eq!(
        link.as_deref(),
        Some(format!("https://rollgate.example.com/ui#/release/{release_id}").as_str()),
        "the message links the release's dashboard page"
    );
    message
}

/// PagerDuty Events API v2, checked strictly; returns the event.
fn check_pagerduty(request: &Request) -> Value {
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/hooks/rollgate");
    assert_eq!(request.header("content-type"), "application/json");
    let event = request.json();
    let allowed = [
        "routing_key",
        "event_action",
        "dedup_key",
        "payload",
        "links",
        "images",
        "client",
        "client_url",
    ];
    only_keys(&event, &allowed, "pagerduty event");
    assert_eq!(string(&event, "routing_key", "pd"), ROUTING_KEY);
    let dedup = string(&event, "dedup_key", "pd");
    assert!(!dedup.is_empty() && dedup.len() <= 255);
    match string(&event, "event_action", "pd") {
        "resolve" => assert!(event.get("payload").is_none(), "{event}"),
        "trigger" => {
            let payload = &event["payload"];
            let keys = [
                "summary",
                "source",
                "severity",
                "timestamp",
                "component",
                "group",
                "class",
                "custom_details",
            ];
            only_keys(payload, &keys, "payload");
            let summary = string(payload, "summary", "payload");
            assert!((1..=1024).contains(&summary.chars().count()));
            assert!(!string(payload, "source", "payload").is_empty());
            let severity = string(payload, "severity", "payload");
            assert!(["critical", "error", "warning", "info"].contains(&severity));
            let timestamp = string(payload, "timestamp", "payload");
            time::OffsetDateTime::parse(timestamp, &time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|e| panic!("timestamp {timestamp}: {e}"));
            for key in ["component", "group", "class"] {
                string(payload, key, "payload");
            }
            assert!(payload["custom_details"].is_object());
            for link in event["links"].as_array().expect("links") {
                only_keys(link, &["href", "text"], "link");
                string(link, "text", "link");
                reqwest::Url::parse(string(link, "href", "link")).expect("absolute href");
            }
        }
        other => panic!("event_action {other}"),
    }
    event
}

#[tokio::test]
async fn slack_and_pagerduty_hear_a_real_rollback_and_its_resolution() {
    // Arrange: PagerDuty answers 202 (its success), after one 429 that is retried.
    let mut slack = spawn_receiver(|_| Reply::Status(200)).await;
    let mut pagerduty = spawn_receiver(|n| Reply::Status(if n == 1 { 429 } else { 202 })).await;
    let mut generic = spawn_receiver(|_| Reply::Status(204)).await;
    let targets = vec![
        TargetConfig {
            kind: TargetKind::Slack,
            url: Some(slack.url.clone()),
            ..TargetConfig::default()
        },
        TargetConfig {
            kind: TargetKind::Pagerduty,
            url: Some(pagerduty.url.clone()),
            routing_key: Some(ROUTING_KEY.into()),
            ..TargetConfig::default()
        },
        TargetConfig {
            url: Some(generic.url.clone()),
            secret: Some("own-secret".into()),
            ..TargetConfig::default()
        },
    ];
    let app = crate::helpers::spawn_app_with(move |c| {
        c.webhooks = fast_config(Vec::new(), Some("global-secret"));
        c.webhooks.targets = targets;
        c.webhooks.public_url = Some(PUBLIC_URL.into());
    })
    .await;
    let token = app.create_token("app", "client").await;
    for flag in ["a", "b"] {
        app.put_flag(crate::helpers::bool_flag(flag, 0.0)).await;
    }
    let plan = json!({"name": "spring-sale", "policy": "checkout", "overlap": true,
        "modules": [{"flag": "a"}, {"flag": "b", "stages": {"percentages": [50, 100], "min_duration": "1h"}}],
        "stages": {"percentages": [100], "min_duration": "0s", "min_exposures": 0}});
    let id = app.create_release(plan).await;

    // Act 1: start; module a completes at once.
    let r = app
        .admin_post(&format!("/api/v1/releases/{id}/start"), json!({}))
        .await;
    assert_eq!(r.status(), 200);

    // Assert 1: Slack says so in words; PagerDuty resolves a's (never opened) incident; the
    // generic target gets the event signed with its own secret.
    let done = check_slack(&slack.next().await, &id);
    let text = done["text"].as_str().unwrap();
    assert!(
        text.starts_with("*Completed*: module `a` of release *spring-sale*"),
        "{text}"
    );
    let resolve_a = check_pagerduty(&pagerduty.next().await);
    assert_eq!(resolve_a["event_action"], "resolve");
    assert_eq!(resolve_a["dedup_key"], format!("rollgate/{id}/a"));
    let signed = generic.next().await;
    assert!(verify(
        "own-secret",
        &signed.body,
        signed.header(SIGNATURE_HEADER)
    ));
    assert_eq!(signed.json()["kind"], "completion");

    // Act 2: a data-loss event on b breaches the core guard `data_loss`: rollback.
    let signal = json!([{"flag": "b", "variant": "on", "metric": "data_loss"}]);
    assert_eq!(app.signals(&token, signal).await.0, 200);

    // Assert 2: Slack gets the rollback with its reason and numbers; PagerDuty a critical
    // trigger (after one 429, the same bytes again).
    let rollback = check_slack(&slack.next().await, &id);
    let text = rollback["text"].as_str().unwrap();
    assert!(text.starts_with("*Rolled back*: module `b`"), "{text}");
    assert!(
        text.contains("data_loss") && text.ends_with("(by controller)"),
        "{text}"
    );
    let fields = rollback["blocks"][1]["fields"].to_string();
    assert!(fields.contains("*Rollout*\\n50 % → 0 %"), "{fields}");
    assert!(fields.contains("data_loss (core, breach)"), "{fields}");
    let throttled = pagerduty.next().await;
    let retried = pagerduty.next().await;
    assert_eq!(throttled.body, retried.body, "a retry sends the same event");
    let trigger = check_pagerduty(&retried);
    assert_eq!(trigger["event_action"], "trigger");
    let dedup = format!("rollgate/{id}/b");
    assert_eq!(trigger["dedup_key"], dedup);
    let payload = &trigger["payload"];
    assert_eq!(payload["severity"], "critical");
    assert_eq!(payload["source"], "rollgate.example.com");
    assert_eq!(payload["component"], "b");
    assert_eq!(payload["group"], "spring-sale");
    assert_eq!(payload["class"], "rollback");
    assert!(payload["summary"].as_str().unwrap().contains("data_loss"));
    assert_eq!(payload["custom_details"]["numbers"]["rollout_after"], 0.0);
    assert_eq!(payload["custom_details"]["rollout"], "50 % → 0 %");
    assert_eq!(
        trigger["links"][0]["href"],
        format!("https://rollgate.example.com/ui#/release/{id}")
    );
    assert_eq!(generic.next().await.json()["kind"], "rollback");

    // Act 3: an operator resumes the release; b ramps again from its first stage.
    let r = app
        .admin_post(&format!("/api/v1/releases/{id}/resume"), json!({}))
        .await;
    assert_eq!(r.status(), 200);

    // Assert 3: PagerDuty resolves the same incident; Slack says it resumed.
    let resolve_b = check_pagerduty(&pagerduty.next().await);
    assert_eq!(resolve_b["event_action"], "resolve");
    assert_eq!(resolve_b["dedup_key"], trigger["dedup_key"]);
    let resumed = check_slack(&slack.next().await, &id);
    let text = resumed["text"].as_str().unwrap();
    assert!(
        text.starts_with("*Resumed after a rollback*: module `b`"),
        "{text}"
    );
    assert_eq!(generic.next().await.json()["kind"], "resume");

    // The rollback is counted where the alert rules read it.
    let metrics = app
        .admin(reqwest::Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "rollgate_release_events_total{kind=\"rollback\"} 1",
        "rollgate_release_events_total{kind=\"completion\"} 1",
        "rollgate_release_events_total{kind=\"resume\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} missing");
    }
    assert!(pagerduty.is_idle() && slack.is_idle());
}
