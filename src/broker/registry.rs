//! The broker's shared state: the registry of live topics, the wildcard subscriptions
//! waiting for new ones, and the caps, with the RAII guards that give back what a session
//! took (its hold on a topic, its place under the caps, its wildcard watch).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::config::{DrainSpec, Limits};
use super::drains::Drains;
use super::grants::Grants;
use super::identity::Identity;
use super::lock::lock;
use super::topic::{self, Budget, Owner, SubHandle, Topic, TopicKey};
use crate::request::TopicName;

/// piped's own events one user may raise a second (two per session: its start and end).
/// Beyond it they go to the journal only, so a user looping over bad requests cannot
/// crowd other users' events out of the event queue nor fill the admins' drain queues.
pub const USER_EVENTS_PER_SEC: u32 = 40;

/// The window [`USER_EVENTS_PER_SEC`] counts over.
const EVENT_WINDOW: Duration = Duration::from_secs(1);

/// Users' event counts kept before stale ones are swept (one sweep per this many users).
const EVENT_USERS_KEPT: usize = 1024;

/// Shared state of the running broker.
pub struct Broker {
    /// The limits in force; a reload replaces the `Arc` (see [`Broker::limits`]).
    limits: RwLock<Arc<Limits>>,
    /// uid allowed to assert identities (`--user`), if the service account exists.
    pub service_uid: Option<u32>,
    pub grants: Grants,
    /// The scoped drains declared in the config (fixed at start).
    pub drains: Arc<Drains>,
    topics: Mutex<HashMap<TopicKey, Arc<Topic>>>,
    /// Wildcard subscriptions, attached to every matching topic as it is created.
    patterns: Mutex<Vec<Pattern>>,
    budget: Arc<Budget>,
    /// Live sessions per user.
    sessions: Mutex<HashMap<String, usize>>,
    /// Per user: the second being counted and the events raised in it.
    events: Mutex<HashMap<String, (Instant, u32)>>,
    /// Connections open, counted against [`Limits::max_connections`] from `accept`.
    connections: Arc<AtomicUsize>,
    next_id: AtomicU64,
    /// Stop taking input; finish what was accepted.
    pub soft: CancellationToken,
    /// Stop now.
    pub hard: CancellationToken,
}

/// Why a topic or session could not be opened (exit 6).
#[derive(Debug, PartialEq, Eq, Error)]
pub enum Refused {
    #[error("too many connections")]
    TooManyConnections,
    #[error("too many sessions for this user")]
    TooManySessions,
    #[error("too many topics for this user")]
    TooManyTopics,
    #[error("too many public topics for this user")]
    TooManyPublicTopics,
    #[error("too many grant entries for this user")]
    TooManyGrants,
}

impl Broker {
    pub fn new(limits: Limits, service_uid: Option<u32>, grants: Grants) -> Broker {
        Broker {
            grants: grants.with_max_entries(limits.max_grant_entries),
            drains: Arc::new(Drains::default()),
            budget: Arc::new(Budget::new(limits.budget)),
            connections: Arc::new(AtomicUsize::new(0)),
            limits: RwLock::new(Arc::new(limits)),
            service_uid,
            topics: Mutex::new(HashMap::new()),
            patterns: Mutex::new(Vec::new()),
            sessions: Mutex::new(HashMap::new()),
            events: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            soft: CancellationToken::new(),
            hard: CancellationToken::new(),
        }
    }

    /// This broker with the drains `specs` declare.
    pub fn with_drains(mut self, specs: &[DrainSpec]) -> Broker {
        self.drains = Arc::new(Drains::new(specs));
        self
    }

    /// The limits in force now. Read at each decision rather than kept, so a reload
    /// applies to sessions already running.
    pub fn limits(&self) -> Arc<Limits> {
        self.limits
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Puts new limits in force (a reload): caps and the stall timeout from their next
    /// use, the budget and grant cap at once, each live topic's window from its next write.
    /// Nothing running is ended for a lower cap.
    pub fn set_limits(&self, new: Limits) {
        self.budget.set_limit(new.budget);
        self.grants.set_max_entries(new.max_grant_entries);
        let window = new.window;
        *self.limits.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(new);
        // After the swap: a topic created meanwhile read either limit under the registry
        // lock and is in this snapshot, or read the new one.
        for topic in self.snapshot() {
            topic.set_window(window);
            // Publishers waiting for room look again (a larger window or budget).
            topic.changed.notify_waiters();
        }
    }

    /// A place under the connection cap, or `None` when it is reached.
    pub fn take_connection(&self) -> Option<Connection> {
        let max = self.limits().max_connections;
        self.connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Connection {
                count: self.connections.clone(),
            })
    }

    /// A new session's id, unique for the life of the broker.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn topics(&self) -> MutexGuard<'_, HashMap<TopicKey, Arc<Topic>>> {
        lock(&self.topics)
    }

    /// Attaches a session to a topic, creating it within the per-user caps.
    pub fn open(self: &Arc<Self>, key: TopicKey, user: &str) -> Result<TopicHold, Refused> {
        let mut topics = self.topics();
        let (topic, undelivered) = match topics.get(&key) {
            Some(t) => (t.clone(), Vec::new()),
            None => {
                // Counting walks the live topics, but only when one is created, and the
                // per-user caps keep the map small. Public topics count against whoever
                // created them.
                let limits = self.limits();
                let (cap, refusal, mine) = match &key.owner {
                    Owner::Public => (
                        limits.max_public_topics,
                        Refused::TooManyPublicTopics,
                        topics
                            .values()
                            .filter(|t| t.key.owner == Owner::Public && t.creator == user)
                            .count(),
                    ),
                    owner => (
                        limits.max_user_topics,
                        Refused::TooManyTopics,
                        topics.keys().filter(|k| &k.owner == owner).count(),
                    ),
                };
                if mine >= cap {
                    return Err(refusal);
                }
                let t = Arc::new(Topic::new(
                    key.clone(),
                    user,
                    limits.window,
                    self.budget.clone(),
                ));
                topics.insert(key, t.clone());
                // Wildcard subscribers join before anyone publishes, so they miss nothing
                // and a waiting `pub -b` counts them.
                let undelivered: Vec<Cursor> = lock(&self.patterns)
                    .iter()
                    .filter(|p| p.covers(self, &t.key))
                    .filter_map(|p| p.tx.send(p.attach(&t)).err().map(|e| e.0))
                    .collect();
                (t, undelivered)
            }
        };
        // Entered under the registry lock, so the last other session leaving cannot
        // forget the topic in between.
        let held = self.hold(topic);
        drop(topics);
        // Dropped outside the registry lock: a cursor's TopicHold takes it.
        drop(undelivered);
        Ok(held)
    }

    fn hold(self: &Arc<Self>, topic: Arc<Topic>) -> TopicHold {
        topic.enter();
        TopicHold {
            broker: self.clone(),
            topic,
        }
    }

    /// Whether `who` may use `key`: its own and public topics, any topic for the admin,
    /// another's through its grant.
    pub fn may_use(&self, who: &Identity, key: &TopicKey) -> bool {
        match &key.owner {
            Owner::Public => true,
            Owner::User(u) => u == &who.user || who.admin || self.grants.allows(u, &key.name, who),
        }
    }

    /// Starts a wildcard subscription: cursors on every matching topic now, and (through
    /// `tx`) on every matching topic created until the returned guard is dropped.
    pub fn watch_pattern(self: &Arc<Self>, pattern: Pattern) -> (Vec<Cursor>, PatternGuard) {
        let topics = self.topics();
        let now = topics
            .values()
            .filter(|t| pattern.covers(self, &t.key))
            .map(|t| pattern.attach(t))
            .collect();
        let id = pattern.session;
        lock(&self.patterns).push(pattern);
        drop(topics);
        let guard = PatternGuard {
            broker: self.clone(),
            session: id,
        };
        (now, guard)
    }

    /// Live topics, for `ls`.
    pub fn snapshot(&self) -> Vec<Arc<Topic>> {
        let mut all: Vec<Arc<Topic>> = self.topics().values().cloned().collect();
        all.sort_by(|a, b| a.key.cmp(&b.key));
        all
    }

    /// Whether `user` may raise one more of piped's own events this second
    /// ([`USER_EVENTS_PER_SEC`]).
    pub fn event_allowed(&self, user: &str) -> bool {
        let now = Instant::now();
        let mut events = lock(&self.events);
        if events.len() >= EVENT_USERS_KEPT {
            events.retain(|_, (since, _)| now.duration_since(*since) < EVENT_WINDOW);
        }
        let (since, n) = events.entry(user.to_string()).or_insert((now, 0));
        if now.duration_since(*since) >= EVENT_WINDOW {
            (*since, *n) = (now, 0);
        }
        *n += 1;
        *n <= USER_EVENTS_PER_SEC
    }

    /// Counts a new session against the per-user cap.
    pub fn admit(self: &Arc<Self>, user: &str) -> Result<Admission, Refused> {
        let mut sessions = lock(&self.sessions);
        let mine = sessions.entry(user.to_string()).or_insert(0);
        if *mine >= self.limits().max_user_sessions {
            return Err(Refused::TooManySessions);
        }
        *mine += 1;
        Ok(Admission {
            broker: self.clone(),
            user: user.to_string(),
        })
    }
}

/// A wildcard subscription: `sub 'logs-*'`.
pub struct Pattern {
    pub session: topic::SessionId,
    pub who: Identity,
    pub owner: Owner,
    pub name: TopicName,
    pub wake: Arc<tokio::sync::Notify>,
    pub kill: CancellationToken,
    /// New cursors for the session. Unbounded, but only one message per matching topic the
    /// caller may use, which the per-user topic caps bound.
    pub tx: mpsc::UnboundedSender<Cursor>,
}

impl Pattern {
    fn covers(&self, broker: &Broker, key: &TopicKey) -> bool {
        key.owner == self.owner && self.name.matches(&key.name) && broker.may_use(&self.who, key)
    }

    fn attach(&self, topic: &Arc<Topic>) -> Cursor {
        let handle = topic.attach_sub_with(
            self.session,
            false,
            false,
            self.wake.clone(),
            self.kill.clone(),
        );
        Cursor::new(topic.clone(), handle)
    }
}

/// Ends a wildcard subscription's watch for new topics.
pub struct PatternGuard {
    broker: Arc<Broker>,
    session: topic::SessionId,
}

impl Drop for PatternGuard {
    fn drop(&mut self) {
        lock(&self.broker.patterns).retain(|p| p.session != self.session);
    }
}

/// A session's hold on a topic; leaving forgets the topic when nobody uses it any more.
pub struct TopicHold {
    broker: Arc<Broker>,
    pub topic: Arc<Topic>,
}

impl Drop for TopicHold {
    fn drop(&mut self) {
        let mut topics = self.broker.topics();
        if self.topic.leave() {
            topics.remove(&self.topic.key);
            self.topic.forget();
        }
    }
}

/// A connection's place under [`Limits::max_connections`], given back when dropped.
pub struct Connection {
    count: Arc<AtomicUsize>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A session's place in the connection caps.
pub struct Admission {
    broker: Arc<Broker>,
    user: String,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut sessions = lock(&self.broker.sessions);
        if let Some(n) = sessions.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                sessions.remove(&self.user);
            }
        }
    }
}

/// A wildcard subscription's place on one matching topic. It does not hold the topic
/// open: a wildcard that matches everything must not keep others' topics (and their caps)
/// alive; when the topic is forgotten the cursor goes, and a topic of the same name created
/// later gets a new one.
pub struct Cursor {
    pub(super) topic: Arc<Topic>,
    pub(super) handle: SubHandle,
}

impl Cursor {
    pub fn new(topic: Arc<Topic>, handle: SubHandle) -> Cursor {
        Cursor { topic, handle }
    }
}

impl Drop for Cursor {
    fn drop(&mut self) {
        self.topic.detach_sub(self.handle.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Dispatch;
    use bytes::Bytes;
    use topic::{Append, CHUNK};

    fn key(name: &str) -> TopicKey {
        TopicKey {
            owner: Owner::User("alice".into()),
            name: name.into(),
        }
    }

    #[test]
    fn new_limits_apply_to_live_topics_and_to_the_next_session() {
        let limits = Limits {
            window: CHUNK,
            max_user_sessions: 2,
            max_connections: 1,
            max_user_topics: 2,
            ..Limits::default()
        };
        let broker = Arc::new(Broker::new(limits.clone(), None, Grants::in_memory()));
        let t = broker.open(key("t"), "alice").unwrap();
        let _sub = t.topic.attach_sub(1, false, true);
        let chunk = Bytes::from(vec![0u8; CHUNK]);
        let append = || t.topic.try_append(2, &chunk, Dispatch::Multicast, true);
        assert!(matches!(append(), Append::Done(_)));
        assert_eq!(append(), Append::Full);
        let a1 = broker.admit("alice").unwrap();
        let a2 = broker.admit("alice").unwrap();
        let _c = broker.take_connection().unwrap();
        assert!(broker.take_connection().is_none());
        let _u = broker.open(key("u"), "alice").unwrap();

        broker.set_limits(Limits {
            window: 2 * CHUNK,
            max_user_sessions: 1,
            max_connections: 2,
            max_user_topics: 1,
            ..limits.clone()
        });
        assert!(
            matches!(append(), Append::Done(_)),
            "a live topic takes the new window at its next write"
        );
        assert!(broker.take_connection().is_some(), "a raised cap admits");
        // A lowered cap refuses new sessions and topics, and ends none of the live ones.
        assert_eq!(broker.admit("alice").err(), Some(Refused::TooManySessions));
        assert!(
            matches!(broker.open(key("v"), "alice"), Err(Refused::TooManyTopics)),
            "a third topic over the lowered cap"
        );
        assert!(
            broker.open(key("t"), "alice").is_ok(),
            "joining a live topic"
        );
        drop(a1);
        assert!(broker.admit("alice").is_err(), "still at the lowered cap");
        drop(a2);
        assert!(broker.admit("alice").is_ok());

        broker.set_limits(Limits {
            window: 4 * CHUNK,
            budget: CHUNK,
            ..limits
        });
        assert_eq!(
            append(),
            Append::OverBudget,
            "a lowered budget binds at once"
        );
    }
}
