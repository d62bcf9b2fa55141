//! The broker's socket is reachable by any local user in its group, so it must hold against
//! clients that do not follow the protocol (pipe(5): `hello_deadline`, and the control
//! frame cap under CAPS). These talk to a real `piped` directly over its Unix socket.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::harness::*;

/// Reads until end of file (at most `limit`), returning what arrived and when it ended.
fn read_to_eof(mut s: UnixStream, limit: Duration) -> (Vec<u8>, Duration) {
    let start = Instant::now();
    s.set_read_timeout(Some(limit)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (got, start.elapsed()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("no end of file within {limit:?}: {e} (got {got:?})"),
        }
    }
}

#[test]
fn a_silent_client_is_cut_off_after_the_hello_deadline() {
    let h = Harness::broker_only();
    let s = UnixStream::connect(&h.socket).unwrap();
    let (got, after) = read_to_eof(s, Duration::from_secs(10));
    assert!(
        got.is_empty(),
        "no reply to a client that said nothing: {got:?}"
    );
    assert!(
        after >= Duration::from_millis(1900) && after < Duration::from_secs(5),
        "closed after {after:?}, expected the 2 s hello deadline"
    );
}

#[test]
fn an_oversized_frame_is_refused_from_its_header() {
    let h = Harness::broker_only();
    let mut s = UnixStream::connect(&h.socket).unwrap();
    // Announces a 1 GiB hello: the broker must refuse without waiting for (or allocating) it.
    s.write_all(&(1u32 << 30).to_be_bytes()).unwrap();
    let (got, after) = read_to_eof(s, Duration::from_secs(10));
    assert!(after < Duration::from_secs(1), "took {after:?}");
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("protocol error"), "reply: {text:?}");
    assert!(
        text.contains("\"internal\""),
        "exit code 1 in the reply: {text:?}"
    );
}

#[test]
fn a_hello_without_descriptors_is_refused() {
    let h = Harness::broker_only();
    let mut s = UnixStream::connect(&h.socket).unwrap();
    let body = br#"{"version":1,"request":"sub x","user":null,"key":null}"#;
    s.write_all(&(body.len() as u32).to_be_bytes()).unwrap();
    s.write_all(body).unwrap();
    let (got, _) = read_to_eof(s, Duration::from_secs(10));
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("expected 2 descriptors"), "reply: {text:?}");
}

#[test]
fn the_broker_keeps_serving_after_bad_clients() {
    let h = Harness::broker_only();
    for _ in 0..20 {
        let mut s = UnixStream::connect(&h.socket).unwrap();
        let _ = s.write_all(b"\xff\xff\xff\xffgarbage");
    }
    let mut c = h.pipe_shell();
    c.arg("whoami");
    let out = run_command(c, "pipe-shell whoami", b"", SHORT);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, b"root\n");
}
