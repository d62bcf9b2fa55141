//! The publishing side of a session: read the session's stdin into chunks and offer them to
//! the topic, waiting for a receiver (`pub -b`) or for room in the window.

use std::pin::pin;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;
use tracing::debug;

use super::ctx::{Ctx, IDLE_CHECK, OK, Outcome, SHUTTING_DOWN, fail};
use super::drains::Feed;
use super::evict::BudgetWait;
use super::fdio::Fd;
use super::topic::{Append, CHUNK, Topic};
use crate::exit::Exit;
use crate::request::Dispatch;

/// How one publisher offers its chunks.
pub struct Offer<'a> {
    pub dispatch: Dispatch,
    /// Wait for a receiver rather than discard when there is none (`pub -b`).
    pub block: bool,
    pub timeout: Duration,
    /// The session's stdout: its reader going away means the client left (sshd sends no
    /// signal, and a waiting publisher reads nothing that could tell it).
    pub client: &'a Fd,
}

impl Offer<'_> {
    /// Waits until someone would receive this session's writes, for at most `-t`.
    pub async fn wait_for_receiver(&self, ctx: &Ctx, topic: &Topic) -> Result<(), Outcome> {
        if topic.has_receiver(ctx.id) {
            return Ok(());
        }
        ctx.status(format!("waiting for a subscriber on {}", topic.key));
        let _waiting = Waiting::start(topic);
        let deadline = Instant::now() + self.timeout;
        loop {
            let mut changed = pin!(topic.changed.notified());
            changed.as_mut().enable();
            if topic.has_receiver(ctx.id) {
                return Ok(());
            }
            tokio::select! {
                _ = changed => {}
                _ = tokio::time::sleep(IDLE_CHECK) => {
                    if self.client.peer_gone() {
                        return Err(OK);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(fail(Exit::Timeout, "timed out waiting for a subscriber"));
                }
                _ = ctx.broker.soft.cancelled() => return Err(fail(Exit::Unavailable, SHUTTING_DOWN)),
                _ = ctx.cancel.cancelled() => return Err(fail(Exit::Unavailable, SHUTTING_DOWN)),
            }
        }
    }

    /// Offers one chunk until the topic takes it (or discards it for want of receivers).
    /// Returns the stream offset after it if it was taken.
    pub async fn send(
        &self,
        ctx: &Ctx,
        topic: &Topic,
        chunk: Bytes,
    ) -> Result<Option<u64>, Outcome> {
        let mut over_budget = BudgetWait::default();
        loop {
            let mut changed = pin!(topic.changed.notified());
            changed.as_mut().enable();
            match topic.try_append(ctx.id, &chunk, self.dispatch, self.block) {
                Append::Done(end) => return Ok(Some(end)),
                Append::Discarded => return Ok(None),
                Append::NoReceiver => {
                    self.wait_for_receiver(ctx, topic).await?;
                    continue;
                }
                Append::Full => {
                    if topic.drop_stalled(ctx.broker.limits().stall_timeout) > 0 {
                        continue;
                    }
                }
                Append::OverBudget => {
                    if over_budget.make_room(&ctx.broker) {
                        continue;
                    }
                }
            }
            tokio::select! {
                _ = changed => {}
                _ = tokio::time::sleep(ctx.stall_check()) => {}
                _ = ctx.cancel.cancelled() => return Err(fail(Exit::Unavailable, SHUTTING_DOWN)),
            }
        }
    }
}

/// `ls` bookkeeping for a publisher waiting for a receiver.
struct Waiting<'a> {
    topic: &'a Topic,
}

impl<'a> Waiting<'a> {
    fn start(topic: &'a Topic) -> Self {
        topic.set_waiting(true);
        Waiting { topic }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.topic.set_waiting(false);
    }
}

/// Publisher bookkeeping on a topic, undone however the session ends.
pub struct Publisher<'a> {
    topic: &'a Topic,
}

impl<'a> Publisher<'a> {
    pub fn attach(topic: &'a Topic) -> Self {
        topic.attach_publisher();
        Publisher { topic }
    }
}

impl Drop for Publisher<'_> {
    fn drop(&mut self) {
        self.topic.detach_publisher();
    }
}

/// Reads the session's stdin into chunks and offers them until end of input (or shutdown).
/// On a drain's feed topic every read also goes through the publisher's line splitter
/// (`feed`). Returns the stream offset after this publisher's last chunk that was taken.
pub async fn pump(
    ctx: &Ctx,
    topic: &Topic,
    input: &Fd,
    offer: &Offer<'_>,
    mut feed: Option<&mut Feed>,
) -> Result<Option<u64>, Outcome> {
    let mut cutter = Cutter::new(offer.dispatch == Dispatch::RoundRobin);
    let mut scratch = vec![0u8; CHUNK];
    let mut end = None;
    loop {
        let room = cutter.room();
        let n = tokio::select! {
            r = input.read(&mut scratch[..room]) => match r {
                Ok(n) => n,
                // The client's side of the pipe broke: treat it as the end of input.
                Err(e) => { debug!(session = ctx.id, error = %e, "stdin"); 0 }
            },
            _ = ctx.broker.soft.cancelled() => 0,
            _ = ctx.cancel.cancelled() => return Err(fail(Exit::Unavailable, SHUTTING_DOWN)),
        };
        if n == 0 {
            break;
        }
        if let Some(feed) = feed.as_deref_mut() {
            feed.push(&scratch[..n]);
        }
        cutter.push(&scratch[..n]);
        while let Some(chunk) = cutter.next_chunk() {
            end = offer.send(ctx, topic, chunk).await?.or(end);
        }
    }
    if let Some(feed) = feed {
        feed.finish();
    }
    if let Some(chunk) = cutter.finish() {
        end = offer.send(ctx, topic, chunk).await?.or(end);
    }
    Ok(end)
}

/// After a publisher's input ended: wait until its bytes are written to every subscriber
/// (or the stalled ones are dropped), so exit 0 means delivered.
pub async fn finish_publishing(ctx: &Ctx, topic: &Topic, end: Option<u64>) -> Outcome {
    if let Some(end) = end {
        loop {
            let mut changed = pin!(topic.changed.notified());
            changed.as_mut().enable();
            if topic.delivered(end) {
                break;
            }
            topic.drop_stalled(ctx.broker.limits().stall_timeout);
            tokio::select! {
                _ = changed => {}
                _ = tokio::time::sleep(ctx.stall_check()) => {}
                _ = ctx.cancel.cancelled() => return fail(Exit::Unavailable, SHUTTING_DOWN),
            }
        }
    }
    if ctx.broker.soft.is_cancelled() {
        fail(Exit::Unavailable, SHUTTING_DOWN)
    } else {
        OK
    }
}

/// Cuts a publisher's input into chunks. Multicast takes each read as it comes (lowest
/// latency); round robin cuts at the last newline, so a line goes whole to one receiver
/// (`sub jobs | while read …` workers), unless a line is longer than a chunk.
pub struct Cutter {
    buf: BytesMut,
    lines: bool,
}

impl Cutter {
    pub fn new(lines: bool) -> Cutter {
        Cutter {
            buf: BytesMut::with_capacity(CHUNK),
            lines,
        }
    }

    /// How much the next read may add.
    fn room(&self) -> usize {
        CHUNK - self.buf.len()
    }

    fn push(&mut self, data: &[u8]) {
        if self.buf.capacity() - self.buf.len() < data.len() {
            // Chunks handed out share the old allocation; start a fresh one rather than
            // copy what is still pending.
            self.buf.reserve(CHUNK);
        }
        self.buf.extend_from_slice(data);
    }

    fn next_chunk(&mut self) -> Option<Bytes> {
        if self.buf.is_empty() {
            return None;
        }
        if !self.lines {
            return Some(self.buf.split().freeze());
        }
        match self.buf.iter().rposition(|&b| b == b'\n') {
            Some(cut) => Some(self.buf.split_to(cut + 1).freeze()),
            // A line longer than a chunk goes out in pieces; nothing else can be done
            // without unbounded buffering.
            None if self.buf.len() >= CHUNK => Some(self.buf.split().freeze()),
            None => None,
        }
    }

    fn finish(&mut self) -> Option<Bytes> {
        (!self.buf.is_empty()).then(|| self.buf.split().freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_cutter_keeps_lines_whole() {
        let mut c = Cutter::new(true);
        c.push(b"one\ntw");
        assert_eq!(c.next_chunk().as_deref(), Some(&b"one\n"[..]));
        assert_eq!(c.next_chunk(), None);
        c.push(b"o\nthree");
        assert_eq!(c.next_chunk().as_deref(), Some(&b"two\n"[..]));
        assert_eq!(c.finish().as_deref(), Some(&b"three"[..]));
    }

    #[test]
    fn a_full_round_robin_buffer_is_still_cut_at_a_line_end() {
        let mut c = Cutter::new(true);
        let mut data = vec![b'x'; CHUNK];
        data[100] = b'\n';
        c.push(&data);
        assert_eq!(c.next_chunk().map(|b| b.len()), Some(101));
        assert_eq!(c.next_chunk(), None, "the rest waits for its line end");
    }

    #[test]
    fn multicast_cutter_passes_reads_through() {
        let mut c = Cutter::new(false);
        c.push(b"partial");
        assert_eq!(c.next_chunk().as_deref(), Some(&b"partial"[..]));
        assert_eq!(c.finish(), None);
    }
}
