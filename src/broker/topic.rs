//! One topic: a shared ring of reference-counted chunks and a cursor per subscriber (the
//! flow control that pipe(1) and pipe(5) describe under FLOW CONTROL).
//!
//! Publishers append chunks (at most [`CHUNK`] bytes, cut as they are read). Every chunk
//! has a byte offset in the topic's stream; a subscriber is just the offset of the next byte
//! it still has to write. The ring keeps the chunks between the slowest subscriber and the
//! head, and a publisher may append only while that span is under the window W: the slowest
//! subscriber paces the topic, nothing is dropped, and memory per topic is bounded by W
//! (plus one chunk) however many subscribers there are, because they share the chunks.
//!
//! A subscriber that makes no progress for the stall timeout while the window is full is cut
//! off, so one stuck consumer cannot freeze a topic for ever.
//!
//! Everything here is synchronous and runs under the topic's mutex; the async waiting lives
//! in [`super::ingest`] and [`super::deliver`]. The lock is held for bookkeeping only, never across I/O.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::proto::ToClient;
use crate::request::Dispatch;

/// Largest chunk a publisher cuts: one pipe buffer's worth (Linux pipes hold 64 KiB), so a
/// chunk usually goes out in one `write` and a slow subscriber holds back at most one
/// chunk's memory beyond the window.
pub const CHUNK: usize = 64 * 1024;

/// Most bytes one subscriber takes from the ring per batch: a few pipe buffers, so a fast
/// subscriber makes few trips through the lock without holding chunks it cannot write yet.
const BATCH: usize = 256 * 1024;

/// Most slices in one batch: bounds the work done under the lock when a publisher's reads
/// are tiny (a line at a time), while still filling several `writev` calls.
const BATCH_SLICES: usize = 1024;

/// Most chunks a ring holds, whatever their size. Windows and the budget count bytes, but
/// each chunk also costs ~100 bytes of bookkeeping: a publisher whose reads return one byte
/// at a time could otherwise park millions of them. 16k chunks still let a line-at-a-time
/// publisher run 16k lines ahead of its slowest subscriber.
const MAX_RING_CHUNKS: usize = 16 * 1024;

/// What a chunk costs the budget beyond its data: its slot in the ring and its share of
/// reference counting.
const CHUNK_OVERHEAD: usize = std::mem::size_of::<Chunk>() + 32;

pub type SessionId = u64;
pub type SubId = u64;

/// Who owns a topic's namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Owner {
    User(String),
    Public,
}

/// A resolved topic: `(owner, name)` or `(public, name)`. Never a concatenated string, so
/// one user's names cannot collide with another's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicKey {
    pub owner: Owner,
    pub name: String,
}

impl fmt::Display for TopicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.owner {
            Owner::User(u) => write!(f, "{u}/{}", self.name),
            Owner::Public => write!(f, "public/{}", self.name),
        }
    }
}

struct Chunk {
    /// Stream offset of the chunk's first byte.
    start: u64,
    /// Bytes of the stream this chunk spans. Stays when `data` is handed on to another
    /// receiver, so offsets remain contiguous from the ring's front to its head.
    len: u64,
    data: Bytes,
    /// The session that published it (a `pipe` client does not get its own writes back).
    origin: SessionId,
    target: Target,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// Every eligible subscriber (multicast).
    All,
    /// Round robin: this subscriber only.
    One(SubId),
    /// Its data went elsewhere; a gap every subscriber skips.
    Void,
}

impl Chunk {
    fn end(&self) -> u64 {
        self.start + self.len
    }
}

struct SubState {
    id: SubId,
    session: SessionId,
    /// Receives chunks its own session published (`pipe -r`).
    replay: bool,
    /// Ends when the last publisher leaves (plain `sub`, not `-k` nor `pipe`).
    ends_with_publishers: bool,
    /// Offset of the next byte this subscriber has to write.
    pos: u64,
    /// Last time `pos` moved, or the subscriber went from caught up to behind.
    last_progress: Instant,
    /// The stream ends for this subscriber at this offset.
    end_at: Option<u64>,
    wake: Arc<Notify>,
    kill: CancellationToken,
}

impl SubState {
    fn eligible(&self, chunk: &Chunk) -> bool {
        match chunk.target {
            Target::One(t) => t == self.id,
            Target::All => self.hears(chunk.origin),
            Target::Void => false,
        }
    }

    /// Whether this subscriber hears what `origin` publishes at all.
    fn hears(&self, origin: SessionId) -> bool {
        self.session != origin || self.replay
    }

    fn receives_from(&self, origin: SessionId) -> bool {
        self.end_at.is_none() && self.hears(origin)
    }
}

/// The broker-wide cap on buffered bytes (pipe(1), FLOW CONTROL), shared by every topic.
/// Windows bound each topic; this bounds their sum, so many stalled topics cannot exhaust
/// memory. When it is reached, [`super::evict`] chooses whom to drop.
#[derive(Debug)]
pub struct Budget {
    used: AtomicU64,
    /// Changed by a reload; a lower limit than `used` just makes room scarce until the
    /// most-lagging subscribers are dropped.
    limit: AtomicU64,
}

impl Budget {
    pub fn new(limit: usize) -> Budget {
        Budget {
            used: AtomicU64::new(0),
            limit: AtomicU64::new(limit as u64),
        }
    }

    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit as u64, Ordering::Relaxed);
    }

    fn cost(data_len: usize) -> usize {
        data_len + CHUNK_OVERHEAD
    }

    pub(super) fn add(&self, n: usize) {
        self.used.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(super) fn sub(&self, n: usize) {
        self.used.fetch_sub(n as u64, Ordering::Relaxed);
    }

    pub(super) fn has_room(&self, data_len: usize) -> bool {
        self.used.load(Ordering::Relaxed) + Self::cost(data_len) as u64
            <= self.limit.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    pub(super) fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }
}

/// One subscriber's distance from the head, for [`Topic::lags`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lag {
    pub sub: SubId,
    /// Bytes between the subscriber's position and the head.
    pub behind: u64,
    /// How long since its position last moved.
    pub still: Duration,
}

/// What a subscriber holds while it is attached.
pub struct SubHandle {
    pub id: SubId,
    pub wake: Arc<Notify>,
    /// Cancelled when the subscriber is dropped for stalling.
    pub kill: CancellationToken,
}

/// What a subscriber gets from [`Topic::fetch`].
pub enum Fetch {
    /// Slices to write, each with the stream offset of its first byte, and the offset the
    /// subscriber reaches once all of them are written.
    Data {
        slices: VecDeque<(u64, Bytes)>,
        reach: u64,
    },
    /// Nothing to write yet.
    Idle,
    /// The stream has ended for this subscriber.
    Ended,
    /// The subscriber was dropped.
    Gone,
}

/// The outcome of one [`Topic::try_append`].
#[derive(Debug, PartialEq, Eq)]
pub enum Append {
    /// Taken; the stream offset just after it.
    Done(u64),
    /// Nobody would receive the chunk; it was discarded (`pipe`, `pub -b=false`).
    Discarded,
    /// Nobody would receive the chunk and the publisher wants to wait for a receiver.
    NoReceiver,
    /// The window is full: wait for the slowest subscriber.
    Full,
    /// The broker-wide budget is spent: drop the most-lagging subscriber somewhere.
    OverBudget,
}

/// A status line for the other members of a `pipe` room.
struct Member {
    session: SessionId,
    ctl: mpsc::Sender<ToClient>,
}

#[derive(Default)]
struct State {
    chunks: VecDeque<Chunk>,
    /// Offset one past the last appended byte.
    head: u64,
    subs: Vec<SubState>,
    /// Attached `pub` sessions, waiting or sending.
    publishers: usize,
    /// `pub -b` sessions waiting for a receiver.
    waiting: usize,
    /// `pipe` sessions, for join and leave notices.
    members: Vec<Member>,
    /// Sessions of any kind attached; the registry removes the topic at zero.
    sessions: usize,
    /// Bytes accepted from publishers over the topic's life.
    bytes: u64,
    rate: Option<Rate>,
    rr_next: usize,
    next_sub: SubId,
    /// Per publishing session: round-robin bytes a departed receiver had been handed but
    /// that could not be handed on (the rest of a line it stopped in, or no receiver
    /// left), for the publisher to say on its stderr.
    unhanded: Vec<(SessionId, u64)>,
}

/// Counters for `ls`.
#[derive(Debug, Clone, Serialize)]
pub struct TopicStats {
    pub topic: String,
    pub publishers: usize,
    pub subscribers: usize,
    pub waiting: usize,
    /// Bytes accepted from publishers over the topic's life.
    pub bytes: u64,
    /// Bytes per second over the last full second (0 when idle).
    pub rate: u64,
    pub age_secs: u64,
    /// Who besides the owner may use it (filled in for the owner and the admin only).
    pub grant: Vec<String>,
}

/// The span over which `ls` measures a topic's rate: long enough to smooth over bursts of
/// single reads, short enough to read as "now".
const RATE_WINDOW: Duration = Duration::from_secs(1);

/// Bytes per second, measured over consecutive windows of [`RATE_WINDOW`].
#[derive(Debug, Clone, Copy)]
struct Rate {
    window_start: Instant,
    window_bytes: u64,
    last: u64,
}

impl Rate {
    fn new() -> Rate {
        Rate {
            window_start: Instant::now(),
            window_bytes: 0,
            last: 0,
        }
    }

    fn count(&mut self, n: usize) {
        self.roll();
        self.window_bytes += n as u64;
    }

    fn roll(&mut self) {
        let elapsed = self.window_start.elapsed();
        if elapsed >= RATE_WINDOW {
            // A window with nothing in it after a busy one reads as idle, not as the old rate.
            self.last = if elapsed >= 2 * RATE_WINDOW {
                0
            } else {
                (self.window_bytes as f64 / elapsed.as_secs_f64()) as u64
            };
            self.window_start = Instant::now();
            self.window_bytes = 0;
        }
    }

    fn current(&mut self) -> u64 {
        self.roll();
        self.last
    }
}

pub struct Topic {
    pub key: TopicKey,
    /// Who created it (public topics count against their creator's cap).
    pub creator: String,
    /// Window W; a reload may change it ([`Topic::set_window`]).
    window: AtomicU64,
    budget: Arc<Budget>,
    created: Instant,
    state: Mutex<State>,
    /// Woken whenever something a publisher may wait for happens: room in the window, a
    /// receiver arriving, a subscriber leaving.
    pub changed: Notify,
    /// Set when the registry lets go of the topic (no session uses it any more).
    forgotten: std::sync::atomic::AtomicBool,
}

impl Topic {
    pub fn new(key: TopicKey, creator: &str, window: usize, budget: Arc<Budget>) -> Topic {
        Topic {
            key,
            creator: creator.to_string(),
            window: AtomicU64::new(window as u64),
            budget,
            created: Instant::now(),
            state: Mutex::new(State::default()),
            changed: Notify::new(),
            forgotten: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The registry let go of this topic: wildcard cursors on it should go too.
    pub fn forget(&self) {
        self.forgotten.store(true, Ordering::Relaxed);
        self.wake_all();
    }

    pub fn forgotten(&self) -> bool {
        self.forgotten.load(Ordering::Relaxed)
    }

    /// A new window W, in force from the next append. A smaller one than the ring holds
    /// pauses publishers until the slowest subscriber is back within it.
    pub fn set_window(&self, window: usize) {
        self.window.store(window as u64, Ordering::Relaxed);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        super::lock::lock(&self.state)
    }

    /// Registry bookkeeping: one more session uses this topic.
    pub fn enter(&self) {
        self.lock().sessions += 1;
    }

    /// One session fewer; true when none is left and the topic can be forgotten.
    pub fn leave(&self) -> bool {
        let mut st = self.lock();
        st.sessions = st.sessions.saturating_sub(1);
        st.sessions == 0
    }

    pub fn attach_sub(&self, session: SessionId, replay: bool, ends: bool) -> SubHandle {
        let wake = Arc::new(Notify::new());
        self.attach_sub_with(session, replay, ends, wake, CancellationToken::new())
    }

    /// Attaches a subscriber that shares its wake-up and its kill switch with others: a
    /// wildcard subscription is one such cursor on each topic it matches.
    pub fn attach_sub_with(
        &self,
        session: SessionId,
        replay: bool,
        ends: bool,
        wake: Arc<Notify>,
        kill: CancellationToken,
    ) -> SubHandle {
        let mut st = self.lock();
        let id = st.next_sub;
        st.next_sub += 1;
        let head = st.head;
        st.subs.push(SubState {
            id,
            session,
            replay,
            ends_with_publishers: ends,
            pos: head,
            last_progress: Instant::now(),
            end_at: None,
            wake: wake.clone(),
            kill: kill.clone(),
        });
        drop(st);
        self.changed.notify_waiters();
        SubHandle { id, wake, kill }
    }

    /// Removes a subscriber. Round-robin chunks it was given but had not started are handed
    /// to the others, and so is the unwritten rest of one it stopped in, from the next line
    /// boundary: a departing receiver loses only the rest of the line it was writing, which
    /// is counted for the publisher ([`Topic::take_unhanded`]).
    pub fn detach_sub(&self, id: SubId) {
        let mut st = self.lock();
        let Some(i) = st.subs.iter().position(|s| s.id == id) else {
            return;
        };
        let gone = st.subs.swap_remove(i);
        let mut orphans = Vec::new();
        let mut unhanded = Vec::new();
        for c in st.chunks.iter_mut() {
            if c.target != Target::One(id) || c.end() <= gone.pos {
                continue;
            }
            let rest = c.data.slice(gone.pos.saturating_sub(c.start) as usize..);
            // Stopped mid-line: the start of that line went out with the departed receiver,
            // so whoever gets the rest gets whole lines only, from the next one on.
            let cut_mid_line = rest.len() < c.data.len()
                && c.data.get(c.data.len() - rest.len() - 1) != Some(&b'\n');
            let skip = if cut_mid_line {
                rest.iter()
                    .position(|&b| b == b'\n')
                    .map_or(rest.len(), |i| i + 1)
            } else {
                0
            };
            if skip > 0 {
                unhanded.push((c.origin, skip as u64));
            }
            if skip < rest.len() {
                orphans.push((c.origin, rest.slice(skip..)));
            }
            self.budget.sub(c.data.len());
            c.data = Bytes::new();
            c.target = Target::Void;
        }
        for (origin, bytes) in unhanded {
            Self::count_unhanded(&mut st, origin, bytes);
        }
        for (origin, data) in orphans {
            self.hand_on(&mut st, origin, data);
        }
        self.trim(&mut st);
        drop(st);
        self.changed.notify_waiters();
    }

    fn count_unhanded(st: &mut State, origin: SessionId, bytes: u64) {
        match st.unhanded.iter_mut().find(|(o, _)| *o == origin) {
            Some((_, n)) => *n += bytes,
            None => st.unhanded.push((origin, bytes)),
        }
    }

    /// Round-robin bytes of `origin`'s that could not be handed on since the last call.
    pub fn take_unhanded(&self, origin: SessionId) -> u64 {
        let mut st = self.lock();
        let i = st.unhanded.iter().position(|(o, _)| *o == origin);
        i.map_or(0, |i| st.unhanded.swap_remove(i).1)
    }

    /// Re-publishes a departed round-robin receiver's chunk to the next receiver. One that
    /// is still draining before its end of stream may take it too, its end moved to cover
    /// it.
    fn hand_on(&self, st: &mut State, origin: SessionId, data: Bytes) {
        let target = Self::pick_rr(st, origin).or_else(|| {
            st.subs
                .iter()
                .filter(|s| s.hears(origin))
                .map(|s| s.id)
                .min()
        });
        let Some(target) = target else {
            warn!(topic = %self.key, bytes = data.len(), "round-robin data lost: no receiver left");
            Self::count_unhanded(st, origin, data.len() as u64);
            return;
        };
        self.push(st, data, origin, Target::One(target));
        let head = st.head;
        if let Some(sub) = st.subs.iter_mut().find(|s| s.id == target) {
            if let Some(end) = sub.end_at.as_mut() {
                *end = head;
                sub.wake.notify_one();
            }
        }
    }

    /// Takes the next batch for subscriber `id`, from its offset up to the head. Chunks
    /// meant for others are skipped (the subscriber's offset moves past them at once); the
    /// scan is bounded by the ring's chunk cap.
    pub fn fetch(&self, id: SubId) -> Fetch {
        let mut st = self.lock();
        let head = st.head;
        let first_chunk = st.chunks.front().map_or(head, |c| c.start);
        let Some(i) = st.subs.iter().position(|s| s.id == id) else {
            return Fetch::Gone;
        };
        let sub = &st.subs[i];
        let limit = sub.end_at.unwrap_or(head).min(head);
        let pos = sub.pos.max(first_chunk);
        let first = st.chunks.partition_point(|c| c.end() <= pos);
        let mut slices = VecDeque::new();
        let mut taken = 0usize;
        let mut reach = pos;
        for c in st.chunks.range(first..) {
            if c.start >= limit || taken >= BATCH || slices.len() >= BATCH_SLICES {
                break;
            }
            reach = c.end().min(limit);
            if !sub.eligible(c) {
                continue;
            }
            let from = pos.saturating_sub(c.start) as usize;
            let to = (reach - c.start) as usize;
            if let Some(data) = c.data.get(from..to).filter(|d| !d.is_empty()) {
                slices.push_back((c.start + from as u64, c.data.slice_ref(data)));
                taken += data.len();
            }
        }
        let ended = sub.end_at.is_some();
        if !slices.is_empty() {
            return Fetch::Data { slices, reach };
        }
        // Nothing for this subscriber up to `reach`: move past it now.
        let tail_before = Self::tail(&st);
        st.subs[i].pos = reach;
        self.trim(&mut st);
        let moved = Self::tail(&st) > tail_before;
        drop(st);
        if moved {
            self.changed.notify_waiters();
        }
        // Chunks are contiguous up to the head, so a scan that took nothing reached the
        // limit.
        debug_assert!(reach >= limit);
        if ended { Fetch::Ended } else { Fetch::Idle }
    }

    /// Records that subscriber `id` has written everything before `pos`.
    pub fn advance(&self, id: SubId, pos: u64) {
        let mut st = self.lock();
        let tail_before = Self::tail(&st);
        if let Some(sub) = st.subs.iter_mut().find(|s| s.id == id) {
            if pos > sub.pos {
                sub.pos = pos;
                sub.last_progress = Instant::now();
            }
        }
        self.trim(&mut st);
        let moved = Self::tail(&st) > tail_before;
        drop(st);
        if moved {
            self.changed.notify_waiters();
        }
    }

    /// Offers a chunk from `origin`. `block`: with nobody to receive it, ask to wait rather
    /// than discard.
    pub fn try_append(
        &self,
        origin: SessionId,
        data: &Bytes,
        dispatch: Dispatch,
        block: bool,
    ) -> Append {
        let mut st = self.lock();
        if !st.subs.iter().any(|s| s.receives_from(origin)) {
            if block {
                return Append::NoReceiver;
            }
            st.bytes += data.len() as u64;
            return Append::Discarded;
        }
        let window = self.window.load(Ordering::Relaxed);
        if st.head - Self::tail(&st) >= window || st.chunks.len() >= MAX_RING_CHUNKS {
            return Append::Full;
        }
        if !self.budget.has_room(data.len()) {
            return Append::OverBudget;
        }
        let target = match dispatch {
            Dispatch::Multicast => Target::All,
            // There is a receiver (checked above), so rotation finds one.
            Dispatch::RoundRobin => Self::pick_rr(&mut st, origin).map_or(Target::All, Target::One),
        };
        st.bytes += data.len() as u64;
        st.rate.get_or_insert_with(Rate::new).count(data.len());
        self.push(&mut st, data.clone(), origin, target);
        Append::Done(st.head)
    }

    fn pick_rr(st: &mut State, origin: SessionId) -> Option<SubId> {
        let eligible: Vec<SubId> = st
            .subs
            .iter()
            .filter(|s| s.receives_from(origin))
            .map(|s| s.id)
            .collect();
        if eligible.is_empty() {
            return None;
        }
        let pick = eligible[st.rr_next % eligible.len()];
        st.rr_next = st.rr_next.wrapping_add(1);
        Some(pick)
    }

    fn push(&self, st: &mut State, data: Bytes, origin: SessionId, target: Target) {
        self.budget.add(Budget::cost(data.len()));
        let start = st.head;
        let chunk = Chunk {
            start,
            len: data.len() as u64,
            data,
            origin,
            target,
        };
        st.head = chunk.end();
        let now = Instant::now();
        for sub in st.subs.iter_mut() {
            let caught_up = sub.pos == start;
            if !sub.eligible(&chunk) {
                // Not for it: a caught-up subscriber stays caught up. Moving it here keeps
                // it from holding back the window (a `pipe` client's own writes,
                // round-robin chunks for others).
                if caught_up {
                    sub.pos = chunk.end();
                }
            } else if sub.end_at.is_none() {
                // A subscriber that was caught up starts its stall clock now, not when it
                // last wrote: waiting for data is not stalling.
                if caught_up {
                    sub.last_progress = now;
                }
                sub.wake.notify_one();
            }
        }
        st.chunks.push_back(chunk);
    }

    fn tail(st: &State) -> u64 {
        st.subs.iter().map(|s| s.pos).min().unwrap_or(st.head)
    }

    fn trim(&self, st: &mut State) {
        let tail = Self::tail(st);
        while st.chunks.front().is_some_and(|c| c.end() <= tail) {
            if let Some(c) = st.chunks.pop_front() {
                self.budget.sub(Budget::cost(c.data.len()));
            }
        }
    }

    /// How far each subscriber trails the head and how long it has not moved: what the
    /// budget's eviction ([`super::evict`]) chooses by.
    pub fn lags(&self) -> Vec<Lag> {
        let st = self.lock();
        let now = Instant::now();
        st.subs
            .iter()
            .map(|s| Lag {
                sub: s.id,
                behind: st.head - s.pos,
                still: now.duration_since(s.last_progress),
            })
            .collect()
    }

    /// Drops subscriber `id` as if it had stalled.
    pub fn drop_sub(&self, id: SubId) {
        if let Some(s) = self.lock().subs.iter().find(|s| s.id == id) {
            s.kill.cancel();
        }
        self.detach_sub(id);
    }

    /// Offset one past the last appended byte.
    pub fn head(&self) -> u64 {
        self.lock().head
    }

    /// True when every subscriber has written everything before `upto` (or left).
    pub fn delivered(&self, upto: u64) -> bool {
        let st = self.lock();
        st.subs
            .iter()
            .all(|s| s.pos >= upto || s.end_at.is_some_and(|e| e <= s.pos))
    }

    /// Cuts off subscribers that hold the tail of the stream back and have not moved for
    /// `stall`. Returns how many were cut. Called only by publishers that are waiting on
    /// them, so an idle topic never drops anybody.
    pub fn drop_stalled(&self, stall: Duration) -> usize {
        let st = self.lock();
        let tail = Self::tail(&st);
        if tail >= st.head {
            return 0;
        }
        let now = Instant::now();
        let stalled: Vec<SubId> = st
            .subs
            .iter()
            .filter(|s| s.pos == tail && now.duration_since(s.last_progress) >= stall)
            .map(|s| s.id)
            .collect();
        drop(st);
        for id in &stalled {
            self.drop_sub(*id);
        }
        stalled.len()
    }

    pub fn attach_publisher(&self) {
        self.lock().publishers += 1;
    }

    pub fn set_waiting(&self, waiting: bool) {
        let mut st = self.lock();
        if waiting {
            st.waiting += 1;
        } else {
            st.waiting = st.waiting.saturating_sub(1);
        }
    }

    /// A publisher left. When it was the last, plain subscribers end once they have written
    /// everything published so far.
    pub fn detach_publisher(&self) {
        let mut st = self.lock();
        st.publishers = st.publishers.saturating_sub(1);
        if st.publishers == 0 {
            let head = st.head;
            for sub in st.subs.iter_mut() {
                if sub.ends_with_publishers && sub.end_at.is_none() {
                    sub.end_at = Some(head);
                }
                // Everyone re-checks: a `-k` subscriber may be waiting for a quiet topic
                // during shutdown.
                sub.wake.notify_one();
            }
        }
    }

    /// No publisher and no `pipe` client is attached: nothing more can arrive.
    pub fn quiet(&self) -> bool {
        let st = self.lock();
        st.publishers == 0 && st.members.is_empty()
    }

    /// Wakes every subscriber to re-check its state (shutdown).
    pub fn wake_all(&self) {
        for sub in self.lock().subs.iter() {
            sub.wake.notify_one();
        }
        self.changed.notify_waiters();
    }

    /// Joins a `pipe` room; tells the members already there.
    pub fn join_room(&self, session: SessionId, ctl: mpsc::Sender<ToClient>, who: &str) {
        let mut st = self.lock();
        st.members.push(Member { session, ctl });
        let line = format!("{who} joined {} ({} connected)", self.key, st.members.len());
        Self::tell_room(&st, session, &line);
    }

    pub fn leave_room(&self, session: SessionId, who: &str) {
        let mut st = self.lock();
        st.members.retain(|m| m.session != session);
        let line = format!("{who} left {} ({} connected)", self.key, st.members.len());
        Self::tell_room(&st, session, &line);
        for sub in st.subs.iter() {
            sub.wake.notify_one();
        }
    }

    fn tell_room(st: &State, except: SessionId, line: &str) {
        for m in st.members.iter().filter(|m| m.session != except) {
            // Status lines are best effort: a client that does not read its control socket
            // loses notices, never blocks the room.
            let _ = m.ctl.try_send(ToClient::Status {
                line: line.to_string(),
            });
        }
    }

    pub fn stats(&self) -> TopicStats {
        let mut st = self.lock();
        TopicStats {
            topic: self.key.to_string(),
            publishers: st.publishers.saturating_sub(st.waiting),
            subscribers: st.subs.len(),
            waiting: st.waiting,
            bytes: st.bytes,
            rate: st.rate.as_mut().map_or(0, Rate::current),
            age_secs: self.created.elapsed().as_secs(),
            grant: Vec::new(),
        }
    }

    /// Whether any subscriber would receive from `origin` now.
    pub fn has_receiver(&self, origin: SessionId) -> bool {
        self.lock().subs.iter().any(|s| s.receives_from(origin))
    }

    #[cfg(test)]
    fn buffered(&self) -> u64 {
        let st = self.lock();
        st.chunks.iter().map(|c| c.data.len() as u64).sum()
    }
}

impl Drop for Topic {
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        self.budget
            .sub(st.chunks.iter().map(|c| Budget::cost(c.data.len())).sum());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(window: usize) -> Topic {
        topic_in(window, Arc::new(Budget::new(usize::MAX / 2)))
    }

    fn topic_in(window: usize, budget: Arc<Budget>) -> Topic {
        Topic::new(
            TopicKey {
                owner: Owner::User("alice".into()),
                name: "t".into(),
            },
            "alice",
            window,
            budget,
        )
    }

    fn drain(t: &Topic, id: SubId) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            match t.fetch(id) {
                Fetch::Data { slices, reach } => {
                    for (_, b) in slices {
                        out.extend_from_slice(&b);
                    }
                    t.advance(id, reach);
                }
                _ => return out,
            }
        }
    }

    #[test]
    fn multicast_gives_every_subscriber_every_byte() {
        let t = topic(1 << 20);
        let a = t.attach_sub(1, false, true);
        let b = t.attach_sub(2, false, true);
        for word in [&b"hello "[..], b"world"] {
            let r = t.try_append(9, &Bytes::copy_from_slice(word), Dispatch::Multicast, true);
            assert!(matches!(r, Append::Done(_)), "{r:?}");
        }
        assert_eq!(drain(&t, a.id), b"hello world");
        assert_eq!(drain(&t, b.id), b"hello world");
        assert_eq!(t.buffered(), 0, "fully read chunks are released");
    }

    #[test]
    fn the_slowest_subscriber_paces_the_publisher_within_the_window() {
        let t = topic(100);
        let fast = t.attach_sub(1, false, true);
        let slow = t.attach_sub(2, false, true);
        let piece = Bytes::from(vec![7u8; 40]);
        let mut accepted = 0;
        while matches!(
            t.try_append(9, &piece, Dispatch::Multicast, true),
            Append::Done(_)
        ) {
            accepted += 1;
            drain(&t, fast.id);
            assert!(accepted < 10, "window never filled");
        }
        assert_eq!(accepted, 3, "appends stop once W is reached");
        assert!(t.buffered() <= 100 + 40);
        drain(&t, slow.id);
        assert!(matches!(
            t.try_append(9, &piece, Dispatch::Multicast, true),
            Append::Done(_)
        ));
    }

    #[test]
    fn round_robin_gives_each_chunk_to_exactly_one_subscriber() {
        let t = topic(1 << 20);
        let subs: Vec<_> = (1..=3).map(|s| t.attach_sub(s, false, true)).collect();
        for i in 0..30u8 {
            t.try_append(9, &Bytes::from(vec![i]), Dispatch::RoundRobin, true);
        }
        let got: Vec<Vec<u8>> = subs.iter().map(|s| drain(&t, s.id)).collect();
        assert!(
            got.iter().all(|g| g.len() == 10),
            "rotation is even: {got:?}"
        );
        let mut all = got.concat();
        all.sort();
        assert_eq!(all, (0..30).collect::<Vec<u8>>());
    }

    #[test]
    fn a_departing_round_robin_subscriber_hands_back_its_chunks() {
        let t = topic(1 << 20);
        let a = t.attach_sub(1, false, true);
        let b = t.attach_sub(2, false, true);
        for i in 0..10u8 {
            t.try_append(9, &Bytes::from(vec![i]), Dispatch::RoundRobin, true);
        }
        let got_b = drain(&t, b.id);
        t.detach_sub(a.id);
        let mut all = got_b;
        all.extend(drain(&t, b.id));
        all.sort();
        assert_eq!(all, (0..10).collect::<Vec<u8>>());
    }

    #[test]
    fn pipe_clients_do_not_hear_themselves_unless_replay() {
        let t = topic(1 << 20);
        let me = t.attach_sub(5, false, false);
        let echo = t.attach_sub(6, true, false);
        assert!(matches!(
            t.try_append(5, &Bytes::from_static(b"x"), Dispatch::Multicast, false),
            Append::Done(_)
        ));
        assert_eq!(drain(&t, me.id), b"");
        assert!(matches!(
            t.try_append(6, &Bytes::from_static(b"y"), Dispatch::Multicast, false),
            Append::Done(_)
        ));
        assert_eq!(drain(&t, me.id), b"y");
        assert_eq!(drain(&t, echo.id), b"xy");
    }

    #[test]
    fn nobody_listening_discards_or_asks_to_wait() {
        let t = topic(1 << 20);
        let data = Bytes::from_static(b"x");
        assert_eq!(
            t.try_append(1, &data, Dispatch::Multicast, false),
            Append::Discarded
        );
        assert_eq!(
            t.try_append(1, &data, Dispatch::Multicast, true),
            Append::NoReceiver
        );
    }

    #[test]
    fn last_publisher_leaving_ends_plain_subscribers_after_their_data() {
        let t = topic(1 << 20);
        let plain = t.attach_sub(1, false, true);
        let keep = t.attach_sub(2, false, false);
        t.attach_publisher();
        t.try_append(9, &Bytes::from_static(b"abc"), Dispatch::Multicast, true);
        t.detach_publisher();
        assert_eq!(drain(&t, plain.id), b"abc");
        assert!(matches!(t.fetch(plain.id), Fetch::Ended));
        assert_eq!(drain(&t, keep.id), b"abc");
        assert!(matches!(t.fetch(keep.id), Fetch::Idle));
    }

    #[test]
    fn a_stalled_subscriber_is_dropped_and_the_rest_continue() {
        let t = topic(10);
        let stuck = t.attach_sub(1, false, true);
        let ok = t.attach_sub(2, false, true);
        t.try_append(9, &Bytes::from(vec![1u8; 10]), Dispatch::Multicast, true);
        drain(&t, ok.id);
        assert_eq!(t.drop_stalled(Duration::from_secs(3600)), 0);
        assert_eq!(t.drop_stalled(Duration::ZERO), 1);
        assert!(stuck.kill.is_cancelled());
        assert!(matches!(t.fetch(stuck.id), Fetch::Gone));
        assert!(matches!(
            t.try_append(9, &Bytes::from(vec![2u8; 10]), Dispatch::Multicast, true),
            Append::Done(_)
        ));
    }

    #[test]
    fn the_shared_budget_bounds_all_topics_together() {
        let budget = Arc::new(Budget::new(Budget::cost(60) * 2 - 1));
        let a = topic_in(1000, budget.clone());
        let b = topic_in(1000, budget.clone());
        let lagging = a.attach_sub(1, false, true);
        let _reader = b.attach_sub(2, false, true);
        let piece = Bytes::from(vec![0u8; 60]);
        assert!(matches!(
            a.try_append(9, &piece, Dispatch::Multicast, true),
            Append::Done(_)
        ));
        assert_eq!(
            b.try_append(9, &piece, Dispatch::Multicast, true),
            Append::OverBudget,
            "the window has room, the broker does not"
        );
        let lags = a.lags();
        assert_eq!(lags.len(), 1);
        assert_eq!((lags[0].sub, lags[0].behind), (lagging.id, 60));
        a.drop_sub(lagging.id);
        assert!(lagging.kill.is_cancelled());
        assert_eq!(budget.used(), 0, "a dropped laggard's chunks are released");
        assert!(matches!(
            b.try_append(9, &piece, Dispatch::Multicast, true),
            Append::Done(_)
        ));
        drop(b);
        assert_eq!(budget.used(), 0, "a forgotten topic releases what it held");
    }

    #[test]
    fn a_round_robin_receiver_leaving_with_a_backlog_after_the_stream_ended_loses_nothing() {
        // The review's crash: the publisher has left (both workers have an end), one worker
        // quits with its share unread; the other must get that share and then end.
        let t = topic(1 << 20);
        let a = t.attach_sub(1, false, true);
        let b = t.attach_sub(2, false, true);
        t.attach_publisher();
        for i in 0..10u8 {
            t.try_append(
                9,
                &Bytes::from(vec![b'0' + i, b'\n']),
                Dispatch::RoundRobin,
                true,
            );
        }
        t.detach_publisher();
        t.detach_sub(a.id);
        let mut got = drain(&t, b.id);
        assert!(matches!(t.fetch(b.id), Fetch::Ended));
        got.sort();
        let mut want: Vec<u8> = (0..10u8).flat_map(|i| [b'0' + i, b'\n']).collect();
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn a_pipe_clients_own_writes_do_not_hold_back_its_window() {
        let t = topic(100);
        let own = t.attach_sub(5, false, false);
        let _other = t.attach_sub(6, false, false);
        t.try_append(5, &Bytes::from(vec![1u8; 60]), Dispatch::Multicast, false);
        let st = t.lock();
        let me = st.subs.iter().find(|s| s.id == own.id).unwrap();
        assert_eq!(me.pos, 60, "moved past its own chunk at once");
    }

    #[test]
    fn a_partly_written_round_robin_chunk_is_handed_on_from_its_line_end() {
        let t = topic(1 << 20);
        let a = t.attach_sub(1, false, true);
        let b = t.attach_sub(2, false, true);
        t.try_append(
            9,
            &Bytes::from_static(b"x\ny\n"),
            Dispatch::RoundRobin,
            true,
        );
        // `a` got it and wrote its first line only (as `sub -n 1` does), then left.
        let Fetch::Data { slices, .. } = t.fetch(a.id) else {
            panic!("a had data");
        };
        t.advance(a.id, slices[0].0 + 2);
        t.detach_sub(a.id);
        assert_eq!(drain(&t, b.id), b"y\n");
        assert_eq!(t.take_unhanded(9), 0, "nothing was cut");
    }

    /// Issue 11, defect 2: a receiver that leaves after a write that stopped mid-line hands
    /// on the rest of its chunk from the next line; only the rest of the cut line is not
    /// handed on, and the publisher is told how much.
    #[test]
    fn a_chunk_cut_mid_line_is_handed_on_from_the_next_line() {
        let t = topic(1 << 20);
        let a = t.attach_sub(1, false, true);
        let b = t.attach_sub(2, false, true);
        t.try_append(
            9,
            &Bytes::from_static(b"one\ntwo\nthree\n"),
            Dispatch::RoundRobin,
            true,
        );
        let Fetch::Data { slices, .. } = t.fetch(a.id) else {
            panic!("a had data");
        };
        // `a`'s pipe took "one\ntw" and it left.
        t.advance(a.id, slices[0].0 + 6);
        t.detach_sub(a.id);
        assert_eq!(drain(&t, b.id), b"three\n");
        assert_eq!(t.take_unhanded(9), 2, "the rest of \"two\\n\": \"o\\n\"");
        assert_eq!(t.take_unhanded(9), 0, "taken once");
    }
}
