//! Write batches ⇄ engine rows. The server decodes a batch into rows, validating every
//! shape, type and bound against the view; the materializer encodes rows into batches for
//! StreamWriteFeatures. A row that makes the round trip comes back equal.

use quiver_engine::{
    decode_key, Entity, FeatureView, KeyBatch, KeyType, OwnedKeyPart, Registry, Row, ScalarType,
    Value, ValueType,
};
use quiver_offline::{History, MaterializeOptions};
use tonic::Status;

use super::keys_from_columns;
use crate::limits::{quote, WriteLimits};
use crate::proto::quiver::v1 as pb;
use pb::column::Data;

/// Decodes one write batch into engine rows for `view`.
pub(crate) fn rows_from_write(
    view: &FeatureView,
    entity: &Entity,
    req: &pb::WriteFeaturesRequest,
    limits: &WriteLimits,
    now: i64,
) -> Result<Vec<Row>, Status> {
    let max_value_bytes = limits.max_value_bytes;
    let mut keys = KeyBatch::new();
    let n = keys_from_columns(entity, &req.keys, limits.max_rows, &mut keys)?;
    if req.event_timestamps.len() != n {
        return Err(Status::invalid_argument(format!(
            "event_timestamps: {} values for {n} rows",
            req.event_timestamps.len()
        )));
    }
    if !req.created_timestamps.is_empty() && req.created_timestamps.len() != n {
        return Err(Status::invalid_argument(format!(
            "created_timestamps: {} values for {n} rows (send none or one per row)",
            req.created_timestamps.len()
        )));
    }
    if req.features.is_empty() {
        return Err(Status::invalid_argument(
            "features: no feature columns to write",
        ));
    }
    for (i, &t) in req.event_timestamps.iter().enumerate() {
        limits.check_time(&format!("event_timestamps[{i}]"), t, now)?;
    }
    for (i, &t) in req.created_timestamps.iter().enumerate() {
        limits.check_time(&format!("created_timestamps[{i}]"), t, now)?;
    }
    let mut rows: Vec<Row> = (0..n)
        .map(|i| Row {
            key: keys.get(i).to_vec(),
            event_ts: req.event_timestamps[i],
            created_ts: req.created_timestamps.get(i).copied(),
            values: Vec::with_capacity(req.features.len()),
        })
        .collect();
    let mut seen = Vec::with_capacity(req.features.len());
    for fw in &req.features {
        let fi = view.feature_index(&fw.name).ok_or_else(|| {
            Status::not_found(format!(
                "features: view {:?} has no feature named {}",
                view.name,
                quote(&fw.name)
            ))
        })?;
        if seen.contains(&fi) {
            return Err(Status::invalid_argument(format!(
                "features: {:?} given twice",
                fw.name
            )));
        }
        seen.push(fi);
        let ty = view.features[fi].ty;
        let what = format!("features[{:?}]", fw.name);
        let nulls = &fw.null_bitmap;
        if !nulls.is_empty() && nulls.len() != n.div_ceil(8) {
            return Err(Status::invalid_argument(format!(
                "{what}.null_bitmap: {} bytes for {n} rows (expected {} or none)",
                nulls.len(),
                n.div_ceil(8)
            )));
        }
        // Bits past the last row mean nothing; a client that sets them has the rows wrong.
        if n % 8 != 0 && nulls.last().is_some_and(|b| b >> (n % 8) != 0) {
            return Err(Status::invalid_argument(format!(
                "{what}.null_bitmap: bits set past row {} (the last row)",
                n - 1
            )));
        }
        let col = fw
            .values
            .as_ref()
            .and_then(|c| c.data.as_ref())
            .ok_or_else(|| Status::invalid_argument(format!("{what}: no values")))?;
        let values = values_of(col, ty, n, &what)?;
        if let Some((i, len)) = values
            .iter()
            .map(value_bytes)
            .enumerate()
            .find(|&(_, len)| len > max_value_bytes)
        {
            return Err(Status::invalid_argument(format!(
                "{what}: row {i} holds a {len}-byte value, above max_value_bytes = \
                 {max_value_bytes}"
            )));
        }
        for (i, (row, v)) in rows.iter_mut().zip(values).enumerate() {
            let null = !nulls.is_empty() && nulls[i / 8] & (1 << (i % 8)) != 0;
            row.values.push((fi, if null { Value::Null } else { v }));
        }
    }
    Ok(rows)
}

/// The bytes a value's contents take (what `max_value_bytes` bounds).
pub(crate) fn value_bytes(v: &Value) -> usize {
    fn sum<T>(items: &[T], each: impl Fn(&T) -> usize) -> usize {
        items.iter().map(each).sum()
    }
    match v {
        Value::String(s) => s.len(),
        Value::Bytes(b) => b.len(),
        Value::Vector(f) | Value::Float32List(f) => f.len() * 4,
        Value::BoolList(l) => l.len(),
        Value::Int32List(l) => l.len() * 4,
        Value::Int64List(l) | Value::TimestampList(l) => l.len() * 8,
        Value::Float64List(l) => l.len() * 8,
        Value::StringList(l) => sum(l, |s| s.len() + 4),
        Value::BytesList(l) => sum(l, |b| b.len() + 4),
        _ => 8,
    }
}

/// Splits a column into `n` owned values of type `ty`.
fn values_of(col: &Data, ty: ValueType, n: usize, what: &str) -> Result<Vec<Value>, Status> {
    let count = |len: usize| -> Result<(), Status> {
        if len == n {
            Ok(())
        } else {
            Err(Status::invalid_argument(format!(
                "{what}: {len} values for {n} rows"
            )))
        }
    };
    let mismatch = || {
        Status::invalid_argument(format!(
            "{what}: the feature is {ty}, the column holds {}",
            kind(col)
        ))
    };
    use ScalarType as S;
    Ok(match (ty, col) {
        (ValueType::Scalar(S::Bool), Data::BoolValues(v)) => {
            count(v.values.len())?;
            v.values.iter().map(|x| Value::Bool(*x)).collect()
        }
        (ValueType::Scalar(S::Int32), Data::Int32Values(v)) => {
            count(v.values.len())?;
            v.values.iter().map(|x| Value::Int32(*x)).collect()
        }
        (ValueType::Scalar(S::Int64), Data::Int64Values(v)) => {
            count(v.values.len())?;
            v.values.iter().map(|x| Value::Int64(*x)).collect()
        }
        (ValueType::Scalar(S::Float32), Data::Float32Values(v)) => {
            count(v.values.len())?;
            v.values.iter().map(|x| Value::Float32(*x)).collect()
        }
        (ValueType::Scalar(S::Float64), Data::Float64Values(v)) => {
            count(v.values.len())?;
            v.values.iter().map(|x| Value::Float64(*x)).collect()
        }
        (ValueType::Scalar(S::Timestamp), Data::TimestampValues(v)) => {
            count(v.micros.len())?;
            v.micros.iter().map(|x| Value::Timestamp(*x)).collect()
        }
        (ValueType::Scalar(S::String), Data::StringValues(v)) => {
            count(v.values.len())?;
            v.values.iter().map(|x| Value::String(x.clone())).collect()
        }
        (ValueType::Scalar(S::Bytes), Data::BytesValues(v)) => {
            count(v.values.len())?;
            v.values.iter().map(|x| Value::Bytes(x.clone())).collect()
        }
        (ValueType::Vector { dim }, Data::VectorValues(v)) => {
            if v.dim != dim {
                return Err(Status::invalid_argument(format!(
                    "{what}: vectors of dimension {} sent for a feature of dimension {dim}",
                    v.dim
                )));
            }
            let d = dim as usize;
            if v.values.len() != n * d {
                return Err(Status::invalid_argument(format!(
                    "{what}: {} floats for {n} rows of dimension {dim} (expected {})",
                    v.values.len(),
                    n * d
                )));
            }
            v.values
                .chunks_exact(d)
                .map(|c| Value::Vector(c.to_vec()))
                .collect()
        }
        (ValueType::List(s), Data::ListValues(l)) => {
            count(l.lengths.len())?;
            let items = l
                .items
                .as_ref()
                .and_then(|c| c.data.as_ref())
                .ok_or_else(|| {
                    Status::invalid_argument(format!("{what}: list has no items column"))
                })?;
            let total: u64 = l.lengths.iter().map(|x| u64::from(*x)).sum();
            let flat = values_of(
                items,
                ValueType::Scalar(s),
                total as usize,
                &format!("{what}.items"),
            )?;
            let mut it = flat.into_iter();
            l.lengths
                .iter()
                .map(|&len| list_value(s, it.by_ref().take(len as usize)))
                .collect()
        }
        _ => return Err(mismatch()),
    })
}

fn list_value(s: ScalarType, items: impl Iterator<Item = Value>) -> Value {
    macro_rules! collect {
        ($variant:ident, $list:ident) => {
            Value::$list(
                items
                    .filter_map(|v| match v {
                        Value::$variant(x) => Some(x),
                        _ => None,
                    })
                    .collect(),
            )
        };
    }
    match s {
        ScalarType::Bool => collect!(Bool, BoolList),
        ScalarType::Int32 => collect!(Int32, Int32List),
        ScalarType::Int64 => collect!(Int64, Int64List),
        ScalarType::Float32 => collect!(Float32, Float32List),
        ScalarType::Float64 => collect!(Float64, Float64List),
        ScalarType::String => collect!(String, StringList),
        ScalarType::Bytes => collect!(Bytes, BytesList),
        ScalarType::Timestamp => collect!(Timestamp, TimestampList),
    }
}

fn kind(d: &Data) -> &'static str {
    match d {
        Data::BoolValues(_) => "bool_values",
        Data::Int32Values(_) => "int32_values",
        Data::Int64Values(_) => "int64_values",
        Data::Float32Values(_) => "float32_values",
        Data::Float64Values(_) => "float64_values",
        Data::TimestampValues(_) => "timestamp_values",
        Data::StringValues(_) => "string_values",
        Data::BytesValues(_) => "bytes_values",
        Data::VectorValues(_) => "vector_values",
        Data::ListValues(_) => "list_values",
    }
}

/// Engine rows (whole rows, as the materializer makes them) → one native write batch.
pub(crate) fn write_from_rows(
    view: &FeatureView,
    entity: &Entity,
    rows: &[Row],
) -> Result<pb::WriteFeaturesRequest, String> {
    let keys: Vec<Vec<OwnedKeyPart>> = rows
        .iter()
        .map(|r| decode_key(entity, &r.key).ok_or("undecodable entity key"))
        .collect::<Result<_, _>>()?;
    let key_columns = entity
        .join_keys
        .iter()
        .enumerate()
        .map(|(k, jk)| pb::KeyColumn {
            name: jk.name.clone(),
            values: Some(match jk.ty {
                KeyType::Int64 => pb::key_column::Values::Int64Values(pb::Int64Values {
                    values: keys
                        .iter()
                        .map(|p| match &p[k] {
                            OwnedKeyPart::Int64(v) => *v,
                            OwnedKeyPart::String(_) => 0,
                        })
                        .collect(),
                }),
                KeyType::String => pb::key_column::Values::StringValues(pb::StringValues {
                    values: keys
                        .iter()
                        .map(|p| match &p[k] {
                            OwnedKeyPart::String(s) => s.clone(),
                            OwnedKeyPart::Int64(_) => String::new(),
                        })
                        .collect(),
                }),
            }),
        })
        .collect();
    let mut features = Vec::with_capacity(view.features.len());
    for (fi, f) in view.features.iter().enumerate() {
        let vals: Vec<&Value> = rows
            .iter()
            .map(|r| {
                r.values
                    .iter()
                    .find(|(i, _)| *i == fi)
                    .map_or(&Value::Null, |(_, v)| v)
            })
            .collect();
        let mut nulls = vec![0u8; vals.len().div_ceil(8)];
        for (i, v) in vals.iter().enumerate() {
            if matches!(v, Value::Null) {
                nulls[i / 8] |= 1 << (i % 8);
            }
        }
        features.push(pb::FeatureWrite {
            name: f.name.clone(),
            values: Some(pb::Column {
                data: Some(data_of_values(f.ty, &vals)),
            }),
            null_bitmap: if nulls.iter().any(|b| *b != 0) {
                nulls
            } else {
                Vec::new()
            },
        });
    }
    let created = rows.iter().any(|r| r.created_ts.is_some());
    Ok(pb::WriteFeaturesRequest {
        view: view.name.clone(),
        keys: key_columns,
        event_timestamps: rows.iter().map(|r| r.event_ts).collect(),
        created_timestamps: if created {
            rows.iter()
                .map(|r| r.created_ts.unwrap_or(i64::MIN))
                .collect()
        } else {
            Vec::new()
        },
        features,
    })
}

/// `(rows read, entities, newest event time)`, as [`quiver_offline::latest_rows`] counts them.
pub(crate) type LatestCounts = (u64, u64, Option<i64>);

/// The latest row of every entity in `history` within `opts`' window, as write batches of at
/// most [`quiver_offline::WRITE_BATCH`] rows: what an incremental materialization streams to a
/// server and what a client's Arrow write sends, with the counts.
pub(crate) fn writes_from_history(
    registry: &Registry,
    history: &History,
    opts: &MaterializeOptions,
) -> Result<(Vec<pb::WriteFeaturesRequest>, LatestCounts), String> {
    let view = registry
        .view(history.view())
        .ok_or_else(|| format!("no feature view named {:?}", history.view()))?;
    let entity = registry
        .view_entity(view)
        .ok_or_else(|| format!("feature view {:?} has no entity", view.name))?;
    let mut requests = Vec::new();
    let mut batch = Vec::new();
    let mut flush = |batch: &mut Vec<Row>| -> quiver_offline::Result<()> {
        if !batch.is_empty() {
            requests.push(
                write_from_rows(view, entity, batch)
                    .map_err(quiver_offline::OfflineError::InvalidArgument)?,
            );
            batch.clear();
        }
        Ok(())
    };
    let latest = quiver_offline::latest_rows(registry, history, opts, |row| {
        batch.push(row);
        if batch.len() == quiver_offline::WRITE_BATCH {
            flush(&mut batch)?;
        }
        Ok(())
    })
    .map_err(|e| e.to_string())?;
    flush(&mut batch).map_err(|e| e.to_string())?;
    Ok((requests, latest))
}

/// One feature's values as a native column; nulls hold placeholders (the bitmap marks them).
fn data_of_values(ty: ValueType, vals: &[&Value]) -> Data {
    use ScalarType as S;
    use Value as V;
    macro_rules! pick {
        ($variant:ident, $msg:ident, $field:ident, $pat:ident, $default:expr) => {
            Data::$variant(pb::$msg {
                $field: vals
                    .iter()
                    .map(|v| match v {
                        V::$pat(x) => x.clone(),
                        _ => $default,
                    })
                    .collect(),
            })
        };
    }
    macro_rules! items {
        ($variant:ident, $msg:ident, $field:ident, $pat:ident) => {
            Data::$variant(pb::$msg {
                $field: vals
                    .iter()
                    .flat_map(|v| match v {
                        V::$pat(x) => x.clone(),
                        _ => Vec::new(),
                    })
                    .collect(),
            })
        };
    }
    match ty {
        ValueType::Scalar(s) => match s {
            S::Bool => pick!(BoolValues, BoolValues, values, Bool, false),
            S::Int32 => pick!(Int32Values, Int32Values, values, Int32, 0),
            S::Int64 => pick!(Int64Values, Int64Values, values, Int64, 0),
            S::Float32 => pick!(Float32Values, Float32Values, values, Float32, 0.0),
            S::Float64 => pick!(Float64Values, Float64Values, values, Float64, 0.0),
            S::Timestamp => pick!(TimestampValues, TimestampValues, micros, Timestamp, 0),
            S::String => pick!(StringValues, StringValues, values, String, String::new()),
            S::Bytes => pick!(BytesValues, BytesValues, values, Bytes, Vec::new()),
        },
        ValueType::Vector { dim } => Data::VectorValues(pb::VectorValues {
            dim,
            values: vals
                .iter()
                .flat_map(|v| match v {
                    V::Vector(x) => x.clone(),
                    _ => vec![0.0; dim as usize],
                })
                .collect(),
        }),
        ValueType::List(s) => {
            let lengths = vals
                .iter()
                .map(|v| match v {
                    V::BoolList(x) => x.len(),
                    V::Int32List(x) => x.len(),
                    V::Int64List(x) | V::TimestampList(x) => x.len(),
                    V::Float32List(x) => x.len(),
                    V::Float64List(x) => x.len(),
                    V::StringList(x) => x.len(),
                    V::BytesList(x) => x.len(),
                    _ => 0,
                } as u32)
                .collect();
            let items = match s {
                S::Bool => items!(BoolValues, BoolValues, values, BoolList),
                S::Int32 => items!(Int32Values, Int32Values, values, Int32List),
                S::Int64 => items!(Int64Values, Int64Values, values, Int64List),
                S::Float32 => items!(Float32Values, Float32Values, values, Float32List),
                S::Float64 => items!(Float64Values, Float64Values, values, Float64List),
                S::Timestamp => items!(TimestampValues, TimestampValues, micros, TimestampList),
                S::String => items!(StringValues, StringValues, values, StringList),
                S::Bytes => items!(BytesValues, BytesValues, values, BytesList),
            };
            Data::ListValues(Box::new(pb::ListValues {
                lengths,
                items: Some(Box::new(pb::Column { data: Some(items) })),
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use quiver_engine::{encode_key, KeyPart, Registry};

    use super::*;
    use crate::config::ServerConfig;

    const REGISTRY: &str = include_str!("../../testdata/composite-key.toml");

    #[test]
    fn whole_rows_survive_the_round_trip() {
        let reg = Registry::from_toml(REGISTRY).unwrap();
        let view = reg.view("v").unwrap();
        let entity = reg.view_entity(view).unwrap();
        let row = |store: &str, user: i64, values: Vec<Value>| {
            let mut key = Vec::new();
            encode_key(
                entity,
                &[KeyPart::String(store), KeyPart::Int64(user)],
                &mut key,
            )
            .unwrap();
            Row {
                key,
                event_ts: 1_700_000_000_000_000 + user,
                created_ts: None,
                values: values.into_iter().enumerate().collect(),
            }
        };
        let rows = vec![
            row(
                "north",
                1,
                vec![
                    Value::Bool(true),
                    Value::Int32(-7),
                    Value::Float64(2.5),
                    Value::Timestamp(1_600_000_000_000_000),
                    Value::String("NZ".into()),
                    Value::Float64List(vec![1.0, 2.0]),
                    Value::Vector(vec![0.1, 0.2, 0.3]),
                ],
            ),
            // Nulls everywhere but one feature: placeholders travel, the bitmap marks them.
            row(
                "south",
                2,
                vec![
                    Value::Null,
                    Value::Int32(3),
                    Value::Null,
                    Value::Null,
                    Value::Null,
                    Value::Null,
                    Value::Null,
                ],
            ),
        ];
        let req = write_from_rows(view, entity, &rows).unwrap();
        assert_eq!(req.view, "v");
        assert!(req.created_timestamps.is_empty());
        let limits = WriteLimits::new(&ServerConfig::default());
        let back = rows_from_write(view, entity, &req, &limits, 1_700_000_000_000_000).unwrap();
        assert_eq!(back, rows);
    }
}
