//! `quiver-bench`: parses the command line and hands off to the library's workloads.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use quiver_bench::{CompareArgs, EngineArgs, GrpcArgs, LoadArgs, RestartArgs, WriteArgs};

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
    /// Restart: open → ready of a data directory with a snapshot and a WAL after it.
    Restart(RestartArgs),
    /// Bulk load: build a snapshot, load it into a running store; snapshot vs delta reads.
    Load(LoadArgs),
    /// Durable writes (fsync always): throughput and ack latency for 1..64 writers.
    Write(WriteArgs),
    /// gRPC front: GetOnlineFeatures against a same-size echo service (the gRPC floor).
    Grpc(GrpcArgs),
    /// Quiver against Redis (Feast layout and packed blobs), W1-W7 and durable writes.
    Compare(CompareArgs),
    /// Offline (W8): point-in-time join against DuckDB's ASOF join, and materialize.
    Offline(quiver_bench::OfflineArgs),
    /// Feast: feast serve and FeatureStore on Redis against the Quiver plugin, the Python client
    /// against the Rust one, training sets against Feast's file offline store.
    Feast(quiver_bench::FeastArgs),
    /// Overload: bursts of reads far past max_concurrent_requests; shed count and memory.
    Overload(quiver_bench::OverloadArgs),
    /// The echo service `grpc` measures against, as a process of its own (started by `grpc`).
    #[command(hide = true)]
    EchoServe(quiver_bench::EchoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Engine(args) => quiver_bench::run_engine(&args),
        Command::Restart(args) => quiver_bench::run_restart(&args),
        Command::Load(args) => quiver_bench::run_load(&args),
        Command::Write(args) => quiver_bench::run_write(&args),
        Command::Grpc(args) => quiver_bench::run_grpc(&args),
        Command::Compare(args) => quiver_bench::run_compare(&args),
        Command::Offline(args) => quiver_bench::run_offline(&args),
        Command::Overload(args) => quiver_bench::run_overload(&args),
        Command::Feast(args) => quiver_bench::run_feast(&args),
        Command::EchoServe(args) => quiver_bench::run_echo(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
