//! `pipe`: networked *nix pipes over SSH.
//!
//! ```text
//! echo "hello world!" | ssh host pub hello      # terminal 1
//! ssh host sub hello                            # terminal 2
//! ```
//!
//! The host's OpenSSH authenticates the user and runs `pipe-shell` as a forced command for
//! each session. `pipe-shell` parses the request, connects to the long-running `piped`
//! broker over a Unix socket and hands it the session's stdin and stdout descriptors, then
//! waits for the final status and exits with its code. `piped` holds the topics and moves the
//! bytes between the descriptors of publishers and subscribers.
//!
//! This page is the map of the code. What users see (the request language, exit codes,
//! flow control, limits, files) is stated in the manuals: pipe(1), pipe(5), piped(8),
//! pipe-shell(8) and pipe-admin(8), and the README. A comment that cites a rule names the
//! manual and section that states it.
//!
//! # Modules
//!
//! Dependencies point one way: the binaries use [`shell`], [`broker`] and [`admin`]; those
//! use [`proto`] and [`request`]; everything may use the leaves. One edge crosses over on
//! purpose: `pipe-admin doctor` reads forced commands with pipe-shell's own option rules
//! ([`shell::args`]), so the two can never disagree. No module imports one that imports it
//! back.
//!
//! - [`shell`]: `pipe-shell`. [`shell::args`] reads its options and the entry forms (a
//!   forced command, `-c`, plain argv), shared with `pipe-admin doctor`; `identity` finds
//!   who a key login is through the key directory; `stdio` prepares the descriptors it
//!   hands over.
//! - [`broker`]: `piped`. Its own docs are the broker's map: the server (listen, run,
//!   reload, shutdown), a session's life, one file per verb under [`broker::cmd`], the
//!   registry of topics and its guards, the ring ([`broker::topic`]), eviction, scoped
//!   drains, grants, identity, config and systemd.
//! - [`admin`]: `pipe-admin`: the key directory's writer, the managed block of the service
//!   account's authorized_keys, the command line, and [`admin::doctor`] (probes gather
//!   facts, a pure judge turns them into findings).
//! - [`logship`] (feature `logship`, on by default): a `tracing` layer that ships a Rust
//!   service's logs as JSON lines into a topic, through the broker socket or ssh, without
//!   ever blocking the service. Not to be confused with the broker's scoped drains
//!   ([`broker::drains`]), which read such a topic and route its lines to users.
//! - [`request`]: the request language (what follows `ssh host`): names, words,
//!   durations and the grammar that turns them into the closed [`request::Request`] enum,
//!   validating untrusted input and rendering it back canonically.
//! - [`proto`]: the wire protocol between `pipe-shell` and `piped` (length-prefixed JSON
//!   frames; the hello carries the request and, by `SCM_RIGHTS`, the session's stdin and
//!   stdout), and [`proto::client`], the one broker client that `pipe-shell` and the
//!   tracing layer share.
//! - Shared pieces, one home each (leaves but for [`keys`], which uses [`request`]'s
//!   names): [`paths`] (where an installed pipe keeps its files),
//!   [`keys`] (parsing keys and authorized_keys options, looking a key up in the key
//!   directory), [`atomic_file`] (the one atomic file write), [`glob`] (the one wildcard
//!   matcher), [`exit`] (both binaries' exit codes, escaping echoed input), [`timefmt`]
//!   (RFC 3339 timestamps).
//! - `src/bin/`: `piped`, `pipe-shell`, `pipe-admin`, a few lines each around the library.
//!
//! # The path of a request
//!
//! From `SSH_ORIGINAL_COMMAND` to bytes in a subscriber's pipe:
//!
//! 1. sshd runs `pipe-shell` ([`shell::run`]). [`shell::args`] works out the entry form
//!    and takes the request from `SSH_ORIGINAL_COMMAND`; [`request::Request::parse`] checks
//!    it (usage errors end here, exit 2). A key login without `--user` is identified
//!    through the key directory ([`keys::dir::find_owner`]).
//! 2. `pipe-shell` connects to the broker socket and says hello with the rendered request
//!    and its stdin and stdout ([`proto::client::Client::hello`]), then only waits for
//!    status frames ([`proto::client::Client::recv`]).
//! 3. `piped` accepts the connection ([`broker::server::run`]) and runs
//!    [`broker::session::handle`]: it receives the hello and the descriptors
//!    ([`proto::recv_hello`]), decides who the peer is from its uid
//!    ([`broker::identity::resolve`]), parses the request again (the broker trusts no
//!    client), counts it against the caps ([`broker::Broker::admit`]) and dispatches it
//!    ([`broker::cmd::apply`]).
//! 4. A publisher's stdin is read into chunks ([`broker::ingest::pump`]), and each is
//!    offered to the topic ([`broker::ingest::Offer::send`]): appended to its ring
//!    ([`broker::topic::Topic::try_append`]) when the window has room, else waited for,
//!    asking [`broker::evict`] to make room when the global budget is spent.
//! 5. Each subscriber's task takes batches from the ring ([`broker::topic::Topic::fetch`])
//!    and writes them into its stdout pipe ([`broker::deliver::deliver`]), which sshd
//!    carries to the client; its progress ([`broker::topic::Topic::advance`]) lets the
//!    publisher go on.
//! 6. When the handler returns, the session sends the final status frame; `pipe-shell`
//!    prints its message (or `failed (exit N)` for a failure without one) and exits with
//!    its code ([`exit::Exit`]).

pub mod admin;
pub mod atomic_file;
pub mod broker;
pub mod exit;
pub mod glob;
pub mod keys;
#[cfg(feature = "logship")]
pub mod logship;
pub mod paths;
pub mod proto;
pub mod request;
pub mod shell;
pub mod timefmt;
