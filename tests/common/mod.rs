//! The one test harness: the real `piped`, `pipe-shell` and `pipe-admin` binaries behind a
//! real OpenSSH `sshd` on loopback, driven by the real `ssh` client, with throwaway keys and
//! accounts. Every test file uses it; nothing in tests/ runs `ssh-keygen`, finds a free
//! port or starts an sshd or a broker except through it.
//!
//! | module | what |
//! |---|---|
//! | [`accounts`] | the throwaway Unix accounts (`useradd`/`usermod`, idempotent) |
//! | [`keys`] | key pairs and fingerprints through `ssh-keygen` |
//! | [`sshd`] | a private sshd on a free loopback port, and the ssh options to reach it |
//! | [`broker`] | a private `piped`: started, waited for, signalled, stopped |
//! | [`bins`] | where the built binaries are; `pipe-admin` on a scratch key directory |
//! | [`client`] | a running command with its output collected; [`client::Output`] |
//! | [`process`] | signals and bounded waits for children, by PID |
//! | [`harness`] | [`Harness`]: sshd + broker + keys in one temp dir, for one test |
//! | [`team`] | two or three users of one harness in one of the three identity modes |
//!
//! Requires root (to start `sshd` and to create the throwaway accounts `pipetest`,
//! `pipetest2` and the service account `pipetestsvc`). Every wait has a deadline; every child
//! is killed on drop, by PID.

#![allow(dead_code, unused_imports)]

use std::time::Duration;

pub mod accounts;
pub mod bins;
pub mod broker;
pub mod client;
pub mod harness;
pub mod keys;
pub mod process;
pub mod sshd;
pub mod team;

pub use accounts::*;
pub use bins::*;
pub use broker::*;
pub use client::*;
pub use harness::*;
pub use keys::*;
pub use process::*;
pub use sshd::*;

/// Default deadline for a short request (one ssh round trip plus the work).
pub const SHORT: Duration = Duration::from_secs(20);
