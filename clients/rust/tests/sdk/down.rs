//! The server is down: `connect` returns within its start timeout, evaluations serve the
//! caller's defaults without blocking, nothing panics, flush and shutdown return.

use crate::helpers::ctx;
use rollgate_client::{Client, EvaluationError, Measure};
use serde_json::json;
use std::time::{Duration, Instant};

async fn check_down_client(address: String) {
    let start_timeout = Duration::from_millis(300);
    let started = Instant::now();
    let client = Client::builder(address, "some-token")
        .start_timeout(start_timeout)
        .request_timeout(Duration::from_millis(300))
        .shutdown_timeout(Duration::from_millis(300))
        .connect()
        .await
        .expect("an unreachable server is not an error");
    let took = started.elapsed();
    assert!(
        took < start_timeout + Duration::from_millis(200),
        "connect took {took:?}"
    );

    let user = ctx(json!({"targetingKey": "u1", "tier": "gold"}));
    let started = Instant::now();
    for _ in 0..1_000 {
        assert!(client.bool_value("anything", &user, true));
        assert!(!client.bool_value("anything", &user, false));
        assert_eq!(client.string_value("s", &user, "dflt"), "dflt");
        assert_eq!(client.integer_value("n", &user, 7), 7);
        assert_eq!(client.number_value("n", &user, 1.5), 1.5);
        assert_eq!(
            client.json_value("o", &user, json!({"a": 1})),
            json!({"a": 1})
        );
    }
    let per_call = started.elapsed() / 6_000;
    assert!(
        per_call < Duration::from_millis(1),
        "{per_call:?} per evaluation"
    );
    assert_eq!(
        client.flags().evaluate("anything", &user),
        Err(EvaluationError::NotReady)
    );
    client.complaint("anything");
    client.complaint_for("anything", &user);
    client.report_variant("anything", "on", "payment_failed", Measure::Count(2));
    let status = client.status();
    assert!(!status.ready);
    assert_eq!(status.unattributed_errors, 6_001);
    assert_eq!(status.unattributed_reports, 2);

    let started = Instant::now();
    client.flush().await;
    client.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "flush + shutdown took {:?}",
        started.elapsed()
    );
    // Evaluation still works after shutdown.
    assert!(client.bool_value("anything", &user, true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_means_defaults_after_the_start_timeout() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    check_down_client(format!("http://127.0.0.1:{port}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_means_defaults_after_the_start_timeout() {
    // Accepts connections (the kernel's backlog) and never answers a byte.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}", silent.local_addr().unwrap());
    check_down_client(address).await;
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_url_or_token_is_a_build_error_not_a_panic() {
    for url in ["", "localhost:8080", "ftp://x", "http://"] {
        assert!(
            matches!(
                Client::builder(url, "t").connect().await,
                Err(rollgate_client::BuildError::InvalidUrl(_))
            ),
            "{url:?}"
        );
    }
    assert!(matches!(
        Client::builder("http://127.0.0.1:1", "bad\ntoken")
            .connect()
            .await,
        Err(rollgate_client::BuildError::InvalidToken)
    ));
}
