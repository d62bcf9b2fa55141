//! Exit codes, and escaping of echoed input for one-line messages.
//!
//! Two vocabularies, one per binary, each a documented interface that never changes
//! meaning: [`Exit`], pipe-shell's (ssh passes it through to the user's shell; pipe(1) and
//! pipe-shell(8), EXIT STATUS), and [`AdminExit`], pipe-admin's (pipe-admin(8), EXIT
//! STATUS). Each code is written once, as its variant's discriminant; [`code`](Exit::code)
//! and the conversion into [`ExitCode`] are the same for both.

use std::process::ExitCode;

use serde::{Deserialize, Serialize};

/// The number and the `ExitCode` of an exit-code enum, both from its discriminant.
macro_rules! exit_code {
    ($name:ident) => {
        impl $name {
            /// The process exit status for this outcome.
            pub fn code(self) -> u8 {
                self as u8
            }
        }

        impl From<$name> for ExitCode {
            fn from(exit: $name) -> Self {
                ExitCode::from(exit.code())
            }
        }
    };
}

/// Why a pipe session ended, as the number a script sees in `$?`. On the wire (the
/// broker's final frame) it travels by name, not by number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Exit {
    /// Normal end: the stream ended, the publisher finished, or the reader closed.
    Ok = 0,
    /// Internal error (a bug or an unexpected system error).
    Internal = 1,
    /// Usage: unknown verb or flag, bad topic, command too long.
    Usage = 2,
    /// No such topic or access denied (deliberately the same, so topics cannot be probed).
    Denied = 3,
    /// The broker could not be reached.
    Unavailable = 4,
    /// Dropped as a stalled subscriber.
    Dropped = 5,
    /// A limit was reached (connections, topics).
    Limit = 6,
    /// Timed out waiting for a peer (`pub -t`).
    Timeout = 7,
}

exit_code!(Exit);

/// How a `pipe-admin` run ended, as its exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum AdminExit {
    /// Done (for `doctor`: every check passed).
    Ok = 0,
    /// I/O, the lock, anything unexpected (also a key directory entry that does not fit;
    /// for `doctor`: at least one check failed).
    Failure = 1,
    /// Bad arguments, an invalid user or key name, a malformed or refused key.
    Usage = 2,
    /// Unknown user or key.
    NotFound = 3,
    /// The user exists, the key or key name is taken, authorized_keys has broken markers or
    /// changed meanwhile.
    Conflict = 4,
}

exit_code!(AdminExit);

/// Renders untrusted input for a one-line message: printable ASCII is kept, everything else
/// is shown as `\xNN` (or `\n`, `\t`, ...), and the result is cut to [`ECHO_LIMIT`] bytes so a
/// hostile command cannot flood a terminal or forge extra lines.
pub fn escape(input: &[u8]) -> String {
    let mut out = String::new();
    for &b in input {
        let piece = match b {
            b'\n' => "\\n".to_string(),
            b'\r' => "\\r".to_string(),
            b'\t' => "\\t".to_string(),
            b'\\' => "\\\\".to_string(),
            0x20..=0x7e => (b as char).to_string(),
            _ => format!("\\x{b:02x}"),
        };
        if out.len() + piece.len() > ECHO_LIMIT {
            out.push_str("...");
            break;
        }
        out.push_str(&piece);
    }
    out
}

/// Longest echo of user input in a message: enough to recognise one's typo, short enough to
/// keep the message on one terminal line.
pub const ECHO_LIMIT: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_hides_control_bytes_and_truncates() {
        assert_eq!(escape(b"a\nb\x1b\x00"), "a\\nb\\x1b\\x00");
        let long = escape(&[b'x'; 500]);
        assert!(long.len() <= ECHO_LIMIT + 3, "{long}");
        assert!(long.ends_with("..."));
    }

    #[test]
    fn codes_match_the_man_pages() {
        let all = [
            Exit::Ok,
            Exit::Internal,
            Exit::Usage,
            Exit::Denied,
            Exit::Unavailable,
            Exit::Dropped,
            Exit::Limit,
            Exit::Timeout,
        ];
        let codes: Vec<u8> = all.iter().map(|e| e.code()).collect();
        assert_eq!(codes, vec![0, 1, 2, 3, 4, 5, 6, 7]);
    }

    #[test]
    fn admin_exit_codes_match_the_docs() {
        let codes: Vec<u8> = [
            AdminExit::Ok,
            AdminExit::Failure,
            AdminExit::Usage,
            AdminExit::NotFound,
            AdminExit::Conflict,
        ]
        .iter()
        .map(|e| e.code())
        .collect();
        assert_eq!(codes, vec![0, 1, 2, 3, 4]);
    }
}
