//! Event hooks end to end through a real sshd: the one-shot `sub -n N` form and the
//! `contrib/examples/deploy-hook` loop, which must outlive a broker restart without spinning
//! and stop on errors that retrying cannot fix.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::harness::*;

/// `sub -n N -c x` against a publisher of three lines: exactly N lines on stdout, exit 0,
/// nothing on stderr.
fn sub_n_gets_exactly(n: usize) {
    let h = Harness::new();
    let mut hook = h.spawn(format!("sub -n {n} -c x"));
    h.wait_for_subscribers("x", 1);
    let p = h.run("pub -t 10s x", b"a\nb\nc\n", SHORT);
    assert_eq!(p.code, Some(0), "pub: {p:?}");
    let out = hook.finish(SHORT);
    let want: String = ["a\n", "b\n", "c\n"][..n].concat();
    assert_eq!(out.code, Some(0), "sub -n {n}: {out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        want,
        "sub -n {n}: {out:?}"
    );
    assert_eq!(out.stderr, "", "sub -n {n} -c: stderr must be empty");
}

#[test]
fn sub_n_1_exits_0_after_exactly_one_line() {
    sub_n_gets_exactly(1);
}

#[test]
fn sub_n_2_exits_0_after_exactly_two_lines() {
    sub_n_gets_exactly(2);
}

fn deploy_hook_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/examples/deploy-hook")
}

/// The deploy hook, in its own process group (it runs ssh and a subshell): stopped with
/// SIGTERM to the whole group, SIGKILL if still there, also when the test fails.
struct Hook {
    client: Client,
}

impl Hook {
    /// Starts `sh deploy-hook DIR` with its ssh pointed at the harness and `REDEPLOY`
    /// appending `"$DEPLOY_IMAGE $1"` to `DIR/events`.
    fn start(h: &Harness, dir: &Path, topic: &str) -> Hook {
        let mut cmd = Command::new("sh");
        cmd.arg(deploy_hook_script())
            .arg(dir)
            .env("PIPE_SSH", format!("ssh {}", h.ssh_args().join(" ")))
            .env("DEPLOY_TOPIC", topic)
            .env(
                "REDEPLOY",
                r#"printf '%s %s\n' "$DEPLOY_IMAGE" "$1" >> events"#,
            )
            .env_remove("DEPLOY_DIR")
            .env_remove("SSH_AUTH_SOCK")
            .process_group(0);
        let mut client = spawn_command(cmd, "deploy-hook");
        client.close_stdin();
        Hook { client }
    }

    fn group(&self) -> Pid {
        Pid::from_raw(self.client.pid() as i32)
    }

    /// How many times it has run ssh so far.
    fn attempts(&self) -> usize {
        self.client
            .stderr()
            .lines()
            .filter(|l| l.starts_with("deploy-hook: subscribing to "))
            .count()
    }

    /// Stops the whole group; true if the script exited within 5 s of SIGTERM.
    fn stop(&mut self) -> bool {
        let _ = killpg(self.group(), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.client.try_status().is_some() {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Hook {
    fn drop(&mut self) {
        // The group's other members (ssh, the reading subshell) outlive a killed script.
        let _ = killpg(self.group(), Signal::SIGKILL);
    }
}

/// Waits (at most `timeout`) until `file` holds exactly `want`.
fn wait_for_file(file: &Path, want: &str, timeout: Duration, hook: &Hook) {
    let deadline = Instant::now() + timeout;
    loop {
        let got = fs::read_to_string(file).unwrap_or_default();
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline && want.starts_with(&got),
            "{}: want {want:?}, got {got:?}; hook stderr:\n{}",
            file.display(),
            hook.client.stderr()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// An event runs the redeploy command in the hook's directory; a broker restart ends the
/// subscription (exit 4) and the hook subscribes again after its backoff, so the next event
/// is handled too, without a burst of reconnections.
#[test]
fn deploy_hook_redeploys_and_survives_a_broker_restart() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    let app = h.dir().join("app");
    fs::create_dir(&app).unwrap();
    let events = app.join("events");
    let mut hook = Hook::start(&h, &app, "deploys");

    // -t: wait (bounded) for the hook to be subscribed.
    let p = h.run(
        "pub -t 20s deploys",
        b"{\"image\":\"registry/app:1.4\"}\n",
        SHORT,
    );
    assert_eq!(p.code, Some(0), "first pub: {p:?}");
    let first = "registry/app:1.4 {\"image\":\"registry/app:1.4\"}\n";
    wait_for_file(&events, first, SHORT, &hook);
    assert_eq!(hook.attempts(), 1, "hook stderr:\n{}", hook.client.stderr());

    h.restart_broker();
    // -t 30s: waits for the hook to subscribe again (1 s backoff, 2 s more if it came back
    // while the broker was down).
    let p = h.run("pub -t 30s deploys", b"1.5\n", Duration::from_secs(40));
    assert_eq!(p.code, Some(0), "second pub: {p:?}");
    wait_for_file(&events, &format!("{first}1.5 1.5\n"), SHORT, &hook);

    let attempts = hook.attempts();
    let stderr = hook.client.stderr();
    assert!(hook.client.try_status().is_none(), "hook exited:\n{stderr}");
    assert!(hook.stop(), "hook still running 5 s after SIGTERM");
    assert!(
        (2..=3).contains(&attempts),
        "one restart should take 2 or 3 subscriptions, took {attempts}:\n{stderr}"
    );
    assert!(
        stderr.contains("deploy-hook: ssh exited 4; subscribing again in 1s"),
        "the restart ends the subscription with exit 4:\n{stderr}"
    );
    // -c: no status lines; the only `pipe: ` lines are the exits' reasons.
    assert!(
        stderr
            .lines()
            .filter(|l| l.starts_with("pipe: "))
            .all(|l| { l == "pipe: broker shutting down" || l == "pipe: broker unavailable" }),
        "unexpected pipe: lines:\n{stderr}"
    );
    eprintln!("deploy hook test: {:?}", t0.elapsed());
}

/// Errors retrying cannot fix end the hook at once with pipe's exit code and a clear line:
/// 3 (another user's topic without a grant) and 2 (a bad topic name).
#[test]
fn deploy_hook_gives_up_on_denied_and_usage_errors() {
    let h = Harness::new();
    let app = h.dir().join("app");
    fs::create_dir(&app).unwrap();
    for (topic, code) in [
        (format!("{LOGIN_USER2}/deploys"), 3),
        ("-bad".to_string(), 2),
    ] {
        let mut hook = Hook::start(&h, &app, &topic);
        let out = hook.client.finish(SHORT);
        assert_eq!(out.code, Some(code), "DEPLOY_TOPIC={topic}: {out:?}");
        assert_eq!(hook.attempts(), 1, "DEPLOY_TOPIC={topic}: {out:?}");
        assert!(
            out.stderr
                .contains(&format!("deploy-hook: giving up: ssh exited {code} ")),
            "DEPLOY_TOPIC={topic}: {out:?}"
        );
        assert!(
            out.stdout.is_empty() && !app.join("events").exists(),
            "nothing deployed: {out:?}"
        );
    }
}
