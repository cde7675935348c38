//! Release audiences on a flag (docs/bucketing.md): OFREP names the audience that decided in
//! `metadata.audience`, `/api/v1/client/config` carries the flag's audiences, a flag with an
//! unknown or repeated audience segment is refused naming the field, and signals carry the
//! audience back (`signals[i].audience`), counted in a series of their own.

use crate::helpers::{bool_flag, spawn_app, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

/// The segments `seniors` (age ≥ 60) and `innovation` (tier innovation).
pub async fn put_segments(app: &TestApp) {
    for segment in [
        json!({"key": "seniors", "when": [{"attribute": "age", "op": "gte", "values": [60]}]}),
        json!({"key": "innovation", "when": [{"attribute": "tier", "op": "in", "values": ["innovation"]}]}),
    ] {
        let key = segment["key"].as_str().unwrap().to_owned();
        let r = app
            .admin(Method::PUT, &format!("/api/v1/segments/{key}"))
            .json(&segment)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "PUT segment {key}: {}", r.status());
    }
}

fn flag_with_audiences(key: &str, rollout: f64, audiences: Value) -> Value {
    let mut flag = bool_flag(key, rollout);
    flag["audiences"] = audiences;
    flag
}

#[tokio::test]
async fn ofrep_names_the_audience_that_decided_and_only_then() {
    let app = spawn_app().await;
    let token = app.create_token("app", "client").await;
    put_segments(&app).await;
    app.put_flag(flag_with_audiences(
        "qr-ordering",
        80.0,
        json!([{"segment": "seniors", "rollout": 0}, {"segment": "innovation", "rollout": 50}]),
    ))
    .await;
    app.put_flag(bool_flag("plain", 100.0)).await;

    // Buckets with salt qr-ordering (eval/tests/vectors/bucketing.json): user-2 40721.
    let (status, innovator) = app
        .evaluate(
            &token,
            "qr-ordering",
            json!({"targetingKey": "user-2", "tier": "innovation"}),
        )
        .await;
    assert_eq!(status, 200, "{innovator}");
    assert_eq!(innovator["value"], true, "{innovator}");
    assert_eq!(innovator["reason"], "SPLIT");
    assert_eq!(innovator["metadata"]["audience"], "innovation");
    assert!(innovator["metadata"]["revision"].is_u64(), "{innovator}");

    // A senior innovator: the first audience (seniors, 0 %) decides.
    let senior = app
        .evaluate(
            &token,
            "qr-ordering",
            json!({"targetingKey": "user-2", "tier": "innovation", "age": 70}),
        )
        .await
        .1;
    assert_eq!(
        (
            &senior["value"],
            &senior["reason"],
            &senior["metadata"]["audience"]
        ),
        (&json!(false), &json!("TARGETING_MATCH"), &json!("seniors"))
    );

    // Everyone else: no audience in the metadata, which stays exactly {"revision"}.
    let other = app
        .evaluate(&token, "qr-ordering", json!({"targetingKey": "user-2"}))
        .await
        .1;
    assert_eq!(other["metadata"].as_object().unwrap().len(), 1, "{other}");
    let plain = app.evaluate(&token, "plain", json!({})).await.1;
    assert_eq!(plain["metadata"].as_object().unwrap().len(), 1, "{plain}");

    // The bulk answer says the same per flag.
    let bulk: Value = app
        .client
        .post(app.url("/ofrep/v1/evaluate/flags"))
        .bearer_auth(&token)
        .json(&json!({"context": {"targetingKey": "user-2", "tier": "innovation"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let flags = bulk["flags"].as_array().unwrap();
    let of = |key: &str| flags.iter().find(|f| f["key"] == key).unwrap().clone();
    assert_eq!(of("qr-ordering")["metadata"]["audience"], "innovation");
    assert!(of("plain")["metadata"].get("audience").is_none());

    // Local SDKs get the audiences with the flag definitions.
    let config: Value = app
        .client
        .get(app.url("/api/v1/client/config"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = config.to_string();
    assert!(
        text.contains(r#""audiences":[{"segment":"seniors","rollout":0.0},{"segment":"innovation","rollout":50.0}]"#)
            || text.contains(r#""audiences":[{"rollout":0.0,"segment":"seniors"},{"rollout":50.0,"segment":"innovation"}]"#),
        "{config}"
    );
}

#[tokio::test]
async fn unknown_and_repeated_audience_segments_are_refused_naming_the_field() {
    let app = spawn_app().await;
    put_segments(&app).await;
    for (audiences, field) in [
        (
            json!([{"segment": "seniors"}, {"segment": "nobody"}]),
            "audiences[1].segment",
        ),
        (
            json!([{"segment": "seniors"}, {"segment": "seniors"}]),
            "audiences[1].segment",
        ),
        (
            json!([{"segment": "seniors", "percent": 5}]),
            "audiences[0].percent",
        ),
    ] {
        let r = app
            .admin(Method::PUT, "/api/v1/flags/f")
            .json(&flag_with_audiences("f", 0.0, audiences.clone()))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        assert!(
            status == 400 || status == 422,
            "{audiences}: {status} {body}"
        );
        let named = body["error"]["field"].as_str().unwrap_or_default();
        assert!(
            named == field || (field.ends_with("percent") && body.to_string().contains("percent")),
            "{audiences}: {body}"
        );
    }
}

#[tokio::test]
async fn signals_carry_their_audience_into_a_series_of_its_own() {
    let app = spawn_app().await;
    let token = app.create_token("app", "client").await;
    put_segments(&app).await;
    app.put_flag(flag_with_audiences(
        "qr-ordering",
        10.0,
        json!([{"segment": "innovation", "rollout": 50}]),
    ))
    .await;
    let (status, report) = app
        .signals(
            &token,
            json!([
                {"flag": "qr-ordering", "variant": "on", "metric": "exposure", "count": 7, "audience": "innovation"},
                {"flag": "qr-ordering", "variant": "on", "metric": "exposure", "count": 3},
                {"flag": "qr-ordering", "variant": "on", "metric": "exposure", "count": 2, "audience": "innovation"},
            ]),
        )
        .await;
    assert_eq!(
        (status, report["accepted"].as_u64()),
        (200, Some(3)),
        "{report}"
    );

    // Everyone else's series holds only the untagged signals; the audience has its own.
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let untagged = r#"rollgate_signals_total{flag="qr-ordering",variant="on",metric="exposure"} "#;
    let tagged = r#"rollgate_signals_total{flag="qr-ordering",variant="on",metric="exposure",audience="innovation"} "#;
    let value = |prefix: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .map(|v| v.trim().parse::<f64>().unwrap())
    };
    assert_eq!(
        (value(untagged), value(tagged)),
        (Some(3.0), Some(9.0)),
        "{metrics}"
    );

    // An audience that is not a segment key is refused, naming the field.
    for bad in [json!("Innovation"), json!(""), json!(7)] {
        let (status, body) = app
            .signals(
                &token,
                json!([{"flag": "qr-ordering", "variant": "on", "metric": "exposure"},
                       {"flag": "qr-ordering", "variant": "on", "metric": "exposure", "audience": bad}]),
            )
            .await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(
            body.to_string().contains("signals[1].audience") || !bad.is_string(),
            "{bad}: {body}"
        );
    }
}
