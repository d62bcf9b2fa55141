//! `pipe::logship` against the real `piped`: the example service's lines reach a subscriber of
//! `log-drain`; with the broker gone log calls never block and every lost line is counted;
//! after a broker restart the drain reconnects and reports what it lost. The tests run as
//! root, so the drain's identity is `root` and the feed topic is `root/log-drain`.

#![cfg(feature = "logship")]

use std::fs;
use std::os::unix::fs::symlink;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::*;
use nix::sys::signal::Signal;
use pipe::logship::{BACKOFF_MAX, Builder, DEFAULT_CAPACITY, DEFAULT_TOPIC, DrainHandle};
use serde_json::{Map, Value};
use tracing::info;
use tracing_subscriber::prelude::*;

/// The feed topic as root's `ls` names it.
const FEED: &str = "root/log-drain";

/// `ls --json` through a local pipe-shell until the feed has `n` subscribers.
fn wait_for_feed_subscribers(h: &Harness, n: u64) {
    let deadline = Instant::now() + SHORT;
    loop {
        let mut c = h.pipe_shell();
        c.args(["ls", "--json"]);
        let out = run_command(c, "pipe-shell ls --json", b"", SHORT);
        let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if Counts::find(&list, FEED).subscribers == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{FEED}: not {n} subscribers: {out:?}\n{}",
            h.piped_log()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// A raw subscriber of the feed, ready (listed) when this returns.
fn subscribe(h: &Harness) -> Client {
    let mut c = h.pipe_shell();
    c.args(["sub", DEFAULT_TOPIC, "-k"]);
    let sub = spawn_command(c, "pipe-shell sub log-drain -k");
    wait_for_feed_subscribers(h, 1);
    sub
}

/// Waits until `sub` has received `n` complete lines; returns them parsed.
fn wait_lines(sub: &Client, n: usize, timeout: Duration) -> Vec<Map<String, Value>> {
    let out = sub.out.as_ref().expect("stdout collected");
    let got = out.wait(timeout, |b, _, eof| {
        eof || b.iter().filter(|&&c| c == b'\n').count() >= n
    });
    let text = out.text();
    assert!(
        got && text.lines().count() >= n,
        "wanted {n} lines, got {}: {text}\nstderr: {}",
        text.lines().count(),
        sub.stderr()
    );
    text.lines()
        .map(|l| match serde_json::from_str(l) {
            Ok(Value::Object(m)) => m,
            other => panic!("not one JSON object: {l:?}: {other:?}"),
        })
        .collect()
}

fn dispatch(handle_builder: Builder) -> (tracing::Dispatch, DrainHandle) {
    let (layer, handle) = handle_builder.build().expect("build the drain");
    (
        tracing::Dispatch::new(tracing_subscriber::registry().with(layer)),
        handle,
    )
}

fn log_lines(d: &tracing::Dispatch, phase: &str, n: u64) {
    tracing::dispatcher::with_default(d, || {
        for i in 0..n {
            info!(phase, i, "line");
        }
    });
}

/// Waits for `pred` on the drain's counters.
fn wait_stats(
    handle: &DrainHandle,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&pipe::logship::DrainStats) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        let s = handle.stats();
        if pred(&s) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < timeout,
            "{what}: not within {timeout:?}: {s:?}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn example_service_lines_reach_a_subscriber_in_order() {
    let h = Harness::broker_only();
    let bin = log_service_bin();
    let sub = subscribe(&h);

    let mut c = Command::new(bin);
    c.args(["--service", "jobs", "--socket"]).arg(&h.socket);
    let input = "- runner up\nalice build-1\nbob deploy \"x\"\nhidden alice card expired\n";
    let out = run_command(c, "log-service", input.as_bytes(), SHORT);
    assert_eq!(out.code, Some(0), "{out:?}");
    let stats: Value = serde_json::from_slice(&out.stdout).expect("stats JSON on stdout");
    assert_eq!(
        stats,
        serde_json::json!({"sent": 6, "dropped": 0, "reconnects": 0, "last_error": null}),
        "{out:?}"
    );

    let lines = wait_lines(&sub, 6, SHORT);
    assert_eq!(lines.len(), 6, "{lines:?}");
    let hostname = nix::unistd::gethostname()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let want: [(Option<&str>, &str, Option<&str>); 6] = [
        (None, "runner up", None),
        (Some("alice"), "job started", Some("build-1")),
        (Some("alice"), "job done", Some("build-1")),
        (Some("bob"), "job started", Some("deploy \"x\"")),
        (Some("bob"), "job done", Some("deploy \"x\"")),
        (Some("alice"), "card expired", None),
    ];
    for (line, (user, message, job)) in lines.iter().zip(want) {
        assert_eq!(line["message"], message, "{line:?}");
        assert_eq!(line.get("user").and_then(Value::as_str), user, "{line:?}");
        assert_eq!(line.get("job").and_then(Value::as_str), job, "{line:?}");
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["service"], "jobs");
        assert_eq!(line["hostname"], hostname.as_str());
        assert!(line["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    }
    assert_eq!(lines[5]["hidden"], true);
    assert!(lines[..5].iter().all(|l| !l.contains_key("hidden")));
}

#[test]
fn with_the_broker_gone_log_calls_never_block_and_every_drop_is_counted() {
    const CALLS: u64 = 100_000;
    let mut h = Harness::broker_only();
    h.signal_broker(Signal::SIGTERM);
    h.wait_broker(SHORT);

    let (d, handle) = dispatch(Builder::new("gone").socket(&h.socket, DEFAULT_TOPIC));
    let start = Instant::now();
    tracing::dispatcher::with_default(&d, || {
        for i in 0..CALLS {
            info!(i, "nobody listens");
        }
    });
    let took = start.elapsed();
    eprintln!(
        "broker gone: {CALLS} log calls in {took:?}, {} ns per call",
        took.as_nanos() / u128::from(CALLS)
    );
    assert!(
        took < Duration::from_secs(10),
        "log calls blocked: {took:?}"
    );

    let s = handle.stats();
    assert!(!s.connected, "{s:?}");
    assert_eq!(s.sent, 0, "{s:?}");
    assert_eq!(
        s.queued, DEFAULT_CAPACITY as u64,
        "the queue is full: {s:?}"
    );
    assert_eq!(
        s.dropped + s.queued,
        CALLS,
        "every line not queued is dropped: {s:?}"
    );

    let start = Instant::now();
    let s = handle.shutdown();
    assert!(start.elapsed() < Duration::from_secs(5), "shutdown hung");
    assert_eq!(
        (s.dropped, s.queued),
        (CALLS, 0),
        "queued lines lost at shutdown: {s:?}"
    );
}

/// A drain the broker refuses keeps retrying, and says why in its counters: here the topic
/// is the name of a drain the admin declared, which nobody may publish to.
#[test]
fn a_refused_drain_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("piped.toml");
    fs::write(
        &config,
        "[[drain]]\nname = \"logs\"\nfeeds = [\"svc/log-drain\"]\n",
    )
    .unwrap();
    let config = config.display().to_string();
    let h = Harness::builder()
        .no_sshd()
        .broker_args(&["--config", &config])
        .start();
    let (d, handle) = dispatch(Builder::new("refused").socket(&h.socket, "logs"));
    log_lines(&d, "refused", 1);
    wait_stats(&handle, SHORT, "the refusal", |s| s.last_error.is_some());
    // Written into the socket before the broker answered counts as sent (module docs).
    let why = handle.stats().last_error.unwrap();
    assert!(why.starts_with("exit 2: logs is a drain"), "{why}");
}

#[test]
fn after_a_broker_restart_the_drain_reconnects_and_reports_what_it_lost() {
    const DURING: u64 = 5000;
    let mut h = Harness::broker_only();
    // The drain reaches the broker through a link the test removes while the broker is
    // away, so it cannot reconnect before the new subscriber is there (`-b=false` would
    // discard its lines otherwise).
    let link = h.dir().join("drain.sock");
    symlink(&h.socket, &link).unwrap();
    let sub1 = subscribe(&h);
    let (d, handle) = dispatch(Builder::new("restart").socket(&link, DEFAULT_TOPIC));

    log_lines(&d, "before", 10);
    let before = wait_lines(&sub1, 10, SHORT);
    assert!(before.iter().all(|l| l["phase"] == "before"), "{before:?}");

    fs::remove_file(&link).unwrap();
    h.signal_broker(Signal::SIGTERM);
    h.wait_broker(SHORT);
    log_lines(&d, "during", DURING);
    let s = handle.stats();
    assert!(s.dropped > 0, "the queue overflowed: {s:?}");
    assert_eq!(s.dropped + s.queued, DURING, "{s:?}");
    let lost = s.dropped;

    h.restart_broker();
    let sub2 = subscribe(&h);
    symlink(&h.socket, &link).unwrap();
    let took = wait_stats(
        &handle,
        BACKOFF_MAX + Duration::from_secs(5),
        "reconnected with the queue written",
        |s| s.connected && s.queued == 0 && s.reconnects >= 1,
    );
    eprintln!("reconnected and wrote the queue {took:?} after the socket came back");
    log_lines(&d, "after", 10);

    let kept = DURING - lost;
    let lines = wait_lines(&sub2, 1 + kept as usize + 10, SHORT);
    let report = &lines[0];
    assert_eq!(report["dropped"], lost, "{report:?}");
    assert_eq!(report["level"], "WARN");
    assert_eq!(report["hidden"], true);
    assert_eq!(report["service"], "restart");
    assert_eq!(
        report["message"],
        format!("pipe drain: dropped {lost} log lines")
    );
    let seq = |phase: &str| -> Vec<u64> {
        lines
            .iter()
            .filter(|l| l.get("phase").and_then(Value::as_str) == Some(phase))
            .map(|l| l["i"].as_u64().unwrap())
            .collect()
    };
    // The queue kept the oldest lines and dropped the rest: none is lost in between.
    assert_eq!(seq("during"), (0..kept).collect::<Vec<_>>());
    assert_eq!(seq("after"), (0..10).collect::<Vec<_>>());
    assert_eq!(lines.len(), 1 + kept as usize + 10, "nothing else");

    let s = handle.shutdown();
    assert_eq!(
        (s.sent, s.dropped, s.reconnects),
        (10 + kept + 10, lost, 1),
        "{s:?}"
    );
    drop(sub1);
}

/// Cost of one log call through the real broker socket, with a subscriber reading, and
/// with the broker gone: median of 5 runs of 1M calls each. With the broker up the calls
/// come in bursts of [`BURST`] with a flush (not timed) in between, so every line is
/// formatted and queued rather than dropped. Not an assertion, a figure:
/// `cargo test --release --test integration drain_layer::log_call_cost -- --ignored --nocapture`
#[test]
#[ignore]
fn log_call_cost() {
    const CALLS: u64 = 1_000_000;
    /// Half the queue: a burst never overflows it.
    const BURST: u64 = DEFAULT_CAPACITY as u64 / 2;
    fn median_ns(d: &tracing::Dispatch, handle: &DrainHandle, paced: bool) -> f64 {
        let mut runs: Vec<f64> = (0..5)
            .map(|_| {
                let mut spent = Duration::ZERO;
                tracing::dispatcher::with_default(d, || {
                    let _user = pipe::logship::user_span("alice").entered();
                    for burst in 0..CALLS / BURST {
                        let start = Instant::now();
                        for i in 0..BURST {
                            info!(job = "build", i = burst * BURST + i, "job started");
                        }
                        spent += start.elapsed();
                        if paced {
                            assert!(handle.flush(SHORT), "{:?}", handle.stats());
                        }
                    }
                });
                spent.as_nanos() as f64 / (CALLS / BURST * BURST) as f64
            })
            .collect();
        runs.sort_by(f64::total_cmp);
        runs[2]
    }

    let mut h = Harness::broker_only();
    let sub = subscribe(&h);
    let (d, handle) = dispatch(Builder::new("bench").socket(&h.socket, DEFAULT_TOPIC));
    wait_stats(&handle, SHORT, "connected", |s| s.connected);
    let up = median_ns(&d, &handle, true);
    let s = handle.shutdown();
    eprintln!("broker up, subscriber reading: {up:.0} ns per call (median of 5); {s:?}");
    drop(sub);

    h.signal_broker(Signal::SIGTERM);
    h.wait_broker(SHORT);
    let (d, handle) = dispatch(Builder::new("bench").socket(&h.socket, DEFAULT_TOPIC));
    let gone = median_ns(&d, &handle, false);
    let s = handle.shutdown();
    eprintln!("broker gone: {gone:.0} ns per call (median of 5); {s:?}");
}
