//! `rollgate flags list|get|create|edit|set-rollout|kill|unkill`.
//!
//! Each subcommand is one request (`create` first checks the flag does not exist, `edit`
//! reads it first); the flag the server answers with is what gets printed, so the output
//! always shows the state that was actually committed. The fields of `create`/`edit` live in
//! flag_fields.rs.

use super::client::{segment, CliError, Client};
use super::flag_fields::{self, parse_percentage, FlagFields};
use super::output::{
    percent, percent_of, state_tone, stdout_wants_colour, text_of, truncate, Table,
};
use super::{document, show, Remote};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

/// `rollgate flags …`
#[derive(Debug, Args)]
pub struct FlagsArgs {
    #[command(flatten)]
    remote: Remote,
    #[command(subcommand)]
    command: FlagsCommand,
}

#[derive(Debug, Subcommand)]
enum FlagsCommand {
    /// Every flag: state, rollout, rules.
    List,
    /// One flag in full.
    Get {
        /// Flag key.
        key: String,
    },
    /// Create a flag from a file (`-f`) and/or options; refused when the key exists.
    Create {
        /// Flag key.
        key: String,
        #[command(flatten)]
        fields: FlagFields,
    },
    /// Change a flag: read it, apply the file (`-f`, replaces it) and/or options, write it back.
    Edit {
        /// Flag key.
        key: String,
        #[command(flatten)]
        fields: FlagFields,
    },
    /// Set a flag's rollout by hand (a module in a release is then held).
    SetRollout {
        /// Flag key.
        key: String,
        /// Percentage of users on the new variant, 0–100 (`12.5` or `12.5%`).
        #[arg(value_parser = parse_percentage)]
        percentage: f64,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Kill switch: everyone gets the off variant.
    Kill {
        /// Flag key.
        key: String,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Undo the kill switch.
    Unkill {
        /// Flag key.
        key: String,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: Option<String>,
    },
}

/// Runs a `flags` subcommand.
pub fn run(args: FlagsArgs) -> Result<(), CliError> {
    let client = args.remote.client()?;
    let json = args.remote.format();
    match args.command {
        FlagsCommand::List => {
            let answer = client.get("/api/v1/flags")?;
            let colour = stdout_wants_colour();
            show(json, &answer, |a| render_list_with(a, colour));
        }
        FlagsCommand::Create { key, fields } => {
            let answer = create(&client, &key, &fields)?;
            eprintln!("flag {key} created");
            show(json, &answer, render_flag);
        }
        FlagsCommand::Edit { key, fields } => {
            let answer = edit(&client, &key, &fields)?;
            eprintln!("flag {key} saved");
            show(json, &answer, render_flag);
        }
        FlagsCommand::Get { key } => {
            let answer = client.get(&flag_path(&key, ""))?;
            show(json, &answer, render_flag);
        }
        FlagsCommand::SetRollout {
            key,
            percentage,
            reason,
        } => {
            let body = json!({ "percentage": percentage, "reason": reason });
            let answer = client.put(&flag_path(&key, "/rollout"), &body)?;
            show(json, &answer, |f| {
                format!(
                    "{}: rollout set to {}",
                    text_of(&f["key"]),
                    percent_of(&f["rollout"])
                )
            });
        }
        FlagsCommand::Kill { key, reason } => {
            let answer = client.post(&flag_path(&key, "/kill"), &json!({ "reason": reason }))?;
            show(json, &answer, |f| {
                format!(
                    "{}: killed, everyone gets {:?}",
                    text_of(&f["key"]),
                    text_of(&f["off_variant"])
                )
            });
        }
        FlagsCommand::Unkill { key, reason } => {
            let answer = client.post(&flag_path(&key, "/unkill"), &json!({ "reason": reason }))?;
            show(json, &answer, |f| {
                format!(
                    "{}: enabled again, rollout {}",
                    text_of(&f["key"]),
                    percent_of(&f["rollout"])
                )
            });
        }
    }
    Ok(())
}

fn flag_path(key: &str, tail: &str) -> String {
    format!("/api/v1/flags/{}{tail}", segment(key))
}

/// The starting document and how messages name it: the `-f` file, or `fallback`.
fn start(
    fields: &FlagFields,
    fallback: impl FnOnce() -> Result<Value, CliError>,
) -> Result<(Value, String), CliError> {
    match &fields.file {
        Some(path) => Ok((document::read(path)?, document::shown(path))),
        None => Ok((fallback()?, "flag".to_owned())),
    }
}

fn create(client: &Client, key: &str, fields: &FlagFields) -> Result<Value, CliError> {
    let (doc, source) = start(fields, || Ok(flag_fields::defaults(key)))?;
    let flag = flag_fields::apply(doc, key, fields, &source)?;
    match client.get(&flag_path(key, "")) {
        Ok(_) => {
            return Err(CliError::Input(format!(
                "flag {key:?} already exists; change it with `rollgate flags edit {key}`"
            )))
        }
        Err(CliError::Api { status: 404, .. }) => {}
        Err(e) => return Err(e),
    }
    client.put(&flag_path(key, ""), &flag)
}

fn edit(client: &Client, key: &str, fields: &FlagFields) -> Result<Value, CliError> {
    if fields.file.is_none() && fields.only_file() {
        return Err(CliError::Input(
            "nothing to change: give -f FILE or an option such as --rollout".into(),
        ));
    }
    let current = client.get(&flag_path(key, ""))?;
    let (doc, source) = start(fields, || Ok(current))?;
    let flag = flag_fields::apply(doc, key, fields, &source)?;
    client.put(&flag_path(key, ""), &flag)
}

/// `enabled` as an operator reads it.
fn switch(flag: &Value) -> &'static str {
    match flag["enabled"].as_bool() {
        Some(false) => "KILLED",
        _ => "on",
    }
}

/// The `GET /api/v1/flags` document as a table.
pub fn render_list(answer: &Value) -> String {
    render_list_with(answer, false)
}

/// [`render_list`], the switch column coloured when `colour`.
pub fn render_list_with(answer: &Value, colour: bool) -> String {
    let flags = answer["flags"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if flags.is_empty() {
        return "no flags".to_owned();
    }
    let mut table = Table::new(&["KEY", "TYPE", "SWITCH", "ROLLOUT", "RULES", "OFF → ON"]);
    for f in flags {
        let rules = f["rules"].as_array().map_or(0, Vec::len);
        table.row(vec![
            text_of(&f["key"]),
            text_of(&f["type"]),
            switch(f).to_owned(),
            percent_of(&f["rollout"]),
            rules.to_string(),
            format!(
                "{} → {}",
                text_of(&f["off_variant"]),
                text_of(&f["on_variant"])
            ),
        ]);
    }
    table.render_with(colour, |cell| match cell {
        "KILLED" | "on" => state_tone(cell),
        _ => None,
    })
}

/// One flag as a two-column sheet, rules in order.
pub fn render_flag(flag: &Value) -> String {
    let mut table = Table::new(&["FIELD", "VALUE"]);
    let mut field = |name: &str, value: String| table.row(vec![name.to_owned(), value]);
    field("key", text_of(&flag["key"]));
    field("type", text_of(&flag["type"]));
    field("switch", switch(flag).to_owned());
    field(
        "rollout",
        flag["rollout"].as_f64().map_or_else(|| "-".into(), percent),
    );
    field("off variant", text_of(&flag["off_variant"]));
    field("on variant", text_of(&flag["on_variant"]));
    if let Some(variants) = flag["variants"].as_object() {
        for (name, value) in variants {
            field(&format!("variant {name}"), truncate(&value.to_string(), 80));
        }
    }
    for (i, rule) in flag["rules"].as_array().into_iter().flatten().enumerate() {
        field(&format!("rule {}", i + 1), truncate(&rule.to_string(), 100));
    }
    for name in ["description", "salt"] {
        if let Some(text) = flag[name].as_str() {
            field(name, text.to_owned());
        }
    }
    if let Some(tags) = flag["tags"].as_array().filter(|t| !t.is_empty()) {
        let tags: Vec<String> = tags.iter().map(text_of).collect();
        field("tags", tags.join(", "));
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_accept_a_percent_sign_and_stay_in_range() {
        assert_eq!(parse_percentage("12.5%"), Ok(12.5));
        assert_eq!(parse_percentage("100"), Ok(100.0));
        assert!(parse_percentage("101").is_err());
        assert!(parse_percentage("ten").is_err());
    }

    #[test]
    fn the_list_shows_killed_flags_plainly() {
        let answer = json!({"flags": [
            {"key": "qr-ordering", "type": "boolean", "enabled": false, "rollout": 12.5,
             "rules": [], "off_variant": "off", "on_variant": "on"}
        ]});
        let text = render_list(&answer);
        assert!(
            text.contains("qr-ordering  boolean  KILLED  12.5%"),
            "{text}"
        );
    }
}
