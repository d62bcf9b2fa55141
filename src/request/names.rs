//! The names a request carries: topics (and `sub` patterns), users, namespaces, grantees
//! and access lists. Each checks its grammar when built, so holding one means it is valid.

use std::fmt;
use std::str::FromStr;

use super::error::RequestError;
use crate::exit::escape;

/// Longest topic name: `[A-Za-z0-9][A-Za-z0-9._:-]{0,63}`, as pipe(1) states it under
/// DESCRIPTION.
pub const MAX_TOPIC_NAME: usize = 64;

/// Longest user name: `[a-z_][a-z0-9_-]{0,31}` (the useradd limit), as pipe-admin(8) states
/// it under DESCRIPTION.
pub const MAX_USER_NAME: usize = 32;

/// The namespace `public/name` names; reserved, so never a user name.
pub(super) const PUBLIC: &str = "public";

/// The wildcard of `sub` patterns: any run of characters, possibly empty.
const STAR: u8 = b'*';

/// Key fingerprints as OpenSSH prints them: this prefix, then unpadded base64 of a SHA-256.
const KEY_PREFIX: &str = "SHA256:";

/// Length of the base64 part of a fingerprint: 32 bytes of SHA-256 in unpadded base64.
const KEY_BASE64_LEN: usize = 43;

/// Which namespace a topic reference names, before the broker resolves it against the caller.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Namespace {
    /// `name`: the caller's own.
    Own,
    /// `owner/name`: another user's (or the caller's own, spelled out).
    User(UserName),
    /// `-p name` or `public/name`.
    Public,
}

/// A topic as the user wrote it: namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TopicRef {
    pub namespace: Namespace,
    pub name: TopicName,
}

/// A topic name: `[A-Za-z0-9][A-Za-z0-9._:-]{0,63}` (`:` allows `image:tag`). In a `sub`
/// request it may instead be a pattern ([`TopicName::pattern`]); nothing else holds one.
/// The field is open to the rest of `request` only, for names known to be valid (the default
/// drain, test strategies); everything else goes through the checks.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(pub(super) String);

/// A user name as it may appear in a request: `[a-z_][a-z0-9_-]{0,31}`, never `public`.
/// (The field is open to the rest of `request` as [`TopicName`]'s is.)
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserName(pub(super) String);

/// One entry of an access list: a user name or a key fingerprint (`SHA256:` + base64).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Grantee {
    User(UserName),
    /// The whole fingerprint, prefix included: `SHA256:` and 43 base64 characters.
    Key(String),
}

/// `-a LIST`: comma-separated grantees; empty clears the grant. Also the LIST of
/// `grant`/`revoke`, never empty there.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccessList(pub Vec<Grantee>);

impl TopicName {
    /// Checks `name` against `[A-Za-z0-9][A-Za-z0-9._:-]{0,63}`.
    pub fn new(name: &str) -> Result<TopicName, RequestError> {
        let bytes = name.as_bytes();
        let ok = matches!(bytes.first(), Some(b) if b.is_ascii_alphanumeric())
            && bytes.len() <= MAX_TOPIC_NAME
            && bytes
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
        if ok {
            Ok(TopicName(name.to_string()))
        } else {
            Err(RequestError::BadTopic(escape(bytes)))
        }
    }

    /// Checks `name` as a `sub` topic: a plain name ([`TopicName::new`]) or a pattern,
    /// `[A-Za-z0-9*][A-Za-z0-9._:*-]{0,63}` with at least one `*`.
    pub fn pattern(name: &str) -> Result<TopicName, RequestError> {
        let bytes = name.as_bytes();
        let ok = matches!(bytes.first(), Some(b) if b.is_ascii_alphanumeric() || *b == STAR)
            && bytes.len() <= MAX_TOPIC_NAME
            && bytes.iter().all(|&b| {
                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-' | STAR)
            });
        if ok {
            Ok(TopicName(name.to_string()))
        } else {
            Err(RequestError::BadTopic(escape(bytes)))
        }
    }

    /// Whether this is a pattern (holds a `*`) rather than one topic's name.
    pub fn is_pattern(&self) -> bool {
        self.0.as_bytes().contains(&STAR)
    }

    /// Whether `name` is this topic (a plain name: equality) or matches this pattern
    /// ([`crate::glob`]).
    pub fn matches(&self, name: &str) -> bool {
        if !self.is_pattern() {
            return self.0 == name;
        }
        crate::glob::matches(self.0.as_bytes(), name.as_bytes())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl UserName {
    /// Checks `name` against `[a-z_][a-z0-9_-]{0,31}` and refuses the reserved `public`.
    pub fn new(name: &str) -> Result<UserName, RequestError> {
        let bytes = name.as_bytes();
        let ok = matches!(bytes.first(), Some(b) if b.is_ascii_lowercase() || *b == b'_')
            && bytes.len() <= MAX_USER_NAME
            && bytes
                .iter()
                .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'))
            && name != PUBLIC;
        if ok {
            Ok(UserName(name.to_string()))
        } else {
            Err(RequestError::BadUser(escape(bytes)))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for TopicName {
    type Err = RequestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TopicName::new(s)
    }
}

impl FromStr for UserName {
    type Err = RequestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        UserName::new(s)
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Grantee {
    /// A user name or a fingerprint (`SHA256:` + 43 base64 characters, unpadded as OpenSSH
    /// prints it). `None` for anything else.
    pub fn parse(entry: &str) -> Option<Grantee> {
        match entry.strip_prefix(KEY_PREFIX) {
            Some(b64) => {
                let ok = b64.len() == KEY_BASE64_LEN
                    && b64
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
                ok.then(|| Grantee::Key(entry.to_string()))
            }
            None => UserName::new(entry).ok().map(Grantee::User),
        }
    }
}

impl fmt::Display for Grantee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Grantee::User(user) => f.write_str(user.as_str()),
            Grantee::Key(key) => f.write_str(key),
        }
    }
}

impl fmt::Display for AccessList {
    /// The comma-separated form `-a` takes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, grantee) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{grantee}")?;
        }
        Ok(())
    }
}

impl fmt::Display for TopicRef {
    /// The canonical spelling: `name`, `owner/name` or `public/name`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Namespace::Own => write!(f, "{}", self.name),
            Namespace::User(owner) => write!(f, "{owner}/{}", self.name),
            Namespace::Public => write!(f, "{PUBLIC}/{}", self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn user(s: &str) -> UserName {
        UserName::new(s).unwrap()
    }

    fn name(s: &str) -> TopicName {
        TopicName::pattern(s).unwrap()
    }

    #[test]
    fn user_names_follow_the_grammar() {
        for ok in ["alice", "_svc", "a-b_c9", &"a".repeat(32)] {
            assert!(UserName::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "public",
            "Alice",
            "9lives",
            "-a",
            "",
            "a.b",
            &"a".repeat(33),
        ] {
            assert!(
                matches!(UserName::new(bad), Err(RequestError::BadUser(_))),
                "{bad}"
            );
        }
        assert_eq!("bob".parse::<UserName>(), Ok(user("bob")));
        assert!("bad topic".parse::<TopicName>().is_err());
    }

    #[test]
    fn pattern_matching() {
        let m = |p: &str, n: &str| name(p).matches(n);
        assert!(m("logs-*", "logs-a"));
        assert!(m("logs-*", "logs-"));
        assert!(m("logs-*", "logs-a-b*c"));
        assert!(!m("logs-*", "xlogs-a"));
        assert!(!m("logs-*", "logs"));
        for n in ["", "a", "anything:at.all", &"z".repeat(64)] {
            assert!(m("*", n), "{n}");
            assert!(m("**", n), "{n}");
        }
        assert!(m("a*b*c", "abc"));
        assert!(m("a*b*c", "aXbYc"));
        assert!(m("a*b*c", "abbbcbc"));
        assert!(m("a*b*c", "acbc"));
        assert!(!m("a*b*c", "acb"));
        assert!(!m("a*b*c", "abcx"));
        assert!(!m("a*b*c", "xabc"));
        assert!(m("*:latest", "image:latest"));
        assert!(m("*:latest", ":latest"));
        assert!(!m("*:latest", "image:latest2"));
        assert!(!m("*:latest", "image:v1"));
        assert!(m("*a*", "bab"));
        assert!(!m("*a*", "bbb"));
        // Plain names: equality, case-sensitive.
        assert!(m("logs", "logs"));
        assert!(!m("logs", "Logs"));
        assert!(!m("logs", "logs-a"));
        assert!(!m("logs", ""));
        // A worst case for backtracking stays quick.
        let p = format!("{}b", "a*".repeat(31));
        assert!(!m(&p, &"a".repeat(64)));
        assert!(m(&p, &format!("{}b", "a".repeat(63))));
    }

    /// The obvious dynamic-programming glob match, to check [`TopicName::matches`] against.
    fn reference_match(pattern: &[u8], name: &[u8]) -> bool {
        // ok[j]: the pattern so far matches name[..j].
        let mut ok = vec![false; name.len() + 1];
        ok[0] = true;
        for &p in pattern {
            let mut next = vec![false; name.len() + 1];
            for j in 0..=name.len() {
                next[j] = if p == STAR {
                    ok[j] || (j > 0 && next[j - 1])
                } else {
                    j > 0 && ok[j - 1] && name[j - 1] == p
                };
            }
            ok = next;
        }
        ok[name.len()]
    }

    proptest! {
        #[test]
        fn matches_agrees_with_a_reference(
            pattern in "[ab*]{1,10}",
            name in "[ab]{0,10}",
        ) {
            prop_assert_eq!(
                TopicName(pattern.clone()).matches(&name),
                reference_match(pattern.as_bytes(), name.as_bytes())
            );
        }

        #[test]
        fn patterns_match_what_they_were_made_from(
            parts in proptest::collection::vec("[a-z.:-]{0,6}", 1..6),
            fills in proptest::collection::vec("[A-Za-z0-9._:-]{0,6}", 5),
        ) {
            // `parts` joined by `*` is a pattern; the same parts joined by anything match it.
            let pattern = parts.join("*");
            let mut name = String::new();
            for (i, part) in parts.iter().enumerate() {
                if i > 0 {
                    name.push_str(&fills[i - 1]);
                }
                name.push_str(part);
            }
            prop_assert!(TopicName(pattern).matches(&name));
        }
    }
}
