//! The forced command sshd runs for each pipe session; see `pipe::shell`.

use std::process::ExitCode;

fn main() -> ExitCode {
    pipe::shell::run().into()
}
