//! The `pipe-admin` command line: clap definitions, output, and the one-line failures.

use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{Parser, Subcommand};

use super::store::{read_capped, text_of};
use super::{
    Admin, AdminError, AdminExit, DEFAULT_AUTHORIZED_KEYS, DEFAULT_FORCED_COMMAND,
    DEFAULT_KEYS_DIR, KeyInfo, Warning, io_error,
};

/// Shown under every `--help`: scripts branch on these.
const EXIT_CODES: &str = "\
Exit codes:
  0  done
  1  failure: I/O, the lock, anything unexpected
  2  usage: bad arguments, invalid user or key name, malformed or refused key
  3  not found: unknown user or key
  4  conflict: user exists, key or key name taken, authorized_keys has broken markers";

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
    #[arg(long, global = true, value_name = "DIR", default_value = DEFAULT_KEYS_DIR)]
    keys_dir: PathBuf,
    /// authorized_keys file whose managed block is rewritten.
    #[arg(long, global = true, value_name = "FILE", default_value = DEFAULT_AUTHORIZED_KEYS)]
    authorized_keys: PathBuf,
    /// Forced command of each key line (`--user USER --key FINGERPRINT` is appended).
    #[arg(long, global = true, value_name = "CMD", default_value = DEFAULT_FORCED_COMMAND)]
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
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_failure(&e),
    };
    match run(cli) {
        Ok(()) => AdminExit::Ok.into(),
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

fn run(cli: Cli) -> Result<(), AdminError> {
    let admin = Admin::new(cli.keys_dir, cli.authorized_keys, cli.forced_command)?;
    let warnings = match cli.command {
        Command::User(UserCommand::Add { user }) => admin.user_add(&user)?,
        Command::User(UserCommand::Remove { user }) => admin.user_remove(&user)?,
        Command::User(UserCommand::List) => return print_lines(admin.user_list()?),
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
    Ok(())
}

/// Writes lines to stdout; a reader that went away (`pipe-admin key list | head -1`) is a
/// normal end.
fn print_lines(lines: impl IntoIterator<Item = impl std::fmt::Display>) -> Result<(), AdminError> {
    let mut out = io::stdout().lock();
    let result = lines
        .into_iter()
        .try_for_each(|line| writeln!(out, "{line}"))
        .and_then(|()| out.flush());
    match result {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(AdminError::Output(e)),
        _ => Ok(()),
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
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
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
        let mut command = Cli::command();
        command.build();
        for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
            check(sub, sub.get_name());
        }
    }
}
