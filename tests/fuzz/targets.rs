//! The fuzz oracles: what must hold for *any* input to each parser that takes outside input.
//! Shared by the proptest runs (`tests/fuzz/main.rs`, run in CI) and the libFuzzer targets
//! (`fuzz/fuzz_targets/*.rs`, run by hand on nightly), so both check the same promises:
//! no panic, and either a success that holds together or an error that names what is wrong.

#![allow(dead_code)]

use rollgate::live::Live;
use rollgate::policies::Policy;
use rollgate::signals::{check, ingest, Aggregates, SignalBatch};
use rollgate_eval::{
    compile_flag, CompiledFlag, Context, EvalError, FlagDef, Prepared, SegmentDef,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// The segments flags may reference.
pub fn segments() -> BTreeMap<String, SegmentDef> {
    let seniors: SegmentDef = serde_json::from_value(
        json!({"key": "seniors", "when": [{"attribute": "age", "op": "gte", "values": [60]}]}),
    )
    .expect("valid segment");
    BTreeMap::from([("seniors".to_owned(), seniors)])
}

/// Valid flags covering every operator, rule form and value type.
pub fn flag_seeds() -> Vec<Value> {
    vec![
        json!({"key": "qr-ordering", "type": "boolean", "variants": {"off": false, "on": true},
            "off_variant": "off", "on_variant": "on", "enabled": true, "rollout": 12.5,
            "rules": [
                {"when": [{"attribute": "tier", "op": "in", "values": ["innovation"]}], "variant": "on"},
                {"when": [{"segment": "seniors"}], "variant": "off"},
                {"when": [{"attribute": "country", "op": "not_in", "values": ["NL", "BE"]}], "rollout": 50},
            ],
            "salt": "checkout", "description": "QR ordering", "tags": ["a", "b"], "policy": "checkout"}),
        json!({"key": "banner", "type": "string", "variants": {"old": "blue", "new": "green"},
        "off_variant": "old", "on_variant": "new", "rollout": 100,
        "rules": [
            {"when": [{"attribute": "version", "op": "semver_gte", "values": ["1.2.3-beta.1"]},
                      {"attribute": "version", "op": "semver_lt", "values": ["2.0.0"]}], "variant": "new"},
            {"when": [{"attribute": "email", "op": "ends_with", "values": ["@example.com"]},
                      {"attribute": "email", "op": "matches", "values": ["^[a-z]+@", "x{1,3}"]}], "variant": "old"},
            {"when": [{"attribute": "name", "op": "starts_with", "values": ["A"]},
                      {"attribute": "name", "op": "contains", "values": ["b"]}], "rollout": 0.001},
        ]}),
        json!({"key": "limits", "type": "number", "variants": {"low": 1, "high": 1e6},
        "off_variant": "low", "on_variant": "high", "enabled": false, "rollout": 0,
        "rules": [
            {"when": [{"attribute": "age", "op": "lt", "values": [18]},
                      {"attribute": "age", "op": "lte", "values": [17.5]}], "variant": "low"},
            {"when": [{"attribute": "score", "op": "gt", "values": [-1]},
                      {"attribute": "plan", "op": "eq", "values": ["pro", 3, true, null]},
                      {"attribute": "plan", "op": "neq", "values": ["free"]}], "variant": "high"},
            {"when": [], "rollout": 99.999},
        ]}),
        json!({"key": "layout", "type": "object", "variants": {"a": {"cols": 2}, "b": {"cols": [3, {"x": null}]}},
            "off_variant": "a", "on_variant": "b"}),
    ]
}

fn compiled_seeds() -> &'static [CompiledFlag] {
    static FLAGS: OnceLock<Vec<CompiledFlag>> = OnceLock::new();
    FLAGS.get_or_init(|| {
        let segments = segments();
        flag_seeds()
            .into_iter()
            .map(|v| {
                let def: FlagDef = serde_json::from_value(v).expect("seed flag parses");
                compile_flag(&def, &segments).expect("seed flag compiles")
            })
            .collect()
    })
}

/// Contexts that exercise every condition of the seed flags.
pub fn context_seeds() -> Vec<Value> {
    vec![
        json!({"context": {"targetingKey": "user-1", "tier": "innovation", "country": "NL", "age": 61,
            "version": "1.2.3", "email": "ab@example.com", "name": "Abe", "score": 3.5, "plan": "pro"}}),
        json!({"context": {"targetingKey": "", "age": 17, "version": "2.0.0-rc.1+b7"}}),
        json!({"context": {}}),
        json!({}),
    ]
}

/// A signal batch naming flags that exist and some that do not.
pub fn signal_seeds() -> Vec<Value> {
    vec![json!({"signals": [
        {"flag": "qr-ordering", "variant": "on", "metric": "exposure"},
        {"flag": "qr-ordering", "variant": "on", "metric": "exposure", "count": 3},
        {"flag": "qr-ordering", "variant": "off", "metric": "latency", "value": 0.25, "count": 2,
         "targetingKey": "user-1", "timestamp": "2024-05-01T12:00:00Z"},
        {"flag": "banner", "variant": "new", "metric": "payment_error", "timestamp": 1714564800000u64},
        {"flag": "nope", "variant": "on", "metric": "exposure"},
    ]})]
}

/// An Alertmanager webhook (version 4) naming a flag, a release, and nothing of ours.
pub fn alert_seeds() -> Vec<Value> {
    let alert = |status: &str, labels: Value| {
        json!({"status": status, "labels": labels,
            "annotations": {"summary": "error rate above 2 %", "description": "checkout"},
            "startsAt": "2024-05-01T12:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus/graph", "fingerprint": "c0ffee"})
    };
    vec![json!({
        "version": "4", "groupKey": "{}:{alertname=\"PaymentErrors\"}", "truncatedAlerts": 0,
        "status": "firing", "receiver": "rollgate",
        "groupLabels": {"alertname": "PaymentErrors"}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": [
            alert("firing", json!({"alertname": "PaymentErrors", "severity": "warning", "rollgate_flag": "qr-ordering"})),
            alert("resolved", json!({"alertname": "Latency", "rollgate_release": "r-1"})),
            alert("firing", json!({"alertname": "Unrelated", "severity": "critical"})),
        ],
    })]
}

/// The repository's policies as TOML, plus a few that use every field.
pub fn policy_toml_seeds() -> Vec<String> {
    let mut seeds: Vec<String> =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/policies"))
            .map(|dir| {
                dir.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
                    .collect()
            })
            .unwrap_or_default();
    seeds.push(
        r#"name = "full"
scope = "release"
confidence = 0.95
false_rollback_rate = 0.05
cooldown = "2m"

[[guard]]
metric = "latency"
class = "basic"
max_relative_increase = 0.1
max_rate = 0.5
grace = "10m"
confidence = 0.9
detect = 0.2
silence_after = "5m"

[[guard]]
metric = "data_loss"
class = "core"
max_count = 0

[stages]
percentages = [0.5, 10, 100]
min_duration = "1m"
min_exposures = 100
"#
        .to_owned(),
    );
    seeds
}

/// The same policies as JSON (the other body `PUT /api/v1/policies/{name}` accepts).
pub fn policy_json_seeds() -> Vec<Value> {
    policy_toml_seeds()
        .iter()
        .map(|t| serde_json::to_value(Policy::from_toml(t).expect("seed policy is valid")).unwrap())
        .collect()
}

/// Flag JSON (`PUT /api/v1/flags/{key}`): parse, compile, evaluate.
pub fn flag_json(bytes: &[u8]) {
    let Ok(def) = serde_json::from_slice::<FlagDef>(bytes) else {
        return; // serde's error always names the line and column; the API test checks the body.
    };
    let compiled = match compile_flag(&def, &segments()) {
        Ok(c) => c,
        Err(e) => {
            assert!(
                !e.message.is_empty(),
                "compile error without a message: {e:?}"
            );
            assert!(!e.field.is_empty(), "compile error without a field: {e:?}");
            return;
        }
    };
    // What was accepted is what is served back by GET: it survives a JSON round trip.
    let again: FlagDef = serde_json::from_slice(&serde_json::to_vec(&def).expect("serializes"))
        .expect("an accepted flag parses again");
    assert_eq!(again, def, "an accepted flag changes on a JSON round trip");
    for seed in context_seeds() {
        let ctx = seed["context"].as_object().cloned().unwrap_or_default();
        evaluate_checked(&compiled, &ctx);
    }
}

fn evaluate_checked(flag: &CompiledFlag, ctx: &Context) {
    let Ok(prepared) = Prepared::new(ctx) else {
        return;
    };
    for result in [flag.evaluate(ctx), flag.evaluate_prepared(&prepared)] {
        match result {
            Ok(e) => {
                let (name, value) = &flag.variants()[e.variant_index];
                assert_eq!(&**name, e.variant);
                assert_eq!(value, e.value);
                assert!(flag.flag_type().accepts(e.value));
            }
            Err(EvalError::TargetingKeyMissing) => assert!(
                rollgate_eval::targeting_key(ctx).unwrap().is_none(),
                "TARGETING_KEY_MISSING although the context has one"
            ),
            Err(EvalError::InvalidTargetingKey) => panic!("a checked context became invalid"),
        }
    }
}

/// An OFREP request body as the server reads it: any JSON, whose `context` is evaluated
/// against every seed flag (the pure half of `POST /ofrep/v1/evaluate/flags[/{key}]`).
pub fn ofrep_context(bytes: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(bytes) else {
        return;
    };
    let ctx = match value {
        Value::Object(mut body) => match body.remove("context") {
            Some(Value::Object(ctx)) => ctx,
            _ => return,
        },
        _ => return,
    };
    let key = rollgate_eval::targeting_key(&ctx);
    assert_eq!(key.is_err(), Prepared::new(&ctx).is_err());
    assert_eq!(key.is_err(), Prepared::single(&ctx).is_err());
    for flag in compiled_seeds() {
        evaluate_checked(flag, &ctx);
    }
}

/// A policy as TOML (`policies/*.toml`, `PUT /api/v1/policies/{name}` with `application/toml`).
pub fn policy_toml(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return; // the server refuses non-UTF-8 before parsing
    };
    match Policy::from_toml(text) {
        Ok(policy) => policy_accepted(&policy),
        Err(e) => assert!(
            !e.message.trim().is_empty(),
            "policy error without a message: {e:?}"
        ),
    }
}

/// A policy as JSON (`PUT /api/v1/policies/{name}`).
pub fn policy_json(bytes: &[u8]) {
    let Ok(policy) = serde_json::from_slice::<Policy>(bytes) else {
        return;
    };
    match policy.validate() {
        Ok(()) => policy_accepted(&policy),
        Err(e) => {
            assert!(
                !e.field.is_empty(),
                "validation error without a field: {e:?}"
            );
            assert!(
                !e.message.is_empty(),
                "validation error without a message: {e:?}"
            );
        }
    }
}

fn policy_accepted(policy: &Policy) {
    policy
        .validate()
        .expect("an accepted policy validates again");
    let json = serde_json::to_vec(policy).expect("serializes");
    let again: Policy = serde_json::from_slice(&json).expect("an accepted policy parses again");
    assert_eq!(
        &again, policy,
        "an accepted policy changes on a JSON round trip"
    );
}

fn live() -> &'static Live {
    static LIVE: OnceLock<Live> = OnceLock::new();
    LIVE.get_or_init(|| {
        let defs = flag_seeds()
            .into_iter()
            .map(|v| serde_json::from_value(v).expect("seed flag parses"))
            .collect();
        let (live, broken) = Live::build(defs, segments());
        assert!(broken.is_empty());
        live
    })
}

/// A signal batch (`POST /api/v1/signals`): parse, check, apply to fresh aggregates.
pub fn signal_batch(bytes: &[u8]) {
    let Ok(batch) = serde_json::from_slice::<SignalBatch<'_>>(bytes) else {
        return;
    };
    if let Err(m) = check(&batch, 1000) {
        assert!(
            m.field.starts_with("signals"),
            "malformed signal without a field: {m:?}"
        );
        assert!(!m.message.is_empty());
        return;
    }
    let aggregates = Aggregates::default();
    let report = ingest(&aggregates, live(), &batch, 1_714_564_800_000);
    assert_eq!(report.accepted + report.rejected, batch.signals.len());
    assert_eq!(report.errors.len(), report.rejected.min(100));
    // The counts of a series add up. Sums past u64::MAX are left out here: bounding and
    // saturating them across applications is defect 1 of issue 8 (branch i8-signals).
    let mut expected: BTreeMap<(&str, &str, &str), Option<u64>> = BTreeMap::new();
    for s in &batch.signals {
        let known = live()
            .get(&s.flag)
            .is_some_and(|f| f.compiled.variants().iter().any(|(n, _)| **n == *s.variant));
        if known {
            let total = expected
                .entry((&s.flag, &s.variant, &s.metric))
                .or_insert(Some(0));
            *total = total.and_then(|t| t.checked_add(s.count.unwrap_or(1)));
        }
    }
    for ((flag, variant, metric), count) in expected {
        if let Some(count) = count {
            let got = aggregates.totals(flag, variant, metric).count;
            assert_eq!(got, count, "{flag}/{variant}/{metric}");
        }
    }
}
