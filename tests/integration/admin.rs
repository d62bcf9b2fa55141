//! `pipe-admin` end to end: the real binary against a key directory and an authorized_keys
//! file in a temporary directory, with keys made by `ssh-keygen`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use ssh_key::{HashAlg, PublicKey};

use crate::harness::{fingerprint, fingerprints, keygen, pipe_admin};

const BEGIN: &str = "# BEGIN pipe-admin managed block: edits inside are overwritten\n";
const END: &str = "# END pipe-admin managed block\n";

/// What the tests put in `--forced-command`: a path plus an option, as the other tests use.
const FORCED: &str = "/opt/pipe/pipe-shell --socket /tmp/x/piped.sock";

/// Lines the admin wrote by hand around the block: a key with options, comments, a blank
/// line, a CRLF line, trailing blanks. They must come back byte for byte.
const FOREIGN_BEFORE: &str = "# root's own access, not pipe's\r\n\
no-pty ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILM+rvN+ot98qgEN796jTiQfZfG1KaT0PtFDJ/XFSqti admin@box  \n\
\n";
const FOREIGN_AFTER: &str = "# trailing note\t\n\nlast line without newline";

/// The fingerprint of the foreign key in [`FOREIGN_BEFORE`].
const FOREIGN_FP: &str = "SHA256:UCUiLr7Pjs9wFFJMDByLgc3NrtdU344OgUM45wZPcIQ";
const FOREIGN_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILM+rvN+ot98qgEN796jTiQfZfG1KaT0PtFDJ/XFSqti";

/// A scratch key directory and authorized_keys, and a place for generated keys.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn keys_dir(&self) -> PathBuf {
        self.dir.path().join("etc/keys")
    }

    fn authorized_keys(&self) -> PathBuf {
        self.dir.path().join("home/pipe/.ssh/authorized_keys")
    }

    /// An authorized_keys that already has foreign lines around an (outdated) block.
    fn with_foreign_lines() -> Env {
        let env = Env::new();
        let path = env.authorized_keys();
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let stale = "restrict,command=\"/old --user gone --key x\" ssh-ed25519 AAAA stale\n";
        fs::write(
            &path,
            format!("{FOREIGN_BEFORE}{BEGIN}{stale}{END}{FOREIGN_AFTER}"),
        )
        .unwrap();
        env
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = pipe_admin(&self.keys_dir(), &self.authorized_keys(), FORCED);
        command.args(args);
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_with_stdin(args, b"")
    }

    fn run_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("pipe-admin runs");
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    }

    /// Runs and asserts success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert_ok(&output, args);
        String::from_utf8(output.stdout).unwrap()
    }

    /// A fresh ed25519 key pair; returns the public key file.
    fn keygen(&self, name: &str, comment: &str) -> PathBuf {
        keygen(&self.dir.path().join(name), "ed25519", comment)
    }

    fn file(&self) -> String {
        fs::read_to_string(self.authorized_keys()).unwrap()
    }
}

fn assert_ok(output: &Output, args: &[&str]) {
    assert!(
        output.status.success(),
        "{args:?}: {:?} {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A failure: this exit code and exactly one `pipe-admin: ` line on stderr, which is returned.
fn assert_fails(output: &Output, code: i32) -> String {
    let stderr = String::from_utf8(output.stderr.clone()).unwrap();
    assert_eq!(output.status.code(), Some(code), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(stderr.starts_with("pipe-admin: "), "{stderr:?}");
    stderr
}

/// One key line of the block, taken apart and checked.
#[derive(Debug)]
struct KeyLine {
    user: String,
    fingerprint: String,
}

/// The block's key lines, after checking the file is exactly `before` + block + `after`
/// and each line is `restrict,command="FORCED --user U --key FP" <key>` with FP the key's.
fn block(content: &str, before: &str, after: &str) -> Vec<KeyLine> {
    let inner = content
        .strip_prefix(before)
        .and_then(|rest| rest.strip_suffix(after))
        .unwrap_or_else(|| panic!("foreign lines changed: {content:?}"));
    let inner = inner
        .strip_prefix(BEGIN)
        .and_then(|rest| rest.strip_suffix(END))
        .unwrap_or_else(|| panic!("malformed block: {inner:?}"));
    inner
        .lines()
        .map(|line| {
            let rest = line
                .strip_prefix(&format!("restrict,command=\"{FORCED} --user "))
                .unwrap_or_else(|| panic!("bad line: {line}"));
            let (user, rest) = rest.split_once(" --key ").unwrap();
            let (fingerprint, key) = rest.split_once("\" ").unwrap();
            let public = PublicKey::from_openssh(key).expect("the key parses");
            assert_eq!(public.fingerprint(HashAlg::Sha256).to_string(), fingerprint);
            KeyLine {
                user: user.to_string(),
                fingerprint: fingerprint.to_string(),
            }
        })
        .collect()
}

#[test]
fn users_are_added_listed_and_removed_with_their_keys() {
    let env = Env::new();
    env.ok(&["user", "add", "bob"]);
    env.ok(&["user", "add", "alice"]);
    assert_eq!(env.ok(&["user", "list"]), "alice\nbob\n");
    assert!(assert_fails(&env.run(&["user", "add", "alice"]), 4).contains("already exists"));
    assert!(assert_fails(&env.run(&["user", "add", "root"]), 2).contains("root is reserved"));

    let key = env.keygen("a", "alice@laptop");
    env.ok(&["key", "add", "alice", key.to_str().unwrap()]);
    assert_eq!(block(&env.file(), "", "").len(), 1);

    env.ok(&["user", "remove", "alice"]);
    assert_eq!(env.ok(&["user", "list"]), "bob\n");
    assert!(block(&env.file(), "", "").is_empty());
    assert!(!env.keys_dir().join("alice").exists());
    assert_eq!(env.ok(&["key", "list"]), "");

    assert_fails(&env.run(&["user", "remove", "alice"]), 3);
    for bad in ["Alice", "public", "a/b", "-x", ""] {
        assert_fails(&env.run(&["user", "add", bad]), 2);
    }
}

#[test]
fn keys_are_added_from_a_file_and_from_stdin_and_listed() {
    let env = Env::new();
    env.ok(&["user", "add", "alice"]);
    env.ok(&["user", "add", "bob"]);
    let laptop = env.keygen("laptop", "alice@laptop");
    let phone = keygen(&env.dir.path().join("phone"), "ecdsa", "alice phone");
    let work = env.keygen("work", "bob@work");

    let printed = env.ok(&["key", "add", "alice", laptop.to_str().unwrap()]);
    let laptop_fp = fingerprint(&laptop);
    assert_eq!(
        printed,
        format!("alice alice-laptop {laptop_fp} ssh-ed25519 alice@laptop\n")
    );
    let stdin = fs::read(&phone).unwrap();
    let output = env.run_with_stdin(&["key", "add", "alice", "-", "--name", "phone"], &stdin);
    assert_ok(&output, &["key add from stdin"]);
    let output = env.run_with_stdin(&["key", "add", "bob"], &fs::read(&work).unwrap());
    assert_ok(&output, &["key add from stdin, no FILE"]);

    let phone_fp = fingerprint(&phone);
    let work_fp = fingerprint(&work);
    assert_eq!(
        env.ok(&["key", "list"]),
        format!(
            "alice alice-laptop {laptop_fp} ssh-ed25519 alice@laptop\n\
             alice phone {phone_fp} ecdsa-sha2-nistp256 alice phone\n\
             bob bob-work {work_fp} ssh-ed25519 bob@work\n"
        )
    );
    assert_eq!(env.ok(&["key", "list", "bob"]).lines().count(), 1);
    let json: serde_json::Value =
        serde_json::from_str(&env.ok(&["key", "list", "alice", "--json"])).unwrap();
    assert_eq!(json[1]["name"], "phone");
    assert_eq!(json[1]["fingerprint"], phone_fp.as_str());
    assert_fails(&env.run(&["key", "list", "carol"]), 3);

    // The block, sorted by user then key name, and what ssh-keygen reads in it.
    let lines = block(&env.file(), "", "");
    let got: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| (l.user.as_str(), l.fingerprint.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("alice", laptop_fp.as_str()),
            ("alice", phone_fp.as_str()),
            ("bob", work_fp.as_str())
        ]
    );
    assert_eq!(
        fingerprints(&env.authorized_keys()),
        vec![laptop_fp, phone_fp, work_fp]
    );

    // The key directory holds the files, one key line each.
    let filed = fs::read_to_string(env.keys_dir().join("alice/phone.pub")).unwrap();
    assert_eq!(filed, fs::read_to_string(&phone).unwrap());
}

#[test]
fn keys_are_removed_by_fingerprint_and_by_name() {
    let env = Env::new();
    env.ok(&["user", "add", "alice"]);
    let one = env.keygen("one", "one");
    let two = env.keygen("two", "two");
    env.ok(&["key", "add", "alice", one.to_str().unwrap()]);
    env.ok(&["key", "add", "alice", two.to_str().unwrap()]);
    assert_eq!(block(&env.file(), "", "").len(), 2);

    env.ok(&["key", "remove", "alice", &fingerprint(&one)]);
    let left = block(&env.file(), "", "");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].fingerprint, fingerprint(&two));
    assert!(!env.keys_dir().join("alice/one.pub").exists());

    env.ok(&["key", "rm", "alice", "two"]);
    assert!(block(&env.file(), "", "").is_empty());
    assert_eq!(env.ok(&["key", "list", "alice"]), "");

    assert_fails(&env.run(&["key", "remove", "alice", "two"]), 3);
    assert_fails(&env.run(&["key", "remove", "alice", &fingerprint(&two)]), 3);
    assert_fails(&env.run(&["key", "remove", "nobody", "two"]), 3);
}

#[test]
fn a_duplicate_fingerprint_is_refused_naming_its_holder() {
    let env = Env::with_foreign_lines();
    env.ok(&["user", "add", "alice"]);
    env.ok(&["user", "add", "bob"]);
    let key = env.keygen("k", "shared");
    env.ok(&[
        "key",
        "add",
        "alice",
        key.to_str().unwrap(),
        "--name",
        "laptop",
    ]);
    let before = env.file();

    let error = assert_fails(&env.run(&["key", "add", "bob", key.to_str().unwrap()]), 4);
    assert!(error.contains("alice/laptop"), "{error}");
    assert!(error.contains(&fingerprint(&key)), "{error}");
    // Same user, another name: still the same key.
    let renamed = &[
        "key",
        "add",
        "alice",
        key.to_str().unwrap(),
        "--name",
        "again",
    ];
    assert_fails(&env.run(renamed), 4);
    // A key that a line outside the block already authorizes.
    let error = assert_fails(
        &env.run_with_stdin(&["key", "add", "bob"], FOREIGN_KEY.as_bytes()),
        4,
    );
    assert!(
        error.contains(FOREIGN_FP) && error.contains("line 2"),
        "{error}"
    );
    // A taken name.
    let other = env.keygen("o", "o");
    let taken = &[
        "key",
        "add",
        "alice",
        other.to_str().unwrap(),
        "--name",
        "laptop",
    ];
    assert_fails(&env.run(taken), 4);

    assert_eq!(env.file(), before);
    assert_eq!(env.ok(&["key", "list"]).lines().count(), 1);
}

#[test]
fn malformed_and_refused_keys_are_usage_errors() {
    let env = Env::new();
    env.ok(&["user", "add", "alice"]);
    let key = env.keygen("k", "k");
    let public = fs::read_to_string(&key).unwrap();
    let private = fs::read_to_string(key.with_extension("")).unwrap();
    let other = fs::read_to_string(env.keygen("o", "o")).unwrap();
    let cases = [
        ("garbage", "not a key".to_string()),
        ("truncated", public[..40].to_string()),
        ("private", private),
        ("options", format!("command=\"/bin/sh\" {public}")),
        ("two keys", format!("{public}{other}")),
        ("empty", String::new()),
    ];
    for (what, input) in cases {
        let output = env.run_with_stdin(&["key", "add", "alice"], input.as_bytes());
        let error = assert_fails(&output, 2);
        assert!(
            !error.contains("BEGIN"),
            "{what}: the key text is not echoed: {error}"
        );
    }
    for bad in ["-x", "a/b", "..", "a b"] {
        let args = ["key", "add", "alice", key.to_str().unwrap(), "--name", bad];
        assert_fails(&env.run(&args), 2);
    }
    let error = assert_fails(&env.run(&["key", "add", "carol", key.to_str().unwrap()]), 3);
    assert!(error.contains("pipe-admin user add carol"), "{error}");
    assert_fails(&env.run(&["key", "add", "alice", "/nonexistent.pub"]), 1);
    let mut bad_command = env.command(&["sync"]);
    bad_command.args(["--forced-command", "/bin/x\" ssh-rsa"]);
    assert_fails(&bad_command.output().unwrap(), 2);
    assert!(env.ok(&["key", "list"]).is_empty());
}

#[test]
fn foreign_lines_survive_every_operation_byte_for_byte() {
    let env = Env::with_foreign_lines();
    let a = env.keygen("a", "a");
    let b = env.keygen("b", "b");
    let steps: Vec<Vec<String>> = vec![
        vec!["sync".into()],
        vec!["user".into(), "add".into(), "alice".into()],
        vec![
            "key".into(),
            "add".into(),
            "alice".into(),
            a.display().to_string(),
        ],
        vec!["user".into(), "add".into(), "bob".into()],
        vec![
            "key".into(),
            "add".into(),
            "bob".into(),
            b.display().to_string(),
        ],
        vec!["key".into(), "remove".into(), "alice".into(), "a".into()],
        vec!["user".into(), "remove".into(), "bob".into()],
        vec!["sync".into()],
    ];
    let expected_keys = [0, 0, 1, 1, 2, 1, 0, 0];
    for (step, keys) in steps.iter().zip(expected_keys) {
        let args: Vec<&str> = step.iter().map(String::as_str).collect();
        env.ok(&args);
        assert_eq!(
            block(&env.file(), FOREIGN_BEFORE, FOREIGN_AFTER).len(),
            keys,
            "{args:?}"
        );
    }

    // A file without a block keeps its lines and gets the block at the end.
    let plain = Env::new();
    fs::create_dir_all(plain.authorized_keys().parent().unwrap()).unwrap();
    fs::write(plain.authorized_keys(), FOREIGN_BEFORE).unwrap();
    plain.ok(&["sync"]);
    assert!(block(&plain.file(), FOREIGN_BEFORE, "").is_empty());
}

#[test]
fn broken_markers_are_refused_and_nothing_changes() {
    let env = Env::new();
    env.ok(&["user", "add", "alice"]);
    let broken = format!("{FOREIGN_BEFORE}{BEGIN}some line\n");
    fs::write(env.authorized_keys(), &broken).unwrap();
    let key = env.keygen("k", "k");
    let error = assert_fails(&env.run(&["key", "add", "alice", key.to_str().unwrap()]), 4);
    assert!(error.contains("END"), "{error}");
    assert_fails(&env.run(&["sync"]), 4);
    assert_fails(&env.run(&["user", "add", "bob"]), 4);
    assert_eq!(env.file(), broken);
    assert_eq!(env.ok(&["key", "list"]), "");
    assert_eq!(env.ok(&["user", "list"]), "alice\n");
}

#[test]
fn twenty_parallel_key_adds_leave_a_consistent_file() {
    const RUNS: usize = 20;
    let env = Env::with_foreign_lines();
    env.ok(&["user", "add", "alice"]);
    env.ok(&["user", "add", "bob"]);
    let keys: Vec<PathBuf> = (0..RUNS)
        .map(|i| env.keygen(&format!("k{i}"), &format!("key{i}")))
        .collect();
    let children: Vec<_> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let user = if i % 2 == 0 { "alice" } else { "bob" };
            env.command(&["key", "add", user, key.to_str().unwrap()])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert_ok(&output, &["parallel key add"]);
    }

    let lines = block(&env.file(), FOREIGN_BEFORE, FOREIGN_AFTER);
    assert_eq!(lines.len(), RUNS);
    for (i, key) in keys.iter().enumerate() {
        let fingerprint = fingerprint(key);
        let user = if i % 2 == 0 { "alice" } else { "bob" };
        let found: Vec<&KeyLine> = lines
            .iter()
            .filter(|l| l.fingerprint == fingerprint)
            .collect();
        assert_eq!(found.len(), 1, "key {i}");
        assert_eq!(found[0].user, user, "key {i}");
    }
    // Sorted by user, then name; ssh-keygen reads the foreign key and all 20.
    let users: Vec<&str> = lines.iter().map(|l| l.user.as_str()).collect();
    let mut sorted = users.clone();
    sorted.sort();
    assert_eq!(users, sorted);
    assert_eq!(fingerprints(&env.authorized_keys()).len(), RUNS + 1);
    assert_eq!(env.ok(&["key", "list"]).lines().count(), RUNS);
}

#[test]
fn modes_are_safe_for_sshd_and_kept_on_existing_files() {
    let env = Env::new();
    env.ok(&["user", "add", "alice"]);
    let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o7777;
    let ak = env.authorized_keys();
    assert_eq!(mode(&ak), 0o644);
    assert_eq!(mode(ak.parent().unwrap()), 0o755);
    assert_eq!(mode(&env.keys_dir()), 0o755);
    assert_eq!(mode(&env.keys_dir().join("alice")), 0o755);
    let key = env.keygen("k", "k");
    env.ok(&["key", "add", "alice", key.to_str().unwrap()]);
    assert_eq!(mode(&env.keys_dir().join("alice/k.pub")), 0o644);

    fs::set_permissions(&ak, fs::Permissions::from_mode(0o600)).unwrap();
    env.ok(&["key", "remove", "alice", "k"]);
    assert_eq!(mode(&ak), 0o600);

    // A symbolic link is not followed (root would write wherever it points).
    let target = env.dir.path().join("elsewhere");
    fs::write(&target, "x\n").unwrap();
    fs::remove_file(&ak).unwrap();
    std::os::unix::fs::symlink(&target, &ak).unwrap();
    assert_fails(&env.run(&["sync"]), 1);
    assert_eq!(fs::read_to_string(&target).unwrap(), "x\n");
}

#[test]
fn every_subcommand_has_help_with_the_exit_codes() {
    let env = Env::new();
    for args in [
        &["--help"][..],
        &["user", "--help"],
        &["user", "add", "--help"],
        &["user", "remove", "--help"],
        &["user", "list", "--help"],
        &["key", "--help"],
        &["key", "add", "--help"],
        &["key", "remove", "--help"],
        &["key", "list", "--help"],
        &["sync", "--help"],
    ] {
        let help = env.ok(args);
        assert!(help.contains("Exit codes:"), "{args:?}");
    }
    assert_fails(&env.run(&[]), 2);
    assert_fails(&env.run(&["user"]), 2);
    assert_fails(&env.run(&["frobnicate"]), 2);
    assert_fails(&env.run(&["user", "add"]), 2);
}
