//! The `quiver` command line: argument definitions and dispatch. The work is in one module
//! per command group:
//!
//! - `serve`: the server (configuration from file, environment and flags; logging).
//! - `admin`: client commands against a running server: apply, get, write, stats, checkpoint.
//! - `jsonl`: `quiver write`'s JSON lines → write batches.
//! - `inspect`: offline file tools: registry check, snapshot and WAL inspection.
//! - `offline`: Parquet history: historical (training sets), materialize, snapshot upload.
//! - `suggest`: "did you mean" for misspelled names.
//!
//! Every client command connects through [`crate::client`].

mod admin;
mod inspect;
mod jsonl;
mod offline;
mod serve;
mod suggest;

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tonic::{Response, Status};

use crate::client::{ClientError, Connect, NativeClient, Retry};

/// Quiver: an online feature store engine.
#[derive(Debug, Parser)]
#[command(name = "quiver", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server on an embedded data directory.
    Serve(ServeArgs),
    /// Validate a registry file offline and print what it declares.
    Check {
        /// The registry TOML file.
        registry: PathBuf,
    },
    /// Apply a registry file to a running server.
    Apply {
        /// The registry TOML file.
        registry: PathBuf,
        /// Only validate and show the changes.
        #[arg(long)]
        dry_run: bool,
        /// Allow the file to leave out feature views, feature services or entities the server
        /// has: they are removed, and a removed view's data is dropped.
        #[arg(long)]
        allow_removals: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Fetch features for some entity keys and print a table.
    Get {
        /// Feature references, comma separated: user_stats:txn_count_7d,user_stats:country
        #[arg(long, value_delimiter = ',', required_unless_present = "service")]
        features: Vec<String>,
        /// A feature service instead of explicit features.
        #[arg(long, conflicts_with = "features")]
        service: Option<String>,
        /// Join key values, e.g. --key user_id=1,2,3 (repeat for composite keys).
        #[arg(long = "key", required = true)]
        keys: Vec<String>,
        /// Name columns view__feature.
        #[arg(long)]
        full_names: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Write rows from a JSON-lines file: {"user_id": 1, "event_timestamp": 1700000000, "txn_count_7d": 3, ...}
    Write {
        /// The feature view.
        #[arg(long)]
        view: String,
        /// JSON-lines file, a row per line: join keys, event_timestamp (whole seconds; now if
        /// absent) and features; a feature a line leaves out is left untouched, null writes
        /// a null.
        file: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Per-view sizes and freshness, WAL and checkpoint figures of a running server.
    Stats {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Ask a running server to checkpoint now.
    Checkpoint {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Build a point-in-time-correct training set from Parquet history.
    Historical(HistoricalArgs),
    /// Materialize a view's latest rows in a time window into a snapshot file, a data
    /// directory or a running server.
    Materialize(MaterializeArgs),
    /// Snapshot file tools.
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCommand,
    },
    /// Write-ahead log tools.
    Wal {
        #[command(subcommand)]
        command: WalCommand,
    },
}

#[derive(Debug, Subcommand)]
enum SnapshotCommand {
    /// Print a snapshot's header and how its records are compressed (validates
    /// checksums). Given a directory (a data directory or its snapshots/), prints one line
    /// per snapshot file with its compression ratio.
    Inspect {
        /// The .qsnap file, or a directory of them.
        file: PathBuf,
    },
    /// Check a snapshot completely: checksums, index, every entry reachable.
    Verify {
        /// The .qsnap file.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum WalCommand {
    /// Scan every segment of a WAL directory (read-only) and report frames and damage.
    Inspect {
        /// The WAL directory (<data dir>/wal).
        dir: PathBuf,
    },
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Configuration file (TOML); flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// gRPC address [default: 127.0.0.1:6566].
    #[arg(long)]
    listen: Option<String>,
    /// Metrics address, or "" to disable [default: 127.0.0.1:9466].
    #[arg(long)]
    metrics_listen: Option<String>,
    /// Data directory [default: ./quiver-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Registry for a new data directory (or a compatible new version to apply).
    #[arg(long)]
    registry: Option<PathBuf>,
    /// always | never | <N>ms [default: always].
    #[arg(long)]
    fsync: Option<String>,
    /// Require this bearer token on data RPCs (or set QUIVER_AUTH_TOKEN).
    #[arg(long)]
    auth_token: Option<String>,
    /// Threads serving requests [default: 2].
    #[arg(long)]
    worker_threads: Option<usize>,
    /// per-core | shared: how the serving threads share connections [default: per-core].
    #[arg(long)]
    threading: Option<String>,
    /// PEM certificate chain: serve TLS (needs --tls-key).
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// Recover past mid-log WAL corruption by dropping the damaged part (loses data).
    #[arg(long)]
    salvage: bool,
    /// Use the example registry and generate demo data if the data directory is empty.
    #[arg(long)]
    demo: bool,
}

#[derive(Debug, Args)]
struct ClientArgs {
    /// Server address.
    #[arg(long, default_value = "http://127.0.0.1:6566", env = "QUIVER_SERVER")]
    server: String,
    /// Bearer token, if the server requires one.
    #[arg(long, env = "QUIVER_AUTH_TOKEN")]
    token: Option<String>,
    /// PEM CA certificate to trust for an https:// server.
    #[arg(long)]
    ca_cert: Option<PathBuf>,
}

/// Runs a parsed command line; returns the process exit code.
pub fn run_cli(cli: Cli) -> ExitCode {
    match execute(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Runs one command line given as words (without the program name) and returns what went
/// wrong instead of printing it: how embedders (the Python package's `quiver.materialize`)
/// run a command through exactly the code the `quiver` binary runs. Output goes to stdout and
/// stderr as it would from the binary.
pub fn run_words<I, T>(words: I) -> Result<(), String>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = Cli::try_parse_from(
        std::iter::once("quiver".into()).chain(words.into_iter().map(Into::into)),
    )
    .map_err(|e| e.to_string())?;
    execute(cli)
}

fn execute(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Serve(args) => serve::serve(args),
        Command::Check { registry } => inspect::check(&registry),
        Command::Historical(args) => offline::historical(args),
        Command::Materialize(args) => offline::materialize(args),
        Command::Snapshot { command } => inspect::snapshot(command),
        Command::Wal {
            command: WalCommand::Inspect { dir },
        } => inspect::wal(&dir),
        Command::Apply {
            registry,
            dry_run,
            allow_removals,
            client,
        } => admin::apply(&client, &registry, dry_run, allow_removals),
        Command::Get {
            features,
            service,
            keys,
            full_names,
            client,
        } => admin::get(&client, features, service, keys, full_names),
        Command::Write { view, file, client } => admin::write(&client, view, &file),
        Command::Stats { client } => admin::stats(&client),
        Command::Checkpoint { client } => admin::checkpoint(&client),
    }
}

/// The deadline of a read command's calls: a read that takes longer is stuck, not busy.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Connects as `args` say (a deadline of `timeout` on every call) and runs `f` on a runtime
/// of its own.
fn with_client<F, Fut>(args: &ClientArgs, timeout: Option<Duration>, f: F) -> Result<(), String>
where
    F: FnOnce(NativeClient) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async {
        let mut connect = Connect::new(&args.server)
            .token(args.token.as_deref())
            .request_timeout(timeout);
        if let Some(ca) = &args.ca_cert {
            connect = connect.ca_file(ca).map_err(|e| format!("--ca-cert: {e}"))?;
        }
        let client = connect.native().await.map_err(|e| match e {
            ClientError::Connect { .. } => format!(
                "{e}\n(is `quiver serve` running there? --server or QUIVER_SERVER picks \
                 another address)"
            ),
            ClientError::Address { .. } => format!("--server: {e}"),
            ClientError::Token => format!("--token: {e}"),
            other => other.to_string(),
        })?;
        f(client).await
    })
}

/// Makes a call that is safe to repeat, retrying while the server is recovering or shedding
/// load, and returns the answer or the error as text.
async fn retried<Req, T, F, Fut>(client: &NativeClient, req: Req, call: F) -> Result<T, String>
where
    Req: Clone,
    F: Fn(NativeClient, Req) -> Fut,
    Fut: Future<Output = Result<Response<T>, Status>>,
{
    Retry::default()
        .run(|| call(client.clone(), req.clone()))
        .await
        .map(Response::into_inner)
        .map_err(status_text)
}

fn status_text(s: Status) -> String {
    format!("{:?}: {}", s.code(), s.message())
}

#[derive(Debug, Args)]
struct OfflineArgs {
    /// Read VIEW's history from PATH instead of the registry's source (repeatable).
    #[arg(long = "history", value_name = "VIEW=PATH")]
    history: Vec<String>,
    /// Unit of int64 timestamp columns: s, ms, us or ns.
    #[arg(long, default_value = "s")]
    epoch_unit: String,
    /// Worker threads (0 = one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

#[derive(Debug, Args)]
struct HistoricalArgs {
    /// The registry TOML file (relative history paths in it are relative to its directory).
    #[arg(long)]
    registry: PathBuf,
    /// Entity rows: Parquet with join keys, a timestamp column and any label columns.
    #[arg(long)]
    entities: PathBuf,
    /// Feature references, comma separated: user_stats:txn_count_7d,user_stats:country
    #[arg(long, value_delimiter = ',', required_unless_present = "service")]
    features: Vec<String>,
    /// A feature service instead of explicit features.
    #[arg(long, conflicts_with = "features")]
    service: Option<String>,
    /// The training set to write (Parquet; must not exist).
    #[arg(long)]
    out: PathBuf,
    /// Name feature columns view__feature.
    #[arg(long)]
    full_feature_names: bool,
    /// The entity rows' timestamp column.
    #[arg(long, default_value = "event_timestamp")]
    timestamp_column: String,
    /// Entity rows joined at a time; bounds memory.
    #[arg(long, default_value_t = 4 << 20)]
    chunk_rows: usize,
    #[command(flatten)]
    offline: OfflineArgs,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true)))]
struct MaterializeArgs {
    /// The registry TOML file.
    #[arg(long)]
    registry: PathBuf,
    /// The feature view.
    #[arg(long)]
    view: String,
    /// Earliest event time included: seconds since the epoch or YYYY-MM-DD[THH:MM:SS] (UTC)
    /// [default: the beginning].
    #[arg(long)]
    start: Option<String>,
    /// Latest event time included.
    #[arg(long, default_value = "now")]
    end: String,
    /// Write the snapshot file here (must not exist).
    #[arg(long, group = "target")]
    out: Option<PathBuf>,
    /// Load the snapshot into this data directory (one no server has open).
    #[arg(long, group = "target")]
    data_dir: Option<PathBuf>,
    /// Upload the snapshot to this running server (UploadSnapshot, zstd).
    #[arg(long, group = "target")]
    server: Option<String>,
    /// Bearer token for --server.
    #[arg(long, env = "QUIVER_AUTH_TOKEN")]
    token: Option<String>,
    /// PEM CA certificate to trust for an https:// --server.
    #[arg(long)]
    ca_cert: Option<PathBuf>,
    /// Continue from the end time recorded for this view and target, writing the newer rows
    /// through the write path (StreamWriteFeatures) instead of replacing the snapshot.
    #[arg(long, conflicts_with = "out")]
    incremental: bool,
    /// Where end times are recorded [default: .quiver-materialize next to the registry].
    #[arg(long)]
    state: Option<PathBuf>,
    #[command(flatten)]
    offline: OfflineArgs,
}
