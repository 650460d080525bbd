//! Streaming construction and atomic publication of a snapshot file.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::format::{
    home_slot, key_hash, pack_slot, slots_for, tag, unpack_slot, Header, EMPTY_SLOT,
    FOOTER_INDEX_CRC, FOOTER_LEN, FOOTER_MAGIC, FOOTER_RECORDS_CRC, FORMAT_VERSION, HEADER_LEN,
    MAGIC, MAX_CODEC_LEN, MAX_RECORDS_LEN, MAX_VIEW_NAME_LEN, NO_EVENT_TS, SLOT_LEN,
};
use super::{show_key, SnapshotInfo, SnapshotMeta};
use crate::clock::Micros;
use crate::encoding::{get_varint, take, varint_bytes};
use crate::fs::{io_err, publish, SNAPSHOT_TEMP_SUFFIX};
use crate::key::MAX_KEY_LEN;
use crate::{EngineError, Result};

const WRITE_BUFFER: usize = 1 << 20;

/// Distinguishes temporary files of concurrent writers in one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Builds one snapshot file from (key, record) pairs added in any order.
///
/// Entries stream to a temporary file next to the destination; memory holds 16 bytes per
/// entity until [`finish`](Self::finish), which also needs the index (8 bytes per slot,
/// 11–21 bytes per entity) while it writes it. Nothing appears at the destination unless
/// `finish` succeeds; dropping an unfinished writer deletes the temporary file.
pub struct SnapshotWriter {
    path: PathBuf,
    temp: PathBuf,
    /// `None` once a write failed (the writer is then unusable) or the file was published.
    out: Option<BufWriter<File>>,
    meta: SnapshotMeta,
    /// (key hash, entry offset within the record region) per entity, in insertion order.
    entries: Vec<(u64, u64)>,
    records_len: u64,
    records_crc: crc32fast::Hasher,
    max_event_ts: Micros,
    /// Length and crc of the codec section (between the header and the records).
    codec_len: u32,
    codec_crc: u32,
    published: bool,
}

impl SnapshotWriter {
    /// Starts a snapshot that [`finish`](Self::finish) publishes at `path` (replacing any
    /// file there).
    pub fn create(path: impl AsRef<Path>, meta: SnapshotMeta) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if meta.view.is_empty() || meta.view.len() > MAX_VIEW_NAME_LEN {
            return Err(EngineError::InvalidArgument(format!(
                "snapshot view name {:?} must be 1 to {MAX_VIEW_NAME_LEN} bytes",
                meta.view
            )));
        }
        let Some(name) = path.file_name() else {
            return Err(EngineError::InvalidArgument(format!(
                "snapshot path {} does not name a file",
                path.display()
            )));
        };
        let temp = path.with_file_name(format!(
            ".{}.{}-{}{SNAPSHOT_TEMP_SUFFIX}",
            name.to_string_lossy(),
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(|e| io_err(&temp, e))?;
        let mut writer = Self {
            path,
            temp,
            out: Some(BufWriter::with_capacity(WRITE_BUFFER, file)),
            meta,
            entries: Vec::new(),
            records_len: 0,
            records_crc: crc32fast::Hasher::new(),
            max_event_ts: NO_EVENT_TS,
            codec_len: 0,
            codec_crc: 0,
            published: false,
        };
        // The header is written last, once its fields are known.
        writer.write(&[0u8; HEADER_LEN])?;
        Ok(writer)
    }

    /// Stores the codec section: how the records that follow are compressed (opaque to the
    /// snapshot layer; see `crate::pack`). Must come before the first [`add`](Self::add), at
    /// most once.
    pub(crate) fn set_codec(&mut self, section: &[u8]) -> Result<()> {
        if !self.entries.is_empty() || self.codec_len != 0 {
            return Err(EngineError::InvalidArgument(
                "a snapshot's codec section must be set once, before any record".into(),
            ));
        }
        if section.len() > MAX_CODEC_LEN as usize {
            return Err(EngineError::InvalidArgument(format!(
                "codec section of {} bytes exceeds {MAX_CODEC_LEN}",
                section.len()
            )));
        }
        self.write(section)?;
        self.codec_len = section.len() as u32;
        self.codec_crc = if section.is_empty() {
            0
        } else {
            crc32fast::hash(section)
        };
        Ok(())
    }

    fn records_start(&self) -> u64 {
        HEADER_LEN as u64 + u64::from(self.codec_len)
    }

    /// Appends one entity. Keys may come in any order; a key added twice makes
    /// [`finish`](Self::finish) fail.
    pub fn add(&mut self, key: &[u8], record: &[u8]) -> Result<()> {
        if key.len() > MAX_KEY_LEN {
            return Err(EngineError::InvalidArgument(format!(
                "snapshot key of {} bytes is longer than {MAX_KEY_LEN}",
                key.len()
            )));
        }
        let (klen, kn) = varint_bytes(key.len() as u64);
        let (rlen, rn) = varint_bytes(record.len() as u64);
        let entry_len = (kn + key.len() + rn) as u64 + record.len() as u64;
        if self.records_len + entry_len > MAX_RECORDS_LEN {
            return Err(EngineError::CapacityExceeded(format!(
                "snapshot of view {:?} would exceed {MAX_RECORDS_LEN} bytes of records",
                self.meta.view
            )));
        }
        let offset = self.records_len;
        for part in [&klen[..kn], key, &rlen[..rn], record] {
            self.write(part)?;
            self.records_crc.update(part);
        }
        self.records_len += entry_len;
        self.entries.push((key_hash(key), offset));
        Ok(())
    }

    /// Raises the header's max event timestamp to at least `ts`. Records are opaque to the
    /// writer, so the caller reports each record's newest event timestamp here.
    pub fn note_event_ts(&mut self, ts: Micros) {
        self.max_event_ts = self.max_event_ts.max(ts);
    }

    /// Entities added so far.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Writes the index, footer and header, makes the file durable and renames it to its
    /// final path. On error nothing is published and the temporary file is removed.
    ///
    /// If only the final directory fsync fails, the file is already in place under its
    /// final name but may not survive a crash: treat the error as a failed publish.
    pub fn finish(mut self) -> Result<SnapshotInfo> {
        let mut out = self.out.take().ok_or_else(|| self.failed_earlier())?;
        let entities = self.entries.len() as u64;
        let slots = slots_for(entities).ok_or_else(|| {
            EngineError::CapacityExceeded(format!("{entities} entities do not fit an index"))
        })?;
        out.flush().map_err(|e| io_err(&self.temp, e))?;
        let index = self.build_index(slots)?;
        self.entries = Vec::new();

        let records_end = self.records_start() + self.records_len;
        let index_off = records_end.next_multiple_of(SLOT_LEN as u64);
        let pad = [0u8; SLOT_LEN];
        let mut index_crc = crc32fast::Hasher::new();
        let mut chunk = Vec::with_capacity(1 << 16);
        let temp = &self.temp;
        let io = |e: io::Error| io_err(temp, e);
        out.write_all(&pad[..(index_off - records_end) as usize])
            .map_err(io)?;
        for part in index.chunks(chunk.capacity() / SLOT_LEN) {
            chunk.clear();
            for s in part {
                chunk.extend_from_slice(&s.to_le_bytes());
            }
            index_crc.update(&chunk);
            out.write_all(&chunk).map_err(io)?;
        }
        drop(index);
        let mut footer = [0u8; FOOTER_LEN];
        let records_crc = std::mem::take(&mut self.records_crc).finalize();
        footer[FOOTER_RECORDS_CRC..FOOTER_RECORDS_CRC + 4]
            .copy_from_slice(&records_crc.to_le_bytes());
        footer[FOOTER_INDEX_CRC..FOOTER_INDEX_CRC + 4]
            .copy_from_slice(&index_crc.finalize().to_le_bytes());
        footer[FOOTER_MAGIC..].copy_from_slice(&MAGIC);
        out.write_all(&footer).map_err(io)?;

        let mut view = [0u8; MAX_VIEW_NAME_LEN];
        view[..self.meta.view.len()].copy_from_slice(self.meta.view.as_bytes());
        let header = Header {
            version: FORMAT_VERSION,
            flags: 0,
            schema_fingerprint: self.meta.schema_fingerprint,
            sequence: self.meta.sequence,
            created_at: self.meta.created_at,
            max_event_ts: self.max_event_ts,
            entities,
            records_off: self.records_start(),
            records_len: self.records_len,
            index_off,
            index_len: slots * SLOT_LEN as u64,
            slots,
            view_len: self.meta.view.len() as u16,
            view,
            codec_len: self.codec_len,
            codec_crc: self.codec_crc,
            reserved_zero: true,
        };
        out.seek(SeekFrom::Start(0)).map_err(io)?;
        out.write_all(&header.encode()).map_err(io)?;
        let file = out.into_inner().map_err(|e| io(e.into_error()))?;
        publish(&file, &self.temp, &self.path)?;
        self.published = true;
        let file_size = index_off + header.index_len + FOOTER_LEN as u64;
        Ok(SnapshotInfo::new(
            &self.path,
            &header,
            file_size,
            self.meta.view.clone(),
        ))
    }

    /// Lays the entries out in an open-addressing table in insertion order, refusing a key
    /// that was added twice.
    fn build_index(&self, slots: u64) -> Result<Vec<u64>> {
        let len = usize::try_from(slots).map_err(|_| {
            EngineError::CapacityExceeded(format!("an index of {slots} slots does not fit memory"))
        })?;
        let mut table = vec![EMPTY_SLOT; len];
        let mut keys = KeyReader::new(&self.temp, self.records_start());
        for &(hash, offset) in &self.entries {
            let mut i = home_slot(hash, slots);
            loop {
                // `i` < slots = table.len(); the load factor is < 1, so an empty slot exists.
                let slot = &mut table[i as usize];
                if *slot == EMPTY_SLOT {
                    *slot = pack_slot(hash, offset);
                    break;
                }
                let (t, other) = unpack_slot(*slot);
                if t == tag(hash) {
                    let key = keys.key_at(offset)?;
                    if keys.key_at(other)? == key {
                        return Err(EngineError::InvalidArgument(format!(
                            "snapshot of view {:?} got key {} twice",
                            self.meta.view,
                            show_key(&key)
                        )));
                    }
                }
                i = (i + 1) & (slots - 1);
            }
        }
        Ok(table)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let Some(out) = self.out.as_mut() else {
            return Err(self.failed_earlier());
        };
        if let Err(e) = out.write_all(bytes) {
            self.out = None;
            return Err(io_err(&self.temp, e));
        }
        Ok(())
    }

    fn failed_earlier(&self) -> EngineError {
        EngineError::InvalidArgument(format!(
            "snapshot writer for {} already failed; start a new one",
            self.path.display()
        ))
    }
}

impl fmt::Debug for SnapshotWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotWriter")
            .field("path", &self.path)
            .field("temp", &self.temp)
            .field("view", &self.meta.view)
            .field("entities", &self.entries.len())
            .field("records_len", &self.records_len)
            .field("failed", &(self.out.is_none() && !self.published))
            .finish_non_exhaustive()
    }
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        if self.published {
            return;
        }
        // Close without flushing what is buffered: the file is about to go.
        if let Some(out) = self.out.take() {
            drop(out.into_parts());
        }
        // Best effort: a leftover temp file is harmless and carries SNAPSHOT_TEMP_SUFFIX.
        let _ = fs::remove_file(&self.temp);
    }
}

/// Reads keys back from the unfinished file; only needed when two keys share a hash tag.
struct KeyReader<'a> {
    path: &'a Path,
    records_start: u64,
    file: Option<File>,
    buf: Vec<u8>,
}

impl<'a> KeyReader<'a> {
    fn new(path: &'a Path, records_start: u64) -> Self {
        Self {
            path,
            records_start,
            file: None,
            buf: Vec::new(),
        }
    }

    /// The key of the entry at `offset` in the record region.
    fn key_at(&mut self, offset: u64) -> Result<Vec<u8>> {
        let io = |e| io_err(self.path, e);
        let file = match &mut self.file {
            Some(f) => f,
            None => self.file.insert(File::open(self.path).map_err(io)?),
        };
        file.seek(SeekFrom::Start(self.records_start + offset))
            .map_err(io)?;
        self.buf.clear();
        file.take((10 + MAX_KEY_LEN) as u64)
            .read_to_end(&mut self.buf)
            .map_err(io)?;
        let mut pos = 0;
        get_varint(&self.buf, &mut pos)
            .and_then(|n| take(&self.buf, &mut pos, usize::try_from(n).ok()?))
            .map(<[u8]>::to_vec)
            .ok_or_else(|| {
                io_err(
                    self.path,
                    io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "an entry written moments ago does not read back",
                    ),
                )
            })
    }
}
