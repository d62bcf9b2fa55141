//! A private OpenSSH `sshd` on a free 127.0.0.1 port with a throwaway host key, and the
//! `ssh` client options that reach it. The system's sshd and its configuration are never
//! touched: each instance reads only the config file its test writes.

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::keys::keygen;
use super::process::Guarded;

pub const SSHD: &str = "/usr/sbin/sshd";

/// How many free ports [`Sshd::start`] tries: another process may take the port between
/// finding it free and sshd binding it.
const PORT_ATTEMPTS: usize = 8;

/// How long a freshly started sshd may take to answer with its banner (it generates
/// nothing at startup, but the machine may be busy with other tests).
const READY: Duration = Duration::from_secs(10);

/// A running private sshd, stopped (SIGTERM, by PID) when dropped.
pub struct Sshd {
    pub port: u16,
    /// Its configuration file (what `pipe-admin doctor --sshd-config` reads).
    pub config: PathBuf,
    log: PathBuf,
    _child: Guarded,
}

impl Sshd {
    /// Starts `sshd -D -e -f DIR/sshd_config` with a fresh host key `DIR/host_key`, its
    /// stderr in `DIR/sshd.log`. `config(port, host_key)` is the whole configuration: it
    /// must listen on 127.0.0.1 at `port` with `host_key` (sshd reads the file in order,
    /// so the caller decides where `Include` and `Match` go).
    pub fn start(dir: &Path, config: impl Fn(u16, &Path) -> String) -> Sshd {
        let host_key = dir.join("host_key");
        keygen(&host_key, "ed25519", "pipe-test-host");
        let config_file = dir.join("sshd_config");
        let log = dir.join("sshd.log");
        // sshd refuses to start without its privilege separation directory.
        fs::create_dir_all("/run/sshd").expect("mkdir /run/sshd");

        for _attempt in 0..PORT_ATTEMPTS {
            let port = free_port();
            fs::write(&config_file, config(port, &host_key)).unwrap();
            let log_file = fs::File::create(&log).unwrap();
            let mut child = Guarded::spawn(
                Command::new(SSHD)
                    .args(["-D", "-e", "-f"])
                    .arg(&config_file)
                    .stdin(Stdio::null())
                    .stdout(log_file.try_clone().unwrap())
                    .stderr(log_file),
                "sshd",
            );
            if wait_ready(child.child(), port) {
                return Sshd {
                    port,
                    config: config_file,
                    log,
                    _child: child,
                };
            }
            drop(child);
            let log = fs::read_to_string(&log).unwrap_or_default();
            let bind_problem = log.contains("Address already in use")
                || log.contains("Cannot bind")
                || log.is_empty();
            assert!(bind_problem, "sshd failed to start:\n{log}");
        }
        panic!("sshd: no free port after {PORT_ATTEMPTS} attempts");
    }

    /// What sshd wrote to stderr so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The `ssh` argv up to and including the destination `ACCOUNT@127.0.0.1`: no config
    /// file, no agent keys, no host key checks, no prompts.
    pub fn ssh_args(&self, account: &str, key: &Path) -> Vec<String> {
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

    /// `ssh [ssh_args] ACCOUNT@127.0.0.1`, without the agent: the caller appends the
    /// remote command.
    pub fn ssh(&self, account: &str, key: &Path) -> Command {
        let mut c = Command::new("ssh");
        c.args(self.ssh_args(account, key));
        c.env_remove("SSH_AUTH_SOCK");
        c
    }
}

/// A port nothing listens on right now (the kernel's pick for an ephemeral bind).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

/// Waits for our sshd's banner on `port`; false if it exited or stayed silent.
fn wait_ready(child: &mut Child, port: u16) -> bool {
    let deadline = Instant::now() + READY;
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
