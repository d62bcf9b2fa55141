//! End to end through a real sshd: the request language at the door (pipe(1), COMMANDS and
//! EXIT STATUS).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::harness::*;

/// Every message line is printable ASCII (echoed input escaped) and short (echo truncated).
#[track_caller]
fn assert_clean_line(out: &Output, what: &str) {
    assert!(
        out.stderr
            .bytes()
            .all(|b| b == b'\n' || (0x20..0x7f).contains(&b)),
        "{what}: stderr must be printable ASCII, echoed input escaped: {out:?}"
    );
    assert!(
        out.stderr.lines().all(|l| l.len() <= 300),
        "{what}: the echo must be truncated: {out:?}"
    );
}

#[test]
fn bad_requests_exit_2_with_one_line_and_never_reach_a_shell() {
    let h = Harness::new();
    let base = format!("/tmp/pipe-marker-{}", std::process::id());
    let marker = |n: usize| format!("{base}-{n}");
    let injections: Vec<String> = vec![
        format!("pub $(touch {})", marker(0)),
        format!("pub `touch {}`", marker(1)),
        format!("sub ;touch {}", marker(2)),
        format!("sub x|touch {}", marker(3)),
        format!("sub x && touch {}", marker(4)),
        format!("sub x; touch {}", marker(5)),
        format!("sub x\ntouch {}", marker(6)),
        format!("sub x >{}", marker(7)),
        format!("sub x || touch {}", marker(8)),
        format!("sub x & touch {}", marker(9)),
    ];
    let markers: Vec<PathBuf> = (0..injections.len()).map(|n| marker(n).into()).collect();
    for m in &markers {
        let _ = std::fs::remove_file(m);
    }

    let mut requests: Vec<String> = injections;
    requests.extend(
        [
            "pub a\nb",
            "sub a\tb",
            "sub a\x1bb",
            "sub a\x7fb",
            "sub \u{fc}",
            "sub x\r",
            "sub -z x",
            "pub --frobnicate x",
            "monitor x",
            "rss",
            "status",
            "uptime",
            "frob",
            "sub ../x",
            "sub a/b/c",
            "sub /x",
            "sub 'x y'",
            "sub ''",
            "sub $HOME",
            "pub -t 5x t",
            "pub -b=maybe t",
            "pub -d fanout t",
            "sub -n 0 t",
            "sub -n -1 t",
            "sub \"abc",
            "sub",
            "sub a b",
            "sub -p alice/x",
            "pub -t",
            "ls --yaml",
        ]
        .map(String::from),
    );
    requests.push(format!("sub {}", "a".repeat(2048)));
    assert!(requests.len() >= 20);

    // A few at a time: each is one ssh connection.
    let failures = Mutex::new(Vec::new());
    let next = Mutex::new(requests.iter());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                loop {
                    let Some(req) = next.lock().unwrap().next() else {
                        return;
                    };
                    let out = h.run(req, b"", SHORT);
                    let ok = out.code == Some(2)
                        && out.stdout.is_empty()
                        && out.stderr_lines().len() == 1
                        && out.stderr.starts_with("pipe: ")
                        && out
                            .stderr
                            .bytes()
                            .all(|b| b == b'\n' || (0x20..0x7f).contains(&b))
                        && out.stderr.len() <= 300;
                    if !ok {
                        failures.lock().unwrap().push(format!("{req:?}: {out:?}"));
                    }
                }
            });
        }
    });
    let shell_ran: Vec<_> = markers.iter().filter(|m| m.exists()).collect();
    for m in &markers {
        let _ = std::fs::remove_file(m);
    }
    assert!(
        shell_ran.is_empty(),
        "a request reached a shell: {shell_ran:?} exist"
    );
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} bad request(s) not refused with exit 2, empty stdout and one short printable \
         `pipe: ` line on stderr:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// `ssh -s host sftp`: with a forced command, OpenSSH runs the forced command for a subsystem
/// request too, with `SSH_ORIGINAL_COMMAND` set to the subsystem's configured command
/// (`/usr/lib/openssh/sftp-server`), and discards the session's stderr (subsystem channels
/// never forward it). So only the exit code and the empty stdout are visible.
#[test]
fn sftp_subsystem_is_refused_with_exit_2() {
    let h = Harness::new();
    let mut cmd = std::process::Command::new("ssh");
    cmd.args(h.ssh_args())
        .args(["-s", "sftp"])
        .env_remove("SSH_AUTH_SOCK");
    let out = run_command(cmd, "ssh -s sftp", b"", SHORT);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
}

/// `ssh host` with no command and no terminal: nothing to do, a usage error.
#[test]
fn empty_request_exits_2() {
    let h = Harness::new();
    let mut cmd = std::process::Command::new("ssh");
    cmd.args(h.ssh_args()).env_remove("SSH_AUTH_SOCK");
    let out = run_command(cmd, "ssh (no command)", b"", SHORT);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(
        out.stderr.lines().any(|l| l.starts_with("pipe: ")),
        "{out:?}"
    );
}

#[test]
fn broker_unavailable_exits_4() {
    let h = Harness::without_broker();
    let start = Instant::now();
    let out = h.run("sub x", b"", Duration::from_secs(45));
    eprintln!("broker unavailable reported after {:?}", start.elapsed());
    assert_eq!(out.code, Some(4), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(
        out.stderr
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("pipe: broker unavailable")),
        "{out:?}"
    );
    assert_eq!(
        out.stderr
            .lines()
            .filter(|l| l.starts_with("pipe: "))
            .count(),
        1,
        "exactly one `pipe: ` line: {out:?}"
    );
}

#[test]
fn help_prints_usage_on_stderr_only() {
    let h = Harness::new();
    let out = h.run("help", b"", SHORT);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout.is_empty(),
        "help must not write to stdout: {out:?}"
    );
    for verb in ["pub", "sub", "pipe", "ls"] {
        assert!(out.stderr.contains(verb), "usage lacks {verb}: {out:?}");
    }
    assert_clean_line(&out, "help");
}

#[test]
fn version_prints_the_crate_version() {
    let h = Harness::new();
    let out = h.run("version", b"", SHORT);
    assert_eq!(out.code, Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(env!("CARGO_PKG_VERSION")), "version: {out:?}");
}

#[test]
fn whoami_names_the_login_user() {
    let h = Harness::new();
    let out = h.run("whoami", b"", SHORT);
    assert_eq!(out.code, Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .any(|w| w == LOGIN_USER),
        "whoami: {out:?}"
    );
}
