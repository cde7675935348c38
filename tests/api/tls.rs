//! TLS end to end with a throwaway CA made at test time (rcgen): the server terminating TLS
//! (`--tls-cert`/`--tls-key`), its SIGHUP reload under a live SSE stream, refused bad settings,
//! the CLI and `rollgate health` with `--ca-file`, and webhooks to an https receiver.

use crate::helpers::ADMIN_TOKEN;
use crate::helpers::{
    bool_flag, policies_dir, start_binary_with, ServerProcess, SseReader, TestApp,
};
use crate::test_ca::{Leaf, TestCa};
use serde_json::json;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Files in a temp dir: `ca.pem`, `cert.pem`, `key.pem`.
pub(crate) struct Files {
    pub(crate) dir: tempfile::TempDir,
}

impl Files {
    pub(crate) fn new(ca: &TestCa, leaf: &Leaf) -> Files {
        let files = Files {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::write(files.path("ca.pem"), ca.pem()).unwrap();
        files.write_leaf(leaf);
        files
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub(crate) fn write_leaf(&self, leaf: &Leaf) {
        std::fs::write(self.path("cert.pem"), &leaf.cert_pem).unwrap();
        std::fs::write(self.path("key.pem"), &leaf.key_pem).unwrap();
    }
}

/// A client trusting `ca` (and the system roots), one connection per request, showing the
/// server's certificate (`TlsInfo`).
pub(crate) fn trusting(ca: &Path) -> reqwest::Client {
    rollgate::tls::http_client(Some(ca))
        .unwrap()
        .pool_max_idle_per_host(0)
        .tls_info(true)
        .build()
        .unwrap()
}

/// The innermost error of a failed request.
fn root_cause(error: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// The certificate a fresh connection to `url` is shown: a new client each time, so no TLS
/// session is resumed (a resumed session reports the certificate it was first shown).
async fn presented(ca: &Path, url: &str) -> Vec<u8> {
    let response = trusting(ca).get(url).send().await.unwrap();
    let info = response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .unwrap();
    info.peer_certificate().unwrap().to_vec()
}

/// The binary serving TLS with `files`' pair, and a `TestApp` that trusts the CA.
async fn tls_server(files: &Files) -> (ServerProcess, TestApp, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let (cert, key) = (files.path("cert.pem"), files.path("key.pem"));
    let args: [&OsStr; 4] = [
        "--tls-cert".as_ref(),
        cert.as_os_str(),
        "--tls-key".as_ref(),
        key.as_os_str(),
    ];
    let server = start_binary_with(data.path(), &policies_dir(), &args).await;
    assert!(server.address.starts_with("https://"), "{}", server.address);
    let app = TestApp {
        address: server.address.clone(),
        admin_token: ADMIN_TOKEN.into(),
        client: trusting(&files.path("ca.pem")),
        _data_dir: tempfile::tempdir().unwrap(),
        _database: None,
    };
    (server, app, data)
}

#[tokio::test]
async fn ofrep_answers_over_https_to_a_client_trusting_the_ca_only() {
    let ca = TestCa::new("rollgate test CA");
    let files = Files::new(&ca, &ca.leaf(1));
    let (_server, app, _data) = tls_server(&files).await;
    app.put_flag(bool_flag("tls-flag", 100.0)).await;
    let token = app.create_token("sdk", "client").await;

    let (status, body) = app
        .evaluate(&token, "tls-flag", json!({"targetingKey": "u1"}))
        .await;
    assert_eq!(
        (status, body["value"].clone()),
        (200, json!(true)),
        "{body}"
    );
    // The stream URL the server advertises is https too.
    let bulk: serde_json::Value = app
        .client
        .post(app.url("/ofrep/v1/evaluate/flags"))
        .bearer_auth(&token)
        .json(&json!({"context": {"targetingKey": "u1"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stream_url = bulk["eventStreams"][0]["url"].as_str().unwrap_or_default();
    assert!(stream_url.starts_with(&app.address), "{bulk}");

    // A client without the test CA refuses the server's certificate.
    let stranger = rollgate::tls::http_client(None).unwrap().build().unwrap();
    let error = stranger
        .get(app.url("/healthz"))
        .send()
        .await
        .expect_err("an untrusted certificate must be refused");
    let cause = root_cause(&error);
    assert!(
        cause.contains("certificate") && cause.contains("UnknownIssuer"),
        "{cause}"
    );
    // And plain HTTP to the TLS port gets no answer.
    let plain = app.address.replacen("https://", "http://", 1);
    let plain = reqwest::Client::new()
        .get(format!("{plain}/healthz"))
        .send()
        .await;
    assert!(!plain.is_ok_and(|r| r.status().is_success()));
}

/// Waits until a fresh connection is shown `der` (5 s at most).
async fn wait_presented(ca: &Path, url: &str, der: &[u8]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while presented(ca, url).await != der {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new certificate was not served in 5 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn hangup(server: &ServerProcess) {
    let pid = server.child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn sighup_swaps_the_certificate_and_keeps_open_streams() {
    let ca = TestCa::new("rollgate test CA");
    let (first, second) = (ca.leaf(1), ca.leaf(2));
    let files = Files::new(&ca, &first);
    let (server, app, _data) = tls_server(&files).await;
    let health = app.url("/healthz");
    let ca_file = files.path("ca.pem");
    assert_eq!(presented(&ca_file, &health).await, first.der);
    let token = app.create_token("web", "client").await;
    let mut stream = SseReader::open(&app, "/api/v1/stream", &token, None).await;
    assert_eq!(stream.next_event().await.event, "config");

    // A new pair on disk, then SIGHUP: new connections get it.
    files.write_leaf(&second);
    hangup(&server);
    wait_presented(&ca_file, &health, &second.der).await;

    // The stream opened under the old certificate still delivers.
    app.put_flag(bool_flag("after-reload", 0.0)).await;
    let event = stream.next_event().await;
    assert!(event.data.contains("after-reload"), "{}", event.data);

    // A broken certificate, or a key of another certificate: refused, the current one kept.
    std::fs::write(
        files.path("cert.pem"),
        "-----BEGIN CERTIFICATE-----\nnot base64\n",
    )
    .unwrap();
    hangup(&server);
    let third = ca.leaf(3);
    std::fs::write(files.path("cert.pem"), &second.cert_pem).unwrap();
    std::fs::write(files.path("key.pem"), &third.key_pem).unwrap();
    hangup(&server);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(presented(&ca_file, &health).await, second.der);
    app.put_flag(bool_flag("after-bad-reload", 0.0)).await;
    let event = stream.next_event().await;
    assert!(event.data.contains("after-bad-reload"), "{}", event.data);
}

/// Runs the binary with `args` (and no inherited URL/token/CA), returning (code, stdout, stderr).
fn run(args: &[&OsStr]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rollgate"))
        .args(args)
        .env_remove("ROLLGATE_URL")
        .env_remove("ROLLGATE_TOKEN")
        .env_remove("ROLLGATE_CA_FILE")
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_and_health_trust_the_ca_file_and_name_the_certificate_problem() {
    let ca = TestCa::new("rollgate test CA");
    let files = Files::new(&ca, &ca.leaf(1));
    let (_server, app, _data) = tls_server(&files).await;
    app.put_flag(bool_flag("cli-tls", 0.0)).await;
    let ca_file = files.path("ca.pem");
    let url = app.address.clone();

    let list = |with_ca: bool| {
        let mut args: Vec<&OsStr> = [
            "flags",
            "list",
            "--url",
            url.as_str(),
            "--token",
            ADMIN_TOKEN,
        ]
        .into_iter()
        .map(OsStr::new)
        .collect();
        if with_ca {
            args.extend([OsStr::new("--ca-file"), ca_file.as_os_str()]);
        }
        run(&args)
    };
    let (code, out, err) = tokio::task::block_in_place(|| list(true));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("cli-tls"), "{out}");

    let (code, _, err) = tokio::task::block_in_place(|| list(false));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("certificate") && err.contains("UnknownIssuer"),
        "{err}"
    );

    let health = |ca: Option<&Path>| {
        let mut args: Vec<&OsStr> = vec!["health".as_ref(), "--url".as_ref(), url.as_ref()];
        if let Some(ca) = ca {
            args.extend([OsStr::new("--ca-file"), ca.as_os_str()]);
        }
        run(&args)
    };
    assert_eq!(tokio::task::block_in_place(|| health(Some(&ca_file))).0, 0);
    let (code, _, err) = tokio::task::block_in_place(|| health(None));
    assert_eq!(code, 1);
    assert!(err.contains("certificate"), "{err}");
}

#[tokio::test]
async fn half_or_broken_tls_settings_refuse_to_start_and_name_the_setting() {
    let ca = TestCa::new("rollgate test CA");
    let files = Files::new(&ca, &ca.leaf(1));
    let data = tempfile::tempdir().unwrap();
    let policies = policies_dir();
    let serve = |extra: &[&OsStr]| {
        let mut args: Vec<&OsStr> = vec![
            "serve".as_ref(),
            "--bind".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--data-dir".as_ref(),
            data.path().as_os_str(),
            "--policies-dir".as_ref(),
            policies.as_os_str(),
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    let (cert, key) = (files.path("cert.pem"), files.path("key.pem"));

    let (code, _, err) = serve(&["--tls-cert".as_ref(), cert.as_os_str()]);
    assert_ne!(code, 0);
    assert!(err.contains("tls_key is not"), "{err}");

    let (code, _, err) = serve(&["--tls-key".as_ref(), key.as_os_str()]);
    assert_ne!(code, 0);
    assert!(err.contains("tls_cert is not"), "{err}");

    let garbage = files.path("garbage.pem");
    std::fs::write(&garbage, "hello\n").unwrap();
    let (code, _, err) = serve(&[
        "--tls-cert".as_ref(),
        garbage.as_os_str(),
        "--tls-key".as_ref(),
        key.as_os_str(),
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains("tls_cert") && err.contains("garbage.pem"),
        "{err}"
    );

    let other_key = ca.leaf(2);
    std::fs::write(files.path("other.key"), other_key.key_pem).unwrap();
    let (code, _, err) = serve(&[
        "--tls-cert".as_ref(),
        cert.as_os_str(),
        "--tls-key".as_ref(),
        files.path("other.key").as_os_str(),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("do not match"), "{err}");

    let (code, _, err) = serve(&["--ca-file".as_ref(), OsStr::new("/nonexistent/ca.pem")]);
    assert_ne!(code, 0);
    assert!(
        err.contains("ca_file") && err.contains("/nonexistent/ca.pem"),
        "{err}"
    );
}

/// An https receiver (actix-web on rustls, the leaf of `files`) reporting each body it gets.
async fn https_receiver(files: &Files) -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    use actix_web::{web, App, HttpResponse, HttpServer};
    let chain = rollgate::tls::read_certificates(&files.path("cert.pem"), "cert").unwrap();
    let key = rollgate::tls::read_private_key(&files.path("key.pem"), "key").unwrap();
    let config = rustls::ServerConfig::builder_with_provider(rollgate::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let server = HttpServer::new(move || {
        let tx = tx.clone();
        App::new().route(
            "/hook",
            web::post().to(move |body: String| {
                let _ = tx.send(body);
                async { HttpResponse::NoContent().finish() }
            }),
        )
    })
    .workers(1)
    .disable_signals()
    .bind_rustls_0_23("127.0.0.1:0", config)
    .unwrap();
    let url = format!("https://127.0.0.1:{}/hook", server.addrs()[0].port());
    tokio::spawn(server.run());
    (url, rx)
}

#[tokio::test]
async fn webhooks_reach_an_https_receiver_trusted_through_ca_file() {
    use rollgate::webhooks::{WebhookConfig, WebhookEvent, WebhookKind, Webhooks};
    use std::sync::atomic::Ordering::Relaxed;
    let ca = TestCa::new("rollgate test CA");
    let files = Files::new(&ca, &ca.leaf(1));
    let (url, mut bodies) = https_receiver(&files).await;
    let config = |ca_file: Option<PathBuf>| WebhookConfig {
        max_attempts: 1,
        timeout: Duration::from_secs(2),
        ca_file,
        ..WebhookConfig::new(vec![url.clone()], None)
    };
    let event = || WebhookEvent::new(WebhookKind::Rollback, "controller", "tls drill");

    let trusting = Webhooks::start(config(Some(files.path("ca.pem"))));
    trusting.notify(event());
    let body = tokio::time::timeout(Duration::from_secs(5), bodies.recv())
        .await
        .expect("the webhook arrives over https")
        .unwrap();
    assert!(body.contains("tls drill"), "{body}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while trusting.stats().delivered.load(Relaxed) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the delivery was not counted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Without the CA the receiver's certificate is refused: nothing arrives, a failure is counted.
    let stranger = Webhooks::start(config(None));
    stranger.notify(event());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while stranger.stats().failed.load(Relaxed) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the untrusted delivery did not fail"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(stranger.stats().delivered.load(Relaxed), 0);
    assert!(bodies.try_recv().is_err());
}

#[tokio::test]
async fn sighup_without_tls_is_ignored() {
    let data = tempfile::tempdir().unwrap();
    let server = start_binary_with(data.path(), &policies_dir(), &[]).await;
    hangup(&server);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = reqwest::get(format!("{}/healthz", server.address))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn the_config_file_keys_turn_tls_on() {
    let ca = TestCa::new("rollgate test CA");
    let files = Files::new(&ca, &ca.leaf(5));
    let config = files.path("rollgate.toml");
    let toml = format!(
        "tls_cert = {:?}\ntls_key = {:?}\nca_file = {:?}\n",
        files.path("cert.pem"),
        files.path("key.pem"),
        files.path("ca.pem")
    );
    std::fs::write(&config, toml).unwrap();
    let data = tempfile::tempdir().unwrap();
    let args: [&OsStr; 2] = ["--config".as_ref(), config.as_os_str()];
    let server = start_binary_with(data.path(), &policies_dir(), &args).await;
    assert!(server.address.starts_with("https://"), "{}", server.address);
    let health = format!("{}/healthz", server.address);
    let served = rollgate::tls::read_certificates(&files.path("cert.pem"), "cert").unwrap();
    assert_eq!(
        presented(&files.path("ca.pem"), &health).await,
        served[0].to_vec()
    );
}
