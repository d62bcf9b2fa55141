//! The client side of the broker protocol, blocking and runtime-free: connect to the
//! socket, send the hello with the passed descriptors, read the status frames and the final
//! exit frame. `pipe-shell` uses it for every session; the tracing layer's worker thread
//! (which must never block the service) drives the same connection with timeouts and
//! [`Client::try_recv`]; a bridge from another transport would be one more caller.

use std::io::{self, IoSlice, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{ControlMessage, MsgFlags, recv, sendmsg};

use super::{Hello, ProtoError, ToClient, decode, encode};

/// Bytes read from the socket at a time: a status frame is a short line, so one read
/// usually holds a whole frame, and the final frame is at most [`super::MAX_FRAME`].
const READ_CHUNK: usize = 1024;

/// One connection to the broker, for one session: a hello out, then frames in until
/// [`ToClient::Exit`].
#[derive(Debug)]
pub struct Client {
    sock: UnixStream,
    /// Bytes of frames received but not yet complete.
    buf: Vec<u8>,
}

impl Client {
    /// Connects to the broker's socket.
    pub fn connect(path: &Path) -> io::Result<Client> {
        Ok(Client::from_stream(UnixStream::connect(path)?))
    }

    /// A client over a connection already made.
    pub fn from_stream(sock: UnixStream) -> Client {
        Client {
            sock,
            buf: Vec::new(),
        }
    }

    /// Bounds each write, so a broker that does not read cannot hold the hello for ever
    /// (`None`: no bound, as for a socket just connected).
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.sock.set_write_timeout(timeout)
    }

    /// Bounds each wait of [`recv`](Self::recv) (`None`: no bound).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.sock.set_read_timeout(timeout)
    }

    /// Sends the hello, with `fds` (the session's input and output, in that order; the same
    /// descriptor twice for a socket that is both) passed along. The broker takes its own
    /// copies: the caller may close its ones once this returns.
    pub fn hello(&self, hello: &Hello, fds: &[RawFd]) -> Result<(), ProtoError> {
        send_hello(&self.sock, hello, fds)
    }

    /// Blocks until the next frame. [`ProtoError::Closed`] if the broker hung up first; a
    /// read timeout ends the wait with [`ProtoError::Io`] (kind `WouldBlock`).
    pub fn recv(&mut self) -> Result<ToClient, ProtoError> {
        read_frame(&mut self.sock, &mut self.buf)
    }

    /// The next frame if it has fully arrived, `None` if not yet; never waits. For a caller
    /// that polls the session between other work. [`ProtoError::Closed`] if the broker hung
    /// up.
    pub fn try_recv(&mut self) -> Result<Option<ToClient>, ProtoError> {
        if let Some((msg, used)) = decode(&self.buf)? {
            self.buf.drain(..used);
            return Ok(Some(msg));
        }
        let mut chunk = [0u8; READ_CHUNK];
        match recv(self.sock.as_raw_fd(), &mut chunk, MsgFlags::MSG_DONTWAIT) {
            Err(Errno::EAGAIN | Errno::EINTR) => return Ok(None),
            Err(e) => return Err(e.into()),
            Ok(0) => return Err(ProtoError::Closed),
            Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
        }
        match decode(&self.buf)? {
            Some((msg, used)) => {
                self.buf.drain(..used);
                Ok(Some(msg))
            }
            None => Ok(None),
        }
    }
}

/// Sends the hello with `fds` attached to its first byte.
fn send_hello(sock: &UnixStream, hello: &Hello, fds: &[RawFd]) -> Result<(), ProtoError> {
    let frame = encode(hello)?;
    let rights = [ControlMessage::ScmRights(fds)];
    let mut sent = sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(&frame)],
        &rights,
        MsgFlags::MSG_NOSIGNAL,
        None,
    )?;
    // The descriptors went with the first byte; the rest of a short send goes plainly.
    while sent < frame.len() {
        let n = sendmsg::<()>(
            sock.as_raw_fd(),
            &[IoSlice::new(&frame[sent..])],
            &[],
            MsgFlags::MSG_NOSIGNAL,
            None,
        )?;
        sent += n;
    }
    Ok(())
}

/// Blocks until one complete frame has arrived (bounded by the socket's read timeout);
/// `buf` keeps the bytes of frames not yet complete between calls.
fn read_frame(sock: &mut UnixStream, buf: &mut Vec<u8>) -> Result<ToClient, ProtoError> {
    loop {
        if let Some((msg, used)) = decode(buf)? {
            buf.drain(..used);
            return Ok(msg);
        }
        let mut chunk = [0u8; READ_CHUNK];
        let n = match sock.read(&mut chunk) {
            Ok(0) => return Err(ProtoError::Closed),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::Exit;
    use std::io::Write;

    #[test]
    fn frames_are_read_whole_with_and_without_waiting() {
        let (ours, mut broker) = UnixStream::pair().unwrap();
        let mut client = Client::from_stream(ours);
        assert!(matches!(client.try_recv(), Ok(None)), "nothing yet");
        let status = encode(&ToClient::Status { line: "hi".into() }).unwrap();
        let exit = encode(&ToClient::Exit {
            code: Exit::Denied,
            message: None,
        })
        .unwrap();
        broker.write_all(&status[..3]).unwrap();
        assert!(matches!(client.try_recv(), Ok(None)), "a partial frame");
        broker.write_all(&status[3..]).unwrap();
        broker.write_all(&exit).unwrap();
        assert_eq!(
            client.try_recv().unwrap(),
            Some(ToClient::Status { line: "hi".into() })
        );
        assert_eq!(
            client.recv().unwrap(),
            ToClient::Exit {
                code: Exit::Denied,
                message: None
            }
        );
        drop(broker);
        assert!(matches!(client.try_recv(), Err(ProtoError::Closed)));
        assert!(matches!(client.recv(), Err(ProtoError::Closed)));
    }
}
