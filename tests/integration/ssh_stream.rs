//! End to end through a real sshd: what a user sees on the data path (pipe(1), COMMANDS and
//! FLOW CONTROL).

use std::time::{Duration, Instant};

use crate::harness::*;

#[test]
fn hello_reaches_two_subscribers_byte_exact() {
    let h = Harness::new();
    let mut a = h.spawn("sub t");
    let mut b = h.spawn("sub t");
    h.wait_for_subscribers("t", 2);

    let p = h.run("pub t", b"hello\n", SHORT);
    assert_eq!(p.code, Some(0), "pub: {p:?}");

    for s in [&mut a, &mut b] {
        let out = s.finish(SHORT);
        assert_eq!(out.code, Some(0), "sub: {out:?}");
        assert_eq!(out.stdout, b"hello\n", "sub: {out:?}");
    }
}

#[test]
fn multicast_64mib_arrives_identical_at_three_subscribers() {
    let h = Harness::new();
    let data = random_bytes(64 * MIB, 0x5eed_0001);
    let mut subs: Vec<Client> = (0..3)
        .map(|_| h.spawn_verify("sub big", data.clone()))
        .collect();
    h.wait_for_subscribers("big", 3);

    let mut p = h.spawn("pub big");
    p.feed(data.clone());
    let pout = p.finish(Duration::from_secs(120));
    assert_eq!(pout.code, Some(0), "pub: {pout:?}");

    for s in &mut subs {
        let out = s.finish(Duration::from_secs(60));
        let got = s.out.as_ref().unwrap();
        assert_eq!(out.code, Some(0), "sub: {out:?}");
        assert_eq!(got.mismatch(), None, "sub: first differing byte");
        assert_eq!(got.len(), data.len() as u64, "sub: length");
    }
}

#[test]
fn round_robin_delivers_each_line_to_exactly_one_subscriber() {
    let h = Harness::new();
    let lines: Vec<String> = (0..30_000).map(|i| format!("line-{i:06}")).collect();
    let input: Vec<u8> = lines
        .iter()
        .flat_map(|l| format!("{l}\n").into_bytes())
        .collect();

    let mut subs: Vec<Client> = (0..3).map(|_| h.spawn("sub rr")).collect();
    h.wait_for_subscribers("rr", 3);
    let p = h.run("pub rr -d round_robin", &input, Duration::from_secs(60));
    assert_eq!(p.code, Some(0), "pub: {p:?}");

    let mut all: Vec<String> = Vec::new();
    let mut per_sub = Vec::new();
    for s in &mut subs {
        let out = s.finish(SHORT);
        assert_eq!(out.code, Some(0), "sub: {out:?}");
        let text = String::from_utf8(out.stdout.clone()).expect("utf-8");
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "round_robin must cut at line ends; a subscriber's output ends mid-line: {:?}",
            &text[text.len().saturating_sub(40)..]
        );
        per_sub.push(text.lines().count());
        all.extend(text.lines().map(str::to_string));
    }
    all.sort();
    assert_eq!(
        all.len(),
        lines.len(),
        "lines received in total (per subscriber: {per_sub:?})"
    );
    assert!(
        all == lines,
        "the union of the subscribers' lines must equal the input exactly"
    );
    assert!(
        per_sub.iter().filter(|&&n| n > 0).count() >= 2,
        "round_robin must spread chunks over the subscribers: {per_sub:?}"
    );
}

#[test]
fn pub_blocks_until_a_subscriber_arrives_then_delivers() {
    let h = Harness::new();
    let mut p = h.spawn("pub late");
    p.write(b"first line\n");
    p.close_stdin();
    h.wait_for_waiting("late", 1);
    assert!(
        p.try_status().is_none(),
        "pub -b must wait for a receiver: {}",
        p.stderr()
    );

    let mut s = h.spawn("sub late");
    let out = s.finish(SHORT);
    assert_eq!(out.code, Some(0), "sub: {out:?}");
    assert_eq!(out.stdout, b"first line\n");
    let pout = p.finish(SHORT);
    assert_eq!(pout.code, Some(0), "pub: {pout:?}");
}

#[test]
fn pub_timeout_without_receiver_exits_7() {
    let h = Harness::new();
    let start = Instant::now();
    // stdin stays open: the wait, not an EOF, must end it.
    let mut p = h.spawn("pub -t 1s -c t2");
    let out = p.finish(Duration::from_secs(15));
    assert_eq!(out.code, Some(7), "{out:?}");
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "exited before -t: {out:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(6),
        "far too late: {out:?}"
    );
    assert!(out.stdout.is_empty(), "{out:?}");
    assert_one_pipe_line(&out, "pub -t 1s");
}

#[test]
fn pub_e_delivers_exactly_one_nul_byte() {
    let h = Harness::new();
    let mut s = h.spawn("sub ev");
    h.wait_for_subscribers("ev", 1);
    let p = h.run("pub -e ev", b"", SHORT);
    assert_eq!(p.code, Some(0), "pub -e: {p:?}");
    let out = s.finish(SHORT);
    assert_eq!(out.code, Some(0), "sub: {out:?}");
    assert_eq!(out.stdout, b"\0", "sub: {out:?}");
}

#[test]
fn sub_k_stays_for_the_next_publisher() {
    let h = Harness::new();
    let mut keep = h.spawn("sub -k kk");
    let mut plain = h.spawn("sub kk");
    h.wait_for_subscribers("kk", 2);

    let p1 = h.run("pub kk", b"one\n", SHORT);
    assert_eq!(p1.code, Some(0), "pub 1: {p1:?}");
    let out = plain.finish(SHORT);
    assert_eq!(out.code, Some(0), "plain sub: {out:?}");
    assert_eq!(out.stdout, b"one\n");

    let k = keep.out.clone().unwrap();
    assert!(k.wait_len(4, SHORT), "sub -k got {:?}", k.text());
    h.wait_for_subscribers("kk", 1);

    let p2 = h.run("pub kk", b"two\n", SHORT);
    assert_eq!(p2.code, Some(0), "pub 2: {p2:?}");
    assert!(k.wait_len(8, SHORT), "sub -k got {:?}", k.text());
    assert_eq!(k.bytes(), b"one\ntwo\n");
    // Still subscribed after the second publisher left.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        keep.try_status().is_none(),
        "sub -k exited: {}",
        keep.stderr()
    );
    assert_eq!(h.counts("kk").subscribers, 1);
}

#[test]
fn pipe_chat_between_two_clients_without_own_echo() {
    let h = Harness::new();
    let mut a = h.spawn("pipe room");
    let mut b = h.spawn("pipe room");
    h.wait_for_subscribers("room", 2);

    a.write(b"from-a\n");
    let bo = b.out.clone().unwrap();
    assert!(
        bo.wait_contains(b"from-a\n", SHORT),
        "B got {:?}",
        bo.text()
    );
    b.write(b"from-b\n");
    let ao = a.out.clone().unwrap();
    assert!(
        ao.wait_contains(b"from-b\n", SHORT),
        "A got {:?}",
        ao.text()
    );

    a.close_stdin();
    let aout = a.finish(SHORT);
    assert_eq!(aout.code, Some(0), "A: {aout:?}");
    b.close_stdin();
    let bout = b.finish(SHORT);
    assert_eq!(bout.code, Some(0), "B: {bout:?}");
    assert_eq!(aout.stdout, b"from-b\n", "A must not receive its own line");
    assert_eq!(bout.stdout, b"from-a\n", "B must not receive its own line");
}

/// Issue 11, defect 9: a `pipe` participant is a publisher, so a plain `sub` on a room
/// ends (exit 0, with every line) once the last participant has left, as it does when the
/// last `pub` leaves.
#[test]
fn a_plain_sub_on_a_room_ends_when_the_last_participant_leaves() {
    let h = Harness::new();
    let mut a = h.spawn("pipe room");
    h.wait_for_subscribers("room", 1);
    let mut listener = h.spawn("sub room");
    h.wait_for_subscribers("room", 2);

    a.write(b"said\n");
    let heard = listener.out.clone().unwrap();
    assert!(
        heard.wait_contains(b"said\n", SHORT),
        "sub got {:?}",
        heard.text()
    );
    a.close_stdin();
    let aout = a.finish(SHORT);
    assert_eq!(aout.code, Some(0), "pipe: {aout:?}");
    let out = listener.finish(SHORT);
    assert_eq!(out.code, Some(0), "sub: {out:?}");
    assert_eq!(out.stdout, b"said\n");
}

#[test]
fn pipe_r_receives_own_writes() {
    let h = Harness::new();
    let mut a = h.spawn("pipe room -r");
    let mut b = h.spawn("pipe room");
    h.wait_for_subscribers("room", 2);

    a.write(b"from-a\n");
    let ao = a.out.clone().unwrap();
    let bo = b.out.clone().unwrap();
    assert!(
        bo.wait_contains(b"from-a\n", SHORT),
        "B got {:?}",
        bo.text()
    );
    assert!(
        ao.wait_contains(b"from-a\n", SHORT),
        "A (-r) got {:?}",
        ao.text()
    );

    a.close_stdin();
    b.close_stdin();
    let aout = a.finish(SHORT);
    let bout = b.finish(SHORT);
    assert_eq!(aout.code, Some(0), "A: {aout:?}");
    assert_eq!(bout.code, Some(0), "B: {bout:?}");
    assert_eq!(aout.stdout, b"from-a\n");
    assert_eq!(bout.stdout, b"from-a\n");
}

#[test]
fn pub_without_topic_prints_a_sub_hint_that_works() {
    let h = Harness::new();
    let mut p = h.spawn("pub");
    p.write(b"to a random topic\n");
    p.close_stdin();
    // The hint `ssh … sub NAME` arrives on stderr while pub waits for a receiver.
    let hint = |b: &[u8]| {
        let text = String::from_utf8_lossy(b);
        text.lines().find_map(|l| {
            let mut words = l.split_whitespace().skip_while(|w| *w != "sub");
            words.next()?;
            words
                .next()
                .map(|w| w.trim_matches(|c| c == '\'' || c == '"').to_string())
        })
    };
    assert!(
        p.err.wait(SHORT, |b, _, eof| hint(b).is_some() || eof),
        "no hint: {:?}",
        p.stderr()
    );
    let name =
        hint(&p.err.bytes()).unwrap_or_else(|| panic!("no `sub NAME` hint: {:?}", p.stderr()));
    assert!(
        p.out.as_ref().unwrap().bytes().is_empty(),
        "the hint must not go to stdout"
    );

    let mut s = h.spawn(format!("sub {name}"));
    let out = s.finish(SHORT);
    assert_eq!(out.code, Some(0), "sub {name}: {out:?}");
    assert_eq!(out.stdout, b"to a random topic\n");
    let pout = p.finish(SHORT);
    assert_eq!(pout.code, Some(0), "pub: {pout:?}");
}

/// A round-robin worker that leaves early (`sub -n 1`) hands the rest of its share to the
/// others: every line still arrives exactly once.
#[test]
fn round_robin_worker_leaving_early_hands_its_share_on() {
    let h = Harness::new();
    let lines: Vec<String> = (0..3_000).map(|i| format!("job-{i:05}")).collect();
    let input: Vec<u8> = lines
        .iter()
        .flat_map(|l| format!("{l}\n").into_bytes())
        .collect();

    // The early leaver joins first, so the rotation's first chunk (most of the input, as
    // it arrives in a few large reads) is its share.
    let mut one = h.spawn("sub -n 1 jobs");
    h.wait_for_subscribers("jobs", 1);
    let mut rest: Vec<Client> = (0..2).map(|_| h.spawn("sub jobs")).collect();
    h.wait_for_subscribers("jobs", 3);
    let p = h.run("pub -d round_robin jobs", &input, Duration::from_secs(60));
    assert_eq!(p.code, Some(0), "pub: {p:?}");

    let first = one.finish(SHORT);
    assert_eq!(first.code, Some(0), "sub -n 1: {first:?}");
    let first = String::from_utf8(first.stdout).unwrap();
    assert_eq!(first.lines().count(), 1, "sub -n 1 printed {first:?}");
    let mut all: Vec<String> = first.lines().map(str::to_string).collect();
    for s in &mut rest {
        let out = s.finish(SHORT);
        assert_eq!(out.code, Some(0), "sub: {out:?}");
        all.extend(
            String::from_utf8(out.stdout)
                .unwrap()
                .lines()
                .map(str::to_string),
        );
    }
    all.sort();
    assert_eq!(all.len(), lines.len(), "lines received in total");
    assert!(all == lines, "every line exactly once");
}

/// `sub -n N` exits 0 after N complete lines, the one-shot hook.
#[test]
fn sub_n_exits_after_n_lines() {
    let h = Harness::new();
    let mut hook = h.spawn("sub -n 2 events");
    h.wait_for_subscribers("events", 1);
    let mut publisher = h.spawn("pub events");
    publisher.write(b"one\ntwo\nthree\n");
    let out = hook.finish(SHORT);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, b"one\ntwo\n");
    publisher.close_stdin();
    assert_eq!(publisher.finish(SHORT).code, Some(0));
}
