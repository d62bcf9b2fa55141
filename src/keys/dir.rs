//! The key directory's layout, `<keys-dir>/<user>/<name>.pub`, each file one public key
//! line, and reading it: the lenient lookup `pipe-shell` makes for every key login
//! ([`find_owner`]) and the pieces `pipe-admin`'s strict loader is built from. Writing the
//! directory is `pipe-admin`'s alone (`admin::store`).
//!
//! Dot entries are pipe-admin's own (`.lock`, temporary files, directories being removed)
//! and are never read as users or keys; a missing directory has no entries.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::{Key, KeyError, parse_key, read_capped, text_of};
use crate::request::UserName;

/// Extension of key files; other files in a user's directory (notes, editor backups) are
/// left alone.
pub const KEY_EXTENSION: &str = ".pub";

/// Why part of the key directory could not be read. The `Display` text names the path.
#[derive(Debug, Error)]
pub enum KeyDirError {
    #[error("reading {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: file name is not UTF-8", .0.display())]
    NotUtf8(PathBuf),
    #[error("{}: {source}", path.display())]
    Key { path: PathBuf, source: KeyError },
}

/// The entries of `dir` that are not dot files, as (name, path). A missing `dir` is empty.
pub fn entries(dir: &Path) -> Result<Vec<(String, PathBuf)>, KeyDirError> {
    let io_error = |source| KeyDirError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let listing = match fs::read_dir(dir) {
        Ok(listing) => listing,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(e)),
    };
    let mut out = Vec::new();
    for entry in listing {
        let entry = entry.map_err(io_error)?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            return Err(KeyDirError::NotUtf8(path));
        };
        if !name.starts_with('.') {
            out.push((name, path));
        }
    }
    Ok(out)
}

/// The key name a file in a user's directory stands for: its name without
/// [`KEY_EXTENSION`]; `None` for a file that is not a key file.
pub fn key_file_stem(file_name: &str) -> Option<&str> {
    file_name.strip_suffix(KEY_EXTENSION)
}

/// The key in a key file, read through [`read_capped`] so an over-long file is refused
/// without being read whole.
pub fn read_key(path: &Path) -> Result<Key, KeyDirError> {
    let io_error = |source| KeyDirError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io_error)?;
    let bytes = read_capped(file).map_err(io_error)?;
    let key_error = |source| KeyDirError::Key {
        path: path.to_path_buf(),
        source,
    };
    let text = text_of(bytes).map_err(key_error)?;
    parse_key(&text).map_err(key_error)
}

/// The user whose directory holds a key with `fingerprint`, for pipe-shell's key logins
/// (`ExposeAuthInfo`). Unlike pipe-admin's strict loader it skips what it cannot read or
/// parse: one stray file must not refuse every login (`pipe-admin doctor` reports such
/// entries). A fingerprint filed under two users is ambiguous and matches nobody.
pub fn find_owner(root: &Path, fingerprint: &str) -> Option<UserName> {
    let mut found = None;
    for (name, dir) in entries(root).ok()? {
        let Ok(user) = UserName::new(&name) else {
            continue;
        };
        let Ok(files) = entries(&dir) else {
            continue;
        };
        for (file, path) in files {
            if key_file_stem(&file).is_none() {
                continue;
            }
            let Ok(key) = read_key(&path) else {
                continue;
            };
            if key.fingerprint() == fingerprint {
                if found.is_some() {
                    return None;
                }
                found = Some(user.clone());
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_owner_skips_stray_entries() {
        let root = tempfile::tempdir().unwrap();
        let key =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
        let fp = parse_key(key).unwrap().fingerprint().to_string();
        fs::create_dir_all(root.path().join("alice")).unwrap();
        fs::write(root.path().join("alice/laptop.pub"), format!("{key}\n")).unwrap();
        fs::write(root.path().join("alice/broken.pub"), "not a key\n").unwrap();
        fs::create_dir_all(root.path().join("Not.A.User")).unwrap();
        assert_eq!(
            find_owner(root.path(), &fp).map(|u| u.as_str().to_string()),
            Some("alice".into())
        );
        fs::create_dir_all(root.path().join("bob")).unwrap();
        fs::write(root.path().join("bob/same.pub"), format!("{key}\n")).unwrap();
        assert_eq!(find_owner(root.path(), &fp), None, "ambiguous");
    }
}
