//! End-to-end harness: the real `piped` and `pipe-shell` binaries behind a real OpenSSH `sshd`
//! on loopback, driven by the real `ssh` client.
//!
//! Every test builds its own [`Harness`]: a temp dir with fresh host and client keys, a private
//! `sshd` on a free 127.0.0.1 port whose default key runs `pipe-shell` as the forced command,
//! and a private `piped`. Requires root (to start `sshd` and to create the throwaway accounts
//! `pipetest`, `pipetest2` and the service account `pipetestsvc`). Every wait has a deadline;
//! every child is killed on drop, by PID.
//!
//! Each login account reads its keys from `<tmp>/authorized_keys/<account>`
//! ([`Harness::authorized_keys`]); tests add keys ([`Harness::new_key`],
//! [`Harness::authorize`]), log in as anyone with any key ([`Harness::ssh_as`]) and run
//! `pipe-admin` on the harness's key directory ([`Harness::pipe_admin`]). [`team`] builds
//! two or three users in one of the three identity modes of DESIGN §2.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use serde_json::Value;

pub mod team;

/// The throwaway login user every ssh session runs as (unless a test picks another).
pub const LOGIN_USER: &str = "pipetest";

/// A second per-Unix-user account (identity = its own name, like [`LOGIN_USER`]).
pub const LOGIN_USER2: &str = "pipetest2";

/// The shared service account: `piped --service-user` names it, so its key lines may assert
/// `--user`/`--key` (DESIGN §2).
pub const SERVICE_USER: &str = "pipetestsvc";

/// Every account sshd lets in. All are members of the group [`LOGIN_USER`], the broker
/// socket's group.
pub const ACCOUNTS: [&str; 3] = [LOGIN_USER, LOGIN_USER2, SERVICE_USER];

/// Default deadline for a short request (one ssh round trip plus the work).
pub const SHORT: Duration = Duration::from_secs(20);

pub const SSHD: &str = "/usr/sbin/sshd";

// ---------------------------------------------------------------------------------------------
// Process-wide setup
// ---------------------------------------------------------------------------------------------

/// Ensures the throwaway accounts exist with a usable (not locked) password field, all in the
/// group [`LOGIN_USER`] (the broker socket's group), and returns the default login user.
pub fn login_user() -> &'static str {
    static USERS: OnceLock<()> = OnceLock::new();
    USERS.get_or_init(|| {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the end-to-end tests start a private sshd and create the login users {ACCOUNTS:?}: \
             run them as root"
        );
        for name in ACCOUNTS {
            ensure_account(name);
        }
    });
    LOGIN_USER
}

fn account_exists(name: &str) -> bool {
    Command::new("id")
        .arg(name)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Creates `name` once (idempotent, also across concurrent test processes) and makes it fit
/// for key logins through the harness's sshd.
fn ensure_account(name: &str) {
    if !account_exists(name) {
        let out = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--home-dir",
                "/",
                "--shell",
                "/bin/sh",
                name,
            ])
            .output()
            .expect("run useradd");
        // 9: the name is taken (a concurrent test process created it first).
        let code = out.status.code();
        assert!(
            code == Some(0) || code == Some(9) || account_exists(name),
            "useradd {name} failed: {:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // sshd with `UsePAM no` refuses a locked (`!`) account even for key logins. The home
    // must exist: otherwise sshd writes "Could not chdir to home directory …" into every
    // session's stderr, in front of pipe-shell's own output. The other accounts join the
    // group `pipetest`, the socket group, so they can reach the broker (sshd sets the
    // supplementary groups of a session with initgroups).
    let mut args = vec!["-p", "*", "-d", "/", "-s", "/bin/sh"];
    if name != LOGIN_USER {
        args.extend(["-a", "-G", LOGIN_USER]);
    }
    // usermod takes a lock on /etc/passwd and /etc/group: retry briefly if another test
    // process holds it.
    let mut last = None;
    for _ in 0..20 {
        let out = Command::new("usermod")
            .args(&args)
            .arg(name)
            .output()
            .expect("run usermod");
        if out.status.success() {
            return;
        }
        last = Some(out);
        thread::sleep(Duration::from_millis(100));
    }
    let out = last.unwrap();
    panic!(
        "usermod {args:?} {name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Path of `piped`.
pub fn piped_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_piped"))
}

/// A `pipe-shell` the login user can execute: the build output in place when every parent
/// directory is world-searchable, else a copy in a world-readable temp dir (once per process).
pub fn pipe_shell_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let built = PathBuf::from(env!("CARGO_BIN_EXE_pipe-shell"));
        let reachable = built.ancestors().skip(1).all(|dir| {
            fs::metadata(dir)
                .map(|m| m.permissions().mode() & 0o001 != 0)
                .unwrap_or(false)
        });
        let exec_ok = fs::metadata(&built)
            .map(|m| m.permissions().mode() & 0o005 == 0o005)
            .unwrap_or(false);
        if reachable && exec_ok {
            return built;
        }
        let dir = tempfile::Builder::new()
            .prefix("pipe-shell-bin.")
            .tempdir()
            .expect("temp dir for pipe-shell")
            .keep();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let copy = dir.join("pipe-shell");
        fs::copy(&built, &copy).expect("copy pipe-shell");
        fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).unwrap();
        copy
    })
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

fn keygen(path: &Path) {
    keygen_with_comment(path, "pipe-test");
}

fn keygen_with_comment(path: &Path, comment: &str) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("run ssh-keygen");
    assert!(
        out.status.success(),
        "ssh-keygen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Single-quotes a word for `sh`.
pub fn sh_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// Sends `sig` to `pid` (a process this test started).
pub fn send_signal(pid: u32, sig: Signal) {
    let _ = signal::kill(Pid::from_raw(pid as i32), sig);
}

/// Waits for `child` to exit; on timeout sends SIGKILL and returns None.
fn reap(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + grace;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Some(st),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// Stops a daemon: SIGTERM, bounded wait, then SIGKILL.
fn stop_daemon(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    if let Ok(Some(st)) = child.try_wait() {
        return Some(st);
    }
    send_signal(child.id(), Signal::SIGTERM);
    reap(child, grace)
}

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// The `SHA256:…` fingerprint of a public key file, as `ssh-keygen -l` prints it.
pub fn fingerprint(public_key_file: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .args(["-l", "-E", "sha256", "-f"])
        .arg(public_key_file)
        .stdin(Stdio::null())
        .output()
        .expect("run ssh-keygen -l");
    assert!(
        out.status.success(),
        "ssh-keygen -l failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // "256 SHA256:… comment (ED25519)"
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .find(|w| w.starts_with("SHA256:"))
        .unwrap_or_else(|| panic!("no fingerprint in ssh-keygen -l output: {text:?}"))
        .to_string()
}

/// A client key pair a harness made.
#[derive(Debug, Clone)]
pub struct ClientKey {
    /// The private key file (`ssh -i`).
    pub path: PathBuf,
    /// The public key line, `ssh-ed25519 AAAA… comment`.
    pub public: String,
    /// `SHA256:…`
    pub fingerprint: String,
}

impl ClientKey {
    /// The `.pub` file next to the private key.
    pub fn public_file(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(".pub");
        PathBuf::from(p)
    }
}

/// How an ssh session logs in: the Unix account and the key it offers.
#[derive(Debug, Clone)]
pub struct Login {
    pub account: String,
    pub key: ClientKey,
}

/// What a [`Harness`] starts.
pub struct Builder {
    broker: bool,
    sshd: bool,
    broker_args: Vec<String>,
    sshd_config: String,
}

impl Builder {
    /// Lines appended to the end of sshd_config (where `Match` blocks must go). `{dir}`,
    /// `{socket}` and `{pipe_shell}` are replaced by the harness's temp dir, broker socket
    /// and `pipe-shell` path.
    pub fn sshd_config(mut self, text: &str) -> Self {
        self.sshd_config.push_str(text);
        if !self.sshd_config.ends_with('\n') {
            self.sshd_config.push('\n');
        }
        self
    }
    pub fn broker_args(mut self, args: &[&str]) -> Self {
        self.broker_args = args.iter().map(|s| s.to_string()).collect();
        self
    }
    pub fn no_broker(mut self) -> Self {
        self.broker = false;
        self
    }
    pub fn no_sshd(mut self) -> Self {
        self.sshd = false;
        self
    }
    pub fn start(self) -> Harness {
        Harness::start(self)
    }
}

pub struct Harness {
    dir: tempfile::TempDir,
    pub port: u16,
    client_key: PathBuf,
    pub socket: PathBuf,
    sshd: Option<Child>,
    piped: Option<Child>,
    broker_args: Vec<String>,
    sshd_extra: String,
}

impl Harness {
    /// sshd and a broker with default settings.
    pub fn new() -> Harness {
        Self::builder().start()
    }

    /// sshd and a broker started with extra arguments (e.g. `--window 256K`).
    pub fn with_broker_args(args: &[&str]) -> Harness {
        Self::builder().broker_args(args).start()
    }

    /// sshd only: the socket path exists in the key line but nothing listens on it.
    pub fn without_broker() -> Harness {
        Self::builder().no_broker().start()
    }

    /// A broker only (for the local entry forms of `pipe-shell`).
    pub fn broker_only() -> Harness {
        Self::builder().no_sshd().start()
    }

    pub fn builder() -> Builder {
        Builder {
            broker: true,
            sshd: true,
            broker_args: Vec::new(),
            sshd_config: String::new(),
        }
    }

    fn start(b: Builder) -> Harness {
        login_user();
        let dir = tempfile::Builder::new()
            .prefix("pipe-e2e.")
            .tempdir()
            .expect("temp dir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let run = dir.path().join("run");
        fs::create_dir(&run).unwrap();
        fs::set_permissions(&run, fs::Permissions::from_mode(0o755)).unwrap();
        let socket = run.join("piped.sock");
        let mut h = Harness {
            client_key: dir.path().join("client_key"),
            dir,
            port: 0,
            socket,
            sshd: None,
            piped: None,
            broker_args: b.broker_args,
            sshd_extra: String::new(),
        };
        h.sshd_extra = b
            .sshd_config
            .replace("{dir}", &h.dir().display().to_string())
            .replace("{socket}", &h.socket.display().to_string())
            .replace("{pipe_shell}", &pipe_shell_bin().display().to_string());
        if b.broker {
            h.start_piped();
        }
        if b.sshd {
            h.start_sshd();
        }
        h
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn start_piped(&mut self) {
        // Appended, so a restarted broker's log follows the first one's.
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir().join("piped.log"))
            .unwrap();
        let mut cmd = Command::new(piped_bin());
        cmd.arg("--socket")
            .arg(&self.socket)
            .args(["--socket-group", LOGIN_USER])
            .arg("--state-dir")
            .arg(self.dir().join("state"));
        let has = |flag: &str| self.broker_args.iter().any(|a| a.starts_with(flag));
        if !has("--config") {
            // Built-in defaults, whatever an installed /etc/pipe/piped.toml says.
            cmd.args(["--config", "/dev/null"]);
        }
        if !self
            .broker_args
            .iter()
            .any(|a| a.starts_with("--service-user"))
        {
            cmd.args(["--service-user", SERVICE_USER]);
        }
        let child = cmd
            .args(&self.broker_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn piped");
        self.piped = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = self.piped.as_mut().unwrap().try_wait().unwrap() {
                panic!("piped exited during startup: {st:?}\n{}", self.piped_log());
            }
            if self.socket.exists() && UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "piped not ready after 10 s\n{}",
                self.piped_log()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn start_sshd(&mut self) {
        let d = self.dir().to_path_buf();
        let host_key = d.join("host_key");
        keygen(&host_key);
        keygen(&self.client_key);
        let pubkey = fs::read_to_string(d.join("client_key.pub")).unwrap();
        // One authorized_keys per account (`AuthorizedKeysFile …/%u`), each readable by the
        // account (sshd reads it as the login user).
        let auth_dir = d.join("authorized_keys");
        fs::create_dir(&auth_dir).unwrap();
        fs::set_permissions(&auth_dir, fs::Permissions::from_mode(0o755)).unwrap();
        for account in ACCOUNTS {
            let f = auth_dir.join(account);
            fs::write(&f, "").unwrap();
            fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
        }
        self.authorize(
            LOGIN_USER,
            &format!(
                "restrict,command=\"{}\" {}",
                self.forced_command(),
                pubkey.trim()
            ),
        );
        fs::create_dir_all("/run/sshd").expect("mkdir /run/sshd");

        for _attempt in 0..8 {
            let port = free_port();
            let config = d.join("sshd_config");
            fs::write(
                &config,
                format!(
                    "Port {port}\n\
                     ListenAddress 127.0.0.1\n\
                     HostKey {}\n\
                     PidFile none\n\
                     UsePAM no\n\
                     PasswordAuthentication no\n\
                     KbdInteractiveAuthentication no\n\
                     PubkeyAuthentication yes\n\
                     AuthorizedKeysFile {}/%u\n\
                     StrictModes no\n\
                     AllowUsers {}\n\
                     PermitRootLogin no\n\
                     LogLevel ERROR\n\
                     MaxStartups 100\n\
                     MaxSessions 100\n\
                     Subsystem sftp /usr/lib/openssh/sftp-server\n\
                     {}",
                    host_key.display(),
                    auth_dir.display(),
                    ACCOUNTS.join(" "),
                    self.sshd_extra,
                ),
            )
            .unwrap();
            let log = fs::File::create(d.join("sshd.log")).unwrap();
            let mut child = Command::new(SSHD)
                .args(["-D", "-e", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("spawn sshd");
            if wait_sshd(&mut child, port) {
                self.port = port;
                self.sshd = Some(child);
                return;
            }
            stop_daemon(&mut child, Duration::from_secs(2));
            let log = fs::read_to_string(d.join("sshd.log")).unwrap_or_default();
            let bind_problem = log.contains("Address already in use")
                || log.contains("Cannot bind")
                || log.is_empty();
            assert!(bind_problem, "sshd failed to start:\n{log}");
        }
        panic!("sshd: no free port after 8 attempts");
    }

    /// `ssh … pipetest@127.0.0.1 -- REQUEST` (the request as one argv element).
    pub fn ssh(&self, request: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new("ssh");
        c.args(self.ssh_args()).arg("--").arg(request);
        c.env_remove("SSH_AUTH_SOCK");
        c
    }

    /// The `ssh` argv up to and including the destination.
    pub fn ssh_args(&self) -> Vec<String> {
        self.ssh_args_for(LOGIN_USER, &self.client_key)
    }

    /// `ssh -i KEY … ACCOUNT@127.0.0.1 -- REQUEST`.
    pub fn ssh_as(&self, who: &Login, request: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new("ssh");
        c.args(self.ssh_args_for(&who.account, &who.key.path))
            .arg("--")
            .arg(request);
        c.env_remove("SSH_AUTH_SOCK");
        c
    }

    /// Runs `ssh_as(who, REQUEST)` with `stdin` as its input; panics if not done by `timeout`.
    pub fn run_as(
        &self,
        who: &Login,
        request: impl AsRef<OsStr>,
        stdin: &[u8],
        timeout: Duration,
    ) -> Output {
        let name = format!("{}: {}", who.account, request.as_ref().to_string_lossy());
        run_command(self.ssh_as(who, request), &name, stdin, timeout)
    }

    /// Starts `ssh_as(who, REQUEST)` with stdio piped, collected in the background.
    pub fn spawn_as(&self, who: &Login, request: impl AsRef<OsStr>) -> Client {
        let name = format!("{}: {}", who.account, request.as_ref().to_string_lossy());
        Client::spawn(self.ssh_as(who, request), name, StdoutMode::Keep)
    }

    /// `ls --json` as `who`, parsed.
    pub fn ls_as(&self, who: &Login) -> Vec<Value> {
        self.ls_with(self.ssh_as(who, "ls --json"))
    }

    /// Polls `who`'s `ls --json` until `pred` holds for `topic` (`owner/name`; absent = all
    /// zero), at most 10 s.
    pub fn wait_until_as(
        &self,
        who: &Login,
        topic: &str,
        what: &str,
        pred: impl Fn(&Counts) -> bool,
    ) -> Counts {
        self.poll_ls(|| self.ls_as(who), topic, what, pred)
    }

    /// The `ssh` argv up to and including the destination, for any account and key.
    pub fn ssh_args_for(&self, account: &str, key: &Path) -> Vec<String> {
        assert!(self.sshd.is_some(), "this harness has no sshd");
        let mut v: Vec<String> = vec![
            "-F".into(),
            "/dev/null".into(),
            "-T".into(),
            "-p".into(),
            self.port.to_string(),
            "-i".into(),
            key.display().to_string(),
        ];
        for o in [
            "IdentitiesOnly=yes",
            "StrictHostKeyChecking=no",
            "UserKnownHostsFile=/dev/null",
            "LogLevel=ERROR",
            "BatchMode=yes",
            "KexAlgorithms=curve25519-sha256",
            "ConnectTimeout=10",
        ] {
            v.push("-o".into());
            v.push(o.into());
        }
        v.push(format!("{account}@127.0.0.1"));
        v
    }

    /// A fresh ed25519 key pair in the harness's dir (`keys-client/NAME`), not yet
    /// authorized anywhere. Its comment is `NAME`.
    pub fn new_key(&self, name: &str) -> ClientKey {
        let dir = self.dir().join("keys-client");
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        assert!(!path.exists(), "key {name} made twice");
        keygen_with_comment(&path, name);
        let key = ClientKey {
            public: fs::read_to_string(dir.join(format!("{name}.pub")))
                .unwrap()
                .trim()
                .to_string(),
            fingerprint: String::new(),
            path,
        };
        ClientKey {
            fingerprint: fingerprint(&key.public_file()),
            ..key
        }
    }

    /// The authorized_keys file sshd reads for `account`.
    pub fn authorized_keys(&self, account: &str) -> PathBuf {
        self.dir().join("authorized_keys").join(account)
    }

    /// Appends one line to `account`'s authorized_keys.
    pub fn authorize(&self, account: &str, line: &str) {
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(self.authorized_keys(account))
            .unwrap_or_else(|e| panic!("open authorized_keys of {account}: {e}"));
        writeln!(f, "{}", line.trim_end()).unwrap();
    }

    /// `pipe-shell --socket SOCKET`: what the harness's key lines run.
    pub fn forced_command(&self) -> String {
        format!(
            "{} --socket {}",
            pipe_shell_bin().display(),
            self.socket.display()
        )
    }

    /// The key directory `pipe-admin` keeps (`<tmp>/keys`).
    pub fn keys_dir(&self) -> PathBuf {
        self.dir().join("keys")
    }

    /// `pipe-admin --keys-dir <tmp>/keys --authorized-keys AUTHORIZED_KEYS
    /// --forced-command "<pipe-shell> --socket <socket>" ARGS…`.
    pub fn pipe_admin_command(&self, authorized_keys: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_pipe-admin"));
        c.arg("--keys-dir")
            .arg(self.keys_dir())
            .arg("--authorized-keys")
            .arg(authorized_keys)
            .arg("--forced-command")
            .arg(self.forced_command())
            .args(args);
        c
    }

    /// Runs `pipe-admin ARGS…` on the service account's authorized_keys; panics unless it
    /// exits 0.
    pub fn pipe_admin(&self, args: &[&str]) -> Output {
        self.pipe_admin_on(&self.authorized_keys(SERVICE_USER), args)
    }

    /// Runs `pipe-admin ARGS…` writing `authorized_keys`; panics unless it exits 0.
    pub fn pipe_admin_on(&self, authorized_keys: &Path, args: &[&str]) -> Output {
        let name = format!("pipe-admin {}", args.join(" "));
        let out = run_command(
            self.pipe_admin_command(authorized_keys, args),
            &name,
            b"",
            SHORT,
        );
        assert_eq!(out.code, Some(0), "{name}: {out:?}");
        out
    }

    /// Stops the broker (SIGTERM, bounded wait) and starts it again with the same socket,
    /// state directory and arguments.
    pub fn restart_broker(&mut self) {
        let mut child = self.piped.take().expect("no broker running");
        let st = stop_daemon(&mut child, Duration::from_secs(10));
        assert!(
            st.is_some(),
            "piped did not exit within 10 s of SIGTERM\n{}",
            self.piped_log()
        );
        self.start_piped();
    }

    /// Starts `ssh … REQUEST` with stdio piped; stdout and stderr collected in the background.
    pub fn spawn(&self, request: impl AsRef<OsStr>) -> Client {
        let name = request.as_ref().to_string_lossy().into_owned();
        Client::spawn(self.ssh(request), name, StdoutMode::Keep)
    }

    /// Like [`spawn`](Self::spawn), but stdout is checked on the fly against `expected` instead
    /// of being kept (for large streams).
    pub fn spawn_verify(&self, request: &str, expected: Arc<[u8]>) -> Client {
        Client::spawn(
            self.ssh(request),
            request.to_string(),
            StdoutMode::Verify(expected),
        )
    }

    /// Like [`spawn`](Self::spawn), but stdout is left to the test ([`Client::take_stdout`]).
    pub fn spawn_raw(&self, request: &str) -> Client {
        Client::spawn(self.ssh(request), request.to_string(), StdoutMode::Raw)
    }

    /// Runs `ssh … REQUEST` with `stdin` as its input; panics if it is not done by `timeout`.
    pub fn run(&self, request: impl AsRef<OsStr>, stdin: &[u8], timeout: Duration) -> Output {
        let name = request.as_ref().to_string_lossy().into_owned();
        run_command(self.ssh(request), &name, stdin, timeout)
    }

    /// `ls --json`, parsed.
    pub fn ls(&self) -> Vec<Value> {
        self.ls_with(self.ssh("ls --json"))
    }

    fn ls_with(&self, cmd: Command) -> Vec<Value> {
        let out = run_command(cmd, "ls --json", b"", SHORT);
        assert_eq!(
            out.code,
            Some(0),
            "ls --json failed: {out:?}\n{}",
            self.piped_log()
        );
        let text = String::from_utf8_lossy(&out.stdout);
        match serde_json::from_str::<Value>(text.trim()) {
            Ok(Value::Array(items)) => items,
            other => panic!("ls --json: not one JSON array: {other:?}\nstdout: {text:?}"),
        }
    }

    /// Counts for one topic (`name` for the login user's own, or `owner/name`); zero if absent.
    pub fn counts(&self, topic: &str) -> Counts {
        Counts::find(&self.ls(), &qualify(topic))
    }

    /// Polls `ls --json` until `pred` holds for `topic` (absent topic = all zero), at most 10 s.
    pub fn wait_until(&self, topic: &str, what: &str, pred: impl Fn(&Counts) -> bool) -> Counts {
        self.poll_ls(|| self.ls(), &qualify(topic), what, pred)
    }

    fn poll_ls(
        &self,
        ls: impl Fn() -> Vec<Value>,
        topic: &str,
        what: &str,
        pred: impl Fn(&Counts) -> bool,
    ) -> Counts {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let list = ls();
            let c = Counts::find(&list, topic);
            if pred(&c) {
                return c;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after 10 s waiting for {topic}: {what}; last ls --json: {}\n{}",
                Value::Array(list),
                self.piped_log()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `topic` has exactly `subscribers` subscribers.
    pub fn wait_for_subscribers(&self, topic: &str, subscribers: u64) -> Counts {
        self.wait_until(topic, &format!("{subscribers} subscribers"), |c| {
            c.subscribers == subscribers
        })
    }

    /// Waits until `topic` has exactly `waiting` publishers waiting for a receiver.
    pub fn wait_for_waiting(&self, topic: &str, waiting: u64) -> Counts {
        self.wait_until(topic, &format!("{waiting} waiting publishers"), |c| {
            c.waiting == waiting
        })
    }

    pub fn piped_log(&self) -> String {
        let p = fs::read_to_string(self.dir().join("piped.log")).unwrap_or_default();
        format!("----- piped stderr -----\n{p}------------------------")
    }

    pub fn sshd_log(&self) -> String {
        let p = fs::read_to_string(self.dir().join("sshd.log")).unwrap_or_default();
        format!("----- sshd stderr -----\n{p}-----------------------")
    }

    /// A local `pipe-shell` command (no sshd), run as the test's own user (root).
    pub fn pipe_shell(&self) -> Command {
        let mut c = Command::new(pipe_shell_bin());
        c.env_remove("SSH_ORIGINAL_COMMAND");
        c.arg("--socket").arg(&self.socket);
        c
    }

    /// A local `pipe-shell` run as Unix user `account` (a service on the broker's host).
    pub fn pipe_shell_as(&self, account: &str) -> Command {
        run_as_account(self.pipe_shell(), account)
    }

    /// Sends `sig` to the broker.
    pub fn signal_broker(&self, sig: Signal) {
        send_signal(self.piped.as_ref().expect("no broker running").id(), sig);
    }

    /// Waits (at most `timeout`) for the broker to exit.
    pub fn wait_broker(&mut self, timeout: Duration) -> ExitStatus {
        let child = self.piped.as_mut().expect("no broker running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = child.try_wait().expect("try_wait piped") {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "piped still running after {timeout:?}"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Is the broker still running?
    pub fn piped_alive(&mut self) -> bool {
        matches!(self.piped.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(mut c) = self.piped.take() {
            if stop_daemon(&mut c, Duration::from_secs(10)).is_none() {
                eprintln!("piped did not exit within 10 s of SIGTERM: killed");
            }
        }
        if let Some(mut c) = self.sshd.take() {
            stop_daemon(&mut c, Duration::from_secs(5));
        }
        if thread::panicking() {
            eprintln!("{}", self.piped_log());
            eprintln!("{}", self.sshd_log());
        }
    }
}

fn wait_sshd(child: &mut Child, port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if let Ok(s) = TcpStream::connect_timeout(
            &format!("127.0.0.1:{port}").parse().unwrap(),
            Duration::from_millis(500),
        ) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut line = String::new();
            let banner = BufReader::new(s).read_line(&mut line).is_ok()
                && line.starts_with("SSH-2.0-OpenSSH");
            // Still ours? (another process could own the port while ours failed to bind)
            if banner && matches!(child.try_wait(), Ok(None)) {
                return true;
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
    false
}

/// `name` → `pipetest/name`; `owner/name` unchanged.
pub fn qualify(topic: &str) -> String {
    if topic.contains('/') {
        topic.to_string()
    } else {
        format!("{LOGIN_USER}/{topic}")
    }
}

/// The counts of one topic in `ls --json`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub present: bool,
    pub publishers: u64,
    pub subscribers: u64,
    pub waiting: u64,
    pub bytes: u64,
}

impl Counts {
    pub fn find(list: &[Value], topic: &str) -> Counts {
        let Some(t) = list
            .iter()
            .find(|t| t.get("topic").and_then(Value::as_str) == Some(topic))
        else {
            return Counts::default();
        };
        let n = |k: &str| {
            t.get(k)
                .and_then(Value::as_u64)
                .unwrap_or_else(|| panic!("ls --json: field {k:?} missing or not a number in {t}"))
        };
        Counts {
            present: true,
            publishers: n("publishers"),
            subscribers: n("subscribers"),
            waiting: n("waiting"),
            bytes: n("bytes"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------

/// Everything a finished command produced.
pub struct Output {
    pub status: ExitStatus,
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
    pub elapsed: Duration,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = &self.stdout[..self.stdout.len().min(200)];
        f.debug_struct("Output")
            .field("status", &self.status)
            .field("stdout_len", &self.stdout.len())
            .field("stdout", &String::from_utf8_lossy(shown))
            .field("stderr", &self.stderr)
            .field("elapsed", &self.elapsed)
            .finish()
    }
}

impl Output {
    /// The stderr lines.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr.lines().collect()
    }
}

/// Starts any command with stdio piped, stdout and stderr collected in the background.
pub fn spawn_command(cmd: Command, name: &str) -> Client {
    Client::spawn(cmd, name.to_string(), StdoutMode::Keep)
}

/// `cmd` run as Unix user `account` (its uid and primary group).
pub fn run_as_account(mut cmd: Command, account: &str) -> Command {
    use std::os::unix::process::CommandExt;
    let user = nix::unistd::User::from_name(account)
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no account {account}"));
    cmd.uid(user.uid.as_raw()).gid(user.gid.as_raw());
    cmd
}

/// Joins a helper thread, panicking if it is not done by `timeout`.
pub fn join_within<T>(h: JoinHandle<T>, timeout: Duration, what: &str) -> T {
    let deadline = Instant::now() + timeout;
    while !h.is_finished() {
        assert!(
            Instant::now() < deadline,
            "{what}: not finished after {timeout:?}"
        );
        thread::sleep(Duration::from_millis(10));
    }
    h.join()
        .unwrap_or_else(|_| panic!("{what}: thread panicked"))
}

/// Runs `cmd` with `stdin` as its input; panics (after killing it) if not done by `timeout`.
pub fn run_command(cmd: Command, name: &str, stdin: &[u8], timeout: Duration) -> Output {
    let mut c = Client::spawn(cmd, name.to_string(), StdoutMode::Keep);
    if stdin.is_empty() {
        c.close_stdin();
    } else {
        c.feed(Arc::from(stdin));
    }
    c.finish(timeout)
}

#[derive(Default)]
struct CollectState {
    buf: Vec<u8>,
    len: u64,
    eof: bool,
    /// Verify mode: first offset that differs from the expected bytes.
    mismatch: Option<u64>,
}

/// Background reader of one pipe.
#[derive(Clone)]
pub struct Collector {
    state: Arc<(Mutex<CollectState>, Condvar)>,
}

enum StdoutMode {
    Keep,
    Verify(Arc<[u8]>),
    Raw,
}

impl Collector {
    fn start(mut r: impl Read + Send + 'static, expected: Option<Arc<[u8]>>) -> Collector {
        let c = Collector {
            state: Arc::new((Mutex::new(CollectState::default()), Condvar::new())),
        };
        let state = c.state.clone();
        thread::spawn(move || {
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                let n = match r.read(&mut chunk) {
                    Ok(0) | Err(_) => 0,
                    Ok(n) => n,
                };
                let (m, cv) = &*state;
                let mut s = m.lock().unwrap();
                if n == 0 {
                    s.eof = true;
                    cv.notify_all();
                    return;
                }
                let got = &chunk[..n];
                match &expected {
                    None => s.buf.extend_from_slice(got),
                    Some(exp) => {
                        if s.mismatch.is_none() {
                            let at = s.len as usize;
                            let want = exp.get(at..(at + n).min(exp.len())).unwrap_or(&[]);
                            if want != got {
                                let off = want
                                    .iter()
                                    .zip(got)
                                    .position(|(a, b)| a != b)
                                    .unwrap_or(want.len());
                                s.mismatch = Some((at + off) as u64);
                            }
                        }
                    }
                }
                s.len += n as u64;
                cv.notify_all();
            }
        });
        c
    }

    /// Bytes read so far (Keep mode).
    pub fn bytes(&self) -> Vec<u8> {
        self.state.0.lock().unwrap().buf.clone()
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }
    pub fn len(&self) -> u64 {
        self.state.0.lock().unwrap().len
    }
    pub fn eof(&self) -> bool {
        self.state.0.lock().unwrap().eof
    }
    /// Verify mode: offset of the first wrong byte.
    pub fn mismatch(&self) -> Option<u64> {
        self.state.0.lock().unwrap().mismatch
    }

    /// Waits until `pred(bytes_so_far, eof)` holds; false on timeout.
    pub fn wait(&self, timeout: Duration, pred: impl Fn(&[u8], u64, bool) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let (m, cv) = &*self.state;
        let mut s = m.lock().unwrap();
        loop {
            if pred(&s.buf, s.len, s.eof) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            s = cv.wait_timeout(s, deadline - now).unwrap().0;
        }
    }

    /// Waits until at least `n` bytes arrived (or EOF); true if `n` arrived.
    pub fn wait_len(&self, n: u64, timeout: Duration) -> bool {
        self.wait(timeout, |_, len, eof| len >= n || eof);
        self.len() >= n
    }

    /// Waits until the kept bytes contain `needle`; false on timeout or EOF without it.
    pub fn wait_contains(&self, needle: &[u8], timeout: Duration) -> bool {
        let has = |b: &[u8]| b.windows(needle.len()).any(|w| w == needle);
        self.wait(timeout, |b, _, eof| has(b) || eof);
        has(&self.bytes())
    }

    pub fn wait_eof(&self, timeout: Duration) -> bool {
        self.wait(timeout, |_, _, eof| eof)
    }
}

/// A running command (usually `ssh … REQUEST`); killed (SIGKILL, by PID) on drop.
pub struct Client {
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
    pub out: Option<Collector>,
    pub err: Collector,
    feeder: Option<JoinHandle<std::io::Result<Instant>>>,
    status: Option<ExitStatus>,
    started: Instant,
}

impl Client {
    fn spawn(mut cmd: Command, name: String, mode: StdoutMode) -> Client {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let err = Collector::start(child.stderr.take().unwrap(), None);
        let (stdout, out) = match mode {
            StdoutMode::Raw => (Some(stdout), None),
            StdoutMode::Keep => (None, Some(Collector::start(stdout, None))),
            StdoutMode::Verify(e) => (None, Some(Collector::start(stdout, Some(e)))),
        };
        Client {
            name,
            child,
            stdin,
            stdout,
            out,
            err,
            feeder: None,
            status: None,
            started: Instant::now(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: Signal) {
        if self.status.is_none() {
            send_signal(self.pid(), sig);
        }
    }

    /// The raw stdout (only for [`Harness::spawn_raw`]).
    pub fn take_stdout(&mut self) -> ChildStdout {
        self.stdout
            .take()
            .expect("stdout already taken or collected")
    }

    /// Writes to stdin now (small writes only: the pipe must not be full).
    pub fn write(&mut self, data: &[u8]) {
        let w = self.stdin.as_mut().expect("stdin closed");
        w.write_all(data)
            .unwrap_or_else(|e| panic!("write to {}: {e}", self.name));
        w.flush().unwrap();
    }

    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }

    /// Writes `data` to stdin from a thread, then closes stdin. [`feed_done`](Self::feed_done)
    /// tells when the last byte was accepted.
    pub fn feed(&mut self, data: Arc<[u8]>) {
        let mut w = self.stdin.take().expect("stdin closed");
        self.feeder = Some(thread::spawn(move || {
            w.write_all(&data)?;
            let t = Instant::now();
            drop(w);
            Ok(t)
        }));
    }

    /// Writes an endless stream to stdin from a thread until `stop` is set or the pipe breaks.
    pub fn feed_forever(&mut self, stop: Arc<AtomicBool>) {
        let mut w = self.stdin.take().expect("stdin closed");
        self.feeder = Some(thread::spawn(move || {
            let chunk: Vec<u8> = (0..64 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
            while !stop.load(Ordering::Relaxed) {
                w.write_all(&chunk)?;
            }
            Ok(Instant::now())
        }));
    }

    /// Waits for the feeder thread; returns when it finished writing (or its error).
    pub fn feed_done(&mut self, timeout: Duration) -> std::io::Result<Instant> {
        let h = self.feeder.take().expect("no feeder");
        let deadline = Instant::now() + timeout;
        while !h.is_finished() {
            assert!(
                Instant::now() < deadline,
                "{}: writing stdin not finished after {timeout:?}",
                self.name
            );
            thread::sleep(Duration::from_millis(10));
        }
        h.join().expect("feeder thread panicked")
    }

    /// The exit status if it has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait");
        }
        self.status
    }

    /// Waits for the exit (panics after killing it on timeout, showing its stderr).
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_status() {
                return st;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "{}: still running after {timeout:?} (killed); stdout so far: {} bytes; \
                     stderr: {:?}",
                    self.name,
                    self.out.as_ref().map(|o| o.len()).unwrap_or(0),
                    self.err.text()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the exit and for stdout/stderr EOF; returns everything.
    pub fn finish(&mut self, timeout: Duration) -> Output {
        let status = self.wait(timeout);
        let elapsed = self.started.elapsed();
        let grace = Duration::from_secs(5);
        assert!(
            self.err.wait_eof(grace),
            "{}: stderr not closed after exit",
            self.name
        );
        if let Some(o) = &self.out {
            assert!(
                o.wait_eof(grace),
                "{}: stdout not closed after exit",
                self.name
            );
        }
        Output {
            status,
            code: status.code(),
            stdout: self.out.as_ref().map(|o| o.bytes()).unwrap_or_default(),
            stderr: self.err.text(),
            elapsed,
        }
    }

    /// stdout so far (Keep mode).
    pub fn stdout(&self) -> Vec<u8> {
        self.out.as_ref().expect("stdout not collected").bytes()
    }

    pub fn stderr(&self) -> String {
        self.err.text()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if self.status.is_none() {
            if let Ok(None) = self.child.try_wait() {
                let _ = self.child.kill();
            }
            let _ = self.child.wait();
        }
        if let Some(h) = self.feeder.take() {
            // The child is gone, so a blocked write fails with EPIPE and the thread ends.
            drop(h);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------------------------

/// `len` pseudo-random bytes (xorshift64*, fixed seed): reproducible, incompressible enough.
pub fn random_bytes(len: usize, seed: u64) -> Arc<[u8]> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        v.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    v.truncate(len);
    Arc::from(v)
}

pub const MIB: usize = 1024 * 1024;

/// Asserts the "one error line" rule: exactly one stderr line, starting with `pipe: `.
#[track_caller]
pub fn assert_one_pipe_line(out: &Output, what: &str) {
    let lines = out.stderr_lines();
    assert!(
        lines.len() == 1 && lines[0].starts_with("pipe: "),
        "{what}: stderr must be exactly one line starting with `pipe: `; got {out:?}"
    );
}

/// The example binary. `cargo test` builds examples, `cargo test --test drain_layer` does
/// not: build it with the cargo running this test (nothing to do when it is up to date).
pub fn log_service_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // target/<profile>/deps/drain_layer-… → target/<profile>/examples/log-service
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>");
        let bin = profile_dir.join("examples").join("log-service");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .args([
                "build",
                "--quiet",
                "--example",
                "log-service",
                "--manifest-path",
            ])
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"));
        if let Some(target_dir) = profile_dir.parent() {
            build.arg("--target-dir").arg(target_dir);
        }
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        let out = run_command(build, "cargo build --example log-service", b"", LONG_BUILD);
        assert_eq!(out.code, Some(0), "{out:?}");
        assert!(bin.exists(), "{} not built", bin.display());
        bin
    })
}

/// Building the example may compile the crate's dependencies first.
pub const LONG_BUILD: Duration = Duration::from_secs(600);
