use std::collections::HashMap;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::clock::ManualClock;
use crate::fs::{SNAPSHOT_DIR, WAL_DIR};
use crate::key::KeyPart;
use crate::registry::CompressionPolicy;
use crate::testing::{
    check_cell, int_key, mixed_view, random_value, registry, TempDir, HOUR as H, MINUTE as MIN,
    SMALL_SCHEMA, T0,
};
use crate::value::Value;
use crate::wal::FsyncPolicy;

fn config(dir: &Path) -> DbConfig {
    let mut c = DbConfig::new(dir);
    c.registry = Some(registry(SMALL_SCHEMA));
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
    let r = registry(SMALL_SCHEMA);
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
    let db = open(d.path(), &clock);
    for i in 0..500 {
        db.write("v", &[row(i, T0, i, &format!("s{i}"))]).unwrap();
    }
    let before = read(&db, &[0, 250, 499, 500]);
    db.close().unwrap();
    let (db, report) = Db::open(config(d.path()), Arc::new(clock.clone())).unwrap();
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
    let db = open(d.path(), &clock);
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
    let (db, report) = Db::open(config(d.path()), Arc::new(clock.clone())).unwrap();
    assert_eq!(report.snapshots, vec![("v".to_string(), 4000)]);
    assert_eq!(report.wal.replayed, 1);
    assert_eq!(read(&db, &[6, 7, 3999, 4000]), expect);
    // A second checkpoint drops the expired "a" values but keeps "b" (no TTL).
    clock.set(T0 + 2 * H);
    let st = db.checkpoint().unwrap();
    assert_eq!(st.values_expired, 4000);
    let got = read(&db, &[6]);
    assert_eq!(got[0], (None, Some(Value::String(format!("x{:060}", 6)))));
    let snaps: Vec<_> = fs::read_dir(d.path().join(SNAPSHOT_DIR)).unwrap().collect();
    assert_eq!(snaps.len(), 1, "old snapshot files are deleted");
}

/// A view's freshness survives a checkpoint and a restart with nothing left to replay: the
/// checkpoint notes its newest event time in the snapshot, and installing a base raises the
/// view's newest event time to it (as a bulk load does).
#[test]
fn freshness_survives_checkpoints_restarts_and_loads() {
    let d = TempDir::new("fresh");
    let clock = ManualClock::new(T0 + H);
    let db = open(d.path(), &clock);
    db.write("v", &[row(1, T0 + 5, 1, "a"), row(2, T0 + 9, 2, "b")])
        .unwrap();
    db.checkpoint().unwrap();
    let newest = |db: &Db| db.store().stats()[0].newest_event_ts;
    assert_eq!(newest(&db), T0 + 9);
    db.close().unwrap();
    let (db, report) = Db::open(config(d.path()), Arc::new(clock.clone())).unwrap();
    assert_eq!(report.wal.replayed, 0);
    assert_eq!(
        newest(&db),
        T0 + 9,
        "after a restart from the snapshot alone"
    );
    let file = fs::read_dir(d.path().join(SNAPSHOT_DIR))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let snap = crate::Snapshot::open(&file).unwrap();
    assert_eq!(snap.info().max_event_ts, Some(T0 + 9));
    drop(snap);
    // A bulk load of a newer snapshot raises it.
    let load = d.path().join("load.qsnap");
    let reg = registry(SMALL_SCHEMA);
    let mut b = SnapshotBuilder::create(&load, &reg, "v", T0).unwrap();
    b.add(&row(3, T0 + 20, 3, "c")).unwrap();
    b.finish().unwrap();
    db.load_snapshot("v", &load).unwrap();
    assert_eq!(newest(&db), T0 + 20);
}

#[test]
fn registry_changes_persist_through_wal_and_checkpoint() {
    let d = TempDir::new("reg");
    let clock = ManualClock::new(T0);
    let db = open(d.path(), &clock);
    let grown =
        format!("{SMALL_SCHEMA}  [[feature_view.feature]]\n  name = \"c\"\n  type = \"bool\"\n");
    db.apply_registry(registry(&grown)).unwrap();
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
    let db = open(d.path(), &clock);
    assert!(db
        .registry()
        .view("v")
        .unwrap()
        .feature_index("c")
        .is_some());
    db.checkpoint().unwrap();
    db.close().unwrap();
    let db = open(d.path(), &clock);
    let sel = db.select(&["v:c"]).unwrap();
    let mut kb = KeyBatch::new();
    kb.push_encoded(&key(1));
    let mut out = GetResult::new();
    db.get(&sel, &kb, &ReadOptions::default(), &mut out)
        .unwrap();
    assert_eq!(out.columns[0].get(0), Some(Value::Bool(true)));
    let bad = SMALL_SCHEMA.replace("type = \"string\"", "type = \"bytes\"");
    assert!(db.apply_registry(registry(&bad)).is_err());
}

#[test]
fn a_directory_is_opened_by_one_process_at_a_time() {
    let d = TempDir::new("lock");
    let clock = ManualClock::new(T0);
    let _db = open(d.path(), &clock);
    let e = Db::open(config(d.path()), Arc::new(clock.clone())).unwrap_err();
    assert!(e.to_string().contains("in use"), "{e}");
}

#[test]
fn refused_writes_are_not_logged() {
    let d = TempDir::new("refused");
    let clock = ManualClock::new(T0);
    let db = open(d.path(), &clock);
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
    let (_, report) = Db::open(config(d.path()), Arc::new(clock.clone())).unwrap();
    assert_eq!(report.wal.replayed, 0);
}

#[test]
fn bulk_load_swaps_a_snapshot_in_and_newer_delta_values_survive() {
    let d = TempDir::new("load");
    let clock = ManualClock::new(T0);
    let db = open(d.path(), &clock);
    db.write(
        "v",
        &[
            row(1, T0 + 10, 100, "delta-newer"),
            row(2, T0 - 10, 200, "delta-older"),
        ],
    )
    .unwrap();
    let file = d.path().join("offline.qsnap");
    let reg = registry(SMALL_SCHEMA);
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
    let db = open(d.path(), &clock);
    assert_eq!(read(&db, &[1, 2, 3]), got);
    // Wrong view or damaged files are refused and the current base keeps serving.
    let other = SMALL_SCHEMA.replace("name = \"v\"", "name = \"w\"");
    let wfile = d.path().join("w.qsnap");
    let mut b = SnapshotBuilder::create(&wfile, &registry(&other), "w", T0).unwrap();
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

#[test]
fn two_bulk_loads_in_the_same_microsecond_both_stay_durable() {
    let d = TempDir::new("load-same-us");
    let clock = ManualClock::new(T0);
    let db = open(d.path(), &clock);
    let reg = registry(SMALL_SCHEMA);
    for generation in 0..2 {
        let file = d.path().join(format!("offline-{generation}.qsnap"));
        let mut b = SnapshotBuilder::create(&file, &reg, "v", T0).unwrap();
        b.add(&row(1, T0, generation, "g")).unwrap();
        b.finish().unwrap();
        // The clock does not move between the loads.
        db.load_snapshot("v", &file).unwrap();
    }
    let expect = read(&db, &[1]);
    assert_eq!(expect[0].0, Some(Value::Int64(1)));
    db.close().unwrap();
    let db = open(d.path(), &clock);
    assert_eq!(read(&db, &[1]), expect);
}

// ---------------------------------------------------------------------------------------------
// Model-based test of the durable engine: random writes, reads, clock moves, reclaim,
// checkpoints, bulk loads and reopens against plain HashMaps.
//
// The model mirrors the engine's layers instead of flattening them, because the layering is
// observable:
// - `delta` is what the in-memory delta holds: the writes since the last checkpoint, minus what
//   the reclaimer dropped. Reopening rebuilds it by replaying `log` (the WAL after the
//   checkpoint), so values the reclaimer dropped come back until the next checkpoint.
// - `base` is what the view's snapshot holds: the merge of delta and base at the last
//   checkpoint with expired values removed (so a value expired at a checkpoint reads NOT_FOUND
//   afterwards, not OUTSIDE_MAX_AGE), or exactly the rows of the last bulk load (a load replaces
//   the base only: values still in the delta keep winning when newer, values a checkpoint
//   already folded into the base are gone).
// - A read takes per feature the newer of delta and base by (event, created), the delta on
//   ties, then applies the TTL or max age to that value.
// Checkpoints run with no concurrent writes, so the delta written during one is always empty.

/// View `m` mixes every kind of feature; view `n` has other TTLs.
fn base_model_schema() -> String {
    let n = include_str!("../../testdata/other-ttls.toml");
    format!(
        "[[entity]]\nname = \"u\"\njoin_keys = [{{ name = \"id\", type = \"int64\" }}]\n{}{n}",
        mixed_view("m", "u")
    )
}

/// Entity ids written are below this; reads also ask for a few above it.
const MODEL_IDS: i64 = 40;

#[derive(Debug, Clone)]
struct ModelCell {
    value: Value,
    ts: i64,
    created: i64,
}

impl ModelCell {
    fn order(&self) -> (i64, i64) {
        (self.ts, self.created)
    }
}

type ModelLayer = HashMap<i64, Vec<Option<ModelCell>>>;

#[derive(Debug, Default)]
struct ModelView {
    delta: ModelLayer,
    base: ModelLayer,
    /// Whether the manifest names a snapshot for the view (an empty bulk load counts).
    has_snapshot: bool,
}

struct Model {
    reg: Registry,
    views: Vec<ModelView>,
    /// Write batches logged since the last checkpoint, in log order: what a reopen replays.
    log: Vec<(usize, Vec<(i64, Row)>)>,
}

/// Last write wins within one layer: a later write with an equal (event, created) wins.
fn model_apply(layer: &mut ModelLayer, nfeat: usize, id: i64, row: &Row) {
    let cells = layer.entry(id).or_insert_with(|| vec![None; nfeat]);
    let created = row.created_ts.unwrap_or(crate::record::NO_CREATED);
    for (f, v) in &row.values {
        let cell = ModelCell {
            value: v.clone(),
            ts: row.event_ts,
            created,
        };
        if cells[*f].as_ref().is_none_or(|c| cell.order() >= c.order()) {
            cells[*f] = Some(cell);
        }
    }
}

fn ttl_micros(view: &FeatureView, f: usize) -> i64 {
    view.feature_ttl_secs(f) as i64 * 1_000_000
}

fn expired(view: &FeatureView, f: usize, ts: i64, now: i64) -> bool {
    let ttl = ttl_micros(view, f);
    ttl > 0 && ts < now - ttl
}

impl Model {
    fn new(reg: Registry) -> Self {
        let views = reg.views().iter().map(|_| ModelView::default()).collect();
        Self {
            reg,
            views,
            log: Vec::new(),
        }
    }

    fn view(&self, v: usize) -> &FeatureView {
        &self.reg.views()[v]
    }

    /// What a read merges to for one feature, before TTL.
    fn visible(&self, v: usize, id: i64, f: usize) -> Option<&ModelCell> {
        let mv = &self.views[v];
        let d = mv.delta.get(&id).and_then(|c| c[f].as_ref());
        let b = mv.base.get(&id).and_then(|c| c[f].as_ref());
        match (d, b) {
            (Some(d), Some(b)) if b.order() > d.order() => Some(b),
            (Some(d), _) => Some(d),
            (None, b) => b,
        }
    }

    fn write(&mut self, v: usize, rows: Vec<(i64, Row)>) {
        let n = self.view(v).features.len();
        for (id, row) in &rows {
            model_apply(&mut self.views[v].delta, n, *id, row);
        }
        self.log.push((v, rows));
    }

    /// Folds delta into base per view, dropping values expired at `now`. Returns the values
    /// dropped and the entity count of each view left non-empty.
    fn checkpoint(&mut self, now: i64) -> (u64, Vec<(String, u64)>) {
        let mut dropped = 0;
        let mut views = Vec::new();
        for v in 0..self.views.len() {
            let view = self.view(v).clone();
            let mv = &self.views[v];
            let ids: std::collections::BTreeSet<i64> =
                mv.delta.keys().chain(mv.base.keys()).copied().collect();
            let mut next = ModelLayer::new();
            for id in ids {
                let cells: Vec<Option<ModelCell>> = (0..view.features.len())
                    .map(|f| {
                        let c = self.visible(v, id, f)?;
                        if expired(&view, f, c.ts, now) {
                            dropped += 1;
                            return None;
                        }
                        Some(c.clone())
                    })
                    .collect();
                if cells.iter().any(Option::is_some) {
                    next.insert(id, cells);
                }
            }
            let mv = &mut self.views[v];
            mv.delta.clear();
            mv.has_snapshot = !next.is_empty();
            if mv.has_snapshot {
                views.push((view.name.clone(), next.len() as u64));
            }
            mv.base = next;
        }
        self.log.clear();
        (dropped, views)
    }

    /// The reclaimer: expired values leave the delta, and entities left empty with them.
    fn reclaim(&mut self, now: i64) -> (u64, u64) {
        let (mut values, mut entities) = (0, 0);
        for v in 0..self.views.len() {
            let view = self.view(v).clone();
            self.views[v].delta.retain(|_, cells| {
                for (f, c) in cells.iter_mut().enumerate() {
                    if c.as_ref().is_some_and(|c| expired(&view, f, c.ts, now)) {
                        *c = None;
                        values += 1;
                    }
                }
                let keep = cells.iter().any(Option::is_some);
                entities += u64::from(!keep);
                keep
            });
        }
        (values, entities)
    }

    /// A bulk load: the view's base becomes exactly `rows`.
    fn load(&mut self, v: usize, rows: &[(i64, Row)]) {
        let n = self.view(v).features.len();
        let mut base = ModelLayer::new();
        for (id, row) in rows {
            model_apply(&mut base, n, *id, row);
        }
        let mv = &mut self.views[v];
        mv.base = base;
        mv.has_snapshot = true;
    }

    /// A restart: the snapshots stay, the delta is what replaying the log rebuilds.
    fn reopen(&mut self) {
        for mv in &mut self.views {
            mv.delta.clear();
        }
        for (v, rows) in std::mem::take(&mut self.log) {
            self.write(v, rows);
        }
    }
}

/// A row for entity `id` of `view`: event time around `now` (late, equal and future ones; on
/// a coarse grid, so equal timestamps are common), an optional created time, a random
/// non-empty subset of the features, some nulls.
fn model_row(rng: &mut SmallRng, view: &FeatureView, id: i64, now: i64) -> Row {
    let mut ts = now - rng.random_range(0..18) * 5 * MIN + rng.random_range(-1..2) * 1_000_000;
    if rng.random_ratio(1, 4) {
        // Off the whole second: the record codec stores such timestamps differently.
        ts += rng.random_range(0..1_000_000);
    }
    let n = view.features.len();
    let mut feats: Vec<usize> = (0..n).filter(|_| rng.random_ratio(1, 2)).collect();
    if feats.is_empty() {
        feats.push(rng.random_range(0..n));
    }
    Row {
        key: model_key(id),
        event_ts: ts,
        created_ts: rng.random_ratio(1, 3).then(|| rng.random_range(0..3)),
        values: feats
            .into_iter()
            .map(|f| (f, random_value(rng, view.features[f].ty)))
            .collect(),
    }
}

fn model_key(id: i64) -> Vec<u8> {
    static ENTITY: std::sync::OnceLock<crate::Entity> = std::sync::OnceLock::new();
    let entity = ENTITY.get_or_init(|| registry(&base_model_schema()).entity("u").unwrap().clone());
    int_key(entity, id)
}

/// The model schema, with every view's records compressed (`zstd`) or left to `auto`.
fn model_schema(zstd: bool) -> String {
    if zstd {
        base_model_schema().replace(
            "entity = \"u\"\n",
            "entity = \"u\"\ncompression = \"zstd\"\n",
        )
    } else {
        base_model_schema()
    }
}

fn model_config(dir: &Path, fsync: FsyncPolicy, zstd: bool) -> DbConfig {
    let mut c = DbConfig::new(dir);
    c.registry = Some(registry(&model_schema(zstd)));
    c.store.shards = 4;
    c.wal.fsync = fsync;
    c.wal.segment_size = 16 << 10;
    c
}

/// Reads `feats` of view `v` for `ids` and checks every status, event time and value.
#[allow(clippy::too_many_arguments)]
fn check_read(
    db: &Db,
    model: &Model,
    v: usize,
    ids: &[i64],
    feats: &[usize],
    opts: ReadOptions,
    now: i64,
    ctx: &str,
) {
    let view = model.view(v);
    let refs: Vec<String> = feats
        .iter()
        .map(|f| format!("{}:{}", view.name, view.features[*f].name))
        .collect();
    let sel = db.select(&refs).unwrap();
    let mut kb = KeyBatch::new();
    ids.iter().for_each(|id| kb.push_encoded(&model_key(*id)));
    let mut out = GetResult::new();
    db.get(&sel, &kb, &opts, &mut out).unwrap();
    let now = opts.now.unwrap_or(now);
    for (c, &f) in feats.iter().enumerate() {
        let bound = match (ttl_micros(view, f), opts.max_age) {
            (0, None) => None,
            (0, Some(m)) => Some(m),
            (t, None) => Some(t),
            (t, Some(m)) => Some(t.min(m)),
        };
        let col = &out.columns[c];
        for (r, id) in ids.iter().enumerate() {
            let ctx = format!("{ctx}: key {id} feature {}", refs[c]);
            let expected = model.visible(v, *id, f).map(|mc| (mc.ts, &mc.value));
            check_cell(col, r, expected, bound.map(|b| now - b), &ctx);
        }
    }
}

/// Reads every feature of every view for every id (and a few never written) and checks the
/// entity counts of both layers.
fn check_everything(db: &Db, model: &Model, now: i64, ctx: &str) {
    let ids: Vec<i64> = (0..MODEL_IDS + 3).collect();
    for v in 0..model.views.len() {
        let feats: Vec<usize> = (0..model.view(v).features.len()).collect();
        check_read(db, model, v, &ids, &feats, ReadOptions::default(), now, ctx);
        let st = &db.stats().views[v];
        let mv = &model.views[v];
        assert_eq!(
            (st.entities, st.base_entities),
            (mv.delta.len() as u64, mv.base.len() as u64),
            "{ctx}: entities (delta, base) of view {}",
            st.view
        );
    }
}

/// The snapshot directory holds exactly the files the manifest names. Returns how many of
/// their records are compressed.
fn check_snapshot_files(dir: &Path, ctx: &str) -> usize {
    let manifest = Manifest::load(dir).unwrap().unwrap();
    let mut named: Vec<String> = manifest.snapshots.iter().map(|s| s.file.clone()).collect();
    let mut present: Vec<String> = fs::read_dir(dir.join(SNAPSHOT_DIR))
        .unwrap()
        .map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            PathBuf::from(SNAPSHOT_DIR).join(name).display().to_string()
        })
        .collect();
    named.sort();
    present.sort();
    assert_eq!(present, named, "{ctx}: snapshot files vs manifest");
    named
        .iter()
        .map(|f| {
            let snap = crate::Snapshot::open(dir.join(f)).unwrap();
            snap.iter()
                .filter(|(_, r)| crate::pack::is_packed(r))
                .count()
        })
        .sum()
}

#[test]
fn model_based_random_operations_with_checkpoints_loads_and_reopens() {
    // Seeds run side by side: each spends most of its time waiting for fsyncs.
    let seeds: Vec<_> = (0..8u64)
        .map(|seed| {
            // fsync = always costs a flush per write; in-process the policies only differ in
            // when the OS is told to flush, so half the seeds run without it.
            let fsync = if seed % 2 == 0 {
                FsyncPolicy::Always
            } else {
                FsyncPolicy::Never
            };
            std::thread::Builder::new()
                .name(format!("model seed {seed}"))
                .spawn(move || run_durable_model(seed, 1500, fsync))
                .unwrap()
        })
        .collect();
    for s in seeds {
        if let Err(panic) = s.join() {
            std::panic::resume_unwind(panic);
        }
    }
}

fn run_durable_model(seed: u64, steps: usize, fsync: FsyncPolicy) {
    let d = TempDir::new(&format!("model-{seed}"));
    let staging = TempDir::new(&format!("model-{seed}-staging"));
    let load_path = staging.path().join("load.qsnap");
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut now = T0;
    let clock = ManualClock::new(now);
    // Seeds 2 and 3 mod 4 compress every snapshot (both fsync policies get both).
    let zstd = seed % 4 >= 2;
    let reg = registry(&model_schema(zstd));
    assert_eq!(
        reg.views()[0].compression.policy,
        if zstd {
            CompressionPolicy::Zstd
        } else {
            CompressionPolicy::Auto
        }
    );
    let mut model = Model::new(reg.clone());
    let mut db = Db::open(model_config(d.path(), fsync, zstd), Arc::new(clock.clone()))
        .unwrap()
        .0;
    let mut counts = [0usize; 8];
    let mut packed_seen = 0;
    for step in 0..steps {
        let ctx = format!("seed {seed} step {step}");
        let op = rng.random_range(0..100);
        let v = usize::from(rng.random_ratio(1, 4));
        let view = reg.views()[v].clone();
        match op {
            0..=39 => {
                counts[0] += 1;
                let rows: Vec<(i64, Row)> = (0..rng.random_range(1..6))
                    .map(|_| {
                        let id = rng.random_range(0..MODEL_IDS);
                        (id, model_row(&mut rng, &view, id, now))
                    })
                    .collect();
                let batch: Vec<Row> = rows.iter().map(|(_, r)| r.clone()).collect();
                db.write(&view.name, &batch).unwrap();
                model.write(v, rows);
            }
            40..=67 => {
                counts[1] += 1;
                let ids: Vec<i64> = (0..rng.random_range(1..30))
                    .map(|_| rng.random_range(0..MODEL_IDS + 5))
                    .collect();
                let nf = view.features.len();
                let feats: Vec<usize> = (0..rng.random_range(1..8))
                    .map(|_| rng.random_range(0..nf))
                    .collect();
                let opts = ReadOptions {
                    max_age: rng
                        .random_ratio(1, 4)
                        .then(|| rng.random_range(0..120) * MIN),
                    now: rng
                        .random_ratio(1, 8)
                        .then(|| now + rng.random_range(-60..60) * MIN),
                    max_variable_bytes: None,
                };
                check_read(&db, &model, v, &ids, &feats, opts, now, &ctx);
            }
            68..=79 => {
                counts[2] += 1;
                // Half the time land exactly on, or just past, some value's TTL boundary.
                let mut boundaries: Vec<i64> = Vec::new();
                if rng.random() {
                    for (vi, mv) in model.views.iter().enumerate() {
                        let vd = model.view(vi);
                        for cells in mv.delta.values().chain(mv.base.values()) {
                            for (f, c) in cells.iter().enumerate() {
                                let ttl = ttl_micros(vd, f);
                                if let (Some(c), true) = (c, ttl > 0) {
                                    boundaries.push(c.ts + ttl);
                                }
                            }
                        }
                    }
                    boundaries.retain(|b| *b >= now && *b < now + 2 * 60 * MIN);
                }
                now = if boundaries.is_empty() {
                    now + rng.random_range(0..40) * MIN + rng.random_range(0..1_000_000)
                } else {
                    boundaries[rng.random_range(0..boundaries.len())] + rng.random_range(0..2)
                };
                clock.set(now);
                check_everything(&db, &model, now, &ctx);
            }
            80..=83 => {
                counts[3] += 1;
                let st = db.store().reclaim_all();
                let (values, entities) = model.reclaim(now);
                assert_eq!(
                    (st.values_expired, st.entities_removed),
                    (values, entities),
                    "{ctx}: reclaim"
                );
                check_everything(&db, &model, now, &ctx);
            }
            84..=89 => {
                counts[4] += 1;
                let st = db.checkpoint().unwrap();
                let (dropped, views) = model.checkpoint(now);
                assert_eq!(st.values_expired, dropped, "{ctx}: values expired");
                assert_eq!(st.views, views, "{ctx}: views written");
                check_everything(&db, &model, now, &ctx);
                packed_seen += check_snapshot_files(d.path(), &ctx);
            }
            90..=93 => {
                counts[5] += 1;
                let mut ids: Vec<i64> = (0..MODEL_IDS + 5).collect();
                let k = if rng.random_ratio(1, 10) {
                    0
                } else {
                    rng.random_range(1..25)
                };
                let rows: Vec<(i64, Row)> = (0..k)
                    .map(|_| {
                        let id = ids.swap_remove(rng.random_range(0..ids.len()));
                        (id, model_row(&mut rng, &view, id, now))
                    })
                    .collect();
                // The same staging path every time: the previous file there is the live base
                // (linked into the data directory), which publishing a new one must not touch.
                let mut b = SnapshotBuilder::create(&load_path, &reg, &view.name, now).unwrap();
                for (_, r) in &rows {
                    b.add(r).unwrap();
                }
                b.finish().unwrap();
                let loaded = db.load_snapshot(&view.name, &load_path).unwrap();
                assert_eq!(loaded, k as u64, "{ctx}: entities loaded");
                model.load(v, &rows);
                check_everything(&db, &model, now, &ctx);
                packed_seen += check_snapshot_files(d.path(), &ctx);
            }
            _ => {
                let crash = rng.random();
                counts[if crash { 7 } else { 6 }] += 1;
                if crash {
                    // Dropped, not closed: whatever was acknowledged must be back. (Dropping
                    // still stops the WAL writer in order; tests/tests/crash.rs kills real
                    // processes.)
                    drop(db);
                } else {
                    db.close().unwrap();
                }
                let (next, report) =
                    Db::open(model_config(d.path(), fsync, zstd), Arc::new(clock.clone())).unwrap();
                db = next;
                assert_eq!(
                    report.wal.replayed,
                    model.log.len() as u64,
                    "{ctx}: replayed"
                );
                let mut snapshots = report.snapshots.clone();
                let mut expect: Vec<(String, u64)> = model
                    .views
                    .iter()
                    .enumerate()
                    .filter(|(_, mv)| mv.has_snapshot)
                    .map(|(vi, mv)| (model.view(vi).name.clone(), mv.base.len() as u64))
                    .collect();
                snapshots.sort();
                expect.sort();
                assert_eq!(snapshots, expect, "{ctx}: snapshots opened");
                model.reopen();
                check_everything(&db, &model, now, &ctx);
                packed_seen += check_snapshot_files(d.path(), &ctx);
            }
        }
    }
    check_everything(&db, &model, now, &format!("seed {seed} end"));
    db.close().unwrap();
    // The compressing seeds really read compressed records back (the default `auto` seeds
    // keep these small records plain).
    assert_eq!(
        packed_seen > 0,
        zstd,
        "seed {seed}: {packed_seen} packed records seen"
    );
    println!(
        "seed {seed}: {counts:?} (writes, reads, clock moves, reclaims, checkpoints, loads, \
         reopens, crash reopens)"
    );
}

fn wal_segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir.join(WAL_DIR))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

fn corrupt_reason(r: Result<(Db, OpenReport)>) -> (String, String) {
    match r {
        Err(EngineError::Corrupt { file, reason, .. }) => (file, reason),
        Err(e) => panic!("expected Corrupt, got {e:?}"),
        Ok(_) => panic!("expected Corrupt, but the directory opened"),
    }
}

/// 200 rows logged with `fsync = always`, a checkpoint after the first 100, then closed.
fn checkpointed_dir(dir: &Path, clock: &ManualClock) -> u64 {
    let mut c = config(dir);
    c.wal.fsync = FsyncPolicy::Always;
    let (db, _) = Db::open(c, Arc::new(clock.clone())).unwrap();
    for i in 0..100 {
        db.write("v", &[row(i, T0, i, "before")]).unwrap();
    }
    let seq = db.checkpoint().unwrap().seq;
    for i in 100..200 {
        db.write("v", &[row(i, T0, i, "after")]).unwrap();
    }
    db.close().unwrap();
    seq
}

fn salvaged(dir: &Path, clock: &ManualClock) -> (Db, OpenReport) {
    let mut c = config(dir);
    c.salvage = true;
    Db::open(c, Arc::new(clock.clone())).unwrap()
}

#[test]
fn deleting_the_only_wal_segment_after_a_checkpoint_is_refused() {
    let d = TempDir::new("del-wal");
    let clock = ManualClock::new(T0);
    let seq = checkpointed_dir(d.path(), &clock);
    let segs = wal_segments(d.path());
    assert_eq!(segs.len(), 1, "the checkpoint trimmed the log: {segs:?}");
    fs::remove_file(&segs[0]).unwrap();
    let (file, reason) = corrupt_reason(Db::open(config(d.path()), Arc::new(clock.clone())));
    assert_eq!(Path::new(&file), segs[0]);
    assert!(
        reason.contains(&format!("every record from {} on is lost", seq + 1)),
        "{reason}"
    );
    // Salvage serves what the snapshot holds and says what it gave up.
    let (db, report) = salvaged(d.path(), &clock);
    assert!(report.wal.warnings[0].contains("salvage"), "{report:?}");
    assert_eq!(read(&db, &[99])[0].0, Some(Value::Int64(99)));
    assert_eq!(read(&db, &[100])[0].0, None);
    db.write("v", &[row(1, T0, 1, "x")]).unwrap();
    db.close().unwrap();
    let (_db, report) = Db::open(config(d.path()), Arc::new(clock.clone())).unwrap();
    assert!(report.wal.warnings.is_empty(), "{report:?}");
}

#[test]
fn a_wal_segment_cut_half_way_is_refused() {
    let d = TempDir::new("cut-wal");
    let clock = ManualClock::new(T0);
    checkpointed_dir(d.path(), &clock);
    let seg = wal_segments(d.path()).pop().unwrap();
    let len = fs::metadata(&seg).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let (file, reason) = corrupt_reason(Db::open(config(d.path()), Arc::new(clock.clone())));
    assert_eq!(Path::new(&file), seg);
    assert!(reason.contains("cut short"), "{reason}");
    let (db, report) = salvaged(d.path(), &clock);
    assert!(!report.wal.dropped_files.is_empty(), "{report:?}");
    assert_eq!(read(&db, &[99])[0].0, Some(Value::Int64(99)));
}

#[test]
fn a_deleted_manifest_is_refused_when_data_remains() {
    let d = TempDir::new("no-manifest");
    let clock = ManualClock::new(T0);
    checkpointed_dir(d.path(), &clock);
    fs::remove_file(d.path().join(crate::fs::MANIFEST_FILE)).unwrap();
    let (file, reason) = corrupt_reason(Db::open(config(d.path()), Arc::new(clock.clone())));
    assert!(file.ends_with(crate::fs::MANIFEST_FILE), "{file}");
    assert!(reason.contains("missing"), "{reason}");
    let snap = fs::read_dir(d.path().join(SNAPSHOT_DIR))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    for named in [snap, wal_segments(d.path())[0].clone()] {
        assert!(
            reason.contains(&named.display().to_string()),
            "{named:?} not in {reason}"
        );
    }
    // Nothing was created or changed by refusing.
    assert!(!d.path().join(crate::fs::MANIFEST_FILE).exists());
}

#[test]
fn a_new_directory_names_its_first_wal_segment() {
    let parent = TempDir::new("brand-new");
    let d = parent.join("db");
    let clock = ManualClock::new(T0);
    let (db, report) = Db::open(config(&d), Arc::new(clock.clone())).unwrap();
    assert!(report.wal.warnings.is_empty());
    db.write("v", &[row(1, T0, 1, "x")]).unwrap();
    db.close().unwrap();
    let m = Manifest::load(&d).unwrap().unwrap();
    assert_eq!(m.wal_segment, Some(1));
    // Empty subdirectories (a directory prepared by hand) are not data.
    let d2 = TempDir::new("brand-new-dirs");
    fs::create_dir_all(d2.path().join(WAL_DIR)).unwrap();
    fs::create_dir_all(d2.path().join(SNAPSHOT_DIR)).unwrap();
    Db::open(config(d2.path()), Arc::new(clock.clone())).unwrap();
}

#[test]
fn a_manifest_without_a_wal_segment_is_brought_up_to_date() {
    let d = TempDir::new("legacy-manifest");
    let clock = ManualClock::new(T0);
    checkpointed_dir(d.path(), &clock);
    let mut m = Manifest::load(d.path()).unwrap().unwrap();
    let named = m.wal_segment.take();
    assert!(named.is_some());
    m.store(d.path()).unwrap();
    let (db, report) = Db::open(config(d.path()), Arc::new(clock.clone())).unwrap();
    assert!(report.wal.warnings.is_empty(), "{report:?}");
    assert_eq!(read(&db, &[150])[0].0, Some(Value::Int64(150)));
    db.close().unwrap();
    assert_eq!(
        Manifest::load(d.path()).unwrap().unwrap().wal_segment,
        named
    );
}
