//! The shared conformance vectors (`eval/tests/vectors/evaluation.json`, and the release
//! audiences' `audiences.json`), loaded into a real server and evaluated through the SDK's
//! public API.

use crate::helpers::spawn_server;
use rollgate_client::Context;
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;

#[derive(Deserialize)]
struct EvaluationFile {
    segments: Vec<Value>,
    flags: Vec<Value>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    flag: String,
    context: Context,
    expect: Value,
}

/// Loads `file` into a fresh server and evaluates every case through the SDK; `Served` as
/// JSON: value, variant, reason, and `audience` when one decided.
async fn run_vectors(file: &str, min_cases: usize) {
    let path = format!(
        "{}/../../eval/tests/vectors/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let file: EvaluationFile =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let server = spawn_server().await;
    for s in &file.segments {
        server.put_segment(s.clone()).await;
    }
    for f in &file.flags {
        server.put_flag(f.clone()).await;
    }
    let client = server
        .sdk("conformance")
        .await
        .start_timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap();
    assert_eq!(
        client.status().flags,
        file.flags.len(),
        "every vector flag compiled in the SDK"
    );

    let flags = client.flags();
    let mut failures = Vec::new();
    for case in &file.cases {
        let got = match flags.evaluate(&case.flag, &case.context) {
            Ok(s) => {
                let mut got = serde_json::json!({"value": s.value, "variant": s.variant, "reason": s.reason.as_str()});
                if let Some(audience) = s.audience {
                    got["audience"] = audience.into();
                }
                got
            }
            Err(e) => serde_json::json!({"error": e.code()}),
        };
        if got != case.expect {
            failures.push(format!("{}: want {}, got {got}", case.name, case.expect));
        }
    }
    assert!(file.cases.len() >= min_cases, "{} cases", file.cases.len());
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        file.cases.len(),
        failures.join("\n")
    );
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_conformance_vector_evaluates_as_published_through_the_sdk() {
    run_vectors("evaluation.json", 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_audience_vector_evaluates_as_published_through_the_sdk() {
    run_vectors("audiences.json", 10).await;
}
