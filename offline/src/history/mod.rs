//! A feature view's history: a Parquet file or directory of files (or, for tests and embedders,
//! in-memory Arrow batches), validated against the registry before anything is read.
//!
//! The unit of work is a Parquet row group. Each carries its row count, its first row's position
//! in the whole dataset (the "arrival order" that breaks exact ties) and the min/max of the event
//! timestamp column from the file's statistics, so readers can skip row groups by time range.
//! Reads project only the columns asked for and may select single rows.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, UInt32Array};
use arrow_schema::Schema;
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection,
};
use parquet::arrow::ProjectionMask;
use quiver_engine::{Entity, Registry, ValueType};

use crate::error::{io_err, parquet_err, OfflineError, Result};
use crate::keys::KeyColumns;
use crate::parallel::{for_each_item, Progress};
use crate::types::{accepts, accepts_key, accepts_timestamp, expected, timestamps, EpochUnit};

/// Rows per decoded batch.
pub(crate) const BATCH_ROWS: usize = 64 * 1024;

/// One readable piece of history: a row group of a file, or one in-memory batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Unit {
    /// Index of the file (or batch).
    pub(crate) source: usize,
    /// Row group within the file (0 for a batch).
    pub(crate) row_group: usize,
    /// Rows in the unit.
    pub(crate) rows: usize,
    /// Position of its first row in the whole dataset (files in path order).
    pub(crate) first_row: u64,
    /// Smallest and largest event time, microseconds, when the statistics tell.
    pub(crate) ts_range: Option<(i64, i64)>,
}

impl Unit {
    /// Whether the unit may hold rows with event times in `[lo, hi]`.
    pub(crate) fn may_overlap(&self, lo: i64, hi: i64) -> bool {
        self.ts_range
            .is_none_or(|(min, max)| max >= lo && min <= hi)
    }
}

#[derive(Debug)]
struct ParquetFile {
    path: PathBuf,
    meta: ArrowReaderMetadata,
}

#[derive(Debug)]
enum Backend {
    Files(Vec<ParquetFile>),
    Memory(Vec<RecordBatch>),
}

/// One scanned batch's keys, event times and created times (see [`History::decode_key_time`]).
pub(crate) struct KeyTime {
    pub(crate) keys: KeyColumns,
    pub(crate) ts: Int64Array,
    pub(crate) created: Option<Int64Array>,
}

/// The created time of row `r` (`i64::MIN` when the view has none or the row's is null: any
/// created time beats it).
pub(crate) fn created_at(created: Option<&Int64Array>, r: usize) -> i64 {
    created
        .filter(|c| c.is_valid(r))
        .map_or(i64::MIN, |c| c.value(r))
}

/// The validated history of one feature view.
#[derive(Debug)]
pub struct History {
    view: usize,
    view_name: String,
    entity: Entity,
    label: String,
    backend: Backend,
    units: Vec<Unit>,
    rows: u64,
    pub(crate) key_cols: Vec<String>,
    pub(crate) ts_col: String,
    pub(crate) created_col: Option<String>,
    /// Column of each feature, in the view's schema order.
    pub(crate) feature_cols: Vec<String>,
    /// Name and type of each feature, in the view's schema order.
    pub(crate) features: Vec<(String, ValueType)>,
    pub(crate) epoch: EpochUnit,
}

impl History {
    /// Opens the history declared as `view`'s offline source; a relative source path is taken
    /// relative to `base_dir` (usually the registry file's directory).
    pub fn for_view(
        registry: &Registry,
        view: &str,
        base_dir: &Path,
        epoch: EpochUnit,
    ) -> Result<Self> {
        let v = registry.view(view).ok_or_else(|| {
            OfflineError::InvalidArgument(format!("no feature view named {view:?}"))
        })?;
        let source = v.source.as_ref().ok_or_else(|| {
            OfflineError::InvalidArgument(format!(
                "feature view {view:?} has no offline source (add source = {{ path = ... }} to \
                 the registry)"
            ))
        })?;
        let path = Path::new(&source.path);
        let path = if path.is_absolute() {
            path.to_path_buf()
        } else {
            base_dir.join(path)
        };
        Self::open(registry, view, &path, epoch)
    }

    /// Opens the histories of `views`, in order: each from `overrides` when it names the view
    /// (`(view, path)` pairs, as `--history VIEW=PATH` gives them), else from the view's declared
    /// source relative to `base_dir`.
    pub fn open_all(
        registry: &Registry,
        views: &[&str],
        base_dir: &Path,
        overrides: &[(String, PathBuf)],
        epoch: EpochUnit,
    ) -> Result<Vec<Self>> {
        views
            .iter()
            .map(|v| match overrides.iter().find(|(o, _)| o == v) {
                Some((_, p)) => Self::open(registry, v, p, epoch),
                None => Self::for_view(registry, v, base_dir, epoch),
            })
            .collect()
    }

    /// Opens `path` (a Parquet file or a directory of them) as the history of `view`, with the
    /// column names the registry declares for it. Every file's schema is checked.
    pub fn open(registry: &Registry, view: &str, path: &Path, epoch: EpochUnit) -> Result<Self> {
        let mut h = Self::empty(registry, view, path.display().to_string(), epoch)?;
        let files = list_parquet_files(path)?;
        let mut opened = Vec::with_capacity(files.len());
        for f in files {
            let label = f.display().to_string();
            let file = File::open(&f).map_err(|e| io_err(&f, e))?;
            let meta = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new())
                .map_err(|e| parquet_err(&label, e))?;
            h.check_schema(meta.schema(), &label)?;
            let ranges = ts_ranges(&meta, &h.ts_col, epoch);
            for (rg, md) in meta.metadata().row_groups().iter().enumerate() {
                let rows = usize::try_from(md.num_rows()).unwrap_or(0);
                h.units.push(Unit {
                    source: opened.len(),
                    row_group: rg,
                    rows,
                    first_row: h.rows,
                    ts_range: ranges.as_ref().and_then(|r| r[rg]),
                });
                h.rows += rows as u64;
            }
            opened.push(ParquetFile { path: f, meta });
        }
        h.backend = Backend::Files(opened);
        Ok(h)
    }

    /// Uses in-memory batches as the history of `view` (tests, embedders). Checked like files.
    pub fn from_batches(
        registry: &Registry,
        view: &str,
        batches: Vec<RecordBatch>,
        epoch: EpochUnit,
    ) -> Result<Self> {
        let mut h = Self::empty(registry, view, format!("<memory: {view}>"), epoch)?;
        for (i, b) in batches.iter().enumerate() {
            h.check_schema(b.schema_ref(), &format!("{} batch {i}", h.label))?;
            h.units.push(Unit {
                source: i,
                row_group: 0,
                rows: b.num_rows(),
                first_row: h.rows,
                ts_range: None,
            });
            h.rows += b.num_rows() as u64;
        }
        h.backend = Backend::Memory(batches);
        Ok(h)
    }

    fn empty(registry: &Registry, view: &str, label: String, epoch: EpochUnit) -> Result<Self> {
        let vi = registry.view_index(view).ok_or_else(|| {
            OfflineError::InvalidArgument(format!("no feature view named {view:?}"))
        })?;
        let v = &registry.views()[vi];
        let entity = registry.view_entity(v).cloned().ok_or_else(|| {
            OfflineError::InvalidArgument(format!("feature view {view:?} has no entity"))
        })?;
        let (ts_col, created_col) = match &v.source {
            Some(s) => (s.timestamp_field.clone(), s.created_timestamp_field.clone()),
            None => ("event_timestamp".to_owned(), None),
        };
        Ok(Self {
            view: vi,
            view_name: v.name.clone(),
            key_cols: entity.join_keys.iter().map(|k| k.name.clone()).collect(),
            entity,
            label,
            backend: Backend::Memory(Vec::new()),
            units: Vec::new(),
            rows: 0,
            ts_col,
            created_col,
            feature_cols: v
                .features
                .iter()
                .map(|f| f.column.clone().unwrap_or_else(|| f.name.clone()))
                .collect(),
            features: v.features.iter().map(|f| (f.name.clone(), f.ty)).collect(),
            epoch,
        })
    }

    /// Checks that `schema` has every column the registry declares, with usable types.
    fn check_schema(&self, schema: &Schema, label: &str) -> Result<()> {
        let mut problems = Vec::new();
        let mut check = |col: &str,
                         what: String,
                         ok: &dyn Fn(&arrow_schema::DataType) -> bool,
                         want: String| {
            match schema.field_with_name(col) {
                Err(_) => problems.push(format!("missing column {col:?} ({what})")),
                Ok(f) if !ok(f.data_type()) => problems.push(format!(
                    "column {col:?} ({what}) is {}, expected {want}",
                    f.data_type()
                )),
                Ok(_) => {}
            }
        };
        for jk in &self.entity.join_keys {
            let ty = jk.ty;
            check(
                &jk.name,
                format!("join key of entity {:?}, {}", self.entity.name, ty.name()),
                &move |dt| accepts_key(dt, ty),
                match ty {
                    quiver_engine::KeyType::Int64 => "Int64 (or a narrower integer)".into(),
                    quiver_engine::KeyType::String => "Utf8".into(),
                },
            );
        }
        let ts_want = "a Timestamp (any unit), Date or Int64 epoch column".to_owned();
        check(
            &self.ts_col,
            "event timestamp".into(),
            &accepts_timestamp,
            ts_want.clone(),
        );
        if let Some(c) = &self.created_col {
            check(c, "created timestamp".into(), &accepts_timestamp, ts_want);
        }
        for ((name, ty), col) in self.features.iter().zip(&self.feature_cols) {
            let ty: ValueType = *ty;
            check(
                col,
                format!("feature {name:?}, {ty}"),
                &move |dt| accepts(dt, ty),
                expected(ty),
            );
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(OfflineError::Schema {
                path: format!("{label} (history of feature view {:?})", self.view_name),
                problems,
            })
        }
    }

    /// The feature view this is the history of.
    pub fn view(&self) -> &str {
        &self.view_name
    }

    /// Index of the view in the registry.
    pub(crate) fn view_index(&self) -> usize {
        self.view
    }

    /// The view's entity.
    pub(crate) fn entity(&self) -> &Entity {
        &self.entity
    }

    /// Where the history lives, for messages.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Total rows.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Row groups (in-memory batches count as one each).
    pub fn row_groups(&self) -> usize {
        self.units.len()
    }

    /// The columns a scan reads to place rows: the join keys (the first `key_cols.len()`), the
    /// event timestamp, then the created timestamp if the view has one.
    pub(crate) fn key_time_columns(&self) -> Vec<&str> {
        let mut cols: Vec<&str> = self.key_cols.iter().map(String::as_str).collect();
        cols.push(&self.ts_col);
        if let Some(c) = &self.created_col {
            cols.push(c);
        }
        cols
    }

    /// Decodes a batch of `unit` scanned with [`Self::key_time_columns`] into its keys, event
    /// times and created times; an error names the column that does not decode.
    pub(crate) fn decode_key_time(&self, unit: &Unit, arrays: &[ArrayRef]) -> Result<KeyTime> {
        let nk = self.key_cols.len();
        let keys = KeyColumns::new(&self.entity, &arrays[..nk])
            .map_err(|e| self.data_err(unit, &self.key_cols[0], e))?;
        let ts = timestamps(&arrays[nk], self.epoch)
            .map_err(|e| self.data_err(unit, &self.ts_col, e))?;
        let created =
            match arrays.get(nk + 1) {
                Some(a) => Some(timestamps(a, self.epoch).map_err(|e| {
                    self.data_err(unit, self.created_col.as_deref().unwrap_or(""), e)
                })?),
                None => None,
            };
        Ok(KeyTime { keys, ts, created })
    }

    /// The readable units in dataset order.
    /// Scans the keys and times of every unit that may hold event times in `range`, on
    /// `threads` threads, each with its own state from `init`: `visit` gets a thread's state,
    /// one batch's keys and times, and the dataset row of the batch's first row. One progress
    /// step per unit.
    pub(crate) fn scan_key_times<S: Send>(
        &self,
        threads: usize,
        range: (i64, i64),
        progress: &Progress,
        init: impl Fn() -> S + Sync,
        visit: impl Fn(&mut S, &KeyTime, u64) -> Result<()> + Sync,
    ) -> Result<Vec<S>> {
        let units = self.units();
        let cols = self.key_time_columns();
        progress.phase(
            format!("{}: scanning history", self.view()),
            units.len() as u64,
        );
        for_each_item(threads, units.len(), init, |state, u| {
            let unit = &units[u];
            if unit.rows > 0 && unit.may_overlap(range.0, range.1) {
                let mut offset = unit.first_row;
                self.scan(unit, &cols, None, |arrays| {
                    let key_time = self.decode_key_time(unit, arrays)?;
                    visit(state, &key_time, offset)?;
                    offset += key_time.ts.len() as u64;
                    Ok(())
                })?;
            }
            progress.step(1);
            Ok(())
        })
    }

    pub(crate) fn units(&self) -> &[Unit] {
        &self.units
    }

    /// The unit holding dataset row `row` (`row` must be below [`Self::rows`]).
    pub(crate) fn unit_of(&self, row: u64) -> usize {
        self.units
            .partition_point(|u| u.first_row + u.rows as u64 <= row)
    }

    fn source_label(&self, unit: &Unit) -> String {
        match &self.backend {
            Backend::Files(files) => files[unit.source].path.display().to_string(),
            Backend::Memory(_) => format!("{} batch {}", self.label, unit.source),
        }
    }

    /// An error about column `col` of the file holding `unit`.
    pub(crate) fn data_err(&self, unit: &Unit, col: &str, reason: String) -> OfflineError {
        OfflineError::Data {
            path: self.source_label(unit),
            column: col.to_owned(),
            reason,
        }
    }

    /// Reads columns `cols` of `unit` (only rows `rows` — sorted, distinct offsets within the
    /// unit — when given), calling `f` with each batch's columns in the order asked for.
    pub(crate) fn scan(
        &self,
        unit: &Unit,
        cols: &[&str],
        rows: Option<&[u32]>,
        mut f: impl FnMut(&[ArrayRef]) -> Result<()>,
    ) -> Result<()> {
        let pick = |batch: &RecordBatch, label: &str| -> Result<Vec<ArrayRef>> {
            cols.iter()
                .map(|c| {
                    batch.column_by_name(c).cloned().ok_or_else(|| {
                        parquet_err(label, format!("column {c:?} vanished while reading"))
                    })
                })
                .collect()
        };
        match &self.backend {
            Backend::Memory(batches) => {
                let b = &batches[unit.source];
                let mut picked = pick(b, &self.label)?;
                if let Some(rows) = rows {
                    let idx = UInt32Array::from(rows.to_vec());
                    for a in &mut picked {
                        *a = arrow_select::take::take(a.as_ref(), &idx, None)
                            .map_err(|e| parquet_err(&self.label, e))?;
                    }
                }
                f(&picked)
            }
            Backend::Files(files) => {
                let pf = &files[unit.source];
                let label = pf.path.display().to_string();
                let schema = pf.meta.schema();
                let mut roots = Vec::with_capacity(cols.len());
                for c in cols {
                    let i = schema
                        .index_of(c)
                        .map_err(|_| parquet_err(&label, format!("no column {c:?}")))?;
                    roots.push(i);
                }
                let file = File::open(&pf.path).map_err(|e| io_err(&pf.path, e))?;
                let mask = ProjectionMask::roots(pf.meta.parquet_schema(), roots);
                let mut builder =
                    ParquetRecordBatchReaderBuilder::new_with_metadata(file, pf.meta.clone())
                        .with_row_groups(vec![unit.row_group])
                        .with_projection(mask)
                        .with_batch_size(BATCH_ROWS);
                if let Some(rows) = rows {
                    let ranges = consecutive_ranges(rows);
                    builder = builder.with_row_selection(RowSelection::from_consecutive_ranges(
                        ranges.into_iter(),
                        unit.rows,
                    ));
                }
                let reader = builder.build().map_err(|e| parquet_err(&label, e))?;
                for batch in reader {
                    let batch = batch.map_err(|e| parquet_err(&label, e))?;
                    f(&pick(&batch, &label)?)?;
                }
                Ok(())
            }
        }
    }
}

impl History {
    /// Reads features `features` (indices in the view's schema) of dataset rows `rows` (sorted,
    /// distinct), normalized to their canonical Arrow types: one array per feature, aligned
    /// with `rows`. Row groups are read in parallel, each decoding only the selected rows.
    pub(crate) fn fetch(
        &self,
        rows: &[u64],
        features: &[usize],
        threads: usize,
    ) -> Result<Vec<ArrayRef>> {
        let types: Vec<ValueType> = features.iter().map(|&f| self.features[f].1).collect();
        let cols: Vec<&str> = features
            .iter()
            .map(|&f| self.feature_cols[f].as_str())
            .collect();
        // Split the rows by unit: (unit, range of `rows`).
        let mut groups: Vec<(usize, std::ops::Range<usize>)> = Vec::new();
        let mut i = 0;
        while i < rows.len() {
            let u = self.unit_of(rows[i]);
            let unit = self.units.get(u).ok_or_else(|| {
                OfflineError::InvalidArgument(format!("row {} is past the history", rows[i]))
            })?;
            let end = unit.first_row + unit.rows as u64;
            let j = i + rows[i..].partition_point(|&r| r < end);
            groups.push((u, i..j));
            i = j;
        }
        let parts = crate::parallel::for_each_item(
            threads,
            groups.len(),
            Vec::new,
            |out: &mut Vec<(usize, Vec<ArrayRef>)>, g| {
                let (u, range) = &groups[g];
                let unit = &self.units[*u];
                let local: Vec<u32> = rows[range.clone()]
                    .iter()
                    .map(|&r| (r - unit.first_row) as u32)
                    .collect();
                let mut pieces: Vec<Vec<ArrayRef>> = vec![Vec::new(); cols.len()];
                self.scan(unit, &cols, Some(&local), |arrays| {
                    for (k, a) in arrays.iter().enumerate() {
                        let n = crate::types::normalize(a, types[k])
                            .map_err(|e| self.data_err(unit, cols[k], e))?;
                        pieces[k].push(n);
                    }
                    Ok(())
                })?;
                let mut arrays = Vec::with_capacity(cols.len());
                for (k, p) in pieces.iter().enumerate() {
                    arrays.push(concat(p, types[k]).map_err(|e| self.data_err(unit, cols[k], e))?);
                }
                out.push((g, arrays));
                Ok(())
            },
        )?;
        let mut parts: Vec<(usize, Vec<ArrayRef>)> = parts.into_iter().flatten().collect();
        parts.sort_unstable_by_key(|p| p.0);
        (0..cols.len())
            .map(|k| {
                let pieces: Vec<ArrayRef> = parts.iter().map(|p| p.1[k].clone()).collect();
                concat(&pieces, types[k]).map_err(|e| parquet_err(&self.label, e))
            })
            .collect()
    }
}

/// Concatenates canonical arrays of type `ty` (an empty array for none).
pub(crate) fn concat(pieces: &[ArrayRef], ty: ValueType) -> Result<ArrayRef, String> {
    match pieces {
        [] => Ok(arrow_array::new_empty_array(&crate::types::arrow_type(ty))),
        [one] => Ok(one.clone()),
        many => {
            let refs: Vec<&dyn arrow_array::Array> = many.iter().map(|a| a.as_ref()).collect();
            arrow_select::concat::concat(&refs).map_err(|e| e.to_string())
        }
    }
}

/// Sorted distinct offsets → maximal runs.
fn consecutive_ranges(rows: &[u32]) -> Vec<std::ops::Range<usize>> {
    let mut out: Vec<std::ops::Range<usize>> = Vec::new();
    for &r in rows {
        let r = r as usize;
        match out.last_mut() {
            Some(last) if last.end == r => last.end += 1,
            _ => out.push(r..r + 1),
        }
    }
    out
}

/// Per row group, the event time range from the file's statistics (None where unknown).
fn ts_ranges(
    meta: &ArrowReaderMetadata,
    col: &str,
    epoch: EpochUnit,
) -> Option<Vec<Option<(i64, i64)>>> {
    let conv = StatisticsConverter::try_new(col, meta.schema(), meta.parquet_schema()).ok()?;
    let rgs = meta.metadata().row_groups();
    let mins = timestamps(&conv.row_group_mins(rgs.iter()).ok()?, epoch).ok()?;
    let maxs = timestamps(&conv.row_group_maxes(rgs.iter()).ok()?, epoch).ok()?;
    use arrow_array::Array;
    Some(
        (0..rgs.len())
            .map(|i| {
                (i < mins.len() && i < maxs.len() && mins.is_valid(i) && maxs.is_valid(i))
                    .then(|| (mins.value(i), maxs.value(i)))
            })
            .collect(),
    )
}

/// A Parquet file, or every `*.parquet` / `*.parq` file under a directory (recursively, in
/// path order, skipping names starting with `.` or `_` such as `_SUCCESS`).
pub(crate) fn list_parquet_files(path: &Path) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path).map_err(|e| io_err(path, e))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| io_err(&dir, e))? {
            let entry = entry.map_err(|e| io_err(&dir, e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || name.starts_with('_') {
                continue;
            }
            let p = entry.path();
            let ft = entry.file_type().map_err(|e| io_err(&p, e))?;
            if ft.is_dir() {
                stack.push(p);
            } else if name.ends_with(".parquet") || name.ends_with(".parq") {
                out.push(p);
            }
        }
    }
    if out.is_empty() {
        return Err(OfflineError::InvalidArgument(format!(
            "{}: no Parquet files (*.parquet) in this directory",
            path.display()
        )));
    }
    out.sort();
    Ok(out)
}
