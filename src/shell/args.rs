//! pipe-shell's command line and its entry forms: which options it takes, where they may
//! come from, and where the request comes from.
//!
//! The option rules are public so that a checker (`pipe-admin doctor`, judging an sshd
//! `ForceCommand` or a key line's `command=`) reads a forced command exactly as pipe-shell
//! will: [`parse_forced_command`] on the command string, or [`is_pipe_shell`] and
//! [`parse_options`] on words already split.
//!
//! # Entry forms
//!
//! - `SSH_ORIGINAL_COMMAND` set: sshd ran a forced command (`command="pipe-shell …"` in
//!   authorized_keys, or `ForceCommand`); the variable is the client's request.
//! - `-c STRING`: pipe-shell is the account's login shell. With `SSH_ORIGINAL_COMMAND` set,
//!   STRING is the admin's forced command (its `--user`/`--key`/`--socket` are read from
//!   it); without, STRING is the client's request itself.
//! - plain argv (`pipe-shell pub t`): run by hand.
//!
//! The client's words and the admin's options are never merged: identity options are read
//! only from argv or from a forced command, never from the request.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::exit::escape;
use crate::request::{RequestError, split_words};

/// The file name a forced command's program must have.
pub const PROGRAM: &str = "pipe-shell";

/// What pipe-shell was told by its argv (and, as a login shell, by the forced command).
/// `None` is "not given": the caller applies the defaults of [`crate::paths`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// `--socket PATH`: the broker's socket.
    pub socket: Option<PathBuf>,
    /// `--user NAME`: who the session is (honoured by the broker only from the service
    /// account).
    pub user: Option<String>,
    /// `--key FINGERPRINT`: the key the admin wrote next to `--user`.
    pub key: Option<String>,
    /// `--keys-dir PATH`: the key directory for identity by key.
    pub keys_dir: Option<PathBuf>,
    /// `--service-user NAME`: the account that speaks for the key directory's users.
    pub service_user: Option<String>,
    /// `-c STRING`: what a login shell is asked to run.
    pub command: Option<String>,
    /// The words from the first one that is not an option on (the plain-argv request).
    pub words: Vec<String>,
}

/// A forced command as pipe-shell reads it: its program (a path whose file name is
/// [`PROGRAM`], as written) and the options after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForcedCommand {
    pub program: String,
    pub options: Options,
}

/// Why pipe-shell's options or a forced command could not be read. The `Display` text is
/// the message pipe-shell prints (after `pipe: `) before exiting with the usage code.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ArgsError {
    #[error("{0} needs a value")]
    NeedsValue(&'static str),
    #[error("forced command: {0}")]
    ForcedWords(RequestError),
    #[error("empty forced command")]
    EmptyForced,
    /// The forced command's program, escaped.
    #[error("forced command must run pipe-shell, not {0}")]
    NotPipeShell(String),
}

/// Parses pipe-shell's own argv (without the program name). Options come first; the first
/// other word starts the request (plain-argv form).
pub fn parse_options(args: &[String]) -> Result<Options, ArgsError> {
    let mut opts = Options::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &'static str| it.next().cloned().ok_or(ArgsError::NeedsValue(name));
        match arg.as_str() {
            "--socket" => opts.socket = Some(PathBuf::from(value("--socket")?)),
            "--user" => opts.user = Some(value("--user")?),
            "--key" => opts.key = Some(value("--key")?),
            "--keys-dir" => opts.keys_dir = Some(PathBuf::from(value("--keys-dir")?)),
            "--service-user" => opts.service_user = Some(value("--service-user")?),
            "-c" => opts.command = Some(value("-c")?),
            _ => {
                opts.words.push(arg.clone());
                opts.words.extend(it.cloned());
                break;
            }
        }
    }
    Ok(opts)
}

/// Reads a forced command (an sshd `ForceCommand`, a key line's `command=`, or the `-c`
/// string of a login shell) the way pipe-shell does: split into words like a request, the
/// program must be pipe-shell ([`is_pipe_shell`]), and the rest are its options. Of the
/// options, the identity and location ones count; `command` and `words` are what the
/// string happened to hold after them, and pipe-shell ignores both in a forced command.
pub fn parse_forced_command(command: &str) -> Result<ForcedCommand, ArgsError> {
    let words = split_words(command).map_err(ArgsError::ForcedWords)?;
    let (prog, rest) = words.split_first().ok_or(ArgsError::EmptyForced)?;
    if !is_pipe_shell(prog) {
        return Err(ArgsError::NotPipeShell(escape(prog.as_bytes())));
    }
    Ok(ForcedCommand {
        program: prog.clone(),
        options: parse_options(rest)?,
    })
}

/// Whether a forced command's program is pipe-shell (by file name, so `/usr/bin/pipe-shell`
/// and `pipe-shell` are, and `evilpipe-shell` is not).
pub fn is_pipe_shell(prog: &str) -> bool {
    Path::new(prog).file_name() == Some(OsStr::new(PROGRAM))
}

/// Where the request comes from, after the entry form is known.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Source {
    /// Untrusted bytes from the client (`SSH_ORIGINAL_COMMAND`, or `-c` without one).
    Remote(Vec<u8>),
    /// Words typed by a local user.
    Argv(Vec<String>),
    /// Nothing asked: an interactive login.
    Nothing,
}

/// Works out options and request from argv and `SSH_ORIGINAL_COMMAND`.
pub(super) fn entry(
    args: &[String],
    original: Option<Vec<u8>>,
) -> Result<(Options, Source), ArgsError> {
    let mut opts = parse_options(args)?;
    let original = original.filter(|o| !o.is_empty());
    let source = match (opts.command.take(), original) {
        (Some(forced), Some(request)) => {
            // Login shell running the admin's forced command: read its options.
            let inner = parse_forced_command(&forced)?.options;
            opts.socket = inner.socket.or(opts.socket);
            opts.user = inner.user.or(opts.user);
            opts.key = inner.key.or(opts.key);
            opts.keys_dir = inner.keys_dir.or(opts.keys_dir);
            opts.service_user = inner.service_user.or(opts.service_user);
            Source::Remote(request)
        }
        (Some(command), None) => {
            let is_forced = split_words(&command)
                .ok()
                .and_then(|w| w.first().map(|p| is_pipe_shell(p)))
                .unwrap_or(false);
            if is_forced {
                // A forced command with no client command: an interactive login.
                Source::Nothing
            } else {
                Source::Remote(command.into_bytes())
            }
        }
        (None, Some(request)) => Source::Remote(request),
        (None, None) if !opts.words.is_empty() => Source::Argv(std::mem::take(&mut opts.words)),
        (None, None) => Source::Nothing,
    };
    Ok((opts, source))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn forced_command_options_come_from_the_admin_string() {
        let (opts, src) = entry(
            &args(&[
                "-c",
                "/usr/bin/pipe-shell --user alice --key SHA256:k --socket /s",
            ]),
            Some(b"sub x".to_vec()),
        )
        .unwrap();
        assert_eq!(opts.user.as_deref(), Some("alice"));
        assert_eq!(opts.key.as_deref(), Some("SHA256:k"));
        assert_eq!(opts.socket, Some(PathBuf::from("/s")));
        assert_eq!(src, Source::Remote(b"sub x".to_vec()));
    }

    #[test]
    fn a_client_command_never_supplies_options() {
        // No forced command: the -c string is the client's, and a pipe-shell path in it is
        // just an unknown verb later, never options.
        let (opts, src) = entry(&args(&["-c", "sub --user bob x"]), None).unwrap();
        assert_eq!(opts.user, None);
        assert_eq!(src, Source::Remote(b"sub --user bob x".to_vec()));
        let (opts, src) = entry(&args(&["-c", "/usr/bin/pipe-shell --user bob"]), None).unwrap();
        assert_eq!(opts.user, None);
        assert_eq!(src, Source::Nothing);
    }

    #[test]
    fn the_forced_command_must_be_pipe_shell() {
        assert!(entry(&args(&["-c", "/bin/sh -x"]), Some(b"ls".to_vec())).is_err());
        assert!(entry(&args(&["-c", "/x/evilpipe-shell"]), Some(b"ls".to_vec())).is_err());
    }

    #[test]
    fn plain_argv_and_interactive_forms() {
        let (opts, src) = entry(&args(&["--socket", "/s", "pub", "t"]), None).unwrap();
        assert_eq!(opts.socket, Some(PathBuf::from("/s")));
        assert_eq!(src, Source::Argv(args(&["pub", "t"])));
        let (_, src) = entry(&args(&["--socket", "/s"]), Some(Vec::new())).unwrap();
        assert_eq!(src, Source::Nothing);
    }

    #[test]
    fn forced_commands_are_read_for_a_checker() {
        let forced =
            parse_forced_command("/usr/bin/pipe-shell --keys-dir /k --service-user svc").unwrap();
        assert_eq!(forced.program, "/usr/bin/pipe-shell");
        let opts = forced.options;
        assert_eq!(opts.keys_dir, Some(PathBuf::from("/k")));
        assert_eq!(opts.service_user.as_deref(), Some("svc"));
        assert_eq!(opts.user, None);
        assert_eq!(
            parse_forced_command("pipe-shell --socket"),
            Err(ArgsError::NeedsValue("--socket"))
        );
        assert_eq!(parse_forced_command("  "), Err(ArgsError::EmptyForced));
        assert_eq!(
            parse_forced_command("/bin/sh -c x")
                .unwrap_err()
                .to_string(),
            "forced command must run pipe-shell, not /bin/sh"
        );
        assert!(matches!(
            parse_forced_command("pipe-shell 'x"),
            Err(ArgsError::ForcedWords(_))
        ));
    }
}
