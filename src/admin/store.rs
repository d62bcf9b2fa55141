//! The key directory `<keys-dir>/<user>/<name>.pub`, the source of truth, and the lock that
//! serialises every `pipe-admin` change.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::atomic_file::{self, Perms};
use crate::keys::Key;
use crate::keys::dir::{self as layout, KEY_EXTENSION};
use crate::request::UserName;

use super::authorized_keys::key_line;
use super::error::{AdminError, create_dirs, io_error, sync_dir};
use super::keys::KeyName;

/// The lock file inside the key directory. A dot file, so it is never taken for a user.
pub const LOCK_FILE: &str = ".lock";

/// How long a change waits for another `pipe-admin` to finish. A change takes milliseconds;
/// a holder after 30 s is stuck, and failing beats hanging a provisioning script for ever.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// How often a waiting `pipe-admin` retries the lock: short next to one change, long enough
/// that 20 waiting processes cost nothing.
const LOCK_POLL: Duration = Duration::from_millis(5);

/// Mode of the key directory and of each user's directory: root writes, everyone may read
/// (public keys are not secret; a mode-3 `pipe-shell` reads them to map a key to a user).
pub const DIR_MODE: u32 = 0o755;

/// Mode of a key file: the same reasoning as [`DIR_MODE`].
pub const KEY_FILE_MODE: u32 = 0o644;

/// Mode of the lock file: only root (pipe-admin) needs it.
const LOCK_FILE_MODE: u32 = 0o600;

/// An exclusive hold on the key directory (and so on authorized_keys), released on drop.
#[derive(Debug)]
pub struct DirLock {
    _lock: Flock<File>,
}

/// Takes the exclusive lock on `<root>/.lock`, creating the key directory if needed.
/// Waits at most [`LOCK_TIMEOUT`].
pub fn lock(root: &Path) -> Result<DirLock, AdminError> {
    create_dirs(root, DIR_MODE)?;
    let path = root.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(LOCK_FILE_MODE)
        .open(&path)
        .map_err(|e| io_error("opening the lock", &path, e))?;
    let deadline = Instant::now() + LOCK_TIMEOUT;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(DirLock { _lock: lock }),
            Err((back, Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                file = back;
                std::thread::sleep(LOCK_POLL);
            }
            Err((_, Errno::EWOULDBLOCK)) => {
                return Err(AdminError::LockTimeout {
                    path,
                    seconds: LOCK_TIMEOUT.as_secs(),
                });
            }
            Err((_, errno)) => return Err(io_error("locking", &path, io::Error::from(errno))),
        }
    }
}

/// The key directory as loaded: users and their keys, sorted (users, then key names), which
/// is also the order of the managed block.
#[derive(Debug, Clone)]
pub struct KeyDir {
    root: PathBuf,
    users: BTreeMap<UserName, BTreeMap<KeyName, Key>>,
}

impl KeyDir {
    /// Reads every user directory and key file under `root` (a missing `root` has no users).
    /// Dot files are skipped (the lock, temporary files, directories being removed).
    /// Anything else that does not fit (a directory that is no user name, a `.pub` file that
    /// is no key, one key filed twice) is an error naming the path: the directory is the
    /// source of truth, so pipe-admin does not guess around it.
    pub fn load(root: &Path) -> Result<KeyDir, AdminError> {
        let mut dir = KeyDir {
            root: root.to_path_buf(),
            users: BTreeMap::new(),
        };
        for (name, path) in layout::entries(root)? {
            let metadata = fs::metadata(&path).map_err(|e| io_error("reading", &path, e))?;
            if !metadata.is_dir() {
                continue;
            }
            let user = UserName::new(&name).map_err(|_| AdminError::StrayEntry {
                path: path.clone(),
                reason: "not a valid user name",
            })?;
            let keys = load_user(&path)?;
            dir.users.insert(user, keys);
        }
        dir.check_unique()?;
        Ok(dir)
    }

    fn check_unique(&self) -> Result<(), AdminError> {
        let mut seen: BTreeMap<&str, PathBuf> = BTreeMap::new();
        for (user, keys) in &self.users {
            for (name, key) in keys {
                let path = self.key_path(user, name);
                if let Some(first) = seen.insert(key.fingerprint(), path.clone()) {
                    return Err(AdminError::DuplicateInKeyDir {
                        fingerprint: key.fingerprint().to_string(),
                        first,
                        second: path,
                    });
                }
            }
        }
        Ok(())
    }

    pub fn users(&self) -> impl Iterator<Item = &UserName> {
        self.users.keys()
    }

    pub fn keys(&self, user: &UserName) -> Option<&BTreeMap<KeyName, Key>> {
        self.users.get(user)
    }

    /// Every key, sorted by user, then key name.
    pub fn all_keys(&self) -> impl Iterator<Item = (&UserName, &KeyName, &Key)> {
        self.users
            .iter()
            .flat_map(|(user, keys)| keys.iter().map(move |(name, key)| (user, name, key)))
    }

    /// The user and key name that hold `fingerprint`, if any.
    pub fn owner_of(&self, fingerprint: &str) -> Option<(&UserName, &KeyName)> {
        self.all_keys()
            .find(|(_, _, key)| key.fingerprint() == fingerprint)
            .map(|(user, name, _)| (user, name))
    }

    pub fn contains_fingerprint(&self, fingerprint: &str) -> bool {
        self.owner_of(fingerprint).is_some()
    }

    pub fn user_dir(&self, user: &UserName) -> PathBuf {
        self.root.join(user.as_str())
    }

    pub fn key_path(&self, user: &UserName, name: &KeyName) -> PathBuf {
        self.user_dir(user).join(format!("{name}{KEY_EXTENSION}"))
    }

    /// The managed block's key lines, in directory order.
    pub fn block_lines(&self, forced_command: &str) -> Vec<String> {
        self.all_keys()
            .map(|(user, _, key)| key_line(forced_command, user, key))
            .collect()
    }

    /// Records a user in memory (after its directory was made).
    pub fn insert_user(&mut self, user: UserName) {
        self.users.entry(user).or_default();
    }

    pub fn remove_user(&mut self, user: &UserName) -> Option<BTreeMap<KeyName, Key>> {
        self.users.remove(user)
    }

    pub fn insert_key(&mut self, user: &UserName, name: KeyName, key: Key) {
        self.users
            .entry(user.clone())
            .or_default()
            .insert(name, key);
    }

    pub fn remove_key(&mut self, user: &UserName, name: &KeyName) -> Option<Key> {
        self.users.get_mut(user)?.remove(name)
    }
}

/// One user's keys: every `<name>.pub` file in `dir`.
fn load_user(dir: &Path) -> Result<BTreeMap<KeyName, Key>, AdminError> {
    let mut keys = BTreeMap::new();
    for (file_name, path) in layout::entries(dir)? {
        let Some(stem) = layout::key_file_stem(&file_name) else {
            continue;
        };
        let name = KeyName::new(stem).map_err(|_| AdminError::StrayEntry {
            path: path.clone(),
            reason: "not a valid key name",
        })?;
        keys.insert(name, layout::read_key(&path)?);
    }
    Ok(keys)
}

/// Writes `<dir>/<name>.pub` (mode [`KEY_FILE_MODE`]) atomically, never over an existing
/// file.
pub fn write_key_file(path: &Path, key: &Key) -> Result<(), AdminError> {
    let perms = Perms {
        mode: Some(KEY_FILE_MODE),
        owner: None,
    };
    atomic_file::write_new(path, perms, |file| writeln!(file, "{}", key.openssh()))?;
    Ok(())
}

/// Removes a file and makes the removal durable.
pub fn remove_file(path: &Path) -> Result<(), AdminError> {
    fs::remove_file(path).map_err(|e| io_error("removing", path, e))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Removes a user's directory: first renamed to a dot name (one atomic step, after which
/// the user is gone for every reader), then deleted with whatever it holds.
pub fn remove_user_dir(root: &Path, user: &UserName) -> Result<(), AdminError> {
    let dir = root.join(user.as_str());
    let aside = root.join(format!(".{user}.removed"));
    if aside.exists() {
        // A leftover of an interrupted removal: nobody reads dot entries, it can go.
        fs::remove_dir_all(&aside).map_err(|e| io_error("removing", &aside, e))?;
    }
    fs::rename(&dir, &aside).map_err(|e| io_error("removing", &dir, e))?;
    sync_dir(root)?;
    fs::remove_dir_all(&aside).map_err(|e| io_error("removing", &aside, e))
}

/// Creates a user's directory with [`DIR_MODE`].
pub fn create_user_dir(path: &Path) -> Result<(), AdminError> {
    fs::create_dir(path).map_err(|e| io_error("creating", path, e))?;
    fs::set_permissions(path, Permissions::from_mode(DIR_MODE))
        .map_err(|e| io_error("setting the mode of", path, e))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILM+rvN+ot98qgEN796jTiQfZfG1KaT0PtFDJ/XFSqti c";

    #[test]
    fn a_missing_directory_has_no_users() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = KeyDir::load(&tmp.path().join("nope")).unwrap();
        assert_eq!(dir.users().count(), 0);
    }

    #[test]
    fn stray_entries_and_bad_key_files_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs::create_dir(root.join("alice")).unwrap();
        fs::write(root.join("alice/notes.txt"), "not a key, ignored").unwrap();
        fs::write(root.join("README"), "ignored").unwrap();
        fs::write(root.join("alice/laptop.pub"), format!("{KEY}\n")).unwrap();
        let dir = KeyDir::load(root).unwrap();
        assert_eq!(dir.all_keys().count(), 1);

        fs::write(root.join("alice/bad.pub"), "ssh-ed25519 AAAA\n").unwrap();
        let error = KeyDir::load(root).unwrap_err();
        assert!(matches!(error, AdminError::KeyFile { .. }), "{error}");
        fs::remove_file(root.join("alice/bad.pub")).unwrap();

        fs::create_dir(root.join("bob")).unwrap();
        fs::write(root.join("bob/same.pub"), format!("{KEY}\n")).unwrap();
        let error = KeyDir::load(root).unwrap_err();
        assert!(
            matches!(error, AdminError::DuplicateInKeyDir { .. }),
            "{error}"
        );
        fs::remove_dir_all(root.join("bob")).unwrap();

        fs::create_dir(root.join("Not-A-User")).unwrap();
        let error = KeyDir::load(root).unwrap_err();
        assert!(matches!(error, AdminError::StrayEntry { .. }), "{error}");
    }
}
