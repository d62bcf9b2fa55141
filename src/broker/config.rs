//! `piped`'s settings: built-in defaults, `/etc/pipe/piped.toml` over them, command-line
//! flags over both.
//!
//! The file is parsed strictly (mosquitto's CVE-2018-12550/12551 are what lenient config
//! parsing costs a broker): an unknown key, a value of the wrong type or out of range
//! refuses the whole file with one line naming the file, line, column and reason. At start
//! that stops `piped`; on reload (SIGHUP) the running settings stay and the reason is
//! logged. A missing file at the default path means built-in defaults (the package ships
//! it commented out); a missing file named with `--config` is an error.
//!
//! Settings split in two. [`Limits`] can change while the broker runs: a reload swaps them
//! atomically and every session reads the current ones at each decision. Everything else
//! (socket, socket group, service user, state and key directories, log format) is read
//! once at start; a reload that changes them says so and ignores the change. Command-line
//! flags keep overriding the file across reloads. Grants are runtime state kept in the
//! state directory, not configuration: a reload leaves them alone (only the cap on their
//! number, `max_grant_entries`, is a setting).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use thiserror::Error;

use super::grants;
use super::topic::CHUNK;
use crate::paths;
use crate::proto::HELLO_DEADLINE;
use crate::request::{TopicName, UserName};

/// Window W (pipe(5), FLOW CONTROL): how far the slowest subscriber may trail the head.
/// 8 MiB covers a few seconds of a slow link and several ssh channel windows (2 MiB each),
/// so ordinary jitter never stalls a publisher, while 1000 busy topics still fit in a small
/// server.
pub const DEFAULT_WINDOW: usize = 8 * 1024 * 1024;

/// How long a subscriber may make no progress while the window is full before it is dropped
/// (pipe(5), FLOW CONTROL): long enough for a laptop's ssh to ride out a Wi-Fi hiccup,
/// short enough that a stopped `sub` does not hold a live topic for long.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long shutdown waits for accepted bytes to reach live subscribers: well under
/// systemd's default 90 s stop timeout, long enough for a few MiB over slow links.
pub const DEFAULT_SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

/// Bytes buffered across all topics (pipe(5), FLOW CONTROL): 32 full windows. Beyond it the
/// subscriber furthest behind anywhere is dropped, so one tenant's stalled readers cannot
/// take the machine's memory or pause everybody else's publishers.
pub const DEFAULT_BUDGET: usize = 256 * 1024 * 1024;

/// Connections at once (pipe(5), CAPS), counted from `accept`, before the hello: each costs
/// a task and three descriptors (socket, stdin, stdout), so 4096 needs ~12k descriptors;
/// piped raises its soft descriptor limit to the hard one at start (systemd's default hard
/// limit is 512k).
pub const MAX_CONNECTIONS: usize = 4096;

/// Sessions per user at once (pipe(5), CAPS): enough for busy scripting, small enough that
/// one key cannot take the whole connection budget.
pub const MAX_USER_SESSIONS: usize = 32;

/// Topics one user may have live (pipe(5), CAPS): enough for a user's scripts and services,
/// few enough that counting them when one is created stays cheap.
pub const MAX_USER_TOPICS: usize = 128;

/// Public topics live at once per user (pipe(5), CAPS): the shared namespace is small on
/// purpose.
pub const MAX_PUBLIC_TOPICS: usize = 16;

/// Largest config file read: a complete file with comments is ~4 KiB, so anything near this
/// is not a config file (a mistaken path to a log or a device).
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// The commented default config, installed as `/etc/pipe/piped.toml` by the packages.
/// Every key is present with its built-in default (a unit test checks that uncommenting
/// them all changes nothing).
pub const EXAMPLE_CONFIG: &str = r#"# /etc/pipe/piped.toml: settings of piped, the pipe broker.
#
# Every key is optional: the values below, commented out, are the built-in defaults.
# Command-line flags of piped (--window 16M, ...) override this file.
#
# The file is read strictly: an unknown key, a value of the wrong type or out of range
# stops piped at start with "FILE:LINE:COLUMN: reason". `systemctl reload piped` (SIGHUP)
# re-reads it: a bad file keeps the running settings and logs why; a good one applies the
# limits below at once, to live sessions too (see each key). Socket, group, accounts,
# directories and log format are read at start only; a reload that changes them logs that
# they need a restart. Grants are not configuration: they live in the state directory
# (pipe grant/revoke) and a reload leaves them as they are.
#
# Sizes are a byte count (65536) or a string with K, M or G (powers of 1024): "8M".
# Durations are strings: "30s", "500ms", "2m", "1h30m".
#
# Fixed by the protocol between pipe-shell and piped, so not settable here: a request
# string (what follows `ssh host`) is at most 1024 bytes, a control frame at most 4 KiB.

# ---- Where and as whom (read at start only) ----

# The broker's Unix socket. Under systemd the socket unit (piped.socket) creates it and
# passes it to piped, which then uses that one and leaves its path, mode and owner alone.
#socket = "/run/pipe/piped.sock"

# Group given to the socket (mode 0660) and to its directory (0750) when piped creates
# them itself, e.g. socket_group = "pipe". Unset by default: piped's own group.

# The shared service account: only connections from its uid may assert an identity
# (the --user of the key lines pipe-admin writes).
#service_user = "pipe"

# Durable state (the grants file), created 0700 when missing.
#state_dir = "/var/lib/piped"

# The key directory pipe-admin keeps. Informational for piped for now.
#keys_dir = "/etc/pipe/keys"

# Log lines on stderr (the journal under systemd): "text" or "json" (one object a line).
#log_format = "text"

# ---- Flow control (a reload applies them to live topics) ----

# Window W: how far the slowest subscriber of a topic may trail the head before the
# publisher is paced. At least 64K. A reload applies from each topic's next write on.
#window = "8M"

# Bytes buffered across all topics; beyond it the most-lagging subscriber is dropped.
# At least 64K.
#budget = "256M"

# A subscriber that makes no progress for this long while its topic's window is full is
# dropped (exit 5), so one stuck reader cannot freeze a topic.
#stall_timeout = "30s"

# How long a stopping piped flushes accepted bytes to live subscribers.
#shutdown_deadline = "5s"

# How long a new connection has to send its hello.
#hello_deadline = "2s"

# ---- Caps (exit 6 when reached) ----
# A reload that lowers a cap refuses new sessions, topics or grant entries beyond it;
# it never ends live sessions nor removes grants already given.

# Connections at once, counted from accept.
#max_connections = 4096

# Sessions one user may have at once.
#max_user_sessions = 32

# Live topics one user may own.
#max_user_topics = 128

# Live public topics one user may create.
#max_public_topics = 16

# Grant entries one user may hold over all their topics.
#max_grant_entries = 512

# ---- Scoped drains (read at start only) ----
# A drain gives every user a live view of the service log lines that concern them:
# services publish JSON lines into a feed topic (`pub log-drain -b=false`, or a Rust
# service through the library's tracing layer), and `ssh host logs` shows a user the
# lines whose scope field is their name and that are not hidden; admins see every line.
# Lines that are not one JSON object or are longer than max_line reach no user; the
# drain's admins get a notice for each. None is declared by default. To declare one,
# uncomment these lines (the hash and the space after it):
#
# [[drain]]
# name = "logs"                  # what users read: `ssh host logs` (or `sub logs`)
# feeds = ["svc/log-drain"]      # OWNER/TOPIC of each feed; never public
# format = "json"                # one JSON object a line (the only format)
# scope = ["user"]               # fields naming the user a line concerns
# hidden = "hidden"              # a line with this field set (not false) goes to admins only
# admins = []                    # users who see every line; root always does
# admin_group = "adm"            # members of this Unix group see every line
# max_line = "64K"               # longer lines reach nobody (1K to 16M)
# events = true                  # also piped's own per-user events: sessions, denials, drops
"#;

/// The settings a reload can change while sessions run. Every value has a named default
/// in [`super`] with the reason for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Window W per topic, bytes.
    pub window: usize,
    /// Bytes buffered across all topics.
    pub budget: usize,
    pub stall_timeout: Duration,
    pub shutdown_deadline: Duration,
    pub hello_deadline: Duration,
    pub max_connections: usize,
    pub max_user_sessions: usize,
    pub max_user_topics: usize,
    pub max_public_topics: usize,
    pub max_grant_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            window: DEFAULT_WINDOW,
            budget: DEFAULT_BUDGET,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            shutdown_deadline: DEFAULT_SHUTDOWN_DEADLINE,
            hello_deadline: HELLO_DEADLINE,
            max_connections: MAX_CONNECTIONS,
            max_user_sessions: MAX_USER_SESSIONS,
            max_user_topics: MAX_USER_TOPICS,
            max_public_topics: MAX_PUBLIC_TOPICS,
            max_grant_entries: grants::MAX_USER_GRANT_ENTRIES,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("expected text or json, got {other}")),
        }
    }
}

/// Broker settings, resolved: defaults, then the file, then flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub socket: PathBuf,
    /// Group of the socket (mode 0660) and of its directory (0750) when piped creates it.
    pub socket_group: Option<String>,
    pub service_user: String,
    /// Durable state (grants); `None` keeps it in memory only.
    pub state_dir: Option<PathBuf>,
    pub keys_dir: PathBuf,
    pub log_format: LogFormat,
    pub limits: Limits,
    pub drains: Vec<DrainSpec>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            socket: PathBuf::from(paths::SOCKET),
            socket_group: None,
            service_user: paths::SERVICE_USER.to_string(),
            state_dir: Some(PathBuf::from(paths::STATE_DIR)),
            keys_dir: PathBuf::from(paths::KEYS_DIR),
            log_format: LogFormat::Text,
            limits: Limits::default(),
            drains: Vec::new(),
        }
    }
}

impl Config {
    /// This config with every setting `s` gives replaced.
    pub fn overlay(mut self, s: &Settings) -> Config {
        fn set<T: Clone>(slot: &mut T, v: &Option<T>) {
            if let Some(v) = v {
                *slot = v.clone();
            }
        }
        set(&mut self.socket, &s.socket);
        if s.socket_group.is_some() {
            self.socket_group = s.socket_group.clone();
        }
        set(&mut self.service_user, &s.service_user);
        if s.state_dir.is_some() {
            self.state_dir = s.state_dir.clone();
        }
        set(&mut self.keys_dir, &s.keys_dir);
        set(&mut self.log_format, &s.log_format);
        set(&mut self.drains, &s.drains);
        let l = &mut self.limits;
        set(&mut l.window, &s.window);
        set(&mut l.budget, &s.budget);
        set(&mut l.stall_timeout, &s.stall_timeout);
        set(&mut l.shutdown_deadline, &s.shutdown_deadline);
        set(&mut l.hello_deadline, &s.hello_deadline);
        set(&mut l.max_connections, &s.max_connections);
        set(&mut l.max_user_sessions, &s.max_user_sessions);
        set(&mut l.max_user_topics, &s.max_user_topics);
        set(&mut l.max_public_topics, &s.max_public_topics);
        set(&mut l.max_grant_entries, &s.max_grant_entries);
        self
    }

    /// The start-only settings that differ between `self` (running) and `new`, by key name.
    pub fn restart_only_changes(&self, new: &Config) -> Vec<&'static str> {
        let mut changed = Vec::new();
        if self.socket != new.socket {
            changed.push("socket");
        }
        if self.socket_group != new.socket_group {
            changed.push("socket_group");
        }
        if self.service_user != new.service_user {
            changed.push("service_user");
        }
        if self.state_dir != new.state_dir {
            changed.push("state_dir");
        }
        if self.keys_dir != new.keys_dir {
            changed.push("keys_dir");
        }
        if self.log_format != new.log_format {
            changed.push("log_format");
        }
        if self.drains != new.drains {
            changed.push("drain");
        }
        changed
    }
}

/// Some settings: the contents of a config file, or the flags given on the command line.
/// `None` leaves the value underneath.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default, deserialize_with = "absolute_path")]
    pub socket: Option<PathBuf>,
    #[serde(default, deserialize_with = "name")]
    pub socket_group: Option<String>,
    #[serde(default, deserialize_with = "name")]
    pub service_user: Option<String>,
    #[serde(default, deserialize_with = "absolute_path")]
    pub state_dir: Option<PathBuf>,
    #[serde(default, deserialize_with = "absolute_path")]
    pub keys_dir: Option<PathBuf>,
    #[serde(default)]
    pub log_format: Option<LogFormat>,
    #[serde(default, deserialize_with = "size")]
    pub window: Option<usize>,
    #[serde(default, deserialize_with = "size")]
    pub budget: Option<usize>,
    #[serde(default, deserialize_with = "duration")]
    pub stall_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pub shutdown_deadline: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pub hello_deadline: Option<Duration>,
    #[serde(default, deserialize_with = "count")]
    pub max_connections: Option<usize>,
    #[serde(default, deserialize_with = "count")]
    pub max_user_sessions: Option<usize>,
    #[serde(default, deserialize_with = "count")]
    pub max_user_topics: Option<usize>,
    #[serde(default, deserialize_with = "count")]
    pub max_public_topics: Option<usize>,
    #[serde(default, deserialize_with = "count")]
    pub max_grant_entries: Option<usize>,
    /// The `[[drain]]` tables (read at start only).
    #[serde(default, rename = "drain", deserialize_with = "drains")]
    pub drains: Option<Vec<DrainSpec>>,
}

/// Longest line a drain takes by default; longer ones reach no user and are counted
/// (pipe(5), SCOPED DRAINS, `max_line`). 64 KiB holds any reasonable log record, twice
/// pico's scanner buffer, and bounds what the broker buffers per publisher while a line is
/// incomplete.
pub const DEFAULT_DRAIN_MAX_LINE: usize = 64 * 1024;

/// Bounds of `max_line`: below 1 KiB ordinary records would be refused; above 16 MiB one
/// publisher's unfinished line would hold more memory than a whole topic window.
const DRAIN_LINE_RANGE: std::ops::RangeInclusive<usize> = 1024..=16 * 1024 * 1024;

/// Longest JSON field name a drain looks up: log field names are short identifiers; a
/// bound keeps each per-line comparison cheap.
const MAX_FIELD_NAME: usize = 64;

/// Most scope fields a drain takes: `user` and an id or two are what services use, and a
/// small list lets each line's scan track the fields it has seen in one machine word.
pub const MAX_SCOPE_FIELDS: usize = 8;

/// One `[[drain]]` table: a scoped drain (pipe(5), SCOPED DRAINS). Lines published into its
/// feeds reach each user whose name is in the line's scope field; admins get every line.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrainSpec {
    /// What users read: `ssh host NAME` when it is `logs`, `logs NAME` or `sub NAME`.
    #[serde(deserialize_with = "drain_name")]
    pub name: String,
    /// The topics whose lines feed the drain, as `(owner, name)`: never public, since
    /// whoever may publish into a feed may write lines for any user.
    #[serde(deserialize_with = "feeds")]
    pub feeds: Vec<(String, String)>,
    #[serde(default)]
    pub format: DrainFormat,
    /// Fields naming the user a line concerns; a line is theirs if any of them is a string
    /// equal to the user's name.
    #[serde(default = "default_scope", deserialize_with = "field_names")]
    pub scope: Vec<String>,
    /// A line whose field of this name holds anything but `false` or `null` reaches admins
    /// only. Never one of the scope fields.
    #[serde(default = "default_hidden", deserialize_with = "field_name")]
    pub hidden: String,
    /// Users who see every line (root always does).
    #[serde(default, deserialize_with = "user_names")]
    pub admins: Vec<String>,
    /// A Unix group whose members (primary or listed) see every line. Looked up by the
    /// caller's name, so in the service-account modes a pipe user named like a member counts
    /// too: pipe-admin's users and the Unix accounts share one namespace on a host.
    #[serde(default, deserialize_with = "name")]
    pub admin_group: Option<String>,
    #[serde(default = "default_max_line", deserialize_with = "line_size")]
    pub max_line: usize,
    /// Whether piped's own per-user events (sessions, denials, drops) join the drain.
    #[serde(default = "yes")]
    pub events: bool,
}

/// How a drain reads its feeds. Closed: only JSON lines for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DrainFormat {
    #[default]
    Json,
}

fn default_scope() -> Vec<String> {
    vec!["user".to_string()]
}

fn default_hidden() -> String {
    "hidden".to_string()
}

fn default_max_line() -> usize {
    DEFAULT_DRAIN_MAX_LINE
}

fn yes() -> bool {
    true
}

/// The keys a config file may hold, for "did you mean".
const KEYS: &[&str] = &[
    "socket",
    "socket_group",
    "service_user",
    "state_dir",
    "keys_dir",
    "log_format",
    "window",
    "budget",
    "stall_timeout",
    "shutdown_deadline",
    "hello_deadline",
    "max_connections",
    "max_user_sessions",
    "max_user_topics",
    "max_public_topics",
    "max_grant_entries",
    "drain",
];

/// The keys of a `[[drain]]` table, for "did you mean".
const DRAIN_KEYS: &[&str] = &[
    "name",
    "feeds",
    "format",
    "scope",
    "hidden",
    "admins",
    "admin_group",
    "max_line",
    "events",
];

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{}: larger than {MAX_CONFIG_BYTES} bytes: not a config file", path.display())]
    TooLarge { path: PathBuf },
    /// The one line an admin reads: `FILE:LINE:COLUMN: reason`.
    #[error("{}:{line}:{column}: {reason}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        reason: String,
    },
}

/// Where settings come from: the config file, then the flags over it. Kept by the broker
/// so a reload reads the same file and the flags keep winning.
#[derive(Debug, Clone)]
pub struct Sources {
    pub file: PathBuf,
    /// Named with `--config`: a missing file is an error rather than the defaults.
    pub explicit: bool,
    pub flags: Settings,
}

impl Sources {
    /// Reads the file and resolves the settings: defaults, file, flags.
    pub fn load(&self) -> Result<Config, ConfigError> {
        let file = read_file(&self.file, self.explicit)?;
        Ok(Config::default().overlay(&file).overlay(&self.flags))
    }
}

/// The settings in the config file at `path`; none when it is missing and `must_exist` is
/// false.
pub fn read_file(path: &Path, must_exist: bool) -> Result<Settings, ConfigError> {
    let read_err = |source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    let text = match std::fs::metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound && !must_exist => {
            return Ok(Settings::default());
        }
        Err(e) => return Err(read_err(e)),
        Ok(m) if m.len() > MAX_CONFIG_BYTES => {
            return Err(ConfigError::TooLarge {
                path: path.to_path_buf(),
            });
        }
        Ok(_) => std::fs::read(path).map_err(read_err)?,
    };
    let text = String::from_utf8(text).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let (line, column) = line_column(&String::from_utf8_lossy(&bytes[..at]), at);
        ConfigError::Parse {
            path: path.to_path_buf(),
            line,
            column,
            reason: "not UTF-8 text".to_string(),
        }
    })?;
    parse(&text).map_err(|(at, reason)| {
        let (line, column) = line_column(&text, at);
        ConfigError::Parse {
            path: path.to_path_buf(),
            line,
            column,
            reason,
        }
    })
}

/// Parses config text; an error is the byte offset it is about and the reason.
pub fn parse(text: &str) -> Result<Settings, (usize, String)> {
    toml::from_str::<Settings>(text).map_err(|e| {
        let at = e.span().map_or(0, |s| s.start);
        (at, reason(text, at, e.message()))
    })
}

/// One line of explanation from a toml error: the first line of its message, with
/// serde's "unknown field" put in the file's terms and the key named for value errors.
fn reason(text: &str, at: usize, message: &str) -> String {
    let message = message.lines().next().unwrap_or("invalid config").trim();
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let key = rest.split('`').next().unwrap_or(rest);
        return match closest_key(key) {
            Some(k) => format!("unknown key \"{key}\" (did you mean \"{k}\"?)"),
            None => format!("unknown key \"{key}\""),
        };
    }
    match key_of_line(text, at) {
        Some(key) if KEYS.contains(&key) && !message.contains(key) => format!("{key}: {message}"),
        _ => message.to_string(),
    }
}

/// The bare key of the `key = value` line holding byte `at`, if it is one.
fn key_of_line(text: &str, at: usize) -> Option<&str> {
    let start = text.get(..at)?.rfind('\n').map_or(0, |i| i + 1);
    let line = text.get(start..)?.lines().next()?;
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    key.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        .then_some(key)
}

/// A known key within two edits of `key`, for a typo's hint.
fn closest_key(key: &str) -> Option<&'static str> {
    KEYS.iter()
        .chain(DRAIN_KEYS)
        .map(|k| (edit_distance(key, k), *k))
        .filter(|&(d, _)| d <= 2)
        .min_by_key(|&(d, _)| d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// 1-based line and column (in characters) of byte `at` in `text`.
fn line_column(text: &str, at: usize) -> (usize, usize) {
    let at = at.min(text.len());
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Parses a size such as `8M`, `256K` or `65536`.
pub fn parse_size(s: &str) -> Option<usize> {
    let (num, mult) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 1024),
        b'M' | b'm' => (&s[..s.len() - 1], 1024 * 1024),
        b'G' | b'g' => (&s[..s.len() - 1], 1024 * 1024 * 1024),
        _ => (s, 1),
    };
    num.parse::<usize>().ok()?.checked_mul(mult)
}

/// A window or budget: at least one chunk, or nothing could ever be buffered.
pub fn check_size(n: usize) -> Result<usize, String> {
    if n >= CHUNK {
        Ok(n)
    } else {
        Err(format!("{n} bytes is under the 64K minimum"))
    }
}

fn size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    d.deserialize_any(Size(check_size)).map(Some)
}

/// A size checked by its own rule (windows and budgets, drain lines).
struct Size(fn(usize) -> Result<usize, String>);

impl Visitor<'_> for Size {
    type Value = usize;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a size such as \"8M\" or a byte count")
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<usize, E> {
        let n = usize::try_from(n).map_err(|_| E::custom(format!("expected a size, got {n}")))?;
        (self.0)(n).map_err(E::custom)
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<usize, E> {
        let n = usize::try_from(n).map_err(|_| E::custom(format!("size {n} is too large")))?;
        (self.0)(n).map_err(E::custom)
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<usize, E> {
        let n = parse_size(s).ok_or_else(|| {
            E::custom(format!(
                "expected a size such as \"8M\", got \"{}\"",
                s.escape_default()
            ))
        })?;
        (self.0)(n).map_err(E::custom)
    }
}

/// A drain's `max_line`.
fn line_size<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    d.deserialize_any(Size(|n| {
        if DRAIN_LINE_RANGE.contains(&n) {
            Ok(n)
        } else {
            Err(format!("{n} bytes is outside 1K..=16M"))
        }
    }))
}

/// The drain tables: names unique, since users pick a drain by name.
fn drains<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<DrainSpec>>, D::Error> {
    let drains = Vec::<DrainSpec>::deserialize(d)?;
    for (i, a) in drains.iter().enumerate() {
        if drains[..i].iter().any(|b| b.name == a.name) {
            return Err(de::Error::custom(format!(
                "drain \"{}\" is declared twice",
                a.name
            )));
        }
        // A drain's name is reserved (bare `pub NAME` is refused), so a feed of that name
        // could never be published into by its owner.
        if let Some((owner, _)) = drains.iter().flat_map(|b| &b.feeds).find(|f| f.1 == a.name) {
            return Err(de::Error::custom(format!(
                "drain \"{0}\" has the name of the feed {owner}/{0}: its owner could not publish into it",
                a.name
            )));
        }
        if a.scope.contains(&a.hidden) {
            return Err(de::Error::custom(format!(
                "drain \"{}\": hidden field \"{}\" is also a scope field",
                a.name, a.hidden
            )));
        }
    }
    Ok(Some(drains))
}

fn drain_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    TopicName::new(&s).map_err(|_| {
        de::Error::custom(format!(
            "drain name: expected a topic name such as \"logs\", got \"{}\"",
            s.escape_default()
        ))
    })?;
    Ok(s)
}

fn feeds<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, String)>, D::Error> {
    let list = Vec::<String>::deserialize(d)?;
    if list.is_empty() {
        return Err(de::Error::custom(
            "feeds: a drain needs at least one feed topic",
        ));
    }
    let mut feeds: Vec<(String, String)> = Vec::with_capacity(list.len());
    for item in &list {
        let bad = || {
            de::Error::custom(format!(
                "feeds: expected OWNER/TOPIC (a user's topic, never public), got \"{}\"",
                item.escape_default()
            ))
        };
        let (owner, name) = item.split_once('/').ok_or_else(bad)?;
        let owner = UserName::new(owner).map_err(|_| bad())?;
        let name = TopicName::new(name).map_err(|_| bad())?;
        let feed = (owner.as_str().to_string(), name.as_str().to_string());
        if feeds.contains(&feed) {
            return Err(de::Error::custom(format!("feeds: {item} is listed twice")));
        }
        feeds.push(feed);
    }
    Ok(feeds)
}

fn is_field_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_FIELD_NAME
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

fn field_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if is_field_name(&s) {
        Ok(s)
    } else {
        Err(de::Error::custom(format!(
            "expected a JSON field name such as \"user\", got \"{}\"",
            s.escape_default()
        )))
    }
}

fn field_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let list = Vec::<String>::deserialize(d)?;
    if list.is_empty() || list.len() > MAX_SCOPE_FIELDS || !list.iter().all(|s| is_field_name(s)) {
        return Err(de::Error::custom(format!(
            "scope: expected 1 to {MAX_SCOPE_FIELDS} JSON field names such as [\"user\", \"userId\"]"
        )));
    }
    Ok(list)
}

fn user_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let list = Vec::<String>::deserialize(d)?;
    for s in &list {
        UserName::new(s).map_err(|_| {
            de::Error::custom(format!(
                "admins: expected user names, got \"{}\"",
                s.escape_default()
            ))
        })?;
    }
    Ok(list)
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Duration;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a duration such as \"30s\"")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Duration, E> {
            match crate::request::parse_duration(s) {
                Some(d) if !d.is_zero() => Ok(d),
                _ => Err(E::custom(format!(
                    "expected a duration above zero such as \"30s\", got \"{}\"",
                    s.escape_default()
                ))),
            }
        }
    }
    d.deserialize_any(V).map(Some)
}

/// A cap: at least 1 (a cap of 0 would refuse everything, surely a mistake).
fn count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = usize;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a count such as 32")
        }
        fn visit_i64<E: de::Error>(self, n: i64) -> Result<usize, E> {
            match u64::try_from(n) {
                Ok(n) => self.visit_u64(n),
                Err(_) => Err(E::custom(format!(
                    "expected a count of at least 1, got {n}"
                ))),
            }
        }
        fn visit_u64<E: de::Error>(self, n: u64) -> Result<usize, E> {
            match usize::try_from(n) {
                Ok(n) if n >= 1 => Ok(n),
                _ => Err(E::custom(format!(
                    "expected a count of at least 1, got {n}"
                ))),
            }
        }
    }
    d.deserialize_any(V).map(Some)
}

fn absolute_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    let s = String::deserialize(d)?;
    // piped's working directory is `/` under systemd: a relative path would mean something
    // different when run by hand.
    if s.starts_with('/') {
        Ok(Some(PathBuf::from(s)))
    } else {
        Err(de::Error::custom(format!(
            "expected an absolute path, got \"{}\"",
            s.escape_default()
        )))
    }
}

/// A user or group name: non-empty, no spaces or control characters.
fn name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_graphic()) {
        Ok(Some(s))
    } else {
        Err(de::Error::custom(format!(
            "expected a user or group name, got \"{}\"",
            s.escape_default()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> (usize, usize, String) {
        let (at, reason) = parse(text).expect_err(text);
        let (line, column) = line_column(text, at);
        (line, column, reason)
    }

    #[test]
    fn the_example_config_uncommented_is_the_defaults() {
        let uncommented: String = EXAMPLE_CONFIG
            .lines()
            .map(|l| match l.strip_prefix('#') {
                Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase()) => rest,
                _ => l,
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let settings = parse(&uncommented).expect("example parses");
        // socket_group has no default to show; drains are tables, shown commented out.
        for key in KEYS
            .iter()
            .filter(|&&k| k != "socket_group" && k != "drain")
        {
            assert!(
                uncommented
                    .lines()
                    .any(|l| l.starts_with(&format!("{key} = "))),
                "{key} missing from the example"
            );
        }
        assert_eq!(Config::default().overlay(&settings), Config::default());
        assert_eq!(parse(EXAMPLE_CONFIG), Ok(Settings::default()));
    }

    #[test]
    fn every_key_is_read() {
        let s = parse(
            r#"
socket = "/run/x.sock"
socket_group = "staff"
service_user = "svc"
state_dir = "/var/lib/x"
keys_dir = "/etc/x/keys"
log_format = "json"
window = "256K"
budget = 1048576
stall_timeout = "1m30s"
shutdown_deadline = "500ms"
hello_deadline = "3s"
max_connections = 10
max_user_sessions = 1
max_user_topics = 2
max_public_topics = 3
max_grant_entries = 4
"#,
        )
        .unwrap();
        let c = Config::default().overlay(&s);
        assert_eq!(c.socket, PathBuf::from("/run/x.sock"));
        assert_eq!(c.socket_group.as_deref(), Some("staff"));
        assert_eq!(c.service_user, "svc");
        assert_eq!(c.state_dir, Some(PathBuf::from("/var/lib/x")));
        assert_eq!(c.keys_dir, PathBuf::from("/etc/x/keys"));
        assert_eq!(c.log_format, LogFormat::Json);
        let want = Limits {
            window: 256 * 1024,
            budget: 1024 * 1024,
            stall_timeout: Duration::from_secs(90),
            shutdown_deadline: Duration::from_millis(500),
            hello_deadline: Duration::from_secs(3),
            max_connections: 10,
            max_user_sessions: 1,
            max_user_topics: 2,
            max_public_topics: 3,
            max_grant_entries: 4,
        };
        assert_eq!(c.limits, want);
    }

    #[test]
    fn flags_override_the_file() {
        let file = parse("window = \"1M\"\nmax_user_sessions = 3\n").unwrap();
        let flags = Settings {
            window: Some(128 * 1024),
            ..Settings::default()
        };
        let c = Config::default().overlay(&file).overlay(&flags);
        assert_eq!(c.limits.window, 128 * 1024);
        assert_eq!(c.limits.max_user_sessions, 3);
    }

    #[test]
    fn an_unknown_key_is_refused_with_its_line_and_a_hint() {
        let (line, column, reason) = err("window = \"8M\"\n\nwindw = \"8M\"\n");
        assert_eq!((line, column), (3, 1));
        assert_eq!(reason, "unknown key \"windw\" (did you mean \"window\"?)");
        let (line, _, reason) = err("# c\nfrobnicate = 1\n");
        assert_eq!(line, 2);
        assert_eq!(reason, "unknown key \"frobnicate\"");
    }

    #[test]
    fn a_table_other_than_drain_is_an_unknown_key() {
        let (line, _, reason) = err("window = \"8M\"\n[limits]\nwindow = \"8M\"\n");
        assert_eq!(line, 2);
        assert!(reason.starts_with("unknown key \"limits\""), "{reason}");
    }

    #[test]
    fn bad_values_are_refused_with_key_line_and_reason() {
        for (text, line, needle) in [
            (
                "\nwindow = \"1K\"\n",
                2,
                "window: 1024 bytes is under the 64K minimum",
            ),
            (
                "window = \"eight\"\n",
                1,
                "window: expected a size such as \"8M\", got \"eight\"",
            ),
            ("budget = -1\n", 1, "budget: expected a size, got -1"),
            (
                "stall_timeout = 30\n",
                1,
                "stall_timeout: invalid type: integer `30`, expected a duration such as \"30s\"",
            ),
            (
                "stall_timeout = \"0s\"\n",
                1,
                "expected a duration above zero",
            ),
            (
                "shutdown_deadline = \"soon\"\n",
                1,
                "shutdown_deadline: expected a duration",
            ),
            (
                "max_user_sessions = 0\n",
                1,
                "max_user_sessions: expected a count of at least 1, got 0",
            ),
            (
                "max_connections = \"many\"\n",
                1,
                "max_connections: invalid type: string \"many\", expected a count such as 32",
            ),
            (
                "max_user_topics = 1.5\n",
                1,
                "max_user_topics: invalid type: floating point `1.5`, expected a count",
            ),
            (
                "log_format = \"xml\"\n",
                1,
                "unknown variant `xml`, expected `text` or `json`",
            ),
            (
                "state_dir = \"var/lib\"\n",
                1,
                "state_dir: expected an absolute path",
            ),
            (
                "service_user = \"\"\n",
                1,
                "service_user: expected a user or group name",
            ),
            ("window = \"8M\"\nwindow = \"4M\"\n", 2, "duplicate key"),
            ("window = \n", 1, ""),
        ] {
            let (l, _, reason) = err(text);
            assert_eq!(l, line, "{text:?}: {reason}");
            assert!(reason.contains(needle), "{text:?}: {reason}");
            assert!(!reason.contains('\n'), "one line: {reason:?}");
        }
    }

    #[test]
    fn a_missing_default_file_means_defaults_but_a_named_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("piped.toml");
        assert_eq!(read_file(&missing, false).unwrap(), Settings::default());
        let e = read_file(&missing, true).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }), "{e}");
    }

    #[test]
    fn a_file_error_names_file_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("piped.toml");
        std::fs::write(&path, "# limits\nmax_user_sessions = 4\n  windw = 1\n").unwrap();
        let e = read_file(&path, true).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{}:3:3: unknown key \"windw\" (did you mean \"window\"?)",
                path.display()
            )
        );
    }

    #[test]
    fn the_example_drain_uncommented_is_a_drain() {
        let start = EXAMPLE_CONFIG.find("# [[drain]]").expect("example drain");
        let text: String = EXAMPLE_CONFIG[start..]
            .lines()
            .map(|l| format!("{}\n", l.strip_prefix("# ").unwrap_or(l)))
            .collect();
        let drains = parse(&text).expect("example drain parses").drains.unwrap();
        assert_eq!(
            drains,
            [DrainSpec {
                name: "logs".into(),
                feeds: vec![("svc".into(), "log-drain".into())],
                format: DrainFormat::Json,
                scope: vec!["user".into()],
                hidden: "hidden".into(),
                admins: vec![],
                admin_group: Some("adm".into()),
                max_line: DEFAULT_DRAIN_MAX_LINE,
                events: true,
            }]
        );
        let minimal = parse("[[drain]]\nname = \"logs\"\nfeeds = [\"svc/x\"]\n").unwrap();
        let d = &minimal.drains.unwrap()[0];
        assert_eq!(
            (d.scope.clone(), d.hidden.as_str()),
            (vec!["user".to_string()], "hidden")
        );
        let c = Config::default().overlay(&parse("[[drain]]\nname = \"a\"\nfeeds = [\"s/x\"]\n[[drain]]\nname = \"b\"\nfeeds = [\"s/x\"]\n").unwrap());
        assert_eq!(c.drains.len(), 2, "one feed may feed two drains");
        assert_eq!(Config::default().restart_only_changes(&c), ["drain"]);
    }

    #[test]
    fn bad_drains_are_refused_with_a_reason() {
        let d =
            |body: &str| format!("[[drain]]\nname = \"logs\"\nfeeds = [\"svc/log-drain\"]\n{body}");
        for (text, needle) in [
            (
                "[[drain]]\nfeeds = [\"svc/x\"]\n".to_string(),
                "missing field `name`",
            ),
            (
                "[[drain]]\nname = \"logs\"\n".to_string(),
                "missing field `feeds`",
            ),
            (
                "[[drain]]\nname = \"logs\"\nfeeds = []\n".to_string(),
                "at least one feed",
            ),
            (
                "[[drain]]\nname = \"a/b\"\nfeeds = [\"s/x\"]\n".to_string(),
                "drain name",
            ),
            (
                "[[drain]]\nname = \"l\"\nfeeds = [\"public/x\"]\n".to_string(),
                "never public",
            ),
            (
                "[[drain]]\nname = \"l\"\nfeeds = [\"x\"]\n".to_string(),
                "OWNER/TOPIC",
            ),
            (
                "[[drain]]\nname = \"l\"\nfeeds = [\"s/x\", \"s/x\"]\n".to_string(),
                "listed twice",
            ),
            (format!("{}{}", d(""), d("")), "declared twice"),
            (d("max_line = \"100\"\n"), "outside 1K..=16M"),
            (d("max_line = \"1G\"\n"), "outside 1K..=16M"),
            (d("scope = []\n"), "scope"),
            (d("scope = [\"a b\"]\n"), "scope"),
            (d("hidden = \"\"\n"), "JSON field name"),
            (d("format = \"text\"\n"), "unknown variant `text`"),
            (d("hidden = \"user\"\n"), "also a scope field"),
            (
                d("scope = [\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\"]\n"),
                "1 to 8",
            ),
            (
                "[[drain]]\nname = \"logs\"\nfeeds = [\"svc/logs\"]\n".to_string(),
                "has the name of the feed svc/logs",
            ),
            (d("admins = [\"Root!\"]\n"), "admins"),
            (
                d("event = true\n"),
                "unknown key \"event\" (did you mean \"events\"?)",
            ),
        ] {
            let (_, _, reason) = err(&text);
            assert!(reason.contains(needle), "{text:?}: {reason}");
        }
    }

    #[test]
    fn sizes_take_suffixes_or_byte_counts() {
        assert_eq!(parse_size("8M"), Some(8 << 20));
        assert_eq!(parse_size("256k"), Some(256 << 10));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("65536"), Some(65536));
        assert_eq!(parse_size("M"), None);
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_size("99999999999999999999G"), None);
    }
}
