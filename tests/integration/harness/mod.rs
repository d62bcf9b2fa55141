//! The one test harness: the real `piped`, `pipe-shell` and `pipe-admin` binaries behind a
//! real OpenSSH `sshd` on loopback, driven by the real `ssh` client, with throwaway keys and
//! accounts. Nothing in tests/ runs `ssh-keygen`, makes an account, finds a free port or
//! starts an sshd or a broker except through it.
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
//! | [`host`] | [`Harness`]: one pipe host (sshd, broker, key files) in a temp dir, for one test |
//! | [`team`] | two or three users of one harness in one of the three identity modes |
//!
//! Requires root (to start `sshd` and to create the throwaway accounts `pipetest`,
//! `pipetest2` and the service account `pipetestsvc`). Every wait has a deadline; every child
//! is killed on drop, by PID.

use std::time::Duration;

pub mod accounts;
pub mod bins;
pub mod broker;
pub mod client;
pub mod host;
pub mod keys;
pub mod process;
pub mod sshd;
pub mod team;

pub use accounts::*;
pub use bins::*;
pub use broker::*;
pub use client::*;
pub use host::*;
pub use keys::*;
pub use process::*;
pub use sshd::*;

/// Default deadline for a short request (one ssh round trip plus the work).
pub const SHORT: Duration = Duration::from_secs(20);
