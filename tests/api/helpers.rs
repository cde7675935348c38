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

impl TestApp {
    /// POST a JSON body with the admin token.
    pub async fn admin_post(&self, path: &str, body: Value) -> reqwest::Response {
        self.admin(reqwest::Method::POST, path)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// GET a JSON document with the admin token.
    pub async fn admin_get(&self, path: &str) -> Value {
        let r = self.admin(reqwest::Method::GET, path).send().await.unwrap();
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.unwrap()
    }

    /// Creates a release from `plan`, returning its id.
    pub async fn create_release(&self, plan: Value) -> String {
        let r = self.admin_post("/api/v1/releases", plan).await;
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert_eq!(status, 201, "create release: {body}");
        body["id"].as_str().unwrap().to_owned()
    }

    /// Polls the release status until `done` holds (10 s at most), returning it.
    pub async fn wait_release(&self, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let status = self.admin_get(&format!("/api/v1/releases/{id}")).await;
            if done(&status) {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}: {status:#}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Sends a batch of signals with `token`.
    pub async fn signals(&self, token: &str, signals: Value) -> (u16, Value) {
        let r = self
            .client
            .post(self.url("/api/v1/signals"))
            .bearer_auth(token)
            .json(&json!({ "signals": signals }))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// The flag's current rollout percentage.
    pub async fn rollout_of(&self, key: &str) -> f64 {
        self.admin_get(&format!("/api/v1/flags/{key}")).await["rollout"]
            .as_f64()
            .unwrap()
    }
}

/// Starts a server with `tweak` applied to the test configuration.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
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
    TestApp {
        address,
        admin_token: ADMIN_TOKEN.into(),
        client: reqwest::Client::new(),
        _data_dir: data_dir,
    }
}

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

impl SseEvent {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).expect("event data is JSON")
    }
}

/// Reads events (and heartbeat comments) from an SSE response.
pub struct SseReader {
    response: reqwest::Response,
    buffer: String,
}

impl SseReader {
    /// Opens `path` with `token` and an optional `Last-Event-ID`.
    pub async fn open(
        app: &TestApp,
        path: &str,
        token: &str,
        last_event_id: Option<&str>,
    ) -> SseReader {
        let mut req = app.client.get(app.url(path)).bearer_auth(token);
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        SseReader::send(req).await
    }

    /// Opens a stream with a prepared request (e.g. a URL carrying `?token=`).
    pub async fn send(req: reqwest::RequestBuilder) -> SseReader {
        let response = req.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        SseReader {
            response,
            buffer: String::new(),
        }
    }

    /// Waits (5 s at most) for the server to end the stream, skipping what is still sent.
    pub async fn ends(mut self) {
        tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while self.response.chunk().await.unwrap().is_some() {}
        })
        .await
        .expect("the stream did not end within 5 s");
    }

    /// The next block (event or comment), within 5 s.
    pub async fn next_block(&mut self) -> String {
        tokio::time::timeout(std::time::Duration::from_secs(5), async {
            loop {
                if let Some(end) = self.buffer.find("\n\n") {
                    let block = self.buffer[..end].to_owned();
                    self.buffer.drain(..end + 2);
                    return block;
                }
                let chunk = self.response.chunk().await.unwrap().expect("stream ended");
                self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
            }
        })
        .await
        .expect("no SSE block within 5 s")
    }

    /// The next real event, skipping comments and `retry:` lines.
    pub async fn next_event(&mut self) -> SseEvent {
        loop {
            let block = self.next_block().await;
            let mut event = SseEvent {
                id: None,
                event: "message".into(),
                data: String::new(),
            };
            let mut is_event = false;
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    event.id = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("event: ") {
                    event.event = v.to_owned();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    event.data.push_str(v);
                    is_event = true;
                }
            }
            if is_event {
                return event;
            }
        }
    }
}

/// Starts a server whose store already holds `aggregates`, the persisted form of the signal
/// aggregates (`{"series": {flag: {variant: {metric: {"count", "sum", "valued"}}}},
/// "last_signal_ms": {flag: ms}}`), as an earlier run would have left them. This is how a
/// test reaches counts that real traffic would need years to reach.
pub async fn spawn_app_with_aggregates(aggregates: Value) -> TestApp {
    let data_dir = tempfile::tempdir().expect("tempdir");
    let data = data_dir.path().join("data");
    {
        let store = rollgate::store::Store::open(&data).expect("open store");
        store
            .put_aggregates_if_changed(&aggregates, &mut None)
            .await
            .expect("seed aggregates");
    }
    let mut config = Config::defaults();
    config.bind = "127.0.0.1:0".into();
    config.data_dir = data;
    config.policies_dir = policies_dir();
    config.admin_token = Some(ADMIN_TOKEN.into());
    config.workers = 2;
    // sled releases the data dir's lock from its background thread some time after the seeding
    // store is dropped; there is nothing to await, so the build is retried for a bounded time.
    let mut attempts = 0;
    let app = loop {
        match Application::build(config.clone()).await {
            Ok(app) => break app,
            Err(e) if attempts < 100 => {
                attempts += 1;
                tracing::debug!(error = %e, "data dir still locked; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => panic!("build app: {e:#}"),
        }
    };
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
    /// `rollgate_signals_total{flag, variant, metric}` from `/metrics`, if the series exists.
    pub async fn signals_total(
        &self,
        token: &str,
        flag: &str,
        variant: &str,
        metric: &str,
    ) -> Option<f64> {
        let text = self
            .client
            .get(self.url("/metrics"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let series = format!(
            r#"rollgate_signals_total{{flag="{flag}",variant="{variant}",metric="{metric}"}} "#
        );
        text.lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .map(|v| v.trim().parse().expect("a number"))
    }
}
