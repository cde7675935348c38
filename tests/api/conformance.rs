//! The shared conformance vectors (`eval/tests/vectors/evaluation.json`) run against the real
//! server over OFREP: the server and the pure core cannot disagree.

use crate::helpers::spawn_app;
use reqwest::Method;
use serde_json::Value;

#[tokio::test]
async fn server_answers_every_conformance_vector_over_ofrep() {
    let app = spawn_app().await;
    let token = app.create_token("conformance", "client").await;
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/eval/tests/vectors/evaluation.json"
    );
    let suite: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for segment in suite["segments"].as_array().unwrap() {
        let key = segment["key"].as_str().unwrap();
        let r = app
            .admin(Method::PUT, &format!("/api/v1/segments/{key}"))
            .json(segment)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "segment {key}: {}", r.status());
    }
    for flag in suite["flags"].as_array().unwrap() {
        app.put_flag(flag.clone()).await;
    }

    let cases = suite["cases"].as_array().unwrap();
    let mut failures = Vec::new();
    for case in cases {
        let (status, body) = app
            .evaluate(
                &token,
                case["flag"].as_str().unwrap(),
                case["context"].clone(),
            )
            .await;
        let expect = &case["expect"];
        let ok = match expect.get("error") {
            Some(code) => {
                let expected_status = if code == "FLAG_NOT_FOUND" { 404 } else { 400 };
                status == expected_status && body["errorCode"] == *code
            }
            None => {
                status == 200
                    && body["value"] == expect["value"]
                    && body["variant"] == expect["variant"]
                    && body["reason"] == expect["reason"]
            }
        };
        if !ok {
            failures.push(format!(
                "{}: got {status} {body}, expected {expect}",
                case["name"]
            ));
        }
    }

    assert!(cases.len() >= 50, "the suite has {} cases", cases.len());
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
