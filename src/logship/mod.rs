//! `pipe::logship`: a [`tracing_subscriber::Layer`] that ships a Rust service's logs into a
//! pipe topic, one JSON object per line.
//!
//! This is the service's side. The broker's scoped drains ([`crate::broker::drains`]) read
//! the feed topic these lines go to and route each line to the user it names: users read
//! them with `logs` (pipe(1), COMMANDS), admins declare them in pipe(5), SCOPED DRAINS, which
//! also says what the broker does with the `user` and `hidden` fields.
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
//! let (layer, handle) = pipe::logship::Builder::new("billing")
//!     .socket("/run/pipe/piped.sock", "log-drain")   // or .ssh(["pipe@host"], "log-drain")
//!     .build()?;
//! tracing_subscriber::registry().with(layer).init();
//!
//! let _user = pipe::logship::user_span("alice").entered();
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
//!
//! # Parts
//!
//! This file holds the public API: [`Builder`], [`DrainLayer`] (the `tracing` side, on the
//! service's threads), [`DrainHandle`]. Below it, each depending only on those after it:
//!
//! - `worker`: the `pipe-drain` thread, the bounded queue's consumer, reconnect backoff,
//!   drop reports, shutdown.
//! - `transport`: the connections: the broker socket (connect and hello in one function),
//!   a child's stdin, a closure.
//! - `format`: the JSON line, rendered on the calling thread.

mod format;
mod transport;
mod worker;

use std::cell::Cell;
use std::ffi::OsString;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::PoisonError;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use thiserror::Error;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::request::Request;
use format::SpanFields;
use transport::{Endpoint, SinkFn};
pub use worker::{BACKOFF_MAX, BACKOFF_MIN, REPORT_INTERVAL, SHUTDOWN_GRACE};
use worker::{Msg, ON_DRAIN_THREAD, Shared};

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

/// How much longer than [`SHUTDOWN_GRACE`] the handle waits for the thread before leaving it
/// behind: covers one blocked write tick and the kill of a child.
pub const SHUTDOWN_SLACK: Duration = Duration::from_secs(1);

/// The hostname used when the system does not say.
const UNKNOWN_HOST: &str = "unknown";

/// Tags everything logged inside it with `"user":USER`, the field the broker routes by.
///
/// ```text
/// let _user = pipe::logship::user_span("alice").entered();
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
        let endpoint = match transport {
            Transport::Socket { path, topic } => Endpoint::Socket {
                path,
                request: pub_request(&topic)?,
            },
            Transport::Ssh { args, topic } => {
                let request = pub_request(&topic)?;
                let mut all: Vec<OsString> = vec!["-o".into(), "BatchMode=yes".into()];
                all.extend(args);
                all.push("--".into());
                all.push(request.into());
                Endpoint::Command {
                    program: "ssh".into(),
                    args: all,
                }
            }
            Transport::Command { program, args } => Endpoint::Command { program, args },
            Transport::Sink(f) => Endpoint::Sink(Some(f)),
        };
        let hostname = self.hostname.unwrap_or_else(|| {
            nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_else(|_| UNKNOWN_HOST.to_string())
        });
        let tail: Arc<str> = Arc::from(format::line_tail(&self.service, &hostname));

        let (tx, rx) = mpsc::sync_channel(self.capacity);
        let shared = Arc::new(Shared::default());
        let thread = worker::spawn(shared.clone(), rx, endpoint, (min, max), tail.clone())
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
        let line = format::render(event, &ctx, SystemTime::now(), &self.tail);
        self.offer(line);
    }
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
        let s = &self.shared;
        DrainStats {
            sent: s.sent.load(Ordering::Acquire),
            dropped: s.dropped.load(Ordering::Acquire),
            queued: s.queued(),
            reconnects: s.reconnects.load(Ordering::Acquire),
            connected: s.connected.load(Ordering::Acquire),
            last_error: s
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
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
    use std::fmt;
    use std::sync::mpsc::Receiver;
    use std::thread;
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
    ///
    /// Ignored in the suite: it is a measurement, not a check (it prints and asserts
    /// nothing), its numbers mean something only in a release build on an idle machine, and
    /// its 10 million log calls take minutes in a debug build (about 3 here).
    #[test]
    #[ignore = "a benchmark: prints timings, asserts nothing; run in release (see above)"]
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
