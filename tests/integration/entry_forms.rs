//! The ways `pipe-shell` is started (pipe-shell(8), ENTRY FORMS), run locally against a
//! real broker, no sshd: `-c STRING` (pipe-shell as the login shell),
//! `SSH_ORIGINAL_COMMAND` (forced command), plain argv (by hand), and a login shell whose
//! `-c` string is the admin's forced command. The tests run as root, so the identity is
//! `root`.

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::*;
use serde_json::Value;

#[track_caller]
fn assert_json_array(out: &Output, what: &str) {
    assert_eq!(out.code, Some(0), "{what}: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        matches!(
            serde_json::from_str::<Value>(text.trim()),
            Ok(Value::Array(_))
        ),
        "{what}: stdout is not one JSON array: {out:?}"
    );
}

#[test]
fn login_shell_form_runs_the_client_command() {
    let h = Harness::broker_only();
    let mut c = h.pipe_shell();
    c.args(["-c", "ls --json"]);
    let out = run_command(c, "pipe-shell -c 'ls --json'", b"", SHORT);
    assert_json_array(&out, "-c 'ls --json'");
}

#[test]
fn ssh_original_command_form_runs_the_request() {
    let h = Harness::broker_only();
    let mut c = h.pipe_shell();
    c.env("SSH_ORIGINAL_COMMAND", "ls --json");
    let out = run_command(c, "SSH_ORIGINAL_COMMAND='ls --json' pipe-shell", b"", SHORT);
    assert_json_array(&out, "SSH_ORIGINAL_COMMAND");
}

#[test]
fn plain_argv_form_runs_the_request() {
    let h = Harness::broker_only();
    let mut c = h.pipe_shell();
    c.args(["ls", "--json"]);
    let out = run_command(c, "pipe-shell ls --json", b"", SHORT);
    assert_json_array(&out, "argv");
}

/// pipe-shell as the login shell of an account with a forced command: sshd runs
/// `pipe-shell -c '<forced command>'` with the client's request in `SSH_ORIGINAL_COMMAND`.
/// The `-c` string is the admin's and the request is the client's: `whoami` must run.
#[test]
fn login_shell_with_forced_command_runs_the_original_command() {
    let h = Harness::broker_only();
    let forced = format!(
        "{} --socket {}",
        pipe_shell_bin().display(),
        h.socket.display()
    );
    let mut c = Command::new(pipe_shell_bin());
    c.env("SSH_ORIGINAL_COMMAND", "whoami")
        .args(["-c", &forced]);
    let out = run_command(
        c,
        "SSH_ORIGINAL_COMMAND=whoami pipe-shell -c FORCED",
        b"",
        SHORT,
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("root"),
        "{out:?}"
    );
}

/// By hand, with plain pipes as stdio (no sshd in between): pub to sub through the broker.
#[test]
fn local_pub_reaches_local_sub() {
    let h = Harness::broker_only();
    let mut c = h.pipe_shell();
    c.args(["sub", "local"]);
    let mut sub = spawn_command(c, "pipe-shell sub local");

    // Ready when ls shows the subscriber (root's own topic is root/local).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = h.pipe_shell();
        c.args(["ls", "--json"]);
        let out = run_command(c, "pipe-shell ls --json", b"", SHORT);
        let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if Counts::find(&list, "root/local").subscribers == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sub not in ls: {out:?}\n{}",
            h.piped_log()
        );
        thread::sleep(Duration::from_millis(20));
    }

    let mut c = h.pipe_shell();
    c.args(["pub", "local"]);
    let p = run_command(c, "pipe-shell pub local", b"by hand\n", SHORT);
    assert_eq!(p.code, Some(0), "pub: {p:?}");
    let out = sub.finish(SHORT);
    assert_eq!(out.code, Some(0), "sub: {out:?}");
    assert_eq!(out.stdout, b"by hand\n");
}

/// Issue 11, defect 8: pipe-shell run by hand with its stdout a regular file that other
/// processes write to through the same open file (a script's `> log`, a cron job's
/// `>> log 2>&1`) must copy with plain writes at the shared offset. A `splice()` into the
/// file would write the offset it read when it started back when the data arrives, over
/// the lines others wrote meanwhile.
#[test]
fn output_into_a_shared_file_keeps_other_writers_lines() {
    use std::io::Write;
    use std::process::Stdio;

    let h = Harness::broker_only();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut log = std::fs::File::create(&path).unwrap();
    let mut sub = h.pipe_shell();
    sub.args(["sub", "-n", "1", "shared"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(Stdio::null());
    let mut sub = sub.spawn().unwrap();
    // Run by hand as root, the topic is root's.
    h.wait_for_subscribers("root/shared", 1);

    // Another writer of the same open file, while the subscriber waits for its line.
    log.write_all(b"another writer\n").unwrap();
    let mut publish = h.pipe_shell();
    publish.args(["pub", "shared"]);
    let out = run_command(publish, "pub shared", b"published\n", SHORT);
    assert_eq!(out.code, Some(0), "pub: {out:?}");

    let deadline = Instant::now() + SHORT;
    let status = loop {
        if let Some(status) = sub.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "sub -n 1 did not end");
        thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "sub: {status:?}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "another writer\npublished\n"
    );
}
