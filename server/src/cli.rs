//! The `quiver` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use quiver_engine::{Registry, ValueType};

/// Quiver: an online feature store engine.
#[derive(Debug, Parser)]
#[command(name = "quiver", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a registry file and print what it declares.
    Check {
        /// The registry TOML file.
        registry: PathBuf,
    },
}

/// Runs a parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Check { registry } => match Registry::load(&registry) {
            Ok(r) => {
                print!("{}", describe(&r));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
    }
}

fn describe(r: &Registry) -> String {
    let mut s = format!("project {:?}\n", r.project());
    for e in r.entities() {
        let keys: Vec<String> = e
            .join_keys
            .iter()
            .map(|k| format!("{}: {}", k.name, k.ty.name()))
            .collect();
        s += &format!("entity {} ({})\n", e.name, keys.join(", "));
    }
    for v in r.views() {
        let vectors = v
            .features
            .iter()
            .filter(|f| matches!(f.ty, ValueType::Vector { .. }))
            .count();
        s += &format!(
            "feature view {} on {}: {} features ({} vectors), ttl {}s\n",
            v.name,
            v.entity,
            v.features.len(),
            vectors,
            v.ttl_secs
        );
    }
    for svc in r.services() {
        s += &format!(
            "feature service {}: {} features\n",
            svc.name,
            svc.features.len()
        );
    }
    s
}
