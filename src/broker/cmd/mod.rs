//! The request handlers, one file per verb of the request language (pipe(1), COMMANDS),
//! and [`apply`], which runs a parsed [`Request`] on its session.
//!
//! - [`publish`]: `pub`; [`subscribe`]: `sub` (one topic or a pattern); [`pipe`]: `pipe`;
//!   [`logs`]: `logs` and `sub DRAIN`; [`ls`]: `ls`; [`grant`]: `grant`, `revoke`,
//!   `grants`; [`whoami`]: `whoami`.
//! - Shared by the verbs: [`access`] (who may use a topic, revocation), [`attach`]
//!   (opening a streaming request's topic, random names) and [`stdout`] (answers on stdout).
//!
//! A handler returns `Result<Outcome, Outcome>` when it can be refused before it starts
//! (the `Err` is the refusal), or a plain [`Outcome`]; either way the session sends it as
//! the final status.

pub mod access;
pub mod attach;
pub mod grant;
pub mod logs;
pub mod ls;
pub mod pipe;
pub mod publish;
pub mod stdout;
pub mod subscribe;
pub mod whoami;

use std::os::fd::OwnedFd;

use crate::broker::ctx::{Ctx, OK, Outcome, fail};
use crate::broker::fdio::Fd;
use crate::exit::Exit;
use crate::request::Request;

pub use logs::reads_a_drain;

/// Runs `request` on its session to the end: the descriptors are the session's stdin and
/// stdout, in that order, as the hello passed them.
pub async fn apply(ctx: &Ctx, request: Request, fds: Vec<OwnedFd>) -> Outcome {
    let mut fds = fds.into_iter();
    let (Some(stdin), Some(stdout)) = (fds.next(), fds.next()) else {
        return fail(Exit::Internal, "missing descriptors");
    };
    let run = async {
        let open = |fd| Fd::new(fd).map_err(|e| fail(Exit::Internal, format!("stdio: {e}")));
        Ok(match request {
            Request::Pub(p) => publish::publish(ctx, &p, open(stdin)?, open(stdout)?).await?,
            Request::Sub(s) => subscribe::subscribe(ctx, &s, open(stdout)?).await?,
            Request::Pipe(p) => pipe::pipe(ctx, &p, open(stdin)?, open(stdout)?).await?,
            Request::Ls(ls) => ls::list(ctx, ls.json, &open(stdout)?).await,
            Request::Whoami => whoami::whoami(ctx, &open(stdout)?).await,
            Request::Grant(g) => {
                grant::change_grant(ctx, &g, grant::GrantChange::Add, &open(stdout)?).await?
            }
            Request::Revoke(g) => {
                grant::change_grant(ctx, &g, grant::GrantChange::Remove, &open(stdout)?).await?
            }
            Request::Grants(ls) => grant::list_grants(ctx, ls.json, &open(stdout)?).await,
            Request::Logs(l) => logs::logs(ctx, l.drain.as_str(), l.lines, open(stdout)?).await?,
            // pipe-shell answers these itself; a client that sends them anyway gets nothing.
            Request::Help | Request::Version => OK,
        })
    };
    run.await.unwrap_or_else(|refusal: Outcome| refusal)
}
