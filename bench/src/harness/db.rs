//! What the workloads on a durable engine share: the registry, a [`Db`] configuration without
//! background surprises, snapshot building from the dataset, and a reader that checks what a
//! [`Db`] serves.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use quiver_engine::{
    Db, DbConfig, Entity, FsyncPolicy, GetResult, KeyBatch, KeyPart, ReadOptions, Registry, Row,
    Selection, SnapshotBuilder, SnapshotInfo, StoreConfig, SystemClock, WalConfig,
};

use crate::dataset::{check_registry, Dataset, EntityRow, REGISTRY_TOML, USER_STATS, VIEW};
use crate::harness::check::{check_columns, stats_column, to_row};
use crate::harness::host::now_micros;
use crate::{BenchError, Result};

/// Entities per get when a benchmark checks what a [`Db`] serves.
pub(crate) const CHECK_BATCH: usize = 100;

/// The bundled registry, checked against the dataset generator.
pub(crate) fn registry() -> Result<Registry> {
    let registry = Registry::from_toml(REGISTRY_TOML)?;
    check_registry(&registry)?;
    Ok(registry)
}

/// The entity `user_stats` is keyed by.
pub(crate) fn user_entity(registry: &Registry) -> Result<Entity> {
    view_entity(registry, VIEW)
}

/// The entity `view` is keyed by.
pub(crate) fn view_entity(registry: &Registry, view: &str) -> Result<Entity> {
    registry
        .view(view)
        .and_then(|v| registry.view_entity(v))
        .cloned()
        .ok_or_else(|| BenchError::Schema(format!("view {view:?} has no entity")))
}

/// The `view:feature` references of the first `features` features of `user_stats`.
pub(crate) fn stats_refs(features: usize) -> Vec<String> {
    USER_STATS[..features]
        .iter()
        .map(|f| format!("{VIEW}:{}", f.name))
        .collect()
}

/// A directory's configuration with automatic checkpoints off, so that nothing but the
/// measured work runs.
pub(crate) fn db_config(
    dir: &Path,
    registry: &Registry,
    fsync: FsyncPolicy,
    shards: usize,
) -> DbConfig {
    let mut config = DbConfig::new(dir);
    config.registry = Some(registry.clone());
    config.store = StoreConfig { shards };
    config.wal = WalConfig {
        fsync,
        ..WalConfig::default()
    };
    config.checkpoint_wal_bytes = 0;
    config.checkpoint_interval = None;
    config
}

/// Opens a [`Db`] on `dir` configured by [`db_config`].
pub(crate) fn open_db(
    dir: &Path,
    registry: &Registry,
    fsync: FsyncPolicy,
    shards: usize,
) -> Result<Db> {
    let (db, _) = Db::open(
        db_config(dir, registry, fsync, shards),
        Arc::new(SystemClock),
    )?;
    Ok(db)
}

/// Writes every entity of `dataset` through `write`, `batch` rows per call, reporting
/// progress. Generating the rows is part of the time the caller measures.
pub(crate) fn write_all<T>(
    dataset: &Dataset,
    entity: &Entity,
    batch: usize,
    mut write: impl FnMut(&[Row]) -> quiver_engine::Result<T>,
) -> Result<()> {
    let n = dataset.entities();
    let mut rows = Vec::with_capacity(batch);
    let step = (n / 10).max(1);
    let (mut first, mut next_report) = (0, step);
    while first < n {
        let end = (first + batch as u64).min(n);
        rows.clear();
        for i in first..end {
            rows.push(to_row(entity, dataset.row(i))?);
        }
        write(&rows)?;
        first = end;
        if first >= next_report && first < n {
            eprintln!("  {first} / {n}");
            next_report += step;
        }
    }
    Ok(())
}

/// Writes a `user_stats` snapshot of entities `0..count` (rows from `row`) to `path` with
/// [`SnapshotBuilder`], reporting progress as `label`. Returns the file's description and the
/// seconds it took, generating the rows included.
pub(crate) fn build_snapshot(
    path: &Path,
    registry: &Registry,
    count: u64,
    mut row: impl FnMut(u64) -> EntityRow,
    label: &str,
) -> Result<(SnapshotInfo, f64)> {
    let entity = user_entity(registry)?;
    let start = Instant::now();
    let created_at = now_micros();
    let mut builder = SnapshotBuilder::create(path, registry, VIEW, created_at)?;
    let step = (count / 10).max(1);
    for i in 0..count {
        builder.add(&to_row(&entity, row(i))?)?;
        if (i + 1) % step == 0 && i + 1 < count {
            eprintln!("  {label}: {} / {count}", i + 1);
        }
    }
    let info = builder.finish()?;
    Ok((info, start.elapsed().as_secs_f64()))
}

/// Reads every feature of `user_stats` for batches of user ids from a [`Db`], reusing its
/// buffers.
#[derive(Debug)]
pub(crate) struct Reader {
    sel: Selection,
    entity: Entity,
    keys: KeyBatch,
    out: GetResult,
    opts: ReadOptions,
}

impl Reader {
    /// A reader of `db`'s `user_stats`.
    pub(crate) fn new(db: &Db) -> Result<Self> {
        let sel = db.select(&stats_refs(USER_STATS.len()))?;
        let entity = sel.entity().clone();
        Ok(Self {
            sel,
            entity,
            keys: KeyBatch::with_capacity(CHECK_BATCH, 9),
            out: GetResult::new(),
            opts: ReadOptions::default(),
        })
    }

    /// Reads `ids` (one get) and returns the answer.
    pub(crate) fn read(&mut self, db: &Db, ids: &[i64]) -> Result<&GetResult> {
        self.keys.clear();
        for &id in ids {
            self.keys.push(&self.entity, &[KeyPart::Int64(id)])?;
        }
        db.get(&self.sel, &self.keys, &self.opts, &mut self.out)?;
        Ok(&self.out)
    }

    /// Reads `ids` in batches of [`CHECK_BATCH`] and checks every value and event time against
    /// `expect` (`None`: the user must not be found). Returns the number of users checked.
    pub(crate) fn check(
        &mut self,
        db: &Db,
        who: &str,
        ids: &[i64],
        mut expect: impl FnMut(i64) -> Option<EntityRow>,
    ) -> Result<u64> {
        for chunk in ids.chunks(CHECK_BATCH) {
            let out = self.read(db, chunk)?;
            check_columns(who, out, chunk, USER_STATS.len(), stats_column, &mut expect)?;
        }
        Ok(ids.len() as u64)
    }
}
