//! The offline benchmark (W8): Quiver's point-in-time join (`quiver historical`)
//! against DuckDB's `ASOF LEFT JOIN` on the same Parquet files, in one run, with a row-by-row
//! check that both produced the same training set; and `materialize` of the same history into
//! a snapshot.
//!
//! # Data
//! Generated from a seed into a scratch directory that is removed at the end (also on error):
//! - `history.parquet`: `--history-rows` rows of view `user_stats` in random order (not sorted
//!   by entity or time), uniform over `--entities` users, event times in microseconds over the
//!   90 days before 2025-01-01 UTC. `--features` columns (8 by default: counts, ratios, money
//!   amounts, a country code and a flag, the bench dataset's shapes) with 1 % nulls, the key
//!   `user_id` and `event_timestamp`; with `--created`, also a `created` column declared as the
//!   view's created timestamp. Snappy, row groups of 1 Mi rows, like pyarrow's defaults.
//! - `entities.parquet`: `--entity-rows` rows of `user_id`, `event_timestamp` and a `label`, in
//!   random order. About 1 % of the keys have no history, 0.1 % of rows have a null key or
//!   time, and 5 % of the times sit exactly on a history row's event time or on a TTL boundary
//!   of one (`t == e`, `t == e + ttl`, one microsecond past it), so the point-in-time rules' edges are
//!   exercised, not just the easy middle.
//! - `registry.toml`: the view with a 7-day TTL, one feature with 1 day and one without bound.
//!
//! No two history rows of one user share an event time (the low digits of each time count
//! that user's rows), because `ASOF` picks an arbitrary row among equal times and Quiver picks
//! by created time then dataset order: with ties the two answers could differ legitimately.
//!
//! # Measurement
//! Each measured step runs in its own process, so that its peak RSS (`VmHWM`, read by the
//! process itself at the end) is its own: the join and the materialization in this binary
//! started again with a hidden `--worker` flag, calling the same library functions as
//! `quiver historical` and `quiver materialize --out`; DuckDB in `bench/scripts/duckdb_asof.py`
//! (compiled in, written to the scratch directory). Quiver's time is the worker process's wall
//! time, start to exit; DuckDB's is its query's (connect and `COPY`), without the Python
//! interpreter's start and `import duckdb`, so the ratio does not favour Quiver. DuckDB's peak
//! RSS includes the interpreter (reported separately as its baseline). A second process of the
//! script then compares the two outputs row by row (by entity file row number) and value by
//! value; a difference voids the timings and fails the run after the report is printed.
//!
//! # Layout
//! - `data`: the generated history, entity rows and registry.
//! - `worker`: the measured child processes and their peak RSS.
//! - `duckdb`: DuckDB's side, through `bench/scripts/duckdb_asof.py`.
//! - `report`: the table and the JSON line.

mod data;
mod duckdb;
mod report;
#[cfg(test)]
mod tests;
mod worker;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};

use crate::harness::args::in_range;
use crate::harness::host::{loadavg, scratch_on};
use crate::{BenchError, Result};

use data::{generate, write_file, write_registry};
use duckdb::{compare_outputs, duckdb_spec, probe_duckdb, run_duckdb_join};
use report::Report;
use worker::{run_worker, run_worker_process};

/// Flags of `quiver-bench offline`.
#[derive(Debug, Clone, Args)]
pub struct OfflineArgs {
    /// History rows [default: 20000000; 200000 with --smoke].
    #[arg(long)]
    pub history_rows: Option<u64>,
    /// Entity rows to join [default: 2000000; 20000 with --smoke].
    #[arg(long)]
    pub entity_rows: Option<u64>,
    /// Distinct users in the history [default: 1000000; 10000 with --smoke].
    #[arg(long)]
    pub entities: Option<u64>,
    /// Feature columns (1 to 20).
    #[arg(long, default_value_t = 8)]
    pub features: usize,
    /// Small sizes that run in seconds.
    #[arg(long)]
    pub smoke: bool,
    /// Add a created-timestamp column and declare it in the registry.
    #[arg(long)]
    pub created: bool,
    /// Runs of each join (alternating Quiver, DuckDB); medians are reported.
    #[arg(long, default_value_t = 1)]
    pub repeats: usize,
    /// Threads for both systems (0: one per core for Quiver, DuckDB's default).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Seed of the data.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Parent of the scratch directory (default: the system temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Python 3 interpreter with the duckdb module.
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// Skip DuckDB (report Quiver alone).
    #[arg(long)]
    pub no_duckdb: bool,
    /// Longest any one measured process may run, seconds (it is killed after that).
    #[arg(long, default_value_t = 1800)]
    pub timeout: u64,
    /// Internal: run one measured step in this process and print its figures.
    #[arg(long, hide = true, value_enum)]
    pub worker: Option<Worker>,
    /// Internal: the worker's scratch directory.
    #[arg(long, hide = true)]
    pub worker_dir: Option<PathBuf>,
    /// Internal: the worker's output file.
    #[arg(long, hide = true)]
    pub worker_out: Option<PathBuf>,
}

/// A measured step run in a child process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Worker {
    /// The point-in-time join, as `quiver historical`.
    Join,
    /// The snapshot of the view, as `quiver materialize --out`.
    Materialize,
}

/// Goal: Quiver's join time at most this share of DuckDB's.
const TARGET_RATIO: f64 = 0.8;

/// The bench dataset's features in the order W8 takes them: the first 8 cover every type and
/// shape, the rest follow in the view's order.
const W8_ORDER: [&str; 20] = [
    "txn_count_7d",
    "failed_logins_24h",
    "click_through_rate",
    "refund_ratio",
    "avg_amount_30d",
    "total_amount_90d",
    "country",
    "is_premium",
    "txn_count_1h",
    "txn_count_24h",
    "txn_count_30d",
    "chargebacks_90d",
    "sessions_7d",
    "support_tickets_30d",
    "conversion_rate",
    "weekend_ratio",
    "night_ratio",
    "max_amount_30d",
    "account_age_days",
    "has_2fa",
];

const KEY: &str = "user_id";
const TS: &str = "event_timestamp";
const HISTORY_FILE: &str = "history.parquet";
const ENTITIES_FILE: &str = "entities.parquet";
const REGISTRY_FILE: &str = "registry.toml";
const SCRIPT: &str = include_str!("../../scripts/duckdb_asof.py");

/// Most history rows, entity rows and users (event times stay unique per user below 1000 rows
/// each; sizes are bounded so every loop is).
const MAX_ROWS: u64 = 1 << 32;
/// Most users (the generator keeps a 4-byte row count per user).
const MAX_ENTITIES: u64 = 1 << 28;

/// Runs `quiver-bench offline` (or, with `--worker`, one of its measured steps).
pub fn run_offline(args: &OfflineArgs) -> Result<()> {
    if let Some(w) = args.worker {
        return run_worker(args, w);
    }
    let sizes = Sizes::resolve(args)?;
    let load_start = loadavg();
    let (scratch, filesystem) = scratch_on(args.dir.as_deref(), "offline")?;

    let started = Instant::now();
    let registry = write_registry(scratch.path(), args)?;
    let gen = generate(scratch.path(), &sizes, args)?;
    let gen_s = started.elapsed().as_secs_f64();
    eprintln!(
        "generated {} history rows ({} bytes) and {} entity rows ({} bytes) in {gen_s:.1} s",
        sizes.history_rows, gen.history_bytes, sizes.entity_rows, gen.entities_bytes
    );

    let duckdb = if args.no_duckdb {
        Err("skipped (--no-duckdb)".to_owned())
    } else {
        probe_duckdb(&args.python)
    };
    if let Err(why) = &duckdb {
        eprintln!("DuckDB comparison: {why}; reporting Quiver alone");
    }
    let script = scratch.join("duckdb_asof.py");
    let spec = scratch.join("duckdb_spec.json");
    if duckdb.is_ok() {
        write_file(&script, SCRIPT.as_bytes())?;
        write_file(&spec, duckdb_spec(&registry)?.to_string().as_bytes())?;
    }
    let timeout = Duration::from_secs(args.timeout.max(1));

    let mut quiver = Vec::with_capacity(args.repeats);
    let mut duck = Vec::with_capacity(args.repeats);
    for rep in 0..args.repeats {
        let out = scratch.join(format!("quiver-{rep}.parquet"));
        eprintln!("run {}: quiver historical", rep + 1);
        let q = run_worker_process(scratch.path(), Worker::Join, &out, args.threads, timeout)?;
        eprintln!(
            "  {:.2} s, peak RSS {:.0} MB",
            q.wall_s,
            q.peak_rss_mb.unwrap_or(f64::NAN)
        );
        if q.count("rows") != Some(sizes.entity_rows) {
            return Err(BenchError::WrongAnswer(format!(
                "quiver historical wrote {:?} rows for {} entity rows",
                q.count("rows"),
                sizes.entity_rows
            )));
        }
        quiver.push(q);
        if duckdb.is_ok() {
            let out = scratch.join(format!("duckdb-{rep}.parquet"));
            eprintln!("run {}: DuckDB ASOF LEFT JOIN", rep + 1);
            let d = run_duckdb_join(args, &scratch, &script, &spec, &out, timeout)?;
            eprintln!(
                "  {:.2} s (query), peak RSS {:.0} MB",
                d.figure("seconds").unwrap_or(f64::NAN),
                d.peak_rss_mb.unwrap_or(f64::NAN)
            );
            duck.push(d);
        }
    }

    let comparison = match duckdb {
        Ok(_) => {
            eprintln!("comparing the two training sets row by row");
            Some(compare_outputs(
                args,
                &scratch,
                &script,
                &registry,
                &scratch.join("quiver-0.parquet"),
                &scratch.join("duckdb-0.parquet"),
                timeout,
            )?)
        }
        Err(_) => None,
    };

    eprintln!("quiver materialize --out (the same history)");
    let snap = scratch.join("user_stats.qsnap");
    let mat = run_worker_process(
        scratch.path(),
        Worker::Materialize,
        &snap,
        args.threads,
        timeout,
    )?;
    if mat.count("entities") != Some(gen.distinct_keys) {
        return Err(BenchError::WrongAnswer(format!(
            "materialize wrote {:?} entities, the history has {}",
            mat.count("entities"),
            gen.distinct_keys
        )));
    }

    let report = Report {
        args,
        sizes,
        gen,
        gen_s,
        filesystem,
        load_start,
        load_end: loadavg(),
        duckdb_status: duckdb,
        quiver,
        duck,
        comparison,
        mat,
    };
    println!("{}", report.table());
    println!("{}", report.json());
    match report.identical() {
        Some(false) => Err(BenchError::WrongAnswer(
            "Quiver's and DuckDB's training sets differ (see mismatches above); the timings are \
             void"
                .into(),
        )),
        _ => Ok(()),
    }
}

/// The run's sizes after `--smoke` defaults.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    history_rows: u64,
    entity_rows: u64,
    entities: u64,
}

impl Sizes {
    fn resolve(args: &OfflineArgs) -> Result<Self> {
        let (h, e, n) = if args.smoke {
            (200_000, 20_000, 10_000)
        } else {
            (20_000_000, 2_000_000, 1_000_000)
        };
        let s = Self {
            history_rows: args.history_rows.unwrap_or(h),
            entity_rows: args.entity_rows.unwrap_or(e),
            entities: args.entities.unwrap_or(n),
        };
        for (flag, v, max) in [
            ("--history-rows", s.history_rows, MAX_ROWS),
            ("--entity-rows", s.entity_rows, MAX_ROWS),
            ("--entities", s.entities, MAX_ENTITIES),
        ] {
            in_range(flag, v, 1, max)?;
        }
        in_range("--features", args.features, 1, W8_ORDER.len())?;
        in_range("--repeats", args.repeats, 1, 100)?;
        Ok(s)
    }
}
