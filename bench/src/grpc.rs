//! `quiver-bench grpc`: how close Quiver's GetOnlineFeatures gets to the gRPC floor.
//!
//! Two servers, measured back to back with the same clients, key sequence and concurrency:
//! the real release `quiver` binary (a child process on a free port, the dataset bulk-loaded
//! from a snapshot), and an echo service: a tonic server implementing the same
//! `quiver.v1.FeatureStore` whose GetOnlineFeatures returns a precomputed response (a real
//! answer of the same batch size) without touching any store. The echo is a process of its own
//! (`quiver-bench echo-serve`, as many runtime threads as the Quiver server has), placed on
//! the server CPU like Quiver, and its CPU time is read the same way. Both answer over loopback TCP/HTTP/2, so the difference is the engine
//! read, the request decoding into keys and the response encoding from columns.
//!
//! Each server worker-thread count is measured (default 1 and 2, since on a 2-core machine
//! the server shares the cores with the client), each at every concurrency. Then, for each
//! thread count, an open-loop run at half of that count's peak throughput gives the latency
//! a service sees when it is not saturated.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use quiver_server::client::Connect;
use quiver_server::proto::quiver::v1 as pb;
use quiver_server::proto::quiver::v1::feature_store_server::{FeatureStore, FeatureStoreServer};
use serde_json::{json, Value as Json};
use tonic::{Request, Response, Status, Streaming};

use crate::clients::native::{
    check_users, load_snapshot, read_request, sample_ids, stage, status_err,
};
use crate::clients::procs::{
    quiver_binary, QuiverClients, QuiverServer, QuiverSpec, Server, ServerSpec,
};
use crate::clients::runner::{measure, Load, Outcome, Shared, Target, Workload};
use crate::clients::{block_on, build_snapshots, write_registry};
use crate::dataset::{feature_refs, Data, USER_STATS, VIEW};
use crate::error::io;
use crate::harness::args::ServerArgs;
use crate::harness::host::{loadavg, now_secs};
use crate::harness::placement::{Placement, PlacementArg};
use crate::harness::report::{num, ratio, Fields, Stat, Table};
use crate::keys::{Dist, KeySpace};
use crate::scratch::scratch_dir;
use crate::{BenchError, Result};

/// Flags of `quiver-bench grpc`.
#[derive(Debug, Clone, Args)]
pub struct GrpcArgs {
    /// Entities loaded into `user_stats`.
    #[arg(long, default_value_t = 1_000_000)]
    pub entities: u64,
    /// Entities per GetOnlineFeatures.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Features per read: the first N of `user_stats` (1 to 20).
    #[arg(long, default_value_t = 20)]
    pub features: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Client concurrencies (requests in flight), comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [8usize, 64])]
    pub concurrency: Vec<usize>,
    /// Server worker-thread counts to try, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 2])]
    pub worker_threads: Vec<usize>,
    /// The server's `threading`: per-core or shared (default: the server's default).
    #[arg(long, value_parser = ["per-core", "shared"])]
    pub threading: Option<String>,
    /// Client runtime threads.
    #[arg(long, default_value_t = 2)]
    pub client_threads: usize,
    /// HTTP/2 connections the clients share (default: min(concurrency, 8)).
    #[arg(long)]
    pub connections: Option<usize>,
    /// Zipf(0.99) instead of uniform key choice.
    #[arg(long)]
    pub zipf: bool,
    /// The server on one CPU and the harness on the others (`pinned`, the default with two
    /// or more CPUs), or no pinning (`shared`). The echo service runs inside the harness.
    #[arg(long, value_enum)]
    pub placement: Option<PlacementArg>,
    #[command(flatten)]
    /// Flags every server workload shares.
    pub common: ServerArgs,
}

/// The latency figures of this report's JSON: the first two or three of them.
const TAILS: [Stat; 3] = [Stat::P50, Stat::P99, Stat::P999];

/// Users compared value by value with the dataset after each load.
const VALIDATE_USERS: u64 = 5_000;

/// Runs the gRPC front benchmark; prints a table, then one JSON line, on stdout.
pub fn run_grpc(args: &GrpcArgs) -> Result<()> {
    if args.entities == 0
        || args.batch == 0
        || !(1..=USER_STATS.len()).contains(&args.features)
        || args.duration.is_nan()
        || args.duration <= 0.0
        || args.concurrency.iter().any(|&c| c == 0 || c > 4096)
        || args.worker_threads.iter().any(|&t| t == 0 || t > 256)
        || args.concurrency.is_empty()
        || args.worker_threads.is_empty()
    {
        return Err(BenchError::InvalidArgument(
            "entities, batch, duration, concurrency and worker threads must be positive; \
             features 1..=20"
                .into(),
        ));
    }
    block_on(args.client_threads, grpc(args.clone()))
}

/// One measured configuration.
#[derive(Debug)]
struct Point {
    threads: usize,
    concurrency: usize,
    quiver: Outcome,
    echo: Outcome,
}

async fn grpc(args: GrpcArgs) -> Result<()> {
    let load_before = loadavg();
    let placement = Placement::resolve(args.placement)?;
    placement.pin_harness()?;
    let seed = args.common.seed;
    let bin = quiver_binary(args.common.quiver_bin.as_deref(), true)?;
    let work = scratch_dir(args.common.dir.as_deref(), "grpc")?;
    let (registry_path, registry) = write_registry(&work)?;
    let data = Data::new(seed, args.entities, now_secs());
    eprintln!("building a user_stats snapshot of {} users", args.entities);
    let snaps = build_snapshots(&work, &registry, &data, false).await?;
    eprintln!("  {} bytes in {:.1} s", snaps.bytes, snaps.build_seconds);
    let shared = Arc::new(Shared {
        space: KeySpace::new(args.entities, seed ^ 0x7065_726d)?,
        data,
    });
    let dist = if args.zipf { Dist::Zipf } else { Dist::Uniform };
    let wl = Workload {
        batch: args.batch,
        features: args.features,
        embedding: false,
        write_percent: 0,
    };
    let duration = Duration::from_secs_f64(args.duration);
    let load = |concurrency: usize, rate: Option<f64>| Load {
        concurrency,
        dist,
        warmup: (duration / 5).min(Duration::from_secs(1)),
        duration,
        max_requests: 10_000_000,
        seed,
        rate,
    };
    let max_c = args.concurrency.iter().copied().max().unwrap_or(1);
    let connections = args.connections.unwrap_or(max_c.min(8));

    let mut points = Vec::new();
    let mut paced = Vec::new();
    for &threads in &args.worker_threads {
        eprintln!("quiver serve with {threads} worker thread(s)");
        let spec = QuiverSpec {
            bin: bin.clone(),
            registry: registry_path.clone(),
            fsync: "never".into(),
            worker_threads: threads,
            start_timeout: Duration::from_secs(300),
            extra_config: args
                .threading
                .as_ref()
                .map(|t| format!("threading = \"{t}\"\n"))
                .unwrap_or_default(),
            cpus: placement.server_cpus().map(str::to_owned),
        };
        let server = QuiverServer::start(spec, args.common.dir.as_deref(), "grpc-quiver").await?;
        let staged = server.scratch("user_stats.snap");
        stage(&snaps.stats, &staged)?;
        let clients = server.clients(connections).await?;
        let mut c0 = clients.get(0);
        let loaded = load_snapshot(&mut c0, VIEW, &staged).await?;
        eprintln!("  loaded {loaded} users; checking answers");
        let ids = sample_ids(&shared.data, VALIDATE_USERS);
        check_users(
            &mut c0,
            &shared.data,
            &ids,
            args.features,
            false,
            args.batch,
        )
        .await?;

        // The echo's answer: a real one, for a batch of the same size.
        let refs = feature_refs(args.features, false);
        let batch_ids: Vec<i64> = ids.iter().copied().cycle().take(args.batch).collect();
        let canned = c0
            .get_online_features(read_request(&refs, &batch_ids))
            .await
            .map_err(|s| status_err("GetOnlineFeatures", &s))?
            .into_inner();
        let answer = server.scratch("echo-answer.pb");
        std::fs::write(&answer, prost::Message::encode_to_vec(&canned))
            .map_err(io(format!("writing {}", answer.display())))?;
        let echo_spec = EchoSpec {
            answer,
            threads,
            cpus: placement.server_cpus().map(str::to_owned),
        };
        let echo = Server::start(echo_spec, args.common.dir.as_deref(), "grpc-echo").await?;
        let echo_clients = QuiverClients::connect(echo.addr, connections).await?;

        let mut peak: f64 = 0.0;
        for &c in &args.concurrency {
            eprintln!("  concurrency {c}: quiver");
            let q = measure(
                &Target::Quiver(clients.clone(), server.proc().pid()),
                wl,
                load(c, None),
                &shared,
            )
            .await?;
            eprintln!("  concurrency {c}: echo");
            let echo_target = Target::Echo(echo_clients.clone(), echo.proc().pid());
            let e = measure(&echo_target, wl, load(c, None), &shared).await?;
            eprintln!(
                "    quiver {:.0} req/s p99 {:.0} us | echo {:.0} req/s p99 {:.0} us",
                q.rps(),
                q.latency.summary().p99_us,
                e.rps(),
                e.latency.summary().p99_us
            );
            peak = peak.max(q.rps());
            points.push(Point {
                threads,
                concurrency: c,
                quiver: q,
                echo: e,
            });
        }
        let rate = peak / 2.0;
        eprintln!("  paced at half of peak: {rate:.0} req/s");
        let h = measure(
            &Target::Quiver(clients.clone(), server.proc().pid()),
            wl,
            load(max_c, Some(rate)),
            &shared,
        )
        .await?;
        paced.push((threads, rate, h));
        drop(echo_clients);
        drop(echo);
        drop(server);
    }

    // Table.
    let mut t = Table::new([
        "threads", "conc", "system", "req/s", "values/s", "p50 us", "p99 us", "p999 us", "max us",
    ]);
    let row = |t: &mut Table, th: usize, c: String, name: &str, o: &Outcome| {
        let s = o.latency.summary();
        t.row([
            th.to_string(),
            c,
            name.to_owned(),
            format!("{:.0}", o.rps()),
            format!("{:.3e}", o.values_per_sec()),
            format!("{:.0}", s.p50_us),
            format!("{:.0}", s.p99_us),
            format!("{:.0}", s.p999_us),
            format!("{:.0}", s.max_us),
        ]);
    };
    for p in &points {
        for (name, o) in [("quiver", &p.quiver), ("echo", &p.echo)] {
            row(&mut t, p.threads, p.concurrency.to_string(), name, o);
        }
    }
    for (th, rate, h) in &paced {
        row(
            &mut t,
            *th,
            format!("{max_c}@{rate:.0}/s"),
            "quiver paced",
            h,
        );
    }
    println!("{}", t.render());

    let best = points
        .iter()
        .max_by(|a, b| a.quiver.rps().total_cmp(&b.quiver.rps()))
        .ok_or_else(|| BenchError::InvalidArgument("nothing was measured".into()))?;
    let best_paced = paced.iter().find(|p| p.0 == best.threads);
    let qs = best.quiver.latency.summary();
    let es = best.echo.latency.summary();
    let runs: Vec<Json> = points
        .iter()
        .map(|p| {
            let (q, e) = (p.quiver.latency.summary(), p.echo.latency.summary());
            Fields::new(json!({
                "worker_threads": p.threads,
                "concurrency": p.concurrency,
                "quiver_rps": num(p.quiver.rps()),
                "echo_rps": num(p.echo.rps()),
                "ratio": num(ratio(p.quiver.rps(), p.echo.rps())),
                "server_cpu_s": p.quiver.server_cpu_seconds.map_or(Json::Null, num),
                "values_per_server_cpu_s": p.quiver.values_per_server_cpu_sec().map_or(Json::Null, num),
                "echo_server_cpu_s": p.echo.server_cpu_seconds.map_or(Json::Null, num),
                "echo_values_per_server_cpu_s": p.echo.values_per_server_cpu_sec().map_or(Json::Null, num),
                "cpu_ratio": match (p.quiver.values_per_server_cpu_sec(), p.echo.values_per_server_cpu_sec()) {
                    (Some(q), Some(e)) => num(ratio(q, e)),
                    _ => Json::Null,
                },
                "checked_responses": p.quiver.checked,
            }))
            .latency("", Some(&q), &TAILS[..3])
            .latency("echo_", Some(&e), &TAILS[..2])
            .json()
        })
        .collect();
    let paced_json: Vec<Json> = paced
        .iter()
        .map(|(th, rate, h)| {
            let s = h.latency.summary();
            Fields::new(json!({
                "worker_threads": th,
                "target_rps": num(*rate),
                "achieved_rps": num(h.rps()),
            }))
            .latency("", Some(&s), &TAILS[..3])
            .json()
        })
        .collect();
    let paced_s = best_paced.map(|p| p.2.latency.summary());
    let line = Fields::new(json!({
        "bench": "grpc",
        "entities": args.entities,
        "batch": args.batch,
        "features": args.features,
        "dist": dist.name(),
        "duration_s": args.duration,
        "connections": connections,
        "client_threads": args.client_threads,
        "worker_threads": best.threads,
        "threading": args.threading.as_deref().unwrap_or("default"),
        "concurrency": best.concurrency,
        "quiver_rps": num(best.quiver.rps()),
        "echo_rps": num(best.echo.rps()),
        "ratio": num(ratio(best.quiver.rps(), best.echo.rps())),
        "half_peak_rps": best_paced.map(|p| num(p.2.rps())),
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
        "placement": placement.name(),
        "server_cpus": placement.server_cpus(),
        "client_cpus": placement.client_cpus(),
        "runs": runs,
        "paced": paced_json,
    }))
    .latency("", Some(&qs), &TAILS[..2])
    .latency("echo_", Some(&es), &TAILS[..2])
    .latency("half_peak_", paced_s.as_ref(), &TAILS[..2]);
    println!("{line}");
    Ok(())
}

/// The echo service: every GetOnlineFeatures gets the same precomputed answer.
#[derive(Debug)]
struct Echo {
    answer: pb::GetOnlineFeaturesResponse,
}

fn no() -> Status {
    Status::unimplemented("the echo service only answers GetOnlineFeatures")
}

#[tonic::async_trait]
impl FeatureStore for Echo {
    async fn get_online_features(
        &self,
        _request: Request<pb::GetOnlineFeaturesRequest>,
    ) -> Result<Response<pb::GetOnlineFeaturesResponse>, Status> {
        Ok(Response::new(self.answer.clone()))
    }
    async fn write_features(
        &self,
        _: Request<pb::WriteFeaturesRequest>,
    ) -> Result<Response<pb::WriteFeaturesResponse>, Status> {
        Err(no())
    }
    async fn stream_write_features(
        &self,
        _: Request<Streaming<pb::WriteFeaturesRequest>>,
    ) -> Result<Response<pb::WriteFeaturesResponse>, Status> {
        Err(no())
    }
    async fn load_snapshot(
        &self,
        _: Request<pb::LoadSnapshotRequest>,
    ) -> Result<Response<pb::LoadSnapshotResponse>, Status> {
        Err(no())
    }
    async fn upload_snapshot(
        &self,
        _: Request<Streaming<pb::UploadSnapshotRequest>>,
    ) -> Result<Response<pb::UploadSnapshotResponse>, Status> {
        Err(no())
    }
    async fn checkpoint(
        &self,
        _: Request<pb::CheckpointRequest>,
    ) -> Result<Response<pb::CheckpointResponse>, Status> {
        Err(no())
    }
    async fn apply_registry(
        &self,
        _: Request<pb::ApplyRegistryRequest>,
    ) -> Result<Response<pb::ApplyRegistryResponse>, Status> {
        Err(no())
    }
    async fn get_registry(
        &self,
        _: Request<pb::GetRegistryRequest>,
    ) -> Result<Response<pb::GetRegistryResponse>, Status> {
        Err(no())
    }
    async fn get_stats(
        &self,
        _: Request<pb::GetStatsRequest>,
    ) -> Result<Response<pb::GetStatsResponse>, Status> {
        Err(no())
    }
}

/// Flags of the hidden `quiver-bench echo-serve`, which `grpc` starts: the echo service as a
/// process of its own, so that with `--placement pinned` it runs on the server CPU as the
/// Quiver server does, and its CPU time is measured the same way.
#[derive(Debug, Clone, Args)]
pub struct EchoArgs {
    /// Address to listen on.
    #[arg(long)]
    pub listen: std::net::SocketAddr,
    /// File holding the encoded `GetOnlineFeaturesResponse` to answer with.
    #[arg(long)]
    pub answer: PathBuf,
    /// Runtime worker threads (as many as the Quiver server it stands beside).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

/// Serves the echo service until the process is stopped.
pub fn run_echo(args: &EchoArgs) -> Result<()> {
    let bytes = std::fs::read(&args.answer).map_err(io(format!(
        "reading the echo answer {}",
        args.answer.display()
    )))?;
    let answer = <pb::GetOnlineFeaturesResponse as prost::Message>::decode(&bytes[..])
        .map_err(|e| BenchError::InvalidArgument(format!("the echo answer: {e}")))?;
    // One thread: the current-thread scheduler, as the Quiver server uses with one worker, so
    // the floor and Quiver pay the same scheduling costs.
    let mut rt = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(args.threads);
        b
    };
    let rt = rt
        .enable_all()
        .build()
        .map_err(io("starting the echo runtime"))?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(io(format!("binding the echo port {}", args.listen)))?;
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let svc = FeatureStoreServer::new(Echo { answer })
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(usize::MAX);
        tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .add_service(svc)
            .serve_with_incoming(incoming)
            .await
            .map_err(|e| BenchError::InvalidArgument(format!("the echo server stopped: {e}")))
    })
}

/// How `grpc` runs the echo process.
#[derive(Debug, Clone)]
struct EchoSpec {
    answer: PathBuf,
    threads: usize,
    cpus: Option<String>,
}

impl ServerSpec for EchoSpec {
    const NAME: &'static str = "quiver-bench echo-serve";
    const READY: &'static str = "answering";

    fn start_timeout(&self) -> Duration {
        Duration::from_secs(30)
    }

    fn cpus(&self) -> Option<&str> {
        self.cpus.as_deref()
    }

    fn command(
        &self,
        dir: &quiver_testkit::TempDir,
        addr: std::net::SocketAddr,
    ) -> Result<(std::process::Command, PathBuf)> {
        let exe = std::env::current_exe().map_err(io("finding quiver-bench itself"))?;
        let mut cmd = std::process::Command::new(exe);
        cmd.arg("echo-serve")
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--answer")
            .arg(&self.answer)
            .arg("--threads")
            .arg(self.threads.to_string());
        Ok((cmd, dir.join("echo.log")))
    }

    async fn ready(addr: std::net::SocketAddr) -> bool {
        let Ok(mut c) = Connect::new(format!("http://{addr}"))
            .connect_timeout(Duration::from_secs(1))
            .request_timeout(Some(Duration::from_secs(2)))
            .native()
            .await
        else {
            return false;
        };
        c.get_online_features(pb::GetOnlineFeaturesRequest::default())
            .await
            .is_ok()
    }
}
