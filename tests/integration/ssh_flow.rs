//! End to end through a real sshd: flow control, stalled and departed subscribers (pipe(1),
//! FLOW CONTROL). sshd does not signal a forced command when its client disconnects, so the
//! broker must notice a departed subscriber by itself, also while its topic is idle.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::*;
use nix::sys::signal::Signal;

const MINUTE: Duration = Duration::from_secs(60);

#[test]
fn slow_subscriber_paces_the_publisher_and_loses_nothing() {
    const RATE: f64 = MIB as f64; // bytes per second
    let h = Harness::with_broker_args(&["--window", "512K"]);
    let data = random_bytes(12 * MIB, 0x5eed_0002);

    let mut sub = h.spawn_raw("sub slow");
    let mut stdout = sub.take_stdout();
    let expected = data.clone();
    // Token bucket: never more than RATE bytes per second on average (64 KiB burst).
    let reader = thread::spawn(move || {
        let start = Instant::now();
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0usize;
        let mut mismatch = None;
        loop {
            let n = match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if mismatch.is_none() && expected.get(total..total + n) != Some(&buf[..n]) {
                mismatch = Some(total);
            }
            total += n;
            let due = start + Duration::from_secs_f64(total as f64 / RATE);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
        }
        (total, mismatch)
    });
    h.wait_for_subscribers("slow", 1);

    let mut publisher = h.spawn("pub slow");
    let started = Instant::now();
    publisher.feed(data.clone());
    let written = publisher
        .feed_done(MINUTE)
        .expect("writing the publisher's stdin");
    let write_time = written - started;

    let pout = publisher.finish(MINUTE);
    assert_eq!(pout.code, Some(0), "pub: {pout:?}");
    let (total, mismatch) = join_within(reader, MINUTE, "slow reader");
    let sout = sub.finish(SHORT);
    assert_eq!(sout.code, Some(0), "sub: {sout:?}");
    assert_eq!(
        mismatch, None,
        "first differing byte at the slow subscriber"
    );
    assert_eq!(total, data.len(), "bytes at the slow subscriber");

    // Pacing: the subscriber takes ~12 s for 12 MiB. Without backpressure the publisher's
    // 12 MiB would be swallowed in well under a second. With it, only the slack between the
    // two ends can be written ahead of the reader: the broker window (512 KiB), four pipes
    // (≤ 64 KiB each) and two ssh session channel windows (2 MiB each in OpenSSH), about
    // 5 MiB. So the last byte can be written no earlier than ~7 s after the start; 3 s leaves
    // a wide margin and still fails clearly if the broker buffers without bound.
    eprintln!("publisher wrote 12 MiB in {write_time:?}");
    assert!(
        write_time >= Duration::from_secs(3),
        "the publisher was not paced by a 1 MiB/s subscriber: 12 MiB written in {write_time:?}"
    );
}

/// Publishes 16 MiB to two subscribers on `topic`, one of whose ssh clients is stopped
/// throughout. Checks that the publisher and the live subscriber finish cleanly with every
/// byte, resumes the stopped client, and returns the publisher's output and the stopped
/// subscriber's, which must have exited 5 with a prefix of the stream.
fn publish_past_a_stopped_subscriber(h: &Harness, topic: &str, seed: u64) -> (Output, Output) {
    let data = random_bytes(16 * MIB, seed);
    let mut live = h.spawn_verify(&format!("sub {topic}"), data.clone());
    let mut stopped = h.spawn_verify(&format!("sub {topic}"), data.clone());
    h.wait_for_subscribers(topic, 2);
    stopped.signal(Signal::SIGSTOP);

    let mut publisher = h.spawn(format!("pub {topic}"));
    publisher.feed(data.clone());
    let pout = publisher.finish(MINUTE);
    let lout = live.finish(MINUTE);
    // Resume the stopped client before asserting, so a failure still shows its stderr.
    stopped.signal(Signal::SIGCONT);
    assert_eq!(pout.code, Some(0), "pub: {pout:?}");
    assert_eq!(lout.code, Some(0), "live sub: {lout:?}");
    let l = live.out.as_ref().unwrap();
    assert_eq!(l.mismatch(), None, "live sub: first differing byte");
    assert_eq!(l.len(), data.len() as u64, "live sub: bytes");

    let sout = stopped.finish(MINUTE);
    assert_eq!(sout.code, Some(5), "stopped sub: {sout:?}");
    assert_one_pipe_line(&sout, "stopped sub");
    let s = stopped.out.as_ref().unwrap();
    assert_eq!(
        s.mismatch(),
        None,
        "what the dropped sub got must be a prefix of the stream"
    );
    assert!(
        s.len() < data.len() as u64,
        "the dropped sub cannot have received everything"
    );
    (pout, sout)
}

#[test]
fn stopped_subscriber_is_dropped_and_the_rest_continue() {
    let h = Harness::with_broker_args(&["--window", "256K", "--stall-timeout", "2s"]);
    let (_, stopped) = publish_past_a_stopped_subscriber(&h, "st", 0x5eed_0003);
    assert!(
        stopped
            .stderr
            .lines()
            .any(|l| l.starts_with("pipe: dropped: subscriber stalled")),
        "stopped sub stderr: {stopped:?}"
    );
}

/// The broker-wide buffer budget: with the budget far below the window, a stopped
/// subscriber is dropped as soon as the budget is spent (not after the 30 s stall timeout),
/// and the publisher and the other subscriber go on at full speed.
#[test]
fn budget_drops_the_most_lagging_subscriber_first() {
    let h = Harness::with_broker_args(&["--budget", "1M"]);
    let (publisher, _) = publish_past_a_stopped_subscriber(&h, "bud", 0x5eed_0004);
    assert!(
        publisher.elapsed < Duration::from_secs(20),
        "held for the stall timeout: {:?}",
        publisher.elapsed
    );
}

/// Polls `ls --json` after a kill; the topic must show 0 subscribers within 2 s plus one `ls`
/// round trip (the slowest measured), counted from the kill.
fn assert_subscriber_gone_within_2s(
    h: &Harness,
    topic: &str,
    killed_at: Instant,
    mut slowest_ls: Duration,
) {
    loop {
        let t = Instant::now();
        let c = h.counts(topic);
        slowest_ls = slowest_ls.max(t.elapsed());
        let since_kill = killed_at.elapsed();
        if c.subscribers == 0 {
            eprintln!(
                "subscriber gone from ls {since_kill:?} after the kill (slowest ls {slowest_ls:?})"
            );
            return;
        }
        assert!(
            since_kill <= Duration::from_secs(2) + slowest_ls,
            "{topic}: still {} subscriber(s) {since_kill:?} after the client was killed\n{}",
            c.subscribers,
            h.piped_log()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn killed_subscriber_leaves_an_idle_topic_within_2s() {
    let h = Harness::new();
    let sub = h.spawn("sub idle");
    h.wait_for_subscribers("idle", 1);
    let t = Instant::now();
    assert_eq!(h.counts("idle").subscribers, 1);
    let one_ls = t.elapsed();

    sub.signal(Signal::SIGKILL);
    let killed_at = Instant::now();
    assert_subscriber_gone_within_2s(&h, "idle", killed_at, one_ls);
}

/// `ssh host sub x | head -c 10` under `set -o pipefail` ends with 0 (pipe(1), EXIT STATUS:
/// the reader closing is a normal end). How OpenSSH 9.2 gets there: the ssh client ignores
/// SIGPIPE, so when head has gone its write to stdout fails with EPIPE and it closes the
/// channel's write side; sshd closes the stdout pipe it read from, the broker sees the
/// reader gone, and pipe-shell's exit status (0) comes back as ssh's own. (A forced command
/// that dies of SIGPIPE instead, such as `yes`, makes the ssh client exit 141: that is the
/// remote status passed through.) The subscriber must also be gone from the broker within
/// 2 s.
#[test]
fn sub_into_head_ends_and_the_subscriber_leaves() {
    let h = Harness::new();
    let ssh = h
        .ssh_args()
        .iter()
        .map(|a| sh_quote(a))
        .collect::<Vec<_>>()
        .join(" ");
    let script = format!(
        "ssh {ssh} -- 'sub hx' | head -c 10; s=(\"${{PIPESTATUS[@]}}\"); \
         echo \"ssh=${{s[0]}} head=${{s[1]}}\" >&2; [ \"${{s[1]}}\" = 0 ]"
    );
    let mut cmd = std::process::Command::new("bash");
    cmd.arg("-c").arg(&script);
    let mut pipeline = spawn_command(cmd, "ssh sub hx | head -c 10");
    h.wait_for_subscribers("hx", 1);

    let stop = Arc::new(AtomicBool::new(false));
    let mut publisher = h.spawn("pub hx");
    publisher.feed_forever(stop.clone());

    let out = pipeline.finish(SHORT);
    let ended_at = Instant::now();
    let statuses = out.stderr.lines().last().unwrap_or("").to_string();
    eprintln!("pipeline: {statuses}");
    assert_eq!(out.code, Some(0), "head must succeed: {out:?}");
    assert_eq!(out.stdout.len(), 10, "head -c 10 output: {out:?}");
    assert_eq!(statuses, "ssh=0 head=0", "pipeline statuses: {out:?}");
    assert_subscriber_gone_within_2s(&h, "hx", ended_at, Duration::ZERO);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// A `pub` waiting for a receiver reads nothing, so it learns that its client left from its
/// stdout's reader going away; it must not sit out its whole `-t`.
#[test]
fn a_waiting_publisher_whose_client_left_is_gone_within_2s() {
    let h = Harness::new();
    let mut waiting = h.spawn("pub -t 1h lonely");
    h.wait_for_waiting("lonely", 1);
    let killed_at = Instant::now();
    waiting.signal(Signal::SIGKILL);
    let _ = waiting.wait(SHORT);
    h.wait_until("lonely", "no waiting publisher", |c| c.waiting == 0);
    let after = killed_at.elapsed();
    eprintln!("waiting publisher gone {after:?} after its client was killed");
    assert!(after < Duration::from_secs(4), "took {after:?}");
}
