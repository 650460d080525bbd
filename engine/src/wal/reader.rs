//! Reading segments back: frame-by-frame validation, bounded decompression and the
//! classification of the first bad frame (torn tail or damage in the middle).

use super::format::{
    decode_frame, decode_segment_header, find_valid_frame_after, Frame, HeaderError, FLAG_ZSTD,
    MAX_SEQ, SEGMENT_HEADER_LEN,
};
use super::WalRecord;
use crate::{EngineError, Result};

/// Reuses one zstd context and one output buffer across frames.
#[derive(Default)]
pub(crate) struct Decoder {
    dctx: Option<zstd::bulk::Decompressor<'static>>,
    out: Vec<u8>,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder").finish_non_exhaustive()
    }
}

impl Decoder {
    /// The payload of a checked frame. Decompression writes into a buffer whose capacity is
    /// the declared (already bounded) size, so a lying frame cannot make it allocate more.
    pub(crate) fn payload<'s, 'b: 's>(&'s mut self, frame: &Frame<'b>) -> Result<&'s [u8], String> {
        if frame.header.flags & FLAG_ZSTD == 0 {
            return Ok(frame.body);
        }
        let raw_len = frame.header.raw_len as usize;
        let dctx = match &mut self.dctx {
            Some(d) => d,
            None => self.dctx.insert(
                zstd::bulk::Decompressor::new()
                    .map_err(|e| format!("cannot create a zstd context: {e}"))?,
            ),
        };
        self.out.clear();
        self.out.reserve_exact(raw_len);
        let n = dctx
            .decompress_to_buffer(frame.body, &mut self.out)
            .map_err(|e| format!("compressed payload does not decompress: {e}"))?;
        if n != raw_len {
            return Err(format!(
                "compressed payload decompresses to {n} bytes, frame declares {raw_len}"
            ));
        }
        Ok(&self.out)
    }
}

/// The first thing wrong in a segment.
#[derive(Debug, Clone)]
pub(crate) struct Problem {
    /// Byte offset in the segment file.
    pub(crate) offset: u64,
    pub(crate) reason: String,
    /// No valid frame follows in this segment: if the segment is the last one, this is a torn
    /// tail rather than damage.
    pub(crate) torn: bool,
}

/// What a scan of one segment found.
#[derive(Debug, Clone)]
pub(crate) struct SegmentScan {
    /// Sequence number the next frame after the valid prefix would carry.
    pub(crate) next_seq: u64,
    /// End of the valid prefix: the header plus every good frame (0 if the header is bad).
    pub(crate) valid_end: u64,
    /// Frames in the valid prefix.
    pub(crate) frames: u64,
    /// Of which zstd-compressed.
    pub(crate) compressed_frames: u64,
    /// Uncompressed payload bytes in the valid prefix.
    pub(crate) payload_bytes: u64,
    pub(crate) problem: Option<Problem>,
}

/// Validates the segment `bytes` (named `file`, whose name says it starts at `name_seq`) and
/// calls `visit` for every record of its valid prefix, in order. Damage is reported in the
/// result, not as an error; errors are a newer format version or `visit` failing.
pub(crate) fn scan_segment(
    file: &str,
    name_seq: u64,
    bytes: &[u8],
    decoder: &mut Decoder,
    visit: &mut dyn FnMut(WalRecord<'_>) -> Result<()>,
) -> Result<SegmentScan> {
    let mut scan = SegmentScan {
        next_seq: name_seq,
        valid_end: 0,
        frames: 0,
        compressed_frames: 0,
        payload_bytes: 0,
        problem: None,
    };
    let header_problem = match decode_segment_header(bytes) {
        Ok(_) if !(1..=MAX_SEQ).contains(&name_seq) => Some((
            12,
            format!("segment starts at sequence {name_seq}, outside 1..={MAX_SEQ}"),
        )),
        Ok(seq) if seq == name_seq => None,
        Ok(seq) => Some((
            12,
            format!("segment header says it starts at sequence {seq}, its name says {name_seq}"),
        )),
        Err(HeaderError::Version(found)) => {
            return Err(EngineError::UnsupportedVersion {
                file: file.to_owned(),
                found,
                supported: super::format::FORMAT_VERSION,
            })
        }
        Err(HeaderError::Corrupt(offset, reason)) => Some((offset, reason)),
    };
    if let Some((offset, reason)) = header_problem {
        scan.problem = Some(Problem {
            offset,
            reason,
            torn: false,
        });
        return Ok(scan);
    }
    let mut pos = SEGMENT_HEADER_LEN;
    scan.valid_end = pos as u64;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        let bad = match decode_frame(rest) {
            Err(e) => Some((
                e.to_string(),
                find_valid_frame_after(bytes, pos + 1, scan.next_seq.saturating_sub(1)).is_none(),
            )),
            Ok(frame) if frame.header.seq >= MAX_SEQ => Some((
                format!("sequence {} is not below {MAX_SEQ}", frame.header.seq),
                false,
            )),
            Ok(frame) if frame.header.seq != scan.next_seq => Some((
                format!(
                    "sequence {} where {} was expected (gap or regression)",
                    frame.header.seq, scan.next_seq
                ),
                false,
            )),
            Ok(frame) => match decoder.payload(&frame) {
                Err(reason) => Some((reason, false)),
                Ok(payload) => {
                    visit(WalRecord {
                        seq: frame.header.seq,
                        record_type: frame.header.record_type,
                        payload,
                    })?;
                    pos += frame.encoded_len();
                    scan.valid_end = pos as u64;
                    scan.next_seq += 1;
                    scan.frames += 1;
                    scan.payload_bytes += u64::from(frame.header.raw_len);
                    if frame.header.flags & FLAG_ZSTD != 0 {
                        scan.compressed_frames += 1;
                    }
                    None
                }
            },
        };
        if let Some((reason, torn)) = bad {
            scan.problem = Some(Problem {
                offset: pos as u64,
                reason,
                torn,
            });
            break;
        }
    }
    Ok(scan)
}
