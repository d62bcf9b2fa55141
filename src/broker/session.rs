//! One connection: hello, identity, the request, the final status.
//!
//! A session task owns the descriptors the client passed. Publishing reads the session's
//! stdin into chunks and offers them to the topic, waiting while the window is full;
//! subscribing writes the topic's chunks into the session's stdout. Both stop when the
//! client's `pipe-shell` goes away (its control socket closes) or the broker shuts down.

use std::os::fd::OwnedFd;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedReadHalf;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::fdio::Fd;
use super::identity::{self, Identity};
use super::topic::{Append, CHUNK, Fetch, Owner, SessionId, Topic, TopicKey};
use super::{Broker, Refused};
use crate::exit::Exit;
use crate::proto::{self, HELLO_DEADLINE, PROTOCOL_VERSION, ToClient};
use crate::request::{Dispatch, Namespace, PipeReq, Pub, Request, Sub, TopicRef};

/// Status frames queued per client. They are rare (joins, leaves, waiting); a client that
/// does not read them loses notices rather than holding broker memory.
const CONTROL_QUEUE: usize = 16;

/// How often an idle subscriber checks that its reader is still there. sshd sends no signal
/// when a client disconnects (DESIGN §1 "Liveness"), so this bounds how long a departed
/// subscriber lingers: under 2 s with a 1 s check.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// How long the final status frame may take to write before the broker gives up on a
/// client that does not read.
const FINAL_FRAME_DEADLINE: Duration = Duration::from_secs(1);

/// How a session ended: the exit code and the line `pipe-shell` prints.
type Outcome = (Exit, Option<String>);

fn fail(exit: Exit, msg: impl Into<String>) -> Outcome {
    (exit, Some(msg.into()))
}

const OK: Outcome = (Exit::Ok, None);
const SHUTTING_DOWN: &str = "broker shutting down";

/// Everything a request handler needs about its session.
struct Ctx {
    broker: Arc<Broker>,
    id: SessionId,
    who: Identity,
    ctl: mpsc::Sender<ToClient>,
    /// Cancelled when the client goes away or the broker stops hard.
    cancel: CancellationToken,
}

impl Ctx {
    fn status(&self, line: String) {
        let _ = self.ctl.try_send(ToClient::Status { line });
    }

    fn stall_check(&self) -> Duration {
        (self.broker.config.stall_timeout / 4).clamp(Duration::from_millis(10), IDLE_CHECK)
    }
}

/// Serves one connection to the end.
pub async fn handle(broker: Arc<Broker>, stream: UnixStream) {
    let uid = match stream.peer_cred() {
        Ok(c) => c.uid(),
        Err(e) => {
            debug!(error = %e, "no peer credentials");
            return;
        }
    };
    let hello = tokio::time::timeout(HELLO_DEADLINE, proto::recv_hello(&stream, 2)).await;
    let (hello, fds) = match hello {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => {
            debug!(uid, error = %e, "bad hello");
            return reply(stream, fail(Exit::Internal, format!("protocol error: {e}"))).await;
        }
        Err(_) => {
            debug!(uid, "hello deadline passed");
            return;
        }
    };
    if hello.version != PROTOCOL_VERSION {
        let msg = "pipe-shell and piped are different versions (restart piped after upgrading)";
        return reply(stream, fail(Exit::Internal, msg)).await;
    }
    let service_uid = broker.service_uid;
    let (user, key) = (hello.user.clone(), hello.key.clone());
    let who = tokio::task::spawn_blocking(move || {
        identity::resolve(uid, service_uid, user.as_deref(), key.as_deref())
    })
    .await
    .unwrap_or_else(|_| Err((Exit::Internal, "identity lookup failed".to_string())));
    let who = match who {
        Ok(w) => w,
        Err((exit, msg)) => return reply(stream, (exit, Some(msg))).await,
    };
    let request = match Request::parse(hello.request.as_bytes()) {
        Ok(r) => r,
        Err(e) => return reply(stream, fail(Exit::Usage, e.to_string())).await,
    };
    let _admission = match broker.admit(&who.user) {
        Ok(a) => a,
        Err(r) => return reply(stream, refused(r)).await,
    };

    let (rd, mut wr) = stream.into_split();
    let (ctl, mut ctl_rx) = mpsc::channel::<ToClient>(CONTROL_QUEUE);
    let cancel = broker.hard.child_token();
    let id = broker.next_id();
    info!(session = id, user = %who.user, request = %hello.request, "session start");
    let ctx = Ctx {
        broker: broker.clone(),
        id,
        who,
        ctl,
        cancel: cancel.clone(),
    };
    let writer = tokio::spawn(async move {
        while let Some(msg) = ctl_rx.recv().await {
            let last = matches!(msg, ToClient::Exit { .. });
            let write = proto::write_frame(&mut wr, &msg);
            match tokio::time::timeout(FINAL_FRAME_DEADLINE, write).await {
                Ok(Ok(())) if !last => {}
                _ => break,
            }
        }
    });
    let watcher = tokio::spawn(watch_client(rd, cancel.clone()));

    let outcome = tokio::select! {
        out = serve(&ctx, request, fds) => out,
        _ = cancel.cancelled() => fail(Exit::Unavailable, SHUTTING_DOWN),
    };
    info!(session = id, exit = outcome.0.code(), "session end");
    watcher.abort();
    let (code, message) = outcome;
    let _ = ctx.ctl.send(ToClient::Exit { code, message }).await;
    drop(ctx);
    let _ = writer.await;
}

/// Sends the final status on a connection that never got as far as a session.
async fn reply(mut stream: UnixStream, (code, message): Outcome) {
    let msg = ToClient::Exit { code, message };
    let _ = tokio::time::timeout(FINAL_FRAME_DEADLINE, proto::write_frame(&mut stream, &msg)).await;
}

/// The client sends nothing after its hello, so any readable event is its `pipe-shell`
/// exiting (end of file): the session is over.
async fn watch_client(mut rd: OwnedReadHalf, cancel: CancellationToken) {
    use tokio::io::AsyncReadExt;
    let mut byte = [0u8; 1];
    let _ = rd.read(&mut byte).await;
    cancel.cancel();
}

fn refused(r: Refused) -> Outcome {
    let msg = match r {
        Refused::TooManyConnections => "too many connections",
        Refused::TooManySessions => "too many sessions for this user",
        Refused::TooManyTopics => "too many topics for this user",
        Refused::TooManyPublicTopics => "too many public topics",
    };
    fail(Exit::Limit, msg)
}

async fn serve(ctx: &Ctx, request: Request, fds: Vec<OwnedFd>) -> Outcome {
    let mut fds = fds.into_iter();
    let (Some(stdin), Some(stdout)) = (fds.next(), fds.next()) else {
        return fail(Exit::Internal, "missing descriptors");
    };
    let opened = |fd| Fd::new(fd).map_err(|e| fail(Exit::Internal, format!("stdio: {e}")));
    match request {
        Request::Pub(p) => match opened(stdin) {
            Ok(input) => publish(ctx, &p, input).await,
            Err(o) => o,
        },
        Request::Sub(s) => match opened(stdout) {
            Ok(output) => subscribe(ctx, &s, output).await,
            Err(o) => o,
        },
        Request::Pipe(p) => match (opened(stdin), opened(stdout)) {
            (Ok(input), Ok(output)) => pipe(ctx, &p, input, output).await,
            (Err(o), _) | (_, Err(o)) => o,
        },
        Request::Ls(ls) => match opened(stdout) {
            Ok(output) => list(ctx, ls.json, &output).await,
            Err(o) => o,
        },
        Request::Whoami => match opened(stdout) {
            Ok(output) => {
                let mut text = ctx.who.user.clone();
                if let Some(key) = &ctx.who.key {
                    text.push(' ');
                    text.push_str(key);
                }
                text.push('\n');
                write_all(&output, text.into()).await
            }
            Err(o) => o,
        },
        // pipe-shell answers these itself; a client that sends them anyway gets nothing.
        Request::Help | Request::Version => OK,
    }
}

/// Maps what the user wrote to a topic the caller may use. "No such topic" and "access
/// denied" are one answer (DESIGN §4).
fn resolve(who: &Identity, topic: &TopicRef) -> Result<TopicKey, Outcome> {
    let owner = match &topic.namespace {
        Namespace::Own => Owner::User(who.user.clone()),
        Namespace::User(u) if u.as_str() == who.user || who.admin => {
            Owner::User(u.as_str().to_string())
        }
        Namespace::User(_) => {
            return Err(fail(Exit::Denied, "no such topic or access denied"));
        }
        Namespace::Public => Owner::Public,
    };
    Ok(TopicKey {
        owner,
        name: topic.name.as_str().to_string(),
    })
}

/// Grants arrive with the identity work; until then `-a` is refused rather than ignored, so
/// nobody believes they shared (or restricted) a topic when they did not.
fn no_grants<T>(access: &Option<T>) -> Result<(), Outcome> {
    match access {
        Some(_) => Err(fail(Exit::Usage, "-a: access grants are not available yet")),
        None => Ok(()),
    }
}

/// The topic named, or a fresh random one announced to the client.
fn topic_or_random(ctx: &Ctx, topic: &Option<TopicRef>) -> Result<TopicKey, Outcome> {
    match topic {
        Some(t) => resolve(&ctx.who, t),
        None => {
            let name = random_name().map_err(|e| fail(Exit::Internal, e.to_string()))?;
            let _ = ctx.ctl.try_send(ToClient::Topic { name: name.clone() });
            Ok(TopicKey {
                owner: Owner::User(ctx.who.user.clone()),
                name,
            })
        }
    }
}

/// 64 random bits in hex: unguessable enough that a random topic is effectively private to
/// whoever is told its name, and short enough to type.
fn random_name() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn open(ctx: &Ctx, key: TopicKey) -> Result<super::TopicRef, Outcome> {
    ctx.broker.open(key, &ctx.who.user).map_err(refused)
}

async fn publish(ctx: &Ctx, p: &Pub, input: Fd) -> Outcome {
    if let Err(o) = no_grants(&p.access) {
        return o;
    }
    let key = match topic_or_random(ctx, &p.topic) {
        Ok(k) => k,
        Err(o) => return o,
    };
    let held = match open(ctx, key) {
        Ok(t) => t,
        Err(o) => return o,
    };
    let topic = &held.topic;
    let _publisher = Publisher::attach(topic);
    let offer = Offer {
        dispatch: p.dispatch,
        block: p.block,
        timeout: p.timeout,
    };
    if p.block {
        if let Err(o) = offer.wait_for_receiver(ctx, topic).await {
            return o;
        }
    }
    let sent = if p.empty {
        offer.send(ctx, topic, Bytes::from_static(b"\0")).await
    } else {
        pump(ctx, topic, &input, &offer).await
    };
    drop(_publisher);
    match sent {
        Ok(end) => finish_publishing(ctx, topic, end).await,
        Err(o) => o,
    }
}

/// Publisher bookkeeping on a topic, undone however the session ends.
struct Publisher<'a> {
    topic: &'a Topic,
}

impl<'a> Publisher<'a> {
    fn attach(topic: &'a Topic) -> Self {
        topic.attach_publisher();
        Publisher { topic }
    }
}

impl Drop for Publisher<'_> {
    fn drop(&mut self) {
        self.topic.detach_publisher();
    }
}

/// How one publisher offers its chunks.
struct Offer {
    dispatch: Dispatch,
    /// Wait for a receiver rather than discard when there is none (`pub -b`).
    block: bool,
    timeout: Duration,
}

impl Offer {
    /// Waits until someone would receive this session's writes, for at most `-t`.
    async fn wait_for_receiver(&self, ctx: &Ctx, topic: &Topic) -> Result<(), Outcome> {
        if topic.has_receiver(ctx.id) {
            return Ok(());
        }
        ctx.status(format!("waiting for a subscriber on {}", topic.key));
        let _waiting = Waiting::start(topic);
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let mut changed = pin!(topic.changed.notified());
            changed.as_mut().enable();
            if topic.has_receiver(ctx.id) {
                return Ok(());
            }
            tokio::select! {
                _ = changed => {}
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(fail(Exit::Timeout, "timed out waiting for a subscriber"));
                }
                _ = ctx.broker.soft.cancelled() => return Err(fail(Exit::Unavailable, SHUTTING_DOWN)),
                _ = ctx.cancel.cancelled() => return Err(fail(Exit::Unavailable, SHUTTING_DOWN)),
            }
        }
    }

    /// Offers one chunk until the topic takes it (or discards it for want of receivers).
    /// Returns the stream offset after it.
    async fn send(&self, ctx: &Ctx, topic: &Topic, chunk: Bytes) -> Result<u64, Outcome> {
        loop {
            let mut changed = pin!(topic.changed.notified());
            changed.as_mut().enable();
            match topic.try_append(ctx.id, &chunk, self.dispatch, self.block) {
                Append::Done | Append::Discarded => return Ok(topic.head()),
                Append::NoReceiver => {
                    self.wait_for_receiver(ctx, topic).await?;
                    continue;
                }
                Append::Full => {
                    if topic.drop_stalled(ctx.broker.config.stall_timeout) > 0 {
                        continue;
                    }
                }
                Append::OverBudget => {
                    if ctx.broker.evict_most_lagging() {
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

/// Reads the session's stdin into chunks and offers them until end of input. Returns the
/// stream offset after this publisher's last chunk.
async fn pump(ctx: &Ctx, topic: &Topic, input: &Fd, offer: &Offer) -> Result<u64, Outcome> {
    let mut cutter = Cutter::new(offer.dispatch == Dispatch::RoundRobin);
    let mut scratch = vec![0u8; CHUNK];
    let mut end = topic.head();
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
        cutter.push(&scratch[..n]);
        while let Some(chunk) = cutter.next_chunk() {
            end = offer.send(ctx, topic, chunk).await?;
        }
    }
    if let Some(chunk) = cutter.finish() {
        end = offer.send(ctx, topic, chunk).await?;
    }
    Ok(end)
}

/// After a publisher's input ended: wait until its bytes are written to every subscriber
/// (or the stalled ones are dropped), so exit 0 means delivered.
async fn finish_publishing(ctx: &Ctx, topic: &Topic, end: u64) -> Outcome {
    loop {
        let mut changed = pin!(topic.changed.notified());
        changed.as_mut().enable();
        if topic.delivered(end) {
            break;
        }
        topic.drop_stalled(ctx.broker.config.stall_timeout);
        tokio::select! {
            _ = changed => {}
            _ = tokio::time::sleep(ctx.stall_check()) => {}
            _ = ctx.cancel.cancelled() => return fail(Exit::Unavailable, SHUTTING_DOWN),
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
struct Cutter {
    buf: BytesMut,
    lines: bool,
}

impl Cutter {
    fn new(lines: bool) -> Cutter {
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

async fn subscribe(ctx: &Ctx, s: &Sub, output: Fd) -> Outcome {
    if let Err(o) = no_grants(&s.access) {
        return o;
    }
    let key = match resolve(&ctx.who, &s.topic) {
        Ok(k) => k,
        Err(o) => return o,
    };
    let held = match open(ctx, key) {
        Ok(t) => t,
        Err(o) => return o,
    };
    let sub = Subscriber::attach(&held.topic, ctx.id, false, !s.keep);
    deliver(ctx, &sub, &output, s.lines).await
}

/// A subscriber's place on a topic, removed however the session ends.
struct Subscriber<'a> {
    topic: &'a Topic,
    handle: super::topic::SubHandle,
}

impl<'a> Subscriber<'a> {
    fn attach(topic: &'a Topic, session: SessionId, replay: bool, ends: bool) -> Self {
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
async fn deliver(ctx: &Ctx, sub: &Subscriber<'_>, out: &Fd, mut lines: Option<u64>) -> Outcome {
    let (topic, id) = (sub.topic, sub.handle.id);
    let dropped = || fail(Exit::Dropped, "dropped: subscriber stalled");
    loop {
        let (mut pending, reach) = match topic.fetch(id) {
            Fetch::Data(slices, reach) => (slices, reach),
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
                    _ = tokio::time::sleep(IDLE_CHECK) => {
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
        let mut last_batch = false;
        if let Some(left) = lines.as_mut() {
            last_batch = take_lines(&mut pending, left);
        }
        let mut pending: std::collections::VecDeque<(u64, Bytes)> = pending.into();
        while !pending.is_empty() {
            let slices: Vec<Bytes> = pending.iter().map(|(_, b)| b.clone()).collect();
            let written = tokio::select! {
                r = out.write_some(&slices) => r,
                _ = sub.handle.kill.cancelled() => return dropped(),
                _ = ctx.cancel.cancelled() => return fail(Exit::Unavailable, SHUTTING_DOWN),
            };
            let mut n = match written {
                Ok(n) => n,
                // The reader went away (`sub x | head -c 10`, or the client left): a
                // normal end for a subscriber.
                Err(_) => return OK,
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
fn take_lines(pending: &mut Vec<(u64, Bytes)>, left: &mut u64) -> bool {
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

async fn pipe(ctx: &Ctx, p: &PipeReq, input: Fd, output: Fd) -> Outcome {
    if let Err(o) = no_grants(&p.access) {
        return o;
    }
    let key = match topic_or_random(ctx, &p.topic) {
        Ok(k) => k,
        Err(o) => return o,
    };
    let held = match open(ctx, key) {
        Ok(t) => t,
        Err(o) => return o,
    };
    let topic = &held.topic;
    let sub = Subscriber::attach(topic, ctx.id, p.replay, false);
    let _room = Room::join(topic, ctx);
    // A pipe never waits for receivers: what nobody hears is dropped (DESIGN §3).
    let offer = Offer {
        dispatch: p.dispatch,
        block: false,
        timeout: Duration::ZERO,
    };
    // Receiving goes on while this client's last writes are delivered (with `-r` it is
    // one of their receivers), so the drain lives inside the publishing future.
    let publishing = async {
        match pump(ctx, topic, &input, &offer).await {
            Ok(end) => finish_publishing(ctx, topic, end).await,
            Err(o) => o,
        }
    };
    tokio::select! {
        out = publishing => out,
        got = deliver(ctx, &sub, &output, None) => got,
    }
}

/// Membership of a `pipe` room, for join and leave notices.
struct Room<'a> {
    topic: &'a Topic,
    id: SessionId,
    who: String,
}

impl<'a> Room<'a> {
    fn join(topic: &'a Topic, ctx: &Ctx) -> Self {
        topic.join_room(ctx.id, ctx.ctl.clone(), &ctx.who.user);
        Room {
            topic,
            id: ctx.id,
            who: ctx.who.user.clone(),
        }
    }
}

impl Drop for Room<'_> {
    fn drop(&mut self) {
        self.topic.leave_room(self.id, &self.who);
    }
}

async fn list(ctx: &Ctx, json: bool, out: &Fd) -> Outcome {
    let visible: Vec<_> = ctx
        .broker
        .snapshot()
        .into_iter()
        .filter(|t| ctx.who.admin || t.key.owner == Owner::User(ctx.who.user.clone()))
        .map(|t| t.stats())
        .collect();
    let text = if json {
        match serde_json::to_string(&visible) {
            Ok(mut s) => {
                s.push('\n');
                s
            }
            Err(e) => return fail(Exit::Internal, e.to_string()),
        }
    } else if visible.is_empty() {
        ctx.status("no topics".to_string());
        return OK;
    } else {
        let mut s = format!(
            "{:<40} {:>5} {:>5} {:>7} {:>12} {:>8}\n",
            "TOPIC", "PUBS", "SUBS", "WAITING", "BYTES", "AGE"
        );
        for t in &visible {
            s.push_str(&format!(
                "{:<40} {:>5} {:>5} {:>7} {:>12} {:>7}s\n",
                t.topic, t.publishers, t.subscribers, t.waiting, t.bytes, t.age_secs
            ));
        }
        s
    };
    write_all(out, text.into()).await
}

async fn write_all(out: &Fd, mut data: Bytes) -> Outcome {
    while !data.is_empty() {
        match out.write_some(std::slice::from_ref(&data)).await {
            Ok(n) => data = data.slice(n..),
            Err(_) => return OK,
        }
    }
    OK
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

    #[test]
    fn take_lines_stops_after_the_nth_newline() {
        let mut pending = vec![
            (0, Bytes::from_static(b"a\nb")),
            (3, Bytes::from_static(b"\nc\nd\n")),
        ];
        let mut left = 2;
        assert!(take_lines(&mut pending, &mut left));
        let got: Vec<u8> = pending.iter().flat_map(|(_, b)| b.to_vec()).collect();
        assert_eq!(got, b"a\nb\n");
        let mut pending = vec![(0, Bytes::from_static(b"x\n"))];
        let mut left = 3;
        assert!(!take_lines(&mut pending, &mut left));
        assert_eq!(left, 2);
    }
}
