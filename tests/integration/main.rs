//! pipe's integration tests: one test binary, one module per concern, all on one
//! [`harness`]. One binary links the library and its dependencies once instead of once per
//! file; `cargo test --test integration doctor::` runs one module,
//! `cargo test --test integration doctor::a_stopped_broker_fails` one test.
//!
//! The tests of every module run as threads of one process, so nothing here may change
//! process-wide state (environment, current directory, umask, signal dispositions): what a
//! child needs is set on its `Command`. Machine-wide state (the throwaway accounts, the
//! installed package) is the harness's and each module's business: idempotent account
//! setup in [`harness::accounts`], [`doctor`]'s lock around its own account.

mod harness;

mod admin;
mod broker_socket;
mod doctor;
mod drain_layer;
mod drains;
mod entry_forms;
mod grants;
mod hooks;
mod identity;
mod limits;
mod man;
mod package;
mod piped_config;
mod ssh_flow;
mod ssh_shutdown;
mod ssh_stream;
mod ssh_usage;
mod systemd;
