//! The edges of the API: auth before any input error, messages that name the field in JSON
//! terms, keys that are not UTF-8, signal timestamps, forwarded headers, quiet logs.

use crate::helpers::{bool_flag, spawn_app, spawn_app_with, ADMIN_TOKEN};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

/// Every authenticated endpoint with something wrong besides the token: a bad query string, a
/// path key that is not UTF-8, a body over the limit (1 KiB here) or malformed.
fn bad_requests() -> Vec<(Method, &'static str, Vec<u8>, bool)> {
    let big = vec![b'x'; 2048];
    let junk = b"{".to_vec();
    let none = Vec::new();
    let (get, put, post, delete) = (Method::GET, Method::PUT, Method::POST, Method::DELETE);
    // (method, path, body, admin only)
    vec![
        (get.clone(), "/api/v1/audit?bogus=1", none.clone(), true),
        (get.clone(), "/api/v1/audit?limit=abc", none.clone(), true),
        (get.clone(), "/api/v1/flags/%FF", none.clone(), true),
        (put.clone(), "/api/v1/flags/%FF", junk.clone(), true),
        (put.clone(), "/api/v1/flags/qr", big.clone(), true),
        (delete.clone(), "/api/v1/flags/%FF", none.clone(), true),
        (put.clone(), "/api/v1/flags/%FF/rollout", junk.clone(), true),
        (post.clone(), "/api/v1/flags/qr/kill", big.clone(), true),
        (post.clone(), "/api/v1/flags/%FF/unkill", none.clone(), true),
        (get.clone(), "/api/v1/segments/%FF", none.clone(), true),
        (put.clone(), "/api/v1/segments/s", big.clone(), true),
        (get.clone(), "/api/v1/policies/%FF", none.clone(), true),
        (put.clone(), "/api/v1/policies/p", big.clone(), true),
        (post.clone(), "/api/v1/tokens", big.clone(), true),
        (delete.clone(), "/api/v1/tokens/%FF", none.clone(), true),
        (post.clone(), "/api/v1/releases", big.clone(), true),
        (get.clone(), "/api/v1/releases/%FF", none.clone(), true),
        (
            post.clone(),
            "/api/v1/releases/%FF/start",
            junk.clone(),
            true,
        ),
        (post.clone(), "/api/v1/releases/r/pause", big.clone(), true),
        (
            post.clone(),
            "/api/v1/releases/r/resume",
            junk.clone(),
            true,
        ),
        (
            post.clone(),
            "/api/v1/releases/%FF/rollback",
            none.clone(),
            true,
        ),
        (
            post.clone(),
            "/api/v1/alerts/alertmanager",
            big.clone(),
            true,
        ),
        (post.clone(), "/api/v1/signals", big.clone(), false),
        (
            get.clone(),
            "/api/v1/stream?format=a&format=b",
            none.clone(),
            false,
        ),
        (
            post.clone(),
            "/ofrep/v1/evaluate/flags/%FF",
            big.clone(),
            false,
        ),
        (post, "/ofrep/v1/evaluate/flags", big, false),
    ]
}

#[tokio::test]
async fn every_authenticated_endpoint_answers_401_or_403_before_any_input_error() {
    let app = spawn_app_with(|c| {
        c.limits.max_body = 1024;
        c.limits.max_eval_body = 1024;
        c.limits.max_signals_body = 1024;
    })
    .await;
    let client_token = app.create_token("web", "client").await;

    for (method, path, body, admin_only) in bad_requests() {
        let anonymous = app
            .client
            .request(method.clone(), app.url(path))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(anonymous.status(), 401, "{method} {path} without a token");
        // OFREP refuses an over-limit body unread (its own shapes, no drain).
        if !path.starts_with("/ofrep") {
            assert_ne!(
                anonymous.headers().get("connection").map(|v| v.as_bytes()),
                Some(&b"close"[..]),
                "{method} {path}: the refused body was read, the connection stays usable"
            );
        }
        if admin_only {
            let client = app
                .client
                .request(method.clone(), app.url(path))
                .bearer_auth(&client_token)
                .body(body.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(client.status(), 403, "{method} {path} with a client token");
        }
    }
}

#[tokio::test]
async fn with_a_valid_token_the_same_requests_get_their_input_error() {
    let app = spawn_app_with(|c| c.limits.max_body = 1024).await;
    let audit = app
        .admin(Method::GET, "/api/v1/audit?bogus=1")
        .send()
        .await
        .unwrap();
    let flag = app
        .admin(Method::PUT, "/api/v1/flags/qr")
        .body(vec![b'x'; 2048])
        .send()
        .await
        .unwrap();

    assert_eq!(audit.status(), 400);
    assert_eq!(flag.status(), 413);
}

async fn error_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    (status, r.json::<Value>().await.unwrap()["error"].clone())
}

#[tokio::test]
async fn bad_query_strings_name_the_parameter() {
    let app = spawn_app().await;

    let (status, limit) = error_of(
        app.admin(Method::GET, "/api/v1/audit?limit=abc")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let (_, unknown) = error_of(
        app.admin(Method::GET, "/api/v1/audit?bogus=1")
            .send()
            .await
            .unwrap(),
    )
    .await;

    assert_eq!(status, 400);
    assert_eq!(limit["field"], "limit", "{limit}");
    assert_eq!(unknown["field"], "bogus", "{unknown}");
    for e in [&limit, &unknown] {
        let message = e["message"].as_str().unwrap();
        assert!(!message.contains("Query deserialize error"), "{message}");
    }
}

#[tokio::test]
async fn a_toml_policy_syntax_error_names_the_key_and_the_line() {
    let app = spawn_app().await;

    let (status, e) = error_of(
        app.admin(Method::PUT, "/api/v1/policies/x")
            .header("content-type", "application/toml")
            .body("name = ")
            .send()
            .await
            .unwrap(),
    )
    .await;

    assert_eq!(status, 400);
    assert_eq!(e["field"], "name", "{e}");
    let message = e["message"].as_str().unwrap();
    assert!(message.contains("line 1"), "{message}");
    assert!(
        message.len() > "(line 1, column 8)".len(),
        "says what is wrong: {message}"
    );
}

#[tokio::test]
async fn messages_speak_json_not_rust() {
    let app = spawn_app().await;
    app.put_flag(bool_flag("qr", 0.0)).await;
    let id = app
        .create_release(json!({"name": "r", "policy": "checkout", "modules": [{"flag": "qr"}]}))
        .await;

    let (_, rollout) = error_of(
        app.admin(Method::PUT, "/api/v1/flags/qr/rollout")
            .json(&json!("x"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let (_, pause) = error_of(
        app.admin(Method::POST, &format!("/api/v1/releases/{id}/pause"))
            .json(&json!("x"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let (_, number) = error_of(
        app.admin(Method::PUT, "/api/v1/flags/qr/rollout")
            .json(&json!({"percentage": "lots"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let (status, control) = error_of(
        app.admin(Method::GET, "/api/v1/flags/a%13b")
            .send()
            .await
            .unwrap(),
    )
    .await;

    assert_eq!(
        rollout["message"]
            .as_str()
            .unwrap()
            .split(" at line")
            .next(),
        Some("invalid type: string \"x\", expected a JSON object")
    );
    assert!(
        pause["message"]
            .as_str()
            .unwrap()
            .contains("expected a JSON object"),
        "{pause}"
    );
    assert!(
        number["message"]
            .as_str()
            .unwrap()
            .contains("expected a number"),
        "{number}"
    );
    for e in [&rollout, &pause, &number] {
        let message = e["message"].as_str().unwrap();
        for rust in ["struct", "Request", "f64"] {
            assert!(!message.contains(rust), "{message}");
        }
    }
    assert_eq!(status, 404);
    assert_eq!(control["message"], "flag \"a\\u0013b\" not found");
}

#[tokio::test]
async fn keys_that_are_not_utf8_are_refused_not_replaced() {
    let app = spawn_app().await;
    let token = app.create_token("web", "client").await;
    app.put_flag(bool_flag("qr", 0.0)).await;

    let ofrep = app
        .client
        .post(app.url("/ofrep/v1/evaluate/flags/%FF"))
        .bearer_auth(&token)
        .json(&json!({"context": {"targetingKey": "u1"}}))
        .send()
        .await
        .unwrap();
    let (ofrep_status, ofrep_body) = (ofrep.status(), ofrep.json::<Value>().await.unwrap());
    let (ops_status, ops) = error_of(
        app.admin(Method::GET, "/api/v1/flags/%FF")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let (put_status, put) = error_of(
        app.admin(Method::PUT, "/api/v1/flags/q%C3")
            .json(&bool_flag("q", 0.0))
            .send()
            .await
            .unwrap(),
    )
    .await;

    assert_eq!(ofrep_status, 400);
    assert_eq!(ofrep_body["errorCode"], "PARSE_ERROR");
    assert_eq!(ofrep_body["key"], "%FF");
    assert!(
        ofrep_body["errorDetails"]
            .as_str()
            .unwrap()
            .contains("UTF-8"),
        "{ofrep_body}"
    );
    assert_eq!(
        (ops_status, ops["field"].as_str()),
        (400, Some("key")),
        "{ops}"
    );
    assert_eq!(
        (put_status, put["field"].as_str()),
        (400, Some("key")),
        "{put}"
    );
    assert!(!ops.to_string().contains('\u{fffd}'));
}

#[tokio::test]
async fn a_signal_timestamp_must_be_rfc3339_or_unix_ms() {
    let app = spawn_app().await;
    let token = app.create_token("web", "client").await;
    app.put_flag(bool_flag("qr", 0.0)).await;
    let signal = |timestamp: Value| json!({"flag": "qr", "variant": "on", "metric": "exposure", "timestamp": timestamp});

    let good = json!([
        signal(json!("2026-11-22T10:00:00Z")),
        signal(json!("2026-11-22T10:00:00.123456+02:00")),
        signal(json!(1795346404473u64)),
        signal(Value::Null),
    ]);
    let (status, report) = app.signals(&token, good).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["accepted"], 4);

    for bad in [
        json!("yesterday"),
        json!("2026-11-22"),
        json!(-5),
        json!(1.5),
        json!(true),
        json!({}),
    ] {
        let (status, body) = app
            .signals(&token, json!([signal(json!(1)), signal(bad.clone())]))
            .await;
        assert_eq!(status, 422, "{bad}: {body}");
        assert_eq!(body["error"]["field"], "signals[1].timestamp", "{bad}");
    }
}

async fn advertised_stream(app: &crate::helpers::TestApp, token: &str) -> String {
    let bulk: Value = app
        .client
        .post(app.url("/ofrep/v1/evaluate/flags"))
        .bearer_auth(token)
        .header("X-Forwarded-Host", "evil.example")
        .header("X-Forwarded-Proto", "https")
        .header("Forwarded", "host=evil2.example;proto=https")
        .json(&json!({"context": {"targetingKey": "u1"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    bulk["eventStreams"][0]["url"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn forwarded_headers_are_believed_only_from_a_trusted_proxy() {
    let direct = spawn_app().await;
    let behind_proxy = spawn_app_with(|c| {
        c.trusted_proxies = rollgate::proxies::TrustedProxies::parse(&["127.0.0.0/8"]).unwrap();
    })
    .await;
    let t1 = direct.create_token("web", "client").await;
    let t2 = behind_proxy.create_token("web", "client").await;

    let ignored = advertised_stream(&direct, &t1).await;
    let believed = advertised_stream(&behind_proxy, &t2).await;

    assert!(
        ignored.starts_with(&format!("{}/api/v1/stream?", direct.address)),
        "{ignored}"
    );
    assert!(
        believed.starts_with("https://evil2.example/api/v1/stream?"),
        "{believed}"
    );
}

#[tokio::test]
async fn broken_and_aborted_requests_are_not_logged_as_errors() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let stderr_path = dir.path().join("stderr.log");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_rollgate"))
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .arg("--policies-dir")
        .arg(crate::helpers::policies_dir())
        .env("ROLLGATE_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let address = loop {
        line.clear();
        use tokio::io::AsyncBufReadExt;
        assert!(
            stdout.read_line(&mut line).await.unwrap() > 0,
            "server exited"
        );
        if let Some(url) = line.trim().strip_prefix("rollgate listening on http://") {
            break url.to_owned();
        }
    };
    let requests: [&[u8]; 4] = [
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
        b"GARBAGE\r\n\r\n",
        b"PUT /api/v1/flags/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n",
        b"PUT /api/v1/flags/x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"ke",
    ];

    for (i, raw) in requests.iter().enumerate() {
        let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
        socket.write_all(raw).await.unwrap();
        if i == 3 {
            socket.shutdown().await.unwrap(); // hang up mid-body
        }
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut answer))
            .await
            .expect("the server closes the connection")
            .ok();
    }
    child.kill().await.unwrap();

    let logs = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(
        logs.contains("\"level\":\"INFO\""),
        "the log is captured: {logs}"
    );
    let errors: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("\"level\":\"ERROR\""))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

#[tokio::test]
async fn a_body_that_is_not_a_json_object_is_refused_everywhere() {
    let app = spawn_app().await;
    app.put_flag(bool_flag("f", 10.0)).await;
    // serde would read a struct's fields from an array; no endpoint takes one.
    for (method, path, body) in [
        (Method::POST, "/api/v1/flags/f/kill", "[]"),
        (Method::POST, "/api/v1/flags/f/unkill", "[null]"),
        (Method::PUT, "/api/v1/flags/f/rollout", "[12.5]"),
        (Method::POST, "/api/v1/tokens", r#"["x", "client"]"#),
        (Method::POST, "/api/v1/releases", "7"),
        (Method::POST, "/api/v1/drills", "[null, null]"),
    ] {
        let r = app
            .admin(method.clone(), path)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let (status, answer) = error_of(r).await;
        assert_eq!(status, 400, "{method} {path} {body}: {answer}");
        assert_eq!(answer["field"], ".", "{method} {path}: the body itself");
        let message = answer["message"].as_str().unwrap();
        assert!(
            message.starts_with("invalid type: ") && message.ends_with("expected a JSON object"),
            "{method} {path}: {message}"
        );
    }
    // Nothing changed: the flag is still enabled at 10 %.
    let flag = app.admin_get("/api/v1/flags/f").await;
    assert_eq!(
        (flag["enabled"].clone(), flag["rollout"].clone()),
        (json!(true), json!(10.0))
    );
}

#[tokio::test]
async fn human_logs_written_to_a_file_carry_no_colour_codes() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().unwrap();
    let stderr_path = dir.path().join("stderr.log");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_rollgate"))
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--policies-dir")
        .arg(crate::helpers::policies_dir())
        .env("ROLLGATE_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("rollgate listening on") {
        line.clear();
        assert!(
            stdout.read_line(&mut line).await.unwrap() > 0,
            "server exited"
        );
    }
    child.kill().await.unwrap();
    let logs = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(logs.contains("INFO"), "the human log is captured: {logs}");
    assert!(
        !logs.contains('\x1b'),
        "escape codes in a log file: {logs:?}"
    );
}
