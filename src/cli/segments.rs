//! `rollgate segments list|show|create|edit|delete`.
//!
//! A segment is `{key, when: [conditions], description}` (`PUT /api/v1/segments/{key}`).
//! `create` and `edit` take the document from `-f FILE` (JSON or TOML) and/or options
//! (`--when` conditions as JSON objects, `--description`), check it against the server's own
//! `SegmentDef` (document.rs) and write it; `create` refuses an existing key. `delete` asks the
//! server, which refuses (409, naming it) while a flag or a live release uses the segment.

use super::client::{segment, CliError};
use super::document;
use super::output::{text_of, truncate, Table};
use super::{show, Remote};
use clap::{Args, Subcommand};
use rollgate_eval::SegmentDef;
use serde_json::{json, Value};
use std::path::PathBuf;

/// `rollgate segments …`
#[derive(Debug, Args)]
pub struct SegmentsArgs {
    #[command(flatten)]
    remote: Remote,
    #[command(subcommand)]
    command: SegmentsCommand,
}

#[derive(Debug, Subcommand)]
enum SegmentsCommand {
    /// Every segment: key, conditions, description.
    List,
    /// One segment in full.
    Show {
        /// Segment key.
        key: String,
    },
    /// Create a segment from a file and/or options; refused when the key exists.
    Create {
        /// Segment key.
        key: String,
        #[command(flatten)]
        fields: SegmentFields,
    },
    /// Change a segment: the file (`-f`) replaces it, options apply on top.
    Edit {
        /// Segment key.
        key: String,
        #[command(flatten)]
        fields: SegmentFields,
    },
    /// Delete a segment; refused while a flag or a live release uses it.
    Delete {
        /// Segment key.
        key: String,
    },
}

/// Fields of a segment given on the command line.
#[derive(Debug, Clone, Default, Args)]
pub struct SegmentFields {
    /// The segment document, JSON or TOML, as `PUT /api/v1/segments/{key}` takes it (`-`:
    /// stdin).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// A condition as JSON, e.g. `{"attribute":"plan","op":"in","values":["pro"]}`;
    /// repeatable; replaces the segment's conditions.
    #[arg(long = "when", value_name = "JSON")]
    pub when: Vec<String>,
    /// Free text for humans (`""` removes it).
    #[arg(long)]
    pub description: Option<String>,
}

/// Runs a `segments` subcommand.
pub fn run(args: SegmentsArgs) -> Result<(), CliError> {
    let client = args.remote.client()?;
    let format = args.remote.format();
    match args.command {
        SegmentsCommand::List => {
            let answer = client.get("/api/v1/segments")?;
            show(format, &answer, render_list);
        }
        SegmentsCommand::Show { key } => {
            let answer = client.get(&path(&key))?;
            show(format, &answer, render_segment);
        }
        SegmentsCommand::Create { key, fields } => {
            let (doc, source) = start(&fields, || Ok(json!({ "key": key, "when": [] })))?;
            let body = apply(doc, &key, &fields, &source)?;
            match client.get(&path(&key)) {
                Ok(_) => {
                    return Err(CliError::Input(format!(
                    "segment {key:?} already exists; change it with `rollgate segments edit {key}`"
                )))
                }
                Err(CliError::Api { status: 404, .. }) => {}
                Err(e) => return Err(e),
            }
            let answer = client.put(&path(&key), &body)?;
            eprintln!("segment {key} created");
            show(format, &answer, render_segment);
        }
        SegmentsCommand::Edit { key, fields } => {
            if fields.file.is_none() && fields.when.is_empty() && fields.description.is_none() {
                return Err(CliError::Input(
                    "nothing to change: give -f FILE, --when or --description".into(),
                ));
            }
            let current = client.get(&path(&key))?;
            let (doc, source) = start(&fields, || Ok(current))?;
            let body = apply(doc, &key, &fields, &source)?;
            let answer = client.put(&path(&key), &body)?;
            eprintln!("segment {key} saved");
            show(format, &answer, render_segment);
        }
        SegmentsCommand::Delete { key } => {
            client.delete(&path(&key))?;
            let answer = json!({ "deleted": key });
            show(format, &answer, |_| format!("segment {key} deleted"));
        }
    }
    Ok(())
}

fn path(key: &str) -> String {
    format!("/api/v1/segments/{}", segment(key))
}

fn start(
    fields: &SegmentFields,
    fallback: impl FnOnce() -> Result<Value, CliError>,
) -> Result<(Value, String), CliError> {
    match &fields.file {
        Some(file) => Ok((document::read(file)?, document::shown(file))),
        None => Ok((fallback()?, "segment".to_owned())),
    }
}

/// `doc` with the key and options applied, checked against `SegmentDef`.
pub fn apply(
    mut doc: Value,
    key: &str,
    fields: &SegmentFields,
    source: &str,
) -> Result<Value, CliError> {
    let Some(obj) = doc.as_object_mut() else {
        return Err(CliError::Input(format!(
            "{source}: the segment must be an object"
        )));
    };
    match obj.get("key").and_then(Value::as_str) {
        Some(k) if k != key => {
            return Err(CliError::Input(format!(
                "{source}: field key: {k:?} differs from the command line's {key:?}"
            )))
        }
        _ => {
            obj.insert("key".into(), json!(key));
        }
    }
    if !fields.when.is_empty() {
        let mut when = Vec::new();
        for (i, text) in fields.when.iter().enumerate() {
            let condition: Value = serde_json::from_str(text)
                .map_err(|e| CliError::Input(format!("--when #{}: invalid JSON: {e}", i + 1)))?;
            when.push(condition);
        }
        obj.insert("when".into(), Value::Array(when));
    }
    match fields.description.as_deref() {
        Some("") => {
            obj.remove("description");
        }
        Some(text) => {
            obj.insert("description".into(), json!(text));
        }
        None => {}
    }
    document::check::<SegmentDef>(source, doc)
}

/// The `GET /api/v1/segments` document as a table.
pub fn render_list(answer: &Value) -> String {
    let segments = answer["segments"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if segments.is_empty() {
        return "no segments".to_owned();
    }
    let mut table = Table::new(&["KEY", "CONDITIONS", "DESCRIPTION"]);
    for s in segments {
        table.row(vec![
            text_of(&s["key"]),
            s["when"].as_array().map_or(0, Vec::len).to_string(),
            s["description"]
                .as_str()
                .map_or("-".into(), |d| truncate(d, 60)),
        ]);
    }
    table.render()
}

/// One segment: its key, description and each condition.
pub fn render_segment(s: &Value) -> String {
    let mut table = Table::new(&["FIELD", "VALUE"]);
    table.row(vec!["key".into(), text_of(&s["key"])]);
    if let Some(d) = s["description"].as_str() {
        table.row(vec!["description".into(), d.to_owned()]);
    }
    for (i, c) in s["when"].as_array().into_iter().flatten().enumerate() {
        table.row(vec![
            format!("when {}", i + 1),
            truncate(&condition(c), 100),
        ]);
    }
    table.render()
}

/// A condition in words: `plan in ["pro"]`, or `segment beta`.
fn condition(c: &Value) -> String {
    match c["segment"].as_str() {
        Some(s) => format!("segment {s}"),
        None => format!(
            "{} {} {}",
            text_of(&c["attribute"]),
            text_of(&c["op"]),
            c["values"]
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_replace_conditions_and_name_bad_json() {
        let fields = SegmentFields {
            when: vec![r#"{"attribute":"plan","op":"in","values":["pro"]}"#.into()],
            description: Some("paying".into()),
            ..SegmentFields::default()
        };
        let s = apply(json!({"key": "pro", "when": []}), "pro", &fields, "segment").unwrap();
        assert_eq!(s["when"][0]["op"], "in");
        assert_eq!(s["description"], "paying");
        assert!(render_segment(&s).contains("plan in [\"pro\"]"));
        let bad = SegmentFields {
            when: vec!["{plan".into()],
            ..SegmentFields::default()
        };
        let e = apply(json!({"key": "pro", "when": []}), "pro", &bad, "segment")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--when #1: invalid JSON"), "{e}");
    }
}
