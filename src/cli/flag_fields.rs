//! The flag fields of `rollgate flags create|edit` given on the command line, and the pure
//! function that applies them to a flag document.
//!
//! `create` starts from [`defaults`] (a boolean flag `off`/`on`, enabled, rollout 0) or from
//! the `-f` file; `edit` starts from the server's current flag or the `-f` file. The options
//! then apply on top ([`apply`]) and the result is checked against the server's own
//! `FlagDef` (document.rs), so an unknown field or a wrong type is named before anything is
//! sent. What only the server can judge (a variant of the wrong type, an `on_variant` that is
//! not a variant, a policy that does not exist) comes back as its 422 naming the field.
//!
//! The flag API has no revision or `If-Match`: `edit` reads, changes and writes back, and a
//! change made by someone else between the read and the write is overwritten (docs/cli.md).

use super::client::CliError;
use super::document;
use clap::Args;
use rollgate_eval::FlagDef;
use serde_json::{json, Map, Number, Value};
use std::path::PathBuf;

/// Flag types as the API spells them.
const TYPES: [&str; 4] = ["boolean", "string", "number", "object"];

/// Fields of a flag given as options (`create` and `edit`).
#[derive(Debug, Clone, Default, Args)]
pub struct FlagFields {
    /// The flag document, JSON or TOML, as `PUT /api/v1/flags/{key}` takes it (`-` reads
    /// stdin); the options below apply on top of it.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Type of every variant value: boolean, string, number or object.
    #[arg(long = "type", value_name = "TYPE")]
    pub flag_type: Option<String>,
    /// A variant, `NAME=VALUE`, the value read as the flag's type (object: JSON); repeatable.
    #[arg(long = "variant", value_name = "NAME=VALUE")]
    pub variants: Vec<String>,
    /// Remove a variant; repeatable.
    #[arg(long, value_name = "NAME")]
    pub remove_variant: Vec<String>,
    /// The variant served when the flag is killed or rolled back.
    #[arg(long, visible_alias = "off", value_name = "NAME")]
    pub off_variant: Option<String>,
    /// The variant the rollout gives to its cohort.
    #[arg(long, visible_alias = "on", value_name = "NAME")]
    pub on_variant: Option<String>,
    /// Share of users on the on variant, 0–100 (`12.5` or `12.5%`).
    #[arg(long, value_parser = parse_percentage, value_name = "PCT")]
    pub rollout: Option<f64>,
    /// Turn the kill switch off (serve the rollout).
    #[arg(long, conflicts_with = "disabled")]
    pub enabled: bool,
    /// Kill switch: everyone gets the off variant.
    #[arg(long)]
    pub disabled: bool,
    /// Free text for humans (`""` removes it).
    #[arg(long)]
    pub description: Option<String>,
    /// The policy that guards the flag when it is ramped by hand (`""` removes it).
    #[arg(long)]
    pub policy: Option<String>,
    /// A label; repeatable; replaces the flag's tags.
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Bucketing salt (`""` removes it: the key is the salt).
    #[arg(long)]
    pub salt: Option<String>,
}

impl FlagFields {
    /// Whether no option beyond `-f` was given.
    pub fn only_file(&self) -> bool {
        self.flag_type.is_none()
            && self.variants.is_empty()
            && self.remove_variant.is_empty()
            && self.off_variant.is_none()
            && self.on_variant.is_none()
            && self.rollout.is_none()
            && !self.enabled
            && !self.disabled
            && self.description.is_none()
            && self.policy.is_none()
            && self.tags.is_empty()
            && self.salt.is_none()
    }
}

/// The starting point of `create` without a file: a boolean flag, enabled, at 0 %.
pub fn defaults(key: &str) -> Value {
    json!({
        "key": key, "type": "boolean", "variants": {},
        "off_variant": "off", "on_variant": "on", "enabled": true, "rollout": 0
    })
}

/// `doc` with `fields` applied and `key` set, checked against the server's flag type and
/// returned in its canonical JSON form. `source` names the document in messages.
pub fn apply(
    mut doc: Value,
    key: &str,
    fields: &FlagFields,
    source: &str,
) -> Result<Value, CliError> {
    let obj = doc
        .as_object_mut()
        .ok_or_else(|| CliError::Input(format!("{source}: the flag must be an object")))?;
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
    if let Some(ty) = &fields.flag_type {
        if !TYPES.contains(&ty.as_str()) {
            return Err(CliError::Input(format!(
                "--type: {ty:?} is not a flag type ({})",
                TYPES.join(", ")
            )));
        }
        obj.insert("type".into(), json!(ty));
    }
    let ty = obj
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("boolean")
        .to_owned();
    let variants = obj
        .entry("variants")
        .or_insert_with(|| Value::Object(Map::new()));
    let Some(variants) = variants.as_object_mut() else {
        return Err(CliError::Input(format!(
            "{source}: field variants: must be an object"
        )));
    };
    for name in &fields.remove_variant {
        if variants.remove(name).is_none() {
            return Err(CliError::Input(format!(
                "--remove-variant: the flag has no variant {name:?}"
            )));
        }
    }
    for pair in &fields.variants {
        let (name, text) = pair
            .split_once('=')
            .ok_or_else(|| CliError::Input(format!("--variant: {pair:?} is not NAME=VALUE")))?;
        variants.insert(name.trim().to_owned(), variant_value(&ty, name, text)?);
    }
    if ty == "boolean" && variants.is_empty() {
        variants.insert("off".into(), json!(false));
        variants.insert("on".into(), json!(true));
    }
    let mut set = |field: &str, value: Option<Value>| {
        if let Some(v) = value {
            if v == json!("") {
                obj.remove(field);
            } else {
                obj.insert(field.to_owned(), v);
            }
        }
    };
    set("off_variant", fields.off_variant.as_ref().map(|v| json!(v)));
    set("on_variant", fields.on_variant.as_ref().map(|v| json!(v)));
    set("rollout", fields.rollout.map(|v| json!(v)));
    set("description", fields.description.as_ref().map(|v| json!(v)));
    set("policy", fields.policy.as_ref().map(|v| json!(v)));
    set("salt", fields.salt.as_ref().map(|v| json!(v)));
    if fields.enabled || fields.disabled {
        set("enabled", Some(json!(fields.enabled)));
    }
    if !fields.tags.is_empty() {
        set("tags", Some(json!(fields.tags)));
    }
    document::check::<FlagDef>(source, doc)
}

/// `text` read as a value of the flag type `ty`.
fn variant_value(ty: &str, name: &str, text: &str) -> Result<Value, CliError> {
    let bad = || CliError::Input(format!("--variant {name}: {text:?} is not a {ty} value"));
    match ty {
        "boolean" => text
            .trim()
            .parse::<bool>()
            .map(Value::Bool)
            .map_err(|_| bad()),
        "number" => serde_json::from_str::<Number>(text.trim())
            .map(Value::Number)
            .map_err(|_| bad()),
        "object" => match serde_json::from_str::<Value>(text) {
            Ok(v @ Value::Object(_)) => Ok(v),
            _ => Err(bad()),
        },
        _ => Ok(Value::String(text.to_owned())),
    }
}

/// `12.5`, `12.5%` → 12.5, refused outside 0–100.
pub fn parse_percentage(text: &str) -> Result<f64, String> {
    let number = text.trim().trim_end_matches('%');
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a percentage"))?;
    if (0.0..=100.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{text} is outside 0–100"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> FlagFields {
        FlagFields::default()
    }

    #[test]
    fn a_bare_create_is_a_boolean_flag_off_and_on() {
        let flag = apply(defaults("dark-mode"), "dark-mode", &fields(), "flag").unwrap();
        assert_eq!(flag["variants"], json!({"off": false, "on": true}));
        assert_eq!(flag["enabled"], true);
        assert_eq!(flag["rollout"], 0.0);
    }

    #[test]
    fn options_set_typed_variants_and_fields() {
        let f = FlagFields {
            flag_type: Some("number".into()),
            variants: vec!["small=10".into(), "large=12.5".into()],
            off_variant: Some("small".into()),
            on_variant: Some("large".into()),
            rollout: Some(25.0),
            disabled: true,
            description: Some("page size".into()),
            tags: vec!["ui".into()],
            ..fields()
        };
        let flag = apply(defaults("page"), "page", &f, "flag").unwrap();
        assert_eq!(flag["type"], "number");
        assert_eq!(flag["variants"], json!({"small": 10, "large": 12.5}));
        assert_eq!(flag["on_variant"], "large");
        assert_eq!(flag["enabled"], false);
        assert_eq!(flag["description"], "page size");
        assert_eq!(flag["tags"], json!(["ui"]));
        let cleared = FlagFields {
            description: Some(String::new()),
            ..fields()
        };
        let flag = apply(flag, "page", &cleared, "flag").unwrap();
        assert!(flag.get("description").is_none(), "{flag}");
    }

    #[test]
    fn bad_options_name_the_option() {
        let bad_type = FlagFields {
            flag_type: Some("integer".into()),
            ..fields()
        };
        let e = apply(defaults("a"), "a", &bad_type, "flag")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--type: \"integer\""), "{e}");
        let bad_value = FlagFields {
            variants: vec!["on=maybe".into()],
            ..fields()
        };
        let e = apply(defaults("a"), "a", &bad_value, "flag")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--variant on: \"maybe\" is not a boolean"),
            "{e}"
        );
        let e = apply(json!({"key": "b"}), "a", &fields(), "f.json")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("f.json: field key"), "{e}");
    }

    #[test]
    fn only_file_sees_any_option() {
        let mut f = FlagFields {
            file: Some("x.json".into()),
            ..fields()
        };
        assert!(f.only_file());
        f.rollout = Some(1.0);
        assert!(!f.only_file());
    }
}
