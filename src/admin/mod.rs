//! `pipe-admin`: users and their SSH keys, and the service account's authorized_keys.
//!
//! Run as root. The key directory is the source of truth; authorized_keys is derived from it.
//!
//! ```text
//! pipe-admin user add alice
//! pipe-admin key add alice ~/alice.pub            # or: ... key add alice < alice.pub
//! pipe-admin key list
//! alice alice-laptop SHA256:UCUiLr7Pjs9wFFJMDByLgc3NrtdU344OgUM45wZPcIQ ssh-ed25519 alice@laptop
//! pipe-admin key remove alice alice-laptop        # or the fingerprint
//! pipe-admin user remove alice                    # and all her keys
//! pipe-admin sync                                 # rewrite the block from the directory
//! pipe-admin doctor                               # check sshd, account, socket, keys
//! ```
//!
//! # Files
//!
//! - **Key directory** (`--keys-dir`, default `/etc/pipe/keys`, mode 0755):
//!   `<user>/<name>.pub` (directories 0755, files 0644), each file one OpenSSH public key line
//!   `<type> <base64> [comment]` as pipe-admin re-serialised it. Users are
//!   `[a-z_][a-z0-9_-]{0,31}` and never `public`; key names `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`.
//!   Dot entries are pipe-admin's own (`.lock`, temporary files); other files in a user's
//!   directory that do not end in `.pub` are ignored. Anything else that does not fit is an
//!   error naming the path: pipe-admin never guesses around its source of truth.
//! - **authorized_keys** (`--authorized-keys`, default `/var/lib/pipe/.ssh/authorized_keys`,
//!   the home of the `pipe` service account): every change regenerates one block from the
//!   whole key directory, sorted by user, then key name:
//!
//!   ```text
//!   # BEGIN pipe-admin managed block: edits inside are overwritten
//!   restrict,command="/usr/bin/pipe-shell --user alice --key SHA256:…" ssh-ed25519 AAAA… alice@laptop
//!   # END pipe-admin managed block
//!   ```
//!
//!   Lines outside the block are kept byte for byte and in place; a file without a block gets
//!   it appended. A file whose markers do not pair up (a BEGIN without an END, two blocks, …)
//!   is refused, not repaired.
//!
//! # Exit codes
//!
//! [`AdminExit`](crate::exit::AdminExit), as pipe-admin(8) lists them (EXIT STATUS); each
//! [`AdminError`] says which ([`AdminError::exit`]).
//!
//! Every failure prints one line on stderr starting with `pipe-admin: `. `doctor` is the
//! exception: it prints its findings on stdout and exits 1 when any check failed
//! ([`doctor`]).
//!
//! # Behaviour in detail
//!
//! - **Safety of a change**: an exclusive `flock` on `<keys-dir>/.lock` serialises every
//!   change (waiting at most [`store::LOCK_TIMEOUT`]); key files and authorized_keys are
//!   written as a temporary file in the same directory, fsynced, renamed into place, and the
//!   directory fsynced. An existing authorized_keys keeps its owner and mode; a new one is
//!   created 0644 by root, with missing parent directories 0755 (sshd's `StrictModes`
//!   accepts that, and the service account cannot change its own keys). If authorized_keys
//!   changed between read and rename (another tool edited it), the change is refused
//!   (exit 4) rather than lose that edit. A symbolic link at the authorized_keys path is
//!   refused: root writes where it is told, not where a link points.
//! - **An unchanged file is not rewritten**: when the regenerated block is what the file
//!   already holds, nothing is written (no new mtime, no rename).
//! - **Listing takes no lock**: every change appears in one rename, so `user list` and
//!   `key list` (also `--json`) always read a consistent directory. `rm` and `ls` are
//!   aliases of `remove` and `list`.
//! - **Order of writes, failing closed**: adding writes the key file first, then
//!   authorized_keys (and removes the key file again if that fails); removing rewrites
//!   authorized_keys first, then deletes the files. A crash in between leaves a key listed
//!   but not yet (or still) usable, never usable but unlisted; `pipe-admin sync` repairs it.
//! - **Keys**: parsed with the `ssh-key` crate and re-serialised, so only `<type> <base64>`
//!   and a comment reach the file. Refused: private keys, options in front of the key,
//!   more than one key, certificates, DSA and unknown types, RSA under 1024 bits. Blank and
//!   `#` lines around the key are ignored. The comment keeps printable ASCII except `"` and
//!   `\` (anything else becomes `_`) and is cut to 256 bytes.
//! - **Duplicates**: a fingerprint is refused when any user holds it (naming that user and
//!   key), and when a line outside the managed block already authorizes it (sshd takes the
//!   first matching line, so that line would decide who the key is). `sync` and the other
//!   changes only warn about such foreign lines, since they add no key.
//! - **Key names**: `--name` when given (taken: exit 4); otherwise made from the comment
//!   (`alice@laptop` → `alice-laptop`) when that is a valid, free name, else the first free
//!   `key-N`.
//! - **`key add` needs the user**: an unknown user is exit 3 with the hint
//!   `pipe-admin user add USER`, so a typo in a user name cannot create an account.
//! - **`user add` of an existing user** is exit 4; `user remove` deletes the user's whole
//!   directory (keys and any other files in it).
//! - **`key add` prints** the new key's `key list` line, so the chosen name is visible; the
//!   other changes print nothing.
//! - **Configuration**: flags only (`--keys-dir`, `--authorized-keys`, `--forced-command`);
//!   the forced command must be printable ASCII without `"` or `\`, since it sits inside
//!   `command="…"` unescaped.

pub mod authorized_keys;
pub mod cli;
pub mod doctor;
pub mod error;
pub mod keys;
pub mod store;

use std::fs;
use std::path::PathBuf;

use serde::Serialize;

use crate::exit::escape;
use crate::keys::{FINGERPRINT_PREFIX, Key, parse_key};
use crate::request::UserName;

use self::keys::KeyName;
use authorized_keys::AuthorizedKeys;
use store::KeyDir;

pub use error::AdminError;
use error::io_error;

/// One key as `key list` shows it: `USER NAME FINGERPRINT TYPE COMMENT`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    pub user: String,
    pub name: String,
    pub fingerprint: String,
    #[serde(rename = "type")]
    pub key_type: String,
    pub comment: String,
}

impl KeyInfo {
    fn new(user: &UserName, name: &KeyName, key: &Key) -> KeyInfo {
        KeyInfo {
            user: user.to_string(),
            name: name.to_string(),
            fingerprint: key.fingerprint().to_string(),
            key_type: key.algorithm(),
            comment: key.comment().to_string(),
        }
    }
}

impl std::fmt::Display for KeyInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {} {}",
            self.user, self.name, self.fingerprint, self.key_type
        )?;
        if !self.comment.is_empty() {
            write!(f, " {}", self.comment)?;
        }
        Ok(())
    }
}

/// Something worth saying about a change that still succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning(pub String);

/// Where pipe-admin keeps keys and what it writes.
#[derive(Debug, Clone)]
pub struct Admin {
    pub keys_dir: PathBuf,
    pub authorized_keys: PathBuf,
    pub forced_command: String,
}

/// A change in progress: the lock held, the directory and authorized_keys as read under it.
struct Change {
    _lock: store::DirLock,
    dir: KeyDir,
    file: AuthorizedKeys,
}

impl Admin {
    /// Checks the settings that end up inside every key line.
    pub fn new(
        keys_dir: PathBuf,
        authorized_keys: PathBuf,
        forced_command: String,
    ) -> Result<Admin, AdminError> {
        authorized_keys::check_forced_command(&forced_command)?;
        Ok(Admin {
            keys_dir,
            authorized_keys,
            forced_command,
        })
    }

    /// Locks, then reads the key directory and authorized_keys; refuses early (before any
    /// change) when either is in a state not to touch.
    fn begin(&self) -> Result<Change, AdminError> {
        let lock = store::lock(&self.keys_dir)?;
        let dir = KeyDir::load(&self.keys_dir)?;
        let file = AuthorizedKeys::read(&self.authorized_keys)?;
        Ok(Change {
            _lock: lock,
            dir,
            file,
        })
    }

    /// Rewrites authorized_keys from `dir`; warns about foreign lines holding managed keys.
    fn commit(&self, file: &AuthorizedKeys, dir: &KeyDir) -> Result<Vec<Warning>, AdminError> {
        file.write(&file.render(&dir.block_lines(&self.forced_command)))?;
        Ok(file
            .foreign_keys(|fingerprint| dir.contains_fingerprint(fingerprint))
            .into_iter()
            .map(|foreign| {
                let (user, name) = dir
                    .owner_of(&foreign.fingerprint)
                    .map(|(u, n)| (u.to_string(), n.to_string()))
                    .unwrap_or_default();
                Warning(format!(
                    "line {} of {} also authorizes {user}/{name} ({}), outside the managed block; sshd uses the first matching line",
                    foreign.line,
                    self.authorized_keys.display(),
                    foreign.fingerprint
                ))
            })
            .collect())
    }

    /// `user add`: creates the user's (empty) key directory.
    pub fn user_add(&self, user: &str) -> Result<Vec<Warning>, AdminError> {
        let user = user_name(user)?;
        // A pipe user named root would own root's namespace (root/…) and be taken for
        // the admin by name wherever names are compared (a drain's `admins`).
        if user.as_str() == RESERVED_USER {
            return Err(AdminError::ReservedUser(RESERVED_USER.to_string()));
        }
        let mut change = self.begin()?;
        if change.dir.keys(&user).is_some() {
            return Err(AdminError::UserExists(user));
        }
        let path = change.dir.user_dir(&user);
        store::create_user_dir(&path)?;
        change.dir.insert_user(user);
        self.commit(&change.file, &change.dir).inspect_err(|_| {
            // Undo, so the directory stays what authorized_keys was made from.
            let _ = fs::remove_dir(&path);
        })
    }

    /// `user remove`: takes the user's keys out of authorized_keys, then deletes the user's
    /// directory.
    pub fn user_remove(&self, user: &str) -> Result<Vec<Warning>, AdminError> {
        let user = user_name(user)?;
        let mut change = self.begin()?;
        if change.dir.remove_user(&user).is_none() {
            return Err(AdminError::UnknownUser(user));
        }
        let warnings = self.commit(&change.file, &change.dir)?;
        store::remove_user_dir(&self.keys_dir, &user)?;
        Ok(warnings)
    }

    /// `user list`: every user, sorted.
    pub fn user_list(&self) -> Result<Vec<String>, AdminError> {
        let dir = KeyDir::load(&self.keys_dir)?;
        Ok(dir.users().map(UserName::to_string).collect())
    }

    /// `key add`: files the key under `user` and authorizes it.
    pub fn key_add(
        &self,
        user: &str,
        text: &str,
        name: Option<&str>,
    ) -> Result<(KeyInfo, Vec<Warning>), AdminError> {
        let user = user_name(user)?;
        let name = name.map(KeyName::new).transpose()?;
        let key = parse_key(text)?;
        let mut change = self.begin()?;
        let Some(existing) = change.dir.keys(&user) else {
            return Err(AdminError::UnknownUser(user));
        };
        let name = match name {
            Some(name) if existing.contains_key(&name) => {
                return Err(AdminError::NameTaken { user, name });
            }
            Some(name) => name,
            None => free_name(existing, key.comment()),
        };
        if let Some((holder, held_as)) = change.dir.owner_of(key.fingerprint()) {
            return Err(AdminError::DuplicateKey {
                fingerprint: key.fingerprint().to_string(),
                user: holder.clone(),
                name: held_as.clone(),
            });
        }
        if let Some(foreign) = change
            .file
            .foreign_keys(|fingerprint| fingerprint == key.fingerprint())
            .first()
        {
            return Err(AdminError::ForeignKey {
                fingerprint: foreign.fingerprint.clone(),
                path: self.authorized_keys.clone(),
                line: foreign.line,
            });
        }
        let path = change.dir.key_path(&user, &name);
        store::write_key_file(&path, &key)?;
        let info = KeyInfo::new(&user, &name, &key);
        change.dir.insert_key(&user, name, key);
        let warnings = self.commit(&change.file, &change.dir).inspect_err(|_| {
            // Undo, so the directory stays what authorized_keys was made from.
            let _ = store::remove_file(&path);
        })?;
        Ok((info, warnings))
    }

    /// `key remove`: takes the key (by fingerprint, or by name) out of authorized_keys, then
    /// deletes its file.
    pub fn key_remove(&self, user: &str, key: &str) -> Result<Vec<Warning>, AdminError> {
        let user = user_name(user)?;
        let mut change = self.begin()?;
        let Some(keys) = change.dir.keys(&user) else {
            return Err(AdminError::UnknownUser(user));
        };
        let found = if key.starts_with(FINGERPRINT_PREFIX) {
            keys.iter()
                .find(|(_, k)| k.fingerprint() == key)
                .map(|(name, _)| name.clone())
        } else {
            KeyName::new(key)
                .ok()
                .filter(|name| keys.contains_key(name))
        };
        let Some(name) = found else {
            return Err(AdminError::UnknownKey {
                user,
                key: escape(key.as_bytes()),
            });
        };
        let path = change.dir.key_path(&user, &name);
        change.dir.remove_key(&user, &name);
        let warnings = self.commit(&change.file, &change.dir)?;
        store::remove_file(&path)?;
        Ok(warnings)
    }

    /// `key list [USER]`: the keys, sorted by user, then name.
    pub fn key_list(&self, user: Option<&str>) -> Result<Vec<KeyInfo>, AdminError> {
        let user = user.map(user_name).transpose()?;
        let dir = KeyDir::load(&self.keys_dir)?;
        if let Some(user) = &user
            && dir.keys(user).is_none()
        {
            return Err(AdminError::UnknownUser(user.clone()));
        }
        Ok(dir
            .all_keys()
            .filter(|(u, _, _)| user.as_ref().is_none_or(|wanted| wanted == *u))
            .map(|(u, n, k)| KeyInfo::new(u, n, k))
            .collect())
    }

    /// `sync`: rewrites the managed block from the key directory.
    pub fn sync(&self) -> Result<Vec<Warning>, AdminError> {
        let change = self.begin()?;
        self.commit(&change.file, &change.dir)
    }
}

/// The one user name pipe-admin never creates.
const RESERVED_USER: &str = "root";

/// A user name as typed, checked.
fn user_name(name: &str) -> Result<UserName, AdminError> {
    UserName::new(name).map_err(|_| AdminError::BadUser(escape(name.as_bytes())))
}

/// The name for a key added without `--name`: from its comment when that is free, else the
/// first free `key-N`.
fn free_name(existing: &std::collections::BTreeMap<KeyName, Key>, comment: &str) -> KeyName {
    if let Some(name) = KeyName::from_comment(comment)
        && !existing.contains_key(&name)
    {
        return name;
    }
    let mut n = 1;
    loop {
        let name = KeyName::numbered(n);
        if !existing.contains_key(&name) {
            return name;
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_names_prefer_the_comment_then_count() {
        let key = parse_key(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILM+rvN+ot98qgEN796jTiQfZfG1KaT0PtFDJ/XFSqti",
        )
        .unwrap();
        let mut existing = std::collections::BTreeMap::new();
        assert_eq!(
            free_name(&existing, "alice@laptop").as_str(),
            "alice-laptop"
        );
        existing.insert(KeyName::new("alice-laptop").unwrap(), key.clone());
        assert_eq!(free_name(&existing, "alice@laptop").as_str(), "key-1");
        existing.insert(KeyName::new("key-1").unwrap(), key);
        assert_eq!(free_name(&existing, "").as_str(), "key-2");
    }

    #[test]
    fn user_names_reuse_the_request_rules() {
        assert!(user_name("alice").is_ok());
        for bad in ["public", "Alice", "", "a/b", &"a".repeat(33)] {
            assert!(
                matches!(user_name(bad), Err(AdminError::BadUser(_))),
                "{bad}"
            );
        }
    }
}
