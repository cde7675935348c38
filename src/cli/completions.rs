//! `rollgate completions SHELL`: a completion script for bash, zsh, fish, elvish or
//! PowerShell, written to stdout by clap_complete from the binary's own command tree, so it
//! is never out of date. Talks to no server. main.rs calls [`print`] with the root command
//! (cli/ does not depend on config.rs, which owns it).

use clap::Args;
use clap_complete::Shell;

/// `rollgate completions …`
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    pub shell: Shell,
}

/// The completion script for `args.shell` of `root` (the binary's whole command).
pub fn script(args: &CompletionsArgs, root: &mut clap::Command) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(args.shell, root, "rollgate", &mut out);
    out
}

/// Writes the script to stdout; a closed pipe is not an error worth reporting.
pub fn print(args: &CompletionsArgs, root: &mut clap::Command) -> std::process::ExitCode {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(&script(args, root));
    std::process::ExitCode::SUCCESS
}
