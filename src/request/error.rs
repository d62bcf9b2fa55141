//! Why a request is refused, and the limits of the whole request string that the messages
//! name. A leaf: every other part of the request language reports through [`RequestError`].

use thiserror::Error;

/// Longest request string accepted (pipe(1), EXIT STATUS: longer is a usage error): far
/// above any real command, small enough that
/// a hostile string costs nothing to reject.
pub const MAX_REQUEST: usize = 1024;

/// Most entries in one list, `-a LIST` or the LIST of `grant`/`revoke`. The canonical
/// rendering must fit in [`MAX_REQUEST`] because the broker parses it again. The longest
/// rendering is a `pub` with every flag:
/// `pub --block=false --timeout=<17 digits>ns --empty --dispatch=round_robin --quiet` is
/// 3 + 14 + 30 + 8 + 23 + 8 = 86 bytes, ` --access=` is 10, and a topic ` owner/name` is at
/// most 1 + 32 + 1 + 64 = 98 (a `sub` pattern is no longer than a name): 194 bytes, leaving
/// 830 for the list. A key fingerprint is the longest entry (`SHA256:` + 43 = 50 bytes, plus
/// a comma), so 16 entries (16 × 51 − 1 = 815) fit and 17 would not. (32 fingerprints alone
/// would be 1631 bytes.) The longest `grant`/`revoke` is shorter: `revoke --quiet` (14), the
/// topic (98) and a space (1) leave the same list 911 bytes. Larger grants take several
/// `grant` commands.
pub const MAX_GRANTEES: usize = 16;

/// What an access list holds, in words: the tail of [`RequestError::BadGrantee`] and of a bad
/// `-a` value.
pub(super) const EXPECT_ACCESS: &str = "comma-separated user names or SHA256: key fingerprints";

/// Why a request was refused. Every variant is a usage error (exit 2); the `Display` text is
/// the user-facing message without the `pipe: ` prefix. Every `String` field holds user input
/// already passed through [`crate::exit::escape`], so the text is always one short printable
/// line.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RequestError {
    #[error("command too long ({0} bytes, at most {max})", max = MAX_REQUEST)]
    TooLong(usize),
    #[error("command contains a control or non-ASCII byte: {0}")]
    BadByte(String),
    #[error("no command given (try: help)")]
    Empty,
    #[error("unterminated quote or trailing backslash in command")]
    UnterminatedQuote,
    #[error("unknown command: {0} (try: help)")]
    UnknownVerb(String),
    #[error("{verb}: unknown flag: {flag} (try: help)")]
    UnknownFlag { verb: &'static str, flag: String },
    #[error("{verb}: flag {flag} needs a value")]
    MissingValue { verb: &'static str, flag: String },
    #[error("{verb}: bad value for {flag}: {value} (expected {expected})")]
    BadValue {
        verb: &'static str,
        flag: String,
        value: String,
        /// What the flag takes, in words.
        expected: &'static str,
    },
    #[error("{verb}: the list has {count} entries, at most {max}", max = MAX_GRANTEES)]
    TooManyGrantees { verb: &'static str, count: usize },
    #[error("{verb}: -a cannot be used with public topics")]
    AccessWithPublic { verb: &'static str },
    #[error("{verb}: -a cannot be used with a wildcard topic (a grant is for one topic)")]
    AccessWithPattern { verb: &'static str },
    #[error("{verb}: public topics are open to everyone and take no grant")]
    GrantOnPublic { verb: &'static str },
    #[error("{verb}: a topic is required")]
    MissingTopic { verb: &'static str },
    #[error("{verb}: a list is required ({verb} TOPIC USER-OR-KEY[,...])")]
    MissingList { verb: &'static str },
    #[error("{verb}: nothing to {verb} (the list is empty)")]
    EmptyList { verb: &'static str },
    #[error("{verb}: bad entry in list: {entry} ({expected})", expected = EXPECT_ACCESS)]
    BadGrantee { verb: &'static str, entry: String },
    #[error("{verb}: -p needs a topic name")]
    PublicWithoutTopic { verb: &'static str },
    #[error("{verb}: unexpected argument: {arg}")]
    Extra { verb: &'static str, arg: String },
    /// Also a `*` outside a `sub` topic name.
    #[error("bad topic: {0} (names are letters, digits and ._:- up to 64, optionally owner/name)")]
    BadTopic(String),
    #[error("bad user name: {0} (lowercase letters, digits, _ and - up to 32, not 'public')")]
    BadUser(String),
    #[error("-p conflicts with an owner in the topic: {0}")]
    PublicWithOwner(String),
    #[error("logs: a drain is named by a bare name, not owner/name: {0}")]
    DrainWithOwner(String),
}
