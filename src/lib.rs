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
//! - [`shell`]: `pipe-shell`: entry forms, connect, hand over stdio, relay the final status.
//! - `src/bin/`: the binaries, a few lines each around the library.

pub mod broker;
pub mod exit;
pub mod proto;
pub mod request;
pub mod shell;
