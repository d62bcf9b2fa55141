//! Eviction: whom the broker-wide budget drops when it is spent.
//!
//! Each topic's window bounds what that topic buffers; the budget ([`Limits::budget`])
//! bounds the sum over all topics, so many stalled readers cannot take the machine's memory
//! (pipe(1), FLOW CONTROL). A publisher whose chunk does not fit the budget
//! ([`Append::OverBudget`]) asks [`BudgetWait::make_room`], which drops the subscriber
//! furthest behind anywhere: first among those idle for [`BUDGET_GRACE`], and once the
//! publisher has waited the grace out, whether it moves or not. The dropped session ends
//! with exit 5, as a stalled subscriber's does.
//!
//! [`Limits::budget`]: super::config::Limits::budget
//! [`Append::OverBudget`]: super::topic::Append::OverBudget

use std::time::Duration;

use tokio::time::Instant;
use tracing::warn;

use super::registry::Broker;
use super::topic::{SubId, Topic};

/// How long a subscriber must have made no progress before the budget may drop it: any
/// reader that is moving at all shows progress within a second, and other tenants'
/// publishers wait at most about this long when the budget is spent.
pub const BUDGET_GRACE: Duration = Duration::from_secs(1);

/// One publisher's wait for room in the spent budget.
#[derive(Debug, Default)]
pub struct BudgetWait {
    /// When this publisher first found the budget spent for its current chunk.
    since: Option<Instant>,
}

impl BudgetWait {
    /// Drops one subscriber to make room, if the policy allows one now. True when one was
    /// dropped (try the chunk again); false means wait for the budget to move.
    pub fn make_room(&mut self, broker: &Broker) -> bool {
        // Idle laggards go first; once this publisher has waited the grace out, the
        // most-lagging subscriber goes whether it moves or not, so slow readers elsewhere
        // cannot hold everyone's publishers for ever.
        let since = *self.since.get_or_insert_with(Instant::now);
        let idle = if since.elapsed() >= BUDGET_GRACE {
            Duration::ZERO
        } else {
            BUDGET_GRACE
        };
        evict_most_lagging(broker, idle)
    }
}

/// The budget is spent: drops the subscriber furthest behind, on any topic, among those
/// that have not moved for `idle`. False if there is none.
pub fn evict_most_lagging(broker: &Broker, idle: Duration) -> bool {
    let worst = broker
        .snapshot()
        .into_iter()
        .filter_map(|t| most_lagging(&t, idle).map(|(lag, id)| (lag, id, t)))
        .max_by_key(|&(lag, _, _)| lag);
    match worst {
        Some((lag, id, topic)) => {
            warn!(topic = %topic.key, lag, "budget spent: dropping the most-lagging subscriber");
            topic.drop_sub(id);
            true
        }
        None => false,
    }
}

/// The subscriber of `topic` furthest behind the head among those that have not moved for
/// `idle`, with how far behind it is.
fn most_lagging(topic: &Topic, idle: Duration) -> Option<(u64, SubId)> {
    topic
        .lags()
        .into_iter()
        .filter(|l| l.still >= idle)
        .map(|l| (l.behind, l.sub))
        .filter(|&(lag, _)| lag > 0)
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::config::Limits;
    use crate::broker::grants::Grants;
    use crate::broker::registry::Broker;
    use crate::broker::topic;
    use crate::broker::topic::{Append, Budget, Owner, TopicKey};
    use crate::request::Dispatch;
    use bytes::Bytes;
    use std::sync::Arc;

    fn topic_with(budget: Arc<Budget>) -> Topic {
        let key = TopicKey {
            owner: Owner::User("alice".into()),
            name: "t".into(),
        };
        Topic::new(key, "alice", 1000, budget)
    }

    #[test]
    fn only_a_subscriber_idle_long_enough_and_behind_is_the_most_lagging() {
        let t = topic_with(Arc::new(Budget::new(usize::MAX / 2)));
        let lagging = t.attach_sub(1, false, true);
        assert_eq!(most_lagging(&t, Duration::ZERO), None, "nobody is behind");
        let piece = Bytes::from(vec![0u8; 60]);
        assert!(matches!(
            t.try_append(9, &piece, Dispatch::Multicast, true),
            Append::Done(_)
        ));
        assert_eq!(
            most_lagging(&t, Duration::from_secs(3600)),
            None,
            "it just moved"
        );
        assert_eq!(most_lagging(&t, Duration::ZERO), Some((60, lagging.id)));
    }

    #[test]
    fn the_budget_drops_the_subscriber_furthest_behind_on_any_topic() {
        let broker = Arc::new(Broker::new(Limits::default(), None, Grants::in_memory()));
        let key = |name: &str| TopicKey {
            owner: Owner::User("alice".into()),
            name: name.into(),
        };
        let a = broker.open(key("a"), "alice").unwrap();
        let b = broker.open(key("b"), "alice").unwrap();
        let near = a.topic.attach_sub(1, false, true);
        let far = b.topic.attach_sub(2, false, true);
        let append = |t: &topic::Topic, n: usize| {
            t.try_append(9, &Bytes::from(vec![0u8; n]), Dispatch::Multicast, true)
        };
        assert!(matches!(append(&a.topic, 10), Append::Done(_)));
        assert!(matches!(append(&b.topic, 50), Append::Done(_)));
        assert!(!evict_most_lagging(&broker, Duration::from_secs(3600)));
        assert!(evict_most_lagging(&broker, Duration::ZERO));
        assert!(far.kill.is_cancelled(), "50 bytes behind goes first");
        assert!(!near.kill.is_cancelled());
    }
}
