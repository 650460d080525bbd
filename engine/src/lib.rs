//! Quiver's storage engine.
//!
//! # Layout
//! - `registry`: entities, feature views, services; TOML parsing, validation, evolution.
//! - `value`: feature types, owned [`Value`]s for writes, columnar results for reads.
//! - `key`: canonical entity key encoding and [`KeyBatch`].
//! - `record`: the compact per-(view, entity) record codec.
//! - `store`: sharded in-memory maps per view, last-write-wins writes, batched gets with
//!   per-feature TTL, the background reclaimer and memory accounting.
//! - `wal`: the write-ahead log: segments, frames, group commit, recovery.
//! - `snapshot`: immutable, memory-mapped snapshot files (the only `unsafe`: the mmap).
//! - `manifest`: the data directory's root: registry, checkpoint sequence, snapshot per view.
//! - `db`: the durable engine (store + WAL + snapshots): opening a directory, checkpoint,
//!   bulk load.
//! - `fs`: the data directory's layout names, durable publication, I/O error mapping.
//! - `sync`: poison-tolerant locks.
//! - `batch`: the logged form of a write.
//! - `clock`: injected time.
//! - `background`: periodic background threads.
//! - `encoding`: varints, zigzag and bounded slicing shared by every byte format.

mod background;
mod batch;
mod clock;
mod db;
mod encoding;
mod error;
mod fs;
/// Entry points for the fuzz targets in `fuzz/` and their regression tests (not a stable API).
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
mod key;
mod manifest;
mod pack;
mod record;
mod registry;
mod snapshot;
mod store;
mod sync;
#[cfg(test)]
mod testing;
mod value;
mod wal;

// The durable engine: open a data directory, write, read, checkpoint, bulk-load.
pub use db::{CheckpointStats, Db, DbConfig, DbStats, Maintenance, OpenReport, SnapshotBuilder};
pub use wal::{FsyncPolicy, WalConfig, WalRecoveryReport, WalStats};

// The in-memory store alone (no WAL, no snapshots): what `Db` serves reads from.
pub use batch::Row;
pub use store::{GetResult, ReadOptions, Selection, Store, StoreConfig, ViewStats};

// The schema.
pub use registry::{
    parse_ttl, Compression, CompressionPolicy, Entity, Feature, FeatureRef, FeatureService,
    FeatureView, JoinKey, KeyType, OfflineSource, Registry, RegistryError,
};

// Values, keys and time.
pub use clock::{Clock, ManualClock, Micros, SystemClock, MICROS_PER_SEC};
pub use key::{decode_key, encode_key, KeyBatch, KeyPart, OwnedKeyPart, MAX_KEY_LEN};
pub use value::{
    ColumnData, FeatureColumn, ScalarType, Status, Value, ValueType, VarColumn, VectorStorage,
};

// Snapshot files, as materializers build them and tools read them.
pub use pack::{CodecInfo, PackMethod};
pub use snapshot::{Snapshot, SnapshotInfo, SnapshotIter};

pub use error::{EngineError, Result};

/// What operators' tools need to look inside a data directory: its layout names and the WAL
/// segment scanner (docs/formats.md, "Data directory"). Serving code has no use for these.
pub mod inspect {
    pub use crate::fs::{
        MANIFEST_FILE, SNAPSHOT_DIR, SNAPSHOT_EXTENSION, SNAPSHOT_TEMP_SUFFIX, WAL_DIR,
    };
    pub use crate::wal::{inspect_wal, WalSegmentInfo};
}
