//! The grammar: words to the closed [`Request`] enum with a cursor, and the canonical
//! rendering back (the rules are in the [`crate::request`] docs, "Grammar").

use std::time::Duration;

use super::duration::{parse_duration, render_duration};
use super::error::{EXPECT_ACCESS, MAX_GRANTEES, MAX_REQUEST, RequestError};
use super::names::{AccessList, Grantee, Namespace, PUBLIC, TopicName, TopicRef, UserName};
use super::words::split_words;
use crate::exit::escape;

/// How long `pub -b` waits for a receiver when `-t` is not given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Largest `sub -n`: far more lines than any one-shot hook waits for, and small enough that
/// the broker's line counter cannot overflow however it stores it.
pub const MAX_LINES: u64 = u32::MAX as u64;

/// One request, as typed after `ssh host`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `pub [TOPIC]`: stdin to a topic.
    Pub(Pub),
    /// `sub TOPIC`: a topic to stdout.
    Sub(Sub),
    /// `pipe [TOPIC]`: both directions.
    Pipe(PipeReq),
    /// `ls [--json]`: the caller's topics.
    Ls(Ls),
    /// `grant TOPIC LIST`: add LIST to the caller's durable grant on TOPIC.
    Grant(GrantReq),
    /// `revoke TOPIC LIST`: remove LIST from the caller's durable grant on TOPIC.
    Revoke(GrantReq),
    /// `grants [--json]`: the caller's durable grants.
    Grants(Ls),
    /// `logs [DRAIN]`: the caller's lines of a scoped drain.
    Logs(Logs),
    /// `whoami`: identity as the broker sees it. `-c`/`-q` are accepted and dropped: it has
    /// no status lines.
    Whoami,
    /// `help`: usage on stderr. Also any verb with `-h`/`--help`.
    Help,
    /// `version`.
    Version,
}

/// Flags shared by every verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Common {
    /// `-c` / `-q`: no status lines.
    pub quiet: bool,
}

/// `pub [TOPIC] [-b BOOL] [-t DUR] [-e] [-p] [-a LIST] [-d MODE] [-c]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pub {
    /// `None`: the broker picks a random name and says it on stderr.
    pub topic: Option<TopicRef>,
    /// `-b`: wait for a receiver before sending (default true).
    pub block: bool,
    /// `-t`: how long `-b` waits (default [`DEFAULT_TIMEOUT`]).
    pub timeout: Duration,
    /// `-e`: send one NUL byte instead of reading stdin.
    pub empty: bool,
    /// `-a`: set the topic's grant to exactly this list.
    pub access: Option<AccessList>,
    /// `-d`: how chunks are spread over receivers.
    pub dispatch: Dispatch,
    pub common: Common,
}

/// `sub TOPIC [-k] [-n N] [-p] [-a LIST] [-c]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sub {
    /// The only topic that may be a pattern ([`TopicName::is_pattern`]); then `access` is
    /// `None`.
    pub topic: TopicRef,
    /// `-k`: stay after the last publisher leaves.
    pub keep: bool,
    /// `-n`: exit 0 after this many complete lines (1..=[`MAX_LINES`]).
    pub lines: Option<u64>,
    pub access: Option<AccessList>,
    pub common: Common,
}

/// The drain `logs` reads without a name: `ssh host logs`.
pub const DEFAULT_DRAIN: &str = "logs";

/// `logs [DRAIN] [-k] [-n N] [-c]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logs {
    /// The drain's name ([`DEFAULT_DRAIN`] when none is given).
    pub drain: TopicName,
    /// `-n`: exit 0 after this many lines.
    pub lines: Option<u64>,
    pub common: Common,
}

/// `pipe [TOPIC] [-p] [-a LIST] [-d MODE] [-r] [-c]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipeReq {
    pub topic: Option<TopicRef>,
    pub access: Option<AccessList>,
    pub dispatch: Dispatch,
    /// `-r`: receive one's own writes too.
    pub replay: bool,
    pub common: Common,
}

/// `ls [--json] [-c]`, and `grants [--json] [-c]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ls {
    pub json: bool,
    pub common: Common,
}

/// `grant TOPIC LIST [-c]` and `revoke TOPIC LIST [-c]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantReq {
    /// Never public, never a pattern.
    pub topic: TopicRef,
    /// Never empty; at most [`MAX_GRANTEES`] entries.
    pub list: AccessList,
    pub common: Common,
}

/// `-d MODE`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dispatch {
    /// Every receiver gets every chunk.
    #[default]
    Multicast,
    /// Each chunk goes to exactly one receiver.
    RoundRobin,
}

impl Request {
    /// Parses a whole request string (`SSH_ORIGINAL_COMMAND`, or `pipe-shell -c STRING`).
    pub fn parse(input: &[u8]) -> Result<Request, RequestError> {
        if input.len() > MAX_REQUEST {
            return Err(RequestError::TooLong(input.len()));
        }
        if !input.iter().all(|&b| is_printable(b)) {
            return Err(RequestError::BadByte(escape(input)));
        }
        // All bytes are ASCII now, so this cannot fail; the error arm keeps it panic-free.
        let text = std::str::from_utf8(input).map_err(|_| RequestError::BadByte(escape(input)))?;
        let words = split_words(text)?;
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        parse_list(&words)
    }

    /// Parses words that are already split (plain argv, `pipe-shell` run by hand), with the
    /// same byte and length checks as [`Request::parse`]; the length counts one separator
    /// between words.
    pub fn parse_words<S: AsRef<str>>(words: &[S]) -> Result<Request, RequestError> {
        let words: Vec<&str> = words.iter().map(AsRef::as_ref).collect();
        let total = words
            .iter()
            .map(|w| w.len())
            .sum::<usize>()
            .saturating_add(words.len().saturating_sub(1));
        if total > MAX_REQUEST {
            return Err(RequestError::TooLong(total));
        }
        if let Some(bad) = words.iter().find(|w| !w.bytes().all(is_printable)) {
            return Err(RequestError::BadByte(escape(bad.as_bytes())));
        }
        parse_list(&words)
    }

    /// The canonical form: verb, flags that differ from their defaults as `--long[=value]` in
    /// a fixed order, then the topic, then (`grant`/`revoke`) the list, comma-joined.
    /// [`Request::parse`] of it gives back `self`, and for any request that parsing produced
    /// it is at most [`MAX_REQUEST`] bytes.
    pub fn render(&self) -> String {
        let mut parts: Vec<String> = vec![self.verb().to_string()];
        // Always after the topic, so never taken for a boolean flag's value.
        let mut list: Option<&AccessList> = None;
        let mut drain: Option<&TopicName> = None;
        let mut flag = |on: bool, text: &str| {
            if on {
                parts.push(text.to_string());
            }
        };
        let topic = match self {
            Request::Pub(p) => {
                flag(!p.block, "--block=false");
                flag(
                    p.timeout != DEFAULT_TIMEOUT,
                    &format!("--timeout={}", render_duration(p.timeout)),
                );
                flag(p.empty, "--empty");
                if let Some(access) = &p.access {
                    flag(true, &format!("--access={access}"));
                }
                flag(p.dispatch == Dispatch::RoundRobin, "--dispatch=round_robin");
                flag(p.common.quiet, "--quiet");
                p.topic.as_ref()
            }
            Request::Sub(s) => {
                flag(s.keep, "--keep");
                if let Some(n) = s.lines {
                    flag(true, &format!("--lines={n}"));
                }
                if let Some(access) = &s.access {
                    flag(true, &format!("--access={access}"));
                }
                flag(s.common.quiet, "--quiet");
                Some(&s.topic)
            }
            Request::Pipe(p) => {
                if let Some(access) = &p.access {
                    flag(true, &format!("--access={access}"));
                }
                flag(p.dispatch == Dispatch::RoundRobin, "--dispatch=round_robin");
                flag(p.replay, "--replay");
                flag(p.common.quiet, "--quiet");
                p.topic.as_ref()
            }
            Request::Ls(l) | Request::Grants(l) => {
                flag(l.json, "--json");
                flag(l.common.quiet, "--quiet");
                None
            }
            Request::Grant(g) | Request::Revoke(g) => {
                flag(g.common.quiet, "--quiet");
                list = Some(&g.list);
                Some(&g.topic)
            }
            Request::Logs(l) => {
                if let Some(n) = l.lines {
                    flag(true, &format!("--lines={n}"));
                }
                flag(l.common.quiet, "--quiet");
                drain = Some(&l.drain);
                None
            }
            Request::Whoami | Request::Help | Request::Version => None,
        };
        if let Some(topic) = topic {
            let topic = topic.to_string();
            // A bare boolean flag would swallow a topic named `true`/`false` as its value
            // (module docs), so that flag is spelled with its value.
            if topic == "true" || topic == "false" {
                if let Some(last) = parts
                    .last_mut()
                    .filter(|p| p.starts_with("--") && !p.contains('='))
                {
                    last.push_str("=true");
                }
            }
            parts.push(topic);
        }
        if let Some(list) = list {
            parts.push(list.to_string());
        }
        if let Some(drain) = drain {
            parts.push(drain.as_str().to_string());
        }
        parts.join(" ")
    }

    /// The request's `-c`/`-q`; always false for verbs without status lines.
    pub fn quiet(&self) -> bool {
        match self {
            Request::Pub(p) => p.common.quiet,
            Request::Sub(s) => s.common.quiet,
            Request::Pipe(p) => p.common.quiet,
            Request::Ls(l) | Request::Grants(l) => l.common.quiet,
            Request::Grant(g) | Request::Revoke(g) => g.common.quiet,
            Request::Logs(l) => l.common.quiet,
            Request::Whoami | Request::Help | Request::Version => false,
        }
    }

    /// The verb as the user types it.
    pub fn verb(&self) -> &'static str {
        match self {
            Request::Pub(_) => Verb::Pub.name(),
            Request::Sub(_) => Verb::Sub.name(),
            Request::Pipe(_) => Verb::Pipe.name(),
            Request::Ls(_) => Verb::Ls.name(),
            Request::Grant(_) => Verb::Grant.name(),
            Request::Revoke(_) => Verb::Revoke.name(),
            Request::Grants(_) => Verb::Grants.name(),
            Request::Logs(_) => Verb::Logs.name(),
            Request::Whoami => Verb::Whoami.name(),
            Request::Help => Verb::Help.name(),
            Request::Version => Verb::Version.name(),
        }
    }
}

/// The bytes a request may contain: printable ASCII, space included.
fn is_printable(b: u8) -> bool {
    (0x20..0x7f).contains(&b)
}

/// The verbs. Deliberately closed: pico's `monitor`, `status`, `uptime` and `rss` are
/// unknown commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Pub,
    Sub,
    Pipe,
    Ls,
    Grant,
    Revoke,
    Grants,
    Logs,
    Whoami,
    Help,
    Version,
}

impl Verb {
    fn from_word(word: &str) -> Option<Verb> {
        Some(match word {
            "pub" => Verb::Pub,
            "sub" => Verb::Sub,
            "pipe" => Verb::Pipe,
            "ls" => Verb::Ls,
            "grant" => Verb::Grant,
            "revoke" => Verb::Revoke,
            "grants" => Verb::Grants,
            "logs" => Verb::Logs,
            "whoami" => Verb::Whoami,
            "help" => Verb::Help,
            "version" => Verb::Version,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Verb::Pub => "pub",
            Verb::Sub => "sub",
            Verb::Pipe => "pipe",
            Verb::Ls => "ls",
            Verb::Grant => "grant",
            Verb::Revoke => "revoke",
            Verb::Grants => "grants",
            Verb::Logs => "logs",
            Verb::Whoami => "whoami",
            Verb::Help => "help",
            Verb::Version => "version",
        }
    }

    /// Whether the verb takes this flag: pipe(1), OPTIONS, names each flag's verbs (`--json`
    /// under COMMANDS); `-c`/`-q` and `-h` go with every verb.
    fn allows(self, flag: Flag) -> bool {
        use Flag::*;
        match flag {
            Quiet | Help => true,
            Block | Timeout | Empty => self == Verb::Pub,
            Keep | Lines => matches!(self, Verb::Sub | Verb::Logs),
            Replay => self == Verb::Pipe,
            Json => matches!(self, Verb::Ls | Verb::Grants),
            Access => matches!(self, Verb::Pub | Verb::Sub | Verb::Pipe),
            // Taken by `grant`/`revoke` only to refuse it with a clear message.
            Public => matches!(
                self,
                Verb::Pub | Verb::Sub | Verb::Pipe | Verb::Grant | Verb::Revoke
            ),
            Dispatch => matches!(self, Verb::Pub | Verb::Pipe),
        }
    }

    /// How many positional words the verb takes: a topic, and for `grant`/`revoke` a list.
    fn positionals(self) -> usize {
        match self {
            Verb::Pub | Verb::Sub | Verb::Pipe | Verb::Logs => 1,
            Verb::Grant | Verb::Revoke => 2,
            Verb::Ls | Verb::Grants | Verb::Whoami | Verb::Help | Verb::Version => 0,
        }
    }

    /// Whether its topic may be a pattern (module docs: Wildcards).
    fn takes_pattern(self) -> bool {
        self == Verb::Sub
    }

    fn is_grant(self) -> bool {
        matches!(self, Verb::Grant | Verb::Revoke)
    }
}

/// Every flag of every verb; [`Verb::allows`] says which verb takes which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flag {
    Block,
    Timeout,
    Empty,
    Public,
    Access,
    Dispatch,
    Quiet,
    Keep,
    Lines,
    Replay,
    Json,
    Help,
}

/// Short and long spellings. `-c` (pico's "clean") and `-q` are the same flag.
const FLAGS: &[(Flag, Option<char>, &str)] = &[
    (Flag::Block, Some('b'), "block"),
    (Flag::Timeout, Some('t'), "timeout"),
    (Flag::Empty, Some('e'), "empty"),
    (Flag::Public, Some('p'), "public"),
    (Flag::Access, Some('a'), "access"),
    (Flag::Dispatch, Some('d'), "dispatch"),
    (Flag::Quiet, Some('c'), "clean"),
    (Flag::Quiet, Some('q'), "quiet"),
    (Flag::Keep, Some('k'), "keep"),
    (Flag::Lines, Some('n'), "lines"),
    (Flag::Replay, Some('r'), "replay"),
    (Flag::Json, None, "json"),
    (Flag::Help, Some('h'), "help"),
];

impl Flag {
    /// Looks up `-x` or `--long` (the word up to any `=`).
    fn lookup(name: &str) -> Option<Flag> {
        if let Some(long) = name.strip_prefix("--") {
            FLAGS.iter().find(|f| f.2 == long).map(|f| f.0)
        } else {
            let mut chars = name.strip_prefix('-')?.chars();
            let short = chars.next()?;
            if chars.next().is_some() {
                return None;
            }
            FLAGS.iter().find(|f| f.1 == Some(short)).map(|f| f.0)
        }
    }

    fn takes_value(self) -> bool {
        matches!(
            self,
            Flag::Timeout | Flag::Access | Flag::Dispatch | Flag::Lines
        )
    }
}

/// A cursor over the words after the verb.
struct Words<'a> {
    words: &'a [&'a str],
    pos: usize,
}

impl<'a> Words<'a> {
    fn next(&mut self) -> Option<&'a str> {
        let word = self.words.get(self.pos).copied()?;
        self.pos += 1;
        Some(word)
    }

    fn peek(&self) -> Option<&'a str> {
        self.words.get(self.pos).copied()
    }
}

/// A topic word before `-p` is known (the flag may come after it).
struct TopicWord<'a> {
    word: &'a str,
    /// What the word itself says: `Own` for a bare name, `-p` not yet applied.
    owner: Namespace,
    name: TopicName,
}

/// Splits `owner/name`; `pattern` allows a `*` in the name (never in the owner: a user name
/// has none, so `*/x` is refused here).
fn parse_topic_word(word: &str, pattern: bool) -> Result<TopicWord<'_>, RequestError> {
    let bad = || RequestError::BadTopic(escape(word.as_bytes()));
    // At most one `/`: `a/b/c` leaves a `/` in the name, which the name check refuses.
    let (owner, name) = match word.split_once('/') {
        None => (None, word),
        Some((owner, name)) => (Some(owner), name),
    };
    let name = if pattern {
        TopicName::pattern(name)
    } else {
        TopicName::new(name)
    }
    .map_err(|_| bad())?;
    let owner = match owner {
        None => Namespace::Own,
        Some(PUBLIC) => Namespace::Public,
        Some(owner) => Namespace::User(UserName::new(owner).map_err(|_| bad())?),
    };
    Ok(TopicWord { word, owner, name })
}

/// Everything the flags and topic set, before the verb's own checks.
#[derive(Default)]
struct Given<'a> {
    topic: Option<TopicWord<'a>>,
    /// The LIST of `grant`/`revoke`, already checked (never empty).
    list: Option<AccessList>,
    block: Option<bool>,
    timeout: Option<Duration>,
    empty: bool,
    public: bool,
    access: Option<AccessList>,
    dispatch: Dispatch,
    quiet: bool,
    keep: bool,
    lines: Option<u64>,
    replay: bool,
    json: bool,
}

const EXPECT_BOOL: &str = "true or false";
const EXPECT_DURATION: &str = "a duration like 30s, 1m30s or 1.5h, at most 8760h";
const EXPECT_DISPATCH: &str = "multicast or round_robin";
const EXPECT_LINES: &str = "a whole number from 1 to 4294967295";

/// The words after splitting: verb, then flags and topic in any order.
fn parse_list(words: &[&str]) -> Result<Request, RequestError> {
    let Some((&verb_word, rest)) = words.split_first() else {
        return Err(RequestError::Empty);
    };
    let verb = Verb::from_word(verb_word)
        .ok_or_else(|| RequestError::UnknownVerb(escape(verb_word.as_bytes())))?;
    let v = verb.name();
    let mut seen = Given::default();
    let mut positionals = 0;
    let mut cursor = Words {
        words: rest,
        pos: 0,
    };
    while let Some(word) = cursor.next() {
        if !word.starts_with('-') {
            if positionals >= verb.positionals() {
                return Err(RequestError::Extra {
                    verb: v,
                    arg: escape(word.as_bytes()),
                });
            }
            if positionals == 0 {
                seen.topic = Some(parse_topic_word(word, verb.takes_pattern())?);
            } else {
                seen.list = Some(parse_grant_list(v, word)?);
            }
            positionals += 1;
            continue;
        }
        let (name, inline) = match word.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (word, None),
        };
        let unknown = || RequestError::UnknownFlag {
            verb: v,
            flag: escape(name.as_bytes()),
        };
        let flag = Flag::lookup(name)
            .filter(|&f| verb.allows(f))
            .ok_or_else(unknown)?;
        let bad_value = |value: &str, expected: &'static str| RequestError::BadValue {
            verb: v,
            flag: escape(name.as_bytes()),
            value: escape(value.as_bytes()),
            expected,
        };
        if !flag.takes_value() {
            let on = match inline {
                Some(value) => parse_bool(value).ok_or_else(|| bad_value(value, EXPECT_BOOL))?,
                // The next-word rule (module docs).
                None => match cursor.peek() {
                    Some("true") => {
                        cursor.next();
                        true
                    }
                    Some("false") => {
                        cursor.next();
                        false
                    }
                    _ => true,
                },
            };
            match flag {
                Flag::Help if on => return Ok(Request::Help),
                Flag::Help => {}
                Flag::Block => seen.block = Some(on),
                Flag::Empty => seen.empty = on,
                Flag::Public => seen.public = on,
                Flag::Quiet => seen.quiet = on,
                Flag::Keep => seen.keep = on,
                Flag::Replay => seen.replay = on,
                Flag::Json => seen.json = on,
                Flag::Timeout | Flag::Access | Flag::Dispatch | Flag::Lines => {}
            }
            continue;
        }
        let value = match inline {
            Some(value) => value,
            None => cursor.next().ok_or_else(|| RequestError::MissingValue {
                verb: v,
                flag: escape(name.as_bytes()),
            })?,
        };
        match flag {
            Flag::Timeout => {
                seen.timeout =
                    Some(parse_duration(value).ok_or_else(|| bad_value(value, EXPECT_DURATION))?)
            }
            Flag::Dispatch => {
                seen.dispatch =
                    parse_dispatch(value).ok_or_else(|| bad_value(value, EXPECT_DISPATCH))?
            }
            Flag::Lines => {
                seen.lines = Some(parse_lines(value).ok_or_else(|| bad_value(value, EXPECT_LINES))?)
            }
            Flag::Access => {
                let list = parse_access(value).map_err(|entry| bad_value(entry, EXPECT_ACCESS))?;
                seen.access = Some(check_list_len(v, list)?);
            }
            _ => {}
        }
    }
    finish(verb, seen)
}

/// The checks that need every word: topic presence, `-p` against the topic, `-a` against a
/// public or wildcard topic, `grant`/`revoke` against a public topic and a missing list.
fn finish(verb: Verb, seen: Given<'_>) -> Result<Request, RequestError> {
    let v = verb.name();
    // Before the topic checks: `grant -p` (with or without a topic) has one answer.
    if verb.is_grant() && seen.public {
        return Err(RequestError::GrantOnPublic { verb: v });
    }
    let topic = match seen.topic {
        None if seen.public => return Err(RequestError::PublicWithoutTopic { verb: v }),
        None => None,
        Some(t) => {
            let namespace = match (t.owner, seen.public) {
                (Namespace::Own, false) => Namespace::Own,
                (Namespace::Own, true) | (Namespace::Public, _) => Namespace::Public,
                (Namespace::User(_), true) => {
                    return Err(RequestError::PublicWithOwner(escape(t.word.as_bytes())));
                }
                (Namespace::User(owner), false) => Namespace::User(owner),
            };
            Some(TopicRef {
                namespace,
                name: t.name,
            })
        }
    };
    let public = matches!(&topic, Some(t) if t.namespace == Namespace::Public);
    if public && seen.access.is_some() {
        return Err(RequestError::AccessWithPublic { verb: v });
    }
    if public && verb.is_grant() {
        return Err(RequestError::GrantOnPublic { verb: v });
    }
    let pattern = matches!(&topic, Some(t) if t.name.is_pattern());
    if pattern && seen.access.is_some() {
        return Err(RequestError::AccessWithPattern { verb: v });
    }
    let common = Common { quiet: seen.quiet };
    Ok(match verb {
        Verb::Pub => Request::Pub(Pub {
            topic,
            block: seen.block.unwrap_or(true),
            timeout: seen.timeout.unwrap_or(DEFAULT_TIMEOUT),
            empty: seen.empty,
            access: seen.access,
            dispatch: seen.dispatch,
            common,
        }),
        Verb::Sub => Request::Sub(Sub {
            topic: topic.ok_or(RequestError::MissingTopic { verb: v })?,
            keep: seen.keep,
            lines: seen.lines,
            access: seen.access,
            common,
        }),
        Verb::Pipe => Request::Pipe(PipeReq {
            topic,
            access: seen.access,
            dispatch: seen.dispatch,
            replay: seen.replay,
            common,
        }),
        Verb::Ls => Request::Ls(Ls {
            json: seen.json,
            common,
        }),
        Verb::Grant | Verb::Revoke => {
            let grant = GrantReq {
                topic: topic.ok_or(RequestError::MissingTopic { verb: v })?,
                list: seen.list.ok_or(RequestError::MissingList { verb: v })?,
                common,
            };
            if verb == Verb::Grant {
                Request::Grant(grant)
            } else {
                Request::Revoke(grant)
            }
        }
        Verb::Grants => Request::Grants(Ls {
            json: seen.json,
            common,
        }),
        Verb::Logs => Request::Logs(Logs {
            drain: match topic {
                None => TopicName(DEFAULT_DRAIN.to_string()),
                Some(TopicRef {
                    namespace: Namespace::Own,
                    name,
                }) => name,
                Some(other) => return Err(RequestError::DrainWithOwner(other.to_string())),
            },
            lines: seen.lines,
            common,
        }),
        Verb::Whoami => Request::Whoami,
        Verb::Help => Request::Help,
        Verb::Version => Request::Version,
    })
}

/// Go's `strconv.ParseBool`, which is what pico's users know.
fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

fn parse_dispatch(value: &str) -> Option<Dispatch> {
    match value {
        "multicast" => Some(Dispatch::Multicast),
        "round_robin" | "round-robin" => Some(Dispatch::RoundRobin),
        _ => None,
    }
}

/// `1..=MAX_LINES`, digits only (no sign, no spaces).
fn parse_lines(value: &str) -> Option<u64> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = value.parse().ok()?;
    (1..=MAX_LINES).contains(&n).then_some(n)
}

/// Splits `-a LIST`. An all-blank value is the empty list (clears the grant); otherwise every
/// comma-separated entry, trimmed of spaces, must be a grantee. `Err` holds the offending
/// entry (or the whole value when an entry is empty).
fn parse_access(value: &str) -> Result<AccessList, &str> {
    if value.trim_matches(' ').is_empty() {
        return Ok(AccessList(Vec::new()));
    }
    let mut list = Vec::new();
    for entry in value.split(',') {
        let entry = entry.trim_matches(' ');
        if entry.is_empty() {
            return Err(value);
        }
        list.push(Grantee::parse(entry).ok_or(entry)?);
    }
    Ok(AccessList(list))
}

/// The LIST of `grant`/`revoke`: `-a` syntax ([`parse_access`]), but never empty.
fn parse_grant_list(verb: &'static str, word: &str) -> Result<AccessList, RequestError> {
    let list = parse_access(word).map_err(|entry| RequestError::BadGrantee {
        verb,
        entry: escape(entry.as_bytes()),
    })?;
    if list.0.is_empty() {
        return Err(RequestError::EmptyList { verb });
    }
    check_list_len(verb, list)
}

/// At most [`MAX_GRANTEES`] entries, so the canonical rendering fits.
fn check_list_len(verb: &'static str, list: AccessList) -> Result<AccessList, RequestError> {
    if list.0.len() > MAX_GRANTEES {
        return Err(RequestError::TooManyGrantees {
            verb,
            count: list.0.len(),
        });
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::duration::MAX_TIMEOUT;
    use crate::request::names::{MAX_TOPIC_NAME, MAX_USER_NAME};
    use proptest::prelude::*;

    fn parse(s: &str) -> Result<Request, RequestError> {
        Request::parse(s.as_bytes())
    }

    fn topic(s: &str) -> TopicRef {
        match parse_topic_word(s, true) {
            Ok(t) => TopicRef {
                namespace: t.owner,
                name: t.name,
            },
            Err(e) => panic!("{s}: {e}"),
        }
    }

    fn public(name: &str) -> TopicRef {
        TopicRef {
            namespace: Namespace::Public,
            name: TopicName::new(name).unwrap(),
        }
    }

    fn user(s: &str) -> UserName {
        UserName::new(s).unwrap()
    }

    fn pub_req(s: &str) -> Pub {
        match parse(s) {
            Ok(Request::Pub(p)) => p,
            other => panic!("{s}: {other:?}"),
        }
    }

    fn sub_req(s: &str) -> Sub {
        match parse(s) {
            Ok(Request::Sub(r)) => r,
            other => panic!("{s}: {other:?}"),
        }
    }

    fn pipe_req(s: &str) -> PipeReq {
        match parse(s) {
            Ok(Request::Pipe(r)) => r,
            other => panic!("{s}: {other:?}"),
        }
    }

    fn default_pub() -> Pub {
        Pub {
            topic: None,
            block: true,
            timeout: DEFAULT_TIMEOUT,
            empty: false,
            access: None,
            dispatch: Dispatch::Multicast,
            common: Common::default(),
        }
    }

    const KEY: &str = "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s";

    // --- whole-input checks ---

    #[test]
    fn empty_and_blank_inputs_are_empty() {
        assert_eq!(parse(""), Err(RequestError::Empty));
        assert_eq!(parse("    "), Err(RequestError::Empty));
        assert_eq!(Request::parse_words::<&str>(&[]), Err(RequestError::Empty));
    }

    #[test]
    fn input_over_max_request_is_too_long() {
        let long = format!("sub {}", "x".repeat(MAX_REQUEST - 3));
        assert_eq!(long.len(), MAX_REQUEST + 1);
        assert_eq!(parse(&long), Err(RequestError::TooLong(MAX_REQUEST + 1)));
        // Length is checked before bytes.
        assert_eq!(
            Request::parse(&[0u8; MAX_REQUEST + 1]),
            Err(RequestError::TooLong(MAX_REQUEST + 1))
        );
        let at_limit = "x".repeat(MAX_REQUEST);
        assert!(matches!(
            parse(&at_limit),
            Err(RequestError::UnknownVerb(_))
        ));
    }

    #[test]
    fn control_and_non_ascii_bytes_are_refused() {
        for input in [
            &b"sub x\0"[..],
            b"sub x\n",
            b"sub\tx",
            b"sub x\x1b[2J",
            b"sub x\x7f",
            "sub caf\u{e9}".as_bytes(),
            b"sub \xff",
        ] {
            assert!(
                matches!(Request::parse(input), Err(RequestError::BadByte(_))),
                "{input:?}"
            );
        }
        let err = Request::parse(b"sub a\nb").unwrap_err().to_string();
        assert_eq!(
            err,
            "command contains a control or non-ASCII byte: sub a\\nb"
        );
    }

    #[test]
    fn parse_words_applies_the_same_checks() {
        assert_eq!(
            Request::parse_words(&["sub", "a\nb"]),
            Err(RequestError::BadByte("a\\nb".into()))
        );
        let big = "x".repeat(MAX_TOPIC_NAME);
        let pad = "y".repeat(MAX_REQUEST - 4 - MAX_TOPIC_NAME - 1);
        // 1024 bytes in all: accepted by the length check, refused as an extra argument.
        assert!(matches!(
            Request::parse_words(&["sub", big.as_str(), pad.as_str()]),
            Err(RequestError::Extra { .. })
        ));
        let bigger = "x".repeat(MAX_REQUEST - 3);
        assert_eq!(
            Request::parse_words(&["sub", bigger.as_str()]),
            Err(RequestError::TooLong(MAX_REQUEST + 1))
        );
        assert_eq!(
            Request::parse_words(&["pub", "-b", "false", "x"]),
            parse("pub -b false x")
        );
        // Words keep their spaces: no re-splitting of argv.
        assert!(matches!(
            Request::parse_words(&["sub", "a b"]),
            Err(RequestError::BadTopic(_))
        ));
    }

    // --- word splitting ---

    #[test]
    fn unterminated_quotes_are_refused() {
        for input in ["sub 'x", "sub \"x", "sub x\\", "sub \"x\\\"", "'"] {
            assert_eq!(
                parse(input),
                Err(RequestError::UnterminatedQuote),
                "{input}"
            );
        }
    }

    #[test]
    fn empty_quoted_word_is_a_word() {
        assert!(matches!(parse("''"), Err(RequestError::UnknownVerb(v)) if v.is_empty()));
        assert!(matches!(parse("sub ''"), Err(RequestError::BadTopic(_))));
    }

    // --- verbs ---

    #[test]
    fn simple_verbs_parse() {
        assert_eq!(parse("whoami"), Ok(Request::Whoami));
        assert_eq!(parse("help"), Ok(Request::Help));
        assert_eq!(parse("version -c"), Ok(Request::Version));
        assert_eq!(parse("whoami -q"), Ok(Request::Whoami));
        assert_eq!(parse("ls"), Ok(Request::Ls(Ls::default())));
        assert_eq!(
            parse("ls -c --json"),
            Ok(Request::Ls(Ls {
                json: true,
                common: Common { quiet: true }
            }))
        );
    }

    #[test]
    fn unknown_verbs_are_refused_with_a_hint() {
        for verb in [
            "monitor", "status", "uptime", "rss", "log", "PUB", "GRANT", "grants:", "--help",
        ] {
            assert!(
                matches!(parse(verb), Err(RequestError::UnknownVerb(_))),
                "{verb}"
            );
        }
        assert_eq!(
            parse("monitor x").unwrap_err().to_string(),
            "unknown command: monitor (try: help)"
        );
    }

    #[test]
    fn verbs_without_arguments_refuse_extras() {
        for input in ["help me", "version 2", "whoami x", "ls x", "ls --json x"] {
            assert!(
                matches!(parse(input), Err(RequestError::Extra { .. })),
                "{input}"
            );
        }
        assert_eq!(
            parse("whoami --json"),
            Err(RequestError::UnknownFlag {
                verb: "whoami",
                flag: "--json".into()
            })
        );
        assert!(matches!(
            parse("ls -p"),
            Err(RequestError::UnknownFlag { .. })
        ));
    }

    #[test]
    fn help_flag_on_any_verb_is_help() {
        for input in [
            "pub -h",
            "sub --help",
            "pipe x -h",
            "ls -h",
            "whoami --help",
            "help -h",
        ] {
            assert_eq!(parse(input), Ok(Request::Help), "{input}");
        }
        // `sub` needs a topic, but asking for help is not an error.
        assert_eq!(parse("sub -h"), Ok(Request::Help));
        assert_eq!(parse("sub -h=false x"), Ok(Request::Sub(sub_req("sub x"))));
    }

    // --- topics ---

    #[test]
    fn topic_words_name_namespaces() {
        assert_eq!(
            pub_req("pub x").topic,
            Some(TopicRef {
                namespace: Namespace::Own,
                name: TopicName::new("x").unwrap()
            })
        );
        assert_eq!(
            sub_req("sub alice/x").topic.namespace,
            Namespace::User(user("alice"))
        );
        assert_eq!(sub_req("sub public/x").topic, public("x"));
        assert_eq!(sub_req("sub -p x").topic, public("x"));
        assert_eq!(sub_req("sub x -p").topic, public("x"));
        assert_eq!(sub_req("sub -p public/x").topic, public("x"));
        assert_eq!(sub_req("sub -p=false x").topic.namespace, Namespace::Own);
        assert_eq!(
            sub_req("sub image:v1.2_rc-3").topic.name.as_str(),
            "image:v1.2_rc-3"
        );
        assert_eq!(
            parse("sub -p alice/x"),
            Err(RequestError::PublicWithOwner("alice/x".into()))
        );
    }

    #[test]
    fn malformed_topics_are_bad_topics() {
        let long = "x".repeat(65);
        for word in [
            "../x", "a/b/c", "/x", "x/", "a//b", ".x", "x y", "Alice/x", "public/", "$(id)",
            "`id`", "x;y", "a|b", &long, "x\\y", "*/x", "a*/x", "x?", "[x]",
        ] {
            let input = format!("sub '{word}'");
            assert!(
                matches!(parse(&input), Err(RequestError::BadTopic(_))),
                "{input}: {:?}",
                parse(&input)
            );
        }
        assert!(TopicName::new(&"x".repeat(64)).is_ok());
        // A word starting with `-` is a flag even with a `*` in it.
        assert!(matches!(
            parse("sub -x*"),
            Err(RequestError::UnknownFlag { .. })
        ));
    }

    #[test]
    fn shell_syntax_is_inert() {
        assert!(matches!(parse("pub $(id)"), Err(RequestError::BadTopic(_))));
        assert!(matches!(parse("sub ;ls"), Err(RequestError::BadTopic(_))));
        assert!(matches!(parse("sub `id`"), Err(RequestError::BadTopic(_))));
        assert!(matches!(parse("sub x;ls"), Err(RequestError::BadTopic(_))));
        assert!(matches!(
            parse("sub x | ls"),
            Err(RequestError::Extra { .. })
        ));
    }

    #[test]
    fn sub_requires_a_topic_and_one_positional_only() {
        assert_eq!(
            parse("sub -k"),
            Err(RequestError::MissingTopic { verb: "sub" })
        );
        assert_eq!(
            parse("sub a b"),
            Err(RequestError::Extra {
                verb: "sub",
                arg: "b".into()
            })
        );
        assert_eq!(parse("pub"), Ok(Request::Pub(default_pub())));
        assert_eq!(pipe_req("pipe").topic, None);
        assert_eq!(
            parse("pub -p"),
            Err(RequestError::PublicWithoutTopic { verb: "pub" })
        );
    }

    // --- flags ---

    #[test]
    fn flags_and_topic_come_in_any_order() {
        let want = sub_req("sub -c topic -k");
        assert!(want.keep && want.common.quiet);
        for input in ["sub topic -c -k", "sub -k -c topic", "sub -q --keep topic"] {
            assert_eq!(sub_req(input), want, "{input}");
        }
        assert_eq!(pub_req("pub foo -p"), pub_req("pub -p foo"));
    }

    #[test]
    fn every_flag_form_works() {
        let five = Duration::from_secs(5);
        for input in [
            "pub -t 5s x",
            "pub -t=5s x",
            "pub --timeout 5s x",
            "pub --timeout=5s x",
            "pub x -t 5000ms",
        ] {
            assert_eq!(pub_req(input).timeout, five, "{input}");
        }
        for input in [
            "pub -b=false",
            "pub --block=false",
            "pub -b false",
            "pub --block false",
            "pub -b=0",
            "pub -b=F",
            "pub -b=FALSE",
            "pub -b=False",
        ] {
            assert!(!pub_req(input).block, "{input}");
        }
        for input in [
            "pub -b",
            "pub --block",
            "pub -b=1",
            "pub -b=t",
            "pub -b=True",
            "pub -b true",
        ] {
            assert!(pub_req(input).block, "{input}");
        }
    }

    #[test]
    fn all_pub_flags() {
        let p = pub_req("pub -b=false -t 1h30m -e -a alice,bob -d round-robin -c x");
        assert_eq!(
            p,
            Pub {
                topic: Some(topic("x")),
                block: false,
                timeout: Duration::from_secs(5400),
                empty: true,
                access: Some(AccessList(vec![
                    Grantee::User(user("alice")),
                    Grantee::User(user("bob"))
                ])),
                dispatch: Dispatch::RoundRobin,
                common: Common { quiet: true },
            }
        );
        assert_eq!(
            pub_req("pub --dispatch=multicast -d round_robin").dispatch,
            Dispatch::RoundRobin
        );
        assert!(matches!(
            parse("pub -d broadcast"),
            Err(RequestError::BadValue { .. })
        ));
    }

    #[test]
    fn all_sub_and_pipe_flags() {
        let s = sub_req("sub --keep --lines 3 -a '' x --quiet");
        assert_eq!(
            s,
            Sub {
                topic: topic("x"),
                keep: true,
                lines: Some(3),
                access: Some(AccessList(vec![])),
                common: Common { quiet: true },
            }
        );
        let p = pipe_req("pipe -r -d=round_robin --replay=false room -a=carol");
        assert!(!p.replay);
        assert_eq!(p.dispatch, Dispatch::RoundRobin);
        assert_eq!(
            p.access,
            Some(AccessList(vec![Grantee::User(user("carol"))]))
        );
        assert!(pipe_req("pipe -r").replay);
    }

    #[test]
    fn flags_of_other_verbs_are_unknown() {
        for (input, flag) in [
            ("sub x -b", "-b"),
            ("sub x -t 5s", "-t"),
            ("sub x -d multicast", "-d"),
            ("pub -k", "-k"),
            ("pub -n 1", "-n"),
            ("pub -r", "-r"),
            ("pipe -e", "-e"),
            ("pub --json", "--json"),
            ("pub -x", "-x"),
            ("pub --nope=1", "--nope"),
            ("pub -bc", "-bc"),
            ("pub -block", "-block"),
            ("pub --b", "--b"),
            ("pub --", "--"),
            ("pub -", "-"),
        ] {
            match parse(input) {
                Err(RequestError::UnknownFlag { flag: f, .. }) => assert_eq!(f, flag, "{input}"),
                other => panic!("{input}: {other:?}"),
            }
        }
        assert_eq!(
            parse("sub x -b").unwrap_err().to_string(),
            "sub: unknown flag: -b (try: help)"
        );
    }

    #[test]
    fn bool_next_word_rule() {
        // `true`/`false` after a bare bool flag is its value...
        let p = pub_req("pub -b false x");
        assert!(!p.block);
        assert_eq!(p.topic, Some(topic("x")));
        assert!(pub_req("pub -e true").empty);
        assert_eq!(pub_req("pub -e true").topic, None);
        assert!(!pub_req("pub -e false").empty);
        // ...any other word is not.
        let p = pub_req("pub -e yes");
        assert!(p.empty);
        assert_eq!(p.topic, Some(topic("yes")));
        assert_eq!(pub_req("pub -b True").topic, Some(topic("True")));
        // A topic named `false` goes before the flags.
        let p = pub_req("pub false -b");
        assert!(p.block);
        assert_eq!(p.topic, Some(topic("false")));
        // A value flag takes the next word whatever it is.
        assert_eq!(pub_req("pub -d multicast true").topic, Some(topic("true")));
    }

    #[test]
    fn bad_bool_values() {
        for input in ["pub -b=yes", "pub -b=", "pub -e=2", "sub x -k=on"] {
            assert!(
                matches!(parse(input), Err(RequestError::BadValue { .. })),
                "{input}"
            );
        }
        assert_eq!(
            parse("pub -b=yes").unwrap_err().to_string(),
            "pub: bad value for -b: yes (expected true or false)"
        );
    }

    #[test]
    fn missing_values() {
        for (input, flag) in [
            ("pub -t", "-t"),
            ("sub x --lines", "--lines"),
            ("pipe -a", "-a"),
            ("pub -d", "-d"),
        ] {
            match parse(input) {
                Err(RequestError::MissingValue { flag: f, .. }) => assert_eq!(f, flag),
                other => panic!("{input}: {other:?}"),
            }
        }
    }

    #[test]
    fn repeated_flags_keep_the_last_value() {
        assert!(!pub_req("pub -b -b=false").block);
        assert_eq!(pub_req("pub -t 1s -t 2s").timeout, Duration::from_secs(2));
    }

    // --- values ---

    #[test]
    fn bad_durations_are_bad_values() {
        assert!(matches!(
            parse("pub -t 1y"),
            Err(RequestError::BadValue { .. })
        ));
        assert!(matches!(
            parse("pub -t=9000h"),
            Err(RequestError::BadValue { .. })
        ));
    }

    #[test]
    fn lines_values() {
        assert_eq!(sub_req("sub x -n 1").lines, Some(1));
        assert_eq!(sub_req("sub x -n=4294967295").lines, Some(MAX_LINES));
        for bad in [
            "0",
            "-1",
            "+1",
            "4294967296",
            "1.5",
            "x",
            "",
            "99999999999999999999999",
        ] {
            let input = format!("sub x -n '{bad}'");
            assert!(
                matches!(parse(&input), Err(RequestError::BadValue { .. })),
                "{input}"
            );
        }
    }

    #[test]
    fn access_lists() {
        let list = |s: &str| match parse(&format!("sub x -a {s}")) {
            Ok(Request::Sub(Sub { access, .. })) => access,
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(
            list(&format!("' alice , {KEY} ,bob'")),
            Some(AccessList(vec![
                Grantee::User(user("alice")),
                Grantee::Key(KEY.into()),
                Grantee::User(user("bob")),
            ]))
        );
        assert_eq!(list("''"), Some(AccessList(vec![])));
        assert_eq!(list("' '"), Some(AccessList(vec![])));
        assert_eq!(sub_req("sub x --access=").access, Some(AccessList(vec![])));
        for bad in [
            "a,,b",
            "a,",
            ",a",
            "Alice",
            "public",
            "SHA256:short",
            &format!("{KEY}="),
            &format!("{}!", &KEY[..KEY.len() - 1]),
            "sha256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s",
            "'a b'",
        ] {
            let input = format!("sub x -a {bad}");
            assert!(
                matches!(parse(&input), Err(RequestError::BadValue { .. })),
                "{input}: {:?}",
                parse(&input)
            );
        }
        let many = vec!["u"; MAX_GRANTEES + 1].join(",");
        assert_eq!(
            parse(&format!("sub x -a {many}")),
            Err(RequestError::TooManyGrantees {
                verb: "sub",
                count: MAX_GRANTEES + 1
            })
        );
    }

    #[test]
    fn access_with_public_topic_is_refused() {
        for input in ["pub -p x -a bob", "sub public/x -a ''", "pipe -a bob -p x"] {
            assert!(
                matches!(parse(input), Err(RequestError::AccessWithPublic { .. })),
                "{input}"
            );
        }
        assert_eq!(
            parse("pub -p x -a bob").unwrap_err().to_string(),
            "pub: -a cannot be used with public topics"
        );
    }

    #[test]
    fn echoed_input_is_escaped_and_truncated() {
        let err = parse(&format!("sub {}", "x".repeat(500)))
            .unwrap_err()
            .to_string();
        assert!(err.len() < 200, "{err}");
        let err = parse(r"sub a\\b").unwrap_err().to_string();
        assert!(err.contains(r"a\\b"), "{err}");
        let err = parse(&format!("{} x", "v".repeat(300)))
            .unwrap_err()
            .to_string();
        assert!(err.len() < 120, "{err}");
    }

    // --- wildcards ---

    fn name(s: &str) -> TopicName {
        TopicName::pattern(s).unwrap()
    }

    #[test]
    fn sub_takes_patterns() {
        let s = sub_req("sub 'logs-*'");
        assert_eq!(s.topic.namespace, Namespace::Own);
        assert_eq!(s.topic.name.as_str(), "logs-*");
        assert!(s.topic.name.is_pattern());
        assert_eq!(
            sub_req("sub alice/logs-*").topic,
            TopicRef {
                namespace: Namespace::User(user("alice")),
                name: name("logs-*")
            }
        );
        assert_eq!(sub_req("sub -p 'a*'").topic.namespace, Namespace::Public);
        assert_eq!(
            sub_req("sub public/logs-*").topic.namespace,
            Namespace::Public
        );
        for ok in [
            "*",
            "**",
            "*:latest",
            "a*b*c",
            "x.*_-:*",
            &format!("{}*", "x".repeat(63)),
        ] {
            assert_eq!(sub_req(&format!("sub '{ok}' -k")).topic.name.as_str(), ok);
        }
        assert!(!sub_req("sub x").topic.name.is_pattern());
        // Everything else of `sub` still works with a pattern.
        let s = sub_req("sub -k -n 3 -c 'logs-*'");
        assert!(s.keep && s.common.quiet && s.lines == Some(3));
    }

    #[test]
    fn bad_patterns_are_bad_topics() {
        let long = format!("{}*", "x".repeat(MAX_TOPIC_NAME));
        assert_eq!(long.len(), 65);
        for word in [
            "*/x",
            "*/*",
            "a*/x",
            "public*/x",
            ".*",
            "_*",
            "a/b/*",
            "*/",
            "a b*",
            "*?",
            &long,
        ] {
            let input = format!("sub '{word}'");
            assert!(
                matches!(parse(&input), Err(RequestError::BadTopic(_))),
                "{input}: {:?}",
                parse(&input)
            );
        }
        assert_eq!(
            parse("sub '*/x'"),
            Err(RequestError::BadTopic("*/x".into()))
        );
        assert!(matches!(
            TopicName::pattern(""),
            Err(RequestError::BadTopic(_))
        ));
        assert!(matches!(
            TopicName::pattern(&long),
            Err(RequestError::BadTopic(_))
        ));
    }

    #[test]
    fn only_sub_takes_patterns() {
        for input in [
            "pub 'a*'",
            "pipe 'a*'",
            "pub -p 'a*'",
            "pipe alice/x*",
            "grant 'a*' bob",
            "revoke alice/* bob",
        ] {
            assert!(
                matches!(parse(input), Err(RequestError::BadTopic(_))),
                "{input}: {:?}",
                parse(input)
            );
        }
        assert!(matches!(
            TopicName::new("a*"),
            Err(RequestError::BadTopic(_))
        ));
        assert!("a*".parse::<TopicName>().is_err());
        assert_eq!(TopicName::pattern("abc"), TopicName::new("abc"));
    }

    #[test]
    fn access_with_a_pattern_is_refused() {
        assert_eq!(
            parse("sub 'logs-*' -a bob"),
            Err(RequestError::AccessWithPattern { verb: "sub" })
        );
        assert!(matches!(
            parse("sub -a '' alice/*"),
            Err(RequestError::AccessWithPattern { .. })
        ));
        // Public first: that is the older, more general refusal.
        assert_eq!(
            parse("sub -p '*' -a bob"),
            Err(RequestError::AccessWithPublic { verb: "sub" })
        );
    }

    // --- grants ---

    fn grant_req(s: &str) -> GrantReq {
        match parse(s) {
            Ok(Request::Grant(g) | Request::Revoke(g)) => g,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn grant_and_revoke_parse() {
        let want = GrantReq {
            topic: topic("alice/x"),
            list: AccessList(vec![Grantee::User(user("bob")), Grantee::Key(KEY.into())]),
            common: Common { quiet: true },
        };
        let input = format!("grant -q alice/x ' bob , {KEY}'");
        assert_eq!(parse(&input), Ok(Request::Grant(want.clone())));
        let input = format!("revoke alice/x bob,{KEY} --clean");
        assert_eq!(parse(&input), Ok(Request::Revoke(want)));
        let g = grant_req("grant x carol");
        assert_eq!(g.topic, topic("x"));
        assert_eq!(g.list, AccessList(vec![Grantee::User(user("carol"))]));
        assert!(!g.common.quiet);
        // Flags anywhere; positionals in order. `true` is a user name when not after a bare
        // boolean flag (`grant x -c true` has no list: see grant_needs_topic_and_list).
        assert_eq!(
            grant_req("grant x true -c").list,
            AccessList(vec![Grantee::User(user("true"))])
        );
        assert_eq!(parse("grant -h"), Ok(Request::Help));
        assert_eq!(parse("revoke x --help"), Ok(Request::Help));
        assert_eq!(grant_req("grant -p=false x bob").topic, topic("x"));
    }

    #[test]
    fn grant_needs_topic_and_list() {
        assert_eq!(
            parse("grant"),
            Err(RequestError::MissingTopic { verb: "grant" })
        );
        assert_eq!(
            parse("revoke -c"),
            Err(RequestError::MissingTopic { verb: "revoke" })
        );
        assert_eq!(
            parse("grant x"),
            Err(RequestError::MissingList { verb: "grant" })
        );
        // A bare boolean flag takes a following `true`/`false`, any other word is the list.
        assert!(parse("grant x -c bob").is_ok());
        assert_eq!(
            parse("revoke x -c true"),
            Err(RequestError::MissingList { verb: "revoke" })
        );
        assert_eq!(
            parse("grant x bob carol"),
            Err(RequestError::Extra {
                verb: "grant",
                arg: "carol".into()
            })
        );
        assert_eq!(
            parse("grant x").unwrap_err().to_string(),
            "grant: a list is required (grant TOPIC USER-OR-KEY[,...])"
        );
    }

    #[test]
    fn grant_list_errors() {
        for input in ["grant x ''", "grant x ' '", "grant x '  '"] {
            assert_eq!(
                parse(input),
                Err(RequestError::EmptyList { verb: "grant" }),
                "{input}"
            );
        }
        assert_eq!(
            parse("grant x ''").unwrap_err().to_string(),
            "grant: nothing to grant (the list is empty)"
        );
        assert_eq!(
            parse("revoke x ''"),
            Err(RequestError::EmptyList { verb: "revoke" })
        );
        for (input, entry) in [
            ("grant x 'a b'", "a b"),
            ("grant x Bob", "Bob"),
            ("grant x public", "public"),
            ("grant x a,,b", "a,,b"),
            ("grant x bob,", "bob,"),
            ("revoke x SHA256:short", "SHA256:short"),
            ("grant x 'bob;id'", "bob;id"),
        ] {
            assert_eq!(
                parse(input),
                Err(RequestError::BadGrantee {
                    verb: if input.starts_with("grant") {
                        "grant"
                    } else {
                        "revoke"
                    },
                    entry: entry.into()
                }),
                "{input}"
            );
        }
        assert_eq!(
            parse("grant x Bob").unwrap_err().to_string(),
            "grant: bad entry in list: Bob (comma-separated user names or SHA256: key \
             fingerprints)"
        );
        let many = vec!["u"; MAX_GRANTEES + 1].join(",");
        assert_eq!(
            parse(&format!("grant x {many}")),
            Err(RequestError::TooManyGrantees {
                verb: "grant",
                count: MAX_GRANTEES + 1
            })
        );
        let most = vec!["u"; MAX_GRANTEES].join(",");
        assert_eq!(
            grant_req(&format!("grant x {most}")).list.0.len(),
            MAX_GRANTEES
        );
    }

    #[test]
    fn grant_topic_errors() {
        for input in [
            "grant -p x bob",
            "grant x -p bob",
            "revoke public/x bob",
            "grant -p",
            "grant -p alice/x bob",
            "revoke bob -p",
        ] {
            assert!(
                matches!(parse(input), Err(RequestError::GrantOnPublic { .. })),
                "{input}: {:?}",
                parse(input)
            );
        }
        assert_eq!(
            parse("revoke public/x bob").unwrap_err().to_string(),
            "revoke: public topics are open to everyone and take no grant"
        );
        for input in [
            "grant 'x y' bob",
            "grant a/b/c bob",
            "revoke '' bob",
            "grant */x bob",
        ] {
            assert!(
                matches!(parse(input), Err(RequestError::BadTopic(_))),
                "{input}: {:?}",
                parse(input)
            );
        }
        for (input, flag) in [
            ("grant x bob -a carol", "-a"),
            ("grant x bob -k", "-k"),
            ("revoke x bob --json", "--json"),
            ("grant x bob -d multicast", "-d"),
        ] {
            match parse(input) {
                Err(RequestError::UnknownFlag { flag: f, .. }) => assert_eq!(f, flag, "{input}"),
                other => panic!("{input}: {other:?}"),
            }
        }
    }

    #[test]
    fn grants_parses() {
        assert_eq!(parse("grants"), Ok(Request::Grants(Ls::default())));
        assert_eq!(
            parse("grants --json -q"),
            Ok(Request::Grants(Ls {
                json: true,
                common: Common { quiet: true }
            }))
        );
        assert!(matches!(parse("grants x"), Err(RequestError::Extra { .. })));
        assert!(matches!(
            parse("grants -p"),
            Err(RequestError::UnknownFlag { .. })
        ));
        assert_eq!(parse("grants -h"), Ok(Request::Help));
    }

    // --- rendering ---

    #[test]
    fn render_is_canonical() {
        assert_eq!(parse("pub").map(|r| r.render()), Ok("pub".into()));
        assert_eq!(
            parse(&format!(
                "pub topic -c -d round-robin -a alice,{KEY} -e -t 5s -b=0"
            ))
            .map(|r| r.render()),
            Ok(format!(
                "pub --block=false --timeout=5000ms --empty --access=alice,{KEY} \
                 --dispatch=round_robin --quiet topic"
            ))
        );
        assert_eq!(
            parse("pub -t 1ns x").map(|r| r.render()),
            Ok("pub --timeout=1ns x".into())
        );
        assert_eq!(
            parse("sub -p x -k -n 2 -q").map(|r| r.render()),
            Ok("sub --keep --lines=2 --quiet public/x".into())
        );
        assert_eq!(
            parse("sub bob/x -a ''").map(|r| r.render()),
            Ok("sub --access= bob/x".into())
        );
        assert_eq!(
            parse("pipe -r -c -d round_robin").map(|r| r.render()),
            Ok("pipe --dispatch=round_robin --replay --quiet".into())
        );
        assert_eq!(
            parse("ls -c --json").map(|r| r.render()),
            Ok("ls --json --quiet".into())
        );
        assert_eq!(parse("whoami -c").map(|r| r.render()), Ok("whoami".into()));
        assert_eq!(
            parse(&format!("grant -c alice/x ' bob , {KEY}'")).map(|r| r.render()),
            Ok(format!("grant --quiet alice/x bob,{KEY}"))
        );
        assert_eq!(
            parse("revoke x bob").map(|r| r.render()),
            Ok("revoke x bob".into())
        );
        assert_eq!(
            parse("grants -q --json").map(|r| r.render()),
            Ok("grants --json --quiet".into())
        );
        assert_eq!(
            parse("sub -p 'logs-*' -k").map(|r| r.render()),
            Ok("sub --keep public/logs-*".into())
        );
    }

    #[test]
    fn render_keeps_topics_named_true_or_false() {
        for input in [
            "pub true -e",
            "sub false -k",
            "pipe true -r -c",
            "sub true",
            "pub false -t 1s",
            "grant true false -c",
            "revoke false true",
        ] {
            let r = parse(input).unwrap();
            assert_eq!(
                parse(&r.render()),
                Ok(r.clone()),
                "{input} -> {}",
                r.render()
            );
        }
        assert_eq!(
            parse("pub true -e").unwrap().render(),
            "pub --empty=true true"
        );
    }

    #[test]
    fn longest_rendering_fits() {
        let key = Grantee::Key(KEY.into());
        let r = Request::Pub(Pub {
            topic: Some(TopicRef {
                namespace: Namespace::User(user(&"u".repeat(MAX_USER_NAME))),
                name: TopicName::new(&"t".repeat(MAX_TOPIC_NAME)).unwrap(),
            }),
            block: false,
            timeout: MAX_TIMEOUT - Duration::from_nanos(1),
            empty: true,
            access: Some(AccessList(vec![key; MAX_GRANTEES])),
            dispatch: Dispatch::RoundRobin,
            common: Common { quiet: true },
        });
        let text = r.render();
        assert!(text.len() <= MAX_REQUEST, "{}", text.len());
        assert_eq!(text.len(), 194 + 16 * 51 - 1);
        assert_eq!(parse(&text), Ok(r));

        let grant = GrantReq {
            topic: TopicRef {
                namespace: Namespace::User(user(&"u".repeat(MAX_USER_NAME))),
                name: TopicName::new(&"t".repeat(MAX_TOPIC_NAME)).unwrap(),
            },
            list: AccessList(vec![Grantee::Key(KEY.into()); MAX_GRANTEES]),
            common: Common { quiet: true },
        };
        let r = Request::Revoke(grant);
        let text = r.render();
        assert_eq!(text.len(), 14 + 98 + 1 + 16 * 51 - 1);
        assert!(text.len() <= MAX_REQUEST, "{}", text.len());
        assert_eq!(parse(&text), Ok(r));
    }

    #[test]
    fn logs_reads_a_drain_by_bare_name() {
        let logs = |drain: &str, lines, quiet| {
            Ok(Request::Logs(Logs {
                drain: TopicName::new(drain).unwrap(),
                lines,
                common: Common { quiet },
            }))
        };
        assert_eq!(parse("logs"), logs("logs", None, false));
        assert_eq!(
            parse("logs -k"),
            logs("logs", None, false),
            "-k is what a drain does"
        );
        assert_eq!(parse("logs audit -n 3 -c"), logs("audit", Some(3), true));
        assert_eq!(parse("logs -n=1 audit"), logs("audit", Some(1), false));
        assert_eq!(parse("logs -n 2").unwrap().render(), "logs --lines=2 logs");
        for (bad, text) in [
            (
                "logs alice/logs",
                "logs: a drain is named by a bare name, not owner/name: alice/logs",
            ),
            (
                "logs public/x",
                "logs: a drain is named by a bare name, not owner/name: public/x",
            ),
            ("logs -p x", "logs: unknown flag: -p (try: help)"),
            ("logs -a bob", "logs: unknown flag: -a (try: help)"),
            (
                "logs 'l*'",
                "bad topic: l* (names are letters, digits and ._:- up to 64, optionally owner/name)",
            ),
            ("logs a b", "logs: unexpected argument: b"),
            (
                "logs -n 0",
                "logs: bad value for -n: 0 (expected a whole number from 1 to 4294967295)",
            ),
        ] {
            assert_eq!(parse(bad).unwrap_err().to_string(), text, "{bad}");
        }
    }

    #[test]
    fn quiet_and_verb() {
        assert!(parse("sub x -c").unwrap().quiet());
        assert!(!parse("sub x").unwrap().quiet());
        assert!(parse("ls -q").unwrap().quiet());
        assert!(!parse("whoami -q").unwrap().quiet());
        assert!(parse("grant x bob -q").unwrap().quiet());
        assert!(!parse("revoke x bob").unwrap().quiet());
        assert!(parse("grants -c").unwrap().quiet());
        for verb in [
            "pub", "sub", "pipe", "ls", "grant", "revoke", "grants", "logs", "whoami", "help",
            "version",
        ] {
            let input = match verb {
                "sub" => "sub x",
                "grant" => "grant x bob",
                "revoke" => "revoke x bob",
                _ => verb,
            };
            assert_eq!(parse(input).unwrap().verb(), verb);
        }
    }

    // --- properties ---

    fn topic_name() -> impl Strategy<Value = TopicName> {
        "[A-Za-z0-9][A-Za-z0-9._:-]{0,63}".prop_map(TopicName)
    }

    fn user_name() -> impl Strategy<Value = UserName> {
        "[a-z_][a-z0-9_-]{0,31}"
            .prop_filter("reserved", |s| s != PUBLIC)
            .prop_map(UserName)
    }

    /// A pattern with at least one `*`: up to 32 + 1 + 31 = 64 characters.
    fn pattern_name() -> impl Strategy<Value = TopicName> {
        (
            "([A-Za-z0-9*][A-Za-z0-9._:*-]{0,31})?",
            "[A-Za-z0-9._:*-]{0,31}",
        )
            .prop_map(|(head, tail)| TopicName(format!("{head}*{tail}")))
    }

    fn namespace() -> impl Strategy<Value = Namespace> {
        prop_oneof![
            Just(Namespace::Own),
            user_name().prop_map(Namespace::User),
            Just(Namespace::Public),
        ]
    }

    fn topic_ref() -> impl Strategy<Value = TopicRef> {
        (namespace(), topic_name()).prop_map(|(namespace, name)| TopicRef { namespace, name })
    }

    /// What `sub` takes: a name or a pattern.
    fn sub_topic_ref() -> impl Strategy<Value = TopicRef> {
        let name = prop_oneof![topic_name(), pattern_name()];
        (namespace(), name).prop_map(|(namespace, name)| TopicRef { namespace, name })
    }

    /// What `grant`/`revoke` take: never public.
    fn grant_topic_ref() -> impl Strategy<Value = TopicRef> {
        let namespace = prop_oneof![Just(Namespace::Own), user_name().prop_map(Namespace::User),];
        (namespace, topic_name()).prop_map(|(namespace, name)| TopicRef { namespace, name })
    }

    fn grantees(min: usize) -> impl Strategy<Value = AccessList> {
        let grantee = prop_oneof![
            user_name().prop_map(Grantee::User),
            "SHA256:[A-Za-z0-9+/]{43}".prop_map(Grantee::Key),
        ];
        proptest::collection::vec(grantee, min..=MAX_GRANTEES).prop_map(AccessList)
    }

    fn access_list() -> impl Strategy<Value = Option<AccessList>> {
        proptest::option::of(grantees(0))
    }

    fn duration() -> impl Strategy<Value = Duration> {
        let max = u64::try_from(MAX_TIMEOUT.as_nanos()).unwrap_or(u64::MAX);
        prop_oneof![
            Just(DEFAULT_TIMEOUT),
            Just(MAX_TIMEOUT),
            (0..=max / 1_000_000).prop_map(Duration::from_millis),
            (0..=max).prop_map(Duration::from_nanos),
        ]
    }

    fn dispatch() -> impl Strategy<Value = Dispatch> {
        prop_oneof![Just(Dispatch::Multicast), Just(Dispatch::RoundRobin)]
    }

    /// `-a` is refused on public and wildcard topics, so a generated request drops it there.
    fn allowed_access(topic: Option<&TopicRef>, access: Option<AccessList>) -> Option<AccessList> {
        match topic {
            Some(t) if t.namespace == Namespace::Public || t.name.is_pattern() => None,
            _ => access,
        }
    }

    fn request() -> impl Strategy<Value = Request> {
        let common = any::<bool>().prop_map(|quiet| Common { quiet });
        let pub_req = (
            proptest::option::of(topic_ref()),
            any::<bool>(),
            duration(),
            any::<bool>(),
            access_list(),
            dispatch(),
            common.clone(),
        )
            .prop_map(|(topic, block, timeout, empty, access, dispatch, common)| {
                Request::Pub(Pub {
                    access: allowed_access(topic.as_ref(), access),
                    topic,
                    block,
                    timeout,
                    empty,
                    dispatch,
                    common,
                })
            });
        let sub_req = (
            sub_topic_ref(),
            any::<bool>(),
            proptest::option::of(1..=MAX_LINES),
            access_list(),
            common.clone(),
        )
            .prop_map(|(topic, keep, lines, access, common)| {
                Request::Sub(Sub {
                    access: allowed_access(Some(&topic), access),
                    topic,
                    keep,
                    lines,
                    common,
                })
            });
        let pipe_req = (
            proptest::option::of(topic_ref()),
            access_list(),
            dispatch(),
            any::<bool>(),
            common.clone(),
        )
            .prop_map(|(topic, access, dispatch, replay, common)| {
                Request::Pipe(PipeReq {
                    access: allowed_access(topic.as_ref(), access),
                    topic,
                    dispatch,
                    replay,
                    common,
                })
            });
        let ls = (any::<bool>(), common.clone())
            .prop_map(|(json, common)| Request::Ls(Ls { json, common }));
        let grants = (any::<bool>(), common.clone())
            .prop_map(|(json, common)| Request::Grants(Ls { json, common }));
        let logs = (
            topic_name(),
            proptest::option::of(1..=MAX_LINES),
            common.clone(),
        )
            .prop_map(|(drain, lines, common)| {
                Request::Logs(Logs {
                    drain,
                    lines,
                    common,
                })
            });
        let grant = (any::<bool>(), grant_topic_ref(), grantees(1), common).prop_map(
            |(revoke, topic, list, common)| {
                let g = GrantReq {
                    topic,
                    list,
                    common,
                };
                if revoke {
                    Request::Revoke(g)
                } else {
                    Request::Grant(g)
                }
            },
        );
        prop_oneof![
            4 => pub_req,
            4 => sub_req,
            4 => pipe_req,
            3 => grant,
            1 => ls,
            1 => grants,
            2 => logs,
            1 => Just(Request::Whoami),
            1 => Just(Request::Help),
            1 => Just(Request::Version),
        ]
    }

    /// Request-shaped text: fragments that exercise every branch of the splitter and parser.
    fn request_like() -> impl Strategy<Value = String> {
        let fragment = prop_oneof![
            Just(" "),
            Just("  "),
            Just("'"),
            Just("\""),
            Just("\\"),
            Just("="),
            Just(","),
            Just("/"),
            Just("pub "),
            Just("sub "),
            Just("pipe "),
            Just("ls "),
            Just("grant "),
            Just("revoke "),
            Just("grants"),
            Just("whoami"),
            Just("*"),
            Just("logs-*"),
            Just("bob,"),
            Just("-"),
            Just("--"),
            Just("-b"),
            Just("-t"),
            Just("-e"),
            Just("-p"),
            Just("-a"),
            Just("-d"),
            Just("-c"),
            Just("-k"),
            Just("-n"),
            Just("-r"),
            Just("-h"),
            Just("--json"),
            Just("--access="),
            Just("--timeout="),
            Just("true"),
            Just("false"),
            Just("1.5h"),
            Just("30s"),
            Just("0"),
            Just("7"),
            Just("round_robin"),
            Just("SHA256:"),
            Just("public/"),
            Just("alice"),
            Just("x"),
            Just("$"),
            Just(";"),
        ];
        proptest::collection::vec(fragment, 0..24).prop_map(|parts| parts.concat())
    }

    proptest! {
        #[test]
        fn parse_never_panics_on_bytes(input in proptest::collection::vec(any::<u8>(), 0..1200)) {
            let _ = Request::parse(&input);
        }

        #[test]
        fn parse_words_never_panics(words in proptest::collection::vec(any::<String>(), 0..8)) {
            let _ = Request::parse_words(&words);
        }

        #[test]
        fn parse_never_panics_on_request_like_text(input in request_like()) {
            // Whatever parses renders back to itself and fits.
            if let Ok(r) = Request::parse(input.as_bytes()) {
                let text = r.render();
                prop_assert!(text.len() <= MAX_REQUEST);
                prop_assert_eq!(Request::parse(text.as_bytes()), Ok(r));
            }
        }

        #[test]
        fn render_round_trips(r in request()) {
            let text = r.render();
            prop_assert!(text.len() <= MAX_REQUEST, "{} bytes: {}", text.len(), text);
            prop_assert_eq!(Request::parse(text.as_bytes()), Ok(r));
        }
    }
}
