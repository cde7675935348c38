//! The OpenAPI document is exact: it lists what the routes answer (405 + `Allow` otherwise),
//! its hand-written mirrors of the eval model agree with the real types over HTTP, and the
//! places where it used to be looser than the server are tight. (The schemathesis run in
//! `tests/schemathesis/run.sh` fuzzes the same contract.)

use crate::helpers::{bool_flag, spawn_app, TestApp};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeSet;

async fn document(app: &TestApp) -> Value {
    let r = app
        .client
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
    let s = &doc["components"]["schemas"][name];
    assert!(s.is_object(), "no schema {name}");
    s
}

fn names(value: &Value) -> BTreeSet<String> {
    match value {
        Value::Object(map) => map.keys().cloned().collect(),
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect(),
        _ => BTreeSet::new(),
    }
}

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "PATCH"];

#[tokio::test]
async fn every_path_answers_exactly_its_documented_methods_and_405_carries_allow() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() > 20);
    for (path, item) in paths {
        let concrete = path
            .replace("{key}", "x")
            .replace("{name}", "x")
            .replace("{id}", "x");
        let documented: Vec<&str> = METHODS
            .into_iter()
            .filter(|m| item.get(m.to_lowercase()).is_some())
            .collect();
        for method in METHODS {
            let r = app
                .admin(Method::from_bytes(method.as_bytes()).unwrap(), &concrete)
                .send()
                .await
                .unwrap();
            if documented.contains(&method) {
                assert_ne!(r.status(), 405, "{method} {path} is documented");
                continue;
            }
            assert_eq!(r.status(), 405, "{method} {path} is not documented");
            let allow = r
                .headers()
                .get("allow")
                .map(|v| v.to_str().unwrap().to_owned());
            assert_eq!(
                allow.as_deref(),
                Some(documented.join(", ").as_str()),
                "Allow of {method} {path}"
            );
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"]["code"], "method_not_allowed");
        }
    }
}

#[tokio::test]
async fn every_operation_lists_its_error_answers_with_their_body_schema() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let at = format!("{method} {path}");
            let responses = &op["responses"];
            let ofrep = path.starts_with("/ofrep/");
            let error_schema = if ofrep { "OfrepError" } else { "ErrorBody" };
            let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
            if secured {
                assert!(responses["401"].is_object(), "{at}: 401");
            }
            let tag = op["tags"][0].as_str().unwrap();
            if [
                "flags", "segments", "policies", "tokens", "audit", "releases", "alerts",
            ]
            .contains(&tag)
            {
                assert!(responses["403"].is_object(), "{at}: 403");
            }
            if op["requestBody"].is_object() {
                assert!(responses["400"].is_object(), "{at}: 400");
                assert!(responses["413"].is_object(), "{at}: 413");
            }
            // A PUT to a keyed path creates; everything else names something that must exist.
            if path.contains('{') && !ofrep && method != "put" {
                assert!(responses["404"].is_object(), "{at}: 404");
            }
            for (status, response) in responses.as_object().unwrap() {
                if status.as_str() >= "400" && status != "503" {
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"],
                        format!("#/components/schemas/{error_schema}"),
                        "{at}: {status}"
                    );
                }
            }
        }
    }
    let detail = schema(&doc, "ErrorDetail");
    assert_eq!(
        names(&detail["required"]),
        names(&json!(["code", "message"]))
    );
    assert_eq!(
        names(&detail["properties"]),
        names(&json!(["code", "message", "field"]))
    );
}

#[tokio::test]
async fn the_document_is_tight_where_it_was_loose() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let paths = &doc["paths"];

    // `{}` is not a flag, a segment or a signal batch.
    for (name, required) in [
        (
            "Flag",
            json!(["key", "type", "variants", "off_variant", "on_variant"]),
        ),
        ("Segment", json!(["key", "when"])),
        ("SignalBatch", json!(["signals"])),
        ("Signal", json!(["flag", "variant", "metric"])),
        ("ClientReport", json!(["id", "revision", "applied_ms_ago"])),
    ] {
        assert_eq!(
            names(&schema(&doc, name)["required"]),
            names(&required),
            "{name}"
        );
        assert_eq!(schema(&doc, name)["additionalProperties"], false, "{name}");
    }
    let put_flag = &paths["/api/v1/flags/{key}"]["put"]["requestBody"];
    assert_eq!(put_flag["required"], true);
    assert_eq!(
        put_flag["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/Flag"
    );
    let op = &schema(&doc, "Op")["enum"];
    assert!(
        names(op).contains("semver_gte") && names(op).contains("matches"),
        "{op}"
    );
    assert_eq!(
        schema(&doc, "Condition")["oneOf"].as_array().unwrap().len(),
        2
    );

    // Signals: counts are integers ≥ 1, values numbers.
    let signal = &schema(&doc, "Signal")["properties"];
    assert_eq!(signal["count"]["minimum"], 1);
    assert!(names(&signal["count"]["type"]).contains("integer"));
    assert!(names(&signal["value"]["type"]).contains("number"));
    assert_eq!(
        schema(&doc, "SignalBatch")["properties"]["signals"]["maxItems"],
        10_000
    );

    // kill / unkill: the body may be absent, but it is never `null`.
    for action in ["kill", "unkill"] {
        let body = &paths[format!("/api/v1/flags/{{key}}/{action}")]["post"]["requestBody"];
        assert_eq!(body["required"], false, "{action}");
        assert_eq!(
            body["content"]["application/json"]["schema"],
            json!({"$ref": "#/components/schemas/ReasonRequest"}),
            "{action}"
        );
    }
    // Bulk OFREP takes no body at all.
    let bulk = &paths["/ofrep/v1/evaluate/flags"]["post"]["requestBody"];
    assert_eq!(bulk["required"], false);

    // max_count is an integer.
    let max_count = &schema(&doc, "Guard")["properties"]["max_count"];
    assert!(names(&max_count["type"]).contains("integer"), "{max_count}");
    assert_eq!(max_count["minimum"], 0);

    // The stream's format is one of two.
    let params = paths["/api/v1/stream"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let format = params.iter().find(|p| p["name"] == "format").unwrap();
    assert_eq!(
        format["schema"]["$ref"],
        "#/components/schemas/StreamFormat"
    );
    assert_eq!(
        names(&schema(&doc, "StreamFormat")["enum"]),
        names(&json!(["rollgate", "ofrep"]))
    );
    for (value, status) in [("rollgate", 200), ("ofrep", 200), ("bogus", 400)] {
        let r = app
            .admin(Method::GET, &format!("/api/v1/stream?format={value}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "format={value}");
    }
}

/// Checks a mirror schema against the real type over HTTP: the maximal example (every
/// property of the schema) is accepted; without each required property it is refused with 400
/// naming it; without each optional one it is still accepted; an unknown property is refused.
async fn mirror_agrees(
    doc: &Value,
    name: &str,
    full: &Value,
    send: impl AsyncFn(Value) -> (u16, Value),
) {
    let s = schema(doc, name);
    let properties = names(&s["properties"]);
    assert_eq!(
        properties,
        names(full),
        "{name}: the example uses every property"
    );
    let (status, body) = send(full.clone()).await;
    assert!((200..300).contains(&status), "{name} full: {status} {body}");
    let required = names(&s["required"]);
    for property in &properties {
        let mut without = full.clone();
        without.as_object_mut().unwrap().remove(property);
        let (status, body) = send(without).await;
        if required.contains(property) {
            assert_eq!(status, 400, "{name} without {property}: {body}");
            assert!(
                body.to_string().contains(property.as_str()),
                "{name} without {property}: {body}"
            );
        } else {
            assert!(
                (200..300).contains(&status),
                "{name} without {property}: {status} {body}"
            );
        }
    }
    let mut unknown = full.clone();
    unknown["colour"] = json!(1);
    assert_eq!(
        send(unknown).await.0,
        400,
        "{name} with an unknown property"
    );
}

async fn put(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    let r = app
        .admin(Method::PUT, path)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_mirrors_of_the_eval_model_agree_with_the_real_types() {
    let app = spawn_app().await;
    let doc = document(&app).await;

    let segment = json!({"key": "beta", "when": [{"attribute": "plan", "op": "eq", "values": ["pro"]}],
        "description": "pro users"});
    mirror_agrees(&doc, "Segment", &segment, async |body| {
        put(&app, "/api/v1/segments/beta", body).await
    })
    .await;

    let flag = json!({
        "key": "mirror", "type": "string", "variants": {"old": "a", "new": "b"},
        "off_variant": "old", "on_variant": "new", "enabled": true, "rollout": 12.5,
        "rules": [
            {"when": [{"attribute": "country", "op": "in", "values": ["de"], "segment": null}], "variant": "new"},
            {"when": [{"segment": "beta", "attribute": null, "op": null, "values": null}], "rollout": 50},
        ],
        "audiences": [{"segment": "beta", "rollout": 5}],
        "salt": "s", "description": "d", "tags": ["t"], "policy": "checkout",
    });
    mirror_agrees(&doc, "Flag", &flag, async |body| {
        put(&app, "/api/v1/flags/mirror", body).await
    })
    .await;
    // What the server answers for a flag uses only the schema's properties.
    let r = app
        .admin(Method::GET, "/api/v1/flags/mirror")
        .send()
        .await
        .unwrap();
    let stored: Value = r.json().await.unwrap();
    assert!(names(&stored).is_subset(&names(&schema(&doc, "Flag")["properties"])));
    let rule_props = names(&schema(&doc, "Rule")["properties"]);
    assert_eq!(rule_props, names(&json!(["when", "variant", "rollout"])));

    app.put_flag(bool_flag("counted", 100.0)).await;
    let token = app.create_token("mirror-client", "client").await;
    let signal = json!({"flag": "counted", "variant": "on", "metric": "exposure", "count": 2.0,
        "value": 0.25, "audience": "beta", "targetingKey": "u1", "timestamp": "2026-11-22T10:00:00Z"});
    // A signal carries either `count`/`value` or a `histogram`: each shape is checked with
    // the other's properties left out of the schema.
    let histogram = json!({"flag": "counted", "variant": "on", "metric": "latency",
        "histogram": {"bounds": [0.1, 0.5], "counts": [3, 1.0]}, "audience": "beta",
        "targetingKey": "u1", "timestamp": "2026-11-22T10:00:00Z"});
    let send = async |s: Value| {
        let r = app
            .client
            .post(app.url("/api/v1/signals"))
            .bearer_auth(&token)
            .json(&json!({"signals": [s]}))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        (status, body)
    };
    for (example, absent) in [
        (&signal, &["histogram"][..]),
        (&histogram, &["count", "value"][..]),
    ] {
        let mut shape = doc.clone();
        let properties = shape["components"]["schemas"]["Signal"]["properties"]
            .as_object_mut()
            .unwrap();
        for p in absent {
            properties.remove(*p);
        }
        mirror_agrees(&shape, "Signal", example, send).await;
    }
    let (status, _) = send(
        json!({"flag": "counted", "variant": "on", "metric": "latency", "count": 2,
        "histogram": {"bounds": [0.1], "counts": [1]}}),
    )
    .await;
    assert_eq!(
        status, 422,
        "count beside a histogram: schema-valid, refused by a rule stated in words"
    );
    let properties = names(&schema(&doc, "Histogram")["properties"]);
    assert_eq!(properties, names(&json!(["bounds", "counts"])));
    assert_eq!(schema(&doc, "Histogram")["additionalProperties"], false);
    for list in ["bounds", "counts"] {
        let items = &schema(&doc, "Histogram")["properties"][list];
        assert_eq!(
            (&items["minItems"], &items["maxItems"]),
            (&json!(1), &json!(512)),
            "{items}"
        );
    }
    let count = &schema(&doc, "Histogram")["properties"]["counts"]["items"];
    assert_eq!(count["minimum"], 0, "{count}");

    // The client report of a batch (docs/clients.md), in a heartbeat.
    let client = json!({"id": "tab-1", "revision": 3.0, "applied_ms_ago": 850, "sdk": "rollgate-rust/0.1.0", "closing": false});
    mirror_agrees(&doc, "ClientReport", &client, async |c| {
        let r = app
            .client
            .post(app.url("/api/v1/signals"))
            .bearer_auth(&token)
            .json(&json!({"signals": [], "client": c}))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        (status, body)
    })
    .await;
    let bounds = &schema(&doc, "ClientReport")["properties"];
    assert_eq!(bounds["applied_ms_ago"]["maximum"], 86_400_000);
    assert_eq!(bounds["id"]["pattern"], "^[A-Za-z0-9_.:-]{1,64}$");
    assert_eq!(bounds["sdk"]["maxLength"], 64);
}

#[tokio::test]
async fn integer_fields_take_integral_floats_as_json_schema_does() {
    let app = spawn_app().await;
    let policy = json!({"name": "floaty", "guard": [{"metric": "payment_error", "class": "core",
        "max_count": 0.0}], "stages": {"percentages": [50, 100], "min_duration": "0s", "min_exposures": 10.0}});
    let (status, body) = put(&app, "/api/v1/policies/floaty", policy).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["guard"][0]["max_count"], 0);
    assert_eq!(body["stages"]["min_exposures"], 10);
    for (bad, field) in [
        (json!(0.5), "max_count"),
        (json!(-1), "max_count"),
        (json!(9_223_372_036_854_775_808_u64), "max_count"),
    ] {
        let policy = json!({"name": "floaty", "guard": [{"metric": "m", "class": "core", "max_count": bad}]});
        let (status, body) = put(&app, "/api/v1/policies/floaty", policy).await;
        assert!(status == 400 || status == 422, "{bad}: {status} {body}");
        assert!(
            body["error"]["field"].as_str().unwrap().ends_with(field),
            "{bad}: {body}"
        );
    }
}
