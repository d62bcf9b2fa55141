//! The wire protocol between `pipe-shell` and `piped`.
//!
//! One Unix stream connection per ssh session. Every message is a frame: a 4-byte big-endian
//! length, then that many bytes of JSON encoding one of two closed enums. The client sends
//! one [`Hello`] (with the session's stdin and stdout descriptors attached as `SCM_RIGHTS`
//! ancillary data on its first byte) and then only reads; the broker sends [`ToClient`]
//! frames and ends with exactly one [`ToClient::Exit`]. Lengths are checked against
//! [`MAX_FRAME`] before anything is allocated.
//!
//! The framing functions are sans-IO ([`encode`], [`decode`]); the socket helpers over them
//! are thin: the blocking [`client`] (for `pipe-shell`, which runs no async runtime, and the
//! tracing layer's thread) and a tokio side for the broker, below.

use std::io::{self, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use nix::sys::stat::{SFlag, fstat};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use thiserror::Error;

use crate::exit::Exit;

pub mod client;

/// Largest control frame (pipe(5), CAPS: fixed by the protocol). A hello is a rendered
/// request (at most 1 KiB) plus a user name and a key fingerprint; 4 KiB leaves room without
/// letting a peer make the broker allocate much before it is authenticated.
pub const MAX_FRAME: usize = 4096;

/// How long the broker waits for a complete hello: a local client sends it in microseconds,
/// so anything slower is broken or hostile and must not hold a slot. The default of
/// `hello_deadline` in piped.toml (pipe(5), FLOW CONTROL; piped(8) `--hello-deadline`).
pub const HELLO_DEADLINE: Duration = Duration::from_secs(2);

/// Bumped on any incompatible change; the broker refuses other versions with a clear message
/// rather than misreading frames (matters during a package upgrade, when an old
/// `pipe-shell` may meet a new broker).
pub const PROTOCOL_VERSION: u32 = 1;

/// Descriptors a client passes with its hello: the session's stdin and stdout.
pub const PASSED_FDS: usize = 2;

/// Length prefix size.
const HEADER: usize = 4;

/// The first and only frame a client sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    pub version: u32,
    /// The request in its canonical rendering; the broker parses it again.
    pub request: String,
    /// An identity asserted by the admin-written forced command (`--user`); honoured only
    /// from the service uid.
    pub user: Option<String>,
    /// The key fingerprint the admin wrote next to `--user`.
    pub key: Option<String>,
}

/// What the broker tells a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case", deny_unknown_fields)]
pub enum ToClient {
    /// A status line for stderr ("waiting for a subscriber", joins and leaves). Hidden by
    /// `-c`/`-q`.
    Status { line: String },
    /// The broker chose a random topic name for `pub`/`pipe` without a topic.
    Topic { name: String },
    /// The session is over: exit with this code, printing `message` (one line, without the
    /// `pipe: ` prefix) if there is one.
    Exit { code: Exit, message: Option<String> },
}

#[derive(Debug, Error)]
pub enum ProtoError {
    #[error("frame of {0} bytes is over the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    #[error("malformed frame: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("connection closed")]
    Closed,
    #[error("bytes after the hello")]
    Trailing,
    #[error("expected {expected} descriptors, got {got}")]
    Descriptors { expected: usize, got: usize },
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl From<nix::Error> for ProtoError {
    fn from(e: nix::Error) -> Self {
        ProtoError::Io(io::Error::from(e))
    }
}

/// Encodes one frame.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, ProtoError> {
    let body = serde_json::to_vec(msg)?;
    if body.len() > MAX_FRAME {
        return Err(ProtoError::TooLarge(body.len()));
    }
    let mut out = Vec::with_capacity(HEADER + body.len());
    // The cast cannot truncate: body.len() <= MAX_FRAME.
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes the frame at the start of `buf`: `Ok(None)` if more bytes are needed, else the
/// message and how many bytes it used. An over-long length is refused from the header alone.
pub fn decode<T: DeserializeOwned>(buf: &[u8]) -> Result<Option<(T, usize)>, ProtoError> {
    let Some(header) = buf.get(..HEADER) else {
        return Ok(None);
    };
    let mut len = [0u8; HEADER];
    len.copy_from_slice(header);
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(ProtoError::TooLarge(len));
    }
    let Some(body) = buf.get(HEADER..HEADER + len) else {
        return Ok(None);
    };
    Ok(Some((serde_json::from_slice(body)?, HEADER + len)))
}

/// Whether a descriptor can be handed to the broker as it is: only pipes and sockets can be
/// polled; a terminal or a file gets a pipe put in front of it by `pipe-shell`.
pub fn pollable(fd: BorrowedFd<'_>) -> bool {
    fstat(fd).is_ok_and(|st| {
        let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        kind == SFlag::S_IFIFO || kind == SFlag::S_IFSOCK
    })
}

/// Broker side: reads the hello and the descriptors that came with it. Exactly `want`
/// descriptors must arrive with the frame; any others are closed (they are owned here as
/// soon as they are received, so nothing leaks on an error path). The caller applies
/// [`HELLO_DEADLINE`].
pub async fn recv_hello(
    stream: &tokio::net::UnixStream,
    want: usize,
) -> Result<(Hello, Vec<OwnedFd>), ProtoError> {
    let mut buf = Vec::with_capacity(256);
    let mut fds: Vec<OwnedFd> = Vec::new();
    loop {
        if let Some((hello, used)) = decode::<Hello>(&buf)? {
            if used != buf.len() {
                // The client sends nothing after its hello; extra bytes mean a confused or
                // hostile peer.
                return Err(ProtoError::Trailing);
            }
            if fds.len() != want {
                return Err(ProtoError::Descriptors {
                    expected: want,
                    got: fds.len(),
                });
            }
            return Ok((hello, fds));
        }
        stream.readable().await?;
        let mut chunk = [0u8; 1024];
        let space = (HEADER + MAX_FRAME)
            .saturating_sub(buf.len())
            .min(chunk.len());
        let had = fds.len();
        let res = stream.try_io(tokio::io::Interest::READABLE, || {
            recv_with_fds(stream.as_raw_fd(), &mut chunk[..space], &mut fds)
        });
        // Descriptors come with the first byte and nowhere else; checking at once keeps a
        // peer from piling up descriptors in the broker while it dribbles a frame.
        if fds.len() > want || (fds.len() > had && !buf.is_empty()) {
            return Err(ProtoError::Descriptors {
                expected: want,
                got: fds.len(),
            });
        }
        match res {
            Ok(0) => return Err(ProtoError::Closed),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Most descriptors accepted in one message: a client passes two (stdin, stdout); room for
/// a few more means a misbehaving client's extras are received, then closed, not left
/// in flight.
const MAX_FDS: usize = 4;

fn recv_with_fds(fd: RawFd, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
    let mut cmsg = nix::cmsg_space!([RawFd; MAX_FDS]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(fd, &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC)?;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raw) = c {
            for r in raw {
                // SAFETY: the kernel just installed `r` in our table for this message; nothing
                // else owns it, and wrapping it at once makes sure it is closed exactly once.
                fds.push(unsafe { OwnedFd::from_raw_fd(r) });
            }
        }
    }
    if msg.flags.contains(MsgFlags::MSG_CTRUNC) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "too many descriptors",
        ));
    }
    Ok(msg.bytes)
}

/// Broker side: writes one frame.
pub async fn write_frame<W: tokio::io::AsyncWrite + Unpin>(
    stream: &mut W,
    msg: &ToClient,
) -> Result<(), ProtoError> {
    use tokio::io::AsyncWriteExt;
    stream.write_all(&encode(msg)?).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_need_whole_input() {
        let msg = ToClient::Exit {
            code: Exit::Dropped,
            message: Some("dropped: subscriber stalled".into()),
        };
        let bytes = encode(&msg).unwrap();
        for cut in 0..bytes.len() {
            assert!(decode::<ToClient>(&bytes[..cut]).unwrap().is_none());
        }
        let (back, used) = decode::<ToClient>(&bytes).unwrap().unwrap();
        assert_eq!((back, used), (msg, bytes.len()));
    }

    #[test]
    fn oversized_length_is_refused_from_the_header() {
        let header = ((MAX_FRAME + 1) as u32).to_be_bytes();
        assert!(matches!(
            decode::<Hello>(&header),
            Err(ProtoError::TooLarge(_))
        ));
    }

    #[test]
    fn unknown_fields_and_variants_are_refused() {
        let body = br#"{"t":"exec","cmd":"sh"}"#;
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(body);
        assert!(decode::<ToClient>(&frame).is_err());
        let body = br#"{"version":1,"request":"ls","user":null,"key":null,"admin":true}"#;
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(body);
        assert!(decode::<Hello>(&frame).is_err());
    }
}
