//! Public keys as pipe reads them: one OpenSSH public key line, parsed and re-serialised
//! with the `ssh-key` crate so nothing but the key itself (and a tamed comment) is ever kept,
//! and its SHA256 fingerprint; the option syntax of authorized_keys lines ([`options`]); the
//! key directory's layout and the lookup of a key's user in it ([`dir`]).
//!
//! A leaf shared by `pipe-shell` (which maps a login's key to its user through the key
//! directory) and `pipe-admin` (which files keys there and writes authorized_keys), so the
//! forced command does not depend on the admin tool.

pub mod dir;
pub mod options;

use std::io::{self, Read};

use ssh_key::public::KeyData;
use ssh_key::{HashAlg, PublicKey};
use thiserror::Error;

use crate::exit::escape;

use options::split_options;

/// Most bytes read as one public key. A 16384-bit RSA key line, the largest OpenSSH makes, is
/// under 3 KiB; anything past 64 KiB is not a public key and is not read into memory whole.
pub const MAX_KEY_INPUT: u64 = 64 * 1024;

/// Longest comment kept (longer ones are cut): enough for `user@host` plus a note, short
/// enough that a comment cannot bloat every line of authorized_keys and `key list`.
pub const MAX_COMMENT: usize = 256;

/// Smallest RSA modulus accepted: OpenSSH's `RequiredRSASize` default (9.1 and later), so a
/// key that sshd would refuse at login is refused when it is added instead.
pub const MIN_RSA_BITS: usize = 1024;

/// What replaces a comment character that could confuse a reader of authorized_keys or of a
/// terminal (control bytes, quotes, backslashes, anything outside printable ASCII).
const COMMENT_REPLACEMENT: char = '_';

/// How a SHA256 fingerprint starts, as `ssh-keygen -l` prints it; key names cannot contain
/// `:`, so an argument with this prefix is never a name.
pub const FINGERPRINT_PREFIX: &str = "SHA256:";

/// The suffix of OpenSSH certificate key types, which are not plain public keys.
const CERT_SUFFIX: &str = "-cert-v01@openssh.com";

/// Why a public key was refused. The `Display` text is the user-facing message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyError {
    #[error("no public key given")]
    Empty,
    #[error("more than one key given (one key per `key add`)")]
    Multiple,
    #[error("this is a private key: give the public one (the .pub file)")]
    Private,
    #[error("RFC 4716 format: convert it first with `ssh-keygen -i -f FILE`")]
    Rfc4716,
    #[error("key line has options in front ({0}): give the bare public key")]
    Options(String),
    #[error("certificates are not supported, give the plain public key: {0}")]
    Certificate(String),
    #[error("unsupported key type {0} (use ed25519, ecdsa, rsa or a security key)")]
    Unsupported(String),
    #[error("RSA key too short ({bits} bits, at least {min})", min = MIN_RSA_BITS)]
    WeakRsa { bits: usize },
    #[error("input longer than {max} bytes is not a public key", max = MAX_KEY_INPUT)]
    TooLong,
    #[error("input is not UTF-8 text")]
    NotText,
    #[error("malformed public key: {0}")]
    Malformed(String),
}

/// An accepted public key: parsed, with its SHA256 fingerprint and its canonical line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    public: PublicKey,
    fingerprint: String,
    openssh: String,
}

impl Key {
    /// `SHA256:` and the unpadded base64 digest, exactly as `ssh-keygen -lf` prints it.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The key type as written in the key line, e.g. `ssh-ed25519`.
    pub fn algorithm(&self) -> String {
        self.public.algorithm().to_string()
    }

    /// The comment, already made safe (printable ASCII without quotes or backslashes).
    pub fn comment(&self) -> &str {
        self.public.comment()
    }

    /// `<type> <base64>[ <comment>]`, re-serialised from the parsed key.
    pub fn openssh(&self) -> &str {
        &self.openssh
    }
}

/// Parses the text given to `key add` (or read from a key file): exactly one public key line;
/// blank lines and `#` comment lines around it are ignored.
pub fn parse_key(text: &str) -> Result<Key, KeyError> {
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'));
    let Some(line) = lines.next() else {
        return Err(KeyError::Empty);
    };
    // A private key is many lines; say what it is before counting lines.
    if line.starts_with("-----BEGIN") || line.starts_with("PuTTY-User-Key-File") {
        return Err(KeyError::Private);
    }
    if line.starts_with("---- BEGIN SSH2 PUBLIC KEY") {
        return Err(KeyError::Rfc4716);
    }
    if lines.next().is_some() {
        return Err(KeyError::Multiple);
    }
    let public = match parse_bare(line) {
        Ok(public) => public,
        Err(error) => {
            // sshd's own rule: a line that is not a key may be options and then a key.
            if let Some((options, rest)) = split_options(line)
                && parse_bare(rest).is_ok()
            {
                return Err(KeyError::Options(escape(options.as_bytes())));
            }
            return Err(error);
        }
    };
    check_supported(&public)?;
    finish(public)
}

/// The public key of one authorized_keys line, with or without options in front; `None` for
/// comments, blank lines and anything sshd would not read as a key. Used to spot keys that
/// lines outside the managed block already authorize.
pub fn parse_authorized_line(line: &str) -> Option<PublicKey> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    parse_bare(line)
        .ok()
        .or_else(|| split_options(line).and_then(|(_, rest)| parse_bare(rest).ok()))
}

/// The SHA256 fingerprint of a key, as `ssh-keygen -lf` prints it.
pub fn fingerprint(public: &PublicKey) -> String {
    public.fingerprint(HashAlg::Sha256).to_string()
}

/// `<type> <base64> [comment]` with any run of spaces or tabs between the fields (as sshd
/// reads them). The comment is made safe here, so every `Key` carries a tame one.
fn parse_bare(line: &str) -> Result<PublicKey, KeyError> {
    let malformed = || KeyError::Malformed(escape(line.as_bytes()));
    let (algorithm, rest) = line.split_once([' ', '\t']).ok_or_else(malformed)?;
    let rest = rest.trim_start_matches([' ', '\t']);
    let (base64, comment) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
    if algorithm.ends_with(CERT_SUFFIX) {
        return Err(KeyError::Certificate(escape(algorithm.as_bytes())));
    }
    // The comment stays out of the parser: only the two fields it must check go in.
    let mut public =
        PublicKey::from_openssh(&format!("{algorithm} {base64}")).map_err(|_| malformed())?;
    public.set_comment(safe_comment(comment));
    Ok(public)
}

/// Only key types current OpenSSH accepts for login: DSA is disabled (and gone since 9.8),
/// unknown algorithms would be opaque blobs to us.
fn check_supported(public: &PublicKey) -> Result<(), KeyError> {
    match public.key_data() {
        KeyData::Ed25519(_)
        | KeyData::Ecdsa(_)
        | KeyData::SkEd25519(_)
        | KeyData::SkEcdsaSha2NistP256(_) => Ok(()),
        KeyData::Rsa(rsa) => {
            let bits = mpint_bits(rsa.n.as_positive_bytes().unwrap_or(&[]));
            if bits >= MIN_RSA_BITS {
                Ok(())
            } else {
                Err(KeyError::WeakRsa { bits })
            }
        }
        _ => Err(KeyError::Unsupported(escape(
            public.algorithm().as_str().as_bytes(),
        ))),
    }
}

/// Bit length of a big-endian unsigned integer without leading zero bytes.
fn mpint_bits(bytes: &[u8]) -> usize {
    match bytes.first() {
        Some(first) => bytes.len() * 8 - first.leading_zeros() as usize,
        None => 0,
    }
}

fn finish(public: PublicKey) -> Result<Key, KeyError> {
    let fingerprint = fingerprint(&public);
    // Re-serialising a key that was just parsed fails only on an encoder bug; say so
    // rather than write anything that is not the parsed key.
    let openssh = public
        .to_openssh()
        .map_err(|e| KeyError::Malformed(format!("cannot re-encode the key: {e}")))?;
    Ok(Key {
        public,
        fingerprint,
        openssh,
    })
}

/// Keeps printable ASCII except `"` and `\`; each other character becomes
/// `COMMENT_REPLACEMENT` (`_`). Surrounding whitespace is trimmed and the result cut to
/// [`MAX_COMMENT`] bytes. A comment can then neither end the line, nor look like an option,
/// nor hide terminal escapes in `key list`.
pub fn safe_comment(raw: &str) -> String {
    raw.trim()
        .chars()
        .map(|c| {
            if (' '..='~').contains(&c) && c != '"' && c != '\\' {
                c
            } else {
                COMMENT_REPLACEMENT
            }
        })
        .take(MAX_COMMENT)
        .collect()
}

/// Reads at most [`MAX_KEY_INPUT`] bytes and one more, to tell a too-long input apart.
pub fn read_capped(reader: impl Read) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader.take(MAX_KEY_INPUT + 1).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The input as text, refusing an over-long or non-UTF-8 one.
pub fn text_of(bytes: Vec<u8>) -> Result<String, KeyError> {
    if bytes.len() as u64 > MAX_KEY_INPUT {
        return Err(KeyError::TooLong);
    }
    String::from_utf8(bytes).map_err(|_| KeyError::NotText)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILM+rvN+ot98qgEN796jTiQfZfG1KaT0PtFDJ/XFSqti";

    #[test]
    fn a_bare_key_is_parsed_and_reserialised() {
        let key = parse_key(&format!("\n# mine\n  {ED25519}   alice@laptop \n\n")).unwrap();
        assert_eq!(key.algorithm(), "ssh-ed25519");
        assert_eq!(key.comment(), "alice@laptop");
        assert_eq!(key.openssh(), format!("{ED25519} alice@laptop"));
        assert_eq!(
            key.fingerprint(),
            "SHA256:UCUiLr7Pjs9wFFJMDByLgc3NrtdU344OgUM45wZPcIQ"
        );
        // Tabs between the fields, no comment.
        let key = parse_key(&ED25519.replacen(' ', "\t", 1)).unwrap();
        assert_eq!(key.openssh(), ED25519);
    }

    #[test]
    fn dangerous_comments_are_tamed() {
        let key = parse_key(&format!("{ED25519} a\"b\\c\x1b[31md\u{202e}é")).unwrap();
        assert_eq!(key.comment(), "a_b_c_[31md__");
        let long = parse_key(&format!("{ED25519} {}", "c".repeat(1000))).unwrap();
        assert_eq!(long.comment().len(), MAX_COMMENT);
    }

    /// A DSA key from `ssh-keygen -t dsa` (which newer OpenSSH can no longer make).
    const DSA: &str = "ssh-dss AAAAB3NzaC1kc3MAAACBAIf5+hFE7PYpLhrBDGhn+1+23/Byr/lsiv+//ck9pduD+u4/kKgKrPZJdpafLdglHX0VNmWF6VW742qOhMoPgzXWCIrL+ejclsfND59dKCiwVTYBCI4i7fqH+MEZABpOrIxzihSIdeqEX6qun/9bKJO69QWoBAe3fkKG8unhWJJZAAAAFQCmk7GCheh9xhYFpU8DQurxacRiVwAAAIEAgYYs7jOxmgz3zWhQ8VAW3OEwBPZeVE9yfaybqRBy4qYMVC2v887Ar+4ZLwDrNDzQ49hd8hemet9iIedi0uGwKIutPYxivOMGRI/uLFndkOD5rE4kefydkGS8oFR6q3qy9bZfIEUTEQY5/WwCphQn6FhO5o0J9lRea6g2bRzGHGEAAACAfgCOZdSqQ4TUrJfYanwxcVL3/kwQ5BT8NJML1tqHAtGMuRDylOLlD+LRvTgcrwP7o/XvjQSIMuyhjIn6G1pXWimneQccPWi+ASc2OGqUluzYxx6uLYYraNbh5AM6z6wMYRSXvEp/S64+gE1ne9SQD338lBOkBVMcpF5rv0ZCNXw= d";

    /// An RSA public key line with a modulus of exactly `bits` bits (not a real key: only its
    /// size matters here).
    fn rsa_with_bits(bits: usize) -> String {
        let mut modulus = vec![0xffu8; bits / 8];
        modulus[bits / 8 - 1] = 0xfb;
        let rsa = ssh_key::public::RsaPublicKey {
            e: ssh_key::Mpint::from_positive_bytes(&[1, 0, 1]).unwrap(),
            n: ssh_key::Mpint::from_positive_bytes(&modulus).unwrap(),
        };
        PublicKey::new(KeyData::Rsa(rsa), "").to_openssh().unwrap()
    }

    #[test]
    fn refusals_say_why() {
        let refused = |input: &str| parse_key(input).unwrap_err();
        assert_eq!(refused(""), KeyError::Empty);
        assert_eq!(refused("# only a comment\n"), KeyError::Empty);
        assert_eq!(
            refused(&format!("{ED25519} a\n{ED25519} b\n")),
            KeyError::Multiple
        );
        assert_eq!(
            refused(
                "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\n-----END OPENSSH PRIVATE KEY-----\n"
            ),
            KeyError::Private
        );
        assert_eq!(
            refused("---- BEGIN SSH2 PUBLIC KEY ----\nAAAA\n---- END SSH2 PUBLIC KEY ----\n"),
            KeyError::Rfc4716
        );
        assert!(matches!(
            refused(&format!("restrict,command=\"/bin/sh -i\" {ED25519} x")),
            KeyError::Options(o) if o.starts_with("restrict,command=")
        ));
        assert!(matches!(
            refused(&format!("no-pty {ED25519}")),
            KeyError::Options(_)
        ));
        for malformed in [
            "ssh-ed25519 AAAAnotbase64!!".to_string(),
            "ssh-ed25519".to_string(),
            // The type in the text must be the type inside the blob.
            ED25519.replace("ssh-ed25519", "ssh-rsa"),
        ] {
            assert!(
                matches!(refused(&malformed), KeyError::Malformed(_)),
                "{malformed}"
            );
        }
        assert_eq!(refused(DSA), KeyError::Unsupported("ssh-dss".into()));
        assert_eq!(
            refused(&rsa_with_bits(512)),
            KeyError::WeakRsa { bits: 512 }
        );
        assert!(parse_key(&rsa_with_bits(MIN_RSA_BITS)).is_ok());
        assert!(matches!(
            refused(&ED25519.replace("ssh-ed25519", "ssh-ed25519-cert-v01@openssh.com")),
            KeyError::Certificate(_)
        ));
    }

    #[test]
    fn authorized_lines_are_read_with_or_without_options() {
        let plain = parse_authorized_line(ED25519).unwrap();
        let with = parse_authorized_line(&format!(
            "restrict,command=\"/usr/bin/pipe-shell --user a --key \\\"x y\\\"\" {ED25519} c"
        ))
        .unwrap();
        assert_eq!(fingerprint(&plain), fingerprint(&with));
        assert!(parse_authorized_line("# comment").is_none());
        assert!(parse_authorized_line("").is_none());
        assert!(parse_authorized_line("garbage").is_none());
        assert!(parse_authorized_line("command=\"unterminated ssh-ed25519 AAAA").is_none());
    }

    #[test]
    fn fingerprints_match_ssh_keygen() {
        let dir = tempfile::tempdir().unwrap();
        for (kind, bits) in [
            ("ed25519", None),
            ("ecdsa", Some("384")),
            ("rsa", Some("2048")),
        ] {
            let path = dir.path().join(kind);
            let mut keygen = std::process::Command::new("ssh-keygen");
            keygen.args(["-q", "-t", kind, "-N", "", "-C", "test@example", "-f"]);
            keygen.arg(&path);
            if let Some(bits) = bits {
                keygen.args(["-b", bits]);
            }
            assert!(keygen.status().expect("ssh-keygen runs").success());
            let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
            let key = parse_key(&public).unwrap();
            assert_eq!(key.openssh(), public.trim_end(), "{kind}");
            let listing = std::process::Command::new("ssh-keygen")
                .arg("-lf")
                .arg(path.with_extension("pub"))
                .output()
                .unwrap();
            let listing = String::from_utf8(listing.stdout).unwrap();
            let expected = listing.split_whitespace().nth(1).unwrap();
            assert_eq!(key.fingerprint(), expected, "{kind}");
        }
    }
}
