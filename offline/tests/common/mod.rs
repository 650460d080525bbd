//! Shared by the offline tests: a registry with several views, history and entity batch
//! builders, and a brute-force point-in-time join written straight from docs/semantics.md,
//! "Point-in-time join".

#![allow(dead_code)]

use std::sync::Arc;

use arrow_array::types::{Float32Type, Int64Type};
use arrow_array::{
    ArrayRef, BooleanArray, FixedSizeListArray, Float64Array, Int32Array, Int64Array, ListArray,
    RecordBatch, StringArray, TimestampMillisecondArray, TimestampNanosecondArray,
    TimestampSecondArray,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use quiver_engine::{Registry, ScalarType, Value, ValueType};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Three views with different TTLs, per-feature TTL overrides, a mapped column, a created
/// column, timestamps of three units, and a composite-key entity.
pub const REGISTRY: &str = include_str!("../fixtures/registry.toml");

pub fn registry() -> Registry {
    Registry::from_toml(REGISTRY).expect("test registry")
}

pub const SEC: i64 = 1_000_000;

/// One history row: keys, event and created time in whole seconds, values in schema order.
#[derive(Debug, Clone)]
pub struct HistRow {
    pub user: i64,
    pub merchant: String,
    pub ts: Option<i64>,
    pub created: Option<i64>,
    pub values: Vec<Value>,
}

/// One entity row: keys (a null user id when `user` is None), time in seconds, a label.
#[derive(Debug, Clone)]
pub struct EntityRow {
    pub user: Option<i64>,
    pub merchant: String,
    pub t: Option<i64>,
    pub label: i64,
}

pub fn to_array(ty: ValueType, vals: &[Value]) -> ArrayRef {
    match ty {
        ValueType::Scalar(ScalarType::Int64) => Arc::new(Int64Array::from(
            vals.iter()
                .map(|v| match v {
                    Value::Int64(x) => Some(*x),
                    _ => None,
                })
                .collect::<Vec<_>>(),
        )),
        ValueType::Scalar(ScalarType::Int32) => Arc::new(Int32Array::from(
            vals.iter()
                .map(|v| match v {
                    Value::Int32(x) => Some(*x),
                    _ => None,
                })
                .collect::<Vec<_>>(),
        )),
        ValueType::Scalar(ScalarType::Float64) => Arc::new(Float64Array::from(
            vals.iter()
                .map(|v| match v {
                    Value::Float64(x) => Some(*x),
                    _ => None,
                })
                .collect::<Vec<_>>(),
        )),
        ValueType::Scalar(ScalarType::String) => Arc::new(StringArray::from(
            vals.iter()
                .map(|v| match v {
                    Value::String(x) => Some(x.clone()),
                    _ => None,
                })
                .collect::<Vec<_>>(),
        )),
        ValueType::Scalar(ScalarType::Bool) => Arc::new(BooleanArray::from(
            vals.iter()
                .map(|v| match v {
                    Value::Bool(x) => Some(*x),
                    _ => None,
                })
                .collect::<Vec<_>>(),
        )),
        ValueType::List(ScalarType::Int64) => {
            Arc::new(ListArray::from_iter_primitive::<Int64Type, _, _>(
                vals.iter().map(|v| match v {
                    Value::Int64List(x) => Some(x.iter().map(|i| Some(*i)).collect::<Vec<_>>()),
                    _ => None,
                }),
            ))
        }
        ValueType::Vector { dim } => {
            Arc::new(
                FixedSizeListArray::from_iter_primitive::<Float32Type, _, _>(
                    vals.iter().map(|v| match v {
                        Value::Vector(x) => Some(x.iter().map(|f| Some(*f)).collect::<Vec<_>>()),
                        _ => None,
                    }),
                    dim as i32,
                ),
            )
        }
        other => panic!("test helper does not build {other}"),
    }
}

/// The history batch of `view` (column names and timestamp units as the registry and the
/// helpers agree: view a in seconds, b in milliseconds with an int64 created column in
/// seconds, c in nanoseconds).
pub fn history_batch(reg: &Registry, view: &str, rows: &[HistRow]) -> RecordBatch {
    let v = reg.view(view).expect("view");
    let mut fields = vec![Field::new("user_id", DataType::Int64, true)];
    let mut cols: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(
        rows.iter().map(|r| r.user).collect::<Vec<_>>(),
    ))];
    if view == "c" {
        fields.push(Field::new("merchant", DataType::Utf8, true));
        cols.push(Arc::new(StringArray::from(
            rows.iter().map(|r| r.merchant.clone()).collect::<Vec<_>>(),
        )));
    }
    let ts: Vec<Option<i64>> = rows.iter().map(|r| r.ts).collect();
    let created: Vec<Option<i64>> = rows.iter().map(|r| r.created).collect();
    match view {
        "a" => {
            fields.push(Field::new(
                "event_timestamp",
                DataType::Timestamp(TimeUnit::Second, None),
                true,
            ));
            cols.push(Arc::new(TimestampSecondArray::from(ts)));
        }
        "b" => {
            fields.push(Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                true,
            ));
            cols.push(Arc::new(
                TimestampMillisecondArray::from(
                    ts.iter().map(|t| t.map(|t| t * 1000)).collect::<Vec<_>>(),
                )
                .with_timezone("UTC"),
            ));
            fields.push(Field::new("created", DataType::Int64, true));
            cols.push(Arc::new(Int64Array::from(created)));
        }
        _ => {
            fields.push(Field::new(
                "event_timestamp",
                DataType::Timestamp(TimeUnit::Nanosecond, None),
                true,
            ));
            cols.push(Arc::new(TimestampNanosecondArray::from(
                ts.iter()
                    .map(|t| t.map(|t| t * 1_000_000_000))
                    .collect::<Vec<_>>(),
            )));
            fields.push(Field::new(
                "created",
                DataType::Timestamp(TimeUnit::Second, None),
                true,
            ));
            cols.push(Arc::new(TimestampSecondArray::from(created)));
        }
    }
    for (fi, f) in v.features.iter().enumerate() {
        let vals: Vec<Value> = rows.iter().map(|r| r.values[fi].clone()).collect();
        let a = to_array(f.ty, &vals);
        fields.push(Field::new(
            f.column.clone().unwrap_or_else(|| f.name.clone()),
            a.data_type().clone(),
            true,
        ));
        cols.push(a);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).expect("history batch")
}

pub fn entity_batch(rows: &[EntityRow]) -> RecordBatch {
    let schema = Schema::new(vec![
        Field::new("user_id", DataType::Int64, true),
        Field::new("merchant", DataType::Utf8, true),
        Field::new(
            "event_timestamp",
            DataType::Timestamp(TimeUnit::Second, None),
            true,
        ),
        Field::new("label", DataType::Int64, false),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(Int64Array::from(
                rows.iter().map(|r| r.user).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                rows.iter()
                    .map(|r| Some(r.merchant.clone()))
                    .collect::<Vec<_>>(),
            )),
            Arc::new(TimestampSecondArray::from(
                rows.iter().map(|r| r.t).collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(
                rows.iter().map(|r| r.label).collect::<Vec<_>>(),
            )),
        ],
    )
    .expect("entity batch")
}

/// The point-in-time join of docs/semantics.md, by brute force: for each entity row and
/// feature, the latest row with `ts <= t` (ties: created, then position), kept if
/// `ts >= t - ttl` (ttl 0: always).
pub fn reference(
    reg: &Registry,
    histories: &[(&str, Vec<HistRow>)],
    entities: &[EntityRow],
    features: &[&str],
) -> Vec<Vec<Value>> {
    reference_counting(
        reg,
        histories,
        entities,
        features,
        &mut Boundaries::default(),
    )
}

/// How often the winning row sat exactly on a boundary (to show the tests reach them).
#[derive(Debug, Default)]
pub struct Boundaries {
    /// `event_ts == t`.
    pub at_t: usize,
    /// `event_ts == t - ttl` (kept).
    pub at_ttl: usize,
    /// `event_ts == t - ttl - 1s` (dropped).
    pub past_ttl: usize,
}

pub fn reference_counting(
    reg: &Registry,
    histories: &[(&str, Vec<HistRow>)],
    entities: &[EntityRow],
    features: &[&str],
    seen: &mut Boundaries,
) -> Vec<Vec<Value>> {
    let mut out = Vec::new();
    for e in entities {
        let mut row = Vec::new();
        for f in features {
            let r = reg.resolve(f).expect("feature");
            let v = &reg.views()[r.view];
            let ttl = v.feature_ttl_secs(r.feature) as i64;
            let hist = &histories.iter().find(|h| h.0 == v.name).expect("history").1;
            let composite = v.entity == "pair";
            let mut best: Option<(i64, i64, usize)> = None;
            if let (Some(user), Some(t)) = (e.user, e.t) {
                for (pos, h) in hist.iter().enumerate() {
                    let Some(ts) = h.ts else { continue };
                    if h.user != user || (composite && h.merchant != e.merchant) || ts > t {
                        continue;
                    }
                    let cand = (ts, h.created.unwrap_or(i64::MIN), pos);
                    if best.is_none_or(|b| cand > b) {
                        best = Some(cand);
                    }
                }
            }
            if let (Some((ts, _, _)), Some(t)) = (best, e.t) {
                seen.at_t += usize::from(ts == t);
                seen.at_ttl += usize::from(ttl > 0 && ts == t - ttl);
                seen.past_ttl += usize::from(ttl > 0 && ts == t - ttl - 1);
            }
            row.push(match (best, e.t) {
                (Some((ts, _, pos)), Some(t)) if ttl == 0 || ts >= t - ttl => {
                    // Served (and so trained on) as stored: lossy vectors are quantized.
                    match hist[pos].values[r.feature].clone() {
                        Value::Vector(mut x) => {
                            v.features[r.feature].storage.round_trip(&mut x);
                            Value::Vector(x)
                        }
                        other => other,
                    }
                }
                _ => Value::Null,
            });
        }
        out.push(row);
    }
    out
}

/// The feature columns of a join output as values, row by row.
pub fn output_values(
    reg: &Registry,
    out: &RecordBatch,
    features: &[&str],
    first_col: usize,
) -> Vec<Vec<Value>> {
    (0..out.num_rows())
        .map(|j| {
            features
                .iter()
                .enumerate()
                .map(|(k, f)| {
                    let r = reg.resolve(f).expect("feature");
                    let ty = reg.views()[r.view].features[r.feature].ty;
                    quiver_offline::value_at(out.column(first_col + k).as_ref(), ty, j)
                        .expect("value")
                })
                .collect()
        })
        .collect()
}

pub fn same(a: &[Vec<Value>], b: &[Vec<Value>]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.len() == y.len() && x.iter().zip(y).all(|(p, q)| p.bit_eq(q)))
}

/// A random value of type `ty`, null with probability 1/6.
pub fn random_value(rng: &mut SmallRng, ty: ValueType) -> Value {
    if rng.random_range(0..6) == 0 {
        return Value::Null;
    }
    match ty {
        ValueType::Scalar(ScalarType::Int64) => Value::Int64(rng.random_range(-1000..1000)),
        ValueType::Scalar(ScalarType::Int32) => Value::Int32(rng.random_range(-1000..1000)),
        ValueType::Scalar(ScalarType::Float64) => {
            Value::Float64(f64::from(rng.random_range(-1000..1000)) / 8.0)
        }
        ValueType::Scalar(ScalarType::String) => {
            Value::String(format!("s{}", rng.random_range(0..50)))
        }
        ValueType::Scalar(ScalarType::Bool) => Value::Bool(rng.random_range(0..2) == 1),
        ValueType::List(ScalarType::Int64) => {
            let n = rng.random_range(0..4);
            Value::Int64List((0..n).map(|_| rng.random_range(0..100)).collect())
        }
        ValueType::Vector { dim } => Value::Vector(
            (0..dim)
                .map(|_| rng.random_range(-100..100) as f32 / 4.0)
                .collect(),
        ),
        other => panic!("no generator for {other}"),
    }
}

/// Random history of `view`: `rows` rows over users `0..users`, merchants m0..m2, event times
/// in `0..span` seconds (so equal times are common), created times in a small range or null.
pub fn random_history(
    rng: &mut SmallRng,
    reg: &Registry,
    view: &str,
    rows: usize,
    users: i64,
    span: i64,
) -> Vec<HistRow> {
    let v = reg.view(view).expect("view");
    let has_created = v
        .source
        .as_ref()
        .is_some_and(|s| s.created_timestamp_field.is_some());
    (0..rows)
        .map(|_| HistRow {
            user: rng.random_range(0..users),
            merchant: format!("m{}", rng.random_range(0..3)),
            ts: (rng.random_range(0..25) != 0).then(|| rng.random_range(0..span)),
            created: (has_created && rng.random_range(0..4) != 0).then(|| rng.random_range(0..3)),
            values: v.features.iter().map(|f| random_value(rng, f.ty)).collect(),
        })
        .collect()
}

pub fn rng(seed: u64) -> SmallRng {
    SmallRng::seed_from_u64(seed)
}
