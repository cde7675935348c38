//! A throwaway PostgreSQL for integration tests: a server of its own started by
//! `scripts/pg.sh` in a temp dir (stopped when dropped), or, for tests that never stop the
//! server, a fresh database on the server named by `ROLLGATE_TEST_PG` when that is set.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A database for one test.
pub struct TestPg {
    /// `postgres://…` of the test's database.
    pub url: String,
    /// The server's directory when the server is the test's own.
    own: Option<tempfile::TempDir>,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg.sh")
}

fn pg_sh(action: &str, dir: &Path) -> String {
    let out = Command::new(script())
        .arg(action)
        .arg(dir.join("pg"))
        .output()
        .expect("run scripts/pg.sh");
    assert!(
        out.status.success(),
        "pg.sh {action}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

impl TestPg {
    /// A server of the test's own, which the test may stop and start.
    pub fn own() -> TestPg {
        let dir = tempfile::tempdir().expect("temp dir");
        // As root the server runs as an unprivileged user, who must reach the directory.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let url = pg_sh("start", dir.path());
        TestPg {
            url,
            own: Some(dir),
        }
    }

    /// A fresh, empty database: on `ROLLGATE_TEST_PG` when set, else on a server of its own.
    pub async fn fresh() -> TestPg {
        let Ok(server) = std::env::var("ROLLGATE_TEST_PG") else {
            return TestPg::own();
        };
        let name = format!("t_{}", uuid::Uuid::now_v7().simple());
        let (client, connection) = tokio_postgres::connect(&server, tokio_postgres::NoTls)
            .await
            .expect("connect to ROLLGATE_TEST_PG");
        tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let (base, query) = match server.split_once('?') {
            Some((base, query)) => (base, format!("?{query}")),
            None => (server.as_str(), String::new()),
        };
        let authority = base.rsplit_once('/').map_or(base, |(a, _)| a);
        TestPg {
            url: format!("{authority}/{name}{query}"),
            own: None,
        }
    }

    fn dir(&self) -> &Path {
        self.own
            .as_ref()
            .expect("only a server of the test's own can be stopped")
            .path()
    }

    /// Stops the server the hard way (`pg_ctl stop -m immediate`).
    pub fn kill(&self) {
        pg_sh("kill", self.dir());
    }

    /// Starts the stopped server again on the same port.
    pub fn restart(&self) {
        pg_sh("restart", self.dir());
    }

    /// A new connection, driven in the background.
    pub async fn connect(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .expect("connect to the test database");
        tokio::spawn(connection);
        client
    }
}

impl Drop for TestPg {
    fn drop(&mut self) {
        if let Some(dir) = &self.own {
            let _ = Command::new(script())
                .arg("kill")
                .arg(dir.path().join("pg"))
                .output();
        }
    }
}
