use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::format::{
    encode_segment_header, put_frame, segment_name, FrameHeader, FLAG_ZSTD, FRAME_HEADER_LEN,
    SEGMENT_HEADER_LEN,
};
use super::*;

/// A unique directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let d = std::env::temp_dir().join(format!(
            "quiver-wal-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        Self(d)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

type Owned = (u64, u8, Vec<u8>);

fn config(fsync: FsyncPolicy) -> WalConfig {
    WalConfig {
        fsync,
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
            salvage: false,
        },
    )
    .unwrap()
}

fn salvage(dir: &Path) -> (Wal, Vec<Owned>, WalRecoveryReport) {
    open_with(
        dir,
        config(FsyncPolicy::Always),
        WalRecoveryOptions {
            after_seq: 0,
            salvage: true,
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
    assert_eq!(fs::metadata(&segments(dir)[0]).unwrap().len(), off);
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
        WalConfig::default(),
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
    assert_eq!(
        stats.bytes,
        files
            .iter()
            .map(|f| fs::metadata(f).unwrap().len())
            .sum::<u64>()
    );
    assert_eq!(files[0].file_name().unwrap(), segment_name(1).as_str());
    for f in &files[..files.len() - 1] {
        assert!(fs::metadata(f).unwrap().len() >= 4096);
    }
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
fn reopening_past_the_end_of_the_log_starts_a_new_segment() {
    let d = TempDir::new("past-end");
    write_one_segment(d.path(), 10);
    let (wal, got, report) = open(d.path(), config(FsyncPolicy::Always), 20);
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
    assert!(report.warnings.is_empty());
}

#[test]
fn a_torn_tail_at_every_byte_is_truncated_and_earlier_records_survive() {
    let d = TempDir::new("torn");
    let n = 6;
    let starts = write_one_segment(d.path(), n);
    let seg = segments(d.path())[0].clone();
    let pristine = fs::read(&seg).unwrap();
    // Cut anywhere inside the last three frames.
    for cut in starts[n as usize - 3]..pristine.len() as u64 {
        fs::write(&seg, &pristine[..cut as usize]).unwrap();
        let complete = starts.iter().filter(|&&s| s < cut).count() as u64 - 1
            + u64::from(starts.contains(&cut));
        let keep = starts[complete as usize];
        let (wal, got, report) = open(d.path(), config(FsyncPolicy::Always), 0);
        expect_prefix(&got, complete);
        assert_eq!(report.truncated_bytes, cut - keep, "cut {cut}");
        assert_eq!(report.warnings.len(), usize::from(cut > keep), "cut {cut}");
        if cut > keep {
            assert!(report.warnings[0].contains("torn tail"), "{report:?}");
        }
        assert_eq!(fs::metadata(&seg).unwrap().len(), keep);
        assert_eq!(wal.append(9, b"after").unwrap(), complete + 1);
        wal.close().unwrap();
        let (_wal, got, report) = open(d.path(), config(FsyncPolicy::Always), 0);
        assert_eq!(got.len() as u64, complete + 1);
        assert!(report.warnings.is_empty());
    }
}

#[test]
fn zeros_or_a_damaged_last_frame_at_the_end_are_a_torn_tail() {
    let d = TempDir::new("zeros");
    let starts = write_one_segment(d.path(), 5);
    let seg = segments(d.path())[0].clone();
    let mut b = fs::read(&seg).unwrap();
    let len = b.len() as u64;
    b.extend_from_slice(&[0u8; 300]);
    fs::write(&seg, &b).unwrap();
    let (wal, got, report) = open(d.path(), config(FsyncPolicy::Always), 0);
    expect_prefix(&got, 5);
    assert_eq!(report.truncated_bytes, 300);
    drop(wal);

    flip(&seg, starts[4] + FRAME_HEADER_LEN as u64);
    let (_wal, got, report) = open(d.path(), config(FsyncPolicy::Always), 0);
    expect_prefix(&got, 4);
    assert_eq!(report.truncated_bytes, len - starts[4]);
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
        WalConfig::default(),
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
    assert_eq!(report.truncated_bytes, len_before - starts[19]);
    assert_eq!(report.dropped_files.len(), 1);
    assert_eq!(
        fs::metadata(&report.dropped_files[0]).unwrap().len(),
        len_before
    );
    assert!(report.warnings[0].contains("salvage"), "{report:?}");
    assert_eq!(wal.append(0, b"new").unwrap(), 20);
    wal.close().unwrap();

    let (_wal, got, report) = open(d.path(), WalConfig::default(), 0);
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
    // The very last byte of the first segment: nothing valid follows it in that segment,
    // but it is not the last segment, so it cannot be a torn tail.
    let first_len = fs::metadata(&files[0]).unwrap().len();
    flip(&files[0], first_len - 1);
    let e = open_with(d.path(), cfg.clone(), WalRecoveryOptions::default()).unwrap_err();
    let (file, offset, _) = corrupt_at(e);
    assert!(file.ends_with(&segment_name(1)));
    assert_eq!(offset, first_len - 124);

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
        WalConfig::default(),
        WalRecoveryOptions::default(),
    )
    .unwrap_err();
    let (_, offset, reason) = corrupt_at(e);
    assert_eq!(offset, 20);
    assert!(reason.contains("header checksum mismatch"), "{reason}");

    let (wal, got, report) = salvage(d.path());
    assert!(got.is_empty());
    assert_eq!(report.dropped_files.len(), 1);
    assert_eq!(wal.append(0, b"x").unwrap(), 1);
}

#[test]
fn a_newer_format_version_is_not_corruption() {
    let d = TempDir::new("version");
    let mut h = encode_segment_header(1);
    h[8] = 2;
    let crc = crc32fast::hash(&h[..20]);
    h[20..].copy_from_slice(&crc.to_le_bytes());
    fs::write(d.path().join(segment_name(1)), h).unwrap();
    let e = open_with(
        d.path(),
        WalConfig::default(),
        WalRecoveryOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(e, EngineError::UnsupportedVersion { found: 2, .. }),
        "{e:?}"
    );
}

fn handmade_segment(dir: &Path, frames: &[Vec<u8>]) -> Vec<u64> {
    let mut b = encode_segment_header(1).to_vec();
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
            WalConfig::default(),
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
    let (wal, _, _) = open(d.path(), WalConfig::default(), 0);
    wal.append(1, &compressible).unwrap();
    wal.append(2, &noise).unwrap();
    wal.close().unwrap();
    let info = inspect_wal(d.path()).unwrap();
    assert_eq!(info.len(), 1);
    assert_eq!((info[0].frames, info[0].compressed_frames), (2, 1));
    let size = info[0].file_bytes as usize;
    assert!(
        size < SEGMENT_HEADER_LEN + 2 * FRAME_HEADER_LEN + noise.len() + compressible.len() / 4
    );
    assert!(size > noise.len());
    let (_wal, got, _) = open(d.path(), WalConfig::default(), 0);
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
        WalConfig::default(),
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
        WalConfig::default(),
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
        WalConfig::default(),
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
    let (wal, got, _) = open(d.path(), WalConfig::default(), 0);
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
    let e = wal.append(0, &[5u8; 200]).unwrap_err();
    assert!(e.to_string().contains("injected write failure"), "{e}");
    assert!(matches!(
        wal.append(0, b"x"),
        Err(EngineError::WalPoisoned(_))
    ));
    drop(wal);

    let (wal, got, report) = open(d.path(), WalConfig::default(), 0);
    expect_prefix(&got, 3);
    assert_eq!(report.truncated_bytes, (FRAME_HEADER_LEN as u64 + 200) / 2);
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
    let (_wal, got, report) = open(d.path(), WalConfig::default(), 0);
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
    let (wal, _, _) = open(d.path(), WalConfig::default(), 0);
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
    fs::write(d.path().join(segment_name(0)), encode_segment_header(0)).unwrap();
    let e = open_with(
        d.path(),
        WalConfig::default(),
        WalRecoveryOptions::default(),
    )
    .unwrap_err();
    assert!(corrupt_at(e).2.contains("outside"));

    let d = TempDir::new("seq-max");
    let top = i64::MAX as u64;
    let mut b = encode_segment_header(top).to_vec();
    b.extend(frame_bytes(top, 0, 0, 1, b"x"));
    fs::write(d.path().join(segment_name(top)), b).unwrap();
    let after = |after_seq| WalRecoveryOptions {
        after_seq,
        salvage: false,
    };
    let e = open_with(d.path(), WalConfig::default(), after(top)).unwrap_err();
    assert!(matches!(e, EngineError::InvalidArgument(_)), "{e:?}");
    let e = open_with(d.path(), WalConfig::default(), after(top - 1)).unwrap_err();
    assert!(corrupt_at(e).2.contains("not below"));
    let e = open_with(d.path(), WalConfig::default(), after(0)).unwrap_err();
    assert!(corrupt_at(e).2.contains("missing"));
}
