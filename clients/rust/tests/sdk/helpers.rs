//! Test harness: the real rollgate server (in-process on port 0 with a throwaway data dir, or
//! the real binary for restarts), its admin API, and an SDK client connected to it.

use rollgate::config::Config;
use rollgate::startup::Application;
use rollgate_client::{Client, ClientBuilder, Context};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};

pub const ADMIN_TOKEN: &str = "sdk-test-admin-token-0123456789";

/// A running server and a way to drive it.
pub struct Server {
    pub address: String,
    pub http: reqwest::Client,
    pub _data_dir: Option<tempfile::TempDir>,
}

/// The repository's `policies/` directory.
pub fn policies_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../policies")
}

/// Starts a server in-process on 127.0.0.1:0 with a fresh data dir.
pub async fn spawn_server() -> Server {
    spawn_server_with(|_| {}).await
}

/// Starts a server with `tweak` applied to the test configuration.
pub async fn spawn_server_with(tweak: impl FnOnce(&mut Config)) -> Server {
    let data_dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::defaults();
    config.bind = "127.0.0.1:0".into();
    config.data_dir = data_dir.path().join("data");
    config.policies_dir = policies_dir();
    config.admin_token = Some(ADMIN_TOKEN.into());
    config.workers = 2;
    tweak(&mut config);
    let app = Application::build(config).await.expect("build app");
    let address = app.url();
    tokio::spawn(app.run_until_stopped());
    Server {
        address,
        http: reqwest::Client::new(),
        _data_dir: Some(data_dir),
    }
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .bearer_auth(ADMIN_TOKEN)
    }

    /// PUT a flag, asserting success.
    pub async fn put_flag(&self, flag: Value) {
        let key = flag["key"].as_str().expect("flag key").to_owned();
        self.put(&format!("/api/v1/flags/{key}"), flag).await;
    }

    /// PUT a segment, asserting success.
    pub async fn put_segment(&self, segment: Value) {
        let key = segment["key"].as_str().expect("segment key").to_owned();
        self.put(&format!("/api/v1/segments/{key}"), segment).await;
    }

    async fn put(&self, path: &str, body: Value) {
        let r = self
            .admin(reqwest::Method::PUT, path)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        assert!(
            status.is_success(),
            "PUT {path}: {status} {}",
            r.text().await.unwrap_or_default()
        );
    }

    /// POST with the admin token, returning status and JSON body.
    pub async fn admin_post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .admin(reqwest::Method::POST, path)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// GET with the admin token, asserting success.
    pub async fn admin_get(&self, path: &str) -> Value {
        let r = self.admin(reqwest::Method::GET, path).send().await.unwrap();
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.unwrap()
    }

    /// A new client token.
    pub async fn client_token(&self, name: &str) -> String {
        let (status, body) = self
            .admin_post("/api/v1/tokens", json!({"name": name, "role": "client"}))
            .await;
        assert_eq!(status, 201, "{body}");
        body["token"].as_str().unwrap().to_owned()
    }

    /// A builder for an SDK client of this server with a fresh client token.
    pub async fn sdk(&self, name: &str) -> ClientBuilder {
        Client::builder(&self.address, self.client_token(name).await)
    }

    /// The server's cumulative signal total for (flag, variant, metric), read from `/metrics`.
    pub async fn signal_total(&self, flag: &str, variant: &str, metric: &str) -> u64 {
        self.audience_total(flag, variant, None, metric).await
    }

    /// `rollgate_signals_total` of a (variant, release audience) series (`None`: everyone else).
    pub async fn audience_total(
        &self,
        flag: &str,
        variant: &str,
        audience: Option<&str>,
        metric: &str,
    ) -> u64 {
        let text = self
            .admin(reqwest::Method::GET, "/metrics")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let audience = audience.map_or(String::new(), |a| format!(r#",audience="{a}""#));
        let series = format!(
            r#"rollgate_signals_total{{flag="{flag}",variant="{variant}",metric="{metric}"{audience}}} "#
        );
        text.lines()
            .find_map(|l| l.strip_prefix(&series))
            .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
    }
}

/// A boolean flag with `rollout` and no rules.
pub fn bool_flag(key: &str, rollout: f64) -> Value {
    json!({
        "key": key, "type": "boolean", "variants": {"off": false, "on": true},
        "off_variant": "off", "on_variant": "on", "enabled": true, "rollout": rollout, "rules": []
    })
}

/// A context from a JSON object.
pub fn ctx(v: Value) -> Context {
    match v {
        Value::Object(map) => map,
        other => panic!("a context is a JSON object, not {other}"),
    }
}

/// Waits until `done` holds, at most `limit`; panics with `what` otherwise. Returns the time
/// it took.
pub async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    start.elapsed()
}

/// The `rollgate` binary of this workspace (built by `cargo nextest run --workspace`; built
/// here when a run of this crate alone has not built it yet).
pub fn rollgate_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/rollgate
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("rollgate"))
        .expect("target directory");
    if !bin.exists() {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "rollgate", "--bin", "rollgate"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building the rollgate binary failed");
    }
    bin
}

/// The real binary running as a child process.
pub struct Process {
    pub child: tokio::process::Child,
    pub address: String,
    _stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

/// Starts `rollgate serve` on `bind` with `data_dir`, waiting for its listening line.
pub async fn start_binary(data_dir: &Path, bind: &str) -> Process {
    let mut child = tokio::process::Command::new(rollgate_binary())
        .args(["serve", "--bind", bind, "--data-dir"])
        .arg(data_dir)
        .arg("--policies-dir")
        .arg(policies_dir())
        .env("ROLLGATE_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn rollgate");
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let address = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = stdout.next_line().await.unwrap() {
            if let Some(url) = line.strip_prefix("rollgate listening on ") {
                return url.to_owned();
            }
        }
        panic!("rollgate exited before listening");
    })
    .await
    .expect("server did not start in 30 s");
    Process {
        child,
        address,
        _stdout: stdout,
    }
}

impl Process {
    /// A handle to drive this process's API.
    pub fn api(&self) -> Server {
        Server {
            address: self.address.clone(),
            http: reqwest::Client::new(),
            _data_dir: None,
        }
    }

    /// SIGTERM, then wait for the exit.
    pub async fn stop(mut self) {
        let pid = self.child.id().unwrap().to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("stopped within 10 s")
            .unwrap();
        assert!(exit.success(), "{exit}");
    }
}
