//! What doctor is asked to check: the paths and account it compares, the same for the
//! probes and the judge.

use std::path::PathBuf;

use crate::admin::Admin;

/// What `pipe-admin doctor` checks.
#[derive(Debug, Clone)]
pub struct Doctor {
    /// Key directory, authorized_keys and forced command, as every other subcommand uses.
    pub admin: Admin,
    pub service_user: String,
    pub socket: PathBuf,
    pub sshd_config: PathBuf,
    pub sshd: PathBuf,
}
