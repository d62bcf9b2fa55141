//! One connection: hello, identity, the request, the final status.
//!
//! A session task owns the descriptors the client passed. Publishing ([`super::publish`])
//! reads the session's stdin into chunks and offers them to the topic; subscribing
//! ([`super::deliver`]) writes the topic's chunks into the session's stdout. Both stop when
//! the client's `pipe-shell` goes away (its control socket closes) or the broker shuts down.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::UnixStream;
use tokio::net::unix::OwnedReadHalf;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::ctx::{Ctx, FINAL_FRAME_DEADLINE, OK, Outcome, SHUTTING_DOWN, fail, refused};
use super::deliver::{Subscriber, Wildcard, deliver, deliver_drain, deliver_many};
use super::drains::{Drains, EVENTS};
use super::fdio::Fd;
use super::grants::GrantsError;
use super::identity;
use super::publish::{Offer, Publisher, finish_publishing, pump};
use super::topic::{Owner, SessionId, Topic, TopicKey};
use super::{Broker, Connection, Pattern, Refused, TopicRef};
use crate::exit::Exit;
use crate::proto::{self, PROTOCOL_VERSION, ToClient};
use crate::request::{
    AccessList, Dispatch, GrantReq, Namespace, PipeReq, Pub, Request, Sub, TopicRef as Named,
    UserName,
};

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
    let watching = match &request {
        Request::Logs(_) => true,
        Request::Sub(s) => drain_named(&broker.drains, Some(&s.topic)).is_some(),
        _ => false,
    };
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
        out = serve(&ctx, request, fds) => out,
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
/// drains: why it ended is what a user most needs to see there (DESIGN §5a). Over the
/// user's event rate it goes to the journal only.
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

async fn serve(ctx: &Ctx, request: Request, fds: Vec<OwnedFd>) -> Outcome {
    let mut fds = fds.into_iter();
    let (Some(stdin), Some(stdout)) = (fds.next(), fds.next()) else {
        return fail(Exit::Internal, "missing descriptors");
    };
    let run = async {
        let open = |fd| Fd::new(fd).map_err(|e| fail(Exit::Internal, format!("stdio: {e}")));
        Ok(match request {
            Request::Pub(p) => publish(ctx, &p, open(stdin)?, open(stdout)?).await?,
            Request::Sub(s) => subscribe(ctx, &s, open(stdout)?).await?,
            Request::Pipe(p) => pipe(ctx, &p, open(stdin)?, open(stdout)?).await?,
            Request::Ls(ls) => list(ctx, ls.json, &open(stdout)?).await,
            Request::Whoami => whoami(ctx, &open(stdout)?).await,
            Request::Grant(g) => change_grant(ctx, &g, GrantChange::Add, &open(stdout)?).await?,
            Request::Revoke(g) => {
                change_grant(ctx, &g, GrantChange::Remove, &open(stdout)?).await?
            }
            Request::Grants(ls) => list_grants(ctx, ls.json, &open(stdout)?).await,
            Request::Logs(l) => logs(ctx, l.drain.as_str(), l.lines, open(stdout)?).await?,
            // pipe-shell answers these itself; a client that sends them anyway gets nothing.
            Request::Help | Request::Version => OK,
        })
    };
    run.await.unwrap_or_else(|refusal: Outcome| refusal)
}

/// The one answer for a topic the caller may not use, whether or not it exists (DESIGN §4:
/// no probing).
fn denied() -> Outcome {
    fail(Exit::Denied, "no such topic or access denied")
}

/// How the caller reaches a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Its own, a public one, or the admin's: nothing can take it away.
    Owned,
    /// Through the owner's grant: re-checked whenever grants change.
    Granted,
}

/// Maps what the user wrote to a topic the caller may use.
fn resolve(ctx: &Ctx, topic: &Named) -> Result<(TopicKey, Access), Outcome> {
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
fn allowed(ctx: &Ctx, key: &TopicKey) -> bool {
    ctx.broker.may_use(&ctx.who, key)
}

/// Runs `work` on a topic reached through a grant until it ends or the grant stops
/// naming the caller; a revocation cuts the session at once (DESIGN §4: within 1 s).
async fn unless_revoked(
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
fn set_grant(ctx: &Ctx, key: &TopicKey, list: &AccessList) -> Result<(), Outcome> {
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
    ctx.broker
        .grants
        .set(owner, &key.name, &list.0)
        .map(|_| ())
        .map_err(grants_failed)
}

/// Grants are kept by owner name, and the grants file takes only names of the request
/// language's form: a Unix login outside it (`John.Doe`) keeps its topics but cannot
/// share them, rather than write a file the next start would refuse.
fn owns_grants(owner: &str) -> Result<(), Outcome> {
    UserName::new(owner).map(|_| ()).map_err(|_| {
        fail(
            Exit::Usage,
            "this user name cannot own grants (names are [a-z_][a-z0-9_-]*)",
        )
    })
}

fn grants_failed(e: GrantsError) -> Outcome {
    match e {
        GrantsError::TooMany => refused(Refused::TooManyGrants),
        other => {
            warn!(error = %other, "keeping grants failed");
            fail(Exit::Internal, "could not keep the grant")
        }
    }
}

/// A streaming session's topic, opened.
struct Attached {
    held: TopicRef,
    access: Access,
}

/// Resolves and opens the topic of a streaming request: the named one, or (for `pub` and
/// `pipe` without a topic) a fresh random one announced to the client. `-a` sets the
/// topic's grant first.
fn attach(
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
            let name = random_name().map_err(|e| fail(Exit::Internal, e.to_string()))?;
            let key = TopicKey {
                owner: Owner::User(ctx.who.user.clone()),
                name,
            };
            (key, Access::Owned)
        }
    };
    let held = ctx.broker.open(key, &ctx.who.user).map_err(refused)?;
    if let Some(list) = grant {
        set_grant(ctx, &held.topic.key, list)?;
    }
    if topic.is_none() {
        let name = held.topic.key.name.clone();
        let _ = ctx.ctl.try_send(ToClient::Topic { name });
    }
    Ok(Attached { held, access })
}

/// 64 random bits in hex: unguessable enough that a random topic is effectively private to
/// whoever is told its name, and short enough to type.
fn random_name() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

async fn publish(ctx: &Ctx, p: &Pub, input: Fd, client: Fd) -> Result<Outcome, Outcome> {
    not_a_drain(ctx, p.topic.as_ref())?;
    let Attached { held, access } = attach(ctx, p.topic.as_ref(), &p.access)?;
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
        Ok(out)
    } else {
        // Leaving first lets plain subscribers end as soon as they have it all.
        drop(publisher);
        Ok(finish_publishing(ctx, topic, end).await)
    }
}

async fn subscribe(ctx: &Ctx, s: &Sub, output: Fd) -> Result<Outcome, Outcome> {
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
    let Attached { held, access } = attach(ctx, Some(&s.topic), &s.access)?;
    let sub = Subscriber::attach(&held.topic, ctx.id, false, !s.keep);
    let work = deliver(ctx, &sub, &output, s.lines);
    Ok(unless_revoked(ctx, &held.topic.key, access, work).await)
}

/// The declared drain a bare topic name names: drains take precedence over the caller's own
/// topic of the same name, so `sub logs` reads the drain.
fn drain_named<'a>(drains: &Drains, topic: Option<&'a Named>) -> Option<&'a str> {
    let t = topic?;
    let name = t.name.as_str();
    (t.namespace == Namespace::Own && drains.get(name).is_some()).then_some(name)
}

/// Refuses to write into a drain's name: its lines come from its feeds.
fn not_a_drain(ctx: &Ctx, topic: Option<&Named>) -> Result<(), Outcome> {
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
async fn logs(ctx: &Ctx, name: &str, lines: Option<u64>, out: Fd) -> Result<Outcome, Outcome> {
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

async fn pipe(ctx: &Ctx, p: &PipeReq, input: Fd, output: Fd) -> Result<Outcome, Outcome> {
    not_a_drain(ctx, p.topic.as_ref())?;
    let Attached { held, access } = attach(ctx, p.topic.as_ref(), &p.access)?;
    let topic: &Topic = &held.topic;
    let mut feed = ctx.broker.drains.feed(&topic.key);
    let sub = Subscriber::attach(topic, ctx.id, p.replay, false);
    let _room = Room::join(topic, ctx);
    // A pipe never waits for receivers: what nobody hears is dropped (DESIGN §3).
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

async fn list(ctx: &Ctx, json: bool, out: &Fd) -> Outcome {
    let visible: Vec<_> = ctx
        .broker
        .snapshot()
        .into_iter()
        .filter(|t| match &t.key.owner {
            // Public topics are everyone's to use but not to list: the ones one made.
            Owner::Public => ctx.who.admin || t.creator == ctx.who.user,
            Owner::User(_) => allowed(ctx, &t.key),
        })
        .map(|t| {
            let mut stats = t.stats();
            // The grant is the owner's business: shown to the owner and the admin only.
            if let Owner::User(owner) = &t.key.owner {
                if owner == &ctx.who.user || ctx.who.admin {
                    stats.grant = ctx
                        .broker
                        .grants
                        .of_topic(owner, &t.key.name)
                        .iter()
                        .map(|g| g.to_string())
                        .collect();
                }
            }
            stats
        })
        .collect();
    write_listing(ctx, out, json, &visible, "no topics", |visible| {
        let mut s = format!(
            "{:<40} {:>5} {:>5} {:>7} {:>12} {:>10} {:>8}  {}\n",
            "TOPIC", "PUBS", "SUBS", "WAITING", "BYTES", "BYTES/S", "AGE", "GRANT"
        );
        for t in visible {
            s.push_str(&format!(
                "{:<40} {:>5} {:>5} {:>7} {:>12} {:>10} {:>7}s  {}\n",
                t.topic,
                t.publishers,
                t.subscribers,
                t.waiting,
                t.bytes,
                t.rate,
                t.age_secs,
                t.grant.join(",")
            ));
        }
        s
    })
    .await
}

#[derive(Debug, Clone, Copy)]
enum GrantChange {
    Add,
    Remove,
}

/// `grant TOPIC LIST` / `revoke TOPIC LIST`: the owner edits the durable grant, whether or
/// not the topic is live, and gets the resulting grant as one line on stdout.
async fn change_grant(
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
    let grants = &ctx.broker.grants;
    let now = match change {
        GrantChange::Add => grants.add(owner, &key.name, &g.list.0),
        GrantChange::Remove => grants.remove(owner, &key.name, &g.list.0),
    }
    .map_err(grants_failed)?;
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
async fn list_grants(ctx: &Ctx, json: bool, out: &Fd) -> Outcome {
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

/// Writes a listing to stdout: one JSON array with `--json`, else the text `table` makes;
/// nothing to list is said on stderr (`empty`), so stdout stays data only.
async fn write_listing<T: serde::Serialize>(
    ctx: &Ctx,
    out: &Fd,
    json: bool,
    items: &[T],
    empty: &str,
    table: impl FnOnce(&[T]) -> String,
) -> Outcome {
    let text = if json {
        match serde_json::to_string(items) {
            Ok(s) => s + "\n",
            Err(e) => return fail(Exit::Internal, e.to_string()),
        }
    } else if items.is_empty() {
        ctx.status(empty.to_string());
        return OK;
    } else {
        table(items)
    };
    write_all(out, text.into()).await
}

async fn whoami(ctx: &Ctx, out: &Fd) -> Outcome {
    let text = match &ctx.who.key {
        Some(key) => format!("{} {key}\n", ctx.who.user),
        None => format!("{}\n", ctx.who.user),
    };
    write_all(out, text.into()).await
}

async fn write_all(out: &Fd, mut data: Bytes) -> Outcome {
    while !data.is_empty() {
        match out.write_some(std::slice::from_ref(&data)).await {
            Ok(n) => data = data.slice(n..),
            // The reader left: nothing more to say to it.
            Err(_) => return OK,
        }
    }
    OK
}
