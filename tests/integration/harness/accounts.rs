//! The throwaway Unix accounts the tests log in as, and the `useradd`/`usermod` calls that
//! make and change them. Accounts are machine-wide: every call here is idempotent and safe
//! against another test (thread or process) doing the same at the same time.

use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::Duration;

/// The throwaway login user every ssh session runs as (unless a test picks another).
pub const LOGIN_USER: &str = "pipetest";

/// A second per-Unix-user account (identity = its own name, like [`LOGIN_USER`]).
pub const LOGIN_USER2: &str = "pipetest2";

/// The shared service account: `piped --service-user` names it, so its key lines may assert
/// `--user`/`--key` (pipe-shell(8), IDENTITY MODES).
pub const SERVICE_USER: &str = "pipetestsvc";

/// Every account sshd lets in. All are members of the group [`LOGIN_USER`], the broker
/// socket's group.
pub const ACCOUNTS: [&str; 3] = [LOGIN_USER, LOGIN_USER2, SERVICE_USER];

/// How often `useradd`/`usermod` are tried while another process holds the lock on
/// /etc/passwd and /etc/group, [`PASSWD_RETRY`] apart: 2 s in all, far longer than any
/// one change takes.
const PASSWD_ATTEMPTS: u32 = 20;
const PASSWD_RETRY: Duration = Duration::from_millis(100);

/// useradd's exit code for "the name is taken" (a concurrent test created it first).
const USERADD_NAME_TAKEN: i32 = 9;

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

pub fn account_exists(name: &str) -> bool {
    Command::new("id")
        .arg(name)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Creates the system account `name` (home /, shell /bin/sh, no home directory made) unless
/// it exists, with a group of its own when `own_group`. Idempotent, also across concurrent
/// test processes.
pub fn create_account(name: &str, own_group: bool) {
    let mut last = None;
    for _ in 0..PASSWD_ATTEMPTS {
        if account_exists(name) {
            return;
        }
        let mut useradd = Command::new("useradd");
        useradd.args(["--system", "--no-create-home"]);
        if own_group {
            useradd.arg("--user-group");
        }
        let out = useradd
            .args(["--home-dir", "/", "--shell", "/bin/sh", name])
            .output()
            .expect("run useradd");
        if out.status.success()
            || out.status.code() == Some(USERADD_NAME_TAKEN)
            || account_exists(name)
        {
            return;
        }
        last = Some(out);
        thread::sleep(PASSWD_RETRY);
    }
    let out = last.expect("at least one attempt");
    panic!(
        "useradd {name} failed: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `usermod ARGS NAME`, retried while another process holds the lock on /etc/passwd and
/// /etc/group; the error is usermod's last stderr.
pub fn try_usermod(name: &str, args: &[&str]) -> Result<(), String> {
    let mut last = String::new();
    for _ in 0..PASSWD_ATTEMPTS {
        let out = Command::new("usermod")
            .args(args)
            .arg(name)
            .output()
            .map_err(|e| format!("run usermod: {e}"))?;
        if out.status.success() {
            return Ok(());
        }
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        thread::sleep(PASSWD_RETRY);
    }
    Err(last)
}

/// [`try_usermod`], panicking on failure.
pub fn usermod(name: &str, args: &[&str]) {
    if let Err(e) = try_usermod(name, args) {
        panic!("usermod {args:?} {name} failed: {e}");
    }
}

/// Creates `name` once (idempotent, also across concurrent test processes) and makes it fit
/// for key logins through the harness's sshd.
fn ensure_account(name: &str) {
    create_account(name, false);
    // sshd with `UsePAM no` refuses a locked (`!`) account even for key logins. The home
    // must exist: otherwise sshd writes "Could not chdir to home directory …" into every
    // session's stderr, in front of pipe-shell's own output. The other accounts join the
    // group `pipetest`, the socket group, so they can reach the broker (sshd sets the
    // supplementary groups of a session with initgroups).
    let mut args = vec!["-p", "*", "-d", "/", "-s", "/bin/sh"];
    if name != LOGIN_USER {
        args.extend(["-a", "-G", LOGIN_USER]);
    }
    usermod(name, &args);
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
