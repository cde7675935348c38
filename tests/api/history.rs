//! The guard history (issue 13): every release module's guard readings over time, kept by the
//! server (a point at every change of state, stage or decision, and periodically while live),
//! served at `GET /api/v1/releases/{id}/history`, fed live at `GET /api/v1/history/stream`,
//! and still there after a rollback and a restart.

use crate::helpers::{
    bool_flag, policies_dir, spawn_app_with_history, start_binary, ServerProcess, SseReader,
    ADMIN_TOKEN,
};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

async fn guarded_release(app_url: &str, client: &reqwest::Client) -> String {
    let admin = |m: Method, path: &str| {
        client
            .request(m, format!("{app_url}{path}"))
            .bearer_auth(ADMIN_TOKEN)
    };
    let policy = json!({
        "name": "hist", "cooldown": "200ms",
        "guard": [
            {"metric": "payment_error", "class": "core", "max_relative_increase": 0.0, "detect": 1.0},
            {"metric": "data_loss", "class": "core", "max_count": 0}
        ],
        "stages": {"percentages": [5, 100], "min_duration": "1h", "min_exposures": 2000}
    });
    let r = admin(Method::PUT, "/api/v1/policies/hist")
        .json(&policy)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let r = admin(Method::PUT, "/api/v1/flags/pay")
        .json(&bool_flag("pay", 0.0))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let r = admin(Method::POST, "/api/v1/releases")
        .json(&json!({"name": "pay-v2", "policy": "hist", "modules": [{"flag": "pay"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = admin(Method::POST, &format!("/api/v1/releases/{id}/start"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    id
}

async fn history(client: &reqwest::Client, url: &str, id: &str, token: &str) -> (u16, Value) {
    let r = client
        .get(format!("{url}/api/v1/releases/{id}/history"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn points(doc: &Value) -> Vec<Value> {
    doc["modules"][0]["points"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Polls the history until `done` holds (15 s at most).
async fn wait_history(
    client: &reqwest::Client,
    url: &str,
    id: &str,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (status, doc) = history(client, url, id, ADMIN_TOKEN).await;
        assert_eq!(status, 200, "{doc}");
        let p = points(&doc);
        if done(&p) {
            return p;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {doc:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_rolled_back_release_keeps_its_guard_history_across_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let server = start_binary(data.path(), &policies_dir()).await;
    let url = server.address.clone();
    let id = guarded_release(&url, &client).await;
    let started = wait_history(&client, &url, &id, "the start", |p| {
        p.iter().any(|p| p["state"] == "ramping")
    })
    .await;
    let ramping = started.iter().find(|p| p["state"] == "ramping").unwrap();
    assert_eq!(ramping["mark"], true, "the change to ramping is marked");
    assert_eq!(ramping["decision"]["action"], "start");
    assert_eq!(ramping["guards"].as_array().unwrap().len(), 2);

    let token = {
        let r = client
            .post(format!("{url}/api/v1/tokens"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"name": "app", "role": "client"}))
            .send()
            .await
            .unwrap();
        r.json::<Value>().await.unwrap()["token"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let r = client
        .post(format!("{url}/api/v1/signals"))
        .bearer_auth(&token)
        .json(&json!({"signals": [{"flag": "pay", "variant": "on", "metric": "data_loss"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let before = wait_history(&client, &url, &id, "the rollback", |p| {
        p.iter().any(|p| p["state"] == "rolled_back")
    })
    .await;
    let last = before.last().unwrap();
    assert_eq!(last["mark"], true);
    assert_eq!(last["decision"]["action"], "rollback");
    assert_eq!(last["percentage"], 0.0);

    stop(server).await;
    let server = start_binary(data.path(), &policies_dir()).await;
    let url = server.address.clone();
    let (status, doc) = history(&client, &url, &id, ADMIN_TOKEN).await;
    assert_eq!(status, 200);
    assert_eq!(points(&doc), before, "the history survived the restart");
    // The restarted sampler adds nothing for a release that no longer changes.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (_, doc) = history(&client, &url, &id, ADMIN_TOKEN).await;
    assert_eq!(points(&doc).len(), before.len());
    stop(server).await;
}

#[tokio::test]
async fn new_points_arrive_on_the_history_stream_and_readers_only_may_read() {
    let (app, _history) = spawn_app_with_history(|c| {
        c.history.tick = Duration::from_millis(50);
        c.history.period = Duration::from_millis(100);
    })
    .await;
    let mut stream = SseReader::open(&app, "/api/v1/history/stream", ADMIN_TOKEN, None).await;
    let id = guarded_release(&app.address, &app.client).await;
    let event = stream.next_event().await;
    assert_eq!(event.event, "point");
    let p = event.json();
    assert_eq!(p["release"], id.as_str());
    assert_eq!(p["module"], 0);
    assert_eq!(p["flag"], "pay");
    assert_eq!(p["point"]["decision"]["action"], "start");

    // Readings that move make a new point within the period.
    let token = app.create_token("app", "client").await;
    let (code, _) = app
        .signals(
            &token,
            json!([{"flag": "pay", "variant": "on", "metric": "exposure", "count": 100},
                   {"flag": "pay", "variant": "off", "metric": "exposure", "count": 1900},
                   {"flag": "pay", "variant": "off", "metric": "payment_error", "count": 19}]),
        )
        .await;
    assert_eq!(code, 200);
    let moved = stream.next_event().await.json();
    assert_eq!(moved["point"]["mark"], false);
    assert!(moved["point"]["at_ms"].as_u64() > p["point"]["at_ms"].as_u64());

    let viewer = app.create_token("screen", "viewer").await;
    let (status, doc) = history(&app.client, &app.address, &id, &viewer).await;
    assert_eq!(status, 200);
    assert!(points(&doc).len() >= 2, "{doc}");
    let (status, doc) = history(&app.client, &app.address, &id, &token).await;
    assert_eq!(status, 403, "a client token: {doc}");
    let r = app
        .client
        .get(app.url("/api/v1/history/stream"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn history_queries_are_checked_and_thinned() {
    let (app, _history) = spawn_app_with_history(|_| {}).await;
    let id = guarded_release(&app.address, &app.client).await;
    let get = |q: &str| {
        app.admin(Method::GET, &format!("/api/v1/releases/{id}/history{q}"))
            .send()
    };
    assert_eq!(get("?module=1").await.unwrap().status(), 404);
    assert_eq!(get("?max_points=0").await.unwrap().status(), 400);
    assert_eq!(get("?bogus=1").await.unwrap().status(), 400);
    let r = app
        .admin(Method::GET, "/api/v1/releases/nope/history")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let by_name = app
        .admin_get("/api/v1/releases/pay-v2/history?module=0&max_points=5")
        .await;
    assert_eq!(by_name["release"], id.as_str());
    assert_eq!(by_name["modules"].as_array().unwrap().len(), 1);
    let future = app
        .admin_get(&format!(
            "/api/v1/releases/{id}/history?since=99999999999999"
        ))
        .await;
    assert_eq!(future["modules"][0]["points"], json!([]));
}

/// SIGTERM, then wait for the process to exit (the store is flushed on the way out).
async fn stop(mut server: ServerProcess) {
    let pid = server.child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(10), server.child.wait())
        .await
        .expect("stopped within 10 s")
        .unwrap();
    assert!(exit.success(), "{exit}");
}

#[tokio::test]
async fn compaction_keeps_the_last_hour_whole_and_thins_what_is_older() {
    let (app, history) = spawn_app_with_history(|_| {}).await;
    let id = guarded_release(&app.address, &app.client).await;
    let series = rollgate::store::HistoryKey {
        release: id.parse().unwrap(),
        module: 0,
    };
    let now = rollgate::clock::now_ms();
    // Every 5 s for the last 3 hours, a marked point 2.5 hours ago, one point 40 days ago.
    let seeded = {
        let history = history.clone();
        tokio::task::spawn_blocking(move || {
            let point = |at_ms: u64, mark: bool| {
                json!({"at_ms": at_ms, "state": "ramping", "mark": mark, "guards": []})
            };
            let mut n = 0;
            for at in (0..3 * 720u64).map(|i| now - 3 * 3_600_000 + i * 5_000) {
                history.record(series, "pay", &point(at, false), false).unwrap();
                n += 1;
            }
            history
                .record(series, "pay", &point(now - 9_000_000 + 1, true), true)
                .unwrap();
            let old = now - 40 * 24 * 3_600_000;
            history.record(series, "pay", &point(old, false), false).unwrap();
            n + 2
        })
        .await
        .unwrap()
    };
    let all = |doc: &Value| {
        points(doc)
            .iter()
            .map(|p| p["at_ms"].as_u64().unwrap())
            .collect::<Vec<_>>()
    };
    let path = format!("/api/v1/releases/{id}/history?max_points=20000");
    let before = all(&app.admin_get(&path).await);
    assert!(before.len() >= seeded, "{} points", before.len());

    let dropped = tokio::task::spawn_blocking(move || history.compact(now).unwrap())
        .await
        .unwrap();
    let after = all(&app.admin_get(&path).await);
    assert_eq!(before.len() - after.len(), dropped);
    let hour = |at: u64| now.saturating_sub(at) <= 3_600_000;
    assert_eq!(
        after.iter().filter(|a| hour(**a)).count(),
        before.iter().filter(|a| hour(**a)).count(),
        "the last hour is kept whole"
    );
    assert!(
        !after.contains(&(now - 40 * 24 * 3_600_000)),
        "older than 30 days: dropped"
    );
    assert!(
        after.contains(&(now - 9_000_000 + 1)),
        "the marked point stays"
    );
    let older = after.iter().filter(|a| !hour(**a)).count();
    // Two hours at one point a minute, plus the mark.
    assert!(
        (120..=123).contains(&older),
        "{older} points older than an hour"
    );
}
