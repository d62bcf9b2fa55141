//! `logs [DRAIN]`: the caller's lines of a scoped drain; and the rule that a drain's name
//! is for reading only.

use tracing::info;

use crate::broker::ctx::{Ctx, Outcome, fail};
use crate::broker::deliver::deliver_drain;
use crate::broker::drains::Drains;
use crate::broker::fdio::Fd;
use crate::exit::Exit;
use crate::request::{Namespace, Request, TopicRef as Named};

/// Whether `request` reads a drain (`logs`, or `sub` of a drain's name). Such a session
/// raises no event of its own: it would fill the very stream it reads.
pub fn reads_a_drain(request: &Request, drains: &Drains) -> bool {
    match request {
        Request::Logs(_) => true,
        Request::Sub(s) => drain_named(drains, Some(&s.topic)).is_some(),
        _ => false,
    }
}

/// The declared drain a bare topic name names: drains take precedence over the caller's own
/// topic of the same name, so `sub logs` reads the drain.
pub(super) fn drain_named<'a>(drains: &Drains, topic: Option<&'a Named>) -> Option<&'a str> {
    let t = topic?;
    let name = t.name.as_str();
    (t.namespace == Namespace::Own && drains.get(name).is_some()).then_some(name)
}

/// Refuses to write into a drain's name: its lines come from its feeds.
pub(super) fn not_a_drain(ctx: &Ctx, topic: Option<&Named>) -> Result<(), Outcome> {
    match drain_named(&ctx.broker.drains, topic) {
        Some(name) => Err(fail(
            Exit::Usage,
            format!("{name} is a drain: read it with `sub {name}`; services write into its feed"),
        )),
        None => Ok(()),
    }
}

/// `logs [DRAIN]` (or `sub DRAIN`): the caller's lines of a drain, or every line for its
/// admins, until the client leaves.
pub(super) async fn logs(
    ctx: &Ctx,
    name: &str,
    lines: Option<u64>,
    out: Fd,
) -> Result<Outcome, Outcome> {
    let Some(drain) = ctx.broker.drains.get(name).cloned() else {
        return Err(fail(Exit::Denied, format!("no such drain: {name}")));
    };
    let (d, who) = (drain.clone(), ctx.who.clone());
    // The admin group is looked up in the system's user database, which may block.
    let admin = tokio::task::spawn_blocking(move || d.is_admin(&who))
        .await
        .unwrap_or(false);
    let watch = drain.watch(&ctx.who.user, admin);
    info!(session = ctx.id, drain = name, admin, "watching a drain");
    Ok(deliver_drain(ctx, &watch.watcher, &out, lines).await)
}
