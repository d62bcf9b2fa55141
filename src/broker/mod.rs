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

pub mod cmd;
pub mod config;
pub mod ctx;
pub mod deliver;
pub mod drains;
pub mod evict;
pub mod fdio;
pub mod grants;
pub mod identity;
mod lock;
pub mod publish;
pub mod registry;
pub mod server;
pub mod session;
pub mod systemd;
pub mod topic;

pub use config::{Config, Limits, LogFormat, Sources, parse_size};
pub use evict::BUDGET_GRACE;
pub use registry::{Broker, Refused};
pub use server::{BrokerError, Listening, bind, listen, run, start};
