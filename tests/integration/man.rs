//! The manuals in `man/` and the completions in `packaging/completions/`: they render
//! without a single groff warning, say what the programs do (every flag, subcommand and
//! config key appears in its page), and the committed completions are what `pipe-admin
//! generate completions` makes today.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use clap::CommandFactory;

/// The pages the packages install.
const PAGES: [&str; 5] = [
    "pipe.1",
    "pipe.5",
    "piped.8",
    "pipe-admin.8",
    "pipe-shell.8",
];

/// The completion files the packages install.
const COMPLETIONS: [&str; 3] = ["pipe-admin.bash", "_pipe-admin", "pipe-admin.fish"];

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn page(name: &str) -> String {
    fs::read_to_string(repo(&format!("man/{name}"))).expect("read the page")
}

/// A page's text with roff's escapes for the characters a reader types (`\-`, `\(dq`)
/// undone and font changes (`\fB`, `\fR`, …) and the no-hyphenation mark `\%` removed, so
/// that flags and keys can be looked for as they are typed.
fn plain(roff: &str) -> String {
    let mut text = roff
        .replace("\\-", "-")
        .replace("\\(dq", "\"")
        .replace("\\%", "");
    for font in ["\\fB", "\\fI", "\\fR", "\\fP"] {
        text = text.replace(font, "");
    }
    text
}

/// `groff -man -ww -z`: every warning on, output discarded. groff exits 0 even when it
/// warns, so stderr is what tells.
#[test]
fn every_page_renders_without_warnings() {
    let found: BTreeSet<String> = fs::read_dir(repo("man"))
        .expect("man/")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let expected: BTreeSet<String> = PAGES.iter().map(|p| p.to_string()).collect();
    assert_eq!(found, expected, "man/ holds exactly the installed pages");
    for name in PAGES {
        let path = repo(&format!("man/{name}"));
        // ASCII only: groff then needs no preconv, and every terminal shows the same page.
        assert!(page(name).is_ascii(), "{name} has non-ASCII bytes");
        let out = Command::new("groff")
            .args(["-man", "-ww", "-z", "-Tutf8"])
            .arg(&path)
            .stdin(Stdio::null())
            .output()
            .expect("run groff (apt-get install groff-base)");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.is_empty(),
            "groff on {name}: {:?}\n{stderr}",
            out.status
        );
    }
}

#[test]
fn every_page_names_itself_and_its_section() {
    for name in PAGES {
        let (stem, section) = name.rsplit_once('.').unwrap();
        let first = page(name).lines().next().unwrap_or_default().to_string();
        let expected = format!(".TH {} {section} ", stem.to_uppercase());
        assert!(first.starts_with(&expected), "{name}: {first}");
        assert!(
            first.contains(concat!("\"pipe ", env!("CARGO_PKG_VERSION"), "\"")),
            "{name} names another version: {first}"
        );
    }
}

/// Every subcommand and every long option of `pipe-admin`, as clap knows them, appears in
/// pipe-admin(8).
#[test]
fn pipe_admin_8_covers_every_subcommand_and_flag() {
    fn walk(command: &clap::Command, path: &str, out: &mut Vec<String>) {
        for arg in command.get_arguments().filter(|a| !a.is_hide_set()) {
            if let Some(long) = arg.get_long() {
                out.push(format!("--{long}"));
            }
        }
        for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
            let name = format!("{path}{}", sub.get_name());
            out.push(name.clone());
            walk(sub, &format!("{name} "), out);
        }
    }
    let mut command = pipe::admin::cli::Cli::command();
    command.build();
    let mut wanted = Vec::new();
    walk(&command, "", &mut wanted);
    let text = plain(&page("pipe-admin.8"));
    for item in &wanted {
        assert!(text.contains(item.as_str()), "pipe-admin.8 lacks {item}");
    }
    assert!(wanted.contains(&"--sshd-config".to_string()));
}

/// The long options `BINARY --help` lists.
fn help_flags(binary: &str) -> Vec<String> {
    let out = Command::new(binary)
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    let mut flags: Vec<String> = help
        .lines()
        .map(str::trim_start)
        .filter_map(|line| {
            let line = line.strip_prefix("-h, ").unwrap_or(line);
            let line = line.strip_prefix("-V, ").unwrap_or(line);
            let flag = line.strip_prefix("--")?;
            let name: String = flag
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            Some(format!("--{name}"))
        })
        .collect();
    flags.dedup();
    flags
}

#[test]
fn piped_8_covers_every_flag() {
    let flags = help_flags(env!("CARGO_BIN_EXE_piped"));
    assert!(flags.contains(&"--window".to_string()), "{flags:?}");
    let text = plain(&page("piped.8"));
    for flag in &flags {
        assert!(text.contains(flag.as_str()), "piped.8 lacks {flag}");
    }
}

/// Every setting of piped.toml appears in pipe(5) as a key: those the packaged example
/// lists, and those piped also takes as a flag.
#[test]
fn pipe_5_covers_every_config_key() {
    let mut keys: BTreeSet<String> = pipe::broker::config::EXAMPLE_CONFIG
        .lines()
        .filter_map(|line| {
            let line = line.trim_start_matches('#').trim_start();
            let (key, _) = line.split_once(" = ")?;
            key.chars()
                .all(|c| c.is_ascii_lowercase() || c == '_')
                .then(|| key.to_string())
        })
        .collect();
    for flag in help_flags(env!("CARGO_BIN_EXE_piped")) {
        if !["--config", "--help", "--version"].contains(&flag.as_str()) {
            keys.insert(flag.trim_start_matches("--").replace('-', "_"));
        }
    }
    assert!(keys.contains("max_grant_entries"), "{keys:?}");
    let text = plain(&page("pipe.5"));
    for key in &keys {
        assert!(
            text.contains(&format!("\n.BR {key} ")),
            "pipe.5 has no entry for {key}"
        );
    }
}

/// The committed completions are exactly what the binary generates now: a changed flag
/// that is not regenerated fails here (regenerate with
/// `pipe-admin generate completions packaging/completions`).
#[test]
fn committed_completions_match_the_command_line() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_pipe-admin"))
        .args(["generate", "completions"])
        .arg(tmp.path())
        .output()
        .expect("run pipe-admin generate completions");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated: BTreeSet<String> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let expected: BTreeSet<String> = COMPLETIONS.iter().map(|c| c.to_string()).collect();
    assert_eq!(generated, expected);
    for name in COMPLETIONS {
        let committed = fs::read_to_string(repo(&format!("packaging/completions/{name}")))
            .unwrap_or_else(|e| panic!("packaging/completions/{name}: {e}"));
        let fresh = fs::read_to_string(tmp.path().join(name)).unwrap();
        assert!(
            committed == fresh,
            "packaging/completions/{name} is stale: run `pipe-admin generate completions packaging/completions`"
        );
        assert!(fresh.contains("doctor"), "{name} lacks doctor");
        assert!(!fresh.contains("generate"), "{name} offers generate");
    }
}

#[test]
fn reference_pages_are_generated_for_every_subcommand() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_pipe-admin"))
        .args(["generate", "man"])
        .arg(tmp.path())
        .output()
        .expect("run pipe-admin generate man");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in [
        "pipe-admin.8",
        "pipe-admin-doctor.8",
        "pipe-admin-key-add.8",
        "pipe-admin-user-remove.8",
        "pipe-admin-sync.8",
    ] {
        let text =
            fs::read_to_string(tmp.path().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(text.starts_with(".ie") || text.contains(".TH"), "{name}");
    }
}
