//! `rollgate migrate`: a data dir written by the real server (through its HTTP API) is copied
//! by the real binary into a real PostgreSQL, object for object, with a gapless feed; a second
//! run is refused and changes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code may panic on a broken fixture

#[allow(dead_code)] // the API tests' harness; this target uses part of it
#[path = "api/helpers.rs"]
mod helpers;
#[allow(dead_code)] // stopping a server of its own is for other targets
#[path = "support/pg.rs"]
mod pg;

use helpers::{bool_flag, policies_dir, start_binary, TestApp, ADMIN_TOKEN};
use pg::TestPg;
use reqwest::Method;
use rollgate::signals::SavedAggregates;
use rollgate::store::Store;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

/// The binary's `migrate`: (exit code, stdout, stderr).
async fn migrate(data: &Path, url: &str) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_rollgate"))
        .arg("migrate")
        .arg("--from-data-dir")
        .arg(data)
        .arg("--to")
        .arg(url)
        .env_remove("ROLLGATE_DATABASE_URL")
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs the server on `data`, fills it through the API, sends signals, stops it with SIGTERM.
/// Returns the client token's secret and the release's id.
async fn a_used_data_dir(data: &Path) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let server = start_binary(data, &policies_dir()).await;
    let app = TestApp {
        address: server.address.clone(),
        admin_token: ADMIN_TOKEN.into(),
        client: reqwest::Client::new(),
        _data_dir: dir,
    };
    let seniors =
        json!({"key": "seniors", "when": [{"attribute": "age", "op": "gte", "values": [60]}]});
    let r = app
        .admin(Method::PUT, "/api/v1/segments/seniors")
        .json(&seniors)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    app.put_flag(bool_flag("qr-ordering", 0.0)).await;
    app.put_flag(bool_flag("points", 0.0)).await;
    app.put_flag(json!({
        "key": "discount", "type": "boolean", "variants": {"off": false, "on": true},
        "off_variant": "off", "on_variant": "on", "rollout": 100,
        "rules": [{"when": [{"segment": "seniors"}], "variant": "off"}]
    }))
    .await;
    let policy = std::fs::read_to_string(policies_dir().join("checkout.toml")).unwrap();
    let r = app
        .admin(Method::PUT, "/api/v1/policies/checkout")
        .header("content-type", "application/toml")
        .body(policy)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "PUT policy: {}", r.status());
    let token = app.create_token("shop", "client").await;
    let release = app
        .create_release(json!({
            "name": "membership-v2",
            "modules": [{"flag": "qr-ordering"}, {"flag": "points"}],
            "stages": {"percentages": [1, 50, 100], "min_duration": "1h", "min_exposures": 0}
        }))
        .await;
    let (status, _) = app
        .signals(
            &token,
            json!([
                {"flag": "points", "variant": "on", "metric": "exposure", "count": 950},
                {"flag": "points", "variant": "on", "metric": "latency", "value": 0.25, "count": 4},
                {"flag": "qr-ordering", "variant": "off", "metric": "exposure", "count": 7}
            ]),
        )
        .await;
    assert_eq!(status, 200);

    let pid = server.child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let mut child = server.child;
    let exit = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("stopped within 10 s of SIGTERM")
        .unwrap();
    assert!(exit.success(), "{exit}");
    (token, release)
}

/// `rollgate serve` as a cluster node on `url` with a fresh data dir.
async fn cluster_node(url: &str) -> (TestApp, tokio::process::Child) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_rollgate"))
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--database-url",
            url,
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .arg("--policies-dir")
        .arg(policies_dir())
        .env("ROLLGATE_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let address = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = stdout.next_line().await.unwrap() {
            if let Some(url) = line.strip_prefix("rollgate listening on ") {
                return url.to_owned();
            }
        }
        panic!("the cluster node exited before listening");
    })
    .await
    .expect("the cluster node did not start within 30 s");
    tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
    let app = TestApp {
        address,
        admin_token: ADMIN_TOKEN.into(),
        client: reqwest::Client::new(),
        _data_dir: dir,
    };
    (app, child)
}

/// What the sled store holds, as the rows the migration must write: kind → key → body.
struct Expected {
    objects: BTreeMap<&'static str, BTreeMap<String, String>>,
    audit: usize,
    totals: BTreeMap<(String, String, String), (i64, f64, i64)>,
    seen: BTreeMap<String, i64>,
    server_key: String,
}

/// Reads the stopped server's store. (Read last: sled releases its lock a little after an
/// in-process store is dropped, which would make a later `rollgate migrate` find it busy.)
fn read_store(data: &Path) -> Expected {
    let store = Store::open(data).expect("open the data dir");
    let mut objects: BTreeMap<&'static str, BTreeMap<String, String>> = BTreeMap::new();
    objects.insert(
        "segment",
        store
            .segments()
            .unwrap()
            .iter()
            .map(|s| (s.key.clone(), json(s)))
            .collect(),
    );
    objects.insert(
        "flag",
        store
            .flags()
            .unwrap()
            .iter()
            .map(|f| (f.key.clone(), json(f)))
            .collect(),
    );
    objects.insert(
        "token",
        store
            .tokens()
            .unwrap()
            .iter()
            .map(|t| (t.name.clone(), json(t)))
            .collect(),
    );
    objects.insert("policy", store.policies().unwrap().into_iter().collect());
    objects.insert(
        "release",
        store
            .releases()
            .unwrap()
            .iter()
            .map(|r| (r.id.to_string(), json(r)))
            .collect(),
    );
    let saved: SavedAggregates = store.aggregates().unwrap().expect("aggregates were saved");
    Expected {
        objects,
        audit: store.audit_oldest_first().count(),
        totals: saved
            .iter()
            .map(|(f, v, m, t)| {
                (
                    (f.to_owned(), v.to_owned(), m.to_owned()),
                    (t.count as i64, t.sum, t.valued as i64),
                )
            })
            .collect(),
        seen: saved
            .last_signals()
            .map(|(f, ms)| (f.to_owned(), ms as i64))
            .collect(),
        server_key: hex::encode(store.server_key().unwrap()),
    }
}

/// A stored object's row body: exactly `serde_json::to_string` of it.
fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap()
}

/// The whole database's rollgate content, to compare before and after a refused run.
async fn snapshot(db: &tokio_postgres::Client) -> Vec<String> {
    let mut out = Vec::new();
    for table in [
        "rollgate_head",
        "rollgate_feed",
        "rollgate_flags",
        "rollgate_segments",
        "rollgate_tokens",
        "rollgate_policies",
        "rollgate_releases",
        "rollgate_audit",
        "rollgate_meta",
        "rollgate_signal_totals",
        "rollgate_signal_seen",
    ] {
        let sql = format!(
            "SELECT coalesce(string_agg(t::text, '|' ORDER BY t::text), '') FROM {table} t"
        );
        out.push(db.query_one(&sql, &[]).await.unwrap().get(0));
    }
    out
}

#[tokio::test]
async fn a_used_data_dir_is_copied_whole_and_a_second_run_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (token, release) = a_used_data_dir(&data).await;
    let pg = TestPg::fresh().await;

    let (code, stdout, stderr) = migrate(&data, &pg.url).await;
    let db = pg.connect().await;
    let before = snapshot(&db).await;
    let (code_again, stdout_again, stderr_again) = migrate(&data, &pg.url).await;

    let expected = read_store(&data);
    assert_eq!(code, 0, "{stderr}");
    let n: usize = expected.objects.values().map(BTreeMap::len).sum();
    assert!(
        stdout.contains(&format!(
            "migrated 3 flags, 1 segments, {} tokens, 1 policies, 1 releases, {} audit entries, 3 signal series (revision {n})",
            expected.objects["token"].len(),
            expected.audit
        )),
        "{stdout}"
    );
    // Every object, in its state table, with the revision of its feed row.
    for (kind, table, key) in [
        ("segment", "rollgate_segments", "key"),
        ("flag", "rollgate_flags", "key"),
        ("token", "rollgate_tokens", "name"),
        ("policy", "rollgate_policies", "name"),
        ("release", "rollgate_releases", "id::text"),
    ] {
        let rows = db
            .query(
                &format!(
                    "SELECT s.{key}, s.body, f.kind, f.key, f.body FROM {table} s \
                     JOIN rollgate_feed f ON f.revision = s.revision"
                ),
                &[],
            )
            .await
            .unwrap();
        let got: BTreeMap<String, String> = rows
            .iter()
            .map(|r| {
                assert_eq!(r.get::<_, String>(2), kind);
                assert_eq!(r.get::<_, String>(3), r.get::<_, String>(0));
                assert_eq!(r.get::<_, Option<String>>(4), Some(r.get(1)));
                (r.get(0), r.get(1))
            })
            .collect();
        assert_eq!(got, expected.objects[kind], "{kind}s");
    }
    // The feed: revisions 1..N without a gap, segments first, flags, tokens, policies, releases.
    let feed = db
        .query(
            "SELECT revision, kind FROM rollgate_feed ORDER BY revision",
            &[],
        )
        .await
        .unwrap();
    let revisions: Vec<i64> = feed.iter().map(|r| r.get(0)).collect();
    assert_eq!(revisions, (1..=n as i64).collect::<Vec<_>>());
    let kinds: Vec<String> = feed.iter().map(|r| r.get(1)).collect();
    let order = ["segment", "flag", "token", "policy", "release"];
    let rank = |k: &String| order.iter().position(|o| o == k).unwrap();
    assert!(
        kinds.windows(2).all(|w| rank(&w[0]) <= rank(&w[1])),
        "{kinds:?}"
    );
    let head: i64 = db
        .query_one("SELECT revision FROM rollgate_head", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(head, n as i64);
    // The audit log, the totals, the last signals, the server key.
    let audit: i64 = db
        .query_one("SELECT count(*) FROM rollgate_audit", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(audit as usize, expected.audit);
    assert!(expected.audit >= 7, "every API change left an audit entry");
    let totals: BTreeMap<(String, String, String), (i64, f64, i64)> = db
        .query(
            "SELECT flag, variant, metric, count, sum, valued FROM rollgate_signal_totals",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                (r.get(0), r.get(1), r.get(2)),
                (r.get(3), r.get(4), r.get(5)),
            )
        })
        .collect();
    assert_eq!(totals, expected.totals);
    assert_eq!(
        totals[&("points".into(), "on".into(), "exposure".into())].0,
        950
    );
    let seen: BTreeMap<String, i64> = db
        .query("SELECT flag, last_signal_ms FROM rollgate_signal_seen", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(seen, expected.seen);
    let key: String = db
        .query_one(
            "SELECT value FROM rollgate_meta WHERE key = 'server_key'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(key, expected.server_key);

    // Again: refused with a clear message, exit code 1, nothing changed.
    assert_eq!(code_again, 1, "{stdout_again}");
    assert!(
        stderr_again.contains(&format!(
            "the database already holds rollgate state (head revision {n}, 3 flags, 1 segments"
        )),
        "{stderr_again}"
    );
    assert_eq!(snapshot(&db).await, before);

    // A cluster node started on the database serves what was migrated: the client token, the
    // segment inside a flag's rule, the release.
    let (node, _child) = cluster_node(&pg.url).await;
    let (status, senior) = node
        .evaluate(&token, "discount", json!({"targetingKey": "u1", "age": 61}))
        .await;
    assert_eq!(
        (status, &senior["variant"]),
        (200, &json!("off")),
        "{senior}"
    );
    let (_, junior) = node
        .evaluate(&token, "discount", json!({"targetingKey": "u1", "age": 30}))
        .await;
    assert_eq!(junior["variant"], "on", "{junior}");
    let migrated = node.admin_get(&format!("/api/v1/releases/{release}")).await;
    assert_eq!(migrated["name"], "membership-v2");
}

#[tokio::test]
async fn an_unreachable_database_exits_with_code_2() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap()); // (the database is tried before the dir is opened)

    let (code, _, stderr) = migrate(
        dir.path(),
        "postgres://rollgate@127.0.0.1:1/postgres?connect_timeout=2",
    )
    .await;

    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("cannot reach the database"), "{stderr}");
}

#[tokio::test]
async fn a_directory_that_is_not_a_data_dir_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();

    let (code, _, stderr) = migrate(dir.path(), "postgres://rollgate@127.0.0.1:1/postgres").await;

    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("is not a rollgate data directory"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn the_data_dir_of_a_running_server_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let _server = start_binary(&data, &policies_dir()).await;
    let pg = TestPg::fresh().await;

    let (code, _, stderr) = migrate(&data, &pg.url).await;

    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("is its server still running?"), "{stderr}");
}
