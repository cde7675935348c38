//! Outgoing webhooks against local receivers over real HTTP: body and signature, retries,
//! final failures, isolation from a dead URL, a full queue, and shutdown.
//!
//! The receiver is a bare HTTP/1.1 listener on 127.0.0.1:0 that answers each request with the
//! reply its script gives for that request's number, and reports every request on a channel
//! before answering, so the tests await requests instead of sleeping (`reach.rs` uses it too).

use rollgate::webhooks::{
    verify, WebhookConfig, WebhookEvent, WebhookKind, WebhookStats, Webhooks, EVENT_HEADER,
    EVENT_ID_HEADER, SIGNATURE_HEADER,
};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// How long any awaited condition may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(2);

/// What the receiver does with one request.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Reply {
    Status(u16),
    /// Never answers; keeps the connection open.
    Stall,
}

/// One request as the receiver saw it.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) headers: HashMap<String, String>,
    pub(crate) body: Vec<u8>,
}

impl Request {
    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map_or("", String::as_str)
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

pub(crate) struct Receiver {
    pub(crate) url: String,
    requests: mpsc::UnboundedReceiver<Request>,
}

impl Receiver {
    /// The next request, waiting at most [`PATIENCE`].
    pub(crate) async fn next(&mut self) -> Request {
        tokio::time::timeout(PATIENCE, self.requests.recv())
            .await
            .expect("a webhook request in time")
            .expect("receiver running")
    }

    /// True when no further request has arrived.
    pub(crate) fn is_idle(&mut self) -> bool {
        self.requests.try_recv().is_err()
    }
}

/// A receiver answering its `n`-th request (from 0) with `script(n)`.
pub(crate) async fn spawn_receiver(script: impl Fn(usize) -> Reply + Send + 'static) -> Receiver {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind receiver");
    let url = format!(
        "http://{}/hooks/rollgate",
        listener.local_addr().expect("address")
    );
    let (tx, requests) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        for n in 0.. {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(serve(stream, script(n), tx.clone()));
        }
    });
    Receiver { url, requests }
}

/// Reads one request, reports it, answers with `reply` and closes (no keep-alive, so one
/// connection is one request).
async fn serve(mut stream: TcpStream, reply: Reply, tx: mpsc::UnboundedSender<Request>) {
    let Ok(request) = read_request(&mut stream).await else {
        return;
    };
    let _ = tx.send(request);
    match reply {
        Reply::Status(code) => {
            let head = format!(
                "HTTP/1.1 {code} Scripted\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            let _ = stream.write_all(head.as_bytes()).await;
        }
        Reply::Stall => std::future::pending().await,
    }
}

async fn read_request(stream: &mut TcpStream) -> std::io::Result<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_len = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_len]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let (method, path) = (
        request_line.next().unwrap_or_default(),
        request_line.next().unwrap_or_default(),
    );
    let headers: HashMap<String, String> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_len + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[head_len..head_len + length].to_vec();
    Ok(Request {
        method: method.into(),
        path: path.into(),
        headers,
        body,
    })
}

/// Settings for tests: tiny backoff, three attempts.
pub(crate) fn fast_config(urls: Vec<String>, secret: Option<&str>) -> WebhookConfig {
    WebhookConfig {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(1),
        timeout: Duration::from_secs(1),
        ..WebhookConfig::new(urls, secret.map(str::to_owned))
    }
}

fn rollback_event() -> WebhookEvent {
    WebhookEvent {
        release_id: Some("rel-42".into()),
        release: Some("checkout-v2".into()),
        module: Some("qr-ordering".into()),
        numbers: json!({"exposures": 1200, "error_rate": 0.031, "threshold": 0.02}),
        ..WebhookEvent::new(
            WebhookKind::Rollback,
            "controller",
            "guard error_rate objected",
        )
    }
}

/// Waits until `condition` holds, at most [`PATIENCE`]. For counters, which nothing signals.
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn counts(stats: &WebhookStats) -> [u64; 4] {
    [
        &stats.delivered,
        &stats.failed,
        &stats.retried,
        &stats.dropped,
    ]
    .map(|c| c.load(Relaxed))
}

#[tokio::test]
async fn an_event_arrives_as_signed_json() {
    // Arrange
    let mut receiver = spawn_receiver(|_| Reply::Status(204)).await;
    let webhooks = Webhooks::start(fast_config(vec![receiver.url.clone()], Some("hook-secret")));
    let event = rollback_event();

    // Act
    webhooks.notify(event.clone());
    let request = receiver.next().await;

    // Assert
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/hooks/rollgate")
    );
    assert_eq!(request.header("content-type"), "application/json");
    assert_eq!(request.header(EVENT_HEADER), "rollback");
    assert_eq!(request.header(EVENT_ID_HEADER), event.id.to_string());
    assert!(
        request.header("user-agent").starts_with("rollgate/"),
        "{:?}",
        request.headers
    );
    let signature = request.header(SIGNATURE_HEADER);
    assert!(
        verify("hook-secret", &request.body, signature),
        "signature {signature:?}"
    );
    assert!(!verify("wrong-secret", &request.body, signature));
    assert_eq!(
        request.json(),
        json!({
            "id": event.id.to_string(),
            "kind": "rollback",
            "time": event.time,
            "release_id": "rel-42",
            "release": "checkout-v2",
            "module": "qr-ordering",
            "reason": "guard error_rate objected",
            "actor": "controller",
            "numbers": {"exposures": 1200, "error_rate": 0.031, "threshold": 0.02},
        })
    );
    eventually("delivered = 1", || {
        webhooks.stats().delivered.load(Relaxed) == 1
    })
    .await;
    assert_eq!(counts(webhooks.stats()), [1, 0, 0, 0]);
}

#[tokio::test]
async fn server_errors_are_retried_with_the_same_event_id() {
    // Arrange
    let mut receiver = spawn_receiver(|n| Reply::Status(if n < 2 { 500 } else { 200 })).await;
    let webhooks = Webhooks::start(fast_config(vec![receiver.url.clone()], Some("k")));
    let event = rollback_event();

    // Act
    webhooks.notify(event.clone());
    let attempts = [
        receiver.next().await,
        receiver.next().await,
        receiver.next().await,
    ];

    // Assert
    for attempt in &attempts {
        assert_eq!(attempt.header(EVENT_ID_HEADER), event.id.to_string());
        assert_eq!(
            attempt.body, attempts[0].body,
            "every attempt sends the same bytes"
        );
        assert!(verify("k", &attempt.body, attempt.header(SIGNATURE_HEADER)));
    }
    eventually("delivered = 1", || {
        webhooks.stats().delivered.load(Relaxed) == 1
    })
    .await;
    assert_eq!(counts(webhooks.stats()), [1, 0, 2, 0]);
    assert!(receiver.is_idle());
}

#[tokio::test]
async fn a_client_error_is_final() {
    // Arrange
    let mut receiver = spawn_receiver(|_| Reply::Status(400)).await;
    let webhooks = Webhooks::start(fast_config(vec![receiver.url.clone()], None));

    // Act
    webhooks.notify(rollback_event());
    let request = receiver.next().await;

    // Assert
    assert_eq!(
        request.header(SIGNATURE_HEADER),
        "",
        "no secret, no signature"
    );
    eventually("failed = 1", || webhooks.stats().failed.load(Relaxed) == 1).await;
    assert_eq!(counts(webhooks.stats()), [0, 1, 0, 0]);
    assert!(receiver.is_idle(), "a 400 is not retried");
}

#[tokio::test]
async fn a_dead_url_does_not_delay_a_healthy_one_and_fails_after_max_attempts() {
    // Arrange: a port that was bound and closed refuses connections; its retries are slow
    // enough (≥ 150 ms + 300 ms of backoff) that waiting for them would show.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead_url = format!("http://{}/hook", dead.local_addr().expect("address"));
    drop(dead);
    let mut healthy = spawn_receiver(|_| Reply::Status(200)).await;
    let config = WebhookConfig {
        initial_backoff: Duration::from_millis(300),
        ..fast_config(vec![dead_url, healthy.url.clone()], None)
    };
    let webhooks = Webhooks::start(config);
    let stats = webhooks.stats();

    // Act
    webhooks.notify(rollback_event());
    healthy.next().await;

    // Assert
    assert_eq!(
        stats.failed.load(Relaxed),
        0,
        "the healthy URL did not wait for the dead one"
    );
    eventually("failed = 1", || stats.failed.load(Relaxed) == 1).await;
    eventually("delivered = 1", || stats.delivered.load(Relaxed) == 1).await;
    assert_eq!(
        counts(stats),
        [1, 1, 2, 0],
        "3 attempts: 2 retries, then given up"
    );
}

#[tokio::test]
async fn notify_on_a_full_queue_returns_at_once_and_counts_the_drop() {
    // Arrange: the first event stalls in delivery, the second fills the one-slot queue.
    let mut receiver = spawn_receiver(|_| Reply::Stall).await;
    let config = WebhookConfig {
        queue: 1,
        timeout: Duration::from_secs(5),
        ..fast_config(vec![receiver.url.clone()], None)
    };
    let webhooks = Webhooks::start(config);
    webhooks.notify(rollback_event());
    receiver.next().await;
    webhooks.notify(rollback_event());

    // Act
    let started = Instant::now();
    webhooks.notify(rollback_event());
    let took = started.elapsed();

    // Assert
    assert!(took < Duration::from_millis(50), "notify took {took:?}");
    assert_eq!(counts(webhooks.stats()), [0, 0, 0, 1]);
    assert_eq!(webhooks.stats().pending.load(Relaxed), 2);

    // Shutdown gives up on the stalled receiver after its grace and abandons both events.
    let started = Instant::now();
    webhooks.shutdown(Duration::from_millis(100)).await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "shutdown took {:?}",
        started.elapsed()
    );
    assert_eq!(webhooks.stats().pending.load(Relaxed), 0);
    assert!(receiver.is_idle(), "the queued event was never sent");
}

#[tokio::test]
async fn shutdown_delivers_what_is_queued_then_refuses_new_events() {
    // Arrange
    let mut receiver = spawn_receiver(|_| Reply::Status(200)).await;
    let webhooks = Webhooks::start(fast_config(vec![receiver.url.clone()], None));
    let events: Vec<WebhookEvent> = (0..3).map(|_| rollback_event()).collect();
    for event in &events {
        webhooks.notify(event.clone());
    }

    // Act
    webhooks.shutdown(PATIENCE).await;

    // Assert: all delivered before shutdown returned, in order.
    assert_eq!(counts(webhooks.stats()), [3, 0, 0, 0]);
    for event in &events {
        assert_eq!(
            receiver.next().await.header(EVENT_ID_HEADER),
            event.id.to_string()
        );
    }
    webhooks.notify(rollback_event());
    assert_eq!(webhooks.stats().dropped.load(Relaxed), 1);
    assert!(receiver.is_idle());
}

/// End to end: the controller's completion and rollback decisions reach a receiver, signed.
#[tokio::test]
async fn release_completion_and_rollback_are_delivered_signed() {
    let mut receiver = spawn_receiver(|n| {
        if n == 1 {
            Reply::Status(503)
        } else {
            Reply::Status(200)
        }
    })
    .await;
    let url = receiver.url.clone();
    let app = crate::helpers::spawn_app_with(move |c| {
        c.webhooks = fast_config(vec![url], Some("hook-secret"))
    })
    .await;
    let token = app.create_token("app", "client").await;
    for flag in ["a", "b"] {
        app.put_flag(crate::helpers::bool_flag(flag, 0.0)).await;
    }
    let plan = serde_json::json!({"name": "hooked", "policy": "checkout", "overlap": true,
        "modules": [{"flag": "a"}, {"flag": "b", "stages": {"percentages": [50, 100], "min_duration": "1h"}}], "stages": {"percentages": [100], "min_duration": "0s", "min_exposures": 0}});
    let id = app.create_release(plan).await;
    app.admin_post(
        &format!("/api/v1/releases/{id}/start"),
        serde_json::json!({}),
    )
    .await;

    // Module a completes at once (one stage, no bake): a completion event.
    let completion = receiver.next().await;
    assert_eq!(completion.method, "POST");
    assert_eq!(completion.header("x-rollgate-event"), "completion");
    assert!(rollgate::webhooks::verify(
        "hook-secret",
        &completion.body,
        completion.header("x-rollgate-signature")
    ));
    assert!(!rollgate::webhooks::verify(
        "wrong",
        &completion.body,
        completion.header("x-rollgate-signature")
    ));

    // A data-loss event on b: rollback, delivered after one 503 retry with the same id.
    let (code, _) = app
        .signals(
            &token,
            serde_json::json!([{"flag": "b", "variant": "on", "metric": "data_loss"}]),
        )
        .await;
    assert_eq!(code, 200);
    let first = receiver.next().await;
    let retry = receiver.next().await;
    assert_eq!(
        first.header("x-rollgate-event-id"),
        retry.header("x-rollgate-event-id")
    );
    let event = retry.json();
    assert_eq!(event["kind"], "rollback");
    assert_eq!(event["release"], "hooked");
    assert_eq!(event["module"], "b");
    assert_eq!(event["actor"], "controller");
    assert!(event["reason"].as_str().unwrap().contains("data_loss"));
    assert_eq!(event["numbers"]["guards"]["guard"]["count_since_start"], 1);
}
