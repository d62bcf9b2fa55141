//! The subscribing side of a session: write the topic's chunks into the session's stdout.

use std::collections::VecDeque;

use bytes::Bytes;
use tokio::time::sleep;

use super::fdio::{Fd, MAX_IOV};
use super::session::{Ctx, IDLE_CHECK, OK, Outcome, SHUTTING_DOWN, fail};
use super::topic::{Fetch, SessionId, SubHandle, Topic};
use crate::exit::Exit;

/// A subscriber's place on a topic, removed however the session ends.
pub struct Subscriber<'a> {
    topic: &'a Topic,
    handle: SubHandle,
}

impl<'a> Subscriber<'a> {
    pub fn attach(topic: &'a Topic, session: SessionId, replay: bool, ends: bool) -> Self {
        let handle = topic.attach_sub(session, replay, ends);
        Subscriber { topic, handle }
    }
}

impl Drop for Subscriber<'_> {
    fn drop(&mut self) {
        self.topic.detach_sub(self.handle.id);
    }
}

/// Writes the topic's chunks to the subscriber's stdout until its stream ends. `lines`:
/// stop after that many complete lines (`sub -n`).
pub async fn deliver(ctx: &Ctx, sub: &Subscriber<'_>, out: &Fd, mut lines: Option<u64>) -> Outcome {
    let (topic, id) = (sub.topic, sub.handle.id);
    let dropped = || fail(Exit::Dropped, "dropped: subscriber stalled");
    loop {
        let (mut pending, mut reach) = match topic.fetch(id) {
            Fetch::Data { slices, reach } => (slices, reach),
            Fetch::Ended if ctx.broker.soft.is_cancelled() => {
                return fail(Exit::Unavailable, SHUTTING_DOWN);
            }
            Fetch::Ended => return OK,
            Fetch::Gone => return dropped(),
            Fetch::Idle => {
                if ctx.broker.soft.is_cancelled() && topic.quiet() {
                    return fail(Exit::Unavailable, SHUTTING_DOWN);
                }
                tokio::select! {
                    _ = sub.handle.wake.notified() => {}
                    _ = sleep(IDLE_CHECK) => {
                        if out.peer_gone() {
                            return OK;
                        }
                    }
                    _ = sub.handle.kill.cancelled() => return dropped(),
                    _ = ctx.cancel.cancelled() => return fail(Exit::Unavailable, SHUTTING_DOWN),
                }
                continue;
            }
        };
        let last_batch = lines
            .as_mut()
            .is_some_and(|left| take_lines(&mut pending, left));
        if last_batch {
            // Stop right after the last line written, so chunks meant for this subscriber
            // beyond it are handed on when it leaves (round robin).
            reach = pending.back().map_or(reach, |(s, b)| s + b.len() as u64);
        }
        while !pending.is_empty() {
            let slices: Vec<Bytes> = pending
                .iter()
                .take(MAX_IOV)
                .map(|(_, b)| b.clone())
                .collect();
            let written = tokio::select! {
                r = out.write_some(&slices) => r,
                _ = sub.handle.kill.cancelled() => return dropped(),
                _ = ctx.cancel.cancelled() => return fail(Exit::Unavailable, SHUTTING_DOWN),
            };
            let Ok(mut n) = written else {
                // The reader went away (`sub x | head -c 10`, or the client left): a
                // normal end for a subscriber.
                return OK;
            };
            while n > 0 {
                let Some(front) = pending.front_mut() else {
                    break;
                };
                let len = front.1.len();
                if n >= len {
                    n -= len;
                    pending.pop_front();
                } else {
                    front.1 = front.1.slice(n..);
                    front.0 += n as u64;
                    n = 0;
                }
            }
            let pos = pending.front().map_or(reach, |(start, _)| *start);
            topic.advance(id, pos);
        }
        if last_batch {
            return OK;
        }
    }
}

/// Trims `pending` to the first `left` complete lines; true when that used them all up.
fn take_lines(pending: &mut VecDeque<(u64, Bytes)>, left: &mut u64) -> bool {
    for i in 0..pending.len() {
        let data = &pending[i].1;
        let newlines = data.iter().filter(|&&b| b == b'\n').count() as u64;
        if newlines < *left {
            *left -= newlines;
            continue;
        }
        let mut seen = 0;
        let cut = data
            .iter()
            .position(|&b| {
                seen += u64::from(b == b'\n');
                seen == *left
            })
            .map_or(data.len(), |p| p + 1);
        pending[i].1 = data.slice(..cut);
        pending.truncate(i + 1);
        *left = 0;
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_lines_stops_after_the_nth_newline() {
        let mut pending = VecDeque::from([
            (0, Bytes::from_static(b"a\nb")),
            (3, Bytes::from_static(b"\nc\nd\n")),
        ]);
        let mut left = 2;
        assert!(take_lines(&mut pending, &mut left));
        let got: Vec<u8> = pending.iter().flat_map(|(_, b)| b.to_vec()).collect();
        assert_eq!(got, b"a\nb\n");
        let mut pending = VecDeque::from([(0, Bytes::from_static(b"x\n"))]);
        let mut left = 3;
        assert!(!take_lines(&mut pending, &mut left));
        assert_eq!(left, 2);
    }
}
