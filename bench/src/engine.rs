//! The engine micro benchmark: DESIGN.md §8's W2 (batched gets) in-process, and W6 (memory).
//!
//! It loads the `user_stats` dataset through [`Store::write`], checks that reads return exactly
//! the dataset, then times batched gets against a raw baseline in the same process: a
//! `HashMap<u64, Vec<f32>>` holding the same entities, from which the same number of values per
//! entity is copied into an output buffer. Both are given the same key sequence, in alternating
//! time slices so that a noisy neighbour on a shared machine hits both alike.
//!
//! What is timed per batch: for the engine, encoding the batch's keys into a reused
//! [`KeyBatch`] plus [`Store::get`] into a reused [`GetResult`] (values, statuses and event
//! times, TTL checked); for the baseline, the hash lookups and the copies. Choosing keys is not
//! timed.
//!
//! With `--compression`, the view is served from a base snapshot instead (issue 7); see
//! `crate::packed`.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use quiver_engine::{
    encode_key, Clock, Entity, GetResult, KeyBatch, KeyPart, ReadOptions, Registry, Row, Status,
    Store, StoreConfig, SystemClock, MICROS_PER_SEC,
};
use serde_json::{json, Map, Value as Json};

use crate::dataset::{
    baseline_value, check_registry, Dataset, EntityRow, REGISTRY_TOML, USER_STATS, VIEW,
};
use crate::keys::{Dist, KeyChooser, KeySpace};
use crate::report::{num, ratio, Latency, Summary, Table};
use crate::{mem, BenchError, Result};

/// Which key distributions to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DistArg {
    /// Uniform key choice only.
    Uniform,
    /// Zipf(0.99) key choice only.
    Zipf,
    /// Both, uniform first.
    Both,
}

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

/// Flags of `quiver-bench engine`.
#[derive(Debug, Clone, Args)]
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
    /// Seed of the dataset and of the key sequences.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Shards per view (a power of two).
    #[arg(long, default_value_t = 64)]
    pub shards: usize,
    /// Key distributions to measure.
    #[arg(long, value_enum, default_value_t = DistArg::Both)]
    pub dist: DistArg,
    /// Rows per `Store::write` call while loading.
    #[arg(long, default_value_t = 1000)]
    pub load_batch: usize,
    /// Serve the view from a base snapshot built by `SnapshotBuilder` with this registry
    /// compression policy, instead of writing it into the in-memory delta (issue 7).
    #[arg(long, value_enum)]
    pub compression: Option<CompressionArg>,
    /// The view `--compression` measures (`embedding` reads its one feature: `--features 1`).
    #[arg(long, value_enum, default_value_t = ViewArg::UserStats)]
    pub view: ViewArg,
    /// Registry `compression_level` (zstd level, 1 to 19) with `--compression`
    /// [default: the registry's, 3].
    #[arg(long)]
    pub compression_level: Option<i32>,
    /// Parent of the scratch directory holding the snapshot with `--compression` (default:
    /// the system temporary directory).
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
}

/// How a measurement runs: batch size, time and batch budget, seed of the key streams.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    /// Entities per get.
    pub(crate) batch: usize,
    /// Seconds per measurement and system.
    pub(crate) duration: f64,
    /// Most batches per measurement and system.
    pub(crate) iterations: u64,
    /// Seed of the key sequences.
    pub(crate) seed: u64,
}

impl EngineArgs {
    pub(crate) fn plan(&self) -> Plan {
        Plan {
            batch: self.batch,
            duration: self.duration,
            iterations: self.iterations,
            seed: self.seed,
        }
    }
}

/// Seed salts, so the key streams of different phases are unrelated.
const SALT_PERMUTATION: u64 = 0x7065_726d;
const SALT_VALIDATE: u64 = 0x7661_6c69;
const SALT_WARMUP: u64 = 0x7761_726d;
const SALT_MEASURE: u64 = 0x6d65_6173;

/// Entities whose every value is compared with the dataset before anything is timed.
const VALIDATION_SAMPLE: u64 = 20_000;

/// Measurements alternate between the systems in this many slices each.
const SLICES: u32 = 6;

/// Goals from the issue, reported (not asserted): engine p50 over baseline p50, uniform keys.
const TARGET_P50_RATIO: f64 = 1.5;

/// Goal for the engine's own accounting of `user_stats` memory per entity.
const TARGET_BYTES_PER_ENTITY: f64 = 120.0;

/// Warm-up per system and distribution: a third of the measurement, at most this.
const MAX_WARMUP: Duration = Duration::from_secs(1);

/// Runs the engine micro benchmark and prints its report (table, then a JSON line) on stdout.
pub fn run_engine(args: &EngineArgs) -> Result<()> {
    validate_args(args)?;
    if let Some(policy) = args.compression {
        return crate::packed::run_packed(args, policy);
    }
    let registry = Registry::from_toml(REGISTRY_TOML)?;
    check_registry(&registry)?;
    let store = Store::new(
        registry,
        StoreConfig {
            shards: args.shards,
        },
        Arc::new(SystemClock),
    )?;
    let refs: Vec<String> = USER_STATS[..args.features]
        .iter()
        .map(|f| format!("{VIEW}:{}", f.name))
        .collect();
    let sel = store.select(&refs)?;
    let entity = sel.entity().clone();
    let opts = ReadOptions::default();
    let now_secs = SystemClock.now_micros() / MICROS_PER_SEC;
    let dataset = Dataset::new(args.seed, args.entities, now_secs);
    let space = KeySpace::new(args.entities, args.seed ^ SALT_PERMUTATION)?;

    let load = load(&store, &dataset, &entity, args.load_batch)?;
    let stats = store
        .stats()
        .into_iter()
        .find(|s| s.view == VIEW)
        .ok_or_else(|| BenchError::Schema(format!("the store has no view {VIEW:?}")))?;
    if stats.entities != args.entities {
        return Err(BenchError::WrongAnswer(format!(
            "loaded {} entities, the store holds {}",
            args.entities, stats.entities
        )));
    }

    eprintln!("building the baseline map");
    let rss_before = mem::rss_bytes()?;
    let map = baseline_map(&dataset);
    let baseline_rss = mem::rss_bytes()?.saturating_sub(rss_before);

    let mut engine = EngineSystem::new(
        "engine",
        |keys: &KeyBatch, out: &mut GetResult| store.get(&sel, keys, &opts, out),
        entity,
        args.features,
        args.batch,
    );
    let mut baseline = BaselineSystem {
        map: &map,
        features: args.features,
        out: vec![0.0; args.batch * args.features],
    };

    eprintln!("validating reads against the dataset");
    let plan = args.plan();
    let validated =
        validate([&mut engine, &mut baseline], &dataset, &space, &plan)? * args.features as u64;

    let results = measure_each(
        args,
        [&mut engine, &mut baseline],
        ["engine", "baseline"],
        &dataset,
        &space,
        &plan,
    )?;

    let figures = Figures {
        args,
        load,
        engine_bytes_per_entity: stats.bytes_per_entity(),
        baseline_rss_per_entity: baseline_rss as f64 / args.entities as f64,
        validated,
        results,
    };
    println!("{}", figures.table());
    println!("{}", figures.json());
    Ok(())
}

fn validate_args(args: &EngineArgs) -> Result<()> {
    let bad = |m: String| Err(BenchError::InvalidArgument(m));
    if args.entities == 0 || args.entities > u64::from(u32::MAX) {
        return bad(format!(
            "--entities must be between 1 and {}, got {}",
            u32::MAX,
            args.entities
        ));
    }
    if args.batch == 0 || args.batch > 1 << 20 {
        return bad(format!(
            "--batch must be between 1 and {}, got {}",
            1 << 20,
            args.batch
        ));
    }
    if args.view == ViewArg::Embedding {
        if args.compression.is_none() {
            return bad(
                "--view embedding needs --compression (the in-memory path measures user_stats)"
                    .into(),
            );
        }
        if args.features != 1 {
            return bad(format!(
                "--view embedding reads its one feature: pass --features 1, got {}",
                args.features
            ));
        }
    } else if args.features == 0 || args.features > USER_STATS.len() {
        return bad(format!(
            "--features must be between 1 and {}, got {}",
            USER_STATS.len(),
            args.features
        ));
    }
    if let Some(level) = args.compression_level {
        if args.compression.is_none() {
            return bad("--compression-level needs --compression".into());
        }
        if !(1..=quiver_engine::Compression::MAX_LEVEL).contains(&level) {
            return bad(format!(
                "--compression-level must be between 1 and {}, got {level}",
                quiver_engine::Compression::MAX_LEVEL
            ));
        }
    }
    if !(args.duration.is_finite() && args.duration > 0.0 && args.duration <= 3600.0) {
        return bad(format!(
            "--duration must be between 0 and 3600 seconds, got {}",
            args.duration
        ));
    }
    if args.iterations == 0 {
        return bad("--iterations must be at least 1".into());
    }
    if args.load_batch == 0 {
        return bad("--load-batch must be at least 1".into());
    }
    Ok(())
}

/// What loading took.
#[derive(Debug, Clone, Copy)]
struct Load {
    seconds: f64,
    rss_bytes: u64,
}

/// Writes every entity through `Store::write`, measuring time (generating the rows included)
/// and the process RSS delta.
fn load(store: &Store, dataset: &Dataset, entity: &Entity, batch: usize) -> Result<Load> {
    let n = dataset.entities();
    eprintln!("loading {n} entities into {VIEW} ({batch} rows per write)");
    let rss_before = mem::rss_bytes()?;
    let start = Instant::now();
    let mut rows = Vec::with_capacity(batch);
    let step = (n / 10).max(1);
    let mut next_report = step;
    let mut first = 0;
    while first < n {
        let end = (first + batch as u64).min(n);
        rows.clear();
        for i in first..end {
            rows.push(to_row(entity, dataset.row(i))?);
        }
        store.write(VIEW, &rows)?;
        first = end;
        if first >= next_report && first < n {
            eprintln!("  {first} / {n}");
            next_report += step;
        }
    }
    drop(rows);
    let seconds = start.elapsed().as_secs_f64();
    let rss_bytes = mem::rss_bytes()?.saturating_sub(rss_before);
    eprintln!(
        "loaded in {seconds:.2} s ({:.0} rows/s)",
        n as f64 / seconds
    );
    Ok(Load { seconds, rss_bytes })
}

/// A generated entity as a write of all its features.
pub(crate) fn to_row(entity: &Entity, r: EntityRow) -> Result<Row> {
    let mut key = Vec::with_capacity(9);
    encode_key(entity, &[KeyPart::Int64(r.user_id)], &mut key)?;
    Ok(Row {
        key,
        event_ts: r.event_ts,
        created_ts: None,
        values: r.values.into_iter().enumerate().collect(),
    })
}

/// The baseline's hash for `u64` keys: one folded 64×64→128-bit multiply (the core of
/// foldhash, which the engine uses), so the baseline is not slowed down by SipHash.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FoldBuild;

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FoldHasher(u64);

impl BuildHasher for FoldBuild {
    type Hasher = FoldHasher;
    fn build_hasher(&self) -> FoldHasher {
        FoldHasher(0x243f_6a88_85a3_08d3)
    }
}

impl Hasher for FoldHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, x: u64) {
        let m = u128::from(x ^ self.0) * u128::from(0x5851_f42d_4c95_7f2d_u64);
        self.0 = (m as u64) ^ ((m >> 64) as u64);
    }
}

pub(crate) type BaselineMap = HashMap<u64, Vec<f32>, FoldBuild>;

/// Every entity's 20 values as `f32`, keyed by user id.
pub(crate) fn baseline_map(dataset: &Dataset) -> BaselineMap {
    let n = dataset.entities();
    let mut map = HashMap::with_capacity_and_hasher(n as usize, FoldBuild);
    for i in 0..n {
        let r = dataset.row(i);
        map.insert(
            r.user_id as u64,
            r.values.iter().map(baseline_value).collect(),
        );
    }
    map
}

/// A system under test: answers one batch of user ids and says how long that took.
pub(crate) trait System {
    /// Serves `ids`, returning the time it took.
    fn batch(&mut self, ids: &[i64]) -> Result<Duration>;
    /// Checks the last batch's answer against the dataset.
    fn check(&self, ids: &[i64], dataset: &Dataset) -> Result<()>;
}

/// The engine. `get` is a batched get (`Store::get`, `Db::get`) with its selection and read
/// options bound in a closure; the first `features` features of `user_stats` are selected.
pub(crate) struct EngineSystem<F> {
    name: &'static str,
    get: F,
    entity: Entity,
    features: usize,
    keys: KeyBatch,
    out: GetResult,
}

impl<F> EngineSystem<F> {
    /// A system called `name` in reports, reading batches of up to `batch` keys.
    pub(crate) fn new(
        name: &'static str,
        get: F,
        entity: Entity,
        features: usize,
        batch: usize,
    ) -> Self {
        Self {
            name,
            get,
            entity,
            features,
            keys: KeyBatch::with_capacity(batch, 9),
            out: GetResult::new(),
        }
    }
}

/// The timed work of an engine batch: encoding the keys of `ids` and one batched get.
pub(crate) fn timed_get<G>(
    entity: &Entity,
    ids: &[i64],
    keys: &mut KeyBatch,
    get: &mut G,
    out: &mut GetResult,
) -> Result<Duration>
where
    G: FnMut(&KeyBatch, &mut GetResult) -> quiver_engine::Result<()>,
{
    let start = Instant::now();
    keys.clear();
    for &id in ids {
        keys.push(entity, &[KeyPart::Int64(id)])?;
    }
    get(keys, out)?;
    let took = start.elapsed();
    black_box(&*out);
    Ok(took)
}

impl<F> System for EngineSystem<F>
where
    F: FnMut(&KeyBatch, &mut GetResult) -> quiver_engine::Result<()>,
{
    fn batch(&mut self, ids: &[i64]) -> Result<Duration> {
        timed_get(
            &self.entity,
            ids,
            &mut self.keys,
            &mut self.get,
            &mut self.out,
        )
    }

    fn check(&self, ids: &[i64], dataset: &Dataset) -> Result<()> {
        check_columns(self.name, &self.out, ids, self.features, |id| {
            dataset.index_of(id).map(|i| dataset.row(i))
        })
    }
}

/// Checks a get's answer for `ids`, row for row: the first `features` columns must hold
/// exactly `expect(id)`'s values and event time (all `Present`), or `NotFound` everywhere
/// where `expect` returns `None`.
pub(crate) fn check_columns(
    who: &str,
    out: &GetResult,
    ids: &[i64],
    features: usize,
    expect: impl FnMut(i64) -> Option<EntityRow>,
) -> Result<()> {
    check_named_columns(who, out, ids, features, |j| USER_STATS[j].name, expect)
}

/// [`check_columns`] for any view: `name(j)` names column `j` in error messages.
pub(crate) fn check_named_columns(
    who: &str,
    out: &GetResult,
    ids: &[i64],
    features: usize,
    name: impl Fn(usize) -> &'static str,
    mut expect: impl FnMut(i64) -> Option<EntityRow>,
) -> Result<()> {
    let cols = &out.columns;
    if cols.len() != features {
        return Err(BenchError::WrongAnswer(format!(
            "{who} returned {} columns for {features} features",
            cols.len(),
        )));
    }
    for (j, col) in cols.iter().enumerate() {
        if col.statuses.len() != ids.len()
            || col.event_ts.len() != ids.len()
            || col.values.len() != ids.len()
        {
            return Err(BenchError::WrongAnswer(format!(
                "{who}: column {} has {} rows for {} keys",
                name(j),
                col.statuses.len(),
                ids.len()
            )));
        }
    }
    for (row, &id) in ids.iter().enumerate() {
        let Some(expected) = expect(id) else {
            if let Some((j, c)) = cols
                .iter()
                .enumerate()
                .find(|(_, c)| c.statuses[row] != Status::NotFound)
            {
                return Err(BenchError::WrongAnswer(format!(
                    "{who}: unknown user {id}, feature {}: status {:?}, expected NotFound",
                    name(j),
                    c.statuses[row]
                )));
            }
            continue;
        };
        for (j, col) in cols.iter().enumerate() {
            let want = &expected.values[j];
            let got = col.get(row);
            if col.statuses[row] != Status::Present
                || col.event_ts[row] != expected.event_ts
                || !got.as_ref().is_some_and(|g| g.bit_eq(want))
            {
                return Err(BenchError::WrongAnswer(format!(
                    "{who}: user {id}, feature {}: got {got:?} ({:?}, event time {}), \
                     expected {want:?} (Present, event time {})",
                    name(j),
                    col.statuses[row],
                    col.event_ts[row],
                    expected.event_ts
                )));
            }
        }
    }
    Ok(())
}

/// The raw baseline: a hash map lookup and a copy of `features` values per entity.
pub(crate) struct BaselineSystem<'a> {
    pub(crate) map: &'a BaselineMap,
    pub(crate) features: usize,
    pub(crate) out: Vec<f32>,
}

impl System for BaselineSystem<'_> {
    fn batch(&mut self, ids: &[i64]) -> Result<Duration> {
        let n = self.features;
        let start = Instant::now();
        self.out.resize(ids.len() * n, 0.0);
        for (dst, &id) in self.out.chunks_exact_mut(n).zip(ids) {
            match self.map.get(&(id as u64)) {
                Some(v) => dst.copy_from_slice(&v[..n]),
                None => dst.fill(f32::NAN),
            }
        }
        let took = start.elapsed();
        black_box(&self.out);
        Ok(took)
    }

    fn check(&self, ids: &[i64], dataset: &Dataset) -> Result<()> {
        let n = self.features;
        for (got, &id) in self.out.chunks_exact(n).zip(ids) {
            let want: Vec<f32> = match dataset.index_of(id) {
                Some(i) => dataset.row(i).values[..n]
                    .iter()
                    .map(baseline_value)
                    .collect(),
                None => vec![f32::NAN; n],
            };
            if got
                .iter()
                .zip(&want)
                .any(|(g, w)| g.to_bits() != w.to_bits())
            {
                return Err(BenchError::WrongAnswer(format!(
                    "baseline: user {id}: got {got:?}, expected {want:?}"
                )));
            }
        }
        Ok(())
    }
}

/// Reads a sample of entities (including the first and the last, and some that were never
/// written) through both systems and compares every value with the dataset. Returns how many
/// entities were compared per system.
pub(crate) fn validate(
    systems: [&mut dyn System; 2],
    dataset: &Dataset,
    space: &KeySpace,
    plan: &Plan,
) -> Result<u64> {
    let n = dataset.entities();
    let batch = plan.batch;
    let mut chooser = space.chooser(Dist::Uniform, plan.seed ^ SALT_VALIDATE);
    let mut idx = Vec::new();
    let mut ids = Vec::new();
    let mut checked = 0u64;
    let sample = VALIDATION_SAMPLE.min(n).max(batch as u64);
    let [a, b] = systems;
    while checked < sample {
        chooser.fill(&mut idx, batch);
        ids.clear();
        ids.extend(idx.iter().map(|&i| dataset.user_id(i)));
        if checked == 0 {
            ids[0] = dataset.user_id(0);
            if let Some(last) = ids.last_mut() {
                *last = dataset.user_id(n - 1);
            }
        }
        batch_and_check(a, &ids, dataset)?;
        batch_and_check(b, &ids, dataset)?;
        checked += ids.len() as u64;
    }
    // Users that were never written must come back NotFound, not as someone else's values.
    ids.clear();
    ids.extend((0..batch as i64).map(|i| n as i64 + i));
    ids[0] = -1;
    batch_and_check(a, &ids, dataset)?;
    batch_and_check(b, &ids, dataset)?;
    Ok(checked)
}

/// Runs batches of keys from `keys` through `system` for up to `time` or `max_batches`,
/// recording each batch's latency into `latency` if given. Returns the wall time spent and the
/// batches run; `ids` is left holding the last batch.
#[allow(clippy::too_many_arguments)]
fn run_batches(
    system: &mut dyn System,
    keys: &mut KeyChooser<'_>,
    idx: &mut Vec<u64>,
    ids: &mut Vec<i64>,
    dataset: &Dataset,
    batch: usize,
    time: Duration,
    max_batches: u64,
    mut latency: Option<&mut Latency>,
) -> Result<(Duration, u64)> {
    let start = Instant::now();
    let mut done = 0;
    while done < max_batches && start.elapsed() < time {
        keys.fill(idx, batch);
        ids.clear();
        ids.extend(idx.iter().map(|&i| dataset.user_id(i)));
        let took = system.batch(ids)?;
        if let Some(l) = latency.as_deref_mut() {
            l.record(took);
        }
        done += 1;
    }
    Ok((start.elapsed(), done))
}

fn batch_and_check(system: &mut dyn System, ids: &[i64], dataset: &Dataset) -> Result<()> {
    system.batch(ids)?;
    system.check(ids, dataset)
}

/// One system's side of a measurement.
struct Lane<'s, 'k> {
    system: &'s mut dyn System,
    keys: KeyChooser<'k>,
    idx: Vec<u64>,
    ids: Vec<i64>,
    latency: Latency,
    spent: Duration,
    batches: u64,
}

impl<'s, 'k> Lane<'s, 'k> {
    fn new(system: &'s mut dyn System, keys: KeyChooser<'k>, batch: usize) -> Result<Self> {
        Ok(Self {
            system,
            keys,
            idx: Vec::with_capacity(batch),
            ids: Vec::with_capacity(batch),
            latency: Latency::new()?,
            spent: Duration::ZERO,
            batches: 0,
        })
    }
}

/// Warms both systems up, then measures them in alternating slices on the same key sequence
/// until each has run for the plan's duration or batch budget, and checks the last answer
/// of each. `names` label the progress line.
pub(crate) fn measure(
    systems: [&mut dyn System; 2],
    names: [&str; 2],
    dataset: &Dataset,
    space: &KeySpace,
    dist: Dist,
    plan: &Plan,
) -> Result<(Summary, Summary)> {
    let total = Duration::from_secs_f64(plan.duration);
    let warmup = (total / 3).min(MAX_WARMUP);
    let slice = (total / SLICES).max(Duration::from_millis(1));
    let seed = plan.seed ^ SALT_MEASURE ^ dist as u64;
    let [a, b] = systems;
    let mut lanes = [
        Lane::new(a, space.chooser(dist, seed), plan.batch)?,
        Lane::new(b, space.chooser(dist, seed), plan.batch)?,
    ];
    for l in &mut lanes {
        let mut keys = space.chooser(dist, plan.seed ^ SALT_WARMUP);
        run_batches(
            &mut *l.system,
            &mut keys,
            &mut l.idx,
            &mut l.ids,
            dataset,
            plan.batch,
            warmup,
            plan.iterations,
            None,
        )?;
    }
    while lanes
        .iter()
        .any(|l| l.spent < total && l.batches < plan.iterations)
    {
        for l in &mut lanes {
            if l.spent >= total || l.batches >= plan.iterations {
                continue;
            }
            let (spent, batches) = run_batches(
                &mut *l.system,
                &mut l.keys,
                &mut l.idx,
                &mut l.ids,
                dataset,
                plan.batch,
                slice.min(total - l.spent),
                plan.iterations - l.batches,
                Some(&mut l.latency),
            )?;
            l.spent += spent;
            l.batches += batches;
        }
    }
    for l in &lanes {
        l.system.check(&l.ids, dataset)?;
    }
    let [es, bs] = [lanes[0].latency.summary(), lanes[1].latency.summary()];
    eprintln!(
        "  {} p50 {:.2} µs over {} batches, {} p50 {:.2} µs over {} batches",
        names[0], es.p50_us, es.count, names[1], bs.p50_us, bs.count
    );
    Ok((es, bs))
}

/// Everything the report prints.
struct Figures<'a> {
    args: &'a EngineArgs,
    load: Load,
    engine_bytes_per_entity: f64,
    baseline_rss_per_entity: f64,
    validated: u64,
    results: Vec<(Dist, Summary, Summary)>,
}

impl Figures<'_> {
    fn rss_per_entity(&self) -> f64 {
        self.load.rss_bytes as f64 / self.args.entities as f64
    }

    fn table(&self) -> String {
        let a = self.args;
        let t = latency_table(&self.results, "engine");
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
            a.shards,
            a.seed,
            a.duration,
            t.render(),
            self.engine_bytes_per_entity,
            self.rss_per_entity(),
            self.baseline_rss_per_entity,
            a.entities,
            self.load.seconds,
            a.entities as f64 / self.load.seconds,
            self.validated,
            self.p50_target(),
            if self.engine_bytes_per_entity <= TARGET_BYTES_PER_ENTITY {
                "met"
            } else {
                "missed"
            },
        )
    }

    fn p50_target(&self) -> String {
        match self.results.iter().find(|r| r.0 == Dist::Uniform) {
            Some((_, e, b)) => {
                let r = ratio(e.p50_us, b.p50_us);
                let verdict = if r <= TARGET_P50_RATIO {
                    "met"
                } else {
                    "missed"
                };
                format!("{r:.2}× ({verdict})")
            }
            None => "not measured".into(),
        }
    }

    fn json(&self) -> String {
        let a = self.args;
        let mut m = Map::new();
        m.insert("workload".into(), json!("engine"));
        m.insert("view".into(), json!(VIEW));
        m.insert("entities".into(), json!(a.entities));
        m.insert("batch".into(), json!(a.batch));
        m.insert("features".into(), json!(a.features));
        m.insert("shards".into(), json!(a.shards));
        m.insert("seed".into(), json!(a.seed));
        m.insert("duration_s".into(), json!(a.duration));
        m.insert("bytes_per_entity".into(), num(self.engine_bytes_per_entity));
        m.insert("rss_bytes_per_entity".into(), num(self.rss_per_entity()));
        m.insert(
            "baseline_rss_bytes_per_entity".into(),
            num(self.baseline_rss_per_entity),
        );
        m.insert("load_s".into(), num(self.load.seconds));
        m.insert(
            "load_rows_per_s".into(),
            num(a.entities as f64 / self.load.seconds),
        );
        m.insert("validated_values".into(), json!(self.validated));
        put_results(&mut m, &self.results);
        Json::Object(m).to_string()
    }
}

/// Per key distribution: (distribution, engine summary, baseline summary).
pub(crate) type Results = Vec<(Dist, Summary, Summary)>;

/// Measures the two systems alternately for each key distribution `args` asks for.
pub(crate) fn measure_each(
    args: &EngineArgs,
    mut systems: [&mut dyn System; 2],
    names: [&str; 2],
    dataset: &Dataset,
    space: &KeySpace,
    plan: &Plan,
) -> Result<Results> {
    let dists: &[Dist] = match args.dist {
        DistArg::Uniform => &[Dist::Uniform],
        DistArg::Zipf => &[Dist::Zipf],
        DistArg::Both => &[Dist::Uniform, Dist::Zipf],
    };
    let mut results = Vec::new();
    for &dist in dists {
        eprintln!(
            "measuring {} keys: {:.1} s per system",
            dist.name(),
            args.duration
        );
        let [a, b] = &mut systems;
        let (e, base) = measure([&mut **a, &mut **b], names, dataset, space, dist, plan)?;
        results.push((dist, e, base));
    }
    Ok(results)
}

/// The latency table of `results`, the engine's rows labelled `engine`.
pub(crate) fn latency_table(results: &Results, engine: &str) -> Table {
    let mut t = Table::new([
        "keys",
        "system",
        "p50 µs",
        "p99 µs",
        "p99.9 µs",
        "max µs",
        "mean µs",
        "batches",
        "p50 ×base",
        "p99 ×base",
        "p99.9 ×base",
    ]);
    let f = |x: f64| format!("{x:.2}");
    for (dist, e, b) in results {
        for (name, s) in [(engine, e), ("baseline", b)] {
            t.row([
                dist.name().to_owned(),
                name.to_owned(),
                f(s.p50_us),
                f(s.p99_us),
                f(s.p999_us),
                f(s.max_us),
                f(s.mean_us),
                s.count.to_string(),
                f(ratio(s.p50_us, b.p50_us)),
                f(ratio(s.p99_us, b.p99_us)),
                f(ratio(s.p999_us, b.p999_us)),
            ]);
        }
    }
    t
}

/// The JSON fields of `results`: `engine_*`, `baseline_*` and the ratios, with `zipf_` twins
/// (null when a distribution was not measured).
pub(crate) fn put_results(m: &mut Map<String, Json>, results: &Results) {
    for (dist, prefix) in [(Dist::Uniform, ""), (Dist::Zipf, "zipf_")] {
        let found = results.iter().find(|r| r.0 == dist);
        put_summary(m, &format!("{prefix}engine_"), found.map(|r| &r.1));
        put_summary(m, &format!("{prefix}baseline_"), found.map(|r| &r.2));
        let ratio_of = |get: fn(&Summary) -> f64| {
            found.map_or(Json::Null, |(_, e, b)| num(ratio(get(e), get(b))))
        };
        m.insert(format!("{prefix}ratio"), ratio_of(|s| s.p50_us));
        m.insert(format!("{prefix}p99_ratio"), ratio_of(|s| s.p99_us));
        m.insert(format!("{prefix}p999_ratio"), ratio_of(|s| s.p999_us));
    }
}

/// Inserts `{prefix}p50_us` .. `{prefix}batches`, null when the distribution was not measured.
pub(crate) fn put_summary(m: &mut Map<String, Json>, prefix: &str, s: Option<&Summary>) {
    type Field = (&'static str, fn(&Summary) -> Json);
    let fields: [Field; 6] = [
        ("p50_us", |s| num(s.p50_us)),
        ("p99_us", |s| num(s.p99_us)),
        ("p999_us", |s| num(s.p999_us)),
        ("max_us", |s| num(s.max_us)),
        ("mean_us", |s| num(s.mean_us)),
        ("batches", |s| json!(s.count)),
    ];
    for (name, get) in fields {
        m.insert(format!("{prefix}{name}"), s.map_or(Json::Null, get));
    }
}
