//! The one wildcard matcher: `*` matches any run of bytes (possibly empty), `?` exactly one,
//! and the whole of the name must match. Topic patterns (`sub 'logs-*'`) use it, whose
//! names never contain `?`, and so does `pipe-admin doctor` for sshd's patterns
//! (`AcceptEnv`), which use both.

/// Whether `name` matches `pattern`.
///
/// The classic two-pointer match: on a mismatch, backtrack to just after the last `*` and
/// let it swallow one more byte. No recursion, no allocation, and at worst pattern length ×
/// name length steps.
pub fn matches(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    // After the last `*` seen: where the pattern resumes, and where in `name` its run ends.
    let mut star: Option<(usize, usize)> = None;
    while let Some(&c) = name.get(n) {
        match pattern.get(p) {
            Some(b'*') => {
                p += 1;
                star = Some((p, n));
            }
            Some(&want) if want == c || want == b'?' => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((resume, end)) => {
                    p = resume;
                    n = end + 1;
                    star = Some((resume, n));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::matches;
    use proptest::prelude::*;

    /// The definition, written as the obvious recursion.
    fn reference(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => reference(&p[1..], n) || (!n.is_empty() && reference(p, &n[1..])),
            (Some(b'?'), Some(_)) => reference(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => reference(&p[1..], &n[1..]),
            _ => false,
        }
    }

    #[test]
    fn stars_and_question_marks() {
        assert!(matches(b"logs-*", b"logs-"));
        assert!(matches(b"logs-*", b"logs-web"));
        assert!(!matches(b"logs-*", b"log"));
        assert!(matches(b"*-*-x", b"a-b-c-x"));
        assert!(matches(b"LC_?", b"LC_X"));
        assert!(!matches(b"LC_?", b"LC_"));
        assert!(matches(b"*", b""));
        assert!(!matches(b"", b"a"));
    }

    proptest! {
        #[test]
        fn agrees_with_the_definition(p in "[ab*?]{0,8}", n in "[ab]{0,10}") {
            prop_assert_eq!(matches(p.as_bytes(), n.as_bytes()), reference(p.as_bytes(), n.as_bytes()));
        }
    }
}
