//! The `quiver` command line: the server, offline file tools, and a small debugging client.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use quiver_engine::{Registry, Snapshot, ValueType};
use tonic::transport::Channel;

use crate::config::ServerConfig;
use crate::proto::quiver::v1 as pb;
use pb::feature_store_client::FeatureStoreClient;

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
    /// Tokio worker threads.
    #[arg(long)]
    worker_threads: Option<usize>,
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
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Check { registry } => Registry::load(&registry)
            .map(|r| print!("{}", describe(&r)))
            .map_err(|e| e.to_string()),
        Command::Historical(args) => historical(args),
        Command::Materialize(args) => materialize(args),
        Command::Snapshot { command } => snapshot(command),
        Command::Wal {
            command: WalCommand::Inspect { dir },
        } => wal_inspect(&dir),
        Command::Apply {
            registry,
            dry_run,
            allow_removals,
            client,
        } => with_client(&client, |mut c| async move {
            let toml = std::fs::read_to_string(&registry)
                .map_err(|e| format!("cannot read {}: {e}", registry.display()))?;
            let r = c
                .apply_registry(pb::ApplyRegistryRequest {
                    toml,
                    dry_run,
                    allow_removals,
                })
                .await
                .map_err(status_text)?
                .into_inner();
            if r.changes.is_empty() {
                println!("no changes");
            }
            for ch in &r.changes {
                println!("{ch}");
            }
            println!(
                "{} (registry version {})",
                if r.applied { "applied" } else { "not applied" },
                r.version
            );
            Ok(())
        }),
        Command::Get {
            features,
            service,
            keys,
            full_names,
            client,
        } => with_client(&client, |c| get(c, features, service, keys, full_names)),
        Command::Write { view, file, client } => with_client(&client, |c| write(c, view, file)),
        Command::Stats { client } => with_client(&client, |mut c| async move {
            let s = c
                .get_stats(pb::GetStatsRequest::default())
                .await
                .map_err(status_text)?
                .into_inner();
            println!(
                "{:<24} {:>12} {:>14} {:>14} {:>14} {:>12}  compression",
                "view", "mem entities", "mem bytes", "snap entities", "snap bytes", "newest age"
            );
            for v in &s.views {
                let compression = v.compression.as_ref().map_or("-".into(), |c| {
                    let saved = if c.sample_plain_bytes == 0 {
                        0.0
                    } else {
                        100.0 * (1.0 - c.sample_packed_bytes as f64 / c.sample_plain_bytes as f64)
                    };
                    format!(
                        "{} ({}: best saves {saved:.0} %, {} ns/record)",
                        c.method, c.policy, c.decode_ns
                    )
                });
                println!(
                    "{:<24} {:>12} {:>14} {:>14} {:>14} {:>11.1}s  {compression}",
                    v.view,
                    v.memory_entities,
                    v.memory_bytes,
                    v.snapshot_entities,
                    v.snapshot_bytes,
                    v.newest_event_age_micros as f64 / 1e6
                );
            }
            if let Some(w) = s.wal {
                println!(
                    "wal: {} bytes in {} segments, last seq {}, synced {}{}",
                    w.bytes,
                    w.segments,
                    w.last_sequence,
                    w.synced_sequence,
                    if w.poisoned.is_empty() {
                        String::new()
                    } else {
                        format!(", POISONED: {}", w.poisoned)
                    }
                );
            }
            println!(
                "checkpoint seq {}, registry version {}",
                s.checkpoint_sequence, s.registry_version
            );
            Ok(())
        }),
        Command::Checkpoint { client } => with_client(&client, |mut c| async move {
            let r = c
                .checkpoint(pb::CheckpointRequest {})
                .await
                .map_err(status_text)?
                .into_inner();
            println!(
                "checkpoint at sequence {}; {} WAL bytes freed",
                r.checkpoint_sequence, r.wal_bytes_freed
            );
            for s in r.snapshots {
                println!("  {}: {} entities, {} bytes", s.view, s.entities, s.bytes);
            }
            Ok(())
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn serve(args: ServeArgs) -> Result<(), String> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("QUIVER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let mut config = match &args.config {
        Some(p) => ServerConfig::load(p).map_err(|e| e.to_string())?,
        None => ServerConfig::default(),
    };
    config.apply_env();
    if let Some(v) = args.listen {
        config.listen = v;
    }
    if let Some(v) = args.metrics_listen {
        config.metrics_listen = v;
    }
    if let Some(v) = args.data_dir {
        config.data_dir = v;
    }
    if let Some(v) = args.registry {
        config.registry = Some(v);
    }
    if let Some(v) = args.fsync {
        config.fsync = v;
    }
    if let Some(v) = args.auth_token {
        config.auth_token = Some(v);
    }
    if let Some(v) = args.worker_threads {
        config.worker_threads = v;
    }
    if args.tls_cert.is_some() {
        config.tls_cert = args.tls_cert;
    }
    if args.tls_key.is_some() {
        config.tls_key = args.tls_key;
    }
    config.salvage |= args.salvage;
    config.validate().map_err(|e| e.to_string())?;
    let registry = match (&config.registry, args.demo) {
        (Some(p), _) => Some(Registry::load(p).map_err(|e| e.to_string())?),
        (None, true) => Some(crate::demo::example_registry()?),
        (None, false) => None,
    };
    let on_ready: Option<crate::server::OnReady> = if args.demo {
        let listen = config.listen.clone();
        Some(Box::new(move |db| {
            crate::demo::load(db);
            let server = if listen == "127.0.0.1:6566" {
                String::new()
            } else {
                format!(" --server http://{listen}")
            };
            println!(
                "\nQuiver is serving the demo dataset. In another terminal, try:\n\n  cargo run --release --bin quiver -- get --features user_stats:txn_count_7d,user_stats:country,user_stats:is_premium --key user_id=1,2,3{server}\n"
            );
        }))
    } else {
        None
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.worker_threads)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime
        .block_on(crate::server::run(
            config,
            registry,
            crate::server::shutdown_signal(),
            None,
            on_ready,
        ))
        .map_err(|e| e.to_string())
}

fn with_client<F, Fut>(args: &ClientArgs, f: F) -> Result<(), String>
where
    F: FnOnce(
        FeatureStoreClient<
            tonic::service::interceptor::InterceptedService<Channel, TokenInterceptor>,
        >,
    ) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async {
        let mut endpoint = Channel::from_shared(args.server.clone())
            .map_err(|e| format!("--server {:?}: {e}", args.server))?;
        if let Some(ca) = &args.ca_cert {
            let pem = std::fs::read(ca).map_err(|e| format!("--ca-cert {}: {e}", ca.display()))?;
            endpoint = endpoint
                .tls_config(
                    tonic::transport::ClientTlsConfig::new()
                        .ca_certificate(tonic::transport::Certificate::from_pem(pem)),
                )
                .map_err(|e| format!("TLS: {e}"))?;
        }
        let channel = endpoint.connect().await.map_err(|e| {
            format!(
                "cannot connect to {}: {e}: {:?}",
                args.server,
                std::error::Error::source(&e)
            )
        })?;
        let client =
            FeatureStoreClient::with_interceptor(channel, TokenInterceptor(args.token.clone()))
                .max_decoding_message_size(usize::MAX);
        f(client).await
    })
}

/// Adds the bearer token to every call.
#[derive(Debug, Clone)]
pub struct TokenInterceptor(Option<String>);

impl tonic::service::Interceptor for TokenInterceptor {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(t) = &self.0 {
            let v = format!("Bearer {t}")
                .parse()
                .map_err(|_| tonic::Status::invalid_argument("token has invalid characters"))?;
            req.metadata_mut().insert("authorization", v);
        }
        Ok(req)
    }
}

type Client =
    FeatureStoreClient<tonic::service::interceptor::InterceptedService<Channel, TokenInterceptor>>;

fn status_text(s: tonic::Status) -> String {
    format!("{:?}: {}", s.code(), s.message())
}

async fn get(
    mut c: Client,
    features: Vec<String>,
    service: Option<String>,
    keys: Vec<String>,
    full_names: bool,
) -> Result<(), String> {
    let reg = c
        .get_registry(pb::GetRegistryRequest {})
        .await
        .map_err(status_text)?
        .into_inner();
    let mut key_columns = Vec::new();
    for k in &keys {
        let (name, values) = k
            .split_once('=')
            .ok_or_else(|| format!("--key {k:?}: expected name=v1,v2,..."))?;
        let ty = reg
            .entities
            .iter()
            .flat_map(|e| &e.join_keys)
            .find(|j| j.name == name)
            .map(|j| j.r#type)
            .ok_or_else(|| format!("--key {name:?}: no entity has this join key"))?;
        let vals: Vec<&str> = values.split(',').collect();
        let column = if ty == pb::KeyType::Int64 as i32 {
            let parsed: Result<Vec<i64>, _> =
                vals.iter().map(|v| v.trim().parse::<i64>()).collect();
            pb::key_column::Values::Int64Values(pb::Int64Values {
                values: parsed.map_err(|e| format!("--key {name}: {e}"))?,
            })
        } else {
            pb::key_column::Values::StringValues(pb::StringValues {
                values: vals.iter().map(|v| v.to_string()).collect(),
            })
        };
        key_columns.push(pb::KeyColumn {
            name: name.to_string(),
            values: Some(column),
        });
    }
    let rows = key_columns
        .first()
        .map(|k| match &k.values {
            Some(pb::key_column::Values::Int64Values(v)) => v.values.len(),
            Some(pb::key_column::Values::StringValues(v)) => v.values.len(),
            None => 0,
        })
        .unwrap_or(0);
    let req = pb::GetOnlineFeaturesRequest {
        features: Some(match service {
            Some(s) => pb::get_online_features_request::Features::FeatureService(s),
            None => {
                pb::get_online_features_request::Features::Refs(pb::FeatureRefs { refs: features })
            }
        }),
        keys: key_columns.clone(),
        full_feature_names: full_names,
        max_age: None,
    };
    let resp = c
        .get_online_features(req)
        .await
        .map_err(status_text)?
        .into_inner();
    let mut header = vec!["row".to_string()];
    header.extend(
        keys.iter()
            .filter_map(|k| k.split_once('=').map(|x| x.0.to_string())),
    );
    header.extend(resp.feature_names.iter().cloned());
    let mut table = vec![header];
    for r in 0..rows {
        let mut line = vec![r.to_string()];
        for k in &key_columns {
            line.push(match &k.values {
                Some(pb::key_column::Values::Int64Values(v)) => v.values[r].to_string(),
                Some(pb::key_column::Values::StringValues(v)) => v.values[r].clone(),
                None => String::new(),
            });
        }
        for col in &resp.columns {
            line.push(cell(col, r));
        }
        table.push(line);
    }
    let widths: Vec<usize> = (0..table[0].len())
        .map(|i| table.iter().map(|l| l[i].len()).max().unwrap_or(0))
        .collect();
    for line in &table {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", cells.join("  ").trim_end());
    }
    Ok(())
}

fn cell(col: &pb::FeatureColumn, r: usize) -> String {
    use pb::column::Data;
    match col.statuses.get(r).copied() {
        Some(1) => {}
        Some(2) => return "null".into(),
        Some(3) => return "-".into(),
        Some(4) => return "(expired)".into(),
        _ => return "?".into(),
    }
    let Some(data) = col.values.as_ref().and_then(|c| c.data.as_ref()) else {
        return "?".into();
    };
    match data {
        Data::BoolValues(v) => v.values[r].to_string(),
        Data::Int32Values(v) => v.values[r].to_string(),
        Data::Int64Values(v) => v.values[r].to_string(),
        Data::Float32Values(v) => format!("{:.4}", v.values[r]),
        Data::Float64Values(v) => format!("{:.4}", v.values[r]),
        Data::TimestampValues(v) => v.micros[r].to_string(),
        Data::StringValues(v) => v.values[r].clone(),
        Data::BytesValues(v) => format!("{} bytes", v.values[r].len()),
        Data::VectorValues(v) => {
            let d = v.dim as usize;
            let head: Vec<String> = v.values[r * d..(r * d + d.min(3))]
                .iter()
                .map(|x| format!("{x:.3}"))
                .collect();
            format!(
                "[{}{}] ({d} dims)",
                head.join(", "),
                if d > 3 { ", …" } else { "" }
            )
        }
        Data::ListValues(l) => format!("list of {}", l.lengths[r]),
    }
}

async fn write(mut c: Client, view: String, file: PathBuf) -> Result<(), String> {
    let reg = c
        .get_registry(pb::GetRegistryRequest {})
        .await
        .map_err(status_text)?
        .into_inner();
    let schema = reg
        .views
        .iter()
        .find(|v| v.name == view)
        .ok_or_else(|| format!("--view {view:?}: no such feature view"))?;
    let entity = reg
        .entities
        .iter()
        .find(|e| e.name == schema.entity)
        .ok_or_else(|| format!("entity {:?} missing", schema.entity))?;
    let text = std::fs::read_to_string(&file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let batches = json_batches(&text, &view, schema, entity)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let (mut rows, mut seq) = (0, 0);
    for (i, req) in batches.iter().enumerate() {
        let r = c
            .write_features(req.clone())
            .await
            .map_err(|s| {
                format!(
                    "batch {} of {} (after {rows} rows written): {}",
                    i + 1,
                    batches.len(),
                    status_text(s)
                )
            })?
            .into_inner();
        rows += r.rows;
        seq = r.wal_sequence;
    }
    println!(
        "wrote {rows} rows to {view} in {} batches (wal sequence {seq})",
        batches.len()
    );
    Ok(())
}

/// Turns JSON lines into write batches for `view`. Each line is one row: its join keys,
/// `event_timestamp` (whole seconds; now if absent) and any of the view's features. A feature
/// a line leaves out is left untouched (consecutive lines with the same features share a
/// batch), `null` writes a null, and an unknown field or a value of the wrong type is an error
/// naming the line (from 1) and the field.
fn json_batches(
    text: &str,
    view: &str,
    schema: &pb::ViewSchema,
    entity: &pb::EntitySchema,
) -> Result<Vec<pb::WriteFeaturesRequest>, String> {
    const EVENT_TIME: &str = "event_timestamp";
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    // (line number, the object, the indices of the features it sets) per row.
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let ln = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let obj: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(line).map_err(|e| format!("line {ln}: {e}"))?;
        let mut features = Vec::new();
        for name in obj.keys() {
            if name == EVENT_TIME || entity.join_keys.iter().any(|k| &k.name == name) {
                continue;
            }
            match schema.features.iter().position(|f| &f.name == name) {
                Some(fi) => features.push(fi),
                None => {
                    let known: Vec<&str> =
                        schema.features.iter().map(|f| f.name.as_str()).collect();
                    return Err(format!(
                        "line {ln}: unknown field {name:?}: view {view:?} has {}, and rows \
                         carry {} and {EVENT_TIME:?}",
                        known.join(", "),
                        entity
                            .join_keys
                            .iter()
                            .map(|k| format!("{:?}", k.name))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
        }
        if features.is_empty() {
            return Err(format!("line {ln}: no feature of view {view:?} to write"));
        }
        features.sort_unstable();
        rows.push((ln, obj, features));
    }
    if rows.is_empty() {
        return Err("no rows".into());
    }
    let mut batches = Vec::new();
    for run in rows.chunk_by(|a, b| a.2 == b.2) {
        let mut req = pb::WriteFeaturesRequest {
            view: view.to_owned(),
            ..Default::default()
        };
        for jk in &entity.join_keys {
            let values = if jk.r#type == pb::KeyType::Int64 as i32 {
                let v = run.iter().map(|(ln, obj, _)| {
                    obj.get(&jk.name)
                        .ok_or_else(|| format!("line {ln}: missing join key {:?}", jk.name))?
                        .as_i64()
                        .ok_or_else(|| format!("line {ln}: {:?} must be an integer", jk.name))
                });
                pb::key_column::Values::Int64Values(pb::Int64Values {
                    values: v.collect::<Result<_, _>>()?,
                })
            } else {
                let v = run.iter().map(|(ln, obj, _)| {
                    obj.get(&jk.name)
                        .ok_or_else(|| format!("line {ln}: missing join key {:?}", jk.name))?
                        .as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| format!("line {ln}: {:?} must be a string", jk.name))
                });
                pb::key_column::Values::StringValues(pb::StringValues {
                    values: v.collect::<Result<_, _>>()?,
                })
            };
            req.keys.push(pb::KeyColumn {
                name: jk.name.clone(),
                values: Some(values),
            });
        }
        for (ln, obj, _) in run {
            let secs = match obj.get(EVENT_TIME) {
                None => now,
                Some(v) => v.as_i64().ok_or_else(|| {
                    format!(
                        "line {ln}: {EVENT_TIME:?} must be whole seconds since the Unix epoch \
                         (an integer such as 1700000000), got {v}"
                    )
                })?,
            };
            req.event_timestamps.push(secs.saturating_mul(1_000_000));
        }
        let lines: Vec<usize> = run.iter().map(|r| r.0).collect();
        for &fi in &run[0].2 {
            let f = &schema.features[fi];
            let vals: Vec<&serde_json::Value> = run
                .iter()
                .filter_map(|(_, obj, _)| obj.get(&f.name))
                .collect();
            let ty = f.r#type.as_ref().and_then(|t| t.kind);
            req.features.push(json_column(&f.name, ty, &vals, &lines)?);
        }
        batches.push(req);
    }
    Ok(batches)
}

/// One feature's column of a batch from JSON values (one per row; `null` is a null), with
/// errors naming the row's line.
fn json_column(
    name: &str,
    kind: Option<pb::value_type::Kind>,
    vals: &[&serde_json::Value],
    lines: &[usize],
) -> Result<pb::FeatureWrite, String> {
    use pb::column::Data;
    let n = vals.len();
    let mut nulls = vec![0u8; n.div_ceil(8)];
    for (i, v) in vals.iter().enumerate() {
        if v.is_null() {
            nulls[i / 8] |= 1 << (i % 8);
        }
    }
    let bad = |i: usize| {
        format!(
            "line {}: {name:?} = {} does not fit its type",
            lines[i], vals[i]
        )
    };
    let scalar = match kind {
        Some(pb::value_type::Kind::Scalar(s)) => s,
        _ => {
            return Err(format!(
                "{name:?}: only scalar features can be written from JSON by this tool"
            ))
        }
    };
    let present = |i: usize| Some(vals[i]).filter(|v| !v.is_null());
    let data = match pb::ScalarType::try_from(scalar).unwrap_or(pb::ScalarType::Unspecified) {
        pb::ScalarType::Bool => Data::BoolValues(pb::BoolValues {
            values: (0..n)
                .map(|i| present(i).map_or(Ok(false), |v| v.as_bool().ok_or_else(|| bad(i))))
                .collect::<Result<_, _>>()?,
        }),
        pb::ScalarType::Int32 => Data::Int32Values(pb::Int32Values {
            values: (0..n)
                .map(|i| {
                    present(i).map_or(Ok(0), |v| {
                        v.as_i64()
                            .and_then(|x| i32::try_from(x).ok())
                            .ok_or_else(|| bad(i))
                    })
                })
                .collect::<Result<_, _>>()?,
        }),
        pb::ScalarType::Int64 => Data::Int64Values(pb::Int64Values {
            values: (0..n)
                .map(|i| present(i).map_or(Ok(0), |v| v.as_i64().ok_or_else(|| bad(i))))
                .collect::<Result<_, _>>()?,
        }),
        pb::ScalarType::Timestamp => Data::TimestampValues(pb::TimestampValues {
            micros: (0..n)
                .map(|i| {
                    present(i).map_or(Ok(0), |v| {
                        v.as_i64()
                            .map(|s| s.saturating_mul(1_000_000))
                            .ok_or_else(|| bad(i))
                    })
                })
                .collect::<Result<_, _>>()?,
        }),
        pb::ScalarType::Float32 => Data::Float32Values(pb::Float32Values {
            values: (0..n)
                .map(|i| {
                    present(i).map_or(Ok(0.0), |v| {
                        v.as_f64().map(|x| x as f32).ok_or_else(|| bad(i))
                    })
                })
                .collect::<Result<_, _>>()?,
        }),
        pb::ScalarType::Float64 => Data::Float64Values(pb::Float64Values {
            values: (0..n)
                .map(|i| present(i).map_or(Ok(0.0), |v| v.as_f64().ok_or_else(|| bad(i))))
                .collect::<Result<_, _>>()?,
        }),
        pb::ScalarType::String => Data::StringValues(pb::StringValues {
            values: (0..n)
                .map(|i| {
                    present(i).map_or(Ok(String::new()), |v| {
                        v.as_str().map(str::to_string).ok_or_else(|| bad(i))
                    })
                })
                .collect::<Result<_, _>>()?,
        }),
        pb::ScalarType::Bytes | pb::ScalarType::Unspecified => {
            return Err(format!(
                "{name:?}: bytes features cannot be written from JSON by this tool"
            ))
        }
    };
    Ok(pb::FeatureWrite {
        name: name.to_string(),
        values: Some(pb::Column { data: Some(data) }),
        null_bitmap: if nulls.iter().any(|b| *b != 0) {
            nulls
        } else {
            Vec::new()
        },
    })
}

fn ratio(plain: u64, stored: u64) -> f64 {
    if stored == 0 {
        1.0
    } else {
        plain as f64 / stored as f64
    }
}

/// One line per snapshot file in `dir` (or in its `snapshots/`): the per-view ratios.
fn inspect_dir(dir: &std::path::Path) -> Result<(), String> {
    let sub = dir.join(quiver_engine::inspect::SNAPSHOT_DIR);
    let dir = if sub.is_dir() { sub } else { dir.to_path_buf() };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "qsnap"))
        .collect();
    files.sort();
    println!(
        "{:<24} {:>10} {:>14} {:>14} {:>7} {:>13}  file",
        "view", "entities", "stored bytes", "plain bytes", "ratio", "method"
    );
    for f in files {
        let s = Snapshot::open(&f).map_err(|e| e.to_string())?;
        let (plain, stored) = s.record_sizes();
        println!(
            "{:<24} {:>10} {:>14} {:>14} {:>6.2}x {:>13}  {}",
            s.info().view,
            s.len(),
            stored,
            plain,
            ratio(plain, stored),
            s.codec_info().map_or("none", |c| c.method.name()),
            f.display()
        );
    }
    Ok(())
}

fn snapshot(cmd: SnapshotCommand) -> Result<(), String> {
    match cmd {
        SnapshotCommand::Inspect { file } if file.is_dir() => inspect_dir(&file),
        SnapshotCommand::Inspect { file } => {
            let s = Snapshot::open(&file).map_err(|e| e.to_string())?;
            let i = s.info();
            let (plain, stored) = s.record_sizes();
            println!("file            {}", file.display());
            println!("format version  {}", i.format_version);
            println!("view            {}", i.view);
            println!("entities        {}", i.entities);
            println!("file bytes      {}", i.file_size);
            println!(
                "record region   {} bytes (keys and records)",
                i.record_bytes
            );
            println!("index slots     {}", i.index_slots);
            println!("wal sequence    {}", i.sequence);
            println!("created at      {} µs", i.created_at);
            println!(
                "max event time  {}",
                i.max_event_ts.map_or("-".into(), |t| format!("{t} µs"))
            );
            println!("schema          {:#018x}", i.schema_fingerprint);
            println!(
                "records         {stored} bytes stored, {plain} plain ({:.2}x, {:.1} B per entity)",
                ratio(plain, stored),
                stored as f64 / i.entities.max(1) as f64
            );
            match s.codec_info() {
                Some(c) => println!("compression     {c}"),
                None => println!("compression     none (written before compression existed)"),
            }
            Ok(())
        }
        SnapshotCommand::Verify { file } => {
            let i = Snapshot::verify(&file).map_err(|e| e.to_string())?;
            println!("ok: {i}");
            Ok(())
        }
    }
}

fn wal_inspect(dir: &std::path::Path) -> Result<(), String> {
    let segs = quiver_engine::inspect::inspect_wal(dir).map_err(|e| e.to_string())?;
    if segs.is_empty() {
        println!("no WAL segments in {}", dir.display());
    }
    let mut damaged = false;
    for s in &segs {
        println!(
            "{}  first seq {}  {} frames ({} compressed)  {} payload bytes  {} / {} bytes valid{}",
            s.file.display(),
            s.first_seq,
            s.frames,
            s.compressed_frames,
            s.payload_bytes,
            s.valid_bytes,
            s.file_bytes,
            s.problem
                .as_ref()
                .map_or(String::new(), |p| format!("  PROBLEM: {p}"))
        );
        damaged |= s.problem.is_some();
    }
    if damaged {
        return Err("the log has damage (see above)".into());
    }
    Ok(())
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

// ---------------------------------------------------------------------------------------------
// Offline: `quiver historical` and `quiver materialize` (the work is in quiver_offline).
// ---------------------------------------------------------------------------------------------

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

fn open_histories(
    registry: &Registry,
    registry_path: &std::path::Path,
    views: &[&str],
    args: &OfflineArgs,
) -> Result<Vec<quiver_offline::History>, String> {
    let epoch = quiver_offline::EpochUnit::parse(&args.epoch_unit)?;
    let base = registry_path.parent().unwrap_or(std::path::Path::new("."));
    let mut overrides = std::collections::HashMap::new();
    for h in &args.history {
        let (v, p) = h
            .split_once('=')
            .ok_or_else(|| format!("--history {h:?}: expected VIEW=PATH"))?;
        overrides.insert(v.to_owned(), PathBuf::from(p));
    }
    views
        .iter()
        .map(|v| match overrides.get(*v) {
            Some(p) => quiver_offline::History::open(registry, v, p, epoch),
            None => quiver_offline::History::for_view(registry, v, base, epoch),
        })
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())
}

fn historical(a: HistoricalArgs) -> Result<(), String> {
    let registry = Registry::load(&a.registry).map_err(|e| e.to_string())?;
    let features = match &a.service {
        Some(s) => registry
            .service(s)
            .ok_or_else(|| format!("--service {s:?}: no such feature service"))?
            .features
            .clone(),
        None => a.features.clone(),
    };
    let plan = quiver_offline::FeaturePlan::new(&registry, &features, a.full_feature_names)
        .map_err(|e| e.to_string())?;
    let histories = open_histories(&registry, &a.registry, &plan.views(&registry), &a.offline)?;
    let opts = quiver_offline::JoinOptions {
        full_feature_names: a.full_feature_names,
        timestamp_column: a.timestamp_column,
        epoch_unit: quiver_offline::EpochUnit::parse(&a.offline.epoch_unit)?,
        threads: a.offline.threads,
        chunk_rows: a.chunk_rows,
        progress: true,
    };
    let s = quiver_offline::write_training_set(
        &registry,
        &plan,
        &histories,
        &a.entities,
        &a.out,
        &opts,
    )
    .map_err(|e| e.to_string())?;
    println!(
        "wrote {}: {} rows, {} features, {} history rows read, {} bytes, {:.2} s",
        a.out.display(),
        s.rows,
        s.features,
        s.history_rows,
        s.bytes,
        s.seconds
    );
    Ok(())
}

fn materialize(a: MaterializeArgs) -> Result<(), String> {
    let registry = Registry::load(&a.registry).map_err(|e| e.to_string())?;
    let history = open_histories(&registry, &a.registry, &[a.view.as_str()], &a.offline)?
        .pop()
        .ok_or("no history")?;
    let mut opts = quiver_offline::MaterializeOptions {
        start: match &a.start {
            Some(s) => quiver_offline::parse_time(s).map_err(|e| format!("--start: {e}"))?,
            None => i64::MIN,
        },
        end: quiver_offline::parse_time(&a.end).map_err(|e| format!("--end: {e}"))?,
        threads: a.offline.threads,
        progress: true,
    };
    let client = || ClientArgs {
        server: a.server.clone().unwrap_or_default(),
        token: a.token.clone(),
        ca_cert: a.ca_cert.clone(),
    };
    let state = a.state.clone().unwrap_or_else(|| {
        a.registry
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join(".quiver-materialize")
    });
    let target = match (&a.out, &a.data_dir, &a.server) {
        (Some(out), _, _) => out.display().to_string(),
        (None, Some(dir), _) => format!(
            "data-dir {}",
            std::path::absolute(dir).unwrap_or(dir.clone()).display()
        ),
        (None, None, server) => format!("server {}", server.clone().unwrap_or_default()),
    };
    if a.incremental {
        let prev = quiver_offline::last_materialized(&state, &a.view, &target)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                format!(
                    "no earlier materialization of {:?} into {target} is recorded in {}; run \
                     once without --incremental",
                    a.view,
                    state.display()
                )
            })?;
        if opts.end <= prev {
            println!("{}: already materialized up to {prev} µs", a.view);
            return Ok(());
        }
        opts.start = prev.saturating_add(1);
    }
    let summary = match (&a.out, &a.data_dir) {
        (Some(out), _) => quiver_offline::materialize_snapshot(&registry, &history, out, &opts)
            .map_err(|e| e.to_string())?,
        (None, Some(dir)) if a.incremental => {
            quiver_offline::materialize_rows_into_db(&registry, &history, dir, &opts)
                .map_err(|e| e.to_string())?
        }
        (None, Some(dir)) => quiver_offline::materialize_into_db(&registry, &history, dir, &opts)
            .map_err(|e| e.to_string())?,
        (None, None) if a.incremental => stream_rows(client(), &registry, &history, &opts)?,
        (None, None) => {
            let tmp = std::env::temp_dir().join(format!(
                "quiver-materialize-{}-{}.qsnap",
                a.view,
                std::process::id()
            ));
            let _ = std::fs::remove_file(&tmp);
            let s = quiver_offline::materialize_snapshot(&registry, &history, &tmp, &opts)
                .map_err(|e| e.to_string());
            let uploaded = match &s {
                Ok(_) => upload_snapshot(client(), &a.view, &tmp),
                Err(_) => Ok(()),
            };
            let _ = std::fs::remove_file(&tmp);
            uploaded?;
            s?
        }
    };
    if a.out.is_none() {
        quiver_offline::record_materialized(&state, &a.view, &target, opts.end)
            .map_err(|e| e.to_string())?;
    }
    println!(
        "materialized {summary}{} → {target}",
        if a.incremental { " (incremental)" } else { "" }
    );
    Ok(())
}

/// Incremental materialization into a server: the window's latest rows as write batches over
/// one StreamWriteFeatures call (the batches are built before the call starts).
fn stream_rows(
    args: ClientArgs,
    registry: &Registry,
    history: &quiver_offline::History,
    opts: &quiver_offline::MaterializeOptions,
) -> Result<quiver_offline::MaterializeSummary, String> {
    let started = std::time::Instant::now();
    let view = registry.view(history.view()).ok_or("view vanished")?;
    let entity = registry.view_entity(view).ok_or("entity vanished")?;
    let mut requests = Vec::new();
    let mut batch = Vec::new();
    let mut flush = |batch: &mut Vec<quiver_engine::Row>| -> quiver_offline::Result<()> {
        if !batch.is_empty() {
            requests.push(
                write_request(view, entity, batch)
                    .map_err(quiver_offline::OfflineError::InvalidArgument)?,
            );
            batch.clear();
        }
        Ok(())
    };
    let (rows_read, entities, max_event_ts) =
        quiver_offline::latest_rows(registry, history, opts, |row| {
            batch.push(row);
            if batch.len() == quiver_offline::WRITE_BATCH {
                flush(&mut batch)?;
            }
            Ok(())
        })
        .map_err(|e| e.to_string())?;
    flush(&mut batch).map_err(|e| e.to_string())?;
    if !requests.is_empty() {
        with_client(&args, |mut c| async move {
            let r = c
                .stream_write_features(tokio_stream::iter(requests))
                .await
                .map_err(status_text)?
                .into_inner();
            eprintln!(
                "wrote {} rows in {} batches (wal sequence {})",
                r.rows, r.batches, r.wal_sequence
            );
            Ok(())
        })?;
    }
    Ok(quiver_offline::MaterializeSummary {
        view: view.name.clone(),
        rows_read,
        entities,
        bytes: 0,
        max_event_ts,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Engine rows (whole rows, as the materializer makes them) → one native write batch.
fn write_request(
    view: &quiver_engine::FeatureView,
    entity: &quiver_engine::Entity,
    rows: &[quiver_engine::Row],
) -> Result<pb::WriteFeaturesRequest, String> {
    use quiver_engine::{KeyType, OwnedKeyPart, Value};
    let keys: Vec<Vec<OwnedKeyPart>> = rows
        .iter()
        .map(|r| quiver_engine::decode_key(entity, &r.key).ok_or("undecodable entity key"))
        .collect::<Result<_, _>>()?;
    let key_columns = entity
        .join_keys
        .iter()
        .enumerate()
        .map(|(k, jk)| pb::KeyColumn {
            name: jk.name.clone(),
            values: Some(match jk.ty {
                KeyType::Int64 => pb::key_column::Values::Int64Values(pb::Int64Values {
                    values: keys
                        .iter()
                        .map(|p| match &p[k] {
                            OwnedKeyPart::Int64(v) => *v,
                            OwnedKeyPart::String(_) => 0,
                        })
                        .collect(),
                }),
                KeyType::String => pb::key_column::Values::StringValues(pb::StringValues {
                    values: keys
                        .iter()
                        .map(|p| match &p[k] {
                            OwnedKeyPart::String(s) => s.clone(),
                            OwnedKeyPart::Int64(_) => String::new(),
                        })
                        .collect(),
                }),
            }),
        })
        .collect();
    let mut features = Vec::with_capacity(view.features.len());
    for (fi, f) in view.features.iter().enumerate() {
        let vals: Vec<&Value> = rows
            .iter()
            .map(|r| {
                r.values
                    .iter()
                    .find(|(i, _)| *i == fi)
                    .map_or(&Value::Null, |(_, v)| v)
            })
            .collect();
        let mut nulls = vec![0u8; vals.len().div_ceil(8)];
        for (i, v) in vals.iter().enumerate() {
            if matches!(v, Value::Null) {
                nulls[i / 8] |= 1 << (i % 8);
            }
        }
        features.push(pb::FeatureWrite {
            name: f.name.clone(),
            values: Some(pb::Column {
                data: Some(value_data(f.ty, &vals)),
            }),
            null_bitmap: if nulls.iter().any(|b| *b != 0) {
                nulls
            } else {
                Vec::new()
            },
        });
    }
    let created = rows.iter().any(|r| r.created_ts.is_some());
    Ok(pb::WriteFeaturesRequest {
        view: view.name.clone(),
        keys: key_columns,
        event_timestamps: rows.iter().map(|r| r.event_ts).collect(),
        created_timestamps: if created {
            rows.iter()
                .map(|r| r.created_ts.unwrap_or(i64::MIN))
                .collect()
        } else {
            Vec::new()
        },
        features,
    })
}

/// One feature's values as a native column; nulls hold placeholders (the bitmap marks them).
fn value_data(ty: ValueType, vals: &[&quiver_engine::Value]) -> pb::column::Data {
    use pb::column::Data;
    use quiver_engine::{ScalarType as S, Value as V};
    macro_rules! pick {
        ($variant:ident, $msg:ident, $field:ident, $pat:ident, $default:expr) => {
            Data::$variant(pb::$msg {
                $field: vals
                    .iter()
                    .map(|v| match v {
                        V::$pat(x) => x.clone(),
                        _ => $default,
                    })
                    .collect(),
            })
        };
    }
    macro_rules! items {
        ($variant:ident, $msg:ident, $field:ident, $pat:ident) => {
            Data::$variant(pb::$msg {
                $field: vals
                    .iter()
                    .flat_map(|v| match v {
                        V::$pat(x) => x.clone(),
                        _ => Vec::new(),
                    })
                    .collect(),
            })
        };
    }
    match ty {
        ValueType::Scalar(s) => match s {
            S::Bool => pick!(BoolValues, BoolValues, values, Bool, false),
            S::Int32 => pick!(Int32Values, Int32Values, values, Int32, 0),
            S::Int64 => pick!(Int64Values, Int64Values, values, Int64, 0),
            S::Float32 => pick!(Float32Values, Float32Values, values, Float32, 0.0),
            S::Float64 => pick!(Float64Values, Float64Values, values, Float64, 0.0),
            S::Timestamp => pick!(TimestampValues, TimestampValues, micros, Timestamp, 0),
            S::String => pick!(StringValues, StringValues, values, String, String::new()),
            S::Bytes => pick!(BytesValues, BytesValues, values, Bytes, Vec::new()),
        },
        ValueType::Vector { dim } => Data::VectorValues(pb::VectorValues {
            dim,
            values: vals
                .iter()
                .flat_map(|v| match v {
                    V::Vector(x) => x.clone(),
                    _ => vec![0.0; dim as usize],
                })
                .collect(),
        }),
        ValueType::List(s) => {
            let lengths = vals
                .iter()
                .map(|v| match v {
                    V::BoolList(x) => x.len(),
                    V::Int32List(x) => x.len(),
                    V::Int64List(x) | V::TimestampList(x) => x.len(),
                    V::Float32List(x) => x.len(),
                    V::Float64List(x) => x.len(),
                    V::StringList(x) => x.len(),
                    V::BytesList(x) => x.len(),
                    _ => 0,
                } as u32)
                .collect();
            let items = match s {
                S::Bool => items!(BoolValues, BoolValues, values, BoolList),
                S::Int32 => items!(Int32Values, Int32Values, values, Int32List),
                S::Int64 => items!(Int64Values, Int64Values, values, Int64List),
                S::Float32 => items!(Float32Values, Float32Values, values, Float32List),
                S::Float64 => items!(Float64Values, Float64Values, values, Float64List),
                S::Timestamp => items!(TimestampValues, TimestampValues, micros, TimestampList),
                S::String => items!(StringValues, StringValues, values, StringList),
                S::Bytes => items!(BytesValues, BytesValues, values, BytesList),
            };
            Data::ListValues(Box::new(pb::ListValues {
                lengths,
                items: Some(Box::new(pb::Column { data: Some(items) })),
            }))
        }
    }
}

/// Streams a snapshot file to a server, zstd-compressed (compressed to a temporary file first:
/// the header states the exact byte count).
fn upload_snapshot(args: ClientArgs, view: &str, path: &std::path::Path) -> Result<(), String> {
    use std::io::Read;
    let zpath = path.with_extension("qsnap.zst");
    let compress = || -> std::io::Result<(u64, u64)> {
        let input = std::fs::File::open(path)?;
        let raw = input.metadata()?.len();
        zstd::stream::copy_encode(input, std::fs::File::create(&zpath)?, 3)?;
        Ok((raw, std::fs::metadata(&zpath)?.len()))
    };
    let sizes = compress().map_err(|e| format!("cannot compress {}: {e}", path.display()));
    let result = sizes.and_then(|(raw, total)| {
        let mut file = std::fs::File::open(&zpath)
            .map_err(|e| format!("cannot read {}: {e}", zpath.display()))?;
        let view = view.to_owned();
        with_client(&args, |mut c| async move {
            use pb::upload_snapshot_request::Part;
            let header = pb::UploadSnapshotRequest {
                part: Some(Part::Header(pb::UploadSnapshotHeader {
                    view,
                    total_bytes: total,
                    zstd: true,
                    uncompressed_bytes: raw,
                })),
            };
            // A read error ends the stream early; the server then refuses the short upload.
            let chunks = std::iter::from_fn(move || {
                let mut buf = vec![0u8; 1 << 20];
                match file.read(&mut buf) {
                    Ok(0) | Err(_) => None,
                    Ok(n) => {
                        buf.truncate(n);
                        Some(pb::UploadSnapshotRequest {
                            part: Some(Part::Chunk(buf)),
                        })
                    }
                }
            });
            let r = c
                .upload_snapshot(tokio_stream::iter(std::iter::once(header).chain(chunks)))
                .await
                .map_err(status_text)?
                .into_inner();
            eprintln!(
                "uploaded {} bytes; the server loaded {} entities into {:?}",
                r.received_bytes, r.entities, r.view
            );
            Ok(())
        })
    });
    let _ = std::fs::remove_file(&zpath);
    result
}
