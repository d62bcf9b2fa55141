//! The .deb and the .rpm, for real. Builds the release binaries and both packages, installs
//! the .deb on this machine with dpkg and checks what packaging/README.md and the FILES of
//! piped(8) and pipe-admin(8) promise: the files with their modes and owners, the `pipe`
//! account, the systemd units (`systemd-analyze verify` silent, `security` exposure at most
//! 2.0), the sshd snippet, the broker started the way systemd starts it (socket activation,
//! `READY=1`), a key login through a private sshd using the installed snippet, then remove,
//! reinstall and purge. The .rpm must hold the same files and carry its scriptlets.
//!
//! Needs root, dpkg, rpm, cargo-deb, cargo-generate-rpm, systemd's tools and OpenSSH
//! (`tests/run` installs them). It refuses to start where pipe is installed or has left
//! files behind, never touches the system's sshd (its own listens on a free loopback port),
//! and purges the package and removes the account it created when it ends, also on failure.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::{Guarded, SSHD, Sshd, keygen};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Files the .deb installs besides directories (man pages gzipped, as cargo-deb does).
const DEB_FILES: &[&str] = &[
    "/etc/pipe/piped.toml",
    "/etc/ssh/sshd_config.d/50-pipe.conf",
    "/usr/bin/pipe-shell",
    "/usr/lib/systemd/system/piped.service",
    "/usr/lib/systemd/system/piped.socket",
    "/usr/lib/sysusers.d/pipe.conf",
    "/usr/lib/tmpfiles.d/pipe.conf",
    "/usr/sbin/pipe-admin",
    "/usr/sbin/piped",
    "/usr/share/bash-completion/completions/pipe-admin",
    "/usr/share/doc/pipe/LICENSE",
    "/usr/share/doc/pipe/README.md",
    "/usr/share/doc/pipe/copyright",
    "/usr/share/doc/pipe/examples/deploy-hook",
    "/usr/share/doc/pipe/examples/log_service.rs",
    "/usr/share/doc/pipe/examples/ship-logs",
    "/usr/share/doc/pipe/examples/ssh_config",
    "/usr/share/fish/vendor_completions.d/pipe-admin.fish",
    "/usr/share/man/man1/pipe.1.gz",
    "/usr/share/man/man5/pipe.5.gz",
    "/usr/share/man/man8/pipe-admin.8.gz",
    "/usr/share/man/man8/pipe-shell.8.gz",
    "/usr/share/man/man8/piped.8.gz",
    "/usr/share/zsh/vendor-completions/_pipe-admin",
];

/// The installed files that are executables (mode 0755; everything else is 0644).
const BINARIES: &[&str] = &[
    "/usr/bin/pipe-shell",
    "/usr/sbin/piped",
    "/usr/sbin/pipe-admin",
];

/// What the package scripts make and purge removes (packaging/README.md, "What install,
/// remove and purge do").
const STATE_PATHS: &[&str] = &[
    "/etc/pipe",
    "/var/lib/pipe",
    "/var/lib/piped",
    "/var/lib/private/piped",
    "/run/pipe",
    "/etc/ssh/sshd_config.d/50-pipe.conf",
];

/// Upper bound for any single wait on a process or a socket.
const DEADLINE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------

/// The shipped config is the broker's own commented default, key for key.
#[test]
fn shipped_config_is_the_brokers_example() {
    let shipped = fs::read_to_string(Path::new(ROOT).join("contrib/piped.toml")).unwrap();
    assert!(
        shipped == pipe::broker::config::EXAMPLE_CONFIG,
        "contrib/piped.toml differs from pipe::broker::config::EXAMPLE_CONFIG: \
         regenerate it from the constant"
    );
}

/// Maintainer scripts run under dpkg's and rpm's /bin/sh, which is dash on Debian.
#[test]
fn package_scripts_are_posix_sh() {
    for script in [
        "packaging/deb/postinst",
        "packaging/deb/prerm",
        "packaging/deb/postrm",
        "packaging/rpm/post_install.sh",
        "packaging/rpm/pre_uninstall.sh",
        "packaging/rpm/post_uninstall.sh",
    ] {
        let path = Path::new(ROOT).join(script);
        let out = run(Command::new("dash").arg("-n").arg(&path));
        assert!(out.status.success(), "{script}: {}", text(&out.stderr));
        let body = fs::read_to_string(&path).unwrap();
        assert!(
            body.lines().any(|l| l.trim() == "set -e"),
            "{script}: no `set -e`"
        );
        if script.starts_with("packaging/deb/") {
            // cargo-deb replaces every occurrence, comments included.
            assert_eq!(
                body.matches("#DEBHELPER#").count(),
                1,
                "{script}: the debhelper token must stand exactly once"
            );
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o111, 0o111, "{script} is not executable");
        }
    }
}

/// The client examples are valid sh and a valid ssh_config.
#[test]
fn client_examples_parse() {
    let dir = Path::new(ROOT).join("contrib/examples");
    for script in ["deploy-hook", "ship-logs"] {
        let out = run(Command::new("dash").arg("-n").arg(dir.join(script)));
        assert!(out.status.success(), "{script}: {}", text(&out.stderr));
    }
    let out = checked(
        Command::new("ssh")
            .arg("-G")
            .arg("-F")
            .arg(dir.join("ssh_config"))
            .arg("pipe")
            .stdin(Stdio::null()),
    );
    let effective = text(&out.stdout);
    for line in ["user pipe", "controlmaster auto", "controlpersist 600"] {
        assert!(
            effective.lines().any(|l| l == line),
            "ssh -G lacks {line}:\n{effective}"
        );
    }
}

/// The .rpm holds the .deb's files (man pages not gzipped, directories aside), marks the
/// config files `noreplace`, and carries the three scriptlets.
#[test]
fn rpm_matches_deb() {
    let pkgs = packages();
    let mut deb_files: Vec<String> =
        text(&checked(Command::new("dpkg-deb").arg("--contents").arg(&pkgs.deb)).stdout)
            .lines()
            .filter(|l| !l.starts_with('d'))
            .map(|l| {
                // "-rw-r--r-- root/root 123 2026-01-01 00:00 ./usr/bin/pipe-shell"
                let path = l.split_whitespace().last().unwrap();
                path.trim_start_matches('.')
                    .trim_end_matches(".gz")
                    .to_string()
            })
            .collect();
    deb_files.sort();
    let mut expected: Vec<String> = DEB_FILES
        .iter()
        .map(|f| f.trim_end_matches(".gz").to_string())
        .collect();
    expected.sort();
    assert_eq!(deb_files, expected, "the .deb's files");

    let rpm_list = text(&checked(Command::new("rpm").arg("-qlp").arg(&pkgs.rpm)).stdout);
    let mut rpm_files: Vec<String> = rpm_list.lines().map(str::to_string).collect();
    rpm_files.sort();
    // cargo-deb writes a Debian copyright file; rpm keeps the license as a plain doc.
    let deb_without_copyright: Vec<String> = deb_files
        .iter()
        .filter(|f| !f.ends_with("/copyright"))
        .cloned()
        .collect();
    assert_eq!(rpm_files, deb_without_copyright, "the .rpm's files");

    let flags = text(
        &checked(
            Command::new("rpm")
                .args(["-qp", "--qf", "[%{FILENAMES} %{FILEFLAGS:fflags}\n]"])
                .arg(&pkgs.rpm),
        )
        .stdout,
    );
    for conf in [
        "/etc/pipe/piped.toml",
        "/etc/ssh/sshd_config.d/50-pipe.conf",
    ] {
        let line = flags
            .lines()
            .find(|l| l.starts_with(&format!("{conf} ")))
            .unwrap_or_else(|| panic!("{conf} not in the rpm:\n{flags}"));
        assert!(
            line.ends_with(" cn"),
            "{conf} is not config(noreplace): {line}"
        );
    }
    let modes = text(
        &checked(
            Command::new("rpm")
                .args(["-qp", "--qf", "[%{FILENAMES} %{FILEMODES:perms}\n]"])
                .arg(&pkgs.rpm),
        )
        .stdout,
    );
    for bin in BINARIES {
        assert!(
            modes.lines().any(|l| l == format!("{bin} -rwxr-xr-x")),
            "{bin} mode in the rpm:\n{modes}"
        );
    }

    let scripts = text(
        &checked(
            Command::new("rpm")
                .args(["-qp", "--scripts"])
                .arg(&pkgs.rpm),
        )
        .stdout,
    );
    for (section, file) in [
        ("postinstall scriptlet", "packaging/rpm/post_install.sh"),
        ("preuninstall scriptlet", "packaging/rpm/pre_uninstall.sh"),
        ("postuninstall scriptlet", "packaging/rpm/post_uninstall.sh"),
    ] {
        assert!(scripts.contains(section), "no {section}:\n{scripts}");
        let body = fs::read_to_string(Path::new(ROOT).join(file)).unwrap();
        assert!(
            scripts.contains(body.trim_end()),
            "the rpm's {section} is not {file}:\n{scripts}"
        );
    }
}

/// Install, check, log in through the installed pieces, remove, reinstall, purge.
#[test]
fn deb_install_remove_reinstall_purge() {
    require_root();
    let machine = Machine::check_clean();
    let pkgs = packages();
    let _cleanup = Cleanup { machine };

    // ---- install ----
    let out = dpkg(&["-i"], &pkgs.deb);
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        said.contains("pipe: next: pipe-admin key add"),
        "postinst output:\n{said}"
    );
    assert_eq!(package_status(), "install ok installed");

    for file in DEB_FILES {
        let mode = if BINARIES.contains(file) {
            0o755
        } else {
            0o644
        };
        assert_node(file, false, mode);
    }
    for dir in ["/etc/pipe/keys", "/var/lib/pipe", "/var/lib/pipe/.ssh"] {
        assert_node(dir, true, 0o755);
    }
    assert_eq!(
        fs::read_to_string("/etc/pipe/piped.toml").unwrap(),
        pipe::broker::config::EXAMPLE_CONFIG
    );
    let conffiles = query("${Conffiles}");
    for conf in [
        "/etc/pipe/piped.toml",
        "/etc/ssh/sshd_config.d/50-pipe.conf",
    ] {
        assert!(
            conffiles.contains(conf),
            "{conf} is not a conffile:\n{conffiles}"
        );
    }
    // deb-systemd-helper enables the socket (it has [Install]), not the service (it has
    // none: the socket starts it), also without a running systemd.
    let wants = Path::new("/etc/systemd/system/sockets.target.wants/piped.socket");
    assert!(wants.is_symlink(), "piped.socket is not enabled");
    assert!(!Path::new("/etc/systemd/system/multi-user.target.wants/piped.service").exists());

    check_account();
    check_units();
    check_sshd_snippet();

    // ---- the broker as systemd starts it, and a login through the installed snippet ----
    let tmp = tempdir();
    let key = check_broker_and_login(tmp.path());

    // ---- remove: binaries and units go, config, keys and the account's home stay ----
    let toml = Path::new("/etc/pipe/piped.toml");
    let mut edited = fs::read_to_string(toml).unwrap();
    edited.push_str("\n# edited by the admin\nmax_user_sessions = 7\n");
    fs::write(toml, &edited).unwrap();
    let authorized = fs::read_to_string("/var/lib/pipe/.ssh/authorized_keys").unwrap();
    dpkg(&["-r"], Path::new("pipe"));
    assert_eq!(package_status(), "deinstall ok config-files");
    for gone in [
        "/usr/bin/pipe-shell",
        "/usr/sbin/piped",
        "/usr/sbin/pipe-admin",
        "/usr/lib/systemd/system/piped.service",
        "/usr/lib/systemd/system/piped.socket",
        "/usr/share/man/man8/piped.8.gz",
        "/run/pipe",
    ] {
        assert!(!Path::new(gone).exists(), "{gone} is left after dpkg -r");
    }
    assert_eq!(fs::read_to_string(toml).unwrap(), edited);
    assert!(Path::new("/etc/ssh/sshd_config.d/50-pipe.conf").exists());
    assert!(
        Path::new("/etc/pipe/keys/alice").is_dir(),
        "keys lost on remove"
    );
    assert_eq!(
        fs::read_to_string("/var/lib/pipe/.ssh/authorized_keys").unwrap(),
        authorized
    );
    // The account, its key and the snippet are still there, its shell is not: sshd must
    // refuse the login rather than fall back to anything.
    let sshd = start_sshd(tmp.path());
    let refused = run(ssh_pipe(&sshd, &key, &["whoami"]).stdin(Stdio::null()));
    assert!(
        !refused.status.success() && refused.stdout.is_empty(),
        "a login after dpkg -r: {:?} {}",
        refused.status,
        text(&refused.stdout)
    );
    assert!(
        sshd.log().contains("/usr/bin/pipe-shell does not exist"),
        "sshd log:\n{}",
        sshd.log()
    );
    drop(sshd);

    // ---- reinstall from config-files, then again over itself: nothing of the admin's changes ----
    for _ in 0..2 {
        dpkg(&["-i"], &pkgs.deb);
        assert_eq!(package_status(), "install ok installed");
        assert_eq!(
            fs::read_to_string(toml).unwrap(),
            edited,
            "piped.toml replaced"
        );
        assert!(
            Path::new("/etc/pipe/keys/alice").is_dir(),
            "keys lost on reinstall"
        );
        assert_eq!(
            fs::read_to_string("/var/lib/pipe/.ssh/authorized_keys").unwrap(),
            authorized
        );
        assert!(wants.is_symlink(), "piped.socket not enabled again");
        check_account();
    }

    // ---- purge: config, keys, the account's home and piped's state go; the account stays ----
    dpkg(&["-P"], Path::new("pipe"));
    assert_eq!(package_status(), "");
    for gone in STATE_PATHS.iter().chain(DEB_FILES) {
        assert!(!Path::new(gone).exists(), "{gone} is left after dpkg -P");
    }
    assert!(
        !wants.exists() && !wants.is_symlink(),
        "piped.socket still enabled"
    );
    for unit in ["piped.socket", "piped.service"] {
        let mask = Path::new("/etc/systemd/system").join(unit);
        assert!(!mask.is_symlink(), "{} is left (a mask)", mask.display());
    }
    assert!(
        getent("passwd", "pipe").is_some(),
        "the pipe account should stay after purge (Debian keeps system accounts)"
    );
}

// ---------------------------------------------------------------------------------------
// Checks of the installed system
// ---------------------------------------------------------------------------------------

fn check_account() {
    let passwd = getent("passwd", "pipe").expect("no pipe account");
    let fields: Vec<&str> = passwd.split(':').collect();
    assert_eq!(fields[5], "/var/lib/pipe", "home: {passwd}");
    assert_eq!(fields[6], "/usr/bin/pipe-shell", "shell: {passwd}");
    let group = getent("group", "pipe").expect("no pipe group");
    assert_eq!(
        fields[3],
        group.split(':').nth(2).unwrap(),
        "primary group: {passwd} / {group}"
    );
    let shadow = getent("shadow", "pipe").expect("no shadow entry");
    assert_eq!(
        shadow.split(':').nth(1),
        Some("*"),
        "password field (a locked `!` is refused by sshd with UsePAM no)"
    );
}

fn check_units() {
    let units = [
        "/usr/lib/systemd/system/piped.socket",
        "/usr/lib/systemd/system/piped.service",
    ];
    // verify exits 0 on unknown keys and bad values: they only show up on stderr.
    let out = run(Command::new("systemd-analyze").arg("verify").args(units));
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {:?}\n{}",
        out.status,
        text(&out.stderr)
    );
    let out = checked(Command::new("systemd-analyze").args([
        "security",
        "--offline=true",
        "--no-pager",
        units[1],
    ]));
    let report = text(&out.stdout);
    let line = report
        .lines()
        .find(|l| l.contains("Overall exposure level for piped.service"))
        .unwrap_or_else(|| panic!("no overall exposure in:\n{report}"));
    let score: f64 = line
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unreadable exposure line: {line}"));
    println!("systemd-analyze security piped.service: exposure {score}");
    assert!(score <= 2.0, "exposure {score} > 2.0:\n{report}");

    let socket = fs::read_to_string(units[0]).unwrap();
    for line in [
        "ListenStream=/run/pipe/piped.sock",
        "SocketGroup=pipe",
        "SocketMode=0660",
        "DirectoryMode=0750",
        "WantedBy=sockets.target",
    ] {
        assert!(
            socket.lines().any(|l| l == line),
            "piped.socket lacks {line}"
        );
    }
    let service = fs::read_to_string(units[1]).unwrap();
    for line in [
        "Type=notify",
        "ExecStart=/usr/sbin/piped --config /etc/pipe/piped.toml",
        "WatchdogSec=30",
        "Restart=on-failure",
    ] {
        assert!(
            service.lines().any(|l| l == line),
            "piped.service lacks {line}"
        );
    }
    assert!(
        !service.lines().any(|l| l == "[Install]"),
        "piped.service must be socket-activated only"
    );
    assert!(
        !service.lines().any(|l| l.starts_with("PrivateUsers=")),
        "PrivateUsers would hide peer uids"
    );
}

fn check_sshd_snippet() {
    let tmp = tempdir();
    let host_key = tmp.path().join("host_key");
    keygen(&host_key, "ed25519", "pipe-package-test");
    // Debian's sshd_config includes sshd_config.d/*.conf at its top, before its own global
    // settings: the snippet's Match block must not swallow those.
    let config = tmp.path().join("sshd_config");
    fs::write(
        &config,
        format!(
            "Include /etc/ssh/sshd_config.d/50-pipe.conf\nHostKey {}\nUsePAM no\nMaxSessions 7\n",
            host_key.display()
        ),
    )
    .unwrap();
    let out = run(Command::new(SSHD).arg("-t").arg("-f").arg(&config));
    assert!(out.status.success(), "sshd -t: {}", text(&out.stderr));
    let effective = |user: &str| {
        let out = checked(
            Command::new(SSHD)
                .arg("-T")
                .arg("-f")
                .arg(&config)
                .arg("-C")
                .arg(format!("user={user},host=localhost,addr=127.0.0.1")),
        );
        text(&out.stdout)
    };
    let pipe = effective("pipe");
    for line in [
        "forcecommand /usr/bin/pipe-shell",
        "exposeauthinfo yes",
        "authenticationmethods publickey",
        "disableforwarding yes",
        "x11forwarding no",
        "permittty no",
        "permituserrc no",
        "permittunnel no",
        "clientaliveinterval 30",
        "clientalivecountmax 4",
        "maxsessions 7",
    ] {
        assert!(
            pipe.lines().any(|l| l == line),
            "for pipe, sshd -T lacks {line}"
        );
    }
    let root = effective("root");
    for line in ["forcecommand none", "permittty yes", "maxsessions 7"] {
        assert!(
            root.lines().any(|l| l == line),
            "the snippet leaks onto other users: for root, sshd -T lacks {line}"
        );
    }
}

/// Starts the installed broker as systemd would (tmpfiles, socket activation on the
/// installed path, `NOTIFY_SOCKET`), waits for `READY=1`, adds a key with pipe-admin and
/// logs in as `pipe` through a private sshd whose config is only the installed snippet.
fn check_broker_and_login(tmp: &Path) -> PathBuf {
    if Path::new("/run/systemd/system").is_dir() {
        // A machine booted with systemd: postinst started piped.socket, and the first
        // connection starts the real, sandboxed piped.service. Then make way for the
        // hand-made activation below, which works the same with or without systemd.
        checked(Command::new("systemctl").args(["is-active", "--quiet", "piped.socket"]));
        let me = checked(Command::new("/usr/bin/pipe-shell").arg("whoami"));
        assert_eq!(text(&me.stdout), "root\n", "whoami through piped.service");
        checked(Command::new("systemctl").args(["is-active", "--quiet", "piped.service"]));
        checked(Command::new("systemctl").args(["stop", "piped.socket", "piped.service"]));
    }
    // /run/pipe as systemd-tmpfiles-setup makes it at boot.
    checked(Command::new("systemd-tmpfiles").args(["--create", "/usr/lib/tmpfiles.d/pipe.conf"]));
    let run_dir = fs::metadata("/run/pipe").unwrap();
    let pipe_gid = getent("group", "pipe")
        .unwrap()
        .split(':')
        .nth(2)
        .unwrap()
        .parse::<u32>()
        .unwrap();
    assert_eq!(
        (run_dir.mode() & 0o7777, run_dir.uid(), run_dir.gid()),
        (0o750, 0, pipe_gid),
        "/run/pipe"
    );

    let notify_path = tmp.join("notify");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let state = tmp.join("state");
    let socket = Path::new("/run/pipe/piped.sock");
    let broker = Guarded::spawn(
        Command::new("systemd-socket-activate")
            .arg("-l")
            .arg(socket)
            .arg("--fdname=piped")
            .arg(format!("--setenv=NOTIFY_SOCKET={}", notify_path.display()))
            .args([
                "/usr/sbin/piped",
                "--config",
                "/etc/pipe/piped.toml",
                "--state-dir",
            ])
            .arg(&state)
            .stdout(Stdio::null())
            .stderr(fs::File::create(tmp.join("piped.log")).unwrap()),
        "systemd-socket-activate",
    );
    wait_for(|| socket.exists(), "the activation socket");
    // What piped.socket sets (systemd-socket-activate leaves the socket root's 0755-ish).
    fs::set_permissions(socket, fs::Permissions::from_mode(0o660)).unwrap();
    std::os::unix::fs::chown(socket, Some(0), Some(pipe_gid)).unwrap();
    assert!(fs::metadata(socket).unwrap().file_type().is_socket());

    // systemd-socket-activate starts piped on the first connection, as the socket unit
    // does: root asks who it is (`version` is answered by pipe-shell alone).
    let me = checked(Command::new("/usr/bin/pipe-shell").arg("whoami"));
    assert_eq!(text(&me.stdout), "root\n", "pipe-shell whoami as root");
    let mut said = String::new();
    let start = Instant::now();
    while !said.lines().any(|l| l == "READY=1") {
        assert!(
            start.elapsed() < DEADLINE,
            "no READY=1 from piped; got {said:?}; log:\n{}",
            fs::read_to_string(tmp.join("piped.log")).unwrap_or_default()
        );
        let mut buf = [0u8; 4096];
        if let Ok(n) = notify.recv(&mut buf) {
            said.push_str(&String::from_utf8_lossy(&buf[..n]));
            said.push('\n');
        }
    }

    // A key for alice, the way the admin adds one.
    let key = tmp.join("alice");
    keygen(&key, "ed25519", "pipe-package-test");
    checked(Command::new("/usr/sbin/pipe-admin").args(["user", "add", "alice"]));
    checked(
        Command::new("/usr/sbin/pipe-admin")
            .args(["key", "add", "alice"])
            .arg(key.with_extension("pub")),
    );
    let authorized = fs::metadata("/var/lib/pipe/.ssh/authorized_keys").unwrap();
    assert_eq!((authorized.uid(), authorized.mode() & 0o022), (0, 0));

    let sshd = start_sshd(tmp);
    let ssh = |args: &[&str]| ssh_pipe(&sshd, &key, args);
    let who = run(ssh(&["whoami"]).stdin(Stdio::null()));
    assert!(
        who.status.success() && text(&who.stdout).split_whitespace().next() == Some("alice"),
        "whoami through the installed snippet: {:?} {} {}\nsshd log:\n{}",
        who.status,
        text(&who.stdout),
        text(&who.stderr),
        sshd.log()
    );
    // ForceCommand wins over anything the client asks for: no shell, no pty.
    let shell = run(ssh(&["-t", "sh", "-c", "id"]).stdin(Stdio::null()));
    assert!(!shell.status.success() && !text(&shell.stdout).contains("uid="));

    let sub = Guarded::spawn(
        ssh(&["sub", "-c", "hello"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
        "ssh sub",
    );
    let mut publ = ssh(&["pub", "-c", "hello"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    publ.stdin
        .take()
        .unwrap()
        .write_all(b"hello world!\n")
        .unwrap();
    let pub_out = wait_output(publ, "ssh pub");
    assert!(pub_out.status.success(), "pub: {}", text(&pub_out.stderr));
    let sub_out = wait_output(sub.into_child(), "ssh sub");
    assert!(sub_out.status.success(), "sub: {}", text(&sub_out.stderr));
    assert_eq!(text(&sub_out.stdout), "hello world!\n");

    // The admin's check agrees: the snippet in effect, the account, socket and keys.
    let doctor = run(Command::new("/usr/sbin/pipe-admin")
        .arg("doctor")
        .arg("--sshd-config")
        .arg(&sshd.config));
    assert!(
        doctor.status.success(),
        "pipe-admin doctor on the installed system: {:?}\n{}{}",
        doctor.status,
        text(&doctor.stdout),
        text(&doctor.stderr)
    );

    drop(sshd);
    drop(broker);
    // piped leaves a socket it was given alone; systemd removes it (RemoveOnStop=yes).
    let _ = fs::remove_file(socket);
    key
}

// ---------------------------------------------------------------------------------------
// Building the packages
// ---------------------------------------------------------------------------------------

struct Packages {
    deb: PathBuf,
    rpm: PathBuf,
}

/// Builds the release binaries and both packages once per test process, into
/// target/packages/.
fn packages() -> &'static Packages {
    static PACKAGES: OnceLock<Packages> = OnceLock::new();
    PACKAGES.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        for tool in ["deb", "generate-rpm"] {
            let ok = Command::new(&cargo)
                .args([tool, "--version"])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            assert!(
                ok,
                "cargo {tool} is missing: `cargo install --locked cargo-{tool}` (tests/run does)"
            );
        }
        let out_dir = Path::new(ROOT).join("target/packages");
        fs::create_dir_all(&out_dir).unwrap();
        let deb = out_dir.join("pipe.deb");
        let rpm = out_dir.join("pipe.rpm");
        let in_root = |args: &[&str]| {
            let mut cmd = Command::new(&cargo);
            cmd.current_dir(ROOT).args(args);
            checked(&mut cmd);
        };
        in_root(&["build", "--release", "--locked", "--bins"]);
        in_root(&["deb", "--no-build", "--output", deb.to_str().unwrap()]);
        in_root(&["generate-rpm", "--output", rpm.to_str().unwrap()]);
        Packages { deb, rpm }
    })
}

// ---------------------------------------------------------------------------------------
// The machine before and after
// ---------------------------------------------------------------------------------------

/// What was there before the test, so that cleanup removes only what the test made.
struct Machine {
    had_user: bool,
    had_group: bool,
}

impl Machine {
    /// Refuses a machine where pipe is installed or has left files: the test purges at the
    /// end and must not take an admin's config or keys with it.
    fn check_clean() -> Machine {
        let status = package_status();
        assert!(
            status.is_empty() || status.starts_with("unknown ok not-installed"),
            "the pipe package is on this machine ({status}): `dpkg -P pipe` first"
        );
        for path in STATE_PATHS {
            assert!(
                !Path::new(path).exists() && !Path::new(path).is_symlink(),
                "{path} exists: this test installs and purges the package; move it away first"
            );
        }
        Machine {
            had_user: getent("passwd", "pipe").is_some(),
            had_group: getent("group", "pipe").is_some(),
        }
    }
}

/// Purges the package and removes the account and group the test's install created,
/// however the test ends.
struct Cleanup {
    machine: Machine,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = fs::remove_file("/run/pipe/piped.sock");
        let _ = Command::new("dpkg").args(["-P", "pipe"]).output();
        if !self.machine.had_user && getent("passwd", "pipe").is_some() {
            let _ = Command::new("userdel").arg("pipe").output();
        }
        if !self.machine.had_group && getent("group", "pipe").is_some() {
            let _ = Command::new("groupdel").arg("pipe").output();
        }
        for path in STATE_PATHS {
            let p = Path::new(path);
            if p.is_dir() && !p.is_symlink() {
                let _ = fs::remove_dir_all(p);
            } else if p.exists() || p.is_symlink() {
                let _ = fs::remove_file(p);
            }
        }
    }
}

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the package test installs the .deb with dpkg: run it as root (tests/run)"
    );
}

// ---------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------

/// A private sshd on a free loopback port whose only pipe settings are the installed
/// snippet. It reads the `pipe` account's real authorized_keys, which pipe-admin wrote.
fn start_sshd(tmp: &Path) -> Sshd {
    let tmp = tempfile::Builder::new()
        .prefix("sshd.")
        .tempdir_in(tmp)
        .unwrap()
        .keep();
    Sshd::start(&tmp, |port, host_key| {
        format!(
            "Include /etc/ssh/sshd_config.d/50-pipe.conf\n\
             ListenAddress 127.0.0.1\n\
             Port {port}\n\
             HostKey {}\n\
             PidFile {}\n\
             UsePAM no\n\
             AllowUsers pipe\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n",
            host_key.display(),
            tmp.join("sshd.pid").display()
        )
    })
}

/// `ssh pipe@127.0.0.1 ARGS…` to `sshd` with `key`, non-interactive.
fn ssh_pipe(sshd: &Sshd, key: &Path, args: &[&str]) -> Command {
    let mut cmd = sshd.ssh("pipe", key);
    cmd.args(args);
    cmd
}

fn wait_output(mut child: Child, what: &str) -> Output {
    let start = Instant::now();
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("{what} did not finish: {}", text(&out.stderr));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn wait_for(mut ready: impl FnMut() -> bool, what: &str) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("run {:?}: {e}", cmd.get_program()))
}

fn checked(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?}: {:?}\n{}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn dpkg(args: &[&str], target: &Path) -> Output {
    checked(
        Command::new("dpkg")
            .args(args)
            .arg(target)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// dpkg's `Status` of pipe, or "" when dpkg has no record of it.
fn package_status() -> String {
    query("${Status}")
}

fn query(format: &str) -> String {
    let out = run(Command::new("dpkg-query").args(["-W", "-f", format, "pipe"]));
    if out.status.success() {
        text(&out.stdout)
    } else {
        String::new()
    }
}

fn getent(db: &str, key: &str) -> Option<String> {
    let out = run(Command::new("getent").args([db, key]));
    out.status
        .success()
        .then(|| text(&out.stdout).trim_end().to_string())
}

/// Asserts a root-owned file or directory with exactly `mode`.
fn assert_node(path: &str, dir: bool, mode: u32) {
    let meta = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(meta.is_dir(), dir, "{path}: wrong type");
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid(), meta.gid()),
        (mode, 0, 0),
        "{path}: mode {:o} owner {}:{}",
        meta.mode() & 0o7777,
        meta.uid(),
        meta.gid()
    );
}

fn tempdir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("pipe-package.")
        .tempdir()
        .unwrap();
    // The test's keys and configs are root's; sshd only needs to read them as root.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
    dir
}
