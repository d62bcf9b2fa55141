//! The request language: what a user types after `ssh host`. Users read it in pipe(1)
//! (man/pipe.1: DESCRIPTION, COMMANDS, OPTIONS); this is the precise form.
//!
//! The input is untrusted. It is checked whole before it is split ([`MAX_REQUEST`] bytes,
//! printable ASCII only), split into words with a small quote-aware splitter (no expansion of
//! any kind, nothing is ever handed to a shell), and parsed with a cursor into the closed
//! [`Request`] enum. Every word must be used: leftovers are an error.
//!
//! [`Request::render`] writes the canonical form back; `parse(render(r)) == r` holds for every
//! request, which is how `pipe-shell` hands a request to `piped`: the broker parses the
//! canonical string again, so a request is validated twice by the same grammar.
//!
//! # Words
//!
//! Words are separated by runs of spaces. `'...'` is literal; `"..."` is literal except for
//! `\"` and `\\`; outside quotes a backslash makes the next character literal. Quoted and bare
//! parts join into one word (`a'b c'd` is `ab cd`) and `''` is an empty word. `$`, backticks,
//! `;`, `|`, `*` and the like are ordinary characters: no flag accepts them, and no topic
//! either, except `*` in a `sub` topic (see Wildcards).
//!
//! # Verbs
//!
//! - `pub [TOPIC]`, `pipe [TOPIC]`, `sub TOPIC`: the data verbs.
//! - `grant TOPIC LIST`, `revoke TOPIC LIST`: add to or remove from the durable grant on one
//!   of the caller's topics. LIST is the second positional word, with the syntax and limits
//!   of `-a LIST` but never empty. Public topics take no grant, so `-p` and `public/name`
//!   are usage errors there.
//! - `logs [DRAIN] [-n N]`: the caller's lines of a scoped drain the admin declared
//!   (default `logs`). `-k` is accepted and changes nothing: a drain never ends. DRAIN is a
//!   bare name, never `owner/name` nor public.
//! - `grants [--json]`, `ls [--json]`, `whoami`, `help`, `version`.
//!
//! # Grammar
//!
//! `VERB` first, then flags and positional words in any order; positionals are taken in
//! order (the topic, then for `grant`/`revoke` the list). Flags are written `-x`, `--long`,
//! `-x=VALUE`, `--long=VALUE` or `-x VALUE`; a flag given twice keeps its last value (as Go's
//! `flag` package, which pico uses). A word that starts with `-` is never a positional.
//! `-h`/`--help` after any verb is a request for the general usage.
//!
//! Boolean flags (`-b -e -p -k -r -c -q --json`) take no separate value, with one exception:
//! when the next word is exactly `true` or `false` it is taken as the flag's value, so
//! `pub -b false topic` means what it says (pico's Go parser would publish to a topic named
//! `false`). A topic literally named `true` or `false` must therefore come before the flags,
//! or after a flag that takes a value: `pub false -b`, not `pub -b false`.
//! [`Request::render`] takes care of this itself.
//!
//! # Wildcards
//!
//! A `sub` topic name may be a pattern (pipe(1), `sub`): `*` matches any run of characters,
//! possibly empty, and the pattern must match the whole name (`sub 'logs-*'`,
//! `sub alice/logs-*`, `sub -p '*:latest'`). Only the name may hold one, never the owner
//! (`*/x` is a bad topic), so a pattern never reaches across owners. `-a` is refused with a
//! pattern: a grant belongs to one topic. Every other verb refuses `*` as a bad topic. See
//! [`TopicName::pattern`] and [`TopicName::matches`].
//!
//! # Parts
//!
//! Each depends only on those above it:
//!
//! - `error`: [`RequestError`] and the limits of the whole string ([`MAX_REQUEST`],
//!   [`MAX_GRANTEES`]).
//! - `names`: [`TopicName`], [`UserName`], [`Namespace`], [`TopicRef`], [`Grantee`],
//!   [`AccessList`], each checked when built.
//! - `words`: [`split_words`].
//! - `duration`: [`parse_duration`], Go's syntax.
//! - `grammar`: words to [`Request`] and [`Request::render`] back.

mod duration;
mod error;
mod grammar;
mod names;
mod words;

pub use duration::{MAX_TIMEOUT, parse_duration};
pub use error::{MAX_GRANTEES, MAX_REQUEST, RequestError};
pub use grammar::{
    Common, DEFAULT_DRAIN, DEFAULT_TIMEOUT, Dispatch, GrantReq, Logs, Ls, MAX_LINES, PipeReq, Pub,
    Request, Sub,
};
pub use names::{
    AccessList, Grantee, MAX_TOPIC_NAME, MAX_USER_NAME, Namespace, TopicName, TopicRef, UserName,
};
pub use words::split_words;
