//! The session's stdin and stdout as handed to the broker. sshd gives a forced command
//! pipes, which go over as they are; a terminal or a file (pipe-shell run by hand) cannot
//! be polled by the broker, so a pipe is put in front of it with a thread copying between
//! the two.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::thread::JoinHandle;

use nix::fcntl::{FcntlArg, OFlag, fcntl};

use crate::proto::pollable;

/// The two descriptors handed to the broker. sshd gives a forced command pipes, which go
/// over as they are. A terminal or a file (pipe-shell run by hand) cannot be polled, so a
/// pipe is put in front of it with a thread copying between the two.
pub(super) struct Stdio {
    input: Side,
    output: Side,
}

enum Side {
    /// The process's own descriptor, passed as is; its original flags are restored at exit
    /// (the broker makes the shared file description non-blocking).
    Direct { fd: i32, flags: Option<OFlag> },
    /// Our end of a pipe (kept only until the hello is sent) and the copying thread.
    Bridged {
        passed: OwnedFd,
        copier: JoinHandle<()>,
    },
}

impl Side {
    fn raw(&self) -> i32 {
        match self {
            Side::Direct { fd, .. } => *fd,
            Side::Bridged { passed, .. } => passed.as_raw_fd(),
        }
    }
}

impl Stdio {
    pub(super) fn prepare() -> io::Result<Stdio> {
        let stdin = io::stdin();
        let stdout = io::stdout();
        let input = if pollable(stdin.as_fd()) {
            Side::Direct {
                fd: 0,
                flags: fcntl(stdin.as_fd(), FcntlArg::F_GETFL)
                    .ok()
                    .map(OFlag::from_bits_truncate),
            }
        } else {
            let (read, write) = nix::unistd::pipe()?;
            let copier = std::thread::spawn(move || {
                let mut to = File::from(write);
                let _ = copy_plainly(&mut io::stdin().lock(), &mut to);
            });
            Side::Bridged {
                passed: read,
                copier,
            }
        };
        let output = if pollable(stdout.as_fd()) {
            Side::Direct {
                fd: 1,
                flags: fcntl(stdout.as_fd(), FcntlArg::F_GETFL)
                    .ok()
                    .map(OFlag::from_bits_truncate),
            }
        } else {
            let (read, write) = nix::unistd::pipe()?;
            let copier = std::thread::spawn(move || {
                let mut from = File::from(read);
                let mut out = io::stdout().lock();
                let _ = copy_plainly(&mut from, &mut out);
                let _ = out.flush();
            });
            Side::Bridged {
                passed: write,
                copier,
            }
        };
        Ok(Stdio { input, output })
    }

    pub(super) fn raw(&self) -> [i32; 2] {
        [self.input.raw(), self.output.raw()]
    }

    /// After the hello: close our copies of bridged pipe ends so the broker's copies are
    /// the only ones (the output copier sees end of file when the broker closes its end).
    pub(super) fn handed_over(self) -> Handed {
        let keep = |side: Side| match side {
            Side::Direct { fd, flags } => (Some((fd, flags)), None),
            Side::Bridged { passed, copier } => {
                drop(passed);
                (None, Some(copier))
            }
        };
        let (direct_in, _input_copier) = keep(self.input);
        let (direct_out, output_copier) = keep(self.output);
        Handed {
            direct: [direct_in, direct_out],
            output_copier,
        }
    }
}

/// Bytes a copying thread moves per read: a pipe's default capacity, so one read takes
/// all a full pipe holds.
const COPY_BUFFER: usize = 64 * 1024;

/// Copies `from` to `to` with plain `read` and `write` until end of input. Not `io::copy`:
/// between a pipe and a regular file it uses `splice`, which reads the file's offset when
/// it starts and writes it back when it returns, so lines that other processes sharing
/// the open file (a script's `> log`) wrote meanwhile would be overwritten. A `write`
/// takes and moves the shared offset at once.
fn copy_plainly(from: &mut impl Read, to: &mut impl Write) -> io::Result<()> {
    let mut buf = vec![0u8; COPY_BUFFER];
    loop {
        match from.read(&mut buf) {
            Ok(0) => return Ok(()),
            // Flushed at once: stdout is line-buffered, and a reader waiting for a prompt
            // or a partial line must not wait for the next newline.
            Ok(n) => {
                to.write_all(buf.get(..n).unwrap_or_default())?;
                to.flush()?;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

pub(super) struct Handed {
    direct: [Option<(i32, Option<OFlag>)>; 2],
    output_copier: Option<JoinHandle<()>>,
}

impl Handed {
    /// Waits for bridged output to be written, and gives passed descriptors their
    /// original blocking mode back (they may be shared with the user's shell).
    pub(super) fn finish(self) {
        if let Some(copier) = self.output_copier {
            let _ = copier.join();
        }
        for (fd, flags) in self.direct.into_iter().flatten() {
            if let Some(flags) = flags {
                // SAFETY: fd 0 and 1 stay open for the whole life of the process.
                let fd = unsafe { BorrowedFd::borrow_raw(fd) };
                let _ = fcntl(fd, FcntlArg::F_SETFL(flags));
            }
        }
    }
}
