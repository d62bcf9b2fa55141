//! `whoami`: the user (and key) the broker sees.

use super::stdout::write_all;
use crate::broker::ctx::{Ctx, Outcome};
use crate::broker::fdio::Fd;

pub(super) async fn whoami(ctx: &Ctx, out: &Fd) -> Outcome {
    let text = match &ctx.who.key {
        Some(key) => format!("{} {key}\n", ctx.who.user),
        None => format!("{}\n", ctx.who.user),
    };
    write_all(out, text.into()).await
}
