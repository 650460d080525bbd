//! Snapshot files: one immutable file per feature view mapping each entity's canonical key to
//! its record, served straight from a read-only memory map.
//!
//! - `format`: the byte layout (documented at its top and in docs/formats.md), the index
//!   hash and header validation.
//! - `writer`: [`SnapshotWriter`] streams entries to a temporary file in any key order, keeps
//!   only 16 bytes per entity in memory, builds the index at the end and publishes the file
//!   with temp → fsync → rename → directory fsync.
//! - `reader`: [`Snapshot::open`] validates the file before serving it; [`Snapshot::get`]
//!   and [`Snapshot::iter`] borrow from the map.
//! - `packing`: [`PackingWriter`], the writer the engine uses: it samples a view's first
//!   records, lets `crate::pack` choose how to compress them, and stores the codec section
//!   and the compressed records.
//! - `mmap`: the one `unsafe` block (mapping the file).
//!
//! The file format treats record bytes as opaque; the store decodes them with the record
//! codec. Compression is the one thing this module knows about records, and it learns it from
//! `crate::pack` (the reader parses the codec section and checks compressed records with it);
//! `pack` knows nothing of snapshots. A published
//! snapshot is never modified; a newer one replaces it by rename, and readers that still hold
//! the old [`Snapshot`] keep reading the old inode until they drop it.

mod format;
#[expect(
    unsafe_code,
    reason = "mapping a snapshot file is the one unsafe operation; see its SAFETY comment"
)]
mod mmap;
mod packing;
mod reader;
mod writer;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::clock::Micros;

pub(crate) use packing::PackingWriter;
pub use reader::{Snapshot, SnapshotIter};
pub(crate) use writer::SnapshotWriter;

/// What the writer's caller states about a snapshot; stored in its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// The feature view (1..=[`MAX_VIEW_NAME_LEN`] bytes of UTF-8).
    pub view: String,
    /// Fingerprint of the view's schema the records were encoded with.
    pub schema_fingerprint: u64,
    /// The WAL sequence the snapshot includes (0 for one built offline).
    pub sequence: u64,
    /// When the snapshot was built, µs since the Unix epoch.
    pub created_at: Micros,
}

/// Everything a snapshot's header says, plus where it is and how big.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The published file.
    pub path: PathBuf,
    /// The format version it was written with.
    pub format_version: u32,
    /// The feature view.
    pub view: String,
    /// Fingerprint of the schema its records were encoded with.
    pub schema_fingerprint: u64,
    /// The WAL sequence it includes.
    pub sequence: u64,
    /// When it was built, µs since the Unix epoch.
    pub created_at: Micros,
    /// Newest event timestamp the writer was told about, if any.
    pub max_event_ts: Option<Micros>,
    /// Number of entities.
    pub entities: u64,
    /// Size of the file in bytes.
    pub file_size: u64,
    /// Size of the record region in bytes.
    pub record_bytes: u64,
    /// Number of hash index slots.
    pub index_slots: u64,
}

impl SnapshotInfo {
    fn new(path: &Path, header: &format::Header, file_size: u64, view: String) -> Self {
        Self {
            path: path.to_path_buf(),
            format_version: header.version,
            view,
            schema_fingerprint: header.schema_fingerprint,
            sequence: header.sequence,
            created_at: header.created_at,
            max_event_ts: (header.max_event_ts != format::NO_EVENT_TS)
                .then_some(header.max_event_ts),
            entities: header.entities,
            file_size,
            record_bytes: header.records_len,
            index_slots: header.slots,
        }
    }
}

impl fmt::Display for SnapshotInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: view {:?}, {} entities, {} bytes (records {}, {} index slots), format v{}, \
             schema {:#018x}, sequence {}, created {} µs, max event ts ",
            self.path.display(),
            self.view,
            self.entities,
            self.file_size,
            self.record_bytes,
            self.index_slots,
            self.format_version,
            self.schema_fingerprint,
            self.sequence,
            self.created_at,
        )?;
        match self.max_event_ts {
            Some(ts) => write!(f, "{ts} µs"),
            None => f.write_str("none"),
        }
    }
}

/// A key as it appears in error messages.
fn show_key(key: &[u8]) -> String {
    format!("\"{}\"", key.escape_ascii())
}
