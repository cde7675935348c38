//! The writers against a plain serde serialization of the same answer, over random keys,
//! values (every JSON type, nested, escapes, floats), reasons, audiences and revisions.

use super::reference::{Failure, Metadata, Success};
use super::*;
use proptest::prelude::*;
use rollgate_eval::Reason;

/// Strings with what JSON must escape: quotes, backslashes, control characters, non-ASCII.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9._-]{0,12}",
        "[\"\\\\\\x00-\\x1f\\x7f é☃😀a-z/<>]{0,16}",
        any::<String>(),
    ]
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((text(), inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn reason() -> impl Strategy<Value = Reason> {
    prop_oneof![
        Just(Reason::Static),
        Just(Reason::TargetingMatch),
        Just(Reason::Split),
        Just(Reason::Disabled),
        Just(Reason::Default),
    ]
}

proptest! {
    #[test]
    fn a_success_is_what_serde_writes(
        key in text(),
        variants in prop::collection::vec((text(), json()), 1..5),
        pick in any::<prop::sample::Index>(),
        reason in reason(),
        audience in prop::option::of(text()),
        revision in any::<u64>(),
    ) {
        let variants: Vec<(Box<str>, Value)> =
            variants.into_iter().map(|(n, v)| (n.into_boxed_str(), v)).collect();
        let wire = FlagWire::new(&key, &variants);
        let i = pick.index(variants.len());
        let e = Evaluation {
            variant: &variants[i].0,
            value: &variants[i].1,
            reason,
            variant_index: i,
            audience: audience.as_deref(),
        };
        let mut fast = b"[".to_vec();
        write_success(&mut fast, &wire, &e, revision);
        let plain = serde_json::to_vec(&Success {
            key: &key,
            value: e.value,
            reason: reason.as_str(),
            variant: e.variant,
            metadata: Metadata { revision, audience: e.audience },
        }).unwrap();
        prop_assert_eq!(String::from_utf8_lossy(&fast[1..]), String::from_utf8_lossy(&plain));
    }

    #[test]
    fn a_failure_is_what_serde_writes(key in prop::option::of(text()), code in text(), details in text()) {
        let mut fast = Vec::new();
        write_failure(&mut fast, key.as_deref(), &code, &details);
        let plain = serde_json::to_vec(&Failure {
            key: key.as_deref(),
            error_code: &code,
            error_details: details.as_str().into(),
        }).unwrap();
        prop_assert_eq!(fast, plain);
    }

    #[test]
    fn event_streams_are_what_serde_writes(
        scheme in prop_oneof![Just("http"), Just("https")],
        host in text(),
        token in "st_[0-9a-f]{64}",
    ) {
        let mut fast = Vec::new();
        write_event_streams(&mut fast, scheme, &host, &token);
        let url = format!("{scheme}://{host}/api/v1/stream?format=ofrep&token={token}");
        let plain = format!(
            ",\"eventStreams\":{}",
            serde_json::json!([{"type": "sse", "url": url, "inactivityDelaySec": 120}])
        );
        prop_assert_eq!(String::from_utf8(fast).unwrap(), plain);
    }
}

#[test]
fn an_evaluation_outside_the_pieces_is_still_written_right() {
    let variants: Vec<(Box<str>, Value)> = vec![("on".into(), Value::Bool(true))];
    let wire = FlagWire::new("k", &variants);
    let other = Value::from(3);
    let e = Evaluation {
        variant: "three",
        value: &other,
        reason: Reason::Split,
        variant_index: 7,
        audience: None,
    };
    let mut out = Vec::new();
    write_success(&mut out, &wire, &e, 1);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        r#"{"key":"k","value":3,"reason":"SPLIT","variant":"three","metadata":{"revision":1}}"#
    );
}
