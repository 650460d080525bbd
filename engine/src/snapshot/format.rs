//! Snapshot file layout, format version 2 (version 1 files are read too: they are version 2
//! files without a codec section). Mirrored in docs/formats.md ("Snapshot files").
//!
//! All integers little-endian. `R` = record region length, `I` = index offset, `S` = slots.
//!
//! ```text
//! offset   size   field
//! --- header: HEADER_LEN = 256 bytes, checked by its own crc before anything else is trusted
//! 0        8      magic 89 51 56 53 4E 41 50 0A ("\x89QVSNAP\n")
//! 8        4      format version u32 (2; 1 is still read)
//! 12       4      flags u32 (none defined: must be 0)
//! 16       8      schema fingerprint u64 (opaque; supplied by the writer's caller)
//! 24       8      sequence u64 (the WAL sequence the snapshot includes; opaque here)
//! 32       8      created-at i64, µs since the Unix epoch
//! 40       8      max event timestamp i64, µs (i64::MIN = none noted)
//! 48       8      entity count u64 (= entries in the record region = used index slots)
//! 56       8      record region offset u64 (= 256 + C)
//! 64       8      record region length u64 R (< 2^40)
//! 72       8      index offset u64 I (= 256 + C + R rounded up to a multiple of 8)
//! 80       8      index length u64 (= 8 × S)
//! 88       8      index slot count u64 S (power of two, >= 8, entity count <= 3/4 × S)
//! 96       2      view name length u16 (1..=128)
//! 98       128    view name, UTF-8, zero-padded
//! 226      4      codec section length u32 C (<= 1 MiB; always 0 in version 1)
//! 230      4      crc32 of the codec section (0 when C = 0)
//! 234      18     reserved, zero
//! 252      4      crc32 of bytes 0..252
//! --- codec section: how records are compressed (opaque here; see `crate::pack`)
//! 256      C      section bytes
//! --- record region
//! 256+C    R      entries in the order they were added, each:
//!                   varint key length (<= 4096), key bytes (canonical entity key),
//!                   varint record length, record bytes (the engine's record encoding)
//! 256+C+R  0..7   zero padding up to I
//! --- index: open addressing, linear probing
//! I        8×S    S slots, u64 each: FFFF_FFFF_FFFF_FFFF = empty, otherwise
//!                   bits 0..40  offset of the entry within the record region
//!                   bits 40..64 tag: the top 24 bits of the key's hash
//! --- footer: FOOTER_LEN = 16 bytes
//! I+8S     4      crc32 of the record region (the R bytes, not the padding)
//! I+8S+4   4      crc32 of the index (the 8×S bytes)
//! I+8S+8   8      magic again (catches a file cut exactly at a region boundary)
//! ```
//!
//! The file length is exactly `I + 8×S + 16`. A key's hash is [`key_hash`]; its home slot is
//! `hash & (S - 1)`, and a lookup probes forward (wrapping) until it finds the key, an empty
//! slot, or has visited S slots. crc32 is IEEE CRC-32 as computed by `crc32fast`.

use crate::encoding::{get_varint, take};
use crate::key::MAX_KEY_LEN;

/// First 8 bytes of every snapshot file (and its last 8). The high byte stops the file from
/// being mistaken for text; `\n` exposes line-ending conversion.
pub(super) const MAGIC: [u8; 8] = *b"\x89QVSNAP\n";
/// The version this build writes and the newest it reads.
pub(super) const FORMAT_VERSION: u32 = 2;
/// The oldest version this build reads.
pub(super) const OLDEST_READABLE_VERSION: u32 = 1;

pub(super) const HEADER_LEN: usize = 256;
pub(super) const FOOTER_LEN: usize = 16;
/// Smallest well-formed file: header, empty record region, minimum index, footer.
pub(super) const MIN_FILE_LEN: u64 =
    (HEADER_LEN + MIN_SLOTS as usize * SLOT_LEN + FOOTER_LEN) as u64;

// Header field offsets.
pub(super) const OFF_MAGIC: usize = 0;
pub(super) const OFF_VERSION: usize = 8;
const OFF_FLAGS: usize = 12;
const OFF_FINGERPRINT: usize = 16;
const OFF_SEQUENCE: usize = 24;
const OFF_CREATED_AT: usize = 32;
const OFF_MAX_EVENT_TS: usize = 40;
const OFF_ENTITIES: usize = 48;
const OFF_RECORDS_OFF: usize = 56;
const OFF_RECORDS_LEN: usize = 64;
const OFF_INDEX_OFF: usize = 72;
const OFF_INDEX_LEN: usize = 80;
const OFF_SLOTS: usize = 88;
const OFF_VIEW_LEN: usize = 96;
const OFF_VIEW: usize = 98;
const OFF_CODEC_LEN: usize = OFF_VIEW + MAX_VIEW_NAME_LEN;
const OFF_CODEC_CRC: usize = OFF_CODEC_LEN + 4;
const OFF_RESERVED: usize = OFF_CODEC_CRC + 4;
pub(super) const OFF_HEADER_CRC: usize = 252;

// Footer field offsets, relative to the footer start.
pub(super) const FOOTER_RECORDS_CRC: usize = 0;
pub(super) const FOOTER_INDEX_CRC: usize = 4;
pub(super) const FOOTER_MAGIC: usize = 8;

/// Longest view name a header holds.
pub const MAX_VIEW_NAME_LEN: usize = 128;
/// Longest codec section.
pub(super) const MAX_CODEC_LEN: u32 = 1 << 20;
/// No header flags are defined in versions 1 and 2.
const KNOWN_FLAGS: u32 = 0;
/// "No event timestamp was noted" in the max-event-timestamp field.
pub(super) const NO_EVENT_TS: i64 = i64::MIN;

pub(super) const SLOT_LEN: usize = 8;
pub(super) const MIN_SLOTS: u64 = 8;
pub(super) const EMPTY_SLOT: u64 = u64::MAX;
const OFFSET_BITS: u32 = 40;
const OFFSET_MASK: u64 = (1 << OFFSET_BITS) - 1;
/// Record regions stay below 1 TiB so every entry offset fits a slot's 40 bits and no
/// offset can equal the empty sentinel's.
pub(super) const MAX_RECORDS_LEN: u64 = OFFSET_MASK;

/// The index size for `entities` keys: the smallest power of two >= [`MIN_SLOTS`] that keeps
/// the load factor at or below 3/4.
pub(super) fn slots_for(entities: u64) -> Option<u64> {
    let need = entities.checked_mul(4)?.div_ceil(3);
    need.max(MIN_SLOTS).checked_next_power_of_two()
}

/// A slot's value for an entry at `offset` whose key hashes to `hash`.
#[inline]
pub(super) fn pack_slot(hash: u64, offset: u64) -> u64 {
    (tag(hash) << OFFSET_BITS) | (offset & OFFSET_MASK)
}

/// The part of a hash a slot keeps.
#[inline]
pub(super) fn tag(hash: u64) -> u64 {
    hash >> OFFSET_BITS
}

/// A used slot's (tag, entry offset).
#[inline]
pub(super) fn unpack_slot(slot: u64) -> (u64, u64) {
    (slot >> OFFSET_BITS, slot & OFFSET_MASK)
}

/// Where `key`'s probe sequence starts in a table of `slots` (a power of two).
#[inline]
pub(super) fn home_slot(hash: u64, slots: u64) -> u64 {
    hash & (slots - 1)
}

const H_SEED: u64 = 0x243F_6A88_85A3_08D3;
const H_WORD: u64 = 0xA076_1D64_78BD_642F;
const H_TAIL: u64 = 0xE703_7ED1_A0B4_28DB;
const H_FINAL: u64 = 0x9E37_79B9_7F4A_7C15;

#[inline]
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// The snapshot index hash. Part of the file format: it must never change within a format
/// version (a golden test pins it).
///
/// `h = SEED ^ len`; for each whole 8-byte little-endian word `w`: `h = fm(h ^ w, WORD)`; the
/// 0..7 remaining bytes, zero-padded to a word `t`: `h = fm(h ^ t, TAIL)`; result
/// `fm(h, FINAL)`, where `fm(a, b)` is the 128-bit product of `a` and `b` with its high half
/// xored into its low half.
#[inline]
pub(super) fn key_hash(key: &[u8]) -> u64 {
    let mut h = H_SEED ^ key.len() as u64;
    let mut words = key.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        h = fold_mul(h ^ u64::from_le_bytes(b), H_WORD);
    }
    let rest = words.remainder();
    let mut b = [0u8; 8];
    b[..rest.len()].copy_from_slice(rest);
    h = fold_mul(h ^ u64::from_le_bytes(b), H_TAIL);
    fold_mul(h, H_FINAL)
}

/// Decodes the entry at `*pos` of a record region, advancing `*pos` past it. `None` if it is
/// truncated, has an over-long key, or runs past the region.
#[inline]
pub(super) fn read_entry<'a>(region: &'a [u8], pos: &mut usize) -> Option<(&'a [u8], &'a [u8])> {
    let klen = get_varint(region, pos)?;
    if klen > MAX_KEY_LEN as u64 {
        return None;
    }
    let key = take(region, pos, klen as usize)?;
    let rlen = usize::try_from(get_varint(region, pos)?).ok()?;
    let record = take(region, pos, rlen)?;
    Some((key, record))
}

/// The header's fields, as written or as read before validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Header {
    pub(super) version: u32,
    pub(super) flags: u32,
    pub(super) schema_fingerprint: u64,
    pub(super) sequence: u64,
    pub(super) created_at: i64,
    pub(super) max_event_ts: i64,
    pub(super) entities: u64,
    pub(super) records_off: u64,
    pub(super) records_len: u64,
    pub(super) index_off: u64,
    pub(super) index_len: u64,
    pub(super) slots: u64,
    pub(super) view_len: u16,
    pub(super) view: [u8; MAX_VIEW_NAME_LEN],
    pub(super) codec_len: u32,
    pub(super) codec_crc: u32,
    /// Whether the reserved bytes are all zero.
    pub(super) reserved_zero: bool,
}

fn u16_at(b: &[u8; HEADER_LEN], off: usize) -> u16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(&b[off..off + 2]);
    u16::from_le_bytes(a)
}

pub(super) fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(*b.get(off..)?.first_chunk::<4>()?))
}

pub(super) fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(*b.get(off..)?.first_chunk::<8>()?))
}

fn u64_of(b: &[u8; HEADER_LEN], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

/// crc32 of the header bytes it covers.
pub(super) fn header_crc(b: &[u8; HEADER_LEN]) -> u32 {
    crc32fast::hash(&b[..OFF_HEADER_CRC])
}

/// The crc stored in the header.
pub(super) fn stored_header_crc(b: &[u8; HEADER_LEN]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[OFF_HEADER_CRC..]);
    u32::from_le_bytes(a)
}

/// The version field (read before anything else is interpreted).
pub(super) fn header_version(b: &[u8; HEADER_LEN]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[OFF_VERSION..OFF_VERSION + 4]);
    u32::from_le_bytes(a)
}

impl Header {
    /// Serializes the header, crc included.
    pub(super) fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[OFF_MAGIC..OFF_MAGIC + 8].copy_from_slice(&MAGIC);
        b[OFF_VERSION..OFF_VERSION + 4].copy_from_slice(&self.version.to_le_bytes());
        b[OFF_FLAGS..OFF_FLAGS + 4].copy_from_slice(&self.flags.to_le_bytes());
        for (off, v) in [
            (OFF_FINGERPRINT, self.schema_fingerprint),
            (OFF_SEQUENCE, self.sequence),
            (OFF_CREATED_AT, self.created_at as u64),
            (OFF_MAX_EVENT_TS, self.max_event_ts as u64),
            (OFF_ENTITIES, self.entities),
            (OFF_RECORDS_OFF, self.records_off),
            (OFF_RECORDS_LEN, self.records_len),
            (OFF_INDEX_OFF, self.index_off),
            (OFF_INDEX_LEN, self.index_len),
            (OFF_SLOTS, self.slots),
        ] {
            b[off..off + 8].copy_from_slice(&v.to_le_bytes());
        }
        b[OFF_VIEW_LEN..OFF_VIEW_LEN + 2].copy_from_slice(&self.view_len.to_le_bytes());
        b[OFF_VIEW..OFF_VIEW + MAX_VIEW_NAME_LEN].copy_from_slice(&self.view);
        b[OFF_CODEC_LEN..OFF_CODEC_LEN + 4].copy_from_slice(&self.codec_len.to_le_bytes());
        b[OFF_CODEC_CRC..OFF_CODEC_CRC + 4].copy_from_slice(&self.codec_crc.to_le_bytes());
        let crc = header_crc(&b);
        b[OFF_HEADER_CRC..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Reads the fields without judging them (magic, version and crc are checked by the caller).
    pub(super) fn decode(b: &[u8; HEADER_LEN]) -> Self {
        let mut view = [0u8; MAX_VIEW_NAME_LEN];
        view.copy_from_slice(&b[OFF_VIEW..OFF_VIEW + MAX_VIEW_NAME_LEN]);
        Self {
            version: header_version(b),
            flags: {
                let mut a = [0u8; 4];
                a.copy_from_slice(&b[OFF_FLAGS..OFF_FLAGS + 4]);
                u32::from_le_bytes(a)
            },
            schema_fingerprint: u64_of(b, OFF_FINGERPRINT),
            sequence: u64_of(b, OFF_SEQUENCE),
            created_at: u64_of(b, OFF_CREATED_AT) as i64,
            max_event_ts: u64_of(b, OFF_MAX_EVENT_TS) as i64,
            entities: u64_of(b, OFF_ENTITIES),
            records_off: u64_of(b, OFF_RECORDS_OFF),
            records_len: u64_of(b, OFF_RECORDS_LEN),
            index_off: u64_of(b, OFF_INDEX_OFF),
            index_len: u64_of(b, OFF_INDEX_LEN),
            slots: u64_of(b, OFF_SLOTS),
            view_len: u16_at(b, OFF_VIEW_LEN),
            view,
            codec_len: u32_at(b, OFF_CODEC_LEN).unwrap_or(0),
            codec_crc: u32_at(b, OFF_CODEC_CRC).unwrap_or(0),
            reserved_zero: b[OFF_RESERVED..OFF_HEADER_CRC].iter().all(|&x| x == 0),
        }
    }

    /// Checks every field against the format's rules and the actual file length, returning
    /// the validated layout or the offset and description of the first problem.
    pub(super) fn validate(&self, file_len: u64) -> Result<Sections, (u64, String)> {
        let at = |off: usize, msg: String| Err((off as u64, msg));
        if self.flags & !KNOWN_FLAGS != 0 {
            return at(
                OFF_FLAGS,
                format!(
                    "unknown header flags {:#x} (written by a newer Quiver?)",
                    self.flags
                ),
            );
        }
        let view_len = usize::from(self.view_len);
        if view_len == 0 || view_len > MAX_VIEW_NAME_LEN {
            return at(
                OFF_VIEW_LEN,
                format!("view name length {view_len} is outside 1..={MAX_VIEW_NAME_LEN}"),
            );
        }
        let Ok(view) = std::str::from_utf8(&self.view[..view_len]) else {
            return at(OFF_VIEW, "view name is not UTF-8".into());
        };
        if self.view[view_len..].iter().any(|&x| x != 0) {
            return at(OFF_VIEW + view_len, "view name padding is not zero".into());
        }
        if !self.reserved_zero {
            return at(OFF_RESERVED, "reserved header bytes are not zero".into());
        }
        if self.codec_len > MAX_CODEC_LEN || (self.version < 2 && self.codec_len != 0) {
            return at(
                OFF_CODEC_LEN,
                format!(
                    "codec section length {} is not allowed in a version {} file",
                    self.codec_len, self.version
                ),
            );
        }
        let codec_end = HEADER_LEN as u64 + u64::from(self.codec_len);
        if self.records_off != codec_end {
            return at(
                OFF_RECORDS_OFF,
                format!(
                    "record region starts at {}, not {codec_end} (after the codec section)",
                    self.records_off
                ),
            );
        }
        if self.records_len > MAX_RECORDS_LEN {
            return at(
                OFF_RECORDS_LEN,
                format!(
                    "record region length {} exceeds {MAX_RECORDS_LEN}",
                    self.records_len
                ),
            );
        }
        // Cannot overflow: records_len < 2^40.
        let records_end = self.records_off + self.records_len;
        let index_off = records_end.next_multiple_of(SLOT_LEN as u64);
        if self.index_off != index_off {
            return at(
                OFF_INDEX_OFF,
                format!(
                    "index starts at {}, expected {index_off} (right after the record region)",
                    self.index_off
                ),
            );
        }
        if !self.slots.is_power_of_two() || self.slots < MIN_SLOTS {
            return at(
                OFF_SLOTS,
                format!(
                    "index slot count {} is not a power of two >= {MIN_SLOTS}",
                    self.slots
                ),
            );
        }
        let Some(index_len) = self.slots.checked_mul(SLOT_LEN as u64) else {
            return at(
                OFF_SLOTS,
                format!("index slot count {} is absurd", self.slots),
            );
        };
        if self.index_len != index_len {
            return at(
                OFF_INDEX_LEN,
                format!(
                    "index length {} does not match {} slots of {SLOT_LEN} bytes",
                    self.index_len, self.slots
                ),
            );
        }
        // Every entry takes at least 2 bytes (two length varints), and the load factor is <= 3/4.
        if self.entities > self.records_len / 2
            || self.entities.saturating_mul(4) > self.slots.saturating_mul(3)
        {
            return at(
                OFF_ENTITIES,
                format!(
                    "entity count {} does not fit a {}-byte record region and {} index slots",
                    self.entities, self.records_len, self.slots
                ),
            );
        }
        let expected_len = index_off
            .checked_add(index_len)
            .and_then(|n| n.checked_add(FOOTER_LEN as u64));
        if expected_len != Some(file_len) {
            let what = match expected_len {
                Some(n) if n > file_len => format!(
                    "header describes a {n}-byte file but it is {file_len} bytes (truncated?)"
                ),
                Some(n) => format!(
                    "header describes a {n}-byte file but it is {file_len} bytes (trailing data)"
                ),
                None => "header describes a file larger than 2^64 bytes".into(),
            };
            return at(OFF_INDEX_LEN, what);
        }
        Ok(Sections {
            view: view.to_owned(),
            codec_start: HEADER_LEN as u64,
            records_start: self.records_off,
            records_end,
            index_start: index_off,
            index_end: index_off + index_len,
            slots: self.slots,
            entities: self.entities,
        })
    }
}

/// Where the regions of a file with a validated header are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Sections {
    pub(super) view: String,
    pub(super) codec_start: u64,
    pub(super) records_start: u64,
    pub(super) records_end: u64,
    pub(super) index_start: u64,
    pub(super) index_end: u64,
    pub(super) slots: u64,
    pub(super) entities: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_never_changes() {
        // Changing any of these breaks every snapshot ever written: bump the format version.
        let cases: [(&[u8], u64); 6] = [
            (b"", 0x2350_bcdc_aef7_57f9),
            (b"\x00", 0x2786_c6f5_bc43_3016),
            (b"\x02", 0x7a82_42c4_b6a1_4929),
            (b"user_12345", 0x132a_9548_a401_dcc4),
            (b"\x8e\x02\x04acme", 0x4b5c_39e3_fc05_4367),
            (&[0xffu8; 17], 0xc272_17db_c1e6_f0ae),
        ];
        for (key, want) in cases {
            assert_eq!(key_hash(key), want, "key {key:x?}");
        }
    }

    #[test]
    fn the_hash_spreads_small_integer_keys() {
        // Canonical keys of int64 entities are short varints: they must not cluster.
        let slots = 1u64 << 12;
        let mut counts = vec![0u32; slots as usize];
        let n = 3 * slots / 4;
        for i in 0..n {
            let (b, len) = crate::encoding::varint_bytes(crate::encoding::zigzag(i as i64));
            counts[home_slot(key_hash(&b[..len]), slots) as usize] += 1;
        }
        let max = counts.iter().copied().max().unwrap();
        assert!(max <= 8, "a home slot got {max} of {n} keys");
        let tags: std::collections::HashSet<u64> =
            (0..n).map(|i| tag(key_hash(&i.to_le_bytes()))).collect();
        assert!(tags.len() as u64 > n - 4, "tags collide too often");
    }

    #[test]
    fn slot_sizes_keep_the_load_factor() {
        assert_eq!(slots_for(0), Some(8));
        assert_eq!(slots_for(6), Some(8));
        assert_eq!(slots_for(7), Some(16));
        assert_eq!(slots_for(12), Some(16));
        assert_eq!(slots_for(13), Some(32));
        assert_eq!(slots_for(1_000_000), Some(1 << 21));
        assert_eq!(slots_for(u64::MAX), None);
        for n in 0..5000u64 {
            let s = slots_for(n).unwrap();
            assert!(s.is_power_of_two() && n * 4 <= s * 3 && (s == 8 || n * 8 > s * 3));
        }
    }

    #[test]
    fn slots_pack_and_unpack() {
        let h = 0xABCD_EF01_2345_6789;
        let s = pack_slot(h, 12345);
        assert_eq!(unpack_slot(s), (tag(h), 12345));
        assert_ne!(pack_slot(u64::MAX, MAX_RECORDS_LEN - 1), EMPTY_SLOT);
    }

    #[test]
    fn header_round_trips_and_validates() {
        let mut view = [0u8; MAX_VIEW_NAME_LEN];
        view[..10].copy_from_slice(b"user_stats");
        let h = Header {
            version: FORMAT_VERSION,
            flags: 0,
            schema_fingerprint: 7,
            sequence: 9,
            created_at: -3,
            max_event_ts: NO_EVENT_TS,
            entities: 3,
            records_off: HEADER_LEN as u64,
            records_len: 21,
            index_off: 280,
            index_len: 64,
            slots: 8,
            view_len: 10,
            view,
            codec_len: 0,
            codec_crc: 0,
            reserved_zero: true,
        };
        let b = h.encode();
        assert_eq!(Header::decode(&b), h);
        assert_eq!(stored_header_crc(&b), header_crc(&b));
        let layout = h.validate(280 + 64 + 16).unwrap();
        assert_eq!(layout.view, "user_stats");
        assert_eq!(layout.index_end, 344);
        assert!(h
            .validate(280 + 64 + 15)
            .unwrap_err()
            .1
            .contains("truncated"));
        assert!(h
            .validate(280 + 64 + 17)
            .unwrap_err()
            .1
            .contains("trailing"));
        let bad = Header {
            slots: 12,
            ..h.clone()
        };
        assert_eq!(bad.validate(360).unwrap_err().0, OFF_SLOTS as u64);
        let bad = Header {
            entities: 7,
            ..h.clone()
        };
        assert_eq!(bad.validate(360).unwrap_err().0, OFF_ENTITIES as u64);
        let bad = Header { view_len: 0, ..h };
        assert_eq!(bad.validate(360).unwrap_err().0, OFF_VIEW_LEN as u64);
    }
}
