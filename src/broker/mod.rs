//! `piped`, the broker: holds the topics and moves the bytes.
//!
//! One task per connection ([`session`]). A connection is one ssh session's `pipe-shell`:
//! it says hello with the request and the session's stdin and stdout, the broker decides who
//! it is ([`identity`]), attaches it to a [`topic::Topic`] and reads and writes the passed
//! descriptors itself ([`fdio`]) until the session ends, then sends the final status.
//!
//! Shutdown (SIGTERM, SIGINT) is explicit and bounded: the listener closes, publishers stop
//! reading, what they had accepted is written to live subscribers for up to the shutdown
//! deadline, and every client gets a final status (exit 4, "broker shutting down") before
//! the process exits.
//!
//! Settings come from `/etc/pipe/piped.toml` and flags ([`config`]). SIGHUP reloads the
//! file: a bad one keeps the running settings (one warning says why); a good one swaps the
//! [`Limits`] at once, and every decision reads the current ones ([`Broker::limits`]): a
//! topic's window from its next write, the stall timeout at its next check, caps at the
//! next session, topic or grant entry. A lowered cap refuses new ones but never ends a
//! live session nor removes a grant already given. Under systemd the listening socket may
//! come from the socket unit and readiness, reloads, stops and watchdog pings are reported
//! ([`systemd`]).

pub mod cmd;
pub mod config;
pub mod ctx;
pub mod deliver;
pub mod drains;
pub mod fdio;
pub mod grants;
pub mod identity;
mod lock;
pub mod publish;
pub mod session;
pub mod systemd;
pub mod topic;

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

pub(crate) use lock::lock;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::request::TopicName;
use config::DrainSpec;
use deliver::Cursor;
use drains::{Drains, EventTap};
use grants::Grants;
use identity::Identity;
use tokio::sync::mpsc;
use topic::{Budget, Owner, Topic, TopicKey};

/// How long a subscriber must have made no progress before the budget may drop it: any
/// reader that is moving at all shows progress within a second, and other tenants'
/// publishers wait at most about this long when the budget is spent.
pub const BUDGET_GRACE: Duration = Duration::from_secs(1);

/// piped's own events one user may raise a second (two per session: its start and end).
/// Beyond it they go to the journal only, so a user looping over bad requests cannot
/// crowd other users' events out of the event queue nor fill the admins' drain queues.
pub const USER_EVENTS_PER_SEC: u32 = 40;

/// The window [`USER_EVENTS_PER_SEC`] counts over.
const EVENT_WINDOW: Duration = Duration::from_secs(1);

/// Users' event counts kept before stale ones are swept (one sweep per this many users).
const EVENT_USERS_KEPT: usize = 1024;

pub use config::{Config, Limits, LogFormat, Sources, parse_size};

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

/// Shared state of the running broker.
pub struct Broker {
    /// The limits in force; a reload replaces the `Arc` (see [`Broker::limits`]).
    limits: RwLock<Arc<Limits>>,
    /// uid allowed to assert identities (`--user`), if the service account exists.
    pub service_uid: Option<u32>,
    pub grants: Grants,
    /// The scoped drains declared in the config (fixed at start).
    pub drains: Arc<Drains>,
    topics: Mutex<HashMap<TopicKey, Arc<Topic>>>,
    /// Wildcard subscriptions, attached to every matching topic as it is created.
    patterns: Mutex<Vec<Pattern>>,
    budget: Arc<Budget>,
    /// Live sessions per user.
    sessions: Mutex<HashMap<String, usize>>,
    /// Per user: the second being counted and the events raised in it.
    events: Mutex<HashMap<String, (Instant, u32)>>,
    /// Connections open, counted against [`Limits::max_connections`] from `accept`.
    connections: Arc<AtomicUsize>,
    next_id: AtomicU64,
    /// Stop taking input; finish what was accepted.
    pub soft: CancellationToken,
    /// Stop now.
    pub hard: CancellationToken,
}

/// Why a topic or session could not be opened (exit 6).
#[derive(Debug, PartialEq, Eq, Error)]
pub enum Refused {
    #[error("too many connections")]
    TooManyConnections,
    #[error("too many sessions for this user")]
    TooManySessions,
    #[error("too many topics for this user")]
    TooManyTopics,
    #[error("too many public topics for this user")]
    TooManyPublicTopics,
    #[error("too many grant entries for this user")]
    TooManyGrants,
}

impl Broker {
    pub fn new(limits: Limits, service_uid: Option<u32>, grants: Grants) -> Broker {
        Broker {
            grants: grants.with_max_entries(limits.max_grant_entries),
            drains: Arc::new(Drains::default()),
            budget: Arc::new(Budget::new(limits.budget)),
            connections: Arc::new(AtomicUsize::new(0)),
            limits: RwLock::new(Arc::new(limits)),
            service_uid,
            topics: Mutex::new(HashMap::new()),
            patterns: Mutex::new(Vec::new()),
            sessions: Mutex::new(HashMap::new()),
            events: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            soft: CancellationToken::new(),
            hard: CancellationToken::new(),
        }
    }

    /// This broker with the drains `specs` declare.
    pub fn with_drains(mut self, specs: &[DrainSpec]) -> Broker {
        self.drains = Arc::new(Drains::new(specs));
        self
    }

    /// The limits in force now. Read at each decision rather than kept, so a reload
    /// applies to sessions already running.
    pub fn limits(&self) -> Arc<Limits> {
        self.limits
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Puts new limits in force (a reload): caps and the stall timeout from their next
    /// use, the budget and grant cap at once, each live topic's window from its next write.
    /// Nothing running is ended for a lower cap.
    pub fn set_limits(&self, new: Limits) {
        self.budget.set_limit(new.budget);
        self.grants.set_max_entries(new.max_grant_entries);
        let window = new.window;
        *self.limits.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(new);
        // After the swap: a topic created meanwhile read either limit under the registry
        // lock and is in this snapshot, or read the new one.
        for topic in self.snapshot() {
            topic.set_window(window);
            // Publishers waiting for room look again (a larger window or budget).
            topic.changed.notify_waiters();
        }
    }

    /// A place under the connection cap, or `None` when it is reached.
    pub fn take_connection(&self) -> Option<Connection> {
        let max = self.limits().max_connections;
        self.connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Connection {
                count: self.connections.clone(),
            })
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn topics(&self) -> MutexGuard<'_, HashMap<TopicKey, Arc<Topic>>> {
        lock(&self.topics)
    }

    /// Attaches a session to a topic, creating it within the per-user caps.
    pub fn open(self: &Arc<Self>, key: TopicKey, user: &str) -> Result<TopicRef, Refused> {
        let mut topics = self.topics();
        let (topic, undelivered) = match topics.get(&key) {
            Some(t) => (t.clone(), Vec::new()),
            None => {
                // Counting walks the live topics, but only when one is created, and the
                // per-user caps keep the map small. Public topics count against whoever
                // created them.
                let limits = self.limits();
                let (cap, refusal, mine) = match &key.owner {
                    Owner::Public => (
                        limits.max_public_topics,
                        Refused::TooManyPublicTopics,
                        topics
                            .values()
                            .filter(|t| t.key.owner == Owner::Public && t.creator == user)
                            .count(),
                    ),
                    owner => (
                        limits.max_user_topics,
                        Refused::TooManyTopics,
                        topics.keys().filter(|k| &k.owner == owner).count(),
                    ),
                };
                if mine >= cap {
                    return Err(refusal);
                }
                let t = Arc::new(Topic::new(
                    key.clone(),
                    user,
                    limits.window,
                    self.budget.clone(),
                ));
                topics.insert(key, t.clone());
                // Wildcard subscribers join before anyone publishes, so they miss nothing
                // and a waiting `pub -b` counts them.
                let undelivered: Vec<Cursor> = lock(&self.patterns)
                    .iter()
                    .filter(|p| p.covers(self, &t.key))
                    .filter_map(|p| p.tx.send(p.attach(&t)).err().map(|e| e.0))
                    .collect();
                (t, undelivered)
            }
        };
        // Entered under the registry lock, so the last other session leaving cannot
        // forget the topic in between.
        let held = self.hold(topic);
        drop(topics);
        // Dropped outside the registry lock: a cursor's TopicRef takes it.
        drop(undelivered);
        Ok(held)
    }

    fn hold(self: &Arc<Self>, topic: Arc<Topic>) -> TopicRef {
        topic.enter();
        TopicRef {
            broker: self.clone(),
            topic,
        }
    }

    /// Whether `who` may use `key`: its own and public topics, any topic for the admin,
    /// another's through its grant.
    pub fn may_use(&self, who: &Identity, key: &TopicKey) -> bool {
        match &key.owner {
            Owner::Public => true,
            Owner::User(u) => u == &who.user || who.admin || self.grants.allows(u, &key.name, who),
        }
    }

    /// Starts a wildcard subscription: cursors on every matching topic now, and (through
    /// `tx`) on every matching topic created until the returned guard is dropped.
    pub fn watch_pattern(self: &Arc<Self>, pattern: Pattern) -> (Vec<Cursor>, PatternGuard) {
        let topics = self.topics();
        let now = topics
            .values()
            .filter(|t| pattern.covers(self, &t.key))
            .map(|t| pattern.attach(t))
            .collect();
        let id = pattern.session;
        lock(&self.patterns).push(pattern);
        drop(topics);
        let guard = PatternGuard {
            broker: self.clone(),
            session: id,
        };
        (now, guard)
    }

    /// The budget is spent: drops the subscriber furthest behind, on any topic, among those
    /// that have not moved for `idle`. False if there is none.
    pub fn evict_most_lagging(&self, idle: Duration) -> bool {
        let worst = self
            .snapshot()
            .into_iter()
            .filter_map(|t| t.most_lagging(idle).map(|(lag, id)| (lag, id, t)))
            .max_by_key(|&(lag, _, _)| lag);
        match worst {
            Some((lag, id, topic)) => {
                warn!(topic = %topic.key, lag, "budget spent: dropping the most-lagging subscriber");
                topic.drop_sub(id);
                true
            }
            None => false,
        }
    }

    /// Live topics, for `ls`.
    pub fn snapshot(&self) -> Vec<Arc<Topic>> {
        let mut all: Vec<Arc<Topic>> = self.topics().values().cloned().collect();
        all.sort_by(|a, b| a.key.cmp(&b.key));
        all
    }

    /// Whether `user` may raise one more of piped's own events this second
    /// ([`USER_EVENTS_PER_SEC`]).
    pub fn event_allowed(&self, user: &str) -> bool {
        let now = Instant::now();
        let mut events = lock(&self.events);
        if events.len() >= EVENT_USERS_KEPT {
            events.retain(|_, (since, _)| now.duration_since(*since) < EVENT_WINDOW);
        }
        let (since, n) = events.entry(user.to_string()).or_insert((now, 0));
        if now.duration_since(*since) >= EVENT_WINDOW {
            (*since, *n) = (now, 0);
        }
        *n += 1;
        *n <= USER_EVENTS_PER_SEC
    }

    /// Counts a new session against the per-user cap.
    pub fn admit(self: &Arc<Self>, user: &str) -> Result<Admission, Refused> {
        let mut sessions = lock(&self.sessions);
        let mine = sessions.entry(user.to_string()).or_insert(0);
        if *mine >= self.limits().max_user_sessions {
            return Err(Refused::TooManySessions);
        }
        *mine += 1;
        Ok(Admission {
            broker: self.clone(),
            user: user.to_string(),
        })
    }
}

/// A wildcard subscription: `sub 'logs-*'`.
pub struct Pattern {
    pub session: topic::SessionId,
    pub who: Identity,
    pub owner: Owner,
    pub name: TopicName,
    pub wake: Arc<tokio::sync::Notify>,
    pub kill: CancellationToken,
    /// New cursors for the session. Unbounded, but only one message per matching topic the
    /// caller may use, which the per-user topic caps bound.
    pub tx: mpsc::UnboundedSender<Cursor>,
}

impl Pattern {
    fn covers(&self, broker: &Broker, key: &TopicKey) -> bool {
        key.owner == self.owner && self.name.matches(&key.name) && broker.may_use(&self.who, key)
    }

    fn attach(&self, topic: &Arc<Topic>) -> Cursor {
        let handle = topic.attach_sub_with(
            self.session,
            false,
            false,
            self.wake.clone(),
            self.kill.clone(),
        );
        Cursor::new(topic.clone(), handle)
    }
}

/// Ends a wildcard subscription's watch for new topics.
pub struct PatternGuard {
    broker: Arc<Broker>,
    session: topic::SessionId,
}

impl Drop for PatternGuard {
    fn drop(&mut self) {
        lock(&self.broker.patterns).retain(|p| p.session != self.session);
    }
}

/// A session's hold on a topic; leaving forgets the topic when nobody uses it any more.
pub struct TopicRef {
    broker: Arc<Broker>,
    pub topic: Arc<Topic>,
}

impl Drop for TopicRef {
    fn drop(&mut self) {
        let mut topics = self.broker.topics();
        if self.topic.leave() {
            topics.remove(&self.topic.key);
            self.topic.forget();
        }
    }
}

/// A connection's place under [`Limits::max_connections`], given back when dropped.
pub struct Connection {
    count: Arc<AtomicUsize>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A session's place in the connection caps.
pub struct Admission {
    broker: Arc<Broker>,
    user: String,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut sessions = lock(&self.broker.sessions);
        if let Some(n) = sessions.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                sessions.remove(&self.user);
            }
        }
    }
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
/// docs. `config` was loaded from `sources`, which SIGHUP reads again. piped's own events
/// reach the drains through `events`.
pub async fn run(config: Config, sources: Sources, events: EventTap) -> Result<(), BrokerError> {
    // Before anything slow: SIGHUP's default action would end the process.
    let mut hup = signal(SignalKind::hangup())?;
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
    let mut running = config;
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
    loop {
        tokio::select! {
            conn = listener.accept() => match conn {
                Ok((stream, _)) => match broker.take_connection() {
                    Some(slot) => {
                        tracker.spawn(session::handle(broker.clone(), stream, slot));
                    }
                    None => {
                        tracker.spawn(session::reply(stream, ctx::refused(Refused::TooManyConnections)));
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
            _ = hup.recv() => reload(&broker, &sources, &mut running),
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    systemd::stopping(&format!("shutting down, {} sessions", tracker.len()));
    listening.close();
    shutdown(&broker, &tracker).await;
    Ok(())
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

/// SIGHUP: reads the config again and puts its limits in force, or keeps the running
/// config if the file is bad. Start-only settings that changed are reported, not applied.
/// Reading a small local file does not hold the loop long enough to matter.
fn reload(broker: &Broker, sources: &Sources, running: &mut Config) {
    systemd::reloading();
    let file = sources.file.display();
    match sources.load() {
        Err(e) => {
            warn!("reload refused, keeping the running config: {e}");
            systemd::ready(&format!("reload refused ({e}); running config kept"));
        }
        Ok(new) => {
            let ignored = running.restart_only_changes(&new);
            if !ignored.is_empty() {
                warn!(
                    "reload: {} changed in {file}; that takes a restart, the running value stays",
                    ignored.join(", ")
                );
            }
            if new.limits != running.limits {
                broker.set_limits(new.limits.clone());
                running.limits = new.limits;
            }
            info!(limits = ?running.limits, "reloaded {file}");
            systemd::ready(&format!("reloaded {file}"));
        }
    }
}

async fn shutdown(broker: &Broker, tracker: &TaskTracker) {
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
        let _ = tokio::time::timeout(ctx::FINAL_FRAME_DEADLINE, tracker.wait()).await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Dispatch;
    use bytes::Bytes;
    use topic::{Append, CHUNK};

    fn key(name: &str) -> TopicKey {
        TopicKey {
            owner: Owner::User("alice".into()),
            name: name.into(),
        }
    }

    #[test]
    fn new_limits_apply_to_live_topics_and_to_the_next_session() {
        let limits = Limits {
            window: CHUNK,
            max_user_sessions: 2,
            max_connections: 1,
            max_user_topics: 2,
            ..Limits::default()
        };
        let broker = Arc::new(Broker::new(limits.clone(), None, Grants::in_memory()));
        let t = broker.open(key("t"), "alice").unwrap();
        let _sub = t.topic.attach_sub(1, false, true);
        let chunk = Bytes::from(vec![0u8; CHUNK]);
        let append = || t.topic.try_append(2, &chunk, Dispatch::Multicast, true);
        assert!(matches!(append(), Append::Done(_)));
        assert_eq!(append(), Append::Full);
        let a1 = broker.admit("alice").unwrap();
        let a2 = broker.admit("alice").unwrap();
        let _c = broker.take_connection().unwrap();
        assert!(broker.take_connection().is_none());
        let _u = broker.open(key("u"), "alice").unwrap();

        broker.set_limits(Limits {
            window: 2 * CHUNK,
            max_user_sessions: 1,
            max_connections: 2,
            max_user_topics: 1,
            ..limits.clone()
        });
        assert!(
            matches!(append(), Append::Done(_)),
            "a live topic takes the new window at its next write"
        );
        assert!(broker.take_connection().is_some(), "a raised cap admits");
        // A lowered cap refuses new sessions and topics, and ends none of the live ones.
        assert_eq!(broker.admit("alice").err(), Some(Refused::TooManySessions));
        assert!(
            matches!(broker.open(key("v"), "alice"), Err(Refused::TooManyTopics)),
            "a third topic over the lowered cap"
        );
        assert!(
            broker.open(key("t"), "alice").is_ok(),
            "joining a live topic"
        );
        drop(a1);
        assert!(broker.admit("alice").is_err(), "still at the lowered cap");
        drop(a2);
        assert!(broker.admit("alice").is_ok());

        broker.set_limits(Limits {
            window: 4 * CHUNK,
            budget: CHUNK,
            ..limits
        });
        assert_eq!(
            append(),
            Append::OverBudget,
            "a lowered budget binds at once"
        );
    }
}
