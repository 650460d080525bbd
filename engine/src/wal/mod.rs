//! The write-ahead log: a directory of segment files holding framed, checksummed records
//! `(sequence number, record type, payload)`. It knows nothing about what payloads mean.
//!
//! ```text
//! wal/00000000000000000001.log     segments, named by their first sequence number (20 digits)
//! wal/00000000000000004097.log     the last one is appended to
//!
//! segment header, version 2 (32 bytes)
//! offset  size  field
//! 0       8     magic  89 51 56 57 41 4C 0D 0A  ("\x89QVWAL\r\n")
//! 8       4     format version (2), u32
//! 12      8     sequence number of the segment's first frame, u64 (equals the file name)
//! 20      8     file size, u64: the file is preallocated to it and never changes size
//! 28      4     crc32 of bytes 0..28
//!
//! segment header, version 1 (24 bytes; still read, no longer written)
//! 0       8     magic
//! 8       4     format version (1), u32
//! 12      8     sequence number of the segment's first frame, u64
//! 20      4     crc32 of bytes 0..20
//!
//! frame (24-byte header + body), repeated; then zeros to the end of a version-2 file
//! offset  size  field
//! 0       4     body length, u32 (<= 64 MiB)
//! 4       4     crc32 of the body, then of header bytes 0..4 and 8..24
//! 8       8     sequence number, u64 in 1..2^63: exactly one more than the previous
//!               frame's, across segments
//! 16      1     record type (opaque to the log)
//! 17      1     flags: bit 0 = body is one zstd frame; bit 1 = seal; other bits zero
//! 18      2     reserved, zero
//! 20      4     payload length after decompression, u32 (<= 64 MiB; equals the body
//!               length when bit 0 is clear)
//! 24      n     body
//!
//! seal: a frame with flags = 2, record type 0, no body, whose sequence number is the next
//! segment's first; it is the segment's last frame and consumes no sequence number
//! ```
//!
//! All integers are little-endian. The body is checksummed first so appenders can hash it
//! before taking the commit lock, which then only hashes the 20 header bytes.
//!
//! **Writing.** Appenders encode their frame into a shared pending batch and block; a writer
//! thread takes the whole batch, writes it with one `write` and (policy permitting) one fsync,
//! then wakes the appenders it covered ([`FsyncPolicy`]). Batches are bounded in bytes and
//! records; appenders wait for room when one is full. Payloads of at least
//! [`WalConfig::compress_threshold`] bytes are zstd-compressed by the appender when that saves
//! an eighth or more. A failed write or fsync poisons the log: the appenders waiting on it and
//! every later call get [`EngineError::WalPoisoned`] until it is reopened; nothing is retried,
//! because a failed fsync may have dropped dirty pages that a retry would report as clean.
//!
//! **Rotation.** A segment is created at its full size ([`WalConfig::segment_size`], or a
//! batch's size if larger) and a batch that would not fit in it with room for a seal goes to a
//! new one: the old segment is fsynced, the new one is created durable (temp file, header,
//! set_len, fsync, rename, directory fsync), then the old one is sealed and fsynced. So only
//! the last segment can end torn, a sealed segment always had a successor, and a group commit
//! stays one write and one fdatasync (the file size never changes after creation).
//!
//! **Recovery.** [`Wal::open`] replays the records after the checkpoint in order. Only a final
//! frame cut short by a crash is a torn tail (see `format::cut_short`): it is cleared and
//! reported. Anything else refuses to open with [`EngineError::Corrupt`] naming the file and
//! offset: a damaged frame anywhere (a complete last frame included), a segment shorter than
//! its preallocated size, a sealed last segment (its successor is missing), an unsealed one
//! with a successor, a gap, a log that ends before the checkpoint or lost the segment the
//! checkpoint named. With [`WalRecoveryOptions::salvage`] replay stops there instead: the
//! segment is cut back to its valid prefix and the rest is set aside as `*.dropped` files.

mod format;
mod reader;
mod recovery;
mod writer;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub(crate) use format::MAX_WAL_PAYLOAD;
pub(crate) use writer::WalFaults;

use crate::fs::{io_err, sync_dir};
use crate::sync::lock;
use format::{parse_segment_name, segment_path, MAX_SEQ};
use reader::{scan_segment, Decoder};
use recovery::read_segment;
use writer::{poisoned_error, Shared};

use crate::{EngineError, Result};

/// When an acknowledged append is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Acknowledge after the batch is fsynced: acknowledged records survive power loss.
    Always,
    /// Acknowledge after the batch is written to the OS; the writer fsyncs at least this often
    /// while there is unsynced data. A process crash loses nothing, power loss up to one
    /// interval.
    Interval(Duration),
    /// Acknowledge after the write; fsync only on [`Wal::sync`], rotation and close.
    Never,
}

/// Tuning of a [`Wal`].
#[derive(Debug, Clone)]
pub struct WalConfig {
    /// When an append is acknowledged.
    pub fsync: FsyncPolicy,
    /// Segments are preallocated to this many bytes (a batch that needs more gets a segment
    /// of its own size). 4 KiB ..= 1 GiB.
    pub segment_size: u64,
    /// Most bytes of frames in one write (a single larger record is written alone).
    pub max_batch_bytes: usize,
    /// Most records in one write.
    pub max_batch_records: usize,
    /// Payloads at least this large are zstd-compressed; `usize::MAX` disables compression.
    pub compress_threshold: usize,
    /// zstd level, 1 ..= 19.
    pub compression_level: i32,
    /// Fault injection for tests.
    pub faults: Option<Arc<WalFaults>>,
}

impl Default for WalConfig {
    fn default() -> Self {
        Self {
            fsync: FsyncPolicy::Always,
            segment_size: 64 << 20,
            max_batch_bytes: 4 << 20,
            max_batch_records: 4096,
            compress_threshold: 4096,
            compression_level: 1,
            faults: None,
        }
    }
}

impl WalConfig {
    fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(EngineError::InvalidArgument(format!("wal: {what}")));
        if !(4 << 10..=1 << 30).contains(&self.segment_size) {
            return bad("segment_size must be between 4 KiB and 1 GiB");
        }
        if self.max_batch_bytes == 0 || self.max_batch_bytes > MAX_WAL_PAYLOAD {
            return bad("max_batch_bytes must be between 1 byte and 64 MiB");
        }
        if self.max_batch_records == 0 {
            return bad("max_batch_records must be at least 1");
        }
        if !(1..=19).contains(&self.compression_level) {
            return bad("compression_level must be between 1 and 19");
        }
        if self.fsync == FsyncPolicy::Interval(Duration::ZERO) {
            return bad("the fsync interval must be positive");
        }
        Ok(())
    }
}

/// How to recover when opening.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalRecoveryOptions {
    /// Replay only records with a greater sequence number (the checkpoint's sequence). The log
    /// must still hold record `after_seq` (or start right after it): a log that ends before it
    /// lost its end.
    pub after_seq: u64,
    /// The segment the log continued in after the checkpoint ([`Wal::segment_for`] of
    /// `after_seq + 1`, recorded with it). A segment starting between it and `after_seq + 1`
    /// must exist. `None` when nothing was recorded.
    pub continues_in: Option<u64>,
    /// Instead of refusing damage in the middle of the log, keep the records before it, set
    /// everything from it on aside as `*.dropped` files, and continue.
    pub salvage: bool,
}

/// What [`Wal::open`] found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WalRecoveryReport {
    /// Records passed to the replay callback.
    pub replayed: u64,
    /// Sequence number of the last record in the log; the next append gets the one after.
    pub last_seq: u64,
    /// Bytes cut off a torn tail, or by salvage.
    pub truncated_bytes: u64,
    /// Files salvage set aside (copies of truncated segments and whole later segments).
    pub dropped_files: Vec<PathBuf>,
    /// What was repaired or is suspicious, one sentence each.
    pub warnings: Vec<String>,
}

/// One record read back from the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalRecord<'a> {
    /// Its sequence number.
    pub seq: u64,
    /// The type the appender gave it.
    pub record_type: u8,
    /// The payload, decompressed.
    pub payload: &'a [u8],
}

/// Point-in-time figures about a [`Wal`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalStats {
    /// Sequence number of the last record appended (acknowledged or not).
    pub last_seq: u64,
    /// Every record up to this one has been written to the OS.
    pub written_seq: u64,
    /// Every record up to this one has been fsynced.
    pub synced_seq: u64,
    /// Live segment files.
    pub segments: usize,
    /// Bytes of frames in them (segments read at open and written since; older ones count
    /// at their preallocated size).
    pub bytes: u64,
    /// First sequence number of the oldest live segment.
    pub oldest_segment_seq: u64,
    /// Batches written since open (each one `write`).
    pub batches: u64,
    /// Segment fsyncs since open.
    pub fsyncs: u64,
    /// Why the log refuses writes, if it does.
    pub poisoned: Option<String>,
}

/// What [`inspect_wal`] found in one segment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalSegmentInfo {
    /// The file.
    pub file: PathBuf,
    /// Sequence number of its first frame (from its name).
    pub first_seq: u64,
    /// Valid frames.
    pub frames: u64,
    /// Of which zstd-compressed.
    pub compressed_frames: u64,
    /// Uncompressed payload bytes of the valid frames.
    pub payload_bytes: u64,
    /// Valid frames per record type.
    pub record_types: BTreeMap<u8, u64>,
    /// File size.
    pub file_bytes: u64,
    /// Bytes up to the end of the last valid frame.
    pub valid_bytes: u64,
    /// A seal ends it: the log continues in a next segment.
    pub sealed: bool,
    /// Format version of its header (0 if the header is unreadable).
    pub version: u32,
    /// The first problem and its byte offset, if any.
    pub problem: Option<String>,
}

impl WalSegmentInfo {
    /// Validates the segment `bytes` as if read from `file` (whose name gives the expected
    /// first sequence number). Never panics, whatever the bytes.
    pub fn scan(file: &Path, bytes: &[u8]) -> Result<Self> {
        let name_seq = file
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(parse_segment_name)
            .ok_or_else(|| {
                EngineError::InvalidArgument(format!(
                    "{} is not named like a WAL segment",
                    file.display()
                ))
            })?;
        let mut record_types = BTreeMap::new();
        let scan = scan_segment(
            &file.display().to_string(),
            name_seq,
            bytes,
            &mut Decoder::default(),
            &mut |r| {
                *record_types.entry(r.record_type).or_insert(0u64) += 1;
                Ok(())
            },
        )?;
        Ok(Self {
            file: file.to_path_buf(),
            first_seq: name_seq,
            frames: scan.frames,
            compressed_frames: scan.compressed_frames,
            payload_bytes: scan.payload_bytes,
            record_types,
            file_bytes: bytes.len() as u64,
            valid_bytes: scan.valid_end,
            sealed: scan.sealed,
            version: scan.header.map_or(0, |h| h.version),
            problem: scan
                .problem
                .map(|p| format!("offset {}: {}", p.offset, p.reason)),
        })
    }
}

/// Reads every segment in `dir` without changing anything, for `quiver wal inspect`. Damage is
/// reported per segment, including sequence gaps between segments.
pub fn inspect_wal(dir: &Path) -> Result<Vec<WalSegmentInfo>> {
    let mut seqs = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        if let Some(seq) = entry.file_name().to_str().and_then(parse_segment_name) {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    let mut out: Vec<WalSegmentInfo> = Vec::with_capacity(seqs.len());
    let mut buf = Vec::new();
    for seq in seqs {
        let path = segment_path(dir, seq);
        let mut info = match read_segment(&path, &mut buf)? {
            Ok(_) => WalSegmentInfo::scan(&path, &buf)?,
            Err(reason) => WalSegmentInfo {
                file: path,
                first_seq: seq,
                frames: 0,
                compressed_frames: 0,
                payload_bytes: 0,
                record_types: BTreeMap::new(),
                file_bytes: buf.len() as u64,
                valid_bytes: 0,
                sealed: false,
                version: 0,
                problem: Some(reason),
            },
        };
        if let Some(prev) = out.last_mut() {
            let expected = prev.first_seq + prev.frames;
            if prev.problem.is_none() && info.problem.is_none() && expected != seq {
                info.problem = Some(format!(
                    "offset 0: starts at sequence {seq} but the previous segment ends at {}",
                    expected - 1
                ));
            }
            if prev.problem.is_none() && prev.version >= 2 && !prev.sealed {
                prev.problem = Some(format!(
                    "offset {}: not sealed, yet another segment follows",
                    prev.valid_bytes
                ));
            }
        }
        out.push(info);
    }
    if let Some(last) = out.last_mut() {
        if last.problem.is_none() && last.sealed {
            last.problem = Some(format!(
                "offset {}: sealed, but the segment it names ({}) is missing",
                last.valid_bytes - format::SEAL_LEN as u64,
                format::segment_name(last.first_seq + last.frames)
            ));
        }
    }
    Ok(out)
}

/// An open write-ahead log. Appends from many threads are committed in shared batches by one
/// writer thread; see the module documentation.
pub struct Wal {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.shared.dir)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Wal {
    /// Opens (or creates) the log in `dir`, calls `replay` for every record after
    /// `options.after_seq` in sequence order, repairs a torn tail, and starts the writer.
    ///
    /// If this fails, records already passed to `replay` must be discarded.
    pub fn open(
        dir: impl AsRef<Path>,
        config: WalConfig,
        options: WalRecoveryOptions,
        mut replay: impl FnMut(WalRecord<'_>) -> Result<()>,
    ) -> Result<(Self, WalRecoveryReport)> {
        config.validate()?;
        if options.after_seq >= MAX_SEQ {
            return Err(EngineError::InvalidArgument(format!(
                "wal: after_seq {} is not below {MAX_SEQ}",
                options.after_seq
            )));
        }
        let dir = dir.as_ref().to_path_buf();
        let rec = recovery::recover(&dir, config.segment_size, &options, &mut replay)?;
        let shared = Arc::new(Shared::new(dir, config, rec.next_seq, rec.segments));
        let for_writer = Arc::clone(&shared);
        let active = rec.active;
        let writer = std::thread::Builder::new()
            .name("quiver-wal".into())
            .spawn(move || for_writer.run_writer(active))
            .map_err(|e| io_err(&shared.dir, e))?;
        Ok((
            Self {
                shared,
                writer: Some(writer),
            },
            rec.report,
        ))
    }

    /// Logs one record and returns its sequence number once it is durable per the fsync
    /// policy. Concurrent appends share one write and one fsync.
    pub fn append(&self, record_type: u8, payload: &[u8]) -> Result<u64> {
        self.shared.append(record_type, payload)
    }

    /// Fsyncs every record appended so far, whatever the policy (before a checkpoint, at
    /// shutdown).
    pub fn sync(&self) -> Result<()> {
        self.shared.sync()
    }

    /// First sequence number (and file name) of the live segment that holds record `seq`, or
    /// will if it is not written yet: what a checkpoint at `seq - 1` records as the segment
    /// the log continues in, and then passes to [`Wal::truncate_before`].
    pub fn segment_for(&self, seq: u64) -> u64 {
        let segs = lock(&self.shared.segments);
        segs.iter()
            .rev()
            .find(|s| s.first_seq <= seq)
            .or(segs.first())
            .map_or(seq, |s| s.first_seq)
    }

    /// Deletes the segments all of whose records have sequence numbers below `seq` (after a
    /// checkpoint that includes them). The segment being appended to is never deleted.
    /// Returns how many segments were deleted.
    pub fn truncate_before(&self, seq: u64) -> Result<usize> {
        let doomed: Vec<u64> = {
            let mut segs = lock(&self.shared.segments);
            // Segment i holds sequence numbers below the next segment's first.
            let n = segs
                .windows(2)
                .take_while(|w| w[1].first_seq <= seq)
                .count();
            segs.drain(..n).map(|s| s.first_seq).collect()
        };
        if doomed.is_empty() {
            return Ok(0);
        }
        for &first in &doomed {
            let path = segment_path(&self.shared.dir, first);
            fs::remove_file(&path).map_err(|e| io_err(&path, e))?;
        }
        sync_dir(&self.shared.dir)?;
        Ok(doomed.len())
    }

    /// Current sequence numbers, size and health.
    pub fn stats(&self) -> WalStats {
        let (segments, bytes, oldest_segment_seq) = {
            let segs = lock(&self.shared.segments);
            (
                segs.len(),
                segs.iter().map(|s| s.len).sum(),
                segs.first().map_or(0, |s| s.first_seq),
            )
        };
        let st = lock(&self.shared.state);
        WalStats {
            last_seq: st.next_seq - 1,
            written_seq: st.written_seq,
            synced_seq: st.synced_seq,
            segments,
            bytes,
            oldest_segment_seq,
            batches: self.shared.batches.load(Ordering::Relaxed),
            fsyncs: self.shared.fsyncs.load(Ordering::Relaxed),
            poisoned: st.poisoned.clone(),
        }
    }

    /// Stops the writer after it has written and fsynced everything appended; fails if the
    /// log is poisoned (then the last records may not be durable).
    pub fn close(mut self) -> Result<()> {
        self.stop();
        match &lock(&self.shared.state).poisoned {
            Some(why) => Err(poisoned_error(why)),
            None => Ok(()),
        }
    }

    fn stop(&mut self) {
        if let Some(writer) = self.writer.take() {
            self.shared.shut_down();
            if writer.join().is_err() {
                self.shared.poison("the WAL writer thread panicked".into());
            }
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.stop();
    }
}
