//! Group commit: appenders encode their frame into a shared pending buffer and wait; one writer
//! thread takes the whole buffer, writes it with one `write` and, per policy, one fsync, then
//! wakes everyone it covered.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use super::format::{
    encode_segment_header, put_frame, segment_name, segment_path, FrameHeader, FLAG_SEAL,
    FLAG_ZSTD, FRAME_HEADER_LEN, MAX_SEQ, MAX_WAL_PAYLOAD, SEAL_LEN, SEGMENT_HEADER_LEN,
    TEAR_ALIGN,
};
use super::{FsyncPolicy, WalConfig};
use crate::fs::{io_err, publish, TEMP_EXTENSION};
use crate::sync::{self, lock, wait};
use crate::{EngineError, Result};

/// Makes the WAL's next write or fsync fail, to test poisoning. Shared through
/// [`WalConfig::faults`]; each armed fault fires once.
#[derive(Debug, Default)]
pub struct WalFaults {
    write: AtomicBool,
    sync: AtomicBool,
}

impl WalFaults {
    /// The next batch write stops halfway and fails, as a full disk would.
    pub fn fail_next_write(&self) {
        self.write.store(true, Ordering::SeqCst);
    }

    /// The next fsync of a segment fails.
    pub fn fail_next_sync(&self) {
        self.sync.store(true, Ordering::SeqCst);
    }
}

fn fires(flag: Option<&AtomicBool>) -> bool {
    flag.is_some_and(|f| f.swap(false, Ordering::SeqCst))
}

/// One live segment file: its first sequence number and current length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentMeta {
    pub(crate) first_seq: u64,
    pub(crate) len: u64,
}

/// The segment being appended to, owned by the writer thread. The file's cursor is at `len`.
#[derive(Debug)]
pub(crate) struct ActiveSegment {
    pub(crate) file: File,
    pub(crate) path: PathBuf,
    pub(crate) first_seq: u64,
    /// End of the frames written so far.
    pub(crate) len: u64,
    /// The size the file was preallocated to; frames and the final seal stay within it.
    pub(crate) capacity: u64,
}

impl ActiveSegment {
    /// Creates the (version-2, preallocated) segment starting at `first_seq`; see
    /// [`create_segment`].
    pub(crate) fn create(dir: &Path, first_seq: u64, capacity: u64) -> Result<Self> {
        Ok(Self {
            file: create_segment(dir, first_seq, capacity)?,
            path: segment_path(dir, first_seq),
            first_seq,
            len: SEGMENT_HEADER_LEN as u64,
            capacity,
        })
    }

    /// Whether no frame has been written to it.
    fn is_empty(&self) -> bool {
        self.len == SEGMENT_HEADER_LEN as u64
    }
}

/// Appends a seal naming `next_seq` at the cursor of `file` and fsyncs it. Written only once
/// the next segment exists durably, so a sealed segment always had a successor.
pub(crate) fn write_seal(file: &mut File, next_seq: u64) -> std::io::Result<()> {
    let mut seal = Vec::with_capacity(SEAL_LEN);
    let header = FrameHeader {
        body_len: 0,
        seq: next_seq,
        record_type: 0,
        flags: FLAG_SEAL,
        raw_len: 0,
    };
    put_frame(&mut seal, header, &crc32fast::Hasher::new(), &[]);
    file.write_all(&seal)?;
    file.sync_data()
}

/// Everything appenders and the writer share under one lock.
#[derive(Debug)]
pub(crate) struct State {
    /// Encoded frames not yet handed to the writer, in sequence order.
    pending: Vec<u8>,
    pending_count: usize,
    pending_first_seq: u64,
    /// Sequence number of the next append.
    pub(crate) next_seq: u64,
    /// Highest sequence number written to the OS.
    pub(crate) written_seq: u64,
    /// Highest sequence number fsynced.
    pub(crate) synced_seq: u64,
    /// Highest sequence number a `sync` call waits to see fsynced.
    sync_requested: u64,
    /// Why the log stopped accepting writes.
    pub(crate) poisoned: Option<String>,
    shutdown: bool,
}

/// State shared by the [`super::Wal`] handle, its appenders and its writer thread.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) dir: PathBuf,
    pub(crate) config: WalConfig,
    pub(crate) state: Mutex<State>,
    /// Wakes the writer: work is pending, a sync was requested, or shutdown.
    work: Condvar,
    /// Wakes appenders and syncers: the written or synced sequence advanced, or poisoning.
    done: Condvar,
    /// Wakes appenders waiting for room in a full pending batch.
    space: Condvar,
    /// Live segments, oldest first; the last one is being appended to.
    pub(crate) segments: Mutex<Vec<SegmentMeta>>,
    /// Batches written, for stats.
    pub(crate) batches: AtomicU64,
    /// Segment fsyncs, for stats.
    pub(crate) fsyncs: AtomicU64,
}

pub(crate) fn poisoned_error(why: &str) -> EngineError {
    EngineError::WalPoisoned(format!(
        "{why}; the write-ahead log accepts no writes until it is reopened"
    ))
}

impl Shared {
    /// `next_seq` is the sequence number of the first append; everything before it is on
    /// disk and fsynced.
    pub(crate) fn new(
        dir: PathBuf,
        config: WalConfig,
        next_seq: u64,
        segments: Vec<SegmentMeta>,
    ) -> Self {
        let last = next_seq - 1;
        Self {
            dir,
            config,
            state: Mutex::new(State {
                pending: Vec::new(),
                pending_count: 0,
                pending_first_seq: next_seq,
                next_seq,
                written_seq: last,
                synced_seq: last,
                sync_requested: last,
                poisoned: None,
                shutdown: false,
            }),
            work: Condvar::new(),
            done: Condvar::new(),
            space: Condvar::new(),
            segments: Mutex::new(segments),
            batches: AtomicU64::new(0),
            fsyncs: AtomicU64::new(0),
        }
    }

    /// Logs one record and waits until it is durable per the fsync policy.
    pub(crate) fn append(&self, record_type: u8, payload: &[u8]) -> Result<u64> {
        if payload.len() > MAX_WAL_PAYLOAD {
            return Err(EngineError::InvalidArgument(format!(
                "WAL record of {} bytes exceeds the {MAX_WAL_PAYLOAD}-byte limit",
                payload.len()
            )));
        }
        if payload.len() < self.config.compress_threshold {
            return self.enqueue(record_type, 0, payload, payload.len());
        }
        COMPRESSOR.with(|c| {
            let mut c = c.borrow_mut();
            match compress(&mut c, self.config.compression_level, payload) {
                Some(body) => self.enqueue(record_type, FLAG_ZSTD, body, payload.len()),
                None => self.enqueue(record_type, 0, payload, payload.len()),
            }
        })
    }

    fn enqueue(&self, record_type: u8, flags: u8, body: &[u8], raw_len: usize) -> Result<u64> {
        // Checksum the body before taking the lock; only the header is hashed under it.
        let mut crc = crc32fast::Hasher::new();
        crc.update(body);
        let frame_len = FRAME_HEADER_LEN + body.len();
        let mut st = lock(&self.state);
        loop {
            if let Some(why) = &st.poisoned {
                return Err(poisoned_error(why));
            }
            let full = st.pending_count >= self.config.max_batch_records
                || (st.pending_count > 0
                    && st.pending.len() + frame_len > self.config.max_batch_bytes);
            if !full {
                break;
            }
            st = wait(&self.space, st);
        }
        let seq = st.next_seq;
        if seq >= MAX_SEQ {
            return Err(EngineError::CapacityExceeded(
                "WAL sequence numbers are exhausted".into(),
            ));
        }
        st.next_seq += 1;
        if st.pending_count == 0 {
            st.pending_first_seq = seq;
            self.work.notify_one();
        }
        st.pending_count += 1;
        // Both lengths are at most MAX_WAL_PAYLOAD, checked by the caller.
        let header = FrameHeader {
            body_len: body.len() as u32,
            seq,
            record_type,
            flags,
            raw_len: raw_len as u32,
        };
        put_frame(&mut st.pending, header, &crc, body);
        let fsynced = self.config.fsync == FsyncPolicy::Always;
        self.wait_for(st, seq, fsynced).map(|()| seq)
    }

    /// Waits until `seq` is written (or fsynced, if `fsynced`), or the log is poisoned.
    fn wait_for(&self, mut st: MutexGuard<'_, State>, seq: u64, fsynced: bool) -> Result<()> {
        loop {
            let reached = if fsynced {
                st.synced_seq >= seq
            } else {
                st.written_seq >= seq
            };
            if reached {
                return Ok(());
            }
            if let Some(why) = &st.poisoned {
                return Err(poisoned_error(why));
            }
            st = wait(&self.done, st);
        }
    }

    /// Fsyncs every record appended so far, whatever the policy.
    pub(crate) fn sync(&self) -> Result<()> {
        let mut st = lock(&self.state);
        if let Some(why) = &st.poisoned {
            return Err(poisoned_error(why));
        }
        let target = st.next_seq - 1;
        if st.synced_seq >= target {
            return Ok(());
        }
        st.sync_requested = st.sync_requested.max(target);
        self.work.notify_one();
        self.wait_for(st, target, true)
    }

    /// Asks the writer to drain, fsync and exit.
    pub(crate) fn shut_down(&self) {
        lock(&self.state).shutdown = true;
        self.work.notify_one();
    }

    /// Stops all further writes, failing everyone waiting.
    pub(crate) fn poison(&self, why: String) {
        let mut st = lock(&self.state);
        st.poisoned = Some(why);
        st.pending.clear();
        st.pending_count = 0;
        drop(st);
        self.done.notify_all();
        self.space.notify_all();
    }

    /// The writer thread's body.
    pub(crate) fn run_writer(&self, mut seg: ActiveSegment) {
        let policy = self.config.fsync;
        let faults = self.config.faults.as_deref();
        let mut buf: Vec<u8> = Vec::new();
        let (mut written, mut synced) = {
            let st = lock(&self.state);
            (st.written_seq, st.synced_seq)
        };
        let mut last_sync = Instant::now();
        loop {
            let mut st = lock(&self.state);
            loop {
                if st.poisoned.is_some() {
                    return;
                }
                if !st.pending.is_empty() || st.sync_requested > synced || st.shutdown {
                    break;
                }
                match policy {
                    FsyncPolicy::Interval(every) if written > synced => {
                        let since = last_sync.elapsed();
                        if since >= every {
                            break;
                        }
                        st = sync::wait_timeout(&self.work, st, every - since).0;
                    }
                    _ => st = wait(&self.work, st),
                }
            }
            std::mem::swap(&mut st.pending, &mut buf);
            let batch_first = st.pending_first_seq;
            let batch_last = st.next_seq - 1;
            st.pending_count = 0;
            let sync_requested = st.sync_requested;
            let shutdown = st.shutdown;
            drop(st);
            if !buf.is_empty() {
                self.space.notify_all();
                if let Err(why) =
                    self.write_batch(&mut seg, &buf, batch_first, written, &mut synced, faults)
                {
                    self.poison(why);
                    return;
                }
                written = batch_last;
                buf.clear();
                // One huge record must not pin a huge buffer for the life of the log.
                if buf.capacity() > self.config.max_batch_bytes.saturating_mul(2) {
                    buf.shrink_to(self.config.max_batch_bytes);
                }
                if policy != FsyncPolicy::Always {
                    lock(&self.state).written_seq = written;
                    self.done.notify_all();
                }
            }
            let interval_due =
                matches!(policy, FsyncPolicy::Interval(every) if last_sync.elapsed() >= every);
            let want_sync = written > synced
                && (policy == FsyncPolicy::Always
                    || sync_requested > synced
                    || shutdown
                    || interval_due);
            if want_sync {
                if let Err(why) = self.sync_segment(&seg, faults) {
                    self.poison(why);
                    return;
                }
                synced = written;
                last_sync = Instant::now();
            }
            let mut st = lock(&self.state);
            st.written_seq = written;
            st.synced_seq = synced;
            let exit = st.shutdown && st.pending.is_empty();
            drop(st);
            self.done.notify_all();
            if exit {
                return;
            }
        }
    }

    /// Writes one batch, first rotating to a new segment if it does not fit in the current one
    /// with room left for the seal.
    fn write_batch(
        &self,
        seg: &mut ActiveSegment,
        buf: &[u8],
        first_seq: u64,
        written: u64,
        synced: &mut u64,
        faults: Option<&WalFaults>,
    ) -> Result<(), String> {
        if seg.len + (buf.len() + SEAL_LEN) as u64 > seg.capacity {
            // A batch larger than the configured size gets a segment of its own size.
            let capacity = self
                .config
                .segment_size
                .max((SEGMENT_HEADER_LEN + buf.len() + SEAL_LEN) as u64);
            if seg.is_empty() {
                // Nothing to seal: replace the empty segment by a larger one of the same name.
                *seg = ActiveSegment::create(&self.dir, seg.first_seq, capacity)
                    .map_err(|e| e.to_string())?;
            } else {
                // Successor first, durably; then the seal, fsynced with every frame before it.
                // A crash in between leaves an unsealed segment followed by an empty one,
                // which recovery completes; a sealed segment without a successor is damage.
                let next = ActiveSegment::create(&self.dir, first_seq, capacity)
                    .map_err(|e| e.to_string())?;
                let result = if fires(faults.map(|f| &f.sync)) {
                    Err(std::io::Error::other("injected fsync failure"))
                } else {
                    write_seal(&mut seg.file, first_seq)
                };
                result.map_err(|e| format!("sealing {} failed: {e}", seg.path.display()))?;
                self.fsyncs.fetch_add(1, Ordering::Relaxed);
                *synced = written;
                *seg = next;
                lock(&self.segments).push(SegmentMeta {
                    first_seq,
                    len: seg.len,
                });
            }
        }
        let result = if fires(faults.map(|f| &f.write)) {
            // A real short write stops between pages, so the injected one stops at a sector
            // boundary about half-way.
            let align = TEAR_ALIGN as u64;
            let stop = (seg.len + buf.len() as u64 / 2) / align * align;
            let cut = stop.saturating_sub(seg.len).min(buf.len() as u64) as usize;
            seg.file
                .write_all(&buf[..cut])
                .and_then(|()| Err(std::io::Error::other("injected write failure")))
        } else {
            seg.file.write_all(buf)
        };
        result.map_err(|e| format!("write to {} failed: {e}", seg.path.display()))?;
        seg.len += buf.len() as u64;
        self.batches.fetch_add(1, Ordering::Relaxed);
        if let Some(last) = lock(&self.segments).last_mut() {
            last.len = seg.len;
        }
        Ok(())
    }

    fn sync_segment(&self, seg: &ActiveSegment, faults: Option<&WalFaults>) -> Result<(), String> {
        let result = if fires(faults.map(|f| &f.sync)) {
            Err(std::io::Error::other("injected fsync failure"))
        } else {
            seg.file.sync_data()
        };
        result.map_err(|e| format!("fsync of {} failed: {e}", seg.path.display()))?;
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Creates the segment starting at `first_seq`, preallocated to `capacity` bytes, so that it
/// appears under its final name only with a complete, durable header and its full size: temp
/// file, header, set_len, fsync, rename, directory fsync. Replaces an existing empty segment
/// of that name.
pub(crate) fn create_segment(dir: &Path, first_seq: u64, capacity: u64) -> Result<File> {
    let path = segment_path(dir, first_seq);
    let tmp = dir.join(format!("{}.{TEMP_EXTENSION}", segment_name(first_seq)));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| io_err(&tmp, e))?;
    file.write_all(&encode_segment_header(first_seq, capacity))
        .map_err(|e| io_err(&tmp, e))?;
    // A sparse extension on most file systems: no zeros are written, and since the size never
    // changes again, a file found shorter than this was cut, not torn.
    file.set_len(capacity).map_err(|e| io_err(&tmp, e))?;
    publish(&file, &tmp, &path)?;
    Ok(file)
}

/// Per-thread zstd context and output buffer, so appenders compress in parallel without
/// allocating per record.
struct Compressor {
    level: i32,
    cctx: zstd::bulk::Compressor<'static>,
    out: Vec<u8>,
}

thread_local! {
    static COMPRESSOR: RefCell<Option<Compressor>> = const { RefCell::new(None) };
}

/// Compresses `payload`, or `None` if compression is unavailable or saves less than an eighth
/// (not worth the decode time at replay).
fn compress<'a>(slot: &'a mut Option<Compressor>, level: i32, payload: &[u8]) -> Option<&'a [u8]> {
    let stale = match slot {
        Some(c) => c.level != level,
        None => true,
    };
    if stale {
        *slot = Some(Compressor {
            level,
            cctx: zstd::bulk::Compressor::new(level).ok()?,
            out: Vec::new(),
        });
    }
    let c = slot.as_mut()?;
    let limit = payload.len() - payload.len() / 8;
    c.out.clear();
    c.out.reserve_exact(limit);
    // zstd fails when the output does not fit in the buffer's capacity: that is the
    // "not worth it" case, not an error.
    let n = c.cctx.compress_to_buffer(payload, &mut c.out).ok()?;
    (n <= limit).then_some(&c.out[..n])
}
