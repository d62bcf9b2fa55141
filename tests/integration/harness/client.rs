//! Commands a test runs and watches: stdout and stderr collected (or checked against the
//! expected bytes) by background threads, stdin fed from a thread, every wait with a
//! deadline, the child killed (SIGKILL, by PID) on drop.

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::process::send_signal;

/// Everything a finished command produced.
pub struct Output {
    pub status: ExitStatus,
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
    pub elapsed: Duration,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = &self.stdout[..self.stdout.len().min(200)];
        f.debug_struct("Output")
            .field("status", &self.status)
            .field("stdout_len", &self.stdout.len())
            .field("stdout", &String::from_utf8_lossy(shown))
            .field("stderr", &self.stderr)
            .field("elapsed", &self.elapsed)
            .finish()
    }
}

impl Output {
    /// The stderr lines.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr.lines().collect()
    }
}

/// Starts any command with stdio piped, stdout and stderr collected in the background.
pub fn spawn_command(cmd: Command, name: &str) -> Client {
    Client::spawn(cmd, name.to_string(), StdoutMode::Keep)
}

/// Joins a helper thread, panicking if it is not done by `timeout`.
pub fn join_within<T>(h: JoinHandle<T>, timeout: Duration, what: &str) -> T {
    let deadline = Instant::now() + timeout;
    while !h.is_finished() {
        assert!(
            Instant::now() < deadline,
            "{what}: not finished after {timeout:?}"
        );
        thread::sleep(Duration::from_millis(10));
    }
    h.join()
        .unwrap_or_else(|_| panic!("{what}: thread panicked"))
}

/// Runs `cmd` with `stdin` as its input; panics (after killing it) if not done by `timeout`.
pub fn run_command(cmd: Command, name: &str, stdin: &[u8], timeout: Duration) -> Output {
    let mut c = Client::spawn(cmd, name.to_string(), StdoutMode::Keep);
    if stdin.is_empty() {
        c.close_stdin();
    } else {
        c.feed(Arc::from(stdin));
    }
    c.finish(timeout)
}

#[derive(Default)]
struct CollectState {
    buf: Vec<u8>,
    len: u64,
    eof: bool,
    /// Verify mode: first offset that differs from the expected bytes.
    mismatch: Option<u64>,
}

/// Background reader of one pipe.
#[derive(Clone)]
pub struct Collector {
    state: Arc<(Mutex<CollectState>, Condvar)>,
}

/// What [`Client::spawn`] does with the child's stdout.
pub enum StdoutMode {
    Keep,
    Verify(Arc<[u8]>),
    Raw,
}

impl Collector {
    fn start(mut r: impl Read + Send + 'static, expected: Option<Arc<[u8]>>) -> Collector {
        let c = Collector {
            state: Arc::new((Mutex::new(CollectState::default()), Condvar::new())),
        };
        let state = c.state.clone();
        thread::spawn(move || {
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                let n = match r.read(&mut chunk) {
                    Ok(0) | Err(_) => 0,
                    Ok(n) => n,
                };
                let (m, cv) = &*state;
                let mut s = m.lock().unwrap();
                if n == 0 {
                    s.eof = true;
                    cv.notify_all();
                    return;
                }
                let got = &chunk[..n];
                match &expected {
                    None => s.buf.extend_from_slice(got),
                    Some(exp) => {
                        if s.mismatch.is_none() {
                            let at = s.len as usize;
                            let want = exp.get(at..(at + n).min(exp.len())).unwrap_or(&[]);
                            if want != got {
                                let off = want
                                    .iter()
                                    .zip(got)
                                    .position(|(a, b)| a != b)
                                    .unwrap_or(want.len());
                                s.mismatch = Some((at + off) as u64);
                            }
                        }
                    }
                }
                s.len += n as u64;
                cv.notify_all();
            }
        });
        c
    }

    /// Bytes read so far (Keep mode).
    pub fn bytes(&self) -> Vec<u8> {
        self.state.0.lock().unwrap().buf.clone()
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }
    pub fn len(&self) -> u64 {
        self.state.0.lock().unwrap().len
    }
    /// Verify mode: offset of the first wrong byte.
    pub fn mismatch(&self) -> Option<u64> {
        self.state.0.lock().unwrap().mismatch
    }

    /// Waits until `pred(bytes_so_far, eof)` holds; false on timeout.
    pub fn wait(&self, timeout: Duration, pred: impl Fn(&[u8], u64, bool) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let (m, cv) = &*self.state;
        let mut s = m.lock().unwrap();
        loop {
            if pred(&s.buf, s.len, s.eof) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            s = cv.wait_timeout(s, deadline - now).unwrap().0;
        }
    }

    /// Waits until at least `n` bytes arrived (or EOF); true if `n` arrived.
    pub fn wait_len(&self, n: u64, timeout: Duration) -> bool {
        self.wait(timeout, |_, len, eof| len >= n || eof);
        self.len() >= n
    }

    /// Waits until the kept bytes contain `needle`; false on timeout or EOF without it.
    pub fn wait_contains(&self, needle: &[u8], timeout: Duration) -> bool {
        let has = |b: &[u8]| b.windows(needle.len()).any(|w| w == needle);
        self.wait(timeout, |b, _, eof| has(b) || eof);
        has(&self.bytes())
    }

    pub fn wait_eof(&self, timeout: Duration) -> bool {
        self.wait(timeout, |_, _, eof| eof)
    }
}

/// A running command (usually `ssh … REQUEST`); killed (SIGKILL, by PID) on drop.
pub struct Client {
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
    pub out: Option<Collector>,
    pub err: Collector,
    feeder: Option<JoinHandle<std::io::Result<Instant>>>,
    status: Option<ExitStatus>,
    started: Instant,
}

impl Client {
    pub fn spawn(mut cmd: Command, name: String, mode: StdoutMode) -> Client {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let err = Collector::start(child.stderr.take().unwrap(), None);
        let (stdout, out) = match mode {
            StdoutMode::Raw => (Some(stdout), None),
            StdoutMode::Keep => (None, Some(Collector::start(stdout, None))),
            StdoutMode::Verify(e) => (None, Some(Collector::start(stdout, Some(e)))),
        };
        Client {
            name,
            child,
            stdin,
            stdout,
            out,
            err,
            feeder: None,
            status: None,
            started: Instant::now(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: Signal) {
        if self.status.is_none() {
            send_signal(self.pid(), sig);
        }
    }

    /// The raw stdout (only for [`Harness::spawn_raw`]).
    pub fn take_stdout(&mut self) -> ChildStdout {
        self.stdout
            .take()
            .expect("stdout already taken or collected")
    }

    /// Writes to stdin now (small writes only: the pipe must not be full).
    pub fn write(&mut self, data: &[u8]) {
        let w = self.stdin.as_mut().expect("stdin closed");
        w.write_all(data)
            .unwrap_or_else(|e| panic!("write to {}: {e}", self.name));
        w.flush().unwrap();
    }

    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }

    /// Writes `data` to stdin from a thread, then closes stdin. [`feed_done`](Self::feed_done)
    /// tells when the last byte was accepted.
    pub fn feed(&mut self, data: Arc<[u8]>) {
        let mut w = self.stdin.take().expect("stdin closed");
        self.feeder = Some(thread::spawn(move || {
            w.write_all(&data)?;
            let t = Instant::now();
            drop(w);
            Ok(t)
        }));
    }

    /// Writes an endless stream to stdin from a thread until `stop` is set or the pipe breaks.
    pub fn feed_forever(&mut self, stop: Arc<AtomicBool>) {
        let mut w = self.stdin.take().expect("stdin closed");
        self.feeder = Some(thread::spawn(move || {
            let chunk: Vec<u8> = (0..64 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
            while !stop.load(Ordering::Relaxed) {
                w.write_all(&chunk)?;
            }
            Ok(Instant::now())
        }));
    }

    /// Waits for the feeder thread; returns when it finished writing (or its error).
    pub fn feed_done(&mut self, timeout: Duration) -> std::io::Result<Instant> {
        let h = self.feeder.take().expect("no feeder");
        let deadline = Instant::now() + timeout;
        while !h.is_finished() {
            assert!(
                Instant::now() < deadline,
                "{}: writing stdin not finished after {timeout:?}",
                self.name
            );
            thread::sleep(Duration::from_millis(10));
        }
        h.join().expect("feeder thread panicked")
    }

    /// The exit status if it has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait");
        }
        self.status
    }

    /// Waits for the exit (panics after killing it on timeout, showing its stderr).
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_status() {
                return st;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "{}: still running after {timeout:?} (killed); stdout so far: {} bytes; \
                     stderr: {:?}",
                    self.name,
                    self.out.as_ref().map(|o| o.len()).unwrap_or(0),
                    self.err.text()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the exit and for stdout/stderr EOF; returns everything.
    pub fn finish(&mut self, timeout: Duration) -> Output {
        let status = self.wait(timeout);
        let elapsed = self.started.elapsed();
        let grace = Duration::from_secs(5);
        assert!(
            self.err.wait_eof(grace),
            "{}: stderr not closed after exit",
            self.name
        );
        if let Some(o) = &self.out {
            assert!(
                o.wait_eof(grace),
                "{}: stdout not closed after exit",
                self.name
            );
        }
        Output {
            status,
            code: status.code(),
            stdout: self.out.as_ref().map(|o| o.bytes()).unwrap_or_default(),
            stderr: self.err.text(),
            elapsed,
        }
    }

    pub fn stderr(&self) -> String {
        self.err.text()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if self.status.is_none() {
            if let Ok(None) = self.child.try_wait() {
                let _ = self.child.kill();
            }
            let _ = self.child.wait();
        }
        if let Some(h) = self.feeder.take() {
            // The child is gone, so a blocked write fails with EPIPE and the thread ends.
            drop(h);
        }
    }
}

/// Single-quotes a word for `sh`.
pub fn sh_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// `len` pseudo-random bytes (xorshift64*, fixed seed): reproducible, incompressible enough.
pub fn random_bytes(len: usize, seed: u64) -> Arc<[u8]> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        v.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    v.truncate(len);
    Arc::from(v)
}

pub const MIB: usize = 1024 * 1024;

/// Asserts the "one error line" rule of pipe(1), EXIT STATUS: exactly one stderr line,
/// starting with `pipe: `.
#[track_caller]
pub fn assert_one_pipe_line(out: &Output, what: &str) {
    let lines = out.stderr_lines();
    assert!(
        lines.len() == 1 && lines[0].starts_with("pipe: "),
        "{what}: stderr must be exactly one line starting with `pipe: `; got {out:?}"
    );
}
