//! Opening a log directory: replay after the checkpoint, torn-tail truncation, refusal of
//! damage in the middle (or salvage of the valid prefix), and choosing the segment to append to.

use std::fs::{self, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};

use super::format::{
    parse_segment_name, segment_name, segment_path, DROPPED_EXT, MAX_SEGMENT_FILE, SEGMENT_EXT,
    SEGMENT_HEADER_LEN, TEMP_EXT,
};
use super::reader::{scan_segment, Decoder, Problem, SegmentScan};
use super::writer::{create_segment, io_err, sync_dir, ActiveSegment, SegmentMeta};
use super::{WalRecord, WalRecoveryOptions, WalRecoveryReport};
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
    let temp_suffix = format!(".{SEGMENT_EXT}.{TEMP_EXT}");
    for entry in fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(seq) = parse_segment_name(name) {
            seqs.push(seq);
        } else if let Some(stem) = name.strip_suffix(&temp_suffix) {
            if parse_segment_name(&format!("{stem}.{SEGMENT_EXT}")).is_some() {
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
        next_seq: name_seq,
        valid_end: 0,
        frames: 0,
        compressed_frames: 0,
        payload_bytes: 0,
        problem: Some(Problem {
            offset: 0,
            reason,
            torn: false,
        }),
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

fn truncate(path: &Path, len: u64) -> Result<()> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| io_err(path, e))?;
    f.set_len(len).map_err(|e| io_err(path, e))?;
    f.sync_all().map_err(|e| io_err(path, e))
}

fn dropped_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{DROPPED_EXT}"));
    PathBuf::from(name)
}

/// Opens the log in `dir` (creating it if needed), replaying every record after
/// `options.after_seq` through `replay`.
pub(crate) fn recover(
    dir: &Path,
    options: &WalRecoveryOptions,
    replay: &mut dyn FnMut(WalRecord<'_>) -> Result<()>,
) -> Result<Recovered> {
    fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    let mut report = WalRecoveryReport::default();
    let (names, mut dir_changed) = list_segments(dir, &mut report)?;
    let after = options.after_seq;
    let floor = after.saturating_add(1);
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

    // The sequence number after the replayed prefix, and whether the last live segment was
    // scanned and ends exactly there (so appends can continue in it).
    let mut expected: Option<u64> = None;
    let mut tail_next: Option<u64> = None;
    let mut decoder = Decoder::default();
    let mut buf = Vec::new();
    for (i, &name_seq) in names.iter().enumerate().skip(start) {
        let path = segment_path(dir, name_seq);
        let is_last = i + 1 == names.len();
        let gap = match expected {
            Some(e) if name_seq != e => Some(format!(
                "segment starts at sequence {name_seq} but the previous one ends at {}",
                e - 1
            )),
            None if name_seq > floor => Some(format!(
                "log starts at sequence {name_seq} but the checkpoint is at {after}: records \
                 {floor}..{} are missing",
                name_seq - 1
            )),
            _ => None,
        };
        let (scan, len) = match gap {
            Some(reason) => (broken(name_seq, reason), file_len(&path)?),
            None => match read_segment(&path, &mut buf)? {
                Err(reason) => (broken(name_seq, reason), file_len(&path)?),
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
                    (scan, len)
                }
            },
        };
        let Some(problem) = scan.problem else {
            live.push(SegmentMeta {
                first_seq: name_seq,
                len,
            });
            expected = Some(scan.next_seq);
            tail_next = Some(scan.next_seq);
            continue;
        };
        if is_last && problem.torn {
            truncate(&path, scan.valid_end)?;
            let cut = len - scan.valid_end;
            report.truncated_bytes += cut;
            report.warnings.push(format!(
                "torn tail in {} at offset {}: {}; truncated {cut} bytes",
                path.display(),
                problem.offset,
                problem.reason
            ));
            live.push(SegmentMeta {
                first_seq: name_seq,
                len: scan.valid_end,
            });
            expected = Some(scan.next_seq);
            tail_next = Some(scan.next_seq);
            break;
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
        if scan.valid_end >= SEGMENT_HEADER_LEN as u64 {
            fs::copy(&path, &aside).map_err(|e| io_err(&aside, e))?;
            truncate(&path, scan.valid_end)?;
            report.truncated_bytes += len - scan.valid_end;
            live.push(SegmentMeta {
                first_seq: name_seq,
                len: scan.valid_end,
            });
            expected = Some(scan.next_seq);
            tail_next = Some(scan.next_seq);
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
    let next_seq = known_next.max(floor);
    if known_next < floor {
        report.warnings.push(format!(
            "the log ends at sequence {}, before the checkpoint at {after}; continuing at {floor}",
            known_next - 1
        ));
    }
    let active = match (live.last(), tail_next) {
        (Some(last), Some(t)) if t == next_seq => {
            let path = segment_path(dir, last.first_seq);
            let file = OpenOptions::new()
                .append(true)
                .open(&path)
                .map_err(|e| io_err(&path, e))?;
            // What was just replayed may only be in the page cache of a process that died;
            // make it durable before anything is built on it.
            file.sync_all().map_err(|e| io_err(&path, e))?;
            ActiveSegment {
                file,
                path,
                len: last.len,
            }
        }
        _ => {
            if let Some(prev) = live.last() {
                // It stops being the last segment, where a torn tail is tolerated.
                let path = segment_path(dir, prev.first_seq);
                fs::File::open(&path)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| io_err(&path, e))?;
            }
            let file = create_segment(dir, next_seq)?;
            dir_changed = false;
            live.push(SegmentMeta {
                first_seq: next_seq,
                len: SEGMENT_HEADER_LEN as u64,
            });
            ActiveSegment {
                file,
                path: dir.join(segment_name(next_seq)),
                len: SEGMENT_HEADER_LEN as u64,
            }
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
