//! `quiver-bench overload`: what a server does when offered far more concurrent reads than
//! its `max_concurrent_requests`. A burst of N reads (each `batch` users × `features`) is fired
//! at once over a few HTTP/2 connections; the harness counts the answers by code and samples
//! the server's resident memory during the burst and after it settles.
//!
//! Two servers in the same run, on the same data: one with the limit under test, one whose
//! limit is above any burst (nothing can be shed), the baseline that shows what the offered
//! load costs when nothing bounds it. Bounded: every burst is finite and every read has a
//! deadline.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tonic::Code;

use crate::clients::native::{load_snapshot, read_request, stage};
use crate::clients::procs::{quiver_binary, QuiverClients, QuiverServer, QuiverSpec};
use crate::clients::{block_on, build_snapshots, write_registry};
use crate::dataset::{feature_refs, Data, VIEW};
use crate::harness::args::ServerArgs;
use crate::harness::host::now_secs;
use crate::harness::report::{median_of, Table};
use crate::scratch::scratch_dir;
use crate::{BenchError, Result};

/// Flags of `quiver-bench overload`.
#[derive(Debug, Clone, Args)]
#[command(mut_arg("seed", |a| a.help("Seed of the dataset and the key choice")))]
pub struct OverloadArgs {
    /// Users loaded into `user_stats`.
    #[arg(long, default_value_t = 100_000)]
    pub entities: u64,
    /// Users per read.
    #[arg(long, default_value_t = 1_000)]
    pub batch: usize,
    /// Features per read: the first N of `user_stats` (1 to 20).
    #[arg(long, default_value_t = 20)]
    pub features: usize,
    /// Burst sizes (reads fired at once), comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [2_000usize, 4_000])]
    pub bursts: Vec<usize>,
    /// The server's `max_concurrent_requests` under test.
    #[arg(long, default_value_t = 8)]
    pub max_concurrent: usize,
    /// Times each burst is fired (the table reports medians).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// HTTP/2 connections the burst is spread over.
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
    /// Seconds to wait after a burst before reading the settled memory.
    #[arg(long, default_value_t = 3.0)]
    pub settle: f64,
    /// Small and quick: 10k users, bursts of 200 and 400, one repeat.
    #[arg(long)]
    pub smoke: bool,
    #[command(flatten)]
    /// Flags every server workload shares.
    pub common: ServerArgs,
}

/// Runs `quiver-bench overload`.
pub fn run_overload(args: &OverloadArgs) -> Result<()> {
    let mut args = args.clone();
    if args.smoke {
        args.entities = 10_000;
        args.bursts = vec![200, 400];
        args.repeats = 1;
        args.settle = 1.0;
    }
    if args.features == 0 || args.features > 20 || args.batch == 0 || args.repeats == 0 {
        return Err(BenchError::InvalidArgument(
            "--features must be 1 to 20, --batch and --repeats positive".into(),
        ));
    }
    block_on(2, overload(args))
}

/// One fired burst.
#[derive(Debug, Clone, Copy, Default)]
struct Burst {
    ok: u64,
    shed: u64,
    other: u64,
    seconds: f64,
    peak_rss: u64,
    settled_rss: u64,
}

async fn overload(args: OverloadArgs) -> Result<()> {
    let bin = quiver_binary(args.common.quiver_bin.as_deref(), true)?;
    let work = scratch_dir(args.common.dir.as_deref(), "overload")?;
    let (registry_path, registry) = write_registry(&work)?;
    let data = Data::new(args.common.seed, args.entities, now_secs());
    let snaps = build_snapshots(&work, &registry, &data, false).await?;
    let biggest = args.bursts.iter().copied().max().unwrap_or(1);
    let mut results = Vec::new();
    for (label, limit) in [("limited", args.max_concurrent), ("unbounded", biggest + 1)] {
        let spec = QuiverSpec {
            bin: bin.clone(),
            registry: registry_path.clone(),
            fsync: "never".into(),
            worker_threads: 2,
            start_timeout: Duration::from_secs(300),
            // Overload measures memory under bursts, not speed per core.
            cpus: None,
            extra_config: format!(
                "max_concurrent_requests = {limit}\nmax_entities_per_request = {}\n\
                 request_timeout_ms = 60000",
                args.batch.max(10_000)
            ),
        };
        let server = QuiverServer::start(spec, args.common.dir.as_deref(), "overload").await?;
        let staged = server.scratch("user_stats.snap");
        stage(&snaps.stats, &staged)?;
        let clients = server.clients(args.connections).await?;
        load_snapshot(&mut clients.get(0), VIEW, &staged).await?;
        tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
        let idle = crate::mem::rss_of_proc(server.proc())?;
        for &n in &args.bursts {
            let mut runs = Vec::new();
            for r in 0..args.repeats {
                eprintln!("{label} (max_concurrent_requests = {limit}): burst of {n}, run {r}");
                runs.push(fire(&server, &clients, &args, &data, n, r as u64).await?);
            }
            results.push((label, limit, n, idle, runs));
        }
        drop(clients);
        drop(server);
    }

    let mib = |b: f64| b / (1 << 20) as f64;
    let med = |runs: &[Burst], f: fn(&Burst) -> f64| median_of(runs, f);
    let mut t = Table::new([
        "server",
        "limit",
        "burst",
        "ok",
        "shed",
        "other",
        "idle MiB",
        "peak MiB",
        "settled MiB",
        "peak/idle",
        "s",
    ]);
    let mut json_rows = Vec::new();
    for (label, limit, n, idle, runs) in &results {
        let peak = med(runs, |b| b.peak_rss as f64);
        let settled = med(runs, |b| b.settled_rss as f64);
        let row = json!({
            "server": label, "max_concurrent_requests": limit, "burst": n,
            "ok": med(runs, |b| b.ok as f64), "shed": med(runs, |b| b.shed as f64),
            "other": med(runs, |b| b.other as f64), "idle_rss_bytes": idle,
            "peak_rss_bytes": peak, "settled_rss_bytes": settled,
            "peak_over_idle": peak / *idle as f64, "seconds": med(runs, |b| b.seconds),
        });
        t.row([
            label.to_string(),
            limit.to_string(),
            n.to_string(),
            format!("{:.0}", med(runs, |b| b.ok as f64)),
            format!("{:.0}", med(runs, |b| b.shed as f64)),
            format!("{:.0}", med(runs, |b| b.other as f64)),
            format!("{:.0}", mib(*idle as f64)),
            format!("{:.0}", mib(peak)),
            format!("{:.0}", mib(settled)),
            format!("{:.2}", peak / *idle as f64),
            format!("{:.2}", med(runs, |b| b.seconds)),
        ]);
        json_rows.push(row);
    }
    println!(
        "overload: {} users, reads of {} users x {} features, {} repeats (medians), {} \
         connections",
        args.entities, args.batch, args.features, args.repeats, args.connections
    );
    print!("{}", t.render());
    println!(
        "{}",
        json!({"bench": "overload", "entities": args.entities, "batch": args.batch,
               "features": args.features, "repeats": args.repeats, "rows": json_rows})
    );
    Ok(())
}

/// Fires one burst of `n` reads at once and waits for every answer (each has a deadline),
/// sampling the server's memory meanwhile.
async fn fire(
    server: &QuiverServer,
    clients: &QuiverClients,
    args: &OverloadArgs,
    data: &Data,
    n: usize,
    run: u64,
) -> Result<Burst> {
    let refs = feature_refs(args.features, false);
    let users = data.entities();
    let peak = Arc::new(AtomicU64::new(crate::mem::rss_of_proc(server.proc())?));
    let done = Arc::new(AtomicBool::new(false));
    let pid = server.proc().pid();
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                if let Some(rss) = crate::mem::rss_of(pid) {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let started = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let mut c = clients.get(i);
            let mut rng = SmallRng::seed_from_u64(args.common.seed ^ (run << 40) ^ (i as u64));
            let ids: Vec<i64> = (0..args.batch)
                .map(|_| data.stats.user_id(rng.random_range(0..users)))
                .collect();
            let req = read_request(&refs, &ids);
            tokio::spawn(async move {
                let mut req = tonic::Request::new(req);
                req.set_timeout(Duration::from_secs(60));
                match c.get_online_features(req).await {
                    Ok(_) => Code::Ok,
                    Err(s) => s.code(),
                }
            })
        })
        .collect();
    let mut b = Burst::default();
    for t in tasks {
        match t.await {
            Ok(Code::Ok) => b.ok += 1,
            Ok(Code::ResourceExhausted) => b.shed += 1,
            _ => b.other += 1,
        }
    }
    b.seconds = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    b.peak_rss = peak.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
    b.settled_rss = crate::mem::rss_of_proc(server.proc())?;
    Ok(b)
}
