//! `pipe-shell`: the forced command sshd runs for every session.
//!
//! It is small on purpose and runs no async runtime: it works out the request, connects to
//! `piped`, hands over its stdin and stdout with the hello, and then only waits for status
//! frames, printing them on stderr, until the final one gives its exit code.
//!
//! Its entry forms (forced command, login shell, run by hand) and options are in [`args`].
//!
//! # Identity by key (`ForceCommand` + `ExposeAuthInfo yes`)
//!
//! When pipe-shell runs as the service account (`--service-user`, default `pipe`) with no
//! `--user` given, it reads the file `$SSH_USER_AUTH` names (sshd writes the methods the
//! client authenticated with), takes its single `publickey` line, and looks the key's
//! fingerprint up in the key directory (`--keys-dir`, default `/etc/pipe/keys`): the user
//! whose directory holds that key is who the session is. An unknown key is refused like
//! any other identity failure (exit 3). Key lines then need no `command=`: the sshd
//! `ForceCommand` catches every login of the account.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::thread::JoinHandle;

use nix::fcntl::{FcntlArg, OFlag, fcntl};

use crate::exit::Exit;
use crate::paths;
use crate::proto::client::Client;
use crate::proto::{Hello, PROTOCOL_VERSION, ToClient, pollable};
use crate::request::{Request, RequestError};

pub mod args;

use args::{Options, Source, entry};

pub const USAGE: &str = "\
pipe: networked *nix pipes over ssh

usage: ssh HOST COMMAND

  pub [TOPIC] [-b BOOL] [-t DUR] [-e] [-p] [-d MODE] [-c]
        stdin to TOPIC (a random one if none; its name is printed on stderr).
        -b=false  do not wait for a receiver      -t DUR   how long -b waits (24h)
        -e        send one NUL byte, read nothing  -d MODE  multicast | round_robin
  sub TOPIC [-k] [-n N] [-p] [-c]
        TOPIC to stdout; ends when the last publisher leaves.
        -k  keep listening after publishers leave   -n N  exit after N lines
  pipe [TOPIC] [-p] [-d MODE] [-r] [-c]
        both ways (chat, shared terminals); -r also receives your own writes.
  logs [DRAIN] [-n N] [-c]
        your lines of the service logs (the admin's drain DRAIN, default logs),
        live, one JSON object a line: ssh HOST logs | jq
  ls [--json]      your topics and those shared with you
  grant TOPIC LIST / revoke TOPIC LIST / grants [--json]
        who else may use your topics: LIST is user names or SHA256: key
        fingerprints, comma-separated; grants last until revoked.
  whoami           who the broker thinks you are
  help             this text         version    the version

  TOPIC is NAME (yours), OWNER/NAME (another's, if granted) or -p NAME /
  public/NAME. sub also takes a pattern: sub 'logs-*' gets every matching
  topic, now and later. -a LIST on pub/sub/pipe sets your topic's grant.
  -c or -q hides status lines. Flags may come before or after the topic.
  Status lines go to stderr; stdout carries data only.

exit codes: 0 ok, 1 internal error, 2 usage, 3 no such topic or access denied,
  4 broker unavailable, 5 dropped as a stalled subscriber, 6 limit reached,
  7 timed out waiting for a peer
";

fn say(line: &str) {
    // stderr may be gone with the client; nothing useful can be done about it then.
    let _ = writeln!(io::stderr(), "pipe: {line}");
}

/// pipe-shell's whole run; the binary's `main` calls this first thing, before any thread
/// exists, because it empties the process environment.
pub fn run() -> Exit {
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let original = std::env::var_os("SSH_ORIGINAL_COMMAND").map(|v| v.as_bytes().to_vec());
    let port = std::env::var_os("SSH_CONNECTION").and_then(server_port);
    let auth_info = std::env::var_os("SSH_USER_AUTH").map(PathBuf::from);
    clear_environment();

    let (mut opts, source) = match entry(&args, original) {
        Ok(e) => e,
        Err(msg) => {
            say(&msg.to_string());
            return Exit::Usage;
        }
    };
    let parsed: Result<Request, RequestError> = match &source {
        Source::Remote(bytes) => Request::parse(bytes),
        Source::Argv(words) => Request::parse_words(words),
        Source::Nothing => {
            let _ = io::stderr().write_all(USAGE.as_bytes());
            return Exit::Usage;
        }
    };
    let request = match parsed {
        Ok(r) => r,
        Err(e) => {
            say(&e.to_string());
            return Exit::Usage;
        }
    };
    match request {
        Request::Help => {
            let _ = io::stderr().write_all(USAGE.as_bytes());
            Exit::Ok
        }
        Request::Version => {
            let _ = writeln!(io::stdout(), "pipe {}", env!("CARGO_PKG_VERSION"));
            Exit::Ok
        }
        request => {
            if opts.user.is_none() {
                if let Some(file) = auth_info.filter(|_| runs_as_service(&opts)) {
                    match identify_by_key(&file, &opts) {
                        Some((user, key)) => {
                            opts.user = Some(user);
                            opts.key = Some(key);
                        }
                        None => {
                            say("access denied");
                            return Exit::Denied;
                        }
                    }
                }
            }
            let socket = opts.socket.clone().unwrap_or_else(|| paths::SOCKET.into());
            let hello = Hello {
                version: PROTOCOL_VERSION,
                request: request.render(),
                user: opts.user.clone(),
                key: opts.key.clone(),
            };
            talk(&socket, &hello, request.quiet(), port)
        }
    }
}

/// Whether this process runs as the service account, the one that speaks for the users of
/// the key directory.
fn runs_as_service(opts: &Options) -> bool {
    let name = opts.service_user.as_deref().unwrap_or(paths::SERVICE_USER);
    nix::unistd::User::from_name(name)
        .ok()
        .flatten()
        .is_some_and(|u| u.uid == nix::unistd::getuid())
}

/// Maps the key the client logged in with (the single `publickey` line sshd wrote to
/// `$SSH_USER_AUTH`) to its user in the key directory: `(user, fingerprint)`.
fn identify_by_key(file: &std::path::Path, opts: &Options) -> Option<(String, String)> {
    let text = std::fs::read_to_string(file).ok()?;
    let mut keys = text.lines().filter_map(|l| l.strip_prefix("publickey "));
    let line = keys.next()?;
    // More than one key (several publickey methods) is ambiguous: refuse rather than pick.
    if keys.next().is_some() {
        return None;
    }
    let key = crate::keys::parse_key(line).ok()?;
    let dir = opts
        .keys_dir
        .as_deref()
        .unwrap_or(std::path::Path::new(paths::KEYS_DIR));
    let user = crate::keys::dir::find_owner(dir, key.fingerprint())?;
    Some((user.as_str().to_string(), key.fingerprint().to_string()))
}

/// Drops every inherited variable. sshd lets clients set some (`AcceptEnv LANG LC_*` on
/// Debian, which a `Match` block cannot narrow), and nothing here needs any of them.
fn clear_environment() {
    let names: Vec<OsString> = std::env::vars_os().map(|(k, _)| k).collect();
    for name in names {
        // SAFETY: `run` is called first thing in main (see its docs), before pipe-shell
        // starts any thread, so no other thread can be reading the environment.
        unsafe { std::env::remove_var(name) };
    }
}

/// The server's port from `SSH_CONNECTION` ("client-ip client-port server-ip server-port"),
/// for the `ssh -p PORT … sub NAME` hint.
fn server_port(conn: OsString) -> Option<u16> {
    let conn = conn.to_string_lossy().into_owned();
    conn.split(' ').nth(3)?.parse().ok()
}

/// Connects, hands over stdio, relays status frames, returns the final exit.
fn talk(socket: &std::path::Path, hello: &Hello, quiet: bool, port: Option<u16>) -> Exit {
    let mut client = match Client::connect(socket) {
        Ok(c) => c,
        Err(_) => {
            say("broker unavailable");
            return Exit::Unavailable;
        }
    };
    let stdio = match Stdio::prepare() {
        Ok(s) => s,
        Err(e) => {
            say(&format!("stdio: {e}"));
            return Exit::Internal;
        }
    };
    if client.hello(hello, &stdio.raw()).is_err() {
        say("broker unavailable");
        return Exit::Unavailable;
    }
    let stdio = stdio.handed_over();
    let exit = loop {
        match client.recv() {
            Ok(ToClient::Status { line }) => {
                if !quiet {
                    say(&line);
                }
            }
            Ok(ToClient::Topic { name }) => {
                if quiet {
                    let _ = writeln!(io::stderr(), "{name}");
                } else {
                    say(&format!("to subscribe: {}sub {name}", ssh_hint(port)));
                }
            }
            Ok(ToClient::Exit { code, message }) => {
                match message {
                    Some(m) => say(&m),
                    // Every non-zero exit says something (DESIGN §6).
                    None if code != Exit::Ok => say(&format!("failed (exit {})", code.code())),
                    None => {}
                }
                break code;
            }
            Err(_) => {
                say("broker unavailable");
                break Exit::Unavailable;
            }
        }
    };
    drop(client);
    stdio.finish();
    exit
}

/// `ssh [-p PORT] HOST ` as a user on another machine would type it.
fn ssh_hint(port: Option<u16>) -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "HOST".to_string());
    match port {
        Some(p) if p != 22 => format!("ssh -p {p} {host} "),
        _ => format!("ssh {host} "),
    }
}

/// The two descriptors handed to the broker. sshd gives a forced command pipes, which go
/// over as they are. A terminal or a file (pipe-shell run by hand) cannot be polled, so a
/// pipe is put in front of it with a thread copying between the two.
struct Stdio {
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
    fn prepare() -> io::Result<Stdio> {
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
                let _ = io::copy(&mut io::stdin().lock(), &mut to);
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
                let _ = io::copy(&mut from, &mut out);
                let _ = out.flush();
            });
            Side::Bridged {
                passed: write,
                copier,
            }
        };
        Ok(Stdio { input, output })
    }

    fn raw(&self) -> [i32; 2] {
        [self.input.raw(), self.output.raw()]
    }

    /// After the hello: close our copies of bridged pipe ends so the broker's copies are
    /// the only ones (the output copier sees end of file when the broker closes its end).
    fn handed_over(self) -> Handed {
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

struct Handed {
    direct: [Option<(i32, Option<OFlag>)>; 2],
    output_copier: Option<JoinHandle<()>>,
}

impl Handed {
    /// Waits for bridged output to be written, and gives passed descriptors their
    /// original blocking mode back (they may be shared with the user's shell).
    fn finish(self) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_port_is_the_fourth_field() {
        assert_eq!(
            server_port("127.0.0.1 5000 127.0.0.1 2222".into()),
            Some(2222)
        );
        assert_eq!(server_port("junk".into()), None);
    }
}
