//! What doctor finds on this machine, gathered into plain data with no verdicts: every
//! process run, file read, `stat` and account lookup of doctor happens here, so that
//! [`judge`](super::judge) is a pure function of the [`Facts`] and can be tested without
//! root.
//!
//! A fact that only exists when an earlier one does (the account's home needs the
//! account; the connection needs a socket; the key directory needs a readable
//! authorized_keys) is gathered only then, the way the checks were always run.

use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::errno::Errno;
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, UnixAddr};
use nix::unistd::{Gid, User};

use super::setup::Doctor;
use crate::admin::authorized_keys::{AuthorizedKeys, ForeignKey};
use crate::admin::store::KeyDir;
use crate::keys;

/// The connection `sshd -T -C` evaluates `Match` blocks for: a login from this machine.
/// A `Match Address` block for remote networks is not seen; `Match User`/`Group` are.
const MATCH_CONNECTION: &str = "host=localhost,addr=127.0.0.1";

/// Shadow password database, for the locked-account check.
pub const SHADOW: &str = "/etc/shadow";

/// Everything doctor found, in the order the checks report on it.
#[derive(Debug, Clone)]
pub struct Facts {
    /// Whether doctor runs as root (it needs to, to read the shadow file and run `sshd -T`).
    pub root: bool,
    pub sshd: SshdRun,
    pub account: AccountLookup,
    pub socket: SocketFacts,
    pub authorized_keys: KeysFile,
}

/// What running `sshd -T` gave.
#[derive(Debug, Clone)]
pub enum SshdRun {
    /// The program could not be started: the error.
    NotRun(String),
    /// It ran and failed: what it said on stderr.
    Failed {
        stderr: String,
    },
    Settings(SshdSettings),
}

/// The effective settings `sshd -T` printed: lower-case keyword → its values, in order
/// (keywords such as `acceptenv` come once per value).
#[derive(Debug, Clone, Default)]
pub struct SshdSettings(Vec<(String, String)>);

impl SshdSettings {
    pub fn parse(text: &str) -> SshdSettings {
        SshdSettings(
            text.lines()
                .filter_map(|line| {
                    let (key, value) = line.split_once(' ').unwrap_or((line, ""));
                    (!key.is_empty()).then(|| (key.to_ascii_lowercase(), value.to_string()))
                })
                .collect(),
        )
    }

    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn is(&self, key: &str, value: &str) -> bool {
        self.get(key).is_some_and(|v| v.eq_ignore_ascii_case(value))
    }
}

/// The service account as the user database gave it.
#[derive(Debug, Clone)]
pub enum AccountLookup {
    /// The lookup itself failed: the error.
    Failed(String),
    Missing,
    Found(Account),
}

/// The service account as the system knows it.
#[derive(Debug, Clone)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    /// Primary and supplementary groups.
    pub groups: Vec<u32>,
    pub shell: PathBuf,
    pub home: PathBuf,
    /// `stat` of the home directory (following links), or why it failed.
    pub home_stat: Result<Stat, String>,
    /// The account's password field in [`SHADOW`]: `None` when it is not listed there, the
    /// error when the file could not be read.
    pub password: Result<Option<String>, String>,
}

impl Account {
    pub fn in_group(&self, gid: u32) -> bool {
        self.groups.contains(&gid)
    }

    /// Whether the account may write to a file or directory with this `stat` (mode bits of
    /// the class the kernel would pick; root may always).
    pub fn may_write(&self, stat: &Stat) -> bool {
        self.may(stat, 0o2)
    }

    fn may(&self, stat: &Stat, bit: u32) -> bool {
        let mode = stat.mode;
        if self.uid == 0 {
            true
        } else if stat.uid == self.uid {
            mode & (bit << 6) != 0
        } else if self.in_group(stat.gid) {
            mode & (bit << 3) != 0
        } else {
            mode & bit != 0
        }
    }
}

/// What `stat` says about a file, reduced to what the checks read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub kind: FileKind,
    /// Permission bits (`st_mode & 07777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// The group's name, or its number when it has none.
    pub group: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Dir,
    Socket,
    Other,
}

/// The broker's socket and its directory.
#[derive(Debug, Clone)]
pub struct SocketFacts {
    /// The directory the socket is in (`.` for a bare name).
    pub dir: PathBuf,
    pub dir_stat: Result<Stat, String>,
    pub socket: SocketFile,
}

/// The socket path, not following a link.
#[derive(Debug, Clone)]
pub enum SocketFile {
    Missing,
    /// `lstat` failed other than for a missing file: the error.
    Unreadable(String),
    /// Something other than a socket is there.
    NotSocket,
    Socket {
        stat: Stat,
        /// How a non-blocking connection went.
        connect: Result<(), Errno>,
    },
}

/// The authorized_keys file pipe-admin writes (`--authorized-keys`).
#[derive(Debug, Clone)]
pub enum KeysFile {
    Missing,
    /// pipe-admin could not read it: its error.
    Unreadable(String),
    Read(KeysFileFacts),
}

#[derive(Debug, Clone)]
pub struct KeysFileFacts {
    /// The file and the directory it is in, each with its `stat` (`None` when that failed).
    pub stats: Vec<(PathBuf, Option<Stat>)>,
    /// The lines outside the managed block.
    pub foreign_lines: Vec<ForeignLine>,
    /// Every key line outside the managed block, with its key's fingerprint.
    pub foreign_keys: Vec<ForeignKey>,
    /// The key directory (`--keys-dir`), or pipe-admin's error loading it.
    pub key_dir: Result<KeyDirFacts, String>,
}

/// One line outside the managed block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignLine {
    /// 1-based line number in the file.
    pub number: usize,
    pub text: String,
    /// Whether sshd would read a key on it.
    pub is_key: bool,
}

#[derive(Debug, Clone)]
pub struct KeyDirFacts {
    /// Every key, in directory order (the managed block's order).
    pub keys: Vec<ManagedKey>,
    /// Whether the file holds exactly the managed block the directory makes.
    pub block_current: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedKey {
    pub user: String,
    pub name: String,
    pub fingerprint: String,
}

impl KeyDirFacts {
    /// The user and key name that hold `fingerprint`, if any.
    pub fn owner_of(&self, fingerprint: &str) -> Option<&ManagedKey> {
        self.keys.iter().find(|key| key.fingerprint == fingerprint)
    }
}

/// The `-C` argument of `sshd -T`: a login of `user` from this machine.
pub fn match_spec(user: &str) -> String {
    format!("user={user},{MATCH_CONNECTION}")
}

/// Gathers every fact the checks of `doctor` read.
pub fn probe(doctor: &Doctor) -> Facts {
    Facts {
        root: nix::unistd::geteuid().is_root(),
        sshd: sshd(doctor),
        account: account(&doctor.service_user),
        socket: socket(&doctor.socket),
        authorized_keys: authorized_keys(doctor),
    }
}

fn sshd(doctor: &Doctor) -> SshdRun {
    let result = Command::new(&doctor.sshd)
        .arg("-T")
        .arg("-f")
        .arg(&doctor.sshd_config)
        .arg("-C")
        .arg(match_spec(&doctor.service_user))
        .stdin(Stdio::null())
        .output();
    match result {
        Err(e) => SshdRun::NotRun(e.to_string()),
        Ok(output) if !output.status.success() => SshdRun::Failed {
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        },
        Ok(output) => SshdRun::Settings(SshdSettings::parse(&String::from_utf8_lossy(
            &output.stdout,
        ))),
    }
}

fn account(name: &str) -> AccountLookup {
    let user = match User::from_name(name) {
        Ok(Some(user)) => user,
        Ok(None) => return AccountLookup::Missing,
        Err(e) => return AccountLookup::Failed(e.to_string()),
    };
    AccountLookup::Found(Account {
        groups: user_groups(&user),
        home_stat: fs::metadata(&user.dir)
            .map(|m| stat(&m))
            .map_err(|e| e.to_string()),
        password: shadow_field(Path::new(SHADOW), name).map_err(|e| e.to_string()),
        uid: user.uid.as_raw(),
        shell: user.shell,
        home: user.dir,
        name: user.name,
    })
}

fn socket(path: &Path) -> SocketFacts {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let socket = match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => SocketFile::Missing,
        Err(e) => SocketFile::Unreadable(e.to_string()),
        Ok(metadata) if !metadata.file_type().is_socket() => SocketFile::NotSocket,
        Ok(metadata) => SocketFile::Socket {
            stat: stat(&metadata),
            connect: connect(path),
        },
    };
    SocketFacts {
        dir: dir.to_path_buf(),
        dir_stat: fs::metadata(dir)
            .map(|m| stat(&m))
            .map_err(|e| e.to_string()),
        socket,
    }
}

fn authorized_keys(doctor: &Doctor) -> KeysFile {
    let path = &doctor.admin.authorized_keys;
    if !path.exists() {
        return KeysFile::Missing;
    }
    let file = match AuthorizedKeys::read(path) {
        Ok(file) => file,
        Err(e) => return KeysFile::Unreadable(e.to_string()),
    };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let stats = [Some(path.as_path()), dir]
        .into_iter()
        .flatten()
        .map(|p| (p.to_path_buf(), fs::metadata(p).ok().map(|m| stat(&m))))
        .collect();
    let key_dir = KeyDir::load(&doctor.admin.keys_dir)
        .map(|dir| KeyDirFacts {
            keys: dir
                .all_keys()
                .map(|(user, name, key)| ManagedKey {
                    user: user.to_string(),
                    name: name.to_string(),
                    fingerprint: key.fingerprint().to_string(),
                })
                .collect(),
            block_current: file.holds(&dir.block_lines(&doctor.admin.forced_command)),
        })
        .map_err(|e| e.to_string());
    KeysFile::Read(KeysFileFacts {
        stats,
        foreign_lines: file
            .foreign_lines()
            .map(|(number, text)| ForeignLine {
                number,
                is_key: keys::parse_authorized_line(&text).is_some(),
                text,
            })
            .collect(),
        foreign_keys: file.foreign_keys(|_| true),
        key_dir,
    })
}

fn stat(metadata: &fs::Metadata) -> Stat {
    let file_type = metadata.file_type();
    Stat {
        kind: if file_type.is_dir() {
            FileKind::Dir
        } else if file_type.is_socket() {
            FileKind::Socket
        } else {
            FileKind::Other
        },
        mode: metadata.mode() & 0o7777,
        uid: metadata.uid(),
        gid: metadata.gid(),
        group: group_name(metadata.gid()),
    }
}

/// The account's primary and supplementary groups.
fn user_groups(user: &User) -> Vec<u32> {
    let mut groups = vec![user.gid.as_raw()];
    if let Ok(name) = std::ffi::CString::new(user.name.as_str())
        && let Ok(list) = nix::unistd::getgrouplist(&name, user.gid)
    {
        groups.extend(list.iter().map(|g| g.as_raw()));
    }
    groups
}

fn group_name(gid: u32) -> String {
    nix::unistd::Group::from_gid(Gid::from_raw(gid))
        .ok()
        .flatten()
        .map(|g| g.name)
        .unwrap_or_else(|| gid.to_string())
}

/// The password field of `user` in a shadow file, if listed there.
fn shadow_field(shadow: &Path, user: &str) -> io::Result<Option<String>> {
    let text = fs::read_to_string(shadow)?;
    Ok(text.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next() == Some(user)).then(|| fields.next().unwrap_or("").to_string())
    }))
}

/// Connects to the broker's socket and closes again. Non-blocking, so a broker that has
/// stopped accepting (a full queue) is an answer rather than a hang.
fn connect(path: &Path) -> Result<(), Errno> {
    let fd = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let address = UnixAddr::new(path)?;
    socket::connect(fd.as_raw_fd(), &address)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sshd_output_is_read_by_keyword() {
        let s = SshdSettings::parse("acceptenv LANG\nacceptenv LC_*\nForceCommand /a b\nx\n");
        assert_eq!(s.all("acceptenv").collect::<Vec<_>>(), ["LANG", "LC_*"]);
        assert_eq!(s.get("forcecommand"), Some("/a b"));
        assert!(s.is("x", ""));
        assert!(s.get("missing").is_none());
    }

    #[test]
    fn shadow_fields_are_found_by_user() {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        fs::write(tmp.path(), "root:*:1::\npipe:!:2::\nx\n").unwrap();
        assert_eq!(
            shadow_field(tmp.path(), "pipe").unwrap().as_deref(),
            Some("!")
        );
        assert_eq!(shadow_field(tmp.path(), "nobody").unwrap(), None);
    }

    #[test]
    fn write_access_follows_the_class_the_kernel_picks() {
        let account = Account {
            name: "pipe".into(),
            uid: 1000,
            groups: vec![100, 200],
            shell: PathBuf::from("/bin/sh"),
            home: PathBuf::from("/var/lib/pipe"),
            home_stat: Err("unused".into()),
            password: Ok(None),
        };
        let stat = |uid, gid, mode| Stat {
            kind: FileKind::Other,
            mode,
            uid,
            gid,
            group: gid.to_string(),
        };
        // Owner class: only the owner bits count, even when group or other would allow.
        assert!(account.may_write(&stat(1000, 0, 0o200)));
        assert!(!account.may_write(&stat(1000, 200, 0o577)));
        // Group class, then other.
        assert!(account.may_write(&stat(0, 200, 0o020)));
        assert!(!account.may_write(&stat(0, 200, 0o757)));
        assert!(account.may_write(&stat(0, 300, 0o002)));
        assert!(!account.may_write(&stat(0, 300, 0o770)));
        let root = Account { uid: 0, ..account };
        assert!(root.may_write(&stat(5, 5, 0o000)));
    }
}
