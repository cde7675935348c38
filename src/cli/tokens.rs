//! `rollgate tokens create|list|revoke`.
//!
//! Tokens have a name and a role (`admin`, `client`, `viewer`: src/auth/mod.rs). The secret is
//! returned by the server once, at creation: in table mode it is the only thing on stdout
//! (`SECRET=$(rollgate tokens create --name web --role client)`), its description on stderr;
//! `--output json|yaml` prints the whole answer. A role the server does not know is refused
//! here, naming `--role` and the roles there are, before anything is sent.

use super::client::{segment, CliError};
use super::output::{text_of, Table};
use super::{show, Remote};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

/// The roles a token may have (`auth::Role` as JSON spells them).
const ROLES: [&str; 3] = ["admin", "client", "viewer"];

/// `rollgate tokens …`
#[derive(Debug, Args)]
pub struct TokensArgs {
    #[command(flatten)]
    remote: Remote,
    #[command(subcommand)]
    command: TokensCommand,
}

#[derive(Debug, Subcommand)]
enum TokensCommand {
    /// Create a token and print its secret (shown once, stored only as a hash).
    Create {
        /// Unique name, 1–64 of `[A-Za-z0-9._-]`.
        #[arg(long)]
        name: String,
        /// admin (everything), client (evaluate, stream, send signals) or viewer (read-only).
        #[arg(long)]
        role: String,
    },
    /// Every token: name, role, creation time (never the secret).
    List,
    /// Revoke a token at once, by name (the last admin token cannot be revoked).
    Revoke {
        /// Token name.
        name: String,
    },
}

/// Runs a `tokens` subcommand.
pub fn run(args: TokensArgs) -> Result<(), CliError> {
    let format = args.remote.format();
    // Checked before the client is built, so a typo never needs a server.
    if let TokensCommand::Create { role, .. } = &args.command {
        check_role(role)?;
    }
    let client = args.remote.client()?;
    match args.command {
        TokensCommand::Create { name, role } => {
            let answer = client.post("/api/v1/tokens", &json!({ "name": name, "role": role }))?;
            eprintln!(
                "token {} ({}) created; its secret is shown once:",
                text_of(&answer["name"]),
                text_of(&answer["role"])
            );
            show(format, &answer, |a| text_of(&a["token"]));
        }
        TokensCommand::List => {
            let answer = client.get("/api/v1/tokens")?;
            show(format, &answer, render_list);
        }
        TokensCommand::Revoke { name } => {
            client.delete(&format!("/api/v1/tokens/{}", segment(&name)))?;
            let answer = json!({ "revoked": name });
            show(format, &answer, |_| format!("token {name} revoked"));
        }
    }
    Ok(())
}

/// `role` if it is one the server knows, else an error naming `--role` and the roles.
pub fn check_role(role: &str) -> Result<(), CliError> {
    if ROLES.contains(&role) {
        Ok(())
    } else {
        Err(CliError::Input(format!(
            "--role: {role:?} is not a role ({})",
            ROLES.join(", ")
        )))
    }
}

/// The `GET /api/v1/tokens` document as a table.
pub fn render_list(answer: &Value) -> String {
    let tokens = answer["tokens"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if tokens.is_empty() {
        return "no tokens".to_owned();
    }
    let mut table = Table::new(&["NAME", "ROLE", "CREATED"]);
    for t in tokens {
        table.row(vec![
            text_of(&t["name"]),
            text_of(&t["role"]),
            text_of(&t["created"]),
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    #[test]
    fn the_roles_are_the_servers() {
        for role in [Role::Admin, Role::Client, Role::Viewer] {
            assert!(check_role(role.as_str()).is_ok());
        }
        let e = check_role("root").unwrap_err().to_string();
        assert_eq!(e, "--role: \"root\" is not a role (admin, client, viewer)");
    }
}
