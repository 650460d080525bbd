use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::format::{
    header_crc, key_hash, pack_slot, tag, Header, EMPTY_SLOT, FOOTER_LEN, HEADER_LEN,
    MAX_VIEW_NAME_LEN, OFF_HEADER_CRC, OFF_VERSION, SLOT_LEN,
};
use super::*;
use crate::encoding::{put_varint, zigzag};
use crate::fs::SNAPSHOT_TEMP_SUFFIX;
use crate::key::MAX_KEY_LEN;
use crate::testing::TempDir;
use crate::{EngineError, Result};

/// The names of the files in `dir`, sorted.
fn file_names(dir: &TempDir) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn meta(view: &str) -> SnapshotMeta {
    SnapshotMeta {
        view: view.into(),
        schema_fingerprint: 0x0123_4567_89ab_cdef,
        sequence: 42,
        created_at: 1_700_000_000_000_000,
    }
}

type Entries = Vec<(Vec<u8>, Vec<u8>)>;

fn write(path: &Path, entries: &[(Vec<u8>, Vec<u8>)]) -> SnapshotInfo {
    let mut w = SnapshotWriter::create(path, meta("user_stats")).unwrap();
    for (k, r) in entries {
        w.add(k, r).unwrap();
    }
    w.finish().unwrap()
}

/// A composite key like the store's: zigzag varint user id, length-prefixed string.
fn composite_key(id: i64, s: &str) -> Vec<u8> {
    let mut k = Vec::new();
    put_varint(&mut k, zigzag(id));
    put_varint(&mut k, s.len() as u64);
    k.extend_from_slice(s.as_bytes());
    k
}

fn small_entries() -> Entries {
    vec![
        (composite_key(1, "acme"), b"\x00\x02\x01record-one".to_vec()),
        (composite_key(-2, ""), Vec::new()),
        (composite_key(3, "z"), vec![0xff; 9]),
        (Vec::new(), b"empty key".to_vec()),
        (vec![0x80, 0x01], b"r5x".to_vec()),
    ]
}

/// A small valid snapshot's bytes.
fn small_file(dir: &TempDir) -> (PathBuf, Vec<u8>) {
    let path = dir.join("small.qsnap");
    write(&path, &small_entries());
    let bytes = fs::read(&path).unwrap();
    (path, bytes)
}

fn corrupt_parts(r: Result<Snapshot>) -> (u64, String) {
    match r {
        Err(EngineError::Corrupt { offset, reason, .. }) => (offset, reason),
        Err(e) => panic!("expected a corruption error, got {e}"),
        Ok(_) => panic!("expected a corruption error, the file opened"),
    }
}

/// Recomputes all three checksums after a test damaged the regions on purpose.
fn fix_checksums(bytes: &mut [u8]) {
    let mut head = [0u8; HEADER_LEN];
    head.copy_from_slice(&bytes[..HEADER_LEN]);
    let h = Header::decode(&head);
    let records = h.records_off as usize..(h.records_off + h.records_len) as usize;
    let index = h.index_off as usize..(h.index_off + h.index_len) as usize;
    let footer = index.end;
    let rc = crc32fast::hash(&bytes[records]);
    let ic = crc32fast::hash(&bytes[index]);
    bytes[footer..footer + 4].copy_from_slice(&rc.to_le_bytes());
    bytes[footer + 4..footer + 8].copy_from_slice(&ic.to_le_bytes());
    let crc = header_crc(&head);
    bytes[OFF_HEADER_CRC..HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
}

fn header_of(bytes: &[u8]) -> Header {
    let mut head = [0u8; HEADER_LEN];
    head.copy_from_slice(&bytes[..HEADER_LEN]);
    Header::decode(&head)
}

#[test]
fn round_trip_of_100k_random_keys() {
    let dir = TempDir::new("roundtrip");
    let mut rng = SmallRng::seed_from_u64(7);
    let mut seen = HashSet::new();
    let mut entries: Entries = Vec::new();
    while entries.len() < 100_000 {
        let key = match rng.random_range(0..4) {
            0 => composite_key(rng.random_range(-1_000_000..1_000_000), ""),
            1 => composite_key(
                rng.random(),
                &format!("merchant-{}", rng.random_range(0..1000)),
            ),
            2 => (0..rng.random_range(0..40)).map(|_| rng.random()).collect(),
            _ => {
                let mut k = Vec::new();
                put_varint(&mut k, zigzag(rng.random_range(0..100_000)));
                k
            }
        };
        if !seen.insert(key.clone()) {
            continue;
        }
        let record = if rng.random_range(0..10) == 0 {
            Vec::new()
        } else {
            (0..rng.random_range(1..60)).map(|_| rng.random()).collect()
        };
        entries.push((key, record));
    }
    let path = dir.join("v.qsnap");
    let mut w = SnapshotWriter::create(&path, meta("user_stats")).unwrap();
    for (k, r) in &entries {
        w.add(k, r).unwrap();
    }
    w.note_event_ts(5);
    w.note_event_ts(99);
    w.note_event_ts(-3);
    assert_eq!(w.len(), entries.len());
    let info = w.finish().unwrap();
    assert_eq!(file_names(&dir), vec!["v.qsnap".to_string()]);

    let snap = Snapshot::open(&path).unwrap();
    assert_eq!(snap.info(), &info);
    assert_eq!(info.entities, 100_000);
    assert_eq!(info.max_event_ts, Some(99));
    assert_eq!(info.view, "user_stats");
    assert_eq!(info.sequence, 42);
    assert_eq!(info.file_size, fs::metadata(&path).unwrap().len());
    assert_eq!(snap.file_size(), info.file_size);
    assert_eq!(snap.len(), entries.len());
    // The file is over 2 MiB, so it was mapped in huge pages where the kernel can: same bytes.
    // A prefetch before each batch of lookups (as the store does) changes no answer.
    let mut batch = crate::KeyBatch::new();
    for chunk in entries.chunks(100) {
        batch.clear();
        for (k, _) in chunk {
            batch.push_encoded(k);
        }
        batch.push_encoded(b"absent key");
        snap.prefetch(&batch);
        for (k, r) in chunk {
            assert_eq!(snap.get(k), Some(&r[..]), "key {k:x?}");
        }
    }
    let mut absent = 0;
    while absent < 100_000 {
        let k: Vec<u8> = (0..rng.random_range(0..24)).map(|_| rng.random()).collect();
        if !seen.contains(&k) {
            assert_eq!(snap.get(&k), None);
            absent += 1;
        }
    }
    let iter = snap.iter();
    assert_eq!(iter.size_hint(), (entries.len(), Some(entries.len())));
    let back: Vec<(&[u8], &[u8])> = iter.collect();
    assert_eq!(back.len(), entries.len());
    for ((k, r), (bk, br)) in entries.iter().zip(&back) {
        assert_eq!((&k[..], &r[..]), (*bk, *br));
    }
    assert_eq!(Snapshot::verify(&path).unwrap(), info);
}

#[test]
fn an_empty_snapshot_round_trips() {
    let dir = TempDir::new("empty");
    let path = dir.join("e.qsnap");
    let info = write(&path, &[]);
    assert_eq!(info.entities, 0);
    assert_eq!(info.max_event_ts, None);
    assert_eq!(info.file_size, super::format::MIN_FILE_LEN);
    let snap = Snapshot::open(&path).unwrap();
    assert!(snap.is_empty());
    assert_eq!(snap.get(b""), None);
    assert_eq!(snap.get(b"x"), None);
    assert_eq!(snap.iter().count(), 0);
    assert_eq!(Snapshot::verify(&path).unwrap(), info);
}

#[test]
fn info_describes_the_file() {
    let dir = TempDir::new("info");
    let path = dir.join("i.qsnap");
    let mut w = SnapshotWriter::create(&path, meta("user_stats")).unwrap();
    for (k, r) in small_entries() {
        w.add(&k, &r).unwrap();
    }
    w.note_event_ts(1_700_000_000_000_001);
    let info = w.finish().unwrap();
    assert_eq!(
        info,
        SnapshotInfo {
            path: path.clone(),
            format_version: 2,
            view: "user_stats".into(),
            schema_fingerprint: 0x0123_4567_89ab_cdef,
            sequence: 42,
            created_at: 1_700_000_000_000_000,
            max_event_ts: Some(1_700_000_000_000_001),
            entities: 5,
            file_size: 400,
            record_bytes: 57,
            index_slots: 8,
        }
    );
    let line = info.to_string();
    assert!(
        line.contains("view \"user_stats\", 5 entities, 400 bytes"),
        "{line}"
    );
}

#[test]
fn a_key_added_twice_is_refused_and_nothing_is_published() {
    let dir = TempDir::new("dup");
    let path = dir.join("d.qsnap");
    let mut w = SnapshotWriter::create(&path, meta("user_stats")).unwrap();
    for i in 0..10_000 {
        w.add(&composite_key(i, "m"), b"rec").unwrap();
    }
    w.add(&composite_key(5_000, "m"), b"another record")
        .unwrap();
    let err = w.finish().unwrap_err();
    assert!(matches!(err, EngineError::InvalidArgument(_)), "{err}");
    assert!(err.to_string().contains("twice"), "{err}");
    assert!(
        err.to_string()
            .contains(&show_key(&composite_key(5_000, "m"))),
        "{err}"
    );
    assert!(file_names(&dir).is_empty(), "{:?}", file_names(&dir));

    // Also when the duplicate is the very first key, and for an empty key.
    let mut w = SnapshotWriter::create(&path, meta("user_stats")).unwrap();
    w.add(b"", b"a").unwrap();
    w.add(b"k", b"b").unwrap();
    w.add(b"", b"a").unwrap();
    assert!(w.finish().is_err());
    assert!(file_names(&dir).is_empty(), "{:?}", file_names(&dir));
}

#[test]
fn bad_arguments_are_refused() {
    let dir = TempDir::new("args");
    let path = dir.join("a.qsnap");
    for view in [String::new(), "v".repeat(MAX_VIEW_NAME_LEN + 1)] {
        let err = SnapshotWriter::create(&path, meta(&view)).unwrap_err();
        assert!(matches!(err, EngineError::InvalidArgument(_)), "{err}");
    }
    assert!(SnapshotWriter::create(Path::new("/"), meta("v")).is_err());
    let err = SnapshotWriter::create(dir.join("missing/dir/x.qsnap"), meta("v")).unwrap_err();
    assert!(matches!(err, EngineError::Io { .. }), "{err}");
    assert!(file_names(&dir).is_empty());

    // A refused key leaves the writer usable.
    let mut w = SnapshotWriter::create(&path, meta(&"v".repeat(MAX_VIEW_NAME_LEN))).unwrap();
    let err = w.add(&vec![1u8; MAX_KEY_LEN + 1], b"r").unwrap_err();
    assert!(matches!(err, EngineError::InvalidArgument(_)), "{err}");
    w.add(&vec![1u8; MAX_KEY_LEN], b"r").unwrap();
    assert_eq!(w.len(), 1);
    w.finish().unwrap();
    let snap = Snapshot::open(&path).unwrap();
    assert_eq!(snap.get(&vec![1u8; MAX_KEY_LEN]), Some(&b"r"[..]));
    assert_eq!(snap.info().view.len(), MAX_VIEW_NAME_LEN);
}

#[test]
fn an_unfinished_writer_removes_its_temp_file() {
    let dir = TempDir::new("drop");
    let path = dir.join("t.qsnap");
    let w = SnapshotWriter::create(&path, meta("v")).unwrap();
    let files = file_names(&dir);
    assert_eq!(files.len(), 1);
    assert!(files[0].ends_with(SNAPSHOT_TEMP_SUFFIX), "{files:?}");
    assert!(files[0].starts_with(".t.qsnap."), "{files:?}");
    drop(w);
    assert!(file_names(&dir).is_empty());

    let mut w = SnapshotWriter::create(&path, meta("v")).unwrap();
    for i in 0..50_000 {
        w.add(&composite_key(i, "x"), &[7u8; 40]).unwrap();
    }
    drop(w);
    assert!(file_names(&dir).is_empty());

    write(&path, &small_entries());
    assert_eq!(file_names(&dir), vec!["t.qsnap".to_string()]);
}

#[test]
fn a_new_file_replaces_the_old_while_the_old_keeps_serving() {
    let dir = TempDir::new("replace");
    let path = dir.join("r.qsnap");
    let old_entries: Entries = (0..100)
        .map(|i| (composite_key(i, ""), b"old".to_vec()))
        .collect();
    write(&path, &old_entries);
    let old = Snapshot::open(&path).unwrap();
    let new_entries: Entries = (50..300)
        .map(|i| (composite_key(i, ""), b"new".to_vec()))
        .collect();
    write(&path, &new_entries);
    assert_eq!(file_names(&dir), vec!["r.qsnap".to_string()]);
    let new = Snapshot::open(&path).unwrap();
    assert_eq!(old.len(), 100);
    assert_eq!(new.len(), 250);
    assert_eq!(old.get(&composite_key(60, "")), Some(&b"old"[..]));
    assert_eq!(old.get(&composite_key(200, "")), None);
    assert_eq!(new.get(&composite_key(60, "")), Some(&b"new"[..]));
    assert_eq!(new.get(&composite_key(10, "")), None);
}

#[test]
fn every_truncation_is_rejected() {
    let dir = TempDir::new("truncate");
    let (_, bytes) = small_file(&dir);
    let cut_path = dir.join("cut.qsnap");
    for len in 0..bytes.len() {
        fs::write(&cut_path, &bytes[..len]).unwrap();
        let (_, reason) = corrupt_parts(Snapshot::open(&cut_path));
        assert!(reason.contains("truncated"), "cut at {len}: {reason}");
        assert!(Snapshot::verify(&cut_path).is_err());
    }
    let mut longer = bytes.clone();
    longer.push(0);
    fs::write(&cut_path, &longer).unwrap();
    let (_, reason) = corrupt_parts(Snapshot::open(&cut_path));
    assert!(reason.contains("trailing"), "{reason}");
}

#[test]
fn every_single_byte_flip_is_rejected_at_open() {
    let dir = TempDir::new("flip");
    let (_, bytes) = small_file(&dir);
    let bad = dir.join("bad.qsnap");
    for at in 0..bytes.len() {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut b = bytes.clone();
            b[at] ^= mask;
            fs::write(&bad, &b).unwrap();
            match Snapshot::open(&bad) {
                Err(EngineError::Corrupt { .. }) => {}
                Err(EngineError::UnsupportedVersion { .. } | EngineError::NeedsUpgrade { .. })
                    if (OFF_VERSION..OFF_VERSION + 4).contains(&at) => {}
                Err(e) => panic!("byte {at} ^ {mask:#x}: unexpected error {e}"),
                Ok(_) => panic!("byte {at} ^ {mask:#x}: damaged file opened"),
            }
        }
    }
}

#[test]
fn damage_is_blamed_on_the_right_part() {
    let dir = TempDir::new("blame");
    let (_, bytes) = small_file(&dir);
    let h = header_of(&bytes);
    let records_end = (h.records_off + h.records_len) as usize;
    let index = h.index_off as usize;
    let footer = index + h.index_len as usize;
    assert!(index > records_end, "the small file should have padding");
    let bad = dir.join("bad.qsnap");
    let cases = [
        (0, 0, "bad magic"),
        (20, OFF_HEADER_CRC, "header checksum mismatch"),
        (
            OFF_HEADER_CRC + 1,
            OFF_HEADER_CRC,
            "header checksum mismatch",
        ),
        (
            HEADER_LEN + 3,
            HEADER_LEN,
            "record region checksum mismatch",
        ),
        (records_end, records_end, "padding"),
        (index + 9, index, "index checksum mismatch"),
        (footer, HEADER_LEN, "record region checksum mismatch"),
        (footer + 5, index, "index checksum mismatch"),
        (footer + 12, footer + 8, "footer magic"),
    ];
    for (at, offset, words) in cases {
        let mut b = bytes.clone();
        b[at] ^= 0x10;
        fs::write(&bad, &b).unwrap();
        let (off, reason) = corrupt_parts(Snapshot::open(&bad));
        assert!(reason.contains(words), "byte {at}: {reason}");
        assert_eq!(off, offset as u64, "byte {at}: {reason}");
        if words.contains("checksum") {
            assert!(
                reason.contains("expects 0x") || reason.contains("stored 0x"),
                "{reason}"
            );
        }
    }
}

#[test]
fn newer_and_older_versions_are_distinct_errors() {
    let dir = TempDir::new("version");
    let (_, bytes) = small_file(&dir);
    let path = dir.join("v.qsnap");
    for (version, newer) in [(3u32, true), (u32::MAX, true), (0, false)] {
        let mut b = bytes.clone();
        b[OFF_VERSION..OFF_VERSION + 4].copy_from_slice(&version.to_le_bytes());
        fs::write(&path, &b).unwrap();
        match (Snapshot::open(&path), newer) {
            (
                Err(EngineError::UnsupportedVersion {
                    found, supported, ..
                }),
                true,
            ) => {
                assert_eq!((found, supported), (version, 2));
            }
            (Err(EngineError::NeedsUpgrade { found, oldest, .. }), false) => {
                assert_eq!((found, oldest), (version, 1));
            }
            (Err(e), _) => panic!("version {version}: {e}"),
            (Ok(_), _) => panic!("version {version} opened"),
        }
    }
}

#[test]
fn files_that_are_not_snapshots_are_refused() {
    let dir = TempDir::new("notsnap");
    let path = dir.join("x.qsnap");
    fs::write(&path, "a".repeat(1000)).unwrap();
    let (off, reason) = corrupt_parts(Snapshot::open(&path));
    assert_eq!(off, 0);
    assert!(reason.contains("bad magic"), "{reason}");
    let err = Snapshot::open(dir.join("absent.qsnap")).unwrap_err();
    assert!(matches!(err, EngineError::Io { .. }), "{err}");
    assert!(err.to_string().contains("absent.qsnap"), "{err}");
}

#[test]
fn a_hostile_index_with_valid_checksums_is_refused_at_open() {
    let dir = TempDir::new("hostile-open");
    let (_, bytes) = small_file(&dir);
    let h = header_of(&bytes);
    let index = h.index_off as usize;
    let path = dir.join("h.qsnap");
    let used = (0..h.slots as usize)
        .find(|&i| bytes[index + i * SLOT_LEN..][..SLOT_LEN] != EMPTY_SLOT.to_le_bytes())
        .unwrap();
    let empty = (0..h.slots as usize)
        .find(|&i| bytes[index + i * SLOT_LEN..][..SLOT_LEN] == EMPTY_SLOT.to_le_bytes())
        .unwrap();

    // A slot pointing past the record region.
    let mut b = bytes.clone();
    let at = index + used * SLOT_LEN;
    b[at..at + SLOT_LEN].copy_from_slice(&pack_slot(0, h.records_len).to_le_bytes());
    fix_checksums(&mut b);
    fs::write(&path, &b).unwrap();
    let (off, reason) = corrupt_parts(Snapshot::open(&path));
    assert_eq!(off, at as u64);
    assert!(reason.contains("past the"), "{reason}");

    // One used slot too many.
    let mut b = bytes.clone();
    let at = index + empty * SLOT_LEN;
    b[at..at + SLOT_LEN].copy_from_slice(&pack_slot(0, 0).to_le_bytes());
    fix_checksums(&mut b);
    fs::write(&path, &b).unwrap();
    let (_, reason) = corrupt_parts(Snapshot::open(&path));
    assert!(reason.contains("used slots"), "{reason}");

    // An entry whose length runs past the region.
    let mut b = bytes.clone();
    b[HEADER_LEN] = 0x7f;
    fix_checksums(&mut b);
    fs::write(&path, &b).unwrap();
    let (off, reason) = corrupt_parts(Snapshot::open(&path));
    assert_eq!(off, HEADER_LEN as u64);
    assert!(reason.contains("malformed entry"), "{reason}");
}

#[test]
fn verify_catches_what_open_lets_through() {
    let dir = TempDir::new("verify");
    let entries = small_entries();
    let path = dir.join("v.qsnap");
    write(&path, &entries);
    let bytes = fs::read(&path).unwrap();
    let h = header_of(&bytes);
    let index = h.index_off as usize;
    let slots: Vec<u64> = (0..h.slots as usize)
        .map(|i| u64::from_le_bytes(bytes[index + i * 8..][..8].try_into().unwrap()))
        .collect();

    // A slot aimed at the wrong (but well-framed) entry: open accepts it, verify does not.
    let first = slots
        .iter()
        .position(|&s| s != EMPTY_SLOT && s & ((1 << 40) - 1) == 0)
        .unwrap();
    let mut b = bytes.clone();
    let second_offset = 21; // the second small entry starts after the 21-byte first one
    let moved = pack_slot(key_hash(&entries[0].0), second_offset);
    b[index + first * 8..][..8].copy_from_slice(&moved.to_le_bytes());
    fix_checksums(&mut b);
    fs::write(&path, &b).unwrap();
    let snap = Snapshot::open(&path).unwrap();
    assert_eq!(snap.get(&entries[0].0), None);
    let err = Snapshot::verify(&path).unwrap_err();
    assert!(
        err.to_string()
            .contains("cannot be found through the index"),
        "{err}"
    );

    // A key stored twice (its second copy indexed under another key's slot).
    let dir2 = TempDir::new("verify-dup");
    let path = dir2.join("d.qsnap");
    write(
        &path,
        &[
            (b"k1".to_vec(), b"a".to_vec()),
            (b"k2".to_vec(), b"b".to_vec()),
        ],
    );
    let mut b = fs::read(&path).unwrap();
    let second_key = HEADER_LEN + 5 + 1; // after [2 k 1 1 a] and the key length
    assert_eq!(&b[second_key..second_key + 2], b"k2");
    b[second_key + 1] = b'1';
    fix_checksums(&mut b);
    fs::write(&path, &b).unwrap();
    Snapshot::open(&path).unwrap();
    let err = Snapshot::verify(&path).unwrap_err();
    assert!(err.to_string().contains("appears twice"), "{err}");
}

/// Writes `bytes` and reads it through every read path without the open-time checks.
fn read_everything_unchecked(path: &Path, bytes: &[u8], keys: &[Vec<u8>]) {
    fs::write(path, bytes).unwrap();
    let snap = Snapshot::open_unchecked(path).unwrap();
    for k in keys {
        let _ = snap.get(k);
    }
    for k in [&b""[..], b"\x00", b"nope", &[0xff; 64]] {
        let _ = snap.get(k);
    }
    let n = snap.iter().take(1_000_000).count();
    assert!(n <= bytes.len());
    // Whatever open and verify decide, a file verify accepts serves every entry it holds.
    let _ = Snapshot::open(path);
    if Snapshot::verify(path).is_ok() {
        let snap = Snapshot::open(path).unwrap();
        for (k, r) in &snap {
            assert_eq!(snap.get(k), Some(r));
        }
    }
}

#[test]
fn a_hostile_index_never_panics_the_read_path() {
    let dir = TempDir::new("hostile-read");
    let entries = small_entries();
    let keys: Vec<Vec<u8>> = entries.iter().map(|(k, _)| k.clone()).collect();
    let (_, bytes) = small_file(&dir);
    let h = header_of(&bytes);
    let index = h.index_off as usize;
    let slots = h.slots as usize;
    let path = dir.join("h.qsnap");
    let set_all = |value: &dyn Fn(usize) -> u64| {
        let mut b = bytes.clone();
        for i in 0..slots {
            b[index + i * 8..][..8].copy_from_slice(&value(i).to_le_bytes());
        }
        b
    };

    // Every slot claims to be the key being looked up, at offsets past the region (up to the
    // largest a slot can hold), or inside the region but mid-entry. No slot is empty.
    for key in &keys {
        let hash = key_hash(key);
        for offset in [
            h.records_len,
            h.records_len + 1,
            (1 << 40) - 2,
            (1 << 40) - 1,
        ] {
            let b = set_all(&|_| pack_slot(hash, offset));
            fs::write(&path, &b).unwrap();
            let snap = Snapshot::open_unchecked(&path).unwrap();
            assert_eq!(snap.get(key), None);
            assert_eq!(snap.get(b"absent"), None);
            assert_eq!(snap.iter().count(), entries.len());
            assert!(Snapshot::open(&path).is_err());
        }
        for offset in 0..h.records_len {
            let b = set_all(&|i| pack_slot(hash, (offset + i as u64) % h.records_len));
            read_everything_unchecked(&path, &b, &keys);
        }
    }

    // Tags that never match: a full table must still end every probe.
    let b = set_all(&|i| pack_slot(!tag(key_hash(b"absent")) << 40, i as u64));
    fs::write(&path, &b).unwrap();
    let snap = Snapshot::open_unchecked(&path).unwrap();
    assert_eq!(snap.get(b"absent"), None);

    // Random garbage.
    let mut rng = SmallRng::seed_from_u64(3);
    for _ in 0..500 {
        let b = set_all(&|_| 0);
        let mut b = b;
        rng.fill(&mut b[index..index + slots * 8]);
        read_everything_unchecked(&path, &b, &keys);
    }
}

#[test]
fn a_hostile_record_region_never_panics_the_read_path() {
    let dir = TempDir::new("hostile-records");
    let entries = small_entries();
    let keys: Vec<Vec<u8>> = entries.iter().map(|(k, _)| k.clone()).collect();
    let (_, bytes) = small_file(&dir);
    let h = header_of(&bytes);
    let records = HEADER_LEN..HEADER_LEN + h.records_len as usize;
    let path = dir.join("h.qsnap");
    let mut rng = SmallRng::seed_from_u64(4);
    for round in 0..2000 {
        let mut b = bytes.clone();
        if round % 2 == 0 {
            rng.fill(&mut b[records.clone()]);
        } else {
            // A few targeted bytes: varint prefixes with continuation bits, huge lengths.
            for _ in 0..rng.random_range(1..4) {
                let at = rng.random_range(records.clone());
                b[at] = [0x80, 0xff, 0x7f, 0x00][rng.random_range(0..4)];
            }
        }
        fix_checksums(&mut b);
        read_everything_unchecked(&path, &b, &keys);
    }
}

const GOLDEN_V1: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/src/snapshot/golden/v1_small.qsnap"
);
const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/src/snapshot/golden/v2_small.qsnap"
);

/// `small_entries` as an engine would write them with a codec section: a record whose first
/// byte has the high bit set is a compressed record there, so the 0xff one becomes 0x3f.
fn v2_entries() -> Entries {
    let mut e = small_entries();
    e[2].1 = vec![0x3f; 9];
    e
}

/// A codec section saying "records are plain, by policy": 36 bytes, no dictionary.
fn plain_codec_section() -> Vec<u8> {
    let mut s = vec![1, 0, 0, 0, 3, 0, 0, 0];
    s.extend_from_slice(&[0u8; 28]);
    s
}

/// Files of the previous format version keep opening and reading exactly as before.
#[test]
fn version_1_files_still_read() {
    let snap = Snapshot::open(GOLDEN_V1).unwrap();
    assert_eq!(snap.info().format_version, 1);
    assert_eq!(snap.codec_info(), None);
    for (k, r) in small_entries() {
        assert_eq!(snap.get(&k), Some(&r[..]));
    }
    Snapshot::verify(GOLDEN_V1).unwrap();
}

/// A damaged codec section is refused at open, naming where it is.
#[test]
fn a_damaged_codec_section_is_refused() {
    let bytes = fs::read(GOLDEN).unwrap();
    let dir = TempDir::new("codec-damage");
    let path = dir.join("c.qsnap");
    // A flipped byte: the section checksum catches it.
    let mut b = bytes.clone();
    b[HEADER_LEN + 1] ^= 0x40;
    fs::write(&path, &b).unwrap();
    let (off, reason) = corrupt_parts(Snapshot::open(&path));
    assert_eq!(
        (off, reason.as_str()),
        (HEADER_LEN as u64, "codec section checksum mismatch")
    );
    // A section with a valid checksum but an unknown method.
    b[HEADER_LEN + 1] ^= 0x40;
    b[HEADER_LEN + 2] = 9;
    let crc = crc32fast::hash(&b[HEADER_LEN..HEADER_LEN + 36]);
    b[230..234].copy_from_slice(&crc.to_le_bytes());
    fix_checksums(&mut b);
    fs::write(&path, &b).unwrap();
    let (off, reason) = corrupt_parts(Snapshot::open(&path));
    assert_eq!(off, HEADER_LEN as u64);
    assert!(reason.contains("unknown compression method 9"), "{reason}");
}

/// The writer must reproduce the committed file byte for byte and the reader must read it.
/// A deliberate format change bumps the version and adds a new golden file
/// (`QUIVER_BLESS=1 cargo test -p quiver-engine golden` writes it); old ones stay readable
/// or become `NeedsUpgrade`.
#[test]
fn golden_file_pins_the_format() {
    let dir = TempDir::new("golden");
    let path = dir.join("golden.qsnap");
    let mut w = SnapshotWriter::create(&path, meta("user_stats")).unwrap();
    w.set_codec(&plain_codec_section()).unwrap();
    for (k, r) in v2_entries() {
        w.add(&k, &r).unwrap();
    }
    w.note_event_ts(1_700_000_000_123_456);
    w.finish().unwrap();
    let fresh = fs::read(&path).unwrap();
    if std::env::var_os("QUIVER_BLESS").is_some() {
        fs::write(GOLDEN, &fresh).unwrap();
    }
    let golden = fs::read(GOLDEN).expect("golden file missing (QUIVER_BLESS=1 writes it)");
    assert!(
        fresh == golden,
        "the snapshot writer's output changed: a format change needs a new version and golden file"
    );
    assert_eq!(&golden[..8], b"\x89QVSNAP\n");
    // 256 header + 36 codec section + 57 records, padded to 352, + 64 index bytes.
    assert_eq!(golden.len() as u64 - FOOTER_LEN as u64, 416);

    let snap = Snapshot::open(GOLDEN).unwrap();
    let info = snap.info();
    assert_eq!(info.view, "user_stats");
    assert_eq!(info.format_version, 2);
    assert_eq!(
        snap.codec_info().map(|c| c.method),
        Some(crate::PackMethod::None)
    );
    assert_eq!(info.schema_fingerprint, 0x0123_4567_89ab_cdef);
    assert_eq!(info.sequence, 42);
    assert_eq!(info.created_at, 1_700_000_000_000_000);
    assert_eq!(info.max_event_ts, Some(1_700_000_000_123_456));
    for (k, r) in v2_entries() {
        assert_eq!(snap.get(&k), Some(&r[..]));
    }
    let order: Vec<Vec<u8>> = snap.iter().map(|(k, _)| k.to_vec()).collect();
    let want: Vec<Vec<u8>> = v2_entries().into_iter().map(|(k, _)| k).collect();
    assert_eq!(order, want);
    Snapshot::verify(GOLDEN).unwrap();
}

#[test]
fn snapshots_can_be_shared_across_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Snapshot>();
    shareable::<SnapshotInfo>();
    fn sendable<T: Send>() {}
    sendable::<SnapshotWriter>();
}
