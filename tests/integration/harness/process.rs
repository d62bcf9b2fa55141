//! Children the tests start and must not leave behind: every wait has a deadline, and every
//! child is signalled by the PID of a [`Child`] this test process still holds (never by
//! name), so a stray kill cannot hit anyone else's process.

use std::process::{Child, Command, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

/// How often a wait for a child looks again.
const POLL: Duration = Duration::from_millis(10);

/// How long a [`Guarded`] child has to exit after SIGTERM before it is killed.
pub const GUARD_GRACE: Duration = Duration::from_secs(5);

/// Sends `sig` to `pid` (a process this test started).
pub fn send_signal(pid: u32, sig: Signal) {
    let _ = signal::kill(Pid::from_raw(pid as i32), sig);
}

/// Waits for `child` to exit; on timeout sends SIGKILL and returns None.
pub fn reap(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + grace;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Some(st),
            Ok(None) if Instant::now() < deadline => thread::sleep(POLL),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// Stops a daemon: `sig` (unless it already exited: never signal a PID already reaped, it
/// may belong to another process by now), bounded wait, then SIGKILL.
pub fn stop_with(child: &mut Child, sig: Signal, grace: Duration) -> Option<ExitStatus> {
    if let Ok(Some(st)) = child.try_wait() {
        return Some(st);
    }
    send_signal(child.id(), sig);
    reap(child, grace)
}

/// Stops a daemon: SIGTERM, bounded wait, then SIGKILL.
pub fn stop_daemon(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    stop_with(child, Signal::SIGTERM, grace)
}

/// A child stopped ([`stop_daemon`] with [`GUARD_GRACE`]) and reaped when dropped.
pub struct Guarded {
    child: Option<Child>,
}

impl Guarded {
    pub fn spawn(cmd: &mut Command, what: &str) -> Guarded {
        let child = cmd.spawn().unwrap_or_else(|e| panic!("start {what}: {e}"));
        Guarded { child: Some(child) }
    }

    pub fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("child taken")
    }

    pub fn into_child(mut self) -> Child {
        self.child.take().unwrap()
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_daemon(&mut child, GUARD_GRACE);
        }
    }
}
