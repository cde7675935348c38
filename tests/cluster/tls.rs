//! PostgreSQL over TLS: a server of the test's own with `ssl = on` and a certificate from a
//! throwaway CA. A node with `sslmode=verify-full` and the CA as `ROLLGATE_CA_FILE` joins over
//! TLS (the database says its connections are encrypted); without the CA it refuses to start and
//! names the certificate problem.

use crate::support::{Database, Node};
use crate::test_ca::TestCa;
use std::path::Path;

/// Turns TLS on in the test's own server with a leaf of `ca`, and restarts it.
async fn enable_ssl(db: &Database, ca: &TestCa) {
    let server = db.server();
    let data = Path::new(&server.dir()).join("data");
    let leaf = ca.leaf(7);
    std::fs::write(data.join("server.crt"), &leaf.cert_pem).unwrap();
    std::fs::write(data.join("server.key"), &leaf.key_pem).unwrap();
    let mut conf = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
    conf.push_str("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
    std::fs::write(data.join("postgresql.conf"), conf).unwrap();
    // The server refuses a key others may read; as root it runs as `rollgate-pg` (scripts/pg.sh).
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        data.join("server.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    if std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
    {
        let status = std::process::Command::new("chown")
            .arg("rollgate-pg")
            .arg(data.join("server.crt"))
            .arg(data.join("server.key"))
            .status()
            .unwrap();
        assert!(status.success());
    }
    server.kill().await;
    server.restart().await;
}

#[tokio::test]
async fn a_node_joins_over_verified_tls_and_refuses_an_unknown_ca() {
    let db = Database::own_server().await;
    let ca = TestCa::new("rollgate test PG CA");
    enable_ssl(&db, &ca).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let url = format!("{}?sslmode=verify-full", db.url);

    let node = Node::start(
        "tls-a",
        &url,
        &[("ROLLGATE_CA_FILE", ca_file.to_str().unwrap())],
    )
    .await;
    node.put_flag(crate::helpers::bool_flag("over-tls", 0.0))
        .await;
    let rows = db
        .query(
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) FROM pg_stat_ssl s \
             JOIN pg_stat_activity a USING (pid) WHERE a.application_name LIKE 'rollgate%'",
            &[],
        )
        .await;
    let (encrypted, all): (i64, i64) = (rows[0].get(0), rows[0].get(1));
    assert!(
        all > 0 && encrypted == all,
        "{encrypted} of {all} connections use TLS"
    );
    let flags = db
        .query(
            "SELECT count(*) FROM rollgate_flags WHERE key = 'over-tls'",
            &[],
        )
        .await;
    assert_eq!(flags[0].get::<_, i64>(0), 1);

    // Another CA: the node cannot verify the database and says so.
    let stranger = TestCa::new("someone else's CA");
    std::fs::write(&ca_file, stranger.pem()).unwrap();
    let data = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_rollgate"))
        .args(["serve", "--bind", "127.0.0.1:0", "--database-url", &url])
        .arg("--data-dir")
        .arg(data.path())
        .arg("--ca-file")
        .arg(&ca_file)
        .env("ROLLGATE_ADMIN_TOKEN", crate::helpers::ADMIN_TOKEN)
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("certificate") && err.contains("UnknownIssuer"),
        "{err}"
    );

    // libpq's `require` encrypts without checking the chain; `sslrootcert=` in the URL is
    // trusted like `ca_file`.
    let require = format!("{}?sslmode=require", db.url);
    let node_b = Node::start("tls-b", &require, &[]).await;
    assert_eq!(node_b.rollout_of("over-tls").await, 0.0);
    std::fs::write(dir.path().join("root.pem"), ca.pem()).unwrap();
    let rooted = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        db.url,
        dir.path().join("root.pem").display()
    );
    let node_c = Node::start("tls-c", &rooted, &[]).await;
    assert_eq!(node_c.rollout_of("over-tls").await, 0.0);
    let rows = db
        .query(
            "SELECT count(*) FILTER (WHERE NOT s.ssl) FROM pg_stat_ssl s \
             JOIN pg_stat_activity a USING (pid) WHERE a.application_name LIKE 'rollgate%'",
            &[],
        )
        .await;
    assert_eq!(
        rows[0].get::<_, i64>(0),
        0,
        "every node's connections use TLS"
    );
}
