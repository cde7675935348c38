//! Documents given with `-f FILE` (a flag, a segment, a signal batch): read, parsed and checked
//! before anything is sent.
//!
//! A file is JSON or TOML by its extension (`.json`, `.toml`); stdin (`-`) and files without
//! either are JSON when they start with `{`, TOML otherwise. [`check`] deserialises the
//! document into the server's own type (`FlagDef`, `SegmentDef`: `deny_unknown_fields`), so an
//! unknown or mistyped field is reported as `FILE: field PATH: what` with exit code 1, and the
//! JSON sent is the type's canonical form. Parsing is pure ([`parse`], [`check`]); only
//! [`read_text`] touches the file system.

use super::client::CliError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::path::Path;

/// The text of `path` (`-`: stdin), or an error naming the file.
pub fn read_text(path: &Path) -> Result<String, CliError> {
    if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(path)
    }
    .map_err(|e| CliError::Input(format!("cannot read {}: {e}", path.display())))
}

/// How `path` is shown in messages (`-` is stdin).
pub fn shown(path: &Path) -> String {
    if path == Path::new("-") {
        "stdin".to_owned()
    } else {
        path.display().to_string()
    }
}

/// Whether `text` read from `path` is JSON (else TOML).
pub fn is_json(path: &Path, text: &str) -> bool {
    match path.extension().and_then(|e| e.to_str()) {
        Some(ext) if ext.eq_ignore_ascii_case("json") => true,
        Some(ext) if ext.eq_ignore_ascii_case("toml") => false,
        _ => text.trim_start().starts_with('{'),
    }
}

/// Parses `text` (from `path`) into a JSON object; syntax errors carry their line.
pub fn parse(path: &Path, text: &str) -> Result<Value, CliError> {
    let file = shown(path);
    let value: Value = if is_json(path, text) {
        serde_json::from_str(text)
            .map_err(|e| CliError::Input(format!("{file}: invalid JSON: {e}")))?
    } else {
        toml::from_str(text).map_err(|e| {
            CliError::Input(format!(
                "{file}: invalid TOML: {}",
                e.to_string().trim_end()
            ))
        })?
    };
    if value.is_object() {
        Ok(value)
    } else {
        Err(CliError::Input(format!(
            "{file}: the document must be an object"
        )))
    }
}

/// `value` checked against `T` (the server's own type) and returned in `T`'s canonical JSON
/// form; `source` (a file name, or `flag`) prefixes the message naming the failing field.
pub fn check<T: DeserializeOwned + Serialize>(
    source: &str,
    value: Value,
) -> Result<Value, CliError> {
    let typed: T = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        if path == "." {
            CliError::Input(format!("{source}: {message}"))
        } else {
            CliError::Input(format!("{source}: field {path}: {message}"))
        }
    })?;
    serde_json::to_value(&typed).map_err(|e| CliError::Input(format!("{source}: {e}")))
}

/// Reads and parses `path` into a JSON object (not yet checked against a type).
pub fn read(path: &Path) -> Result<Value, CliError> {
    parse(path, &read_text(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollgate_eval::SegmentDef;

    #[test]
    fn toml_and_json_give_the_same_document() {
        let from_toml = parse(
            Path::new("s.toml"),
            "key = \"beta\"\n[[when]]\nattribute = \"plan\"\nop = \"in\"\nvalues = [\"pro\"]\n",
        )
        .unwrap();
        let from_json = parse(
            Path::new("s.json"),
            r#"{"key": "beta", "when": [{"attribute": "plan", "op": "in", "values": ["pro"]}]}"#,
        )
        .unwrap();
        assert_eq!(from_toml, from_json);
        assert!(check::<SegmentDef>("s.toml", from_toml).is_ok());
    }

    #[test]
    fn unknown_fields_are_named_with_the_file() {
        let doc = serde_json::json!({"key": "beta", "when": [], "colour": "red"});
        let e = check::<SegmentDef>("s.json", doc).unwrap_err().to_string();
        assert!(e.starts_with("s.json: "), "{e}");
        assert!(e.contains("colour"), "{e}");
        let doc = serde_json::json!({"key": "beta", "when": [{"attribute": 5}]});
        let e = check::<SegmentDef>("s.json", doc).unwrap_err().to_string();
        assert!(e.contains("field when[0].attribute"), "{e}");
    }

    #[test]
    fn bad_syntax_and_non_objects_are_refused() {
        let e = parse(Path::new("f.json"), "{\"key\": ")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("f.json: invalid JSON"), "{e}");
        let e = parse(Path::new("f.toml"), "key = ")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("f.toml: invalid TOML"), "{e}");
        let e = parse(Path::new("f.json"), "[1]").unwrap_err().to_string();
        assert!(e.contains("must be an object"), "{e}");
    }
}
