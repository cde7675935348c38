//! SDK/server agreement: 100,000 random contexts, flags of every type with rules, segments and
//! rollouts; the SDK's local answer equals the server's OFREP bulk answer (value, variant,
//! reason, error code, and the revision the answer came from) for every flag and context.

use crate::helpers::spawn_server;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rollgate_client::{Client, Context};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CONTEXTS: usize = 100_000;
const WORKERS: usize = 16;

fn flags() -> Vec<Value> {
    vec![
        json!({"key": "ag-bool", "type": "boolean", "variants": {"off": false, "on": true},
            "off_variant": "off", "on_variant": "on", "rollout": 37.5, "rules": [
                {"when": [{"attribute": "tier", "op": "in", "values": ["gold", "platinum"]}], "variant": "on"},
                {"when": [{"segment": "seniors"}], "variant": "off"},
                {"when": [{"attribute": "app_version", "op": "semver_gte", "values": ["3.1.0"]}], "rollout": 50}]}),
        json!({"key": "ag-string", "type": "string", "variants": {"a": "alpha", "b": "beta", "c": "gamma"},
            "off_variant": "a", "on_variant": "b", "rollout": 20, "salt": "shared-salt", "rules": [
                {"when": [{"attribute": "country", "op": "eq", "values": ["NL"]}, {"attribute": "age", "op": "gte", "values": [30]}], "variant": "c"},
                {"when": [{"attribute": "email", "op": "ends_with", "values": ["@example.com"]}], "variant": "b"},
                {"when": [{"attribute": "age", "op": "lt", "values": [18]}], "variant": "a"}]}),
        json!({"key": "ag-number", "type": "number", "variants": {"low": 1, "mid": 2.5, "high": 10},
            "off_variant": "low", "on_variant": "mid", "rollout": 60, "rules": [
                {"when": [{"segment": "nl-modern"}], "variant": "high"},
                {"when": [{"attribute": "score", "op": "gte", "values": [80]}], "rollout": 25}]}),
        json!({"key": "ag-object", "type": "object", "variants": {"v1": {"layout": "grid"}, "v2": {"layout": "list", "n": 3}},
            "off_variant": "v1", "on_variant": "v2", "rollout": 10, "rules": [
                {"when": [{"attribute": "beta", "op": "eq", "values": [true]}], "variant": "v2"},
                {"when": [{"attribute": "country", "op": "not_in", "values": ["NL", "DE", "FR"]}], "variant": "v1"}]}),
        json!({"key": "ag-regex", "type": "boolean", "variants": {"off": false, "on": true},
            "off_variant": "off", "on_variant": "on", "rollout": 0, "rules": [
                {"when": [{"attribute": "targetingKey", "op": "matches", "values": ["^user-\\d*7$"]}], "variant": "on"},
                {"when": [{"attribute": "email", "op": "contains", "values": ["+test"]}], "variant": "on"}]}),
        json!({"key": "ag-killed", "type": "string", "variants": {"old": "old", "new": "new"},
            "off_variant": "old", "on_variant": "new", "enabled": false, "rollout": 100}),
        json!({"key": "ag-static", "type": "number", "variants": {"one": 1, "two": 2},
            "off_variant": "one", "on_variant": "two", "rollout": 100}),
        json!({"key": "ag-split", "type": "boolean", "variants": {"off": false, "on": true},
            "off_variant": "off", "on_variant": "on", "rollout": 0.125, "salt": "shared-salt"}),
    ]
}

fn segments() -> Vec<Value> {
    vec![
        json!({"key": "seniors", "when": [{"attribute": "age", "op": "gte", "values": [60]}]}),
        json!({"key": "nl-modern", "when": [{"attribute": "country", "op": "eq", "values": ["NL"]},
            {"attribute": "app_version", "op": "semver_gte", "values": ["3.0.0"]}]}),
    ]
}

/// A random context whose attributes exercise the rules: most have a key, some lack
/// attributes, some carry the wrong types.
fn random_context(rng: &mut StdRng) -> Context {
    let mut c = Context::new();
    match rng.gen_range(0..100) {
        0 => {} // no targetingKey
        1 => {
            c.insert("targetingKey".into(), json!(""));
        }
        2 => {
            c.insert("targetingKey".into(), json!(42)); // not a string: INVALID_CONTEXT
        }
        3..=50 => {
            c.insert(
                "targetingKey".into(),
                json!(format!("user-{}", rng.gen_range(0..1_000_000))),
            );
        }
        _ => {
            c.insert(
                "targetingKey".into(),
                json!(format!("{:x}", rng.gen::<u64>())),
            );
        }
    }
    let pick =
        |rng: &mut StdRng, options: &[Value]| options[rng.gen_range(0..options.len())].clone();
    if rng.gen_bool(0.8) {
        c.insert(
            "tier".into(),
            pick(
                rng,
                &[
                    json!("free"),
                    json!("gold"),
                    json!("platinum"),
                    json!("standard"),
                    json!(7),
                ],
            ),
        );
    }
    if rng.gen_bool(0.8) {
        let age = if rng.gen_bool(0.9) {
            json!(rng.gen_range(0..100))
        } else {
            json!(format!("{}", rng.gen_range(0..100)))
        };
        c.insert("age".into(), age);
    }
    if rng.gen_bool(0.8) {
        c.insert(
            "country".into(),
            pick(
                rng,
                &[
                    json!("NL"),
                    json!("DE"),
                    json!("FR"),
                    json!("US"),
                    json!(null),
                ],
            ),
        );
    }
    if rng.gen_bool(0.7) {
        c.insert(
            "app_version".into(),
            pick(
                rng,
                &[
                    json!("2.9.1"),
                    json!("3.0.0"),
                    json!("3.1.0"),
                    json!("3.2.0-beta.1"),
                    json!("v4.1"),
                    json!("garbage"),
                    json!(3),
                ],
            ),
        );
    }
    if rng.gen_bool(0.5) {
        c.insert(
            "email".into(),
            pick(
                rng,
                &[
                    json!("a@example.com"),
                    json!("b+test@corp.io"),
                    json!("c@corp.io"),
                ],
            ),
        );
    }
    if rng.gen_bool(0.5) {
        c.insert(
            "beta".into(),
            pick(rng, &[json!(true), json!(false), json!("true")]),
        );
    }
    if rng.gen_bool(0.6) {
        c.insert("score".into(), json!(rng.gen_range(0.0..100.0)));
    }
    c
}

/// What the SDK answers, in OFREP's bulk entry shape (without metadata).
fn sdk_answer(client: &Client, key: &str, context: &Context) -> Value {
    match client.flags().evaluate(key, context) {
        Ok(s) => {
            json!({"key": key, "value": s.value, "reason": s.reason.as_str(), "variant": s.variant, "revision": s.revision})
        }
        Err(e) => json!({"key": key, "errorCode": e.code()}),
    }
}

/// The server's bulk entry, normalised the same way.
fn server_answer(entry: &Value) -> Value {
    let key = entry["key"].clone();
    match entry.get("errorCode") {
        Some(code) => json!({"key": key, "errorCode": code}),
        None => {
            json!({"key": key, "value": entry["value"], "reason": entry["reason"], "variant": entry["variant"], "revision": entry["metadata"]["revision"]})
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_and_the_server_agree_on_100_000_random_contexts() {
    let server = spawn_server().await;
    for s in segments() {
        server.put_segment(s).await;
    }
    let flags = flags();
    for f in &flags {
        server.put_flag(f.clone()).await;
    }
    let token = server.client_token("agreement").await;
    let client = Client::builder(&server.address, &token)
        .flush_interval(Duration::from_secs(3600))
        .connect()
        .await
        .unwrap();
    assert_eq!(client.status().flags, flags.len());
    let keys: Arc<Vec<String>> = Arc::new(
        flags
            .iter()
            .map(|f| f["key"].as_str().unwrap().to_owned())
            .collect(),
    );

    let seed: u64 = rand::random();
    let started = Instant::now();
    let url = server.url("/ofrep/v1/evaluate/flags");
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..WORKERS {
        let (client, keys, url, token) = (client.clone(), keys.clone(), url.clone(), token.clone());
        let http = reqwest::Client::new();
        workers.spawn(async move {
            let mut rng =
                StdRng::seed_from_u64(seed ^ (w as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let mut mismatches = Vec::new();
            let mut answers = [0usize; 2]; // [served, errors]
            for _ in 0..CONTEXTS / WORKERS {
                let context = random_context(&mut rng);
                let response: Value = http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({"context": context}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                // A context the server refuses as a whole (a non-string targetingKey) is
                // that error for every flag.
                let entries: Vec<Value> = match response["flags"].as_array() {
                    Some(entries) => entries.clone(),
                    None => keys
                        .iter()
                        .map(|k| json!({"key": k, "errorCode": response["errorCode"].clone()}))
                        .collect(),
                };
                assert_eq!(entries.len(), keys.len(), "{response}");
                for entry in &entries {
                    let key = entry["key"].as_str().unwrap();
                    let (want, got) = (server_answer(entry), sdk_answer(&client, key, &context));
                    answers[usize::from(want.get("errorCode").is_some())] += 1;
                    if want != got && mismatches.len() < 10 {
                        mismatches.push(format!(
                            "context {}: server {want}, sdk {got}",
                            Value::Object(context.clone())
                        ));
                    }
                }
            }
            (mismatches, answers)
        });
    }
    let mut mismatches = Vec::new();
    let mut answers = [0usize; 2];
    while let Some(done) = workers.join_next().await {
        let (m, a) = done.unwrap();
        mismatches.extend(m);
        answers[0] += a[0];
        answers[1] += a[1];
    }
    let took = started.elapsed();
    eprintln!(
        "agreement: {CONTEXTS} contexts × {} flags in {took:?} (seed {seed})",
        keys.len()
    );
    assert!(
        mismatches.is_empty(),
        "seed {seed}: SDK and server disagree:\n{}",
        mismatches.join("\n")
    );
    assert_eq!(
        answers[0] + answers[1],
        (CONTEXTS / WORKERS) * WORKERS * keys.len()
    );
    assert!(
        answers[1] > 1_000 && answers[0] > 500_000,
        "errors and answers both exercised: {answers:?}"
    );
    client.shutdown().await;
}
