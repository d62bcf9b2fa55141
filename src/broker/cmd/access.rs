//! Who may use a topic, as a request handler asks it: what a name resolves to for the
//! caller, the one answer for a topic it may not use, and cutting a session whose grant is
//! revoked. Setting a grant (`-a`) lives here too, since it decides the same question.

use tracing::{info, warn};

use crate::broker::ctx::{Ctx, Outcome, fail, refused};
use crate::broker::grants::{Grants, GrantsError};
use crate::broker::registry::Refused;
use crate::broker::topic::{Owner, TopicKey};
use crate::exit::Exit;
use crate::request::{AccessList, Grantee, Namespace, TopicRef as Named, UserName};

/// The one answer for a topic the caller may not use, whether or not it exists, so nobody
/// can probe for others' topic names (pipe(1), EXIT STATUS 3: the same answer on purpose).
pub(super) fn denied() -> Outcome {
    fail(Exit::Denied, "no such topic or access denied")
}

/// How the caller reaches a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Access {
    /// Its own, a public one, or the admin's: nothing can take it away.
    Owned,
    /// Through the owner's grant: re-checked whenever grants change.
    Granted,
}

/// Maps what the user wrote to a topic the caller may use.
pub(super) fn resolve(ctx: &Ctx, topic: &Named) -> Result<(TopicKey, Access), Outcome> {
    let who = &ctx.who;
    let name = topic.name.as_str().to_string();
    let (owner, access) = match &topic.namespace {
        Namespace::Own => (Owner::User(who.user.clone()), Access::Owned),
        Namespace::User(u) if u.as_str() == who.user || who.admin => {
            (Owner::User(u.as_str().to_string()), Access::Owned)
        }
        Namespace::User(u) if ctx.broker.grants.allows(u.as_str(), &name, who) => {
            (Owner::User(u.as_str().to_string()), Access::Granted)
        }
        Namespace::User(_) => return Err(denied()),
        Namespace::Public => (Owner::Public, Access::Owned),
    };
    Ok((TopicKey { owner, name }, access))
}

/// Whether the caller (still) may use `key`.
pub(super) fn allowed(ctx: &Ctx, key: &TopicKey) -> bool {
    ctx.broker.may_use(&ctx.who, key)
}

/// Runs `work` on a topic reached through a grant until it ends or the grant stops
/// naming the caller; a revocation cuts the session at once (pipe(1), `revoke`).
pub(super) async fn unless_revoked(
    ctx: &Ctx,
    key: &TopicKey,
    access: Access,
    work: impl Future<Output = Outcome>,
) -> Outcome {
    if access == Access::Owned {
        return work.await;
    }
    let mut changes = ctx.broker.grants.subscribe();
    // A revocation between the access check and the subscription above is caught here.
    if !allowed(ctx, key) {
        return fail(Exit::Denied, "access denied");
    }
    let revoked = async {
        while changes.changed().await.is_ok() {
            if !allowed(ctx, key) {
                return;
            }
        }
        std::future::pending::<()>().await
    };
    tokio::select! {
        out = work => out,
        () = revoked => {
            info!(session = ctx.id, topic = %key, "grant revoked");
            fail(Exit::Denied, "access denied")
        }
    }
}

/// `-a LIST`: the owner sets the grant on the topic to exactly LIST.
pub(super) async fn set_grant(ctx: &Ctx, key: &TopicKey, list: &AccessList) -> Result<(), Outcome> {
    let Owner::User(owner) = &key.owner else {
        return Err(fail(Exit::Usage, "public topics take no grant"));
    };
    if owner != &ctx.who.user && !ctx.who.admin {
        return Err(fail(
            Exit::Denied,
            "only the owner can change a topic's grant",
        ));
    }
    owns_grants(owner)?;
    let (owner, name, list) = (owner.clone(), key.name.clone(), list.0.clone());
    change_grants(ctx, move |grants| grants.set(&owner, &name, &list))
        .await
        .map(|_| ())
}

/// Runs a change of the durable grants on a blocking thread: it rewrites and fsyncs the
/// grants file under the writers' lock, which must hold none of the runtime's few worker
/// threads (other sessions' requests run there).
pub(super) async fn change_grants(
    ctx: &Ctx,
    change: impl FnOnce(&Grants) -> Result<Vec<Grantee>, GrantsError> + Send + 'static,
) -> Result<Vec<Grantee>, Outcome> {
    let broker = ctx.broker.clone();
    tokio::task::spawn_blocking(move || change(&broker.grants))
        .await
        .map_err(|_| fail(Exit::Internal, "could not keep the grant"))?
        .map_err(grants_failed)
}

/// Grants are kept by owner name, and the grants file takes only names of the request
/// language's form: a Unix login outside it (`John.Doe`) keeps its topics but cannot
/// share them, rather than write a file the next start would refuse.
pub(super) fn owns_grants(owner: &str) -> Result<(), Outcome> {
    UserName::new(owner).map(|_| ()).map_err(|_| {
        fail(
            Exit::Usage,
            "this user name cannot own grants (names are [a-z_][a-z0-9_-]*)",
        )
    })
}

pub(super) fn grants_failed(e: GrantsError) -> Outcome {
    match e {
        GrantsError::TooMany => refused(Refused::TooManyGrants),
        other => {
            warn!(error = %other, "keeping grants failed");
            fail(Exit::Internal, "could not keep the grant")
        }
    }
}
