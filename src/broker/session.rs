//! One connection: hello, identity, the request, the final status.
//!
//! A session task owns the descriptors the client passed and runs its request through
//! [`super::cmd::apply`]. Publishing ([`super::ingest`]) reads the session's stdin into
//! chunks and offers them to the topic; subscribing ([`super::deliver`]) writes the topic's
//! chunks into the session's stdout. Both stop when the client's `pipe-shell` goes away
//! (its control socket closes) or the broker shuts down.

use std::sync::Arc;

use tokio::net::UnixStream;
use tokio::net::unix::OwnedReadHalf;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::cmd;
use super::ctx::{Ctx, FINAL_FRAME_DEADLINE, Outcome, SHUTTING_DOWN, fail, refused};
use super::drains::EVENTS;
use super::identity;
use super::registry::{Broker, Connection};
use super::topic::SessionId;
use crate::exit::Exit;
use crate::proto::{self, PROTOCOL_VERSION, ToClient};
use crate::request::Request;

/// Status frames queued per client. They are rare (joins, leaves, waiting); a client that
/// does not read them loses notices rather than holding broker memory.
const CONTROL_QUEUE: usize = 16;

/// Serves one connection to the end. `slot` is its place under the connection cap.
pub async fn handle(broker: Arc<Broker>, stream: UnixStream, slot: Connection) {
    let _slot = slot;
    let uid = match stream.peer_cred() {
        Ok(c) => c.uid(),
        Err(e) => {
            debug!(error = %e, "no peer credentials");
            return;
        }
    };
    let hello_deadline = broker.limits().hello_deadline;
    let hello = tokio::time::timeout(
        hello_deadline,
        proto::recv_hello(&stream, proto::PASSED_FDS),
    )
    .await;
    let (hello, fds) = match hello {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => {
            debug!(uid, error = %e, "bad hello");
            return reply(stream, fail(Exit::Internal, format!("protocol error: {e}"))).await;
        }
        Err(_) => {
            debug!(uid, "hello deadline passed");
            return;
        }
    };
    if hello.version != PROTOCOL_VERSION {
        let msg = "pipe-shell and piped are different versions (restart piped after upgrading)";
        return reply(stream, fail(Exit::Internal, msg)).await;
    }
    let service_uid = broker.service_uid;
    let (user, key) = (hello.user.clone(), hello.key.clone());
    let who = tokio::task::spawn_blocking(move || {
        identity::resolve(uid, service_uid, user.as_deref(), key.as_deref())
    })
    .await;
    let who = match who {
        Ok(Ok(w)) => w,
        Ok(Err(denied)) => return reply(stream, fail(Exit::Denied, denied.to_string())).await,
        Err(_) => return reply(stream, fail(Exit::Internal, "identity lookup failed")).await,
    };
    let request = match Request::parse(hello.request.as_bytes()) {
        Ok(r) => r,
        Err(e) => {
            let out = fail(Exit::Usage, e.to_string());
            ended(&broker, None, &who.user, &out);
            return reply(stream, out).await;
        }
    };
    let admission = match broker.admit(&who.user) {
        Ok(a) => a,
        Err(r) => {
            let out = refused(r);
            ended(&broker, None, &who.user, &out);
            return reply(stream, out).await;
        }
    };

    let (rd, mut wr) = stream.into_split();
    let (ctl, mut ctl_rx) = mpsc::channel::<ToClient>(CONTROL_QUEUE);
    let cancel = broker.hard.child_token();
    let client_gone = CancellationToken::new();
    let id = broker.next_id();
    // Reading a drain is not an event of its own: it would fill the very stream it reads.
    let watching = cmd::reads_a_drain(&request, &broker.drains);
    if watching || !broker.event_allowed(&who.user) {
        info!(session = id, user = %who.user, request = %hello.request, "session start");
    } else {
        info!(target: EVENTS, session = id, user = %who.user, request = %hello.request, "session started");
    }
    let ctx = Ctx {
        broker: broker.clone(),
        id,
        who,
        ctl,
        cancel: cancel.clone(),
    };
    let writer = tokio::spawn(async move {
        while let Some(msg) = ctl_rx.recv().await {
            let last = matches!(msg, ToClient::Exit { .. });
            let write = proto::write_frame(&mut wr, &msg);
            match tokio::time::timeout(FINAL_FRAME_DEADLINE, write).await {
                Ok(Ok(())) if !last => {}
                _ => break,
            }
        }
    });
    let watcher = tokio::spawn(watch_client(rd, cancel.clone(), client_gone.clone()));

    let outcome = tokio::select! {
        out = cmd::apply(&ctx, request, fds) => out,
        _ = cancel.cancelled() => fail(Exit::Unavailable, SHUTTING_DOWN),
    };
    watcher.abort();
    if client_gone.is_cancelled() {
        let gone = (Exit::Ok, Some("client gone".to_string()));
        if watching {
            info!(session = id, "session end: client gone");
        } else {
            ended(&broker, Some(id), &ctx.who.user, &gone);
        }
    } else if watching && outcome.0 == Exit::Ok {
        info!(session = id, exit = 0, "session end");
    } else {
        ended(&broker, Some(id), &ctx.who.user, &outcome);
    }
    let (code, message) = outcome;
    // The session is over before its client hears so: a client that has its final status
    // and starts the next session must find its place under the cap free again.
    drop(admission);
    let _ = ctx.ctl.send(ToClient::Exit { code, message }).await;
    drop(ctx);
    let _ = writer.await;
}

/// The event of a session's end (or of a request refused before one began), for the user's
/// drains: why it ended is what a user most needs to see there (pipe(5), SCOPED DRAINS,
/// `events`). Over the user's event rate it goes to the journal only.
fn ended(broker: &Broker, session: Option<SessionId>, user: &str, (code, message): &Outcome) {
    let reason = message.as_deref().unwrap_or("");
    let exit = code.code();
    match (*code == Exit::Ok, broker.event_allowed(user)) {
        (_, false) => info!(session, user, exit, reason, "session end"),
        (true, true) if reason.is_empty() => {
            info!(target: EVENTS, session, user, exit, "session ended")
        }
        (true, true) => {
            info!(target: EVENTS, session, user, exit, reason, "session ended: {reason}")
        }
        (false, true) => {
            warn!(target: EVENTS, session, user, exit, reason, "session ended: {reason}")
        }
    }
}

/// Sends the final status on a connection that never got as far as a session.
pub async fn reply(mut stream: UnixStream, (code, message): Outcome) {
    let msg = ToClient::Exit { code, message };
    let _ = tokio::time::timeout(FINAL_FRAME_DEADLINE, proto::write_frame(&mut stream, &msg)).await;
}

/// The client sends nothing after its hello, so any readable event is its `pipe-shell`
/// exiting (end of file): the session is over.
async fn watch_client(mut rd: OwnedReadHalf, cancel: CancellationToken, gone: CancellationToken) {
    use tokio::io::AsyncReadExt;
    let mut byte = [0u8; 1];
    let _ = rd.read(&mut byte).await;
    gone.cancel();
    cancel.cancel();
}
