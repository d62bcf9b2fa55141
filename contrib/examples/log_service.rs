//! A toy job runner that ships its logs into a pipe topic with `pipe::logship`.
//!
//! ```text
//! log-service --service jobs --socket /run/pipe/piped.sock   < commands
//! log-service --service jobs --ssh -p 2222 pipe@host          < commands
//! ssh pipe@host sub log-drain -k | jq -c                        # meanwhile, elsewhere
//! ```
//!
//! Commands on stdin, one per line:
//!
//! - `USER JOB`: runs JOB for USER (logs `job started`, then `job done`, tagged with USER);
//! - `- MESSAGE`: logs MESSAGE for nobody in particular;
//! - `hidden USER MESSAGE`: logs MESSAGE about USER that USER must not see.
//!
//! At end of input it waits (at most 5 s) for the drain to write everything, prints the
//! drain's counters as one JSON line (`{"sent":…,"dropped":…,"reconnects":…,
//! "last_error":…}`) and exits 0.

use std::io::BufRead;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use pipe::logship::{self, Builder};
use tracing::info;
use tracing_subscriber::prelude::*;

/// How long the exit waits for queued lines: a service must not hang on its logs.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Parser)]
#[command(about = "A toy job runner whose logs go to a pipe topic")]
struct Args {
    /// The `service` field of every line.
    #[arg(long, default_value = "log-service")]
    service: String,
    /// The topic the lines are published on.
    #[arg(long, default_value = logship::DEFAULT_TOPIC)]
    topic: String,
    /// The broker socket.
    #[arg(long, conflicts_with = "ssh", required_unless_present = "ssh")]
    socket: Option<PathBuf>,
    /// Publish through ssh instead: ssh's options and the destination (must come last).
    #[arg(long, num_args = 1.., allow_hyphen_values = true, value_name = "SSH_ARG")]
    ssh: Vec<String>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let drain = Builder::new(&args.service);
    let drain = match &args.socket {
        Some(socket) => drain.socket(socket, &args.topic),
        None => drain.ssh(&args.ssh, &args.topic),
    };
    let (layer, handle) = drain.build().context("starting the log drain")?;
    tracing_subscriber::registry().with(layer).init();

    for line in std::io::stdin().lock().lines() {
        run(&line.context("reading stdin")?);
    }

    if !handle.flush(FLUSH_TIMEOUT) {
        eprintln!("log-service: some log lines were not written within {FLUSH_TIMEOUT:?}");
    }
    let stats = handle.shutdown();
    let stats = serde_json::json!({
        "sent": stats.sent,
        "dropped": stats.dropped,
        "reconnects": stats.reconnects,
        "last_error": stats.last_error,
    });
    println!("{stats}");
    Ok(())
}

fn run(command: &str) {
    match command.split_once(' ') {
        Some(("-", message)) => info!("{message}"),
        Some(("hidden", rest)) => {
            let (user, message) = rest.split_once(' ').unwrap_or((rest, ""));
            let _user = logship::user_span(user).entered();
            info!(hidden = true, "{message}");
        }
        Some((user, job)) => {
            // Everything inside is tagged "user":USER: the broker routes by it.
            let _user = logship::user_span(user).entered();
            info!(job, "job started");
            info!(job, "job done");
        }
        None if command.trim().is_empty() => {}
        None => eprintln!(
            "log-service: ignored {command:?}: expected `USER JOB`, `- MESSAGE` or \
             `hidden USER MESSAGE`"
        ),
    }
}
