//! Rollback drills over real HTTP (`POST/GET /api/v1/drills`): a real kill and revive of the
//! drill flag, measured on real SSE streams, with clients played the way real ones speak
//! (heartbeats carrying the applied revision, docs/clients.md), results kept across a restart
//! of the binary, and a failed drill alerted by webhook to a real local receiver.

use crate::helpers::{
    bool_flag, policies_dir, spawn_app, spawn_app_with, start_binary, SseReader, TestApp,
    ADMIN_TOKEN,
};
use crate::webhooks::{fast_config, spawn_receiver, Reply};
use reqwest::Method;
use serde_json::{json, Value};

async fn drill(app: &TestApp, body: Value) -> (u16, Value) {
    let r = app.admin_post("/api/v1/drills", body).await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn check<'a>(result: &'a Value, name: &str) -> &'a Value {
    result["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {result}"))
}

/// A client: heartbeat with `revision` applied.
async fn heartbeat(app: &TestApp, token: &str, id: &str, revision: u64) {
    let client = json!({"id": id, "revision": revision, "applied_ms_ago": 0, "sdk": "test/1"});
    let r = app
        .client
        .post(app.url("/api/v1/signals"))
        .bearer_auth(token)
        .json(&json!({"signals": [], "client": client}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// An SDK-like client: applies the config it streams and reports each revision it applied.
async fn play_client(
    app: TestAppRef,
    token: String,
    id: &'static str,
) -> tokio::task::JoinHandle<()> {
    let mut stream = SseReader::open(&app.0, "/api/v1/stream", &token, None).await;
    let config = stream.next_event().await;
    assert_eq!(config.event, "config");
    let first: u64 = config.id.unwrap().parse().unwrap();
    heartbeat(&app.0, &token, id, first).await;
    tokio::spawn(async move {
        loop {
            let event = stream.next_event().await;
            if event.event == "change" {
                let revision = event.id.unwrap().parse().unwrap();
                heartbeat(&app.0, &token, id, revision).await;
            }
        }
    })
}

#[derive(Clone)]
struct TestAppRef(std::sync::Arc<TestApp>);

#[tokio::test]
async fn a_drill_reaches_three_connected_streams_and_passes() {
    let app = spawn_app().await;
    let mut streams = Vec::new();
    for _ in 0..3 {
        let mut s = SseReader::open(&app, "/api/v1/stream", ADMIN_TOKEN, None).await;
        assert_eq!(s.next_event().await.event, "config");
        streams.push(s);
    }
    let (status, result) = drill(&app, json!({"wait_ms": 3000})).await;
    assert_eq!(status, 201, "{result}");
    assert_eq!(result["passed"], true, "{result}");
    assert_eq!(result["flag"], "rollgate-drill");
    assert_eq!(result["created_flag"], true);
    let steps = result["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(
        (steps[0]["action"].as_str(), steps[1]["action"].as_str()),
        (Some("kill"), Some("revive"))
    );
    assert!(steps[1]["revision"].as_u64() > steps[0]["revision"].as_u64());
    for step in steps {
        let s = &step["stream"];
        assert_eq!(
            (s["subscribers"].as_u64(), s["reached"].as_u64()),
            (Some(3), Some(3)),
            "{step}"
        );
        let (p50, p99, max) = (
            s["p50_ms"].as_f64().unwrap(),
            s["p99_ms"].as_f64().unwrap(),
            s["max_ms"].as_f64().unwrap(),
        );
        assert!(
            0.0 <= p50 && p50 <= p99 && p99 <= max && max < 1000.0,
            "{s}"
        );
        assert!(step["commit_ms"].as_f64().unwrap() > 0.0);
    }
    for name in ["streams", "reach", "audit", "webhooks", "durable"] {
        assert_eq!(check(&result, name)["passed"], true, "{name}: {result}");
    }
    // The streams really carried both changes, with the steps' revisions as ids.
    for s in &mut streams {
        let mut ids = Vec::new();
        while ids.len() < 3 {
            let e = s.next_event().await;
            if e.event == "change" {
                ids.push(e.id.unwrap().parse::<u64>().unwrap());
            }
        }
        assert_eq!(
            &ids[1..],
            [
                steps[0]["revision"].as_u64().unwrap(),
                steps[1]["revision"].as_u64().unwrap()
            ]
        );
    }
    // Audited with the drill id; the flag is live again.
    let audit = app.admin_get("/api/v1/audit?flag=rollgate-drill").await;
    let reason = format!("drill {}", result["id"].as_str().unwrap());
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["reason"] == reason.as_str())
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["drill.revive", "drill.kill"]);
    assert_eq!(
        app.admin_get("/api/v1/flags/rollgate-drill").await["enabled"],
        true
    );
}

#[tokio::test]
async fn two_reporting_clients_confirm_the_kill() {
    let app = TestAppRef(std::sync::Arc::new(spawn_app().await));
    let token = app.0.create_token("sdk", "client").await;
    let a = play_client(app.clone(), token.clone(), "client-a").await;
    let b = play_client(app.clone(), token.clone(), "client-b").await;
    let (status, result) = drill(&app.0, json!({"flag": "drill.reach", "wait_ms": 5000})).await;
    a.abort();
    b.abort();
    assert_eq!(status, 201, "{result}");
    let reach = &result["reach"];
    assert_eq!(reach["live_clients"], 2, "{result}");
    assert_eq!(reach["confirmed"], 2, "{result}");
    assert_eq!(reach["share"], 1.0, "{result}");
    assert!(
        reach["p50_ms"].as_u64().is_some() && reach["p99_ms"].as_u64().is_some(),
        "{reach}"
    );
    assert!(reach["p99_ms"].as_u64().unwrap() < 5000, "{reach}");
    assert_eq!(result["steps"][0]["stream"]["reached"], 2, "{result}");
    assert_eq!(result["passed"], true, "{result}");
}

#[tokio::test]
async fn a_drill_below_the_reach_target_fails_and_alerts() {
    let mut receiver = spawn_receiver(|_| Reply::Status(200)).await;
    // A PagerDuty target beside it: drills do not page, and the drill does not wait for it.
    let mut pagerduty = spawn_receiver(|_| Reply::Status(202)).await;
    let (url, pd_url) = (receiver.url.clone(), pagerduty.url.clone());
    let app = spawn_app_with(move |c| {
        c.webhooks = fast_config(vec![url], None);
        c.webhooks.targets = vec![rollgate::webhooks::TargetConfig {
            kind: rollgate::webhooks::TargetKind::Pagerduty,
            url: Some(pd_url),
            routing_key: Some("drill-key".into()),
            ..Default::default()
        }];
    })
    .await;
    let token = app.create_token("sdk", "client").await;
    // A live client that never applies anything after its first report.
    heartbeat(&app, &token, "stuck", 0).await;
    let (status, result) = drill(&app, json!({"wait_ms": 300})).await;
    assert_eq!(status, 201, "{result}");
    assert_eq!(result["passed"], false, "{result}");
    assert_eq!(check(&result, "reach")["passed"], false);
    let hooks = check(&result, "webhooks");
    assert_eq!(hooks["passed"], true, "{result}");
    assert!(
        hooks["reason"].as_str().unwrap().contains("1 of 1"),
        "{result}"
    );
    assert_eq!(result["reach"]["live_clients"], 1);
    assert_eq!(result["reach"]["confirmed"], 0);
    // The drill's own event, then the alert.
    let first = receiver.next().await;
    assert_eq!(first.header("x-rollgate-event"), "drill");
    let alert = receiver.next().await;
    assert_eq!(alert.header("x-rollgate-event"), "drill_failed");
    let body = alert.json();
    assert_eq!(body["kind"], "drill_failed");
    assert_eq!(body["numbers"]["id"], result["id"]);
    assert!(body["reason"].as_str().unwrap().contains("reach"), "{body}");
    assert!(pagerduty.is_idle(), "a drill pages nobody");
}

#[tokio::test]
async fn results_are_listed_newest_first_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let client = reqwest::Client::new();
    let mut server = start_binary(&data, &policies_dir()).await;
    let post = |address: String| {
        let client = client.clone();
        async move {
            let r = client
                .post(format!("{address}/api/v1/drills"))
                .bearer_auth(ADMIN_TOKEN)
                .json(&json!({"wait_ms": 0}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
            r.json::<Value>().await.unwrap()
        }
    };
    let get = |address: String, path: &'static str| {
        let client = client.clone();
        async move {
            let r = client
                .get(format!("{address}{path}"))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let first = post(server.address.clone()).await;
    let second = post(server.address.clone()).await;
    assert_eq!(second["created_flag"], false);
    let (_, list) = get(server.address.clone(), "/api/v1/drills").await;
    let ids: Vec<&Value> = list["drills"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| &d["id"])
        .collect();
    assert_eq!(ids, [&second["id"], &first["id"]]);
    let (_, one) = get(server.address.clone(), "/api/v1/drills?limit=1").await;
    assert_eq!(one["drills"].as_array().unwrap().len(), 1);

    server.child.kill().await.unwrap();
    let server = start_binary(&data, &policies_dir()).await;
    let (status, after) = get(server.address.clone(), "/api/v1/drills").await;
    assert_eq!(status, 200);
    assert_eq!(after, list);
    let r = client
        .get(format!(
            "{}/api/v1/drills/{}",
            server.address,
            first["id"].as_str().unwrap()
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), first);
    let (status, _) = get(
        server.address.clone(),
        "/api/v1/drills/0190a5a5-0000-7000-8000-000000000000",
    )
    .await;
    assert_eq!(status, 404);
    let (status, limit) = get(server.address.clone(), "/api/v1/drills?limit=0").await;
    assert_eq!((status, &limit["error"]["field"]), (422, &json!("limit")));
}

#[tokio::test]
async fn a_drill_never_touches_a_real_rollout() {
    let app = spawn_app().await;
    app.put_flag(bool_flag("qr-ordering", 0.0)).await;
    app.put_flag(bool_flag("points", 0.0)).await;
    let plan = json!({
        "name": "membership-v2",
        "modules": [{"flag": "qr-ordering"}, {"flag": "points"}],
        "stages": {"percentages": [1, 100], "min_duration": "1h", "min_exposures": 0}
    });
    let id = app.create_release(plan).await;
    let started = app
        .admin_post(&format!("/api/v1/releases/{id}/start"), json!({}))
        .await;
    assert_eq!(started.status(), 200);
    let (status, body) = drill(&app, json!({"flag": "qr-ordering"})).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("live release"),
        "{body}"
    );

    let mut guarded = bool_flag("guarded", 50.0);
    guarded["policy"] = json!("checkout");
    app.put_flag(guarded).await;
    let (status, body) = drill(&app, json!({"flag": "guarded"})).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("policy"),
        "{body}"
    );
    // Nothing was killed.
    assert_eq!(
        app.admin_get("/api/v1/flags/qr-ordering").await["enabled"],
        true
    );
    assert_eq!(
        app.admin_get("/api/v1/flags/guarded").await["enabled"],
        true
    );
    let list = app.admin_get("/api/v1/drills").await;
    assert_eq!(list["drills"], json!([]));
}

#[tokio::test]
async fn bad_bodies_name_the_field() {
    let app = spawn_app().await;
    for (body, status, field) in [
        (json!({"flag": "Bad Key"}), 422, "flag"),
        (json!({"wait_ms": 60001}), 422, "wait_ms"),
        (json!({"wait_ms": "soon"}), 400, "wait_ms"),
        (json!({"flag": 3}), 400, "flag"),
        (json!({"nope": 1}), 400, "nope"),
    ] {
        let (got, answer) = drill(&app, body.clone()).await;
        assert_eq!(got, status, "{body}: {answer}");
        assert_eq!(answer["error"]["field"], field, "{body}: {answer}");
    }
    // An integral float is an integer (JSON Schema's `integer`), as everywhere in the API.
    let (got, answer) = drill(&app, json!({"wait_ms": 0.0})).await;
    assert_eq!(got, 201, "{answer}");
    // The body's fields as an array are not an object.
    let (got, answer) = drill(&app, json!([null, null])).await;
    assert_eq!(got, 400, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .ends_with("expected a JSON object"),
        "{answer}"
    );
    let r = app
        .admin(Method::POST, "/api/v1/drills")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn only_admin_tokens_run_and_read_drills() {
    let app = spawn_app().await;
    let client = app.create_token("sdk", "client").await;
    for (method, path) in [
        (Method::POST, "/api/v1/drills"),
        (Method::GET, "/api/v1/drills"),
    ] {
        let none = app
            .client
            .request(method.clone(), app.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(none.status(), 401);
        for token in [&client] {
            let r = app
                .client
                .request(method.clone(), app.url(path))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 403, "{method} {path}");
        }
    }
    assert_eq!(app.admin_get("/api/v1/drills").await["drills"], json!([]));
}

/// `rollgate drill …` as the real binary against `app`; waits at most 20 s.
async fn cli(app: &TestApp, args: &[&str]) -> std::process::Output {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_rollgate"))
        .arg("drill")
        .args(args)
        .env("ROLLGATE_URL", &app.address)
        .env("ROLLGATE_TOKEN", &app.admin_token)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(std::time::Duration::from_secs(20), output)
        .await
        .expect("rollgate drill in time")
        .expect("run rollgate")
}

#[tokio::test]
async fn the_cli_prints_the_drill_and_exits_by_its_verdict() {
    let app = spawn_app().await;
    let passed = cli(&app, &["--flag", "drill.cli", "--wait", "1s"]).await;
    let out = String::from_utf8_lossy(&passed.stdout).into_owned();
    assert_eq!(passed.status.code(), Some(0), "{out}");
    assert!(out.contains("of drill.cli: PASSED"), "{out}");
    for word in [
        "kill", "revive", "streams", "durable", "audit", "webhooks", "reach:",
    ] {
        assert!(out.contains(word), "{word}: {out}");
    }
    let json = cli(&app, &["--flag", "drill.cli", "--wait", "0s", "--json"]).await;
    assert_eq!(json.status.code(), Some(0));
    let result: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(result["flag"], "drill.cli");
    assert_eq!(result["passed"], true);

    // A live client that never applies the kill: the drill fails, exit code 1.
    let token = app.create_token("sdk", "client").await;
    heartbeat(&app, &token, "stuck", 0).await;
    let failed = cli(&app, &["--flag", "drill.cli", "--wait", "200ms"]).await;
    let out = String::from_utf8_lossy(&failed.stdout).into_owned();
    let err = String::from_utf8_lossy(&failed.stderr).into_owned();
    assert_eq!(failed.status.code(), Some(1), "{out}{err}");
    assert!(out.contains("FAILED") && out.contains("FAIL"), "{out}");
    assert!(err.contains("failed"), "{err}");
    let list = app.admin_get("/api/v1/drills").await;
    assert_eq!(list["drills"].as_array().unwrap().len(), 3);
    assert_eq!(list["drills"][0]["passed"], false);
}
