//! `rollgate audit [--flag F] [--release R] [--since T] [--limit N]`: the audit log, newest
//! first, with a one-line summary of what each entry changed.

use super::client::CliError;
use super::output::{number, text_of, truncate, Table};
use super::{show, Remote};
use clap::Args;
use serde_json::Value;

/// `rollgate audit …`
#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    remote: Remote,
    /// Only entries about this flag.
    #[arg(long)]
    flag: Option<String>,
    /// Only entries about this release (id or name).
    #[arg(long)]
    release: Option<String>,
    /// Only entries at or after this time (RFC 3339 or Unix milliseconds).
    #[arg(long)]
    since: Option<String>,
    /// At most this many entries (1–1000).
    #[arg(long, default_value_t = 50)]
    limit: usize,
}

/// Runs `audit`.
pub fn run(args: AuditArgs) -> Result<(), CliError> {
    let client = args.remote.client()?;
    let mut query = vec![("limit", args.limit.to_string())];
    let filters = [
        ("flag", args.flag),
        ("release", args.release),
        ("since", args.since),
    ];
    query.extend(filters.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
    let answer = client.get_query("/api/v1/audit", &query)?;
    show(args.remote.format(), &answer, render);
    Ok(())
}

/// The `GET /api/v1/audit` document as a table, in the server's (newest first) order.
pub fn render(answer: &Value) -> String {
    let entries = answer["entries"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if entries.is_empty() {
        return "no audit entries".to_owned();
    }
    let mut table = Table::new(&["TIME", "ACTOR", "ACTION", "SUBJECT", "CHANGE", "REASON"]);
    for e in entries {
        let subject = ["flag", "release", "subject"]
            .iter()
            .find_map(|k| e[*k].as_str())
            .unwrap_or("-");
        table.row(vec![
            text_of(&e["time"]),
            text_of(&e["actor"]),
            text_of(&e["action"]),
            subject.to_owned(),
            truncate(&change(&e["before"], &e["after"]), 60),
            e["reason"].as_str().unwrap_or("").to_owned(),
        ]);
    }
    table.render()
}

/// What changed between two versions of a document: `rollout 10 → 25, state = paused, rules`.
/// Changed scalar fields show both values, added ones their value, removed ones `-name`;
/// other fields are just named.
fn change(before: &Value, after: &Value) -> String {
    match (before, after) {
        (Value::Null, Value::Null) => String::new(),
        (Value::Null, _) => "created".to_owned(),
        (_, Value::Null) => "deleted".to_owned(),
        (Value::Object(b), Value::Object(a)) => {
            let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
            keys.sort();
            keys.dedup();
            let parts: Vec<String> = keys
                .into_iter()
                .filter_map(|k| match (b.get(k), a.get(k)) {
                    (old, new) if old == new => None,
                    (Some(old), Some(new)) if is_scalar(old) && is_scalar(new) => {
                        Some(format!("{k} {} → {}", scalar(old), scalar(new)))
                    }
                    (None, Some(new)) if is_scalar(new) => Some(format!("{k} = {}", scalar(new))),
                    (Some(_), None) => Some(format!("-{k}")),
                    _ => Some(k.clone()),
                })
                .collect();
            parts.join(", ")
        }
        _ if before == after => String::new(),
        _ => format!("{} → {}", scalar(before), scalar(after)),
    }
}

fn is_scalar(v: &Value) -> bool {
    !matches!(v, Value::Array(_) | Value::Object(_))
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        Value::Number(n) => n.as_f64().map_or_else(|| n.to_string(), number),
        other => truncate(&other.to_string(), 24),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn changes_name_fields_and_show_scalar_values() {
        let before = json!({"rollout": 10.0, "enabled": true, "rules": [], "key": "a"});
        let after = json!({"rollout": 25.0, "enabled": true, "rules": [1], "key": "a"});
        assert_eq!(change(&before, &after), "rollout 10 → 25, rules");
        assert_eq!(change(&Value::Null, &after), "created");
        assert_eq!(
            change(
                &json!({"rollout": 1.0, "x": 1}),
                &json!({"rollout": 1.0, "state": "paused"})
            ),
            "state = paused, -x"
        );
        assert_eq!(change(&before, &Value::Null), "deleted");
    }
}
