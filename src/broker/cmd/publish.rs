//! `pub [TOPIC]`: the session's stdin into a topic.

use bytes::Bytes;

use super::access::unless_revoked;
use super::attach::{Attached, attach};
use super::logs::not_a_drain;
use crate::broker::ctx::{Ctx, Outcome};
use crate::broker::fdio::Fd;
use crate::broker::ingest::{Offer, Publisher, finish_publishing, pump};
use crate::broker::topic::Topic;
use crate::request::{Dispatch, Pub};

pub(super) async fn publish(ctx: &Ctx, p: &Pub, input: Fd, client: Fd) -> Result<Outcome, Outcome> {
    not_a_drain(ctx, p.topic.as_ref())?;
    let Attached { held, access } = attach(ctx, p.topic.as_ref(), &p.access).await?;
    let topic: &Topic = &held.topic;
    let work = async {
        publish_to(ctx, p, topic, &input, &client)
            .await
            .unwrap_or_else(|o| o)
    };
    Ok(unless_revoked(ctx, &topic.key, access, work).await)
}

async fn publish_to(
    ctx: &Ctx,
    p: &Pub,
    topic: &Topic,
    input: &Fd,
    client: &Fd,
) -> Result<Outcome, Outcome> {
    let publisher = Publisher::attach(topic);
    // A drain always takes a feed's lines: a publisher into a feed never waits for a
    // receiver, and raw subscribers get what arrives while they are there.
    let mut feed = ctx.broker.drains.feed(&topic.key);
    let offer = Offer {
        dispatch: p.dispatch,
        block: p.block && feed.is_none(),
        timeout: p.timeout,
        client,
    };
    if offer.block {
        offer.wait_for_receiver(ctx, topic).await?;
    }
    // A bare event (one NUL byte) is not a line: a drain would only count it as invalid.
    let end = if p.empty {
        offer.send(ctx, topic, Bytes::from_static(b"\0")).await?
    } else {
        pump(ctx, topic, input, &offer, feed.as_mut()).await?
    };
    if p.dispatch == Dispatch::RoundRobin {
        // Workers stay until every chunk is written, so a share handed back by one that
        // leaves early still finds a taker.
        let out = finish_publishing(ctx, topic, end).await;
        drop(publisher);
        // Never lost silently (pipe(1), `-d`): the rest of a line a departed worker was
        // writing cannot go to another, and nor can a share nobody is left to take.
        let unhanded = topic.take_unhanded(ctx.id);
        if unhanded > 0 {
            ctx.status(format!(
                "{unhanded} bytes could not be handed on from a departed round-robin receiver"
            ));
        }
        Ok(out)
    } else {
        // Leaving first lets plain subscribers end as soon as they have it all.
        drop(publisher);
        Ok(finish_publishing(ctx, topic, end).await)
    }
}
