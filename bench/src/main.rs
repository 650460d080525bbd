//! `quiver-bench`: parses the command line and hands off to the library's workloads.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use quiver_bench::EngineArgs;

/// Quiver's benchmark harness.
#[derive(Debug, Parser)]
#[command(name = "quiver-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// In-process engine micro benchmark: batched gets against a raw HashMap baseline.
    Engine(EngineArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Engine(args) => quiver_bench::run_engine(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
