//! The `quiver` binary: parses arguments and hands them to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    quiver_server::run_cli(quiver_server::Cli::parse())
}
