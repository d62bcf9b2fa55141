//! `pipe-shell`: the forced command sshd runs for every session.
//!
//! It is small on purpose and runs no async runtime: it works out the request, connects to
//! `piped`, hands over its stdin and stdout with the hello, and then only waits for status
//! frames, printing them on stderr, until the final one gives its exit code.
//!
//! The seams: [`args`] (entry forms and options), `identity` (who a key login is, from
//! `$SSH_USER_AUTH` and the key directory), `stdio` (handing over stdin and stdout, with a
//! copying thread for a terminal or file), and the session itself here ([`run`]), spoken
//! through the broker client [`crate::proto::client`].

use std::ffi::OsString;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::exit::Exit;
use crate::paths;
use crate::proto::client::Client;
use crate::proto::{Hello, PROTOCOL_VERSION, ToClient};
use crate::request::{Request, RequestError};

pub mod args;
mod identity;
mod stdio;

use args::{Source, entry};
use identity::{identify_by_key, runs_as_service};
use stdio::Stdio;

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
                    // Every non-zero exit says something (pipe(1), EXIT STATUS).
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
