use std::path::PathBuf;

use super::*;
use crate::clock::ManualClock;
use crate::key::KeyPart;
use crate::value::Value;
use crate::wal::FsyncPolicy;

const SCHEMA: &str = r#"
[[entity]]
name = "u"
join_keys = [{ name = "id", type = "int64" }]
[[feature_view]]
name = "v"
entity = "u"
  [[feature_view.feature]]
  name = "a"
  type = "int64"
  ttl = "1h"
  [[feature_view.feature]]
  name = "b"
  type = "string"
"#;
const T0: i64 = 1_700_000_000_000_000;
const H: i64 = 3_600_000_000;

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let d = std::env::temp_dir().join(format!("quiver-db-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        Self(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn config(dir: &Path) -> DbConfig {
    let mut c = DbConfig::new(dir);
    c.registry = Some(Registry::from_toml(SCHEMA).unwrap());
    c.store.shards = 4;
    c.wal.fsync = FsyncPolicy::Never;
    c.wal.segment_size = 64 << 10;
    c.wal.compress_threshold = usize::MAX;
    c
}

fn open(dir: &Path, clock: &ManualClock) -> Db {
    Db::open(config(dir), Arc::new(clock.clone())).unwrap().0
}

fn key(id: i64) -> Vec<u8> {
    let r = Registry::from_toml(SCHEMA).unwrap();
    let mut k = Vec::new();
    crate::encode_key(r.entity("u").unwrap(), &[KeyPart::Int64(id)], &mut k).unwrap();
    k
}

fn row(id: i64, ts: i64, a: i64, b: &str) -> Row {
    Row {
        key: key(id),
        event_ts: ts,
        created_ts: None,
        values: vec![(0, Value::Int64(a)), (1, Value::String(b.into()))],
    }
}

fn read(db: &Db, ids: &[i64]) -> Vec<(Option<Value>, Option<Value>)> {
    let mut kb = KeyBatch::new();
    ids.iter().for_each(|i| kb.push_encoded(&key(*i)));
    let sel = db.select(&["v:a", "v:b"]).unwrap();
    let mut out = GetResult::new();
    db.get(&sel, &kb, &ReadOptions::default(), &mut out)
        .unwrap();
    (0..ids.len())
        .map(|i| (out.columns[0].get(i), out.columns[1].get(i)))
        .collect()
}

#[test]
fn writes_survive_reopen_through_wal_replay() {
    let d = TempDir::new("replay");
    let clock = ManualClock::new(T0);
    let db = open(&d.0, &clock);
    for i in 0..500 {
        db.write("v", &[row(i, T0, i, &format!("s{i}"))]).unwrap();
    }
    let before = read(&db, &[0, 250, 499, 500]);
    db.close().unwrap();
    let (db, report) = Db::open(config(&d.0), Arc::new(clock.clone())).unwrap();
    assert_eq!(report.wal.replayed, 500);
    assert_eq!(read(&db, &[0, 250, 499, 500]), before);
    assert_eq!(
        before[1],
        (Some(Value::Int64(250)), Some(Value::String("s250".into())))
    );
    assert_eq!(before[3], (None, None));
}

#[test]
fn checkpoint_moves_data_to_snapshots_and_trims_the_wal() {
    let d = TempDir::new("ckpt");
    let clock = ManualClock::new(T0);
    let db = open(&d.0, &clock);
    for chunk in 0..40 {
        let rows: Vec<Row> = (0..100)
            .map(|i| row(chunk * 100 + i, T0, i, &format!("x{i:060}")))
            .collect();
        db.write("v", &rows).unwrap();
    }
    let segments_before = db.stats().wal.segments;
    assert!(segments_before > 2, "{segments_before}");
    clock.set(T0 + 30 * 60 * 1_000_000);
    let st = db.checkpoint().unwrap();
    assert_eq!(st.views, vec![("v".to_string(), 4000)]);
    assert!(st.wal_segments_deleted >= segments_before - 1, "{st:?}");
    let stats = db.stats();
    assert_eq!(
        (stats.views[0].entities, stats.views[0].base_entities),
        (0, 4000)
    );
    // Newer writes after the checkpoint, then restart: snapshot + WAL.
    db.write("v", &[row(7, T0 + 1, -7, "new")]).unwrap();
    let expect = read(&db, &[6, 7, 3999, 4000]);
    assert_eq!(
        expect[1],
        (Some(Value::Int64(-7)), Some(Value::String("new".into())))
    );
    db.close().unwrap();
    let (db, report) = Db::open(config(&d.0), Arc::new(clock.clone())).unwrap();
    assert_eq!(report.snapshots, vec![("v".to_string(), 4000)]);
    assert_eq!(report.wal.replayed, 1);
    assert_eq!(read(&db, &[6, 7, 3999, 4000]), expect);
    // A second checkpoint drops the expired "a" values but keeps "b" (no TTL).
    clock.set(T0 + 2 * H);
    let st = db.checkpoint().unwrap();
    assert_eq!(st.values_expired, 4000);
    let got = read(&db, &[6]);
    assert_eq!(got[0], (None, Some(Value::String(format!("x{:060}", 6)))));
    let snaps: Vec<_> = fs::read_dir(d.0.join(SNAPSHOT_DIR)).unwrap().collect();
    assert_eq!(snaps.len(), 1, "old snapshot files are deleted");
}

#[test]
fn registry_changes_persist_through_wal_and_checkpoint() {
    let d = TempDir::new("reg");
    let clock = ManualClock::new(T0);
    let db = open(&d.0, &clock);
    let grown = format!("{SCHEMA}  [[feature_view.feature]]\n  name = \"c\"\n  type = \"bool\"\n");
    db.apply_registry(Registry::from_toml(&grown).unwrap())
        .unwrap();
    let c = db.registry().view("v").unwrap().feature_index("c").unwrap();
    db.write(
        "v",
        &[Row {
            key: key(1),
            event_ts: T0,
            created_ts: None,
            values: vec![(c, Value::Bool(true))],
        }],
    )
    .unwrap();
    db.close().unwrap();
    // Reopen with the *old* registry in the config: the stored one wins and nothing is lost
    // (the config's is a compatible subset, so evolving to it changes nothing).
    let db = open(&d.0, &clock);
    assert!(db
        .registry()
        .view("v")
        .unwrap()
        .feature_index("c")
        .is_some());
    db.checkpoint().unwrap();
    db.close().unwrap();
    let db = open(&d.0, &clock);
    let sel = db.select(&["v:c"]).unwrap();
    let mut kb = KeyBatch::new();
    kb.push_encoded(&key(1));
    let mut out = GetResult::new();
    db.get(&sel, &kb, &ReadOptions::default(), &mut out)
        .unwrap();
    assert_eq!(out.columns[0].get(0), Some(Value::Bool(true)));
    let bad = SCHEMA.replace("type = \"string\"", "type = \"bytes\"");
    assert!(db
        .apply_registry(Registry::from_toml(&bad).unwrap())
        .is_err());
}

#[test]
fn a_directory_is_opened_by_one_process_at_a_time() {
    let d = TempDir::new("lock");
    let clock = ManualClock::new(T0);
    let _db = open(&d.0, &clock);
    let e = Db::open(config(&d.0), Arc::new(clock.clone())).unwrap_err();
    assert!(e.to_string().contains("in use"), "{e}");
}

#[test]
fn refused_writes_are_not_logged() {
    let d = TempDir::new("refused");
    let clock = ManualClock::new(T0);
    let db = open(&d.0, &clock);
    let bad = Row {
        key: key(1),
        event_ts: T0,
        created_ts: None,
        values: vec![(0, Value::Bool(true))],
    };
    assert!(matches!(
        db.write("v", &[row(2, T0, 1, "ok"), bad]),
        Err(EngineError::InvalidArgument(_))
    ));
    assert!(db.write("v", &[]).is_err());
    assert_eq!(db.stats().wal.last_seq, 0);
    db.close().unwrap();
    let (_, report) = Db::open(config(&d.0), Arc::new(clock.clone())).unwrap();
    assert_eq!(report.wal.replayed, 0);
}

#[test]
fn bulk_load_swaps_a_snapshot_in_and_newer_delta_values_survive() {
    let d = TempDir::new("load");
    let clock = ManualClock::new(T0);
    let db = open(&d.0, &clock);
    db.write(
        "v",
        &[
            row(1, T0 + 10, 100, "delta-newer"),
            row(2, T0 - 10, 200, "delta-older"),
        ],
    )
    .unwrap();
    let file = d.0.join("offline.qsnap");
    let reg = Registry::from_toml(SCHEMA).unwrap();
    let mut b = SnapshotBuilder::create(&file, &reg, "v", T0).unwrap();
    for i in 0..1000 {
        b.add(&row(i, T0, i, "snap")).unwrap();
    }
    assert!(b
        .add(&Row {
            key: key(5000),
            event_ts: T0,
            created_ts: None,
            values: vec![(0, Value::Null), (0, Value::Null)]
        })
        .is_err());
    b.finish().unwrap();
    assert_eq!(db.load_snapshot("v", &file).unwrap(), 1000);
    let got = read(&db, &[1, 2, 3]);
    assert_eq!(got[0].1, Some(Value::String("delta-newer".into())));
    assert_eq!(got[1].1, Some(Value::String("snap".into())));
    assert_eq!(
        got[2],
        (Some(Value::Int64(3)), Some(Value::String("snap".into())))
    );
    // The load is durable.
    db.close().unwrap();
    let db = open(&d.0, &clock);
    assert_eq!(read(&db, &[1, 2, 3]), got);
    // Wrong view or damaged files are refused and the current base keeps serving.
    let other = SCHEMA.replace("name = \"v\"", "name = \"w\"");
    let wfile = d.0.join("w.qsnap");
    let mut b =
        SnapshotBuilder::create(&wfile, &Registry::from_toml(&other).unwrap(), "w", T0).unwrap();
    b.add(&row(1, T0, 1, "w")).unwrap();
    b.finish().unwrap();
    let e = db.load_snapshot("v", &wfile).unwrap_err();
    assert!(e.to_string().contains("built for view \"w\""), "{e}");
    let mut bytes = fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&file, &bytes).unwrap();
    assert!(matches!(
        db.load_snapshot("v", &file),
        Err(EngineError::Corrupt { .. })
    ));
    assert_eq!(read(&db, &[1, 2, 3]), got);
}
