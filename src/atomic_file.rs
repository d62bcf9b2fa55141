//! Replacing a file so that a reader, or a crash, sees the old contents or the new ones and
//! never a mix: a temporary file in the same directory (so the rename cannot cross file
//! systems) gets the contents, its owner and mode, and an fsync; then it is renamed into
//! place and the directory fsynced, so the rename itself survives a crash.
//!
//! One home for the three files written this way: key files and authorized_keys
//! (`pipe-admin`) and the grants file (`piped`).
//!
//! ```no_run
//! # fn main() -> Result<(), pipe::atomic_file::AtomicError> {
//! use std::io::Write;
//! use pipe::atomic_file::{self, Perms};
//! let perms = Perms { mode: Some(0o644), owner: None };
//! atomic_file::write("/etc/example".as_ref(), perms, |f| f.write_all(b"new\n"))?;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::fs::{File, Permissions};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;
use thiserror::Error;

/// Owner and mode for the new file. `None` keeps what the temporary file was made with: the
/// writing process's uid and gid, and mode 0600 (so a file not meant to be read by others
/// is never readable, not even briefly).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Perms {
    /// Permission bits, set after the owner (a change of owner may clear set-id bits).
    pub mode: Option<u32>,
    /// `(uid, gid)`.
    pub owner: Option<(u32, u32)>,
}

/// The step of an atomic write that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Creating the temporary file in the target's directory.
    CreateTemp,
    SetOwner,
    SetMode,
    /// Writing the contents or fsyncing them.
    Write,
    /// Renaming over the target.
    Replace,
    /// Linking into place where nothing may exist yet.
    CreateNew,
    /// Fsyncing the directory after the rename.
    SyncDir,
}

impl Step {
    /// The step as the first words of a message: `{action} {path}: {error}`.
    pub fn action(self) -> &'static str {
        match self {
            Step::CreateTemp => "creating a file in",
            Step::SetOwner => "setting the owner of",
            Step::SetMode => "setting the mode of",
            Step::Write => "writing",
            Step::Replace => "replacing",
            Step::CreateNew => "creating",
            Step::SyncDir => "syncing",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.action())
    }
}

/// An atomic write that failed: the step, the path it concerned (the directory, the
/// temporary file or the target, whichever the step acts on) and the system's error. The
/// target is untouched unless the step is [`Step::SyncDir`], when the new contents are in
/// place but the rename may not survive a crash.
#[derive(Debug, Error)]
#[error("{step} {}: {source}", path.display())]
pub struct AtomicError {
    pub step: Step,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

impl From<AtomicError> for io::Error {
    /// The system's error alone, for callers that report the path themselves.
    fn from(error: AtomicError) -> Self {
        error.source
    }
}

fn fail(step: Step, path: &Path) -> impl FnOnce(io::Error) -> AtomicError + '_ {
    move |source| AtomicError {
        step,
        path: path.to_path_buf(),
        source,
    }
}

/// The directory `path` is in: its parent, or `.` for a bare file name.
pub fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Makes a rename, creation or removal in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The new contents, written and fsynced next to their target but not yet in place.
/// Dropping it removes the temporary file and leaves the target as it was.
#[derive(Debug)]
pub struct Staged {
    temp: NamedTempFile,
    target: PathBuf,
}

/// Writes the new contents of `target` into a temporary file in its directory, with `perms`,
/// and fsyncs them. `write` gets the file; a short or failed write is its error to return.
/// Nothing is in place until [`Staged::replace`] or [`Staged::create_new`].
pub fn stage(
    target: &Path,
    perms: Perms,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<Staged, AtomicError> {
    let dir = dir_of(target);
    let mut temp = NamedTempFile::new_in(dir).map_err(fail(Step::CreateTemp, dir))?;
    if let Some((uid, gid)) = perms.owner {
        std::os::unix::fs::fchown(temp.as_file(), Some(uid), Some(gid))
            .map_err(fail(Step::SetOwner, temp.path()))?;
    }
    if let Some(mode) = perms.mode {
        temp.as_file()
            .set_permissions(Permissions::from_mode(mode))
            .map_err(fail(Step::SetMode, temp.path()))?;
    }
    write(temp.as_file_mut())
        .and_then(|()| temp.as_file().sync_all())
        .map_err(fail(Step::Write, temp.path()))?;
    Ok(Staged {
        temp,
        target: target.to_path_buf(),
    })
}

impl Staged {
    /// Renames the new contents over the target (which may or may not exist), then fsyncs
    /// the directory.
    pub fn replace(self) -> Result<(), AtomicError> {
        let target = self.target;
        self.temp
            .persist(&target)
            .map_err(|e| fail(Step::Replace, &target)(e.error))?;
        let dir = dir_of(&target);
        sync_dir(dir).map_err(fail(Step::SyncDir, dir))
    }

    /// Puts the new contents in place only if nothing is at the target yet (an existing
    /// file is an error of kind `AlreadyExists`, and stays as it was), then fsyncs the
    /// directory.
    pub fn create_new(self) -> Result<(), AtomicError> {
        let target = self.target;
        self.temp
            .persist_noclobber(&target)
            .map_err(|e| fail(Step::CreateNew, &target)(e.error))?;
        let dir = dir_of(&target);
        sync_dir(dir).map_err(fail(Step::SyncDir, dir))
    }
}

/// Atomically replaces (or creates) `target`: [`stage`], then [`Staged::replace`].
pub fn write(
    target: &Path,
    perms: Perms,
    contents: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<(), AtomicError> {
    stage(target, perms, contents)?.replace()
}

/// Atomically creates `target`, never over an existing file: [`stage`], then
/// [`Staged::create_new`].
pub fn write_new(
    target: &Path,
    perms: Perms,
    contents: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<(), AtomicError> {
    stage(target, perms, contents)?.create_new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn write_replaces_with_the_mode_given_or_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "old").unwrap();
        write(&path, Perms::default(), |f| f.write_all(b"new")).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o7777, 0o600);
        let perms = Perms {
            mode: Some(0o644),
            owner: None,
        };
        write(&path, perms, |f| f.write_all(b"newer")).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o7777, 0o644);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no leftovers"
        );
    }

    #[test]
    fn write_new_never_clobbers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_new(&path, Perms::default(), |f| f.write_all(b"one")).unwrap();
        let error = write_new(&path, Perms::default(), |f| f.write_all(b"two")).unwrap_err();
        assert_eq!(error.step, Step::CreateNew);
        assert_eq!(error.source.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no leftovers"
        );
    }

    #[test]
    fn a_failed_write_leaves_the_target_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "old").unwrap();
        let error = write(&path, Perms::default(), |_| Err(io::Error::other("boom"))).unwrap_err();
        assert_eq!(error.step, Step::Write);
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no leftovers"
        );
    }

    #[test]
    fn a_bare_file_name_is_in_the_current_directory() {
        assert_eq!(dir_of(Path::new("f")), Path::new("."));
        assert_eq!(dir_of(Path::new("/a/f")), Path::new("/a"));
    }
}
