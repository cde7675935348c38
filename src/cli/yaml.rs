//! `--output yaml`: a JSON document written as block YAML that every YAML reader reads back
//! as the same document.
//!
//! Why our own writer: YAML 1.1 readers (PyYAML, yq 3, Go's yaml.v2, Ruby's Psych) read the
//! plain scalars `on`, `off`, `yes`, `no`, `y`, `n` as booleans, and rollgate's default variant
//! names are `on` and `off`. A YAML 1.2 emitter writes them plain, so `off_variant: off` came
//! back as `false`. Here a string is written plain only when it cannot mean anything but that
//! string in YAML 1.1 or 1.2 ([`plain`]); every other string is written as a JSON string, which
//! is a valid YAML double-quoted scalar with the same escapes. Numbers, booleans and null are
//! written as in JSON. Pure: values in, text out.

use serde_json::{Map, Value};

/// Words that YAML 1.1 or 1.2 read as a boolean or null when plain.
const RESERVED: [&str; 22] = [
    "y", "n", "yes", "no", "on", "off", "true", "false", "null", "~", "Y", "N", "Yes", "No", "On",
    "Off", "True", "False", "Null", "YES", "NO", "NULL",
];

/// `value` as a YAML document (ends with a newline).
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => write_map(&mut out, map, 0),
        Value::Array(items) if !items.is_empty() => write_seq(&mut out, items, 0),
        scalar => {
            out.push_str(&inline(scalar));
            out.push('\n');
        }
    }
    out
}

/// Whether `s` may be written without quotes: starts with a letter or `_`, holds only letters,
/// digits and `_ - . /`, and is no YAML 1.1/1.2 boolean or null word (upper-case variants
/// like `OFF` included). Anything else (numbers, dates, `.inf`, `:`/`#`, blanks, the empty
/// string) is quoted.
pub fn plain(s: &str) -> bool {
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    (first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
        && !RESERVED.contains(&s)
        && !RESERVED.iter().any(|r| r.eq_ignore_ascii_case(s))
}

/// A scalar, or an empty collection, on one line.
fn inline(value: &Value) -> String {
    match value {
        Value::String(s) => string(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
        other => other.to_string(),
    }
}

fn string(s: &str) -> String {
    if plain(s) {
        s.to_owned()
    } else {
        Value::String(s.to_owned()).to_string()
    }
}

/// Whether `value` takes lines of its own (a non-empty collection).
fn nested(value: &Value) -> bool {
    match value {
        Value::Object(map) => !map.is_empty(),
        Value::Array(items) => !items.is_empty(),
        _ => false,
    }
}

fn write_map(out: &mut String, map: &Map<String, Value>, indent: usize) {
    for (key, value) in map {
        out.push_str(&" ".repeat(indent));
        out.push_str(&string(key));
        out.push(':');
        write_value(out, value, indent + 2);
    }
}

fn write_seq(out: &mut String, items: &[Value], indent: usize) {
    for item in items {
        out.push_str(&" ".repeat(indent));
        out.push('-');
        if nested(item) {
            // The item's first line follows the dash; the rest is indented under it.
            let mut inner = String::new();
            match item {
                Value::Object(map) => write_map(&mut inner, map, indent + 2),
                Value::Array(items) => write_seq(&mut inner, items, indent + 2),
                _ => unreachable!("nested() holds only for collections"),
            }
            out.push(' ');
            out.push_str(&inner[indent + 2..]);
        } else {
            out.push(' ');
            out.push_str(&inline(item));
            out.push('\n');
        }
    }
}

/// After `key:`: a scalar on the same line, a collection on the next lines at `indent`.
fn write_value(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            write_map(out, map, indent);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            write_seq(out, items, indent);
        }
        scalar => {
            out.push(' ');
            out.push_str(&inline(scalar));
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn words_a_yaml_1_1_reader_would_turn_into_booleans_or_numbers_are_quoted() {
        for s in [
            "on",
            "off",
            "On",
            "OFF",
            "yes",
            "No",
            "y",
            "N",
            "true",
            "null",
            "~",
            "",
            "1",
            "1.5",
            "0x1f",
            ".inf",
            "-1",
            "2026-12-02",
            "a: b",
            "a #b",
            " lead",
            "*ref",
            "&anchor",
            "!tag",
            "new\nline",
            "é",
        ] {
            assert!(!plain(s), "{s:?} must be quoted");
        }
        for s in [
            "checkout-v2",
            "payment_error",
            "qr.ordering",
            "release/x",
            "onboarding",
        ] {
            assert!(plain(s), "{s:?} may stay plain");
        }
    }

    #[test]
    fn every_document_reads_back_the_same() {
        let doc = json!({
            "flags": [{
                "key": "checkout-v2", "type": "boolean",
                "variants": {"off": false, "on": true, "yes": "no", "1": 1.5, "": null},
                "off_variant": "off", "on_variant": "on",
                "rules": [], "meta": {}, "note": "multi\nline \"quoted\" # not a comment",
                "nested": [[1, 2], [], [{"a": [3]}], {"b": {"c": "y"}}],
                "big": 18446744073709551615u64, "neg": -3, "unicode": "überall ✓",
            }],
            "empty": [], "none": null,
        });
        let text = to_yaml(&doc);
        let back: Value = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(back, doc, "{text}");
        assert!(text.contains("off_variant: \"off\""), "{text}");
        for scalar in [json!("off"), json!(1), json!(null), json!([]), json!({})] {
            let back: Value = serde_yaml_ng::from_str(&to_yaml(&scalar)).unwrap();
            assert_eq!(back, scalar);
        }
    }
}
