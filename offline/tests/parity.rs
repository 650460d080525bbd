//! Parity (docs/semantics.md, "Parity"): materializing history as of T and reading online at
//! T gives exactly the values the point-in-time join gives for entity rows at T — feature by
//! feature, nulls included — and both equal the brute-force reference.

mod common;

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::RecordBatch;
use common::*;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use quiver_engine::{
    Db, DbConfig, KeyBatch, KeyPart, ManualClock, ReadOptions, Registry, Status, Value,
};
use quiver_offline::{
    materialize_into_db, materialize_snapshot, read_parquet, write_parquet, write_training_set,
    EpochUnit, FeaturePlan, History, JoinOptions, MaterializeOptions,
};
use quiver_testkit::TempDir;

/// Writes `rows` of `view` as Parquet in row groups of `group_rows` rows.
fn write_history(reg: &Registry, path: &Path, view: &str, rows: &[HistRow], group_rows: usize) {
    let batch = history_batch(reg, view, rows);
    let file = File::create(path).expect("create");
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(group_rows))
        .build();
    let mut w = ArrowWriter::try_new(file, batch.schema(), Some(props)).expect("writer");
    w.write(&batch).expect("write");
    w.close().expect("close");
}

const USERS: i64 = 300;
/// Users that appear in entity rows but never in any history.
const EXTRA_USERS: i64 = 20;
const MERCHANTS: usize = 4;
/// Event times span 0..12 s; T = 9 s leaves rows after T, and TTLs of 2-5 s leave a mix of
/// fresh and expired values at T.
const SPAN: i64 = 12;
const T: i64 = 9;
/// The first window of the incremental test ends here.
const T1: i64 = 6;

/// Random history of views a, b, c written as Parquet under `dir` where the registry's
/// sources point: a as a directory of two files with small row groups (many units, real
/// statistics) plus a marker file to ignore; b and c as single files with one large group.
fn write_histories(reg: &Registry, dir: &Path, seed: u64) -> Vec<(&'static str, Vec<HistRow>)> {
    let mut rng = rng(seed);
    let hist: Vec<(&str, Vec<HistRow>)> = ["a", "b", "c"]
        .into_iter()
        .map(|v| (v, random_history(&mut rng, reg, v, 1500, USERS, SPAN)))
        .collect();
    std::fs::create_dir_all(dir.join("a")).expect("mkdir");
    std::fs::write(dir.join("a/_SUCCESS"), b"").expect("marker");
    let a = &hist[0].1;
    write_history(reg, &dir.join("a/part-0.parquet"), "a", &a[..700], 64);
    write_history(reg, &dir.join("a/part-1.parquet"), "a", &a[700..], 64);
    write_history(reg, &dir.join("b.parquet"), "b", &hist[1].1, 4096);
    write_history(reg, &dir.join("c.parquet"), "c", &hist[2].1, 4096);
    hist
}

fn open(reg: &Registry, dir: &Path, view: &str) -> History {
    History::for_view(reg, view, dir, EpochUnit::Seconds).expect(view)
}

/// Reads every entity (with and without history) online from `db` (its clock at `t`) and
/// checks each feature against the training-set file built for entity rows at `t` and against
/// the brute-force reference. Returns how often each online status was seen.
fn check_parity(
    reg: &Registry,
    db: &Db,
    dir: &Path,
    hist: &[(&str, Vec<HistRow>)],
    t: i64,
) -> [usize; 5] {
    let users: Vec<EntityRow> = (0..USERS + EXTRA_USERS)
        .map(|u| EntityRow {
            user: Some(u),
            merchant: String::new(),
            t: Some(t),
            label: u,
        })
        .collect();
    let pairs: Vec<EntityRow> = (0..USERS + EXTRA_USERS)
        .flat_map(|u| {
            (0..MERCHANTS).map(move |m| EntityRow {
                user: Some(u),
                merchant: format!("m{m}"),
                t: Some(t),
                label: u,
            })
        })
        .collect();
    let mut statuses = [0usize; 5];
    for (features, rows) in [
        (vec!["a:x", "a:y", "a:z", "b:w", "b:l"], &users),
        (vec!["c:e", "c:n", "c:q"], &pairs),
    ] {
        // Online, at t.
        let sel = db.select(&features).expect("select");
        let entity = sel.entity().clone();
        let mut keys = KeyBatch::new();
        for r in rows.iter() {
            let user = r.user.expect("user");
            if entity.join_keys.len() == 2 {
                keys.push(
                    &entity,
                    &[KeyPart::Int64(user), KeyPart::String(&r.merchant)],
                )
            } else {
                keys.push(&entity, &[KeyPart::Int64(user)])
            }
            .expect("key");
        }
        let mut got = quiver_engine::GetResult::new();
        db.get(&sel, &keys, &ReadOptions::default(), &mut got)
            .expect("get");
        let online: Vec<Vec<Value>> = (0..rows.len())
            .map(|i| {
                got.columns
                    .iter()
                    .map(|c| {
                        statuses[c.statuses[i] as usize] += 1;
                        c.get(i).unwrap_or(Value::Null)
                    })
                    .collect()
            })
            .collect();

        // Offline: the training-set file for the same rows at t.
        let tag = format!("{}-{t}", features[0].replace(':', "_"));
        let ent_path = dir.join(format!("entities-{tag}.parquet"));
        write_parquet(&ent_path, &entity_batch(rows)).expect("entities");
        let out_path = dir.join(format!("train-{tag}.parquet"));
        let plan = FeaturePlan::new(reg, &features, false).expect("plan");
        let histories: Vec<History> = plan
            .views(reg)
            .into_iter()
            .map(|v| open(reg, dir, v))
            .collect();
        let opts = JoinOptions {
            threads: 2,
            chunk_rows: 500,
            ..JoinOptions::default()
        };
        let summary = write_training_set(reg, &plan, &histories, &ent_path, &out_path, &opts)
            .expect("historical");
        assert_eq!(summary.rows, rows.len() as u64);
        let out: RecordBatch = read_parquet(&out_path).expect("read back");
        let offline = output_values(reg, &out, &features, 4);

        let want = reference(reg, hist, rows, &features);
        for (i, r) in rows.iter().enumerate() {
            for (k, f) in features.iter().enumerate() {
                assert!(
                    online[i][k].bit_eq(&offline[i][k]) && offline[i][k].bit_eq(&want[i][k]),
                    "{f} for user {:?} merchant {:?} at {t}: online {:?}, join {:?}, \
                     reference {:?}",
                    r.user,
                    r.merchant,
                    online[i][k],
                    offline[i][k],
                    want[i][k]
                );
            }
        }
    }
    statuses
}

/// Every status shows up, so the comparison covers values, nulls, expiry and absence.
fn assert_all_statuses(statuses: [usize; 5]) {
    assert!(statuses[Status::Present as usize] > 100, "{statuses:?}");
    assert!(statuses[Status::NullValue as usize] > 20, "{statuses:?}");
    assert!(
        statuses[Status::OutsideMaxAge as usize] > 20,
        "{statuses:?}"
    );
    assert!(statuses[Status::NotFound as usize] > 20, "{statuses:?}");
}

#[test]
fn materialize_then_read_online_equals_the_point_in_time_join() {
    materialize_then_read_online(registry(), "parity");
}

/// The same with every view's snapshots compressed: training and serving still agree.
#[test]
fn parity_holds_with_compressed_snapshots() {
    let toml = REGISTRY.replace(
        "[[feature_view]]\n",
        "[[feature_view]]\ncompression = \"zstd\"\ncompression_level = 5\n",
    );
    let reg = Registry::from_toml(&toml).expect("registry");
    assert!(reg
        .views()
        .iter()
        .all(|v| v.compression.policy == quiver_engine::CompressionPolicy::Zstd));
    materialize_then_read_online(reg, "parity-zstd");
}

fn materialize_then_read_online(reg: Registry, tag: &str) {
    let dir = TempDir::new(tag);
    let hist = write_histories(&reg, dir.path(), 42);
    assert!(open(&reg, dir.path(), "a").row_groups() > 10);

    // Materialize as of T: b and c straight into a data directory, a through a snapshot file.
    let db_dir = dir.path().join("db");
    let opts = MaterializeOptions {
        end: T * SEC,
        threads: 2,
        ..MaterializeOptions::default()
    };
    for v in ["b", "c"] {
        let s = materialize_into_db(&reg, &open(&reg, dir.path(), v), &db_dir, &opts)
            .expect("materialize");
        assert!(s.entities > 0 && s.rows_read > 0, "{s}");
        assert!(s.max_event_ts.is_some_and(|m| m <= T * SEC), "{s}");
    }
    let snap = dir.path().join("a.qsnap");
    let s =
        materialize_snapshot(&reg, &open(&reg, dir.path(), "a"), &snap, &opts).expect("snapshot");
    assert!(s.bytes > 0, "{s}");
    let file = quiver_engine::Snapshot::open(&snap).expect("open");
    let (plain, stored) = file.record_sizes();
    if reg.view("a").expect("a").compression.policy == quiver_engine::CompressionPolicy::Zstd {
        assert!(
            stored < plain,
            "a compressed snapshot: {stored} of {plain} bytes"
        );
        eprintln!("view a, zstd: {stored} of {plain} record bytes stored");
    }
    drop(file);
    let (db, _) =
        Db::open(DbConfig::new(&db_dir), Arc::new(ManualClock::new(T * SEC))).expect("db");
    db.load_snapshot("a", &snap).expect("load");

    assert_all_statuses(check_parity(&reg, &db, dir.path(), &hist, T));
    db.close().expect("close");
}

#[test]
fn a_snapshot_as_of_t1_plus_incremental_writes_up_to_t_equal_the_join_at_t() {
    let reg = registry();
    let dir = TempDir::new("parity-incremental");
    let hist = write_histories(&reg, dir.path(), 7);
    let db_dir = dir.path().join("db");
    for v in ["a", "b", "c"] {
        let h = open(&reg, dir.path(), v);
        let first = MaterializeOptions {
            end: T1 * SEC,
            ..MaterializeOptions::default()
        };
        materialize_into_db(&reg, &h, &db_dir, &first).expect("full");
        // The window after T1 goes through the write path and merges by event time.
        let next = MaterializeOptions {
            start: T1 * SEC + 1,
            end: T * SEC,
            ..MaterializeOptions::default()
        };
        let s = quiver_offline::materialize_rows_into_db(&reg, &h, &db_dir, &next)
            .expect("incremental");
        assert!(s.entities > 0, "{s}");
    }
    let (db, _) =
        Db::open(DbConfig::new(&db_dir), Arc::new(ManualClock::new(T * SEC))).expect("db");
    assert_all_statuses(check_parity(&reg, &db, dir.path(), &hist, T));
    db.close().expect("close");
}
