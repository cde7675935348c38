//! Fuzzing the parsers that take outside input through one real server over HTTP: OFREP
//! request bodies (single and bulk), Alertmanager payloads, flag PUTs and policy PUTs (JSON
//! and TOML). Inputs come from the structure-aware generators of `tests/fuzz/gen.rs`, seeded
//! with the valid documents of `tests/fuzz/targets.rs`. For every input: no 5xx, the status is
//! one the contract lists, a 4xx body is a clear error (naming the field where there is one),
//! and a refused write leaves the state as it was.
//!
//! Deterministic by default (fixed seed); `PROPTEST_CASES` / `PROPTEST_RNG_SEED` override.

#[path = "../fuzz/gen.rs"]
mod gen;
#[path = "../fuzz/targets.rs"]
mod targets;

use crate::helpers::{spawn_app, TestApp};
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestError, TestRunner};
use reqwest::Method;
use serde_json::Value;
use std::sync::Arc;

/// Statuses a fuzzed request may get: success, not modified, or a client error.
const ALLOWED: &[u16] = &[200, 201, 204, 304, 400, 401, 404, 409, 413, 422];

struct Answer {
    status: u16,
    body: Value,
    text: String,
}

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> Answer {
    let r = app
        .admin(method, path)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("the server answers");
    let status = r.status().as_u16();
    let text = r.text().await.expect("a readable body");
    Answer {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    }
}

async fn get(app: &TestApp, path: &str) -> Value {
    let r = app.admin(Method::GET, path).send().await.unwrap();
    assert_eq!(r.status(), 200, "GET {path}");
    r.json().await.unwrap()
}

/// The state a refused write must not change.
async fn state(app: &TestApp) -> (Value, Value, Value) {
    (
        get(app, "/api/v1/flags").await,
        get(app, "/api/v1/policies").await,
        get(app, "/api/v1/releases").await,
    )
}

fn check(condition: bool, what: &str, input: &[u8], answer: &Answer) -> Result<(), TestCaseError> {
    if condition {
        Ok(())
    } else {
        Err(TestCaseError::fail(format!(
            "{what}: {} {}\ninput: {}",
            answer.status,
            answer.text,
            String::from_utf8_lossy(input)
        )))
    }
}

/// A rollgate API answer: an allowed status; a 4xx carries `{"error": {code, message}}`, and a
/// 422 also the field; a 400 names the field unless the body as a whole is unreadable.
fn check_api(input: &[u8], a: &Answer) -> Result<(), TestCaseError> {
    check(
        ALLOWED.contains(&a.status),
        "status outside the contract",
        input,
        a,
    )?;
    if a.status >= 400 {
        let error = &a.body["error"];
        let text = |k: &str| error[k].as_str().unwrap_or_default();
        check(!text("code").is_empty(), "4xx without error.code", input, a)?;
        check(
            !text("message").trim().is_empty(),
            "4xx without error.message",
            input,
            a,
        )?;
        if a.status == 422 {
            check(
                !text("field").is_empty(),
                "422 without error.field",
                input,
                a,
            )?;
        }
        if a.status == 400 {
            let whole_body = [
                "malformed JSON",
                "TOML parse error",
                "UTF-8",
                "request body",
            ]
            .iter()
            .any(|p| text("message").contains(p));
            check(
                !text("field").is_empty() || whole_body,
                "400 names no field",
                input,
                a,
            )?;
        }
    }
    Ok(())
}

/// An OFREP answer: an allowed status; errors in OFREP's shape, successes complete.
fn check_ofrep(input: &[u8], a: &Answer, single: bool) -> Result<(), TestCaseError> {
    check(
        ALLOWED.contains(&a.status),
        "status outside the contract",
        input,
        a,
    )?;
    match a.status {
        200 if single => {
            for k in ["key", "reason", "variant", "metadata"] {
                check(a.body.get(k).is_some(), "success without {k}", input, a)?;
            }
            check(
                a.body.get("value").is_some(),
                "success without value",
                input,
                a,
            )?;
        }
        200 => check(
            a.body["flags"].is_array(),
            "bulk success without flags",
            input,
            a,
        )?,
        304 => {}
        _ => {
            let code = a.body["errorCode"].as_str().unwrap_or_default();
            check(
                [
                    "PARSE_ERROR",
                    "INVALID_CONTEXT",
                    "TARGETING_KEY_MISSING",
                    "FLAG_NOT_FOUND",
                    "GENERAL",
                ]
                .contains(&code),
                "4xx without an OFREP errorCode",
                input,
                a,
            )?;
            let details = a.body["errorDetails"].as_str().unwrap_or_default();
            check(
                !details.trim().is_empty(),
                "4xx without errorDetails",
                input,
                a,
            )?;
        }
    }
    Ok(())
}

/// Runs `cases` inputs from the strategy `make` builds through `case` against one server.
async fn fuzz<M, S, F, Fut>(app: Arc<TestApp>, cases: u32, make: M, case: F)
where
    M: FnOnce() -> S + Send + 'static,
    S: Strategy<Value = Vec<u8>>,
    F: Fn(Arc<TestApp>, Vec<u8>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), TestCaseError>>,
{
    let handle = tokio::runtime::Handle::current();
    let result = tokio::task::spawn_blocking(move || {
        let mut runner = TestRunner::new(gen::config(cases));
        runner.run(&make(), |input| handle.block_on(case(app.clone(), input)))
    })
    .await
    .expect("the fuzz runner does not panic");
    match result {
        Ok(()) => {}
        Err(TestError::Fail(why, input)) => panic!(
            "{why}\nminimal input ({} bytes): {}",
            input.len(),
            String::from_utf8_lossy(&input)
        ),
        Err(e) => panic!("{e}"),
    }
}

async fn seeded_app() -> Arc<TestApp> {
    let app = spawn_app().await;
    for (key, segment) in targets::segments() {
        let r = app
            .admin(Method::PUT, &format!("/api/v1/segments/{key}"))
            .json(&segment)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "PUT segment {key}: {}", r.status());
    }
    for flag in targets::flag_seeds() {
        app.put_flag(flag).await;
    }
    Arc::new(app)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzzed_ofrep_bodies_get_a_clear_answer_and_change_nothing() {
    let app = seeded_app().await;
    let before = state(&app).await;
    fn bodies() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            6 => gen::json_body(targets::context_seeds()),
            1 => gen::deep_json("{\"context\":{\"a\":", "}}"),
        ]
    }
    let single = || {
        let keys = prop::sample::select(vec!["qr-ordering", "banner", "limits", "layout", "nope"]);
        (keys, bodies()).prop_map(|(key, body)| {
            let mut input = format!("{key}\n").into_bytes();
            input.extend(body);
            input
        })
    };
    fuzz(app.clone(), 400, single, |app, input| async move {
        let split = input.iter().position(|&b| b == b'\n').unwrap();
        let key = std::str::from_utf8(&input[..split]).unwrap();
        let path = format!("/ofrep/v1/evaluate/flags/{key}");
        let a = send(
            &app,
            Method::POST,
            &path,
            "application/json",
            input[split + 1..].to_vec(),
        )
        .await;
        check_ofrep(&input, &a, true)
    })
    .await;
    fuzz(app.clone(), 300, bodies, |app, input| async move {
        let a = send(
            &app,
            Method::POST,
            "/ofrep/v1/evaluate/flags",
            "application/json",
            input.clone(),
        )
        .await;
        check_ofrep(&input, &a, false)
    })
    .await;
    assert_eq!(state(&app).await, before, "an evaluation changed the state");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzzed_alertmanager_payloads_get_a_clear_answer_and_refusals_change_nothing() {
    let app = seeded_app().await;
    fuzz(
        app,
        300,
        || gen::json_body(targets::alert_seeds()),
        |app, input| async move {
            let before = state(&app).await;
            let a = send(
                &app,
                Method::POST,
                "/api/v1/alerts/alertmanager",
                "application/json",
                input.clone(),
            )
            .await;
            check_api(&input, &a)?;
            if a.status == 400 || a.status == 422 {
                check(
                    state(&app).await == before,
                    "a refused payload changed the state",
                    &input,
                    &a,
                )?;
            }
            Ok(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzzed_flag_puts_get_a_clear_answer_and_refusals_change_nothing() {
    let app = seeded_app().await;
    fuzz(
        app,
        300,
        || gen::json_body(targets::flag_seeds()),
        |app, input| async move {
            let key = serde_json::from_slice::<Value>(&input)
                .ok()
                .and_then(|v| v["key"].as_str().map(str::to_owned))
                .filter(|k| rollgate_eval::valid_flag_key(k))
                .unwrap_or_else(|| "qr-ordering".into());
            let before = state(&app).await;
            let a = send(
                &app,
                Method::PUT,
                &format!("/api/v1/flags/{key}"),
                "application/json",
                input.clone(),
            )
            .await;
            check_api(&input, &a)?;
            if a.status >= 400 {
                check(
                    state(&app).await == before,
                    "a refused flag changed the state",
                    &input,
                    &a,
                )?;
            }
            Ok(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzzed_policy_puts_get_a_clear_answer_and_refusals_change_nothing() {
    let app = seeded_app().await;
    let name = |input: &[u8]| {
        let text = String::from_utf8_lossy(input);
        let from_json = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["name"].as_str().map(str::to_owned));
        let from_toml = text.lines().find_map(|l| {
            let v = l
                .strip_prefix("name")?
                .trim_start()
                .strip_prefix('=')?
                .trim();
            Some(v.trim_matches('"').to_owned())
        });
        from_json
            .or(from_toml)
            .filter(|n| rollgate_eval::valid_flag_key(n))
            .unwrap_or_else(|| "checkout".into())
    };
    for (content_type, cases) in [("application/toml", 250), ("application/json", 150)] {
        let strategy = move || {
            if content_type.ends_with("toml") {
                gen::toml_body(targets::policy_toml_seeds()).boxed()
            } else {
                gen::json_body(targets::policy_json_seeds()).boxed()
            }
        };
        fuzz(app.clone(), cases, strategy, move |app, input| async move {
            let path = format!("/api/v1/policies/{}", name(&input));
            let before = state(&app).await;
            let a = send(&app, Method::PUT, &path, content_type, input.clone()).await;
            check_api(&input, &a)?;
            if a.status >= 400 {
                check(
                    state(&app).await == before,
                    "a refused policy changed the state",
                    &input,
                    &a,
                )?;
            }
            Ok(())
        })
        .await;
    }
}
