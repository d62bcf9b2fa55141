//! `ls [--json]`: the live topics the caller may see, and the table they are shown in.

use super::access::allowed;
use super::stdout::write_listing;
use crate::broker::ctx::{Ctx, Outcome};
use crate::broker::fdio::Fd;
use crate::broker::topic::{Owner, TopicStats};

/// `ls`: the caller's own topics, those granted to it, and the public ones it created.
pub(super) async fn list(ctx: &Ctx, json: bool, out: &Fd) -> Outcome {
    let visible: Vec<_> = ctx
        .broker
        .snapshot()
        .into_iter()
        .filter(|t| match &t.key.owner {
            // Public topics are everyone's to use but not to list: the ones one made.
            Owner::Public => ctx.who.admin || t.creator == ctx.who.user,
            Owner::User(_) => allowed(ctx, &t.key),
        })
        .map(|t| {
            let mut stats = t.stats();
            // The grant is the owner's business: shown to the owner and the admin only.
            if let Owner::User(owner) = &t.key.owner {
                if owner == &ctx.who.user || ctx.who.admin {
                    stats.grant = ctx
                        .broker
                        .grants
                        .of_topic(owner, &t.key.name)
                        .iter()
                        .map(|g| g.to_string())
                        .collect();
                }
            }
            stats
        })
        .collect();
    write_listing(ctx, out, json, &visible, "no topics", table).await
}

/// The text `ls` prints: a header and one row per topic, columns wide enough for the
/// longest topic names and the counters of a busy day, so rows line up in a terminal.
fn table(topics: &[TopicStats]) -> String {
    let mut s = format!(
        "{:<40} {:>5} {:>5} {:>7} {:>12} {:>10} {:>8}  {}\n",
        "TOPIC", "PUBS", "SUBS", "WAITING", "BYTES", "BYTES/S", "AGE", "GRANT"
    );
    for t in topics {
        s.push_str(&format!(
            "{:<40} {:>5} {:>5} {:>7} {:>12} {:>10} {:>7}s  {}\n",
            t.topic,
            t.publishers,
            t.subscribers,
            t.waiting,
            t.bytes,
            t.rate,
            t.age_secs,
            t.grant.join(",")
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lines_each_topic_up_under_the_header() {
        let stats = TopicStats {
            topic: "alice/jobs".into(),
            publishers: 1,
            subscribers: 2,
            waiting: 0,
            bytes: 4096,
            rate: 12,
            age_secs: 7,
            grant: vec!["bob".into(), "carol".into()],
        };
        let text = table(&[stats]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("TOPIC "));
        assert!(lines[1].starts_with("alice/jobs "));
        assert!(lines[1].ends_with("7s  bob,carol"));
        assert_eq!(lines[0].find("GRANT"), lines[1].find("bob"));
    }
}
