//! Identity by key (`ForceCommand` + `ExposeAuthInfo yes`).
//!
//! When pipe-shell runs as the service account (`--service-user`, default `pipe`) with no
//! `--user` given, it reads the file `$SSH_USER_AUTH` names (sshd writes the methods the
//! client authenticated with), takes its single `publickey` line, and looks the key's
//! fingerprint up in the key directory (`--keys-dir`, default `/etc/pipe/keys`): the user
//! whose directory holds that key is who the session is. An unknown key is refused like
//! any other identity failure (exit 3). Key lines then need no `command=`: the sshd
//! `ForceCommand` catches every login of the account.

use std::path::Path;

use super::args::Options;
use crate::keys::dir::find_owner;
use crate::keys::parse_key;
use crate::paths;

/// Whether this process runs as the service account, the one that speaks for the users of
/// the key directory.
pub(super) fn runs_as_service(opts: &Options) -> bool {
    let name = opts.service_user.as_deref().unwrap_or(paths::SERVICE_USER);
    nix::unistd::User::from_name(name)
        .ok()
        .flatten()
        .is_some_and(|u| u.uid == nix::unistd::getuid())
}

/// Maps the key the client logged in with (the single `publickey` line sshd wrote to
/// `$SSH_USER_AUTH`) to its user in the key directory: `(user, fingerprint)`.
pub(super) fn identify_by_key(file: &Path, opts: &Options) -> Option<(String, String)> {
    let text = std::fs::read_to_string(file).ok()?;
    let mut keys = text.lines().filter_map(|l| l.strip_prefix("publickey "));
    let line = keys.next()?;
    // More than one key (several publickey methods) is ambiguous: refuse rather than pick.
    if keys.next().is_some() {
        return None;
    }
    let key = parse_key(line).ok()?;
    let dir = opts
        .keys_dir
        .as_deref()
        .unwrap_or(Path::new(paths::KEYS_DIR));
    let user = find_owner(dir, key.fingerprint())?;
    Some((user.as_str().to_string(), key.fingerprint().to_string()))
}
