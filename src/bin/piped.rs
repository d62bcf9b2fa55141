//! The pipe broker; see `pipe::broker`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow};
use clap::Parser;
use pipe::broker::{self, Config};

/// The pipe broker: holds topics and moves bytes between ssh sessions.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Unix socket to listen on.
    #[arg(long, default_value = broker::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Group of the socket and of its directory when piped creates it.
    #[arg(long)]
    socket_group: Option<String>,
    /// The account whose key lines may assert `--user`.
    #[arg(long, default_value = broker::DEFAULT_SERVICE_USER)]
    service_user: String,
    /// Directory for durable state (the grants file).
    #[arg(long, default_value = broker::DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// Window W: how far the slowest subscriber may trail (e.g. 8M, 256K).
    #[arg(long, default_value = "8M", value_parser = size)]
    window: usize,
    /// Bytes buffered across all topics before the most-lagging subscriber is dropped.
    #[arg(long, default_value = "256M", value_parser = size)]
    budget: usize,
    /// How long a subscriber may stall while the window is full before it is dropped.
    #[arg(long, default_value = "30s", value_parser = duration)]
    stall_timeout: Duration,
    /// Connections at once, counted from accept.
    #[arg(long, default_value_t = broker::MAX_CONNECTIONS)]
    max_connections: usize,
    /// Sessions one user may have at once.
    #[arg(long, default_value_t = broker::MAX_USER_SESSIONS)]
    max_user_sessions: usize,
    /// Live topics one user may own.
    #[arg(long, default_value_t = broker::MAX_USER_TOPICS)]
    max_user_topics: usize,
    /// Live public topics one user may create.
    #[arg(long, default_value_t = broker::MAX_PUBLIC_TOPICS)]
    max_public_topics: usize,
    /// Grant entries one user may hold over all their topics.
    #[arg(long, default_value_t = broker::grants::MAX_USER_GRANT_ENTRIES)]
    max_grant_entries: usize,
    /// How long shutdown waits for accepted bytes to reach subscribers.
    #[arg(long, default_value = "5s", value_parser = duration)]
    shutdown_deadline: Duration,
}

fn size(s: &str) -> Result<usize, String> {
    broker::parse_size(s)
        .filter(|&n| n >= pipe::broker::topic::CHUNK)
        .ok_or_else(|| format!("expected a size of at least 64K such as 8M, got {s}"))
}

fn duration(s: &str) -> Result<Duration, String> {
    pipe::request::parse_duration(s)
        .ok_or_else(|| format!("expected a duration such as 30s, got {s}"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let config = Config {
        socket: args.socket,
        socket_group: args.socket_group,
        service_user: args.service_user,
        state_dir: Some(args.state_dir),
        window: args.window,
        budget: args.budget,
        stall_timeout: args.stall_timeout,
        shutdown_deadline: args.shutdown_deadline,
        max_connections: args.max_connections,
        max_user_sessions: args.max_user_sessions,
        max_user_topics: args.max_user_topics,
        max_public_topics: args.max_public_topics,
        max_grant_entries: args.max_grant_entries,
    };
    match serve(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("piped: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    runtime
        .block_on(broker::run(config))
        .map_err(|e| anyhow!(e))
}
