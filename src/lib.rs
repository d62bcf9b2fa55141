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
//! # Layout
//!
//! - [`request`]: the request language (what follows `ssh host`): words to the closed
//!   [`request::Request`] enum, validation of untrusted input, canonical rendering.
//! - [`proto`]: the broker wire protocol: length-prefixed frames, the hello with the passed
//!   descriptors (`SCM_RIGHTS`), status and exit frames. Sans-IO encoding plus thin socket
//!   helpers.
//! - [`exit`]: exit codes (DESIGN §6) and escaping of echoed input.
//! - [`broker`]: `piped`: listener, identity, topics, the fan-out ring, sessions, shutdown.
//! - [`broker::config`] and [`broker::systemd`]: `piped.toml` (strict parse, flags over it,
//!   limits swapped live on SIGHUP) and systemd (socket activation, `READY`/`RELOADING`/
//!   `STOPPING`/`WATCHDOG` notifications).
//! - [`broker::drains`]: scoped drains (`ssh host logs`): feed lines parsed once in the
//!   publisher's task, routed to the watchers they name and to the admins.
//! - [`timefmt`]: RFC 3339 timestamps for the JSON lines of drains and the layer.
//! - [`shell`]: `pipe-shell`: entry forms, connect, hand over stdio, relay the final status.
//! - [`admin`]: `pipe-admin`: the key directory, the managed block of the service account's
//!   authorized_keys, the command line over both, and `doctor` ([`admin::doctor`]), which
//!   checks sshd, the account, the socket and the keys against each other.
//! - [`logship`] (feature `logship`, on by default): a `tracing` layer that ships a Rust
//!   service's logs as JSON lines into a topic (`log-drain`) through the broker socket or
//!   ssh, without ever blocking the service.
//! - `src/bin/`: the binaries, a few lines each around the library.
//!
//! # Decisions beyond DESIGN.md
//!
//! Behaviour that DESIGN.md leaves open, decided here (and to be carried into it):
//!
//! - **`pub` exits when its data is delivered**: its final status waits until every byte it
//!   published has been written into every subscriber's session (or the stalled ones were
//!   dropped), so exit 0 means delivered, not merely accepted.
//! - **A blocking `pub` never sends into the void**: with `-b` it waits for a receiver before
//!   its first chunk and again whenever all receivers have left (pico's per-chunk wait);
//!   each wait is bounded by `-t`, then exit 7.
//! - **Round robin** assigns each chunk to one receiver in rotation when it is published,
//!   cuts the publisher's input at line ends (whole lines go to one receiver unless a line
//!   exceeds a chunk), and hands a departing receiver's unwritten share (from a line end)
//!   to the others; a round-robin publisher stays attached until its chunks are written,
//!   so plain workers do not end while a share may still be handed to them. The dispatch
//!   mode belongs to each publisher's chunks, not to the topic.
//! - **The global budget** (256 MiB, each chunk charged its bookkeeping too) drops the
//!   most-lagging subscriber that has made no progress for a second
//!   ([`broker::BUDGET_GRACE`]); after a publisher has waited that second, the most-lagging
//!   one goes even if it moves, so slow readers cannot hold other tenants' publishers.
//!   A ring also holds at most 16k chunks, whatever their size.
//! - **Shutdown**: every client's final status is exit 4, `pipe: broker shutting down`,
//!   after the accepted bytes were flushed (bounded by the shutdown deadline, 5 s).
//! - **Grants** are kept in `<state dir>/grants.json` (default `/var/lib/piped`), read
//!   strictly at start (a file piped cannot fully understand stops it), written before a
//!   change takes effect. `grant`/`revoke` print the resulting grant on stdout; a non-owner's
//!   `grant` is refused like a missing topic. A grant names users or key fingerprints; a
//!   key grant matches only sessions whose identity carries a key (service account or
//!   `ExposeAuthInfo` modes). At most 512 grant entries per owner (exit 6).
//! - **Revocation** re-checks every session using a granted topic whenever grants change,
//!   so it is cut at once (exit 3, `pipe: access denied`); a wildcard subscription only
//!   lets go of the topics it lost.
//! - **Wildcards**: `*` matches any run of name characters, within one namespace (own,
//!   `owner/`, or public); a wildcard subscriber joins each matching topic the moment it
//!   is created (before any publish), counts as a receiver for `pub -b`, never ends because
//!   publishers leave, and holds the topics it joined open while it stays.
//! - **`ls`** shows the caller's topics, those shared with them, and public topics they
//!   created (root: all), with a rate over the last second; the grant column is shown to the
//!   owner and root only.
//! - **Identity by key** (`ExposeAuthInfo`) applies only when pipe-shell runs as the service
//!   account without `--user`, so enabling `ExposeAuthInfo` for other accounts changes
//!   nothing for them.
//! - **Boolean flags take an optional value**, including as the next word (`-b false`): a
//!   topic literally named `true` or `false` goes before the flags.
//! - **`-p` needs a topic** (`pub -p` alone is a usage error): a random public name would be
//!   nobody's to find.
//! - **Random topic names** are 16 hex digits (64 bits from `/dev/urandom`).
//! - **Entry forms**: `-c STRING` is the admin's forced command only when
//!   `SSH_ORIGINAL_COMMAND` is set (sshd sets it only for forced commands, unless the admin
//!   lets clients set it through `AcceptEnv` or `PermitUserEnvironment`); otherwise it is the
//!   client's request. The broker honours `--user` only from the service account, and a
//!   connection from the service account without `--user` is refused.
//! - **pipe-shell run by hand on a terminal or file** puts a pipe in front of it with a
//!   copying thread, since only pipes and sockets can be polled by the broker.
//! - **Empty interactive login** (`ssh host`): usage on stderr, exit 2; `help`: exit 0.
//! - **Per-user caps on public topics** count the topics a user created. The connection cap
//!   counts from `accept`, before the hello.
//! - **A waiting `pub`** notices its client has left through its stdout (sshd closes it),
//!   within a second, rather than waiting out `-t`.
//! - **Configuration**: built-in defaults, then `/etc/pipe/piped.toml`, then flags (flags
//!   win, also across reloads). A reload applies new limits to live topics and to the next
//!   sessions; a lowered cap never ends live sessions nor removes grants. Socket, group,
//!   service user, directories and log format need a restart (a reload logs that).
//!   `hello_deadline` is configurable; the 1024-byte request and 4 KiB frame are protocol.
//! - **systemd**: under socket activation piped uses the socket systemd passes and ignores
//!   the configured path (and never chmods or removes it). The service runs as a
//!   `DynamicUser` (`piped`, state in `/var/lib/piped`), never with `PrivateUsers` (peer
//!   uids would all read as nobody).
//! - **The shipped sshd snippet sets `ExposeAuthInfo yes`**: its `ForceCommand` replaces a
//!   key line's `command=`, so the service account's sessions are identified by the key in
//!   `$SSH_USER_AUTH` through the key directory. `pipe-admin doctor` fails a ForceCommand
//!   setup without it.
//! - **Packages**: removing keeps configuration, keys, authorized_keys and grants; purging
//!   removes them; the `pipe` account stays (Debian's convention). The package never
//!   reloads sshd; it validates with `sshd -t` and says what to run.
//! - **Scoped drains** (DESIGN §5a) are `[[drain]]` tables in piped.toml, read at start
//!   only. A feed is `OWNER/TOPIC`, never public (whoever may publish into a feed can write
//!   lines for any user); the feed stays an ordinary topic its owner can read raw. A
//!   drain's name is reserved: `logs NAME` and bare `sub NAME` read it, `pub`/`pipe NAME`
//!   are refused (exit 2); `logs` alone reads the drain `logs`; a missing drain is exit 3.
//!   A publisher into a feed never waits for a receiver (the drain always takes its lines)
//!   and its input is split into lines in its own task, so lines of concurrent publishers
//!   never mix; an unterminated last line is a line, blank lines are skipped. A line is a
//!   user's when any scope field is a string equal to their name (a name in two scope
//!   fields delivers once); a repeated scope or hidden field, or bytes that are not UTF-8,
//!   make the line invalid; `hidden` set to anything but `false` or `null` hides it. A
//!   drain may not share its name with a feed topic (the feed's owner could not publish).
//!   Admins are root, the drain's `admins` and members of `admin_group` (by name).
//!   A watcher holds at most 256 KiB, all watchers together 64 MiB (their own budget: a
//!   watcher is never paced nor evicted, so slow log readers never stall topics); beyond it lines are
//!   missed, counted and said on its stderr at most once a second, and one whose output
//!   does not move for the stall timeout is dropped (exit 5). Watchers write the first line
//!   after a quiet spell at once, later ones at most every 100 ms. Rejected lines become
//!   hidden notices for the drain's admins, with running counts.
//! - **piped's own events** are tracing events on target `pipe::event` carrying `user`:
//!   each session's start (not a `logs` session's, which would fill its own stream) and
//!   its end with exit code and reason (also "client gone"), and requests refused before a
//!   session (usage, limits); at most 40 a second per user, the rest to the journal only.
//!   A bare `pub -e` event into a feed is not a line and does not reach the drain. They reach drains with `events = true` (the default) through [`drain`]'s
//!   in-process sink, and the journal like any log line.
//! - **The tracing layer** ([`drain`]) drops (never truncates) lines over 64 KiB, drops
//!   and counts when its 1024-line queue is full, reconnects with backoff (100 ms doubling
//!   to 5 s, reset after a connection that lasted 5 s) and reports drops in a hidden line.
//!   `sent` counts lines written into the transport, not delivered. Dropping the handle
//!   stops it.
//! - **Crates**: `bytes` (chunks shared by all subscribers without copying), `tokio-util`
//!   (cancellation and task tracking for the two-stage shutdown). `interprocess` is not
//!   used: the standard library's and tokio's Unix sockets plus `nix` for `SCM_RIGHTS`
//!   cover a Linux-only broker without another abstraction layer.

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
