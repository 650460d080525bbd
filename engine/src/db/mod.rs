//! The durable engine: the store, its write-ahead log, its snapshots and its manifest, in a
//! data directory laid out as `crate::fs` describes; `open` is how a directory is opened.
//!
//! A write is validated, logged, acknowledged per the fsync policy, then applied to the store
//! **in log order**: every logged record takes a ticket (its sequence number) and records are
//! applied one after the other by ticket. That makes the in-memory state after any prefix of
//! the log exactly what replaying that prefix produces — including "later arrival wins" for
//! writes with equal timestamps — and gives checkpoints a clean cut: everything up to the
//! applied sequence is in the frozen delta, everything after goes to the new one.

mod build;
mod checkpoint;
mod maintenance;
mod open;
#[cfg(test)]
mod tests;

pub use build::SnapshotBuilder;
pub use checkpoint::CheckpointStats;
pub use maintenance::Maintenance;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::batch::encode_batch;
use crate::batch::Row;
use crate::clock::{Clock, Micros};
use crate::fs::{io_err, SNAPSHOT_TEMP_SUFFIX};
use crate::key::KeyBatch;
use crate::manifest::{Manifest, ViewSnapshot};
use crate::registry::{FeatureView, Registry};
use crate::snapshot::Snapshot;
use crate::store::{GetResult, ReadOptions, Selection, Store, StoreConfig, ViewStats};
use crate::sync;
use crate::wal::{Wal, WalConfig, WalRecoveryReport, WalStats};
use crate::{EngineError, Result};

/// WAL record type of a write batch (payload: `batch` encoding).
pub(crate) const REC_WRITE: u8 = 1;
/// WAL record type of a registry change (payload: canonical registry TOML).
pub(crate) const REC_REGISTRY: u8 = 2;

/// How to open a data directory.
#[derive(Debug, Clone)]
pub struct DbConfig {
    /// The data directory (created if missing).
    pub dir: PathBuf,
    /// Store tuning.
    pub store: StoreConfig,
    /// WAL tuning and fsync policy.
    pub wal: WalConfig,
    /// Recover past mid-log corruption by dropping everything from the damage on (the operator
    /// must ask for this: it loses acknowledged writes).
    pub salvage: bool,
    /// The registry for a new directory; for an existing one, a new version to apply if it
    /// differs (compatible changes only).
    pub registry: Option<Registry>,
    /// Checkpoint automatically once the WAL holds this many bytes (0 = never).
    pub checkpoint_wal_bytes: u64,
    /// Checkpoint automatically when the last one is this old and there were writes since.
    pub checkpoint_interval: Option<Duration>,
}

impl DbConfig {
    /// Defaults for `dir`: fsync always, checkpoint at 256 MiB of WAL or hourly.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            store: StoreConfig::default(),
            wal: WalConfig::default(),
            salvage: false,
            registry: None,
            checkpoint_wal_bytes: 256 << 20,
            checkpoint_interval: Some(Duration::from_secs(3600)),
        }
    }
}

/// What opening a data directory found.
#[derive(Debug, Clone, Default)]
pub struct OpenReport {
    /// Views served from a snapshot, with their entity counts.
    pub snapshots: Vec<(String, u64)>,
    /// WAL replay: records, torn tail, salvage.
    pub wal: WalRecoveryReport,
    /// Whether the registry given in the config was applied as a new version.
    pub registry_applied: bool,
    /// What the data directory's registry has and the given one left out (kept, not
    /// removed), as change lines.
    pub registry_kept: Vec<String>,
}

/// Applies logged records in sequence order (see the module documentation).
///
/// The record with sequence `s` waits on condvar `s % TURNS`, and whoever applies `s - 1`
/// wakes only that one: one wake-up per record instead of every waiter for every record
/// (which, with 64 writers in a group commit, cost more than the fsync).
#[derive(Debug)]
pub(crate) struct Sequencer {
    applied: Mutex<u64>,
    turns: Vec<Condvar>,
}

const TURNS: u64 = 64;

/// How long a record may wait for its predecessors to be applied before giving up. Only a bug
/// (a ticket taken and never used) could make it wait this long.
const SEQUENCER_PATIENCE: Duration = Duration::from_secs(30);

impl Sequencer {
    /// A sequencer whose records up to `applied` are applied.
    pub(crate) fn new(applied: u64) -> Self {
        Self {
            applied: Mutex::new(applied),
            turns: (0..TURNS).map(|_| Condvar::new()).collect(),
        }
    }

    fn turn(&self, seq: u64) -> &Condvar {
        &self.turns[(seq % TURNS) as usize]
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, u64> {
        sync::lock(&self.applied)
    }

    fn run<T>(&self, seq: u64, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let mut applied = self.lock();
        while *applied + 1 < seq {
            let (g, timed_out) = sync::wait_timeout(self.turn(seq), applied, SEQUENCER_PATIENCE);
            applied = g;
            if timed_out && *applied + 1 < seq {
                return Err(EngineError::InvalidArgument(format!(
                    "record {seq} waited too long for record {} to be applied",
                    *applied + 1
                )));
            }
        }
        let out = f();
        *applied = (*applied).max(seq);
        // Records 64 apart share a condvar, so wake all on it; they re-check their turn.
        self.turn(seq + 1).notify_all();
        out
    }
}

/// Size and health of the whole engine.
#[derive(Debug, Clone)]
pub struct DbStats {
    /// Per view.
    pub views: Vec<ViewStats>,
    /// The log.
    pub wal: WalStats,
    /// Sequence number included in the snapshots.
    pub checkpoint_seq: u64,
    /// Wall-clock time of the last checkpoint, microseconds (0 = never).
    pub checkpoint_micros: Micros,
    /// Incremented on each registry change.
    pub registry_version: u64,
}

/// The durable feature store engine.
#[derive(Debug)]
pub struct Db {
    pub(crate) dir: PathBuf,
    pub(crate) store: Arc<Store>,
    pub(crate) wal: Wal,
    pub(crate) sequencer: Sequencer,
    /// Checkpoints and bulk loads take turns; both rewrite the manifest.
    pub(crate) maintenance: Mutex<Manifest>,
    pub(crate) registry_version: AtomicU64,
    /// Payload bytes logged since the last checkpoint's cut (drives automatic checkpoints).
    pub(crate) logged_bytes: AtomicU64,
    pub(crate) config: DbConfig,
    /// When this process opened the directory, microseconds: the age of "no checkpoint yet".
    pub(crate) opened_micros: i64,
    /// Held (locked) for as long as the directory is open.
    pub(crate) _lock: fs::File,
}

/// A stable fingerprint of the first `n` features' types of a view: snapshots record it so a
/// file built for another schema is refused.
pub(crate) fn schema_fingerprint(view: &FeatureView, n: usize) -> u64 {
    // FNV-1a: tiny, stable forever, and collisions only matter against honest mistakes.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for f in view.features.iter().take(n) {
        // Lossy vector storage changes the bytes, so it is part of the schema; float32 adds
        // nothing, keeping fingerprints of files written before storage options existed.
        let storage = match f.storage {
            crate::value::VectorStorage::Float32 => String::new(),
            s => format!("@{}", s.name()),
        };
        for b in
            f.ty.to_string()
                .bytes()
                .chain(storage.bytes())
                .chain(std::iter::once(b';'))
        {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

impl Db {
    /// Opens (creating if needed) the data directory: manifest → snapshots → WAL replay.
    pub fn open(config: DbConfig, clock: Arc<dyn Clock>) -> Result<(Self, OpenReport)> {
        open::open(config, clock)
    }

    /// The store, for reads.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The current registry.
    pub fn registry(&self) -> Arc<Registry> {
        self.store.registry()
    }

    /// Resolves features for [`Db::get`].
    pub fn select<S: AsRef<str>>(&self, refs: &[S]) -> Result<Selection> {
        self.store.select(refs)
    }

    /// Batched multi-feature get (see [`Store::get`]).
    pub fn get(
        &self,
        sel: &Selection,
        keys: &KeyBatch,
        opts: &ReadOptions,
        out: &mut GetResult,
    ) -> Result<()> {
        self.store.get(sel, keys, opts, out)
    }

    /// Validates, logs and applies a write; returns its sequence number once it is durable per
    /// the fsync policy. A refused batch changes nothing and is not logged.
    pub fn write(&self, view: &str, rows: &[Row]) -> Result<u64> {
        if rows.is_empty() {
            return Err(EngineError::InvalidArgument("write has no rows".into()));
        }
        self.store.validate(view, rows)?;
        let mut payload = Vec::with_capacity(64 * rows.len());
        encode_batch(view, rows, &mut payload);
        let seq = self.wal.append(REC_WRITE, &payload)?;
        self.logged_bytes
            .fetch_add(payload.len() as u64, Ordering::Relaxed);
        self.sequencer
            .run(seq, || self.store.apply_validated(view, rows))?;
        Ok(seq)
    }

    /// Applies a new registry version (compatible changes only), logged like a write.
    pub fn apply_registry(&self, next: Registry) -> Result<Arc<Registry>> {
        let merged = self.store.registry().evolve(next)?;
        let text = merged.to_toml();
        let seq = self.wal.append(REC_REGISTRY, text.as_bytes())?;
        let out = self
            .sequencer
            .run(seq, || self.store.apply_registry(merged))?;
        self.registry_version.fetch_add(1, Ordering::Relaxed);
        Ok(out)
    }

    /// Fsyncs everything logged so far.
    pub fn sync(&self) -> Result<()> {
        self.wal.sync()
    }

    /// Bulk load: validates the snapshot file at `path` (built offline for `view`), places it
    /// in the data directory and swaps it in as the view's base while reads continue. Values
    /// already in memory that are newer than the snapshot's keep winning.
    pub fn load_snapshot(&self, view: &str, path: &Path) -> Result<u64> {
        let mut manifest = self.lock_maintenance();
        let registry = self.store.registry();
        let vdef = registry
            .view(view)
            .ok_or_else(|| EngineError::NotFound(format!("no feature view named {view:?}")))?;
        let incoming = Snapshot::open(path)?;
        check_snapshot_fits(&incoming, vdef)?;

        // The clock alone does not make the name unique (two loads within one tick, a clock
        // stepped back): reusing the current base's name would replace its file and then
        // delete it as "the previous snapshot". The maintenance lock makes the check safe.
        let stamp = self.store.clock().now_micros().max(0);
        let (rel, dst) = (0u64..)
            .map(|n| {
                let rel = crate::fs::loaded_snapshot(view, stamp, n);
                let dst = self.dir.join(&rel);
                (rel, dst)
            })
            .find(|(_, dst)| !dst.exists())
            .ok_or_else(|| EngineError::InvalidArgument("no free snapshot file name".into()))?;
        // A hard link is the very file already validated and mapped: no second open.
        let snap = if place_file(path, &dst)? {
            incoming
        } else {
            drop(incoming);
            match Snapshot::open(&dst) {
                Ok(s) => s,
                Err(e) => {
                    let _ = fs::remove_file(&dst);
                    return Err(e);
                }
            }
        };
        let entities = snap.len() as u64;
        let mut next = manifest.clone();
        let previous = replace_entry(&mut next.snapshots, view, &rel);
        if let Err(e) = next.store(&self.dir) {
            let _ = fs::remove_file(&dst);
            return Err(e);
        }
        *manifest = next;
        self.store.replace_base(view, Arc::new(snap))?;
        if let Some(old) = previous {
            // Readers that still hold the old map keep it valid after the unlink.
            let _ = fs::remove_file(self.dir.join(old));
        }
        Ok(entities)
    }

    fn lock_maintenance(&self) -> MutexGuard<'_, Manifest> {
        sync::lock(&self.maintenance)
    }

    /// Size and health of everything.
    pub fn stats(&self) -> DbStats {
        let m = self.lock_maintenance();
        DbStats {
            views: self.store.stats(),
            wal: self.wal.stats(),
            checkpoint_seq: m.checkpoint_seq,
            checkpoint_micros: m.checkpoint_micros,
            registry_version: self.registry_version.load(Ordering::Relaxed),
        }
    }

    /// Flushes and fsyncs the WAL and closes the directory.
    pub fn close(self) -> Result<()> {
        self.wal.close()
    }
}

/// Refuses a snapshot built for another view or another schema.
fn check_snapshot_fits(snap: &Snapshot, view: &FeatureView) -> Result<()> {
    let info = snap.info();
    if info.view != view.name {
        return Err(EngineError::InvalidArgument(format!(
            "snapshot {} was built for view {:?}, not {:?}",
            info.path.display(),
            info.view,
            view.name
        )));
    }
    // Features are only ever appended, so a snapshot built before a feature was added fits
    // any prefix of the current schema.
    let fits = (1..=view.features.len())
        .rev()
        .any(|n| schema_fingerprint(view, n) == info.schema_fingerprint);
    if !fits {
        return Err(EngineError::InvalidArgument(format!(
            "snapshot {} was built for a different schema of view {:?} (fingerprint {:#018x}); \
             rebuild it with the current registry",
            info.path.display(),
            view.name,
            info.schema_fingerprint
        )));
    }
    Ok(())
}

/// Puts `src` at `dst` durably: a hard link when possible (no copy), else a copy; then the
/// directory is fsynced. Returns whether it linked.
fn place_file(src: &Path, dst: &Path) -> Result<bool> {
    let linked = fs::hard_link(src, dst).is_ok();
    if !linked {
        let tmp = dst.with_extension(&SNAPSHOT_TEMP_SUFFIX[1..]);
        fs::copy(src, &tmp).map_err(|e| io_err(src, e))?;
        let f = fs::File::open(&tmp).map_err(|e| io_err(&tmp, e))?;
        return crate::fs::publish(&f, &tmp, dst).map(|()| false);
    }
    crate::fs::sync_dir(crate::fs::parent_dir(dst))?;
    Ok(linked)
}

/// Points `view`'s manifest entry at `file`; returns the file it replaced.
fn replace_entry(entries: &mut Vec<ViewSnapshot>, view: &str, file: &Path) -> Option<String> {
    let file = file.display().to_string();
    match entries.iter_mut().find(|e| e.view == view) {
        Some(e) => Some(std::mem::replace(&mut e.file, file)),
        None => {
            entries.push(ViewSnapshot {
                view: view.to_owned(),
                file,
            });
            None
        }
    }
}

impl crate::store::BaseRecords for Snapshot {
    fn record(&self, key: &[u8]) -> Result<Option<&[u8]>> {
        Ok(self.get(key))
    }

    fn for_each(&self, f: &mut crate::store::RecordVisitor<'_>) -> Result<()> {
        self.iter().try_for_each(|(k, r)| f(k, r))
    }

    fn entities(&self) -> u64 {
        self.len() as u64
    }

    fn bytes(&self) -> u64 {
        self.file_size()
    }

    fn codec(&self) -> Option<&crate::pack::Codec> {
        Snapshot::codec(self)
    }

    fn max_event_ts(&self) -> Option<crate::Micros> {
        self.info().max_event_ts
    }

    fn prefetch(&self, keys: &crate::KeyBatch) {
        Snapshot::prefetch(self, keys);
    }
}
