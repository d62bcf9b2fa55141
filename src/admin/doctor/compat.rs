//! doctor's own copies of two readers that other parts of the crate also have: the
//! authorized_keys option scanner and pipe-shell's option rules. Each is one function, so
//! the shared version can take its place in one edit.

use std::path::Path;

use crate::admin::keys;

/// The forced command's file name.
pub const PIPE_SHELL: &str = "pipe-shell";

/// The options of an authorized_keys line (`restrict`, `command="a,b"`, …), split at the
/// commas outside double quotes as sshd reads them; `None` when the line has no options
/// in front of its key.
// integrator: replace with the shared authorized_keys option scanner (admin/keys.rs has
// the same split_options and quote rules).
pub fn key_options(line: &str) -> Option<Vec<&str>> {
    let (options, _) = keys::split_options(line.trim())?;
    let mut out = Vec::new();
    let mut quoted = false;
    let mut escaped = false;
    let mut start = 0;
    for (i, c) in options.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&options[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&options[start..]);
    Some(out)
}

/// What a forced command that runs pipe-shell tells it: its program and the values of
/// the options doctor compares (`None` for one not given, so pipe-shell's default holds).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForcedShell {
    pub program: String,
    pub user: Option<String>,
    pub socket: Option<String>,
    pub keys_dir: Option<String>,
    pub service_user: Option<String>,
}

/// Reads a forced command as pipe-shell will: `None` unless its program is pipe-shell (by
/// file name, so `/usr/bin/pipe-shell` is and `evilpipe-shell` is not). An option's value
/// is the word after its first occurrence.
// integrator: replace with pipe-shell's shared option parser (shell.rs parse_options and
// is_pipe_shell).
pub fn forced_shell(command: &str) -> Option<ForcedShell> {
    let words = crate::request::split_words(command).ok()?;
    let program = words.first()?;
    if Path::new(program).file_name() != Some(PIPE_SHELL.as_ref()) {
        return None;
    }
    let option = |name: &str| {
        words
            .windows(2)
            .find(|pair| pair[0] == name)
            .map(|pair| pair[1].clone())
    };
    Some(ForcedShell {
        program: program.clone(),
        user: option("--user"),
        socket: option("--socket"),
        keys_dir: option("--keys-dir"),
        service_user: option("--service-user"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_at_commas_outside_quotes() {
        assert_eq!(
            key_options("restrict,command=\"a \\\"b,c\\\" d\",no-pty ssh-ed25519 AAAA"),
            Some(vec!["restrict", "command=\"a \\\"b,c\\\" d\"", "no-pty"])
        );
        assert_eq!(key_options("ssh-ed25519"), None);
    }

    #[test]
    fn forced_commands_are_read_like_pipe_shell() {
        let forced = forced_shell("/usr/bin/pipe-shell --socket /s --user 'a b'").unwrap();
        assert_eq!(forced.program, "/usr/bin/pipe-shell");
        assert_eq!(forced.socket.as_deref(), Some("/s"));
        assert_eq!(forced.user.as_deref(), Some("a b"));
        assert_eq!(forced.keys_dir, None);
        assert!(forced_shell("pipe-shell").is_some());
        assert!(forced_shell("/usr/bin/evilpipe-shell").is_none());
        assert!(forced_shell("").is_none());
    }
}
