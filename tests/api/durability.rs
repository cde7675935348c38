//! Acknowledged changes survive `kill -9`; secrets never reach the disk.

use crate::helpers::{bool_flag, policies_dir, start_binary, ADMIN_TOKEN};
use serde_json::{json, Value};
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test]
async fn acknowledged_changes_survive_sigkill_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let client = reqwest::Client::new();
    let mut server = start_binary(&data, &policies_dir()).await;
    let url = |s: &str| format!("{}{}", server.address, s);
    let r = client
        .put(url("/api/v1/flags/points"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&bool_flag("points", 0.0))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = client
        .put(url("/api/v1/flags/points/rollout"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"percentage": 12.345}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .post(url("/api/v1/flags/points/kill"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    server.child.kill().await.unwrap(); // SIGKILL, right after the acknowledgement
    let server = start_binary(&data, &policies_dir()).await;
    let url = |s: &str| format!("{}{}", server.address, s);

    let flag: Value = client
        .get(url("/api/v1/flags/points"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(flag["rollout"], 12.345);
    assert_eq!(flag["enabled"], false);
    let audit: Value = client
        .get(url("/api/v1/audit?flag=points"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(audit["entries"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn a_generated_admin_token_is_printed_once_and_only_its_hash_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let start = || {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_rollgate"))
            .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .arg("--policies-dir")
            .arg(policies_dir())
            .env_remove("ROLLGATE_ADMIN_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    };
    let read_until_listening = |child: &mut tokio::process::Child| {
        let stdout = child.stdout.take().unwrap();
        async move {
            let mut lines = BufReader::new(stdout).lines();
            let mut seen = Vec::new();
            while let Some(line) = lines.next_line().await.unwrap() {
                let done = line.starts_with("rollgate listening on ");
                seen.push(line);
                if done {
                    break;
                }
            }
            seen
        }
    };

    let mut first = start();
    let lines = read_until_listening(&mut first).await;
    let token = lines
        .iter()
        .find_map(|l| l.split("stored only as a hash): ").nth(1))
        .expect("token printed")
        .to_owned();
    let address = lines
        .last()
        .unwrap()
        .trim_start_matches("rollgate listening on ")
        .to_owned();
    let r = reqwest::Client::new()
        .get(format!("{address}/api/v1/flags"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the printed token is an admin token");
    first.kill().await.unwrap();

    let mut second = start();
    let lines = read_until_listening(&mut second).await;
    assert!(
        !lines.iter().any(|l| l.contains(&token)),
        "printed only on first start"
    );
    second.kill().await.unwrap();

    for entry in walk(&data) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
            "secret found in {}",
            entry.display()
        );
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

async fn admin_json(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> Value {
    let mut req = client.request(method, url).bearer_auth(ADMIN_TOKEN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    r.json().await.unwrap_or(Value::Null)
}

#[tokio::test]
async fn a_release_continues_from_its_persisted_stage_after_sigkill_with_the_bake_timer_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let client = reqwest::Client::new();
    let mut server = start_binary(&data, &policies_dir()).await;
    let base = server.address.clone();
    for flag in ["qr-ordering", "points"] {
        admin_json(
            &client,
            reqwest::Method::PUT,
            format!("{base}/api/v1/flags/{flag}"),
            Some(bool_flag(flag, 0.0)),
        )
        .await;
    }
    let plan = json!({"name": "durable", "modules": [{"flag": "qr-ordering", "stages": {"percentages": [5, 100], "min_duration": "1500ms"}},
                                                    {"flag": "points", "stages": {"percentages": [10, 100], "min_duration": "1h"}}]});
    let created = admin_json(
        &client,
        reqwest::Method::POST,
        format!("{base}/api/v1/releases"),
        Some(plan),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let started = admin_json(
        &client,
        reqwest::Method::POST,
        format!("{base}/api/v1/releases/{id}/start"),
        Some(json!({})),
    )
    .await;
    let stage_started = started["modules"][0]["stage_started_ms"].as_u64().unwrap();
    assert_eq!(started["modules"][0]["percentage"], 5.0);

    server.child.kill().await.unwrap(); // SIGKILL mid-stage
    let server = start_binary(&data, &policies_dir()).await;
    let base = server.address.clone();

    let after = admin_json(
        &client,
        reqwest::Method::GET,
        format!("{base}/api/v1/releases/{id}"),
        None,
    )
    .await;
    assert_eq!(after["modules"][0]["state"], "ramping");
    assert_eq!(after["modules"][0]["stage"], 0, "not skipped");
    assert_eq!(
        after["modules"][0]["stage_started_ms"].as_u64().unwrap(),
        stage_started,
        "bake timer not restarted"
    );
    // The stage completes 1.5 s after its original start, not 1.5 s after the restart.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let advanced_at = loop {
        let s = admin_json(
            &client,
            reqwest::Method::GET,
            format!("{base}/api/v1/releases/{id}"),
            None,
        )
        .await;
        if s["modules"][0]["stage"] == 1 {
            break s["modules"][0]["stage_started_ms"].as_u64().unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never advanced: {s:#}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(
        advanced_at >= stage_started + 1500,
        "advanced only after the bake time"
    );
    assert!(
        advanced_at < stage_started + 1500 + 2500,
        "counted from the persisted start, not the restart"
    );
}

#[tokio::test]
async fn a_rolled_back_module_stays_rolled_back_after_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let client = reqwest::Client::new();
    let mut server = start_binary(&data, &policies_dir()).await;
    let base = server.address.clone();
    admin_json(
        &client,
        reqwest::Method::PUT,
        format!("{base}/api/v1/flags/points"),
        Some(bool_flag("points", 0.0)),
    )
    .await;
    let plan = json!({"name": "down", "policy": "checkout", "modules": [{"flag": "points", "stages": {"min_duration": "0s", "min_exposures": 0}}]});
    let id = admin_json(
        &client,
        reqwest::Method::POST,
        format!("{base}/api/v1/releases"),
        Some(plan),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    admin_json(
        &client,
        reqwest::Method::POST,
        format!("{base}/api/v1/releases/{id}/start"),
        Some(json!({})),
    )
    .await;
    let loss = json!({"signals": [{"flag": "points", "variant": "on", "metric": "data_loss"}]});
    let r = client
        .post(format!("{base}/api/v1/signals"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&loss)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    server.child.kill().await.unwrap();
    let server = start_binary(&data, &policies_dir()).await;
    let base = server.address.clone();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await; // ten controller ticks

    let status = admin_json(
        &client,
        reqwest::Method::GET,
        format!("{base}/api/v1/releases/{id}"),
        None,
    )
    .await;
    assert_eq!(status["modules"][0]["state"], "rolled_back");
    assert_eq!(status["state"], "rolled_back");
    let flag = admin_json(
        &client,
        reqwest::Method::GET,
        format!("{base}/api/v1/flags/points"),
        None,
    )
    .await;
    assert_eq!(flag["rollout"], 0.0);
}

#[tokio::test]
async fn sigterm_stops_promptly_even_with_open_streams() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start_binary(&dir.path().join("data"), &policies_dir()).await;
    let client = reqwest::Client::new();
    let stream = client
        .get(format!("{}/api/v1/stream", server.address))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let pid = server.child.id().unwrap() as i32;

    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(std::time::Duration::from_secs(5), server.child.wait()).await;

    assert!(exit
        .expect("stopped within 5 s, streams included")
        .unwrap()
        .success());
}

/// Revisions (docs/clients.md) are stored with the changes: after `kill -9` the next change
/// continues the count, the config and OFREP answers name the revision, and a client that was
/// up to date resumes with nothing to replay while one that was behind gets a fresh config.
#[tokio::test]
async fn revisions_survive_sigkill_and_keep_growing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let client = reqwest::Client::new();
    let put = |server: &crate::helpers::ServerProcess, pct: f64| {
        client
            .put(format!("{}/api/v1/flags/qr/rollout", server.address))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({ "percentage": pct }))
            .send()
    };
    let config = |server: &crate::helpers::ServerProcess| {
        client
            .get(format!("{}/api/v1/client/config", server.address))
            .bearer_auth(ADMIN_TOKEN)
            .send()
    };
    let mut server = start_binary(&data, &policies_dir()).await;
    let r = client
        .put(format!("{}/api/v1/flags/qr", server.address))
        .bearer_auth(ADMIN_TOKEN)
        .json(&bool_flag("qr", 0.0))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(put(&server, 5.0).await.unwrap().status(), 200);
    let before: Value = config(&server).await.unwrap().json().await.unwrap();
    assert_eq!(before["revision"], 2);

    server.child.kill().await.unwrap();
    let server = start_binary(&data, &policies_dir()).await;
    let after: Value = config(&server).await.unwrap().json().await.unwrap();
    assert_eq!(after["revision"], 2, "the revision is durable");
    let stream = |last: &str| {
        client
            .get(format!("{}/api/v1/stream", server.address))
            .bearer_auth(ADMIN_TOKEN)
            .header("Last-Event-ID", last)
            .send()
    };
    let mut up_to_date = stream("2").await.unwrap();
    let mut behind = stream("1").await.unwrap();

    assert_eq!(put(&server, 25.0).await.unwrap().status(), 200);
    let ofrep: Value = client
        .post(format!("{}/ofrep/v1/evaluate/flags/qr", server.address))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"context": {"targetingKey": "u1"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ofrep["metadata"]["revision"], 3);

    // Up to date: the next thing is the new change, revision 3.
    let first = next_event(&mut up_to_date).await;
    assert!(first.contains("id: 3\nevent: change\n"), "{first}");
    // Behind (revision 1 is gone with the old run's memory): a fresh config first.
    let first = next_event(&mut behind).await;
    assert!(first.contains("event: config\n"), "{first}");
}

/// The next SSE event (heartbeats and the retry hint skipped), within 5 s.
async fn next_event(response: &mut reqwest::Response) -> String {
    let mut buffer = String::new();
    tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                if block.contains("event: ") {
                    return block;
                }
            }
            let chunk = response.chunk().await.unwrap().expect("stream ended");
            buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    })
    .await
    .expect("no event within 5 s")
}
