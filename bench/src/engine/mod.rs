//! The engine micro benchmark: W2 (batched gets) in-process, and W6 (memory).
//!
//! It loads the `user_stats` dataset through [`Store::write`], checks that reads return exactly
//! the dataset, then times batched gets against a raw baseline in the same process: a
//! `HashMap<u64, Vec<f32>>` holding the same entities, from which the same number of values per
//! entity is copied into an output buffer. Both are given the same key sequence, in alternating
//! time slices so that a noisy neighbour on a shared machine hits both alike.
//!
//! What is timed per batch: for the engine, encoding the batch's keys into a reused
//! [`KeyBatch`](quiver_engine::KeyBatch) plus [`Store::get`] into a reused
//! [`GetResult`](quiver_engine::GetResult) (values, statuses and event times, TTL checked); for
//! the baseline, the hash lookups and the copies. Choosing keys is not timed.
//!
//! With `--compression`, the view is served from a base snapshot instead; see `packed`. The
//! raw baseline of both paths is in `baseline`.

mod baseline;
mod packed;

use std::sync::Arc;
use std::time::Instant;

use clap::{Args, ValueEnum};
use quiver_engine::{
    Compression, GetResult, KeyBatch, ReadOptions, Registry, Store, StoreConfig, SystemClock,
};
use serde_json::json;

use crate::dataset::{check_registry, Dataset, REGISTRY_TOML, USER_STATS, VIEW};
use crate::harness::args::{self, in_range, positive, refuse, DbArgs, DistArg};
use crate::harness::db::{stats_refs, write_all};
use crate::harness::host::now_secs;
use crate::harness::measure::{measure_each, validate, EngineSystem, Plan, System};
use crate::harness::report::{latency_table, num, ratio, verdict, with_results, Fields, Results};
use crate::keys::{Dist, KeySpace};
use crate::{mem, BenchError, Result};

use baseline::{baseline_map, BaselineSystem};

/// Which view `--compression` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ViewArg {
    /// `user_stats`: 20 mixed features (counters, ratios, amounts, a code, flags).
    #[value(name = "user_stats")]
    UserStats,
    /// `user_embedding`: one `vector<64>` of float32 per entity (`--features 1`).
    Embedding,
}

/// The view's snapshot compression policy for `--compression` (registry `compression`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompressionArg {
    /// Plain records.
    None,
    /// zstd with a trained dictionary (byte-shuffled where floats dominate).
    Zstd,
    /// zstd only where the sample saves at least 20 % and decodes fast enough.
    Auto,
}

impl CompressionArg {
    /// Registry spelling.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Zstd => "zstd",
            Self::Auto => "auto",
        }
    }
}

/// Flags of `quiver-bench engine`. `--dir` is listed last, where it stood before the shared
/// flags were flattened in, so that `--help` reads as it always has.
#[derive(Debug, Clone, Args)]
#[command(mut_arg("shards", |a| a.help("Shards per view (a power of two)")))]
#[command(mut_arg("dir", |a| a.display_order(13).help(
    "Parent of the scratch directory holding the snapshot with `--compression` (default: the \
     system temporary directory)"
)))]
pub struct EngineArgs {
    /// Entities to load into `user_stats`.
    #[arg(long, default_value_t = 1_000_000)]
    pub entities: u64,
    /// Entities per get.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Features per get: the first N of `user_stats` (1 to 20).
    #[arg(long, default_value_t = 20)]
    pub features: usize,
    /// Seconds per measurement (each system, each key distribution).
    #[arg(long, default_value_t = 3.0)]
    pub duration: f64,
    /// Most batches per measurement.
    #[arg(long, default_value_t = 1_000_000)]
    pub iterations: u64,
    #[command(flatten)]
    /// Flags every data-directory workload shares.
    pub common: DbArgs,
    /// Key distributions to measure.
    #[arg(long, value_enum, default_value_t = DistArg::Both)]
    pub dist: DistArg,
    /// Rows per `Store::write` call while loading.
    #[arg(long, default_value_t = 1000)]
    pub load_batch: usize,
    /// Serve the view from a base snapshot built by `SnapshotBuilder` with this registry
    /// compression policy, instead of writing it into the in-memory delta.
    #[arg(long, value_enum)]
    pub compression: Option<CompressionArg>,
    /// The view `--compression` measures (`embedding` reads its one feature: `--features 1`).
    #[arg(long, value_enum, default_value_t = ViewArg::UserStats)]
    pub view: ViewArg,
    /// Registry `compression_level` (zstd level, 1 to 19) with `--compression`
    /// [default: the registry's, 3].
    #[arg(long)]
    pub compression_level: Option<i32>,
}

impl EngineArgs {
    fn plan(&self) -> Plan {
        Plan {
            batch: self.batch,
            duration: self.duration,
            iterations: self.iterations,
            seed: self.common.seed,
        }
    }

    /// The key space both paths draw from (the same salt, so the same key sequence).
    fn key_space(&self) -> Result<KeySpace> {
        KeySpace::new(self.entities, self.common.seed ^ SALT_PERMUTATION)
    }

    /// The measured key distributions.
    fn dists(&self) -> Vec<Dist> {
        self.dist.dists()
    }
}

/// Seed salt of the Zipf rank permutation.
const SALT_PERMUTATION: u64 = 0x7065_726d;

/// Goals, reported (not asserted): engine p50 over baseline p50, uniform keys.
const TARGET_P50_RATIO: f64 = 1.5;

/// Goal for the engine's own accounting of `user_stats` memory per entity.
const TARGET_BYTES_PER_ENTITY: f64 = 120.0;

impl EngineArgs {
    /// The settings both engine reports give in their JSON line.
    fn fields(&self) -> Fields {
        Fields::new(json!({
            "workload": "engine",
            "entities": self.entities,
            "batch": self.batch,
            "features": self.features,
            "shards": self.common.shards,
            "seed": self.common.seed,
            "duration_s": self.duration,
        }))
    }
}

/// Runs the engine micro benchmark and prints its report (table, then a JSON line) on stdout.
pub fn run_engine(args: &EngineArgs) -> Result<()> {
    validate_args(args)?;
    if let Some(policy) = args.compression {
        return packed::run_packed(args, policy);
    }
    let registry = Registry::from_toml(REGISTRY_TOML)?;
    check_registry(&registry)?;
    let shards = args.common.shards;
    let store = Store::new(registry, StoreConfig { shards }, Arc::new(SystemClock))?;
    let sel = store.select(&stats_refs(args.features))?;
    let entity = sel.entity().clone();
    let opts = ReadOptions::default();
    let dataset = Dataset::new(args.common.seed, args.entities, now_secs());
    let space = args.key_space()?;

    let n = args.entities;
    let batch = args.load_batch;
    eprintln!("loading {n} entities into {VIEW} ({batch} rows per write)");
    let rss_before = mem::rss_bytes()?;
    let start = Instant::now();
    write_all(&dataset, &entity, batch, |rows| store.write(VIEW, rows))?;
    let load = Load {
        seconds: start.elapsed().as_secs_f64(),
        rss_bytes: mem::rss_bytes()?.saturating_sub(rss_before),
    };
    eprintln!(
        "loaded in {:.2} s ({:.0} rows/s)",
        load.seconds,
        n as f64 / load.seconds
    );
    let stats = store
        .stats()
        .into_iter()
        .find(|s| s.view == VIEW)
        .ok_or_else(|| BenchError::Schema(format!("the store has no view {VIEW:?}")))?;
    if stats.entities != n {
        return Err(BenchError::WrongAnswer(format!(
            "loaded {n} entities, the store holds {}",
            stats.entities
        )));
    }

    eprintln!("building the baseline map");
    let rss_before = mem::rss_bytes()?;
    let map = baseline_map(&dataset);
    let baseline_rss = mem::rss_bytes()?.saturating_sub(rss_before);

    let get = |keys: &KeyBatch, out: &mut GetResult| store.get(&sel, keys, &opts, out);
    let mut engine = EngineSystem::new("engine", get, entity, args.features, args.batch);
    let mut baseline = BaselineSystem::stats(&map, &dataset, args.features, args.batch);

    eprintln!("validating reads against the dataset");
    let plan = args.plan();
    let validated =
        validate([&mut engine, &mut baseline], &dataset, &space, &plan)? * args.features as u64;
    let systems: [&mut dyn System; 2] = [&mut engine, &mut baseline];
    let names = ["engine", "baseline"];
    let results = measure_each(systems, names, &dataset, &space, &args.dists(), &plan)?;

    let figures = Figures {
        args,
        load,
        engine_bytes_per_entity: stats.bytes_per_entity(),
        baseline_rss_per_entity: baseline_rss as f64 / n as f64,
        validated,
        results,
    };
    println!("{}", figures.table());
    println!("{}", figures.json());
    Ok(())
}

fn validate_args(args: &EngineArgs) -> Result<()> {
    args::entities(args.entities, 1)?;
    in_range("--batch", args.batch, 1, 1 << 20)?;
    if args.view == ViewArg::Embedding {
        if args.compression.is_none() {
            return refuse(
                "--view embedding needs --compression (the in-memory path measures user_stats)",
            );
        }
        if args.features != 1 {
            return refuse(format!(
                "--view embedding reads its one feature: pass --features 1, got {}",
                args.features
            ));
        }
    } else {
        in_range("--features", args.features, 1, USER_STATS.len())?;
    }
    if let Some(level) = args.compression_level {
        if args.compression.is_none() {
            return refuse("--compression-level needs --compression");
        }
        in_range("--compression-level", level, 1, Compression::MAX_LEVEL)?;
    }
    args::duration(args.duration)?;
    positive("--iterations", args.iterations)?;
    positive("--load-batch", args.load_batch as u64)
}

/// What loading took: time (generating the rows included) and the process RSS delta.
#[derive(Debug, Clone, Copy)]
struct Load {
    seconds: f64,
    rss_bytes: u64,
}

/// Everything the report prints.
struct Figures<'a> {
    args: &'a EngineArgs,
    load: Load,
    engine_bytes_per_entity: f64,
    baseline_rss_per_entity: f64,
    validated: u64,
    results: Results,
}

impl Figures<'_> {
    fn rss_per_entity(&self) -> f64 {
        self.load.rss_bytes as f64 / self.args.entities as f64
    }

    fn rows_per_s(&self) -> f64 {
        self.args.entities as f64 / self.load.seconds
    }

    fn table(&self) -> String {
        let a = self.args;
        let c = &a.common;
        format!(
            "Quiver engine micro benchmark: view {VIEW}, {} entities, batch {}, {} features, \
             {} shards, seed {}, {} s per measurement\n\n{}\n\n\
             memory: engine accounting {:.1} B/entity, process RSS delta {:.1} B/entity \
             (baseline map RSS {:.1} B/entity)\n\
             load: {} rows in {:.2} s ({:.0} rows/s); {} values validated\n\
             targets: p50 within {TARGET_P50_RATIO}× of the baseline (uniform keys): {}; \
             at most {TARGET_BYTES_PER_ENTITY} B/entity: {}",
            a.entities,
            a.batch,
            a.features,
            c.shards,
            c.seed,
            a.duration,
            latency_table(&self.results, "engine").render(),
            self.engine_bytes_per_entity,
            self.rss_per_entity(),
            self.baseline_rss_per_entity,
            a.entities,
            self.load.seconds,
            self.rows_per_s(),
            self.validated,
            self.p50_target(),
            verdict(self.engine_bytes_per_entity <= TARGET_BYTES_PER_ENTITY),
        )
    }

    fn p50_target(&self) -> String {
        match self.results.iter().find(|r| r.0 == Dist::Uniform) {
            Some((_, e, b)) => {
                let r = ratio(e.p50_us, b.p50_us);
                format!("{r:.2}× ({})", verdict(r <= TARGET_P50_RATIO))
            }
            None => "not measured".into(),
        }
    }

    fn json(&self) -> String {
        let a = self.args;
        let fields = a.fields().extend(json!({
            "view": VIEW,
            "bytes_per_entity": num(self.engine_bytes_per_entity),
            "rss_bytes_per_entity": num(self.rss_per_entity()),
            "baseline_rss_bytes_per_entity": num(self.baseline_rss_per_entity),
            "load_s": num(self.load.seconds),
            "load_rows_per_s": num(self.rows_per_s()),
            "validated_values": self.validated,
        }));
        with_results(fields, &self.results).to_string()
    }
}
