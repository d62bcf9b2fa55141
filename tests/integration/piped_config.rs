//! `piped --config` (issue 5): a strict config file, applied at start and on SIGHUP.
//! A bad file refuses to start with one line naming file, line and reason; a reload with a
//! bad file keeps the running config and says why; a reload that lowers a limit applies to
//! the next session without ending live ones. Local `pipe-shell` sessions (as root, so the
//! identity is `root`) against the real `piped`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::*;
use nix::sys::signal::Signal;

#[track_caller]
fn assert_refused(out: &Output, what: &str) {
    assert_eq!(out.code, Some(6), "{what}: {out:?}");
    assert_one_pipe_line(out, what);
    assert!(
        out.stderr.contains("pipe: too many sessions for this user"),
        "{what}: {out:?}"
    );
}

/// A config file in its own temp dir (kept alive by the returned guard).
fn config_file(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("piped.toml");
    fs::write(&path, text).unwrap();
    (dir, path)
}

/// Runs `piped --config FILE` on a private socket and expects it to refuse to start.
fn refuses_to_start(config: &Path) -> (String, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("piped.sock");
    let mut cmd = Command::new(piped_bin());
    cmd.arg("--config")
        .arg(config)
        .arg("--socket")
        .arg(&socket)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .stdin(Stdio::null());
    let out = run_command(cmd, "piped --config", b"", SHORT);
    assert!(
        out.code.is_some_and(|c| c != 0),
        "piped must exit non-zero: {out:?}"
    );
    assert!(!socket.exists(), "nothing was bound: {out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "one line: {out:?}");
    (out.stderr.trim_end().to_string(), socket)
}

fn pipe_shell(h: &Harness, request: &str) -> Output {
    let mut c = h.pipe_shell();
    c.arg(request);
    run_command(c, request, b"", SHORT)
}

/// Polls local `whoami` until it exits `want` (at most 10 s).
fn whoami_until(h: &Harness, want: i32) -> Output {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = pipe_shell(h, "whoami");
        if out.code == Some(want) {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "whoami never exited {want}: {out:?}\n{}",
            h.piped_log()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// A local `sub -k TOPIC` that stays (its session counts against the caps), returned once
/// the broker has admitted it, so it cannot race the next session for the last place.
fn hold_session(h: &Harness, topic: &str) -> Client {
    let mut c = h.pipe_shell();
    c.args(["sub", "-k", topic]);
    let mut client = spawn_command(c, &format!("sub -k {topic}"));
    // The log names each admitted session's request, in text and JSON alike.
    let started = format!("sub --keep {topic}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !h.piped_log().contains(&started) {
        assert!(
            client.try_status().is_none() && Instant::now() < deadline,
            "sub -k {topic} was not admitted: {}\n{}",
            client.stderr(),
            h.piped_log()
        );
        thread::sleep(Duration::from_millis(20));
    }
    client
}

/// Sends SIGHUP and waits for the log line that says the reload finished either way.
fn reload(h: &Harness, needle: &str) {
    let before = h.piped_log().matches(needle).count();
    h.signal_broker(Signal::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.piped_log().matches(needle).count() == before {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in the log after SIGHUP\n{}",
            h.piped_log()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_unknown_key_refuses_to_start_naming_file_and_line() {
    let (_d, path) = config_file("# piped\nwindow = \"8M\"\nwindw = \"16M\"\n");
    let (line, _) = refuses_to_start(&path);
    assert_eq!(
        line,
        format!(
            "piped: {}:3:1: unknown key \"windw\" (did you mean \"window\"?)",
            path.display()
        )
    );
}

#[test]
fn a_bad_value_refuses_to_start_naming_file_line_and_reason() {
    let (_d, path) = config_file("max_user_topics = 8\n\nmax_user_sessions = 0\n");
    let (line, _) = refuses_to_start(&path);
    assert!(
        line.starts_with(&format!("piped: {}:3:", path.display())),
        "{line}"
    );
    assert!(
        line.ends_with("max_user_sessions: expected a count of at least 1, got 0"),
        "{line}"
    );

    let (_d, path) = config_file("window = \"lots\"\n");
    let (line, _) = refuses_to_start(&path);
    assert!(
        line.starts_with(&format!("piped: {}:1:", path.display()))
            && line.contains("window: expected a size such as \"8M\", got \"lots\""),
        "{line}"
    );
}

#[test]
fn a_missing_config_named_on_the_command_line_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.toml");
    let (line, _) = refuses_to_start(&path);
    assert!(
        line.starts_with(&format!("piped: {}: ", path.display())),
        "{line}"
    );
}

#[test]
fn a_valid_file_is_applied_and_flags_override_it() {
    let (_d, path) = config_file("max_user_sessions = 1\nlog_format = \"json\"\n");
    let config = path.to_str().unwrap();
    let h = Harness::builder()
        .no_sshd()
        .broker_args(&["--config", config])
        .start();
    let _sub = hold_session(&h, "x");
    let out = whoami_until(&h, 6);
    assert_refused(&out, "a second session with max_user_sessions = 1");
    // log_format = "json": every log line is one JSON object.
    let log = fs::read_to_string(h.dir().join("piped.log")).unwrap();
    assert!(!log.is_empty());
    for line in log.lines() {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok_and(|v| v.is_object()),
            "not a JSON log line: {line:?}"
        );
    }
    drop(h);

    // A flag wins over the file.
    let h = Harness::builder()
        .no_sshd()
        .broker_args(&["--config", config, "--max-user-sessions", "2"])
        .start();
    let _sub = hold_session(&h, "x");
    whoami_until(&h, 0);
    let _sub2 = hold_session(&h, "y");
    assert_refused(
        &whoami_until(&h, 6),
        "a third session with --max-user-sessions 2",
    );
}

#[test]
fn a_reload_with_a_broken_file_keeps_the_running_config() {
    let (_d, path) = config_file("max_user_sessions = 2\n");
    let h = Harness::builder()
        .no_sshd()
        .broker_args(&["--config", path.to_str().unwrap()])
        .start();
    fs::write(&path, "max_user_sessions = 1\nstall_timeout = \"soon\"\n").unwrap();
    reload(&h, "reload refused");
    let log = h.piped_log();
    let why = log
        .lines()
        .find(|l| l.contains("reload refused"))
        .unwrap_or_default();
    assert!(
        why.contains("WARN")
            && why.contains(&format!("{}:2:", path.display()))
            && why.contains("stall_timeout: expected a duration"),
        "the warning names file, line and reason: {why:?}"
    );
    // Still serving, with the old cap of 2 (the broken file's 1 was not applied).
    let _sub = hold_session(&h, "x");
    whoami_until(&h, 0);
    let _sub2 = hold_session(&h, "y");
    assert_refused(
        &whoami_until(&h, 6),
        "a third session under the kept cap of 2",
    );
}

#[test]
fn a_reload_that_lowers_a_limit_applies_to_new_sessions_only() {
    let (_d, path) = config_file("max_user_sessions = 3\n");
    let mut h = Harness::builder()
        .no_sshd()
        .broker_args(&["--config", path.to_str().unwrap()])
        .start();
    let mut a = hold_session(&h, "a");
    let mut b = hold_session(&h, "b");
    // Two live, a third fits.
    let out = pipe_shell(&h, "whoami");
    assert_eq!(out.code, Some(0), "third session under a cap of 3: {out:?}");

    fs::write(&path, "max_user_sessions = 1\n").unwrap();
    reload(&h, "reloaded");
    assert_refused(
        &pipe_shell(&h, "whoami"),
        "a new session over the lowered cap",
    );
    assert!(
        a.try_status().is_none() && b.try_status().is_none(),
        "live sessions are not ended for a lowered cap"
    );
    assert!(h.piped_alive());

    // Back under the cap once both leave.
    a.signal(Signal::SIGTERM);
    b.signal(Signal::SIGTERM);
    a.wait(SHORT);
    b.wait(SHORT);
    whoami_until(&h, 0);

    // A start-only setting changed by a reload is reported and ignored. (The harness
    // gives socket, group, state dir and service user as flags, which win over the file.)
    fs::write(
        &path,
        "max_user_sessions = 1\nkeys_dir = \"/srv/keys\"\nlog_format = \"json\"\n",
    )
    .unwrap();
    reload(&h, "takes a restart");
    let log = h.piped_log();
    assert!(log.contains("keys_dir, log_format changed"), "{log}");
    assert!(
        !log.lines().last().unwrap_or_default().starts_with('{'),
        "still logging text: {log}"
    );
    assert_eq!(pipe_shell(&h, "whoami").code, Some(0));
}

#[test]
fn the_shipped_config_file_is_the_documented_example_and_starts_piped() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/piped.toml");
    let text = fs::read_to_string(&shipped).expect("contrib/piped.toml");
    assert_eq!(
        text,
        pipe::broker::config::EXAMPLE_CONFIG,
        "contrib/piped.toml drifted from broker::config::EXAMPLE_CONFIG (whose unit test \
         checks every key and default): copy it over"
    );
    let h = Harness::builder()
        .no_sshd()
        .broker_args(&["--config", shipped.to_str().unwrap()])
        .start();
    assert_eq!(pipe_shell(&h, "whoami").code, Some(0));
}
