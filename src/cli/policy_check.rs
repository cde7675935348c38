//! `rollgate policy validate FILE…` without a server: the same checks the server runs on a
//! policy (src/policies.rs), reported with the file and the field.
//!
//! A `.toml` file is read as the server reads `policies/*.toml` at start: [`Policy::parse_toml`]
//! (shape, line and column of a syntax error), [`Policy::validate`] (values), and the file
//! name must be the policy's name. A `.json` file is read as `PUT /api/v1/policies/{name}`
//! reads a JSON body (shape with the field's path, then values); its file name is free. The
//! validation stops at a policy's first problem, as the server's does, so one problem per file
//! is reported. [`check`] is pure; [`run`] reads the files and prints.

use super::client::CliError;
use super::document;
use crate::policies::{Policy, PolicyError};
use std::path::{Path, PathBuf};

/// The policy in `text`, read from a file named `path`, or its first problem.
pub fn check(path: &Path, text: &str) -> Result<Policy, PolicyError> {
    let policy = if document::is_json(path, text) {
        let mut de = serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize::<_, Policy>(&mut de).map_err(|e| PolicyError {
            field: match e.path().to_string() {
                p if p == "." => "document".to_owned(),
                p => p,
            },
            message: e.into_inner().to_string(),
        })?
    } else {
        Policy::parse_toml(text)?
    };
    policy.validate()?;
    let is_toml = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("toml"));
    if is_toml && path.file_stem().and_then(|s| s.to_str()) != Some(policy.name.as_str()) {
        return Err(PolicyError {
            field: "name".into(),
            message: format!(
                "{:?} does not match the file name (the server loads policies/NAME.toml)",
                policy.name
            ),
        });
    }
    Ok(policy)
}

/// Checks each file, printing `FILE: ok (policy NAME)` or `FILE: FIELD: problem`; fails when
/// any file is unreadable or invalid.
pub fn run(files: &[PathBuf]) -> Result<(), CliError> {
    let mut bad = 0;
    for path in files {
        let shown = document::shown(path);
        let outcome = document::read_text(path).and_then(|text| {
            check(path, &text).map_err(|e| CliError::Input(format!("{shown}: {e}")))
        });
        match outcome {
            Ok(policy) => println!("{shown}: ok (policy {})", policy.name),
            Err(e) => {
                bad += 1;
                eprintln!("{e}");
            }
        }
    }
    match bad {
        0 => Ok(()),
        n => Err(CliError::Failed(format!(
            "{n} of {} policy file(s) invalid",
            files.len()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "checkout"

[[guard]]
metric = "payment_error"
class = "core"
max_relative_increase = 0.1
"#;

    #[test]
    fn a_good_file_passes_and_a_wrong_name_is_named() {
        assert_eq!(
            check(Path::new("policies/checkout.toml"), GOOD)
                .unwrap()
                .name,
            "checkout"
        );
        let e = check(Path::new("other.toml"), GOOD).unwrap_err();
        assert_eq!(e.field, "name");
    }

    #[test]
    fn json_problems_name_their_field() {
        let e = check(
            Path::new("p.json"),
            r#"{"name": "checkout", "confidence": 2}"#,
        )
        .unwrap_err();
        assert_eq!(e.field, "confidence");
        let e = check(Path::new("p.json"), r#"{"name": "checkout", "colour": 1}"#).unwrap_err();
        assert!(e.message.contains("colour"), "{e}");
        let e = check(Path::new("p.json"), r#"{"name": "#).unwrap_err();
        assert_eq!(e.field, "name");
    }
}
