//! Ops API for flags: CRUD, validation, manual ramp, kill switch.

use crate::helpers::{bool_flag, spawn_app};
use reqwest::Method;
use serde_json::{json, Value};

async fn error_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    (status, body["error"].clone())
}

#[tokio::test]
async fn a_flag_is_created_then_replaced_read_and_listed() {
    let app = spawn_app().await;

    let created = app
        .admin(Method::PUT, "/api/v1/flags/qr-ordering")
        .json(&bool_flag("qr-ordering", 25.0))
        .send()
        .await
        .unwrap();
    let replaced = app
        .admin(Method::PUT, "/api/v1/flags/qr-ordering")
        .json(&bool_flag("qr-ordering", 30.0))
        .send()
        .await
        .unwrap();
    let read: Value = app
        .admin(Method::GET, "/api/v1/flags/qr-ordering")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let list: Value = app
        .admin(Method::GET, "/api/v1/flags")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    assert_eq!(created.status(), 201);
    assert_eq!(replaced.status(), 200);
    assert_eq!(read["rollout"], 30.0);
    assert_eq!(read["off_variant"], "off");
    assert_eq!(list["flags"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn malformed_json_wrong_types_and_unknown_keys_are_400_naming_the_field() {
    let app = spawn_app().await;
    let put = |body: String| {
        app.admin(Method::PUT, "/api/v1/flags/f")
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    let (status, error) = error_of(put("{\"key\": ".into()).await.unwrap()).await;
    assert_eq!(status, 400);
    assert_eq!(error["code"], "bad_request");

    let mut wrong_type = bool_flag("f", 5.0);
    wrong_type["enabled"] = json!("yes");
    let (status, error) = error_of(put(wrong_type.to_string()).await.unwrap()).await;
    assert_eq!(status, 400);
    assert_eq!(error["field"], "enabled");

    let mut unknown = bool_flag("f", 5.0);
    unknown["rules"] =
        json!([{"when": [{"attribute": "tier", "op": "in", "valuez": ["x"]}], "variant": "on"}]);
    let (status, error) = error_of(put(unknown.to_string()).await.unwrap()).await;
    assert_eq!(status, 400);
    assert!(
        error["field"]
            .as_str()
            .unwrap()
            .starts_with("rules[0].when[0]"),
        "{error}"
    );
    assert!(error["message"].as_str().unwrap().contains("valuez"));
}

#[tokio::test]
async fn semantically_invalid_flags_are_422_naming_the_field() {
    let app = spawn_app().await;
    let cases = [
        (json!({"rollout": 150}), "rollout"),
        (json!({"rollout": 1.00001}), "rollout"),
        (json!({"off_variant": "missing"}), "off_variant"),
        (
            json!({"variants": {"off": false, "on": "yes"}}),
            "variants.on",
        ),
        (json!({"key": "other"}), "key"),
        (
            json!({"rules": [{"when": [{"attribute": "age", "op": "gte", "values": ["old"]}], "variant": "on"}]}),
            "rules[0].when[0].values",
        ),
        (
            json!({"rules": [{"when": [{"attribute": "v", "op": "semver_gte", "values": ["one"]}], "variant": "on"}]}),
            "rules[0].when[0].values",
        ),
        (
            json!({"rules": [{"when": [{"attribute": "e", "op": "matches", "values": ["x", "("]}], "variant": "on"}]}),
            "rules[0].when[0].values[1]",
        ),
        (
            json!({"rules": [{"when": [], "variant": "on", "rollout": 5}]}),
            "rules[0]",
        ),
        (
            json!({"rules": [{"when": [{"segment": "ghosts"}], "variant": "on"}]}),
            "rules[0].when[0].segment",
        ),
    ];
    for (patch, field) in cases {
        let mut flag = bool_flag("f", 5.0);
        for (k, v) in patch.as_object().unwrap() {
            flag[k] = v.clone();
        }

        let (status, error) = error_of(
            app.admin(Method::PUT, "/api/v1/flags/f")
                .json(&flag)
                .send()
                .await
                .unwrap(),
        )
        .await;

        assert_eq!(status, 422, "{patch} → {error}");
        assert_eq!(error["field"], field, "{patch} → {error}");
    }
    let list: Value = app
        .admin(Method::GET, "/api/v1/flags")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["flags"], json!([]), "nothing invalid was stored");
}

#[tokio::test]
async fn invalid_flag_keys_are_rejected() {
    let app = spawn_app().await;

    let r = app
        .admin(Method::PUT, "/api/v1/flags/Bad_Key")
        .json(&bool_flag("Bad_Key", 5.0))
        .send()
        .await
        .unwrap();

    assert_eq!(r.status(), 422);
}

#[tokio::test]
async fn manual_rollout_validates_the_percentage_and_unknown_flags() {
    let app = spawn_app().await;
    app.put_flag(bool_flag("f", 0.0)).await;
    let set = |key: &str, body: Value| {
        app.admin(Method::PUT, &format!("/api/v1/flags/{key}/rollout"))
            .json(&body)
            .send()
    };

    let ok: Value = set("f", json!({"percentage": 12.5}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ok["rollout"], 12.5);
    assert_eq!(
        set("f", json!({"percentage": -1})).await.unwrap().status(),
        422
    );
    assert_eq!(
        set("f", json!({"percentage": 100.5}))
            .await
            .unwrap()
            .status(),
        422
    );
    assert_eq!(
        set("f", json!({"percentage": "ten"}))
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(set("f", json!({"pct": 10})).await.unwrap().status(), 400);
    assert_eq!(
        set("nope", json!({"percentage": 10}))
            .await
            .unwrap()
            .status(),
        404
    );
    let read: Value = app
        .admin(Method::GET, "/api/v1/flags/f")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        read["rollout"], 12.5,
        "rejected changes left the flag alone"
    );
}

#[tokio::test]
async fn raising_the_rollout_only_adds_users() {
    let app = spawn_app().await;
    let token = app.create_token("app", "client").await;
    app.put_flag(bool_flag("ramp", 5.0)).await;
    let cohort = || async {
        let mut on = Vec::new();
        for i in 0..300 {
            let (_, body) = app
                .evaluate(&token, "ramp", json!({"targetingKey": format!("u{i}")}))
                .await;
            on.push(body["value"] == true);
        }
        on
    };
    let at_5 = cohort().await;

    app.admin(Method::PUT, "/api/v1/flags/ramp/rollout")
        .json(&json!({"percentage": 25}))
        .send()
        .await
        .unwrap();
    let at_25 = cohort().await;

    assert!(
        at_5.iter()
            .zip(&at_25)
            .all(|(before, after)| !before || *after),
        "every 5% user is still in at 25%"
    );
    assert!(at_25.iter().filter(|x| **x).count() > at_5.iter().filter(|x| **x).count());
}

#[tokio::test]
async fn kill_and_unkill_flip_the_switch_and_delete_removes() {
    let app = spawn_app().await;
    app.put_flag(bool_flag("f", 100.0)).await;

    let killed: Value = app
        .admin(Method::POST, "/api/v1/flags/f/kill")
        .json(&json!({"reason": "incident 42"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let revived: Value = app
        .admin(Method::POST, "/api/v1/flags/f/unkill")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let deleted = app
        .admin(Method::DELETE, "/api/v1/flags/f")
        .send()
        .await
        .unwrap();
    let gone = app
        .admin(Method::GET, "/api/v1/flags/f")
        .send()
        .await
        .unwrap();

    assert_eq!(killed["enabled"], false);
    assert_eq!(revived["enabled"], true);
    assert_eq!(deleted.status(), 204);
    assert_eq!(gone.status(), 404);
    assert_eq!(
        app.admin(Method::POST, "/api/v1/flags/f/kill")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn huge_bodies_get_413_with_a_json_error() {
    let app = spawn_app().await;
    let mut flag = bool_flag("f", 5.0);
    flag["description"] = json!("x".repeat(2 << 20));

    let (status, error) = error_of(
        app.admin(Method::PUT, "/api/v1/flags/f")
            .json(&flag)
            .send()
            .await
            .unwrap(),
    )
    .await;

    assert_eq!(status, 413);
    assert_eq!(error["code"], "payload_too_large");
}

#[tokio::test]
async fn unknown_paths_and_methods_get_json_errors() {
    let app = spawn_app().await;

    let (status, error) = error_of(
        app.admin(Method::GET, "/api/v1/nothing")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, error["code"].as_str()), (404, Some("not_found")));

    let (status, error) = error_of(
        app.admin(Method::PATCH, "/api/v1/flags")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, error["code"].as_str()),
        (405, Some("method_not_allowed"))
    );
}

#[tokio::test]
async fn a_replacement_without_salt_keeps_the_salt_in_force() {
    let app = spawn_app().await;
    let put = |body: Value| {
        let request = app
            .admin(Method::PUT, "/api/v1/flags/qr-ordering")
            .json(&body);
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let mut salted = bool_flag("qr-ordering", 25.0);
    salted["salt"] = json!("cohort-2026");
    assert_eq!(put(salted).await["salt"], "cohort-2026");

    // A rule edit that does not mention the salt keeps it.
    let mut edited = bool_flag("qr-ordering", 25.0);
    edited["rules"] =
        json!([{"when": [{"attribute": "tier", "op": "eq", "values": ["gold"]}], "variant": "on"}]);
    let saved = put(edited).await;
    assert_eq!(saved["salt"], "cohort-2026");
    assert_eq!(saved["rules"].as_array().map(Vec::len), Some(1));

    // Naming the key as the salt returns to the default bucketing.
    let mut reset = bool_flag("qr-ordering", 25.0);
    reset["salt"] = json!("qr-ordering");
    assert_eq!(put(reset).await["salt"], "qr-ordering");
}

#[tokio::test]
async fn a_top_level_unknown_or_missing_field_is_named_in_the_error() {
    let app = spawn_app().await;

    let mut unknown = bool_flag("named", 0.0);
    unknown["bogus"] = json!(1);
    let mut missing = bool_flag("named", 0.0);
    missing.as_object_mut().unwrap().remove("variants");

    for (body, field) in [
        (unknown, "bogus"),
        (missing, "variants"),
        (json!({"": null}), "."),
    ] {
        let r = app
            .admin(Method::PUT, "/api/v1/flags/named")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let answer: Value = r.json().await.unwrap();
        assert_eq!(answer["error"]["field"], field, "{answer}");
    }
}

/// A boolean flag whose rule `when` lists `conditions`, then serves `on`.
fn flag_when(key: &str, rules: Value) -> Value {
    let mut flag = bool_flag(key, 0.0);
    flag["rules"] = rules;
    flag
}

fn matches(attribute: &str, patterns: Vec<&str>) -> Value {
    json!({"attribute": attribute, "op": "matches", "values": patterns})
}

#[tokio::test]
async fn a_flag_of_amplifying_patterns_is_refused_naming_the_pattern() {
    let app = spawn_app().await;

    for n in [300, 1000] {
        let flag = flag_when(
            "amplified",
            json!([{"when": [matches("email", vec![r"\w{20}"; n])], "variant": "on"}]),
        );
        let (status, error) = error_of(
            app.admin(Method::PUT, "/api/v1/flags/amplified")
                .json(&flag)
                .send()
                .await
                .unwrap(),
        )
        .await;

        assert_eq!(status, 422, "{n} patterns: {error}");
        assert_eq!(error["field"], "rules[0].when[0].values[0]", "{error}");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains("512.0 KiB"), "{message}");
    }
    let read = app
        .admin(Method::GET, "/api/v1/flags/amplified")
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 404);
}

#[tokio::test]
async fn patterns_each_within_the_limit_are_refused_where_the_flag_goes_over_its_budget() {
    let app = spawn_app().await;
    // About 275 KiB each compiled: fifteen fit in the 4 MiB of a flag, sixty do not.
    let flag = flag_when(
        "many",
        json!([
            {"when": [matches("email", vec![r"^\w+@corp\.com$"])], "variant": "on"},
            {"when": [matches("name", vec![r"\w{5}"; 60])], "variant": "on"},
        ]),
    );

    let (status, error) = error_of(
        app.admin(Method::PUT, "/api/v1/flags/many")
            .json(&flag)
            .send()
            .await
            .unwrap(),
    )
    .await;

    assert_eq!(status, 422, "{error}");
    let field = error["field"].as_str().unwrap();
    assert!(field.starts_with("rules[1].when[0].values["), "{field}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("4.0 MiB per flag"),
        "{error}"
    );
}

#[tokio::test]
async fn a_flag_with_reasonable_patterns_is_accepted_and_evaluates_over_ofrep() {
    let app = spawn_app().await;
    let token = app.create_token("web", "client").await;
    app.put_flag(flag_when(
        "staff-only",
        json!([{"when": [matches("email", vec![
            r"^[\w.-]+@([\w-]+\.)*corp\.com$",
            r"(?i)^qa-\d{1,6}@",
            r"\bbeta\b",
        ])], "variant": "on"}]),
    ))
    .await;

    let (status, staff) = app
        .evaluate(
            &token,
            "staff-only",
            json!({"targetingKey": "u1", "email": "ann.lee@mail.corp.com"}),
        )
        .await;
    let (_, tester) = app
        .evaluate(
            &token,
            "staff-only",
            json!({"targetingKey": "u2", "email": "QA-42@example.org"}),
        )
        .await;
    let (_, outsider) = app
        .evaluate(
            &token,
            "staff-only",
            json!({"targetingKey": "u3", "email": "ann@corp.com.evil.io"}),
        )
        .await;

    assert_eq!(status, 200, "{staff}");
    assert_eq!(
        (&staff["value"], &staff["reason"]),
        (&json!(true), &json!("TARGETING_MATCH"))
    );
    assert_eq!(tester["value"], true, "{tester}");
    assert_eq!(outsider["value"], false, "{outsider}");
}

#[tokio::test]
async fn a_segment_whose_patterns_take_a_flag_over_its_budget_is_refused_naming_its_condition() {
    let app = spawn_app().await;
    let heavy = |n: usize| json!({"key": "heavy", "when": [matches("name", vec![r"\w{5}"; n])]});
    let put_segment = |body: Value| {
        app.admin(Method::PUT, "/api/v1/segments/heavy")
            .json(&body)
            .send()
    };
    // About 275 KiB compiled each: the flag's own 6 and the segment's 7 fit in 4 MiB.
    assert_eq!(put_segment(heavy(7)).await.unwrap().status(), 201);
    app.put_flag(flag_when(
        "uses-heavy",
        json!([
            {"when": [matches("email", vec![r"\w{5}"; 6])], "variant": "on"},
            {"when": [{"segment": "heavy"}], "variant": "on"},
        ]),
    ))
    .await;

    // 12 fit on their own (a segment must fit one flag), not beside the flag's own 6.
    let (status, error) = error_of(put_segment(heavy(12)).await.unwrap()).await;

    assert_eq!(status, 422, "{error}");
    let field = error["field"].as_str().unwrap();
    assert!(field.starts_with("when[0].values["), "{field}");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.starts_with("flag \"uses-heavy\" (which uses this segment at rules[1].when[0]): ")
            && message.contains("4.0 MiB per flag"),
        "{message}"
    );
    let kept: Value = app
        .admin(Method::GET, "/api/v1/segments/heavy")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(kept["when"][0]["values"].as_array().unwrap().len(), 7);
    // A segment over one flag's budget on its own is refused before any flag is looked at.
    let (status, error) = error_of(put_segment(heavy(40)).await.unwrap()).await;
    assert_eq!(status, 422, "{error}");
    assert!(
        error["field"]
            .as_str()
            .unwrap()
            .starts_with("when[0].values["),
        "{error}"
    );
}

#[tokio::test]
async fn the_server_refuses_patterns_past_its_budget_but_never_a_kill_switch() {
    let app = spawn_app().await;
    // Flags of just under 4 MiB of patterns each: the 64 MiB of the server hold 17 of them.
    let heavy = |key: &str| {
        flag_when(
            key,
            json!([{"when": [matches("name", vec![r"\w{5}"; 14])], "variant": "on"}]),
        )
    };
    for i in 0..17 {
        app.put_flag(heavy(&format!("heavy-{i:02}"))).await;
    }

    let (status, error) = error_of(
        app.admin(Method::PUT, "/api/v1/flags/heavy-17")
            .json(&heavy("heavy-17"))
            .send()
            .await
            .unwrap(),
    )
    .await;

    assert_eq!(status, 422, "{error}");
    assert_eq!(error["field"], "rules[0].when[0].values[0]", "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("64.0 MiB for the server"),
        "{error}"
    );
    // Changes that do not grow the patterns still go through when the budget is full.
    let killed = app
        .admin(Method::POST, "/api/v1/flags/heavy-03/kill")
        .send()
        .await
        .unwrap();
    assert_eq!(killed.status(), 200);
    app.put_flag(bool_flag("plain", 10.0)).await;
    // Deleting one makes room.
    let deleted = app
        .admin(Method::DELETE, "/api/v1/flags/heavy-00")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    app.put_flag(heavy("heavy-17")).await;
}

#[tokio::test]
async fn a_kill_switch_does_not_wait_for_another_flags_heavy_compile() {
    // Arrange: a flag to kill, and a body whose patterns take long to compile (just under a
    // flag's budget, several times over: each PUT compiles them again).
    let app = spawn_app().await;
    app.put_flag(bool_flag("checkout", 50.0)).await;
    let heavy = flag_when(
        "heavy",
        json!([{"when": [matches("name", vec![r"\w{5}"; 14])], "variant": "on"}]),
    );
    let put_heavy = |n: usize| {
        let request = app
            .admin(Method::PUT, &format!("/api/v1/flags/heavy-{n}"))
            .json(&{
                let mut h = heavy.clone();
                h["key"] = json!(format!("heavy-{n}"));
                h
            })
            .send();
        async move {
            let r = request.await.unwrap();
            (r.status().as_u16(), std::time::Instant::now())
        }
    };

    // Act: three heavy writes in flight, then the kill switch right behind them.
    let heavy_writes = futures_util::future::join_all((0..3).map(put_heavy));
    let kill = async {
        // Let the heavy writes reach the server first (they are then compiling).
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        let r = app
            .admin(Method::POST, "/api/v1/flags/checkout/kill")
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), std::time::Instant::now())
    };
    let (heavy_done, (kill_status, killed_at)) = tokio::join!(heavy_writes, kill);

    // Assert: the kill answered before every heavy write (it never queued behind their
    // compilation), and all of them were applied.
    assert_eq!(kill_status, 200);
    for (status, done_at) in &heavy_done {
        assert_eq!(*status, 201);
        assert!(
            killed_at < *done_at,
            "the kill switch waited for a heavy write's compilation"
        );
    }
    let flag = app.admin_get("/api/v1/flags/checkout").await;
    assert_eq!(flag["enabled"], false, "{flag}");
}
