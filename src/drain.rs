//! `pipe::drain`: a [`tracing_subscriber::Layer`] that ships a Rust service's logs into a
//! pipe topic, one JSON object per line.
//!
//! A service adds [`DrainLayer`] to its subscriber; every event becomes a line published on a
//! feed topic of the broker (by convention [`DEFAULT_TOPIC`], `log-drain`), through the local
//! broker socket, through `ssh`, through any command that reads the lines on its stdin, or
//! into a closure in the same process (the broker feeds its own events to its drains so).
//!
//! ```text
//! use tracing::info;
//! use tracing_subscriber::prelude::*;
//!
//! let (layer, handle) = pipe::drain::Builder::new("billing")
//!     .socket("/run/pipe/piped.sock", "log-drain")   // or .ssh(["pipe@host"], "log-drain")
//!     .build()?;
//! tracing_subscriber::registry().with(layer).init();
//!
//! let _user = pipe::drain::user_span("alice").entered();
//! info!(invoice = 42, "invoice sent");                  // tagged "user":"alice"
//! info!(user = "bob", "one event for bob");             // a field on one event works too
//! info!(user = "bob", hidden = true, "bob's card expired: see ticket 7");
//!
//! handle.flush(Duration::from_secs(5));                // at exit: bounded
//! handle.shutdown();
//! ```
//!
//! # The line
//!
//! ```text
//! {"time":"2026-11-25T20:31:02.123Z","level":"INFO","target":"billing::send",
//!  "message":"invoice sent","invoice":42,"user":"alice","service":"billing","hostname":"web1"}
//! ```
//!
//! (one line on the wire). `time` is RFC 3339 UTC with milliseconds; `level` is `TRACE` to
//! `ERROR`; then the event's own fields, then the fields of its enclosing spans, innermost
//! first; then `service` and `hostname` (given to the [`Builder`]; the hostname defaults to
//! the machine's). Strings stay strings, integers and finite floats are numbers, bools are
//! bools, anything recorded with `?` or `%` is a string; a float that JSON cannot carry (NaN,
//! infinities) is a string. A field name appears once: event fields win over span fields, an
//! inner span's over an outer one's, and fields named like the fixed keys (`time`, `level`,
//! `target`, `message`, `service`, `hostname`) are left out of spans and events alike.
//!
//! The broker routes lines by a scope field, by default `user`: [`user_span`] tags everything
//! logged inside it, `info!(user = "alice", …)` tags one event. A `hidden = true` field (an
//! ordinary bool) marks a line the broker must keep from the user it names. Filtering is the
//! subscriber's: compose with `with_filter` or an `EnvFilter`, and keep the `user` span's
//! level (INFO) enabled, or its tag is lost.
//!
//! # Never blocking the service
//!
//! - A line is formatted on the calling thread and offered with `try_send` to a bounded queue
//!   ([`DEFAULT_CAPACITY`], 1024 lines, [`Builder::capacity`]). A full queue, a stopped drain
//!   and a line over [`MAX_LINE`] (64 KiB with its newline, the broker's default per-line
//!   limit) each drop the line and count it in [`DrainStats::dropped`]. Long lines are
//!   dropped, not truncated: a cut line would no longer be JSON.
//! - While the queue is full the event is not even formatted, so a log call with the broker
//!   gone costs a counter check (about 15 ns in release builds); a line formatted and queued
//!   costs well under a microsecond.
//! - One background thread, `pipe-drain`, writes the queue to the transport. When the
//!   transport fails or ends it reconnects after a backoff: [`BACKOFF_MIN`] (100 ms),
//!   doubling, at most [`BACKOFF_MAX`] (5 s), both set with [`Builder::backoff`]; the backoff
//!   starts over once a connection has lasted the cap. Lines wait in the queue meanwhile (the
//!   ones taken for a failed write are written again on the next connection, so none is lost
//!   there; bytes the kernel had accepted for a broker that then died are).
//! - After every (re)connection, and otherwise at most every [`REPORT_INTERVAL`] and at
//!   shutdown, if lines were dropped since the last report the thread writes one line of its
//!   own first: `"level":"WARN"`, `"message":"pipe drain: dropped N log lines"`,
//!   `"dropped":N`, `"hidden":true`, with `service` and `hostname`. Report lines are not
//!   counted in `sent`.
//! - [`DrainHandle::flush`] waits (bounded) until the queue is written; dropping the handle
//!   or [`DrainHandle::shutdown`] stops the thread: it writes what is queued and ends the
//!   transport cleanly within [`SHUTDOWN_GRACE`] (2 s); the handle gives up waiting for it
//!   [`SHUTDOWN_SLACK`] later, so neither ever hangs.
//! - Events logged on a `pipe-drain` thread (a sink closure that logs) are ignored by every
//!   drain, so a drain never feeds on itself.
//! - `sent` counts lines written into the transport, not delivered: bytes a broker or an
//!   ssh that then died had not read yet are lost without a count (an ssh that cannot log
//!   in takes the first lines into its stdin before it exits).
//!
//! # Transports
//!
//! - [`Builder::socket`]: the broker socket. The drain says hello with `pub TOPIC -b=false -c`
//!   and passes one end of a socket pair as both stdin and stdout (the broker reads the
//!   lines from stdin and watches stdout to notice the client leaving); it writes the lines
//!   into the other end with `MSG_NOSIGNAL`, so a dead broker is an `EPIPE` and never a
//!   `SIGPIPE` (a library must not change the process's `SIGPIPE` disposition). The broker
//!   knows the caller by `SO_PEERCRED`: the topic is the service's Unix user's own. An
//!   `Exit` frame or end of file on the connection ends the session: reconnect. `-b=false`:
//!   lines published while nobody subscribes are discarded by the broker.
//! - [`Builder::ssh`] and [`Builder::command`]: a child process (`ssh -o BatchMode=yes …
//!   pub TOPIC -b=false -c`) with the lines on its stdin (again a socket, for
//!   `MSG_NOSIGNAL`), stdout and stderr to `/dev/null`; restarted after it exits, killed and
//!   reaped at shutdown after [`SHUTDOWN_GRACE`].
//! - [`Builder::sink`]: a closure called with each line (newline included) on the
//!   background thread; it never disconnects.

use std::cell::Cell;
use std::ffi::OsString;
use std::fmt::{self, Write as _};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockType, recv, send, socketpair};
use thiserror::Error;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::proto::{self, HELLO_DEADLINE, Hello, PROTOCOL_VERSION, ToClient};
use crate::request::Request;

/// The feed topic the broker's log routing reads by convention.
pub const DEFAULT_TOPIC: &str = "log-drain";

/// Lines the queue holds by default: enough to ride out a broker restart (a second or two)
/// of a busy service logging hundreds of lines a second, while a typical line of a few
/// hundred bytes keeps the worst case around a few hundred KiB.
pub const DEFAULT_CAPACITY: usize = 1024;

/// Longest line shipped, newline included: the broker's default per-line limit (and its
/// chunk size, so a line is never split between round-robin receivers). Longer lines are
/// dropped and counted.
pub const MAX_LINE: usize = 64 * 1024;

/// First reconnect delay: short enough that a broker restart loses little, long enough that
/// a broker that is gone is not hammered.
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);

/// Longest reconnect delay: after a broker comes back, logs flow again within this.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Shortest interval between two drop reports while connected: a flood that overflows the
/// queue costs at most one extra line a second.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// How long the thread spends at shutdown writing what is queued and letting the transport
/// end cleanly (the broker delivers what it read; ssh sends what it has).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// How much longer than [`SHUTDOWN_GRACE`] the handle waits for the thread before leaving it
/// behind: covers one blocked write tick and the kill of a child.
pub const SHUTDOWN_SLACK: Duration = Duration::from_secs(1);

/// How often an idle thread checks its connection: a broker that went away is noticed and
/// reconnected to before the next line, and [`DrainStats::connected`] stays truthful.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// Send timeout on the data socket: a write into a stalled transport wakes this often to
/// look at the connection and at a pending shutdown.
const WRITE_TICK: Duration = Duration::from_millis(100);

/// Most bytes gathered into one write: one broker chunk.
const BATCH_BYTES: usize = 64 * 1024;

/// Poll interval while waiting for a child to exit at shutdown.
const CHILD_POLL: Duration = Duration::from_millis(10);

/// Initial room for a line: most lines fit, so formatting rarely reallocates.
const LINE_RESERVE: usize = 256;

/// The hostname used when the system does not say.
const UNKNOWN_HOST: &str = "unknown";

/// Keys every line has; event and span fields of these names are left out so each key
/// appears once.
const FIXED_KEYS: [&str; 6] = ["time", "level", "target", "message", "service", "hostname"];

thread_local! {
    /// Set on the `pipe-drain` thread: its own events (a sink that logs) must not loop back.
    static ON_DRAIN_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Tags everything logged inside it with `"user":USER`, the field the broker routes by.
///
/// ```text
/// let _user = pipe::drain::user_span("alice").entered();
/// info!(job = "build", "job started");   // … "user":"alice" …
/// ```
pub fn user_span(user: &str) -> tracing::Span {
    tracing::info_span!("user", user = %user)
}

/// What can be wrong at [`Builder::build`].
#[derive(Debug, Error)]
pub enum DrainError {
    #[error("no transport chosen: call socket, ssh, command or sink")]
    NoTransport,
    #[error("bad topic {topic:?}: {reason}")]
    Topic { topic: String, reason: String },
    #[error("queue capacity must be at least 1")]
    Capacity,
    #[error("backoff needs 0 < min <= max, got min {min:?}, max {max:?}")]
    Backoff { min: Duration, max: Duration },
    #[error("starting the pipe-drain thread: {0}")]
    Thread(#[source] io::Error),
}

/// Counters of a drain.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DrainStats {
    /// Lines written into the transport (the broker's socket, the child's stdin, the sink),
    /// report lines not included. Written is not delivered: what a broker or child that
    /// died had not yet read is lost without a count.
    pub sent: u64,
    /// Lines lost: queue full, line too long, or still queued when the drain stopped.
    pub dropped: u64,
    /// Lines accepted and not yet written.
    pub queued: u64,
    /// Connections made after the first.
    pub reconnects: u64,
    /// Whether the thread holds a live connection now.
    pub connected: bool,
    /// Why the last connection ended, when the other side said or showed it: the broker's
    /// refusal (`exit 3: access denied` for a topic the service may not publish to) or
    /// the command's exit status. The drain keeps retrying, so this is where a wrong
    /// topic, grant or ssh setup shows.
    pub last_error: Option<String>,
}

/// A [`Builder::sink`] closure.
type SinkFn = Box<dyn FnMut(&[u8]) + Send>;

/// Where the lines go.
enum Transport {
    Socket {
        path: PathBuf,
        topic: String,
    },
    Ssh {
        args: Vec<OsString>,
        topic: String,
    },
    Command {
        program: OsString,
        args: Vec<OsString>,
    },
    Sink(SinkFn),
}

/// Configures a drain; [`Builder::build`] starts it.
pub struct Builder {
    service: String,
    hostname: Option<String>,
    capacity: usize,
    backoff: (Duration, Duration),
    transport: Option<Transport>,
}

impl Builder {
    /// A drain for the service `service` (its `service` field).
    pub fn new(service: impl Into<String>) -> Builder {
        Builder {
            service: service.into(),
            hostname: None,
            capacity: DEFAULT_CAPACITY,
            backoff: (BACKOFF_MIN, BACKOFF_MAX),
            transport: None,
        }
    }

    /// Publish on `topic` through the broker socket at `path` (e.g. `/run/pipe/piped.sock`).
    pub fn socket(mut self, path: impl Into<PathBuf>, topic: &str) -> Builder {
        self.transport = Some(Transport::Socket {
            path: path.into(),
            topic: topic.to_string(),
        });
        self
    }

    /// Publish on `topic` through `ssh -o BatchMode=yes DESTINATION_ARGS… -- REQUEST`;
    /// `destination_args` are ssh's options followed by the destination (`["-p", "2222",
    /// "pipe@host"]`).
    pub fn ssh<I, S>(mut self, destination_args: I, topic: &str) -> Builder
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.transport = Some(Transport::Ssh {
            args: destination_args.into_iter().map(Into::into).collect(),
            topic: topic.to_string(),
        });
        self
    }

    /// Write the lines to the stdin of `program ARGS…`, restarted whenever it exits.
    pub fn command<P, I, S>(mut self, program: P, args: I) -> Builder
    where
        P: Into<OsString>,
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.transport = Some(Transport::Command {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
        });
        self
    }

    /// Call `f` with each line (newline included) on the background thread.
    pub fn sink(mut self, f: impl FnMut(&[u8]) + Send + 'static) -> Builder {
        self.transport = Some(Transport::Sink(Box::new(f)));
        self
    }

    /// The `hostname` field (default: the machine's hostname).
    pub fn hostname(mut self, hostname: impl Into<String>) -> Builder {
        self.hostname = Some(hostname.into());
        self
    }

    /// Lines the queue holds (default [`DEFAULT_CAPACITY`]).
    pub fn capacity(mut self, lines: usize) -> Builder {
        self.capacity = lines;
        self
    }

    /// Reconnect delays: from `min`, doubling, at most `max` (default [`BACKOFF_MIN`],
    /// [`BACKOFF_MAX`]).
    pub fn backoff(mut self, min: Duration, max: Duration) -> Builder {
        self.backoff = (min, max);
        self
    }

    /// Starts the `pipe-drain` thread; the layer goes into the subscriber, the handle stays
    /// with the service.
    pub fn build(self) -> Result<(DrainLayer, DrainHandle), DrainError> {
        let transport = self.transport.ok_or(DrainError::NoTransport)?;
        if self.capacity == 0 {
            return Err(DrainError::Capacity);
        }
        let (min, max) = self.backoff;
        if min.is_zero() || min > max {
            return Err(DrainError::Backoff { min, max });
        }
        let target = match transport {
            Transport::Socket { path, topic } => Target::Socket {
                path,
                request: pub_request(&topic)?,
            },
            Transport::Ssh { args, topic } => {
                let request = pub_request(&topic)?;
                let mut all: Vec<OsString> = vec!["-o".into(), "BatchMode=yes".into()];
                all.extend(args);
                all.push("--".into());
                all.push(request.into());
                Target::Command {
                    program: "ssh".into(),
                    args: all,
                }
            }
            Transport::Command { program, args } => Target::Command { program, args },
            Transport::Sink(f) => Target::Sink(Some(f)),
        };
        let hostname = self.hostname.unwrap_or_else(|| {
            nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_else(|_| UNKNOWN_HOST.to_string())
        });
        let mut tail = String::with_capacity(64);
        tail.push_str(",\"service\":");
        push_json_str(&mut tail, &self.service);
        tail.push_str(",\"hostname\":");
        push_json_str(&mut tail, &hostname);
        tail.push_str("}\n");
        let tail: Arc<str> = Arc::from(tail);

        let (tx, rx) = mpsc::sync_channel(self.capacity);
        let shared = Arc::new(Shared::default());
        let worker = Worker {
            shared: shared.clone(),
            rx,
            target,
            backoff: Backoff::new(min, max),
            tail: tail.clone(),
            conn: None,
            pending: Vec::new(),
            buf: Vec::new(),
            reported: 0,
            last_report: Instant::now(),
            ever_connected: false,
            connected_at: Instant::now(),
        };
        let thread = thread::Builder::new()
            .name("pipe-drain".into())
            .spawn(move || worker.run())
            .map_err(DrainError::Thread)?;
        let layer = DrainLayer {
            tx: tx.clone(),
            shared: shared.clone(),
            capacity: self.capacity as u64,
            tail,
        };
        let handle = DrainHandle {
            tx,
            shared,
            thread: Some(thread),
        };
        Ok((layer, handle))
    }
}

/// The canonical `pub TOPIC -b=false -c` request, refusing anything but a plain topic (a
/// "topic" with spaces or a leading `-` would smuggle flags in).
fn pub_request(topic: &str) -> Result<String, DrainError> {
    let bad = |reason: String| DrainError::Topic {
        topic: topic.to_string(),
        reason,
    };
    if topic.starts_with('-') || topic.contains(char::is_whitespace) {
        return Err(bad("not a plain topic name".into()));
    }
    let req =
        Request::parse_words(&["pub", topic, "-b=false", "-c"]).map_err(|e| bad(e.to_string()))?;
    match &req {
        Request::Pub(p) if p.topic.is_some() && p.access.is_none() => Ok(req.render()),
        _ => Err(bad("not a plain topic name".into())),
    }
}

/// Counters and signals shared by the layer, the handle and the thread.
#[derive(Default)]
struct Shared {
    /// Lines put into the queue.
    accepted: AtomicU64,
    sent: AtomicU64,
    dropped: AtomicU64,
    /// Accepted lines lost at shutdown (also counted in `dropped`).
    discarded: AtomicU64,
    reconnects: AtomicU64,
    connected: AtomicBool,
    /// The thread no longer takes lines.
    closed: AtomicBool,
    /// The thread has ended (set even if it panicked).
    done: AtomicBool,
    /// When the thread must have finished its shutdown.
    stop_by: OnceLock<Instant>,
    last_error: Mutex<Option<String>>,
    lock: Mutex<()>,
    /// Progress, shutdown and end of the thread.
    changed: Condvar,
}

impl Shared {
    fn queued(&self) -> u64 {
        let done = self.sent.load(Ordering::Acquire) + self.discarded.load(Ordering::Acquire);
        self.accepted.load(Ordering::Acquire).saturating_sub(done)
    }

    fn drop_lines(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
    }

    fn stopping(&self) -> bool {
        self.stop_by.get().is_some()
    }

    fn guard(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes every waiter. Taking the lock first means a waiter is either before its check
    /// (and will see the new state) or already waiting (and is woken).
    fn notify(&self) {
        drop(self.guard());
        self.changed.notify_all();
    }

    /// Sleeps up to `d`, or until a shutdown is asked for.
    fn pause(&self, d: Duration) {
        let g = self.guard();
        let _ = self
            .changed
            .wait_timeout_while(g, d, |_| !self.stopping())
            .map_err(PoisonError::into_inner);
    }

    fn stats(&self) -> DrainStats {
        DrainStats {
            sent: self.sent.load(Ordering::Acquire),
            dropped: self.dropped.load(Ordering::Acquire),
            queued: self.queued(),
            reconnects: self.reconnects.load(Ordering::Acquire),
            connected: self.connected.load(Ordering::Acquire),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}

enum Msg {
    Line(String),
    /// Wakes an idle thread for shutdown.
    Wake,
}

/// The layer: formats events into lines and queues them. Cheap to keep in any subscriber.
pub struct DrainLayer {
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
    capacity: u64,
    /// `,"service":…,"hostname":…}\n`, rendered once.
    tail: Arc<str>,
}

impl DrainLayer {
    fn offer(&self, line: String) {
        if line.len() > MAX_LINE {
            self.shared.drop_lines(1);
            return;
        }
        // Counted before the send so `queued` never goes below zero while the thread races
        // ahead; taken back if the queue refuses.
        self.shared.accepted.fetch_add(1, Ordering::AcqRel);
        if self.tx.try_send(Msg::Line(line)).is_err() {
            self.shared.accepted.fetch_sub(1, Ordering::AcqRel);
            self.shared.drop_lines(1);
        }
    }

    fn render<S>(&self, event: &Event<'_>, ctx: &Context<'_, S>, now: SystemTime) -> String
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let meta = event.metadata();
        let mut line = String::with_capacity(LINE_RESERVE);
        line.push_str("{\"time\":\"");
        crate::timefmt::push_rfc3339(
            &mut line,
            now.duration_since(UNIX_EPOCH).unwrap_or_default(),
        );
        line.push_str("\",\"level\":\"");
        line.push_str(meta.level().as_str());
        line.push_str("\",\"target\":");
        push_json_str(&mut line, meta.target());
        line.push_str(",\"message\":");

        // Two passes over the event's fields, both straight into the line: the message
        // first, where readers look for it, then the others.
        let mut seen = Seen::default();
        let mut visitor = EventVisitor {
            line: &mut line,
            seen: &mut seen,
            message_pass: true,
            wrote_message: false,
        };
        event.record(&mut visitor);
        if !visitor.wrote_message {
            visitor.line.push_str("\"\"");
        }
        visitor.message_pass = false;
        event.record(&mut visitor);
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope {
                let ext = span.extensions();
                let Some(SpanFields(span_fields)) = ext.get::<SpanFields>() else {
                    continue;
                };
                for (name, value) in span_fields {
                    if !seen.contains(name) {
                        seen.insert(name);
                        push_key(&mut line, name);
                        line.push_str(value);
                    }
                }
            }
        }
        line.push_str(&self.tail);
        line
    }
}

impl<S> Layer<S> for DrainLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = SpanFields(Vec::new());
        attrs.record(&mut fields);
        span.extensions_mut().insert(fields);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        // Rendered before taking the span's lock: a `Debug` value that logs must not find
        // it held.
        let mut update = SpanFields(Vec::new());
        values.record(&mut update);
        let mut ext = span.extensions_mut();
        match ext.get_mut::<SpanFields>() {
            Some(fields) => fields.merge(update),
            None => ext.insert(update),
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if ON_DRAIN_THREAD.with(Cell::get) {
            return;
        }
        // A full queue (the broker is gone) or a stopped drain: skip the formatting, so
        // the call costs next to nothing.
        if self.shared.closed.load(Ordering::Relaxed) || self.shared.queued() >= self.capacity {
            self.shared.drop_lines(1);
            return;
        }
        let line = self.render(event, &ctx, SystemTime::now());
        self.offer(line);
    }
}

/// A span's fields, rendered when recorded: `(name, JSON value)`.
struct SpanFields(Vec<(&'static str, String)>);

impl SpanFields {
    fn slot(&mut self, field: &Field) -> Option<&mut String> {
        let name = field.name();
        if FIXED_KEYS.contains(&name) {
            return None;
        }
        let at = match self.0.iter().position(|(n, _)| *n == name) {
            Some(at) => at,
            None => {
                self.0.push((name, String::new()));
                self.0.len() - 1
            }
        };
        let value = &mut self.0.get_mut(at)?.1;
        value.clear();
        Some(value)
    }

    /// Takes newly recorded values over, in place for names already there.
    fn merge(&mut self, update: SpanFields) {
        for (name, value) in update.0 {
            match self.0.iter_mut().find(|(n, _)| *n == name) {
                Some((_, old)) => *old = value,
                None => self.0.push((name, value)),
            }
        }
    }
}

/// Writes an event's message (first pass) or its other fields as `,"name":value` (second
/// pass) into the line.
struct EventVisitor<'a> {
    line: &'a mut String,
    seen: &'a mut Seen,
    message_pass: bool,
    wrote_message: bool,
}

impl EventVisitor<'_> {
    fn slot(&mut self, field: &Field) -> Option<&mut String> {
        let name = field.name();
        if name == "message" {
            if !self.message_pass || self.wrote_message {
                return None;
            }
            self.wrote_message = true;
            return Some(&mut *self.line);
        }
        if self.message_pass || FIXED_KEYS.contains(&name) || self.seen.contains(name) {
            return None;
        }
        self.seen.insert(name);
        push_key(self.line, name);
        Some(&mut *self.line)
    }
}

/// Names an event line holds up to before `Seen` allocates: more than any usual event and
/// its spans carry.
const SEEN_INLINE: usize = 32;

/// The field names already in a line, so each appears once; no allocation for the usual
/// handful (this is on the service's logging path).
struct Seen {
    inline: [&'static str; SEEN_INLINE],
    len: usize,
    spill: Vec<&'static str>,
}

impl Default for Seen {
    fn default() -> Seen {
        Seen {
            inline: [""; SEEN_INLINE],
            len: 0,
            spill: Vec::new(),
        }
    }
}

impl Seen {
    fn contains(&self, name: &str) -> bool {
        self.inline.get(..self.len).unwrap_or(&[]).contains(&name) || self.spill.contains(&name)
    }

    fn insert(&mut self, name: &'static str) {
        match self.inline.get_mut(self.len) {
            Some(slot) => {
                *slot = name;
                self.len += 1;
            }
            None => self.spill.push(name),
        }
    }
}

/// One `Visit` for both: each kind of value rendered once, into the slot the visitor picks.
macro_rules! visit_into_slot {
    ($ty:ty) => {
        impl Visit for $ty {
            fn record_str(&mut self, field: &Field, value: &str) {
                if let Some(out) = self.slot(field) {
                    push_json_str(out, value);
                }
            }
            fn record_bool(&mut self, field: &Field, value: bool) {
                if let Some(out) = self.slot(field) {
                    out.push_str(if value { "true" } else { "false" });
                }
            }
            fn record_i64(&mut self, field: &Field, value: i64) {
                if let Some(out) = self.slot(field) {
                    let _ = write!(out, "{value}");
                }
            }
            fn record_u64(&mut self, field: &Field, value: u64) {
                if let Some(out) = self.slot(field) {
                    let _ = write!(out, "{value}");
                }
            }
            fn record_i128(&mut self, field: &Field, value: i128) {
                if let Some(out) = self.slot(field) {
                    let _ = write!(out, "{value}");
                }
            }
            fn record_u128(&mut self, field: &Field, value: u128) {
                if let Some(out) = self.slot(field) {
                    let _ = write!(out, "{value}");
                }
            }
            fn record_f64(&mut self, field: &Field, value: f64) {
                if let Some(out) = self.slot(field) {
                    push_f64(out, value);
                }
            }
            fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
                if let Some(out) = self.slot(field) {
                    out.push('"');
                    let _ = write!(JsonEscape(out), "{value:?}");
                    out.push('"');
                }
            }
        }
    };
}

visit_into_slot!(EventVisitor<'_>);
visit_into_slot!(SpanFields);

fn push_key(out: &mut String, name: &str) {
    out.push(',');
    push_json_str(out, name);
    out.push(':');
}

fn push_f64(out: &mut String, value: f64) {
    if value.is_finite() {
        // Rust prints floats without exponent and `1.0` as `1`: both valid JSON numbers.
        let _ = write!(out, "{value}");
    } else {
        let _ = write!(out, "\"{value}\"");
    }
}

/// Appends `s` as a JSON string, quotes included.
fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    escape_into(out, s);
    out.push('"');
}

/// Appends `s` escaped for the inside of a JSON string.
fn escape_into(out: &mut String, s: &str) {
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let short = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        // `i` is at an ASCII byte, so both slices end on character boundaries.
        out.push_str(s.get(start..i).unwrap_or_default());
        if short.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            out.push_str(short);
        }
        start = i + 1;
    }
    out.push_str(s.get(start..).unwrap_or_default());
}

/// Escapes whatever is formatted into it (a `Debug` value) without a temporary string.
struct JsonEscape<'a>(&'a mut String);

impl fmt::Write for JsonEscape<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        escape_into(self.0, s);
        Ok(())
    }
}

/// Reconnect delays: doubling from `min`, capped at `max`.
#[derive(Debug, Clone)]
struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max,
            next: min,
        }
    }

    fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = d.saturating_mul(2).min(self.max);
        d
    }

    fn reset(&mut self) {
        self.next = self.min;
    }
}

/// How the thread connects.
enum Target {
    Socket {
        path: PathBuf,
        request: String,
    },
    Command {
        program: OsString,
        args: Vec<OsString>,
    },
    /// Taken into the connection once; a sink never disconnects.
    Sink(Option<SinkFn>),
}

impl Target {
    fn connect(&mut self) -> io::Result<Conn> {
        match self {
            Target::Socket { path, request } => {
                let control = UnixStream::connect(path)?;
                control.set_write_timeout(Some(HELLO_DEADLINE))?;
                let (ours, theirs) = data_pair()?;
                let hello = Hello {
                    version: PROTOCOL_VERSION,
                    request: request.clone(),
                    user: None,
                    key: None,
                };
                // One end as both stdin (the broker reads the lines) and stdout (it watches
                // it to notice us leaving); our copy closes when `theirs` drops.
                let fd = theirs.as_raw_fd();
                proto::send_hello(&control, &hello, &[fd, fd]).map_err(io::Error::other)?;
                drop(theirs);
                Ok(Conn::Broker {
                    control,
                    data: ours,
                    frames: Vec::new(),
                    ended: None,
                })
            }
            Target::Command { program, args } => {
                let (ours, theirs) = data_pair()?;
                let child = Command::new(&*program)
                    .args(&*args)
                    .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()?;
                Ok(Conn::Child {
                    child,
                    data: ours,
                    ended: None,
                })
            }
            Target::Sink(f) => f
                .take()
                .map(Conn::Sink)
                .ok_or_else(|| io::Error::other("sink already taken")),
        }
    }
}

/// A socket pair (close-on-exec, so no other child of the service inherits it): our end,
/// with [`WRITE_TICK`] as its send timeout, and the end handed over.
fn data_pair() -> io::Result<(UnixStream, UnixStream)> {
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    let ours = UnixStream::from(ours);
    ours.set_write_timeout(Some(WRITE_TICK))?;
    Ok((ours, UnixStream::from(theirs)))
}

/// A live connection.
enum Conn {
    Broker {
        control: UnixStream,
        data: UnixStream,
        /// Partial frames read from the control connection.
        frames: Vec<u8>,
        /// The broker's reason, once it ended the session with one.
        ended: Option<String>,
    },
    Child {
        child: Child,
        data: UnixStream,
        /// The child's exit status, once it exited.
        ended: Option<String>,
    },
    Sink(SinkFn),
}

impl Conn {
    /// Whether the session goes on; reads (never waits for) what the broker said.
    fn alive(&mut self) -> bool {
        match self {
            Conn::Broker {
                control,
                frames,
                ended,
                ..
            } => {
                let mut chunk = [0u8; 512];
                match recv(control.as_raw_fd(), &mut chunk, MsgFlags::MSG_DONTWAIT) {
                    Err(Errno::EAGAIN | Errno::EINTR) => true,
                    Err(_) | Ok(0) => false,
                    Ok(n) => {
                        frames.extend_from_slice(chunk.get(..n).unwrap_or_default());
                        loop {
                            match proto::decode::<ToClient>(frames) {
                                Ok(None) => return true,
                                Ok(Some((ToClient::Exit { code, message }, _))) => {
                                    if code != crate::exit::Exit::Ok {
                                        let why = message.unwrap_or_default();
                                        *ended = Some(format!("exit {}: {why}", code.code()));
                                    }
                                    return false;
                                }
                                Err(_) => return false,
                                Ok(Some((_, used))) => {
                                    frames.drain(..used.min(frames.len()));
                                }
                            }
                        }
                    }
                }
            }
            Conn::Child { child, ended, .. } => match child.try_wait() {
                Ok(None) => true,
                Ok(Some(status)) => {
                    *ended = Some(format!("command {status}"));
                    false
                }
                Err(_) => false,
            },
            Conn::Sink(_) => true,
        }
    }

    /// Writes `lines` in order; gives up when the connection dies or at `give_up_at`.
    fn write(
        &mut self,
        lines: &[String],
        buf: &mut Vec<u8>,
        give_up_at: impl Fn() -> bool,
    ) -> io::Result<()> {
        let data = match self {
            Conn::Sink(f) => {
                for line in lines {
                    f(line.as_bytes());
                }
                return Ok(());
            }
            Conn::Broker { data, .. } | Conn::Child { data, .. } => data.as_raw_fd(),
        };
        buf.clear();
        for line in lines {
            buf.extend_from_slice(line.as_bytes());
        }
        let mut rest: &[u8] = buf;
        while !rest.is_empty() {
            // MSG_NOSIGNAL: a dead reader is EPIPE here, never a SIGPIPE for the service.
            match send(data, rest, MsgFlags::MSG_NOSIGNAL) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => rest = rest.get(n..).unwrap_or_default(),
                Err(Errno::EINTR) => {}
                // The send timeout: the transport is not reading. Keep waiting (the queue
                // absorbs, then drops) unless it died or the shutdown deadline passed.
                Err(Errno::EAGAIN) => {
                    if give_up_at() || !self.alive() {
                        return Err(io::ErrorKind::TimedOut.into());
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Ends the connection, letting the other side finish until `deadline`: the broker
    /// delivers what it read before its final `Exit`; a child gets end of input, then is
    /// killed and reaped.
    fn close(self, deadline: Instant) {
        match self {
            Conn::Broker {
                mut control,
                data,
                mut frames,
                ..
            } => {
                drop(data);
                loop {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() || control.set_read_timeout(Some(left)).is_err() {
                        break;
                    }
                    match proto::read_frame(&mut control, &mut frames) {
                        Ok(ToClient::Exit { .. }) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
            }
            Conn::Child {
                mut child, data, ..
            } => {
                drop(data);
                while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                    thread::sleep(CHILD_POLL);
                }
                if matches!(child.try_wait(), Ok(None)) {
                    let _ = child.kill();
                }
                let _ = child.wait();
            }
            Conn::Sink(_) => {}
        }
    }
}

/// Marks the thread done however it ends, so the handle never waits for a dead thread.
struct DoneGuard(Arc<Shared>);

impl Drop for DoneGuard {
    fn drop(&mut self) {
        self.0.connected.store(false, Ordering::Release);
        self.0.closed.store(true, Ordering::Release);
        self.0.done.store(true, Ordering::Release);
        self.0.notify();
    }
}

/// The `pipe-drain` thread.
struct Worker {
    shared: Arc<Shared>,
    rx: Receiver<Msg>,
    target: Target,
    backoff: Backoff,
    tail: Arc<str>,
    conn: Option<Conn>,
    /// Lines taken from the queue and not yet written, oldest first.
    pending: Vec<String>,
    /// Reused write buffer.
    buf: Vec<u8>,
    /// `dropped` as of the last report.
    reported: u64,
    last_report: Instant,
    ever_connected: bool,
    connected_at: Instant,
}

impl Worker {
    fn run(mut self) {
        ON_DRAIN_THREAD.with(|c| c.set(true));
        let _done = DoneGuard(self.shared.clone());
        loop {
            if self.shared.stopping() {
                break;
            }
            if self.conn.is_none() {
                self.connect();
                continue;
            }
            if self.pending.is_empty() {
                match self.rx.recv_timeout(IDLE_CHECK) {
                    Ok(Msg::Line(line)) => self.pending.push(line),
                    Ok(Msg::Wake) => continue,
                    Err(RecvTimeoutError::Timeout) => {
                        if !self.conn.as_mut().is_some_and(Conn::alive) {
                            self.disconnect();
                        }
                        continue;
                    }
                    // Layer and handle are gone: nobody can log or wait any more.
                    Err(RecvTimeoutError::Disconnected) => break,
                }
                self.gather();
            }
            self.write_pending();
        }
        self.finish();
    }

    /// Adds queued lines to `pending`, up to one batch.
    fn gather(&mut self) {
        let mut bytes: usize = self.pending.iter().map(String::len).sum();
        while bytes < BATCH_BYTES {
            match self.rx.try_recv() {
                Ok(Msg::Line(line)) => {
                    bytes += line.len();
                    self.pending.push(line);
                }
                Ok(Msg::Wake) => {}
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
    }

    /// Writes a due drop report and then `pending`; on failure the lines stay pending for
    /// the next connection. False if the connection broke.
    fn write_pending(&mut self) -> bool {
        let Some(conn) = self.conn.as_mut() else {
            return false;
        };
        if !conn.alive() {
            self.disconnect();
            return false;
        }
        let since_connect = self.last_report <= self.connected_at;
        if !self.report(since_connect || self.last_report.elapsed() >= REPORT_INTERVAL) {
            return false;
        }
        let Some(conn) = self.conn.as_mut() else {
            return false;
        };
        let shared = &self.shared;
        let give_up = || shared.stop_by.get().is_some_and(|t| Instant::now() >= *t);
        match conn.write(&self.pending, &mut self.buf, give_up) {
            Ok(()) => {
                let n = self.pending.len() as u64;
                self.pending.clear();
                self.shared.sent.fetch_add(n, Ordering::AcqRel);
                self.shared.notify();
                true
            }
            Err(_) => {
                self.disconnect();
                false
            }
        }
    }

    /// Writes the report line if `due` and lines were dropped since the last one. False if
    /// the connection broke.
    fn report(&mut self, due: bool) -> bool {
        let dropped = self.shared.dropped.load(Ordering::Acquire);
        let n = dropped.saturating_sub(self.reported);
        if !due || n == 0 {
            return true;
        }
        let line = report_line(n, SystemTime::now(), &self.tail);
        let Some(conn) = self.conn.as_mut() else {
            return false;
        };
        let shared = &self.shared;
        let give_up = || shared.stop_by.get().is_some_and(|t| Instant::now() >= *t);
        match conn.write(&[line], &mut self.buf, give_up) {
            Ok(()) => {
                self.reported = dropped;
                self.last_report = Instant::now();
                true
            }
            Err(_) => {
                self.disconnect();
                false
            }
        }
    }

    /// One attempt; on failure waits out the next backoff delay (cut short by a shutdown).
    fn connect(&mut self) {
        match self.target.connect() {
            Ok(conn) => {
                if self.ever_connected {
                    self.shared.reconnects.fetch_add(1, Ordering::AcqRel);
                }
                self.ever_connected = true;
                self.conn = Some(conn);
                self.connected_at = Instant::now();
                self.shared.connected.store(true, Ordering::Release);
            }
            Err(_) => {
                let d = self.backoff.next_delay();
                self.shared.pause(d);
            }
        }
    }

    /// Drops a broken connection and waits before the next attempt; a connection that
    /// lasted the backoff cap was healthy, so the delays start over.
    fn disconnect(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        self.shared.connected.store(false, Ordering::Release);
        if let Conn::Broker { ended, .. } | Conn::Child { ended, .. } = &mut conn {
            if let Some(why) = ended.take() {
                *self
                    .shared
                    .last_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(why);
            }
        }
        conn.close(Instant::now());
        if self.connected_at.elapsed() >= self.backoff.max {
            self.backoff.reset();
        }
        let d = self.backoff.next_delay();
        self.shared.pause(d);
    }

    /// Shutdown: write what is queued while connected and in time, report, close cleanly;
    /// whatever is left is counted as dropped.
    fn finish(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        let deadline = self
            .shared
            .stop_by
            .get()
            .copied()
            .unwrap_or_else(|| Instant::now() + SHUTDOWN_GRACE);
        while self.conn.is_some() && Instant::now() < deadline {
            if self.pending.is_empty() {
                self.gather();
                if self.pending.is_empty() {
                    break;
                }
            }
            if !self.write_pending() {
                break;
            }
        }
        let mut lost = self.pending.len() as u64;
        self.pending.clear();
        lost += self
            .rx
            .try_iter()
            .filter(|m| matches!(m, Msg::Line(_)))
            .count() as u64;
        if lost > 0 {
            self.shared.drop_lines(lost);
            self.shared.discarded.fetch_add(lost, Ordering::AcqRel);
        }
        if self.conn.is_some() && Instant::now() < deadline {
            self.report(true);
        }
        if let Some(conn) = self.conn.take() {
            conn.close(deadline);
        }
        self.shared.connected.store(false, Ordering::Release);
        self.shared.notify();
    }
}

/// The thread's own line about lost lines; hidden from users.
fn report_line(dropped: u64, now: SystemTime, tail: &str) -> String {
    let mut line = String::with_capacity(LINE_RESERVE);
    line.push_str("{\"time\":\"");
    crate::timefmt::push_rfc3339(
        &mut line,
        now.duration_since(UNIX_EPOCH).unwrap_or_default(),
    );
    let _ = write!(
        line,
        "\",\"level\":\"WARN\",\"target\":\"pipe::drain\",\
         \"message\":\"pipe drain: dropped {dropped} log lines\",\
         \"dropped\":{dropped},\"hidden\":true"
    );
    line.push_str(tail);
    line
}

/// The service's side of a drain: counters, flush, shutdown. Dropping it stops the drain, so
/// keep it for the life of the service (`let (layer, _drain) = …`; `_` alone drops it).
#[must_use = "dropping the handle stops the drain"]
pub struct DrainHandle {
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl DrainHandle {
    pub fn stats(&self) -> DrainStats {
        self.shared.stats()
    }

    /// Waits until every line queued before the call is written, at most `timeout`. True if
    /// they all were.
    pub fn flush(&self, timeout: Duration) -> bool {
        let target = self.shared.accepted.load(Ordering::Acquire);
        let written = |s: &Shared| {
            let done = s.sent.load(Ordering::Acquire) + s.discarded.load(Ordering::Acquire);
            done >= target || s.queued() == 0
        };
        let g = self.shared.guard();
        let (_g, _) = self
            .shared
            .changed
            .wait_timeout_while(g, timeout, |_| {
                !written(&self.shared) && !self.shared.done.load(Ordering::Acquire)
            })
            .unwrap_or_else(PoisonError::into_inner);
        written(&self.shared)
    }

    /// Stops the drain (bounded: [`SHUTDOWN_GRACE`] plus [`SHUTDOWN_SLACK`]) and returns the
    /// final counters.
    pub fn shutdown(mut self) -> DrainStats {
        self.stop();
        self.stats()
    }

    fn stop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        let _ = self.shared.stop_by.set(Instant::now() + SHUTDOWN_GRACE);
        // An idle thread waits on the queue; a busy one sees the deadline between writes.
        let _ = self.tx.try_send(Msg::Wake);
        self.shared.notify();
        let g = self.shared.guard();
        let _ = self
            .shared
            .changed
            .wait_timeout_while(g, SHUTDOWN_GRACE + SHUTDOWN_SLACK, |_| {
                !self.shared.done.load(Ordering::Acquire)
            })
            .map_err(PoisonError::into_inner);
        if self.shared.done.load(Ordering::Acquire) {
            let _ = thread.join();
        }
        // Otherwise the thread is stuck in a system call; it is left behind rather than
        // hanging the service's exit.
    }
}

impl Drop for DrainHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use tracing::{debug_span, info, info_span, warn};
    use tracing_subscriber::prelude::*;

    /// A drain into a channel, and the subscriber to log through.
    fn capture(
        builder: Builder,
    ) -> (
        impl Subscriber + Send + Sync,
        DrainHandle,
        Receiver<Vec<u8>>,
    ) {
        let (tx, rx) = mpsc::channel();
        let (layer, handle) = builder
            .sink(move |line| {
                let _ = tx.send(line.to_vec());
            })
            .build()
            .unwrap();
        (tracing_subscriber::registry().with(layer), handle, rx)
    }

    fn lines(rx: &Receiver<Vec<u8>>, n: usize) -> Vec<String> {
        (0..n)
            .map(|_| {
                let l = rx.recv_timeout(Duration::from_secs(5)).expect("a line");
                String::from_utf8(l).unwrap()
            })
            .collect()
    }

    fn parse(line: &str) -> serde_json::Map<String, Value> {
        assert!(line.ends_with('\n'), "{line:?}");
        assert_eq!(line.matches('\n').count(), 1, "one line: {line:?}");
        match serde_json::from_str(line).unwrap() {
            Value::Object(m) => m,
            other => panic!("not an object: {other}"),
        }
    }

    /// Keys in the order written (serde_json's map sorts them).
    fn keys(line: &str) -> Vec<String> {
        let mut positions: Vec<(usize, String)> = parse(line)
            .keys()
            .map(|k| (line.find(&format!("\"{k}\":")).unwrap(), k.clone()))
            .collect();
        positions.sort();
        positions.into_iter().map(|(_, k)| k).collect()
    }

    #[test]
    fn drain_line_shape() {
        let (sub, handle, rx) = capture(Builder::new("svc").hostname("host1"));
        tracing::subscriber::with_default(sub, || {
            info!(
                count = 3,
                neg = -7i64,
                big = u64::MAX,
                ratio = 0.5,
                nan = f64::NAN,
                ok = true,
                name = "x",
                list = ?vec![1, 2],
                shown = %"disp",
                "hello {}",
                "world"
            );
        });
        assert!(handle.flush(Duration::from_secs(5)));
        let line = &lines(&rx, 1)[0];
        let m = parse(line);
        assert!(line.starts_with("{\"time\":\""), "{line}");
        assert_eq!(
            keys(line),
            [
                "time", "level", "target", "message", "count", "neg", "big", "ratio", "nan", "ok",
                "name", "list", "shown", "service", "hostname"
            ]
        );
        assert_eq!(m["level"], "INFO");
        assert_eq!(m["target"], module_path!());
        assert_eq!(m["message"], "hello world");
        assert_eq!(m["count"], 3);
        assert_eq!(m["neg"], -7);
        assert_eq!(m["big"], u64::MAX);
        assert_eq!(m["ratio"], 0.5);
        assert_eq!(m["nan"], "NaN");
        assert_eq!(m["ok"], true);
        assert_eq!(m["name"], "x");
        assert_eq!(m["list"], "[1, 2]");
        assert_eq!(m["shown"], "disp");
        assert_eq!(m["service"], "svc");
        assert_eq!(m["hostname"], "host1");
        let time = m["time"].as_str().unwrap();
        assert_eq!(time.len(), "2026-11-25T20:31:02.123Z".len(), "{time}");
        assert!(time.ends_with('Z') && time.as_bytes()[10] == b'T', "{time}");
        assert_eq!(handle.shutdown().sent, 1);
    }

    #[test]
    fn drain_span_fields_and_user_span() {
        let (sub, handle, rx) = capture(Builder::new("svc").hostname("h"));
        tracing::subscriber::with_default(sub, || {
            let _user = user_span("alice").entered();
            let _outer = info_span!("outer", a = 1, b = "outer", c = 1).entered();
            let inner = debug_span!(
                "inner",
                a = 2,
                service = "not me",
                late = tracing::field::Empty
            );
            inner.record("late", 9);
            let _inner = inner.entered();
            warn!(c = 3, "in spans");
            info!(user = "bob", "one event for bob");
            info!(hidden = true, "secret");
        });
        assert!(handle.flush(Duration::from_secs(5)));
        let got = lines(&rx, 3);
        let m = parse(&got[0]);
        assert_eq!(m["level"], "WARN");
        assert_eq!(m["user"], "alice");
        assert_eq!(m["a"], 2, "the inner span wins");
        assert_eq!(m["b"], "outer");
        assert_eq!(m["c"], 3, "the event wins");
        assert_eq!(m["late"], 9, "recorded after creation");
        assert_eq!(m["service"], "svc", "a span cannot override a fixed key");
        assert_eq!(got[0].matches("\"service\":").count(), 1);
        assert_eq!(
            keys(&got[0]),
            [
                "time", "level", "target", "message", "c", "a", "late", "b", "user", "service",
                "hostname"
            ]
        );
        assert_eq!(parse(&got[1])["user"], "bob");
        assert_eq!(got[1].matches("\"user\":").count(), 1);
        let m = parse(&got[2]);
        assert_eq!(
            (m["user"].as_str(), m["hidden"].as_bool()),
            (Some("alice"), Some(true))
        );
    }

    #[test]
    fn drain_debug_value_that_logs_does_not_deadlock() {
        struct Loud;
        impl fmt::Debug for Loud {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                info!("from inside Debug");
                f.write_str("loud")
            }
        }
        let (sub, handle, rx) = capture(Builder::new("svc").hostname("h"));
        let (done_tx, done_rx) = mpsc::channel();
        thread::spawn(move || {
            tracing::subscriber::with_default(sub, || {
                let span = info_span!("s", v = tracing::field::Empty);
                let _in = span.enter();
                span.record("v", tracing::field::debug(Loud));
                info!(w = ?Loud, "after");
            });
            let _ = done_tx.send(());
        });
        done_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("logging from a Debug value deadlocked");
        assert!(handle.flush(Duration::from_secs(5)));
        // tracing itself drops events raised while it is dispatching; what matters is that
        // nothing hangs and the line is whole.
        let got: Vec<_> = rx
            .try_iter()
            .map(|l| parse(&String::from_utf8(l).unwrap()))
            .collect();
        let last = got.last().expect("a line");
        assert_eq!(last["message"], "after");
        assert_eq!(
            (last["v"].as_str(), last["w"].as_str()),
            (Some("loud"), Some("loud"))
        );
    }

    #[test]
    fn drain_escapes_odd_strings() {
        let odd = "q\"b\\s/n\nr\rt\tnul\u{0}bell\u{7}esc\u{1b}del\u{7f}é\u{2028}💡";
        let (sub, handle, rx) = capture(Builder::new("s\"vc\n").hostname("h\\"));
        tracing::subscriber::with_default(sub, || {
            info!(target: "odd\"target", field = odd, dbg = ?odd, "{odd}");
        });
        assert!(handle.flush(Duration::from_secs(5)));
        let line = &lines(&rx, 1)[0];
        let m = parse(line);
        assert_eq!(m["message"], odd);
        assert_eq!(m["field"], odd);
        assert_eq!(m["dbg"], format!("{odd:?}"));
        assert_eq!(m["target"], "odd\"target");
        assert_eq!(m["service"], "s\"vc\n");
        assert_eq!(m["hostname"], "h\\");
        assert!(!line.contains('\u{0}') && !line.contains('\u{1b}'));
    }

    #[test]
    fn drain_backoff_doubles_to_the_cap_and_resets() {
        let mut b = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
        let ms: Vec<u128> = (0..9).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        b.reset();
        assert_eq!(b.next_delay(), BACKOFF_MIN);
    }

    #[test]
    fn drain_full_queue_drops_and_counts_then_reports() {
        // The sink blocks on the first line until released: no transport progress.
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (tx, rx) = mpsc::channel();
        let mut first = true;
        let (layer, handle) = Builder::new("svc")
            .hostname("h")
            .capacity(4)
            .sink(move |line| {
                if first {
                    first = false;
                    let _ = release_rx.recv_timeout(Duration::from_secs(10));
                }
                let _ = tx.send(line.to_vec());
            })
            .build()
            .unwrap();
        let sub = tracing_subscriber::registry().with(layer);
        let dispatch = tracing::Dispatch::new(sub);
        tracing::dispatcher::with_default(&dispatch, || {
            for i in 0..10 {
                info!(i, "flood");
            }
            // Too long: dropped whatever the queue.
            info!(big = "x".repeat(MAX_LINE), "too long");
        });
        let s = handle.stats();
        assert_eq!((s.queued, s.dropped, s.sent), (4, 7, 0), "{s:?}");
        assert!(!handle.flush(Duration::from_millis(50)), "nothing moves");
        release_tx.send(()).unwrap();
        assert!(handle.flush(Duration::from_secs(5)));
        tracing::dispatcher::with_default(&dispatch, || info!("after"));
        assert!(handle.flush(Duration::from_secs(5)));
        // The report comes before the first batch written after the drops (before line 0
        // if the thread had not taken it yet, else before line 1), so before "after".
        let got: Vec<_> = lines(&rx, 6).iter().map(|l| parse(l)).collect();
        let seq: Vec<u64> = got.iter().filter_map(|m| m.get("i")?.as_u64()).collect();
        assert_eq!(seq, [0, 1, 2, 3]);
        let reports: Vec<_> = got.iter().filter(|m| m.contains_key("dropped")).collect();
        assert_eq!(reports.len(), 1, "{got:?}");
        let report = reports[0];
        assert_eq!(report["dropped"], 7);
        assert_eq!(report["level"], "WARN");
        assert_eq!(report["hidden"], true);
        assert_eq!(report["message"], "pipe drain: dropped 7 log lines");
        assert_eq!(report["service"], "svc");
        assert_eq!(got[5]["message"], "after");
        assert!(rx.try_recv().is_err(), "one report only");
        let s = handle.shutdown();
        assert_eq!((s.sent, s.dropped, s.queued), (5, 7, 0), "{s:?}");
    }

    #[test]
    fn drain_command_transport_restarts_the_child() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        // Each child takes one line and exits: every line after the first needs a restart.
        let script = format!("head -n 1 >> '{}'", out.display());
        let (layer, handle) = Builder::new("svc")
            .hostname("h")
            .backoff(Duration::from_millis(10), Duration::from_millis(40))
            .command("sh", ["-c", &script])
            .build()
            .unwrap();
        let sub = tracing_subscriber::registry().with(layer);
        let dispatch = tracing::Dispatch::new(sub);
        let deadline = Instant::now() + Duration::from_secs(20);
        for i in 0..3 {
            tracing::dispatcher::with_default(&dispatch, || info!(i, "line"));
            // Wait until it is written and the child that took it has gone.
            while Instant::now() < deadline
                && std::fs::read_to_string(&out)
                    .unwrap_or_default()
                    .lines()
                    .count()
                    <= i
            {
                thread::sleep(Duration::from_millis(10));
            }
        }
        let text = std::fs::read_to_string(&out).unwrap();
        let seq: Vec<u64> = text
            .lines()
            .map(|l| parse(&format!("{l}\n"))["i"].as_u64().unwrap())
            .collect();
        assert_eq!(seq, [0, 1, 2], "{text}");
        let s = handle.shutdown();
        assert_eq!(s.sent, 3, "{s:?}");
        assert!(s.reconnects >= 2, "{s:?}");
    }

    #[test]
    fn drain_shutdown_is_bounded_with_a_stuck_transport() {
        // A child that never reads: writes stall, shutdown still returns.
        let (layer, handle) = Builder::new("svc")
            .hostname("h")
            .command("sleep", ["60"])
            .build()
            .unwrap();
        let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
        tracing::dispatcher::with_default(&dispatch, || {
            let big = "y".repeat(60_000);
            for _ in 0..100 {
                info!(big, "fill");
            }
        });
        let t = Instant::now();
        let s = handle.shutdown();
        assert!(t.elapsed() < SHUTDOWN_GRACE + SHUTDOWN_SLACK + Duration::from_secs(1));
        assert_eq!(s.queued, 0, "{s:?}");
        assert_eq!(s.sent + s.dropped, 100, "{s:?}");
    }

    #[test]
    fn drain_build_errors() {
        assert!(matches!(
            Builder::new("s").build(),
            Err(DrainError::NoTransport)
        ));
        let sink = || Builder::new("s").sink(|_| {});
        assert!(matches!(
            sink().capacity(0).build(),
            Err(DrainError::Capacity)
        ));
        assert!(matches!(
            sink()
                .backoff(Duration::from_secs(2), Duration::from_secs(1))
                .build(),
            Err(DrainError::Backoff { .. })
        ));
        for topic in ["", "a b", "-e", "x -b=true", "bad topic!", "a*"] {
            assert!(
                matches!(
                    Builder::new("s").socket("/nonexistent", topic).build(),
                    Err(DrainError::Topic { .. })
                ),
                "{topic:?}"
            );
        }
        assert_eq!(
            pub_request("log-drain").unwrap(),
            "pub --block=false --quiet log-drain"
        );
    }

    /// Cost of one log call, broker gone (queue full) and broker up (a sink that keeps up).
    /// `cargo test --release --lib drain_bench -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn drain_bench_log_call() {
        const CALLS: u32 = 1_000_000;
        let measure = |builder: Builder| {
            let (layer, handle) = builder.build().unwrap();
            let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
            let mut runs: Vec<f64> = (0..5)
                .map(|_| {
                    let t = Instant::now();
                    tracing::dispatcher::with_default(&dispatch, || {
                        let _user = user_span("alice").entered();
                        for i in 0..CALLS {
                            info!(job = "build", i, "job started");
                        }
                    });
                    t.elapsed().as_nanos() as f64 / f64::from(CALLS)
                })
                .collect();
            runs.sort_by(f64::total_cmp);
            (runs[2], handle.shutdown())
        };
        let (gone, s) =
            measure(Builder::new("bench").socket("/nonexistent/piped.sock", "log-drain"));
        eprintln!("broker gone (queue full): {gone:.0} ns/call (median of 5); {s:?}");
        // Room for every line: each call formats and queues.
        let (queued, s) = measure(Builder::new("bench").capacity(CALLS as usize).sink(|_| {}));
        eprintln!("every line formatted and queued: {queued:.0} ns/call (median of 5); {s:?}");
    }
}
