//! Async reads and writes on the descriptors a client passed in its hello.
//!
//! They are the session's own pipes from sshd (or pipes `pipe-shell` made when it runs by
//! hand on a terminal or a file), so the broker moves bytes straight between sshd's pipes
//! with no process in between. They are switched to non-blocking mode and driven by tokio's
//! reactor; `pipe-shell` never touches them while the broker holds them, and puts them back
//! in blocking mode when it exits.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, OwnedFd};

use bytes::Bytes;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use tokio::io::unix::AsyncFd;

/// Most slices handed to one `writev` (the kernel's `IOV_MAX` is 1024): 64 covers a full
/// pipe buffer of 1 KiB chunks, and keeps the slice list a subscriber rebuilds per write
/// short.
pub const MAX_IOV: usize = 64;

/// Linux's limit on slices in one `writev`.
const IOV_MAX: usize = 1024;

/// A passed pipe or socket, non-blocking and registered with the reactor.
pub struct Fd {
    inner: AsyncFd<OwnedFd>,
}

impl Fd {
    /// Takes over a passed descriptor. Only pipes and sockets can be polled; anything else
    /// (a terminal, a file) is refused here because `pipe-shell` is expected to have put a
    /// pipe in front of it.
    pub fn new(fd: OwnedFd) -> io::Result<Fd> {
        if !crate::proto::pollable(fd.as_fd()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "passed descriptor is not a pipe or socket",
            ));
        }
        let flags = OFlag::from_bits_truncate(fcntl(fd.as_fd(), FcntlArg::F_GETFL)?);
        fcntl(fd.as_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        // SAFETY: `fd` is an open descriptor we own; the AsyncFd takes that ownership, so it
        // stays open and refers to the same file description until the AsyncFd is dropped.
        let inner = unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)?;
        Ok(Fd { inner })
    }

    /// Reads once into `buf`; `Ok(0)` is end of input.
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.inner.readable().await?;
            match guard.try_io(|fd| Ok(nix::unistd::read(fd.get_ref(), buf)?)) {
                Ok(res) => return res,
                Err(_would_block) => continue,
            }
        }
    }

    /// Writes as much of `slices` as the descriptor takes in one `writev`, waiting until it
    /// takes something. Returns the number of bytes written.
    pub async fn write_some(&self, slices: &[Bytes]) -> io::Result<usize> {
        // Beyond the kernel's IOV_MAX writev fails; callers pass far fewer.
        let iov: Vec<IoSlice<'_>> = slices
            .iter()
            .take(IOV_MAX)
            .map(|b| IoSlice::new(b))
            .collect();
        loop {
            let mut guard = self.inner.writable().await?;
            match guard.try_io(|fd| Ok(nix::sys::uio::writev(fd.get_ref(), &iov)?)) {
                Ok(res) => return res,
                Err(_would_block) => continue,
            }
        }
    }

    /// True once the other end of a pipe we write into has gone: the kernel reports
    /// `POLLERR` on a pipe's write end when its last reader closed. sshd closes its read
    /// end when the ssh client disconnects, and sends no signal, so this is how an idle
    /// subscriber's departure is noticed.
    pub fn peer_gone(&self) -> bool {
        let fd = self.inner.get_ref();
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::empty())];
        match poll(&mut fds, PollTimeout::ZERO) {
            Ok(0) | Err(nix::Error::EINTR) => false,
            Ok(_) => fds[0]
                .revents()
                .is_some_and(|r| r.intersects(PollFlags::POLLERR | PollFlags::POLLHUP)),
            Err(_) => true,
        }
    }
}
