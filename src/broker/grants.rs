//! Durable grants: who besides its owner may use a topic (pipe(1), `grant` and `revoke`).
//!
//! A grant belongs to `(owner, name)`, not to a live topic: it exists before the first
//! publish and after the last subscriber, so `ssh host sub alice/deploys` can wait for
//! alice's CI. The broker keeps all grants in one JSON file in its state directory,
//! rewritten atomically (temporary file, fsync, rename, fsync of the directory) on every
//! change, and read strictly at start: a file it cannot fully understand stops the broker
//! rather than silently granting or losing access.
//!
//! Every change is announced on a watch channel; sessions that use someone else's topic
//! re-check their access on each announcement, so a revocation cuts them at once.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::watch;

use super::identity::Identity;
use super::lock::lock;
use crate::request::{Grantee, TopicName, UserName};

/// The file in the state directory.
pub const GRANTS_FILE: &str = "grants.json";

/// Format version of the file; a newer one is refused, not misread.
const FILE_VERSION: u32 = 1;

/// Grant entries one owner may hold over all their topics (pipe(5), CAPS): generous for a
/// team, small enough that the file and every access check stay cheap.
pub const MAX_USER_GRANT_ENTRIES: usize = 512;

#[derive(Debug, Error)]
pub enum GrantsError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: not a valid grants file: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("too many grant entries for this user")]
    TooMany,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: u32,
    /// owner → topic name → grantees (user names or key fingerprints).
    grants: BTreeMap<String, BTreeMap<String, Vec<String>>>,
}

type Table = BTreeMap<String, BTreeMap<String, Vec<Grantee>>>;

pub struct Grants {
    /// Where they are kept; `None` keeps them in memory only (library tests).
    path: Option<PathBuf>,
    /// Entries one owner may hold ([`MAX_USER_GRANT_ENTRIES`] unless configured); a
    /// reload may change it.
    max_entries: AtomicUsize,
    table: Mutex<Table>,
    /// Serializes changes (read, persist, swap) without blocking readers.
    writer: Mutex<()>,
    changed: watch::Sender<u64>,
}

impl Grants {
    pub fn in_memory() -> Grants {
        Grants {
            path: None,
            max_entries: AtomicUsize::new(MAX_USER_GRANT_ENTRIES),
            table: Mutex::new(Table::new()),
            writer: Mutex::new(()),
            changed: watch::Sender::new(0),
        }
    }

    /// Loads the grants kept in `dir`, creating the directory (0700) when it is missing.
    pub fn load(dir: &Path) -> Result<Grants, GrantsError> {
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| GrantsError::Io { path, source }
        };
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io_err(dir))?;
        }
        let path = dir.join(GRANTS_FILE);
        let table = match std::fs::read(&path) {
            Ok(bytes) => parse(&bytes).map_err(|reason| GrantsError::Corrupt {
                path: path.clone(),
                reason,
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Table::new(),
            Err(e) => return Err(io_err(&path)(e)),
        };
        Ok(Grants {
            path: Some(path),
            max_entries: AtomicUsize::new(MAX_USER_GRANT_ENTRIES),
            table: Mutex::new(table),
            writer: Mutex::new(()),
            changed: watch::Sender::new(0),
        })
    }

    /// Whether `who` may use `owner/name` through a grant (owners, admins and public topics
    /// are decided by the caller).
    pub fn allows(&self, owner: &str, name: &str, who: &Identity) -> bool {
        let table = lock(&self.table);
        table
            .get(owner)
            .and_then(|topics| topics.get(name))
            .is_some_and(|list| {
                list.iter().any(|g| match g {
                    Grantee::User(u) => u.as_str() == who.user,
                    Grantee::Key(k) => who.key.as_deref() == Some(k.as_str()),
                })
            })
    }

    /// The grant on `owner/name` (empty if none).
    pub fn of_topic(&self, owner: &str, name: &str) -> Vec<Grantee> {
        let table = lock(&self.table);
        table
            .get(owner)
            .and_then(|t| t.get(name))
            .cloned()
            .unwrap_or_default()
    }

    /// All of `owner`'s grants, by topic name.
    pub fn of_owner(&self, owner: &str) -> Vec<(String, Vec<Grantee>)> {
        let table = lock(&self.table);
        table
            .get(owner)
            .map(|t| t.iter().map(|(n, l)| (n.clone(), l.clone())).collect())
            .unwrap_or_default()
    }

    /// Sets the grant on `owner/name` to exactly `list` (`-a`); empty removes it.
    pub fn set(
        &self,
        owner: &str,
        name: &str,
        list: &[Grantee],
    ) -> Result<Vec<Grantee>, GrantsError> {
        self.change(owner, name, |current| {
            current.clear();
            merge(current, list);
        })
    }

    /// Adds entries to the grant on `owner/name`.
    pub fn add(
        &self,
        owner: &str,
        name: &str,
        list: &[Grantee],
    ) -> Result<Vec<Grantee>, GrantsError> {
        self.change(owner, name, |current| merge(current, list))
    }

    /// Removes entries from the grant on `owner/name`.
    pub fn remove(
        &self,
        owner: &str,
        name: &str,
        list: &[Grantee],
    ) -> Result<Vec<Grantee>, GrantsError> {
        self.change(owner, name, |current| current.retain(|g| !list.contains(g)))
    }

    /// Caps the entries one owner may hold.
    pub fn with_max_entries(self, max: usize) -> Grants {
        self.set_max_entries(max);
        self
    }

    /// Changes the cap (a reload). Entries already given stay, even beyond a lower cap;
    /// only additions are refused.
    pub fn set_max_entries(&self, max: usize) {
        self.max_entries.store(max, Ordering::Relaxed);
    }

    /// A receiver that sees every change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn change(
        &self,
        owner: &str,
        name: &str,
        edit: impl FnOnce(&mut Vec<Grantee>),
    ) -> Result<Vec<Grantee>, GrantsError> {
        // Writers take turns on their own lock, so the slow part (fsync) never holds the
        // table lock that every access check takes.
        let _writer = lock(&self.writer);
        let mut next = lock(&self.table).clone();
        let topics = next.entry(owner.to_string()).or_default();
        let before: usize = topics.values().map(Vec::len).sum();
        let list = topics.entry(name.to_string()).or_default();
        edit(list);
        let result = list.clone();
        if list.is_empty() {
            topics.remove(name);
        }
        // Only growth is capped: an owner over a cap lowered by a reload can still revoke.
        let after: usize = topics.values().map(Vec::len).sum();
        if after > before && after > self.max_entries.load(Ordering::Relaxed) {
            return Err(GrantsError::TooMany);
        }
        if topics.is_empty() {
            next.remove(owner);
        }
        if next == *lock(&self.table) {
            // Nothing to keep, nobody to wake.
            return Ok(result);
        }
        // Written before it takes effect: a grant that could not be kept is not given.
        if let Some(path) = &self.path {
            persist(path, &next).map_err(|source| GrantsError::Io {
                path: path.clone(),
                source,
            })?;
        }
        *lock(&self.table) = next;
        self.changed.send_modify(|v| *v += 1);
        Ok(result)
    }
}

/// Appends the entries of `list` that `current` does not hold yet, in order.
fn merge(current: &mut Vec<Grantee>, list: &[Grantee]) {
    for g in list {
        if !current.contains(g) {
            current.push(g.clone());
        }
    }
}

fn parse(bytes: &[u8]) -> Result<Table, String> {
    let file: File = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if file.version != FILE_VERSION {
        return Err(format!(
            "version {} (this piped reads {FILE_VERSION})",
            file.version
        ));
    }
    let mut table = Table::new();
    for (owner, topics) in file.grants {
        UserName::new(&owner).map_err(|_| format!("bad owner {owner:?}"))?;
        let mine = table.entry(owner.clone()).or_default();
        for (name, list) in topics {
            TopicName::new(&name).map_err(|_| format!("bad topic {owner}/{name:?}"))?;
            let list = list
                .iter()
                .map(|g| {
                    Grantee::parse(g).ok_or_else(|| format!("bad grantee {g:?} on {owner}/{name}"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            mine.insert(name, list);
        }
    }
    Ok(table)
}

fn persist(path: &Path, table: &Table) -> io::Result<()> {
    let file = File {
        version: FILE_VERSION,
        grants: table
            .iter()
            .map(|(o, t)| {
                let t = t
                    .iter()
                    .map(|(n, l)| (n.clone(), l.iter().map(|g| g.to_string()).collect()))
                    .collect();
                (o.clone(), t)
            })
            .collect(),
    };
    // Owner and mode as the temporary file made them: piped's, 0600.
    let perms = crate::atomic_file::Perms::default();
    crate::atomic_file::write(path, perms, |tmp| {
        serde_json::to_writer_pretty(&mut *tmp, &file)?;
        tmp.write_all(b"\n")
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(user: &str, key: Option<&str>) -> Identity {
        Identity {
            user: user.into(),
            key: key.map(str::to_string),
            admin: false,
            unix: false,
        }
    }

    const KEY: &str = "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s";

    fn g(s: &str) -> Grantee {
        Grantee::parse(s).unwrap()
    }

    #[test]
    fn grants_by_name_and_by_key_survive_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let grants = Grants::load(dir.path()).unwrap();
        grants.set("alice", "deploys", &[g("bob"), g(KEY)]).unwrap();
        assert!(grants.allows("alice", "deploys", &who("bob", None)));
        assert!(grants.allows("alice", "deploys", &who("carol", Some(KEY))));
        assert!(!grants.allows("alice", "deploys", &who("carol", None)));
        assert!(!grants.allows("alice", "other", &who("bob", None)));
        assert!(!grants.allows("bobby", "deploys", &who("bob", None)));

        let again = Grants::load(dir.path()).unwrap();
        assert!(again.allows("alice", "deploys", &who("bob", None)));
        again.remove("alice", "deploys", &[g("bob")]).unwrap();
        assert!(!again.allows("alice", "deploys", &who("bob", None)));
        let third = Grants::load(dir.path()).unwrap();
        assert_eq!(third.of_topic("alice", "deploys"), vec![g(KEY)]);
    }

    #[test]
    fn a_corrupt_file_stops_the_broker() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(GRANTS_FILE),
            b"{\"version\":1,\"grants\":{\"x\":{\"t\":[\"../x\"]}}}",
        )
        .unwrap();
        assert!(matches!(
            Grants::load(dir.path()),
            Err(GrantsError::Corrupt { .. })
        ));
        std::fs::write(dir.path().join(GRANTS_FILE), b"{\"version\":1}").unwrap();
        assert!(matches!(
            Grants::load(dir.path()),
            Err(GrantsError::Corrupt { .. })
        ));
    }

    #[test]
    fn clearing_a_grant_removes_it_and_changes_are_announced() {
        let grants = Grants::in_memory();
        let rx = grants.subscribe();
        grants.set("alice", "t", &[g("bob")]).unwrap();
        grants.set("alice", "t", &[]).unwrap();
        assert!(grants.of_owner("alice").is_empty());
        assert!(rx.has_changed().unwrap());
    }

    #[test]
    fn the_entry_cap_is_enforced() {
        let grants = Grants::in_memory();
        let many: Vec<Grantee> = (0..MAX_USER_GRANT_ENTRIES)
            .map(|i| g(&format!("u{i}")))
            .collect();
        grants.set("alice", "a", &many).unwrap();
        assert!(matches!(
            grants.add("alice", "b", &[g("bob")]),
            Err(GrantsError::TooMany)
        ));
    }

    #[test]
    fn a_cap_lowered_by_a_reload_refuses_additions_but_not_removals() {
        let grants = Grants::in_memory();
        grants.set("alice", "a", &[g("b"), g("c"), g("d")]).unwrap();
        grants.set_max_entries(2);
        assert!(
            grants.allows("alice", "a", &who("d", None)),
            "given grants stay"
        );
        assert!(matches!(
            grants.add("alice", "x", &[g("e")]),
            Err(GrantsError::TooMany)
        ));
        grants.remove("alice", "a", &[g("b")]).unwrap();
        grants.set("alice", "a", &[g("c")]).unwrap();
        grants.add("alice", "x", &[g("e")]).unwrap();
        assert!(matches!(
            grants.add("alice", "y", &[g("f")]),
            Err(GrantsError::TooMany)
        ));
    }
}
