//! Exit codes of `pipe-shell` (DESIGN §6). ssh passes them through to the user's shell, so
//! they are part of the user interface and never change meaning.

use serde::{Deserialize, Serialize};

/// Why a session ended, as the number a script sees in `$?`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Exit {
    /// Normal end: the stream ended, the publisher finished, or the reader closed.
    Ok,
    /// Internal error (a bug or an unexpected system error).
    Internal,
    /// Usage: unknown verb or flag, bad topic, command too long.
    Usage,
    /// No such topic or access denied (deliberately the same, so topics cannot be probed).
    Denied,
    /// The broker could not be reached.
    Unavailable,
    /// Dropped as a stalled subscriber.
    Dropped,
    /// A limit was reached (connections, topics).
    Limit,
    /// Timed out waiting for a peer (`pub -t`).
    Timeout,
}

impl Exit {
    /// The process exit status for this outcome.
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Internal => 1,
            Exit::Usage => 2,
            Exit::Denied => 3,
            Exit::Unavailable => 4,
            Exit::Dropped => 5,
            Exit::Limit => 6,
            Exit::Timeout => 7,
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit.code())
    }
}

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
    fn codes_match_the_design_table() {
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
}
