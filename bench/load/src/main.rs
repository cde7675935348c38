//! `rollgate-load`: control-plane load generator for an already running rollgate server.
//!
//!   rollgate-load fanout --url URL --token ADMIN --server-pid PID --subscribers 1000 --changes 100
//!   rollgate-load ingest --url URL --token ADMIN --batch 1000 --connections 32 --seconds 10
//!   rollgate-load detect --url URL --token ADMIN --iterations 100
//!   rollgate-load soak --url URL --token ADMIN --server-pid PID --seconds 600
//!   rollgate-load reach --url NODE1 --node NODE2,NODE3 --token ADMIN --change rollout|rollback
//!
//! Loopback only. Every wait is bounded. Each scenario creates its own uniquely named flag,
//! client token (and release), so runs can share a server. `bench/control.sh` starts a server
//! and runs all three; `bench/cluster.sh` runs `reach` and `ingest` on a 3-node cluster and on
//! a single server; see `bench/README.md`.

mod common;
mod detect;
mod fanout;
mod ingest;
mod reach;
mod soak;
mod sse;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "rollgate-load",
    about = "Control-plane load generator for rollgate (loopback only)"
)]
struct Cli {
    /// Server base URL (loopback).
    #[arg(
        long,
        global = true,
        env = "ROLLGATE_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    url: String,
    /// Admin token.
    #[arg(long, global = true, env = "ROLLGATE_TOKEN", default_value = "")]
    token: String,
    /// Tokio worker threads of the load generator.
    #[arg(long, global = true, default_value_t = 2)]
    threads: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// N idle SSE subscribers: memory per subscriber, then the fan-out latency of M changes.
    Fanout(fanout::Args),
    /// Signal ingestion throughput with pre-serialized batches; counts checked on /metrics.
    Ingest(ingest::Args),
    /// One data_loss signal -> rollback change event on the stream; resume; repeat.
    Detect(detect::Args),
    /// Minutes of mixed load; RSS and open fds of the server each minute, flat or not.
    Soak(soak::Args),
    /// A change committed on one node -> the LAST of N subscribers spread over every node.
    Reach(reach::Args),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if cli.token.is_empty() {
        anyhow::bail!("--token (or ROLLGATE_TOKEN) is required: the server's admin token");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let server = common::Server::new(&cli.url, &cli.token)?;
        match cli.command {
            Command::Fanout(a) => fanout::run(server, a).await,
            Command::Ingest(a) => ingest::run(server, a).await,
            Command::Detect(a) => detect::run(server, a).await,
            Command::Soak(a) => soak::run(server, a).await,
            Command::Reach(a) => reach::run(server, a).await,
        }
    })
}
