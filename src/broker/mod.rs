//! `piped`, the broker: holds the topics and moves the bytes.
//!
//! One task per connection ([`session`]). A connection is one ssh session's `pipe-shell`:
//! it says hello with the request and the session's stdin and stdout, the broker decides who
//! it is ([`identity`]), attaches it to a [`topic::Topic`] and reads and writes the passed
//! descriptors itself ([`fdio`]) until the session ends, then sends the final status.
//!
//! Shutdown (SIGTERM, SIGINT) is explicit and bounded: the listener closes, publishers stop
//! reading, what they had accepted is written to live subscribers for up to the shutdown
//! deadline, and every client gets a final status (exit 4, "broker shutting down") before
//! the process exits.
//!
//! Settings come from `/etc/pipe/piped.toml` and flags ([`config`]). SIGHUP reloads the
//! file: a bad one keeps the running settings (one warning says why); a good one swaps the
//! [`Limits`] at once, and every decision reads the current ones ([`Broker::limits`]): a
//! topic's window from its next write, the stall timeout at its next check, caps at the
//! next session, topic or grant entry. A lowered cap refuses new ones but never ends a
//! live session nor removes a grant already given. Under systemd the listening socket may
//! come from the socket unit and readiness, reloads, stops and watchdog pings are reported
//! ([`systemd`]).
//!
//! # Map
//!
//! Dependencies point one way, from the server down to the leaves: no module here imports
//! one that imports it back, and none imports this one (it only declares and re-exports).
//!
//! - [`server`]: the socket ([`listen`], [`bind`], [`Listening`]), the accept loop
//!   ([`run`]), SIGHUP ([`server::Reload`]) and shutdown; [`start`] is what `piped` runs.
//! - [`session`]: one connection's life: hello, identity, the request, the final status.
//! - [`cmd`]: the request handlers, one file per verb, dispatched by [`cmd::apply`].
//! - [`ctx`]: what every handler is given and returns ([`ctx::Ctx`], [`ctx::Outcome`]).
//! - [`ingest`] and [`deliver`]: the two directions of a streaming session: stdin into a
//!   topic; a topic, a wildcard's topics or a drain into stdout.
//! - [`registry`]: the shared state ([`Broker`]): live topics, wildcard patterns, caps,
//!   and the guards that give back what a session took ([`registry::TopicHold`],
//!   [`registry::Admission`], [`registry::Connection`], [`registry::PatternGuard`]).
//! - [`evict`]: whom the broker-wide budget drops when it is spent.
//! - [`topic`]: one topic's ring and cursors, synchronous, under the topic's own lock.
//! - Leaves: [`drains`] (scoped drains), [`grants`] (durable grants), [`identity`] (who a
//!   connection is), [`config`] (settings, and the limits with their defaults),
//!   [`systemd`] (socket activation, notifications), [`fdio`] (non-blocking I/O on the
//!   passed descriptors), `lock` (the one mutex helper).
//!
//! # The path of a session
//!
//! [`server::run`] accepts a connection, takes a place under the connection cap
//! ([`Broker::take_connection`]) and spawns [`session::handle`]. That reads the hello and
//! the passed descriptors ([`crate::proto::recv_hello`]), decides who the peer is from its
//! uid ([`identity::resolve`]), parses the request ([`crate::request::Request::parse`]),
//! counts the session against the user's cap ([`Broker::admit`]) and runs
//! [`cmd::apply`]. For `pub` the handler opens the topic ([`Broker::open`], which returns
//! a [`registry::TopicHold`]); [`ingest::pump`] reads stdin into chunks and
//! [`ingest::Offer::send`] appends each to the topic ([`topic::Topic::try_append`]),
//! waiting for room in the window, and asking [`evict`] when the budget is spent. For
//! `sub`, [`deliver::deliver`] takes batches from the topic ([`topic::Topic::fetch`]) and
//! writes them to the subscriber's stdout ([`fdio::Fd::write_some`]), recording progress
//! ([`topic::Topic::advance`]) so the publisher may go on. When the handler returns, the
//! session sends its [`ctx::Outcome`] as the final status frame, which `pipe-shell` exits
//! with.

pub mod cmd;
pub mod config;
pub mod ctx;
pub mod deliver;
pub mod drains;
pub mod evict;
pub mod fdio;
pub mod grants;
pub mod identity;
pub mod ingest;
mod lock;
pub mod registry;
pub mod server;
pub mod session;
pub mod systemd;
pub mod topic;

pub use config::{Config, Limits, LogFormat, Sources, parse_size};
pub use evict::BUDGET_GRACE;
pub use registry::{Broker, Refused};
pub use server::{BrokerError, Listening, bind, listen, run, start};
