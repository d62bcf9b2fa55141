//! Opening the topic of a streaming request (`pub`, `sub`, `pipe`), named or random.

use super::access::{Access, resolve, set_grant};
use crate::broker::ctx::{Ctx, Outcome, fail, refused};
use crate::broker::registry::TopicHold;
use crate::broker::topic::{Owner, TopicKey};
use crate::exit::Exit;
use crate::proto::ToClient;
use crate::request::{AccessList, TopicRef as Named};

/// A streaming session's topic, opened.
pub(super) struct Attached {
    pub(super) held: TopicHold,
    pub(super) access: Access,
}

/// Resolves and opens the topic of a streaming request: the named one, or (for `pub` and
/// `pipe` without a topic) a fresh random one announced to the client. `-a` sets the
/// topic's grant first.
pub(super) async fn attach(
    ctx: &Ctx,
    topic: Option<&Named>,
    grant: &Option<AccessList>,
) -> Result<Attached, Outcome> {
    let (key, access) = match topic {
        Some(t) => resolve(ctx, t)?,
        // A durable grant on a name nobody will use again would only pile up.
        None if grant.is_some() => {
            return Err(fail(Exit::Usage, "-a needs a topic name"));
        }
        None => {
            let name = random_topic_name().map_err(|e| fail(Exit::Internal, e.to_string()))?;
            let key = TopicKey {
                owner: Owner::User(ctx.who.user.clone()),
                name,
            };
            (key, Access::Owned)
        }
    };
    let held = ctx.broker.open(key, &ctx.who.user).map_err(refused)?;
    if let Some(list) = grant {
        set_grant(ctx, &held.topic.key, list).await?;
    }
    if topic.is_none() {
        let name = held.topic.key.name.clone();
        let _ = ctx.ctl.try_send(ToClient::Topic { name });
    }
    Ok(Attached { held, access })
}

/// The name of a topic `pub` or `pipe` opened without one: 64 random bits as 16 hex digits,
/// unguessable enough that the topic is effectively private to whoever is told its name,
/// and short enough to type.
///
/// It reads `/dev/urandom` on the async thread on purpose: urandom never blocks once the
/// kernel's pool is initialised, which happens early in boot, long before sshd accepts the
/// login this session comes from, so the read costs what a small `read` costs.
fn random_topic_name() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
