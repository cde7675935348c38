//! The cluster harness: a PostgreSQL server of the test's own (`scripts/pg.sh`, for tests that
//! stop it) or a fresh database on the shared `ROLLGATE_TEST_PG` server; N nodes of the real
//! `rollgate` binary on loopback, each with a data dir of its own, that a test can SIGKILL,
//! SIGSTOP, SIGCONT and restart; waiting helpers.
//!
//! The readings whose exact names the cluster design leaves open are each made in ONE function
//! below (`is_leader`, `applied_revision`, `metrics_revision`, `decided_by`, `counted`), so a
//! renamed field is fixed in one place.

use crate::helpers::{pg_connect, SseReader, TestApp, TestDatabase, ADMIN_TOKEN};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::time::Instant;

/// Every node's controller lease lifetime (`--lease-ttl`).
pub const LEASE_TTL: Duration = Duration::from_secs(2);
/// Every node's safety poll of the change feed (`--feed-poll`).
pub const FEED_POLL: Duration = Duration::from_millis(500);
/// How long a lost lease may take to be taken over: its lifetime, plus one renewal period
/// (a third of it) for the next holder to try, plus scheduling slack on a loaded machine.
pub const TAKEOVER: Duration = Duration::from_millis(2000 + 667 + 1000);

/// The repository root.
fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `scripts/pg.sh ARGS…`, returning its stdout; panics with its stderr on failure.
async fn pg_sh(args: &[&str]) -> String {
    let out = tokio::process::Command::new("bash")
        .arg(repo().join("scripts/pg.sh"))
        .args(args)
        .output()
        .await
        .expect("run scripts/pg.sh");
    assert!(
        out.status.success(),
        "scripts/pg.sh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A PostgreSQL server of the test's own, in a temp dir; stopped (hard) when dropped.
pub struct PgServer {
    dir: tempfile::TempDir,
    /// Its URL (the `postgres` database).
    pub url: String,
}

impl PgServer {
    /// Starts a fresh server on a free port.
    pub async fn start() -> PgServer {
        let dir = tempfile::Builder::new()
            .prefix("pg-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("temp dir");
        let url = pg_sh(&["start", &dir.path().to_string_lossy()]).await;
        PgServer { dir, url }
    }

    /// Its directory (`data/` inside holds postgresql.conf).
    pub fn dir(&self) -> String {
        self.dir.path().to_string_lossy().into_owned()
    }

    /// Stops the server the hard way (`pg_ctl stop -m immediate`: a crash).
    pub async fn kill(&self) {
        pg_sh(&["kill", &self.dir()]).await;
    }

    /// Starts the stopped server again, on the same port.
    pub async fn restart(&self) {
        pg_sh(&["restart", &self.dir()]).await;
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // Already stopped is fine: the data dir goes away with the temp dir anyway.
        let _ = std::process::Command::new("bash")
            .arg(repo().join("scripts/pg.sh"))
            .args(["kill", &self.dir()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The database a test's nodes share.
pub struct Database {
    /// Its URL.
    pub url: String,
    _fresh: Option<TestDatabase>,
    /// The server, when the test has one of its own.
    pub server: Option<PgServer>,
}

impl Database {
    /// A fresh database on the shared `ROLLGATE_TEST_PG` server when there is one (for tests
    /// that never stop the server), else on a server of the test's own.
    pub async fn fresh() -> Database {
        match std::env::var("ROLLGATE_TEST_PG") {
            Ok(shared) if !shared.is_empty() => {
                let db = TestDatabase::create(&shared).await;
                Database {
                    url: db.url.clone(),
                    _fresh: Some(db),
                    server: None,
                }
            }
            _ => Database::own_server().await,
        }
    }

    /// A server of the test's own (for tests that stop it).
    pub async fn own_server() -> Database {
        let server = PgServer::start().await;
        Database {
            url: server.url.clone(),
            _fresh: None,
            server: Some(server),
        }
    }

    /// The server of the test's own.
    pub fn server(&self) -> &PgServer {
        self.server
            .as_ref()
            .expect("a test that stops the server has its own")
    }

    /// A SQL query (the test's own connection).
    pub async fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Vec<tokio_postgres::Row> {
        pg_connect(&self.url)
            .await
            .query(sql, params)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The last committed global revision (`rollgate_head`).
    pub async fn head(&self) -> i64 {
        self.query("SELECT revision FROM rollgate_head WHERE id = 1", &[])
            .await[0]
            .get(0)
    }
}

/// One node: the real binary as a child process, and a `TestApp` to talk to it.
pub struct Node {
    /// Its node id (`--node-id`).
    pub name: String,
    /// Its address, HTTP client, admin token and data dir (which outlives restarts).
    pub app: TestApp,
    database_url: String,
    child: Option<tokio::process::Child>,
    _stdout: Option<tokio::io::Lines<BufReader<tokio::process::ChildStdout>>>,
}

impl std::ops::Deref for Node {
    type Target = TestApp;
    fn deref(&self) -> &TestApp {
        &self.app
    }
}

impl Node {
    /// Starts node `name` on `database_url` with extra environment `env`.
    pub async fn start(name: &str, database_url: &str, env: &[(&str, &str)]) -> Node {
        let dir = tempfile::tempdir().expect("tempdir");
        // Heartbeats every 500 ms, so a test sees streams stay alive in a short outage.
        std::fs::write(dir.path().join("rollgate.toml"), "heartbeat = \"500ms\"\n")
            .expect("write the node's config");
        let mut node = Node {
            name: name.to_owned(),
            app: TestApp {
                address: String::new(),
                admin_token: ADMIN_TOKEN.into(),
                client: reqwest::Client::new(),
                _data_dir: dir,
                _database: None,
            },
            database_url: database_url.to_owned(),
            child: None,
            _stdout: None,
        };
        node.spawn(env).await;
        node
    }

    fn dir(&self) -> &Path {
        self.app._data_dir.path()
    }

    /// Starts the process on the node's data dir, waiting for its listening line.
    async fn spawn(&mut self, env: &[(&str, &str)]) {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_rollgate"));
        command
            .arg("serve")
            .arg("--config")
            .arg(self.dir().join("rollgate.toml"))
            .args(["--bind", "127.0.0.1:0", "--data-dir"])
            .arg(self.dir().join("data"))
            .arg("--policies-dir")
            .arg(repo().join("policies"))
            .arg("--database-url")
            .arg(&self.database_url)
            .args(["--node-id", &self.name])
            .arg("--lease-ttl")
            .arg(format!("{}ms", LEASE_TTL.as_millis()))
            .arg("--feed-poll")
            .arg(format!("{}ms", FEED_POLL.as_millis()))
            .env("ROLLGATE_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("spawn rollgate");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let name = self.name.clone();
        let address = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = stdout.next_line().await.expect("read stdout") {
                if let Some(url) = line.strip_prefix("rollgate listening on ") {
                    return url.to_owned();
                }
            }
            panic!("node {name} exited before listening");
        })
        .await
        .unwrap_or_else(|_| panic!("node {} did not start in 30 s", self.name));
        self.app.address = address;
        self.child = Some(child);
        self._stdout = Some(stdout);
    }

    /// The process id of the running node.
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .and_then(|c| c.id())
            .unwrap_or_else(|| panic!("node {} is not running", self.name))
    }

    /// Sends `signal` (`KILL`, `STOP`, `CONT`) to the node's process.
    fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {}", self.name);
    }

    /// SIGKILLs the node and reaps it.
    pub async fn sigkill(&mut self) {
        self.signal("KILL");
        if let Some(mut child) = self.child.take() {
            child.wait().await.expect("reap the node");
        }
    }

    /// Freezes the node (SIGSTOP).
    pub fn sigstop(&self) {
        self.signal("STOP");
    }

    /// Wakes the frozen node (SIGCONT).
    pub fn sigcont(&self) {
        self.signal("CONT");
    }

    /// Waits (`within`) for the node's process to exit by itself; returns whether it did.
    pub async fn exits_within(&mut self, within: Duration) -> bool {
        let child = self.child.as_mut().expect("node running");
        if tokio::time::timeout(within, child.wait()).await.is_ok() {
            self.child = None;
            true
        } else {
            false
        }
    }

    /// Starts the (stopped) node again on its data dir with extra environment `env`.
    pub async fn restart(&mut self, env: &[(&str, &str)]) {
        assert!(self.child.is_none(), "node {} still running", self.name);
        self.spawn(env).await;
    }

    /// `GET /readyz` as JSON (whatever its status code).
    pub async fn readyz(&self) -> Value {
        let r = self.client.get(self.url("/readyz")).send().await;
        match r {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    }

    /// `GET /metrics` as text.
    pub async fn metrics(&self) -> String {
        self.admin(reqwest::Method::GET, "/metrics")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Opens the change stream with `token` (and `Last-Event-ID`, when resuming).
    pub async fn stream(&self, token: &str, last_event_id: Option<&str>) -> SseReader {
        let mut req = self
            .client
            .get(self.url("/api/v1/stream"))
            .bearer_auth(token);
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        SseReader::send(req).await
    }
}

// ---- Assumptions about names (each in one place) --------------------------------------------

/// Whether `node` says it holds the controller lease: `/readyz` field `leader`, or else the
/// `/metrics` gauge `rollgate_cluster_leader`.
pub async fn is_leader(node: &Node) -> bool {
    match node.readyz().await.get("leader").and_then(Value::as_bool) {
        Some(leader) => leader,
        None => metric(&node.metrics().await, "rollgate_cluster_leader") == Some(1.0),
    }
}

/// The revision `node` has applied, from `/readyz` (field `revision`).
pub async fn applied_revision(node: &Node) -> Option<i64> {
    node.readyz().await.get("revision").and_then(Value::as_i64)
}

/// The revision `node` has applied, from `/metrics` (`rollgate_applied_revision`).
pub async fn metrics_revision(node: &Node) -> Option<i64> {
    metric(&node.metrics().await, "rollgate_applied_revision").map(|v| v as i64)
}

/// Whether the audit entry `entry` (a controller decision) was decided by node `name`: the
/// entry's `node` field, or `after.node`, names the node (alone or as `name/<incarnation>`).
pub fn decided_by(entry: &Value, name: &str) -> bool {
    deciding_node(entry).is_some_and(|n| n == name || n.starts_with(&format!("{name}/")))
}

/// The deciding node an audit entry names, if any (see `decided_by`).
pub fn deciding_node(entry: &Value) -> Option<&str> {
    entry
        .get("node")
        .or_else(|| entry["after"].get("node"))
        .and_then(Value::as_str)
}

/// The global count of `(flag, variant, metric)` signals, as counted in the database
/// (`rollgate_signal_totals`, docs/cluster.md).
pub async fn counted(db: &Database, flag: &str, variant: &str, metric: &str) -> i64 {
    db.query(
        "SELECT coalesce(sum(count), 0)::bigint FROM rollgate_signal_totals \
         WHERE flag = $1 AND variant = $2 AND metric = $3",
        &[&flag, &variant, &metric],
    )
    .await[0]
        .get(0)
}

/// The value of the first series of metric `name` (with or without labels) in Prometheus text.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let value = match rest.strip_prefix('{') {
                Some(labelled) => labelled.split_once("} ")?.1,
                None => rest.strip_prefix(' ')?,
            };
            value.trim().parse().ok()
        })
        .next()
}

// ---- Clusters and waiting -------------------------------------------------------------------

/// Starts nodes `a`, `b`, `c`, … (`n` of them) on `db`.
pub async fn start_nodes(n: usize, db: &Database) -> Vec<Node> {
    let mut nodes = Vec::new();
    for name in ["a", "b", "c", "d", "e"].into_iter().take(n) {
        nodes.push(Node::start(name, &db.url, &[]).await);
    }
    nodes
}

/// Polls `check` every 20 ms until it returns `Some`, for `within` at most; panics naming
/// `what` on timeout.
pub async fn wait_for<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until every node in `nodes` has applied the database's head revision.
pub async fn converge(db: &Database, nodes: &[&Node]) -> i64 {
    let head = db.head().await;
    wait_for(
        "every node to apply the head revision",
        Duration::from_secs(10),
        || async move {
            for n in nodes {
                if applied_revision(n).await < Some(head) {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    head
}

/// The one node of `nodes` that leads, once exactly one does (`within`).
pub async fn the_leader<'a>(nodes: &[&'a Node], within: Duration) -> &'a Node {
    wait_for("exactly one leader", within, || async move {
        let mut leaders = Vec::new();
        for n in nodes {
            if is_leader(n).await {
                leaders.push(*n);
            }
        }
        (leaders.len() == 1).then(|| leaders[0])
    })
    .await
}

/// The audit entries of `release`, oldest first (read on `node`).
pub async fn release_audit(node: &Node, release: &str) -> Vec<Value> {
    let audit = node
        .admin_get(&format!("/api/v1/audit?release={release}&limit=1000"))
        .await;
    let mut entries = audit["entries"].as_array().cloned().unwrap_or_default();
    entries.reverse();
    entries
}

/// The stages the module-stage decisions (`module.start`, `module.advance`) of `entries`
/// applied, in order.
pub fn applied_stages(entries: &[Value]) -> Vec<i64> {
    entries
        .iter()
        .filter(|e| e["action"] == "module.start" || e["action"] == "module.advance")
        .map(|e| e["after"]["stage"].as_i64().expect("a stage"))
        .collect()
}
