//! Opening a data directory: lock it, read the manifest, map the snapshots, replay the WAL
//! after the checkpoint, and only then accept writes.

use std::fs;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use super::{Db, DbConfig, OpenReport, Sequencer, REC_REGISTRY, REC_WRITE};
use crate::batch::decode_batch;
use crate::clock::Clock;
use crate::fs::{
    io_err, manifest_temp, LOCK_FILE, MANIFEST_FILE, SEGMENT_EXTENSION, SNAPSHOT_DIR,
    SNAPSHOT_EXTENSION, SNAPSHOT_TEMP_SUFFIX, WAL_DIR,
};
use crate::manifest::Manifest;
use crate::registry::Registry;
use crate::snapshot::Snapshot;
use crate::store::Store;
use crate::wal::{Wal, WalRecord, WalRecoveryOptions};
use crate::{EngineError, Result};

pub(crate) fn open(config: DbConfig, clock: Arc<dyn Clock>) -> Result<(Db, OpenReport)> {
    let dir = config.dir.clone();
    for d in [dir.clone(), dir.join(WAL_DIR), dir.join(SNAPSHOT_DIR)] {
        fs::create_dir_all(&d).map_err(|e| io_err(&d, e))?;
    }
    let lock_path = dir.join(LOCK_FILE);
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| io_err(&lock_path, e))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            return Err(EngineError::InvalidArgument(format!(
                "data directory {} is in use by another Quiver process",
                dir.display()
            )))
        }
        Err(fs::TryLockError::Error(e)) => return Err(io_err(&lock_path, e)),
    }

    let existing = Manifest::load(&dir)?;
    let fresh = existing.is_none();
    if fresh {
        refuse_orphaned_files(&dir)?;
    }
    let mut manifest = match existing {
        Some(m) => m,
        None => {
            let registry = config.registry.clone().ok_or_else(|| {
                EngineError::InvalidArgument(format!(
                    "{} is a new data directory: give it a registry",
                    dir.display()
                ))
            })?;
            Manifest {
                registry: registry.to_toml(),
                ..Manifest::default()
            }
        }
    };
    let registry = Registry::from_toml(&manifest.registry).map_err(|e| EngineError::Corrupt {
        file: dir.join(MANIFEST_FILE).display().to_string(),
        offset: 0,
        reason: format!("stored registry does not parse: {e}"),
    })?;
    let store = Arc::new(Store::new(registry, config.store.clone(), clock)?);
    let mut report = OpenReport::default();

    // Leftovers of interrupted checkpoints, loads or manifest writes are never referenced.
    remove_temp_files(&dir.join(SNAPSHOT_DIR));
    let _ = fs::remove_file(manifest_temp(&dir));

    for entry in &manifest.snapshots {
        let path = dir.join(&entry.file);
        let snap = Snapshot::open(&path)?;
        if snap.info().view != entry.view {
            return Err(EngineError::Corrupt {
                file: path.display().to_string(),
                offset: 0,
                reason: format!(
                    "the manifest lists it for view {:?} but it holds view {:?}",
                    entry.view,
                    snap.info().view
                ),
            });
        }
        report
            .snapshots
            .push((entry.view.clone(), snap.len() as u64));
        store.replace_base(&entry.view, Arc::new(snap))?;
    }

    let mut registry_changes = 0u64;
    let mut replayed_bytes = 0u64;
    let replay = |r: WalRecord<'_>| -> Result<()> {
        let bad = |why: String| EngineError::Corrupt {
            file: dir.join(WAL_DIR).display().to_string(),
            offset: r.seq,
            reason: format!("record {} (offset is the sequence number): {why}", r.seq),
        };
        match r.record_type {
            REC_WRITE => {
                replayed_bytes += r.payload.len() as u64;
                let batch = decode_batch(r.payload).map_err(|e| bad(e.to_string()))?;
                store
                    .write(&batch.view, &batch.rows)
                    .map_err(|e| bad(format!("write batch does not apply: {e}")))
            }
            REC_REGISTRY => {
                let text = std::str::from_utf8(r.payload)
                    .map_err(|_| bad("registry is not UTF-8".into()))?;
                let next = Registry::from_toml(text).map_err(|e| bad(e.to_string()))?;
                store
                    .apply_registry(next)
                    .map_err(|e| bad(format!("registry change does not apply: {e}")))?;
                registry_changes += 1;
                Ok(())
            }
            other => Err(bad(format!("unknown record type {other}"))),
        }
    };
    if fresh {
        // Durable before the first WAL segment exists: segments or snapshots without a
        // manifest are then never a directory that was being created, and are refused.
        manifest.store(&dir)?;
    }
    let options = WalRecoveryOptions {
        after_seq: manifest.checkpoint_seq,
        continues_in: manifest.wal_segment,
        salvage: config.salvage,
    };
    let (wal, wal_report) = Wal::open(dir.join(WAL_DIR), config.wal.clone(), options, replay)?;
    let last_seq = wal_report.last_seq;
    report.wal = wal_report;

    // Name the segment the log continues in, for a new directory, one whose manifest predates
    // the field, or after salvage started a new segment.
    let continues_in = Some(wal.segment_for(manifest.checkpoint_seq + 1));
    if manifest.wal_segment != continues_in {
        manifest.wal_segment = continues_in;
        manifest.store(&dir)?;
    }
    let opened_micros = store.clock().now_micros();
    let db = Db {
        dir,
        store,
        wal,
        sequencer: Sequencer::new(last_seq),
        registry_version: AtomicU64::new(manifest.registry_version + registry_changes),
        maintenance: Mutex::new(manifest),
        logged_bytes: AtomicU64::new(replayed_bytes),
        opened_micros,
        config,
        _lock: lock,
    };
    if let (Some(wanted), false) = (db.config.registry.clone(), fresh) {
        let current = db.registry();
        // A file that leaves out views, services or entities the directory has never removes
        // them on start: removal is explicit, through ApplyRegistry with allow_removals.
        report.registry_kept = current.removals(&wanted);
        let wanted = wanted.keeping(&current);
        match current.evolve(wanted.clone()) {
            Ok(merged) if merged != *current => {
                db.apply_registry(merged)?;
                report.registry_applied = true;
            }
            Ok(_) => {}
            // The directory's registry already extends the one given (e.g. features added
            // later through ApplyRegistry): keep it rather than refuse to start.
            Err(_) if wanted.evolve((*current).clone()).is_ok() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok((db, report))
}

/// Without a manifest the directory must hold no snapshot and no WAL segment: otherwise the
/// manifest was lost, and starting afresh would silently drop that data.
fn refuse_orphaned_files(dir: &std::path::Path) -> Result<()> {
    let mut found = Vec::new();
    for (sub, ext) in [
        (SNAPSHOT_DIR, SNAPSHOT_EXTENSION),
        (WAL_DIR, SEGMENT_EXTENSION),
    ] {
        let d = dir.join(sub);
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let e = e.map_err(|e| io_err(&d, e))?;
            let path = e.path();
            if path.extension().is_some_and(|x| x == ext) {
                found.push(path);
            }
        }
    }
    if found.is_empty() {
        return Ok(());
    }
    found.sort();
    const NAMED: usize = 8;
    let mut names: Vec<String> = found
        .iter()
        .take(NAMED)
        .map(|p| p.display().to_string())
        .collect();
    if found.len() > NAMED {
        names.push(format!("and {} more", found.len() - NAMED));
    }
    Err(EngineError::Corrupt {
        file: dir.join(MANIFEST_FILE).display().to_string(),
        offset: 0,
        reason: format!(
            "missing, but the directory holds {} snapshot or WAL file(s): {}; refusing to \
             start it as a new data directory (restore the MANIFEST, or move these files \
             away to start empty)",
            found.len(),
            names.join(", ")
        ),
    })
}

fn remove_temp_files(dir: &std::path::Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(SNAPSHOT_TEMP_SUFFIX) {
            let _ = fs::remove_file(e.path());
        }
    }
}
