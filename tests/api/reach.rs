//! Reach over real HTTP: clients are simulated the way real ones speak — signal batches
//! (heartbeats, `signals: []`) carrying the `client` report of docs/clients.md — and the
//! figures are read from `/api/v1/reach`, the release status and `/metrics`; the
//! unconfirmed-rollback alert is received by a real local HTTP receiver.

use crate::helpers::{bool_flag, cluster_mode, spawn_app, spawn_app_with, TestApp};
use crate::webhooks::{fast_config, spawn_receiver, Reply};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long any awaited condition may take.
const PATIENCE: Duration = Duration::from_secs(10);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Sends a heartbeat from client `id`: `{"signals": [], "client": {…}}`.
async fn heartbeat(app: &TestApp, token: &str, id: &str, revision: u64, applied_ms_ago: u64) {
    let client =
        json!({"id": id, "revision": revision, "applied_ms_ago": applied_ms_ago, "sdk": "test/1"});
    let (status, body) = post_batch(app, token, json!({"signals": [], "client": client})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 0, "{body}");
}

async fn post_batch(app: &TestApp, token: &str, body: Value) -> (u16, Value) {
    let r = app
        .client
        .post(app.url("/api/v1/signals"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The revision of the config a client would fetch now.
async fn revision(app: &TestApp, token: &str) -> u64 {
    let r = app
        .client
        .get(app.url("/api/v1/client/config"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    r.json::<Value>().await.unwrap()["revision"]
        .as_u64()
        .unwrap()
}

/// `/api/v1/reach?flag=`: the listing.
async fn reach_of(app: &TestApp, flag: &str) -> Value {
    app.admin_get(&format!("/api/v1/reach?flag={flag}")).await
}

async fn metrics(app: &TestApp) -> String {
    app.admin(Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the metrics line of `series` (labels included; a series without labels is
/// rendered with `{}`).
fn metric(text: &str, series: &str) -> Option<f64> {
    let series = if series.contains('{') {
        series.to_owned()
    } else {
        format!("{series}{{}}")
    };
    text.lines().find_map(|l| {
        l.strip_prefix(series.as_str())?
            .strip_prefix(' ')?
            .parse()
            .ok()
    })
}

#[tokio::test]
async fn the_figures_count_exactly_the_live_clients_that_applied_a_change() {
    // Arrange: four clients on the flag's first revision.
    let app = spawn_app().await;
    let token = app.create_token("app", "client").await;
    app.put_flag(bool_flag("menu", 0.0)).await;
    let before = revision(&app, &token).await;
    for id in ["a", "b", "c", "d"] {
        heartbeat(&app, &token, id, before, 0).await;
    }

    // Act: a change; two clients apply it, one reports the old revision, one stays silent.
    let r = app
        .admin(Method::PUT, "/api/v1/flags/menu/rollout")
        .json(&json!({"percentage": 30}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let after = revision(&app, &token).await;
    assert_eq!(after, before + 1);
    heartbeat(&app, &token, "a", after, 0).await;
    heartbeat(&app, &token, "b", after, 0).await;
    heartbeat(&app, &token, "c", before, 0).await;

    // Assert
    let listing = reach_of(&app, "menu").await;
    assert_eq!(listing["live_clients"], 4, "{listing:#}");
    assert_eq!(listing["revision"], after);
    let change = &listing["changes"][0];
    assert_eq!(change["revision"], after, "{listing:#}");
    assert_eq!(change["key"], "menu");
    assert_eq!(change["action"], "flag.rollout");
    assert_eq!(change["rollback"], false);
    assert_eq!(
        (
            &change["live_clients"],
            &change["confirmed"],
            &change["share"]
        ),
        (&json!(4), &json!(2), &json!(0.5))
    );
    assert_eq!(change["state"], "confirming");
    assert_eq!(
        change["samples"], 2,
        "a and b were seen on the older revision"
    );
    // The flag's creation is the older change: every client is past it.
    let creation = &listing["changes"][1];
    assert_eq!(
        (&creation["revision"], &creation["confirmed"]),
        (&json!(before), &json!(4))
    );
    assert_eq!(creation["state"], "confirmed");

    let text = metrics(&app).await;
    assert_eq!(
        metric(&text, "rollgate_reach_live_clients"),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, r#"rollgate_reach_confirmed_ratio{flag="menu"}"#),
        Some(0.5)
    );
    assert_eq!(
        metric(&text, r#"rollgate_reach_revision{flag="menu"}"#),
        Some(after as f64)
    );

    // A heartbeat of the fourth client on the new revision: three of four.
    heartbeat(&app, &token, "d", after, 0).await;
    assert_eq!(reach_of(&app, "menu").await["changes"][0]["confirmed"], 3);
}

#[tokio::test]
async fn apply_latencies_run_from_the_commit_to_receive_time_minus_applied_ms_ago() {
    let app = spawn_app().await;
    let token = app.create_token("app", "client").await;
    app.put_flag(bool_flag("menu", 0.0)).await;
    let before = revision(&app, &token).await;
    for id in ["fast", "mid", "slow"] {
        heartbeat(&app, &token, id, before, 0).await;
    }
    let r = app
        .admin(Method::PUT, "/api/v1/flags/menu/rollout")
        .json(&json!({"percentage": 50}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let after = revision(&app, &token).await;
    let at_ms = reach_of(&app, "menu").await["changes"][0]["at_ms"]
        .as_u64()
        .unwrap();

    // Each client says it applied the change `delay` ms after its commit. The server receives
    // the report `transit` ms after the test read its clock (same machine, same clock), so it
    // measures delay + transit, and transit is at most the request's round trip.
    let delays = [("fast", 100u64), ("mid", 250), ("slow", 600)];
    let until = at_ms + 600;
    if let Some(wait) = until.checked_sub(now_ms()) {
        // Waiting for the clock itself: the slowest client cannot have applied before then.
        tokio::time::sleep(Duration::from_millis(wait + 1)).await;
    }
    let mut round_trip = 0u64;
    for (id, delay) in delays {
        let started = Instant::now();
        let ago = now_ms() - (at_ms + delay);
        heartbeat(&app, &token, id, after, ago).await;
        round_trip = round_trip.max(started.elapsed().as_millis() as u64 + 1);
    }

    // Nearest rank over 3 samples: p50 is the 2nd smallest, p99 the largest; below 64
    // samples quantiles are exact, so the only slack is the transit.
    let change = &reach_of(&app, "menu").await["changes"][0];
    assert_eq!(change["samples"], 3, "{change}");
    let p50 = change["p50_ms"].as_u64().unwrap();
    let p99 = change["p99_ms"].as_u64().unwrap();
    assert!(
        (250..=250 + round_trip).contains(&p50),
        "p50 {p50}, round trip {round_trip}"
    );
    assert!(
        (600..=600 + round_trip).contains(&p99),
        "p99 {p99}, round trip {round_trip}"
    );
    assert_eq!(change["state"], "confirmed");

    let text = metrics(&app).await;
    let exported = metric(
        &text,
        r#"rollgate_reach_latency_seconds{flag="menu",quantile="0.5"}"#,
    );
    assert_eq!(exported, Some(p50 as f64 / 1000.0), "{text}");

    // A client first seen already past the change is confirmed, but adds no sample.
    heartbeat(&app, &token, "newcomer", after, 0).await;
    let change = &reach_of(&app, "menu").await["changes"][0];
    assert_eq!(
        (&change["confirmed"], &change["samples"]),
        (&json!(4), &json!(3))
    );
}

#[tokio::test]
async fn a_client_silent_for_longer_than_the_live_window_stops_counting() {
    let window = 400;
    let app = spawn_app_with(|c| c.reach.live_window_ms = window).await;
    let token = app.create_token("app", "client").await;
    app.put_flag(bool_flag("menu", 0.0)).await;
    let r = revision(&app, &token).await;
    // Taken before the request: the server hears the client after this instant.
    let quiet_last_heard = Instant::now();
    heartbeat(&app, &token, "quiet", r, 0).await;
    heartbeat(&app, &token, "chatty", r, 0).await;
    assert_eq!(reach_of(&app, "menu").await["live_clients"], 2);

    // The chatty client keeps beating; the quiet one stops counting once the window passes.
    let deadline = Instant::now() + PATIENCE;
    loop {
        heartbeat(&app, &token, "chatty", r, 0).await;
        let live = reach_of(&app, "menu").await["live_clients"]
            .as_u64()
            .unwrap();
        if live == 1 {
            break;
        }
        assert_eq!(live, 2);
        assert!(Instant::now() < deadline, "the quiet client never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The server's clock counts whole milliseconds: allow that one rounding step.
    assert!(
        quiet_last_heard.elapsed() >= Duration::from_millis(window - 1),
        "expired after {:?}, before the window",
        quiet_last_heard.elapsed()
    );
    let text = metrics(&app).await;
    assert_eq!(
        metric(&text, "rollgate_reach_live_clients"),
        Some(1.0),
        "{text}"
    );

    // Heard again, it is live again.
    heartbeat(&app, &token, "quiet", r, 0).await;
    assert_eq!(reach_of(&app, "menu").await["live_clients"], 2);
}

/// A release over `flag` guarded by a zero-tolerance data-loss policy, started, with a client
/// token; and a server whose reach timeout is `timeout_ms`, sending webhooks to `hook`.
async fn guarded_release(hook: String, flag: &str, timeout_ms: u64) -> (TestApp, String, String) {
    let app = spawn_app_with(move |c| {
        c.webhooks = fast_config(vec![hook], None);
        c.reach.timeout_ms = timeout_ms;
    })
    .await;
    let token = app.create_token("app", "client").await;
    let policy = json!({"name": "no-loss", "guard": [{"metric": "data_loss", "class": "core", "max_count": 0}],
        "stages": {"percentages": [10, 100], "min_duration": "1h", "min_exposures": 0}});
    let r = app
        .admin(Method::PUT, "/api/v1/policies/no-loss")
        .json(&policy)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    app.put_flag(bool_flag(flag, 0.0)).await;
    let id = app
        .create_release(
            json!({"name": "ordering", "policy": "no-loss", "modules": [{"flag": flag}]}),
        )
        .await;
    let r = app
        .admin_post(&format!("/api/v1/releases/{id}/start"), json!({}))
        .await;
    assert_eq!(r.status(), 200);
    (app, token, id)
}

#[tokio::test]
async fn a_guard_rollback_that_live_clients_never_apply_alerts_once_then_resolves() {
    // Arrange: two live clients on the started release's revision.
    let mut receiver = spawn_receiver(|_| Reply::Status(200)).await;
    let (app, token, id) = guarded_release(receiver.url.clone(), "payments", 300).await;
    let started = revision(&app, &token).await;
    for c in ["till-1", "till-2"] {
        heartbeat(&app, &token, c, started, 0).await;
    }

    // Act: one data-loss event rolls the module back within the request.
    let (code, _) = app
        .signals(
            &token,
            json!([{"flag": "payments", "variant": "on", "metric": "data_loss"}]),
        )
        .await;
    assert_eq!(code, 200);
    let rolled_back = revision(&app, &token).await;
    if cluster_mode() {
        // Cluster revisions also number the release rows, so the flag's is not the next one.
        assert!(rolled_back > started);
    } else {
        assert_eq!(rolled_back, started + 1);
    }
    // The clients stay live but never apply it.
    let mut events = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    let unconfirmed = loop {
        for c in ["till-1", "till-2"] {
            heartbeat(&app, &token, c, started, 0).await;
        }
        if let Ok(request) = tokio::time::timeout(Duration::from_millis(50), receiver.next()).await
        {
            let kind = request.header("x-rollgate-event").to_owned();
            events.push(kind.clone());
            if kind == "rollback_unconfirmed" {
                break request.json();
            }
        }
        assert!(
            Instant::now() < deadline,
            "no rollback_unconfirmed; got {events:?}"
        );
    };

    // Assert: the webhook, once, with the figures.
    assert_eq!(events, ["rollback", "rollback_unconfirmed"]);
    assert_eq!(unconfirmed["release"], "ordering");
    assert_eq!(unconfirmed["release_id"], id);
    assert_eq!(unconfirmed["module"], "payments");
    assert_eq!(unconfirmed["actor"], "controller");
    let n = &unconfirmed["numbers"];
    assert_eq!(n["revision"], rolled_back);
    assert_eq!(n["action"], "module.rollback");
    assert_eq!(
        (&n["live_clients"], &n["confirmed"], &n["share"]),
        (&json!(2), &json!(0), &json!(0.0))
    );
    assert_eq!(n["state"], "unconfirmed");
    assert!(
        unconfirmed["reason"]
            .as_str()
            .unwrap()
            .contains("0 of 2 live clients"),
        "{unconfirmed}"
    );

    let status = app.admin_get(&format!("/api/v1/releases/{id}")).await;
    let reach = &status["modules"][0]["reach"];
    assert_eq!(status["modules"][0]["state"], "rolled_back");
    assert_eq!(
        (&reach["state"], &reach["alerted"], &reach["revision"]),
        (&json!("unconfirmed"), &json!(true), &json!(rolled_back))
    );
    let audit = app.admin_get("/api/v1/audit?flag=payments").await;
    let entry = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "reach.unconfirmed")
        .expect("audit entry");
    assert_eq!(entry["actor"], "controller");
    assert_eq!(entry["release"], id);
    assert_eq!(
        metric(
            &metrics(&app).await,
            "rollgate_reach_unconfirmed_rollbacks_total"
        ),
        Some(1.0)
    );

    // When the clients apply it after all, the next event is the resolution (no second alert).
    for c in ["till-1", "till-2"] {
        heartbeat(&app, &token, c, rolled_back, 0).await;
    }
    let resolved = receiver.next().await;
    assert_eq!(resolved.header("x-rollgate-event"), "rollback_confirmed");
    assert_eq!(resolved.json()["numbers"]["confirmed"], 2);
    let status = app.admin_get(&format!("/api/v1/releases/{id}")).await;
    assert_eq!(status["modules"][0]["reach"]["state"], "confirmed");
}

#[tokio::test]
async fn an_operator_rollback_that_clients_apply_in_time_is_confirmed_without_an_alert() {
    let timeout_ms = 300;
    let mut receiver = spawn_receiver(|_| Reply::Status(200)).await;
    let (app, token, id) = guarded_release(receiver.url.clone(), "payments", timeout_ms).await;
    let started = revision(&app, &token).await;
    for c in ["till-1", "till-2", "till-3"] {
        heartbeat(&app, &token, c, started, 0).await;
    }

    let r = app
        .admin_post(
            &format!("/api/v1/releases/{id}/rollback"),
            json!({"reason": "drill"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let rolled_back = revision(&app, &token).await;
    for c in ["till-1", "till-2", "till-3"] {
        heartbeat(&app, &token, c, rolled_back, 5).await;
    }
    assert_eq!(receiver.next().await.header("x-rollgate-event"), "rollback");

    // Past the deadline and a few checks (every 20 ms at this timeout), nothing fires: waiting
    // out the deadline is the behaviour under test.
    let at_ms = reach_of(&app, "payments").await["changes"][0]["at_ms"]
        .as_u64()
        .unwrap();
    let quiet_until = at_ms + timeout_ms + 200;
    while now_ms() < quiet_until {
        for c in ["till-1", "till-2", "till-3"] {
            heartbeat(&app, &token, c, rolled_back, 5).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = app.admin_get(&format!("/api/v1/releases/{id}")).await;
    let reach = &status["modules"][0]["reach"];
    assert_eq!(
        (&reach["state"], &reach["alerted"]),
        (&json!("confirmed"), &json!(false)),
        "{reach}"
    );
    assert_eq!(
        (&reach["confirmed"], &reach["share"]),
        (&json!(3), &json!(1.0))
    );
    assert_eq!(reach["rollback"], true);
    assert_eq!(reach["action"], "module.rollback");
    assert!(receiver.is_idle(), "no rollback_unconfirmed");
    assert_eq!(
        metric(
            &metrics(&app).await,
            "rollgate_reach_unconfirmed_rollbacks_total"
        ),
        Some(0.0)
    );
}

#[tokio::test]
async fn a_rollback_with_no_live_clients_says_so_and_does_not_alert() {
    let timeout_ms = 200;
    let mut receiver = spawn_receiver(|_| Reply::Status(200)).await;
    let (app, token, id) = guarded_release(receiver.url.clone(), "payments", timeout_ms).await;
    let (code, _) = app
        .signals(
            &token,
            json!([{"flag": "payments", "variant": "on", "metric": "data_loss"}]),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(receiver.next().await.header("x-rollgate-event"), "rollback");
    let status = app.admin_get(&format!("/api/v1/releases/{id}")).await;
    let reach = &status["modules"][0]["reach"];
    assert_eq!(
        (&reach["state"], &reach["live_clients"], &reach["share"]),
        (&json!("no_live_clients"), &json!(0), &Value::Null)
    );
    let at_ms = reach["at_ms"].as_u64().unwrap();
    while now_ms() < at_ms + timeout_ms + 150 {
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(receiver.is_idle(), "no alert without live clients");
    assert_eq!(
        metric(
            &metrics(&app).await,
            "rollgate_reach_unconfirmed_rollbacks_total"
        ),
        Some(0.0)
    );
}

#[tokio::test]
async fn a_bad_client_report_is_refused_naming_the_field() {
    let app = spawn_app().await;
    let token = app.create_token("app", "client").await;
    let good = json!({"id": "tab-1", "revision": 3, "applied_ms_ago": 10});
    let with = |key: &str, value: Value| {
        let mut c = good.clone();
        c[key] = value;
        json!({"signals": [], "client": c})
    };
    let without = |key: &str| {
        let mut c = good.clone();
        c.as_object_mut().unwrap().remove(key);
        json!({"signals": [], "client": c})
    };
    for (body, status, field) in [
        (with("id", json!("")), 400, "client.id"),
        (with("id", json!("has space")), 400, "client.id"),
        (with("id", json!("x".repeat(65))), 400, "client.id"),
        (with("id", json!(7)), 400, "client.id"),
        (with("revision", json!(-1)), 400, "client.revision"),
        (with("revision", json!(1.5)), 400, "client.revision"),
        (
            with("applied_ms_ago", json!(86_400_001)),
            422,
            "client.applied_ms_ago",
        ),
        (
            with("applied_ms_ago", json!("soon")),
            400,
            "client.applied_ms_ago",
        ),
        (with("sdk", json!("s".repeat(65))), 400, "client.sdk"),
        (without("revision"), 400, "client"),
        (with("colour", json!(1)), 400, "client"),
        (json!({"signals": [], "client": "tab-1"}), 400, "client"),
    ] {
        let (got, answer) = post_batch(&app, &token, body.clone()).await;
        assert_eq!(got, status, "{body}: {answer}");
        let named = answer["error"]["field"].as_str().unwrap_or_default();
        assert!(named.starts_with(field), "{body}: {answer}");
    }
    // A report without signals is a heartbeat; the bounds are inclusive.
    let (status, answer) =
        post_batch(&app, &token, with("applied_ms_ago", json!(86_400_000))).await;
    assert_eq!((status, &answer["accepted"]), (200, &json!(0)), "{answer}");
    let listing = app.admin_get("/api/v1/reach").await;
    assert_eq!(
        listing["live_clients"], 1,
        "refused reports count no client"
    );
    for (query, status) in [
        ("limit=0", 422),
        ("limit=1025", 422),
        ("limit=x", 400),
        ("colour=1", 400),
        ("limit=1024", 200),
    ] {
        let r = app
            .admin(Method::GET, &format!("/api/v1/reach?{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{query}");
    }
}

#[tokio::test]
async fn a_closing_client_stops_counting_at_once() {
    let app = spawn_app().await;
    let token = app.create_token("app", "client").await;
    app.put_flag(bool_flag("menu", 0.0)).await;
    let now = revision(&app, &token).await;
    for id in ["a", "b"] {
        heartbeat(&app, &token, id, now, 0).await;
    }
    assert_eq!(reach_of(&app, "menu").await["live_clients"], 2);

    // "a" shuts down: its last batch says so, and it is no longer a live client, so a change
    // made after it left can still be confirmed by every client that is running.
    let last = json!({"id": "a", "revision": now, "applied_ms_ago": 0, "closing": true});
    let (status, body) = post_batch(&app, &token, json!({"signals": [], "client": last})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(reach_of(&app, "menu").await["live_clients"], 1);
    let (status, body) = post_batch(
        &app,
        &token,
        json!({"signals": [], "client": {"id": "b", "revision": now, "applied_ms_ago": 0, "closing": "yes"}}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["field"]
            .as_str()
            .unwrap()
            .starts_with("client"),
        "{body}"
    );
}
