//! Users and SSH keys of a pipe server; see `pipe::admin`.

use std::process::ExitCode;

fn main() -> ExitCode {
    pipe::admin::cli::main()
}
