//! `sub TOPIC` and `sub 'PATTERN'`: a topic (or every matching one) into the session's
//! stdout. `sub DRAIN` is `logs DRAIN`.

use std::sync::Arc;

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::access::unless_revoked;
use super::attach::{Attached, attach};
use super::logs::{drain_named, logs};
use crate::broker::ctx::{Ctx, Outcome, fail};
use crate::broker::deliver::{Subscriber, Wildcard, deliver, deliver_many};
use crate::broker::fdio::Fd;
use crate::broker::registry::Pattern;
use crate::broker::topic::Owner;
use crate::exit::Exit;
use crate::request::{Namespace, Sub};

pub(super) async fn subscribe(ctx: &Ctx, s: &Sub, output: Fd) -> Result<Outcome, Outcome> {
    if let Some(drain) = drain_named(&ctx.broker.drains, Some(&s.topic)) {
        if s.access.is_some() {
            return Err(fail(
                Exit::Usage,
                format!("{drain} is a drain: it takes no grant"),
            ));
        }
        return logs(ctx, drain, s.lines, output).await;
    }
    if s.topic.name.is_pattern() {
        return wildcard(ctx, s, output).await;
    }
    let Attached { held, access } = attach(ctx, Some(&s.topic), &s.access).await?;
    let sub = Subscriber::attach(&held.topic, ctx.id, false, !s.keep);
    let work = deliver(ctx, &sub, &output, s.lines);
    Ok(unless_revoked(ctx, &held.topic.key, access, work).await)
}

/// `sub 'logs-*'`: every matching topic the caller may use, now and later. Matching is
/// on the name within one namespace, never across owners.
async fn wildcard(ctx: &Ctx, s: &Sub, output: Fd) -> Result<Outcome, Outcome> {
    if s.access.is_some() {
        return Err(fail(Exit::Usage, "-a needs one topic, not a pattern"));
    }
    let owner = match &s.topic.namespace {
        Namespace::Own => Owner::User(ctx.who.user.clone()),
        Namespace::User(u) => Owner::User(u.as_str().to_string()),
        Namespace::Public => Owner::Public,
    };
    let (tx, new) = mpsc::unbounded_channel();
    let wake = Arc::new(Notify::new());
    let kill = CancellationToken::new();
    let pattern = Pattern {
        session: ctx.id,
        who: ctx.who.clone(),
        owner,
        name: s.topic.name.clone(),
        wake: wake.clone(),
        kill: kill.clone(),
        tx,
    };
    let (cursors, watch) = ctx.broker.watch_pattern(pattern);
    let w = Wildcard {
        wake,
        kill,
        cursors,
        new,
        watch,
    };
    Ok(deliver_many(ctx, w, &output, s.lines).await)
}
