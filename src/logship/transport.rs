//! Where the lines go: the broker socket (connect and hello in [`connect_broker`]), a child
//! process reading them on its stdin (`ssh` or any command), or a closure. The rules are in
//! the [`crate::logship`] docs, "Transports".

use std::ffi::OsString;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockType, send, socketpair};

use crate::proto::client::Client;
use crate::proto::{HELLO_DEADLINE, Hello, PROTOCOL_VERSION, ToClient};

/// Send timeout on the data socket: a write into a stalled transport wakes this often to
/// look at the connection and at a pending shutdown.
const WRITE_TICK: Duration = Duration::from_millis(100);

/// Poll interval while waiting for a child to exit at shutdown.
const CHILD_POLL: Duration = Duration::from_millis(10);

/// A [`crate::logship::Builder::sink`] closure.
pub(super) type SinkFn = Box<dyn FnMut(&[u8]) + Send>;

/// How the thread connects: the transport the builder chose, resolved (the request
/// rendered, the ssh command line built).
pub(super) enum Endpoint {
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

impl Endpoint {
    pub(super) fn connect(&mut self) -> io::Result<Conn> {
        match self {
            Endpoint::Socket { path, request } => connect_broker(path, request),
            Endpoint::Command { program, args } => {
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
            Endpoint::Sink(f) => f
                .take()
                .map(Conn::Sink)
                .ok_or_else(|| io::Error::other("sink already taken")),
        }
    }
}

/// Connects to the broker socket at `path` and says hello with `request`, passing one end of
/// a fresh socket pair as both stdin and stdout; the session's lines go into the other end.
/// The protocol itself is the one broker client's ([`Client`]), which pipe-shell uses too.
fn connect_broker(path: &Path, request: &str) -> io::Result<Conn> {
    let control = Client::connect(path)?;
    control.set_write_timeout(Some(HELLO_DEADLINE))?;
    let (ours, theirs) = data_pair()?;
    let hello = Hello {
        version: PROTOCOL_VERSION,
        request: request.to_string(),
        user: None,
        key: None,
    };
    // One end as both stdin (the broker reads the lines) and stdout (it watches
    // it to notice us leaving); our copy closes when `theirs` drops.
    let fd = theirs.as_raw_fd();
    control.hello(&hello, &[fd, fd]).map_err(io::Error::other)?;
    drop(theirs);
    Ok(Conn::Broker {
        control,
        data: ours,
        ended: None,
    })
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
pub(super) enum Conn {
    Broker {
        control: Client,
        data: UnixStream,
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
    pub(super) fn alive(&mut self) -> bool {
        match self {
            Conn::Broker { control, ended, .. } => loop {
                match control.try_recv() {
                    Ok(None) => return true,
                    Ok(Some(ToClient::Exit { code, message })) => {
                        if code != crate::exit::Exit::Ok {
                            let why = message.unwrap_or_default();
                            *ended = Some(format!("exit {}: {why}", code.code()));
                        }
                        return false;
                    }
                    Ok(Some(_)) => {}
                    Err(_) => return false,
                }
            },
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
    pub(super) fn write(
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
    pub(super) fn close(self, deadline: Instant) {
        match self {
            Conn::Broker {
                mut control, data, ..
            } => {
                drop(data);
                loop {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() || control.set_read_timeout(Some(left)).is_err() {
                        break;
                    }
                    match control.recv() {
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
