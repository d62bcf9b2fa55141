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
//! # Decisions beyond the issue
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

use std::fmt;
use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::errno::Errno;
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, UnixAddr};
use nix::unistd::{Gid, User};

use super::Admin;
use super::authorized_keys::AuthorizedKeys;
use super::keys;
use super::store::KeyDir;
use crate::{glob, paths};

/// Where the shipped sshd snippet lives, named in fixes.
pub const SNIPPET: &str = "/etc/ssh/sshd_config.d/50-pipe.conf";

/// The connection `sshd -T -C` evaluates `Match` blocks for: a login from this machine.
/// A `Match Address` block for remote networks is not seen; `Match User`/`Group` are.
const MATCH_CONNECTION: &str = "host=localhost,addr=127.0.0.1";

/// The most a socket directory may allow: the group may enter, nobody else.
const SOCKET_DIR_MAX_MODE: u32 = 0o750;

/// The socket's mode: the broker's group may connect, nobody else (DESIGN §8).
const SOCKET_MODE: u32 = 0o660;

/// Shadow password database, for the locked-account check.
const SHADOW: &str = "/etc/shadow";

/// A shadow password field starting with this is locked: sshd without PAM refuses the
/// account even for key logins (measured on OpenSSH 9.2, ecosystem.md §A.0).
const LOCKED_PREFIX: char = '!';

/// The forced command's file name.
const PIPE_SHELL: &str = "pipe-shell";

/// Login shells that read the account's startup files for a non-interactive ssh command.
const RC_SHELLS: [&str; 2] = ["bash", "zsh"];

/// Login shells that never run a command, so no forced command would ever start.
const NO_COMMAND_SHELLS: [&str; 2] = ["nologin", "false"];

/// Variables only sshd may set: a client that could send them (AcceptEnv) could make a
/// login-shell pipe-shell read its own `-c` string as the admin's forced command, or name
/// an authentication record of its choosing.
const PROTECTED_ENV: [&str; 2] = ["SSH_ORIGINAL_COMMAND", "SSH_USER_AUTH"];

/// Forwarding settings that `DisableForwarding yes` implies, each with the value that
/// turns it off; all of them off counts as forwarding disabled.
const FORWARDING: [(&str, &str); 4] = [
    ("allowtcpforwarding", "no"),
    ("allowstreamlocalforwarding", "no"),
    ("allowagentforwarding", "no"),
    ("x11forwarding", "no"),
];

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

/// One line of doctor's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    Ok(String),
    Fail { problem: String, fix: String },
    Note(String),
}

impl Finding {
    fn fail(problem: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding::Fail {
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    pub fn is_fail(&self) -> bool {
        matches!(self, Finding::Fail { .. })
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::Ok(what) => write!(f, "ok: {what}"),
            Finding::Fail { problem, fix } => write!(f, "FAIL: {problem} — fix: {fix}"),
            Finding::Note(what) => write!(f, "note: {what}"),
        }
    }
}

/// The effective settings `sshd -T` printed: lower-case keyword → its values, in order
/// (keywords such as `acceptenv` come once per value).
#[derive(Debug, Default)]
struct SshdSettings(Vec<(String, String)>);

impl SshdSettings {
    fn parse(text: &str) -> SshdSettings {
        SshdSettings(
            text.lines()
                .filter_map(|line| {
                    let (key, value) = line.split_once(' ').unwrap_or((line, ""));
                    (!key.is_empty()).then(|| (key.to_ascii_lowercase(), value.to_string()))
                })
                .collect(),
        )
    }

    fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn is(&self, key: &str, value: &str) -> bool {
        self.get(key).is_some_and(|v| v.eq_ignore_ascii_case(value))
    }
}

/// The service account as the system knows it.
struct Account {
    user: User,
    /// Primary and supplementary groups.
    groups: Vec<u32>,
}

impl Account {
    fn in_group(&self, gid: u32) -> bool {
        self.groups.contains(&gid)
    }

    /// Whether the account may write to a file or directory with this metadata (mode bits
    /// of the class the kernel would pick; root may always).
    fn may_write(&self, metadata: &fs::Metadata) -> bool {
        self.may(metadata, 0o2)
    }

    fn may(&self, metadata: &fs::Metadata, bit: u32) -> bool {
        let mode = metadata.mode();
        if self.user.uid.is_root() {
            true
        } else if metadata.uid() == self.user.uid.as_raw() {
            mode & (bit << 6) != 0
        } else if self.in_group(metadata.gid()) {
            mode & (bit << 3) != 0
        } else {
            mode & bit != 0
        }
    }
}

impl Doctor {
    /// Runs every check, in the order they are printed.
    pub fn run(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        if !nix::unistd::geteuid().is_root() {
            out.push(Finding::fail(
                "doctor is not running as root, so it cannot read /etc/shadow or run sshd -T",
                "run it as root: sudo pipe-admin doctor",
            ));
        }
        let sshd = self.sshd_settings(&mut out);
        if let Some(sshd) = &sshd {
            self.check_sshd(&mut out, sshd);
        }
        let account = self.check_account(&mut out, sshd.as_ref());
        self.check_socket(&mut out, account.as_ref());
        self.check_keys(&mut out, sshd.as_ref(), account.as_ref());
        out
    }

    fn user(&self) -> &str {
        &self.service_user
    }

    /// The program pipe-admin's key lines run: the first word of the forced command.
    fn pipe_shell_path(&self) -> &str {
        self.admin
            .forced_command
            .split_whitespace()
            .next()
            .unwrap_or(paths::FORCED_COMMAND)
    }

    fn match_block_fix(&self, setting: &str) -> String {
        format!(
            "add `{setting}` to the `Match User {}` block ({SNIPPET}), then `sshd -t && systemctl reload ssh`",
            self.user()
        )
    }

    fn sshd_settings(&self, out: &mut Vec<Finding>) -> Option<SshdSettings> {
        let spec = format!("user={},{MATCH_CONNECTION}", self.user());
        let shown = format!(
            "{} -T -f {} -C {spec}",
            self.sshd.display(),
            self.sshd_config.display()
        );
        let result = Command::new(&self.sshd)
            .arg("-T")
            .arg("-f")
            .arg(&self.sshd_config)
            .arg("-C")
            .arg(&spec)
            .stdin(std::process::Stdio::null())
            .output();
        let output = match result {
            Ok(output) => output,
            Err(e) => {
                out.push(Finding::fail(
                    format!("cannot run {}: {e}", self.sshd.display()),
                    "install openssh-server, or name sshd with --sshd PATH",
                ));
                return None;
            }
        };
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let why = stderr
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("no message");
            out.push(Finding::fail(
                format!("`{shown}` failed: {why}"),
                format!(
                    "repair the sshd configuration until `sshd -t -f {}` is silent",
                    self.sshd_config.display()
                ),
            ));
            return None;
        }
        out.push(Finding::Ok(format!(
            "sshd reads {} and applies it to {}",
            self.sshd_config.display(),
            self.user()
        )));
        Some(SshdSettings::parse(&String::from_utf8_lossy(
            &output.stdout,
        )))
    }

    fn check_sshd(&self, out: &mut Vec<Finding>, sshd: &SshdSettings) {
        let user = self.user();
        self.check_force_command(out, sshd);

        let forwarding_off = sshd.is("disableforwarding", "yes")
            || FORWARDING.iter().all(|(key, off)| sshd.is(key, off));
        if forwarding_off {
            out.push(Finding::Ok(format!("sshd: forwarding is off for {user}")));
        } else {
            let on: Vec<String> = FORWARDING
                .iter()
                .filter(|(key, off)| !sshd.is(key, off))
                .map(|(key, _)| format!("{key} {}", sshd.get(key).unwrap_or("?")))
                .collect();
            out.push(Finding::fail(
                format!(
                    "sshd: forwarding is not disabled for {user} ({})",
                    on.join(", ")
                ),
                self.match_block_fix("DisableForwarding yes"),
            ));
        }

        for (key, setting) in [("permittty", "PermitTTY"), ("permituserrc", "PermitUserRC")] {
            if sshd.is(key, "no") {
                out.push(Finding::Ok(format!("sshd: {setting} no for {user}")));
            } else {
                out.push(Finding::fail(
                    format!(
                        "sshd: {setting} is {} for {user}",
                        sshd.get(key).unwrap_or("unset")
                    ),
                    self.match_block_fix(&format!("{setting} no")),
                ));
            }
        }

        if sshd.is("permituserenvironment", "no") {
            out.push(Finding::Ok("sshd: PermitUserEnvironment no".into()));
        } else {
            out.push(Finding::fail(
                format!(
                    "sshd: PermitUserEnvironment is {}: environment= in a key line or ~/.ssh/environment reaches the login shell before pipe-shell",
                    sshd.get("permituserenvironment").unwrap_or("unset")
                ),
                "set `PermitUserEnvironment no` in the main sshd_config (it cannot be set in a Match block)",
            ));
        }

        let exposed: Vec<&str> = sshd
            .all("acceptenv")
            .filter(|pattern| {
                PROTECTED_ENV
                    .iter()
                    .any(|name| glob::matches(pattern.as_bytes(), name.as_bytes()))
            })
            .collect();
        if exposed.is_empty() {
            out.push(Finding::Ok(format!(
                "sshd: clients cannot send {}",
                PROTECTED_ENV.join(" or ")
            )));
        } else {
            out.push(Finding::fail(
                format!(
                    "sshd: AcceptEnv {} lets a client send {}, and pose as a forced command",
                    exposed.join(" "),
                    PROTECTED_ENV.join(" or ")
                ),
                format!(
                    "remove {} from AcceptEnv in {} (a Match block cannot take AcceptEnv patterns back)",
                    exposed.join(" "),
                    self.sshd_config.display()
                ),
            ));
        }
    }

    fn check_force_command(&self, out: &mut Vec<Finding>, sshd: &SshdSettings) {
        let user = self.user();
        let Some(command) = sshd.get("forcecommand").filter(|c| *c != "none") else {
            out.push(Finding::fail(
                format!("sshd: no ForceCommand for {user}: only the key lines' command= keep its logins in pipe-shell"),
                self.match_block_fix(&format!("ForceCommand {}", self.pipe_shell_path())),
            ));
            return;
        };
        let Some(words) = forced_pipe_shell(sshd) else {
            out.push(Finding::fail(
                format!("sshd: ForceCommand for {user} runs {command}, not {PIPE_SHELL}"),
                self.match_block_fix(&format!("ForceCommand {}", self.pipe_shell_path())),
            ));
            return;
        };
        let program = &words[0];
        out.push(Finding::Ok(format!(
            "sshd: ForceCommand runs {program} for {user}"
        )));

        let option = |name: &str| {
            words
                .windows(2)
                .find(|pair| pair[0] == name)
                .map(|pair| pair[1].as_str())
        };
        if let Some(fixed) = option("--user") {
            out.push(Finding::fail(
                format!("sshd: ForceCommand fixes --user {fixed}: every key would log in as {fixed}"),
                "remove --user from ForceCommand; pipe-shell finds the user by the key (ExposeAuthInfo yes)",
            ));
        }
        // Where pipe-shell will connect and look keys up, and whom it speaks for: the same
        // flags (and defaults) as doctor's, or doctor checked other files than sessions use.
        let agree = [
            ("--socket", paths::SOCKET, self.socket.display().to_string()),
            (
                "--keys-dir",
                paths::KEYS_DIR,
                self.admin.keys_dir.display().to_string(),
            ),
            ("--service-user", paths::SERVICE_USER, user.to_string()),
        ];
        for (flag, default, checked) in agree {
            let used = option(flag).unwrap_or(default);
            if used != checked {
                out.push(Finding::fail(
                    format!("sshd: ForceCommand's pipe-shell uses {flag} {used}, but doctor checks {checked}"),
                    format!("make them agree: {flag} in ForceCommand, or doctor's {flag}"),
                ));
            }
        }

        if sshd.is("exposeauthinfo", "yes") {
            out.push(Finding::Ok(format!(
                "sshd: ExposeAuthInfo yes: pipe-shell tells {user}'s users apart by their key"
            )));
        } else if option("--user").is_none() {
            out.push(Finding::fail(
                format!("sshd: ExposeAuthInfo is not yes for {user}: ForceCommand replaces the key lines' command=, so pipe-shell cannot tell who logged in and refuses everyone"),
                self.match_block_fix("ExposeAuthInfo yes"),
            ));
        }
    }

    /// A locked password field with `UsePAM no`: sshd refuses the account.
    fn check_password(&self, out: &mut Vec<Finding>, sshd: &SshdSettings) {
        let user = self.user();
        let field = match shadow_field(Path::new(SHADOW), user) {
            Ok(Some(field)) => field,
            Ok(None) => {
                out.push(Finding::Note(format!(
                    "{user} is not in {SHADOW}; its password field was not checked"
                )));
                return;
            }
            Err(e) => {
                out.push(Finding::fail(
                    format!("cannot read {SHADOW}: {e}"),
                    "run doctor as root",
                ));
                return;
            }
        };
        let locked = field.starts_with(LOCKED_PREFIX);
        let pam = !sshd.is("usepam", "no");
        match (locked, pam) {
            (true, false) => out.push(Finding::fail(
                format!("account {user} is locked (password field {field:?}) and sshd has UsePAM no: sshd refuses every login"),
                format!("usermod -p '*' {user}"),
            )),
            (true, true) => out.push(Finding::Note(format!(
                "account {user} is locked (password field starts with !); fine while UsePAM yes, refused if it ever becomes no (usermod -p '*' {user})"
            ))),
            (false, _) => out.push(Finding::Ok(format!(
                "account {user}: password field is not locked"
            ))),
        }
    }

    fn check_account(
        &self,
        out: &mut Vec<Finding>,
        sshd: Option<&SshdSettings>,
    ) -> Option<Account> {
        let user = self.user();
        let found = match User::from_name(user) {
            Ok(found) => found,
            Err(e) => {
                out.push(Finding::fail(
                    format!("looking up account {user}: {e}"),
                    "check the user database (getent passwd)",
                ));
                return None;
            }
        };
        let Some(found) = found else {
            out.push(Finding::fail(
                format!("account {user} does not exist"),
                format!(
                    "useradd --system --home-dir /var/lib/pipe --shell {} {user} (the packages create it)",
                    self.pipe_shell_path()
                ),
            ));
            return None;
        };
        let groups = user_groups(&found);
        let account = Account {
            user: found,
            groups,
        };

        let shell = account.user.shell.clone();
        let shell_name = shell
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let fix = format!("usermod -s {} {user}", self.pipe_shell_path());
        if shell_name == PIPE_SHELL {
            out.push(Finding::Ok(format!(
                "account {user}: login shell {}",
                shell.display()
            )));
        } else if RC_SHELLS.contains(&shell_name.as_str()) {
            out.push(Finding::fail(
                format!(
                    "account {user}: login shell {} reads startup files in the account's home before pipe-shell runs",
                    shell.display()
                ),
                fix,
            ));
        } else if NO_COMMAND_SHELLS.contains(&shell_name.as_str()) {
            out.push(Finding::fail(
                format!(
                    "account {user}: login shell {} runs no command, so pipe-shell never starts",
                    shell.display()
                ),
                fix,
            ));
        } else {
            out.push(Finding::Ok(format!(
                "account {user}: login shell {} (pipe-shell itself is the tighter choice: {fix})",
                shell.display()
            )));
        }

        let home = account.user.dir.clone();
        match fs::metadata(&home) {
            Ok(metadata) if !metadata.is_dir() => out.push(Finding::fail(
                format!("account {user}: home {} is not a directory", home.display()),
                format!("install -d -o root -g root -m 0755 {}", home.display()),
            )),
            Ok(metadata) if account.may_write(&metadata) => out.push(Finding::fail(
                format!(
                    "account {user}: home {} is writable by {user}, who could then plant files sshd reads",
                    home.display()
                ),
                format!("chown root:root {0} && chmod 0755 {0}", home.display()),
            )),
            Ok(_) => out.push(Finding::Ok(format!(
                "account {user}: home {} exists and {user} cannot write to it",
                home.display()
            ))),
            Err(e) => out.push(Finding::fail(
                format!("account {user}: home {}: {e}", home.display()),
                format!("install -d -o root -g root -m 0755 {}", home.display()),
            )),
        }
        if let Some(sshd) = sshd {
            self.check_password(out, sshd);
        }
        Some(account)
    }

    fn check_socket(&self, out: &mut Vec<Finding>, account: Option<&Account>) {
        let user = self.user();
        let socket = &self.socket;
        let dir = match socket.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let group_fix = |path: &Path, mode: u32| {
            format!(
                "chgrp GROUP {} && chmod {mode:04o} {0}, GROUP being the broker's socket group that {user} is in (systemd-tmpfiles and piped.socket do this)",
                path.display()
            )
        };
        match fs::metadata(dir) {
            Err(e) => out.push(Finding::fail(
                format!("socket directory {}: {e}", dir.display()),
                "start the broker (systemctl start piped.socket), which creates it",
            )),
            Ok(metadata) => {
                let mode = metadata.mode() & 0o7777;
                let in_group = account.is_some_and(|a| a.in_group(metadata.gid()));
                if mode & !SOCKET_DIR_MAX_MODE != 0 {
                    out.push(Finding::fail(
                        format!(
                            "socket directory {} has mode {mode:04o}, more open than {SOCKET_DIR_MAX_MODE:04o}",
                            dir.display()
                        ),
                        format!("chmod {SOCKET_DIR_MAX_MODE:04o} {}", dir.display()),
                    ));
                } else if !in_group || mode & 0o010 == 0 {
                    out.push(Finding::fail(
                        format!(
                            "socket directory {} (mode {mode:04o}, group {}) cannot be entered by {user}'s groups",
                            dir.display(),
                            group_name(metadata.gid())
                        ),
                        group_fix(dir, SOCKET_DIR_MAX_MODE),
                    ));
                } else {
                    out.push(Finding::Ok(format!(
                        "socket directory {} is {mode:04o}, group {}",
                        dir.display(),
                        group_name(metadata.gid())
                    )));
                }
            }
        }

        let metadata = match fs::symlink_metadata(socket) {
            Ok(metadata) => metadata,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                out.push(Finding::fail(
                    format!(
                        "broker socket {} does not exist: piped is not running",
                        socket.display()
                    ),
                    "systemctl enable --now piped.socket (or start piped)",
                ));
                return;
            }
            Err(e) => {
                out.push(Finding::fail(
                    format!("broker socket {}: {e}", socket.display()),
                    "check the path given with --socket",
                ));
                return;
            }
        };
        if !metadata.file_type().is_socket() {
            out.push(Finding::fail(
                format!("{} is not a socket", socket.display()),
                "remove it and restart the broker: systemctl restart piped.socket",
            ));
            return;
        }
        let mode = metadata.mode() & 0o7777;
        let in_group = account.is_some_and(|a| a.in_group(metadata.gid()));
        if mode != SOCKET_MODE {
            out.push(Finding::fail(
                format!(
                    "broker socket {} has mode {mode:04o}, not {SOCKET_MODE:04o}",
                    socket.display()
                ),
                format!(
                    "chmod {SOCKET_MODE:04o} {} (piped.socket sets SocketMode=0660)",
                    socket.display()
                ),
            ));
        } else if !in_group {
            out.push(Finding::fail(
                format!(
                    "broker socket {} has group {}, which {user} is not in",
                    socket.display(),
                    group_name(metadata.gid())
                ),
                group_fix(socket, SOCKET_MODE),
            ));
        } else {
            out.push(Finding::Ok(format!(
                "broker socket {} is {mode:04o}, group {}",
                socket.display(),
                group_name(metadata.gid())
            )));
        }

        match connect(socket) {
            Ok(()) => out.push(Finding::Ok(format!(
                "broker accepts connections on {}",
                socket.display()
            ))),
            Err(Errno::EAGAIN) => out.push(Finding::fail(
                format!(
                    "broker on {} does not accept connections (its queue is full)",
                    socket.display()
                ),
                "look at `journalctl -u piped`; restart it if it hangs: systemctl restart piped",
            )),
            Err(e) => out.push(Finding::fail(
                format!(
                    "no broker listens on {} ({}): the socket is left over",
                    socket.display(),
                    io::Error::from(e)
                ),
                "systemctl restart piped.socket (or start piped)",
            )),
        }
    }

    fn check_keys(
        &self,
        out: &mut Vec<Finding>,
        sshd: Option<&SshdSettings>,
        account: Option<&Account>,
    ) {
        let path = &self.admin.authorized_keys;
        if let (Some(sshd), Some(account)) = (sshd, account) {
            let files: Vec<PathBuf> = sshd
                .all("authorizedkeysfile")
                .flat_map(str::split_whitespace)
                .map(|file| expand_keys_file(file, &account.user))
                .collect();
            if files.iter().any(|f| f == path) {
                out.push(Finding::Ok(format!(
                    "sshd reads {}'s keys from {}",
                    self.user(),
                    path.display()
                )));
            } else {
                let shown: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
                out.push(Finding::fail(
                    format!(
                        "sshd reads {}'s keys from {}, not from {}",
                        self.user(),
                        if shown.is_empty() {
                            "nowhere".to_string()
                        } else {
                            shown.join(" ")
                        },
                        path.display()
                    ),
                    format!(
                        "{}, or give doctor and pipe-admin that file with --authorized-keys",
                        self.match_block_fix(&format!("AuthorizedKeysFile {}", path.display()))
                    ),
                ));
            }
        }

        if !path.exists() {
            out.push(Finding::fail(
                format!("{} does not exist", path.display()),
                "pipe-admin sync",
            ));
            return;
        }
        let file = match AuthorizedKeys::read(path) {
            Ok(file) => file,
            Err(e) => {
                out.push(Finding::fail(
                    e.to_string(),
                    "repair the file by hand, then pipe-admin sync",
                ));
                return;
            }
        };
        if let Some(account) = account {
            self.check_not_writable(out, path, account);
        }
        let dir = match KeyDir::load(&self.admin.keys_dir) {
            Ok(dir) => Some(dir),
            Err(e) => {
                out.push(Finding::fail(
                    format!("key directory {}: {e}", self.admin.keys_dir.display()),
                    "repair or remove the entry named, then pipe-admin sync",
                ));
                None
            }
        };
        if let Some(dir) = &dir {
            let lines = dir.block_lines(&self.admin.forced_command);
            if file.holds(&lines) {
                let count = match lines.len() {
                    1 => "1 key".to_string(),
                    n => format!("{n} keys"),
                };
                out.push(Finding::Ok(format!(
                    "{} matches the key directory {} ({count})",
                    path.display(),
                    self.admin.keys_dir.display(),
                )));
            } else {
                out.push(Finding::fail(
                    format!(
                        "the managed block of {} does not match the key directory {}",
                        path.display(),
                        self.admin.keys_dir.display()
                    ),
                    "pipe-admin sync (check `pipe-admin key list` first: the directory wins)",
                ));
            }
            for foreign in file.foreign_keys(|fp| dir.contains_fingerprint(fp)) {
                let (user, name) = dir
                    .owner_of(&foreign.fingerprint)
                    .map(|(u, n)| (u.to_string(), n.to_string()))
                    .unwrap_or_default();
                out.push(Finding::fail(
                    format!(
                        "line {} of {} also authorizes {user}/{name} ({}) outside the managed block, and sshd uses the first matching line",
                        foreign.line,
                        path.display(),
                        foreign.fingerprint
                    ),
                    format!("delete line {} of {}", foreign.line, path.display()),
                ));
            }
        }

        // The lint of security-reliability.md §1.2: a hand-written line must be as tight
        // as pipe-admin's, unless sshd forces pipe-shell on every login of the account.
        let forced = sshd.and_then(forced_pipe_shell).is_some();
        let loose: Vec<usize> = file
            .foreign_lines()
            .filter(|(_, text)| keys::parse_authorized_line(text).is_some())
            .filter(|(_, text)| !is_restricted(text))
            .map(|(number, _)| number)
            .collect();
        if loose.is_empty() {
            out.push(Finding::Ok(format!(
                "every key line of {} has restrict and command=",
                path.display()
            )));
        } else {
            let numbers: Vec<String> = loose.iter().map(usize::to_string).collect();
            let problem = format!(
                "line {} of {} lacks restrict or command= outside the managed block",
                numbers.join(", "),
                path.display()
            );
            if forced {
                out.push(Finding::Note(format!(
                    "{problem}; sshd's ForceCommand still runs pipe-shell for it"
                )));
            } else {
                out.push(Finding::fail(
                    problem,
                    format!(
                        "add the key with pipe-admin key add and delete the line, or start it with restrict,command=\"{}\"",
                        self.pipe_shell_path()
                    ),
                ));
            }
        }
    }

    fn check_not_writable(&self, out: &mut Vec<Finding>, path: &Path, account: &Account) {
        let user = self.user();
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        let writable: Vec<&Path> = [Some(path), dir]
            .into_iter()
            .flatten()
            .filter(|p| fs::metadata(p).is_ok_and(|m| account.may_write(&m)))
            .collect();
        if writable.is_empty() {
            out.push(Finding::Ok(format!(
                "{user} cannot change {}",
                path.display()
            )));
        } else {
            let shown: Vec<String> = writable.iter().map(|p| p.display().to_string()).collect();
            out.push(Finding::fail(
                format!(
                    "{user} can write to {}, and so add keys of its own",
                    shown.join(" and ")
                ),
                format!("chown root:root {0} && chmod go-w {0}", shown.join(" ")),
            ));
        }
    }
}

/// The words of the effective `ForceCommand` when it runs pipe-shell (by file name).
fn forced_pipe_shell(sshd: &SshdSettings) -> Option<Vec<String>> {
    let command = sshd.get("forcecommand").filter(|c| *c != "none")?;
    let words = crate::request::split_words(command).ok()?;
    let program = words.first()?;
    (Path::new(program).file_name() == Some(PIPE_SHELL.as_ref())).then_some(words)
}

/// Whether an authorized_keys line has both `restrict` and `command=` among its options.
fn is_restricted(line: &str) -> bool {
    let Some((options, _)) = keys::split_options(line.trim()) else {
        return false;
    };
    let mut restrict = false;
    let mut command = false;
    for option in split_option_list(options) {
        let lower = option.to_ascii_lowercase();
        restrict |= lower == "restrict";
        command |= lower.starts_with("command=");
    }
    restrict && command
}

/// Splits `a,b="x,y",c` at the commas outside double quotes (sshd's option syntax).
fn split_option_list(options: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut quoted = false;
    let mut escaped = false;
    let mut start = 0;
    for (i, c) in options.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&options[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&options[start..]);
    out
}

/// An `AuthorizedKeysFile` entry for one account: `%%`, `%h`, `%u`, `%U` expanded, and a
/// relative path taken from the home directory, as sshd does.
fn expand_keys_file(entry: &str, user: &User) -> PathBuf {
    let mut out = String::new();
    let mut chars = entry.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some('h') => out.push_str(&user.dir.to_string_lossy()),
            Some('u') => out.push_str(&user.name),
            Some('U') => out.push_str(&user.uid.to_string()),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    let path = PathBuf::from(out);
    if path.is_absolute() {
        path
    } else {
        user.dir.join(path)
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
    fn accept_env_patterns_match_like_sshd() {
        for (pattern, hit) in [
            ("SSH_ORIGINAL_COMMAND", true),
            ("SSH_*", true),
            ("*", true),
            ("SSH_USER_AUT?", true),
            ("LC_*", false),
            ("LANG", false),
            ("SSH_ORIGINAL_COMMAND_X", false),
        ] {
            let matched = PROTECTED_ENV
                .iter()
                .any(|name| glob::matches(pattern.as_bytes(), name.as_bytes()));
            assert_eq!(matched, hit, "{pattern}");
        }
    }

    #[test]
    fn key_lines_need_restrict_and_a_command() {
        let key =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILM+rvN+ot98qgEN796jTiQfZfG1KaT0PtFDJ/XFSqti";
        assert!(is_restricted(&format!(
            "restrict,command=\"/usr/bin/pipe-shell --user a,b\" {key} c"
        )));
        assert!(is_restricted(&format!(
            "Command=\"x\",no-pty,RESTRICT {key}"
        )));
        assert!(!is_restricted(key));
        assert!(!is_restricted(&format!("restrict {key}")));
        assert!(!is_restricted(&format!("command=\"restrict\" {key}")));
        assert!(!is_restricted(&format!("no-pty,command=\"x\" {key}")));
    }

    #[test]
    fn sshd_output_is_read_by_keyword() {
        let s = SshdSettings::parse("acceptenv LANG\nacceptenv LC_*\nForceCommand /a b\nx\n");
        assert_eq!(s.all("acceptenv").collect::<Vec<_>>(), ["LANG", "LC_*"]);
        assert_eq!(s.get("forcecommand"), Some("/a b"));
        assert!(s.is("x", ""));
        assert!(s.get("missing").is_none());
    }

    #[test]
    fn authorized_keys_files_expand_like_sshd() {
        let user = User::from_uid(nix::unistd::Uid::from_raw(0))
            .unwrap()
            .unwrap();
        let home = user.dir.clone();
        assert_eq!(
            expand_keys_file(".ssh/authorized_keys", &user),
            home.join(".ssh/authorized_keys")
        );
        assert_eq!(
            expand_keys_file("/etc/keys/%u-%U%%", &user),
            PathBuf::from(format!("/etc/keys/{}-0%", user.name))
        );
        assert_eq!(
            expand_keys_file("%h/k", &user),
            PathBuf::from(format!("{}/k", home.display()))
        );
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
}
