//! Per-user caps (pipe(5), CAPS): sessions, owned topics, public topics and grant entries each
//! answer exit 6 with one `pipe:` line once reached, and free up again.

use std::thread;
use std::time::{Duration, Instant};

use crate::harness::*;

#[track_caller]
fn assert_limit(out: &Output, what: &str, text: &str) {
    assert_eq!(out.code, Some(6), "{what}: {out:?}");
    assert_one_pipe_line(out, what);
    assert!(out.stderr.contains(text), "{what}: {out:?}");
}

#[test]
fn topic_public_and_grant_caps_answer_exit_6() {
    let h = Harness::with_broker_args(&[
        "--max-user-topics",
        "2",
        "--max-public-topics",
        "1",
        "--max-grant-entries",
        "2",
    ]);
    let _t1 = h.spawn("sub t1");
    let _t2 = h.spawn("sub t2");
    h.wait_for_subscribers("t1", 1);
    h.wait_for_subscribers("t2", 1);
    let out = h.run("pub -b=false t3", b"x", SHORT);
    assert_limit(&out, "third topic", "pipe: too many topics for this user");
    // Joining a live topic creates nothing, so it is not capped.
    let out = h.run("pub -b=false t1", b"x", SHORT);
    assert_eq!(out.code, Some(0), "publishing to a live topic: {out:?}");

    let _p1 = h.spawn("sub -p p1");
    h.wait_for_subscribers("public/p1", 1);
    let out = h.run("pub -b=false -p p2", b"x", SHORT);
    assert_limit(
        &out,
        "second public topic",
        "pipe: too many public topics for this user",
    );

    let out = h.run("grant x a,b", b"", SHORT);
    assert_eq!(out.code, Some(0), "{out:?}");
    let out = h.run("grant y c", b"", SHORT);
    assert_limit(
        &out,
        "third grant entry",
        "pipe: too many grant entries for this user",
    );
    let out = h.run("grants --json", b"", SHORT);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("\"c\""),
        "a refused grant is not kept: {out:?}"
    );
}

#[test]
fn session_cap_answers_exit_6_and_frees_up() {
    let h = Harness::with_broker_args(&["--max-user-sessions", "3"]);
    let mut subs: Vec<Client> = (0..3).map(|i| h.spawn(format!("sub s{i}"))).collect();
    let poll = |want: i32| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = h.run("whoami", b"", SHORT);
            if out.code == Some(want) {
                return out;
            }
            assert!(
                Instant::now() < deadline,
                "whoami never exited {want}: {out:?}"
            );
            thread::sleep(Duration::from_millis(100));
        }
    };
    let out = poll(6);
    assert_limit(
        &out,
        "fourth session",
        "pipe: too many sessions for this user",
    );
    subs.pop();
    let out = poll(0);
    assert_eq!(out.stdout, b"pipetest\n");
}

/// A wildcard subscriber joins topics but does not hold them open: otherwise `sub -p '*'`
/// would keep every public topic alive and exhaust their creators' caps (review of issue 4).
#[test]
fn a_wildcard_does_not_keep_topics_alive_against_caps() {
    let h = Harness::with_broker_args(&["--max-public-topics", "1"]);
    // Each `pub` waits (-b) until the wildcard has joined its topic.
    let all = h.spawn("sub -p '*'");
    for name in ["p1", "p2", "p3"] {
        let out = h.run(
            format!("pub -p {name}"),
            format!("{name}\n").as_bytes(),
            SHORT,
        );
        assert_eq!(out.code, Some(0), "pub -p {name}: {out:?}");
    }
    let out = all.out.as_ref().unwrap();
    assert!(
        out.wait_contains(b"p3\n", SHORT),
        "the wildcard got: {:?}",
        out.text()
    );
    assert_eq!(out.text(), "p1\np2\np3\n");
    all.signal(nix::sys::signal::Signal::SIGTERM);
}

/// `-a` on a random topic would leave a durable grant on a name nobody uses again.
#[test]
fn a_grant_needs_a_topic_name() {
    let h = Harness::new();
    let out = h.run("pub -a pipetest2 -e", b"", SHORT);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert_one_pipe_line(&out, "pub -a without a topic");
}
