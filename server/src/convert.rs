//! Native protobuf columns ⇄ engine keys, rows and result columns.
//!
//! Requests decode straight into a [`KeyBatch`] and engine [`Row`]s; responses move the
//! engine's packed column vectors into the protobuf messages without a message per value.

use quiver_engine::{
    ColumnData, Entity, FeatureColumn, FeatureView, KeyBatch, KeyPart, KeyType, Row, ScalarType,
    Value, ValueType,
};
use tonic::Status;

use crate::limits::{quote, WriteLimits};
use crate::proto::quiver::v1 as pb;
use pb::column::Data;
use pb::key_column::Values as KeyValues;

/// Turns key columns into encoded keys of `entity`, checking names, types and lengths.
/// Returns the row count.
pub(crate) fn keys_from_columns(
    entity: &Entity,
    cols: &[pb::KeyColumn],
    max_rows: usize,
    out: &mut KeyBatch,
) -> Result<usize, Status> {
    out.clear();
    if cols.is_empty() {
        return Err(Status::invalid_argument(format!(
            "keys: no key columns; entity {:?} needs {}",
            entity.name,
            join_key_names(entity)
        )));
    }
    let mut ordered: Vec<&pb::KeyColumn> = Vec::with_capacity(entity.join_keys.len());
    for jk in &entity.join_keys {
        let mut found = cols.iter().filter(|c| c.name == jk.name);
        let col = found.next().ok_or_else(|| {
            Status::invalid_argument(format!(
                "keys: missing join key column {:?} of entity {:?} (it needs {})",
                jk.name,
                entity.name,
                join_key_names(entity)
            ))
        })?;
        if found.next().is_some() {
            return Err(Status::invalid_argument(format!(
                "keys: join key column {:?} given twice",
                jk.name
            )));
        }
        ordered.push(col);
    }
    if let Some(extra) = cols
        .iter()
        .find(|c| !entity.join_keys.iter().any(|jk| jk.name == c.name))
    {
        return Err(Status::invalid_argument(format!(
            "keys: {} is not a join key of entity {:?} (it needs {})",
            quote(&extra.name),
            entity.name,
            join_key_names(entity)
        )));
    }
    let mut rows = None;
    for (jk, col) in entity.join_keys.iter().zip(&ordered) {
        let n = match (&col.values, jk.ty) {
            (Some(KeyValues::Int64Values(v)), KeyType::Int64) => v.values.len(),
            (Some(KeyValues::StringValues(v)), KeyType::String) => v.values.len(),
            (None, _) => {
                return Err(Status::invalid_argument(format!(
                    "keys: join key column {:?} has no values",
                    jk.name
                )))
            }
            (Some(_), ty) => {
                return Err(Status::invalid_argument(format!(
                    "keys: join key {:?} of entity {:?} is {}; send it as {}",
                    jk.name,
                    entity.name,
                    ty.name(),
                    match ty {
                        KeyType::Int64 => "int64_values",
                        KeyType::String => "string_values",
                    }
                )))
            }
        };
        match rows {
            None => rows = Some(n),
            Some(r) if r != n => {
                return Err(Status::invalid_argument(format!(
                    "keys: join key column {:?} has {n} values but {:?} has {r}",
                    jk.name, entity.join_keys[0].name
                )))
            }
            Some(_) => {}
        }
    }
    let rows = rows.unwrap_or(0);
    if rows == 0 {
        return Err(Status::invalid_argument("keys: no entity rows requested"));
    }
    if rows > max_rows {
        return Err(Status::invalid_argument(format!(
            "keys: {rows} entity rows exceed the server's limit of {max_rows} per request"
        )));
    }
    let mut parts: Vec<KeyPart<'_>> = Vec::with_capacity(ordered.len());
    for i in 0..rows {
        parts.clear();
        for col in &ordered {
            parts.push(match &col.values {
                Some(KeyValues::Int64Values(v)) => KeyPart::Int64(v.values[i]),
                Some(KeyValues::StringValues(v)) => KeyPart::String(&v.values[i]),
                None => return Err(Status::invalid_argument("keys: empty key column")),
            });
        }
        out.push(entity, &parts)
            .map_err(|e| Status::invalid_argument(format!("keys: row {i}: {e}")))?;
    }
    Ok(rows)
}

fn join_key_names(entity: &Entity) -> String {
    let names: Vec<String> = entity
        .join_keys
        .iter()
        .map(|k| format!("{} ({})", k.name, k.ty.name()))
        .collect();
    names.join(", ")
}

/// Moves an engine result column into its protobuf form.
pub(crate) fn column_to_proto(col: FeatureColumn) -> pb::FeatureColumn {
    pb::FeatureColumn {
        values: Some(data_to_proto(col.values)),
        statuses: col.statuses.iter().map(|s| *s as i32).collect(),
        event_timestamps: col.event_ts,
    }
}

fn data_to_proto(data: ColumnData) -> pb::Column {
    let d = match data {
        ColumnData::Bool(v) => Data::BoolValues(pb::BoolValues { values: v }),
        ColumnData::Int32(v) => Data::Int32Values(pb::Int32Values { values: v }),
        ColumnData::Int64(v) => Data::Int64Values(pb::Int64Values { values: v }),
        ColumnData::Float32(v) => Data::Float32Values(pb::Float32Values { values: v }),
        ColumnData::Float64(v) => Data::Float64Values(pb::Float64Values { values: v }),
        ColumnData::Timestamp(v) => Data::TimestampValues(pb::TimestampValues { micros: v }),
        ColumnData::String(v) => Data::StringValues(pb::StringValues {
            values: (0..v.spans.len())
                .map(|i| String::from_utf8_lossy(v.get(i)).into_owned())
                .collect(),
        }),
        ColumnData::Bytes(v) => Data::BytesValues(pb::BytesValues {
            values: (0..v.spans.len()).map(|i| v.get(i).to_vec()).collect(),
        }),
        ColumnData::Vector { dim, data } => {
            Data::VectorValues(pb::VectorValues { dim, values: data })
        }
        ColumnData::List { spans, items } => {
            // Items were appended in shard-visit order; lay them out in row order.
            let lengths: Vec<u32> = spans.iter().map(|s| s.1).collect();
            let ordered = reorder_items(&spans, *items);
            Data::ListValues(Box::new(pb::ListValues {
                lengths,
                items: Some(Box::new(data_to_proto(ordered))),
            }))
        }
    };
    pb::Column { data: Some(d) }
}

fn reorder_items(spans: &[(u32, u32)], items: ColumnData) -> ColumnData {
    fn pick<T: Clone>(v: &[T], spans: &[(u32, u32)]) -> Vec<T> {
        spans
            .iter()
            .flat_map(|&(s, l)| v[s as usize..(s + l) as usize].iter().cloned())
            .collect()
    }
    match items {
        ColumnData::Bool(v) => ColumnData::Bool(pick(&v, spans)),
        ColumnData::Int32(v) => ColumnData::Int32(pick(&v, spans)),
        ColumnData::Int64(v) => ColumnData::Int64(pick(&v, spans)),
        ColumnData::Float32(v) => ColumnData::Float32(pick(&v, spans)),
        ColumnData::Float64(v) => ColumnData::Float64(pick(&v, spans)),
        ColumnData::Timestamp(v) => ColumnData::Timestamp(pick(&v, spans)),
        ColumnData::String(v) => ColumnData::String(pick_var(&v, spans)),
        ColumnData::Bytes(v) => ColumnData::Bytes(pick_var(&v, spans)),
        other => other,
    }
}

fn pick_var(v: &quiver_engine::VarColumn, spans: &[(u32, u32)]) -> quiver_engine::VarColumn {
    let mut out = quiver_engine::VarColumn::default();
    for &(s, l) in spans {
        for j in s..s + l {
            let b = v.get(j as usize);
            let start = out.data.len() as u32;
            out.data.extend_from_slice(b);
            out.spans.push((start, b.len() as u32));
        }
    }
    out
}

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
fn value_bytes(v: &Value) -> usize {
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

/// The proto form of a value type.
pub(crate) fn type_to_proto(ty: ValueType) -> pb::ValueType {
    use pb::value_type::Kind;
    let scalar = |s: ScalarType| -> i32 {
        (match s {
            ScalarType::Bool => pb::ScalarType::Bool,
            ScalarType::Int32 => pb::ScalarType::Int32,
            ScalarType::Int64 => pb::ScalarType::Int64,
            ScalarType::Float32 => pb::ScalarType::Float32,
            ScalarType::Float64 => pb::ScalarType::Float64,
            ScalarType::Timestamp => pb::ScalarType::Timestamp,
            ScalarType::String => pb::ScalarType::String,
            ScalarType::Bytes => pb::ScalarType::Bytes,
        }) as i32
    };
    pb::ValueType {
        kind: Some(match ty {
            ValueType::Scalar(s) => Kind::Scalar(scalar(s)),
            ValueType::List(s) => Kind::List(scalar(s)),
            ValueType::Vector { dim } => Kind::VectorDim(dim),
        }),
    }
}
