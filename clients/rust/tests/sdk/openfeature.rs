//! The OpenFeature provider, driven through the `open-feature` crate's own API.

use crate::helpers::{bool_flag, spawn_server};
use open_feature::{
    EvaluationContext, EvaluationErrorCode, EvaluationReason, OpenFeature, StructValue, Value,
};
use rollgate_client::RollgateProvider;
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openfeature_api_evaluates_through_the_provider_and_maps_errors() {
    let server = spawn_server().await;
    server.put_flag(bool_flag("rollout-half", 50.0)).await;
    server.put_flag(json!({
        "key": "theme", "type": "string", "variants": {"classic": "classic", "dark": "dark"},
        "off_variant": "classic", "on_variant": "dark", "rollout": 0,
        "rules": [{"when": [{"attribute": "tier", "op": "eq", "values": ["gold"]}], "variant": "dark"}]
    })).await;
    server
        .put_flag(json!({
            "key": "limits", "type": "number", "variants": {"low": 3, "high": 7.5},
            "off_variant": "low", "on_variant": "high", "rollout": 0, "rules": []
        }))
        .await;
    server.put_flag(json!({
        "key": "layout", "type": "object", "variants": {"grid": {"columns": 3, "dense": true}, "list": {"columns": 1}},
        "off_variant": "list", "on_variant": "grid", "rollout": 100, "rules": []
    })).await;
    server
        .put_flag(json!({
            "key": "killed", "type": "boolean", "variants": {"off": false, "on": true},
            "off_variant": "off", "on_variant": "on", "enabled": false, "rollout": 100
        }))
        .await;
    let sdk = server
        .sdk("openfeature")
        .await
        .flush_interval(Duration::from_secs(3600))
        .connect()
        .await
        .unwrap();
    let revision = sdk.status().revision.unwrap();

    // A named provider, so this test owns its binding in the process-wide API.
    let mut api = OpenFeature::singleton_mut().await;
    api.set_named_provider("rollgate-test", RollgateProvider::new(sdk.clone()))
        .await;
    let client = api.create_named_client("rollgate-test");
    drop(api);

    let gold = EvaluationContext::default()
        .with_targeting_key("user-1")
        .with_custom_field("tier", "gold");
    let nobody = EvaluationContext::default();

    // Values, variants, reasons and the revision.
    let theme = client
        .get_string_details("theme", Some(&gold), None)
        .await
        .unwrap();
    assert_eq!(theme.value, "dark");
    assert_eq!(theme.variant.as_deref(), Some("dark"));
    assert_eq!(theme.reason, Some(EvaluationReason::TargetingMatch));
    assert_eq!(
        theme.flag_metadata.values.get("revision"),
        Some(&open_feature::FlagMetadataValue::Int(revision as i64))
    );
    let split = client
        .get_bool_details("rollout-half", Some(&gold), None)
        .await
        .unwrap();
    assert_eq!(split.reason, Some(EvaluationReason::Split));
    assert_eq!(
        split.variant.as_deref(),
        Some(if split.value { "on" } else { "off" })
    );
    assert_eq!(
        client
            .get_int_value("limits", Some(&gold), None)
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        client
            .get_float_value("limits", Some(&gold), None)
            .await
            .unwrap(),
        3.0
    );
    let killed = client
        .get_bool_details("killed", Some(&gold), None)
        .await
        .unwrap();
    assert_eq!(
        (killed.value, killed.reason),
        (false, Some(EvaluationReason::Disabled))
    );
    let layout = client
        .get_struct_details::<StructValue>("layout", Some(&gold), None)
        .await
        .unwrap();
    assert_eq!(layout.value.fields.get("columns"), Some(&Value::Int(3)));
    assert_eq!(layout.reason, Some(EvaluationReason::Static));

    // Errors, mapped to OpenFeature's codes.
    let code = |r: Result<_, open_feature::EvaluationError>| r.map(|_: bool| ()).unwrap_err().code;
    assert_eq!(
        code(client.get_bool_value("ghost", Some(&gold), None).await),
        EvaluationErrorCode::FlagNotFound
    );
    assert_eq!(
        code(client.get_bool_value("theme", Some(&gold), None).await),
        EvaluationErrorCode::TypeMismatch
    );
    assert_eq!(
        code(
            client
                .get_bool_value("rollout-half", Some(&nobody), None)
                .await
        ),
        EvaluationErrorCode::TargetingKeyMissing
    );
    assert_eq!(
        client
            .get_int_value(
                "limits",
                Some(&EvaluationContext::default().with_targeting_key("u")),
                None
            )
            .await
            .map(|_| ()),
        Ok(())
    );
    // 7.5 is no integer.
    server
        .put_flag(json!({
            "key": "limits", "type": "number", "variants": {"low": 3, "high": 7.5},
            "off_variant": "low", "on_variant": "high", "rollout": 100, "rules": []
        }))
        .await;
    crate::helpers::wait_until("the change", Duration::from_secs(5), || {
        sdk.status().revision > Some(revision)
    })
    .await;
    assert_eq!(
        client
            .get_int_value("limits", Some(&gold), None)
            .await
            .unwrap_err()
            .code,
        EvaluationErrorCode::TypeMismatch
    );
    assert_eq!(
        client
            .get_float_value("limits", Some(&gold), None)
            .await
            .unwrap(),
        7.5
    );

    // Exposures and errors flowed into signals: the type mismatches as `error` signals of
    // the variant they would have served, the rest counted.
    sdk.flush().await;
    assert_eq!(server.signal_total("theme", "dark", "exposure").await, 1);
    assert_eq!(server.signal_total("theme", "dark", "error").await, 1);
    assert_eq!(server.signal_total("limits", "high", "error").await, 1);
    assert_eq!(server.signal_total("limits", "high", "exposure").await, 1);
    assert_eq!(server.signal_total("limits", "low", "exposure").await, 3);
    assert_eq!(server.signal_total("killed", "off", "exposure").await, 1);
    assert_eq!(
        sdk.status().unattributed_errors,
        2,
        "FLAG_NOT_FOUND and TARGETING_KEY_MISSING"
    );
    sdk.shutdown().await;
}
