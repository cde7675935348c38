//! Test harness: a real server on an ephemeral port with a throwaway data dir.

use rollgate::config::Config;
use rollgate::startup::Application;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};

/// The admin token every spawned test app accepts.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// A running server.
pub struct TestApp {
    pub address: String,
    pub admin_token: String,
    pub client: reqwest::Client,
    pub _data_dir: tempfile::TempDir,
}

/// The repository's `policies/` directory.
pub fn policies_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies")
}

/// Starts a server in-process on 127.0.0.1:0 with a fresh data dir.
pub async fn spawn_app() -> TestApp {
    let data_dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::defaults();
    config.bind = "127.0.0.1:0".into();
    config.data_dir = data_dir.path().join("data");
    config.policies_dir = policies_dir();
    config.admin_token = Some(ADMIN_TOKEN.into());
    config.workers = 2;
    let app = Application::build(config).await.expect("build app");
    let address = app.url();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        admin_token: ADMIN_TOKEN.into(),
        client: reqwest::Client::new(),
        _data_dir: data_dir,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// A request with the admin token.
    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(&self.admin_token)
    }

    /// PUT a flag, asserting success.
    pub async fn put_flag(&self, flag: Value) {
        let key = flag["key"].as_str().expect("flag key").to_owned();
        let r = self
            .admin(reqwest::Method::PUT, &format!("/api/v1/flags/{key}"))
            .json(&flag)
            .send()
            .await
            .unwrap();
        let status = r.status();
        assert!(
            status.is_success(),
            "PUT flag {key}: {status} {}",
            r.text().await.unwrap_or_default()
        );
    }

    /// Creates a token with `role`, returning its secret.
    pub async fn create_token(&self, name: &str, role: &str) -> String {
        let r = self
            .admin(reqwest::Method::POST, "/api/v1/tokens")
            .json(&json!({"name": name, "role": role}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        r.json::<Value>().await.unwrap()["token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// OFREP single evaluation with `token`.
    pub async fn evaluate(&self, token: &str, key: &str, context: Value) -> (u16, Value) {
        let r = self
            .client
            .post(self.url(&format!("/ofrep/v1/evaluate/flags/{key}")))
            .bearer_auth(token)
            .json(&json!({ "context": context }))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

/// A boolean flag with `rollout` and no rules.
pub fn bool_flag(key: &str, rollout: f64) -> Value {
    json!({
        "key": key, "type": "boolean", "variants": {"off": false, "on": true},
        "off_variant": "off", "on_variant": "on", "enabled": true, "rollout": rollout, "rules": []
    })
}

/// The compiled `rollgate` binary running as a child process.
pub struct ServerProcess {
    pub child: tokio::process::Child,
    pub address: String,
    pub _stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

/// Starts `rollgate serve` on port 0 with `data_dir`, waiting for its listening line.
pub async fn start_binary(data_dir: &std::path::Path, policies: &std::path::Path) -> ServerProcess {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_rollgate"))
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .arg("--policies-dir")
        .arg(policies)
        .env("ROLLGATE_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn rollgate");
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let address = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Some(line) = stdout.next_line().await.unwrap() {
            if let Some(url) = line.strip_prefix("rollgate listening on ") {
                return url.to_owned();
            }
        }
        panic!("rollgate exited before listening");
    })
    .await
    .expect("server did not start in 30 s");
    ServerProcess {
        child,
        address,
        _stdout: stdout,
    }
}
