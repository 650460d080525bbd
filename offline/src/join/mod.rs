//! The point-in-time join (docs/semantics.md, "Point-in-time join"): for each entity row
//! `(keys, t)` and each requested feature of view V, V's latest history row with
//! `event_ts <= t` (ties: latest created time, then latest in dataset order); the value is kept
//! only if `event_ts >= t - ttl(feature)` (ttl 0: no bound); no match → null.
//!
//! # How
//! Views are joined one at a time. For a view:
//! 1. **Slots.** The entity rows with a key and a time are sorted by (key, t); each becomes a
//!    *slot*. A history row with event time `e` can only matter to the key's rows with
//!    `t >= e`, and among those it lands in exactly one slot: the first with `t >= e`
//!    (binary search). The answer for a slot is then the best row of all slots up to it
//!    (a prefix maximum within the key), because every row in an earlier slot is also
//!    `<= t` for the later ones.
//! 2. **Scan.** Row groups are scanned in parallel, reading only the key, event and created
//!    columns; each thread keeps the best `(event, created, position)` per slot — 24 bytes per
//!    entity row — and the threads' results are merged by maximum. Row groups whose event time
//!    statistics fall outside `[min t - max ttl, max t]` are skipped.
//! 3. **Fetch.** The winning rows are sorted by position and read again, feature columns only,
//!    decoding only the selected rows of the row groups that hold winners; the per-feature TTL
//!    check then decides, row by row, whether the winner's value or null goes out.
//!
//! # Memory
//! History is streamed, never held: at any time each thread holds one decoded batch of key and
//! time columns ([`crate::history`]'s batch size). What grows with the input is per *entity
//! row*: the entity batch itself, 24 bytes × threads of slot state, and the fetched feature
//! values (the output). [`JoinOptions::chunk_rows`] bounds that: entity rows are joined in
//! chunks of that many rows, each chunk re-scanning the history, so memory is
//! `O(chunk_rows × (entity columns + features + 24 × threads))` whatever the input sizes.

mod slots;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow_array::{new_null_array, ArrayRef, Int64Array, RecordBatch, UInt32Array};
use arrow_buffer::NullBuffer;
use arrow_schema::{Field, Schema, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use quiver_engine::{FeatureRef, Registry, ValueType, MICROS_PER_SEC};

use crate::error::{io_err, output_exists, parquet_err, refuse_existing, OfflineError, Result};
use crate::history::{History, KeyTime};
use crate::keys::KeyColumns;
use crate::parallel::{default_threads, Progress};
use crate::types::{accepts_key, accepts_timestamp, arrow_type, as_stored, timestamps, EpochUnit};
use slots::{Slot, Slots, NONE};

/// How to run a join.
#[derive(Debug, Clone)]
pub struct JoinOptions {
    /// Name output columns `view__feature` instead of `feature`.
    pub full_feature_names: bool,
    /// The entity rows' timestamp column.
    pub timestamp_column: String,
    /// How to read `int64` timestamp columns.
    pub epoch_unit: EpochUnit,
    /// Worker threads (0 = one per core).
    pub threads: usize,
    /// Entity rows joined at a time; bounds memory (see the module documentation).
    pub chunk_rows: usize,
    /// Show a progress line on stderr when it is a terminal.
    pub progress: bool,
}

impl Default for JoinOptions {
    fn default() -> Self {
        Self {
            full_feature_names: false,
            timestamp_column: "event_timestamp".into(),
            epoch_unit: EpochUnit::Seconds,
            threads: 0,
            chunk_rows: 4 << 20,
            progress: false,
        }
    }
}

/// The requested features, resolved against the registry and grouped by view.
#[derive(Debug, Clone)]
pub struct FeaturePlan {
    names: Vec<String>,
    types: Vec<ValueType>,
    /// Distinct views in first-requested order, each with `(output column, feature index)`.
    views: Vec<(usize, Vec<(usize, usize)>)>,
}

impl FeaturePlan {
    /// Resolves `view:feature` references. Output names must be distinct: two views with a
    /// feature of the same name need `full_feature_names`.
    pub fn new<S: AsRef<str>>(
        registry: &Registry,
        refs: &[S],
        full_feature_names: bool,
    ) -> Result<Self> {
        if refs.is_empty() {
            return Err(OfflineError::InvalidArgument(
                "no features requested".into(),
            ));
        }
        let mut plan = Self {
            names: Vec::new(),
            types: Vec::new(),
            views: Vec::new(),
        };
        for (col, r) in refs.iter().enumerate() {
            let FeatureRef { view, feature } = registry.resolve(r.as_ref())?;
            let v = &registry.views()[view];
            let f = &v.features[feature];
            let name = if full_feature_names {
                format!("{}__{}", v.name, f.name)
            } else {
                f.name.clone()
            };
            if plan.names.contains(&name) {
                return Err(OfflineError::InvalidArgument(format!(
                    "feature {:?} is requested twice or named like another requested feature; \
                     use full feature names (view__feature) or drop the duplicate",
                    r.as_ref()
                )));
            }
            plan.names.push(name);
            plan.types.push(f.ty);
            match plan.views.iter_mut().find(|g| g.0 == view) {
                Some(g) => g.1.push((col, feature)),
                None => plan.views.push((view, vec![(col, feature)])),
            }
        }
        Ok(plan)
    }

    /// Output column names, in request order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The views the features come from, in first-requested order.
    pub fn views<'r>(&self, registry: &'r Registry) -> Vec<&'r str> {
        self.views
            .iter()
            .map(|(v, _)| registry.views()[*v].name.as_str())
            .collect()
    }

    /// The output fields of the features (nullable, Arrow types matching the registry).
    pub fn fields(&self) -> Vec<Field> {
        self.names
            .iter()
            .zip(&self.types)
            .map(|(n, t)| Field::new(n, arrow_type(*t), true))
            .collect()
    }
}

/// Checks that entity rows with this schema can be joined: the timestamp column and every
/// needed join key column exist with usable types, and no output name collides.
pub(crate) fn check_entity_schema(
    registry: &Registry,
    plan: &FeaturePlan,
    schema: &Schema,
    opts: &JoinOptions,
    label: &str,
) -> Result<()> {
    let mut problems = Vec::new();
    match schema.field_with_name(&opts.timestamp_column) {
        Err(_) => problems.push(format!(
            "missing timestamp column {:?} (the time each row is joined as of; choose another \
             with --timestamp-column)",
            opts.timestamp_column
        )),
        Ok(f) if !accepts_timestamp(f.data_type()) => problems.push(format!(
            "timestamp column {:?} is {}, expected a Timestamp (any unit), Date or Int64 epoch",
            opts.timestamp_column,
            f.data_type()
        )),
        Ok(_) => {}
    }
    let mut seen = Vec::new();
    for (vi, _) in &plan.views {
        let v = &registry.views()[*vi];
        let Some(entity) = registry.view_entity(v) else {
            continue;
        };
        for jk in &entity.join_keys {
            if seen.contains(&jk.name) {
                continue;
            }
            seen.push(jk.name.clone());
            match schema.field_with_name(&jk.name) {
                Err(_) => problems.push(format!(
                    "missing join key column {:?} (entity {:?} of view {:?})",
                    jk.name, entity.name, v.name
                )),
                Ok(f) if !accepts_key(f.data_type(), jk.ty) => problems.push(format!(
                    "join key column {:?} is {}, expected {}",
                    jk.name,
                    f.data_type(),
                    jk.ty.name()
                )),
                Ok(_) => {}
            }
        }
    }
    for n in &plan.names {
        if schema.field_with_name(n).is_ok() {
            problems.push(format!(
                "column {n:?} is also the name of a requested feature; rename the column or \
                 use full feature names"
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(OfflineError::Schema {
            path: format!("{label} (entity rows)"),
            problems,
        })
    }
}

fn ttl_micros(registry: &Registry, view: usize, feature: usize) -> i64 {
    (registry.views()[view].feature_ttl_secs(feature) as i64).saturating_mul(MICROS_PER_SEC)
}

/// Whether a value with event time `ts` may be served as of `t` under `ttl` (0 = forever).
fn fresh(ts: i64, t: i64, ttl: i64) -> bool {
    ttl == 0 || ts >= t.saturating_sub(ttl)
}

/// Joins the planned features onto one batch of entity rows: the entity columns followed by
/// one column per feature. `histories` must hold the history of every view in the plan.
pub fn join_batch(
    registry: &Registry,
    plan: &FeaturePlan,
    histories: &[History],
    entities: &RecordBatch,
    opts: &JoinOptions,
) -> Result<RecordBatch> {
    join_batch_with(
        registry,
        plan,
        histories,
        entities,
        opts,
        &Progress::new(false),
    )
}

fn join_batch_with(
    registry: &Registry,
    plan: &FeaturePlan,
    histories: &[History],
    entities: &RecordBatch,
    opts: &JoinOptions,
    progress: &Progress,
) -> Result<RecordBatch> {
    check_entity_schema(registry, plan, entities.schema_ref(), opts, "entity batch")?;
    let n = entities.num_rows();
    let ts_arr = entities
        .column_by_name(&opts.timestamp_column)
        .cloned()
        .ok_or_else(|| OfflineError::InvalidArgument("timestamp column vanished".into()))?;
    let t = timestamps(&ts_arr, opts.epoch_unit).map_err(|e| OfflineError::Data {
        path: "entity rows".into(),
        column: opts.timestamp_column.clone(),
        reason: e,
    })?;
    let threads = if opts.threads == 0 {
        default_threads()
    } else {
        opts.threads
    };
    let mut out: Vec<Option<ArrayRef>> = vec![None; plan.names.len()];
    for (vi, feats) in &plan.views {
        let hist = histories
            .iter()
            .find(|h| h.view_index() == *vi)
            .ok_or_else(|| {
                OfflineError::InvalidArgument(format!(
                    "no history given for feature view {:?}",
                    registry.views()[*vi].name
                ))
            })?;
        for (col, arr) in join_view(registry, hist, *vi, feats, entities, &t, threads, progress)? {
            out[col] = Some(arr);
        }
    }
    let mut fields: Vec<Field> = entities
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.extend(plan.fields());
    let mut columns = entities.columns().to_vec();
    for (k, c) in out.into_iter().enumerate() {
        columns.push(c.unwrap_or_else(|| new_null_array(&arrow_type(plan.types[k]), n)));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| OfflineError::InvalidArgument(format!("cannot assemble the output: {e}")))
}

/// Joins one view's features; returns `(output column, array)` pairs.
#[allow(clippy::too_many_arguments)]
fn join_view(
    registry: &Registry,
    hist: &History,
    vi: usize,
    feats: &[(usize, usize)],
    entities: &RecordBatch,
    t: &Int64Array,
    threads: usize,
    progress: &Progress,
) -> Result<Vec<(usize, ArrayRef)>> {
    let n = entities.num_rows();
    let entity = hist.entity().clone();
    let ttls: Vec<i64> = feats
        .iter()
        .map(|&(_, f)| ttl_micros(registry, vi, f))
        .collect();

    // 1. Slots: entity rows with a key and a time, sorted by (key, t).
    let key_arrays: Vec<ArrayRef> = entity
        .join_keys
        .iter()
        .map(|k| {
            entities.column_by_name(&k.name).cloned().ok_or_else(|| {
                OfflineError::InvalidArgument(format!("missing join key column {:?}", k.name))
            })
        })
        .collect::<Result<_>>()?;
    let ekeys = KeyColumns::new(&entity, &key_arrays).map_err(|e| OfflineError::Data {
        path: "entity rows".into(),
        column: entity.join_keys[0].name.clone(),
        reason: e,
    })?;
    let slots = Slots::build(&entity, &ekeys, t);
    if slots.order.is_empty() {
        return Ok(feats
            .iter()
            .map(|&(col, f)| {
                let ty = registry.views()[vi].features[f].ty;
                (col, new_null_array(&arrow_type(ty), n))
            })
            .collect());
    }
    // History rows older than every row's TTL bound can only produce nulls, whichever wins.
    let (t_min, t_max) = slots.t_range;
    let lo = if ttls.contains(&0) {
        i64::MIN
    } else {
        t_min.saturating_sub(ttls.iter().copied().max().unwrap_or(0))
    };
    let range = (lo, t_max);

    // 2. Scan keys and times in parallel; best row per slot per thread.
    let states = hist.scan_key_times(
        threads,
        range,
        progress,
        || (slots.template.clone(), Vec::new()),
        |(best, buf): &mut (Vec<Slot>, Vec<u8>), key_time, offset| {
            let KeyTime { keys, ts, created } = key_time;
            slots.offer_batch(
                &entity,
                keys,
                ts,
                created.as_ref(),
                offset + 1,
                range,
                best,
                buf,
            );
            Ok(())
        },
    )?;
    let mut states = states.into_iter();
    let mut best = states.next().map(|s| s.0).unwrap_or_default();
    for (other, _) in states {
        for (b, o) in best.iter_mut().zip(other) {
            b.best = b.best.max(o.best);
        }
    }

    // Prefix maximum within each key → the winner of each entity row.
    let mut winner = vec![NONE; n];
    for &(start, len) in &slots.groups {
        let mut run = NONE;
        for s in start as usize..(start + len) as usize {
            run = run.max(best[s].best);
            winner[slots.order[s] as usize] = run;
        }
    }
    drop(best);
    drop(slots);

    // 3. Fetch the winners that are fresh for at least one requested feature.
    let tv = t.values();
    let max_ttl = if ttls.contains(&0) {
        0
    } else {
        ttls.iter().copied().max().unwrap_or(0)
    };
    let mut pairs: Vec<(u64, u32)> = winner
        .iter()
        .enumerate()
        .filter(|(j, w)| w.seq != 0 && fresh(w.ts, tv[*j], max_ttl))
        .map(|(j, w)| (w.seq - 1, j as u32))
        .collect();
    pairs.sort_unstable();
    let mut rows: Vec<u64> = Vec::with_capacity(pairs.len());
    let mut rank: Vec<u32> = Vec::with_capacity(pairs.len());
    for &(row, _) in &pairs {
        if rows.last() != Some(&row) {
            rows.push(row);
        }
        rank.push(rows.len() as u32 - 1);
    }
    let fis: Vec<usize> = feats.iter().map(|&(_, f)| f).collect();
    progress.phase(format!("{}: reading values", hist.view()), 1);
    let arrays = hist.fetch(&rows, &fis, threads)?;
    progress.step(1);

    // Features with the same TTL share one index: winner's position, or null if stale.
    let mut indexes: Vec<(i64, UInt32Array)> = Vec::new();
    let mut out = Vec::with_capacity(feats.len());
    for (k, &(col, _)) in feats.iter().enumerate() {
        if !indexes.iter().any(|(ttl, _)| *ttl == ttls[k]) {
            let mut idx = vec![0u32; n];
            let mut valid = vec![false; n];
            for (p, &(_, j)) in pairs.iter().enumerate() {
                let j = j as usize;
                if fresh(winner[j].ts, tv[j], ttls[k]) {
                    idx[j] = rank[p];
                    valid[j] = true;
                }
            }
            indexes.push((
                ttls[k],
                UInt32Array::new(idx.into(), Some(NullBuffer::from(valid))),
            ));
        }
        let idx = indexes
            .iter()
            .find(|(ttl, _)| *ttl == ttls[k])
            .map(|(_, i)| i)
            .ok_or_else(|| OfflineError::InvalidArgument("index vanished".into()))?;
        let arr = arrow_select::take::take(arrays[k].as_ref(), idx, None).map_err(|e| {
            OfflineError::InvalidArgument(format!("cannot assemble column {col}: {e}"))
        })?;
        // Training sets hold what serving returns: lossy-stored vectors are quantized.
        let feature = &registry.views()[vi].features[feats[k].1];
        let arr = match feature.ty {
            ValueType::Vector { .. } => as_stored(&arr, feature.storage).map_err(|e| {
                OfflineError::InvalidArgument(format!("feature {:?}: {e}", feature.name))
            })?,
            _ => arr,
        };
        out.push((col, arr));
    }
    Ok(out)
}

/// What a training-set run did.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingSummary {
    /// Entity rows in (and rows out).
    pub rows: u64,
    /// Feature columns added.
    pub features: usize,
    /// History rows across the views read.
    pub history_rows: u64,
    /// Size of the output file.
    pub bytes: u64,
    /// Wall time.
    pub seconds: f64,
}

/// Reads entity rows from `entities` (a Parquet file or directory), joins the planned features
/// and writes the training set to `out` as Parquet. `out` must not exist; the file appears
/// only when complete (written under a temporary name, then linked into place).
pub fn write_training_set(
    registry: &Registry,
    plan: &FeaturePlan,
    histories: &[History],
    entities: &Path,
    out: &Path,
    opts: &JoinOptions,
) -> Result<TrainingSummary> {
    let started = Instant::now();
    refuse_existing(out)?;
    let files = crate::history::list_parquet_files(entities)?;
    let progress = Progress::new(opts.progress);
    let tmp = temp_path(out);
    let result = (|| -> Result<u64> {
        let mut writer: Option<ArrowWriter<File>> = None;
        let mut first_schema: Option<SchemaRef> = None;
        let mut rows = 0u64;
        let mut chunk: Vec<RecordBatch> = Vec::new();
        let mut chunk_rows = 0usize;
        let flush = |chunk: &mut Vec<RecordBatch>, schema: &SchemaRef, writer: &mut _| {
            flush_chunk(
                registry, plan, histories, chunk, schema, writer, opts, &progress, out,
            )
        };
        for f in &files {
            let label = f.display().to_string();
            let file = File::open(f).map_err(|e| io_err(f, e))?;
            let builder = ParquetRecordBatchReaderBuilder::try_new(file)
                .map_err(|e| parquet_err(&label, e))?;
            let schema = builder.schema().clone();
            check_entity_schema(registry, plan, &schema, opts, &label)?;
            match &first_schema {
                Some(s) if s.fields() != schema.fields() => {
                    return Err(OfflineError::Schema {
                        path: label,
                        problems: vec![format!(
                            "entity files must share one schema; this one differs from {}",
                            files[0].display()
                        )],
                    })
                }
                Some(_) => {}
                None => {
                    let mut fields: Vec<Field> =
                        schema.fields().iter().map(|f| f.as_ref().clone()).collect();
                    fields.extend(plan.fields());
                    let out_schema = Arc::new(Schema::new(fields));
                    let file = File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
                    let props = WriterProperties::builder()
                        .set_compression(Compression::SNAPPY)
                        .build();
                    writer = Some(
                        ArrowWriter::try_new(file, out_schema, Some(props))
                            .map_err(|e| parquet_err(&out.display().to_string(), e))?,
                    );
                    first_schema = Some(schema.clone());
                }
            }
            let reader = builder
                .with_batch_size(64 * 1024)
                .build()
                .map_err(|e| parquet_err(&label, e))?;
            for batch in reader {
                let batch = batch.map_err(|e| parquet_err(&label, e))?;
                chunk_rows += batch.num_rows();
                chunk.push(batch);
                if chunk_rows >= opts.chunk_rows.max(1) {
                    rows += flush(&mut chunk, &schema, &mut writer)?;
                    chunk_rows = 0;
                }
            }
            if let Some(s) = &first_schema {
                rows += flush(&mut chunk, s, &mut writer)?;
                chunk_rows = 0;
            }
        }
        let w = writer.ok_or_else(|| {
            OfflineError::InvalidArgument(format!("{}: no entity rows", entities.display()))
        })?;
        w.close()
            .map_err(|e| parquet_err(&out.display().to_string(), e))?;
        Ok(rows)
    })();
    progress.finish();
    let rows = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    publish(&tmp, out)?;
    let bytes = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    Ok(TrainingSummary {
        rows,
        features: plan.names.len(),
        history_rows: histories.iter().map(History::rows).sum(),
        bytes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[allow(clippy::too_many_arguments)]
fn flush_chunk(
    registry: &Registry,
    plan: &FeaturePlan,
    histories: &[History],
    chunk: &mut Vec<RecordBatch>,
    schema: &SchemaRef,
    writer: &mut Option<ArrowWriter<File>>,
    opts: &JoinOptions,
    progress: &Progress,
    out: &Path,
) -> Result<u64> {
    if chunk.is_empty() {
        return Ok(0);
    }
    let batch = arrow_select::concat::concat_batches(schema, chunk.iter())
        .map_err(|e| OfflineError::InvalidArgument(format!("entity rows: {e}")))?;
    chunk.clear();
    let joined = join_batch_with(registry, plan, histories, &batch, opts, progress)?;
    if let Some(w) = writer {
        w.write(&joined)
            .map_err(|e| parquet_err(&out.display().to_string(), e))?;
    }
    Ok(joined.num_rows() as u64)
}

/// A hidden temporary name next to `out`.
pub(crate) fn temp_path(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    out.with_file_name(format!(".{name}.partial-{}", std::process::id()))
}

/// Moves the finished `tmp` to `out` without replacing anything that appeared there meanwhile.
pub(crate) fn publish(tmp: &Path, out: &Path) -> Result<()> {
    let linked = std::fs::hard_link(tmp, out);
    let _ = std::fs::remove_file(tmp);
    linked.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            output_exists(out)
        } else {
            io_err(out, e)
        }
    })
}

/// Reads a whole Parquet file of entity rows into one batch (small inputs, tests).
pub fn read_parquet(path: &Path) -> Result<RecordBatch> {
    let label = path.display().to_string();
    let file = File::open(path).map_err(|e| io_err(path, e))?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| parquet_err(&label, e))?;
    let schema = builder.schema().clone();
    let reader = builder.build().map_err(|e| parquet_err(&label, e))?;
    let batches: Vec<RecordBatch> = reader
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| parquet_err(&label, e))?;
    arrow_select::concat::concat_batches(&schema, batches.iter())
        .map_err(|e| parquet_err(&label, e))
}

/// Writes `batch` to a new Parquet file at `path` (snappy), atomically.
pub fn write_parquet(path: &Path, batch: &RecordBatch) -> Result<()> {
    refuse_existing(path)?;
    let tmp = temp_path(path);
    let label = path.display().to_string();
    let res = (|| -> Result<()> {
        let file = File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        let mut w = ArrowWriter::try_new(file, batch.schema(), Some(props))
            .map_err(|e| parquet_err(&label, e))?;
        w.write(batch).map_err(|e| parquet_err(&label, e))?;
        w.close().map_err(|e| parquet_err(&label, e))?;
        Ok(())
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    publish(&tmp, path)
}
