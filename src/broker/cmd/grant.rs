//! `grant TOPIC LIST`, `revoke TOPIC LIST`, `grants [--json]`: the caller's durable grants.

use tracing::info;

use super::access::{change_grants, denied, owns_grants, resolve};
use super::stdout::{write_all, write_listing};
use crate::broker::ctx::{Ctx, Outcome, fail};
use crate::broker::fdio::Fd;
use crate::broker::topic::Owner;
use crate::exit::Exit;
use crate::request::GrantReq;

#[derive(Debug, Clone, Copy)]
pub(super) enum GrantChange {
    Add,
    Remove,
}

/// `grant TOPIC LIST` / `revoke TOPIC LIST`: the owner edits the durable grant, whether or
/// not the topic is live, and gets the resulting grant as one line on stdout.
pub(super) async fn change_grant(
    ctx: &Ctx,
    g: &GrantReq,
    change: GrantChange,
    out: &Fd,
) -> Result<Outcome, Outcome> {
    let (key, _) = resolve(ctx, &g.topic)?;
    let Owner::User(owner) = &key.owner else {
        return Err(fail(Exit::Usage, "public topics take no grant"));
    };
    if owner != &ctx.who.user && !ctx.who.admin {
        // Granted users may use the topic but not see or change who else may.
        return Err(denied());
    }
    owns_grants(owner)?;
    let (owner, name, list) = (owner.clone(), key.name.clone(), g.list.0.clone());
    let now = change_grants(ctx, move |grants| match change {
        GrantChange::Add => grants.add(&owner, &name, &list),
        GrantChange::Remove => grants.remove(&owner, &name, &list),
    })
    .await?;
    info!(session = ctx.id, topic = %key, ?change, grant = ?now, "grant changed");
    let list: Vec<String> = now.iter().map(|g| g.to_string()).collect();
    let line = if list.is_empty() {
        format!("{key}\n")
    } else {
        format!("{key} {}\n", list.join(","))
    };
    Ok(write_all(out, line.into()).await)
}

/// `grants [--json]`: the caller's durable grants, live topics or not.
pub(super) async fn list_grants(ctx: &Ctx, json: bool, out: &Fd) -> Outcome {
    #[derive(serde::Serialize)]
    struct Entry {
        topic: String,
        grant: Vec<String>,
    }
    let entries: Vec<Entry> = ctx
        .broker
        .grants
        .of_owner(&ctx.who.user)
        .into_iter()
        .map(|(name, list)| Entry {
            topic: format!("{}/{name}", ctx.who.user),
            grant: list.iter().map(|g| g.to_string()).collect(),
        })
        .collect();
    write_listing(ctx, out, json, &entries, "no grants", |entries| {
        entries
            .iter()
            .map(|e| format!("{} {}\n", e.topic, e.grant.join(",")))
            .collect()
    })
    .await
}
