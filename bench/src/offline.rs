//! The offline benchmark (DESIGN.md §8 W8): Quiver's point-in-time join (`quiver historical`)
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
//!   of one (`t == e`, `t == e + ttl`, one microsecond past it), so the checks of §4 are
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

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{
    ArrayRef, BooleanArray, Float32Array, Float64Array, Int32Array, Int64Array, RecordBatch,
    StringArray, TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use clap::{Args, ValueEnum};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use quiver_engine::{Registry, ScalarType, Value, ValueType, MICROS_PER_SEC};
use quiver_offline::{
    materialize_snapshot, write_training_set, EpochUnit, FeaturePlan, History, JoinOptions,
    MaterializeOptions,
};
use serde_json::{json, Value as Json};

use crate::dataset::{Dataset, USER_STATS, VIEW};
use crate::report::{median, num, ratio, Table};
use crate::scratch::{filesystem_of, ScratchDir};
use crate::{BenchError, Result};

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

/// Targets from the issue.
const TARGET_RATIO: f64 = 0.8;

/// The history ends here (2025-01-01T00:00:00Z) and spans [`SPAN_SECS`] before it.
const END_SECS: i64 = 1_735_689_600;
const SPAN_SECS: i64 = 90 * 86_400;
const DAY_US: i64 = 86_400 * MICROS_PER_SEC;
/// The view's TTL, and the features that differ from it (by name; absent ones keep it).
const VIEW_TTL: &str = "7d";
const FEATURE_TTLS: [(&str, &str); 2] = [("failed_logins_24h", "1d"), ("country", "0")];

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
const CREATED: &str = "created";
const LABEL: &str = "label";
const HISTORY_FILE: &str = "history.parquet";
const ENTITIES_FILE: &str = "entities.parquet";
const REGISTRY_FILE: &str = "registry.toml";
const SCRIPT: &str = include_str!("../scripts/duckdb_asof.py");

/// Rows per generated batch and Parquet row group.
const ROW_GROUP: usize = 1 << 20;
/// Seed salts of the generator's independent streams.
const SALT_KEY: u64 = 0x6b65_7973;
const SALT_TIME: u64 = 0x7469_6d65;
const SALT_VALUES: u64 = 0x7661_6c73;
const SALT_NULL: u64 = 0x6e75_6c6c;
const SALT_CREATED: u64 = 0x6372_6561;
const SALT_SAMPLE: u64 = 0x7361_6d70;
const SALT_ENTITY: u64 = 0x656e_7473;
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
    let scratch = ScratchDir::new(args.dir.as_deref(), "offline")?;
    let filesystem = filesystem_of(scratch.path());
    eprintln!(
        "scratch directory {} ({filesystem})",
        scratch.path().display()
    );

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
        let bad = |m: String| Err(BenchError::InvalidArgument(m));
        for (flag, v, max) in [
            ("--history-rows", s.history_rows, MAX_ROWS),
            ("--entity-rows", s.entity_rows, MAX_ROWS),
            ("--entities", s.entities, MAX_ENTITIES),
        ] {
            if v == 0 || v > max {
                return bad(format!("{flag} must be between 1 and {max}, got {v}"));
            }
        }
        if args.features == 0 || args.features > W8_ORDER.len() {
            return bad(format!(
                "--features must be between 1 and {}, got {}",
                W8_ORDER.len(),
                args.features
            ));
        }
        if args.repeats == 0 || args.repeats > 100 {
            return bad(format!(
                "--repeats must be between 1 and 100, got {}",
                args.repeats
            ));
        }
        Ok(s)
    }
}

// ---------------------------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------------------------

/// Indices into [`USER_STATS`] of the features used, in column order.
fn feature_indices(n: usize) -> Result<Vec<usize>> {
    W8_ORDER[..n]
        .iter()
        .map(|name| {
            USER_STATS
                .iter()
                .position(|f| f.name == *name)
                .ok_or_else(|| BenchError::Schema(format!("no bench feature named {name:?}")))
        })
        .collect()
}

/// Writes the registry of the generated history and returns it parsed.
fn write_registry(dir: &Path, args: &OfflineArgs) -> Result<Registry> {
    let mut toml = format!(
        "# Generated by quiver-bench offline (W8).\nproject = \"quiver_bench_w8\"\n\n\
         [[entity]]\nname = \"user\"\njoin_keys = [{{ name = \"{KEY}\", type = \"int64\" }}]\n\n\
         [[feature_view]]\nname = \"{VIEW}\"\nentity = \"user\"\nttl = \"{VIEW_TTL}\"\n\
         source = {{ path = \"{HISTORY_FILE}\", timestamp_field = \"{TS}\"{} }}\n",
        if args.created {
            format!(", created_timestamp_field = \"{CREATED}\"")
        } else {
            String::new()
        }
    );
    for i in feature_indices(args.features)? {
        let f = &USER_STATS[i];
        toml.push_str(&format!(
            "  [[feature_view.feature]]\n  name = \"{}\"\n  type = \"{}\"\n",
            f.name, f.ty
        ));
        if let Some((_, ttl)) = FEATURE_TTLS.iter().find(|(n, _)| *n == f.name) {
            toml.push_str(&format!("  ttl = \"{ttl}\"\n"));
        }
    }
    write_file(&dir.join(REGISTRY_FILE), toml.as_bytes())?;
    Ok(Registry::from_toml(&toml)?)
}

/// What generation produced.
#[derive(Debug, Clone, Copy)]
struct Generated {
    history_bytes: u64,
    entities_bytes: u64,
    /// Users with at least one history row (what materialize must write).
    distinct_keys: u64,
}

/// SplitMix64's finalizer: a fixed, well-mixed hash of `z`.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The `i`-th draw of stream `salt` under `seed`.
fn draw(seed: u64, salt: u64, i: u64) -> u64 {
    const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;
    mix(mix(seed ^ salt.wrapping_mul(GAMMA)) ^ i.wrapping_mul(GAMMA))
}

/// Uniform in `0..n`.
fn below(r: u64, n: u64) -> u64 {
    ((u128::from(r) * u128::from(n)) >> 64) as u64
}

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn arrow_scalar(ty: ValueType) -> Result<DataType> {
    Ok(match ty {
        ValueType::Scalar(ScalarType::Int64) => DataType::Int64,
        ValueType::Scalar(ScalarType::Int32) => DataType::Int32,
        ValueType::Scalar(ScalarType::Float32) => DataType::Float32,
        ValueType::Scalar(ScalarType::Float64) => DataType::Float64,
        ValueType::Scalar(ScalarType::String) => DataType::Utf8,
        ValueType::Scalar(ScalarType::Bool) => DataType::Boolean,
        other => return Err(BenchError::Schema(format!("W8 has no {other} features"))),
    })
}

/// One feature column of a batch being built.
enum Column {
    I64(Vec<Option<i64>>),
    I32(Vec<Option<i32>>),
    F32(Vec<Option<f32>>),
    F64(Vec<Option<f64>>),
    Str(Vec<Option<&'static str>>),
    Bool(Vec<Option<bool>>),
}

impl Column {
    fn new(ty: &DataType, cap: usize) -> Self {
        match ty {
            DataType::Int64 => Self::I64(Vec::with_capacity(cap)),
            DataType::Int32 => Self::I32(Vec::with_capacity(cap)),
            DataType::Float32 => Self::F32(Vec::with_capacity(cap)),
            DataType::Float64 => Self::F64(Vec::with_capacity(cap)),
            DataType::Utf8 => Self::Str(Vec::with_capacity(cap)),
            _ => Self::Bool(Vec::with_capacity(cap)),
        }
    }

    /// Appends `v`, or null; a value of another type is a generator bug.
    fn push(&mut self, v: Option<&Value>) -> Result<()> {
        let mismatch = || BenchError::Schema(format!("generated value {v:?} in a wrong column"));
        match (self, v) {
            (Self::I64(c), None) => c.push(None),
            (Self::I32(c), None) => c.push(None),
            (Self::F32(c), None) => c.push(None),
            (Self::F64(c), None) => c.push(None),
            (Self::Str(c), None) => c.push(None),
            (Self::Bool(c), None) => c.push(None),
            (Self::I64(c), Some(Value::Int64(x))) => c.push(Some(*x)),
            (Self::I32(c), Some(Value::Int32(x))) => c.push(Some(*x)),
            (Self::F32(c), Some(Value::Float32(x))) => c.push(Some(*x)),
            (Self::F64(c), Some(Value::Float64(x))) => c.push(Some(*x)),
            (Self::Str(c), Some(Value::String(s))) => c.push(Some(intern(s).ok_or_else(mismatch)?)),
            (Self::Bool(c), Some(Value::Bool(x))) => c.push(Some(*x)),
            _ => return Err(mismatch()),
        }
        Ok(())
    }

    fn finish(self) -> ArrayRef {
        match self {
            Self::I64(c) => Arc::new(Int64Array::from(c)),
            Self::I32(c) => Arc::new(Int32Array::from(c)),
            Self::F32(c) => Arc::new(Float32Array::from(c)),
            Self::F64(c) => Arc::new(Float64Array::from(c)),
            Self::Str(c) => Arc::new(StringArray::from(c)),
            Self::Bool(c) => Arc::new(BooleanArray::from(c)),
        }
    }
}

/// The bench dataset's strings are country codes: stored once, not once per row.
fn intern(s: &str) -> Option<&'static str> {
    const CODES: [&str; 20] = [
        "US", "IN", "BR", "GB", "DE", "FR", "MX", "CA", "JP", "ES", "IT", "ID", "TR", "NL", "PL",
        "AU", "KR", "SE", "NG", "AR",
    ];
    CODES.iter().find(|c| **c == s).copied()
}

/// A Parquet file being written in row groups of [`ROW_GROUP`] rows, snappy.
fn parquet_writer(path: &Path, schema: SchemaRef) -> Result<ArrowWriter<std::fs::File>> {
    let file = std::fs::File::create(path).map_err(|source| BenchError::Io {
        what: format!("creating {}", path.display()),
        source,
    })?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP))
        .build();
    ArrowWriter::try_new(file, schema, Some(props)).map_err(|e| other(path, e))
}

fn other(path: &Path, e: impl std::fmt::Display) -> BenchError {
    BenchError::Io {
        what: format!("writing {}", path.display()),
        source: std::io::Error::other(e.to_string()),
    }
}

/// Writes the history and entity files.
fn generate(dir: &Path, sizes: &Sizes, args: &OfflineArgs) -> Result<Generated> {
    let seed = args.seed;
    let features = feature_indices(args.features)?;
    let mut fields = vec![
        Field::new(KEY, DataType::Int64, false),
        Field::new(TS, ts_type(), false),
    ];
    if args.created {
        fields.push(Field::new(CREATED, ts_type(), false));
    }
    for &i in &features {
        fields.push(Field::new(
            USER_STATS[i].name,
            arrow_scalar(USER_STATS[i].ty)?,
            true,
        ));
    }
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    let types: Vec<DataType> = schema.fields()[schema.fields().len() - features.len()..]
        .iter()
        .map(|f| f.data_type().clone())
        .collect();

    // History, in file order; `rows_of[user]` counts each user's rows so far, which makes
    // event times unique per user.
    let history_path = dir.join(HISTORY_FILE);
    let mut writer = parquet_writer(&history_path, schema.clone())?;
    let values = Dataset::new(seed ^ SALT_VALUES, sizes.history_rows, END_SECS);
    let mut rows_of = vec![0u32; usize::try_from(sizes.entities).unwrap_or(usize::MAX)];
    let span_ms = SPAN_SECS as u64 * 1000;
    let start_us = (END_SECS - SPAN_SECS) * MICROS_PER_SEC;
    // About one boundary sample per 20 entity rows.
    let sample_every = (sizes.history_rows / (sizes.entity_rows / 20).max(1)).max(1);
    let mut samples: Vec<(i64, i64)> = Vec::new();
    let mut p = 0u64;
    let step = (sizes.history_rows / 10).max(1);
    while p < sizes.history_rows {
        let n = (sizes.history_rows - p).min(ROW_GROUP as u64) as usize;
        let mut keys = Vec::with_capacity(n);
        let mut times = Vec::with_capacity(n);
        let mut created = Vec::with_capacity(if args.created { n } else { 0 });
        let mut cols: Vec<Column> = types.iter().map(|t| Column::new(t, n)).collect();
        for g in p..p + n as u64 {
            let user = below(draw(seed, SALT_KEY, g), sizes.entities);
            let count = &mut rows_of[user as usize];
            let ms = below(draw(seed, SALT_TIME, g), span_ms) as i64;
            let ts = start_us + ms * 1000 + i64::from(*count % 1000);
            *count = count.saturating_add(1);
            keys.push(user as i64);
            times.push(ts);
            if args.created {
                let delay = below(draw(seed, SALT_CREATED, g), 3600 * MICROS_PER_SEC as u64);
                created.push(ts + delay as i64);
            }
            let row = values.row(g);
            for (c, (col, &i)) in cols.iter_mut().zip(&features).enumerate() {
                let null = draw(seed, SALT_NULL, g * 32 + c as u64).is_multiple_of(100);
                col.push((!null).then(|| &row.values[i]))?;
            }
            if draw(seed, SALT_SAMPLE, g).is_multiple_of(sample_every) {
                samples.push((user as i64, ts));
            }
        }
        let mut arrays: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(keys)),
            Arc::new(TimestampMicrosecondArray::from(times).with_timezone("UTC")),
        ];
        if args.created {
            arrays.push(Arc::new(
                TimestampMicrosecondArray::from(created).with_timezone("UTC"),
            ));
        }
        arrays.extend(cols.into_iter().map(Column::finish));
        let batch =
            RecordBatch::try_new(schema.clone(), arrays).map_err(|e| other(&history_path, e))?;
        writer.write(&batch).map_err(|e| other(&history_path, e))?;
        p += n as u64;
        if p % step < n as u64 && p < sizes.history_rows {
            eprintln!("  history: {p} / {} rows", sizes.history_rows);
        }
    }
    writer.close().map_err(|e| other(&history_path, e))?;
    let distinct_keys = rows_of.iter().filter(|&&c| c > 0).count() as u64;
    drop(rows_of);

    let entities_path = dir.join(ENTITIES_FILE);
    write_entities(&entities_path, sizes, seed, &samples)?;
    Ok(Generated {
        history_bytes: file_len(&history_path)?,
        entities_bytes: file_len(&entities_path)?,
        distinct_keys,
    })
}

/// Entity rows: mostly uniform keys (1 % unknown) and times, some on history rows' event times
/// and TTL boundaries (`samples`), a few nulls; a 0/1 label.
fn write_entities(path: &Path, sizes: &Sizes, seed: u64, samples: &[(i64, i64)]) -> Result<()> {
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        Field::new(KEY, DataType::Int64, true),
        Field::new(TS, ts_type(), true),
        Field::new(LABEL, DataType::Int64, false),
    ]));
    let mut writer = parquet_writer(path, schema.clone())?;
    let view_ttl_us = 7 * DAY_US;
    let key_space = sizes.entities + sizes.entities / 100 + 1;
    let t0 = (END_SECS - SPAN_SECS + 10 * 86_400) * MICROS_PER_SEC;
    let t_span = (SPAN_SECS - 8 * 86_400) as u64 * MICROS_PER_SEC as u64;
    let mut j = 0u64;
    while j < sizes.entity_rows {
        let n = (sizes.entity_rows - j).min(ROW_GROUP as u64) as usize;
        let mut keys = Vec::with_capacity(n);
        let mut times = Vec::with_capacity(n);
        let mut labels = Vec::with_capacity(n);
        for i in j..j + n as u64 {
            let r = draw(seed, SALT_ENTITY, i * 4);
            let r2 = draw(seed, SALT_ENTITY, i * 4 + 1);
            let r3 = draw(seed, SALT_ENTITY, i * 4 + 2);
            let uniform_t = t0 + below(r3, t_span) as i64;
            let (key, t) = match r % 10_000 {
                0..5 => (None, Some(uniform_t)),
                5..10 => (Some(below(r2, key_space) as i64), None),
                10..510 if !samples.is_empty() => {
                    let (key, e) = samples[below(r2, samples.len() as u64) as usize];
                    let t = match r3 % 4 {
                        0 => e,
                        1 => e + view_ttl_us,
                        2 => e + view_ttl_us + 1,
                        _ => e + DAY_US,
                    };
                    (Some(key), Some(t))
                }
                _ => (Some(below(r2, key_space) as i64), Some(uniform_t)),
            };
            keys.push(key);
            times.push(t);
            labels.push(i64::from(
                draw(seed, SALT_ENTITY, i * 4 + 3).is_multiple_of(10),
            ));
        }
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(keys)),
                Arc::new(TimestampMicrosecondArray::from(times).with_timezone("UTC")),
                Arc::new(Int64Array::from(labels)),
            ],
        )
        .map_err(|e| other(path, e))?;
        writer.write(&batch).map_err(|e| other(path, e))?;
        j += n as u64;
    }
    writer.close().map_err(|e| other(path, e))?;
    Ok(())
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|source| BenchError::Io {
        what: format!("writing {}", path.display()),
        source,
    })
}

fn file_len(path: &Path) -> Result<u64> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|source| BenchError::Io {
            what: format!("reading the size of {}", path.display()),
            source,
        })
}

// ---------------------------------------------------------------------------------------------
// Workers (child processes of this binary)
// ---------------------------------------------------------------------------------------------

/// A measured step, in this (child) process: prints one JSON line with its figures and its
/// own peak RSS.
fn run_worker(args: &OfflineArgs, worker: Worker) -> Result<()> {
    let missing = |flag: &str| BenchError::InvalidArgument(format!("--worker needs {flag}"));
    let dir = args
        .worker_dir
        .as_deref()
        .ok_or_else(|| missing("--worker-dir"))?;
    let out = args
        .worker_out
        .as_deref()
        .ok_or_else(|| missing("--worker-out"))?;
    let offline = |e: quiver_offline::OfflineError| BenchError::Io {
        what: format!("quiver offline ({worker:?})"),
        source: std::io::Error::other(e),
    };
    let registry = Registry::load(&dir.join(REGISTRY_FILE))?;
    let history = History::for_view(&registry, VIEW, dir, EpochUnit::Seconds).map_err(offline)?;
    let figures = match worker {
        Worker::Join => {
            let view = registry
                .view(VIEW)
                .ok_or_else(|| BenchError::Schema(format!("no view {VIEW:?}")))?;
            let refs: Vec<String> = view
                .features
                .iter()
                .map(|f| format!("{VIEW}:{}", f.name))
                .collect();
            let plan = FeaturePlan::new(&registry, &refs, false).map_err(offline)?;
            let opts = JoinOptions {
                threads: args.threads,
                ..JoinOptions::default()
            };
            let s = write_training_set(
                &registry,
                &plan,
                std::slice::from_ref(&history),
                &dir.join(ENTITIES_FILE),
                out,
                &opts,
            )
            .map_err(offline)?;
            json!({"seconds": s.seconds, "rows": s.rows, "bytes": s.bytes,
                   "history_rows": s.history_rows})
        }
        Worker::Materialize => {
            let opts = MaterializeOptions {
                threads: args.threads,
                ..MaterializeOptions::default()
            };
            let s = materialize_snapshot(&registry, &history, out, &opts).map_err(offline)?;
            json!({"seconds": s.seconds, "entities": s.entities, "bytes": s.bytes,
                   "rows_read": s.rows_read})
        }
    };
    let mut figures = figures;
    figures["peak_rss_kb"] = json!(status_kb("self", "VmHWM"));
    println!("{figures}");
    Ok(())
}

/// What a measured child process did.
#[derive(Debug, Clone)]
struct Measured {
    /// Start to exit, seconds.
    wall_s: f64,
    /// Peak RSS in MB: the process's own reading at its end, or else the highest sampled.
    peak_rss_mb: Option<f64>,
    /// Its JSON line.
    figures: Json,
}

impl Measured {
    fn figure(&self, name: &str) -> Option<f64> {
        self.figures.get(name).and_then(Json::as_f64)
    }

    fn count(&self, name: &str) -> Option<u64> {
        self.figures.get(name).and_then(Json::as_u64)
    }
}

fn run_worker_process(
    dir: &Path,
    worker: Worker,
    out: &Path,
    threads: usize,
    timeout: Duration,
) -> Result<Measured> {
    let exe = std::env::current_exe().map_err(|source| BenchError::Io {
        what: "finding this executable".into(),
        source,
    })?;
    let mut cmd = Command::new(exe);
    cmd.arg("offline")
        .arg("--worker")
        .arg(match worker {
            Worker::Join => "join",
            Worker::Materialize => "materialize",
        })
        .arg("--worker-dir")
        .arg(dir)
        .arg("--worker-out")
        .arg(out)
        .arg("--threads")
        .arg(threads.to_string());
    let m = run_measured(cmd, &format!("quiver {worker:?} worker"), timeout)?;
    let own = m.figure("peak_rss_kb").map(|kb| kb / 1024.0);
    Ok(Measured {
        peak_rss_mb: own.or(m.peak_rss_mb),
        ..m
    })
}

/// Runs `cmd` to completion (killed after `timeout`), timing it and sampling its `VmHWM`;
/// its last stdout line must be a JSON object.
fn run_measured(mut cmd: Command, what: &str, timeout: Duration) -> Result<Measured> {
    let io = |source| BenchError::Io {
        what: format!("running {what}"),
        source,
    };
    cmd.stdin(Stdio::null()).stdout(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(io)?;
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| io(std::io::Error::other("no stdout pipe")))?;
    // Read on the side, so a chatty child never blocks on a full pipe while we poll.
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).map(|_| s)
    });
    let proc_dir = child.id().to_string();
    let mut sampled_kb: Option<u64> = None;
    let mut polls = 0u64;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(io)? {
            break status;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io(std::io::Error::other(format!(
                "killed after {} s (--timeout)",
                timeout.as_secs()
            ))));
        }
        if polls.is_multiple_of(20) {
            if let Some(kb) = status_kb(&proc_dir, "VmHWM") {
                sampled_kb = Some(sampled_kb.map_or(kb, |s| s.max(kb)));
            }
        }
        polls += 1;
        std::thread::sleep(Duration::from_millis(5));
    };
    let wall_s = started.elapsed().as_secs_f64();
    let out = reader
        .join()
        .map_err(|_| io(std::io::Error::other("stdout reader panicked")))?
        .map_err(io)?;
    if !status.success() {
        return Err(io(std::io::Error::other(format!(
            "exited with {status}; output: {}",
            out.trim()
        ))));
    }
    let last = out.lines().last().unwrap_or("");
    let figures: Json = serde_json::from_str(last).map_err(|e| {
        io(std::io::Error::other(format!(
            "its last line is not JSON ({e}): {last:?}"
        )))
    })?;
    Ok(Measured {
        wall_s,
        peak_rss_mb: sampled_kb.map(|kb| kb as f64 / 1024.0),
        figures,
    })
}

/// A `Vm*` field of `/proc/<pid>/status` in KiB (`pid` may be `self`).
fn status_kb(pid: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        l.strip_prefix(field)?
            .strip_prefix(':')?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

/// The 1, 5 and 15-minute load averages.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

// ---------------------------------------------------------------------------------------------
// DuckDB
// ---------------------------------------------------------------------------------------------

/// DuckDB's version if `python` can import it, else why not (with the install command).
fn probe_duckdb(python: &str) -> Result<String, String> {
    let out = Command::new(python)
        .args(["-c", "import duckdb; print(duckdb.__version__)"])
        .stdin(Stdio::null())
        .output();
    match out {
        Err(e) => Err(format!(
            "{python} could not be started ({e}); install Python 3, then `pip install duckdb`"
        )),
        Ok(o) if !o.status.success() => Err(format!(
            "the Python module duckdb is missing for {python}; install it with `pip install \
             duckdb`"
        )),
        Ok(o) => Ok(String::from_utf8_lossy(&o.stdout).trim().to_owned()),
    }
}

/// The script's description of the join: columns, and each feature's TTL from the registry.
/// No created column: `ASOF` cannot order by (event, created), and without equal event times
/// per user (see the module documentation) it never decides.
fn duckdb_spec(registry: &Registry) -> Result<Json> {
    let view = registry
        .view(VIEW)
        .ok_or_else(|| BenchError::Schema(format!("no view {VIEW:?}")))?;
    let features: Vec<Json> = view
        .features
        .iter()
        .enumerate()
        .map(|(i, f)| {
            json!({
                "name": f.name,
                "column": f.column.clone().unwrap_or_else(|| f.name.clone()),
                "ttl_us": view.feature_ttl_secs(i).saturating_mul(MICROS_PER_SEC as u64),
            })
        })
        .collect();
    Ok(json!({"key": KEY, "entity_ts": TS, "history_ts": TS, "features": features}))
}

fn script_command(args: &OfflineArgs, scratch: &ScratchDir, script: &Path, cmd: &str) -> Command {
    let mut c = Command::new(&args.python);
    c.arg(script)
        .arg(cmd)
        .arg("--threads")
        .arg(args.threads.to_string())
        .arg("--temp-dir")
        .arg(scratch.join("duckdb-tmp"))
        .current_dir(scratch.path());
    c
}

fn run_duckdb_join(
    args: &OfflineArgs,
    scratch: &ScratchDir,
    script: &Path,
    spec: &Path,
    out: &Path,
    timeout: Duration,
) -> Result<Measured> {
    let mut cmd = script_command(args, scratch, script, "join");
    cmd.arg("--spec")
        .arg(spec)
        .arg("--entities")
        .arg(scratch.join(ENTITIES_FILE))
        .arg("--history")
        .arg(scratch.join(HISTORY_FILE))
        .arg("--out")
        .arg(out);
    let m = run_measured(
        cmd,
        "the DuckDB join (bench/scripts/duckdb_asof.py)",
        timeout,
    )?;
    Ok(Measured {
        peak_rss_mb: m.figure("peak_rss_mb").or(m.peak_rss_mb),
        ..m
    })
}

fn compare_outputs(
    args: &OfflineArgs,
    scratch: &ScratchDir,
    script: &Path,
    registry: &Registry,
    quiver: &Path,
    duck: &Path,
    timeout: Duration,
) -> Result<Json> {
    let features: Vec<&str> = registry
        .view(VIEW)
        .map(|v| v.features.iter().map(|f| f.name.as_str()).collect())
        .unwrap_or_default();
    let mut cmd = script_command(args, scratch, script, "compare");
    cmd.arg("--quiver")
        .arg(quiver)
        .arg("--duckdb")
        .arg(duck)
        .arg("--features")
        .arg(features.join(","));
    let m = run_measured(
        cmd,
        "the comparison (bench/scripts/duckdb_asof.py)",
        timeout,
    )?;
    Ok(m.figures)
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

struct Report<'a> {
    args: &'a OfflineArgs,
    sizes: Sizes,
    gen: Generated,
    gen_s: f64,
    filesystem: String,
    load_start: String,
    load_end: String,
    duckdb_status: std::result::Result<String, String>,
    quiver: Vec<Measured>,
    duck: Vec<Measured>,
    comparison: Option<Json>,
    mat: Measured,
}

fn max_of(xs: impl Iterator<Item = Option<f64>>) -> f64 {
    xs.flatten().fold(f64::NAN, f64::max)
}

impl Report<'_> {
    fn quiver_s(&self) -> f64 {
        median(&self.quiver.iter().map(|m| m.wall_s).collect::<Vec<_>>())
    }

    fn duckdb_s(&self) -> f64 {
        median(
            &self
                .duck
                .iter()
                .filter_map(|m| m.figure("seconds"))
                .collect::<Vec<_>>(),
        )
    }

    fn quiver_rss(&self) -> f64 {
        max_of(self.quiver.iter().map(|m| m.peak_rss_mb))
    }

    fn duckdb_rss(&self) -> f64 {
        max_of(self.duck.iter().map(|m| m.peak_rss_mb))
    }

    fn identical(&self) -> Option<bool> {
        self.comparison
            .as_ref()
            .and_then(|c| c.get("identical"))
            .and_then(Json::as_bool)
    }

    fn compared(&self, field: &str) -> Json {
        self.comparison
            .as_ref()
            .and_then(|c| c.get(field))
            .cloned()
            .unwrap_or(Json::Null)
    }

    fn table(&self) -> String {
        let a = self.args;
        let s = &self.sizes;
        let mut t = Table::new(["system", "wall (s)", "peak RSS (MB)", "runs (s)"]);
        let runs = |xs: Vec<f64>| {
            xs.iter()
                .map(|x| format!("{x:.2}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        t.row([
            "quiver historical".to_owned(),
            format!("{:.2}", self.quiver_s()),
            format!("{:.0}", self.quiver_rss()),
            runs(self.quiver.iter().map(|m| m.wall_s).collect()),
        ]);
        let duck_line = match &self.duckdb_status {
            Ok(v) => {
                t.row([
                    format!("DuckDB {v} ASOF LEFT JOIN"),
                    format!("{:.2}", self.duckdb_s()),
                    format!("{:.0}", self.duckdb_rss()),
                    runs(
                        self.duck
                            .iter()
                            .filter_map(|m| m.figure("seconds"))
                            .collect(),
                    ),
                ]);
                let r = ratio(self.quiver_s(), self.duckdb_s());
                let rss = ratio(self.quiver_rss(), self.duckdb_rss());
                let identical = match self.identical() {
                    Some(true) => "identical, row by row".to_owned(),
                    _ => format!(
                        "DIFFERENT: {} mismatched rows, by column {}, first {}",
                        self.compared("mismatched_rows"),
                        self.compared("mismatches_by_column"),
                        self.compared("first_mismatches")
                    ),
                };
                format!(
                    "quiver / duckdb: time {r:.2} (target at most {TARGET_RATIO}: {}), peak RSS \
                     {rss:.2} (target at most 1: {})\noutputs: {identical}; null feature values \
                     {} (all features null in {} of rows)",
                    met(r <= TARGET_RATIO),
                    met(rss <= 1.0),
                    self.compared("null_fraction"),
                    self.compared("all_null_fraction"),
                )
            }
            Err(why) => format!("DuckDB: not run: {why}"),
        };
        t.row([
            "quiver materialize --out".to_owned(),
            format!("{:.2}", self.mat.wall_s),
            format!("{:.0}", self.mat.peak_rss_mb.unwrap_or(f64::NAN)),
            format!("{} entities", self.gen.distinct_keys),
        ]);
        format!(
            "Quiver offline benchmark (W8): {} history rows × {} features ({} bytes, {}), {} \
             users, {} entity rows; seed {}; threads {}; on {}; load average {} → {}\n\n{}\n\n\
             {duck_line}\ndata generated in {:.1} s",
            s.history_rows,
            a.features,
            self.gen.history_bytes,
            if a.created {
                "with a created column"
            } else {
                "no created column"
            },
            s.entities,
            s.entity_rows,
            a.seed,
            if a.threads == 0 {
                "one per core".to_owned()
            } else {
                a.threads.to_string()
            },
            self.filesystem,
            self.load_start,
            self.load_end,
            t.render(),
            self.gen_s,
        )
    }

    fn json(&self) -> String {
        let a = self.args;
        let s = &self.sizes;
        let duck_ok = self.duckdb_status.is_ok();
        let opt = |x: f64| if duck_ok { num(x) } else { Json::Null };
        let r = ratio(self.quiver_s(), self.duckdb_s());
        let rss_r = ratio(self.quiver_rss(), self.duckdb_rss());
        let mut j = json!({
            "workload": "offline",
            "history_rows": s.history_rows,
            "entity_rows": s.entity_rows,
            "entities": s.entities,
            "features": a.features,
            "created_column": a.created,
            "seed": a.seed,
            "threads": a.threads,
            "repeats": a.repeats,
            "history_bytes": self.gen.history_bytes,
            "entities_bytes": self.gen.entities_bytes,
            "gen_s": num(self.gen_s),
            "quiver_s": num(self.quiver_s()),
            "quiver_all_s": self.quiver.iter().map(|m| num(m.wall_s)).collect::<Vec<_>>(),
            "quiver_join_s": num(median(&self.quiver.iter()
                .filter_map(|m| m.figure("seconds")).collect::<Vec<_>>())),
            "quiver_peak_rss_mb": num(self.quiver_rss()),
            "duckdb_s": opt(self.duckdb_s()),
            "duckdb_all_s": self.duck.iter().map(|m| num(m.figure("seconds")
                .unwrap_or(f64::NAN))).collect::<Vec<_>>(),
            "duckdb_process_s": opt(median(&self.duck.iter().map(|m| m.wall_s)
                .collect::<Vec<_>>())),
            "duckdb_peak_rss_mb": opt(self.duckdb_rss()),
            "duckdb_baseline_rss_mb": opt(max_of(self.duck.iter()
                .map(|m| m.figure("baseline_rss_mb")))),
            "duckdb_threads": self.duck.first().and_then(|m| m.figures.get("threads")).cloned(),
            "duckdb_version": self.duckdb_status.as_ref().ok(),
            "duckdb_missing": self.duckdb_status.as_ref().err(),
            "ratio": opt(r),
            "rss_ratio": opt(rss_r),
            "rows": s.entity_rows,
            "identical": self.identical(),
            "mismatched_rows": self.compared("mismatched_rows"),
            "column_types_match": self.compared("column_types_match"),
        });
        let more = json!({
            "materialize_s": num(self.mat.wall_s),
            "materialize_peak_rss_mb": num(self.mat.peak_rss_mb.unwrap_or(f64::NAN)),
            "materialize_entities": self.mat.count("entities"),
            "snapshot_bytes": self.mat.count("bytes"),
            "quiver_output_bytes": self.quiver.first().and_then(|m| m.count("bytes")),
            "null_fraction": self.compared("null_fraction"),
            "all_null_fraction": self.compared("all_null_fraction"),
            "target_ratio": TARGET_RATIO,
            "ratio_met": duck_ok.then_some(r <= TARGET_RATIO),
            "rss_met": duck_ok.then_some(rss_r <= 1.0),
            "filesystem": self.filesystem,
            "loadavg_start": self.load_start,
            "loadavg_end": self.load_end,
        });
        if let (Some(j), Json::Object(more)) = (j.as_object_mut(), more) {
            j.extend(more);
        }
        j.to_string()
    }
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "missed"
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int64Type, TimestampMicrosecondType};
    use arrow_array::Array;
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: OfflineArgs,
    }

    fn args(extra: &[&str]) -> OfflineArgs {
        let base = [
            "x",
            "--history-rows",
            "30000",
            "--entity-rows",
            "20000",
            "--entities",
            "500",
        ];
        Cli::try_parse_from(base.iter().chain(extra)).unwrap().args
    }

    fn generate_into(dir: &ScratchDir, args: &OfflineArgs) -> Generated {
        write_registry(dir.path(), args).unwrap();
        generate(dir.path(), &Sizes::resolve(args).unwrap(), args).unwrap()
    }

    #[test]
    fn data_is_deterministic_with_unique_times_per_user() {
        let args = args(&["--created"]);
        let (a, b) = (
            ScratchDir::new(None, "offline-test").unwrap(),
            ScratchDir::new(None, "offline-test").unwrap(),
        );
        let gen = generate_into(&a, &args);
        generate_into(&b, &args);
        for f in [HISTORY_FILE, ENTITIES_FILE, REGISTRY_FILE] {
            let (x, y) = (
                std::fs::read(a.join(f)).unwrap(),
                std::fs::read(b.join(f)).unwrap(),
            );
            assert!(x == y, "{f} differs between two runs with the same seed");
        }

        let history = quiver_offline::read_parquet(&a.join(HISTORY_FILE)).unwrap();
        assert_eq!(history.num_rows(), 30_000);
        assert_eq!(history.num_columns(), 3 + 8);
        let users = history.column(0).as_primitive::<Int64Type>();
        let times = history.column(1).as_primitive::<TimestampMicrosecondType>();
        let span = (END_SECS - SPAN_SECS) * MICROS_PER_SEC..END_SECS * MICROS_PER_SEC;
        let mut seen = HashSet::new();
        for i in 0..history.num_rows() {
            let (user, t) = (users.value(i), times.value(i));
            assert!(seen.insert((user, t)), "tie at row {i}");
            assert!(span.contains(&t), "row {i} out of the span");
        }
        let distinct: HashSet<i64> = users.values().iter().copied().collect();
        assert_eq!(gen.distinct_keys, distinct.len() as u64);
        let nulls = history.column(3).null_count();
        assert!((100..600).contains(&nulls), "{nulls} nulls in 30000 rows");

        let entities = quiver_offline::read_parquet(&a.join(ENTITIES_FILE)).unwrap();
        assert_eq!(entities.num_rows(), 20_000);
        let keys = entities.column(0).as_primitive::<Int64Type>();
        let ts = entities
            .column(1)
            .as_primitive::<TimestampMicrosecondType>();
        assert!(keys.null_count() > 0 && ts.null_count() > 0);
        let unknown = (0..keys.len()).filter(|&i| keys.is_valid(i) && keys.value(i) >= 500);
        assert!(unknown.count() > 0, "no entity row without history");
        let on_event = (0..keys.len())
            .filter(|&i| keys.is_valid(i) && ts.is_valid(i))
            .filter(|&i| seen.contains(&(keys.value(i), ts.value(i))))
            .count();
        assert!(
            on_event > 100,
            "{on_event} entity rows exactly on an event time"
        );
    }

    #[test]
    fn duckdb_spec_carries_each_features_ttl() {
        let dir = ScratchDir::new(None, "offline-test").unwrap();
        let registry = write_registry(dir.path(), &args(&["--features", "10"])).unwrap();
        let spec = duckdb_spec(&registry).unwrap();
        let features = spec["features"].as_array().unwrap();
        assert_eq!(features.len(), 10);
        let ttl = |name: &str| {
            features.iter().find(|f| f["name"] == name).unwrap()["ttl_us"]
                .as_u64()
                .unwrap()
        };
        assert_eq!(ttl("txn_count_7d"), 7 * 86_400_000_000);
        assert_eq!(ttl("failed_logins_24h"), 86_400_000_000);
        assert_eq!(ttl("country"), 0);
        assert_eq!(ttl("txn_count_24h"), 7 * 86_400_000_000);
    }

    #[test]
    fn sizes_are_checked() {
        assert!(Sizes::resolve(&args(&["--features", "0"])).is_err());
        assert!(Sizes::resolve(&args(&["--features", "21"])).is_err());
        let mut no_users = args(&[]);
        no_users.entities = Some(0);
        assert!(Sizes::resolve(&no_users).is_err());
        assert!(Sizes::resolve(&args(&["--repeats", "0"])).is_err());
        let smoke = Sizes::resolve(&Cli::parse_from(["x", "--smoke"]).args).unwrap();
        assert_eq!(smoke.history_rows, 200_000);
    }
}
