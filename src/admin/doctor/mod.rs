//! `pipe-admin doctor`: checks that sshd, the service account, the broker socket and the
//! keys fit together, and says how to fix what does not.
//!
//! Every check prints one line on stdout: `ok: …`, `FAIL: … — fix: …`, or `note: …` for
//! something worth knowing that is not wrong. The run fails (exit 1) when any line is a
//! `FAIL`. Checks that depend on an earlier one (the sshd settings, the account) are left
//! out when that one failed, so one cause gives one line.
//!
//! What sshd does is read from `sshd -T -f CONFIG -C user=SERVICE,host=localhost,addr=127.0.0.1`:
//! the settings sshd would apply to a login of the service account, after every `Include`
//! and `Match`. That reads the files, not the running daemon: after changing them, sshd
//! still has to be reloaded.
//!
//! `probe` gathers what the checks read into plain data (`probe::Facts`), with no verdicts;
//! `judge` turns those facts into findings without touching the system, so every verdict
//! is tested without root; [`Doctor::run`] does one, then the other.
//!
//! # Decisions
//!
//! pipe-admin(8), DOCTOR, states each of these for the admin; here is why.
//!
//! - **`ForceCommand` requires `ExposeAuthInfo yes`.** sshd runs a `ForceCommand` in
//!   place of an authorized_keys `command=` (session.c; checked on OpenSSH 9.2), so under
//!   the shipped snippet the `--user`/`--key` of pipe-admin's key lines never reach
//!   pipe-shell: it can only tell users apart by the key sshd reports in `$SSH_USER_AUTH`.
//!   Without `ExposeAuthInfo yes` every login of the service account is refused, so that is
//!   a failure, not a note.
//! - **The `ForceCommand` must agree with doctor's flags**: its `--socket`, `--keys-dir` and
//!   `--service-user` (or pipe-shell's defaults) are where pipe-shell will connect and look
//!   keys up; a mismatch means doctor checked other files than sessions use. A fixed
//!   `--user` in it would make every key that one user, and fails.
//! - **sshd must read the authorized_keys pipe-admin writes**: one of the effective
//!   `AuthorizedKeysFile` paths (with `%h`, `%u`, `%U` expanded) must be `--authorized-keys`.
//! - **Login shells**: pipe-shell is best; `sh`/`dash` are fine (the forced command runs
//!   through them); bash and zsh fail (bash reads `~/.bashrc` when sshd starts it, zsh
//!   reads `~/.zshenv` always), and so do `nologin`/`false` (the forced command would never
//!   run).
//! - **"Writable by the account"** is decided from owner, group and mode bits (no ACLs),
//!   the way the kernel picks the owner, group or other class.

mod finding;
mod judge;
mod probe;
mod setup;

pub use finding::Finding;
pub use setup::Doctor;

impl Doctor {
    /// Runs every check, in the order they are printed.
    pub fn run(&self) -> Vec<Finding> {
        judge::judge(self, &probe::probe(self))
    }
}
