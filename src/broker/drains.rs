//! Scoped drains (pipe(5), SCOPED DRAINS): `ssh host logs` shows each user the lines of
//! the service logs that concern them.
//!
//! The admin declares a drain in `piped.toml` ([`DrainSpec`]): its name, the feed topics
//! services publish JSON lines into, the scope fields naming the user a line concerns and
//! the field that hides a line from users. A publisher on a feed topic hands every line to
//! the drains it feeds as it reads them ([`Feed`]), in its own session task: each line is
//! parsed once per drain, whatever the number of watchers, and then goes only to the
//! watchers it concerns: the users its scope fields name (unless hidden) and the drain's
//! admins. The feed topic stays an ordinary topic: its owner (and those they grant) can
//! still read it raw.
//!
//! A watcher holds a bounded queue of whole lines ([`WATCH_QUEUE`], also charged to the
//! broker's global budget). A drain never paces its feeds: services publish with
//! `-b=false` and must never be held up by a reader, so a watcher that falls a queue behind
//! misses lines (counted, and said on its stderr at most once a second), and one whose
//! output does not move for the stall timeout is dropped (exit 5), as subscribers are.
//!
//! Lines that are not a JSON object, or are longer than the drain's `max_line`, reach no
//! user. They are counted, and each one is reported to the drain's admins as a hidden
//! notice line naming the reason and the running counts.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use tokio::sync::Notify;
use tracing::warn;

use super::config::DrainSpec;
use super::identity::Identity;
use super::lock::lock;
use super::topic::{Budget, Owner, TopicKey};

/// Bytes of whole lines queued per watcher. Enough for a burst of a few thousand log lines
/// while the reader's ssh catches up; beyond it the watcher misses lines rather than hold
/// the services' feeds back.
pub const WATCH_QUEUE: usize = 256 * 1024;

/// Bytes queued for all drain watchers together. Their own budget, not the topics': a
/// watcher is never paced nor evicted (it misses lines instead), so charging the topics'
/// budget would let slow log readers stall publishers elsewhere. 64 MiB is 256 watchers
/// a full queue behind at once; beyond it watchers miss lines.
pub const WATCHERS_BUDGET: usize = 64 * 1024 * 1024;

/// A gathering watcher is woken early once this much is queued, so it writes before its
/// queue fills even when lines arrive faster than it gathers them.
const WAKE_AT: usize = WATCH_QUEUE / 4;

/// Allocation a watcher's staged lines grow by: a few reads' worth of lines for one user,
/// so consecutive blocks share a buffer and a busy watcher allocates once per few KiB.
const STAGE_ALLOC: usize = 4096;

/// How often, at most, piped's log says a drain rejected lines.
const JOURNAL_EVERY: Duration = Duration::from_secs(10);

/// How often a watcher that misses lines is told so, at most.
pub const DROP_NOTICE_EVERY: Duration = Duration::from_secs(1);

/// How much of a rejected line an admin notice quotes: enough to recognise it.
const NOTICE_QUOTE: usize = 200;

/// The tracing target of piped's own per-user events (sessions, denials, drops), which
/// drains with `events = true` take in as lines of service `piped`.
pub const EVENTS: &str = "pipe::event";

/// Where piped's own events go: `main` sets up logging, and the tracing layer that feeds
/// this, before the broker exists; [`super::server::start`] connects it to the broker's
/// drains.
#[derive(Clone, Default)]
pub struct EventTap(Arc<OnceLock<Arc<Drains>>>);

impl EventTap {
    /// One event, a JSON line from the layer; dropped while no broker runs yet.
    pub fn send(&self, line: &[u8]) {
        if let Some(drains) = self.0.get() {
            drains.event(line);
        }
    }

    pub(super) fn connect(&self, drains: Arc<Drains>) {
        // A second broker in one process keeps the first connection; piped runs one.
        let _ = self.0.set(drains);
    }
}

/// Every drain the admin declared, and which topics feed them.
#[derive(Default)]
pub struct Drains {
    all: Vec<Arc<Drain>>,
    by_feed: HashMap<TopicKey, Vec<Arc<Drain>>>,
}

impl Drains {
    pub fn new(specs: &[DrainSpec]) -> Drains {
        let budget = Arc::new(Budget::new(WATCHERS_BUDGET));
        let budget = &budget;
        let mut drains = Drains::default();
        for spec in specs {
            let drain = Arc::new(Drain::new(spec.clone(), budget.clone()));
            for (owner, name) in &spec.feeds {
                let key = TopicKey {
                    owner: Owner::User(owner.clone()),
                    name: name.clone(),
                };
                drains.by_feed.entry(key).or_default().push(drain.clone());
            }
            drains.all.push(drain);
        }
        drains
    }

    /// The drain users reach by this name.
    pub fn get(&self, name: &str) -> Option<&Arc<Drain>> {
        self.all.iter().find(|d| d.spec.name == name)
    }

    /// The line splitter a publisher on `key` feeds its input through, if `key` is a feed.
    pub fn feed(&self, key: &TopicKey) -> Option<Feed> {
        let drains = self.by_feed.get(key)?.clone();
        let max_line = drains.iter().map(|d| d.spec.max_line).max().unwrap_or(0);
        Some(Feed {
            drains,
            partial: BytesMut::new(),
            skipping: None,
            max_line,
        })
    }

    /// One of piped's own events, already a JSON line: into every drain that takes them.
    pub fn event(&self, line: &[u8]) {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let mut wakes = Wakes::default();
        for d in self.all.iter().filter(|d| d.spec.events) {
            d.ingest(line, &mut wakes);
        }
    }
}

/// A publisher's line splitter on a feed topic: its own partial line, so lines of
/// concurrent publishers never mix.
pub struct Feed {
    drains: Vec<Arc<Drain>>,
    partial: BytesMut,
    /// A line already over every drain's limit, skipped to its end.
    skipping: Option<Skipped>,
    max_line: usize,
}

/// What is kept of an over-long line while it is skipped: its length and its start.
struct Skipped {
    len: usize,
    quote: Vec<u8>,
}

impl Feed {
    /// Takes a chunk of the publisher's input as read.
    pub fn push(&mut self, mut data: &[u8]) {
        // Watchers are woken once per read, not per line: a line at a time would wake
        // each of them (and make it write) as often as lines arrive.
        let mut wakes = Wakes::default();
        while let Some(end) = data.iter().position(|&b| b == b'\n') {
            let part = &data[..end];
            data = &data[end + 1..];
            if let Some(skipped) = self.skipping.take() {
                let len = skipped.len + part.len();
                self.each(|d| d.too_long(len, &skipped.quote, &mut wakes));
            } else if self.partial.is_empty() {
                self.each(|d| d.ingest(part, &mut wakes));
            } else {
                self.partial.extend_from_slice(part);
                let line = self.partial.split();
                self.each(|d| d.ingest(&line, &mut wakes));
            }
        }
        if data.is_empty() {
            return;
        }
        if let Some(skipped) = self.skipping.as_mut() {
            skipped.len += data.len();
        } else if self.partial.len() + data.len() > self.max_line {
            // From here only the length is kept: a publisher holds at most max_line.
            let len = self.partial.len() + data.len();
            let head = self.partial.split();
            let mut quote = head[..head.len().min(NOTICE_QUOTE)].to_vec();
            let more = NOTICE_QUOTE - quote.len();
            quote.extend_from_slice(&data[..data.len().min(more)]);
            self.skipping = Some(Skipped { len, quote });
        } else {
            self.partial.extend_from_slice(data);
        }
    }

    /// The publisher's input ended: an unterminated last line is a line.
    pub fn finish(&mut self) {
        let mut wakes = Wakes::default();
        if let Some(skipped) = self.skipping.take() {
            self.each(|d| d.too_long(skipped.len, &skipped.quote, &mut wakes));
        } else if !self.partial.is_empty() {
            let line = self.partial.split();
            self.each(|d| d.ingest(&line, &mut wakes));
        }
    }

    fn each(&self, mut f: impl FnMut(&Drain)) {
        for d in &self.drains {
            f(d);
        }
    }
}

/// One declared drain: its settings, its watchers and its counts.
pub struct Drain {
    pub spec: DrainSpec,
    watchers: Mutex<Watchers>,
    /// When rejected lines were last written to piped's log.
    journaled: Mutex<Option<Instant>>,
    budget: Arc<Budget>,
    pub counts: Counts,
}

/// A drain's running counts, for its admins.
#[derive(Debug, Default)]
pub struct Counts {
    /// Lines taken in, valid or not.
    pub lines: AtomicU64,
    /// Lines that were not one JSON object.
    pub invalid: AtomicU64,
    /// Lines over `max_line`.
    pub too_long: AtomicU64,
    /// Line copies a watcher missed because its queue was full.
    pub missed: AtomicU64,
}

#[derive(Default)]
struct Watchers {
    by_user: HashMap<String, Vec<Arc<Watcher>>>,
    admins: Vec<Arc<Watcher>>,
}

impl Drain {
    fn new(spec: DrainSpec, budget: Arc<Budget>) -> Drain {
        Drain {
            spec,
            watchers: Mutex::new(Watchers::default()),
            journaled: Mutex::new(None),
            budget,
            counts: Counts::default(),
        }
    }

    /// Whether `who` sees every line: root, a listed admin, or a member of the admin
    /// group. Group membership is a Unix account's: a name the service account asserted
    /// is not looked up, or a key user named like a member would inherit it. May read
    /// the group database: call it off the async threads.
    pub fn is_admin(&self, who: &Identity) -> bool {
        who.admin
            || self.spec.admins.contains(&who.user)
            || (who.unix
                && self
                    .spec
                    .admin_group
                    .as_deref()
                    .is_some_and(|g| in_group(&who.user, g)))
    }

    /// Adds a watcher: `admin` ones get every line, others the lines naming `user`.
    pub fn watch(self: &Arc<Self>, user: &str, admin: bool) -> Watch {
        let watcher = Arc::new(Watcher {
            queue: Mutex::new(Queue::default()),
            wake: Notify::new(),
            budget: self.budget.clone(),
        });
        let mut w = lock(&self.watchers);
        if admin {
            w.admins.push(watcher.clone());
        } else {
            w.by_user
                .entry(user.to_string())
                .or_default()
                .push(watcher.clone());
        }
        Watch {
            drain: self.clone(),
            user: (!admin).then(|| user.to_string()),
            watcher,
        }
    }

    /// One line from a feed (without its newline): parsed once, then copied once into
    /// the queue of every watcher it concerns.
    fn ingest(&self, line: &[u8], wakes: &mut Wakes) {
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        self.counts.lines.fetch_add(1, Ordering::Relaxed);
        if line.len() > self.spec.max_line {
            self.counts.lines.fetch_sub(1, Ordering::Relaxed);
            return self.too_long(line.len(), &line[..NOTICE_QUOTE.min(line.len())], wakes);
        }
        // serde skips the strings it does not keep without checking them: a line must be
        // UTF-8 text as a whole to be JSON.
        let scan = std::str::from_utf8(line)
            .ok()
            .and_then(|_| scan(line, &self.spec.scope, &self.spec.hidden));
        let Some(scan) = scan else {
            self.counts.invalid.fetch_add(1, Ordering::Relaxed);
            let quote = &line[..line.len().min(NOTICE_QUOTE)];
            return self.notice(
                "line rejected: not one JSON object",
                line.len(),
                quote,
                wakes,
            );
        };
        let w = lock(&self.watchers);
        let mine = (!scan.hidden)
            .then(|| scan.users.iter().filter_map(|u| w.by_user.get(u)))
            .into_iter()
            .flatten()
            .flatten();
        let mut targets = w.admins.iter().chain(mine).peekable();
        if targets.peek().is_none() {
            return;
        }
        let mut missed = 0;
        for t in targets {
            if !t.offer(line, wakes) {
                missed += 1;
            }
        }
        if missed > 0 {
            self.counts.missed.fetch_add(missed, Ordering::Relaxed);
        }
    }

    fn too_long(&self, len: usize, quote: &[u8], wakes: &mut Wakes) {
        self.counts.too_long.fetch_add(1, Ordering::Relaxed);
        self.counts.lines.fetch_add(1, Ordering::Relaxed);
        let reason = format!("line rejected: longer than {} bytes", self.spec.max_line);
        self.notice(&reason, len, quote, wakes);
    }

    /// Tells the drain's admins about a line no user got, with the running counts.
    fn notice(&self, message: &str, bytes: usize, quote: &[u8], wakes: &mut Wakes) {
        self.journal_rejects();
        let w = lock(&self.watchers);
        if w.admins.is_empty() {
            return;
        }
        let line = serde_json::json!({
            "time": crate::timefmt::rfc3339(std::time::SystemTime::now()),
            "level": "WARN",
            "target": "pipe::drain",
            "message": message,
            "drain": self.spec.name,
            "bytes": bytes,
            "line": String::from_utf8_lossy(quote),
            "lines": self.counts.lines.load(Ordering::Relaxed),
            "invalid": self.counts.invalid.load(Ordering::Relaxed),
            "too_long": self.counts.too_long.load(Ordering::Relaxed),
            "missed": self.counts.missed.load(Ordering::Relaxed),
            "service": "piped",
            &self.spec.hidden: true,
        });
        let text = line.to_string();
        for a in &w.admins {
            a.offer(text.as_bytes(), wakes);
        }
    }
}

impl Drain {
    /// Rejected lines also go to piped's own log, so admins not watching see them in the
    /// journal: at most one line per [`JOURNAL_EVERY`] with the running counts, as a feed
    /// of garbage must not flood the journal.
    fn journal_rejects(&self) {
        let mut last = lock(&self.journaled);
        if last.is_some_and(|t| t.elapsed() < JOURNAL_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        warn!(
            drain = %self.spec.name,
            lines = self.counts.lines.load(Ordering::Relaxed),
            invalid = self.counts.invalid.load(Ordering::Relaxed),
            too_long = self.counts.too_long.load(Ordering::Relaxed),
            "drain lines rejected (not one JSON object, or too long): they reach no user"
        );
    }
}

/// Whether Unix user `user` is in group `group`, as its primary group or a listed member.
fn in_group(user: &str, group: &str) -> bool {
    use nix::unistd::{Group, User};
    let Ok(Some(g)) = Group::from_name(group) else {
        return false;
    };
    g.mem.iter().any(|m| m == user)
        || User::from_name(user).is_ok_and(|u| u.is_some_and(|u| u.gid == g.gid))
}

/// A watcher's place in its drain, removed however the session ends.
pub struct Watch {
    drain: Arc<Drain>,
    /// `None` for an admin.
    user: Option<String>,
    pub watcher: Arc<Watcher>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut w = lock(&self.drain.watchers);
        let mine = |x: &Arc<Watcher>| !Arc::ptr_eq(x, &self.watcher);
        match &self.user {
            None => w.admins.retain(mine),
            Some(u) => {
                if let Some(list) = w.by_user.get_mut(u) {
                    list.retain(mine);
                    if list.is_empty() {
                        w.by_user.remove(u);
                    }
                }
            }
        }
    }
}

/// One `logs` session's queue of whole lines.
pub struct Watcher {
    queue: Mutex<Queue>,
    pub wake: Notify,
    budget: Arc<Budget>,
}

/// Watchers with lines staged, to queue and wake once the lines at hand are routed.
#[derive(Default)]
struct Wakes(Vec<Arc<Watcher>>);

impl Drop for Wakes {
    fn drop(&mut self) {
        for w in self.0.drain(..) {
            let mut q = lock(&w.queue);
            if !q.staged.is_empty() {
                // Charged per block, not per line: the budget is shared by every watcher's
                // writes, and an atomic add per line would bounce it between cores.
                w.budget.add(q.staged.len());
                let data = q.staged.split().freeze();
                let lines = std::mem::take(&mut q.staged_lines);
                q.blocks.push_back(Block { data, lines });
            }
            q.due = false;
            let urgent = q.idle || q.bytes >= WAKE_AT;
            drop(q);
            if urgent {
                w.wake.notify_one();
            }
        }
    }
}

/// Lines in a block, counted as they are staged so `-n` never scans for newlines.
struct Block {
    data: Bytes,
    /// Newlines in `data`.
    lines: u64,
}

#[derive(Default)]
struct Queue {
    /// Blocks of whole lines, oldest first; the front one may be partly written.
    blocks: VecDeque<Block>,
    /// Lines routed during the current feed read, queued as one block when it is done:
    /// one copy into a shared buffer per line, not an allocation.
    staged: BytesMut,
    staged_lines: u64,
    /// Some [`Wakes`] will queue `staged` and wake the watcher.
    due: bool,
    /// The watcher found nothing to write and waits for lines; otherwise it is gathering
    /// and is woken only once the queue passes a quarter full.
    idle: bool,
    /// Bytes in `blocks` and `staged`; those in `blocks` are charged to the watchers'
    /// budget.
    bytes: usize,
    /// Lines missed since the watcher last took the count.
    missed: u64,
}

impl Watcher {
    /// Stages a line (given without its newline) unless the queue or the global budget is
    /// full; it is queued, and the watcher woken, when `wakes` is dropped.
    fn offer(self: &Arc<Self>, line: &[u8], wakes: &mut Wakes) -> bool {
        let len = line.len() + 1;
        let mut q = lock(&self.queue);
        if q.bytes + len > WATCH_QUEUE || !self.budget.has_room(len) {
            q.missed += 1;
            return false;
        }
        q.bytes += len;
        if q.staged.capacity() - q.staged.len() < len {
            // Blocks of several reads share one allocation rather than one each.
            q.staged.reserve(len.max(STAGE_ALLOC));
        }
        q.staged.extend_from_slice(line);
        q.staged.extend_from_slice(b"\n");
        q.staged_lines += 1;
        if !std::mem::replace(&mut q.due, true) {
            wakes.0.push(self.clone());
        }
        true
    }

    /// Up to `max_blocks` queued blocks from the front (the first maybe partly written
    /// already), holding at most `max_lines` lines. None marks the watcher idle: the next
    /// line wakes it.
    pub fn peek(&self, max_blocks: usize, max_lines: Option<u64>) -> Vec<Bytes> {
        let mut q = lock(&self.queue);
        q.idle = q.blocks.is_empty();
        let mut left = max_lines.unwrap_or(u64::MAX);
        let mut out = Vec::new();
        for b in q.blocks.iter().take(max_blocks) {
            if b.lines < left {
                left -= b.lines;
                out.push(b.data.clone());
                continue;
            }
            let cut = nth_line_end(&b.data, left);
            out.push(b.data.slice(..cut));
            break;
        }
        out
    }

    /// Bytes queued.
    pub fn queued(&self) -> usize {
        lock(&self.queue).bytes
    }

    /// Records that `n` bytes from the front were written; returns the lines completed.
    pub fn consume(&self, n: usize) -> u64 {
        let mut q = lock(&self.queue);
        let (mut left, mut lines) = (n, 0);
        while left > 0 {
            let Some(front) = q.blocks.front_mut() else {
                break;
            };
            if left >= front.data.len() {
                left -= front.data.len();
                lines += front.lines;
                q.blocks.pop_front();
            } else {
                let done = front.data[..left].iter().filter(|&&b| b == b'\n').count() as u64;
                front.data = front.data.slice(left..);
                front.lines -= done;
                lines += done;
                left = 0;
            }
        }
        let done = n - left;
        q.bytes -= done;
        self.budget.sub(done);
        lines
    }

    /// Lines missed since the last call.
    pub fn take_missed(&self) -> u64 {
        std::mem::take(&mut lock(&self.queue).missed)
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let q = lock(&self.queue);
        // Staged lines were never charged (a Wakes still holding this watcher would have
        // queued them; none does once it is dropped).
        self.budget.sub(q.bytes - q.staged.len());
    }
}

/// The length of `data` up to and including its `n`-th newline (all of it if fewer).
pub(super) fn nth_line_end(data: &[u8], n: u64) -> usize {
    let mut seen = 0;
    data.iter()
        .position(|&b| {
            seen += u64::from(b == b'\n');
            seen == n
        })
        .map_or(data.len(), |p| p + 1)
}

/// What a drain needs from a line: the users its scope fields name and whether it is
/// hidden.
#[derive(Debug, Default, PartialEq, Eq)]
struct Scan {
    users: Vec<String>,
    hidden: bool,
}

/// Reads one line as a JSON object, keeping only the scope and hidden fields; `None` if it
/// is anything else. A repeated scope or hidden field is refused: readers disagree on which
/// of two values counts (`jq` takes the last), so such a line could show one user's name
/// to the drain and another's to the reader.
fn scan(line: &[u8], scope: &[String], hidden: &str) -> Option<Scan> {
    let mut de = serde_json::Deserializer::from_slice(line);
    let scan = ScanSeed { scope, hidden }.deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(scan)
}

#[derive(Clone, Copy)]
struct ScanSeed<'a> {
    scope: &'a [String],
    hidden: &'a str,
}

impl<'de> DeserializeSeed<'de> for ScanSeed<'_> {
    type Value = Scan;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Scan, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ScanSeed<'_> {
    type Value = Scan;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scan, A::Error> {
        let mut scan = Scan::default();
        // One bit per scope field, and the top one for the hidden field (config caps the
        // scope list at MAX_SCOPE_FIELDS).
        let mut seen = 0u64;
        while let Some(field) = map.next_key_seed(FieldSeed(self))? {
            let Some(i) = field else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let bit = 1u64 << i;
            if seen & bit != 0 {
                return Err(de::Error::custom("repeated scope or hidden field"));
            }
            seen |= bit;
            if i == self.scope.len() {
                scan.hidden = map.next_value::<Hides>()?.0;
            } else if let Some(user) = map.next_value::<ScopeValue>()?.0 {
                if !scan.users.contains(&user) {
                    scan.users.push(user);
                }
            }
        }
        Ok(scan)
    }
}

/// A scope field's value: the user name when it is a string; anything else names nobody.
/// Read without building the value, so a huge array in a scope field costs no memory.
struct ScopeValue(Option<String>);

impl<'de> Deserialize<'de> for ScopeValue {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueKind).map(|k| match k {
            Kind::Str(s) => ScopeValue(Some(s)),
            _ => ScopeValue(None),
        })
    }
}

/// The hidden field's value: hides unless `false` or `null`.
struct Hides(bool);

impl<'de> Deserialize<'de> for Hides {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueKind)
            .map(|k| Hides(!matches!(k, Kind::False | Kind::Null)))
    }
}

/// What a scope or hidden field holds, as much as a drain needs to know.
enum Kind {
    Str(String),
    False,
    Null,
    Other,
}

struct ValueKind;

impl<'de> Visitor<'de> for ValueKind {
    type Value = Kind;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Kind, E> {
        Ok(Kind::Str(s.to_string()))
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Kind, E> {
        Ok(if b { Kind::Other } else { Kind::False })
    }
    fn visit_unit<E: de::Error>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Kind, E> {
        Ok(Kind::Other)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Kind, E> {
        Ok(Kind::Other)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Kind, E> {
        Ok(Kind::Other)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Kind::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Kind::Other)
    }
}

/// A key: `Some(i)` for the i-th scope field, `Some(scope.len())` for the hidden field,
/// `None` for any other (compared in place, never copied).
struct FieldSeed<'a>(ScanSeed<'a>);

impl<'de> DeserializeSeed<'de> for FieldSeed<'_> {
    type Value = Option<usize>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for FieldSeed<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Option<usize>, E> {
        let ScanSeed { scope, hidden } = self.0;
        Ok(scope
            .iter()
            .position(|f| f == key)
            .or((key == hidden).then_some(scope.len())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Vec<String> {
        vec!["user".into(), "userId".into()]
    }

    fn sc(line: &str) -> Option<Scan> {
        scan(line.as_bytes(), &scope(), "hidden")
    }

    #[test]
    fn a_line_names_its_users_and_may_be_hidden() {
        assert_eq!(
            sc(r#"{"msg":"x","user":"alice","n":[1,{"user":"bob"}]}"#),
            Some(Scan {
                users: vec!["alice".into()],
                hidden: false
            })
        );
        let s = sc(r#"{"userId":42,"user":"bob","hidden":true}"#).unwrap();
        assert_eq!(s.users, ["bob"], "only strings name users");
        assert!(s.hidden);
        let s = sc(r#"{"userId":"alice","user":"alice","pad":[1,{"a":[null]}]}"#).unwrap();
        assert_eq!(s.users, ["alice"], "one name, one delivery");
        assert!(sc(r#"{"user":"a","hidden":[]}"#).unwrap().hidden);
        assert!(!sc(r#"{"user":"a","hidden":false}"#).unwrap().hidden);
        assert!(!sc(r#"{"user":"a","hidden":null}"#).unwrap().hidden);
        assert!(
            sc(r#"{"user":"a","hidden":"yes"}"#).unwrap().hidden,
            "anything but false hides"
        );
        assert_eq!(sc(r#"{"user":{"name":"a"}}"#).unwrap().users.len(), 0);
        assert_eq!(sc(r#"{"us\u0065r":"alice"}"#).unwrap().users, ["alice"]);
    }

    /// The drain `logs` of the feed `svc/feed`.
    fn spec(max_line: usize) -> DrainSpec {
        DrainSpec {
            name: "logs".into(),
            feeds: vec![("svc".into(), "feed".into())],
            format: super::super::config::DrainFormat::Json,
            scope: vec!["user".into()],
            hidden: "hidden".into(),
            admins: vec![],
            admin_group: None,
            max_line,
            events: true,
        }
    }

    fn drains(max_line: usize) -> (Drains, Arc<Budget>) {
        let drains = Drains::new(&[spec(max_line)]);
        let budget = drains.all[0].budget.clone();
        (drains, budget)
    }

    /// Issue 11, defect 4: `admin_group` is a Unix group, so only a Unix account's
    /// identity is looked up in it; a key user asserted under the same name is not.
    #[test]
    fn the_admin_group_admits_unix_accounts_only() {
        let spec = DrainSpec {
            // root's primary group: root is a member on every system.
            admin_group: Some("root".into()),
            ..spec(1024)
        };
        let drains = Drains::new(&[spec]);
        let drain = drains.get("logs").unwrap();
        let root = |unix| Identity {
            user: "root".into(),
            key: None,
            admin: false,
            unix,
        };
        assert!(drain.is_admin(&root(true)));
        assert!(!drain.is_admin(&root(false)));
    }

    fn feed_key() -> TopicKey {
        TopicKey {
            owner: Owner::User("svc".into()),
            name: "feed".into(),
        }
    }

    #[test]
    fn lines_split_across_reads_reach_their_watcher_whole_and_counted() {
        let (drains, budget) = drains(1024);
        let drain = drains.get("logs").unwrap().clone();
        let alice = drain.watch("alice", false);
        let admin = drain.watch("root", true);
        let mut feed = drains.feed(&feed_key()).unwrap();
        feed.push(b"{\"user\":\"alice\",\"n\":1}\n{\"user\":\"al");
        feed.push(b"ice\",\"n\":2}\n{\"user\":\"bob\"}\nnot json\n");
        feed.push(&[b'x'; 600]);
        feed.push(&[b'y'; 600]);
        feed.push(b"\n{\"user\":\"alice\",\"n\":3}");
        feed.finish();
        let w = &alice.watcher;
        assert_eq!(drain.counts.invalid.load(Ordering::Relaxed), 1);
        assert_eq!(drain.counts.too_long.load(Ordering::Relaxed), 1);
        let all: Vec<u8> = w.peek(usize::MAX, None).concat();
        assert_eq!(
            String::from_utf8(all).unwrap(),
            "{\"user\":\"alice\",\"n\":1}\n{\"user\":\"alice\",\"n\":2}\n{\"user\":\"alice\",\"n\":3}\n"
        );
        // -n 2: the batch stops after the second line; a partial write counts only the
        // lines it completed.
        let two: Vec<u8> = w.peek(usize::MAX, Some(2)).concat();
        assert_eq!(two.iter().filter(|&&b| b == b'\n').count(), 2);
        assert_eq!(w.consume(5), 0);
        assert_eq!(w.consume(two.len() - 5), 2);
        assert_eq!(w.consume(w.queued()), 1);
        assert_eq!(w.queued(), 0);
        // The admin got the three lines, bob's, and two notices.
        let admin_lines = admin.watcher.peek(usize::MAX, None).concat();
        assert_eq!(admin_lines.iter().filter(|&&b| b == b'\n').count(), 6);
        drop((alice, admin));
        assert_eq!(budget.used(), 0, "dropped watchers give their bytes back");
    }

    #[test]
    fn a_full_queue_misses_lines_and_counts_them() {
        let (drains, _budget) = drains(64 * 1024);
        let drain = drains.get("logs").unwrap().clone();
        let alice = drain.watch("alice", false);
        let mut feed = drains.feed(&feed_key()).unwrap();
        let line = format!("{{\"user\":\"alice\",\"pad\":\"{}\"}}\n", "p".repeat(1000));
        let n = WATCH_QUEUE / line.len() + 10;
        for _ in 0..n {
            feed.push(line.as_bytes());
        }
        let queued = alice.watcher.queued();
        assert!(
            queued <= WATCH_QUEUE && queued + line.len() > WATCH_QUEUE,
            "{queued}"
        );
        let missed = alice.watcher.take_missed();
        assert_eq!(missed as usize, n - queued / line.len());
        assert_eq!(drain.counts.missed.load(Ordering::Relaxed), missed);
    }

    #[test]
    fn only_one_json_object_per_line_is_a_line() {
        for bad in [
            "",
            "garbage",
            "[1,2]",
            "\"user\"",
            r#"{"user":"a"} {"user":"b"}"#,
            r#"{"user":"a""#,
            r#"{"user":"a","user":"b"}"#,
            r#"{"hidden":false,"hidden":true}"#,
        ] {
            assert_eq!(sc(bad), None, "{bad}");
        }
        assert!(
            sc(" {\"user\":\"a\"}\r").is_some(),
            "JSON whitespace around is fine"
        );
        // Not UTF-8 inside a string the scan skips: Drain::ingest refuses it whole.
        let (drains, _) = drains(1024);
        let drain = drains.get("logs").unwrap();
        let mut feed = drains.feed(&feed_key()).unwrap();
        feed.push(b"{\"user\":\"alice\",\"m\":\"\xff\"}\n");
        assert_eq!(drain.counts.invalid.load(Ordering::Relaxed), 1);
    }
}
