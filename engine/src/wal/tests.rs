use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::format::{
    encode_segment_header, encode_segment_header_v1, put_frame, segment_name, FrameHeader,
    FLAG_ZSTD, FRAME_HEADER_LEN, SEAL_LEN, SEGMENT_HEADER_LEN, TEAR_ALIGN,
};
use super::*;
use crate::testing::TempDir;

type Owned = (u64, u8, Vec<u8>);

/// Segments of the tests' logs are preallocated to this size.
const SEGMENT: u64 = 1 << 20;

fn config(fsync: FsyncPolicy) -> WalConfig {
    WalConfig {
        fsync,
        segment_size: SEGMENT,
        ..WalConfig::default()
    }
}

fn open_with(
    dir: &Path,
    cfg: WalConfig,
    options: WalRecoveryOptions,
) -> Result<(Wal, Vec<Owned>, WalRecoveryReport)> {
    let mut got = Vec::new();
    let (wal, report) = Wal::open(dir, cfg, options, |r| {
        got.push((r.seq, r.record_type, r.payload.to_vec()));
        Ok(())
    })?;
    Ok((wal, got, report))
}

fn open(dir: &Path, cfg: WalConfig, after_seq: u64) -> (Wal, Vec<Owned>, WalRecoveryReport) {
    open_with(
        dir,
        cfg,
        WalRecoveryOptions {
            after_seq,
            ..WalRecoveryOptions::default()
        },
    )
    .unwrap()
}

fn salvage(dir: &Path) -> (Wal, Vec<Owned>, WalRecoveryReport) {
    open_with(
        dir,
        config(FsyncPolicy::Always),
        WalRecoveryOptions {
            salvage: true,
            ..WalRecoveryOptions::default()
        },
    )
    .unwrap()
}

fn payload(i: u64) -> Vec<u8> {
    format!("record {i} ").repeat((i % 7) as usize).into_bytes()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

/// Writes records 1..=n (payload(i), type i % 4) and closes; returns each frame's start offset
/// in the single segment.
fn write_one_segment(dir: &Path, n: u64) -> Vec<u64> {
    let (wal, got, _) = open(dir, config(FsyncPolicy::Never), 0);
    assert!(got.is_empty());
    let mut starts = Vec::new();
    let mut off = SEGMENT_HEADER_LEN as u64;
    for i in 1..=n {
        starts.push(off);
        let p = payload(i);
        assert_eq!(wal.append((i % 4) as u8, &p).unwrap(), i);
        off += (FRAME_HEADER_LEN + p.len()) as u64;
    }
    wal.close().unwrap();
    assert_eq!(segments(dir).len(), 1);
    // Preallocated: the size never tells where the frames end.
    assert_eq!(fs::metadata(&segments(dir)[0]).unwrap().len(), SEGMENT);
    starts
}

fn expect_prefix(got: &[Owned], n: u64) {
    assert_eq!(got.len() as u64, n);
    for (k, (seq, ty, p)) in got.iter().enumerate() {
        let i = k as u64 + 1;
        assert_eq!(
            (*seq, *ty, p.as_slice()),
            (i, (i % 4) as u8, payload(i).as_slice())
        );
    }
}

fn frame_bytes(seq: u64, record_type: u8, flags: u8, raw_len: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut crc = crc32fast::Hasher::new();
    crc.update(body);
    let header = FrameHeader {
        body_len: body.len() as u32,
        seq,
        record_type,
        flags,
        raw_len,
    };
    put_frame(&mut out, header, &crc, body);
    out
}

fn flip(path: &Path, offset: u64) {
    let mut b = fs::read(path).unwrap();
    b[offset as usize] ^= 0x20;
    fs::write(path, b).unwrap();
}

fn corrupt_at(e: EngineError) -> (String, u64, String) {
    match e {
        EngineError::Corrupt {
            file,
            offset,
            reason,
        } => (file, offset, reason),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn records_round_trip_and_appends_continue_after_reopen() {
    let d = TempDir::new("rt");
    let (wal, got, report) = open(d.path(), config(FsyncPolicy::Always), 0);
    assert!(got.is_empty());
    assert_eq!(report, WalRecoveryReport::default());
    for i in 1..=100 {
        assert_eq!(wal.append((i % 4) as u8, &payload(i)).unwrap(), i);
    }
    let s = wal.stats();
    assert_eq!((s.last_seq, s.written_seq, s.synced_seq), (100, 100, 100));
    assert!(s.poisoned.is_none());
    wal.close().unwrap();

    let (wal, got, report) = open(d.path(), config(FsyncPolicy::Always), 0);
    expect_prefix(&got, 100);
    assert_eq!((report.replayed, report.last_seq), (100, 100));
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(wal.append(0, b"more").unwrap(), 101);
    drop(wal);

    let (_wal, got, report) = open(d.path(), config(FsyncPolicy::Always), 50);
    assert_eq!(got.first().map(|r| r.0), Some(51));
    assert_eq!(got.last(), Some(&(101, 0, b"more".to_vec())));
    assert_eq!((report.replayed, report.last_seq), (51, 101));
}

#[test]
fn a_replay_error_aborts_open() {
    let d = TempDir::new("replay-err");
    write_one_segment(d.path(), 3);
    let e = Wal::open(
        d.path(),
        config(FsyncPolicy::Always),
        WalRecoveryOptions::default(),
        |r| {
            if r.seq == 2 {
                Err(EngineError::InvalidArgument("bad payload".into()))
            } else {
                Ok(())
            }
        },
    )
    .unwrap_err();
    assert!(matches!(e, EngineError::InvalidArgument(_)), "{e:?}");
}

#[test]
fn group_commit_gives_unique_increasing_seqs_to_many_threads() {
    let d = TempDir::new("group");
    let cfg = WalConfig {
        max_batch_records: 64,
        max_batch_bytes: 16 << 10,
        ..config(FsyncPolicy::Always)
    };
    let (wal, _, _) = open(d.path(), cfg.clone(), 0);
    let threads = 16u64;
    let per = 150u64;
    let seqs: Vec<Vec<u64>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let wal = &wal;
                s.spawn(move || {
                    (0..per)
                        .map(|i| {
                            let p = format!("t{t} i{i}").into_bytes();
                            wal.append(t as u8, &p).unwrap()
                        })
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all: Vec<u64> = Vec::new();
    for s in &seqs {
        assert!(s.windows(2).all(|w| w[0] < w[1]), "a thread's seqs go back");
        all.extend(s);
    }
    all.sort_unstable();
    assert_eq!(all, (1..=threads * per).collect::<Vec<_>>());
    let stats = wal.stats();
    assert!(stats.batches >= 1 && stats.batches <= threads * per);
    assert_eq!(stats.fsyncs, stats.batches, "one fsync per batch");
    wal.close().unwrap();

    let (_wal, got, _) = open(d.path(), cfg, 0);
    assert_eq!(got.len() as u64, threads * per);
    for (t, s) in seqs.iter().enumerate() {
        for (i, seq) in s.iter().enumerate() {
            let (rs, ty, p) = &got[*seq as usize - 1];
            assert_eq!((*rs, *ty), (*seq, t as u8));
            assert_eq!(p, format!("t{t} i{i}").as_bytes());
        }
    }
}

#[test]
fn tiny_batches_and_oversized_records_still_commit() {
    let d = TempDir::new("bounds");
    let cfg = WalConfig {
        max_batch_records: 1,
        max_batch_bytes: 100,
        compress_threshold: usize::MAX,
        ..config(FsyncPolicy::Never)
    };
    let (wal, _, _) = open(d.path(), cfg.clone(), 0);
    std::thread::scope(|s| {
        for t in 0..4u8 {
            let wal = &wal;
            s.spawn(move || {
                for _ in 0..20 {
                    wal.append(t, &[t; 500]).unwrap();
                }
            });
        }
    });
    assert_eq!(wal.stats().batches, 80);
    let too_big = vec![0u8; MAX_WAL_PAYLOAD + 1];
    assert!(matches!(
        wal.append(0, &too_big),
        Err(EngineError::InvalidArgument(_))
    ));
    wal.close().unwrap();
    let (_wal, got, _) = open(d.path(), cfg, 0);
    assert_eq!(got.len(), 80);
    assert!(got.iter().all(|(_, t, p)| p == &vec![*t; 500]));
}

#[test]
fn bad_configs_are_refused() {
    let d = TempDir::new("cfg");
    for cfg in [
        WalConfig {
            segment_size: 10,
            ..WalConfig::default()
        },
        WalConfig {
            max_batch_records: 0,
            ..WalConfig::default()
        },
        WalConfig {
            compression_level: 99,
            ..WalConfig::default()
        },
        config(FsyncPolicy::Interval(Duration::ZERO)),
    ] {
        let e = Wal::open(d.path(), cfg, WalRecoveryOptions::default(), |_| Ok(())).unwrap_err();
        assert!(matches!(e, EngineError::InvalidArgument(_)), "{e:?}");
    }
}

#[test]
fn segments_rotate_and_truncate_before_deletes_only_covered_ones() {
    let d = TempDir::new("rotate");
    let cfg = WalConfig {
        segment_size: 4096,
        ..config(FsyncPolicy::Never)
    };
    let (wal, _, _) = open(d.path(), cfg.clone(), 0);
    for i in 1..=300u64 {
        wal.append(1, &[i as u8; 100]).unwrap();
    }
    let stats = wal.stats();
    assert!(stats.segments >= 5, "{stats:?}");
    let files = segments(d.path());
    assert_eq!(files.len(), stats.segments);
    assert!(stats.bytes > 300 * 124 && stats.bytes <= 4096 * files.len() as u64);
    assert_eq!(files[0].file_name().unwrap(), segment_name(1).as_str());
    for f in &files {
        assert_eq!(fs::metadata(f).unwrap().len(), 4096);
    }
    // Every segment but the last ends with a seal naming the next one.
    let infos = inspect_wal(d.path()).unwrap();
    assert!(infos.iter().all(|i| i.problem.is_none()), "{infos:?}");
    assert!(infos[..infos.len() - 1].iter().all(|i| i.sealed));
    assert!(!infos[infos.len() - 1].sealed);
    let firsts: Vec<u64> = files
        .iter()
        .map(|f| format::parse_segment_name(f.file_name().unwrap().to_str().unwrap()).unwrap())
        .collect();

    // A checkpoint at the middle of the third segment covers the first two.
    let cut = firsts[2] + 1;
    assert_eq!(wal.truncate_before(cut).unwrap(), 2);
    assert_eq!(wal.truncate_before(cut).unwrap(), 0);
    assert_eq!(segments(d.path()), files[2..].to_vec());
    assert_eq!(wal.stats().oldest_segment_seq, firsts[2]);
    wal.close().unwrap();

    let (wal, got, report) = open(d.path(), cfg.clone(), cut - 1);
    assert_eq!(got.first().map(|r| r.0), Some(cut));
    assert_eq!(got.len() as u64, 300 - (cut - 1));
    assert!(got.iter().all(|(s, _, p)| p == &vec![*s as u8; 100]));
    assert_eq!(report.last_seq, 300);
    // Nothing but the last segment survives an everything-covered truncation.
    assert_eq!(wal.truncate_before(u64::MAX).unwrap(), files.len() - 3);
    assert_eq!(segments(d.path()), vec![files[files.len() - 1].clone()]);
    wal.close().unwrap();

    // The records before the deleted segments are gone, so a replay from 0 is refused.
    let e = open_with(d.path(), cfg, WalRecoveryOptions::default()).unwrap_err();
    let (_, offset, reason) = corrupt_at(e);
    assert_eq!(offset, 0);
    assert!(reason.contains("missing"), "{reason}");
}

#[test]
fn a_log_that_ends_before_the_checkpoint_is_refused_and_salvage_continues_after_it() {
    let d = TempDir::new("past-end");
    write_one_segment(d.path(), 10);
    let past = |salvage| WalRecoveryOptions {
        after_seq: 20,
        salvage,
        ..WalRecoveryOptions::default()
    };
    let e = open_with(d.path(), config(FsyncPolicy::Always), past(false)).unwrap_err();
    let (file, offset, reason) = corrupt_at(e);
    assert!(file.ends_with(&segment_name(1)), "{file}");
    assert!(offset > 0);
    assert!(
        reason.contains("ends at sequence 10, before the checkpoint at 20"),
        "{reason}"
    );
    let (wal, got, report) = open_with(d.path(), config(FsyncPolicy::Always), past(true)).unwrap();
    assert!(got.is_empty());
    assert_eq!(report.last_seq, 20);
    assert!(
        report.warnings[0].contains("before the checkpoint"),
        "{report:?}"
    );
    assert_eq!(wal.append(0, b"x").unwrap(), 21);
    wal.close().unwrap();
    assert_eq!(segments(d.path()).len(), 2);
    let (_wal, got, report) = open(d.path(), config(FsyncPolicy::Always), 20);
    assert_eq!(got, vec![(21, 0, b"x".to_vec())]);
    assert!(report.warnings.is_empty(), "{report:?}");
}

/// Writes records 1..=n of `size` non-zero bytes each and closes; returns each frame's start.
fn write_big_records(dir: &Path, n: u64, size: usize) -> Vec<u64> {
    let cfg = WalConfig {
        compress_threshold: usize::MAX,
        ..config(FsyncPolicy::Never)
    };
    let (wal, _, _) = open(dir, cfg, 0);
    let mut starts = Vec::new();
    let mut off = SEGMENT_HEADER_LEN as u64;
    for i in 1..=n {
        starts.push(off);
        wal.append(1, &big(i, size)).unwrap();
        off += (FRAME_HEADER_LEN + size) as u64;
    }
    starts.push(off);
    wal.close().unwrap();
    starts
}

fn big(i: u64, size: usize) -> Vec<u8> {
    (0..size).map(|k| (k as u64 + i) as u8 | 1).collect()
}

#[test]
fn a_write_cut_at_any_sector_of_the_last_frames_is_a_torn_tail() {
    let d = TempDir::new("torn");
    let n = 6u64;
    let starts = write_big_records(d.path(), n, 700);
    let seg = segments(d.path())[0].clone();
    let pristine = fs::read(&seg).unwrap();
    let end = starts[n as usize];
    // What kill -9 or power loss leaves: the bytes from a sector boundary on never written.
    let from = starts[n as usize - 3].div_ceil(TEAR_ALIGN as u64) * TEAR_ALIGN as u64;
    for cut in (from..end).step_by(TEAR_ALIGN) {
        let mut b = pristine.clone();
        b[cut as usize..].fill(0);
        fs::write(&seg, &b).unwrap();
        let complete = starts.iter().filter(|&&s| s <= cut).count() as u64 - 1;
        let keep = starts[complete as usize];
        let (wal, got, report) = open(d.path(), config(FsyncPolicy::Always), 0);
        assert_eq!(got.len() as u64, complete, "cut {cut}");
        assert_eq!(report.truncated_bytes, cut - keep, "cut {cut}");
        assert_eq!(report.warnings.len(), usize::from(cut > keep), "cut {cut}");
        if cut > keep {
            assert!(report.warnings[0].contains("torn tail"), "{report:?}");
        }
        // Repaired in place: the size stays, the torn bytes are zero again.
        let after = fs::read(&seg).unwrap();
        assert_eq!(after.len() as u64, SEGMENT);
        assert!(after[keep as usize..].iter().all(|&b| b == 0), "cut {cut}");
        assert_eq!(wal.append(9, b"after").unwrap(), complete + 1);
        wal.close().unwrap();
        let (_wal, got, report) = open(d.path(), config(FsyncPolicy::Always), 0);
        assert_eq!(got.len() as u64, complete + 1);
        assert!(report.warnings.is_empty(), "{report:?}");
    }
}

#[test]
fn a_complete_last_frame_with_a_bad_checksum_is_refused() {
    let d = TempDir::new("last-flip");
    let starts = write_big_records(d.path(), 5, 700);
    let seg = segments(d.path())[0].clone();
    flip(&seg, starts[4] + 300);
    let e = open_with(d.path(), config(FsyncPolicy::Always), Default::default()).unwrap_err();
    let (file, offset, reason) = corrupt_at(e);
    assert!(file.ends_with(&segment_name(1)));
    assert_eq!(offset, starts[4]);
    assert!(reason.contains("checksum mismatch"), "{reason}");
    let (_wal, got, report) = salvage(d.path());
    assert_eq!(got.len(), 4);
    assert_eq!(report.dropped_files.len(), 1);
}

#[test]
fn a_segment_cut_short_is_refused_even_at_a_frame_boundary() {
    let d = TempDir::new("cut-half");
    let starts = write_big_records(d.path(), 8, 700);
    let seg = segments(d.path())[0].clone();
    let pristine = fs::read(&seg).unwrap();
    // Half-way through the preallocated file, at the end of the frames, and inside a frame.
    for cut in [SEGMENT / 2, starts[8], starts[4], starts[4] + 100] {
        fs::write(&seg, &pristine[..cut as usize]).unwrap();
        let e = open_with(d.path(), config(FsyncPolicy::Always), Default::default()).unwrap_err();
        let (file, offset, reason) = corrupt_at(e);
        assert!(file.ends_with(&segment_name(1)));
        assert_eq!(offset, cut);
        assert!(reason.contains("cut short"), "{reason}");
    }
    // Salvage keeps the frames still whole and gives the file its size back.
    let (wal, got, report) = salvage(d.path());
    assert_eq!(got.len(), 4);
    assert_eq!(report.dropped_files.len(), 1);
    assert_eq!(fs::metadata(&seg).unwrap().len(), SEGMENT);
    assert_eq!(wal.append(0, b"x").unwrap(), 5);
    wal.close().unwrap();
    let (_wal, got, report) = open(d.path(), config(FsyncPolicy::Always), 0);
    assert_eq!(got.len(), 5);
    assert!(report.warnings.is_empty(), "{report:?}");
}

/// Writes `n` 1000-byte records with 8 KiB segments (about seven records each); returns the
/// segment files.
fn write_rotated(dir: &Path, n: u64) -> Vec<PathBuf> {
    let (wal, _, _) = open(dir, small_segments(), 0);
    for i in 1..=n {
        wal.append(1, &big(i, 1000)).unwrap();
    }
    wal.close().unwrap();
    segments(dir)
}

fn small_segments() -> WalConfig {
    WalConfig {
        segment_size: 8 << 10,
        compress_threshold: usize::MAX,
        ..config(FsyncPolicy::Always)
    }
}

#[test]
fn a_deleted_last_segment_is_refused() {
    let d = TempDir::new("del-last");
    let files = write_rotated(d.path(), 30);
    assert!(files.len() >= 4);
    let last = files.last().unwrap();
    let first_lost = format::parse_segment_name(last.file_name().unwrap().to_str().unwrap());
    fs::remove_file(last).unwrap();
    let e = open_with(d.path(), small_segments(), Default::default()).unwrap_err();
    let (file, _, reason) = corrupt_at(e);
    assert!(file.ends_with(
        files[files.len() - 2]
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
    ));
    let first_lost = first_lost.unwrap();
    assert!(
        reason.contains(&format!("every record from {first_lost} on is lost")),
        "{reason}"
    );
    assert!(reason.contains(&segment_name(first_lost)), "{reason}");
    let (wal, got, report) = open_with(
        d.path(),
        small_segments(),
        WalRecoveryOptions {
            salvage: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(got.len() as u64, first_lost - 1);
    assert!(report.warnings[0].contains("salvage"), "{report:?}");
    assert_eq!(wal.append(0, b"x").unwrap(), first_lost);
}

#[test]
fn a_deleted_middle_segment_is_refused() {
    let d = TempDir::new("del-mid");
    let files = write_rotated(d.path(), 30);
    let name =
        |f: &PathBuf| format::parse_segment_name(f.file_name().unwrap().to_str().unwrap()).unwrap();
    fs::remove_file(&files[1]).unwrap();
    let e = open_with(d.path(), small_segments(), Default::default()).unwrap_err();
    let (file, offset, reason) = corrupt_at(e);
    assert!(file.ends_with(&segment_name(name(&files[2]))), "{file}");
    assert_eq!(offset, 0);
    assert!(
        reason.contains(&format!(
            "records {}..={} are missing",
            name(&files[1]),
            name(&files[2]) - 1
        )),
        "{reason}"
    );
}

#[test]
fn the_segment_the_checkpoint_names_must_exist() {
    let d = TempDir::new("del-only");
    let files = write_rotated(d.path(), 30);
    let (wal, _, _) = open(d.path(), small_segments(), 0);
    // Records 29 and 30 are in the last segment.
    let cut = 29;
    let continues = wal.segment_for(cut + 1);
    assert_eq!(continues, 29);
    assert_eq!(wal.truncate_before(continues).unwrap(), files.len() - 1);
    wal.close().unwrap();
    let only = segments(d.path());
    assert_eq!(only.len(), 1);
    fs::remove_file(&only[0]).unwrap();
    let options = |salvage| WalRecoveryOptions {
        after_seq: cut,
        continues_in: Some(continues),
        salvage,
    };
    let e = open_with(d.path(), small_segments(), options(false)).unwrap_err();
    let (file, _, reason) = corrupt_at(e);
    assert!(file.ends_with(&segment_name(continues)), "{file}");
    assert!(reason.contains("from 30 on is lost"), "{reason}");
    // Without the manifest's word the empty log is still refused after a checkpoint.
    let e = open_with(
        d.path(),
        small_segments(),
        WalRecoveryOptions {
            continues_in: None,
            ..options(false)
        },
    )
    .unwrap_err();
    assert!(corrupt_at(e).2.contains("no segments"));
    let (wal, got, report) = open_with(d.path(), small_segments(), options(true)).unwrap();
    assert!(got.is_empty());
    assert!(report.warnings[0].contains("salvage"), "{report:?}");
    assert_eq!(wal.append(0, b"x").unwrap(), cut + 1);
}

#[test]
fn an_interrupted_rotation_is_completed() {
    let d = TempDir::new("rotation-crash");
    write_one_segment(d.path(), 5);
    // The successor was created, then the process died before sealing the first segment.
    writer::create_segment(d.path(), 6, SEGMENT).unwrap();
    let (wal, got, report) = open(d.path(), config(FsyncPolicy::Always), 0);
    expect_prefix(&got, 5);
    assert!(
        report.warnings[0].contains("interrupted rotation"),
        "{report:?}"
    );
    assert_eq!(wal.append(0, b"x").unwrap(), 6);
    wal.close().unwrap();
    let info = inspect_wal(d.path()).unwrap();
    assert!(info[0].sealed && info[1].frames == 1, "{info:?}");
    let (_wal, got, report) = open(d.path(), config(FsyncPolicy::Always), 0);
    assert_eq!(got.len(), 6);
    assert!(report.warnings.is_empty(), "{report:?}");
}

#[test]
fn an_unsealed_segment_followed_by_frames_is_refused() {
    let d = TempDir::new("unsealed");
    write_one_segment(d.path(), 5);
    let next = d.path().join(segment_name(6));
    let mut b = fs::read(d.path().join(segment_name(1))).unwrap();
    b[..SEGMENT_HEADER_LEN].copy_from_slice(&encode_segment_header(6, SEGMENT));
    b[SEGMENT_HEADER_LEN..].fill(0);
    let f = frame_bytes(6, 0, 0, 1, b"y");
    b[SEGMENT_HEADER_LEN..SEGMENT_HEADER_LEN + f.len()].copy_from_slice(&f);
    fs::write(&next, b).unwrap();
    let e = open_with(d.path(), config(FsyncPolicy::Always), Default::default()).unwrap_err();
    let (file, _, reason) = corrupt_at(e);
    assert!(file.ends_with(&segment_name(1)), "{file}");
    assert!(reason.contains("not sealed"), "{reason}");
}

#[test]
fn version_1_segments_keep_their_semantics_and_the_log_moves_on() {
    let d = TempDir::new("v1");
    let frames: Vec<Vec<u8>> = (1..=4).map(|s| frame_bytes(s, 1, 0, 2, b"ok")).collect();
    let starts = handmade_segment(d.path(), &frames);
    let v1 = d.path().join(segment_name(1));
    let end = fs::metadata(&v1).unwrap().len();
    // A version-1 file ends where its last write stopped: cut anywhere in the last frame.
    let pristine = fs::read(&v1).unwrap();
    fs::write(&v1, &pristine[..end as usize - 3]).unwrap();
    let (wal, got, report) = open(d.path(), config(FsyncPolicy::Always), 0);
    assert_eq!(got.len(), 3);
    assert!(report.warnings[0].contains("torn tail"), "{report:?}");
    // Appends go to a new version-2 segment; the old one is sealed to name it.
    assert_eq!(wal.append(1, b"v2").unwrap(), 4);
    wal.close().unwrap();
    assert_eq!(
        fs::metadata(&v1).unwrap().len(),
        starts[3] + SEAL_LEN as u64
    );
    let info = inspect_wal(d.path()).unwrap();
    assert_eq!(
        info.iter()
            .map(|i| (i.version, i.sealed, i.frames))
            .collect::<Vec<_>>(),
        vec![(1, true, 3), (2, false, 1)]
    );
    let (_wal, got, report) = open(d.path(), config(FsyncPolicy::Always), 0);
    assert_eq!(got.len(), 4);
    assert!(report.warnings.is_empty(), "{report:?}");
    drop(_wal);
    // Now the version-2 segment's loss shows.
    fs::remove_file(d.path().join(segment_name(4))).unwrap();
    let e = open_with(d.path(), config(FsyncPolicy::Always), Default::default()).unwrap_err();
    assert!(corrupt_at(e).2.contains("every record from 4 on is lost"));
}

#[test]
fn version_1_zeros_at_the_end_are_a_torn_tail_but_a_damaged_last_frame_is_not() {
    let d = TempDir::new("v1-zeros");
    let frames: Vec<Vec<u8>> = (1..=5).map(|s| frame_bytes(s, 1, 0, 3, b"abc")).collect();
    let starts = handmade_segment(d.path(), &frames);
    let v1 = d.path().join(segment_name(1));
    let mut b = fs::read(&v1).unwrap();
    let pristine = b.clone();
    b.extend_from_slice(&[0u8; 300]);
    fs::write(&v1, &b).unwrap();
    let (wal, got, report) = open(d.path(), config(FsyncPolicy::Always), 0);
    assert_eq!(got.len(), 5);
    assert_eq!(report.truncated_bytes, 300);
    drop(wal);

    let d = TempDir::new("v1-flip");
    handmade_segment(d.path(), &frames);
    let mut b = pristine;
    b[starts[4] as usize + FRAME_HEADER_LEN] ^= 0x20;
    fs::write(d.path().join(segment_name(1)), &b).unwrap();
    let e = open_with(d.path(), config(FsyncPolicy::Always), Default::default()).unwrap_err();
    let (_, offset, reason) = corrupt_at(e);
    assert_eq!(offset, starts[4]);
    assert!(reason.contains("checksum mismatch"), "{reason}");
}

#[test]
fn a_flipped_byte_mid_log_is_refused_and_salvage_keeps_the_prefix() {
    let d = TempDir::new("flip");
    let starts = write_one_segment(d.path(), 40);
    let seg = segments(d.path())[0].clone();
    let len_before = fs::metadata(&seg).unwrap().len();
    // A byte inside record 20's payload.
    flip(&seg, starts[19] + FRAME_HEADER_LEN as u64 + 1);
    let e = open_with(
        d.path(),
        config(FsyncPolicy::Always),
        WalRecoveryOptions::default(),
    )
    .unwrap_err();
    let msg = e.to_string();
    let (file, offset, reason) = corrupt_at(e);
    assert!(file.ends_with(&segment_name(1)), "{file}");
    assert_eq!(offset, starts[19]);
    assert!(
        reason.contains("checksum mismatch: expected 0x"),
        "{reason}"
    );
    assert!(msg.contains(&segment_name(1)) && msg.contains(&format!("offset {}", starts[19])));
    // Refusing changed nothing.
    assert_eq!(fs::metadata(&seg).unwrap().len(), len_before);

    let (wal, got, report) = salvage(d.path());
    expect_prefix(&got, 19);
    assert_eq!(report.last_seq, 19);
    let data_end = starts[39] + (FRAME_HEADER_LEN + payload(40).len()) as u64;
    assert_eq!(report.truncated_bytes, data_end - starts[19]);
    assert_eq!(report.dropped_files.len(), 1);
    assert_eq!(
        fs::metadata(&report.dropped_files[0]).unwrap().len(),
        len_before
    );
    assert!(report.warnings[0].contains("salvage"), "{report:?}");
    assert_eq!(wal.append(0, b"new").unwrap(), 20);
    wal.close().unwrap();

    let (_wal, got, report) = open(d.path(), config(FsyncPolicy::Always), 0);
    assert_eq!(got.len(), 20);
    assert!(report.warnings.is_empty());
}

#[test]
fn damage_in_an_earlier_segment_is_refused_and_salvage_drops_later_segments() {
    let d = TempDir::new("multi");
    let cfg = WalConfig {
        segment_size: 4096,
        ..config(FsyncPolicy::Never)
    };
    let (wal, _, _) = open(d.path(), cfg.clone(), 0);
    for i in 1..=200u64 {
        wal.append(1, &[i as u8; 100]).unwrap();
    }
    wal.close().unwrap();
    let files = segments(d.path());
    assert!(files.len() >= 3);
    // The last byte of the first segment's last record: it is not in the last segment, so
    // it cannot be a torn tail.
    let frames_end = inspect_wal(d.path()).unwrap()[0].valid_bytes - SEAL_LEN as u64;
    flip(&files[0], frames_end - 1);
    let e = open_with(d.path(), cfg.clone(), WalRecoveryOptions::default()).unwrap_err();
    let (file, offset, _) = corrupt_at(e);
    assert!(file.ends_with(&segment_name(1)));
    assert_eq!(offset, frames_end - 124);

    let (wal, got, report) = salvage(d.path());
    let kept = got.len() as u64;
    assert!(kept > 0 && kept < 200);
    assert!(got.iter().all(|(s, _, p)| p == &vec![*s as u8; 100]));
    assert_eq!(report.dropped_files.len(), files.len());
    assert!(report.dropped_files.iter().all(|f| f.exists()));
    assert_eq!(segments(d.path()), vec![files[0].clone()]);
    assert_eq!(wal.append(0, b"x").unwrap(), kept + 1);
}

#[test]
fn a_bad_segment_header_is_refused_even_in_the_last_segment() {
    let d = TempDir::new("header");
    write_one_segment(d.path(), 3);
    let seg = segments(d.path())[0].clone();
    flip(&seg, 14);
    let e = open_with(
        d.path(),
        config(FsyncPolicy::Always),
        WalRecoveryOptions::default(),
    )
    .unwrap_err();
    let (_, offset, reason) = corrupt_at(e);
    assert_eq!(offset, 28);
    assert!(reason.contains("header checksum mismatch"), "{reason}");

    let (wal, got, report) = salvage(d.path());
    assert!(got.is_empty());
    assert_eq!(report.dropped_files.len(), 1);
    assert_eq!(wal.append(0, b"x").unwrap(), 1);
}

#[test]
fn a_newer_format_version_is_not_corruption() {
    let d = TempDir::new("version");
    let mut h = encode_segment_header(1, SEGMENT_HEADER_LEN as u64);
    h[8] = 3;
    let crc = crc32fast::hash(&h[..28]);
    h[28..].copy_from_slice(&crc.to_le_bytes());
    fs::write(d.path().join(segment_name(1)), h).unwrap();
    let e = open_with(
        d.path(),
        config(FsyncPolicy::Always),
        WalRecoveryOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(e, EngineError::UnsupportedVersion { found: 3, .. }),
        "{e:?}"
    );
}

/// A version-1 segment (as builds before version 2 wrote them) holding `frames`.
fn handmade_segment(dir: &Path, frames: &[Vec<u8>]) -> Vec<u64> {
    let mut b = encode_segment_header_v1(1).to_vec();
    let mut starts = Vec::new();
    for f in frames {
        starts.push(b.len() as u64);
        b.extend_from_slice(f);
    }
    fs::write(dir.join(segment_name(1)), b).unwrap();
    starts
}

#[test]
fn sequence_gaps_and_regressions_are_refused() {
    for seqs in [[1, 2, 4], [1, 2, 2], [1, 3, 4]] {
        let d = TempDir::new("gap");
        let frames: Vec<Vec<u8>> = seqs
            .iter()
            .map(|&s| frame_bytes(s, 0, 0, 1, b"x"))
            .collect();
        let starts = handmade_segment(d.path(), &frames);
        let bad = seqs.windows(2).position(|w| w[1] != w[0] + 1).unwrap() + 1;
        let e = open_with(
            d.path(),
            config(FsyncPolicy::Always),
            WalRecoveryOptions::default(),
        )
        .unwrap_err();
        let (_, offset, reason) = corrupt_at(e);
        assert_eq!(offset, starts[bad]);
        assert!(reason.contains("gap or regression"), "{reason}");
        let (_, got, _) = salvage(d.path());
        assert_eq!(got.len(), bad);
    }
}

#[test]
fn compressed_frames_round_trip_and_incompressible_ones_stay_raw() {
    let d = TempDir::new("zstd");
    let compressible: Vec<u8> = (0..1024u32)
        .flat_map(|i| format!("feature_{} = {};", i % 10, i % 3).into_bytes())
        .collect();
    let mut rng = SmallRng::seed_from_u64(7);
    let noise: Vec<u8> = (0..8192).map(|_| rng.random()).collect();
    let (wal, _, _) = open(d.path(), config(FsyncPolicy::Always), 0);
    wal.append(1, &compressible).unwrap();
    wal.append(2, &noise).unwrap();
    wal.close().unwrap();
    let info = inspect_wal(d.path()).unwrap();
    assert_eq!(info.len(), 1);
    assert_eq!((info[0].frames, info[0].compressed_frames), (2, 1));
    let size = info[0].valid_bytes as usize;
    assert!(
        size < SEGMENT_HEADER_LEN + 2 * FRAME_HEADER_LEN + noise.len() + compressible.len() / 4
    );
    assert!(size > noise.len());
    let (_wal, got, _) = open(d.path(), config(FsyncPolicy::Always), 0);
    assert_eq!(got, vec![(1, 1, compressible), (2, 2, noise)]);
}

#[test]
fn lying_decompressed_sizes_are_refused() {
    let big = vec![7u8; 1 << 20];
    let body = zstd::bulk::compress(&big, 1).unwrap();
    // Claims more than the hard cap; a valid frame follows so it is not a torn tail.
    let d = TempDir::new("bomb-cap");
    let starts = handmade_segment(
        d.path(),
        &[
            frame_bytes(1, 0, FLAG_ZSTD, (MAX_WAL_PAYLOAD + 1) as u32, &body),
            frame_bytes(2, 0, 0, 1, b"x"),
        ],
    );
    let e = open_with(
        d.path(),
        config(FsyncPolicy::Always),
        WalRecoveryOptions::default(),
    )
    .unwrap_err();
    let (_, offset, reason) = corrupt_at(e);
    assert_eq!(offset, starts[0]);
    assert!(reason.contains("limit"), "{reason}");

    // Claims less than it holds: decompression stops at the declared size.
    let d = TempDir::new("bomb-small");
    handmade_segment(d.path(), &[frame_bytes(1, 0, FLAG_ZSTD, 100, &body)]);
    let e = open_with(
        d.path(),
        config(FsyncPolicy::Always),
        WalRecoveryOptions::default(),
    )
    .unwrap_err();
    let (_, _, reason) = corrupt_at(e);
    assert!(reason.contains("does not decompress"), "{reason}");

    // Claims more than it holds.
    let d = TempDir::new("bomb-large");
    handmade_segment(d.path(), &[frame_bytes(1, 0, FLAG_ZSTD, 2 << 20, &body)]);
    let e = open_with(
        d.path(),
        config(FsyncPolicy::Always),
        WalRecoveryOptions::default(),
    )
    .unwrap_err();
    let (_, _, reason) = corrupt_at(e);
    assert!(reason.contains("declares"), "{reason}");
}

#[test]
fn a_failed_fsync_poisons_the_log_until_reopened() {
    let d = TempDir::new("poison-sync");
    let faults = Arc::new(WalFaults::default());
    let cfg = WalConfig {
        faults: Some(Arc::clone(&faults)),
        ..config(FsyncPolicy::Always)
    };
    let (wal, _, _) = open(d.path(), cfg, 0);
    assert_eq!(wal.append(0, b"one").unwrap(), 1);
    faults.fail_next_sync();
    let e = wal.append(0, b"two").unwrap_err();
    assert!(matches!(e, EngineError::WalPoisoned(_)), "{e:?}");
    assert!(e.to_string().contains("injected fsync failure"), "{e}");
    // Later calls fail too, without retrying the fsync.
    assert!(matches!(
        wal.append(0, b"three"),
        Err(EngineError::WalPoisoned(_))
    ));
    assert!(matches!(wal.sync(), Err(EngineError::WalPoisoned(_))));
    let stats = wal.stats();
    assert!(stats.poisoned.is_some());
    assert_eq!(stats.synced_seq, 1);
    assert!(matches!(wal.close(), Err(EngineError::WalPoisoned(_))));

    // Reopening recovers: what reached the file is replayed, and writes work again.
    let (wal, got, _) = open(d.path(), config(FsyncPolicy::Always), 0);
    assert_eq!(got[0], (1, 0, b"one".to_vec()));
    assert!(got.len() <= 2);
    assert!(wal.append(0, b"four").is_ok());
}

#[test]
fn a_failed_fsync_fails_every_appender_in_and_after_the_batch() {
    let d = TempDir::new("poison-many");
    let faults = Arc::new(WalFaults::default());
    let cfg = WalConfig {
        faults: Some(Arc::clone(&faults)),
        ..config(FsyncPolicy::Always)
    };
    let (wal, _, _) = open(d.path(), cfg, 0);
    wal.append(0, b"before").unwrap();
    faults.fail_next_sync();
    let results: Vec<Result<u64>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|_| {
                let wal = &wal;
                s.spawn(move || wal.append(0, &[5u8; 200]))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in results {
        assert!(matches!(r, Err(EngineError::WalPoisoned(_))), "{r:?}");
    }
}

#[test]
fn a_failed_write_poisons_the_log_and_leaves_a_torn_tail() {
    let d = TempDir::new("poison-write");
    let faults = Arc::new(WalFaults::default());
    let cfg = WalConfig {
        faults: Some(Arc::clone(&faults)),
        ..config(FsyncPolicy::Always)
    };
    let (wal, _, _) = open(d.path(), cfg, 0);
    for i in 1..=3 {
        wal.append((i % 4) as u8, &payload(i)).unwrap();
    }
    faults.fail_next_write();
    let e = wal.append(0, &[5u8; 2000]).unwrap_err();
    assert!(e.to_string().contains("injected write failure"), "{e}");
    assert!(matches!(
        wal.append(0, b"x"),
        Err(EngineError::WalPoisoned(_))
    ));
    drop(wal);

    let (wal, got, report) = open(d.path(), config(FsyncPolicy::Always), 0);
    expect_prefix(&got, 3);
    // The injected short write stops at a sector boundary about half-way.
    assert!((512..2024).contains(&report.truncated_bytes), "{report:?}");
    assert!(report.warnings[0].contains("torn tail"), "{report:?}");
    assert_eq!(wal.append(0, b"y").unwrap(), 4);
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn interval_policy_acks_on_write_and_fsyncs_soon_after() {
    let d = TempDir::new("interval");
    let faults = Arc::new(WalFaults::default());
    let cfg = WalConfig {
        faults: Some(Arc::clone(&faults)),
        ..config(FsyncPolicy::Interval(Duration::from_millis(5)))
    };
    let (wal, _, _) = open(d.path(), cfg, 0);
    assert_eq!(wal.append(0, b"a").unwrap(), 1);
    assert_eq!(wal.stats().written_seq, 1);
    wait_until("the interval fsync", || wal.stats().synced_seq == 1);

    // A failed background fsync poisons later appends.
    faults.fail_next_sync();
    assert_eq!(wal.append(0, b"b").unwrap(), 2);
    wait_until("poisoning", || wal.stats().poisoned.is_some());
    assert!(matches!(
        wal.append(0, b"c"),
        Err(EngineError::WalPoisoned(_))
    ));
}

#[test]
fn never_policy_fsyncs_only_on_request() {
    let d = TempDir::new("never");
    let (wal, _, _) = open(d.path(), config(FsyncPolicy::Never), 0);
    for i in 1..=10 {
        wal.append(0, &payload(i)).unwrap();
    }
    let s = wal.stats();
    assert_eq!((s.written_seq, s.synced_seq, s.fsyncs), (10, 0, 0));
    wal.sync().unwrap();
    let s = wal.stats();
    assert_eq!((s.synced_seq, s.fsyncs), (10, 1));
    wal.sync().unwrap();
    assert_eq!(wal.stats().fsyncs, 1);
}

#[test]
fn leftover_temp_segments_are_removed_and_other_files_ignored() {
    let d = TempDir::new("tmpfiles");
    write_one_segment(d.path(), 2);
    let tmp = d.path().join(format!("{}.tmp", segment_name(3)));
    fs::write(&tmp, b"partial header").unwrap();
    fs::write(d.path().join("notes.txt"), b"hi").unwrap();
    let (_wal, got, report) = open(d.path(), config(FsyncPolicy::Always), 0);
    expect_prefix(&got, 2);
    assert!(!tmp.exists());
    assert!(report.warnings[0].contains("unfinished segment"));
    assert!(d.path().join("notes.txt").exists());
}

#[test]
fn inspect_reports_frames_types_and_damage() {
    let d = TempDir::new("inspect");
    let starts = write_one_segment(d.path(), 8);
    let info = inspect_wal(d.path()).unwrap();
    assert_eq!(info.len(), 1);
    assert_eq!((info[0].first_seq, info[0].frames), (1, 8));
    assert_eq!(info[0].record_types.values().sum::<u64>(), 8);
    assert_eq!(info[0].record_types.get(&1), Some(&2));
    assert!(info[0].problem.is_none());
    let seg = segments(d.path())[0].clone();
    flip(&seg, starts[3] + 2);
    let info = inspect_wal(d.path()).unwrap();
    assert_eq!((info[0].frames, info[0].valid_bytes), (3, starts[3]));
    let p = info[0].problem.as_deref().unwrap();
    assert!(p.starts_with(&format!("offset {}", starts[3])), "{p}");
    // Inspection changes nothing.
    assert_eq!(fs::metadata(&seg).unwrap().len(), info[0].file_bytes);
}

#[test]
fn mutated_segments_never_panic_the_scanner() {
    let d = TempDir::new("mutate");
    let cfg = WalConfig {
        segment_size: 64 << 10,
        ..config(FsyncPolicy::Always)
    };
    let (wal, _, _) = open(d.path(), cfg, 0);
    for i in 1..=20 {
        wal.append(i as u8, &payload(i)).unwrap();
    }
    wal.append(0, &vec![3u8; 10_000]).unwrap();
    wal.close().unwrap();
    let seg = segments(d.path())[0].clone();
    let pristine = fs::read(&seg).unwrap();
    let mut rng = SmallRng::seed_from_u64(42);
    for _ in 0..2000 {
        let mut b = pristine.clone();
        for _ in 0..rng.random_range(1..4) {
            let i = rng.random_range(0..b.len());
            b[i] = rng.random();
        }
        let cut = rng.random_range(0..=b.len());
        b.truncate(cut);
        let info = WalSegmentInfo::scan(&seg, &b).unwrap_or_else(|e| panic!("{e}"));
        assert!(info.frames <= 21);
        assert!(info.valid_bytes <= b.len() as u64);
    }
}

#[test]
fn sequence_numbers_from_disk_cannot_overflow() {
    let d = TempDir::new("seq-zero");
    fs::write(
        d.path().join(segment_name(0)),
        encode_segment_header(0, SEGMENT_HEADER_LEN as u64),
    )
    .unwrap();
    let e = open_with(
        d.path(),
        config(FsyncPolicy::Always),
        WalRecoveryOptions::default(),
    )
    .unwrap_err();
    assert!(corrupt_at(e).2.contains("outside"));

    let d = TempDir::new("seq-max");
    let top = i64::MAX as u64;
    let mut b = encode_segment_header_v1(top).to_vec();
    b.extend(frame_bytes(top, 0, 0, 1, b"x"));
    fs::write(d.path().join(segment_name(top)), b).unwrap();
    let after = |after_seq| WalRecoveryOptions {
        after_seq,
        ..WalRecoveryOptions::default()
    };
    let e = open_with(d.path(), config(FsyncPolicy::Always), after(top)).unwrap_err();
    assert!(matches!(e, EngineError::InvalidArgument(_)), "{e:?}");
    let e = open_with(d.path(), config(FsyncPolicy::Always), after(top - 1)).unwrap_err();
    assert!(corrupt_at(e).2.contains("not below"));
    let e = open_with(d.path(), config(FsyncPolicy::Always), after(0)).unwrap_err();
    assert!(corrupt_at(e).2.contains("missing"));
}
