//! Byte layout of segment headers and frames (documented at the top of `wal/mod.rs` and in
//! `docs/formats.md`), and the pure decoders that the recovery scan and the fuzz target use.

use std::path::{Path, PathBuf};

/// `"\x89QVWAL\r\n"`: the non-ASCII first byte catches 7-bit transfers, the CR LF pair catches
/// newline translation.
pub(crate) const SEGMENT_MAGIC: [u8; 8] = *b"\x89QVWAL\r\n";
/// Format version written in every segment header.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// Segment header: magic, version, first sequence number, checksum.
pub(crate) const SEGMENT_HEADER_LEN: usize = 24;
const SH_VERSION: usize = 8;
const SH_FIRST_SEQ: usize = 12;
const SH_CRC: usize = 20;

/// Frame header: body length, checksum, sequence number, record type, flags, reserved,
/// uncompressed length. The body follows.
pub(crate) const FRAME_HEADER_LEN: usize = 24;
const FH_LEN: usize = 0;
const FH_CRC: usize = 4;
const FH_SEQ: usize = 8;
const FH_TYPE: usize = 16;
const FH_FLAGS: usize = 17;
const FH_RESERVED: usize = 18;
const FH_RAW_LEN: usize = 20;

/// Frame flag: the body is one zstd frame holding the payload.
pub(crate) const FLAG_ZSTD: u8 = 0x01;
const KNOWN_FLAGS: u8 = FLAG_ZSTD;

/// Hard cap on a record's payload, stored or uncompressed. Every length read from disk is
/// checked against it before anything is allocated.
pub const MAX_WAL_PAYLOAD: usize = 64 << 20;

/// Sequence numbers are in `1..=MAX_SEQ`, so arithmetic on them never overflows.
pub(crate) const MAX_SEQ: u64 = i64::MAX as u64;

/// Hard cap on a segment file's size. Writers rotate long before (the configured segment size
/// is at most 1 GiB); anything larger was not written by Quiver and is not read into memory.
pub(crate) const MAX_SEGMENT_FILE: u64 = 2 << 30;

/// Segment files are named by their first sequence number, zero-padded so names sort.
pub(crate) const SEGMENT_EXT: &str = "log";
/// A segment being created: header written and fsynced, then renamed to its final name.
pub(crate) const TEMP_EXT: &str = "tmp";
/// Suffix given to data set aside by salvage.
pub(crate) const DROPPED_EXT: &str = "dropped";

/// File name of the segment whose first record has sequence number `first_seq`.
pub(crate) fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.{SEGMENT_EXT}")
}

/// Path of the segment starting at `first_seq` in `dir`.
pub(crate) fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(segment_name(first_seq))
}

/// The first sequence number encoded in a segment file name, if `name` is one.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_EXT)?.strip_suffix('.')?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Encodes the header of a segment whose first record is `first_seq`.
pub(crate) fn encode_segment_header(first_seq: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[..SH_VERSION].copy_from_slice(&SEGMENT_MAGIC);
    h[SH_VERSION..SH_FIRST_SEQ].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[SH_FIRST_SEQ..SH_CRC].copy_from_slice(&first_seq.to_le_bytes());
    let crc = crc32fast::hash(&h[..SH_CRC]);
    h[SH_CRC..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Why a segment header was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HeaderError {
    /// Not a segment (or damaged): the reason and the byte offset.
    Corrupt(u64, String),
    /// A valid header of a newer format.
    Version(u32),
}

/// Decodes and checks a segment header; returns the segment's first sequence number.
pub(crate) fn decode_segment_header(bytes: &[u8]) -> Result<u64, HeaderError> {
    if bytes.len() < SEGMENT_HEADER_LEN {
        return Err(HeaderError::Corrupt(
            0,
            format!(
                "file is {} bytes, shorter than the {SEGMENT_HEADER_LEN}-byte segment header",
                bytes.len()
            ),
        ));
    }
    if bytes[..SH_VERSION] != SEGMENT_MAGIC {
        return Err(HeaderError::Corrupt(
            0,
            "not a Quiver WAL segment (bad magic)".into(),
        ));
    }
    let stored = u32_at(bytes, SH_CRC);
    let actual = crc32fast::hash(&bytes[..SH_CRC]);
    if stored != actual {
        return Err(HeaderError::Corrupt(
            SH_CRC as u64,
            format!(
                "segment header checksum mismatch: expected {stored:#010x}, actual {actual:#010x}"
            ),
        ));
    }
    let version = u32_at(bytes, SH_VERSION);
    if version != FORMAT_VERSION {
        return Err(HeaderError::Version(version));
    }
    Ok(u64_at(bytes, SH_FIRST_SEQ))
}

/// The fields of a frame header, before the body is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    pub(crate) body_len: u32,
    pub(crate) seq: u64,
    pub(crate) record_type: u8,
    pub(crate) flags: u8,
    pub(crate) raw_len: u32,
}

impl FrameHeader {
    /// Header bytes with the checksum field left zero.
    fn to_bytes(self) -> [u8; FRAME_HEADER_LEN] {
        let mut h = [0u8; FRAME_HEADER_LEN];
        h[FH_LEN..FH_CRC].copy_from_slice(&self.body_len.to_le_bytes());
        h[FH_SEQ..FH_TYPE].copy_from_slice(&self.seq.to_le_bytes());
        h[FH_TYPE] = self.record_type;
        h[FH_FLAGS] = self.flags;
        h[FH_RAW_LEN..].copy_from_slice(&self.raw_len.to_le_bytes());
        h
    }
}

/// Appends one frame to `out`. `body_crc` is a hasher that has already seen the body, so the
/// caller can checksum the body outside any lock; the header fields are added here.
pub(crate) fn put_frame(
    out: &mut Vec<u8>,
    header: FrameHeader,
    body_crc: &crc32fast::Hasher,
    body: &[u8],
) {
    let mut h = header.to_bytes();
    let mut crc = body_crc.clone();
    crc.update(&h[..FH_CRC]);
    crc.update(&h[FH_SEQ..]);
    h[FH_CRC..FH_SEQ].copy_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(body);
}

/// A frame whose checksum and fields are valid; the body may still need decompression.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Frame<'a> {
    pub(crate) header: FrameHeader,
    pub(crate) body: &'a [u8],
}

impl Frame<'_> {
    /// Bytes the frame occupies on disk.
    pub(crate) fn encoded_len(&self) -> usize {
        FRAME_HEADER_LEN + self.body.len()
    }
}

/// Why the bytes at some offset are not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// Fewer bytes remain than the header or the declared body needs.
    Short { have: usize, need: usize },
    /// A length field is above [`MAX_WAL_PAYLOAD`] or inconsistent with the flags.
    BadLength(String),
    /// The stored checksum does not match the bytes.
    Checksum { expected: u32, actual: u32 },
    /// Flags or reserved bits this version does not know.
    Unknown(String),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Short { have, need } => {
                write!(f, "frame truncated: {have} bytes left, {need} needed")
            }
            FrameError::BadLength(s) | FrameError::Unknown(s) => f.write_str(s),
            FrameError::Checksum { expected, actual } => write!(
                f,
                "frame checksum mismatch: expected {expected:#010x}, actual {actual:#010x}"
            ),
        }
    }
}

/// Parses the header at the start of `bytes` and bounds its lengths, without touching the body.
fn decode_frame_header(bytes: &[u8]) -> Result<FrameHeader, FrameError> {
    if bytes.len() < FRAME_HEADER_LEN {
        return Err(FrameError::Short {
            have: bytes.len(),
            need: FRAME_HEADER_LEN,
        });
    }
    let h = FrameHeader {
        body_len: u32_at(bytes, FH_LEN),
        seq: u64_at(bytes, FH_SEQ),
        record_type: bytes[FH_TYPE],
        flags: bytes[FH_FLAGS],
        raw_len: u32_at(bytes, FH_RAW_LEN),
    };
    let (body_len, raw_len) = (h.body_len as usize, h.raw_len as usize);
    if body_len > MAX_WAL_PAYLOAD || raw_len > MAX_WAL_PAYLOAD {
        return Err(FrameError::BadLength(format!(
            "frame declares {body_len} stored / {raw_len} uncompressed bytes, above the \
             {MAX_WAL_PAYLOAD}-byte limit"
        )));
    }
    if h.flags & FLAG_ZSTD == 0 && body_len != raw_len {
        return Err(FrameError::BadLength(format!(
            "uncompressed frame with body length {body_len} but payload length {raw_len}"
        )));
    }
    if h.flags & !KNOWN_FLAGS != 0 {
        return Err(FrameError::Unknown(format!(
            "unknown frame flags {:#04x}",
            h.flags
        )));
    }
    if bytes[FH_RESERVED..FH_RAW_LEN] != [0, 0] {
        return Err(FrameError::Unknown(
            "reserved frame bytes are not zero".into(),
        ));
    }
    Ok(h)
}

/// Decodes and checks the frame at the start of `bytes`.
pub(crate) fn decode_frame(bytes: &[u8]) -> Result<Frame<'_>, FrameError> {
    let header = decode_frame_header(bytes)?;
    let need = FRAME_HEADER_LEN + header.body_len as usize;
    let Some(frame) = bytes.get(..need) else {
        return Err(FrameError::Short {
            have: bytes.len(),
            need,
        });
    };
    let body = &frame[FRAME_HEADER_LEN..];
    let mut crc = crc32fast::Hasher::new();
    crc.update(body);
    crc.update(&frame[..FH_CRC]);
    crc.update(&frame[FH_SEQ..FRAME_HEADER_LEN]);
    let actual = crc.finalize();
    let expected = u32_at(frame, FH_CRC);
    if expected != actual {
        return Err(FrameError::Checksum { expected, actual });
    }
    Ok(Frame { header, body })
}

/// Offset (relative to `bytes`) of the first valid frame in `bytes[from..]` whose sequence
/// number is above `after_seq`, if any. Used to tell a torn tail (nothing valid after the bad
/// frame) from damage in the middle of the log. The sequence window and length checks reject
/// almost every offset before the checksum is computed, so the scan stays linear.
pub(crate) fn find_valid_frame_after(bytes: &[u8], from: usize, after_seq: u64) -> Option<usize> {
    let last_start = bytes.len().checked_sub(FRAME_HEADER_LEN)?;
    for off in from..=last_start {
        let rest = &bytes[off..];
        let Ok(h) = decode_frame_header(rest) else {
            continue;
        };
        // Each frame takes at least a header, which bounds how far ahead the next valid
        // sequence number can be.
        let max_ahead = (bytes.len() / FRAME_HEADER_LEN) as u64 + 1;
        if h.seq <= after_seq || h.seq - after_seq > max_ahead {
            continue;
        }
        if FRAME_HEADER_LEN + h.body_len as usize > rest.len() {
            continue;
        }
        if decode_frame(rest).is_ok() {
            return Some(off);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(seq: u64, ty: u8, flags: u8, raw_len: u32, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut crc = crc32fast::Hasher::new();
        crc.update(body);
        put_frame(
            &mut out,
            FrameHeader {
                body_len: body.len() as u32,
                seq,
                record_type: ty,
                flags,
                raw_len,
            },
            &crc,
            body,
        );
        out
    }

    #[test]
    fn frames_round_trip_and_every_flip_or_cut_is_refused() {
        let bytes = frame(7, 3, 0, 5, b"hello");
        assert_eq!(bytes.len(), FRAME_HEADER_LEN + 5);
        let f = decode_frame(&bytes).unwrap();
        assert_eq!(f.header.seq, 7);
        assert_eq!(f.header.record_type, 3);
        assert_eq!(f.body, b"hello");
        assert_eq!(f.encoded_len(), bytes.len());
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut bad = bytes.clone();
                bad[i] ^= 1 << bit;
                assert!(decode_frame(&bad).is_err(), "byte {i} bit {bit}");
            }
        }
        for cut in 0..bytes.len() {
            assert!(matches!(
                decode_frame(&bytes[..cut]),
                Err(FrameError::Short { .. })
            ));
        }
    }

    #[test]
    fn lengths_are_bounded_before_use() {
        let mut bytes = frame(1, 0, 0, 0, b"");
        bytes[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        bytes[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode_frame(&bytes),
            Err(FrameError::BadLength(_))
        ));
        let huge = frame(1, 0, FLAG_ZSTD, (MAX_WAL_PAYLOAD + 1) as u32, b"x");
        assert!(matches!(decode_frame(&huge), Err(FrameError::BadLength(_))));
        let mismatch = frame(1, 0, 0, 9, b"x");
        assert!(matches!(
            decode_frame(&mismatch),
            Err(FrameError::BadLength(_))
        ));
        let unknown = frame(1, 0, 0x80, 1, b"x");
        assert!(matches!(
            decode_frame(&unknown),
            Err(FrameError::Unknown(_))
        ));
    }

    #[test]
    fn checksum_errors_state_expected_and_actual() {
        let mut bytes = frame(1, 0, 0, 3, b"abc");
        bytes[FRAME_HEADER_LEN] ^= 1;
        let e = decode_frame(&bytes).unwrap_err();
        assert!(matches!(e, FrameError::Checksum { expected, actual } if expected != actual));
        assert!(e.to_string().contains("expected 0x"), "{e}");
    }

    #[test]
    fn segment_headers_round_trip_and_damage_is_refused() {
        let h = encode_segment_header(42);
        assert_eq!(decode_segment_header(&h), Ok(42));
        for i in 0..h.len() {
            let mut bad = h;
            bad[i] ^= 0x04;
            assert!(decode_segment_header(&bad).is_err(), "byte {i}");
        }
        assert!(decode_segment_header(&h[..10]).is_err());
        let mut newer = h;
        newer[8] = 2;
        let crc = crc32fast::hash(&newer[..20]);
        newer[20..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode_segment_header(&newer), Err(HeaderError::Version(2)));
    }

    #[test]
    fn segment_names_parse_back() {
        assert_eq!(segment_name(1), "00000000000000000001.log");
        assert_eq!(parse_segment_name(&segment_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_segment_name("00000000000000000001.log.tmp"), None);
        assert_eq!(parse_segment_name("1.log"), None);
        assert_eq!(parse_segment_name("0000000000000000000x.log"), None);
        assert_eq!(parse_segment_name("99999999999999999999.log"), None);
    }

    #[test]
    fn resync_finds_only_plausible_frames() {
        let mut bytes = frame(5, 0, 0, 3, b"abc");
        let second_at = bytes.len();
        bytes.extend(frame(6, 0, 0, 2, b"de"));
        assert_eq!(find_valid_frame_after(&bytes, 1, 5), Some(second_at));
        assert_eq!(find_valid_frame_after(&bytes, 1, 6), None);
        assert_eq!(find_valid_frame_after(&bytes, 0, 4), Some(0));
        assert_eq!(find_valid_frame_after(&bytes[..5], 0, 0), None);
    }
}
