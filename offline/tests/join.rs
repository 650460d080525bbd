//! The point-in-time join against a brute-force reference on thousands of random small cases,
//! and golden cases written by hand from docs/semantics.md, "Point-in-time join".

mod common;

use std::sync::Arc;

use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, TimestampSecondArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use common::*;
use quiver_engine::{Registry, Value};
use quiver_offline::{join_batch, EpochUnit, FeaturePlan, History, JoinOptions};
use rand::seq::SliceRandom;
use rand::Rng;

const ALL: [&str; 8] = ["a:x", "a:y", "a:z", "b:w", "b:l", "c:e", "c:n", "c:q"];

/// Splits rows into 1..=3 in-memory batches (so positions span several units).
fn histories(
    rng: &mut rand::rngs::SmallRng,
    reg: &Registry,
    hist: &[(&str, Vec<HistRow>)],
) -> Vec<History> {
    hist.iter()
        .map(|(view, rows)| {
            let mut batches = Vec::new();
            let mut rest: &[HistRow] = rows;
            while !rest.is_empty() {
                let n = rng.random_range(1..=rest.len());
                batches.push(history_batch(reg, view, &rest[..n]));
                rest = &rest[n..];
            }
            History::from_batches(reg, view, batches, EpochUnit::Seconds).expect("history")
        })
        .collect()
}

fn run(
    reg: &Registry,
    hs: &[History],
    entities: &[EntityRow],
    features: &[&str],
    threads: usize,
) -> (RecordBatch, Vec<Vec<Value>>) {
    let plan = FeaturePlan::new(reg, features, false).expect("plan");
    let batch = entity_batch(entities);
    let opts = JoinOptions {
        threads,
        ..JoinOptions::default()
    };
    let out = join_batch(reg, &plan, hs, &batch, &opts).expect("join");
    let got = output_values(reg, &out, features, 4);
    (out, got)
}

#[test]
fn random_cases_match_the_brute_force_reference() {
    let reg = registry();
    let mut seen = Boundaries::default();
    for case in 0..3000u64 {
        let mut rng = rng(case);
        let users = rng.random_range(1..5);
        let span = rng.random_range(1..10);
        let hist: Vec<(&str, Vec<HistRow>)> = ["a", "b", "c"]
            .into_iter()
            .map(|v| {
                let n = rng.random_range(0..14);
                (v, random_history(&mut rng, &reg, v, n, users, span))
            })
            .collect();
        let hs = histories(&mut rng, &reg, &hist);
        let entities: Vec<EntityRow> = (0..rng.random_range(0..10))
            .map(|i| EntityRow {
                // One more user than the history knows: entities with no rows.
                user: (rng.random_range(0..15) != 0).then(|| rng.random_range(0..=users)),
                merchant: format!("m{}", rng.random_range(0..4)),
                t: (rng.random_range(0..20) != 0).then(|| rng.random_range(-1..span + 3)),
                label: i,
            })
            .collect();
        let mut features = ALL.to_vec();
        features.shuffle(&mut rng);
        features.truncate(rng.random_range(1..=ALL.len()));
        let want = reference_counting(&reg, &hist, &entities, &features, &mut seen);
        let (out, got) = run(&reg, &hs, &entities, &features, 1 + (case % 2) as usize);
        assert!(
            same(&got, &want),
            "case {case}: features {features:?}\nentities {entities:?}\nhistory {hist:?}\n\
             got  {got:?}\nwant {want:?}"
        );
        // Entity columns pass through untouched, in order.
        let input = entity_batch(&entities);
        for c in 0..4 {
            assert_eq!(
                out.column(c).as_ref(),
                input.column(c).as_ref(),
                "case {case}"
            );
        }
    }
    // The boundaries are actually exercised, many times each.
    assert!(seen.at_t > 200, "{seen:?}");
    assert!(seen.at_ttl > 200, "{seen:?}");
    assert!(seen.past_ttl > 200, "{seen:?}");
}

const DAY: i64 = 86_400;

/// One view `purchases` (ttl 7 days, `amount` overrides it with 3 days), history rows given by
/// day number and value.
fn purchases(rows: &[(i64, i64, Option<i64>, Option<i64>)]) -> (Registry, History) {
    let reg = Registry::from_toml(include_str!("fixtures/purchases.toml")).expect("registry");
    let schema = Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Int64, false),
        Field::new("ts", DataType::Timestamp(TimeUnit::Second, None), true),
        Field::new("created", DataType::Int64, true),
        Field::new("total", DataType::Int64, true),
        Field::new("amount", DataType::Int64, true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            ints(rows.iter().map(|r| Some(r.0))),
            seconds(rows.iter().map(|r| Some(r.1))),
            ints(rows.iter().map(|r| r.2)),
            ints(rows.iter().map(|r| r.3)),
            ints(rows.iter().map(|r| r.3.map(|v| v * 10))),
        ],
    )
    .expect("batch");
    let h =
        History::from_batches(&reg, "purchases", vec![batch], EpochUnit::Seconds).expect("history");
    (reg, h)
}

/// An int64 column of `values`.
fn ints(values: impl Iterator<Item = Option<i64>>) -> ArrayRef {
    Arc::new(values.collect::<Int64Array>())
}

/// A timestamp column of `values`, seconds.
fn seconds(values: impl Iterator<Item = Option<i64>>) -> ArrayRef {
    Arc::new(values.collect::<TimestampSecondArray>())
}

fn ask(reg: &Registry, h: History, rows: &[(Option<i64>, i64)]) -> (RecordBatch, Vec<Vec<Value>>) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Int64, true),
        Field::new(
            "event_timestamp",
            DataType::Timestamp(TimeUnit::Second, None),
            false,
        ),
        Field::new("label", DataType::Int64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            ints(rows.iter().map(|r| r.0)),
            seconds(rows.iter().map(|r| Some(r.1))),
            ints((0..rows.len() as i64).map(Some)),
        ],
    )
    .expect("entities");
    let features = ["purchases:total", "purchases:amount"];
    let plan = FeaturePlan::new(reg, &features, false).expect("plan");
    let out = join_batch(reg, &plan, &[h], &batch, &JoinOptions::default()).expect("join");
    let vals = output_values(reg, &out, &features, 3);
    (out, vals)
}

fn i(v: i64) -> Value {
    Value::Int64(v)
}

#[test]
fn golden_purchases_on_jan_1_5_10_predicted_on_later_days() {
    // Day 0 = Jan 1. Purchases on Jan 1, 5 and 10 with running totals 1, 2, 3.
    let (reg, h) = purchases(&[
        (7, 0, None, Some(1)),
        (7, 4 * DAY, None, Some(2)),
        (7, 9 * DAY, None, Some(3)),
    ]);
    let (out, got) = ask(
        &reg,
        h,
        &[
            (Some(7), 14 * DAY), // Jan 15: Jan 10 row; total (7d) kept, amount (3d) too old
            (Some(7), 11 * DAY), // Jan 12: Jan 10 row is 2 days old: both kept
            (Some(7), 12 * DAY), // Jan 13: amount's bound is exactly Jan 10: kept
            (Some(7), 12 * DAY + 1), // one second later: amount dropped
            (Some(7), 16 * DAY), // Jan 17: total's bound is exactly Jan 10: kept
            (Some(7), 16 * DAY + 1), // one second later: nothing
            (Some(7), 4 * DAY),  // Jan 5 exactly: the Jan 5 row (event_ts == t)
            (Some(7), 4 * DAY - 1), // just before: the Jan 1 row
            (Some(7), -1),       // before any purchase
            (Some(8), 14 * DAY), // an entity with no history
            (None, 14 * DAY),    // a null key
            (Some(7), 14 * DAY), // a duplicate row stays a row of its own
        ],
    );
    let n = Value::Null;
    assert_eq!(
        got,
        vec![
            vec![i(3), n.clone()],
            vec![i(3), i(30)],
            vec![i(3), i(30)],
            vec![i(3), n.clone()],
            vec![i(3), n.clone()],
            vec![n.clone(), n.clone()],
            vec![i(2), i(20)],
            vec![i(1), n.clone()],
            vec![n.clone(), n.clone()],
            vec![n.clone(), n.clone()],
            vec![n.clone(), n.clone()],
            vec![i(3), n.clone()],
        ]
    );
    // Labels come out in input order, column names as asked.
    let labels = out
        .column(2)
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("labels");
    assert_eq!(labels.values().to_vec(), (0..12).collect::<Vec<i64>>());
    let names: Vec<&str> = out
        .schema_ref()
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>();
    assert_eq!(
        names,
        ["user_id", "event_timestamp", "label", "total", "amount"]
    );
}

#[test]
fn golden_ties_go_to_the_latest_created_then_the_latest_row() {
    let (reg, h) = purchases(&[
        // Same event time: created 5 beats created 2 although it comes first.
        (1, DAY, Some(5), Some(50)),
        (1, DAY, Some(2), Some(20)),
        // Same event and created time: the later row wins.
        (2, DAY, Some(1), Some(1)),
        (2, DAY, Some(1), Some(2)),
        // Without a created time, the later row wins too; a created time beats none.
        (3, DAY, None, Some(7)),
        (3, DAY, None, Some(8)),
        (4, DAY, Some(0), Some(9)),
        (4, DAY, None, Some(10)),
    ]);
    let (_, got) = ask(
        &reg,
        h,
        &[
            (Some(1), DAY),
            (Some(2), DAY),
            (Some(3), DAY),
            (Some(4), DAY),
        ],
    );
    let totals: Vec<Value> = got.into_iter().map(|r| r[0].clone()).collect();
    assert_eq!(totals, vec![i(50), i(2), i(8), i(9)]);
}

#[test]
fn golden_a_null_in_the_latest_row_is_served_as_null_not_an_older_value() {
    let (reg, h) = purchases(&[(1, 0, None, Some(5)), (1, DAY, None, None)]);
    let (_, got) = ask(&reg, h, &[(Some(1), 2 * DAY), (Some(1), DAY - 1)]);
    assert_eq!(got, vec![vec![Value::Null, Value::Null], vec![i(5), i(50)]]);
}

#[test]
fn composite_keys_and_several_views_in_one_request() {
    let reg = registry();
    let a = vec![HistRow {
        user: 1,
        merchant: String::new(),
        ts: Some(5),
        created: None,
        values: vec![Value::Int64(11), Value::String("hi".into()), Value::Null],
    }];
    let c = vec![
        HistRow {
            user: 1,
            merchant: "m1".into(),
            ts: Some(5),
            created: None,
            values: vec![Value::Vector(vec![1.0, 2.0]), Value::Int32(3), Value::Null],
        },
        HistRow {
            user: 1,
            merchant: "m2".into(),
            ts: Some(5),
            created: None,
            values: vec![Value::Vector(vec![3.0, 4.0]), Value::Int32(4), Value::Null],
        },
    ];
    let hs = vec![
        History::from_batches(
            &reg,
            "a",
            vec![history_batch(&reg, "a", &a)],
            EpochUnit::Seconds,
        )
        .expect("a"),
        History::from_batches(
            &reg,
            "c",
            vec![history_batch(&reg, "c", &c)],
            EpochUnit::Seconds,
        )
        .expect("c"),
    ];
    let row = |m: &str| EntityRow {
        user: Some(1),
        merchant: m.into(),
        t: Some(6),
        label: 0,
    };
    let (out, got) = run(
        &reg,
        &hs,
        &[row("m2"), row("m1"), row("m3")],
        &["c:n", "a:x", "c:e"],
        2,
    );
    assert_eq!(
        got,
        vec![
            vec![Value::Int32(4), i(11), Value::Vector(vec![3.0, 4.0])],
            vec![Value::Int32(3), i(11), Value::Vector(vec![1.0, 2.0])],
            vec![Value::Null, i(11), Value::Null],
        ]
    );
    // Arrow types follow the registry.
    let types: Vec<String> = out.schema_ref().fields()[4..]
        .iter()
        .map(|f| f.data_type().to_string())
        .collect();
    assert_eq!(types[0], "Int32");
    assert_eq!(types[1], "Int64");
    assert!(types[2].starts_with("FixedSizeList"), "{}", types[2]);
    assert_eq!(out.column(6).null_count(), 1);
}

#[test]
fn colliding_output_names_need_full_feature_names() {
    let reg = Registry::from_toml(&REGISTRY.replace("name = \"n\"", "name = \"x\"")).expect("reg");
    let e = FeaturePlan::new(&reg, &["a:x", "c:x"], false).unwrap_err();
    assert!(e.to_string().contains("full feature names"), "{e}");
    let plan = FeaturePlan::new(&reg, &["a:x", "c:x"], true).expect("full names");
    assert_eq!(plan.names(), ["a__x", "c__x"]);
    let e = FeaturePlan::new(&reg, &["a:nope"], false).unwrap_err();
    assert!(e.to_string().contains("no feature named \"nope\""), "{e}");
}
