//! The service account's authorized_keys: the managed block between two marker lines, the
//! key lines in it, and the atomic rewrite that leaves every other line as it was.

use std::fs::{self, Metadata};
use std::io::{self, Write};
use std::ops::RangeInclusive;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::atomic_file::{self, Perms};
use crate::keys::{self, Key};
use crate::request::UserName;

use super::error::{AdminError, create_dirs, io_error};

/// First line of the managed block. It says what happens to hand edits made inside it.
pub const BEGIN: &str = "# BEGIN pipe-admin managed block: edits inside are overwritten";

/// Last line of the managed block.
pub const END: &str = "# END pipe-admin managed block";

/// Mode of an authorized_keys file pipe-admin creates: root-owned and not group- or
/// world-writable, as sshd's `StrictModes` demands; readable, since public keys are not
/// secret and the service account must not be able to change its own keys.
pub const NEW_FILE_MODE: u32 = 0o644;

/// Mode of directories pipe-admin creates on the way to authorized_keys (the `.ssh`
/// directory): the same reasoning as [`NEW_FILE_MODE`].
pub const NEW_DIR_MODE: u32 = 0o755;

/// The forced command, user and key, as one authorized_keys line:
/// `restrict,command="CMD --user USER --key SHA256:…" <type> <base64> <comment>`.
///
/// Nothing in it needs quoting: `forced_command` was checked by [`check_forced_command`],
/// user names and fingerprints have safe alphabets, and the key was re-serialised with a
/// tamed comment.
pub fn key_line(forced_command: &str, user: &UserName, key: &Key) -> String {
    format!(
        "restrict,command=\"{forced_command} --user {user} --key {fingerprint}\" {openssh}",
        fingerprint = key.fingerprint(),
        openssh = key.openssh(),
    )
}

/// The forced command goes inside `command="…"`: a quote, a backslash or a control character
/// would end the option or the line, so they are refused rather than escaped.
pub fn check_forced_command(command: &str) -> Result<(), AdminError> {
    let printable = command.bytes().all(|b| (0x20..=0x7e).contains(&b));
    if command.trim().is_empty() || !printable || command.contains(['"', '\\']) {
        return Err(AdminError::BadForcedCommand(crate::exit::escape(
            command.as_bytes(),
        )));
    }
    Ok(())
}

/// An authorized_keys file as read: its bytes (none if it does not exist yet) and where the
/// managed block sits in them.
#[derive(Debug)]
pub struct AuthorizedKeys {
    path: PathBuf,
    content: Vec<u8>,
    metadata: Option<Metadata>,
    lines: Vec<RangeOfLine>,
    block: Option<RangeInclusive<usize>>,
}

/// Byte range of one line in the file, its line end included.
type RangeOfLine = std::ops::Range<usize>;

/// A line outside the managed block whose key is also a managed key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignKey {
    /// 1-based line number in the file.
    pub line: usize,
    pub fingerprint: String,
}

impl AuthorizedKeys {
    /// Reads `path` (a missing file is an empty one) and finds the markers. Refuses a
    /// symbolic link (pipe-admin runs as root and writes where it is told, not where a link
    /// points) and markers it cannot make sense of.
    pub fn read(path: &Path) -> Result<AuthorizedKeys, AdminError> {
        match read_regular(path)? {
            Some((metadata, content)) => Self::parse(path, content, Some(metadata)),
            None => Self::parse(path, Vec::new(), None),
        }
    }

    fn parse(
        path: &Path,
        content: Vec<u8>,
        metadata: Option<Metadata>,
    ) -> Result<AuthorizedKeys, AdminError> {
        let mut lines = Vec::new();
        let mut start = 0;
        for piece in content.split_inclusive(|&b| b == b'\n') {
            lines.push(start..start + piece.len());
            start += piece.len();
        }
        let is = |range: &RangeOfLine, marker: &str| {
            content[range.clone()].trim_ascii_end() == marker.as_bytes()
        };
        let begins: Vec<usize> = (0..lines.len()).filter(|&i| is(&lines[i], BEGIN)).collect();
        let ends: Vec<usize> = (0..lines.len()).filter(|&i| is(&lines[i], END)).collect();
        let broken = |reason: &str| AdminError::BrokenMarkers {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        let block = match (begins.as_slice(), ends.as_slice()) {
            ([], []) => None,
            ([begin], [end]) if begin < end => Some(*begin..=*end),
            ([_], [_]) => return Err(broken("the END marker comes before the BEGIN marker")),
            ([_], []) => return Err(broken("a BEGIN marker without an END marker")),
            ([], [_]) => return Err(broken("an END marker without a BEGIN marker")),
            _ => return Err(broken("more than one managed block")),
        };
        Ok(AuthorizedKeys {
            path: path.to_path_buf(),
            content,
            metadata,
            lines,
            block,
        })
    }

    /// The file with its managed block replaced by `block_lines` (or appended, if it had
    /// none). Every line outside the block is kept byte for byte and in place; only a missing
    /// final newline before an appended block is added, so the marker starts its own line.
    pub fn render(&self, block_lines: &[String]) -> Vec<u8> {
        let (before, after) = match &self.block {
            Some(block) => (
                &self.content[..self.lines[*block.start()].start],
                &self.content[self.lines[*block.end()].end..],
            ),
            None => (&self.content[..], &[][..]),
        };
        let mut out = before.to_vec();
        if !out.is_empty() && !out.ends_with(b"\n") {
            out.push(b'\n');
        }
        for line in std::iter::once(BEGIN)
            .chain(block_lines.iter().map(String::as_str))
            .chain(std::iter::once(END))
        {
            out.extend_from_slice(line.as_bytes());
            out.push(b'\n');
        }
        out.extend_from_slice(after);
        out
    }

    /// Whether the file exists and holds exactly what [`render`](Self::render) makes of
    /// `block_lines`: then the block is current and a rewrite would change nothing.
    pub fn holds(&self, block_lines: &[String]) -> bool {
        self.metadata.is_some() && self.block.is_some() && self.render(block_lines) == self.content
    }

    /// The lines outside the managed block (markers and block lines excluded), as
    /// `(1-based line number, text)`; a line that is not UTF-8 comes back lossily.
    pub fn foreign_lines(&self) -> impl Iterator<Item = (usize, String)> + '_ {
        self.lines
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.block.as_ref().is_some_and(|block| block.contains(i)))
            .map(|(i, range)| {
                let text = String::from_utf8_lossy(&self.content[range.clone()]);
                (i + 1, text.trim_end_matches(['\n', '\r']).to_string())
            })
    }

    /// Lines outside the block that authorize one of `fingerprints`: sshd takes the first
    /// line that matches a key, so such a line would decide (or share) that key's access.
    pub fn foreign_keys(&self, managed: impl Fn(&str) -> bool) -> Vec<ForeignKey> {
        let in_block = |i: usize| self.block.as_ref().is_some_and(|block| block.contains(&i));
        let mut found = Vec::new();
        for (i, range) in self.lines.iter().enumerate() {
            let Ok(line) = std::str::from_utf8(&self.content[range.clone()]) else {
                continue;
            };
            if in_block(i) {
                continue;
            }
            if let Some(public) = keys::parse_authorized_line(line) {
                let fingerprint = keys::fingerprint(&public);
                if managed(&fingerprint) {
                    found.push(ForeignKey {
                        line: i + 1,
                        fingerprint,
                    });
                }
            }
        }
        found
    }

    /// Replaces the file with `new` atomically: a temporary file in the same directory with
    /// the old file's owner and mode (or root's [`NEW_FILE_MODE`] for a new file), written
    /// and fsynced, renamed over the old one, then the directory fsynced. Refuses if the file
    /// changed since it was read (someone else edited it meanwhile). Nothing is written when
    /// `new` is what the file already holds.
    pub fn write(&self, new: &[u8]) -> Result<(), AdminError> {
        if self.metadata.is_some() && new == self.content.as_slice() {
            return Ok(());
        }
        create_dirs(atomic_file::dir_of(&self.path), NEW_DIR_MODE)?;
        let perms = match &self.metadata {
            Some(old) => Perms {
                mode: Some(old.mode() & 0o7777),
                owner: Some((old.uid(), old.gid())),
            },
            None => Perms {
                mode: Some(NEW_FILE_MODE),
                owner: None,
            },
        };
        let staged = atomic_file::stage(&self.path, perms, |file| file.write_all(new))?;
        self.check_unchanged()?;
        staged.replace()?;
        Ok(())
    }

    /// gitolite's guard: if the file is not what was read, another writer was at work, and
    /// renaming over it would lose their change.
    fn check_unchanged(&self) -> Result<(), AdminError> {
        let now = read_regular(&self.path)?.map(|(_, content)| content);
        let before = self.metadata.as_ref().map(|_| &self.content);
        if now.as_ref() != before {
            return Err(AdminError::ChangedMeanwhile(self.path.clone()));
        }
        Ok(())
    }
}

/// Reads a regular file's metadata and contents through one descriptor opened without
/// following a symbolic link, so what is checked is what is read (a link swapped in
/// between a check by path and a read by path would be followed). `None`: no such file.
fn read_regular(path: &Path) -> Result<Option<(Metadata, Vec<u8>)>, AdminError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    // O_NONBLOCK: opening a FIFO planted there must not hang; regular files ignore it.
    let flags = nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK;
    let mut file = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits())
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        // ELOOP: the last component is a symbolic link.
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
            return Err(AdminError::NotAFile(path.to_path_buf()));
        }
        Err(e) => return Err(io_error("reading", path, e)),
    };
    let metadata = file.metadata().map_err(|e| io_error("reading", path, e))?;
    if !metadata.is_file() {
        return Err(AdminError::NotAFile(path.to_path_buf()));
    }
    let mut content = Vec::new();
    file.read_to_end(&mut content)
        .map_err(|e| io_error("reading", path, e))?;
    Ok(Some((metadata, content)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_regular_file_is_read_never_through_a_link_nor_a_fifo() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        fs::write(&real, "ssh-ed25519 AAAA x\n").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(matches!(
            AuthorizedKeys::read(&link),
            Err(AdminError::NotAFile(_))
        ));
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert!(
            matches!(AuthorizedKeys::read(&fifo), Err(AdminError::NotAFile(_))),
            "refused at once, not blocked opening it"
        );
        assert!(AuthorizedKeys::read(&dir.path().join("missing")).is_ok());
        assert!(AuthorizedKeys::read(&real).is_ok());
    }

    fn from_text(text: &str) -> Result<AuthorizedKeys, AdminError> {
        AuthorizedKeys::parse(Path::new("ak"), text.as_bytes().to_vec(), None)
    }

    fn block(lines: &[&str]) -> String {
        let mut s = format!("{BEGIN}\n");
        for line in lines {
            s.push_str(line);
            s.push('\n');
        }
        s.push_str(END);
        s.push('\n');
        s
    }

    fn render(text: &str, lines: &[&str]) -> String {
        let owned: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
        String::from_utf8(from_text(text).unwrap().render(&owned)).unwrap()
    }

    #[test]
    fn a_new_file_gets_just_the_block() {
        assert_eq!(render("", &["k1"]), block(&["k1"]));
        assert_eq!(render("", &[]), block(&[]));
    }

    #[test]
    fn foreign_lines_without_a_block_stay_and_the_block_is_appended() {
        let foreign = "# admin's own key\r\nssh-ed25519 AAAA root@box\n\n";
        assert_eq!(
            render(foreign, &["k"]),
            format!("{foreign}{}", block(&["k"]))
        );
        // A last line without a newline gets one, so the marker starts its own line.
        assert_eq!(
            render("ssh-rsa AAAA x", &["k"]),
            format!("ssh-rsa AAAA x\n{}", block(&["k"]))
        );
    }

    #[test]
    fn foreign_lines_before_and_after_the_block_stay_in_place() {
        let before = "ssh-ed25519 AAAA one\n#  spaced   comment \t\n";
        let after = "\nssh-ed25519 BBBB two\nno newline at the end";
        let old = format!(
            "{before}{}{after}",
            block(&["old1", "garbage \x01", "old2"])
        );
        let new = render(&old, &["new"]);
        assert_eq!(new, format!("{before}{}{after}", block(&["new"])));
        // Rendering again with the same lines changes nothing.
        assert_eq!(render(&new, &["new"]), new);
    }

    #[test]
    fn markers_with_trailing_whitespace_or_crlf_are_still_markers() {
        let old = format!("x\n{BEGIN} \r\nold\n{END}\r\ny\n");
        assert_eq!(render(&old, &["k"]), format!("x\n{}y\n", block(&["k"])));
    }

    #[test]
    fn broken_markers_are_refused() {
        for text in [
            format!("{BEGIN}\nk\n"),
            format!("k\n{END}\n"),
            format!("{END}\n{BEGIN}\n"),
            format!("{}{}", block(&["a"]), block(&["b"])),
            format!("{BEGIN}\n{BEGIN}\n{END}\n"),
        ] {
            assert!(
                matches!(from_text(&text), Err(AdminError::BrokenMarkers { .. })),
                "{text:?}"
            );
        }
    }

    #[test]
    fn foreign_keys_are_found_outside_the_block_only() {
        let key =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILM+rvN+ot98qgEN796jTiQfZfG1KaT0PtFDJ/XFSqti";
        let fp = "SHA256:UCUiLr7Pjs9wFFJMDByLgc3NrtdU344OgUM45wZPcIQ";
        let text = format!(
            "# c\nno-pty {key} x\n{}{key}\n",
            block(&[&format!("restrict {key}")])
        );
        let file = from_text(&text).unwrap();
        let found: Vec<usize> = file
            .foreign_keys(|f| f == fp)
            .iter()
            .map(|k| k.line)
            .collect();
        assert_eq!(found, vec![2, 6]);
        assert!(file.foreign_keys(|_| false).is_empty());
    }

    #[test]
    fn forced_commands_that_could_break_the_line_are_refused() {
        check_forced_command("/usr/bin/pipe-shell").unwrap();
        check_forced_command("/p/pipe-shell --socket /tmp/x/piped.sock").unwrap();
        for bad in ["", "  ", "/bin/x\" ssh-rsa", "a\\b", "a\nb", "a\tb", "é"] {
            assert!(check_forced_command(bad).is_err(), "{bad:?}");
        }
    }
}
