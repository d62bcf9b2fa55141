//! The names keys are filed under in the key directory. Parsing the keys themselves is
//! shared with `pipe-shell` and lives in [`crate::keys`].

use std::fmt;

use thiserror::Error;

use crate::exit::escape;

/// Longest key name: as long as a topic name, plenty for `laptop-2024` or `ci.deploy`, short
/// enough for a file name and a `key list` column.
pub const MAX_KEY_NAME: usize = 64;

/// A key name: `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`, the file `<keys-dir>/<user>/<name>.pub`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyName(String);

/// A key name that does not match the pattern; holds the escaped input.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "invalid key name: {0} (expected a letter or digit, then letters, digits, '.', '_' or '-', at most 64)"
)]
pub struct BadKeyName(pub String);

impl KeyName {
    /// Checks `name` against `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`.
    pub fn new(name: &str) -> Result<KeyName, BadKeyName> {
        let bytes = name.as_bytes();
        let ok = matches!(bytes.first(), Some(b) if b.is_ascii_alphanumeric())
            && bytes.len() <= MAX_KEY_NAME
            && bytes
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(KeyName(name.to_string()))
        } else {
            Err(BadKeyName(escape(bytes)))
        }
    }

    /// A name made from a key comment: `alice@laptop` becomes `alice-laptop`. Characters a
    /// name cannot hold become `-`, leading ones that cannot start a name are dropped.
    /// `None` when nothing usable is left.
    pub fn from_comment(comment: &str) -> Option<KeyName> {
        let mapped: String = comment
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let start = mapped.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
        let cut: String = start.chars().take(MAX_KEY_NAME).collect();
        KeyName::new(cut.trim_end_matches('-')).ok()
    }

    /// `key-N`, the fallback name (always valid: 4 + at most 20 digits).
    pub fn numbered(n: u64) -> KeyName {
        KeyName(format!("key-{n}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn key_names_follow_the_pattern() {
        for good in [
            "a",
            "laptop",
            "Laptop-2024",
            "ci.deploy",
            "x_y",
            &"a".repeat(64),
        ] {
            assert!(KeyName::new(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-x",
            ".x",
            "_x",
            "a/b",
            "..",
            "a b",
            "a\nb",
            "é",
            &"a".repeat(65),
        ] {
            assert!(KeyName::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_come_from_comments_when_possible() {
        let name = |c: &str| KeyName::from_comment(c).map(|n| n.to_string());
        assert_eq!(name("alice@laptop").as_deref(), Some("alice-laptop"));
        assert_eq!(name("laptop").as_deref(), Some("laptop"));
        assert_eq!(name("  @@work pc  ").as_deref(), Some("work-pc"));
        assert_eq!(name("").as_deref(), None);
        assert_eq!(name("@@@").as_deref(), None);
        assert_eq!(name(&"x".repeat(100)).map(|n| n.len()), Some(MAX_KEY_NAME));
    }
}
