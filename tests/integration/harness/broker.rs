//! A private `piped` on a socket in a test's temp dir: started, waited for until it
//! accepts connections, signalled and stopped by PID.

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::bins::piped_bin;
use super::process::{send_signal, stop_with};

/// How long the broker may take to listen, and to stop after a signal.
pub const BROKER_DEADLINE: Duration = Duration::from_secs(10);

/// A running `piped`, stopped (SIGTERM, then SIGKILL after [`BROKER_DEADLINE`]) when
/// dropped.
pub struct Broker {
    child: Option<Child>,
}

impl Broker {
    /// `piped --socket SOCKET --socket-group GROUP --state-dir STATE_DIR`; the caller adds
    /// `--config` (`/dev/null` for the built-in defaults: an installed
    /// /etc/pipe/piped.toml, which the package test writes, is none of a test's business).
    pub fn command(socket: &Path, socket_group: &str, state_dir: &Path) -> Command {
        let mut cmd = Command::new(piped_bin());
        cmd.arg("--socket")
            .arg(socket)
            .args(["--socket-group", socket_group])
            .arg("--state-dir")
            .arg(state_dir);
        cmd
    }

    /// Spawns `cmd` (a `piped` command line with stdout and stderr already directed) and
    /// waits until `socket` accepts connections; panics, showing `log()`, if piped exits
    /// first or is not listening within [`BROKER_DEADLINE`].
    pub fn start(mut cmd: Command, socket: &Path, log: impl Fn() -> String) -> Broker {
        let child = cmd.stdin(Stdio::null()).spawn().expect("spawn piped");
        let mut broker = Broker { child: Some(child) };
        let deadline = Instant::now() + BROKER_DEADLINE;
        loop {
            if let Some(st) = broker.child().try_wait().unwrap() {
                panic!("piped exited during startup: {st:?}\n{}", log());
            }
            if socket.exists() && UnixStream::connect(socket).is_ok() {
                return broker;
            }
            assert!(
                Instant::now() < deadline,
                "piped not listening after {BROKER_DEADLINE:?}\n{}",
                log()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("broker stopped")
    }

    /// Sends `sig` to the broker.
    pub fn signal(&self, sig: Signal) {
        send_signal(self.child.as_ref().expect("broker stopped").id(), sig);
    }

    /// Is the broker still running?
    pub fn alive(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Waits (at most `timeout`) for the broker to exit.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let child = self.child();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = child.try_wait().expect("try_wait piped") {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "piped still running after {timeout:?}"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends `sig` and waits for the exit, at most [`BROKER_DEADLINE`]; then SIGKILL and
    /// None.
    pub fn stop(&mut self, sig: Signal) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        stop_with(&mut child, sig, BROKER_DEADLINE)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if self.child.is_some() && self.stop(Signal::SIGTERM).is_none() {
            eprintln!("piped did not exit within {BROKER_DEADLINE:?} of SIGTERM: killed");
        }
    }
}
