//! Scoped drains (DESIGN §5a) through the real sshd: users read their own lines of the
//! service logs with `ssh host logs`, admins read every line, and what is not a JSON
//! object or is too long reaches nobody but the admins' notices.
//!
//! The team logs in through the shared service account (alice, bob, carol); the service
//! publishing into the feed runs on the broker's host as the Unix user `pipetest`, so the
//! feed is `pipetest/log-drain`; root on the host is an admin.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::team::{Mode, Team};
use common::*;
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
