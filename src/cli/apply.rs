//! `rollgate apply -f DIR|FILE [--dry-run] [--prune] [--message TEXT]`: flags as code.
//!
//! Reads a document tree (docs/flags-as-code.md): `.toml` and `.json` files, a directory
//! recursively (names starting with `.` skipped, other extensions ignored), each file either
//! a wrapper (only the keys `[[flag]]`, `[[segment]]`, `[[policy]]`, `[[release]]` or their
//! plurals, as arrays or single tables) or one bare object whose kind is its directory's name
//! (`flags/`, `segments/`, `policies/`, `releases/`). It sends the whole document in ONE request
//! (`POST /api/v1/apply`), so the server validates everything before writing anything, and
//! maps the server's field (`flags[2].rollout`) back to the file it came from.
//!
//! Output: the diff on stdout (`+` create, `~` update, `-` delete, `!` kept), identical for a
//! dry run and the apply that follows; the summary on stderr; `--json` prints the server's
//! answer instead.

use super::client::CliError;
use super::Remote;
use clap::Args;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

/// `rollgate apply …`
#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    remote: Remote,
    /// A file (`.toml`, `.json`) or a directory of them (read recursively).
    #[arg(short = 'f', long = "file")]
    path: PathBuf,
    /// Print the diff only; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Delete the flags, segments and policies the document no longer has (never one still
    /// used: a flag a live release ramps, a segment or policy a flag or release uses).
    #[arg(long)]
    prune: bool,
    /// Recorded with every change in the audit log.
    #[arg(long, short = 'm')]
    message: Option<String>,
}

/// The kinds, as (wrapper key, plural key, directory name, request list).
pub const KINDS: [(&str, &str, &str); 4] = [
    ("flag", "flags", "flags"),
    ("segment", "segments", "segments"),
    ("policy", "policies", "policies"),
    ("release", "releases", "releases"),
];

/// A document read from files: the request lists and where each object came from.
#[derive(Debug, Default)]
pub struct Document {
    /// `flags`, `segments`, `policies`, `releases` → the objects.
    pub lists: Map<String, Value>,
    /// `(list, index)` → `file` or `file [[flag]] #2`.
    pub origins: Vec<(String, usize, String)>,
}

impl Document {
    fn push(&mut self, list: &str, object: Value, origin: String) {
        let entry = self
            .lists
            .entry(list.to_owned())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(items) = entry {
            self.origins.push((list.to_owned(), items.len(), origin));
            items.push(object);
        }
    }

    /// Where `list[index]` came from.
    pub fn origin(&self, list: &str, index: usize) -> Option<&str> {
        self.origins
            .iter()
            .find(|(l, i, _)| l == list && *i == index)
            .map(|(_, _, o)| o.as_str())
    }
}

/// Runs `rollgate apply`.
pub fn run(args: ApplyArgs) -> Result<(), CliError> {
    let document = load(&args.path)?;
    let mut body = Value::Object(document.lists.clone());
    body["prune"] = json!(args.prune);
    body["dry_run"] = json!(args.dry_run);
    if let Some(message) = &args.message {
        body["message"] = json!(message);
    }
    let client = args.remote.client()?;
    let outcome = client
        .post("/api/v1/apply", &body)
        .map_err(|e| locate(e, &document))?;
    if args.remote.json {
        let _ = super::output::emit(&super::output::json(&outcome));
    } else {
        let diff = render_diff(&outcome);
        if !diff.is_empty() {
            let _ = super::output::emit(&diff);
        }
    }
    eprintln!("{}", summary(&outcome));
    Ok(())
}

/// Reads `path` (a file, or a directory recursively) into one document.
pub fn load(path: &Path) -> Result<Document, CliError> {
    let mut files = Vec::new();
    if path.is_dir() {
        walk(path, &mut files)?;
        files.sort();
    } else {
        files.push(path.to_path_buf());
    }
    let mut document = Document::default();
    for file in &files {
        read_file(file, &mut document)?;
    }
    Ok(document)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), CliError> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| CliError::Input(format!("{}: {e}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(|e| CliError::Input(format!("{}: {e}", dir.display())))?;
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            walk(&path, files)?;
        } else if matches!(extension(&path), Some("toml" | "json")) {
            files.push(path);
        }
    }
    Ok(())
}

fn extension(path: &Path) -> Option<&str> {
    path.extension().and_then(|e| e.to_str())
}

/// Parses one file into `document`.
fn read_file(file: &Path, document: &mut Document) -> Result<(), CliError> {
    let name = file.display().to_string();
    let text =
        std::fs::read_to_string(file).map_err(|e| CliError::Input(format!("{name}: {e}")))?;
    let value: Value = if extension(file) == Some("json") {
        serde_json::from_str(&text)
            .map_err(|e| CliError::Input(format!("{name}: invalid JSON: {e}")))?
    } else {
        let table: toml::Table = toml::from_str(&text).map_err(|e| {
            CliError::Input(format!("{name}: invalid TOML: {}", e.to_string().trim()))
        })?;
        serde_json::to_value(table).map_err(|e| CliError::Input(format!("{name}: {e}")))?
    };
    let Value::Object(top) = value else {
        return Err(CliError::Input(format!(
            "{name}: expected an object at the top level"
        )));
    };
    let is_wrapper = |k: &String| KINDS.iter().any(|(one, many, _)| k == one || k == many);
    // A wrapper holds nothing but kind keys; a bare object has its own fields (a flag's or a
    // release's `policy` is one of them, so one kind key alone does not make a wrapper).
    let wrapped = !top.is_empty() && top.keys().all(is_wrapper);
    if !wrapped {
        if let Some(list) = kind_of_dir(file) {
            document.push(list, Value::Object(top), name);
            return Ok(());
        }
        if top.keys().any(is_wrapper) {
            let key = top
                .keys()
                .find(|k| !is_wrapper(k))
                .cloned()
                .unwrap_or_default();
            return Err(CliError::Input(format!(
                "{name}: unknown top-level key {key:?} (expected flag, segment, policy or release)"
            )));
        }
        return Err(CliError::Input(format!(
            "{name}: no [[flag]], [[segment]], [[policy]] or [[release]] here, and the file \
             is not in a flags/, segments/, policies/ or releases/ directory"
        )));
    }
    for (key, value) in top {
        let Some((one, many, _)) = KINDS
            .iter()
            .find(|(one, many, _)| &key == one || &key == many)
        else {
            continue; // unreachable: every key of a wrapper is a kind key
        };
        let items = match value {
            Value::Array(items) => items,
            object @ Value::Object(_) => vec![object],
            _ => {
                return Err(CliError::Input(format!(
                    "{name}: {key} must be a table or an array of tables"
                )))
            }
        };
        for (i, item) in items.into_iter().enumerate() {
            document.push(many, item, format!("{name} [[{one}]] #{}", i + 1));
        }
    }
    Ok(())
}

/// The list a bare object belongs to: its directory's name.
fn kind_of_dir(file: &Path) -> Option<&'static str> {
    let dir = file.parent()?.file_name()?.to_str()?;
    KINDS
        .iter()
        .find(|(_, _, d)| *d == dir)
        .map(|(_, many, _)| *many)
}

/// A server error naming `flags[2].rollout` → the file the object came from and its field.
fn locate(e: CliError, document: &Document) -> CliError {
    let CliError::Api {
        message,
        field: Some(field),
        ..
    } = &e
    else {
        return e;
    };
    let Some((list, rest)) = field.split_once('[') else {
        return e;
    };
    let Some((index, rest)) = rest.split_once(']') else {
        return e;
    };
    let Some(origin) = index.parse().ok().and_then(|i| document.origin(list, i)) else {
        return e;
    };
    let within = rest.trim_start_matches('.');
    let field = if within.is_empty() {
        "(the object)"
    } else {
        within
    };
    CliError::Input(format!(
        "{origin}: field {field}: {}",
        without_body_position(message)
    ))
}

/// The server's message without serde's ` at line L column C`: that position is in the JSON
/// request the CLI built, not in the user's file, so it would only mislead.
fn without_body_position(message: &str) -> &str {
    let Some((head, tail)) = message.rsplit_once(" at line ") else {
        return message;
    };
    let is_position = tail.split_once(" column ").is_some_and(|(l, c)| {
        !l.is_empty() && !c.is_empty() && (l.to_owned() + c).bytes().all(|b| b.is_ascii_digit())
    });
    if is_position {
        head
    } else {
        message
    }
}

/// The diff, one line per object that changes.
pub fn render_diff(outcome: &Value) -> String {
    let mut out = String::new();
    for c in outcome["changes"].as_array().into_iter().flatten() {
        let kind = c["kind"].as_str().unwrap_or("?");
        let key = c["key"].as_str().unwrap_or("?");
        let line = match c["op"].as_str() {
            Some("create") => format!("+ {kind} {key}"),
            Some("delete") => format!("- {kind} {key}"),
            Some("kept") => {
                format!("! {kind} {key}: not in the document; kept (loaded from a policies/ file)")
            }
            Some("update") => {
                let fields: Vec<String> = c["fields"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|f| {
                        format!(
                            "{} {} → {}",
                            f["field"].as_str().unwrap_or("?"),
                            short(f.get("before")),
                            short(f.get("after"))
                        )
                    })
                    .collect();
                format!("~ {kind} {key}: {}", fields.join("; "))
            }
            _ => continue,
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// A field value, short: integral numbers without `.0`, long values cut.
fn short(value: Option<&Value>) -> String {
    let Some(value) = value else {
        return "(none)".into();
    };
    let text = match value.as_f64() {
        Some(n) if n.fract() == 0.0 && n.abs() < 1e15 => format!("{}", n as i64),
        _ => value.to_string(),
    };
    super::output::truncate(&text, 60)
}

/// `dry run: 1 to create, …` or `applied: …, revision N`.
pub fn summary(outcome: &Value) -> String {
    let count = |op: &str| {
        outcome["changes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["op"] == op)
            .count()
    };
    let counts = format!(
        "{} create, {} update, {} delete, {} unchanged",
        count("create"),
        count("update"),
        count("delete"),
        count("unchanged")
    );
    if outcome["dry_run"] == true {
        format!("dry run: {counts}; nothing changed")
    } else if outcome["applied"] == true {
        format!("applied: {counts}; revision {}", outcome["revision"])
    } else {
        format!("nothing to apply: {counts}")
    }
}
