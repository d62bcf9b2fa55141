//! [`Harness`]: one pipe host, private to one test. A temp dir with fresh host and client
//! keys, a private `sshd` on a free 127.0.0.1 port whose default key runs `pipe-shell` as
//! the forced command, and a private `piped`.
//!
//! Each login account reads its keys from `<tmp>/authorized_keys/<account>`
//! ([`Harness::authorized_keys`]); tests add keys ([`Harness::new_key`],
//! [`Harness::authorize`]), log in as anyone with any key ([`Harness::ssh_as`]) and run
//! `pipe-admin` on the harness's key directory ([`Harness::pipe_admin`]).

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;

use super::SHORT;
use super::accounts::{ACCOUNTS, LOGIN_USER, SERVICE_USER, login_user, run_as_account};
use super::bins::{pipe_admin, pipe_shell_bin};
use super::broker::{BROKER_DEADLINE, Broker};
use super::client::{Client, Output, StdoutMode, run_command};
use super::keys::ClientKey;
use super::sshd::Sshd;

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
    sshd: Option<Sshd>,
    piped: Option<Broker>,
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
        let mut cmd = Broker::command(&self.socket, LOGIN_USER, &self.dir().join("state"));
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
        cmd.args(&self.broker_args)
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.piped = Some(Broker::start(cmd, &self.socket, || self.piped_log()));
    }

    fn start_sshd(&mut self) {
        let d = self.dir().to_path_buf();
        let client = ClientKey::generate(self.client_key.clone(), "pipe-test");
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
                client.public
            ),
        );
        let sshd = Sshd::start(&d, |port, host_key| {
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
            )
        });
        self.port = sshd.port;
        self.sshd = Some(sshd);
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
        self.sshd
            .as_ref()
            .expect("this harness has no sshd")
            .ssh_args(account, key)
    }

    /// A fresh ed25519 key pair in the harness's dir (`keys-client/NAME`), not yet
    /// authorized anywhere. Its comment is `NAME`.
    pub fn new_key(&self, name: &str) -> ClientKey {
        let dir = self.dir().join("keys-client");
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        assert!(!path.exists(), "key {name} made twice");
        ClientKey::generate(path, name)
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
        let mut c = pipe_admin(&self.keys_dir(), authorized_keys, &self.forced_command());
        c.args(args);
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
        let mut broker = self.piped.take().expect("no broker running");
        let st = broker.stop(Signal::SIGTERM);
        assert!(
            st.is_some(),
            "piped did not exit within {BROKER_DEADLINE:?} of SIGTERM\n{}",
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
    /// `ls --json` through sshd as the login user, or, in a harness without sshd, from a
    /// local pipe-shell (as root, who sees every topic).
    pub fn ls(&self) -> Vec<Value> {
        if self.sshd.is_some() {
            self.ls_with(self.ssh("ls --json"))
        } else {
            let mut local = self.pipe_shell();
            local.args(["ls", "--json"]);
            self.ls_with(local)
        }
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
        self.piped.as_ref().expect("no broker running").signal(sig);
    }

    /// Waits (at most `timeout`) for the broker to exit.
    pub fn wait_broker(&mut self, timeout: Duration) -> ExitStatus {
        self.piped
            .as_mut()
            .expect("no broker running")
            .wait(timeout)
    }

    /// Is the broker still running?
    pub fn piped_alive(&mut self) -> bool {
        self.piped.as_mut().is_some_and(Broker::alive)
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        // Broker and sshd stop themselves when dropped; the logs are read after they did.
        self.piped.take();
        self.sshd.take();
        if thread::panicking() {
            eprintln!("{}", self.piped_log());
            eprintln!("{}", self.sshd_log());
        }
    }
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
