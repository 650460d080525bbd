//! Checkpoint: fold the delta and the base of every view into new snapshot files, swap them
//! in while reads and writes continue, then drop the WAL segments they cover.

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::{schema_fingerprint, Db};
use crate::fs::{checkpoint_snapshot, SNAPSHOT_DIR};
use crate::manifest::{Manifest, ViewSnapshot};
use crate::record::Layout;
use crate::snapshot::PackingWriter;
use crate::snapshot::{Snapshot, SnapshotMeta};
use crate::store::BaseRecords;
use crate::Result;

/// What a checkpoint did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CheckpointStats {
    /// The WAL sequence number the new snapshots include.
    pub seq: u64,
    /// Views written, with their entity counts.
    pub views: Vec<(String, u64)>,
    /// Expired values dropped.
    pub values_expired: u64,
    /// Snapshot bytes written.
    pub bytes: u64,
    /// WAL segments deleted.
    pub wal_segments_deleted: usize,
    /// Wall time taken, seconds.
    pub seconds: f64,
}

impl Db {
    /// Runs a checkpoint now. Reads and writes continue meanwhile; a failure leaves the
    /// previous snapshots serving and nothing lost.
    pub fn checkpoint(&self) -> Result<CheckpointStats> {
        let started = Instant::now();
        let mut manifest = self.lock_maintenance();
        // The cut: with the sequencer held no record is being applied, so everything up to
        // `seq` is in the delta we freeze and everything after lands in the new one.
        let (seq, registry, logged_at_cut) = {
            let applied = self.sequencer.lock();
            self.store.freeze_all()?;
            (
                *applied,
                self.store.registry(),
                self.logged_bytes.load(Ordering::Relaxed),
            )
        };
        let now = self.store.clock().now_micros();
        let mut written: Vec<(String, Option<(PathBuf, Snapshot)>)> = Vec::new();
        let mut stats = CheckpointStats {
            seq,
            ..CheckpointStats::default()
        };
        let result = (|| -> Result<u64> {
            // The manifest will say the log holds everything up to `seq`; with a lax fsync
            // policy it may not be on disk yet, and a log found ending before the checkpoint
            // is refused as damage.
            self.wal.sync()?;
            let continues_in = self.wal.segment_for(seq + 1);
            for view in registry.views() {
                let rel = checkpoint_snapshot(&view.name, seq);
                let path = self.dir.join(&rel);
                let meta = SnapshotMeta {
                    view: view.name.clone(),
                    schema_fingerprint: schema_fingerprint(view, view.features.len()),
                    sequence: seq,
                    created_at: now,
                };
                let mut writer =
                    PackingWriter::create(&path, meta, Layout::new(view), view.compression)?;
                let merged = self
                    .store
                    .merged_records(&view.name, now, &mut |k, r| writer.add(k, r))?;
                stats.values_expired += merged.values_expired;
                writer.note_event_ts(merged.max_event_ts);
                if writer.len() == 0 {
                    // Dropping an unfinished writer removes its temp file.
                    drop(writer);
                    written.push((view.name.clone(), None));
                    continue;
                }
                let (info, _) = writer.finish()?;
                stats.bytes += info.file_size;
                stats.views.push((view.name.clone(), info.entities));
                let snap = Snapshot::open(&path)?;
                written.push((view.name.clone(), Some((rel, snap))));
            }
            let next = Manifest {
                checkpoint_seq: seq,
                registry_version: self
                    .registry_version
                    .load(std::sync::atomic::Ordering::Relaxed),
                registry: registry.to_toml(),
                checkpoint_micros: now,
                wal_segment: Some(continues_in),
                snapshots: written
                    .iter()
                    .filter_map(|(v, s)| {
                        s.as_ref().map(|(rel, _)| ViewSnapshot {
                            view: v.clone(),
                            file: rel.display().to_string(),
                        })
                    })
                    .collect(),
            };
            next.store(&self.dir)?;
            *manifest = next;
            Ok(continues_in)
        })();
        let continues_in = match result {
            Ok(c) => c,
            Err(e) => {
                // Nothing was published: fold the frozen deltas back and delete what was written.
                let thawed = self.store.thaw_all();
                for (_, s) in &written {
                    if let Some((rel, _)) = s {
                        let _ = fs::remove_file(self.dir.join(rel));
                    }
                }
                thawed?;
                return Err(e);
            }
        };
        for (view, snap) in written {
            let base = snap.map(|(_, s)| Arc::new(s) as Arc<dyn BaseRecords>);
            self.store.install_checkpoint(&view, base)?;
        }
        self.logged_bytes
            .fetch_sub(logged_at_cut, Ordering::Relaxed);
        // Not `seq + 1`: a rotation since the cut may have started a segment there, and the one
        // the manifest names must stay until a later manifest names another.
        stats.wal_segments_deleted = self.wal.truncate_before(continues_in)?;
        self.remove_unreferenced_snapshots(&manifest);
        stats.seconds = started.elapsed().as_secs_f64();
        Ok(stats)
    }

    /// Deletes snapshot files the manifest no longer names. Readers still mapping one keep it
    /// alive until they finish (unlinked files stay mapped).
    fn remove_unreferenced_snapshots(&self, manifest: &Manifest) {
        let dir = self.dir.join(SNAPSHOT_DIR);
        let Ok(entries) = fs::read_dir(&dir) else {
            return;
        };
        for e in entries.flatten() {
            let rel = PathBuf::from(SNAPSHOT_DIR).join(e.file_name());
            let named = manifest
                .snapshots
                .iter()
                .any(|s| std::path::Path::new(&s.file) == rel);
            if !named && rel.extension().is_some_and(|x| x == "qsnap") {
                let _ = fs::remove_file(e.path());
            }
        }
    }

    /// Whether an automatic checkpoint is due by WAL size or age.
    pub(crate) fn checkpoint_due(&self) -> bool {
        let wal = self.wal.stats();
        let m = self.lock_maintenance();
        let pending = wal.last_seq > m.checkpoint_seq;
        if !pending {
            return false;
        }
        let logged = self.logged_bytes.load(Ordering::Relaxed);
        if self.config.checkpoint_wal_bytes > 0 && logged >= self.config.checkpoint_wal_bytes {
            return true;
        }
        match self.config.checkpoint_interval {
            Some(every) => {
                let since = m.checkpoint_micros.max(self.opened_micros);
                let age = self.store.clock().now_micros() - since;
                age >= i64::try_from(every.as_micros()).unwrap_or(i64::MAX)
            }
            None => false,
        }
    }
}
