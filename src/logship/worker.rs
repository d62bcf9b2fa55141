//! The `pipe-drain` thread: takes lines off the bounded queue, writes them into the
//! transport, reconnects with a backoff, reports drops, and shuts down within a deadline
//! (the rules are in the [`crate::logship`] docs, "Never blocking the service").

use std::cell::Cell;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use super::format::report_line;
use super::transport::{Conn, Endpoint};

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

/// How often an idle thread checks its connection: a broker that went away is noticed and
/// reconnected to before the next line, and [`crate::logship::DrainStats::connected`] stays
/// truthful.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// Most bytes gathered into one write: one broker chunk.
const BATCH_BYTES: usize = 64 * 1024;

thread_local! {
    /// Set on the `pipe-drain` thread: its own events (a sink that logs) must not loop back.
    pub(super) static ON_DRAIN_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Counters and signals shared by the layer, the handle and the thread.
#[derive(Default)]
pub(super) struct Shared {
    /// Lines put into the queue.
    pub(super) accepted: AtomicU64,
    pub(super) sent: AtomicU64,
    pub(super) dropped: AtomicU64,
    /// Accepted lines lost at shutdown (also counted in `dropped`).
    pub(super) discarded: AtomicU64,
    pub(super) reconnects: AtomicU64,
    pub(super) connected: AtomicBool,
    /// The thread no longer takes lines.
    pub(super) closed: AtomicBool,
    /// The thread has ended (set even if it panicked).
    pub(super) done: AtomicBool,
    /// When the thread must have finished its shutdown.
    pub(super) stop_by: OnceLock<Instant>,
    pub(super) last_error: Mutex<Option<String>>,
    lock: Mutex<()>,
    /// Progress, shutdown and end of the thread.
    pub(super) changed: Condvar,
}

impl Shared {
    pub(super) fn queued(&self) -> u64 {
        let done = self.sent.load(Ordering::Acquire) + self.discarded.load(Ordering::Acquire);
        self.accepted.load(Ordering::Acquire).saturating_sub(done)
    }

    pub(super) fn drop_lines(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
    }

    pub(super) fn stopping(&self) -> bool {
        self.stop_by.get().is_some()
    }

    pub(super) fn guard(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes every waiter. Taking the lock first means a waiter is either before its check
    /// (and will see the new state) or already waiting (and is woken).
    pub(super) fn notify(&self) {
        drop(self.guard());
        self.changed.notify_all();
    }

    /// Sleeps up to `d`, or until a shutdown is asked for.
    pub(super) fn pause(&self, d: Duration) {
        let g = self.guard();
        let _ = self
            .changed
            .wait_timeout_while(g, d, |_| !self.stopping())
            .map_err(PoisonError::into_inner);
    }
}

/// What the queue carries.
pub(super) enum Msg {
    Line(String),
    /// Wakes an idle thread for shutdown.
    Wake,
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

/// Starts the `pipe-drain` thread on `rx`: lines go to `endpoint`, reconnects wait
/// `backoff` (min, max), and `tail` ends the thread's own report lines.
pub(super) fn spawn(
    shared: Arc<Shared>,
    rx: Receiver<Msg>,
    endpoint: Endpoint,
    backoff: (Duration, Duration),
    tail: Arc<str>,
) -> io::Result<JoinHandle<()>> {
    let worker = Worker {
        shared,
        rx,
        endpoint,
        backoff: Backoff::new(backoff.0, backoff.1),
        tail,
        conn: None,
        pending: Vec::new(),
        buf: Vec::new(),
        reported: 0,
        last_report: Instant::now(),
        ever_connected: false,
        connected_at: Instant::now(),
    };
    thread::Builder::new()
        .name("pipe-drain".into())
        .spawn(move || worker.run())
}

/// The `pipe-drain` thread.
struct Worker {
    shared: Arc<Shared>,
    rx: Receiver<Msg>,
    endpoint: Endpoint,
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
        match self.endpoint.connect() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_backoff_doubles_to_the_cap_and_resets() {
        let mut b = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
        let ms: Vec<u128> = (0..9).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        b.reset();
        assert_eq!(b.next_delay(), BACKOFF_MIN);
    }
}
