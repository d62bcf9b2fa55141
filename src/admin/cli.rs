//! The `pipe-admin` command line: clap definitions, output, and the one-line failures.

use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, Subcommand};
use clap_complete::Shell;

use super::doctor::Doctor;
use super::{Admin, AdminError, KeyInfo, Warning, io_error};
use crate::exit::AdminExit;
use crate::keys::{read_capped, text_of};
use crate::paths;

/// Shown under every `--help`: scripts branch on these.
const EXIT_CODES: &str = "\
Exit codes:
  0  done
  1  failure: I/O, the lock, anything unexpected
  2  usage: bad arguments, invalid user or key name, malformed or refused key
  3  not found: unknown user or key
  4  conflict: user exists, key or key name taken, authorized_keys has broken markers";

/// `doctor`'s exit codes: it reports problems rather than failing on the first.
const DOCTOR_EXIT_CODES: &str = "\
Exit codes:
  0  every check passed (`ok:` and `note:` lines only)
  1  at least one check failed: each `FAIL:` line names the problem and its fix
  2  usage: bad arguments";

/// The man page section of the generated reference pages: pipe-admin is an admin command.
const MAN_SECTION: &str = "8";

/// The shells `generate completions` writes for, each to its conventional file name.
const COMPLETION_SHELLS: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

/// Manage pipe's users and their SSH keys (run as root).
///
/// The key directory (<KEYS_DIR>/<user>/<name>.pub) is the source of truth. Every change
/// rewrites the managed block of the service account's authorized_keys from it, leaving
/// other lines alone. Each key line there runs the forced command with `--user USER --key
/// FINGERPRINT`.
#[derive(Parser, Debug)]
#[command(name = "pipe-admin", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// Key directory, the source of truth.
    #[arg(long, global = true, value_name = "DIR", default_value = paths::KEYS_DIR)]
    keys_dir: PathBuf,
    /// authorized_keys file whose managed block is rewritten.
    #[arg(long, global = true, value_name = "FILE", default_value = paths::AUTHORIZED_KEYS)]
    authorized_keys: PathBuf,
    /// Forced command of each key line (`--user USER --key FINGERPRINT` is appended).
    #[arg(long, global = true, value_name = "CMD", default_value = paths::FORCED_COMMAND)]
    forced_command: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Add, remove and list users.
    #[command(subcommand, after_help = EXIT_CODES)]
    User(UserCommand),
    /// Add, remove and list users' SSH public keys.
    #[command(subcommand, after_help = EXIT_CODES)]
    Key(KeyCommand),
    /// Rewrite the managed block of authorized_keys from the key directory.
    #[command(after_help = EXIT_CODES)]
    Sync,
    /// Check that sshd, the service account, the broker socket and the keys fit together.
    ///
    /// Prints one line per check: `ok: …`, `FAIL: … — fix: …`, or `note: …`. The sshd
    /// settings are those `sshd -T -f CONFIG -C user=SERVICE_USER,host=localhost,addr=127.0.0.1`
    /// reports, i.e. the files as sshd would read them now (reload sshd after changing them).
    /// Run as root.
    #[command(after_help = DOCTOR_EXIT_CODES)]
    Doctor(DoctorArgs),
}

// `pipe-admin generate …` makes files for packaging, not for the admin, so it is parsed on
// its own and is in neither `--help` nor the completions it writes (clap's completion
// generators list even hidden subcommands).

/// Write generated files for packaging: flag reference man pages, shell completions.
#[derive(Parser, Debug)]
#[command(
    name = "pipe-admin generate",
    bin_name = "pipe-admin generate",
    after_help = EXIT_CODES
)]
struct GenerateCli {
    #[command(subcommand)]
    command: GenerateCommand,
}

/// The word that selects [`GenerateCli`].
const GENERATE: &str = "generate";

#[derive(clap::Args, Debug)]
struct DoctorArgs {
    /// The shared service account the sshd snippet and the key lines are for.
    #[arg(long, value_name = "USER", default_value = paths::SERVICE_USER)]
    service_user: String,
    /// The broker's socket.
    #[arg(long, value_name = "PATH", default_value = paths::SOCKET)]
    socket: PathBuf,
    /// sshd's main configuration file.
    #[arg(long, value_name = "FILE", default_value = paths::SSHD_CONFIG)]
    sshd_config: PathBuf,
    /// The sshd binary run with -T.
    #[arg(long, value_name = "PATH", default_value = paths::SSHD)]
    sshd: PathBuf,
}

#[derive(Subcommand, Debug)]
enum GenerateCommand {
    /// Write clap's flag reference pages (pipe-admin.8, pipe-admin-key-add.8, …) to DIR;
    /// the shipped man/pipe-admin.8 is written by hand.
    #[command(after_help = EXIT_CODES)]
    Man {
        /// Directory to write into (it must exist).
        dir: PathBuf,
    },
    /// Write completions for bash (pipe-admin.bash), zsh (_pipe-admin) and fish
    /// (pipe-admin.fish) to DIR.
    #[command(after_help = EXIT_CODES)]
    Completions {
        /// Directory to write into (it must exist).
        dir: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum UserCommand {
    /// Add a user (with no keys yet: add them with `pipe-admin key add USER`).
    #[command(after_help = EXIT_CODES)]
    Add {
        /// User name: [a-z_][a-z0-9_-]{0,31}, not `public`.
        user: String,
    },
    /// Remove a user and all of their keys.
    #[command(visible_alias = "rm", after_help = EXIT_CODES)]
    Remove {
        /// The user to remove.
        user: String,
    },
    /// List the users, one per line.
    #[command(visible_alias = "ls", after_help = EXIT_CODES)]
    List,
}

#[derive(Subcommand, Debug)]
enum KeyCommand {
    /// Add one public key for an existing user; prints its `key list` line.
    #[command(after_help = EXIT_CODES)]
    Add {
        /// An existing user (see `pipe-admin user add`).
        user: String,
        /// File holding one OpenSSH public key line (a .pub file); `-` or none: standard input.
        file: Option<PathBuf>,
        /// Key name: [A-Za-z0-9][A-Za-z0-9._-]{0,63} (default: from the key's comment, else key-N).
        #[arg(long)]
        name: Option<String>,
    },
    /// Remove a user's key, given by fingerprint (SHA256:…) or by name.
    #[command(visible_alias = "rm", after_help = EXIT_CODES)]
    Remove {
        /// The user holding the key.
        user: String,
        /// The key's SHA256:… fingerprint or its name.
        key: String,
    },
    /// List keys as `USER NAME FINGERPRINT TYPE COMMENT`, of one user or of all.
    #[command(visible_alias = "ls", after_help = EXIT_CODES)]
    List {
        /// Only this user's keys.
        user: Option<String>,
        /// One JSON array of {user, name, fingerprint, type, comment} instead.
        #[arg(long)]
        json: bool,
    },
}

/// `pipe-admin`'s `main`: parses the arguments, runs the command, maps the outcome to the
/// exit status. Every failure is one `pipe-admin: …` line on stderr.
pub fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == GENERATE) {
        return match GenerateCli::try_parse_from(&args[1..]) {
            Ok(generate) => finish(generate_files(generate.command)),
            Err(e) => usage_failure(&e),
        };
    }
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => return usage_failure(&e),
    };
    finish(run(cli))
}

/// The exit status of a command, with its one-line failure on stderr.
fn finish(result: Result<AdminExit, AdminError>) -> ExitCode {
    match result {
        Ok(exit) => exit.into(),
        Err(e) => {
            eprintln!("pipe-admin: {e}");
            e.exit().into()
        }
    }
}

/// clap's errors run over several lines (usage, tips); the first paragraph says what is
/// wrong, and is joined into the one line.
fn usage_failure(error: &clap::Error) -> ExitCode {
    let text = error.render().to_string();
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = error.print();
            return AdminExit::Ok.into();
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let usage = text
                .lines()
                .find_map(|line| line.strip_prefix("Usage: "))
                .unwrap_or("pipe-admin <COMMAND>");
            eprintln!("pipe-admin: a command is required: {usage} (see --help)");
        }
        _ => {
            let paragraph: Vec<&str> = text
                .lines()
                .map(str::trim)
                .take_while(|line| !line.is_empty())
                .collect();
            let message = paragraph.join(" ");
            let message = message.strip_prefix("error: ").unwrap_or(&message);
            eprintln!("pipe-admin: {message} (see --help)");
        }
    }
    AdminExit::Usage.into()
}

fn run(cli: Cli) -> Result<AdminExit, AdminError> {
    let admin = Admin::new(cli.keys_dir, cli.authorized_keys, cli.forced_command)?;
    let warnings = match cli.command {
        Command::User(UserCommand::Add { user }) => admin.user_add(&user)?,
        Command::User(UserCommand::Remove { user }) => admin.user_remove(&user)?,
        Command::User(UserCommand::List) => return print_lines(admin.user_list()?),
        Command::Doctor(args) => return doctor(admin, args),
        Command::Key(KeyCommand::Add { user, file, name }) => {
            let text = read_key_input(file)?;
            let (info, warnings) = admin.key_add(&user, &text, name.as_deref())?;
            print_lines([info])?;
            warnings
        }
        Command::Key(KeyCommand::Remove { user, key }) => admin.key_remove(&user, &key)?,
        Command::Key(KeyCommand::List { user, json }) => {
            let keys = admin.key_list(user.as_deref())?;
            if json {
                let text = serde_json::to_string(&keys)
                    .map_err(|e| AdminError::Output(io::Error::other(e)))?;
                return print_lines([text]);
            }
            return print_lines(keys.iter().map(KeyInfo::to_string));
        }
        Command::Sync => admin.sync()?,
    };
    // Warnings go to stderr and leave the exit status alone.
    for Warning(text) in warnings {
        eprintln!("pipe-admin: warning: {text}");
    }
    Ok(AdminExit::Ok)
}

/// `doctor`: every finding on stdout; exit 1 when any failed.
fn doctor(admin: Admin, args: DoctorArgs) -> Result<AdminExit, AdminError> {
    let findings = Doctor {
        admin,
        service_user: args.service_user,
        socket: args.socket,
        sshd_config: args.sshd_config,
        sshd: args.sshd,
    }
    .run();
    let failed = findings.iter().any(|f| f.is_fail());
    print_lines(&findings)?;
    Ok(if failed {
        AdminExit::Failure
    } else {
        AdminExit::Ok
    })
}

fn generate_files(command: GenerateCommand) -> Result<AdminExit, AdminError> {
    match command {
        GenerateCommand::Man { dir } => generate_man(&dir),
        GenerateCommand::Completions { dir } => generate_completions(&dir),
    }
}

/// `generate man DIR`: clap_mangen's page for pipe-admin and for every visible subcommand.
fn generate_man(dir: &Path) -> Result<AdminExit, AdminError> {
    fn write(command: clap::Command, dir: &Path) -> Result<(), AdminError> {
        for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
            write(sub.clone(), dir)?;
        }
        let man = clap_mangen::Man::new(command).section(MAN_SECTION);
        let path = dir.join(man.get_filename());
        man.generate_to(dir)
            .map_err(|e| io_error("writing", &path, e))?;
        Ok(())
    }
    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();
    write(command, dir)?;
    Ok(AdminExit::Ok)
}

/// `generate completions DIR`: one file per shell in [`COMPLETION_SHELLS`].
fn generate_completions(dir: &Path) -> Result<AdminExit, AdminError> {
    for shell in COMPLETION_SHELLS {
        let mut command = Cli::command();
        let name = command.get_name().to_string();
        clap_complete::generate_to(shell, &mut command, name, dir)
            .map_err(|e| io_error("writing completions to", dir, e))?;
    }
    Ok(AdminExit::Ok)
}

/// Writes lines to stdout; a reader that went away (`pipe-admin key list | head -1`) is a
/// normal end.
fn print_lines(
    lines: impl IntoIterator<Item = impl std::fmt::Display>,
) -> Result<AdminExit, AdminError> {
    let mut out = io::stdout().lock();
    let result = lines
        .into_iter()
        .try_for_each(|line| writeln!(out, "{line}"))
        .and_then(|()| out.flush());
    match result {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(AdminError::Output(e)),
        _ => Ok(AdminExit::Ok),
    }
}

/// The text of FILE, or of standard input for `-` or no FILE, capped in size.
fn read_key_input(file: Option<PathBuf>) -> Result<String, AdminError> {
    let bytes = match file {
        Some(path) if path.as_os_str() != "-" => File::open(&path)
            .and_then(read_capped)
            .map_err(|e| io_error("reading", &path, e))?,
        _ => {
            let stdin = io::stdin();
            if stdin.is_terminal() {
                eprintln!("pipe-admin: paste the public key line, then Ctrl-D");
            }
            read_capped(stdin.lock())
                .map_err(|e| io_error("reading", "standard input".as_ref(), e))?
        }
    };
    Ok(text_of(bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
        GenerateCli::command().debug_assert();
    }

    #[test]
    fn generate_is_kept_out_of_the_admins_command_line() {
        let command = Cli::command();
        assert!(command.find_subcommand(GENERATE).is_none());
        let generate = GenerateCli::command();
        let names: Vec<&str> = generate.get_subcommands().map(|s| s.get_name()).collect();
        assert_eq!(names, ["man", "completions"]);
    }

    #[test]
    fn every_subcommand_documents_the_exit_codes() {
        fn check(command: &clap::Command, path: &str) {
            let help = command.get_after_help().map(|h| h.to_string());
            assert!(
                help.as_deref().is_some_and(|h| h.contains("Exit codes")),
                "{path}"
            );
            // clap's generated `help` subcommands are help themselves.
            for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
                check(sub, &format!("{path} {}", sub.get_name()));
            }
        }
        for mut command in [Cli::command(), GenerateCli::command()] {
            command.build();
            for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
                check(sub, sub.get_name());
            }
        }
    }
}
