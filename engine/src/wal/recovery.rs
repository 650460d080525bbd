//! Opening a log directory: replay after the checkpoint, torn-tail repair, refusal of damage
//! and of lost records (or salvage of the valid prefix), and choosing the segment to append to.

use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::format::{
    data_end, decode_segment_header, parse_segment_name, segment_name, segment_path,
    MAX_SEGMENT_FILE, SEAL_LEN, SEGMENT_HEADER_LEN,
};
use super::reader::{scan_segment, Decoder, Problem, SegmentScan};
use super::writer::{write_seal, ActiveSegment, SegmentMeta};
use super::{WalRecord, WalRecoveryOptions, WalRecoveryReport};
use crate::fs::{io_err, sync_dir, DROPPED_EXTENSION, SEGMENT_EXTENSION, TEMP_EXTENSION};
use crate::{EngineError, Result};

/// The outcome of a successful recovery: where to append next.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub(crate) active: ActiveSegment,
    pub(crate) segments: Vec<SegmentMeta>,
    pub(crate) next_seq: u64,
    pub(crate) report: WalRecoveryReport,
}

/// Segment first-sequence numbers in `dir`, sorted. Leftover temp segments (a crash while
/// rotating, before the rename) hold no records and are removed.
fn list_segments(dir: &Path, report: &mut WalRecoveryReport) -> Result<(Vec<u64>, bool)> {
    let mut seqs = Vec::new();
    let mut changed = false;
    let temp_suffix = format!(".{SEGMENT_EXTENSION}.{TEMP_EXTENSION}");
    for entry in fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(seq) = parse_segment_name(name) {
            seqs.push(seq);
        } else if let Some(stem) = name.strip_suffix(&temp_suffix) {
            if parse_segment_name(&format!("{stem}.{SEGMENT_EXTENSION}")).is_some() {
                let path = entry.path();
                fs::remove_file(&path).map_err(|e| io_err(&path, e))?;
                report
                    .warnings
                    .push(format!("removed unfinished segment {}", path.display()));
                changed = true;
            }
        }
    }
    seqs.sort_unstable();
    Ok((seqs, changed))
}

fn file_len(path: &Path) -> Result<u64> {
    fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| io_err(path, e))
}

fn broken(name_seq: u64, reason: String) -> SegmentScan {
    SegmentScan {
        problem: Some(Problem {
            offset: 0,
            reason,
            torn: false,
        }),
        ..SegmentScan::empty(name_seq)
    }
}

/// Reads a whole segment into `buf` after bounding its size; `Err(reason)` if it is too large.
pub(crate) fn read_segment(path: &Path, buf: &mut Vec<u8>) -> Result<Result<u64, String>> {
    let mut f = fs::File::open(path).map_err(|e| io_err(path, e))?;
    let len = f.metadata().map_err(|e| io_err(path, e))?.len();
    if len > MAX_SEGMENT_FILE {
        return Ok(Err(format!(
            "segment is {len} bytes, above the {MAX_SEGMENT_FILE}-byte limit"
        )));
    }
    buf.clear();
    // Bounded just above; the file may still grow or shrink under us, which the frame checks
    // catch.
    buf.reserve_exact(len as usize);
    f.read_to_end(buf).map_err(|e| io_err(path, e))?;
    Ok(Ok(len))
}

/// Cuts the segment at `path` back to `valid_end`: a growing (version-1) file is truncated
/// there, a preallocated one is zeroed from there on and keeps its size `preallocated`.
fn cut_back(path: &Path, valid_end: u64, preallocated: Option<u64>) -> Result<()> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| io_err(path, e))?;
    f.set_len(valid_end).map_err(|e| io_err(path, e))?;
    if let Some(len) = preallocated {
        f.set_len(len).map_err(|e| io_err(path, e))?;
    }
    f.sync_all().map_err(|e| io_err(path, e))
}

/// Opens the segment at `path` for writing with its cursor at `at`.
fn open_at(path: &Path, at: u64) -> Result<fs::File> {
    let mut f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| io_err(path, e))?;
    f.seek(SeekFrom::Start(at)).map_err(|e| io_err(path, e))?;
    Ok(f)
}

fn dropped_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{DROPPED_EXTENSION}"));
    PathBuf::from(name)
}

/// Records known to be missing: refused, or with salvage a warning and recovery goes on.
fn lost(
    options: &WalRecoveryOptions,
    report: &mut WalRecoveryReport,
    file: &Path,
    offset: u64,
    reason: String,
) -> Result<()> {
    if !options.salvage {
        return Err(EngineError::Corrupt {
            file: file.display().to_string(),
            offset,
            reason: format!(
                "{reason}; refusing to open the write-ahead log (salvage would continue \
                 without them)"
            ),
        });
    }
    report.warnings.push(format!(
        "salvage: {} at offset {offset}: {reason}; continuing without them",
        file.display()
    ));
    Ok(())
}

/// Whether `path` is a preallocated segment holding no frame: what a rotation that was cut
/// short leaves behind, before the previous segment's seal was durable.
fn is_empty_segment(path: &Path, buf: &mut Vec<u8>) -> Result<bool> {
    if read_segment(path, buf)?.is_err() {
        return Ok(false);
    }
    Ok(match decode_segment_header(buf) {
        Ok(h) => h.file_len == Some(buf.len() as u64) && data_end(buf) <= h.len(),
        Err(_) => false,
    })
}

/// The last segment read, as recovery left it.
#[derive(Debug, Clone, Copy)]
struct Tail {
    first_seq: u64,
    /// End of its valid frames.
    len: u64,
    /// Its preallocated size (version 2), or `None` for a growing version-1 file.
    capacity: Option<u64>,
    sealed: bool,
    /// The sequence number that follows it.
    next_seq: u64,
}

/// Opens the log in `dir` (creating it if needed), replaying every record after
/// `options.after_seq` through `replay`. New segments are preallocated to `segment_size`.
pub(crate) fn recover(
    dir: &Path,
    segment_size: u64,
    options: &WalRecoveryOptions,
    replay: &mut dyn FnMut(WalRecord<'_>) -> Result<()>,
) -> Result<Recovered> {
    fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    let mut report = WalRecoveryReport::default();
    let (names, mut dir_changed) = list_segments(dir, &mut report)?;
    let after = options.after_seq;
    let floor = after.saturating_add(1);

    // Losses that no segment left can reveal: the segment the log continued in after the
    // checkpoint (or every segment) is gone.
    match options.continues_in {
        Some(first) if !names.iter().any(|&n| (first..=floor).contains(&n)) => lost(
            options,
            &mut report,
            &segment_path(dir, first),
            0,
            format!(
                "segment missing: the log continued in it after the checkpoint at {after}, so \
                 every record from {floor} on is lost"
            ),
        )?,
        None if names.is_empty() && after > 0 => lost(
            options,
            &mut report,
            dir,
            0,
            format!(
                "no segments, but the checkpoint at {after} was taken from a log that had \
                 them: every record from {floor} on is lost"
            ),
        )?,
        _ => {}
    }

    // Segments followed by one starting at or below `floor` hold only records the checkpoint
    // already has: they are not read at all.
    let start = (0..names.len())
        .find(|&i| i + 1 == names.len() || names[i + 1] > floor)
        .unwrap_or(0);
    let mut live = Vec::with_capacity(names.len() + 1);
    for &seq in &names[..start] {
        live.push(SegmentMeta {
            first_seq: seq,
            len: file_len(&segment_path(dir, seq))?,
        });
    }
    let mut buf = Vec::new();
    // A crash between creating a segment and sealing its predecessor: the predecessor is the
    // tail of the log (it may be torn and is sealed now), the empty segment continues it.
    let rotating = names.len() >= start + 2
        && is_empty_segment(&segment_path(dir, names[names.len() - 1]), &mut buf)?;
    let mut unsealed_before_tail: Option<Tail> = None;

    // The sequence number after the replayed prefix, and the last segment read.
    let mut expected: Option<u64> = None;
    let mut tail: Option<Tail> = None;
    let mut decoder = Decoder::default();
    for (i, &name_seq) in names.iter().enumerate().skip(start) {
        let path = segment_path(dir, name_seq);
        let is_last = i + 1 == names.len();
        let is_tail = is_last || (rotating && i + 2 == names.len());
        let gap = match expected {
            Some(e) if name_seq != e => Some(format!(
                "segment starts at sequence {name_seq} but the previous one ends at {}: \
                 records {e}..={} are missing",
                e - 1,
                name_seq.saturating_sub(1)
            )),
            None if name_seq > floor => Some(format!(
                "log starts at sequence {name_seq} but the checkpoint is at {after}: records \
                 {floor}..{} are missing",
                name_seq - 1
            )),
            _ => None,
        };
        let (mut scan, written_end) = match gap {
            Some(reason) => (broken(name_seq, reason), 0),
            None => match read_segment(&path, &mut buf)? {
                Err(reason) => (broken(name_seq, reason), 0),
                Ok(len) => {
                    let file = path.display().to_string();
                    let scan = scan_segment(&file, name_seq, &buf, &mut decoder, &mut |r| {
                        if r.seq > after {
                            report.replayed += 1;
                            replay(r)
                        } else {
                            Ok(())
                        }
                    })?;
                    let preallocated = scan.header.is_some_and(|h| h.file_len.is_some());
                    let written_end = if preallocated {
                        data_end(&buf) as u64
                    } else {
                        len
                    };
                    (scan, written_end)
                }
            },
        };
        let capacity = scan.header.and_then(|h| h.file_len);
        let here = Tail {
            first_seq: name_seq,
            len: scan.valid_end,
            capacity,
            sealed: scan.sealed,
            next_seq: scan.next_seq,
        };
        if scan.problem.is_none() && scan.sealed && is_last {
            // Only ever written once its successor existed durably.
            lost(
                options,
                &mut report,
                &path,
                scan.valid_end - SEAL_LEN as u64,
                format!(
                    "sealed: the log continues in {}, which is missing, so every record from \
                     {} on is lost",
                    segment_name(scan.next_seq),
                    scan.next_seq
                ),
            )?;
        }
        if scan.problem.is_none() && !scan.sealed && !is_tail && capacity.is_some() {
            scan.problem = Some(Problem {
                offset: scan.valid_end,
                reason: format!(
                    "segment is not sealed but {} follows it: its end, from sequence {} on, \
                     is missing",
                    segment_name(names[i + 1]),
                    scan.next_seq
                ),
                torn: false,
            });
        }
        let Some(problem) = scan.problem else {
            live.push(SegmentMeta {
                first_seq: name_seq,
                len: here.len,
            });
            expected = Some(scan.next_seq);
            tail = Some(here);
            if !is_last && is_tail && !scan.sealed {
                unsealed_before_tail = Some(here);
            }
            continue;
        };
        if is_tail && problem.torn {
            cut_back(&path, scan.valid_end, capacity)?;
            let cut = written_end.saturating_sub(scan.valid_end);
            report.truncated_bytes += cut;
            report.warnings.push(format!(
                "torn tail in {} at offset {}: {}; cleared {cut} bytes",
                path.display(),
                problem.offset,
                problem.reason
            ));
            live.push(SegmentMeta {
                first_seq: name_seq,
                len: scan.valid_end,
            });
            expected = Some(scan.next_seq);
            tail = Some(here);
            if !is_last {
                unsealed_before_tail = Some(here);
            }
            continue;
        }
        if !options.salvage {
            return Err(EngineError::Corrupt {
                file: path.display().to_string(),
                offset: problem.offset,
                reason: format!(
                    "{}; refusing to open the write-ahead log (salvage would keep the records \
                     before this point and set the rest aside)",
                    problem.reason
                ),
            });
        }
        report.warnings.push(format!(
            "salvage: {} at offset {}: {}; replay stopped before sequence {}",
            path.display(),
            problem.offset,
            problem.reason,
            scan.next_seq
        ));
        let aside = dropped_path(&path);
        if scan.header.is_some() {
            fs::copy(&path, &aside).map_err(|e| io_err(&aside, e))?;
            cut_back(&path, scan.valid_end, capacity)?;
            report.truncated_bytes += written_end.saturating_sub(scan.valid_end);
            live.push(SegmentMeta {
                first_seq: name_seq,
                len: scan.valid_end,
            });
            expected = Some(scan.next_seq);
            tail = Some(here);
        } else {
            fs::rename(&path, &aside).map_err(|e| io_err(&aside, e))?;
        }
        report.dropped_files.push(aside);
        for &later in &names[i + 1..] {
            let from = segment_path(dir, later);
            let to = dropped_path(&from);
            fs::rename(&from, &to).map_err(|e| io_err(&to, e))?;
            report.dropped_files.push(to);
        }
        dir_changed = true;
        break;
    }

    let known_next = expected.unwrap_or(floor);
    if known_next < floor {
        let (file, offset) = match tail {
            Some(t) => (segment_path(dir, t.first_seq), t.len),
            None => (dir.to_path_buf(), 0),
        };
        lost(
            options,
            &mut report,
            &file,
            offset,
            format!(
                "the log ends at sequence {}, before the checkpoint at {after}: it lost its \
                 end, so records {known_next}..={after} (which the snapshots hold) and every \
                 record after the checkpoint that it held are missing",
                known_next - 1
            ),
        )?;
    }
    let next_seq = known_next.max(floor);
    let last_live = live.last().map(|s| s.first_seq);
    if let Some(prev) = unsealed_before_tail.filter(|p| last_live == Some(p.next_seq)) {
        let path = segment_path(dir, prev.first_seq);
        let mut f = open_at(&path, prev.len)?;
        write_seal(&mut f, prev.next_seq).map_err(|e| io_err(&path, e))?;
        report.warnings.push(format!(
            "completed an interrupted rotation: sealed {}",
            path.display()
        ));
    }
    // The tail is the last live segment, if it was read.
    let tail = tail.filter(|t| last_live == Some(t.first_seq));
    let active = match tail {
        Some(t) if t.capacity.is_some() && !t.sealed && t.next_seq == next_seq => {
            let path = segment_path(dir, t.first_seq);
            let file = open_at(&path, t.len)?;
            // What was just replayed may only be in the page cache of a process that died;
            // make it durable before anything is built on it.
            file.sync_all().map_err(|e| io_err(&path, e))?;
            ActiveSegment {
                file,
                path,
                first_seq: t.first_seq,
                len: t.len,
                capacity: t.capacity.unwrap_or(segment_size),
            }
        }
        _ => {
            if let Some(prev) = last_live {
                // It stops being the last segment, where a torn tail is tolerated.
                let path = segment_path(dir, prev);
                fs::File::open(&path)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| io_err(&path, e))?;
            }
            // Appends never go to a version-1 segment: the log continues in a new,
            // preallocated one, and the old one is sealed to name it. An empty tail holds
            // nothing and is simply replaced.
            let seal = tail.filter(|t| !t.sealed && t.next_seq == next_seq);
            if seal.is_some_and(|t| t.first_seq == next_seq) {
                live.pop();
            }
            let active = ActiveSegment::create(dir, next_seq, segment_size)?;
            if let Some(t) = seal.filter(|t| t.first_seq != next_seq) {
                let path = segment_path(dir, t.first_seq);
                let mut f = open_at(&path, t.len)?;
                write_seal(&mut f, next_seq).map_err(|e| io_err(&path, e))?;
            }
            dir_changed = false;
            live.push(SegmentMeta {
                first_seq: next_seq,
                len: SEGMENT_HEADER_LEN as u64,
            });
            active
        }
    };
    if dir_changed {
        sync_dir(dir)?;
    }
    report.last_seq = next_seq - 1;
    Ok(Recovered {
        active,
        segments: live,
        next_seq,
        report,
    })
}
