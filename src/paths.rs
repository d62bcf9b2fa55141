//! Where an installed pipe keeps its files, shared by every binary so that `pipe-shell`,
//! `piped` and `pipe-admin` agree without one depending on another. The table of installed
//! files is in pipe(5) (FILES); each binary's flags choose other places (tests, the demo,
//! the benchmark).

/// The broker's socket: directory `root:pipe 0750`, socket `0660`.
pub const SOCKET: &str = "/run/pipe/piped.sock";

/// The broker's config file (strict parse, SIGHUP reload).
pub const CONFIG: &str = "/etc/pipe/piped.toml";

/// Where piped keeps its durable state (the grants file).
pub const STATE_DIR: &str = "/var/lib/piped";

/// The key directory `pipe-admin` keeps and `pipe-shell` looks keys up in.
pub const KEYS_DIR: &str = "/etc/pipe/keys";

/// The service account `pipe-admin` writes key lines for; only it may assert `--user`.
pub const SERVICE_USER: &str = "pipe";

/// The service account's authorized_keys, its home being `/var/lib/pipe`.
pub const AUTHORIZED_KEYS: &str = "/var/lib/pipe/.ssh/authorized_keys";

/// The forced command in key lines: the packaged path, so moving nothing ever leaves stale
/// lines.
pub const FORCED_COMMAND: &str = "/usr/bin/pipe-shell";

/// The shipped sshd snippet: the service account's `Match User` block, named in doctor's
/// fixes.
pub const SSHD_SNIPPET: &str = "/etc/ssh/sshd_config.d/50-pipe.conf";

/// sshd's main configuration file on Debian and Fedora.
pub const SSHD_CONFIG: &str = "/etc/ssh/sshd_config";

/// The sshd binary that reads [`SSHD_CONFIG`].
pub const SSHD: &str = "/usr/sbin/sshd";
