//! The pipe broker; see `pipe::broker`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow};
use clap::Parser;
use pipe::broker::config::{self, LogFormat, Settings, Sources};
use pipe::broker::drains::{EVENTS, EventTap};
use pipe::broker::{self, Config};
use pipe::logship::DrainHandle;
use tracing::Level;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::prelude::*;

/// The pipe broker: holds topics and moves bytes between ssh sessions.
///
/// Settings come from the config file; each flag given overrides the file's value, also
/// across reloads (SIGHUP re-reads the file).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Config file [default: /etc/pipe/piped.toml; used only if it exists].
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Unix socket to listen on, unless systemd passes one [default: /run/pipe/piped.sock].
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Group of the socket and of its directory when piped creates them.
    #[arg(long)]
    socket_group: Option<String>,
    /// The account whose key lines may assert `--user` [default: pipe].
    #[arg(long)]
    service_user: Option<String>,
    /// Directory for durable state, the grants file [default: /var/lib/piped].
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Log line format: text or json [default: text].
    #[arg(long, value_parser = log_format)]
    log_format: Option<LogFormat>,
    /// Window W: how far the slowest subscriber may trail, e.g. 8M, 256K [default: 8M].
    #[arg(long, value_parser = size)]
    window: Option<usize>,
    /// Bytes buffered across all topics before the most-lagging subscriber is dropped
    /// [default: 256M].
    #[arg(long, value_parser = size)]
    budget: Option<usize>,
    /// How long a subscriber may stall while the window is full before it is dropped
    /// [default: 30s].
    #[arg(long, value_parser = duration)]
    stall_timeout: Option<Duration>,
    /// How long shutdown waits for accepted bytes to reach subscribers [default: 5s].
    #[arg(long, value_parser = duration)]
    shutdown_deadline: Option<Duration>,
    /// How long a new connection has to send its hello [default: 2s].
    #[arg(long, value_parser = duration)]
    hello_deadline: Option<Duration>,
    /// Connections at once, counted from accept [default: 4096].
    #[arg(long, value_parser = count)]
    max_connections: Option<usize>,
    /// Sessions one user may have at once [default: 32].
    #[arg(long, value_parser = count)]
    max_user_sessions: Option<usize>,
    /// Live topics one user may own [default: 128].
    #[arg(long, value_parser = count)]
    max_user_topics: Option<usize>,
    /// Live public topics one user may create [default: 16].
    #[arg(long, value_parser = count)]
    max_public_topics: Option<usize>,
    /// Grant entries one user may hold over all their topics [default: 512].
    #[arg(long, value_parser = count)]
    max_grant_entries: Option<usize>,
}

fn size(s: &str) -> Result<usize, String> {
    config::parse_size(s)
        .ok_or_else(|| format!("expected a size such as 8M, got {s}"))
        .and_then(config::check_size)
}

fn duration(s: &str) -> Result<Duration, String> {
    pipe::request::parse_duration(s)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("expected a duration above zero such as 30s, got {s}"))
}

fn count(s: &str) -> Result<usize, String> {
    s.parse::<usize>()
        .ok()
        .filter(|&n| n >= 1)
        .ok_or_else(|| format!("expected a count of at least 1, got {s}"))
}

fn log_format(s: &str) -> Result<LogFormat, String> {
    s.parse()
}

impl Args {
    fn sources(self) -> Sources {
        let flags = Settings {
            socket: self.socket,
            socket_group: self.socket_group,
            service_user: self.service_user,
            state_dir: self.state_dir,
            keys_dir: None,
            log_format: self.log_format,
            window: self.window,
            budget: self.budget,
            stall_timeout: self.stall_timeout,
            shutdown_deadline: self.shutdown_deadline,
            hello_deadline: self.hello_deadline,
            max_connections: self.max_connections,
            max_user_sessions: self.max_user_sessions,
            max_user_topics: self.max_user_topics,
            max_public_topics: self.max_public_topics,
            max_grant_entries: self.max_grant_entries,
            drains: None,
        };
        Sources {
            explicit: self.config.is_some(),
            file: self
                .config
                .unwrap_or_else(|| PathBuf::from(pipe::paths::CONFIG)),
            flags,
        }
    }
}

fn main() -> ExitCode {
    let sources = Args::parse().sources();
    // One line naming file, line and reason, before any logging is set up.
    let config = match sources.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("piped: {e}");
            return ExitCode::FAILURE;
        }
    };
    let events = EventTap::default();
    let _drain = match init_logging(config.log_format, events.clone()) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("piped: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    match serve(config, sources, events) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("piped: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Log lines on stderr (the journal under systemd), and piped's per-user events
/// ([`EVENTS`]) through the library's tracing layer into the drains that take them. The
/// returned handle keeps the layer's thread running.
fn init_logging(format: LogFormat, events: EventTap) -> anyhow::Result<DrainHandle> {
    // Colours only for a person at a terminal: the journal and log files store the codes.
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let stderr = match format {
        LogFormat::Text => stderr.boxed(),
        LogFormat::Json => stderr.json().boxed(),
    };
    let (drain, handle) = pipe::logship::Builder::new("piped")
        .sink(move |line| events.send(line))
        .build()
        .context("starting the event drain")?;
    tracing_subscriber::registry()
        .with(stderr.with_filter(LevelFilter::INFO))
        .with(drain.with_filter(Targets::new().with_target(EVENTS, Level::INFO)))
        .init();
    Ok(handle)
}

fn serve(config: Config, sources: Sources, events: EventTap) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    runtime
        .block_on(broker::start(config, sources, events))
        .map_err(|e| anyhow!(e))
}
