//! Turns [`Facts`] into [`Finding`]s: a pure function of what doctor was asked to check
//! ([`Doctor`]) and what [`probe`](super::probe) found, so every verdict is testable
//! without root.

use std::io;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use super::finding::Finding;
use super::probe::{
    Account, AccountLookup, Facts, FileKind, KeysFile, SHADOW, SocketFacts, SocketFile, SshdRun,
    SshdSettings, Stat, match_spec,
};
use super::setup::Doctor;
use crate::keys::options;
use crate::shell::args::{self, ArgsError, PROGRAM};
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
            "add `{setting}` to the `Match User {}` block ({}), then `sshd -t && systemctl reload ssh`",
            self.user(),
            paths::SSHD_SNIPPET
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
        let forced = match args::parse_forced_command(command) {
            Ok(forced) => forced,
            Err(ArgsError::NotPipeShell(_) | ArgsError::EmptyForced) => {
                out.push(Finding::fail(
                    format!("sshd: ForceCommand for {user} runs {command}, not {PROGRAM}"),
                    self.match_block_fix(&format!("ForceCommand {}", self.pipe_shell_path())),
                ));
                return;
            }
            // pipe-shell itself would refuse every login with this message.
            Err(e) => {
                out.push(Finding::fail(
                    format!("sshd: ForceCommand for {user} cannot be read by pipe-shell: {e}"),
                    self.match_block_fix(&format!("ForceCommand {}", self.pipe_shell_path())),
                ));
                return;
            }
        };
        let given = forced.options;
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        out.push(Finding::Ok(format!(
            "sshd: ForceCommand runs {} for {user}",
            forced.program
        )));

        if let Some(fixed) = &given.user {
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
                path(&given.socket),
                paths::SOCKET,
                self.socket.display().to_string(),
            ),
            (
                "--keys-dir",
                path(&given.keys_dir),
                paths::KEYS_DIR,
                self.admin.keys_dir.display().to_string(),
            ),
            (
                "--service-user",
                given.service_user.clone(),
                paths::SERVICE_USER,
                user.to_string(),
            ),
        ];
        for (flag, value, default, checked) in agree {
            let used = value.as_deref().unwrap_or(default);
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
        } else if given.user.is_none() {
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
        if shell_name == PROGRAM {
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
        let forced = sshd.is_some_and(runs_pipe_shell);
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
        stats: &[(PathBuf, Option<Stat>)],
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

/// Whether the effective `ForceCommand` runs pipe-shell in a form it can read.
fn runs_pipe_shell(sshd: &SshdSettings) -> bool {
    sshd.get("forcecommand")
        .filter(|c| *c != "none")
        .is_some_and(|c| args::parse_forced_command(c).is_ok())
}

/// Whether an authorized_keys line has both `restrict` and `command=` among its options.
fn is_restricted(line: &str) -> bool {
    let Some((options, _)) = options::split_options(line.trim()) else {
        return false;
    };
    let mut restrict = false;
    let mut command = false;
    for option in options::option_list(options) {
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
    //! Every check judged from fixtures: a good machine, then one fact changed at a time.

    use super::*;
    use crate::admin::Admin;
    use crate::admin::authorized_keys::ForeignKey;
    use crate::admin::doctor::probe::{
        ForeignLine, KeyDirFacts, KeysFileFacts, ManagedKey, SshdSettings, Stat,
    };

    /// The settings `sshd -T` prints under the shipped snippet (the keywords doctor reads).
    const GOOD_SSHD: &str = "\
forcecommand /usr/bin/pipe-shell
exposeauthinfo yes
disableforwarding yes
permittty no
permituserrc no
permituserenvironment no
acceptenv LANG
acceptenv LC_*
usepam yes
authorizedkeysfile .ssh/authorized_keys .ssh/authorized_keys2
";

    const ALICE_FP: &str = "SHA256:alice";
    const BOB_FP: &str = "SHA256:bob";

    const PIPE_GID: u32 = 990;
    const SOCKET_GID: u32 = 991;
    const OTHER_GID: u32 = 992;

    fn doctor() -> Doctor {
        Doctor {
            admin: Admin {
                keys_dir: PathBuf::from(paths::KEYS_DIR),
                authorized_keys: PathBuf::from(paths::AUTHORIZED_KEYS),
                forced_command: paths::FORCED_COMMAND.to_string(),
            },
            service_user: paths::SERVICE_USER.to_string(),
            socket: PathBuf::from(paths::SOCKET),
            sshd_config: PathBuf::from(paths::SSHD_CONFIG),
            sshd: PathBuf::from(paths::SSHD),
        }
    }

    fn stat(kind: FileKind, mode: u32, uid: u32, gid: u32, group: &str) -> Stat {
        Stat {
            kind,
            mode,
            uid,
            gid,
            group: group.to_string(),
        }
    }

    fn root_dir(mode: u32) -> Stat {
        stat(FileKind::Dir, mode, 0, 0, "root")
    }

    fn account() -> Account {
        Account {
            name: "pipe".into(),
            uid: 990,
            groups: vec![PIPE_GID, SOCKET_GID],
            shell: PathBuf::from("/usr/bin/pipe-shell"),
            home: PathBuf::from("/var/lib/pipe"),
            home_stat: Ok(root_dir(0o755)),
            password: Ok(Some("*".into())),
        }
    }

    fn keys_file() -> KeysFileFacts {
        KeysFileFacts {
            stats: vec![
                (
                    PathBuf::from(paths::AUTHORIZED_KEYS),
                    Some(stat(FileKind::Other, 0o644, 0, 0, "root")),
                ),
                (PathBuf::from("/var/lib/pipe/.ssh"), Some(root_dir(0o755))),
            ],
            foreign_lines: vec![ForeignLine {
                number: 1,
                text: "# written by hand".into(),
                is_key: false,
            }],
            foreign_keys: Vec::new(),
            key_dir: Ok(KeyDirFacts {
                keys: vec![ManagedKey {
                    user: "alice".into(),
                    name: "laptop".into(),
                    fingerprint: ALICE_FP.into(),
                }],
                block_current: true,
            }),
        }
    }

    /// A machine on which every check passes.
    fn good() -> Facts {
        Facts {
            root: true,
            sshd: SshdRun::Settings(SshdSettings::parse(GOOD_SSHD)),
            account: AccountLookup::Found(account()),
            socket: SocketFacts {
                dir: PathBuf::from("/run/pipe"),
                dir_stat: Ok(stat(FileKind::Dir, 0o750, 0, SOCKET_GID, "pipe-socket")),
                socket: SocketFile::Socket {
                    stat: stat(FileKind::Socket, 0o660, 0, SOCKET_GID, "pipe-socket"),
                    connect: Ok(()),
                },
            },
            authorized_keys: KeysFile::Read(keys_file()),
        }
    }

    /// `good()` with `sshd -T` printing `text` instead.
    fn with_sshd(text: &str) -> Facts {
        Facts {
            sshd: SshdRun::Settings(SshdSettings::parse(text)),
            ..good()
        }
    }

    fn with_account(edit: impl FnOnce(&mut Account)) -> Facts {
        let mut account = account();
        edit(&mut account);
        Facts {
            account: AccountLookup::Found(account),
            ..good()
        }
    }

    fn with_socket(socket: SocketFile) -> Facts {
        let mut facts = good();
        facts.socket.socket = socket;
        facts
    }

    fn with_keys_file(edit: impl FnOnce(&mut KeysFileFacts)) -> Facts {
        let mut file = keys_file();
        edit(&mut file);
        Facts {
            authorized_keys: KeysFile::Read(file),
            ..good()
        }
    }

    /// The report's lines, as printed.
    fn lines(facts: &Facts) -> Vec<String> {
        judge(&doctor(), facts)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn ok(what: &str) -> String {
        format!("ok: {what}")
    }

    fn note(what: &str) -> String {
        format!("note: {what}")
    }

    fn fail(problem: &str, fix: &str) -> String {
        format!("FAIL: {problem} — fix: {fix}")
    }

    fn match_fix(setting: &str) -> String {
        format!(
            "add `{setting}` to the `Match User pipe` block (/etc/ssh/sshd_config.d/50-pipe.conf), then `sshd -t && systemctl reload ssh`"
        )
    }

    /// Asserts that the report holds `line`, once.
    #[track_caller]
    fn assert_has(facts: &Facts, line: &str) {
        let lines = lines(facts);
        let count = lines.iter().filter(|l| *l == line).count();
        assert_eq!(count, 1, "{line}\nnot once in:\n{}", lines.join("\n"));
    }

    /// Asserts that no line of the report contains `fragment`.
    #[track_caller]
    fn assert_lacks(facts: &Facts, fragment: &str) {
        let lines = lines(facts);
        assert!(
            lines.iter().all(|l| !l.contains(fragment)),
            "{fragment} in:\n{}",
            lines.join("\n")
        );
    }

    /// The failed lines of a report.
    fn fails(facts: &Facts) -> Vec<String> {
        judge(&doctor(), facts)
            .iter()
            .filter(|f| f.is_fail())
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_good_machine_passes_every_check_in_order() {
        let findings = judge(&doctor(), &good());
        assert!(!findings.iter().any(Finding::is_fail));
        let lines: Vec<String> = findings.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "ok: sshd reads /etc/ssh/sshd_config and applies it to pipe",
                "ok: sshd: ForceCommand runs /usr/bin/pipe-shell for pipe",
                "ok: sshd: ExposeAuthInfo yes: pipe-shell tells pipe's users apart by their key",
                "ok: sshd: forwarding is off for pipe",
                "ok: sshd: PermitTTY no for pipe",
                "ok: sshd: PermitUserRC no for pipe",
                "ok: sshd: PermitUserEnvironment no",
                "ok: sshd: clients cannot send SSH_ORIGINAL_COMMAND or SSH_USER_AUTH",
                "ok: account pipe: login shell /usr/bin/pipe-shell",
                "ok: account pipe: home /var/lib/pipe exists and pipe cannot write to it",
                "ok: account pipe: password field is not locked",
                "ok: socket directory /run/pipe is 0750, group pipe-socket",
                "ok: broker socket /run/pipe/piped.sock is 0660, group pipe-socket",
                "ok: broker accepts connections on /run/pipe/piped.sock",
                "ok: sshd reads pipe's keys from /var/lib/pipe/.ssh/authorized_keys",
                "ok: pipe cannot change /var/lib/pipe/.ssh/authorized_keys",
                "ok: /var/lib/pipe/.ssh/authorized_keys matches the key directory /etc/pipe/keys (1 key)",
                "ok: every key line of /var/lib/pipe/.ssh/authorized_keys has restrict and command=",
            ]
        );
    }

    #[test]
    fn not_running_as_root_fails_first() {
        let facts = Facts {
            root: false,
            ..good()
        };
        assert_eq!(
            lines(&facts)[0],
            fail(
                "doctor is not running as root, so it cannot read /etc/shadow or run sshd -T",
                "run it as root: sudo pipe-admin doctor"
            )
        );
        assert_eq!(fails(&facts).len(), 1);
    }

    #[test]
    fn sshd_that_cannot_run_fails_and_its_checks_are_left_out() {
        let facts = Facts {
            sshd: SshdRun::NotRun("No such file or directory (os error 2)".into()),
            ..good()
        };
        assert_has(
            &facts,
            &fail(
                "cannot run /usr/sbin/sshd: No such file or directory (os error 2)",
                "install openssh-server, or name sshd with --sshd PATH",
            ),
        );
        assert_eq!(fails(&facts).len(), 1);
        // Nothing that needs sshd's settings: its checks, the password, AuthorizedKeysFile.
        assert_lacks(&facts, ": sshd:");
        assert_lacks(&facts, "password");
        assert_lacks(&facts, "sshd reads pipe's keys");
        assert_has(&facts, &ok("account pipe: login shell /usr/bin/pipe-shell"));
    }

    #[test]
    fn sshd_that_rejects_the_configuration_fails_with_its_first_words() {
        let failed = |stderr: &str| Facts {
            sshd: SshdRun::Failed {
                stderr: stderr.into(),
            },
            ..good()
        };
        let fix = "repair the sshd configuration until `sshd -t -f /etc/ssh/sshd_config` is silent";
        let run =
            "/usr/sbin/sshd -T -f /etc/ssh/sshd_config -C user=pipe,host=localhost,addr=127.0.0.1";
        assert_has(
            &failed("\n  /etc/ssh/sshd_config line 3: Bad option\nterminating\n"),
            &fail(
                &format!("`{run}` failed: /etc/ssh/sshd_config line 3: Bad option"),
                fix,
            ),
        );
        let silent = failed("");
        assert_has(&silent, &fail(&format!("`{run}` failed: no message"), fix));
        assert_lacks(&silent, ": sshd:");
    }

    #[test]
    fn a_missing_force_command_fails() {
        let fix = match_fix("ForceCommand /usr/bin/pipe-shell");
        let problem = "sshd: no ForceCommand for pipe: only the key lines' command= keep its logins in pipe-shell";
        for text in [
            GOOD_SSHD.replace("forcecommand /usr/bin/pipe-shell\n", ""),
            GOOD_SSHD.replace("forcecommand /usr/bin/pipe-shell", "forcecommand none"),
        ] {
            let facts = with_sshd(&text);
            assert_eq!(fails(&facts), [fail(problem, &fix)]);
            // Without a ForceCommand there is nothing to judge ExposeAuthInfo by.
            assert_lacks(&facts, "ExposeAuthInfo");
        }
    }

    #[test]
    fn a_force_command_that_is_not_pipe_shell_fails() {
        let facts = with_sshd(&GOOD_SSHD.replace(
            "forcecommand /usr/bin/pipe-shell",
            "forcecommand /usr/bin/evilpipe-shell -x",
        ));
        assert_eq!(
            fails(&facts),
            [fail(
                "sshd: ForceCommand for pipe runs /usr/bin/evilpipe-shell -x, not pipe-shell",
                &match_fix("ForceCommand /usr/bin/pipe-shell")
            )]
        );
    }

    #[test]
    fn a_force_command_pipe_shell_cannot_read_fails_with_its_message() {
        for (command, why) in [
            ("/usr/bin/pipe-shell --socket", "--socket needs a value"),
            ("/usr/bin/pipe-shell --user 'alice", "forced command: "),
        ] {
            let facts = with_sshd(&GOOD_SSHD.replace(
                "forcecommand /usr/bin/pipe-shell",
                &format!("forcecommand {command}"),
            ));
            let fails = fails(&facts);
            assert_eq!(fails.len(), 1, "{command}: {fails:?}");
            assert!(
                fails[0].starts_with(&format!(
                    "FAIL: sshd: ForceCommand for pipe cannot be read by pipe-shell: {why}"
                )),
                "{command}: {fails:?}"
            );
        }
    }

    #[test]
    fn a_force_command_is_read_like_pipe_shell_reads_it() {
        // pipe-shell takes the last of a repeated option, so this one uses the default.
        let facts = with_sshd(&GOOD_SSHD.replace(
            "forcecommand /usr/bin/pipe-shell",
            "forcecommand /usr/bin/pipe-shell --socket /tmp/s --socket /run/pipe/piped.sock",
        ));
        assert_eq!(fails(&facts), Vec::<String>::new());
    }

    #[test]
    fn a_force_command_with_a_fixed_user_fails() {
        let facts = with_sshd(
            &GOOD_SSHD
                .replace(
                    "forcecommand /usr/bin/pipe-shell",
                    "forcecommand /usr/bin/pipe-shell --user alice",
                )
                .replace("exposeauthinfo yes", "exposeauthinfo no"),
        );
        // The fixed user is the failure; ExposeAuthInfo no is then not a second one.
        assert_eq!(
            fails(&facts),
            [fail(
                "sshd: ForceCommand fixes --user alice: every key would log in as alice",
                "remove --user from ForceCommand; pipe-shell finds the user by the key (ExposeAuthInfo yes)"
            )]
        );
    }

    #[test]
    fn a_force_command_for_other_files_than_doctor_checks_fails() {
        let facts = with_sshd(&GOOD_SSHD.replace(
            "forcecommand /usr/bin/pipe-shell",
            "forcecommand /usr/bin/pipe-shell --socket /tmp/s --keys-dir /etc/pipe/keys --service-user svc",
        ));
        assert_eq!(
            fails(&facts),
            [
                fail(
                    "sshd: ForceCommand's pipe-shell uses --socket /tmp/s, but doctor checks /run/pipe/piped.sock",
                    "make them agree: --socket in ForceCommand, or doctor's --socket"
                ),
                fail(
                    "sshd: ForceCommand's pipe-shell uses --service-user svc, but doctor checks pipe",
                    "make them agree: --service-user in ForceCommand, or doctor's --service-user"
                ),
            ]
        );
        // pipe-shell's defaults are what doctor's defaults check.
        let mut custom = doctor();
        custom.socket = PathBuf::from("/tmp/s");
        let lines: Vec<String> = judge(&custom, &good())
            .iter()
            .filter(|f| f.is_fail())
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            lines,
            [fail(
                "sshd: ForceCommand's pipe-shell uses --socket /run/pipe/piped.sock, but doctor checks /tmp/s",
                "make them agree: --socket in ForceCommand, or doctor's --socket"
            )]
        );
    }

    #[test]
    fn expose_auth_info_off_fails() {
        for text in [
            GOOD_SSHD.replace("exposeauthinfo yes", "exposeauthinfo no"),
            GOOD_SSHD.replace("exposeauthinfo yes\n", ""),
        ] {
            assert_eq!(
                fails(&with_sshd(&text)),
                [fail(
                    "sshd: ExposeAuthInfo is not yes for pipe: ForceCommand replaces the key lines' command=, so pipe-shell cannot tell who logged in and refuses everyone",
                    &match_fix("ExposeAuthInfo yes")
                )]
            );
        }
    }

    #[test]
    fn forwarding_is_off_by_one_setting_or_all_four() {
        let one_by_one = GOOD_SSHD.replace(
            "disableforwarding yes",
            "disableforwarding no\nallowtcpforwarding no\nallowstreamlocalforwarding no\nallowagentforwarding no\nx11forwarding no",
        );
        assert_has(
            &with_sshd(&one_by_one),
            &ok("sshd: forwarding is off for pipe"),
        );
        let one_left = one_by_one.replace("allowagentforwarding no", "allowagentforwarding yes");
        assert_eq!(
            fails(&with_sshd(&one_left)),
            [fail(
                "sshd: forwarding is not disabled for pipe (allowagentforwarding yes)",
                &match_fix("DisableForwarding yes")
            )]
        );
        let unset = GOOD_SSHD.replace("disableforwarding yes\n", "x11forwarding no\n");
        assert_eq!(
            fails(&with_sshd(&unset)),
            [fail(
                "sshd: forwarding is not disabled for pipe (allowtcpforwarding ?, allowstreamlocalforwarding ?, allowagentforwarding ?)",
                &match_fix("DisableForwarding yes")
            )]
        );
    }

    #[test]
    fn tty_user_rc_and_user_environment_allowed_fail() {
        let text = GOOD_SSHD
            .replace("permittty no", "permittty yes")
            .replace("permituserrc no\n", "")
            .replace("permituserenvironment no", "permituserenvironment yes");
        assert_eq!(
            fails(&with_sshd(&text)),
            [
                fail(
                    "sshd: PermitTTY is yes for pipe",
                    &match_fix("PermitTTY no")
                ),
                fail(
                    "sshd: PermitUserRC is unset for pipe",
                    &match_fix("PermitUserRC no")
                ),
                fail(
                    "sshd: PermitUserEnvironment is yes: environment= in a key line or ~/.ssh/environment reaches the login shell before pipe-shell",
                    "set `PermitUserEnvironment no` in the main sshd_config (it cannot be set in a Match block)"
                ),
            ]
        );
    }

    #[test]
    fn accept_env_that_lets_clients_send_protected_variables_fails() {
        let text = GOOD_SSHD.replace(
            "acceptenv LANG",
            "acceptenv LANG\nacceptenv SSH_*\nacceptenv *",
        );
        assert_eq!(
            fails(&with_sshd(&text)),
            [fail(
                "sshd: AcceptEnv SSH_* * lets a client send SSH_ORIGINAL_COMMAND or SSH_USER_AUTH, and pose as a forced command",
                "remove SSH_* * from AcceptEnv in /etc/ssh/sshd_config (a Match block cannot take AcceptEnv patterns back)"
            )]
        );
    }

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
    fn an_account_that_cannot_be_looked_up_fails_and_its_checks_are_left_out() {
        let missing = Facts {
            account: AccountLookup::Missing,
            ..good()
        };
        let account_fails: Vec<String> = fails(&missing)
            .into_iter()
            .filter(|l| l.contains("account"))
            .collect();
        assert_eq!(
            account_fails,
            [fail(
                "account pipe does not exist",
                "useradd --system --home-dir /var/lib/pipe --shell /usr/bin/pipe-shell pipe (the packages create it)"
            )]
        );
        for left_out in [
            "login shell",
            "account pipe: home",
            "password",
            "sshd reads pipe's keys",
            "cannot change",
        ] {
            assert_lacks(&missing, left_out);
        }
        // Without the account its groups are unknown: the socket cannot be judged usable.
        assert_has(
            &missing,
            &fail(
                "broker socket /run/pipe/piped.sock has group pipe-socket, which pipe is not in",
                "chgrp GROUP /run/pipe/piped.sock && chmod 0660 /run/pipe/piped.sock, GROUP being the broker's socket group that pipe is in (systemd-tmpfiles and piped.socket do this)",
            ),
        );

        let failed = Facts {
            account: AccountLookup::Failed("EIO: I/O error".into()),
            ..good()
        };
        assert_has(
            &failed,
            &fail(
                "looking up account pipe: EIO: I/O error",
                "check the user database (getent passwd)",
            ),
        );
    }

    #[test]
    fn login_shells_are_judged_by_name() {
        let shell = |path: &str| with_account(|a| a.shell = PathBuf::from(path));
        let fix = "usermod -s /usr/bin/pipe-shell pipe";
        assert_has(
            &shell("/bin/sh"),
            &ok(&format!(
                "account pipe: login shell /bin/sh (pipe-shell itself is the tighter choice: {fix})"
            )),
        );
        assert_eq!(
            fails(&shell("/bin/bash")),
            [fail(
                "account pipe: login shell /bin/bash reads startup files in the account's home before pipe-shell runs",
                fix
            )]
        );
        assert_eq!(
            fails(&shell("/usr/sbin/nologin")),
            [fail(
                "account pipe: login shell /usr/sbin/nologin runs no command, so pipe-shell never starts",
                fix
            )]
        );
    }

    #[test]
    fn a_home_the_account_can_write_or_that_is_missing_fails() {
        let fix = "install -d -o root -g root -m 0755 /var/lib/pipe";
        assert_eq!(
            fails(&with_account(
                |a| a.home_stat = Ok(stat(FileKind::Other, 0o644, 0, 0, "root"))
            )),
            [fail(
                "account pipe: home /var/lib/pipe is not a directory",
                fix
            )]
        );
        assert_eq!(
            fails(&with_account(
                |a| a.home_stat = Ok(stat(FileKind::Dir, 0o775, 0, PIPE_GID, "pipe"))
            )),
            [fail(
                "account pipe: home /var/lib/pipe is writable by pipe, who could then plant files sshd reads",
                "chown root:root /var/lib/pipe && chmod 0755 /var/lib/pipe"
            )]
        );
        assert_eq!(
            fails(&with_account(
                |a| a.home_stat = Err("No such file or directory (os error 2)".into())
            )),
            [fail(
                "account pipe: home /var/lib/pipe: No such file or directory (os error 2)",
                fix
            )]
        );
    }

    #[test]
    fn password_fields_are_judged_with_use_pam() {
        let password = |field: Result<Option<String>, String>| with_account(|a| a.password = field);
        let locked = password(Ok(Some("!".into())));
        assert!(fails(&locked).is_empty());
        assert_has(
            &locked,
            &note(
                "account pipe is locked (password field starts with !); fine while UsePAM yes, refused if it ever becomes no (usermod -p '*' pipe)",
            ),
        );
        let locked_without_pam = Facts {
            sshd: SshdRun::Settings(SshdSettings::parse(
                &GOOD_SSHD.replace("usepam yes", "usepam no"),
            )),
            ..password(Ok(Some("!*".into())))
        };
        assert_eq!(
            fails(&locked_without_pam),
            [fail(
                "account pipe is locked (password field \"!*\") and sshd has UsePAM no: sshd refuses every login",
                "usermod -p '*' pipe"
            )]
        );
        let unlisted = password(Ok(None));
        assert!(fails(&unlisted).is_empty());
        assert_has(
            &unlisted,
            &note("pipe is not in /etc/shadow; its password field was not checked"),
        );
        assert_eq!(
            fails(&password(Err("Permission denied (os error 13)".into()))),
            [fail(
                "cannot read /etc/shadow: Permission denied (os error 13)",
                "run doctor as root"
            )]
        );
    }

    #[test]
    fn socket_directories_must_be_closed_and_enterable() {
        let dir = |stat: Result<Stat, String>| {
            let mut facts = good();
            facts.socket.dir_stat = stat;
            facts
        };
        assert_eq!(
            fails(&dir(Err("No such file or directory (os error 2)".into()))),
            [fail(
                "socket directory /run/pipe: No such file or directory (os error 2)",
                "start the broker (systemctl start piped.socket), which creates it"
            )]
        );
        assert_eq!(
            fails(&dir(Ok(stat(
                FileKind::Dir,
                0o755,
                0,
                SOCKET_GID,
                "pipe-socket"
            )))),
            [fail(
                "socket directory /run/pipe has mode 0755, more open than 0750",
                "chmod 0750 /run/pipe"
            )]
        );
        let group_fix = "chgrp GROUP /run/pipe && chmod 0750 /run/pipe, GROUP being the broker's socket group that pipe is in (systemd-tmpfiles and piped.socket do this)";
        assert_eq!(
            fails(&dir(Ok(stat(FileKind::Dir, 0o750, 0, OTHER_GID, "other")))),
            [fail(
                "socket directory /run/pipe (mode 0750, group other) cannot be entered by pipe's groups",
                group_fix
            )]
        );
        assert_eq!(
            fails(&dir(Ok(stat(
                FileKind::Dir,
                0o740,
                0,
                SOCKET_GID,
                "pipe-socket"
            )))),
            [fail(
                "socket directory /run/pipe (mode 0740, group pipe-socket) cannot be entered by pipe's groups",
                group_fix
            )]
        );
    }

    #[test]
    fn the_socket_must_exist_be_a_socket_and_be_open_to_the_group() {
        assert_eq!(
            fails(&with_socket(SocketFile::Missing)),
            [fail(
                "broker socket /run/pipe/piped.sock does not exist: piped is not running",
                "systemctl enable --now piped.socket (or start piped)"
            )]
        );
        assert_eq!(
            fails(&with_socket(SocketFile::Unreadable(
                "Permission denied (os error 13)".into()
            ))),
            [fail(
                "broker socket /run/pipe/piped.sock: Permission denied (os error 13)",
                "check the path given with --socket"
            )]
        );
        let not_socket = with_socket(SocketFile::NotSocket);
        assert_eq!(
            fails(&not_socket),
            [fail(
                "/run/pipe/piped.sock is not a socket",
                "remove it and restart the broker: systemctl restart piped.socket"
            )]
        );
        assert_lacks(&not_socket, "accepts connections");
        let socket = |mode, gid, group: &str| {
            with_socket(SocketFile::Socket {
                stat: stat(FileKind::Socket, mode, 0, gid, group),
                connect: Ok(()),
            })
        };
        let open = socket(0o666, SOCKET_GID, "pipe-socket");
        assert_eq!(
            fails(&open),
            [fail(
                "broker socket /run/pipe/piped.sock has mode 0666, not 0660",
                "chmod 0660 /run/pipe/piped.sock (piped.socket sets SocketMode=0660)"
            )]
        );
        // A wrong mode is not the end: the connection is still tried.
        assert_has(
            &open,
            &ok("broker accepts connections on /run/pipe/piped.sock"),
        );
        assert_eq!(
            fails(&socket(0o660, OTHER_GID, "other")),
            [fail(
                "broker socket /run/pipe/piped.sock has group other, which pipe is not in",
                "chgrp GROUP /run/pipe/piped.sock && chmod 0660 /run/pipe/piped.sock, GROUP being the broker's socket group that pipe is in (systemd-tmpfiles and piped.socket do this)"
            )]
        );
    }

    #[test]
    fn a_broker_that_does_not_accept_fails() {
        let connect = |result| {
            with_socket(SocketFile::Socket {
                stat: stat(FileKind::Socket, 0o660, 0, SOCKET_GID, "pipe-socket"),
                connect: result,
            })
        };
        assert_eq!(
            fails(&connect(Err(Errno::EAGAIN))),
            [fail(
                "broker on /run/pipe/piped.sock does not accept connections (its queue is full)",
                "look at `journalctl -u piped`; restart it if it hangs: systemctl restart piped"
            )]
        );
        assert_eq!(
            fails(&connect(Err(Errno::ECONNREFUSED))),
            [fail(
                &format!(
                    "no broker listens on /run/pipe/piped.sock ({}): the socket is left over",
                    io::Error::from(Errno::ECONNREFUSED)
                ),
                "systemctl restart piped.socket (or start piped)"
            )]
        );
    }

    #[test]
    fn sshd_must_read_the_authorized_keys_pipe_admin_writes() {
        let fix = format!(
            "{}, or give doctor and pipe-admin that file with --authorized-keys",
            match_fix("AuthorizedKeysFile /var/lib/pipe/.ssh/authorized_keys")
        );
        let other = GOOD_SSHD.replace(
            "authorizedkeysfile .ssh/authorized_keys .ssh/authorized_keys2",
            "authorizedkeysfile /etc/ssh/keys/%u %h/k",
        );
        assert_eq!(
            fails(&with_sshd(&other)),
            [fail(
                "sshd reads pipe's keys from /etc/ssh/keys/pipe /var/lib/pipe/k, not from /var/lib/pipe/.ssh/authorized_keys",
                &fix
            )]
        );
        let none = GOOD_SSHD.replace(
            "authorizedkeysfile .ssh/authorized_keys .ssh/authorized_keys2\n",
            "",
        );
        assert_eq!(
            fails(&with_sshd(&none)),
            [fail(
                "sshd reads pipe's keys from nowhere, not from /var/lib/pipe/.ssh/authorized_keys",
                &fix
            )]
        );
    }

    #[test]
    fn authorized_keys_files_expand_like_sshd() {
        let account = account();
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

    #[test]
    fn a_missing_or_unreadable_authorized_keys_fails_and_ends_the_key_checks() {
        let missing = Facts {
            authorized_keys: KeysFile::Missing,
            ..good()
        };
        assert_eq!(
            fails(&missing),
            [fail(
                "/var/lib/pipe/.ssh/authorized_keys does not exist",
                "pipe-admin sync"
            )]
        );
        assert_lacks(&missing, "key directory");
        assert_lacks(&missing, "every key line");
        let broken = Facts {
            authorized_keys: KeysFile::Unreadable("markers are broken".into()),
            ..good()
        };
        assert_eq!(
            fails(&broken),
            [fail(
                "markers are broken",
                "repair the file by hand, then pipe-admin sync"
            )]
        );
    }

    #[test]
    fn an_authorized_keys_the_account_can_write_fails() {
        let facts = with_keys_file(|file| {
            file.stats[0].1 = Some(stat(FileKind::Other, 0o644, 990, PIPE_GID, "pipe"));
            file.stats[1].1 = Some(stat(FileKind::Dir, 0o775, 0, PIPE_GID, "pipe"));
        });
        assert_eq!(
            fails(&facts),
            [fail(
                "pipe can write to /var/lib/pipe/.ssh/authorized_keys and /var/lib/pipe/.ssh, and so add keys of its own",
                "chown root:root /var/lib/pipe/.ssh/authorized_keys /var/lib/pipe/.ssh && chmod go-w /var/lib/pipe/.ssh/authorized_keys /var/lib/pipe/.ssh"
            )]
        );
        // A path doctor could not stat is not counted as writable.
        let unknown = with_keys_file(|file| file.stats[0].1 = None);
        assert_has(
            &unknown,
            &ok("pipe cannot change /var/lib/pipe/.ssh/authorized_keys"),
        );
    }

    #[test]
    fn the_managed_block_must_match_the_key_directory() {
        let stale = with_keys_file(|file| {
            if let Ok(dir) = &mut file.key_dir {
                dir.block_current = false;
            }
        });
        assert_eq!(
            fails(&stale),
            [fail(
                "the managed block of /var/lib/pipe/.ssh/authorized_keys does not match the key directory /etc/pipe/keys",
                "pipe-admin sync (check `pipe-admin key list` first: the directory wins)"
            )]
        );
        let two = with_keys_file(|file| {
            if let Ok(dir) = &mut file.key_dir {
                dir.keys.push(ManagedKey {
                    user: "bob".into(),
                    name: "ci".into(),
                    fingerprint: BOB_FP.into(),
                });
            }
        });
        assert_has(
            &two,
            &ok(
                "/var/lib/pipe/.ssh/authorized_keys matches the key directory /etc/pipe/keys (2 keys)",
            ),
        );
        let unloadable = with_keys_file(|file| file.key_dir = Err("bad entry x".into()));
        assert_eq!(
            fails(&unloadable),
            [fail(
                "key directory /etc/pipe/keys: bad entry x",
                "repair or remove the entry named, then pipe-admin sync"
            )]
        );
        // The lint of hand-written lines still runs.
        assert_has(
            &unloadable,
            &ok("every key line of /var/lib/pipe/.ssh/authorized_keys has restrict and command="),
        );
    }

    #[test]
    fn a_managed_key_authorized_again_outside_the_block_fails() {
        let facts = with_keys_file(|file| {
            file.foreign_keys = vec![
                ForeignKey {
                    line: 3,
                    fingerprint: "SHA256:stranger".into(),
                },
                ForeignKey {
                    line: 4,
                    fingerprint: ALICE_FP.into(),
                },
            ];
        });
        assert_eq!(
            fails(&facts),
            [fail(
                "line 4 of /var/lib/pipe/.ssh/authorized_keys also authorizes alice/laptop (SHA256:alice) outside the managed block, and sshd uses the first matching line",
                "delete line 4 of /var/lib/pipe/.ssh/authorized_keys"
            )]
        );
    }

    #[test]
    fn loose_key_lines_fail_unless_force_command_runs_pipe_shell() {
        let loose = |file: &mut KeysFileFacts| {
            file.foreign_lines = vec![
                ForeignLine {
                    number: 2,
                    text: "ssh-ed25519 AAAA stranger".into(),
                    is_key: true,
                },
                ForeignLine {
                    number: 3,
                    text: "restrict,command=\"/usr/bin/pipe-shell\" ssh-ed25519 AAAA x".into(),
                    is_key: true,
                },
                ForeignLine {
                    number: 5,
                    text: "no-pty ssh-ed25519 AAAA y".into(),
                    is_key: true,
                },
                ForeignLine {
                    number: 6,
                    text: "restrict nonsense".into(),
                    is_key: false,
                },
            ];
        };
        let problem = "line 2, 5 of /var/lib/pipe/.ssh/authorized_keys lacks restrict or command= outside the managed block";
        let forced = with_keys_file(loose);
        assert!(fails(&forced).is_empty());
        assert_has(
            &forced,
            &note(&format!(
                "{problem}; sshd's ForceCommand still runs pipe-shell for it"
            )),
        );
        let unforced = Facts {
            sshd: SshdRun::Settings(SshdSettings::parse(
                &GOOD_SSHD.replace("forcecommand /usr/bin/pipe-shell\n", ""),
            )),
            ..with_keys_file(loose)
        };
        let want = fail(
            problem,
            "add the key with pipe-admin key add and delete the line, or start it with restrict,command=\"/usr/bin/pipe-shell\"",
        );
        assert!(fails(&unforced).contains(&want), "{:?}", fails(&unforced));
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
    fn only_fail_lines_fail_the_run() {
        // Notes alone (a locked password under PAM, a shadow entry missing) pass.
        let notes = with_account(|a| a.password = Ok(Some("!".into())));
        let findings = judge(&doctor(), &notes);
        assert!(findings.iter().any(|f| matches!(f, Finding::Note(_))));
        assert!(!findings.iter().any(Finding::is_fail));
        assert!(
            judge(&doctor(), &with_socket(SocketFile::Missing))
                .iter()
                .any(Finding::is_fail)
        );
    }
}
