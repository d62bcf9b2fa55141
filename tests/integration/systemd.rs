//! systemd integration of `piped` (issue 5), the way systemd runs it, without systemd as
//! PID 1: `systemd-socket-activate` binds the socket and passes it as fd 3 (`LISTEN_FDS`),
//! and a datagram socket this test binds stands in for systemd's `NOTIFY_SOCKET`.
//! `systemd-socket-activate` comes with Debian's `systemd` package.

use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::*;
use nix::sys::signal::Signal;

const ACTIVATE: &str = "/usr/bin/systemd-socket-activate";

/// What piped tells the service manager, as one message per datagram.
struct Notifications {
    sock: UnixDatagram,
    seen: Vec<String>,
}

impl Notifications {
    fn bind(path: &Path) -> Notifications {
        let sock = UnixDatagram::bind(path).expect("bind the notify socket");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Notifications {
            sock,
            seen: Vec::new(),
        }
    }

    /// Waits (at most 10 s) for a message holding the line `line`; returns that message.
    /// Messages before it are kept in `seen`.
    fn wait_for(&mut self, line: &str, log: impl Fn() -> String) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 4096];
        loop {
            if let Ok(n) = self.sock.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.seen.push(msg.clone());
                if msg.lines().any(|l| l == line) {
                    return msg;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no {line} within 10 s; got {:?}\n{}",
                self.seen,
                log()
            );
        }
    }

    /// Index in `seen` of the first message holding `line`.
    fn position(&self, line: &str) -> Option<usize> {
        self.seen.iter().position(|m| m.lines().any(|l| l == line))
    }
}

struct Activated {
    dir: tempfile::TempDir,
    child: Child,
}

impl Activated {
    fn socket(&self) -> PathBuf {
        self.dir.path().join("piped.sock")
    }

    fn log(&self) -> String {
        let p = fs::read_to_string(self.dir.path().join("piped.log")).unwrap_or_default();
        format!("----- piped stderr -----\n{p}------------------------")
    }

    fn pipe_shell(&self) -> Command {
        let mut c = Command::new(pipe_shell_bin());
        c.env_remove("SSH_ORIGINAL_COMMAND");
        c.arg("--socket").arg(self.socket());
        c
    }

    /// `pipe-shell --socket <socket> REQUEST`, run to the end.
    fn run(&self, request: &str) -> Output {
        let mut c = self.pipe_shell();
        c.arg(request);
        run_command(c, request, b"", SHORT)
    }

    fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "piped still running after {timeout:?}\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Activated {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            eprintln!("{}", self.log());
        }
    }
}

/// `systemd-socket-activate -l <dir>/piped.sock [-E VAR=VALUE…] piped ARGS…`, with the
/// socket created (the activator waits for the first connection before it execs piped,
/// which then keeps its pid).
fn activate(extra: &[&str], env: &[(&str, &str)]) -> Activated {
    assert!(
        Path::new(ACTIVATE).exists(),
        "{ACTIVATE} is missing: install Debian's systemd package (tests/run does)"
    );
    let dir = tempfile::Builder::new()
        .prefix("pipe-systemd.")
        .tempdir()
        .unwrap();
    let log = fs::File::create(dir.path().join("piped.log")).unwrap();
    let mut cmd = Command::new(ACTIVATE);
    cmd.arg("-l").arg(dir.path().join("piped.sock"));
    cmd.args(extra);
    for (k, v) in env {
        cmd.arg("-E").arg(format!("{k}={v}"));
    }
    cmd.arg(piped_bin())
        .args(["--config", "/dev/null", "--service-user", SERVICE_USER])
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let child = cmd.spawn().expect("spawn systemd-socket-activate");
    let a = Activated { dir, child };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !a.socket().exists() {
        assert!(
            Instant::now() < deadline,
            "no socket after 10 s\n{}",
            a.log()
        );
        thread::sleep(Duration::from_millis(10));
    }
    a
}

#[test]
fn socket_activated_piped_notifies_systemd_and_leaves_the_socket_alone() {
    login_user();
    let notify_dir = tempfile::tempdir().unwrap();
    let notify_path = notify_dir.path().join("notify");
    let mut notes = Notifications::bind(&notify_path);
    let notify = notify_path.to_str().unwrap();
    let mut a = activate(
        &[],
        &[("NOTIFY_SOCKET", notify), ("WATCHDOG_USEC", "400000")],
    );
    let mode_before = fs::metadata(a.socket()).unwrap().permissions().mode();

    // The first connection makes the activator exec piped, which serves it from the
    // inherited socket.
    let out = a.run("whoami");
    assert_eq!(
        out.code,
        Some(0),
        "whoami through the inherited socket: {out:?}"
    );
    assert_eq!(out.stdout, b"root\n");
    let ready = notes.wait_for("READY=1", || a.log());
    assert!(
        ready.contains("STATUS=listening on"),
        "READY=1 comes with a status line: {ready:?}"
    );
    // WATCHDOG_USEC=400ms: pings every 200 ms.
    notes.wait_for("WATCHDOG=1", || a.log());

    send_signal(a.child.id(), Signal::SIGHUP);
    let reloading = notes.wait_for("RELOADING=1", || a.log());
    assert!(
        reloading.contains("MONOTONIC_USEC="),
        "RELOADING=1 carries MONOTONIC_USEC: {reloading:?}"
    );
    let at = notes.seen.len();
    notes.wait_for("READY=1", || a.log());
    assert!(
        notes.seen[at..].iter().any(|m| m.contains("READY=1")),
        "READY=1 follows RELOADING=1: {:?}",
        notes.seen
    );
    let out = a.run("whoami");
    assert_eq!(out.code, Some(0), "after the reload: {out:?}");

    send_signal(a.child.id(), Signal::SIGTERM);
    notes.wait_for("STOPPING=1", || a.log());
    let st = a.wait_exit(Duration::from_secs(10));
    assert!(
        st.success(),
        "piped exits 0 on SIGTERM: {st:?}\n{}",
        a.log()
    );
    assert!(
        notes.position("RELOADING=1") < notes.position("STOPPING=1"),
        "{:?}",
        notes.seen
    );

    // The socket unit owns the file: still there, still a socket, mode untouched.
    let meta = fs::metadata(a.socket()).expect("the inherited socket file is kept");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode(), mode_before, "mode left alone");
    assert!(
        !a.log().contains("ERROR"),
        "no errors in the log:\n{}",
        a.log()
    );
}

#[test]
fn a_passed_socket_that_is_not_a_unix_stream_listener_is_refused() {
    // `--datagram`: a socket unit with ListenDatagram= by mistake.
    let mut a = activate(&["--datagram"], &[]);
    // A datagram socket has no connections: the activator execs piped on the first
    // datagram.
    let probe = UnixDatagram::unbound().unwrap();
    probe.send_to(b"x", a.socket()).unwrap();
    let st = a.wait_exit(Duration::from_secs(10));
    assert!(!st.success(), "piped must refuse it: {st:?}");
    let log = a.log();
    assert!(
        log.contains("piped: the socket systemd passed is not a listening Unix stream socket"),
        "{log}"
    );
}

#[test]
fn without_notify_socket_piped_still_serves_an_inherited_socket() {
    login_user();
    let mut a = activate(&[], &[]);
    let out = a.run("whoami");
    assert_eq!(out.code, Some(0), "{out:?}");
    send_signal(a.child.id(), Signal::SIGTERM);
    assert!(a.wait_exit(Duration::from_secs(10)).success());
    assert!(a.socket().exists(), "the socket unit's file is kept");
}
