//! Scoped drains (pipe(5) and piped(8), SCOPED DRAINS) through the real sshd: users read
//! their own lines of the service logs with `ssh host logs`, admins read every line, and
//! what is not a JSON object or is too long reaches nobody but the admins' notices.
//!
//! The team logs in through the shared service account (alice, bob, carol); the service
//! publishing into the feed runs on the broker's host as the Unix user `pipetest`, so the
//! feed is `pipetest/log-drain`; root on the host is an admin.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::team::{Mode, Team};
use crate::harness::*;
use nix::sys::signal::Signal;
use serde_json::Value;

/// A broker config declaring the drain `logs`, fed by `pipetest/log-drain`, with carol as
/// an admin. `extra` goes into the drain table.
fn drain_config(extra: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("piped.toml");
    let mut f = std::fs::File::create(&path).unwrap();
    write!(
        f,
        "[[drain]]\nname = \"logs\"\nfeeds = [\"{LOGIN_USER}/log-drain\"]\n\
         scope = [\"user\", \"userId\"]\nadmins = [\"carol\"]\n{extra}"
    )
    .unwrap();
    (dir, path)
}

fn team_with(config: &std::path::Path) -> Team {
    let config = config.display().to_string();
    let mut t = Team::start_with(Mode::ServiceAccount, &["--config", &config]);
    t.add_member("carol");
    t
}

/// Waits until the broker has `n` drain watchers attached in all (its log says so).
fn wait_for_watchers(h: &Harness, n: usize) {
    let deadline = Instant::now() + SHORT;
    loop {
        let seen = h.piped_log().matches("watching a drain").count();
        if seen >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{seen} of {n} watchers after {SHORT:?}\n{}",
            h.piped_log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Publishes `lines` into the feed as the service would (`pub log-drain -b=false`).
fn publish_feed(h: &Harness, input: &[u8]) {
    let mut cmd = h.pipe_shell_as(LOGIN_USER);
    cmd.args(["pub", "log-drain", "-b=false"]);
    let out = run_command(cmd, "service: pub log-drain", input, SHORT);
    assert_eq!(out.code, Some(0), "{out:?}");
}

fn lines(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn each_user_sees_exactly_their_lines_and_admins_see_all() {
    let (_dir, config) = drain_config("events = false\n");
    let t = team_with(&config);
    let (alice, bob) = (t.member("alice"), t.member("bob"));
    let carol = t.member("carol");
    let long = format!(
        "{{\"user\":\"alice\",\"pad\":\"{}\"}}",
        "x".repeat(70 * 1024)
    );
    let feed: Vec<String> = vec![
        r#"{"user":"alice","msg":"a1"}"#.into(),
        r#"{"user":"bob","msg":"b1"}"#.into(),
        r#"{"msg":"for nobody"}"#.into(),
        r#"{"user":"alice","msg":"internal","hidden":true}"#.into(),
        "not json at all".into(),
        long,
        r#"{"userId":"bob","msg":"b2"}"#.into(),
        r#"{"user":"alice","msg":"a2 \u00e9 \"quoted\"","n":1.5e3}"#.into(),
        r#"{"user":"carol","msg":"c1"}"#.into(),
    ];
    let line = |i: usize| format!("{}\n", feed[i]);
    let mut a = t.spawn(alice, "logs -n 2");
    let mut b = t.spawn(bob, "sub logs -n 2 -c");
    let mut c = t.spawn(carol, "logs -n 9");
    let mut root = {
        let mut cmd = t.h.pipe_shell();
        cmd.args(["logs", "-n", "9"]);
        spawn_command(cmd, "root: logs")
    };
    wait_for_watchers(&t.h, 4);
    let input: String = (0..feed.len()).map(line).collect();
    publish_feed(&t.h, input.as_bytes());

    let out = a.finish(SHORT);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), line(0) + &line(7));
    let out = b.finish(SHORT);
    assert_eq!((out.code, out.stderr.as_str()), (Some(0), ""), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), line(1) + &line(6));

    for (who, client) in [("carol", &mut c), ("root", &mut root)] {
        let out = client.finish(SHORT);
        assert_eq!(out.code, Some(0), "{who}: {out:?}");
        let got = String::from_utf8_lossy(&out.stdout).into_owned();
        let got: Vec<&str> = got.lines().collect();
        assert_eq!(got.len(), 9, "{who}: {got:?}");
        // Every valid line, byte for byte and in order, hidden ones too.
        for (g, i) in got.iter().zip([0, 1, 2, 3]) {
            assert_eq!(*g, feed[i], "{who}");
        }
        assert_eq!(&got[6..], &feed[6..], "{who}");
        // The two rejected lines as notices, in their place, with the running counts.
        let notices = lines(format!("{}\n{}\n", got[4], got[5]).as_bytes());
        assert_eq!(notices[0]["message"], "line rejected: not one JSON object");
        assert_eq!(notices[0]["line"], "not json at all");
        assert_eq!(notices[0]["hidden"], true);
        assert_eq!(notices[0]["service"], "piped");
        assert_eq!(
            notices[1]["message"],
            format!("line rejected: longer than {} bytes", 64 * 1024)
        );
        assert_eq!(notices[1]["bytes"], feed[5].len());
        assert_eq!(
            (
                notices[1]["invalid"].as_u64(),
                notices[1]["too_long"].as_u64()
            ),
            (Some(1), Some(1))
        );
    }
    // And piped's own log says so, for admins not watching.
    let log = t.h.piped_log();
    assert!(log.contains("drain lines rejected"), "{log}");
}

#[test]
fn the_raw_feed_is_the_service_users_topic_and_a_drain_name_is_read_only() {
    let (_dir, config) = drain_config("");
    let t = team_with(&config);
    let alice = t.member("alice");
    let out = t.run(alice, format!("sub {LOGIN_USER}/log-drain"), b"");
    assert_eq!(out.code, Some(3), "{out:?}");
    assert_eq!(out.stderr.trim(), "pipe: no such topic or access denied");
    for request in ["pub logs", "pipe logs"] {
        let out = t.run(alice, request, b"x\n");
        assert_eq!(out.code, Some(2), "{request}: {out:?}");
        assert!(out.stderr.contains("logs is a drain"), "{request}: {out:?}");
    }
    let out = t.run(alice, "sub logs -a bob", b"");
    assert_eq!(out.code, Some(2), "{out:?}");
    let out = t.run(alice, "logs nosuch", b"");
    assert_eq!(
        (out.code, out.stderr.trim()),
        (Some(3), "pipe: no such drain: nosuch")
    );
}

/// piped's own events reach the user they concern: why a session of theirs ended.
#[test]
fn a_user_sees_why_their_sessions_ended() {
    let (_dir, config) = drain_config("");
    let config = config.display().to_string();
    let t = Team::start_with(
        Mode::ServiceAccount,
        &[
            "--config",
            &config,
            "--stall-timeout",
            "1s",
            "--window",
            "64K",
        ],
    );
    let (alice, bob) = (t.member("alice"), t.member("bob"));
    let watch = t.spawn(alice, "logs");
    let theirs = t.spawn(bob, "sub logs");
    wait_for_watchers(&t.h, 2);

    let out = t.run(alice, "sub bob/secret", b"");
    assert_eq!(out.code, Some(3), "{out:?}");
    let stuck = t.spawn(alice, "sub x");
    t.wait_until(alice, "alice/x", "a subscriber", |c| c.subscribers == 1);
    stuck.signal(Signal::SIGSTOP);
    let out = t.run(alice, "pub x -b=false", &vec![b'a'; 4 << 20]);
    assert_eq!(out.code, Some(0), "{out:?}");
    stuck.signal(Signal::SIGCONT);

    let out = watch.out.as_ref().unwrap();
    assert!(
        out.wait_contains(b"dropped: subscriber stalled", SHORT),
        "no drop event: {}",
        out.text()
    );
    let events = lines(&out.bytes());
    let ended = |reason: &str| {
        events
            .iter()
            .find(|e| e["reason"] == reason)
            .unwrap_or_else(|| panic!("no event with reason {reason:?}: {events:?}"))
    };
    let denied = ended("no such topic or access denied");
    assert_eq!(
        (
            &denied["user"],
            &denied["exit"],
            &denied["service"],
            &denied["level"]
        ),
        (
            &Value::from("alice"),
            &Value::from(3),
            &Value::from("piped"),
            &Value::from("WARN")
        )
    );
    assert_eq!(ended("dropped: subscriber stalled")["exit"], 5);
    assert!(
        events.iter().all(|e| e["user"] == "alice"),
        "only alice's events: {events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["message"] == "session started" && e["request"] == "pub --block=false x"),
        "{events:?}"
    );
    // bob's only session is the one reading the drain (`sub logs`), which is not an event
    // of its own: his stream stays empty, and never shows alice's.
    let bobs = theirs.out.as_ref().unwrap().text();
    assert!(bobs.is_empty(), "bob's stream: {bobs}");
}

/// The issue's picture: a Rust service logs through `pipe::logship` into its feed; two users
/// and two admins watch `logs`. Each user gets exactly the lines tagged with their name,
/// byte for byte and in order; hidden lines and lines for nobody reach the admins only.
#[test]
fn a_service_logging_through_the_tracing_layer_reaches_each_user() {
    let (_dir, config) = drain_config("events = false\n");
    let t = team_with(&config);
    let (alice, bob, carol) = (t.member("alice"), t.member("bob"), t.member("carol"));
    let commands = "alice build\nbob deploy\n- cache warmed\nhidden alice quota-check\n\
                    alice test\nbob rollback\n";
    // Per user: two lines a job; admins: those eight, one for nobody, one hidden.
    let mut a = t.spawn(alice, "logs -n 4 -c");
    let mut b = t.spawn(bob, "logs -n 4 -c");
    let mut c = t.spawn(carol, "logs -n 10 -c");
    let mut root = {
        let mut cmd = t.h.pipe_shell();
        cmd.args(["logs", "-n", "10"]);
        spawn_command(cmd, "root: logs")
    };
    wait_for_watchers(&t.h, 4);
    let mut service = Command::new(log_service_bin());
    service
        .args(["--service", "jobs", "--socket"])
        .arg(&t.h.socket);
    let service = run_as_account(service, LOGIN_USER);
    let out = run_command(service, "log-service", commands.as_bytes(), SHORT);
    assert_eq!(out.code, Some(0), "{out:?}");
    let stats: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (stats["sent"].as_u64(), stats["dropped"].as_u64()),
        (Some(10), Some(0))
    );

    let everything = root.finish(SHORT);
    assert_eq!(everything.code, Some(0), "{everything:?}");
    let all = String::from_utf8(everything.stdout.clone()).unwrap();
    let all: Vec<&str> = all.lines().collect();
    let parsed = lines(&everything.stdout);
    assert!(
        parsed
            .iter()
            .all(|l| l["service"] == "jobs" && l["hostname"].is_string())
    );
    assert_eq!(
        parsed
            .iter()
            .map(|l| l["message"].as_str().unwrap())
            .collect::<Vec<_>>(),
        [
            "job started",
            "job done",
            "job started",
            "job done",
            "cache warmed",
            "quota-check",
            "job started",
            "job done",
            "job started",
            "job done"
        ]
    );
    let out = c.finish(SHORT);
    assert_eq!(String::from_utf8_lossy(&out.stdout), everything_text(&all));
    for (who, client) in [("alice", &mut a), ("bob", &mut b)] {
        let out = client.finish(SHORT);
        assert_eq!(
            (out.code, out.stderr.as_str()),
            (Some(0), ""),
            "{who}: {out:?}"
        );
        let mine: Vec<&str> = all
            .iter()
            .zip(&parsed)
            .filter(|(_, l)| l["user"] == who && l["hidden"].is_null())
            .map(|(raw, _)| *raw)
            .collect();
        assert_eq!(mine.len(), 4, "{who}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            everything_text(&mine),
            "{who}"
        );
    }
}

fn everything_text(lines: &[&str]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// The same service on another machine: the layer publishes through `ssh host pub
/// log-drain -b=false` (pico's way), here as the Unix account `pipetest`.
#[test]
fn a_service_can_ship_its_logs_through_ssh() {
    let (_dir, config) = drain_config("events = false\n");
    let t = team_with(&config);
    let alice = t.member("alice");
    let mut a = t.spawn(alice, "logs -n 2 -c");
    wait_for_watchers(&t.h, 1);
    let mut service = Command::new(log_service_bin());
    service
        .args(["--service", "remote", "--ssh"])
        .args(t.h.ssh_args());
    let out = run_command(
        service,
        "log-service --ssh",
        b"alice build\nbob build\n",
        SHORT,
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    let out = a.finish(SHORT);
    assert_eq!(out.code, Some(0), "{out:?}");
    let got = lines(&out.stdout);
    assert_eq!(got.len(), 2, "{got:?}");
    for (l, message) in got.iter().zip(["job started", "job done"]) {
        assert_eq!(
            (&l["user"], &l["service"]),
            (&Value::from("alice"), &Value::from("remote"))
        );
        assert_eq!(l["message"], message);
    }
}
