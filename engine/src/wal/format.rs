//! Byte layout of segment headers and frames (documented at the top of `wal/mod.rs` and in
//! `docs/formats.md`), and the pure decoders that the recovery scan and the fuzz target use.

use crate::fs::SEGMENT_EXTENSION;
use std::path::{Path, PathBuf};

/// `"\x89QVWAL\r\n"`: the non-ASCII first byte catches 7-bit transfers, the CR LF pair catches
/// newline translation.
pub(crate) const SEGMENT_MAGIC: [u8; 8] = *b"\x89QVWAL\r\n";
/// Format version this build writes: preallocated, sealed segments.
pub(crate) const FORMAT_VERSION: u32 = 2;
/// The first format: segments grow as they are written and are never sealed. Still read.
pub(crate) const FORMAT_VERSION_V1: u32 = 1;

/// Segment header of version 2: magic, version, first sequence number, file size, checksum.
pub(crate) const SEGMENT_HEADER_LEN: usize = 32;
/// Segment header of version 1: magic, version, first sequence number, checksum.
pub(crate) const SEGMENT_HEADER_LEN_V1: usize = 24;
const SH_VERSION: usize = 8;
const SH_FIRST_SEQ: usize = 12;
const SH_FILE_LEN: usize = 20;
const SH_CRC: usize = 28;
const SH_CRC_V1: usize = 20;

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
/// Frame flag: a seal. It ends its segment, has an empty body and record type 0, and its
/// sequence number is the first one of the next segment (it consumes none).
pub(crate) const FLAG_SEAL: u8 = 0x02;
const KNOWN_FLAGS: u8 = FLAG_ZSTD | FLAG_SEAL;
/// Bytes a seal takes: a frame header alone.
pub(crate) const SEAL_LEN: usize = FRAME_HEADER_LEN;

/// Storage loses or keeps whole sectors: a write cut short by a crash (kill -9 stops a write
/// between pages, power loss drops unwritten sectors) leaves zeros from an offset that is a
/// multiple of this, never from the middle of a sector.
pub(crate) const TEAR_ALIGN: usize = 512;

/// Hard cap on a record's payload, stored or uncompressed. Every length read from disk is
/// checked against it before anything is allocated.
pub const MAX_WAL_PAYLOAD: usize = 64 << 20;

/// Sequence numbers are in `1..=MAX_SEQ`, so arithmetic on them never overflows.
pub(crate) const MAX_SEQ: u64 = i64::MAX as u64;

/// Hard cap on a segment file's size. Writers rotate long before (the configured segment size
/// is at most 1 GiB); anything larger was not written by Quiver and is not read into memory.
pub(crate) const MAX_SEGMENT_FILE: u64 = 2 << 30;

/// File name of the segment whose first record has sequence number `first_seq`: zero-padded
/// so that names sort.
pub(crate) fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.{SEGMENT_EXTENSION}")
}

/// Path of the segment starting at `first_seq` in `dir`.
pub(crate) fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(segment_name(first_seq))
}

/// The first sequence number encoded in a segment file name, if `name` is one.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_EXTENSION)?.strip_suffix('.')?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Encodes the header of a segment whose first record is `first_seq` and whose file is
/// preallocated to `file_len` bytes.
pub(crate) fn encode_segment_header(first_seq: u64, file_len: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[..SH_VERSION].copy_from_slice(&SEGMENT_MAGIC);
    h[SH_VERSION..SH_FIRST_SEQ].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[SH_FIRST_SEQ..SH_FILE_LEN].copy_from_slice(&first_seq.to_le_bytes());
    h[SH_FILE_LEN..SH_CRC].copy_from_slice(&file_len.to_le_bytes());
    let crc = crc32fast::hash(&h[..SH_CRC]);
    h[SH_CRC..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Encodes a version-1 header, as builds before version 2 wrote them (compatibility tests).
#[cfg(test)]
pub(crate) fn encode_segment_header_v1(first_seq: u64) -> [u8; SEGMENT_HEADER_LEN_V1] {
    let mut h = [0u8; SEGMENT_HEADER_LEN_V1];
    h[..SH_VERSION].copy_from_slice(&SEGMENT_MAGIC);
    h[SH_VERSION..SH_FIRST_SEQ].copy_from_slice(&FORMAT_VERSION_V1.to_le_bytes());
    h[SH_FIRST_SEQ..SH_CRC_V1].copy_from_slice(&first_seq.to_le_bytes());
    let crc = crc32fast::hash(&h[..SH_CRC_V1]);
    h[SH_CRC_V1..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// A checked segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    /// 1 or 2.
    pub(crate) version: u32,
    pub(crate) first_seq: u64,
    /// Version 2: the size the file was preallocated to, which it keeps for life.
    pub(crate) file_len: Option<u64>,
}

impl SegmentHeader {
    /// Where the first frame starts.
    pub(crate) fn len(&self) -> usize {
        match self.version {
            FORMAT_VERSION_V1 => SEGMENT_HEADER_LEN_V1,
            _ => SEGMENT_HEADER_LEN,
        }
    }
}

/// Why a segment header was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HeaderError {
    /// Not a segment (or damaged): the reason and the byte offset.
    Corrupt(u64, String),
    /// A header of a format this build does not know.
    Version(u32),
}

/// Decodes and checks a segment header. The version is judged before the checksum because
/// the checksum's position depends on it.
pub(crate) fn decode_segment_header(bytes: &[u8]) -> Result<SegmentHeader, HeaderError> {
    let short = |need: usize| {
        HeaderError::Corrupt(
            0,
            format!(
                "file is {} bytes, shorter than the {need}-byte segment header",
                bytes.len()
            ),
        )
    };
    if bytes.len() < SH_FIRST_SEQ {
        return Err(short(SEGMENT_HEADER_LEN_V1));
    }
    if bytes[..SH_VERSION] != SEGMENT_MAGIC {
        return Err(HeaderError::Corrupt(
            0,
            "not a Quiver WAL segment (bad magic)".into(),
        ));
    }
    let version = le_u32(bytes, SH_VERSION);
    let crc_at = match version {
        FORMAT_VERSION_V1 => SH_CRC_V1,
        FORMAT_VERSION => SH_CRC,
        other => return Err(HeaderError::Version(other)),
    };
    if bytes.len() < crc_at + 4 {
        return Err(short(crc_at + 4));
    }
    let stored = le_u32(bytes, crc_at);
    let actual = crc32fast::hash(&bytes[..crc_at]);
    if stored != actual {
        return Err(HeaderError::Corrupt(
            crc_at as u64,
            format!(
                "segment header checksum mismatch: expected {stored:#010x}, actual {actual:#010x}"
            ),
        ));
    }
    let file_len = (version == FORMAT_VERSION).then(|| le_u64(bytes, SH_FILE_LEN));
    if let Some(len) = file_len {
        if !(SEGMENT_HEADER_LEN as u64..=MAX_SEGMENT_FILE).contains(&len) {
            return Err(HeaderError::Corrupt(
                SH_FILE_LEN as u64,
                format!("segment header declares a file size of {len} bytes, outside {SEGMENT_HEADER_LEN}..={MAX_SEGMENT_FILE}"),
            ));
        }
    }
    Ok(SegmentHeader {
        version,
        first_seq: le_u64(bytes, SH_FIRST_SEQ),
        file_len,
    })
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
        body_len: le_u32(bytes, FH_LEN),
        seq: le_u64(bytes, FH_SEQ),
        record_type: bytes[FH_TYPE],
        flags: bytes[FH_FLAGS],
        raw_len: le_u32(bytes, FH_RAW_LEN),
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
    if h.flags & FLAG_SEAL != 0 && (h.flags != FLAG_SEAL || body_len != 0 || h.record_type != 0) {
        return Err(FrameError::BadLength(
            "a seal frame must have no body, record type 0 and no other flag".into(),
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
    let expected = le_u32(frame, FH_CRC);
    if expected != actual {
        return Err(FrameError::Checksum { expected, actual });
    }
    Ok(Frame { header, body })
}

/// One past the last non-zero byte of `bytes` (0 if all are zero): where written data ends in
/// a preallocated segment.
pub(crate) fn data_end(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1)
}

/// Whether the bad frame at `pos`, the first one after the valid prefix, is a write cut short
/// by a crash rather than damage. `data_end` is [`data_end`] of `bytes`, the whole segment;
/// `grows` says the segment is a version-1 file, which ends where the last write stopped.
///
/// A cut leaves the frame's bytes correct up to some offset and zeros (or the end of a
/// growing file) from there on, with nothing written after it. So the frame is torn only if
/// nothing but zeros follows it and its extent runs into the zeros past a sector boundary
/// (see [`TEAR_ALIGN`]), or past the end of a growing file. A complete frame with a bad
/// checksum is damage: a cut never produces it, whatever the fsync policy.
pub(crate) fn cut_short(bytes: &[u8], pos: usize, data_end: usize, grows: bool) -> bool {
    if data_end <= pos {
        // Only zeros from here: nothing of this write reached the disk.
        return true;
    }
    let frame_end = match decode_frame_header(&bytes[pos..]) {
        Ok(h) => pos + FRAME_HEADER_LEN + h.body_len as usize,
        // The header itself is unreadable, so it is the only extent known.
        Err(_) => pos + FRAME_HEADER_LEN,
    };
    if data_end > frame_end {
        return false;
    }
    if grows && frame_end > bytes.len() {
        return true;
    }
    data_end.div_ceil(TEAR_ALIGN) * TEAR_ALIGN < frame_end
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
        let h = encode_segment_header(42, 4096);
        let want = SegmentHeader {
            version: 2,
            first_seq: 42,
            file_len: Some(4096),
        };
        assert_eq!(decode_segment_header(&h), Ok(want));
        assert_eq!(want.len(), SEGMENT_HEADER_LEN);
        for i in 0..h.len() {
            let mut bad = h;
            bad[i] ^= 0x04;
            assert!(decode_segment_header(&bad).is_err(), "byte {i}");
        }
        for cut in 0..h.len() {
            assert!(decode_segment_header(&h[..cut]).is_err(), "cut {cut}");
        }
        let mut newer = h;
        newer[8] = 3;
        let crc = crc32fast::hash(&newer[..28]);
        newer[28..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode_segment_header(&newer), Err(HeaderError::Version(3)));
        let huge = encode_segment_header(42, MAX_SEGMENT_FILE + 1);
        assert!(matches!(
            decode_segment_header(&huge),
            Err(HeaderError::Corrupt(20, _))
        ));
    }

    #[test]
    fn version_1_headers_are_still_read() {
        let h = encode_segment_header_v1(7);
        let got = decode_segment_header(&h).unwrap();
        assert_eq!((got.version, got.first_seq, got.file_len), (1, 7, None));
        assert_eq!(got.len(), SEGMENT_HEADER_LEN_V1);
        for i in 0..h.len() {
            let mut bad = h;
            bad[i] ^= 0x04;
            assert!(decode_segment_header(&bad).is_err(), "byte {i}");
        }
    }

    #[test]
    fn seal_frames_carry_nothing_else() {
        let seal = frame(9, 0, FLAG_SEAL, 0, b"");
        assert_eq!(seal.len(), SEAL_LEN);
        assert_eq!(decode_frame(&seal).unwrap().header.flags, FLAG_SEAL);
        for bad in [
            frame(9, 1, FLAG_SEAL, 0, b""),
            frame(9, 0, FLAG_SEAL, 1, b"x"),
            frame(9, 0, FLAG_SEAL | FLAG_ZSTD, 1, b"x"),
        ] {
            assert!(matches!(decode_frame(&bad), Err(FrameError::BadLength(_))));
        }
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
    fn only_a_frame_running_into_zeros_past_a_sector_boundary_is_cut_short() {
        // A 1000-byte frame at offset 100 of a 4096-byte preallocated file.
        let body: Vec<u8> = (0..976u32).map(|i| (i % 251) as u8 + 1).collect();
        let whole = frame(1, 0, 0, 976, &body);
        let mut file = vec![0u8; 4096];
        file[100..1100].copy_from_slice(&whole);
        let torn = |f: &[u8], grows| cut_short(f, 100, data_end(f), grows);
        // Complete but damaged: never a cut.
        let mut flipped = file.clone();
        flipped[600] ^= 1;
        assert!(!torn(&flipped, false));
        // Cut at a sector boundary inside the frame, and only zeros written.
        for cut in [512, 1024] {
            let mut f = file.clone();
            f[cut..].fill(0);
            assert!(torn(&f, false), "cut {cut}");
        }
        assert!(torn(&vec![0u8; 4096], false));
        // Zeros that start mid-sector with the frame ending in the same sector: damage.
        let mut f = file.clone();
        f[1050..1100].fill(0);
        assert!(!torn(&f, false));
        // Something written after the frame: damage.
        let mut f = file.clone();
        f[1024..].fill(0);
        f[3000] = 1;
        assert!(!torn(&f, false));
        // A growing (version-1) file cut anywhere inside the frame.
        for cut in [101, 124, 700, 1099] {
            assert!(torn(&file[..cut], true), "cut {cut}");
        }
        assert!(!torn(&flipped[..1100], true));
    }
}
