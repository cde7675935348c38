//! The `rollgate` binary: parse the command line, init tracing, build, run.

use clap::{CommandFactory, Parser};
use rollgate::config::{Cli, Command, Config};
use rollgate::startup::Application;
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => match serve(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("rollgate: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Health { url, ca_file } => {
            match rollgate::health_check::check(&url, ca_file.as_deref()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("unhealthy: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Migrate(args) => rollgate::cli::migrate::run(args),
        Command::Ops(rollgate::cli::OpsCommand::Completions(args)) => {
            rollgate::cli::completions::print(&args, &mut Cli::command())
        }
        Command::Ops(command) => rollgate::cli::run(command),
    }
}

fn serve(args: rollgate::config::ServeArgs) -> anyhow::Result<()> {
    let config = Config::from_args(args)?;
    rollgate::telemetry::init(config.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let app = Application::build(config).await?;
        let mut out = std::io::stdout().lock();
        if let Some(token) = app.generated_admin_token() {
            writeln!(
                out,
                "rollgate: generated admin token (shown once, stored only as a hash): {token}"
            )?;
        }
        writeln!(out, "rollgate listening on {}", app.url())?;
        out.flush()?;
        drop(out);
        app.run_until_stopped().await
    })
}
