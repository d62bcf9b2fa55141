//! Why a `pipe-admin` command failed ([`AdminError`], with the exit status each failure
//! maps to), and the file-system steps that report their failures in its terms. A leaf:
//! the key directory's writer and the authorized_keys writer use it, and neither imports
//! the [`super::Admin`] facade that calls them.

use std::fs::{self, Permissions};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::atomic_file::{self, AtomicError};
use crate::exit::AdminExit;
use crate::keys::KeyError;
use crate::keys::dir::KeyDirError;

use super::keys::{BadKeyName, KeyName};
use crate::request::UserName;

/// Why a `pipe-admin` command failed. The `Display` text is the one-line message, without
/// the `pipe-admin: ` prefix; names typed by the admin are escaped.
#[derive(Debug, Error)]
pub enum AdminError {
    #[error("invalid user name: {0} (expected [a-z_][a-z0-9_-]{{0,31}}, not \"public\")")]
    BadUser(String),
    #[error("{0} is reserved: piped takes it for the host's administrator")]
    ReservedUser(String),
    #[error(transparent)]
    BadKeyName(#[from] BadKeyName),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("invalid forced command: {0} (printable ASCII without quotes or backslashes expected)")]
    BadForcedCommand(String),

    #[error("no such user: {0} (add it first: pipe-admin user add {0})")]
    UnknownUser(UserName),
    #[error("user {user} has no key {key}")]
    UnknownKey { user: UserName, key: String },

    #[error("user {0} already exists")]
    UserExists(UserName),
    #[error("key {fingerprint} is already registered as {user}/{name}")]
    DuplicateKey {
        fingerprint: String,
        user: UserName,
        name: KeyName,
    },
    #[error("user {user} already has a key named {name}")]
    NameTaken { user: UserName, name: KeyName },
    #[error(
        "key {fingerprint} is already authorized by line {line} of {}, outside the managed block (remove that line first)",
        path.display()
    )]
    ForeignKey {
        fingerprint: String,
        path: PathBuf,
        line: usize,
    },
    #[error(
        "key {fingerprint} is filed twice: {} and {} (remove one)",
        first.display(),
        second.display()
    )]
    DuplicateInKeyDir {
        fingerprint: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("{}: {reason}; fix the markers by hand, pipe-admin will not guess", path.display())]
    BrokenMarkers { path: PathBuf, reason: String },
    #[error("{} changed while pipe-admin was updating it; run the command again", .0.display())]
    ChangedMeanwhile(PathBuf),

    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{}: not a regular file (a symbolic link or directory is not replaced)", .0.display())]
    NotAFile(PathBuf),
    #[error("{}: {source}", path.display())]
    KeyFile { path: PathBuf, source: KeyError },
    #[error("{}: {reason}", path.display())]
    StrayEntry { path: PathBuf, reason: &'static str },
    #[error(
        "gave up after {seconds} s waiting for {} (is another pipe-admin stuck?)",
        path.display()
    )]
    LockTimeout { path: PathBuf, seconds: u64 },
    #[error("writing the output: {0}")]
    Output(io::Error),
}

impl AdminError {
    /// The exit status this failure ends `pipe-admin` with.
    pub fn exit(&self) -> AdminExit {
        match self {
            AdminError::BadUser(_)
            | AdminError::ReservedUser(_)
            | AdminError::BadKeyName(_)
            | AdminError::Key(_)
            | AdminError::BadForcedCommand(_) => AdminExit::Usage,
            AdminError::UnknownUser(_) | AdminError::UnknownKey { .. } => AdminExit::NotFound,
            AdminError::UserExists(_)
            | AdminError::DuplicateKey { .. }
            | AdminError::NameTaken { .. }
            | AdminError::ForeignKey { .. }
            | AdminError::DuplicateInKeyDir { .. }
            | AdminError::BrokenMarkers { .. }
            | AdminError::ChangedMeanwhile(_) => AdminExit::Conflict,
            AdminError::Io { .. }
            | AdminError::NotAFile(_)
            | AdminError::KeyFile { .. }
            | AdminError::StrayEntry { .. }
            | AdminError::LockTimeout { .. }
            | AdminError::Output(_) => AdminExit::Failure,
        }
    }
}

/// Reading the key directory failed: the same messages and exit codes as pipe-admin's own
/// I/O failures and stray entries.
impl From<KeyDirError> for AdminError {
    fn from(error: KeyDirError) -> Self {
        match error {
            KeyDirError::Io { path, source } => AdminError::Io {
                action: "reading",
                path,
                source,
            },
            KeyDirError::NotUtf8(path) => AdminError::StrayEntry {
                path,
                reason: "file name is not UTF-8",
            },
            KeyDirError::Key { path, source } => AdminError::KeyFile { path, source },
        }
    }
}

/// A failed atomic write: the same message as every other I/O failure, naming the step.
impl From<AtomicError> for AdminError {
    fn from(error: AtomicError) -> Self {
        AdminError::Io {
            action: error.step.action(),
            path: error.path,
            source: error.source,
        }
    }
}

pub(super) fn io_error(action: &'static str, path: &Path, source: io::Error) -> AdminError {
    AdminError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Creates `dir` and any missing parents, each with `mode` (whatever the umask).
pub(super) fn create_dirs(dir: &Path, mode: u32) -> Result<(), AdminError> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dirs(parent, mode)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        // Another pipe-admin (with another key directory) may have made it meanwhile.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(io_error("creating", dir, e)),
    }
    fs::set_permissions(dir, Permissions::from_mode(mode))
        .map_err(|e| io_error("setting the mode of", dir, e))
}

/// Makes a rename or removal in `dir` durable.
pub(super) fn sync_dir(dir: &Path) -> Result<(), AdminError> {
    atomic_file::sync_dir(dir).map_err(|e| io_error("syncing", dir, e))
}
