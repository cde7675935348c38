//! Test harness: a real server on an ephemeral port with a throwaway data dir.

use rollgate::cluster::ClusterConfig;
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
    /// In cluster mode, the server's database (dropped with the app).
    pub _database: Option<TestDatabase>,
}

/// The repository's `policies/` directory.
pub fn policies_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies")
}

/// Starts a server in-process on 127.0.0.1:0 with a fresh data dir (and, in cluster mode, a
/// fresh database: see `TestDatabase`).
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// The test configuration: port 0, `data_dir`, the repository's policies, the admin token.
fn test_config(data_dir: PathBuf) -> Config {
    let mut config = Config::defaults();
    config.bind = "127.0.0.1:0".into();
    config.data_dir = data_dir;
    config.policies_dir = policies_dir();
    config.admin_token = Some(ADMIN_TOKEN.into());
    config.workers = 2;
    config
}

/// Runs the built server in the background.
fn serve(app: Application, data_dir: tempfile::TempDir, database: Option<TestDatabase>) -> TestApp {
    let address = app.url();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        admin_token: ADMIN_TOKEN.into(),
        client: reqwest::Client::new(),
        _data_dir: data_dir,
        _database: database,
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
/// In cluster mode, the node also gets `--database-url`: one database per data dir, so a
/// restart on the same data dir finds the same database.
pub async fn start_binary(data_dir: &std::path::Path, policies: &std::path::Path) -> ServerProcess {
    start_binary_with(data_dir, policies, &[]).await
}

/// [`start_binary`] with extra `serve` arguments (e.g. `--tls-cert`).
pub async fn start_binary_with(
    data_dir: &std::path::Path,
    policies: &std::path::Path,
    extra: &[&std::ffi::OsStr],
) -> ServerProcess {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_rollgate"));
    command
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .arg("--policies-dir")
        .arg(policies)
        .args(extra);
    if let Some(url) = TestDatabase::of_data_dir(data_dir).await {
        command.arg("--database-url").arg(url);
    }
    let mut child = command
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
    let mut config = test_config(data_dir.path().join("data"));
    let database = TestDatabase::in_cluster_mode().await;
    if let Some(db) = &database {
        config.cluster = Some(ClusterConfig::new(&db.url));
    }
    tweak(&mut config);
    let app = Application::build(config).await.expect("build app");
    serve(app, data_dir, database)
}

/// Starts a server like [`spawn_app_with`] and also hands out its guard history (to seed it).
pub async fn spawn_app_with_history(
    tweak: impl FnOnce(&mut Config),
) -> (TestApp, std::sync::Arc<rollgate::history::History>) {
    let data_dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(data_dir.path().join("data"));
    let database = TestDatabase::in_cluster_mode().await;
    if let Some(db) = &database {
        config.cluster = Some(ClusterConfig::new(&db.url));
    }
    tweak(&mut config);
    let app = Application::build(config).await.expect("build app");
    let history = app.history();
    (serve(app, data_dir, database), history)
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
    let mut config = test_config(data.clone());
    let database = TestDatabase::in_cluster_mode().await;
    if let Some(db) = &database {
        db.seed_aggregates(&aggregates).await;
        config.cluster = Some(ClusterConfig::new(&db.url));
    } else {
        let store = rollgate::store::Store::open(&data).expect("open store");
        store
            .put_aggregates_if_changed(&aggregates, &mut None)
            .await
            .expect("seed aggregates");
    }
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
    serve(app, data_dir, database)
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

// Cluster mode: scripts/test.sh runs this whole suite a second time with
// ROLLGATE_TEST_CLUSTER=1, every server then being a cluster node on a database of its own.

/// Whether this run of the suite is the cluster-mode one (`ROLLGATE_TEST_CLUSTER=1`).
pub fn cluster_mode() -> bool {
    std::env::var("ROLLGATE_TEST_CLUSTER").as_deref() == Ok("1")
}

/// The revision a test would name on a single node, or in cluster mode the one the server has
/// applied: cluster revisions are global and also count token, policy and release changes
/// (docs/cluster.md), so only their order, not their numbers, is the contract there.
pub async fn revision_now(app: &TestApp, single_node: u64) -> u64 {
    if !cluster_mode() {
        return single_node;
    }
    app.client
        .get(app.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["revision"]
        .as_u64()
        .expect("/readyz names the applied revision")
}

/// A fresh database (`t_<uuid>`) on the `ROLLGATE_TEST_PG` server; dropped with the test app.
pub struct TestDatabase {
    /// The database's URL.
    pub url: String,
    server: String,
    name: String,
}

impl TestDatabase {
    /// A fresh database when the suite runs in cluster mode (`ROLLGATE_TEST_CLUSTER=1`), else
    /// `None`.
    pub async fn in_cluster_mode() -> Option<TestDatabase> {
        if !cluster_mode() {
            return None;
        }
        let server = std::env::var("ROLLGATE_TEST_PG")
            .expect("ROLLGATE_TEST_CLUSTER=1 needs ROLLGATE_TEST_PG (scripts/test.sh sets both)");
        Some(TestDatabase::create(&server).await)
    }

    /// Creates a fresh database on the server at `server` (a `postgres://…` URL).
    pub async fn create(server: &str) -> TestDatabase {
        let name = format!("t_{}", uuid::Uuid::now_v7().simple());
        pg_connect(server)
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create the test database");
        TestDatabase {
            url: with_database(server, &name),
            server: server.to_owned(),
            name,
        }
    }

    /// In cluster mode, the database of the binary started on `data_dir` (created on first
    /// use, kept for the test's process, so a restart on the same data dir finds it again).
    pub async fn of_data_dir(data_dir: &std::path::Path) -> Option<String> {
        static BY_DIR: std::sync::Mutex<Vec<(PathBuf, TestDatabase)>> =
            std::sync::Mutex::new(Vec::new());
        let known = |dirs: &[(PathBuf, TestDatabase)]| {
            dirs.iter()
                .find(|(dir, _)| dir == data_dir)
                .map(|(_, db)| db.url.clone())
        };
        if let Some(url) = known(&BY_DIR.lock().unwrap()) {
            return Some(url);
        }
        let db = TestDatabase::in_cluster_mode().await?;
        let url = db.url.clone();
        BY_DIR.lock().unwrap().push((data_dir.to_path_buf(), db));
        Some(url)
    }

    /// Migrates the database and stores `aggregates` (the form `spawn_app_with_aggregates`
    /// takes) as the global signal totals, as an earlier run of the cluster would have left them.
    pub async fn seed_aggregates(&self, aggregates: &Value) {
        let mut client = pg_connect(&self.url).await;
        rollgate::cluster::db::migrate(&mut client)
            .await
            .expect("migrate");
        let objects = |v: &Value| v.as_object().cloned().unwrap_or_default();
        let bigint = |v: &Value| {
            i64::try_from(v.as_u64().unwrap_or(0)).expect("a seeded count fits a bigint")
        };
        for (flag, variants) in objects(&aggregates["series"]) {
            for (variant, metrics) in objects(&variants) {
                for (metric, t) in objects(&metrics) {
                    client
                        .execute(
                            "INSERT INTO rollgate_signal_totals (flag, variant, metric, count, sum, valued) \
                             VALUES ($1, $2, $3, $4, $5, $6)",
                            &[&flag, &variant, &metric, &bigint(&t["count"]),
                              &t["sum"].as_f64().unwrap_or(0.0), &bigint(&t["valued"])],
                        )
                        .await
                        .expect("seed a signal total");
                }
            }
        }
        for (flag, ms) in objects(&aggregates["last_signal_ms"]) {
            client
                .execute(
                    "INSERT INTO rollgate_signal_seen (flag, last_signal_ms) VALUES ($1, $2)",
                    &[&flag, &bigint(&ms)],
                )
                .await
                .expect("seed a last signal time");
        }
    }
}

impl Drop for TestDatabase {
    /// Drops the database (its server's connections too), so a suite of hundreds of tests does
    /// not fill the shared server's disk. Runs on a thread of its own: drop cannot await.
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                pg_connect(&server)
                    .await
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("could not drop test database: {e}");
        }
    }
}

/// A connection to `url`, driven in the background.
pub async fn pg_connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    tokio::spawn(connection);
    client
}

/// `server` (`postgres://user@host:port/db?params`) with its database replaced by `name`.
pub fn with_database(server: &str, name: &str) -> String {
    let (base, query) = match server.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (server, String::new()),
    };
    let authority = base.find("://").map_or(0, |i| i + 3);
    let root = match base[authority..].find('/') {
        Some(slash) => &base[..authority + slash],
        None => base,
    };
    format!("{root}/{name}{query}")
}
