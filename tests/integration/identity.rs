//! Identity and namespaces end to end through a real sshd (pipe-shell(8), IDENTITY MODES;
//! pipe(1), DESCRIPTION): who a session is in each of the three identity modes, that users
//! cannot see or reach each other's topics without a grant, that grants by name and by key
//! work and revocation is prompt, and that the client's command string never changes who it
//! is.
//!
//! The behaviours every mode must have are functions taking the [`Mode`]; `in_every_mode!`
//! makes one test per mode of each (`unix_users::…`, `service_account::…`,
//! `force_command::…`).

use std::time::{Duration, Instant};

use crate::harness::team::*;
use crate::harness::*;

/// What a denied or missing topic prints, whichever it is (no probing).
const NO_SUCH_TOPIC: &str = "pipe: no such topic or access denied\n";

/// What an identity failure prints.
const ACCESS_DENIED: &str = "pipe: access denied\n";

macro_rules! in_every_mode {
    ($($behaviour:ident),* $(,)?) => {
        mod unix_users {
            $( #[test] fn $behaviour() { super::$behaviour(super::Mode::UnixUsers) } )*
        }
        mod service_account {
            $( #[test] fn $behaviour() { super::$behaviour(super::Mode::ServiceAccount) } )*
        }
        mod force_command {
            $( #[test] fn $behaviour() { super::$behaviour(super::Mode::ForceCommand) } )*
        }
    };
}

in_every_mode!(
    whoami_names_the_user_and_key_of_the_mode,
    users_cannot_see_or_reach_each_others_topics_without_a_grant,
    a_grant_by_name_lets_the_grantee_wait_for_the_first_publish_and_publish_back,
    revoking_cuts_a_live_subscriber_within_1s,
    public_topics_are_shared,
    the_request_cannot_change_identity,
);

/// The topic names in an `ls --json` array.
fn ls_topics(list: &[serde_json::Value]) -> Vec<String> {
    list.iter()
        .map(|t| t["topic"].as_str().expect("topic is a string").to_string())
        .collect()
}

#[track_caller]
fn assert_refused(out: &Output, code: i32, stderr: &str, what: &str) {
    assert_eq!(out.code, Some(code), "{what}: {out:?}");
    assert_eq!(out.stderr, stderr, "{what}: {out:?}");
    assert!(out.stdout.is_empty(), "{what}: {out:?}");
}

fn whoami_names_the_user_and_key_of_the_mode(mode: Mode) {
    let t = Team::start(mode);
    let (a, b) = t.pair();
    for m in [&a, &b] {
        assert_eq!(t.whoami(m), t.expected_whoami(m), "{mode:?}");
    }
    if mode != Mode::UnixUsers {
        // The fingerprint is the key the session logged in with, also for a second key.
        let phone = t.add_key(&b.name, "bob-phone");
        let out = t.h.run_as(&phone, "whoami", b"", SHORT);
        assert_eq!(out.code, Some(0), "{out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("{} {}", b.name, phone.key.fingerprint)
        );
    }
}

fn users_cannot_see_or_reach_each_others_topics_without_a_grant(mode: Mode) {
    let t = Team::start(mode);
    let (a, b) = t.pair();
    // Both have a live topic called `secret`: two different topics.
    let _sub_a = t.spawn(&a, "sub -k secret");
    let _sub_b = t.spawn(&b, "sub -k secret");
    t.wait_until(&a, &a.topic("secret"), "a's subscriber", |c| {
        c.subscribers == 1
    });
    t.wait_until(&b, &b.topic("secret"), "b's subscriber", |c| {
        c.subscribers == 1
    });

    for (me, other) in [(&a, &b), (&b, &a)] {
        assert_eq!(
            ls_topics(&t.ls(me)),
            vec![me.topic("secret")],
            "{}'s ls must show only their own topic",
            me.name
        );
        let missing = t.run(me, format!("sub {}", other.topic("nosuch")), b"");
        assert_refused(&missing, 3, NO_SUCH_TOPIC, "sub of a missing topic");
        let requests: Vec<String> = ["sub", "sub -k", "pub", "pub -b=false", "pipe"]
            .iter()
            .map(|verb| format!("{verb} {}", other.topic("secret")))
            .collect();
        for (req, out) in requests
            .iter()
            .zip(t.run_many(me, &requests, b"intrusion\n"))
        {
            assert_refused(
                &out,
                3,
                &missing.stderr,
                &format!("{}: {req} must look like a missing topic", me.name),
            );
        }
    }
    // Nothing reached either topic.
    for m in [&a, &b] {
        let c = Counts::find(&t.ls(m), &m.topic("secret"));
        assert_eq!(
            (c.publishers, c.subscribers, c.bytes),
            (0, 1, 0),
            "{}: {c:?}",
            m.name
        );
    }
}

fn a_grant_by_name_lets_the_grantee_wait_for_the_first_publish_and_publish_back(mode: Mode) {
    let t = Team::start(mode);
    let (a, b) = t.pair();
    let g = t.run(&a, format!("grant deploys {}", b.name), b"");
    assert_eq!(g.code, Some(0), "{g:?}");
    assert_eq!(
        String::from_utf8_lossy(&g.stdout),
        format!("{} {}\n", a.topic("deploys"), b.name)
    );

    // The topic is not live yet: the grantee waits for it.
    let mut waiting = t.spawn(&b, format!("sub {}", a.topic("deploys")));
    t.wait_until(&a, &a.topic("deploys"), "the grantee waiting", |c| {
        c.subscribers == 1
    });
    let p = t.run(&a, "pub deploys", b"v1.2.3\n");
    assert_eq!(p.code, Some(0), "{p:?}");
    let out = waiting.finish(SHORT);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, b"v1.2.3\n", "{out:?}");

    // The grantee may publish into it too.
    let mut owner = t.spawn(&a, "sub deploys");
    t.wait_until(&a, &a.topic("deploys"), "the owner subscribed", |c| {
        c.subscribers == 1
    });
    let p = t.run(&b, format!("pub {}", a.topic("deploys")), b"ack\n");
    assert_eq!(p.code, Some(0), "{p:?}");
    let out = owner.finish(SHORT);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, b"ack\n", "{out:?}");

    // The grant names one topic, not the owner's namespace.
    let other = t.run(&b, format!("sub {}", a.topic("other")), b"");
    assert_refused(
        &other,
        3,
        NO_SUCH_TOPIC,
        "an ungranted topic of the same owner",
    );
}

fn revoking_cuts_a_live_subscriber_within_1s(mode: Mode) {
    let t = Team::start(mode);
    let (a, b) = t.pair();
    let topic = a.topic("feed");
    let g = t.run(&a, format!("grant feed {}", b.name), b"");
    assert_eq!(g.code, Some(0), "{g:?}");

    let mut sub = t.spawn(&b, format!("sub {topic}"));
    t.wait_until(&a, &topic, "the grantee subscribed", |c| c.subscribers == 1);
    let mut publisher = t.spawn(&a, "pub -b=false feed");
    publisher.write(b"one\n");
    let got = sub.out.clone().unwrap();
    assert!(
        got.wait_contains(b"one\n", SHORT),
        "the grantee must receive while granted: {:?}",
        sub.stderr()
    );

    let asked = Instant::now();
    let r = t.run(&a, format!("revoke feed {}", b.name), b"");
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(String::from_utf8_lossy(&r.stdout).trim_end(), topic);
    let revoked = Instant::now();
    sub.wait(SHORT);
    let late = revoked.elapsed();
    eprintln!(
        "{mode:?}: the revoked subscriber ended {:?} after the revoke started, {late:?} after \
         it returned",
        asked.elapsed()
    );
    let out = sub.finish(SHORT);
    assert!(
        late <= Duration::from_secs(1),
        "the revoked subscriber ended {late:?} after the revoke returned: {out:?}"
    );
    assert_eq!(out.code, Some(3), "{out:?}");
    assert_eq!(
        out.stderr_lines().last(),
        Some(&"pipe: access denied"),
        "{out:?}"
    );
    assert_eq!(out.stdout, b"one\n", "{out:?}");

    // The owner's stream goes on; the grantee is out of it and cannot come back.
    publisher.write(b"two\n");
    t.wait_until(&a, &topic, "the revoked subscriber gone", |c| {
        c.subscribers == 0 && c.publishers == 1
    });
    let again = t.run(&b, format!("sub {topic}"), b"");
    assert_refused(&again, 3, NO_SUCH_TOPIC, "sub after the revoke");
    assert!(
        !ls_topics(&t.ls(&b)).contains(&topic),
        "a revoked topic must leave the grantee's ls"
    );
    publisher.close_stdin();
    let pout = publisher.finish(SHORT);
    assert_eq!(pout.code, Some(0), "{pout:?}");
}

fn public_topics_are_shared(mode: Mode) {
    let t = Team::start(mode);
    let (a, b) = t.pair();

    let mut s = t.spawn(&a, "sub -p board");
    t.wait_until(&a, "public/board", "a subscribed", |c| c.subscribers == 1);
    let p = t.run(&b, "pub -p board", b"from b\n");
    assert_eq!(p.code, Some(0), "{p:?}");
    let out = s.finish(SHORT);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, b"from b\n", "{out:?}");

    // `public/NAME` is the same namespace as `-p NAME`.
    let mut s = t.spawn(&b, "sub public/news");
    t.wait_until(&b, "public/news", "b subscribed", |c| c.subscribers == 1);
    let p = t.run(&a, "pub -p news", b"from a\n");
    assert_eq!(p.code, Some(0), "{p:?}");
    let out = s.finish(SHORT);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, b"from a\n", "{out:?}");

    // Public topics take no grant.
    let out = t.run(&a, format!("pub -p -a {} board", b.name), b"");
    assert_eq!(out.code, Some(2), "{out:?}");
    assert_one_pipe_line(&out, "-a with -p");
}

fn the_request_cannot_change_identity(mode: Mode) {
    let t = Team::start(mode);
    let (a, b) = t.pair();
    let before = t.whoami(&a);
    // b listens on their own `x`: none of a's attempts may land there.
    let _listener = t.spawn(&b, "sub -k x");
    t.wait_until(&b, &b.topic("x"), "b subscribed", |c| c.subscribers == 1);

    let bob = &b.name;
    let fp = &b.login.key.fingerprint;
    let requests = [
        format!("sub --user {bob} x"),
        format!("sub x --user {bob}"),
        format!("sub --user={bob} x"),
        format!("pub --user {bob} x"),
        format!("sub --key {fp} x"),
        format!("whoami --user {bob}"),
        format!("sub ../{bob}/x"),
        format!("sub {bob}//x"),
        format!("sub /{bob}/x"),
        format!("sub {bob}/x/.."),
        format!("sub {bob}/../x"),
        format!("--user {bob} sub x"),
    ];
    for (req, out) in requests.iter().zip(t.run_many(&a, &requests, b"")) {
        assert_eq!(out.code, Some(2), "{req}: {out:?}");
        assert!(out.stdout.is_empty(), "{req}: {out:?}");
        assert_one_pipe_line(&out, req);
    }
    assert_eq!(t.whoami(&a), before, "whoami after the attempts");
    let c = Counts::find(&t.ls(&b), &b.topic("x"));
    assert_eq!(
        (c.subscribers, c.publishers, c.waiting, c.bytes),
        (1, 0, 0, 0),
        "b's topic must be untouched: {c:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------

/// A grant naming a key fingerprint admits whoever logs in with that key, and not the same
/// user with another key.
fn a_grant_by_key_fingerprint_admits_that_key_only(mode: Mode) {
    let mut t = Team::start(mode);
    let carol = t.add_member("carol");
    let (a, b) = t.pair();
    let topic = a.topic("keyed");
    let carol_fp = carol.login.key.fingerprint.clone();
    let g = t.run(&a, format!("grant keyed {carol_fp}"), b"");
    assert_eq!(g.code, Some(0), "{g:?}");
    assert_eq!(
        String::from_utf8_lossy(&g.stdout),
        format!("{topic} {carol_fp}\n")
    );

    let mut s = t.spawn(&carol, format!("sub {topic}"));
    t.wait_until(&a, &topic, "carol subscribed", |c| c.subscribers == 1);
    let p = t.run(&a, "pub keyed", b"for carol's key\n");
    assert_eq!(p.code, Some(0), "{p:?}");
    let out = s.finish(SHORT);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, b"for carol's key\n", "{out:?}");

    // Grant bob's phone key only: bob with his first key stays out.
    let phone = Member {
        name: b.name.clone(),
        login: t.add_key(&b.name, "bob-phone"),
    };
    let g = t.run(
        &a,
        format!("grant keyed {}", phone.login.key.fingerprint),
        b"",
    );
    assert_eq!(g.code, Some(0), "{g:?}");
    let denied = t.run(&b, format!("sub {topic}"), b"");
    assert_refused(&denied, 3, NO_SUCH_TOPIC, "bob with an ungranted key");

    let mut s = t.spawn(&phone, format!("sub {topic}"));
    t.wait_until(&a, &topic, "bob's phone subscribed", |c| c.subscribers == 1);
    let p = t.run(&a, "pub keyed", b"for bob's phone\n");
    assert_eq!(p.code, Some(0), "{p:?}");
    let out = s.finish(SHORT);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, b"for bob's phone\n", "{out:?}");
}

mod by_key {
    use super::*;

    #[test]
    fn service_account_grant_by_key_fingerprint_admits_that_key_only() {
        a_grant_by_key_fingerprint_admits_that_key_only(Mode::ServiceAccount);
    }

    #[test]
    fn force_command_grant_by_key_fingerprint_admits_that_key_only() {
        a_grant_by_key_fingerprint_admits_that_key_only(Mode::ForceCommand);
    }
}

/// A per-Unix-user account's key line that asserts `--user` (another's name) is refused:
/// only the service account's lines may speak for someone else.
#[test]
fn a_key_line_asserting_user_from_a_non_service_account_is_refused() {
    let t = Team::start(Mode::UnixUsers);
    let (a, _) = t.pair();
    let _listener = t.spawn(&a, "sub -k x");
    t.wait_until(&a, &a.topic("x"), "a subscribed", |c| c.subscribers == 1);

    let key = t.h.new_key("forged");
    let fp = key.fingerprint.clone();
    t.h.authorize(
        LOGIN_USER2,
        &format!(
            "restrict,command=\"{} --user {LOGIN_USER}\" {}",
            t.h.forced_command(),
            key.public
        ),
    );
    let forged = Login {
        account: LOGIN_USER2.to_string(),
        key,
    };
    for req in ["whoami", "sub x", "pub x", "ls"] {
        let out = t.h.run_as(&forged, req, b"forged\n", SHORT);
        assert_refused(&out, 3, ACCESS_DENIED, &format!("forged --user: {req}"));
    }

    // With `--key` too, as pipe-admin writes it.
    let key2 = t.h.new_key("forged2");
    t.h.authorize(
        LOGIN_USER2,
        &format!(
            "restrict,command=\"{} --user {LOGIN_USER} --key {fp}\" {}",
            t.h.forced_command(),
            key2.public
        ),
    );
    let forged2 = Login {
        account: LOGIN_USER2.to_string(),
        key: key2,
    };
    let out = t.h.run_as(&forged2, "sub x", b"", SHORT);
    assert_refused(&out, 3, ACCESS_DENIED, "forged --user --key");

    let c = Counts::find(&t.ls(&a), &a.topic("x"));
    assert_eq!((c.subscribers, c.publishers, c.bytes), (1, 0, 0), "{c:?}");
}

/// Writes a hand-made line into the service account's authorized_keys that runs
/// pipe-shell with `options` (not pipe-admin's), and checks that every request through it
/// is refused like a stranger's.
fn assert_service_line_refused(t: &Team, key_name: &str, options: &str) {
    let key = t.h.new_key(key_name);
    t.h.authorize(
        SERVICE_USER,
        &format!(
            "restrict,command=\"{}{options}\" {}",
            t.h.forced_command(),
            key.public
        ),
    );
    let login = Login {
        account: SERVICE_USER.to_string(),
        key,
    };
    for req in ["whoami", "sub x", "ls"] {
        let out = t.h.run_as(&login, req, b"", SHORT);
        assert_refused(&out, 3, ACCESS_DENIED, &format!("'{options}': {req}"));
    }
}

/// A line in the service account's authorized_keys that runs pipe-shell without `--user`
/// (hand-written, not pipe-admin's) is nobody: refused, not the service account itself.
#[test]
fn a_service_account_key_line_without_user_is_refused() {
    let t = Team::start(Mode::ServiceAccount);
    assert_service_line_refused(&t, "bare", "");
}

/// Issue 11, defect 4: a service-account key line that names `root` or the service
/// account itself is refused, so no key reaches those accounts' namespaces (before, `whoami`
/// printed `root`).
#[test]
fn a_service_account_key_line_naming_root_or_itself_is_refused() {
    let t = Team::start(Mode::ServiceAccount);
    for name in ["root", SERVICE_USER] {
        assert_service_line_refused(&t, &format!("as-{name}"), &format!(" --user {name}"));
    }
}

/// `ForceCommand` mode: a key sshd accepts (it is in authorized_keys) but that the key
/// directory does not know is nobody; removing a key from the directory locks it out even
/// while its line is still in authorized_keys.
#[test]
fn force_command_with_a_key_outside_the_key_dir_is_denied() {
    let t = Team::start(Mode::ForceCommand);
    let (a, b) = t.pair();
    let key = t.h.new_key("stranger");
    t.h.authorize(SERVICE_USER, &format!("restrict {}", key.public));
    let stranger = Login {
        account: SERVICE_USER.to_string(),
        key,
    };
    for req in ["whoami", "sub x", "ls"] {
        let out = t.h.run_as(&stranger, req, b"", SHORT);
        assert_refused(&out, 3, ACCESS_DENIED, &format!("unknown key: {req}"));
    }

    assert_eq!(t.whoami(&b), t.expected_whoami(&b));
    t.admin(&["key", "remove", &b.name, &b.login.key.fingerprint]);
    let out = t.run(&b, "whoami", b"");
    assert_refused(
        &out,
        3,
        ACCESS_DENIED,
        "a key removed from the key directory",
    );
    assert_eq!(
        t.whoami(&a),
        t.expected_whoami(&a),
        "the others are unaffected"
    );
}

/// `pipe-admin key add` makes a key usable at once; `key remove` (by fingerprint or by
/// name) makes sshd refuse it (ssh exit 255, permission denied).
#[test]
fn pipe_admin_key_add_lets_a_key_in_and_key_remove_locks_it_out() {
    let t = Team::start(Mode::ServiceAccount);
    let (a, _) = t.pair();
    t.admin(&["user", "add", "dave"]);
    let laptop = t.h.new_key("dave-laptop");
    let phone = t.h.new_key("dave-phone");
    let login = |key: &ClientKey| Login {
        account: SERVICE_USER.to_string(),
        key: key.clone(),
    };
    let refused_by_sshd = |key: &ClientKey, what: &str| {
        let out = t.h.run_as(&login(key), "whoami", b"", SHORT);
        assert_eq!(out.code, Some(255), "{what}: {out:?}");
        assert!(out.stderr.contains("Permission denied"), "{what}: {out:?}");
        assert!(out.stdout.is_empty(), "{what}: {out:?}");
    };
    let whoami = |key: &ClientKey| {
        let out = t.h.run_as(&login(key), "whoami", b"", SHORT);
        assert_eq!(out.code, Some(0), "{out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };

    refused_by_sshd(&laptop, "before key add");
    for key in [&laptop, &phone] {
        let added = t.admin(&[
            "key",
            "add",
            "dave",
            &key.public_file().display().to_string(),
        ]);
        let line = String::from_utf8_lossy(&added.stdout);
        assert!(
            line.contains(&key.fingerprint),
            "key add prints the key: {added:?}"
        );
        assert_eq!(whoami(key), format!("dave {}", key.fingerprint));
    }
    let list = t.admin(&["key", "list", "dave"]);
    assert_eq!(
        String::from_utf8_lossy(&list.stdout).lines().count(),
        2,
        "{list:?}"
    );

    t.admin(&["key", "remove", "dave", &laptop.fingerprint]);
    refused_by_sshd(&laptop, "after key remove by fingerprint");
    assert_eq!(whoami(&phone), format!("dave {}", phone.fingerprint));
    t.admin(&["key", "remove", "dave", "dave-phone"]);
    refused_by_sshd(&phone, "after key remove by name");

    assert_eq!(
        t.whoami(&a),
        t.expected_whoami(&a),
        "other users are unaffected"
    );
}
