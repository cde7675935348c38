//! The OFREP request body: `{"context": {...}}`, read without building the outer object.
//!
//! Only the `context` member is kept (any other member is read and dropped: as a `Value`, so
//! that the nesting limit applies to it as before), and member names are compared where they
//! lie in the body (no allocation for an unescaped name). The answers are those of parsing the whole body as a `serde_json::Value` first: the
//! same refusals for malformed JSON, a body that is not an object, and a `context` that is not
//! an object; the last `context` wins when it is repeated.

use rollgate_eval::{targeting_key, Context};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use std::fmt;

/// Parses `{"context": {...}}`; an empty body is an empty context.
pub(super) fn parse_context(body: &[u8]) -> Result<Context, (&'static str, String)> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Context::new());
    }
    let Request(context) = serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            // Only the top level can be of the wrong type: values are read as any JSON.
            (
                "PARSE_ERROR",
                "the request body must be a JSON object".to_owned(),
            )
        } else {
            ("PARSE_ERROR", format!("malformed JSON: {e}"))
        }
    })?;
    let context = match context {
        None | Some(Value::Null) => Context::new(),
        Some(Value::Object(c)) => c,
        Some(_) => {
            return Err((
                "INVALID_CONTEXT",
                "context must be a JSON object".to_owned(),
            ))
        }
    };
    targeting_key(&context).map_err(|e| ("INVALID_CONTEXT", e.to_string()))?;
    Ok(context)
}

/// The request's `context` member, if it has one.
struct Request(Option<Value>);

impl<'de> serde::Deserialize<'de> for Request {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RequestVisitor)
    }
}

struct RequestVisitor;

impl<'de> Visitor<'de> for RequestVisitor {
    type Value = Request;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Request, A::Error> {
        let mut context = None;
        while let Some(Member(is_context)) = map.next_key()? {
            if is_context {
                context = Some(map.next_value::<Value>()?);
            } else {
                map.next_value::<Value>()?;
            }
        }
        Ok(Request(context))
    }
}

/// A member name: whether it is `context`.
struct Member(bool);

impl<'de> serde::Deserialize<'de> for Member {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(MemberVisitor)
    }
}

struct MemberVisitor;

impl Visitor<'_> for MemberVisitor {
    type Value = Member;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Member, E> {
        Ok(Member(name == "context"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What parsing the whole body as a `Value` first answered (the previous implementation).
    fn via_value(body: &[u8]) -> Result<Context, (&'static str, String)> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Context::new());
        }
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| ("PARSE_ERROR", format!("malformed JSON: {e}")))?;
        let Value::Object(mut request) = value else {
            return Err((
                "PARSE_ERROR",
                "the request body must be a JSON object".to_owned(),
            ));
        };
        let context = match request.remove("context") {
            None | Some(Value::Null) => Context::new(),
            Some(Value::Object(c)) => c,
            Some(_) => {
                return Err((
                    "INVALID_CONTEXT",
                    "context must be a JSON object".to_owned(),
                ))
            }
        };
        targeting_key(&context).map_err(|e| ("INVALID_CONTEXT", e.to_string()))?;
        Ok(context)
    }

    #[test]
    fn answers_as_parsing_the_whole_value_did() {
        let bodies: &[&str] = &[
            "",
            "  \n",
            "{}",
            "null",
            "[]",
            "\"context\"",
            "42",
            "{",
            "{\"context\":",
            "{\"context\": {\"targetingKey\": \"u\"}} trailing",
            r#"{"context": {"targetingKey": "u", "tier": "beta", "n": [1, {"a": null}]}}"#,
            r#"{"context": null}"#,
            r#"{"context": []}"#,
            r#"{"context": "x"}"#,
            r#"{"context": {"targetingKey": 7}}"#,
            r#"{"other": {"deep": [1, 2, {"x": "y"}]}, "context": {"targetingKey": "u"}}"#,
            r#"{"context": {"targetingKey": "first"}, "context": {"targetingKey": "last"}}"#,
            r#"{"cont\u0065xt": {"targetingKey": "escaped-name"}}"#,
            r#"{"Context": {"targetingKey": "case"}}"#,
            r#"{"context": {"targetingKey": "u"}, "x": tru}"#,
            r#"{"context": {"a": 1e999}}"#,
        ];
        for body in bodies {
            assert_eq!(
                parse_context(body.as_bytes()),
                via_value(body.as_bytes()),
                "{body}"
            );
        }
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let nested = format!(r#"{{"x": {deep}}}"#);
        assert_eq!(
            parse_context(nested.as_bytes()),
            via_value(nested.as_bytes())
        );
    }
}
