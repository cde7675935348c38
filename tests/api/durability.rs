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
