//! Grants, wildcards and `ls` end to end through a real sshd (pipe(1), DESCRIPTION and
//! COMMANDS): durable grants and the verbs that manage them, `-a`, wildcard subscriptions
//! across namespaces, and what `ls` shows to an owner and to a grantee.

use std::collections::BTreeMap;
use std::thread;
use std::time::Duration;

use serde_json::Value;

use crate::harness::team::*;
use crate::harness::*;

const NO_SUCH_TOPIC: &str = "pipe: no such topic or access denied\n";

#[track_caller]
fn assert_ok(out: &Output, what: &str) {
    assert_eq!(out.code, Some(0), "{what}: {out:?}");
}

/// `grants --json` as `m`: topic → sorted grant entries.
fn grants_of(t: &Team, m: &Member) -> BTreeMap<String, Vec<String>> {
    let out = t.run(m, "grants --json", b"");
    assert_ok(&out, "grants --json");
    let text = String::from_utf8_lossy(&out.stdout);
    let Ok(Value::Array(items)) = serde_json::from_str::<Value>(text.trim()) else {
        panic!("grants --json: not one JSON array: {text:?}");
    };
    items
        .iter()
        .map(|e| {
            let topic = e["topic"].as_str().expect("topic").to_string();
            let mut list: Vec<String> = e["grant"]
                .as_array()
                .unwrap_or_else(|| panic!("grants --json: no grant list in {e}"))
                .iter()
                .map(|g| g.as_str().expect("entry").to_string())
                .collect();
            list.sort();
            (topic, list)
        })
        .collect()
}

fn grants(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
    pairs
        .iter()
        .map(|(t, l)| {
            let mut l: Vec<String> = l.iter().map(|s| s.to_string()).collect();
            l.sort();
            (t.to_string(), l)
        })
        .collect()
}

/// Grants by name and by key are kept in the state directory: after a broker restart they
/// are listed and honoured, before the owner's first publish.
#[test]
fn a_grant_survives_a_broker_restart() {
    let mut t = Team::start(Mode::ForceCommand);
    let carol = t.add_member("carol");
    let (a, b) = t.pair();
    let topic = a.topic("kept");
    let carol_fp = carol.login.key.fingerprint.clone();
    assert_ok(
        &t.run(&a, format!("grant kept {},{carol_fp}", b.name), b""),
        "grant",
    );

    t.h.restart_broker();

    assert_eq!(
        grants_of(&t, &a),
        grants(&[(&topic, &[&b.name, &carol_fp])]),
        "grants after the restart"
    );
    let mut by_name = t.spawn(&b, format!("sub {topic}"));
    let mut by_key = t.spawn(&carol, format!("sub {topic}"));
    t.wait_until(&a, &topic, "both grantees waiting", |c| c.subscribers == 2);
    assert_ok(&t.run(&a, "pub kept", b"still yours\n"), "pub");
    for s in [&mut by_name, &mut by_key] {
        let out = s.finish(SHORT);
        assert_ok(&out, &s.name);
        assert_eq!(out.stdout, b"still yours\n", "{out:?}");
    }
}

/// `sub 'logs-*'` gets the caller's matching topics, also those created after it joined,
/// and outlives their publishers; `sub 'OWNER/logs-*'` gets that owner's matching topics
/// the caller is granted, lets go of one whose grant is revoked, and takes no other.
/// Neither ever receives a topic of another owner without a grant (a blocking publisher
/// there finds no receiver at all).
#[test]
fn wildcard_sub_gets_later_topics_and_never_another_owners_without_a_grant() {
    let t = Team::start(Mode::UnixUsers);
    let (a, b) = t.pair();

    // Live topics before the wildcards join, one per namespace.
    let mut one = t.spawn(&a, "pub -b=false logs-1");
    t.wait_until(&a, &a.topic("logs-1"), "a's publisher", |c| {
        c.publishers == 1
    });
    for name in ["logs-shared", "logs-late"] {
        assert_ok(&t.run(&b, format!("grant {name} {}", a.name), b""), "grant");
    }
    let mut shared = t.spawn(&b, "pub -b=false logs-shared");
    t.wait_until(&b, &b.topic("logs-shared"), "b's publisher", |c| {
        c.publishers == 1
    });

    let mut own = t.spawn(&a, "sub 'logs-*'");
    let mut theirs = t.spawn(&a, format!("sub '{}'", b.topic("logs-*")));
    t.wait_until(&a, &a.topic("logs-1"), "own wildcard joined", |c| {
        c.subscribers == 1
    });
    t.wait_until(&b, &b.topic("logs-shared"), "b-wildcard joined", |c| {
        c.subscribers == 1
    });
    let own_out = own.out.clone().unwrap();
    let theirs_out = theirs.out.clone().unwrap();

    one.write(b"one\n");
    assert!(own_out.wait_contains(b"one\n", SHORT), "{}", own.stderr());
    shared.write(b"shared\n");
    assert!(
        theirs_out.wait_contains(b"shared\n", SHORT),
        "{}",
        theirs.stderr()
    );

    // Created after the wildcards joined; blocking publishers count them as receivers.
    assert_ok(&t.run(&a, "pub logs-2", b"two\n"), "pub logs-2");
    assert!(own_out.wait_contains(b"two\n", SHORT), "{}", own.stderr());
    assert_ok(&t.run(&b, "pub logs-late", b"late\n"), "pub logs-late");
    assert!(
        theirs_out.wait_contains(b"late\n", SHORT),
        "{}",
        theirs.stderr()
    );

    // Revoking a grant lets the wildcard go of that topic; the subscription goes on.
    assert_ok(
        &t.run(&b, format!("revoke logs-shared {}", a.name), b""),
        "revoke",
    );
    t.wait_until(&b, &b.topic("logs-shared"), "b-wildcard let go", |c| {
        c.subscribers == 0
    });

    // Matching names a wildcard must not take: b's ungranted and revoked topics, and a's own
    // topic that does not match. With -b they wait for a receiver and time out (7).
    let mut refused: Vec<Client> = [
        (&b, "pub -t 1s logs-secret"),
        (&b, "pub -t 1s logs-shared"),
        (&a, "pub -t 1s other-3"),
    ]
    .into_iter()
    .map(|(m, req)| {
        let mut p = t.spawn(m, req);
        p.feed(std::sync::Arc::from(&b"not for the wildcards\n"[..]));
        p
    })
    .collect();
    for p in &mut refused {
        let out = p.finish(SHORT);
        assert_eq!(
            out.code,
            Some(7),
            "{}: a wildcard must not receive it: {out:?}",
            p.name
        );
    }

    // Publishers leaving never end a wildcard subscriber.
    one.close_stdin();
    shared.close_stdin();
    assert_ok(&one.finish(SHORT), "logs-1 publisher");
    assert_ok(&shared.finish(SHORT), "logs-shared publisher");
    t.wait_until(&a, &a.topic("logs-1"), "logs-1's publisher gone", |c| {
        c.publishers == 0
    });
    t.wait_until(
        &b,
        &b.topic("logs-shared"),
        "logs-shared's publisher gone",
        |c| c.publishers == 0,
    );
    thread::sleep(Duration::from_millis(300));
    assert!(
        own.try_status().is_none(),
        "own wildcard ended: {}",
        own.stderr()
    );
    assert!(
        theirs.try_status().is_none(),
        "b-wildcard ended: {}",
        theirs.stderr()
    );
    assert_eq!(own_out.text(), "one\ntwo\n");
    assert_eq!(theirs_out.text(), "shared\nlate\n");
}

/// `ls`: the owner sees publishers, subscribers, waiting publishers and bytes of each topic
/// and its grant; a grantee sees the shared topic (without the grant) and none of the
/// owner's other topics; a third user sees neither.
#[test]
fn ls_shows_counts_and_the_grant_to_the_owner_and_shared_topics_to_the_grantee() {
    let mut t = Team::start(Mode::ServiceAccount);
    let carol = t.add_member("carol");
    let (a, b) = t.pair();
    let x = a.topic("x");
    let y = a.topic("y");
    assert_ok(&t.run(&a, format!("grant x {}", b.name), b""), "grant");

    let mut sub_a = t.spawn(&a, "sub x");
    let mut sub_b = t.spawn(&b, format!("sub {x}"));
    t.wait_until(&a, &x, "two subscribers", |c| c.subscribers == 2);
    let _waiting = t.spawn(&a, "pub y");
    t.wait_until(&a, &y, "one waiting publisher", |c| c.waiting == 1);
    let mut publisher = t.spawn(&a, "pub -b=false x");
    publisher.write(b"hello\n");
    let want = Counts {
        present: true,
        publishers: 1,
        subscribers: 2,
        waiting: 0,
        bytes: 6,
    };
    t.wait_until(&a, &x, "one publisher, 6 bytes", |c| *c == want);

    let mine = t.ls(&a);
    assert_eq!(
        Counts::find(&mine, &y),
        Counts {
            present: true,
            publishers: 0,
            subscribers: 0,
            waiting: 1,
            bytes: 0
        }
    );
    assert_eq!(ls_grant(&mine, &x), vec![b.name.clone()]);
    assert!(ls_grant(&mine, &y).is_empty());
    let entry = ls_entry(&mine, &x).unwrap();
    for field in ["rate", "age_secs"] {
        assert!(entry[field].is_u64(), "ls --json: {field} in {entry}");
    }

    let shared = t.ls(&b);
    assert_eq!(
        Counts::find(&shared, &x),
        want,
        "the grantee's ls: {shared:?}"
    );
    assert!(
        ls_grant(&shared, &x).is_empty(),
        "the grant is the owner's business: {shared:?}"
    );
    assert!(
        !Counts::find(&shared, &y).present,
        "an ungranted topic in the grantee's ls: {shared:?}"
    );
    let stranger = t.ls(&carol);
    assert!(stranger.is_empty(), "carol's ls: {stranger:?}");

    // The table has the grant column too.
    let table = t.run(&a, "ls", b"");
    assert_ok(&table, "ls");
    let text = String::from_utf8_lossy(&table.stdout);
    let row = text
        .lines()
        .find(|l| l.starts_with(&format!("{x} ")))
        .unwrap_or_else(|| panic!("no row for {x}: {text}"));
    assert!(row.trim_end().ends_with(&b.name), "grant column: {row:?}");

    publisher.close_stdin();
    assert_ok(&publisher.finish(SHORT), "publisher");
    for s in [&mut sub_a, &mut sub_b] {
        let out = s.finish(SHORT);
        assert_ok(&out, &s.name);
        assert_eq!(out.stdout, b"hello\n");
    }
}

/// `grants` lists the caller's own grants (by name and by key, live topics or not), as JSON
/// and as text; an entry emptied by `revoke` disappears.
#[test]
fn grants_lists_the_callers_grants() {
    let mut t = Team::start(Mode::ServiceAccount);
    let carol = t.add_member("carol");
    let (a, b) = t.pair();
    let fp = carol.login.key.fingerprint.clone();
    let g = t.run(&a, format!("grant x {}", b.name), b"");
    assert_eq!(
        String::from_utf8_lossy(&g.stdout),
        format!("{} {}\n", a.topic("x"), b.name)
    );
    let g = t.run(&a, format!("grant x {fp}"), b"");
    assert_eq!(
        String::from_utf8_lossy(&g.stdout),
        format!("{} {},{fp}\n", a.topic("x"), b.name)
    );
    assert_ok(&t.run(&a, "pub -a carol -b=false y", b""), "pub -a");

    assert_eq!(
        grants_of(&t, &a),
        grants(&[
            (&a.topic("x"), &[&b.name, &fp]),
            (&a.topic("y"), &["carol"]),
        ])
    );
    assert!(grants_of(&t, &b).is_empty(), "bob owns no grants");

    let text = t.run(&a, "grants", b"");
    assert_ok(&text, "grants");
    let mut lines: Vec<String> = String::from_utf8_lossy(&text.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        vec![
            format!("{} {},{fp}", a.topic("x"), b.name),
            format!("{} carol", a.topic("y")),
        ]
    );
    let none = t.run(&b, "grants", b"");
    assert_ok(&none, "grants with none");
    assert!(none.stdout.is_empty(), "{none:?}");

    assert_ok(&t.run(&a, "revoke y carol", b""), "revoke");
    assert_eq!(
        grants_of(&t, &a),
        grants(&[(&a.topic("x"), &[&b.name, &fp])])
    );
}

/// A grantee (or anyone else) cannot change the owner's grant: `grant`/`revoke` look like a
/// missing topic, `-a` on the owner's topic is refused, and the grant stays as it was.
#[test]
fn only_the_owner_changes_a_grant() {
    let mut t = Team::start(Mode::ServiceAccount);
    let carol = t.add_member("carol");
    let (a, b) = t.pair();
    let x = a.topic("x");
    assert_ok(&t.run(&a, format!("grant x {}", b.name), b""), "grant");

    for (who, req) in [
        (&b, format!("grant {x} carol")),
        (&b, format!("revoke {x} {}", b.name)),
        (&carol, format!("grant {x} carol")),
        (&carol, format!("revoke {x} {}", b.name)),
    ] {
        let out = t.run(who, &req, b"");
        assert_eq!(out.code, Some(3), "{}: {req}: {out:?}", who.name);
        assert_eq!(out.stderr, NO_SUCH_TOPIC, "{}: {req}: {out:?}", who.name);
        assert!(out.stdout.is_empty(), "{out:?}");
    }
    for req in [
        format!("pub -b=false -a carol {x}"),
        format!("sub -a carol {x}"),
        format!("pipe -a carol {x}"),
    ] {
        let out = t.run(&b, &req, b"");
        assert_eq!(out.code, Some(3), "{req}: {out:?}");
        assert_one_pipe_line(&out, &req);
    }
    assert_eq!(grants_of(&t, &a), grants(&[(&x, &[&b.name])]));

    // The same words name the grantee's own topic.
    let own = t.run(&b, "grant x carol", b"");
    assert_eq!(
        String::from_utf8_lossy(&own.stdout),
        format!("{} carol\n", b.topic("x"))
    );
    assert_eq!(grants_of(&t, &a), grants(&[(&x, &[&b.name])]));
}

/// `-a LIST` sets the grant to exactly LIST (cutting whoever it drops), and `-a ''` clears
/// it.
#[test]
fn dash_a_sets_the_grant_to_exactly_the_list_and_empty_clears_it() {
    let mut t = Team::start(Mode::ServiceAccount);
    let carol = t.add_member("carol");
    let (a, b) = t.pair();
    let topic = a.topic("t");
    assert_ok(
        &t.run(&a, format!("grant t {},carol", b.name), b""),
        "grant",
    );

    let mut carols = t.spawn(&carol, format!("sub -k {topic}"));
    t.wait_until(&a, &topic, "carol subscribed", |c| c.subscribers == 1);

    assert_ok(
        &t.run(&a, format!("pub -b=false -a {} t", b.name), b""),
        "-a bob",
    );
    assert_eq!(grants_of(&t, &a), grants(&[(&topic, &[&b.name])]));
    let out = carols.finish(SHORT);
    assert_eq!(out.code, Some(3), "carol dropped from the grant: {out:?}");
    assert_eq!(out.stderr_lines().last(), Some(&"pipe: access denied"));
    let denied = t.run(&carol, format!("sub {topic}"), b"");
    assert_eq!(denied.code, Some(3), "{denied:?}");

    assert_ok(&t.run(&a, "pub -b=false -a '' t", b""), "-a ''");
    assert!(grants_of(&t, &a).is_empty(), "-a '' must clear the grant");
    let denied = t.run(&b, format!("sub {topic}"), b"");
    assert_eq!(denied.code, Some(3), "{denied:?}");
    assert_eq!(denied.stderr, NO_SUCH_TOPIC);
}

/// root (the admin, here `pipe-shell` run by hand as uid 0: sshd does not let root in) sees
/// every user's topics in `ls`, with their grants, and may publish into any of them.
#[test]
fn root_sees_every_topic_and_grant_and_reaches_any() {
    let t = Team::start(Mode::ServiceAccount);
    let (a, b) = t.pair();
    assert_ok(&t.run(&a, format!("grant x {}", b.name), b""), "grant");
    let mut sub_a = t.spawn(&a, "sub x");
    let _sub_b = t.spawn(&b, "sub -k y");
    t.wait_until(&a, &a.topic("x"), "a subscribed", |c| c.subscribers == 1);
    t.wait_until(&b, &b.topic("y"), "b subscribed", |c| c.subscribers == 1);

    let root = |args: &[&str], stdin: &[u8]| {
        let mut c = t.h.pipe_shell();
        c.args(args);
        run_command(c, &format!("root: {}", args.join(" ")), stdin, SHORT)
    };
    let out = root(&["ls", "--json"], b"");
    assert_ok(&out, "root ls --json");
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).expect("ls --json");
    assert_eq!(
        Counts::find(&list, &a.topic("x")).subscribers,
        1,
        "{list:?}"
    );
    assert_eq!(
        Counts::find(&list, &b.topic("y")).subscribers,
        1,
        "{list:?}"
    );
    assert_eq!(ls_grant(&list, &a.topic("x")), vec![b.name.clone()]);

    assert_ok(&root(&["pub", &a.topic("x")], b"from root\n"), "root pub");
    let out = sub_a.finish(SHORT);
    assert_ok(&out, "a's sub");
    assert_eq!(out.stdout, b"from root\n");
}
