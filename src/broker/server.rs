//! The server: the listening socket, the accept loop, reload and shutdown.
//!
//! [`start`] is what `piped` runs: it installs the signal handlers, takes the socket
//! ([`listen`]), builds the [`Broker`] and hands both to [`run`], which accepts
//! connections (one [`session::handle`] task each) until the shutdown future completes,
//! then shuts down as the module docs of [`crate::broker`] describe.

use std::future::Future;
use std::io;
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::PathBuf;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::net::UnixListener;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use super::config::{Config, Sources};
use super::ctx::{FINAL_FRAME_DEADLINE, refused};
use super::drains::EventTap;
use super::grants::{self, Grants};
use super::registry::{Broker, Refused};
use super::session;
use super::systemd;

#[derive(Debug, Error)]
pub enum BrokerError {
    #[error("{path}: {source}")]
    Socket { path: PathBuf, source: io::Error },
    #[error("{0}: another piped is already listening there")]
    InUse(PathBuf),
    #[error("unknown group {0}")]
    UnknownGroup(String),
    #[error(transparent)]
    Grants(#[from] grants::GrantsError),
    #[error(transparent)]
    Activation(#[from] systemd::ActivationError),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Creates the listening socket: the directory (0750, when missing) and the socket (0660),
/// both in `group` when given. A stale socket left by a crashed broker is replaced; a live
/// one is an error.
pub fn bind(config: &Config) -> Result<UnixListener, BrokerError> {
    let path = &config.socket;
    let gid = match &config.socket_group {
        Some(name) => Some(
            nix::unistd::Group::from_name(name)
                .map_err(io::Error::from)?
                .ok_or_else(|| BrokerError::UnknownGroup(name.clone()))?
                .gid,
        ),
        None => None,
    };
    let sock_err = |source| BrokerError::Socket {
        path: path.clone(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(sock_err)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750))
                .map_err(sock_err)?;
            if let Some(gid) = gid {
                chown(dir, None, Some(gid.as_raw())).map_err(sock_err)?;
            }
        }
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(BrokerError::InUse(path.clone()));
        }
        std::fs::remove_file(path).map_err(sock_err)?;
    }
    // The socket is created with the process umask; narrow it for the bind so there is no
    // moment where the socket is open to everybody.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o117));
    let bound = UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let listener = bound.map_err(sock_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(sock_err)?;
    if let Some(gid) = gid {
        chown(path, None, Some(gid.as_raw())).map_err(sock_err)?;
    }
    Ok(listener)
}

/// The listening socket, and whether piped owns its file.
pub enum Listening {
    /// Bound by piped ([`bind`]): it set the mode and group and removes the file at exit.
    Owned {
        listener: UnixListener,
        path: PathBuf,
    },
    /// Passed by systemd's socket unit, which owns the file: its mode, group and life are
    /// the unit's, so piped leaves it alone (removing it would strand the connections
    /// systemd queues for the next start).
    Inherited {
        listener: UnixListener,
        path: Option<PathBuf>,
    },
}

impl Listening {
    fn listener(&self) -> &UnixListener {
        match self {
            Listening::Owned { listener, .. } | Listening::Inherited { listener, .. } => listener,
        }
    }

    fn describe(&self) -> String {
        match self {
            Listening::Owned { path, .. } => path.display().to_string(),
            Listening::Inherited { path: Some(p), .. } => format!("{} (from systemd)", p.display()),
            Listening::Inherited { path: None, .. } => "a socket from systemd".to_string(),
        }
    }

    /// Stops listening; removes the socket file if piped made it.
    fn close(self) {
        if let Listening::Owned { listener, path } = self {
            drop(listener);
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The socket systemd passed (socket activation), else one piped binds at
/// [`Config::socket`].
pub fn listen(config: &Config) -> Result<Listening, BrokerError> {
    match systemd::inherited_listener()? {
        Some((listener, path)) => {
            if path.as_deref() != Some(config.socket.as_path()) {
                info!(
                    configured = %config.socket.display(),
                    "using the socket systemd passed, not the configured path"
                );
            }
            Ok(Listening::Inherited {
                listener: UnixListener::from_std(listener)?,
                path,
            })
        }
        None => Ok(Listening::Owned {
            listener: bind(config)?,
            path: config.socket.clone(),
        }),
    }
}

/// Runs the broker until SIGTERM or SIGINT, then shuts down as described in the module
/// docs of [`crate::broker`]. `config` was loaded from `sources`, which SIGHUP reads again.
/// piped's own events reach the drains through `events`.
pub async fn start(config: Config, sources: Sources, events: EventTap) -> Result<(), BrokerError> {
    // Before anything slow: SIGHUP's default action would end the process.
    let hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let listening = listen(&config)?;
    let service_uid = nix::unistd::User::from_name(&config.service_user)
        .ok()
        .flatten()
        .map(|u| u.uid.as_raw());
    if service_uid.is_none() {
        // Not fatal (a per-Unix-user install has no service account), but a typo here
        // would otherwise silently refuse every key line: say it once.
        warn!(service_user = %config.service_user, "service account not found: identities asserted with --user are refused");
    }
    let grants = match &config.state_dir {
        Some(dir) => Grants::load(dir)?,
        None => Grants::in_memory(),
    };
    raise_descriptor_limit();
    let broker = Arc::new(
        Broker::new(config.limits.clone(), service_uid, grants).with_drains(&config.drains),
    );
    events.connect(broker.drains.clone());
    for d in &config.drains {
        info!(drain = %d.name, feeds = ?d.feeds, "drain declared");
    }
    let reload = Reload {
        hup,
        sources,
        running: config,
    };
    let stop = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    };
    run(listening, broker, reload, stop).await;
    Ok(())
}

/// Serves connections on `listening` until `shutdown` completes, then stops listening and
/// shuts the sessions down within the shutdown deadline. Each connection is one
/// [`session::handle`] task, refused at once when [`Limits::max_connections`] are open.
///
/// [`Limits::max_connections`]: super::config::Limits::max_connections
pub async fn run(
    listening: Listening,
    broker: Arc<Broker>,
    mut reload: Reload,
    shutdown: impl Future<Output = ()>,
) {
    let tracker = TaskTracker::new();
    let mut watchdog = systemd::watchdog_interval().map(|every| {
        let mut i = tokio::time::interval(every);
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        i
    });
    let listener = listening.listener();
    let place = listening.describe();
    info!(socket = %place, "piped listening");
    systemd::ready(&format!("listening on {place}"));
    let mut shutdown = pin!(shutdown);
    loop {
        tokio::select! {
            conn = listener.accept() => match conn {
                Ok((stream, _)) => match broker.take_connection() {
                    Some(slot) => {
                        tracker.spawn(session::handle(broker.clone(), stream, slot));
                    }
                    None => {
                        tracker.spawn(session::reply(stream, refused(Refused::TooManyConnections)));
                    }
                },
                Err(e) => {
                    // Out of descriptors or memory: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            // Pinged from this loop, not a task of its own, so a wedged loop stops them.
            _ = tick(&mut watchdog) => systemd::watchdog(),
            _ = reload.hup.recv() => reload.apply(&broker),
            () = &mut shutdown => break,
        }
    }
    systemd::stopping(&format!("shutting down, {} sessions", tracker.len()));
    listening.close();
    shut_down(&broker, &tracker).await;
}

/// The next watchdog tick; never, without a watchdog.
async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// What SIGHUP reloads: the file (and flags) the running config came from.
pub struct Reload {
    /// SIGHUP, installed before anything slow: its default action would end the process.
    pub hup: Signal,
    pub sources: Sources,
    /// The config in force; a reload replaces its limits.
    pub running: Config,
}

impl Reload {
    /// SIGHUP: reads the config again and puts its limits in force, or keeps the running
    /// config if the file is bad. Start-only settings that changed are reported, not
    /// applied. Reading a small local file does not hold the loop long enough to matter.
    fn apply(&mut self, broker: &Broker) {
        systemd::reloading();
        let file = self.sources.file.display();
        match self.sources.load() {
            Err(e) => {
                warn!("reload refused, keeping the running config: {e}");
                systemd::ready(&format!("reload refused ({e}); running config kept"));
            }
            Ok(new) => {
                let ignored = self.running.restart_only_changes(&new);
                if !ignored.is_empty() {
                    warn!(
                        "reload: {} changed in {file}; that takes a restart, the running value stays",
                        ignored.join(", ")
                    );
                }
                if new.limits != self.running.limits {
                    broker.set_limits(new.limits.clone());
                    self.running.limits = new.limits;
                }
                info!(limits = ?self.running.limits, "reloaded {file}");
                systemd::ready(&format!("reloaded {file}"));
            }
        }
    }
}

/// Stops the sessions: publishers stop reading, accepted bytes go to live subscribers for
/// up to the shutdown deadline, then every remaining session is cut and sends its final
/// status.
async fn shut_down(broker: &Broker, tracker: &TaskTracker) {
    info!(sessions = tracker.len(), "shutting down");
    broker.soft.cancel();
    for topic in broker.snapshot() {
        topic.wake_all();
    }
    tracker.close();
    if tokio::time::timeout(broker.limits().shutdown_deadline, tracker.wait())
        .await
        .is_err()
    {
        warn!(
            sessions = tracker.len(),
            "shutdown deadline passed; cutting the rest"
        );
        broker.hard.cancel();
        // Each session only has to send its final frame now.
        let _ = tokio::time::timeout(FINAL_FRAME_DEADLINE, tracker.wait()).await;
    }
    info!("stopped");
}

/// Pause after a failed `accept` (out of descriptors or memory), so the loop does not spin
/// while sessions end and free them.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Lifts the soft descriptor limit to the hard one: each connection holds three
/// descriptors, and the usual soft limit of 1024 would cap the broker at ~340 sessions.
fn raise_descriptor_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_err() {
            warn!(soft, hard, "could not raise the descriptor limit");
        }
    }
}
