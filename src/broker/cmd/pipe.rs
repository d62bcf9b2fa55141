//! `pipe [TOPIC]`: both directions at once, a room with join and leave notices.

use std::time::Duration;

use super::access::unless_revoked;
use super::attach::{Attached, attach};
use super::logs::not_a_drain;
use crate::broker::ctx::{Ctx, Outcome};
use crate::broker::deliver::{Subscriber, deliver};
use crate::broker::fdio::Fd;
use crate::broker::ingest::{Offer, Publisher, finish_publishing, pump};
use crate::broker::topic::{SessionId, Topic};
use crate::request::PipeReq;

pub(super) async fn pipe(
    ctx: &Ctx,
    p: &PipeReq,
    input: Fd,
    output: Fd,
) -> Result<Outcome, Outcome> {
    not_a_drain(ctx, p.topic.as_ref())?;
    let Attached { held, access } = attach(ctx, p.topic.as_ref(), &p.access).await?;
    let topic: &Topic = &held.topic;
    let mut feed = ctx.broker.drains.feed(&topic.key);
    let sub = Subscriber::attach(topic, ctx.id, p.replay, false);
    let _room = Room::join(topic, ctx);
    // A participant writes into the topic like any `pub`: plain subscribers end once the
    // last one has left (pipe(1), `sub`).
    let _publisher = Publisher::attach(topic);
    // A pipe never waits for receivers: what nobody hears is dropped (pipe(1), `pipe`).
    let offer = Offer {
        dispatch: p.dispatch,
        block: false,
        timeout: Duration::ZERO,
        client: &output,
    };
    // Receiving goes on while this client's last writes are delivered (with `-r` it is
    // one of their receivers), so the drain lives inside the publishing future.
    let publishing = async {
        match pump(ctx, topic, &input, &offer, feed.as_mut()).await {
            Ok(end) => finish_publishing(ctx, topic, end).await,
            Err(o) => o,
        }
    };
    let work = async {
        tokio::select! {
            out = publishing => out,
            got = deliver(ctx, &sub, &output, None) => got,
        }
    };
    Ok(unless_revoked(ctx, &topic.key, access, work).await)
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
