//! Bad input: each a clear error naming the file and the column, and nothing left behind
//! under the output name.

mod common;

use std::path::Path;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_array::{ListArray, TimestampSecondArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use common::*;
use quiver_engine::{Registry, Value};
use quiver_offline::{
    materialize_snapshot, write_parquet, write_training_set, EpochUnit, FeaturePlan, History,
    JoinOptions, MaterializeOptions, OfflineError,
};
use quiver_testkit::TempDir;

fn batch(cols: Vec<(&str, ArrayRef)>) -> RecordBatch {
    let fields: Vec<Field> = cols
        .iter()
        .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
        .collect();
    RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        cols.into_iter().map(|c| c.1).collect(),
    )
    .expect("batch")
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn good_history(reg: &Registry, dir: &Path) {
    let rows = vec![HistRow {
        user: 1,
        merchant: String::new(),
        ts: Some(5),
        created: None,
        values: vec![
            Value::Int64(1),
            Value::String("s".into()),
            Value::Float64(0.5),
        ],
    }];
    std::fs::create_dir_all(dir.join("a")).expect("mkdir");
    write_parquet(
        &dir.join("a/part-0.parquet"),
        &history_batch(reg, "a", &rows),
    )
    .expect("write");
}

#[test]
fn history_with_missing_and_mistyped_columns_names_each_of_them() {
    let reg = registry();
    let dir = TempDir::new("bad-history");
    std::fs::create_dir_all(dir.path().join("a")).expect("mkdir");
    let bad = batch(vec![
        ("user_id", Arc::new(StringArray::from(vec!["1"]))),
        (
            "event_timestamp",
            Arc::new(TimestampSecondArray::from(vec![5])),
        ),
        ("x", Arc::new(StringArray::from(vec!["not a number"]))),
        ("y", Arc::new(StringArray::from(vec!["fine"]))),
        // z is mapped to column z_col, which is missing.
    ]);
    write_parquet(&dir.path().join("a/part-0.parquet"), &bad).expect("write");
    let e = History::for_view(&reg, "a", dir.path(), EpochUnit::Seconds).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, OfflineError::Schema { .. }), "{msg}");
    assert!(msg.contains("part-0.parquet"), "{msg}");
    assert!(msg.contains("feature view \"a\""), "{msg}");
    assert!(
        msg.contains("column \"user_id\" (join key of entity \"user\", int64) is Utf8"),
        "{msg}"
    );
    assert!(
        msg.contains("column \"x\" (feature \"x\", int64) is Utf8, expected Int64"),
        "{msg}"
    );
    assert!(
        msg.contains("missing column \"z_col\" (feature \"z\", float64)"),
        "{msg}"
    );
    assert!(
        !msg.contains("\"y\""),
        "a good column is not reported: {msg}"
    );
}

#[test]
fn a_corrupt_parquet_file_is_named() {
    let reg = registry();
    let dir = TempDir::new("corrupt");
    std::fs::create_dir_all(dir.path().join("a")).expect("mkdir");
    std::fs::write(
        dir.path().join("a/part-0.parquet"),
        b"PAR1 this is not parquet",
    )
    .expect("w");
    let e = History::for_view(&reg, "a", dir.path(), EpochUnit::Seconds).unwrap_err();
    assert!(matches!(e, OfflineError::Parquet { .. }), "{e}");
    assert!(e.to_string().contains("part-0.parquet"), "{e}");

    // A corrupt entity file too, and no output appears.
    std::fs::remove_file(dir.path().join("a/part-0.parquet")).expect("rm");
    good_history(&reg, dir.path());
    let ents = dir.path().join("entities.parquet");
    std::fs::write(&ents, b"garbage").expect("w");
    let h = History::for_view(&reg, "a", dir.path(), EpochUnit::Seconds).expect("history");
    let plan = FeaturePlan::new(&reg, &["a:x"], false).expect("plan");
    let out = dir.path().join("train.parquet");
    let e =
        write_training_set(&reg, &plan, &[h], &ents, &out, &JoinOptions::default()).unwrap_err();
    assert!(e.to_string().contains("entities.parquet"), "{e}");
    assert!(!out.exists());
}

#[test]
fn entity_rows_without_a_timestamp_column_or_keys_are_refused_and_nothing_is_written() {
    let reg = registry();
    let dir = TempDir::new("bad-entities");
    good_history(&reg, dir.path());
    let ents = dir.path().join("entities.parquet");
    write_parquet(
        &ents,
        &batch(vec![
            ("uid", Arc::new(Int64Array::from(vec![1]))),
            ("when", Arc::new(TimestampSecondArray::from(vec![5]))),
        ]),
    )
    .expect("write");
    let h = History::for_view(&reg, "a", dir.path(), EpochUnit::Seconds).expect("history");
    let plan = FeaturePlan::new(&reg, &["a:x"], false).expect("plan");
    let out = dir.path().join("train.parquet");
    let before = files_in(dir.path());
    let e =
        write_training_set(&reg, &plan, &[h], &ents, &out, &JoinOptions::default()).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("entities.parquet"), "{msg}");
    assert!(
        msg.contains("missing timestamp column \"event_timestamp\""),
        "{msg}"
    );
    assert!(msg.contains("missing join key column \"user_id\""), "{msg}");
    assert_eq!(files_in(dir.path()), before, "no output, no temporary file");

    // The same file works once the timestamp column is named.
    let h = History::for_view(&reg, "a", dir.path(), EpochUnit::Seconds).expect("history");
    let opts = JoinOptions {
        timestamp_column: "when".into(),
        ..JoinOptions::default()
    };
    let e = write_training_set(&reg, &plan, &[h], &ents, &out, &opts).unwrap_err();
    assert!(!e.to_string().contains("timestamp"), "{e}");
}

#[test]
fn an_existing_output_is_never_replaced() {
    let reg = registry();
    let dir = TempDir::new("exists");
    good_history(&reg, dir.path());
    let ents = dir.path().join("entities.parquet");
    write_parquet(
        &ents,
        &entity_batch(&[EntityRow {
            user: Some(1),
            merchant: String::new(),
            t: Some(9),
            label: 1,
        }]),
    )
    .expect("write");
    let out = dir.path().join("train.parquet");
    std::fs::write(&out, b"precious").expect("w");
    let h = History::for_view(&reg, "a", dir.path(), EpochUnit::Seconds).expect("history");
    let plan = FeaturePlan::new(&reg, &["a:x"], false).expect("plan");
    let e =
        write_training_set(&reg, &plan, &[h], &ents, &out, &JoinOptions::default()).unwrap_err();
    assert!(matches!(e, OfflineError::OutputExists { .. }), "{e}");
    assert_eq!(std::fs::read(&out).expect("read"), b"precious");

    let h = History::for_view(&reg, "a", dir.path(), EpochUnit::Seconds).expect("history");
    let e = materialize_snapshot(&reg, &h, &out, &MaterializeOptions::default()).unwrap_err();
    assert!(matches!(e, OfflineError::OutputExists { .. }), "{e}");
    assert_eq!(std::fs::read(&out).expect("read"), b"precious");
}

#[test]
fn unknown_features_and_views_without_history_are_named() {
    let reg = registry();
    let e = FeaturePlan::new(&reg, &["a:x", "nope:x"], false).unwrap_err();
    assert!(
        e.to_string().contains("no feature view named \"nope\""),
        "{e}"
    );
    let e = FeaturePlan::new(&reg, &["a"], false).unwrap_err();
    assert!(e.to_string().contains("view:feature"), "{e}");
    let dir = TempDir::new("nohistory");
    let e = History::for_view(&reg, "a", dir.path(), EpochUnit::Seconds).unwrap_err();
    assert!(e.to_string().contains("/a"), "{e}");
}

#[test]
fn a_vector_of_the_wrong_dimension_is_a_data_error_naming_the_column() {
    let reg = Registry::from_toml(include_str!("fixtures/embedding.toml")).expect("registry");
    let dir = TempDir::new("vector");
    let list = ListArray::from_iter_primitive::<arrow_array::types::Float32Type, _, _>(vec![
        Some(vec![Some(1.0), Some(2.0), Some(3.0)]),
        Some(vec![Some(1.0), Some(2.0)]),
    ]);
    let b = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("item_id", DataType::Utf8, false),
            Field::new(
                "event_timestamp",
                DataType::Timestamp(TimeUnit::Second, None),
                false,
            ),
            Field::new("v", list.data_type().clone(), true),
        ])),
        vec![
            Arc::new(StringArray::from(vec!["a", "b"])),
            Arc::new(TimestampSecondArray::from(vec![1, 2])),
            Arc::new(list),
        ],
    )
    .expect("batch");
    write_parquet(&dir.path().join("emb.parquet"), &b).expect("write");
    let h = History::for_view(&reg, "emb", dir.path(), EpochUnit::Seconds).expect("history");
    let out = dir.path().join("emb.qsnap");
    let e = materialize_snapshot(&reg, &h, &out, &MaterializeOptions::default()).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, OfflineError::Data { .. }), "{msg}");
    assert!(
        msg.contains("emb.parquet") && msg.contains("\"v\""),
        "{msg}"
    );
    assert!(msg.contains("2 components"), "{msg}");
    assert!(!out.exists());
}

#[test]
fn times_outside_years_1_to_9999_are_refused_naming_the_unit() {
    let reg = registry();
    let dir = TempDir::new("time-range");
    good_history(&reg, dir.path());
    let h = || History::for_view(&reg, "a", dir.path(), EpochUnit::Seconds).expect("history");
    let plan = FeaturePlan::new(&reg, &["a:x"], false).expect("plan");
    let out = dir.path().join("train.parquet");
    // Nanoseconds in an int64 column read as seconds: the scale overflows.
    let ents = dir.path().join("entities.parquet");
    write_parquet(
        &ents,
        &batch(vec![
            ("user_id", Arc::new(Int64Array::from(vec![1, 1]))),
            (
                "event_timestamp",
                Arc::new(Int64Array::from(vec![10, 1_700_000_000_000_000_000])),
            ),
        ]),
    )
    .expect("write");
    let e =
        write_training_set(&reg, &plan, &[h()], &ents, &out, &JoinOptions::default()).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("row 1") && msg.contains("seconds"), "{msg}");
    assert!(msg.contains("--epoch-unit"), "{msg}");
    assert!(!out.exists());
    // Read as nanoseconds, the same file joins.
    let opts = JoinOptions {
        epoch_unit: EpochUnit::Nanos,
        ..JoinOptions::default()
    };
    write_training_set(&reg, &plan, &[h()], &ents, &out, &opts).expect("join as ns");
}
