//! Materialization: the latest history row per entity with event time in `[start, end]`
//! (ties: latest created time, then latest in dataset order — the join's order) → engine
//! rows → a snapshot file, or a data directory, or (from the CLI) a running server.
//!
//! Whole rows are written, nulls included: a null in the latest row is a null online too,
//! exactly as the join returns it. Nothing is dropped by TTL here; the online read applies TTL
//! at read time against the same event timestamps, which is what makes the two agree.
//!
//! Memory: one entry per distinct entity key (the key and 24 bytes) per thread while scanning,
//! then the winners' values are read back in chunks of [`FETCH_CHUNK`] rows and streamed into
//! the snapshot writer.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::Array;
use quiver_engine::inspect::MANIFEST_FILE;
use quiver_engine::{
    encode_key, Db, DbConfig, Entity, KeyPart, KeyType, Registry, Row, SnapshotBuilder, SystemClock,
};

use crate::error::{refuse_existing, OfflineError, Result};
use crate::history::{created_at, History, KeyTime};
use crate::parallel::{default_threads, Progress};
use crate::types::value_at;

/// Winners whose values are read back at a time.
pub const FETCH_CHUNK: usize = 256 * 1024;

/// What to materialize.
#[derive(Debug, Clone)]
pub struct MaterializeOptions {
    /// Earliest event time included, microseconds.
    pub start: i64,
    /// Latest event time included, microseconds.
    pub end: i64,
    /// Worker threads (0 = one per core).
    pub threads: usize,
    /// Show a progress line on stderr when it is a terminal.
    pub progress: bool,
}

impl Default for MaterializeOptions {
    fn default() -> Self {
        Self {
            start: i64::MIN,
            end: i64::MAX,
            threads: 0,
            progress: false,
        }
    }
}

/// What a materialization did.
#[derive(Debug, Clone, PartialEq)]
pub struct MaterializeSummary {
    /// The feature view.
    pub view: String,
    /// History rows read (row groups skipped by their statistics are not counted).
    pub rows_read: u64,
    /// Entities written (one row each).
    pub entities: u64,
    /// Size of the snapshot file (0 when rows went elsewhere).
    pub bytes: u64,
    /// Newest event time written, microseconds.
    pub max_event_ts: Option<i64>,
    /// Wall time.
    pub seconds: f64,
}

impl MaterializeSummary {
    /// The summary of writing the latest rows of `view` (`latest_rows`' rows read, entities
    /// and newest event time), `bytes` of snapshot file (0 when the rows went elsewhere),
    /// timed from `started`.
    pub fn new(view: &str, latest: (u64, u64, Option<i64>), bytes: u64, started: Instant) -> Self {
        let (rows_read, entities, max_event_ts) = latest;
        Self {
            view: view.to_owned(),
            rows_read,
            entities,
            bytes,
            max_event_ts,
            seconds: started.elapsed().as_secs_f64(),
        }
    }
}

impl std::fmt::Display for MaterializeSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} rows read, {} entities written, {} bytes, {:.2} s",
            self.view, self.rows_read, self.entities, self.bytes, self.seconds
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Cand {
    ts: i64,
    created: i64,
    row: u64,
}

type Map<K> = hashbrown::HashMap<K, Cand, foldhash::fast::RandomState>;

/// Latest row per entity: a single `int64` key is hashed as an integer (no key bytes to
/// allocate and compare), other keys by their canonical encoding.
#[derive(Debug)]
enum KeyMap {
    Int(Map<i64>),
    Bytes(Map<Box<[u8]>>),
}

impl KeyMap {
    fn new(entity: &Entity) -> Self {
        match entity.join_keys.as_slice() {
            [k] if k.ty == KeyType::Int64 => Self::Int(Map::default()),
            _ => Self::Bytes(Map::default()),
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::Int(m) => m.len(),
            Self::Bytes(m) => m.len(),
        }
    }

    fn offer_int(m: &mut Map<i64>, k: i64, c: Cand) {
        m.entry(k)
            .and_modify(|old| *old = (*old).max(c))
            .or_insert(c);
    }

    fn offer_bytes(m: &mut Map<Box<[u8]>>, k: &[u8], c: Cand) {
        match m.get_mut(k) {
            Some(old) => *old = (*old).max(c),
            None => {
                m.insert(k.into(), c);
            }
        }
    }

    /// Folds `other` into `self` (the larger one is kept as the base).
    fn merge(self, other: Self) -> Self {
        let (big, small) = if self.len() >= other.len() {
            (self, other)
        } else {
            (other, self)
        };
        match (big, small) {
            (Self::Int(mut a), Self::Int(b)) => {
                for (k, c) in b {
                    Self::offer_int(&mut a, k, c);
                }
                Self::Int(a)
            }
            (Self::Bytes(mut a), Self::Bytes(b)) => {
                for (k, c) in b {
                    Self::offer_bytes(&mut a, &k, c);
                }
                Self::Bytes(a)
            }
            (a, _) => a,
        }
    }

    /// The winners with their canonical keys, in dataset order.
    fn into_winners(self, entity: &Entity) -> Result<Vec<(Cand, Box<[u8]>)>> {
        let mut out: Vec<(Cand, Box<[u8]>)> = Vec::with_capacity(self.len());
        match self {
            Self::Int(m) => {
                let mut buf = Vec::new();
                for (k, c) in m {
                    buf.clear();
                    encode_key(entity, &[KeyPart::Int64(k)], &mut buf)?;
                    out.push((c, buf.as_slice().into()));
                }
            }
            Self::Bytes(m) => out.extend(m.into_iter().map(|(k, c)| (c, k))),
        }
        out.sort_unstable_by_key(|w| w.0.row);
        Ok(out)
    }
}

/// Calls `emit` with the latest row of every entity with event time in `[start, end]`, in
/// dataset order of those rows. Returns `(rows read, entities, newest event time)`.
pub fn latest_rows(
    registry: &Registry,
    history: &History,
    opts: &MaterializeOptions,
    mut emit: impl FnMut(Row) -> Result<()>,
) -> Result<(u64, u64, Option<i64>)> {
    if opts.start > opts.end {
        return Err(OfflineError::InvalidArgument(format!(
            "start {} is after end {}",
            opts.start, opts.end
        )));
    }
    let threads = if opts.threads == 0 {
        default_threads()
    } else {
        opts.threads
    };
    let progress = Progress::new(opts.progress);
    let entity = history.entity().clone();
    let states = history.scan_key_times(
        threads,
        (opts.start, opts.end),
        &progress,
        || (KeyMap::new(&entity), 0u64, Vec::new()),
        |(map, read, buf): &mut (KeyMap, u64, Vec<u8>), key_time, offset| {
            let KeyTime { keys, ts, created } = key_time;
            let in_range =
                |r: usize| ts.is_valid(r) && (opts.start..=opts.end).contains(&ts.value(r));
            let cand = |r: usize| Cand {
                ts: ts.value(r),
                created: created_at(created.as_ref(), r),
                row: offset + r as u64,
            };
            match (&mut *map, keys.single_int()) {
                (KeyMap::Int(m), Some(a)) => {
                    for r in 0..ts.len() {
                        if a.is_valid(r) && in_range(r) {
                            KeyMap::offer_int(m, a.value(r), cand(r));
                        }
                    }
                }
                (KeyMap::Bytes(m), _) => {
                    for r in 0..ts.len() {
                        if in_range(r) && keys.encode(&entity, r, buf) {
                            KeyMap::offer_bytes(m, buf, cand(r));
                        }
                    }
                }
                (KeyMap::Int(_), None) => {}
            }
            *read += ts.len() as u64;
            Ok(())
        },
    )?;
    let mut rows_read = 0;
    let mut merged: Option<KeyMap> = None;
    for (map, read, _) in states {
        rows_read += read;
        merged = Some(match merged {
            None => map,
            Some(m) => m.merge(map),
        });
    }
    let winners = match merged {
        Some(m) => m.into_winners(&entity)?,
        None => Vec::new(),
    };

    let view = &registry.views()[history.view_index()];
    let all: Vec<usize> = (0..view.features.len()).collect();
    let mut max_ts = None;
    progress.phase(
        format!("{}: writing entities", history.view()),
        winners.len() as u64,
    );
    for chunk in winners.chunks(FETCH_CHUNK) {
        let rows: Vec<u64> = chunk.iter().map(|w| w.0.row).collect();
        let arrays = history.fetch(&rows, &all, threads)?;
        for (i, (c, key)) in chunk.iter().enumerate() {
            let mut values = Vec::with_capacity(all.len());
            for (fi, arr) in arrays.iter().enumerate() {
                let v = value_at(arr.as_ref(), view.features[fi].ty, i).map_err(|e| {
                    OfflineError::Data {
                        path: history.label().to_owned(),
                        column: history.feature_cols[fi].clone(),
                        reason: format!("{e} (dataset row {})", c.row),
                    }
                })?;
                values.push((fi, v));
            }
            max_ts = Some(max_ts.map_or(c.ts, |m: i64| m.max(c.ts)));
            emit(Row {
                key: key.to_vec(),
                event_ts: c.ts,
                created_ts: (c.created != i64::MIN).then_some(c.created),
                values,
            })?;
        }
        progress.step(chunk.len() as u64);
    }
    progress.finish();
    Ok((rows_read, winners.len() as u64, max_ts))
}

fn now_micros() -> i64 {
    use quiver_engine::Clock;
    SystemClock.now_micros()
}

/// Writes the snapshot of `history`'s view at `out` (which must not exist).
pub fn materialize_snapshot(
    registry: &Registry,
    history: &History,
    out: &Path,
    opts: &MaterializeOptions,
) -> Result<MaterializeSummary> {
    let started = Instant::now();
    refuse_existing(out)?;
    let mut builder = SnapshotBuilder::create(out, registry, history.view(), now_micros())?;
    let latest = latest_rows(registry, history, opts, |row| Ok(builder.add(&row)?))?;
    let info = builder.finish()?;
    Ok(MaterializeSummary::new(
        history.view(),
        latest,
        info.file_size,
        started,
    ))
}

/// Materializes into the data directory `dir` (not in use by a server): builds the snapshot
/// next to it and bulk-loads it as the view's base. A new directory is created with
/// `registry`.
pub fn materialize_into_db(
    registry: &Registry,
    history: &History,
    dir: &Path,
    opts: &MaterializeOptions,
) -> Result<MaterializeSummary> {
    let started = Instant::now();
    std::fs::create_dir_all(dir).map_err(|e| crate::error::io_err(dir, e))?;
    let tmp = dir.join(format!(
        ".materialize-{}-{}.qsnap",
        history.view(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    let mut summary = materialize_snapshot(registry, history, &tmp, opts)?;
    let result = (|| -> Result<()> {
        let db = open_or_create(dir, registry)?;
        db.load_snapshot(history.view(), &tmp)?;
        db.close()?;
        Ok(())
    })();
    let _ = std::fs::remove_file(&tmp);
    result?;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// Opens the data directory `dir`, creating it with `registry` if it holds none yet.
fn open_or_create(dir: &Path, registry: &Registry) -> Result<Db> {
    let mut config = DbConfig::new(dir);
    if !dir.join(MANIFEST_FILE).exists() {
        config.registry = Some(registry.clone());
    }
    let (db, _) = Db::open(config, Arc::new(SystemClock))?;
    Ok(db)
}

/// Rows per write batch of an incremental materialization.
pub const WRITE_BATCH: usize = 4096;

/// Incremental materialization into the data directory `dir`: the latest row per entity in
/// the window goes through the engine's normal write path (WAL, last write wins per feature),
/// so it merges with what is there instead of replacing the view's base.
pub fn materialize_rows_into_db(
    registry: &Registry,
    history: &History,
    dir: &Path,
    opts: &MaterializeOptions,
) -> Result<MaterializeSummary> {
    let started = Instant::now();
    let db = open_or_create(dir, registry)?;
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    let view = history.view();
    let latest = latest_rows(registry, history, opts, |row| {
        batch.push(row);
        if batch.len() == WRITE_BATCH {
            db.write(view, &batch)?;
            batch.clear();
        }
        Ok(())
    })?;
    if !batch.is_empty() {
        db.write(view, &batch)?;
    }
    db.close()?;
    Ok(MaterializeSummary::new(view, latest, 0, started))
}
