//! End to end through a real sshd: the broker's graceful shutdown on SIGTERM.

use std::time::Duration;

use crate::harness::*;
use nix::sys::signal::Signal;

const MINUTE: Duration = Duration::from_secs(60);

/// On SIGTERM the broker stops taking input, writes what it had accepted to the subscribers
/// still there (even one that was behind), and gives every client a final status: exit 4
/// with `pipe: broker shutting down`.
#[test]
fn sigterm_flushes_accepted_bytes_and_every_client_gets_a_final_status() {
    let mut h = Harness::new();
    let data = random_bytes(6 * MIB, 0x5eed_0100);

    let fast = h.spawn("sub s");
    let behind = h.spawn("sub -k s");
    let mut waiting = h.spawn("pub -c other");
    h.wait_for_subscribers("s", 2);
    h.wait_for_waiting("other", 1);

    // The second subscriber's client stops reading, so part of the stream is still in the
    // broker when it is told to stop.
    behind.signal(Signal::SIGSTOP);
    let mut publisher = h.spawn("pub s");
    publisher.write(&data);
    assert!(
        fast.out
            .as_ref()
            .unwrap()
            .wait_len(data.len() as u64, MINUTE),
        "the fast subscriber got {} of {} bytes",
        fast.out.as_ref().unwrap().len(),
        data.len()
    );

    h.signal_broker(Signal::SIGTERM);
    behind.signal(Signal::SIGCONT);
    // Well inside the default 5 s shutdown deadline: flushing a few MiB takes a moment.
    let status = h.wait_broker(Duration::from_secs(4));
    assert!(status.success(), "piped exit after SIGTERM: {status:?}");

    for (name, client) in [
        ("fast sub", &mut { fast }),
        ("stopped -k sub", &mut { behind }),
    ] {
        let out = client.finish(MINUTE);
        assert_eq!(out.code, Some(4), "{name}: {out:?}");
        assert_eq!(out.stdout.len(), data.len(), "{name}: bytes received");
        assert!(out.stdout[..] == data[..], "{name}: bytes differ");
        assert_one_pipe_line(&out, name);
        assert!(
            out.stderr.contains("pipe: broker shutting down"),
            "{name}: {out:?}"
        );
    }
    for (name, client) in [("publisher", &mut publisher), ("waiting pub", &mut waiting)] {
        let out = client.finish(MINUTE);
        assert_eq!(out.code, Some(4), "{name}: {out:?}");
        assert!(
            out.stderr.contains("pipe: broker shutting down"),
            "{name}: {out:?}"
        );
    }
    assert!(
        !h.socket.exists(),
        "the broker removes the socket it created"
    );
}
