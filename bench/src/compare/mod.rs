//! `quiver-bench compare`: Quiver against Redis on the same machine, in one run.
//!
//! One run starts everything itself on loopback: the release `quiver` binary and
//! `redis-server` (two instances with persistence off, one per layout, and for the write
//! comparison a Quiver with `fsync = "always"` and a Redis with `appendfsync always`), loads
//! the same dataset into each, runs workloads W1-W7 with the same clients, key
//! sequences and concurrency, checks answers against the dataset, and writes the report.
//! Every fairness choice is listed in docs/benchmarks.md.
//!
//! # Layout
//! - `bulk`: mass insertion and full scans of Redis (W5), the sample checked after W7.
//! - `output`: the table, `report.md`, `report.json`, SVG charts and the JSON line.

mod bulk;
mod output;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};

use crate::clients::native::{self, check_users, load_snapshot, sample_ids, scan, stage};
use crate::clients::procs::{
    check_redis_installed, quiver_binary, QuiverServer, QuiverSpec, RedisServer, RedisSpec,
};
use crate::clients::runner::{measure, Contender, Load, Shared, Target, Workload};
use crate::clients::{block_on, build_snapshots, redis, write_registry};
use crate::compare::output::{LoadFigures, Machine, Measured, MemFigures, Report, RestartFigures};
use crate::dataset::{Data, EMBEDDING_VIEW, USER_STATS, VIEW};
use crate::harness::args::{DistArg, ServerArgs};
use crate::harness::host::{loadavg, now_secs};
use crate::harness::placement::{Placement, PlacementArg};
use crate::keys::{Dist, KeySpace};
use crate::mem::rss_of_proc;
use crate::scratch::scratch_dir;
use crate::{BenchError, Result};

/// The online workloads W1-W7 (W8, offline, is not a Redis comparison) plus the durable write
/// comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum WorkloadId {
    /// Single entity × 20 features.
    W1,
    /// Batch 100 × 20 features.
    W2,
    /// Batch 1000 × 21 features including the 64-dim embedding.
    W3,
    /// 90% W2 reads, 10% writes of 100 rows.
    W4,
    /// Bulk load time until served.
    W5,
    /// Memory per entity.
    W6,
    /// Restart until serving.
    W7,
    /// Writes with fsync on every acknowledgement: Quiver `fsync = always` vs Redis
    /// `appendfsync always`.
    Write,
}

impl WorkloadId {
    /// Name in reports.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::W1 => "W1",
            Self::W2 => "W2",
            Self::W3 => "W3",
            Self::W4 => "W4",
            Self::W5 => "W5",
            Self::W6 => "W6",
            Self::W7 => "W7",
            Self::Write => "write",
        }
    }

    /// What the workload's requests do (for the closed-loop ones).
    fn workload(self, write_batch: usize) -> Option<Workload> {
        let all = USER_STATS.len();
        let w = |batch, embedding, write_percent| Workload {
            batch,
            features: all,
            embedding,
            write_percent,
        };
        match self {
            Self::W1 => Some(w(1, false, 0)),
            Self::W2 => Some(w(100, false, 0)),
            Self::W3 => Some(w(1000, true, 0)),
            Self::W4 => Some(w(100, false, 10)),
            Self::Write => Some(w(write_batch, false, 100)),
            Self::W5 | Self::W6 | Self::W7 => None,
        }
    }
}

/// Flags of `quiver-bench compare`.
#[derive(Debug, Clone, Args)]
#[command(mut_arg("dir", |a| a.help(
    "Parent of the servers' scratch directories (default: the system temp dir)"
)))]
pub struct CompareArgs {
    /// Users loaded into every system [default: 1000000; 10000 with --smoke].
    #[arg(long)]
    pub entities: Option<u64>,
    /// Seconds per measurement (each workload, system, key distribution and concurrency)
    /// [default: 5; 0.15 with --smoke].
    #[arg(long)]
    pub duration: Option<f64>,
    /// Client concurrencies (requests in flight), comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 8, 64])]
    pub concurrency: Vec<usize>,
    /// Workloads to run, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',',
          default_values = ["w1", "w2", "w3", "w4", "w5", "w6", "w7", "write"])]
    pub workloads: Vec<WorkloadId>,
    /// Key distributions.
    #[arg(long, value_enum, default_value_t = DistArg::Both)]
    pub dist: DistArg,
    /// Every workload on 10k users with short measurements: a check that the harness works
    /// (CI runs it), not a measurement.
    #[arg(long)]
    pub smoke: bool,
    /// Quiver server worker threads (default: 1 when pinned, one thread on its one core, as
    /// Redis; 2 when shared, see `quiver-bench grpc`).
    #[arg(long)]
    pub server_threads: Option<usize>,
    /// Redis `io-threads` (1 is Redis's default; more only helps with spare cores).
    #[arg(long, default_value_t = 1)]
    pub redis_io_threads: usize,
    /// Client runtime threads (shared by every system's clients).
    #[arg(long, default_value_t = 2)]
    pub client_threads: usize,
    /// Rows per write request (W4 writes and the write comparison).
    #[arg(long, default_value_t = 100)]
    pub write_batch: usize,
    /// HTTP/2 connections Quiver's clients share (default: min(concurrency, 8); Redis gets
    /// one connection per request in flight, since RESP has no multiplexing).
    #[arg(long)]
    pub quiver_connections: Option<usize>,
    #[command(flatten)]
    /// Flags every server workload shares.
    pub common: ServerArgs,
    /// Servers on one CPU and the harness on the others (`pinned`, the default with two or
    /// more CPUs), or no pinning (`shared`).
    #[arg(long, value_enum)]
    pub placement: Option<PlacementArg>,
    /// Where `<timestamp>/report.{md,json}` and the charts go (default: bench/results).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Users whose every value is compared with the dataset after a load and after a restart.
const VALIDATE_USERS: u64 = 2_000;
/// Batch of the full scans after loading.
const SCAN_BATCH: usize = 1000;
/// Every this many scan batches is compared value by value.
const SCAN_CHECK_EVERY: u64 = 8;

/// The settings a run resolved from its flags.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) entities: u64,
    pub(crate) duration: f64,
    pub(crate) warmup: f64,
    pub(crate) concurrency: Vec<usize>,
    pub(crate) dists: Vec<Dist>,
    pub(crate) workloads: Vec<WorkloadId>,
    pub(crate) smoke: bool,
    pub(crate) server_threads: usize,
    pub(crate) redis_io_threads: usize,
    pub(crate) client_threads: usize,
    pub(crate) write_batch: usize,
    pub(crate) seed: u64,
    pub(crate) quiver_connections: usize,
}

impl CompareArgs {
    fn settings(&self) -> Result<Settings> {
        let server_threads = match self.server_threads {
            Some(t) => t,
            None if Placement::resolve(self.placement)?.server_cpus().is_some() => 1,
            None => 2,
        };
        let entities = self
            .entities
            .unwrap_or(if self.smoke { 10_000 } else { 1_000_000 });
        let duration = self.duration.unwrap_or(if self.smoke { 0.15 } else { 5.0 });
        let mut concurrency = self.concurrency.clone();
        concurrency.sort_unstable();
        concurrency.dedup();
        let mut workloads = self.workloads.clone();
        workloads.sort_unstable();
        workloads.dedup();
        if entities < 1000
            || entities > u64::from(u32::MAX)
            || !(duration > 0.0 && duration <= 3600.0)
            || concurrency.is_empty()
            || concurrency.iter().any(|&c| c == 0 || c > 1024)
            || workloads.is_empty()
            || !(1..=10_000).contains(&self.write_batch)
            || !(1..=64).contains(&server_threads)
            || !(1..=16).contains(&self.redis_io_threads)
            || !(1..=64).contains(&self.client_threads)
        {
            return Err(BenchError::InvalidArgument(
                "entities 1000..2^32, duration (0, 3600] s, concurrency 1..1024, \
                 write batch 1..10000, threads 1..64, at least one workload"
                    .into(),
            ));
        }
        let max_c = concurrency.iter().copied().max().unwrap_or(1);
        Ok(Settings {
            entities,
            duration,
            warmup: (duration / 5.0).min(1.0),
            concurrency,
            dists: self.dist.dists(),
            workloads,
            smoke: self.smoke,
            server_threads,
            redis_io_threads: self.redis_io_threads,
            client_threads: self.client_threads,
            write_batch: self.write_batch,
            seed: self.common.seed,
            quiver_connections: self.quiver_connections.unwrap_or(max_c.min(8)).max(1),
        })
    }
}

/// Runs the comparison; prints progress on stderr, the table and (last) one JSON line on
/// stdout, and writes the report directory.
pub fn run_compare(args: &CompareArgs) -> Result<()> {
    let settings = args.settings()?;
    let redis_version = check_redis_installed()?;
    let threads = settings.client_threads;
    block_on(threads, compare(args.clone(), settings, redis_version))
}

/// Progress on stderr: `[k/n] what`.
#[derive(Debug)]
struct Progress {
    done: usize,
    total: usize,
    start: Instant,
}

impl Progress {
    fn step(&mut self, what: &str) {
        self.done += 1;
        eprintln!(
            "[{:>3}/{}] {:>6.1}s  {what}",
            self.done.min(self.total),
            self.total,
            self.start.elapsed().as_secs_f64()
        );
    }
    fn note(&self, what: &str) {
        eprintln!(
            "          {:>6.1}s  {what}",
            self.start.elapsed().as_secs_f64()
        );
    }
}

async fn compare(args: CompareArgs, s: Settings, redis_version: String) -> Result<()> {
    let started = Instant::now();
    let placement = Placement::resolve(args.placement)?;
    // The machine is read first: once pinned, this process sees only the harness's CPUs.
    let machine = Machine::read(redis_version, placement.clone());
    placement.pin_harness()?;
    let cpus = placement.server_cpus().map(str::to_owned);
    let closed: Vec<WorkloadId> = s
        .workloads
        .iter()
        .copied()
        .filter(|w| w.workload(s.write_batch).is_some())
        .collect();
    let systems = [
        Contender::Quiver,
        Contender::RedisFeast,
        Contender::RedisBlob,
    ];
    let per_point = s.dists.len() * s.concurrency.len() * systems.len();
    let mut progress = Progress {
        done: 0,
        total: closed.len() * per_point + 6,
        start: started,
    };

    if cfg!(debug_assertions) && !s.smoke {
        eprintln!(
            "warning: this harness is a debug build; its clients are slow and the figures \
             are not meaningful (use cargo run --release)"
        );
    }
    // A smoke run checks the harness, not speed: it uses the quiver binary of the harness's
    // own build profile, so CI reuses the debug build its tests made.
    let bin = quiver_binary(args.common.quiver_bin.as_deref(), !s.smoke)?;
    let work = scratch_dir(args.common.dir.as_deref(), "compare")?;
    let (registry_path, registry) = write_registry(&work)?;
    let data = Data::new(s.seed, s.entities, now_secs());
    let shared = Arc::new(Shared {
        space: KeySpace::new(s.entities, s.seed ^ 0x7065_726d)?,
        data: data.clone(),
    });
    let quiver_spec = |fsync: &str| QuiverSpec {
        bin: bin.clone(),
        registry: registry_path.clone(),
        fsync: fsync.into(),
        worker_threads: s.server_threads,
        start_timeout: Duration::from_secs(600),
        extra_config: String::new(),
        cpus: cpus.clone(),
    };
    let redis_spec = |aof_always| RedisSpec {
        aof_always,
        start_timeout: Duration::from_secs(600),
        io_threads: s.redis_io_threads,
        cpus: cpus.clone(),
    };
    let parent = args.common.dir.as_deref();
    let mut report = Report::new(&s, machine);
    let wants = |w: WorkloadId| s.workloads.contains(&w);
    let needs_data = s.workloads.iter().any(|&w| w != WorkloadId::Write);

    if needs_data {
        // Persistence off everywhere: Quiver's WAL is written but never fsynced, as Redis
        // runs with `save ""` and `appendonly no`.
        let mut quiver =
            QuiverServer::start(quiver_spec("never"), parent, "compare-quiver").await?;
        let mut feast =
            RedisServer::start(redis_spec(false), parent, "compare-redis-feast").await?;
        let blob = RedisServer::start(redis_spec(false), parent, "compare-redis-blob").await?;
        // Process RSS of quiver, redis-feast and redis-blob.
        let rss = |q: &QuiverServer, f: &RedisServer, b: &RedisServer| -> Result<[u64; 3]> {
            Ok([
                rss_of_proc(q.proc())?,
                rss_of_proc(f.proc())?,
                rss_of_proc(b.proc())?,
            ])
        };
        let rss0 = rss(&quiver, &feast, &blob)?;
        let used0 = [feast.used_memory().await?, blob.used_memory().await?];
        let clients = quiver.clients(s.quiver_connections).await?;
        let mut c0 = clients.get(0);

        // W5: bulk load. Each system's bulk format is prepared first (not timed, reported):
        // Quiver's snapshot files as a materializer writes them, Redis's protocol stream as
        // `redis-cli --pipe` reads it. Then the load is timed until every entity is served.
        progress.step(&format!(
            "W5: building Quiver snapshots of {} users",
            s.entities
        ));
        let snaps = build_snapshots(&work, &registry, &data, true).await?;
        let embedding_snap = snaps
            .embedding
            .clone()
            .ok_or_else(|| BenchError::Schema("the embedding snapshot was not built".into()))?;
        let staged = [
            (VIEW, quiver.scratch("user_stats.snap")),
            (EMBEDDING_VIEW, quiver.scratch("user_embedding.snap")),
        ];
        stage(&snaps.stats, &staged[0].1)?;
        stage(&embedding_snap, &staged[1].1)?;
        let t = Instant::now();
        for (view, path) in &staged {
            let n = load_snapshot(&mut c0, view, path).await?;
            if n != s.entities {
                return Err(BenchError::WrongAnswer(format!(
                    "quiver loaded {n} of {} users into {view}",
                    s.entities
                )));
            }
        }
        let quiver_load = t.elapsed().as_secs_f64();
        progress.note(&format!(
            "quiver: snapshots built in {:.2} s ({} bytes), loaded in {quiver_load:.3} s",
            snaps.build_seconds, snaps.bytes
        ));
        let mut mass_insert = async |server: &RedisServer, system: Contender, layout: &str| {
            progress.step(&format!("W5: Redis mass insertion, {layout} layout"));
            let l = bulk::mass_insert(server, &data, system, true).await?;
            progress.note(&format!(
                "{}: protocol built in {:.2} s ({} bytes), loaded in {:.3} s",
                system.name(),
                l.prep_seconds,
                l.bytes,
                l.load_seconds
            ));
            Ok::<_, BenchError>(l)
        };
        let feast_load = mass_insert(&feast, Contender::RedisFeast, "Feast").await?;
        let blob_load = mass_insert(&blob, Contender::RedisBlob, "blob").await?;
        report.load = Some(LoadFigures {
            quiver_seconds: quiver_load,
            quiver_prep_seconds: snaps.build_seconds,
            quiver_bytes: snaps.bytes,
            feast: feast_load,
            blob: blob_load,
        });

        // Every user is read back from every system; a sample value by value. This also
        // touches every page Quiver maps, so W6's RSS counts the whole dataset.
        progress.step("checking every user in every system");
        let ids = sample_ids(&data, VALIDATE_USERS);
        check_users(&mut c0, &data, &ids, USER_STATS.len(), true, 100).await?;
        let q_scan = scan(&mut c0, &data, true, SCAN_BATCH, SCAN_CHECK_EVERY).await?;
        let (batch, every) = (SCAN_BATCH, SCAN_CHECK_EVERY);
        let f_scan = bulk::scan(&feast, &data, Contender::RedisFeast, true, batch, every).await?;
        let b_scan = bulk::scan(&blob, &data, Contender::RedisBlob, false, batch, every).await?;
        progress.note(&format!(
            "full scans: quiver {:.2} s, redis-feast {:.2} s, redis-blob {:.2} s",
            q_scan.as_secs_f64(),
            f_scan.as_secs_f64(),
            b_scan.as_secs_f64()
        ));

        // W6: memory per entity.
        let rss1 = rss(&quiver, &feast, &blob)?;
        let used1 = [feast.used_memory().await?, blob.used_memory().await?];
        report.memory = Some(MemFigures {
            entities: s.entities,
            rss_before: rss0,
            rss_after: rss1,
            used_before: used0,
            used_after: used1,
            quiver_snapshot_bytes: snaps.bytes,
        });

        // W1-W4.
        for &w in closed.iter().filter(|w| **w != WorkloadId::Write) {
            let Some(wl) = w.workload(s.write_batch) else {
                continue;
            };
            let targets = [
                Target::Quiver(clients.clone(), quiver.proc().pid()),
                Target::Redis(feast.addr, feast.proc().pid(), Contender::RedisFeast),
                Target::Redis(blob.addr, blob.proc().pid(), Contender::RedisBlob),
            ];
            run_point(&mut report, &mut progress, &s, w, wl, &targets, &shared).await?;
        }

        // W7: restart to serving.
        if wants(WorkloadId::W7) {
            progress.step("W7: restart to serving");
            report.restart =
                Some(restart(&mut quiver, &mut feast, &mut c0, &data, &s, &mut progress).await?);
        }
        drop(c0);
        drop(clients);
        drop(quiver);
        drop(feast);
        drop(blob);
    }

    if wants(WorkloadId::Write) {
        // Durable writes: every acknowledgement after fsync on both sides.
        progress.step("write comparison: quiver fsync=always, redis appendfsync always");
        let quiver =
            QuiverServer::start(quiver_spec("always"), parent, "compare-quiver-fsync").await?;
        let aof = RedisServer::start(redis_spec(true), parent, "compare-redis-aof").await?;
        let clients = quiver.clients(s.quiver_connections).await?;
        let targets = [
            Target::Quiver(clients.clone(), quiver.proc().pid()),
            Target::Redis(aof.addr, aof.proc().pid(), Contender::RedisFeast),
            Target::Redis(aof.addr, aof.proc().pid(), Contender::RedisBlob),
        ];
        let wl = WorkloadId::Write.workload(s.write_batch).ok_or_else(|| {
            BenchError::InvalidArgument("the write comparison has no workload".into())
        })?;
        run_point(
            &mut report,
            &mut progress,
            &s,
            WorkloadId::Write,
            wl,
            &targets,
            &shared,
        )
        .await?;
    }
    drop(work);

    report.duration_s = started.elapsed().as_secs_f64();
    report.machine.load_after = loadavg();
    let out_root = args
        .out
        .clone()
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("results"));
    let dir = report.write(&out_root)?;
    eprintln!("report: {}", dir.display());
    println!("{}", report.table());
    println!("{}", report.json_line());
    Ok(())
}

/// Measures one closed-loop workload on every target, for every distribution and concurrency.
async fn run_point(
    report: &mut Report,
    progress: &mut Progress,
    s: &Settings,
    w: WorkloadId,
    wl: Workload,
    targets: &[Target],
    shared: &Arc<Shared>,
) -> Result<()> {
    for &dist in &s.dists {
        for &c in &s.concurrency {
            for target in targets {
                let system = target.contender();
                progress.step(&format!(
                    "{} {} {} c={c}",
                    w.name(),
                    system.name(),
                    dist.name()
                ));
                let load = Load {
                    concurrency: c,
                    dist,
                    warmup: Duration::from_secs_f64(s.warmup),
                    duration: Duration::from_secs_f64(s.duration),
                    max_requests: 50_000_000,
                    seed: s.seed,
                    rate: None,
                };
                let o = measure(target, wl, load, shared).await?;
                let l = o.latency.summary();
                progress.note(&format!(
                    "{:.0} req/s, {:.3e} values/s, p50 {:.0} us, p99 {:.0} us",
                    o.rps(),
                    o.values_per_sec(),
                    l.p50_us,
                    l.p99_us
                ));
                report.runs.push(Measured {
                    workload: w,
                    system,
                    dist,
                    concurrency: c,
                    outcome: o,
                });
            }
        }
    }
    Ok(())
}

/// W7: Quiver checkpoints, takes a WAL tail of writes, and restarts (snapshots + WAL replay);
/// Redis takes the same writes, saves an RDB and restarts loading it. Both are stopped with
/// SIGTERM and timed from spawn until they serve (gRPC health SERVING; PING answering PONG
/// rather than LOADING); a sample is then checked on both.
async fn restart(
    quiver: &mut QuiverServer,
    feast: &mut RedisServer,
    c0: &mut quiver_server::client::NativeClient,
    data: &Data,
    s: &Settings,
    progress: &mut Progress,
) -> Result<RestartFigures> {
    let t = Instant::now();
    native::checkpoint(c0).await?;
    let checkpoint_seconds = t.elapsed().as_secs_f64();
    // The WAL tail: 1% of the users (at least one batch) rewritten after the checkpoint.
    let tail_rows = (s.entities / 100).max(100).min(s.entities);
    let tail: Vec<i64> = (0..tail_rows).map(|i| data.stats.user_id(i)).collect();
    let mut feast_conn = feast.conn().await?;
    for chunk in tail.chunks(100) {
        c0.write_features(native::write_request(data, chunk)?)
            .await
            .map_err(|st| native::status_err("WriteFeatures", &st))?;
        redis::hset_rows(&mut feast_conn, data, chunk).await?;
    }
    drop(feast_conn);
    let data_bytes = quiver.data_bytes()?;
    let quiver_seconds = quiver
        .restart(quiver_testkit::Signal::Term)
        .await?
        .as_secs_f64();
    progress.note(&format!(
        "quiver: checkpoint {checkpoint_seconds:.2} s, restart to SERVING {quiver_seconds:.3} s          ({data_bytes} bytes of data directory)"
    ));
    let t = Instant::now();
    let redis_seconds = feast.save_and_restart().await?.as_secs_f64();
    let redis_total = t.elapsed().as_secs_f64();
    progress.note(&format!(
        "redis-feast: SAVE + restart {redis_total:.2} s, restart to PONG {redis_seconds:.3} s          ({} bytes of RDB)",
        feast.rdb_bytes()
    ));
    // Both still serve the dataset.
    let clients = quiver.clients(1).await?;
    *c0 = clients.get(0);
    let ids = sample_ids(data, VALIDATE_USERS);
    check_users(c0, data, &ids, USER_STATS.len(), true, 100).await?;
    check_users(c0, data, &tail, USER_STATS.len(), false, 100).await?;
    bulk::check_sample(feast, data, &ids).await?;
    Ok(RestartFigures {
        quiver_seconds,
        quiver_checkpoint_seconds: checkpoint_seconds,
        quiver_data_bytes: data_bytes,
        redis_seconds,
        redis_save_and_restart_seconds: redis_total,
        redis_rdb_bytes: feast.rdb_bytes(),
        tail_rows,
    })
}
