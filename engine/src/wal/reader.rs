//! Reading segments back: frame-by-frame validation, bounded decompression and the
//! classification of the first bad frame (torn tail or damage in the middle).

use super::format::{
    cut_short, data_end, decode_frame, decode_segment_header, Frame, HeaderError, SegmentHeader,
    FLAG_SEAL, FLAG_ZSTD, FORMAT_VERSION, MAX_SEQ,
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
    /// A write cut short by a crash (see [`cut_short`]): if the segment is the tail of the
    /// log, this is a torn tail rather than damage.
    pub(crate) torn: bool,
}

/// What a scan of one segment found.
#[derive(Debug, Clone)]
pub(crate) struct SegmentScan {
    /// Sequence number the next frame after the valid prefix would carry (after a seal: the
    /// first one of the next segment).
    pub(crate) next_seq: u64,
    /// End of the valid prefix: the header plus every good frame, the seal included (0 if the
    /// header is bad).
    pub(crate) valid_end: u64,
    /// Frames in the valid prefix, the seal not counted.
    pub(crate) frames: u64,
    /// Of which zstd-compressed.
    pub(crate) compressed_frames: u64,
    /// Uncompressed payload bytes in the valid prefix.
    pub(crate) payload_bytes: u64,
    /// The header, if it is valid.
    pub(crate) header: Option<SegmentHeader>,
    /// A seal ends the valid prefix: a next segment was created, starting at `next_seq`.
    pub(crate) sealed: bool,
    pub(crate) problem: Option<Problem>,
}

impl SegmentScan {
    /// Nothing valid yet in a segment whose name says it starts at `name_seq`.
    pub(crate) fn empty(name_seq: u64) -> Self {
        Self {
            next_seq: name_seq,
            valid_end: 0,
            frames: 0,
            compressed_frames: 0,
            payload_bytes: 0,
            header: None,
            sealed: false,
            problem: None,
        }
    }
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
    let mut scan = SegmentScan::empty(name_seq);
    let header = match decode_segment_header(bytes) {
        Ok(_) if !(1..=MAX_SEQ).contains(&name_seq) => Err((
            12,
            format!("segment starts at sequence {name_seq}, outside 1..={MAX_SEQ}"),
        )),
        Ok(h) if h.first_seq == name_seq => Ok(h),
        Ok(h) => Err((
            12,
            format!(
                "segment header says it starts at sequence {}, its name says {name_seq}",
                h.first_seq
            ),
        )),
        Err(HeaderError::Version(found)) => {
            return Err(EngineError::UnsupportedVersion {
                file: file.to_owned(),
                found,
                supported: FORMAT_VERSION,
            })
        }
        Err(HeaderError::Corrupt(offset, reason)) => Err((offset, reason)),
    };
    let header = match header {
        Ok(h) => h,
        Err((offset, reason)) => {
            scan.problem = Some(Problem {
                offset,
                reason,
                torn: false,
            });
            return Ok(scan);
        }
    };
    scan.header = Some(header);
    let grows = header.file_len.is_none();
    let data_end = data_end(bytes);
    let mut pos = header.len();
    scan.valid_end = pos as u64;
    // A preallocated segment's data ends where only zeros are left; a growing one's at its end.
    let end = if grows { bytes.len() } else { data_end };
    while pos < end {
        let rest = &bytes[pos..];
        let bad = match decode_frame(rest) {
            Err(e) => Some((e.to_string(), cut_short(bytes, pos, data_end, grows))),
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
            Ok(frame) if frame.header.flags & FLAG_SEAL != 0 => {
                pos += frame.encoded_len();
                scan.valid_end = pos as u64;
                scan.sealed = true;
                // Nothing is ever written after a seal.
                (pos < end).then(|| {
                    (
                        format!(
                            "data after the seal at offset {}",
                            pos - frame.encoded_len()
                        ),
                        false,
                    )
                })
            }
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
        if scan.sealed {
            break;
        }
    }
    if let Some(want) = header.file_len {
        if want != bytes.len() as u64 {
            // The one thing a crash cannot do to a preallocated file: acknowledged frames
            // may have been cut off with it.
            scan.problem = Some(Problem {
                offset: bytes.len().min(want as usize) as u64,
                reason: format!(
                    "segment is {} bytes but was created with {want}: it was cut short (or \
                     extended) after it was written, and frames past the valid prefix, \
                     from sequence {} on, may be missing",
                    bytes.len(),
                    scan.next_seq
                ),
                torn: false,
            });
        }
    }
    Ok(scan)
}
