//! Opening, validating and reading a snapshot file.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::iter::FusedIterator;
use std::ops::Range;
use std::path::Path;

use super::format::{
    header_crc, header_version, home_slot, key_hash, read_entry, stored_header_crc, tag, u32_at,
    u64_at, unpack_slot, Header, EMPTY_SLOT, FOOTER_INDEX_CRC, FOOTER_LEN, FOOTER_MAGIC,
    FOOTER_RECORDS_CRC, FORMAT_VERSION, HEADER_LEN, MAGIC, MIN_FILE_LEN, OFF_HEADER_CRC, OFF_MAGIC,
    OLDEST_READABLE_VERSION, SLOT_LEN,
};
use super::mmap::ReadOnlyMap;
use super::{show_key, SnapshotInfo};
use crate::fs::{corrupt, io_err};
use crate::pack::{is_decimal, is_packed, packed_raw_len, unpack, Codec, CodecInfo, Dctx};
use crate::{EngineError, KeyBatch, Result};

/// How much of a file [`Snapshot::open_with`] checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Checks {
    /// Everything needed to serve it: header, layout, footer, checksums, entry framing and
    /// index bounds.
    Open,
    /// Header and layout only: lets tests aim hostile regions at the read path.
    #[cfg(test)]
    LayoutOnly,
}

/// An open, validated snapshot file, read in place from a read-only memory map.
///
/// Cheap to share (`Send + Sync`, every method takes `&self`); dropping the last reference
/// unmaps the file.
#[derive(Debug)]
pub struct Snapshot {
    map: ReadOnlyMap,
    info: SnapshotInfo,
    records: Range<usize>,
    index: Range<usize>,
    slots: u64,
    entities: usize,
    /// How the records are compressed; `None` for files without a codec section.
    codec: Option<Codec>,
}

impl Snapshot {
    /// Opens and validates `path`: length, magic, version, header checksum, region bounds,
    /// footer, the checksums of the whole index and record region, the framing of every
    /// entry and the bounds of every index slot.
    ///
    /// The header and layout are checked with a plain read before the file is mapped; the
    /// rest reads the whole map once, sequentially (about 60 ms for 1M entities / 116 MB and
    /// 0.65 s for 10M / 1.1 GB on a 2-core dev VM with the file cached), which also leaves
    /// the pages warm for the lookups to come. A file that fails any check is refused before
    /// anything is served from it.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path.as_ref(), Checks::Open)
    }

    /// Opens with only the header and layout checked; the regions may be hostile.
    #[cfg(test)]
    pub(super) fn open_unchecked(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path.as_ref(), Checks::LayoutOnly)
    }

    /// Everything [`open`](Self::open) checks, and then that every entry is reachable
    /// through the index at its own offset, no key appears twice, and every compressed
    /// record decompresses to the length it claims. For `quiver snapshot verify`: the error
    /// names the first problem's offset.
    pub fn verify(path: impl AsRef<Path>) -> Result<SnapshotInfo> {
        let snap = Self::open(path)?;
        snap.check_index_finds_every_entry()?;
        snap.check_packed_records()?;
        Ok(snap.info)
    }

    fn open_with(path: &Path, checks: Checks) -> Result<Self> {
        let mut file = File::open(path).map_err(|e| io_err(path, e))?;
        let file_len = file.metadata().map_err(|e| io_err(path, e))?.len();
        if file_len < MIN_FILE_LEN {
            return Err(corrupt(
                path,
                file_len,
                format!(
                    "file is {file_len} bytes, shorter than the smallest snapshot \
                     ({MIN_FILE_LEN} bytes): truncated or not a snapshot"
                ),
            ));
        }
        let mut head = [0u8; HEADER_LEN];
        file.read_exact(&mut head).map_err(|e| io_err(path, e))?;
        let header = check_header(path, &head)?;
        let layout = header
            .validate(file_len)
            .map_err(|(offset, reason)| corrupt(path, offset, reason))?;
        let too_big = || {
            EngineError::CapacityExceeded(format!(
                "snapshot {} ({file_len} bytes) cannot be mapped on this platform",
                path.display()
            ))
        };
        let len = usize::try_from(file_len).map_err(|_| too_big())?;
        // Lossless: every offset below is <= file_len, which fits usize.
        let records = layout.records_start as usize..layout.records_end as usize;
        let index = layout.index_start as usize..layout.index_end as usize;
        let entities = layout.entities as usize;
        let map = ReadOnlyMap::new(&file, len).map_err(|e| io_err(path, e))?;
        let codec_at = layout.codec_start as usize;
        let codec = match map.bytes().get(codec_at..records.start) {
            Some([]) => None,
            Some(section) => {
                if crc32fast::hash(section) != header.codec_crc {
                    return Err(corrupt(
                        path,
                        codec_at as u64,
                        "codec section checksum mismatch",
                    ));
                }
                let codec = Codec::from_section(section)
                    .map_err(|reason| corrupt(path, codec_at as u64, reason))?;
                Some(codec)
            }
            None => {
                return Err(corrupt(
                    path,
                    codec_at as u64,
                    "codec section out of bounds",
                ))
            }
        };
        let snap = Self {
            map,
            info: SnapshotInfo::new(path, &header, file_len, layout.view),
            records,
            index,
            slots: layout.slots,
            entities,
            codec,
        };
        match checks {
            Checks::Open => {
                snap.check_footer()?;
                snap.check_entries()?;
                snap.check_index_bounds()?;
            }
            #[cfg(test)]
            Checks::LayoutOnly => {}
        }
        Ok(snap)
    }

    /// The record stored for `key`, borrowed from the map. Never allocates; a damaged index
    /// yields `None`, never a panic or an out-of-bounds read.
    #[inline]
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        let index = self.index_bytes();
        let records = self.record_bytes();
        let hash = key_hash(key);
        let want = tag(hash);
        let mut i = home_slot(hash, self.slots);
        // At most one pass over the table, even if a hostile index has no empty slot.
        for _ in 0..self.slots {
            let slot = u64_at(index, (i as usize).checked_mul(SLOT_LEN)?)?;
            if slot == EMPTY_SLOT {
                return None;
            }
            let (t, offset) = unpack_slot(slot);
            if t == want {
                let mut pos = usize::try_from(offset).ok()?;
                if let Some((k, record)) = read_entry(records, &mut pos) {
                    if k == key {
                        return Some(record);
                    }
                }
            }
            i = (i + 1) & (self.slots - 1);
        }
        None
    }

    /// Starts loading what [`Snapshot::get`] of each key will read, for a batch about to be
    /// looked up: first every key's home index slot, then (with those slots in cache) the
    /// first two cache lines of the entry each slot points at. A hint only: answers do not
    /// change, and a damaged index only makes it prefetch the wrong lines.
    pub fn prefetch(&self, keys: &KeyBatch) {
        const LINE: usize = 64;
        if self.slots == 0 {
            return;
        }
        let slot_offset = |key: &[u8]| {
            let hash = key_hash(key);
            let slot = home_slot(hash, self.slots) as usize;
            (hash, self.index.start + slot * SLOT_LEN)
        };
        for key in keys.iter() {
            self.map.prefetch(slot_offset(key).1);
        }
        let index = self.map.bytes();
        for key in keys.iter() {
            let (hash, at) = slot_offset(key);
            let Some(slot) = u64_at(index, at) else {
                continue;
            };
            let (t, offset) = unpack_slot(slot);
            if slot != EMPTY_SLOT && t == tag(hash) {
                let entry = self.records.start.saturating_add(offset as usize);
                self.map.prefetch(entry);
                self.map.prefetch(entry.saturating_add(LINE));
            }
        }
    }

    /// Every (key, record) in file order (the order they were added).
    pub fn iter(&self) -> SnapshotIter<'_> {
        SnapshotIter {
            region: self.record_bytes(),
            pos: 0,
            remaining: self.entities,
        }
    }

    /// Number of entities.
    pub fn len(&self) -> usize {
        self.entities
    }

    /// Whether the snapshot holds no entity.
    pub fn is_empty(&self) -> bool {
        self.entities == 0
    }

    /// What the header says, and where the file is.
    pub fn info(&self) -> &SnapshotInfo {
        &self.info
    }

    /// How the records are compressed, and the figures that decided it (`None` for a file
    /// written without a codec section, whose records are all plain).
    pub fn codec_info(&self) -> Option<&CodecInfo> {
        self.codec.as_ref().map(Codec::info)
    }

    pub(crate) fn codec(&self) -> Option<&Codec> {
        self.codec.as_ref()
    }

    /// Plain and stored record bytes: the sum of the records' plain lengths (as compressed
    /// records state them) and of their stored lengths. Scans the record region.
    pub fn record_sizes(&self) -> (u64, u64) {
        let (mut plain, mut stored) = (0u64, 0u64);
        for (_, rec) in self.iter() {
            stored += rec.len() as u64;
            plain += packed_raw_len(rec).unwrap_or(rec.len() as u64);
        }
        (plain, stored)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.info.path
    }

    /// Size of the file (and of the map) in bytes.
    pub fn file_size(&self) -> u64 {
        self.info.file_size
    }

    fn record_bytes(&self) -> &[u8] {
        self.map.bytes().get(self.records.clone()).unwrap_or(&[])
    }

    fn index_bytes(&self) -> &[u8] {
        self.map.bytes().get(self.index.clone()).unwrap_or(&[])
    }

    fn corrupt(&self, offset: usize, reason: impl Into<String>) -> EngineError {
        corrupt(&self.info.path, offset as u64, reason)
    }

    /// Footer magic, zero padding, then both region checksums.
    fn check_footer(&self) -> Result<()> {
        let bytes = self.map.bytes();
        let footer_at = self.index.end;
        let footer = bytes.get(footer_at..).unwrap_or(&[]);
        if footer.get(FOOTER_MAGIC..FOOTER_LEN) != Some(&MAGIC[..]) {
            return Err(self.corrupt(footer_at + FOOTER_MAGIC, "footer magic is missing"));
        }
        let padding = bytes.get(self.records.end..self.index.start).unwrap_or(&[]);
        if let Some(i) = padding.iter().position(|&b| b != 0) {
            return Err(self.corrupt(
                self.records.end + i,
                "padding after the record region is not zero",
            ));
        }
        for (region, field, what) in [
            (&self.index, FOOTER_INDEX_CRC, "index"),
            (&self.records, FOOTER_RECORDS_CRC, "record region"),
        ] {
            let stored = u32_at(footer, field).unwrap_or_default();
            let actual = crc32fast::hash(bytes.get(region.clone()).unwrap_or(&[]));
            if stored != actual {
                return Err(self.corrupt(
                    region.start,
                    format!(
                        "{what} checksum mismatch: footer (at offset {}) expects {stored:#010x}, \
                         the {} bytes hash to {actual:#010x}",
                        footer_at + field,
                        region.len()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Every entry is well framed, the region holds exactly the header's entity count and
    /// nothing after the last entry.
    fn check_entries(&self) -> Result<()> {
        let region = self.record_bytes();
        let mut pos = 0;
        let mut n = 0usize;
        while pos < region.len() {
            let start = pos;
            if n == self.entities {
                return Err(self.corrupt(
                    self.records.start + start,
                    format!("record region holds more than the header's {n} entities"),
                ));
            }
            if read_entry(region, &mut pos).is_none() {
                return Err(self.corrupt(
                    self.records.start + start,
                    "malformed entry: bad length, key longer than 4096 bytes, or runs past \
                     the record region",
                ));
            }
            n += 1;
        }
        if n != self.entities {
            return Err(self.corrupt(
                self.records.start,
                format!(
                    "record region holds {n} entities, the header says {}",
                    self.entities
                ),
            ));
        }
        Ok(())
    }

    /// Every compressed record decompresses, with the snapshot's dictionary, to exactly the
    /// length it claims (at most the largest packable record).
    fn check_packed_records(&self) -> Result<()> {
        // Without a codec section records are opaque to this layer (and plain if the engine
        // wrote them).
        if self.codec.is_none() {
            return Ok(());
        }
        let mut dctx = Dctx::default();
        let mut buf = Vec::new();
        let region = self.record_bytes();
        let mut pos = 0;
        while pos < region.len() {
            let start = pos;
            let Some((_, rec)) = read_entry(region, &mut pos) else {
                break;
            };
            // Decimal-coded records need the view's schema to walk; the region crc covers
            // them, and reads check them fully.
            if is_packed(rec) && !is_decimal(rec) {
                unpack(self.codec.as_ref(), rec, None, &mut dctx, &mut buf)
                    .map_err(|m| self.corrupt(self.records.start + start, m.0))?;
            }
        }
        Ok(())
    }

    /// Every used slot points inside the record region; as many slots are used as there are
    /// entities (so the load factor holds and probes end at an empty slot).
    fn check_index_bounds(&self) -> Result<()> {
        let records_len = self.records.len() as u64;
        let mut used = 0usize;
        for (i, slot) in self.index_bytes().chunks_exact(SLOT_LEN).enumerate() {
            let slot = u64_at(slot, 0).unwrap_or(EMPTY_SLOT);
            if slot == EMPTY_SLOT {
                continue;
            }
            used += 1;
            let (_, offset) = unpack_slot(slot);
            if offset >= records_len {
                return Err(self.corrupt(
                    self.index.start + i * SLOT_LEN,
                    format!(
                        "index slot {i} points at offset {offset}, past the \
                         {records_len}-byte record region"
                    ),
                ));
            }
        }
        if used != self.entities {
            return Err(self.corrupt(
                self.index.start,
                format!("index has {used} used slots for {} entities", self.entities),
            ));
        }
        Ok(())
    }

    /// Probes for every entry's key as a lookup would and expects to meet the entry itself,
    /// and no other entry with the same key, on the way. With used slots = entities (checked
    /// at open) this makes the index a one-to-one map of the entries.
    fn check_index_finds_every_entry(&self) -> Result<()> {
        let index = self.index_bytes();
        let region = self.record_bytes();
        let mut pos = 0;
        while pos < region.len() {
            let start = pos;
            let Some((key, _)) = read_entry(region, &mut pos) else {
                return Err(self.corrupt(self.records.start + start, "malformed entry"));
            };
            let hash = key_hash(key);
            let mut i = home_slot(hash, self.slots);
            let mut found = false;
            for _ in 0..self.slots {
                let slot = u64_at(index, i as usize * SLOT_LEN).unwrap_or(EMPTY_SLOT);
                if slot == EMPTY_SLOT {
                    break;
                }
                let (t, offset) = unpack_slot(slot);
                if t == tag(hash) {
                    if offset == start as u64 {
                        found = true;
                        break;
                    }
                    let mut p = offset as usize;
                    if read_entry(region, &mut p).is_some_and(|(k, _)| k == key) {
                        return Err(self.corrupt(
                            self.records.start + start,
                            format!(
                                "key {} appears twice (entries at region offsets {offset} \
                                 and {start})",
                                show_key(key)
                            ),
                        ));
                    }
                }
                i = (i + 1) & (self.slots - 1);
            }
            if !found {
                return Err(self.corrupt(
                    self.records.start + start,
                    format!(
                        "entry with key {} cannot be found through the index",
                        show_key(key)
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Magic, version and header checksum, in that order: a newer version may lay its header out
/// differently, so the version is judged before the checksum.
fn check_header(path: &Path, head: &[u8; HEADER_LEN]) -> Result<Header> {
    if head[OFF_MAGIC..OFF_MAGIC + MAGIC.len()] != MAGIC {
        return Err(corrupt(
            path,
            OFF_MAGIC as u64,
            "bad magic: not a Quiver snapshot file",
        ));
    }
    let version = header_version(head);
    if version > FORMAT_VERSION {
        return Err(EngineError::UnsupportedVersion {
            file: path.display().to_string(),
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    if version < OLDEST_READABLE_VERSION {
        return Err(EngineError::NeedsUpgrade {
            file: path.display().to_string(),
            found: version,
            oldest: OLDEST_READABLE_VERSION,
        });
    }
    let (stored, actual) = (stored_header_crc(head), header_crc(head));
    if stored != actual {
        return Err(corrupt(
            path,
            OFF_HEADER_CRC as u64,
            format!(
                "header checksum mismatch: stored {stored:#010x}, header hashes to {actual:#010x}"
            ),
        ));
    }
    Ok(Header::decode(head))
}

/// Every (key, record) of a [`Snapshot`] in file order.
#[derive(Clone)]
pub struct SnapshotIter<'a> {
    region: &'a [u8],
    pos: usize,
    remaining: usize,
}

impl fmt::Debug for SnapshotIter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotIter")
            .field("pos", &self.pos)
            .field("remaining", &self.remaining)
            .finish_non_exhaustive()
    }
}

impl<'a> Iterator for SnapshotIter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.region.len() {
            return None;
        }
        let entry = read_entry(self.region, &mut self.pos);
        match entry {
            Some(_) => self.remaining = self.remaining.saturating_sub(1),
            // Only reachable through a test-only unchecked open: `open` checked the framing.
            None => self.pos = self.region.len(),
        }
        entry
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl FusedIterator for SnapshotIter<'_> {}

impl<'a> IntoIterator for &'a Snapshot {
    type Item = (&'a [u8], &'a [u8]);
    type IntoIter = SnapshotIter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}
