//! Short constructors for `quiver.v1` requests and accessors for responses, so end-to-end
//! tests read as the data they send and expect.

use std::collections::HashMap;

use pb::column::Data;
use pb::key_column::Values as KeyValues;
use quiver_server::proto::feast::serving as fs;
use quiver_server::proto::feast::types as ft;
use quiver_server::proto::quiver::v1 as pb;

/// An int64 join key column.
pub fn int_keys(name: &str, values: &[i64]) -> pb::KeyColumn {
    pb::KeyColumn {
        name: name.to_owned(),
        values: Some(KeyValues::Int64Values(pb::Int64Values {
            values: values.to_vec(),
        })),
    }
}

/// A string join key column.
pub fn str_keys(name: &str, values: &[&str]) -> pb::KeyColumn {
    pb::KeyColumn {
        name: name.to_owned(),
        values: Some(KeyValues::StringValues(pb::StringValues {
            values: values.iter().map(|s| (*s).to_owned()).collect(),
        })),
    }
}

/// A read of explicit `view:feature` references.
pub fn get(refs: &[&str], keys: Vec<pb::KeyColumn>) -> pb::GetOnlineFeaturesRequest {
    pb::GetOnlineFeaturesRequest {
        features: Some(pb::get_online_features_request::Features::Refs(
            pb::FeatureRefs {
                refs: refs.iter().map(|s| (*s).to_owned()).collect(),
            },
        )),
        keys,
        full_feature_names: false,
        max_age: None,
    }
}

/// A read of a feature service.
pub fn get_service(service: &str, keys: Vec<pb::KeyColumn>) -> pb::GetOnlineFeaturesRequest {
    pb::GetOnlineFeaturesRequest {
        features: Some(pb::get_online_features_request::Features::FeatureService(
            service.to_owned(),
        )),
        keys,
        full_feature_names: false,
        max_age: None,
    }
}

/// A write batch for `view`.
pub fn write(
    view: &str,
    keys: Vec<pb::KeyColumn>,
    event_ts: &[i64],
    features: Vec<pb::FeatureWrite>,
) -> pb::WriteFeaturesRequest {
    pb::WriteFeaturesRequest {
        view: view.to_owned(),
        keys,
        event_timestamps: event_ts.to_vec(),
        created_timestamps: Vec::new(),
        features,
    }
}

/// One feature's values in a write, no nulls.
pub fn feature(name: &str, data: Data) -> pb::FeatureWrite {
    pb::FeatureWrite {
        name: name.to_owned(),
        values: Some(pb::Column { data: Some(data) }),
        null_bitmap: Vec::new(),
    }
}

/// One feature's values in a write with the rows in `nulls` written as null.
pub fn feature_with_nulls(
    name: &str,
    data: Data,
    rows: usize,
    nulls: &[usize],
) -> pb::FeatureWrite {
    let mut bitmap = vec![0u8; rows.div_ceil(8)];
    for &i in nulls {
        bitmap[i / 8] |= 1 << (i % 8);
    }
    pb::FeatureWrite {
        null_bitmap: bitmap,
        ..feature(name, data)
    }
}

/// int64 values.
pub fn i64s(v: &[i64]) -> Data {
    Data::Int64Values(pb::Int64Values { values: v.to_vec() })
}

/// int32 values.
pub fn i32s(v: &[i32]) -> Data {
    Data::Int32Values(pb::Int32Values { values: v.to_vec() })
}

/// float32 values.
pub fn f32s(v: &[f32]) -> Data {
    Data::Float32Values(pb::Float32Values { values: v.to_vec() })
}

/// float64 values.
pub fn f64s(v: &[f64]) -> Data {
    Data::Float64Values(pb::Float64Values { values: v.to_vec() })
}

/// bool values.
pub fn bools(v: &[bool]) -> Data {
    Data::BoolValues(pb::BoolValues { values: v.to_vec() })
}

/// Timestamp values, microseconds.
pub fn timestamps(v: &[i64]) -> Data {
    Data::TimestampValues(pb::TimestampValues { micros: v.to_vec() })
}

/// String values.
pub fn strings(v: &[&str]) -> Data {
    Data::StringValues(pb::StringValues {
        values: v.iter().map(|s| (*s).to_owned()).collect(),
    })
}

/// Bytes values.
pub fn bytes(v: &[&[u8]]) -> Data {
    Data::BytesValues(pb::BytesValues {
        values: v.iter().map(|b| b.to_vec()).collect(),
    })
}

/// Vectors of dimension `dim`, row-major.
pub fn vectors(dim: u32, flat: &[f32]) -> Data {
    Data::VectorValues(pb::VectorValues {
        dim,
        values: flat.to_vec(),
    })
}

/// Lists: row i holds `lengths[i]` consecutive items.
pub fn lists(lengths: &[u32], items: Data) -> Data {
    Data::ListValues(Box::new(pb::ListValues {
        lengths: lengths.to_vec(),
        items: Some(Box::new(pb::Column { data: Some(items) })),
    }))
}

/// Status numbers as the wire carries them.
pub const PRESENT: i32 = pb::FieldStatus::Present as i32;
/// See [`PRESENT`].
pub const NULL_VALUE: i32 = pb::FieldStatus::NullValue as i32;
/// See [`PRESENT`].
pub const NOT_FOUND: i32 = pb::FieldStatus::NotFound as i32;
/// See [`PRESENT`].
pub const OUTSIDE_MAX_AGE: i32 = pb::FieldStatus::OutsideMaxAge as i32;

/// The response column named `name`.
pub fn column<'a>(r: &'a pb::GetOnlineFeaturesResponse, name: &str) -> &'a pb::FeatureColumn {
    let i = r
        .feature_names
        .iter()
        .position(|n| n == name)
        .unwrap_or_else(|| panic!("no column {name:?} in {:?}", r.feature_names));
    &r.columns[i]
}

/// The values of a column.
pub fn data(c: &pb::FeatureColumn) -> &Data {
    c.values
        .as_ref()
        .and_then(|v| v.data.as_ref())
        .unwrap_or_else(|| panic!("column without values: {c:?}"))
}

macro_rules! accessor {
    ($(#[$doc:meta])* $name:ident, $variant:ident, $field:ident, $t:ty) => {
        $(#[$doc])*
        pub fn $name(c: &pb::FeatureColumn) -> &[$t] {
            match data(c) {
                Data::$variant(v) => &v.$field,
                other => panic!("expected {}, got {other:?}", stringify!($variant)),
            }
        }
    };
}

accessor!(
    /// An int64 column's values.
    as_i64, Int64Values, values, i64
);
accessor!(
    /// An int32 column's values.
    as_i32, Int32Values, values, i32
);
accessor!(
    /// A float32 column's values.
    as_f32, Float32Values, values, f32
);
accessor!(
    /// A float64 column's values.
    as_f64, Float64Values, values, f64
);
accessor!(
    /// A bool column's values.
    as_bool, BoolValues, values, bool
);
accessor!(
    /// A timestamp column's values.
    as_ts, TimestampValues, micros, i64
);
accessor!(
    /// A string column's values.
    as_str, StringValues, values, String
);
accessor!(
    /// A bytes column's values.
    as_bytes, BytesValues, values, Vec<u8>
);

/// A vector column as (dim, row-major values).
pub fn as_vectors(c: &pb::FeatureColumn) -> (u32, &[f32]) {
    match data(c) {
        Data::VectorValues(v) => (v.dim, &v.values),
        other => panic!("expected VectorValues, got {other:?}"),
    }
}

/// A list column as (lengths, items).
pub fn as_lists(c: &pb::FeatureColumn) -> (&[u32], &Data) {
    match data(c) {
        Data::ListValues(l) => (
            &l.lengths,
            l.items
                .as_ref()
                .and_then(|i| i.data.as_ref())
                .unwrap_or_else(|| panic!("list without items: {l:?}")),
        ),
        other => panic!("expected ListValues, got {other:?}"),
    }
}

/// A Feast value.
pub fn fv(v: ft::value::Val) -> ft::Value {
    ft::Value { val: Some(v) }
}

/// Feast int64 values.
pub fn feast_ints(v: &[i64]) -> ft::RepeatedValue {
    ft::RepeatedValue {
        val: v.iter().map(|x| fv(ft::value::Val::Int64Val(*x))).collect(),
    }
}

/// Feast string values.
pub fn feast_strs(v: &[&str]) -> ft::RepeatedValue {
    ft::RepeatedValue {
        val: v
            .iter()
            .map(|x| fv(ft::value::Val::StringVal((*x).to_owned())))
            .collect(),
    }
}

/// A Feast read of `view:feature` references.
pub fn feast_req(
    features: &[&str],
    entities: Vec<(&str, ft::RepeatedValue)>,
    full_feature_names: bool,
) -> fs::GetOnlineFeaturesRequest {
    fs::GetOnlineFeaturesRequest {
        kind: Some(fs::get_online_features_request::Kind::Features(
            fs::FeatureList {
                val: features.iter().map(|s| (*s).to_owned()).collect(),
            },
        )),
        entities: entities
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        full_feature_names,
        request_context: HashMap::new(),
    }
}

/// The feature names of a Feast response.
pub fn feast_names(r: &fs::GetOnlineFeaturesResponse) -> Vec<&str> {
    r.metadata
        .as_ref()
        .and_then(|m| m.feature_names.as_ref())
        .map(|l| l.val.iter().map(String::as_str).collect())
        .unwrap_or_default()
}
