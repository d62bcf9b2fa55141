//! Users of one harness in one of the three identity modes (pipe-shell(8), IDENTITY MODES),
//! so a behaviour can be tested the same way in each.
//!
//! | mode | ssh login | key line | identity |
//! |---|---|---|---|
//! | [`Mode::UnixUsers`] | `pipetest`, `pipetest2` | `restrict,command="pipe-shell --socket S"` | the account's name |
//! | [`Mode::ServiceAccount`] | `pipetestsvc` | written by `pipe-admin`: `…command="pipe-shell --socket S --user U --key FP"` | `U`, key `FP` |
//! | [`Mode::ForceCommand`] | `pipetestsvc` | plain `restrict KEY`; sshd's `ForceCommand` + `ExposeAuthInfo` | owner of the key in the key directory |

use std::ffi::OsStr;

use serde_json::Value;

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Per-Unix-user: identity is the peer uid's user name.
    UnixUsers,
    /// Shared service account whose key lines (`pipe-admin`'s) assert `--user`/`--key`.
    ServiceAccount,
    /// Shared service account under `ForceCommand`; pipe-shell maps `$SSH_USER_AUTH`'s key
    /// through the key directory.
    ForceCommand,
}

/// One user: the name `piped` knows them by and how they log in.
#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    pub login: Login,
}

impl Member {
    /// `NAME/topic`: how others (and `ls`) write this member's topic.
    pub fn topic(&self, name: &str) -> String {
        format!("{}/{name}", self.name)
    }
}

pub struct Team {
    pub h: Harness,
    pub mode: Mode,
    pub members: Vec<Member>,
}

/// Where `pipe-admin` writes in [`Mode::ForceCommand`]: its key lines are not used there
/// (sshd reads plain lines the team writes), only its key directory.
const SCRATCH_AUTHORIZED_KEYS: &str = "admin-scratch/authorized_keys";

impl Team {
    /// A harness in `mode` with two members (`alice`, `bob`; in [`Mode::UnixUsers`] the
    /// accounts `pipetest` and `pipetest2`).
    pub fn start(mode: Mode) -> Team {
        Self::start_with(mode, &[])
    }

    /// [`Team::start`] with a broker started with extra arguments (`--config FILE`).
    pub fn start_with(mode: Mode, broker_args: &[&str]) -> Team {
        let mut b = Harness::builder().broker_args(broker_args);
        if mode == Mode::ForceCommand {
            b = b.sshd_config(&format!(
                "Match User {SERVICE_USER}\n\
                 \x20   ExposeAuthInfo yes\n\
                 \x20   ForceCommand {{pipe_shell}} --socket {{socket}} --keys-dir {{dir}}/keys \
                 --service-user {SERVICE_USER}\n"
            ));
        }
        let mut t = Team {
            h: b.start(),
            mode,
            members: Vec::new(),
        };
        match mode {
            Mode::UnixUsers => {
                t.add_member(LOGIN_USER);
                t.add_member(LOGIN_USER2);
            }
            _ => {
                t.add_member("alice");
                t.add_member("bob");
            }
        }
        t
    }

    /// Adds a member named `name` with one key (named `name` too). In [`Mode::UnixUsers`]
    /// the name must be one of the throwaway accounts.
    pub fn add_member(&mut self, name: &str) -> Member {
        if self.mode != Mode::UnixUsers {
            self.admin(&["user", "add", name]);
        } else {
            assert!(
                [LOGIN_USER, LOGIN_USER2].contains(&name),
                "per-Unix-user mode has the accounts {LOGIN_USER} and {LOGIN_USER2} only"
            );
        }
        let login = self.add_key(name, name);
        let m = Member {
            name: name.to_string(),
            login,
        };
        self.members.push(m.clone());
        m
    }

    /// Gives member `name` one more key (`key_name`) and returns the login with it.
    pub fn add_key(&self, name: &str, key_name: &str) -> Login {
        let key = self.h.new_key(key_name);
        let account = match self.mode {
            Mode::UnixUsers => {
                self.h.authorize(
                    name,
                    &format!(
                        "restrict,command=\"{}\" {}",
                        self.h.forced_command(),
                        key.public
                    ),
                );
                name.to_string()
            }
            Mode::ServiceAccount => {
                let file = key.public_file();
                self.admin(&["key", "add", name, &file.display().to_string()]);
                SERVICE_USER.to_string()
            }
            Mode::ForceCommand => {
                let file = key.public_file();
                self.admin(&["key", "add", name, &file.display().to_string()]);
                self.h
                    .authorize(SERVICE_USER, &format!("restrict {}", key.public));
                SERVICE_USER.to_string()
            }
        };
        Login { account, key }
    }

    /// `pipe-admin ARGS…` on the file that holds this mode's admin-written key lines.
    pub fn admin(&self, args: &[&str]) -> Output {
        match self.mode {
            Mode::ForceCommand => self
                .h
                .pipe_admin_on(&self.h.dir().join(SCRATCH_AUTHORIZED_KEYS), args),
            _ => self.h.pipe_admin(args),
        }
    }

    pub fn member(&self, name: &str) -> &Member {
        self.members
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no member {name}"))
    }

    /// The first and second members.
    pub fn pair(&self) -> (Member, Member) {
        (self.members[0].clone(), self.members[1].clone())
    }

    pub fn run(&self, m: &Member, request: impl AsRef<OsStr>, stdin: &[u8]) -> Output {
        self.h.run_as(&m.login, request, stdin, SHORT)
    }

    /// Runs several requests as `m` at once (each with `stdin`); outputs in request order.
    pub fn run_many(&self, m: &Member, requests: &[String], stdin: &[u8]) -> Vec<Output> {
        let mut clients: Vec<Client> = requests
            .iter()
            .map(|r| {
                let mut c = self.spawn(m, r);
                if stdin.is_empty() {
                    c.close_stdin();
                } else {
                    c.feed(std::sync::Arc::from(stdin));
                }
                c
            })
            .collect();
        clients.iter_mut().map(|c| c.finish(SHORT)).collect()
    }

    pub fn spawn(&self, m: &Member, request: impl AsRef<OsStr>) -> Client {
        self.h.spawn_as(&m.login, request)
    }

    pub fn ls(&self, m: &Member) -> Vec<Value> {
        self.h.ls_as(&m.login)
    }

    /// Polls `m`'s `ls --json` until `pred` holds for `topic` (`owner/name`).
    pub fn wait_until(
        &self,
        m: &Member,
        topic: &str,
        what: &str,
        pred: impl Fn(&Counts) -> bool,
    ) -> Counts {
        self.h.wait_until_as(&m.login, topic, what, pred)
    }

    /// `whoami`'s stdout, trimmed; panics unless it exits 0.
    pub fn whoami(&self, m: &Member) -> String {
        let out = self.run(m, "whoami", b"");
        assert_eq!(out.code, Some(0), "{} whoami: {out:?}", m.name);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// What `whoami` must print for `m` in this mode.
    pub fn expected_whoami(&self, m: &Member) -> String {
        match self.mode {
            Mode::UnixUsers => m.name.clone(),
            _ => format!("{} {}", m.name, m.login.key.fingerprint),
        }
    }
}

/// The object for `topic` in an `ls --json` array.
pub fn ls_entry<'a>(list: &'a [Value], topic: &str) -> Option<&'a Value> {
    list.iter()
        .find(|t| t.get("topic").and_then(Value::as_str) == Some(topic))
}

/// The `grant` field of `topic` in an `ls --json` array.
pub fn ls_grant(list: &[Value], topic: &str) -> Vec<String> {
    let t = ls_entry(list, topic).unwrap_or_else(|| panic!("{topic} not in ls: {list:?}"));
    t.get("grant")
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("ls --json: no grant list in {t}"))
        .iter()
        .map(|g| g.as_str().expect("grant entries are strings").to_string())
        .collect()
}
