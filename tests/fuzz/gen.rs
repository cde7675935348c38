//! Structure-aware input generators shared by the fuzz tests (`tests/fuzz`, `tests/api/fuzz.rs`).
//!
//! Inputs start from *valid* documents (seeds) and are then damaged: a node replaced by an
//! arbitrary JSON value (wrong types, huge numbers, unicode, control characters), removed,
//! re-typed, buried under nesting, or an unknown field added; then, sometimes, the serialized
//! bytes are cut, flipped or spliced with raw tokens no serializer would write (`1e400`,
//! lone surrogates, invalid UTF-8). Random bytes and 100k-deep nesting are mixed in as well.
//!
//! Runs are deterministic: a fixed seed unless `PROPTEST_RNG_SEED` is set, and a per-target
//! case count unless `PROPTEST_CASES` is set (see `fuzz/README.md`).

#![allow(dead_code)]

use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::{Config, RngSeed};
use serde_json::{json, Map, Value};

/// The seed used when `PROPTEST_RNG_SEED` is not set.
pub const SEED: u64 = 0x5EED_F022;

/// A proptest configuration with `default_cases` cases (or `PROPTEST_CASES`), a fixed seed
/// (or `PROPTEST_RNG_SEED`), no regression files and bounded shrinking.
pub fn config(default_cases: u32) -> Config {
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = default_cases;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(SEED);
    }
    config.failure_persistence = None;
    config.max_shrink_iters = 256;
    config.max_shrink_time = 20_000;
    config
}

/// Field names of every format under test: mutations that add a field mostly add a known one
/// in the wrong place, which reaches deeper than a random name.
const NAMES: &[&str] = &[
    "key",
    "type",
    "variants",
    "off_variant",
    "on_variant",
    "enabled",
    "rollout",
    "rules",
    "when",
    "attribute",
    "op",
    "values",
    "segment",
    "variant",
    "salt",
    "description",
    "tags",
    "policy",
    "signals",
    "flag",
    "metric",
    "count",
    "value",
    "targetingKey",
    "timestamp",
    "context",
    "version",
    "status",
    "alerts",
    "labels",
    "annotations",
    "fingerprint",
    "receiver",
    "groupKey",
    "alertname",
    "severity",
    "rollgate_flag",
    "rollgate_release",
    "name",
    "scope",
    "confidence",
    "false_rollback_rate",
    "cooldown",
    "guard",
    "stages",
    "percentages",
    "min_duration",
    "min_exposures",
    "class",
    "max_relative_increase",
    "max_rate",
    "max_count",
    "grace",
    "detect",
    "silence_after",
    "summary",
];

/// Strings that tend to break things: empty, unicode, control characters, very long.
pub fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z0-9._-]{1,12}",
        2 => select(NAMES).prop_map(str::to_owned),
        2 => "\\PC{0,24}",
        1 => "[\\x00-\\x1f\"\\\\/~]{0,6}",
        1 => select(vec![
            "", " ", "\u{feff}", "é", "😀", "\u{202e}rtl", "\u{0}", "NL", "on", "off", "critical",
            "firing", "resolved", "4", "1.2.3", "1.2.3-beta.1+b", "10m", "0s", "1e400", "-1",
            "exposure", "core", "basic", "module", "release", "\\w{20}", "(a+)+$", "[",
        ])
        .prop_map(str::to_owned),
        1 => (1usize..20_000).prop_map(|n| "a".repeat(n)),
    ]
}

/// Numbers at and past every boundary.
pub fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        2 => any::<i64>().prop_map(Value::from),
        2 => any::<u64>().prop_map(Value::from),
        1 => any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
        3 => select(vec![
            json!(0), json!(1), json!(-1), json!(-0.0), json!(0.5), json!(1e-300), json!(1e308),
            json!(u64::MAX), json!(u64::MAX - 2), json!(i64::MIN), json!(100), json!(100.0005),
            json!(101), json!(12.5), json!(4294967296u64), json!(2000),
        ]),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        3 => number(),
        3 => text().prop_map(Value::String),
    ]
}

/// An arbitrary JSON value, a few levels deep.
pub fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((text(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// One structural change to a JSON document.
#[derive(Debug, Clone)]
pub enum Mutation {
    Replace(Index, Value),
    Remove(Index),
    Insert(Index, String, Value),
    Retype(Index),
    Nest(Index, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<Index>(), json_value()).prop_map(|(i, v)| Mutation::Replace(i, v)),
        2 => any::<Index>().prop_map(Mutation::Remove),
        2 => (any::<Index>(), text(), json_value()).prop_map(|(i, k, v)| Mutation::Insert(i, k, v)),
        2 => any::<Index>().prop_map(Mutation::Retype),
        1 => (any::<Index>(), 1usize..300).prop_map(|(i, d)| Mutation::Nest(i, d)),
    ]
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                pointers(v, format!("{at}/{}", escape(k)), out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                pointers(v, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

impl Mutation {
    /// Applies the mutation to `doc`.
    pub fn apply(&self, doc: &mut Value) {
        let mut all = Vec::new();
        pointers(doc, String::new(), &mut all);
        let pick = |i: &Index| all[i.index(all.len())].clone();
        match self {
            Mutation::Replace(i, v) => {
                if let Some(node) = doc.pointer_mut(&pick(i)) {
                    *node = v.clone();
                }
            }
            Mutation::Remove(i) => {
                let at = pick(i);
                let Some((parent, last)) = at.rsplit_once('/') else {
                    return;
                };
                let last = last.replace("~1", "/").replace("~0", "~");
                match doc.pointer_mut(parent) {
                    Some(Value::Object(map)) => {
                        map.remove(&last);
                    }
                    Some(Value::Array(items)) => {
                        if let Ok(n) = last.parse::<usize>() {
                            if n < items.len() {
                                items.remove(n);
                            }
                        }
                    }
                    _ => {}
                }
            }
            Mutation::Insert(i, k, v) => match doc.pointer_mut(&pick(i)) {
                Some(Value::Object(map)) => {
                    map.insert(k.clone(), v.clone());
                }
                Some(Value::Array(items)) => items.push(v.clone()),
                _ => {}
            },
            Mutation::Retype(i) => {
                if let Some(node) = doc.pointer_mut(&pick(i)) {
                    *node = match node.take() {
                        Value::Null => json!(false),
                        Value::Bool(b) => Value::String(b.to_string()),
                        Value::Number(n) => Value::String(n.to_string()),
                        Value::String(s) => s
                            .parse::<f64>()
                            .ok()
                            .and_then(serde_json::Number::from_f64)
                            .map(Value::Number)
                            .unwrap_or(Value::Array(vec![Value::String(s)])),
                        Value::Array(items) => Value::Object(
                            items
                                .into_iter()
                                .enumerate()
                                .map(|(i, v)| (i.to_string(), v))
                                .collect(),
                        ),
                        Value::Object(map) => {
                            Value::Array(map.into_iter().map(|(_, v)| v).collect())
                        }
                    };
                }
            }
            Mutation::Nest(i, depth) => {
                if let Some(node) = doc.pointer_mut(&pick(i)) {
                    let mut v = node.take();
                    for _ in 0..*depth {
                        v = Value::Array(vec![v]);
                    }
                    *node = v;
                }
            }
        }
    }
}

/// Raw tokens no serializer writes: out-of-range numbers, lone surrogates, invalid UTF-8.
const RAW: &[&[u8]] = &[
    b"1e400",
    b"-1e400",
    b"123456789012345678901234567890",
    b"NaN",
    b"Infinity",
    b"-",
    b"\"\\ud800\"",
    b"\"\\u0000\"",
    b"\xff\xfe",
    b"\xc3",
    b",",
    b"}",
    b"{",
    b"[",
    b"]",
    b"\"",
    b"null",
    b"true",
    b"0x10",
    b"01",
    b"1.",
    b".5",
    b"\"\\x\"",
    b"\xef\xbb\xbf",
];

/// One byte-level change to a serialized document.
#[derive(Debug, Clone)]
pub enum ByteEdit {
    Truncate(Index),
    Flip(Index, u8),
    Splice(Index, &'static [u8]),
    Repeat(Index, Index, usize),
}

fn byte_edit() -> impl Strategy<Value = ByteEdit> {
    prop_oneof![
        (any::<Index>()).prop_map(ByteEdit::Truncate),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| ByteEdit::Flip(i, b)),
        (any::<Index>(), select(RAW)).prop_map(|(i, t)| ByteEdit::Splice(i, t)),
        (any::<Index>(), any::<Index>(), 2usize..50)
            .prop_map(|(a, b, n)| ByteEdit::Repeat(a, b, n)),
    ]
}

impl ByteEdit {
    /// Applies the edit to `bytes`.
    pub fn apply(&self, bytes: &mut Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        match self {
            ByteEdit::Truncate(i) => bytes.truncate(i.index(bytes.len())),
            ByteEdit::Flip(i, b) => {
                let at = i.index(bytes.len());
                bytes[at] = *b;
            }
            ByteEdit::Splice(i, token) => {
                let at = i.index(bytes.len() + 1);
                bytes.splice(at..at, token.iter().copied());
            }
            ByteEdit::Repeat(a, b, n) => {
                let (x, y) = (a.index(bytes.len()), b.index(bytes.len()));
                let (from, to) = (x.min(y), x.max(y).min(x.min(y) + 64));
                let chunk = bytes[from..to].to_vec();
                for _ in 0..*n {
                    bytes.splice(to..to, chunk.iter().copied());
                }
            }
        }
    }
}

/// Deeply nested JSON (up to 100,000 levels), inside `prefix` … `suffix`.
pub fn deep_json(prefix: &'static str, suffix: &'static str) -> impl Strategy<Value = Vec<u8>> {
    (1usize..100_000, select(vec![("[", "]"), ("{\"a\":", "}")])).prop_map(
        move |(depth, (open, close))| {
            let mut out = prefix.as_bytes().to_vec();
            out.extend(open.repeat(depth).bytes());
            out.extend_from_slice(b"null");
            out.extend(close.repeat(depth).bytes());
            out.extend_from_slice(suffix.as_bytes());
            out
        },
    )
}

/// A damaged copy of one of `seeds`.
pub fn mutated_value(seeds: Vec<Value>) -> impl Strategy<Value = Value> {
    (select(seeds), prop::collection::vec(mutation(), 0..4)).prop_map(|(mut doc, edits)| {
        for edit in &edits {
            edit.apply(&mut doc);
        }
        doc
    })
}

/// Request bodies derived from `seeds`: mostly structurally damaged documents, some also
/// damaged at the byte level, plus random bytes, arbitrary JSON and deep nesting.
pub fn json_body(seeds: Vec<Value>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        10 => (mutated_value(seeds), prop::collection::vec(byte_edit(), 0..3), any::<bool>())
            .prop_map(|(doc, edits, pretty)| {
                let mut bytes = if pretty {
                    serde_json::to_vec_pretty(&doc)
                } else {
                    serde_json::to_vec(&doc)
                }
                .expect("a Value serializes");
                // Byte edits on a third of the cases only: most cases stay parseable JSON.
                if edits.len() == 2 {
                    for edit in &edits {
                        edit.apply(&mut bytes);
                    }
                }
                bytes
            }),
        1 => prop::collection::vec(any::<u8>(), 0..512),
        2 => json_value().prop_map(|v| serde_json::to_vec(&v).expect("a Value serializes")),
        1 => deep_json("", ""),
    ]
}

/// TOML values for policy fields, valid and not.
fn toml_literal() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(vec![
            "0", "-0", "1", "-1", "0.5", "1e400", "-1e400", "nan", "inf", "-inf", "+inf",
            "9223372036854775807", "9223372036854775808", "-9223372036854775809", "0x7f", "1_000",
            "0.99", "0.999999999999", "1", "100", "101", "true", "false", "\"\"", "\"10m\"",
            "\"30s\"", "\"0s\"", "\"1000000000h\"", "\"-1m\"", "\"core\"", "\"basic\"",
            "\"module\"", "\"release\"", "'''multi\nline'''", "1979-05-27T07:32:00Z", "[]",
            "[1, 5, 25, 50, 100]", "[100, 50]", "[0]", "[1.5, 1e400]", "[\"1\"]", "{}",
            "{ a = 1 }", "[[[[[[[[1]]]]]]]]", "", "\"\\u0000\"", "\"\\ud800\"",
        ])
        .prop_map(str::to_owned),
        1 => text().prop_map(|t| format!("{t:?}")),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => any::<f64>().prop_map(|f| f.to_string()),
        1 => (1usize..5_000).prop_map(|n| format!("{}1{}", "[".repeat(n), "]".repeat(n))),
    ]
}

/// One line-level change to a TOML document.
#[derive(Debug, Clone)]
pub enum TomlEdit {
    DeleteLine(Index),
    DuplicateLine(Index),
    SetValue(Index, String),
    InsertLine(Index, String),
    Bytes(ByteEdit),
}

fn toml_line() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => select(vec![
            "[[guard]]", "[stages]", "[stages.x]", "[guard]", "[[stages]]", "name = ", "=",
            "metric = \"x\"", "class = \"core\"", "bogus = 1", "[[guard]]\nmetric = \"m\"\nclass = \"core\"",
            "guard = []", "\"quoted key\" = 1", "a.b.c = 1", "[", "]]", "#", "\u{0}",
        ])
        .prop_map(str::to_owned),
        2 => (select(NAMES), toml_literal()).prop_map(|(k, v)| format!("{k} = {v}")),
        1 => "\\PC{0,30}",
    ]
}

fn toml_edit() -> impl Strategy<Value = TomlEdit> {
    prop_oneof![
        2 => any::<Index>().prop_map(TomlEdit::DeleteLine),
        1 => any::<Index>().prop_map(TomlEdit::DuplicateLine),
        4 => (any::<Index>(), toml_literal()).prop_map(|(i, v)| TomlEdit::SetValue(i, v)),
        2 => (any::<Index>(), toml_line()).prop_map(|(i, l)| TomlEdit::InsertLine(i, l)),
        1 => byte_edit().prop_map(TomlEdit::Bytes),
    ]
}

/// TOML documents derived from `seeds` by line edits, plus random text and bytes.
/// Returned as bytes: some are not UTF-8.
pub fn toml_body(seeds: Vec<String>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => (select(seeds), prop::collection::vec(toml_edit(), 0..5)).prop_map(|(doc, edits)| {
            let mut lines: Vec<String> = doc.lines().map(str::to_owned).collect();
            let mut raw: Option<Vec<u8>> = None;
            for edit in &edits {
                if lines.is_empty() {
                    lines.push(String::new());
                }
                match edit {
                    TomlEdit::DeleteLine(i) => {
                        lines.remove(i.index(lines.len()));
                    }
                    TomlEdit::DuplicateLine(i) => {
                        let at = i.index(lines.len());
                        lines.insert(at, lines[at].clone());
                    }
                    TomlEdit::SetValue(i, v) => {
                        let at = i.index(lines.len());
                        if let Some((k, _)) = lines[at].split_once('=') {
                            lines[at] = format!("{k}= {v}");
                        }
                    }
                    TomlEdit::InsertLine(i, l) => lines.insert(i.index(lines.len() + 1), l.clone()),
                    TomlEdit::Bytes(b) => {
                        let mut bytes = raw.take().unwrap_or_else(|| lines.join("\n").into_bytes());
                        b.apply(&mut bytes);
                        raw = Some(bytes);
                    }
                }
            }
            raw.unwrap_or_else(|| lines.join("\n").into_bytes())
        }),
        1 => "\\PC{0,200}".prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..256),
    ]
}
