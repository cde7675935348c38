//! The shared conformance vectors (`eval/tests/vectors/evaluation.json`), loaded into a real
//! server and evaluated through the SDK's public API.

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_conformance_vector_evaluates_as_published_through_the_sdk() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../eval/tests/vectors/evaluation.json"
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
                serde_json::json!({"value": s.value, "variant": s.variant, "reason": s.reason.as_str()})
            }
            Err(e) => serde_json::json!({"error": e.code()}),
        };
        if got != case.expect {
            failures.push(format!("{}: want {}, got {got}", case.name, case.expect));
        }
    }
    assert!(file.cases.len() >= 100, "{} cases", file.cases.len());
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        file.cases.len(),
        failures.join("\n")
    );
    client.shutdown().await;
}
