//! Engine result columns → protobuf columns, moving the packed vectors rather than copying a
//! value at a time.

use quiver_engine::{ColumnData, FeatureColumn, VarColumn};

use crate::proto::quiver::v1 as pb;
use pb::column::Data;

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

fn pick_var(v: &VarColumn, spans: &[(u32, u32)]) -> VarColumn {
    let mut out = VarColumn::default();
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
