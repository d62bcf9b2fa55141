//! `pipe-admin doctor` end to end: the real binaries, `sshd -T` on a private sshd_config,
//! a real `piped` on a private socket, and a throwaway service account.
//!
//! A good setup passes; each test then breaks one thing and checks that doctor fails with
//! the message (and fix) for exactly that. Requires root: doctor reads /etc/shadow and runs
//! `sshd -T`, and the tests create the account [`ACCOUNT`] and change its shell, home and
//! password field. Those changes are global, so every test holds [`serial`]'s locks and
//! resets the account first and last. No sshd daemon is started: `sshd -T` only reads the
//! configuration.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};

use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::Signal;

use crate::harness::{
    Broker, SSHD, account_exists, create_account, keygen, pipe_admin, try_usermod,
};

/// The service account of these tests: their own, because they lock it, give it bash and
/// move its home, which would break the end-to-end tests' logins as `pipetestsvc`.
const ACCOUNT: &str = "pipetestdoc";

/// Where test processes take turns with the account (two `cargo test` runs at once).
const LOCK_FILE: &str = "/tmp/pipe-doctor-tests.lock";

/// Holds every test in turn, in this process and across processes: they share the account.
struct Serial {
    _file: Flock<fs::File>,
    _thread: MutexGuard<'static, ()>,
}

fn serial() -> Serial {
    static LOCK: Mutex<()> = Mutex::new(());
    let thread = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK_FILE)
        .expect("open the lock file");
    let file = Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("lock the lock file");
    Serial {
        _file: file,
        _thread: thread,
    }
}

/// Creates [`ACCOUNT`] once (with its own group) and puts it back in the good state: shell
/// /bin/sh, home /, password field `*`.
fn reset_account() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the doctor tests create the account {ACCOUNT} and run sshd -T: run them as root"
    );
    create_account(ACCOUNT, true);
    usermod(&["-p", "*", "-s", "/bin/sh", "-d", "/"]);
}

/// `usermod ARGS ACCOUNT`, retried while another process holds the passwd lock.
fn usermod(args: &[&str]) {
    crate::harness::usermod(ACCOUNT, args);
}

fn ssh_keygen(path: &Path) {
    keygen(path, "ed25519", "doctor-test");
}

/// A `piped` for [`ACCOUNT`] on `socket`, with the built-in defaults.
fn start_broker(socket: &Path, state: &Path) -> Broker {
    let mut cmd = Broker::command(socket, ACCOUNT, state);
    cmd.args(["--service-user", ACCOUNT, "--config", "/dev/null"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Broker::start(cmd, socket, String::new)
}

/// The `Match User` block of a good setup, one setting per line, so a test can drop or
/// change one.
fn good_match_block(setup: &Setup) -> Vec<String> {
    vec![
        format!("AuthorizedKeysFile {}", setup.authorized_keys.display()),
        "DisableForwarding yes".into(),
        "PermitTTY no".into(),
        "PermitUserRC no".into(),
        "ExposeAuthInfo yes".into(),
        format!(
            "ForceCommand {} --socket {} --keys-dir {} --service-user {ACCOUNT}",
            pipe_shell(),
            setup.socket.display(),
            setup.keys_dir.display()
        ),
    ]
}

fn pipe_shell() -> &'static str {
    env!("CARGO_BIN_EXE_pipe-shell")
}

/// A good installation in a temp dir: sshd_config, key directory with one user and key,
/// authorized_keys written by pipe-admin, the socket directory and a running broker.
struct Setup {
    dir: tempfile::TempDir,
    sshd_config: PathBuf,
    keys_dir: PathBuf,
    authorized_keys: PathBuf,
    socket: PathBuf,
    broker: Option<Broker>,
    _serial: Serial,
}

impl Setup {
    fn new() -> Setup {
        let serial = serial();
        reset_account();
        // sshd insists on its privilege separation directory even for -T on some builds.
        fs::create_dir_all("/run/sshd").expect("mkdir /run/sshd");
        let dir = tempfile::Builder::new()
            .prefix("pipe-doctor.")
            .tempdir()
            .expect("temp dir");
        let d = dir.path().to_path_buf();
        ssh_keygen(&d.join("host_key"));
        let run = d.join("run");
        fs::create_dir(&run).unwrap();
        chgrp(&run, ACCOUNT);
        chmod(&run, 0o750);
        let mut setup = Setup {
            sshd_config: d.join("sshd_config"),
            keys_dir: d.join("keys"),
            authorized_keys: d.join("authorized_keys"),
            socket: run.join("piped.sock"),
            broker: None,
            dir,
            _serial: serial,
        };
        setup.write_sshd_config(&[], &good_match_block(&setup));
        setup.admin(&["user", "add", "alice"]);
        let key = d.join("alice_key");
        ssh_keygen(&key);
        setup.admin(&["key", "add", "alice", &format!("{}.pub", key.display())]);
        setup.broker = Some(start_broker(&setup.socket, &d.join("state")));
        setup
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes sshd_config: `global` lines, then the `Match User` block.
    fn write_sshd_config(&self, global: &[&str], block: &[String]) {
        let mut text = format!(
            "HostKey {}\nUsePAM no\nAcceptEnv LANG LC_*\n",
            self.path("host_key").display()
        );
        for line in global {
            text.push_str(line);
            text.push('\n');
        }
        text.push_str(&format!("Match User {ACCOUNT}\n"));
        for line in block {
            text.push_str(&format!("    {line}\n"));
        }
        fs::write(&self.sshd_config, text).unwrap();
    }

    /// The good `Match User` block with every line starting with `keyword` dropped, and
    /// `extra` added.
    fn block_without(&self, keyword: &str, extra: &[&str]) -> Vec<String> {
        let mut block: Vec<String> = good_match_block(self)
            .into_iter()
            .filter(|line| !line.starts_with(keyword))
            .collect();
        block.extend(extra.iter().map(|s| s.to_string()));
        block
    }

    fn forced_command(&self) -> String {
        format!("{} --socket {}", pipe_shell(), self.socket.display())
    }

    fn admin_command(&self) -> Command {
        pipe_admin(
            &self.keys_dir,
            &self.authorized_keys,
            &self.forced_command(),
        )
    }

    fn admin(&self, args: &[&str]) {
        let out = self
            .admin_command()
            .args(args)
            .output()
            .expect("run pipe-admin");
        assert!(
            out.status.success(),
            "pipe-admin {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn doctor(&self) -> Report {
        let out: Output = self
            .admin_command()
            .args(["doctor", "--service-user", ACCOUNT, "--sshd", SSHD])
            .arg("--socket")
            .arg(&self.socket)
            .arg("--sshd-config")
            .arg(&self.sshd_config)
            .stdin(Stdio::null())
            .output()
            .expect("run pipe-admin doctor");
        Report {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn stop_broker(&mut self, sig: Signal) {
        if let Some(mut broker) = self.broker.take() {
            broker.stop(sig);
        }
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.broker.take();
        // Leave the account as other runs expect it, even after a failed assertion.
        if nix::unistd::geteuid().is_root() && account_exists(ACCOUNT) {
            let _ = try_usermod(ACCOUNT, &["-p", "*", "-s", "/bin/sh", "-d", "/"]);
        }
    }
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn chgrp(path: &Path, group: &str) {
    let gid = nix::unistd::Group::from_name(group)
        .unwrap()
        .unwrap_or_else(|| panic!("no group {group}"))
        .gid;
    nix::unistd::chown(path, None, Some(gid)).unwrap();
}

/// What doctor printed and how it exited.
struct Report {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Report {
    fn fails(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|l| l.starts_with("FAIL: "))
            .collect()
    }

    /// Exit 1, and the FAIL lines are exactly one per `expected` fragment, each containing it.
    fn assert_fails_with(&self, expected: &[&str]) {
        assert_eq!(self.code, Some(1), "{self}");
        let fails = self.fails();
        assert_eq!(fails.len(), expected.len(), "{self}");
        for fragment in expected {
            assert!(
                fails.iter().any(|line| line.contains(fragment)),
                "no FAIL line with {fragment:?}\n{self}"
            );
        }
        for line in fails {
            assert!(line.contains(" — fix: "), "a FAIL without a fix: {line}");
        }
    }

    fn assert_passes(&self) {
        assert_eq!(self.code, Some(0), "{self}");
        assert!(self.stderr.is_empty(), "{self}");
        assert!(self.fails().is_empty(), "{self}");
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

#[test]
fn a_good_setup_passes_every_check() {
    let setup = Setup::new();
    let report = setup.doctor();
    report.assert_passes();
    // Every line is an `ok:`, and the checks the issue names are all there.
    assert!(
        report.stdout.lines().all(|l| l.starts_with("ok: ")),
        "{report}"
    );
    for fragment in [
        "ForceCommand runs",
        "forwarding is off",
        "PermitTTY no",
        "PermitUserRC no",
        "PermitUserEnvironment no",
        "clients cannot send SSH_ORIGINAL_COMMAND",
        "ExposeAuthInfo yes",
        "login shell /bin/sh",
        "cannot write to it",
        "password field is not locked",
        "socket directory",
        "is 0660",
        "broker accepts connections",
        "matches the key directory",
        "has restrict and command=",
    ] {
        assert!(report.stdout.contains(fragment), "{fragment:?}\n{report}");
    }
}

#[test]
fn forwarding_left_on_fails() {
    let setup = Setup::new();
    setup.write_sshd_config(&[], &setup.block_without("DisableForwarding", &[]));
    setup
        .doctor()
        .assert_fails_with(&["forwarding is not disabled"]);
}

#[test]
fn forwarding_off_one_by_one_passes() {
    let setup = Setup::new();
    let block = setup.block_without(
        "DisableForwarding",
        &[
            "AllowTcpForwarding no",
            "AllowStreamLocalForwarding no",
            "AllowAgentForwarding no",
            "X11Forwarding no",
        ],
    );
    setup.write_sshd_config(&[], &block);
    setup.doctor().assert_passes();
}

#[test]
fn no_force_command_fails() {
    let setup = Setup::new();
    setup.write_sshd_config(&[], &setup.block_without("ForceCommand", &[]));
    setup.doctor().assert_fails_with(&["no ForceCommand"]);
}

#[test]
fn force_command_without_expose_auth_info_fails() {
    let setup = Setup::new();
    setup.write_sshd_config(&[], &setup.block_without("ExposeAuthInfo", &[]));
    setup
        .doctor()
        .assert_fails_with(&["ExposeAuthInfo is not yes"]);
}

#[test]
fn force_command_for_another_socket_fails() {
    let setup = Setup::new();
    let block = setup.block_without(
        "ForceCommand",
        &[&format!(
            "ForceCommand {} --keys-dir {} --service-user {ACCOUNT}",
            pipe_shell(),
            setup.keys_dir.display()
        )],
    );
    setup.write_sshd_config(&[], &block);
    setup
        .doctor()
        .assert_fails_with(&["uses --socket /run/pipe/piped.sock"]);
}

#[test]
fn tty_and_user_rc_allowed_fail() {
    let setup = Setup::new();
    let block = setup.block_without("PermitTTY", &[]);
    let block: Vec<String> = block
        .into_iter()
        .filter(|l| !l.starts_with("PermitUserRC"))
        .collect();
    setup.write_sshd_config(&[], &block);
    setup
        .doctor()
        .assert_fails_with(&["PermitTTY is yes", "PermitUserRC is yes"]);
}

#[test]
fn locked_password_with_use_pam_no_fails() {
    let setup = Setup::new();
    usermod(&["-p", "!"]);
    let report = setup.doctor();
    report.assert_fails_with(&["is locked"]);
    assert!(
        report.stdout.contains(&format!("usermod -p '*' {ACCOUNT}")),
        "{report}"
    );
}

#[test]
fn locked_password_with_use_pam_yes_is_only_a_note() {
    let setup = Setup::new();
    usermod(&["-p", "!*"]);
    let config = fs::read_to_string(&setup.sshd_config).unwrap();
    fs::write(
        &setup.sshd_config,
        config.replace("UsePAM no", "UsePAM yes"),
    )
    .unwrap();
    let report = setup.doctor();
    report.assert_passes();
    assert!(report.stdout.contains("note: account"), "{report}");
}

#[test]
fn pipe_shell_as_login_shell_passes() {
    let setup = Setup::new();
    usermod(&["-s", pipe_shell()]);
    let report = setup.doctor();
    report.assert_passes();
    assert!(
        report.stdout.contains(&format!(
            "ok: account {ACCOUNT}: login shell {}\n",
            pipe_shell()
        )),
        "{report}"
    );
}

#[test]
fn bash_as_login_shell_fails() {
    let setup = Setup::new();
    usermod(&["-s", "/bin/bash"]);
    let report = setup.doctor();
    report.assert_fails_with(&["login shell /bin/bash"]);
    assert!(report.stdout.contains("usermod -s "), "{report}");
}

#[test]
fn a_home_the_account_can_write_fails() {
    let setup = Setup::new();
    let home = setup.path("home");
    fs::create_dir(&home).unwrap();
    let uid = nix::unistd::User::from_name(ACCOUNT).unwrap().unwrap().uid;
    nix::unistd::chown(&home, Some(uid), None).unwrap();
    chmod(&home, 0o755);
    usermod(&["-d", &home.display().to_string()]);
    // sshd's AuthorizedKeysFile is absolute, so only the home check notices.
    setup.doctor().assert_fails_with(&["is writable by"]);
}

#[test]
fn an_open_socket_directory_fails() {
    let setup = Setup::new();
    chmod(setup.socket.parent().unwrap(), 0o755);
    setup
        .doctor()
        .assert_fails_with(&["has mode 0755, more open than 0750"]);
}

#[test]
fn a_world_writable_socket_fails() {
    let setup = Setup::new();
    chmod(&setup.socket, 0o666);
    setup.doctor().assert_fails_with(&["has mode 0666"]);
}

#[test]
fn a_stopped_broker_fails() {
    let mut setup = Setup::new();
    setup.stop_broker(Signal::SIGTERM);
    setup
        .doctor()
        .assert_fails_with(&["does not exist: piped is not running"]);
}

#[test]
fn a_socket_left_by_a_killed_broker_fails() {
    let mut setup = Setup::new();
    setup.stop_broker(Signal::SIGKILL);
    assert!(setup.socket.exists(), "SIGKILL leaves the socket behind");
    setup.doctor().assert_fails_with(&["no broker listens"]);
}

#[test]
fn a_bare_key_line_outside_the_block_fails_without_force_command() {
    let setup = Setup::new();
    let key = setup.path("stray_key");
    ssh_keygen(&key);
    let bare = fs::read_to_string(format!("{}.pub", key.display())).unwrap();
    let mut text = fs::read_to_string(&setup.authorized_keys).unwrap();
    text.push_str(&bare);
    fs::write(&setup.authorized_keys, text).unwrap();

    // Under ForceCommand the line still lands in pipe-shell: a note, not a failure.
    let report = setup.doctor();
    report.assert_passes();
    assert!(report.stdout.contains("note: line "), "{report}");

    setup.write_sshd_config(&[], &setup.block_without("ForceCommand", &[]));
    setup.doctor().assert_fails_with(&[
        "no ForceCommand",
        "lacks restrict or command= outside the managed block",
    ]);
}

#[test]
fn a_key_file_added_by_hand_is_out_of_sync() {
    let setup = Setup::new();
    let key = setup.path("by_hand");
    ssh_keygen(&key);
    fs::copy(
        format!("{}.pub", key.display()),
        setup.keys_dir.join("alice/by-hand.pub"),
    )
    .unwrap();
    let report = setup.doctor();
    report.assert_fails_with(&["does not match the key directory"]);
    assert!(report.stdout.contains("fix: pipe-admin sync"), "{report}");

    setup.admin(&["sync"]);
    setup.doctor().assert_passes();
}

#[test]
fn a_managed_key_authorized_again_outside_the_block_fails() {
    let setup = Setup::new();
    let public = fs::read_to_string(setup.path("alice_key.pub")).unwrap();
    let mut text = fs::read_to_string(&setup.authorized_keys).unwrap();
    text.push_str(&format!("restrict,command=\"/bin/true\" {public}"));
    fs::write(&setup.authorized_keys, text).unwrap();
    setup
        .doctor()
        .assert_fails_with(&["also authorizes alice/"]);
}

#[test]
fn authorized_keys_the_account_can_write_fails() {
    let setup = Setup::new();
    let uid = nix::unistd::User::from_name(ACCOUNT).unwrap().unwrap().uid;
    nix::unistd::chown(&setup.authorized_keys, Some(uid), None).unwrap();
    setup
        .doctor()
        .assert_fails_with(&["and so add keys of its own"]);
}

#[test]
fn sshd_reading_other_authorized_keys_fails() {
    let setup = Setup::new();
    let block = setup.block_without(
        "AuthorizedKeysFile",
        &["AuthorizedKeysFile .ssh/authorized_keys"],
    );
    setup.write_sshd_config(&[], &block);
    setup
        .doctor()
        .assert_fails_with(&["keys from /.ssh/authorized_keys, not from"]);
}

#[test]
fn accept_env_ssh_original_command_fails() {
    let setup = Setup::new();
    setup.write_sshd_config(
        &["AcceptEnv SSH_ORIGINAL_COMMAND"],
        &good_match_block(&setup),
    );
    setup
        .doctor()
        .assert_fails_with(&["AcceptEnv SSH_ORIGINAL_COMMAND lets a client send"]);
}

#[test]
fn permit_user_environment_fails() {
    let setup = Setup::new();
    setup.write_sshd_config(&["PermitUserEnvironment yes"], &good_match_block(&setup));
    setup
        .doctor()
        .assert_fails_with(&["PermitUserEnvironment is yes"]);
}

#[test]
fn a_broken_sshd_config_fails_with_sshds_reason() {
    let setup = Setup::new();
    setup.write_sshd_config(&["NoSuchOption yes"], &good_match_block(&setup));
    setup
        .doctor()
        .assert_fails_with(&["Bad configuration option"]);
}

#[test]
fn a_missing_account_fails() {
    let setup = Setup::new();
    let out = setup
        .admin_command()
        .args(["doctor", "--service-user", "pipenosuchuser", "--sshd", SSHD])
        .arg("--socket")
        .arg(&setup.socket)
        .arg("--sshd-config")
        .arg(&setup.sshd_config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL: account pipenosuchuser does not exist"),
        "{stdout}"
    );
}
