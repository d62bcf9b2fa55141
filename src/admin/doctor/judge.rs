//! Turns [`Facts`] into [`Finding`]s: a pure function of what doctor was asked to check
//! ([`Doctor`]) and what [`probe`](super::probe) found, so every verdict is testable
//! without root.

use std::io;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use super::compat::{self, ForcedShell, PIPE_SHELL};
use super::probe::{
    Account, AccountLookup, Facts, FileKind, KeysFile, SHADOW, SocketFacts, SocketFile, SshdRun,
    SshdSettings, match_spec,
};
use super::{Doctor, Finding, SNIPPET};
use crate::{glob, paths};

/// The most a socket directory may allow: the group may enter, nobody else.
const SOCKET_DIR_MAX_MODE: u32 = 0o750;

/// The socket's mode: the broker's group may connect, nobody else (piped(8), FILES).
const SOCKET_MODE: u32 = 0o660;

/// A shadow password field starting with this is locked: sshd without PAM refuses the
/// account even for key logins (measured on OpenSSH 9.2; pipe-admin(8), DOCTOR).
const LOCKED_PREFIX: char = '!';

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

/// Every finding, in the order they are printed. Checks that need an earlier one (sshd's
/// settings, the account) are left out when that one failed.
pub fn judge(doctor: &Doctor, facts: &Facts) -> Vec<Finding> {
    let mut out = Vec::new();
    if !facts.root {
        out.push(Finding::fail(
            "doctor is not running as root, so it cannot read /etc/shadow or run sshd -T",
            "run it as root: sudo pipe-admin doctor",
        ));
    }
    let sshd = doctor.sshd_settings(&mut out, &facts.sshd);
    if let Some(sshd) = sshd {
        doctor.check_sshd(&mut out, sshd);
    }
    let account = doctor.check_account(&mut out, &facts.account, sshd);
    doctor.check_socket(&mut out, &facts.socket, account);
    doctor.check_keys(&mut out, &facts.authorized_keys, sshd, account);
    out
}

impl Doctor {
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

    fn sshd_settings<'a>(
        &self,
        out: &mut Vec<Finding>,
        run: &'a SshdRun,
    ) -> Option<&'a SshdSettings> {
        let shown = format!(
            "{} -T -f {} -C {}",
            self.sshd.display(),
            self.sshd_config.display(),
            match_spec(self.user())
        );
        match run {
            SshdRun::NotRun(e) => {
                out.push(Finding::fail(
                    format!("cannot run {}: {e}", self.sshd.display()),
                    "install openssh-server, or name sshd with --sshd PATH",
                ));
                None
            }
            SshdRun::Failed { stderr } => {
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
                None
            }
            SshdRun::Settings(settings) => {
                out.push(Finding::Ok(format!(
                    "sshd reads {} and applies it to {}",
                    self.sshd_config.display(),
                    self.user()
                )));
                Some(settings)
            }
        }
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
        let Some(forced) = forced_pipe_shell(sshd) else {
            out.push(Finding::fail(
                format!("sshd: ForceCommand for {user} runs {command}, not {PIPE_SHELL}"),
                self.match_block_fix(&format!("ForceCommand {}", self.pipe_shell_path())),
            ));
            return;
        };
        out.push(Finding::Ok(format!(
            "sshd: ForceCommand runs {} for {user}",
            forced.program
        )));

        if let Some(fixed) = &forced.user {
            out.push(Finding::fail(
                format!("sshd: ForceCommand fixes --user {fixed}: every key would log in as {fixed}"),
                "remove --user from ForceCommand; pipe-shell finds the user by the key (ExposeAuthInfo yes)",
            ));
        }
        // Where pipe-shell will connect and look keys up, and whom it speaks for: the same
        // flags (and defaults) as doctor's, or doctor checked other files than sessions use.
        let agree = [
            (
                "--socket",
                &forced.socket,
                paths::SOCKET,
                self.socket.display().to_string(),
            ),
            (
                "--keys-dir",
                &forced.keys_dir,
                paths::KEYS_DIR,
                self.admin.keys_dir.display().to_string(),
            ),
            (
                "--service-user",
                &forced.service_user,
                paths::SERVICE_USER,
                user.to_string(),
            ),
        ];
        for (flag, given, default, checked) in agree {
            let used = given.as_deref().unwrap_or(default);
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
        } else if forced.user.is_none() {
            out.push(Finding::fail(
                format!("sshd: ExposeAuthInfo is not yes for {user}: ForceCommand replaces the key lines' command=, so pipe-shell cannot tell who logged in and refuses everyone"),
                self.match_block_fix("ExposeAuthInfo yes"),
            ));
        }
    }

    /// A locked password field with `UsePAM no`: sshd refuses the account.
    fn check_password(&self, out: &mut Vec<Finding>, account: &Account, sshd: &SshdSettings) {
        let user = self.user();
        let field = match &account.password {
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

    fn check_account<'a>(
        &self,
        out: &mut Vec<Finding>,
        lookup: &'a AccountLookup,
        sshd: Option<&SshdSettings>,
    ) -> Option<&'a Account> {
        let user = self.user();
        let account = match lookup {
            AccountLookup::Found(account) => account,
            AccountLookup::Failed(e) => {
                out.push(Finding::fail(
                    format!("looking up account {user}: {e}"),
                    "check the user database (getent passwd)",
                ));
                return None;
            }
            AccountLookup::Missing => {
                out.push(Finding::fail(
                    format!("account {user} does not exist"),
                    format!(
                        "useradd --system --home-dir /var/lib/pipe --shell {} {user} (the packages create it)",
                        self.pipe_shell_path()
                    ),
                ));
                return None;
            }
        };

        let shell = &account.shell;
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

        let home = &account.home;
        match &account.home_stat {
            Ok(stat) if stat.kind != FileKind::Dir => out.push(Finding::fail(
                format!("account {user}: home {} is not a directory", home.display()),
                format!("install -d -o root -g root -m 0755 {}", home.display()),
            )),
            Ok(stat) if account.may_write(stat) => out.push(Finding::fail(
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
            self.check_password(out, account, sshd);
        }
        Some(account)
    }

    fn check_socket(&self, out: &mut Vec<Finding>, facts: &SocketFacts, account: Option<&Account>) {
        let user = self.user();
        let socket = &self.socket;
        let dir = &facts.dir;
        let group_fix = |path: &Path, mode: u32| {
            format!(
                "chgrp GROUP {} && chmod {mode:04o} {0}, GROUP being the broker's socket group that {user} is in (systemd-tmpfiles and piped.socket do this)",
                path.display()
            )
        };
        match &facts.dir_stat {
            Err(e) => out.push(Finding::fail(
                format!("socket directory {}: {e}", dir.display()),
                "start the broker (systemctl start piped.socket), which creates it",
            )),
            Ok(stat) => {
                let mode = stat.mode;
                let in_group = account.is_some_and(|a| a.in_group(stat.gid));
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
                            stat.group
                        ),
                        group_fix(dir, SOCKET_DIR_MAX_MODE),
                    ));
                } else {
                    out.push(Finding::Ok(format!(
                        "socket directory {} is {mode:04o}, group {}",
                        dir.display(),
                        stat.group
                    )));
                }
            }
        }

        let (stat, connect) = match &facts.socket {
            SocketFile::Socket { stat, connect } => (stat, connect),
            SocketFile::Missing => {
                out.push(Finding::fail(
                    format!(
                        "broker socket {} does not exist: piped is not running",
                        socket.display()
                    ),
                    "systemctl enable --now piped.socket (or start piped)",
                ));
                return;
            }
            SocketFile::Unreadable(e) => {
                out.push(Finding::fail(
                    format!("broker socket {}: {e}", socket.display()),
                    "check the path given with --socket",
                ));
                return;
            }
            SocketFile::NotSocket => {
                out.push(Finding::fail(
                    format!("{} is not a socket", socket.display()),
                    "remove it and restart the broker: systemctl restart piped.socket",
                ));
                return;
            }
        };
        let mode = stat.mode;
        let in_group = account.is_some_and(|a| a.in_group(stat.gid));
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
                    stat.group
                ),
                group_fix(socket, SOCKET_MODE),
            ));
        } else {
            out.push(Finding::Ok(format!(
                "broker socket {} is {mode:04o}, group {}",
                socket.display(),
                stat.group
            )));
        }

        match *connect {
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
        facts: &KeysFile,
        sshd: Option<&SshdSettings>,
        account: Option<&Account>,
    ) {
        let path = &self.admin.authorized_keys;
        if let (Some(sshd), Some(account)) = (sshd, account) {
            let files: Vec<PathBuf> = sshd
                .all("authorizedkeysfile")
                .flat_map(str::split_whitespace)
                .map(|file| expand_keys_file(file, account))
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

        let file = match facts {
            KeysFile::Read(file) => file,
            KeysFile::Missing => {
                out.push(Finding::fail(
                    format!("{} does not exist", path.display()),
                    "pipe-admin sync",
                ));
                return;
            }
            KeysFile::Unreadable(e) => {
                out.push(Finding::fail(
                    e.clone(),
                    "repair the file by hand, then pipe-admin sync",
                ));
                return;
            }
        };
        if let Some(account) = account {
            self.check_not_writable(out, path, &file.stats, account);
        }
        match &file.key_dir {
            Err(e) => out.push(Finding::fail(
                format!("key directory {}: {e}", self.admin.keys_dir.display()),
                "repair or remove the entry named, then pipe-admin sync",
            )),
            Ok(dir) => {
                if dir.block_current {
                    let count = match dir.keys.len() {
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
                for foreign in &file.foreign_keys {
                    let Some(owner) = dir.owner_of(&foreign.fingerprint) else {
                        continue;
                    };
                    out.push(Finding::fail(
                        format!(
                            "line {} of {} also authorizes {}/{} ({}) outside the managed block, and sshd uses the first matching line",
                            foreign.line,
                            path.display(),
                            owner.user,
                            owner.name,
                            foreign.fingerprint
                        ),
                        format!("delete line {} of {}", foreign.line, path.display()),
                    ));
                }
            }
        }

        // A hand-written line must be as tight as pipe-admin's, unless sshd forces
        // pipe-shell on every login of the account (pipe-admin(8), DOCTOR).
        let forced = sshd.and_then(forced_pipe_shell).is_some();
        let loose: Vec<usize> = file
            .foreign_lines
            .iter()
            .filter(|line| line.is_key)
            .filter(|line| !is_restricted(&line.text))
            .map(|line| line.number)
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

    /// Neither the file nor its directory may be writable by the account: it could add
    /// keys of its own.
    fn check_not_writable(
        &self,
        out: &mut Vec<Finding>,
        path: &Path,
        stats: &[(PathBuf, Option<super::probe::Stat>)],
        account: &Account,
    ) {
        let user = self.user();
        let writable: Vec<&Path> = stats
            .iter()
            .filter(|(_, stat)| stat.as_ref().is_some_and(|s| account.may_write(s)))
            .map(|(p, _)| p.as_path())
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

/// The effective `ForceCommand` when it runs pipe-shell (by file name).
fn forced_pipe_shell(sshd: &SshdSettings) -> Option<ForcedShell> {
    let command = sshd.get("forcecommand").filter(|c| *c != "none")?;
    compat::forced_shell(command)
}

/// Whether an authorized_keys line has both `restrict` and `command=` among its options.
fn is_restricted(line: &str) -> bool {
    let Some(options) = compat::key_options(line) else {
        return false;
    };
    let mut restrict = false;
    let mut command = false;
    for option in options {
        let lower = option.to_ascii_lowercase();
        restrict |= lower == "restrict";
        command |= lower.starts_with("command=");
    }
    restrict && command
}

/// An `AuthorizedKeysFile` entry for one account: `%%`, `%h`, `%u`, `%U` expanded, and a
/// relative path taken from the home directory, as sshd does.
fn expand_keys_file(entry: &str, account: &Account) -> PathBuf {
    let mut out = String::new();
    let mut chars = entry.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some('h') => out.push_str(&account.home.to_string_lossy()),
            Some('u') => out.push_str(&account.name),
            Some('U') => out.push_str(&account.uid.to_string()),
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
        account.home.join(path)
    }
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
    fn authorized_keys_files_expand_like_sshd() {
        let account = Account {
            name: "pipe".into(),
            uid: 990,
            groups: vec![990],
            shell: PathBuf::from("/usr/bin/pipe-shell"),
            home: PathBuf::from("/var/lib/pipe"),
            home_stat: Err("unused".into()),
            password: Ok(None),
        };
        assert_eq!(
            expand_keys_file(".ssh/authorized_keys", &account),
            PathBuf::from("/var/lib/pipe/.ssh/authorized_keys")
        );
        assert_eq!(
            expand_keys_file("/etc/keys/%u-%U%%%x%", &account),
            PathBuf::from("/etc/keys/pipe-990%%x%")
        );
        assert_eq!(
            expand_keys_file("%h/k", &account),
            PathBuf::from("/var/lib/pipe/k")
        );
    }
}
