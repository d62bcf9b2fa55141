//! The subscribing side of a session: write the topic's chunks into the session's stdout.
//!
//! A plain subscription is one cursor on one topic. A wildcard subscription (`sub
//! 'logs-*'`) is a cursor on every matching topic, now and later, all sharing one wake-up
//! and one kill switch; their batches are written one after another, so chunks of
//! different topics interleave whole, as chunks of concurrent publishers do.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use std::sync::Arc;

use tokio::sync::{Notify, mpsc};
use tokio::time::{Instant, sleep};
use tokio_util::sync::CancellationToken;

use super::ctx::{Ctx, IDLE_CHECK, OK, Outcome, SHUTTING_DOWN, fail};
use super::drains::{DROP_NOTICE_EVERY, Watcher, nth_line_end};
use super::fdio::{Fd, MAX_IOV};
use super::registry::{Cursor, PatternGuard};
use super::topic::{Fetch, SessionId, SubHandle, Topic};
use crate::exit::Exit;

/// A subscriber's place on one topic, removed however the session ends.
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

fn dropped() -> Outcome {
    fail(Exit::Dropped, "dropped: subscriber stalled")
}

fn shutting_down() -> Outcome {
    fail(Exit::Unavailable, SHUTTING_DOWN)
}

/// Writes the topic's chunks to the subscriber's stdout until its stream ends. `lines`:
/// stop after that many complete lines (`sub -n`).
pub async fn deliver(ctx: &Ctx, sub: &Subscriber<'_>, out: &Fd, mut lines: Option<u64>) -> Outcome {
    let (topic, handle) = (sub.topic, &sub.handle);
    loop {
        match topic.fetch(handle.id) {
            Fetch::Data { slices, reach } => {
                match write_batch(ctx, topic, handle, out, slices, reach, &mut lines).await {
                    Ok(true) => {}
                    Ok(false) => return OK,
                    Err(o) => return o,
                }
            }
            Fetch::Ended if ctx.broker.soft.is_cancelled() => return shutting_down(),
            Fetch::Ended => return OK,
            Fetch::Gone => return dropped(),
            Fetch::Idle => {
                if ctx.broker.soft.is_cancelled() && topic.quiet() {
                    return shutting_down();
                }
                if let Err(o) = idle(ctx, handle, out).await {
                    return o;
                }
            }
        }
    }
}

/// Waits for data while nothing is due. Notices a departed reader within [`IDLE_CHECK`]:
/// sshd sends the broker no signal when a client disconnects, so only looking tells.
async fn idle(ctx: &Ctx, handle: &SubHandle, out: &Fd) -> Result<(), Outcome> {
    tokio::select! {
        _ = handle.wake.notified() => Ok(()),
        _ = sleep(IDLE_CHECK) => if out.peer_gone() { Err(OK) } else { Ok(()) },
        _ = handle.kill.cancelled() => Err(dropped()),
        _ = ctx.cancel.cancelled() => Err(shutting_down()),
    }
}

/// Writes one batch from `topic`, recording progress after every write. `Ok(false)`: the
/// subscription is done (its `-n` lines are written, or its reader went away).
async fn write_batch(
    ctx: &Ctx,
    topic: &Topic,
    handle: &SubHandle,
    out: &Fd,
    mut pending: VecDeque<(u64, Bytes)>,
    mut reach: u64,
    lines: &mut Option<u64>,
) -> Result<bool, Outcome> {
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
            _ = handle.kill.cancelled() => return Err(dropped()),
            _ = ctx.cancel.cancelled() => return Err(shutting_down()),
        };
        let Ok(mut n) = written else {
            // The reader went away (`sub x | head -c 10`, or the client left): a normal
            // end for a subscriber.
            return Ok(false);
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
        topic.advance(handle.id, pos);
    }
    Ok(!last_batch)
}

/// A wildcard subscription's parts: the wake-up and kill switch its cursors share, the
/// cursors on the topics matching now, and the channel that brings cursors on topics
/// created later, which flows until `watch` is dropped.
pub struct Wildcard {
    pub wake: Arc<Notify>,
    pub kill: CancellationToken,
    pub cursors: Vec<Cursor>,
    pub new: mpsc::UnboundedReceiver<Cursor>,
    pub watch: PatternGuard,
}

/// A wildcard subscription: writes every matching topic's chunks until the client leaves,
/// it is dropped, or the broker stops. It never ends because publishers leave (a wildcard
/// always behaves as `-k`). Cursors on topics the caller may no longer use (a revoked
/// grant) are let go; the subscription itself goes on.
pub async fn deliver_many(ctx: &Ctx, w: Wildcard, out: &Fd, mut lines: Option<u64>) -> Outcome {
    let Wildcard {
        wake,
        kill,
        mut cursors,
        mut new,
        watch: _watch,
    } = w;
    let mut grants = ctx.broker.grants.subscribe();
    // Every pass re-checks access: cursors attached before a revocation may arrive after
    // it, and a busy topic would otherwise never reach the wait below.
    let mut recheck = true;
    loop {
        while let Ok(c) = new.try_recv() {
            cursors.push(c);
            recheck = true;
        }
        cursors.retain(|c| !c.topic.forgotten());
        if recheck || grants.has_changed().unwrap_or(false) {
            grants.mark_unchanged();
            cursors.retain(|c| ctx.broker.may_use(&ctx.who, &c.topic.key));
            recheck = false;
        }
        let mut wrote = false;
        for c in &cursors {
            match c.topic.fetch(c.handle.id) {
                Fetch::Data { slices, reach } => {
                    wrote = true;
                    let topic = &c.topic;
                    match write_batch(ctx, topic, &c.handle, out, slices, reach, &mut lines).await {
                        Ok(true) => {}
                        Ok(false) => return OK,
                        Err(o) => return o,
                    }
                }
                Fetch::Gone => return dropped(),
                Fetch::Idle | Fetch::Ended => {}
            }
        }
        if wrote {
            continue;
        }
        if ctx.broker.soft.is_cancelled() && cursors.iter().all(|c| c.topic.quiet()) {
            return shutting_down();
        }
        tokio::select! {
            _ = wake.notified() => {}
            Some(c) = new.recv() => {
                cursors.push(c);
                recheck = true;
            }
            Ok(()) = grants.changed() => {
                cursors.retain(|c| ctx.broker.may_use(&ctx.who, &c.topic.key));
            }
            _ = sleep(IDLE_CHECK) => if out.peer_gone() { return OK; },
            _ = kill.cancelled() => return dropped(),
            _ = ctx.cancel.cancelled() => return shutting_down(),
        }
    }
}

/// A `logs` session: writes the lines its drain queues for it until the client leaves, its
/// `-n` lines are written, it stalls, or the broker stops (after writing what was queued).
/// Lines it missed for being too slow are said on stderr, at most once a second.
///
/// Writes are coalesced while lines keep coming: the first line after a quiet spell goes
/// out at once, later ones at most [`COALESCE`] after the previous write (sooner if a
/// quarter of the queue has filled), and the task is not woken for lines meanwhile. Waking
/// the task and the write waking the reader's process are most of what a line costs the
/// broker beyond parsing it; many watchers of a busy drain would otherwise each wake and
/// write (and wake their ssh) for every few lines.
pub async fn deliver_drain(ctx: &Ctx, w: &Watcher, out: &Fd, mut lines: Option<u64>) -> Outcome {
    let mut missed = 0u64;
    let mut told: Option<Instant> = None;
    loop {
        missed += w.take_missed();
        if missed > 0 && told.is_none_or(|t| t.elapsed() >= DROP_NOTICE_EVERY) {
            ctx.status(format!("logs: {missed} lines missed: reading too slowly"));
            (missed, told) = (0, Some(Instant::now()));
        }
        let batch = w.peek(DRAIN_IOV, lines);
        if batch.is_empty() {
            if ctx.broker.soft.is_cancelled() {
                return shutting_down();
            }
            tokio::select! {
                _ = w.wake.notified() => {}
                _ = sleep(IDLE_CHECK) => if out.peer_gone() { return OK; },
                _ = ctx.broker.soft.cancelled() => {}
                _ = ctx.cancel.cancelled() => return shutting_down(),
            }
            continue;
        }
        let stall = ctx.broker.limits().stall_timeout;
        let written = tokio::select! {
            r = tokio::time::timeout(stall, out.write_some(&batch)) => r,
            _ = ctx.cancel.cancelled() => return shutting_down(),
        };
        let n = match written {
            Ok(Ok(n)) => n,
            // The reader went away: a normal end, as for a subscriber.
            Ok(Err(_)) => return OK,
            Err(_) => return dropped(),
        };
        let done = w.consume(n);
        if let Some(left) = lines.as_mut() {
            *left -= done;
            if *left == 0 {
                return OK;
            }
        }
        if w.queued() == 0 {
            // Gather: lines arriving now are queued without waking this task, unless the
            // queue passes a quarter full (the watcher is not idle, see Watcher::peek).
            tokio::select! {
                _ = sleep(COALESCE) => {}
                _ = w.wake.notified() => {}
                _ = ctx.broker.soft.cancelled() => {}
                _ = ctx.cancel.cancelled() => return shutting_down(),
            }
        }
    }
}

/// How long a drain watcher gathers lines after a write before the next one. Log lines are
/// read by people and by scripts reacting to events, for whom a tenth of a second is
/// instant; it cuts a busy watcher's writes (each waking its ssh) to ten a second, which
/// is what lets 50 watchers cost the broker no more than 1.5x one (README, Performance).
pub const COALESCE: Duration = Duration::from_millis(100);

/// Most blocks in one write to a drain watcher (a block holds the lines of one feed read):
/// more than a topic subscriber's [`MAX_IOV`], since a watcher gathering for [`COALESCE`]
/// may hold a block from each of many reads, and still under the kernel's `IOV_MAX`.
const DRAIN_IOV: usize = 256;

/// Trims `pending` to the first `left` complete lines; true when that used them all up.
fn take_lines(pending: &mut VecDeque<(u64, Bytes)>, left: &mut u64) -> bool {
    for i in 0..pending.len() {
        let data = &pending[i].1;
        let newlines = data.iter().filter(|&&b| b == b'\n').count() as u64;
        if newlines < *left {
            *left -= newlines;
            continue;
        }
        let cut = nth_line_end(data, *left);
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
