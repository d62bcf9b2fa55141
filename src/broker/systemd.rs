//! systemd integration (sd_notify(3), sd_listen_fds(3)), through the `sd-notify` crate.
//!
//! - **Socket activation**: `piped.socket` owns `/run/pipe/piped.sock` and passes it as
//!   fd 3 (`LISTEN_FDS`, `LISTEN_PID`). The socket then outlives piped's restarts, and
//!   connections queue in its backlog while piped is down, so piped must leave the
//!   socket file alone: no mode or owner change, no removal at exit.
//! - **Readiness**: `READY=1` once piped listens and has loaded its grants; `RELOADING=1`
//!   (with `MONOTONIC_USEC`) and `READY=1` again around a SIGHUP reload (systemd 252, the
//!   Debian 12 one, has no `Type=notify-reload`: the unit's `ExecReload` sends SIGHUP);
//!   `STOPPING=1` when shutdown starts; `STATUS=` one-liners for `systemctl status`.
//! - **Watchdog**: `WATCHDOG=1` at half of `WATCHDOG_USEC`, sent from the broker's accept
//!   loop itself so a wedged loop stops the pings and systemd restarts piped.
//!
//! Without `NOTIFY_SOCKET` (run by hand, tests) every notification is a no-op, and without
//! `LISTEN_FDS` piped binds its own socket.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::socket::{AddressFamily, SockType, SockaddrLike, UnixAddr, getsockname, sockopt};
use sd_notify::NotifyState;
use thiserror::Error;
use tracing::debug;

#[derive(Debug, Error)]
pub enum ActivationError {
    #[error("systemd passed {0} sockets; piped takes exactly one")]
    Count(usize),
    #[error("the socket systemd passed is not a listening Unix stream socket")]
    NotUnixStream,
    #[error("reading the sockets systemd passed: {0}")]
    Env(io::Error),
}

/// Guards against adopting the passed descriptor twice (two owners would close it twice).
static TAKEN: AtomicBool = AtomicBool::new(false);

/// The listening socket systemd passed, if piped was socket-activated, with its path.
/// Checks it is what the socket unit should give (one listening Unix stream socket) rather
/// than serving whatever sits at fd 3.
pub fn inherited_listener() -> Result<Option<(UnixListener, Option<PathBuf>)>, ActivationError> {
    let fds: Vec<_> = sd_notify::listen_fds()
        .map_err(ActivationError::Env)?
        .collect();
    let fd = match fds.as_slice() {
        [] => return Ok(None),
        [fd] => *fd,
        more => return Err(ActivationError::Count(more.len())),
    };
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Ok(None);
    }
    // SAFETY: systemd passed this descriptor to this process (LISTEN_PID matched) for it
    // to own; `TAKEN` makes this the only place that takes ownership of it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let stream = nix::sys::socket::getsockopt(&owned, sockopt::SockType)
        .is_ok_and(|t| t == SockType::Stream);
    let listening = nix::sys::socket::getsockopt(&owned, sockopt::AcceptConn).unwrap_or(false);
    let addr = getsockname::<UnixAddr>(std::os::fd::AsRawFd::as_raw_fd(&owned)).ok();
    let unix = addr
        .as_ref()
        .is_some_and(|a| a.family() == Some(AddressFamily::Unix));
    if !(stream && listening && unix) {
        return Err(ActivationError::NotUnixStream);
    }
    let path = addr.and_then(|a| a.path().map(PathBuf::from));
    let listener = UnixListener::from(owned);
    listener
        .set_nonblocking(true)
        .map_err(ActivationError::Env)?;
    Ok(Some((listener, path)))
}

/// Sends states to the service manager; nothing without `NOTIFY_SOCKET`. A failure is
/// logged, never fatal: the broker serves its clients whether or not systemd hears it.
pub fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        debug!(error = %e, "sd_notify failed");
    }
}

/// Started and ready: listening, grants loaded.
pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A reload starts. `MONOTONIC_USEC` lets newer systemd (253+) match the reload to this
/// message; 252 ignores it.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => notify(&[NotifyState::Reloading, now]),
        Err(_) => notify(&[NotifyState::Reloading]),
    }
}

pub fn stopping(status: &str) {
    notify(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

pub fn status(status: &str) {
    notify(&[NotifyState::Status(status)]);
}

pub fn watchdog() {
    notify(&[NotifyState::Watchdog]);
}

/// How often to send `WATCHDOG=1`: half the interval systemd set (`WatchdogSec=`), as
/// sd_watchdog_enabled(3) advises, so one late tick does not trip it. `None` when the
/// service has no watchdog.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled()
        .filter(|d| !d.is_zero())
        .map(|d| d / 2)
}
