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

#![deny(unsafe_code)]

mod background;
mod batch;
mod clock;
mod db;
mod encoding;
mod error;
mod fs;
#[doc(hidden)]
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

pub use batch::Row;
pub use clock::{Clock, ManualClock, Micros, SystemClock, MICROS_PER_SEC};
pub use db::{CheckpointStats, Db, DbConfig, DbStats, Maintenance, OpenReport, SnapshotBuilder};
pub use error::{EngineError, Result};
pub use fs::{MANIFEST_FILE, SNAPSHOT_DIR, SNAPSHOT_EXTENSION, SNAPSHOT_TEMP_SUFFIX, WAL_DIR};
pub use key::{decode_key, encode_key, KeyBatch, KeyPart, OwnedKeyPart, MAX_KEY_LEN};
pub use manifest::{Manifest, ViewSnapshot};
pub use pack::{CodecInfo, PackMethod};
pub use registry::{
    parse_ttl, Compression, CompressionPolicy, Entity, Feature, FeatureRef, FeatureService,
    FeatureView, JoinKey, KeyType, OfflineSource, Registry, RegistryError,
};
pub use snapshot::{
    Snapshot, SnapshotInfo, SnapshotIter, SnapshotMeta, SnapshotWriter, MAX_VIEW_NAME_LEN,
};
pub use store::{
    GetResult, MergeStats, ReadOptions, ReclaimStats, Reclaimer, Selection, Store, StoreConfig,
    ViewStats,
};
pub use value::{
    ColumnData, FeatureColumn, ScalarType, Status, Value, ValueType, VarColumn, VectorStorage,
};
pub use wal::{
    inspect_wal, FsyncPolicy, Wal, WalConfig, WalFaults, WalRecord, WalRecoveryOptions,
    WalRecoveryReport, WalSegmentInfo, WalStats, MAX_WAL_PAYLOAD,
};
