//! Where the real binaries are, and how a test starts the ones it does not start through a
//! daemon ([`super::broker`], [`super::sshd`]).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use super::client::run_command;

/// Path of `piped`.
pub fn piped_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_piped"))
}

/// A `pipe-shell` the login user can execute: the build output in place when every parent
/// directory is world-searchable, else a copy in a world-readable temp dir (once per process).
pub fn pipe_shell_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let built = PathBuf::from(env!("CARGO_BIN_EXE_pipe-shell"));
        let reachable = built.ancestors().skip(1).all(|dir| {
            fs::metadata(dir)
                .map(|m| m.permissions().mode() & 0o001 != 0)
                .unwrap_or(false)
        });
        let exec_ok = fs::metadata(&built)
            .map(|m| m.permissions().mode() & 0o005 == 0o005)
            .unwrap_or(false);
        if reachable && exec_ok {
            return built;
        }
        let dir = tempfile::Builder::new()
            .prefix("pipe-shell-bin.")
            .tempdir()
            .expect("temp dir for pipe-shell")
            .keep();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let copy = dir.join("pipe-shell");
        fs::copy(&built, &copy).expect("copy pipe-shell");
        fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).unwrap();
        copy
    })
}

/// `pipe-admin --keys-dir KEYS_DIR --authorized-keys AUTHORIZED_KEYS --forced-command
/// FORCED_COMMAND`: the real admin tool on a scratch key directory and authorized_keys, the
/// subcommand still to add.
pub fn pipe_admin(keys_dir: &Path, authorized_keys: &Path, forced_command: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pipe-admin"));
    c.arg("--keys-dir")
        .arg(keys_dir)
        .arg("--authorized-keys")
        .arg(authorized_keys)
        .arg("--forced-command")
        .arg(forced_command);
    c
}

/// The example binary. `cargo test` builds examples, `cargo test --test integration` does
/// not: build it with the cargo running this test (nothing to do when it is up to date).
pub fn log_service_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // target/<profile>/deps/integration-… → target/<profile>/examples/log-service
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>");
        let bin = profile_dir.join("examples").join("log-service");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .args([
                "build",
                "--quiet",
                "--example",
                "log-service",
                "--manifest-path",
            ])
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"));
        if let Some(target_dir) = profile_dir.parent() {
            build.arg("--target-dir").arg(target_dir);
        }
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        let out = run_command(build, "cargo build --example log-service", b"", LONG_BUILD);
        assert_eq!(out.code, Some(0), "{out:?}");
        assert!(bin.exists(), "{} not built", bin.display());
        bin
    })
}

/// Building the example may compile the crate's dependencies first.
pub const LONG_BUILD: Duration = Duration::from_secs(600);
