//! Registry types ⇄ Arrow types.
//!
//! Every registry type has one *canonical* Arrow type: the type of training-set columns and the
//! type input columns are normalized to before they are joined or materialized. Inputs may use
//! any lossless spelling of it (a narrower integer, a large or view string, a dictionary, a
//! timestamp of another unit, a list instead of a fixed-size list for a vector).

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    ArrowPrimitiveType, Date32Type, Date64Type, Float32Type, Float64Type, Int16Type, Int32Type,
    Int64Type, Int8Type, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt16Type, UInt32Type, UInt8Type,
};
use arrow_array::{
    Array, ArrayRef, BinaryArray, FixedSizeListArray, Float32Array, Int64Array, ListArray,
    StringArray, UInt32Array,
};
use arrow_buffer::{NullBuffer, OffsetBuffer};
use arrow_schema::{DataType, Field, FieldRef, TimeUnit};
use quiver_engine::{KeyType, ScalarType, Value, ValueType, VectorStorage};

/// How to read integer epoch timestamps (event and created time columns stored as `int64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EpochUnit {
    /// Seconds since the Unix epoch.
    #[default]
    Seconds,
    /// Milliseconds since the Unix epoch.
    Millis,
    /// Microseconds since the Unix epoch.
    Micros,
    /// Nanoseconds since the Unix epoch.
    Nanos,
}

impl EpochUnit {
    /// The unit's name, as [`EpochUnit::parse`] takes it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Seconds => "seconds",
            Self::Millis => "milliseconds",
            Self::Micros => "microseconds",
            Self::Nanos => "nanoseconds",
        }
    }

    /// Parses `s`, `ms`, `us` or `ns`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "s" | "seconds" => Ok(Self::Seconds),
            "ms" | "millis" => Ok(Self::Millis),
            "us" | "micros" => Ok(Self::Micros),
            "ns" | "nanos" => Ok(Self::Nanos),
            other => Err(format!(
                "unknown epoch unit {other:?} (expected s, ms, us or ns)"
            )),
        }
    }
}

/// The Arrow type of a training-set column for a feature of type `ty`.
pub fn arrow_type(ty: ValueType) -> DataType {
    match ty {
        ValueType::Scalar(s) => scalar_type(s),
        ValueType::List(s) => DataType::List(item_field(scalar_type(s))),
        ValueType::Vector { dim } => {
            DataType::FixedSizeList(item_field(DataType::Float32), dim as i32)
        }
    }
}

fn scalar_type(s: ScalarType) -> DataType {
    match s {
        ScalarType::Bool => DataType::Boolean,
        ScalarType::Int32 => DataType::Int32,
        ScalarType::Int64 => DataType::Int64,
        ScalarType::Float32 => DataType::Float32,
        ScalarType::Float64 => DataType::Float64,
        ScalarType::String => DataType::Utf8,
        ScalarType::Bytes => DataType::Binary,
        ScalarType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
    }
}

fn item_field(dt: DataType) -> FieldRef {
    Arc::new(Field::new("item", dt, true))
}

fn accepts_scalar(dt: &DataType, s: ScalarType) -> bool {
    use DataType as D;
    if let D::Dictionary(_, values) = dt {
        return accepts_scalar(values, s);
    }
    match s {
        ScalarType::Bool => matches!(dt, D::Boolean),
        ScalarType::Int32 => matches!(dt, D::Int8 | D::Int16 | D::Int32 | D::UInt8 | D::UInt16),
        ScalarType::Int64 => matches!(
            dt,
            D::Int8 | D::Int16 | D::Int32 | D::Int64 | D::UInt8 | D::UInt16 | D::UInt32
        ),
        ScalarType::Float32 => matches!(dt, D::Float32),
        ScalarType::Float64 => matches!(dt, D::Float32 | D::Float64),
        ScalarType::String => matches!(dt, D::Utf8 | D::LargeUtf8 | D::Utf8View),
        ScalarType::Bytes => matches!(
            dt,
            D::Binary | D::LargeBinary | D::BinaryView | D::FixedSizeBinary(_)
        ),
        ScalarType::Timestamp => matches!(dt, D::Timestamp(_, _)),
    }
}

/// Whether a column of Arrow type `dt` can hold a feature of type `ty`.
pub(crate) fn accepts(dt: &DataType, ty: ValueType) -> bool {
    use DataType as D;
    match ty {
        ValueType::Scalar(s) => accepts_scalar(dt, s),
        ValueType::List(s) => match dt {
            D::List(f) | D::LargeList(f) | D::FixedSizeList(f, _) => {
                accepts_scalar(f.data_type(), s)
            }
            _ => false,
        },
        ValueType::Vector { dim } => match dt {
            D::FixedSizeList(f, n) => *n as u32 == dim && f.data_type() == &D::Float32,
            D::List(f) | D::LargeList(f) => f.data_type() == &D::Float32,
            _ => false,
        },
    }
}

/// What a feature column of type `ty` may be, for error messages.
pub(crate) fn expected(ty: ValueType) -> String {
    match ty {
        ValueType::Scalar(ScalarType::Int32) => "Int32 (or a narrower integer)".into(),
        ValueType::Scalar(ScalarType::Int64) => "Int64 (or a narrower integer)".into(),
        ValueType::Scalar(ScalarType::Float64) => "Float64 or Float32".into(),
        ValueType::Scalar(ScalarType::String) => "Utf8 (or LargeUtf8, Utf8View)".into(),
        ValueType::Scalar(ScalarType::Bytes) => "Binary (or LargeBinary, BinaryView)".into(),
        ValueType::Scalar(ScalarType::Timestamp) => "Timestamp of any unit".into(),
        ValueType::Vector { dim } => {
            format!("FixedSizeList<Float32, {dim}> (or List<Float32> of {dim} items)")
        }
        other => arrow_type(other).to_string(),
    }
}

/// Whether a column of Arrow type `dt` can hold a join key of type `ty`.
pub(crate) fn accepts_key(dt: &DataType, ty: KeyType) -> bool {
    match ty {
        KeyType::Int64 => accepts_scalar(dt, ScalarType::Int64),
        KeyType::String => accepts_scalar(dt, ScalarType::String),
    }
}

/// Whether a column of Arrow type `dt` can be an event or created timestamp.
pub(crate) fn accepts_timestamp(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Timestamp(_, _) | DataType::Int64 | DataType::Date32 | DataType::Date64
    )
}

fn widen<I: ArrowPrimitiveType, O: ArrowPrimitiveType>(
    a: &dyn Array,
    f: impl Fn(I::Native) -> O::Native,
) -> ArrayRef {
    Arc::new(a.as_primitive::<I>().unary::<_, O>(f))
}

/// Decodes a dictionary-encoded column into plain values.
fn undictionary(arr: &ArrayRef) -> Result<ArrayRef, String> {
    let dict = arr.as_any_dictionary();
    let keys: UInt32Array = dict
        .normalized_keys()
        .into_iter()
        .enumerate()
        .map(|(i, k)| {
            if arr.is_null(i) {
                Ok(None)
            } else {
                u32::try_from(k).map(Some).map_err(|e| e.to_string())
            }
        })
        .collect::<Result<_, _>>()?;
    arrow_select::take::take(dict.values().as_ref(), &keys, None).map_err(|e| e.to_string())
}

/// Converts a column accepted by [`accepts`] for scalar type `s` to the canonical type.
fn normalize_scalar(arr: &ArrayRef, s: ScalarType) -> Result<ArrayRef, String> {
    use DataType as D;
    let dt = arr.data_type();
    if dt == &scalar_type(s) {
        return Ok(arr.clone());
    }
    if let D::Dictionary(_, _) = dt {
        return normalize_scalar(&undictionary(arr)?, s);
    }
    let a = arr.as_ref();
    Ok(match (s, dt) {
        (ScalarType::Int32, D::Int8) => widen::<Int8Type, Int32Type>(a, i32::from),
        (ScalarType::Int32, D::Int16) => widen::<Int16Type, Int32Type>(a, i32::from),
        (ScalarType::Int32, D::UInt8) => widen::<UInt8Type, Int32Type>(a, i32::from),
        (ScalarType::Int32, D::UInt16) => widen::<UInt16Type, Int32Type>(a, i32::from),
        (ScalarType::Int64, D::Int8) => widen::<Int8Type, Int64Type>(a, i64::from),
        (ScalarType::Int64, D::Int16) => widen::<Int16Type, Int64Type>(a, i64::from),
        (ScalarType::Int64, D::Int32) => widen::<Int32Type, Int64Type>(a, i64::from),
        (ScalarType::Int64, D::UInt8) => widen::<UInt8Type, Int64Type>(a, i64::from),
        (ScalarType::Int64, D::UInt16) => widen::<UInt16Type, Int64Type>(a, i64::from),
        (ScalarType::Int64, D::UInt32) => widen::<UInt32Type, Int64Type>(a, i64::from),
        (ScalarType::Float64, D::Float32) => widen::<Float32Type, Float64Type>(a, f64::from),
        (ScalarType::String, D::LargeUtf8) => {
            Arc::new(a.as_string::<i64>().iter().collect::<StringArray>())
        }
        (ScalarType::String, D::Utf8View) => {
            Arc::new(a.as_string_view().iter().collect::<StringArray>())
        }
        (ScalarType::Bytes, D::LargeBinary) => {
            Arc::new(a.as_binary::<i64>().iter().collect::<BinaryArray>())
        }
        (ScalarType::Bytes, D::BinaryView) => {
            Arc::new(a.as_binary_view().iter().collect::<BinaryArray>())
        }
        (ScalarType::Bytes, D::FixedSizeBinary(_)) => {
            Arc::new(a.as_fixed_size_binary().iter().collect::<BinaryArray>())
        }
        (ScalarType::Timestamp, D::Timestamp(_, _)) => Arc::new(
            timestamps(arr, EpochUnit::Micros)?
                .reinterpret_cast::<TimestampMicrosecondType>()
                .with_timezone("UTC"),
        ),
        (_, other) => {
            return Err(format!(
                "is {other}, expected {}",
                expected(ValueType::Scalar(s))
            ))
        }
    })
}

/// Converts a column accepted by [`accepts`] for `ty` to the canonical type
/// ([`arrow_type`]). Errors describe the problem without the column name.
pub(crate) fn normalize(arr: &ArrayRef, ty: ValueType) -> Result<ArrayRef, String> {
    use DataType as D;
    if arr.data_type() == &arrow_type(ty) {
        return Ok(arr.clone());
    }
    match ty {
        ValueType::Scalar(s) => normalize_scalar(arr, s),
        ValueType::List(s) => {
            let field = item_field(scalar_type(s));
            let (offsets, values, nulls) = match arr.data_type() {
                D::List(_) => {
                    let l = arr.as_list::<i32>();
                    (l.offsets().clone(), l.values().clone(), l.nulls().cloned())
                }
                D::LargeList(_) => {
                    let l = arr.as_list::<i64>();
                    let offsets: Vec<i32> = l
                        .offsets()
                        .iter()
                        .map(|&o| i32::try_from(o))
                        .collect::<Result<_, _>>()
                        .map_err(|_| "list column has more than 2^31 items in one batch")?;
                    (
                        OffsetBuffer::new(offsets.into()),
                        l.values().clone(),
                        l.nulls().cloned(),
                    )
                }
                D::FixedSizeList(_, size) => {
                    let l = arr.as_fixed_size_list();
                    let offsets =
                        OffsetBuffer::from_lengths(std::iter::repeat_n(*size as usize, l.len()));
                    (offsets, l.values().clone(), l.nulls().cloned())
                }
                other => return Err(format!("is {other}, expected {}", expected(ty))),
            };
            // Offsets may start past 0 after slicing; normalize only the referenced items.
            let values = normalize_scalar(&values, s)?;
            ListArray::try_new(field, offsets, values, nulls)
                .map(|a| Arc::new(a) as ArrayRef)
                .map_err(|e| e.to_string())
        }
        ValueType::Vector { dim } => {
            let d = dim as usize;
            let field = item_field(DataType::Float32);
            match arr.data_type() {
                D::FixedSizeList(f, n) if *n as u32 == dim && f.data_type() == &D::Float32 => {
                    let l = arr.as_fixed_size_list();
                    FixedSizeListArray::try_new(
                        field,
                        dim as i32,
                        l.values().clone(),
                        l.nulls().cloned(),
                    )
                    .map(|a| Arc::new(a) as ArrayRef)
                    .map_err(|e| e.to_string())
                }
                D::List(f) | D::LargeList(f) if f.data_type() == &D::Float32 => {
                    let rows: Vec<Option<ArrayRef>> = if let D::List(_) = arr.data_type() {
                        arr.as_list::<i32>().iter().collect()
                    } else {
                        arr.as_list::<i64>().iter().collect()
                    };
                    let mut values: Vec<Option<f32>> = Vec::with_capacity(rows.len() * d);
                    for (i, row) in rows.iter().enumerate() {
                        match row {
                            Some(items) if arr.is_valid(i) => {
                                if items.len() != d {
                                    return Err(format!(
                                        "row {i}: a vector<{dim}> value has {} components",
                                        items.len()
                                    ));
                                }
                                values.extend(items.as_primitive::<Float32Type>().iter());
                            }
                            _ => values.extend(std::iter::repeat_n(Some(0.0), d)),
                        }
                    }
                    let nulls = arr.nulls().cloned().or_else(|| {
                        let valid: Vec<bool> = rows.iter().map(Option::is_some).collect();
                        valid
                            .iter()
                            .any(|v| !v)
                            .then(|| NullBuffer::from(valid.clone()))
                    });
                    FixedSizeListArray::try_new(
                        field,
                        dim as i32,
                        Arc::new(Float32Array::from(values)),
                        nulls,
                    )
                    .map(|a| Arc::new(a) as ArrayRef)
                    .map_err(|e| e.to_string())
                }
                other => Err(format!("is {other}, expected {}", expected(ty))),
            }
        }
    }
}

/// A canonical vector column as serving returns it from a feature stored as `storage`
/// (lossy storages quantize; float32 is exact and returned as is).
pub(crate) fn as_stored(arr: &ArrayRef, storage: VectorStorage) -> Result<ArrayRef, String> {
    if storage == VectorStorage::Float32 {
        return Ok(arr.clone());
    }
    let l = arr.as_fixed_size_list();
    let dim = l.value_length();
    let mut values = Vec::with_capacity(l.len() * dim as usize);
    for i in 0..l.len() {
        let start = values.len();
        values.extend_from_slice(l.value(i).as_primitive::<Float32Type>().values());
        if l.is_valid(i) {
            storage.round_trip(&mut values[start..]);
        }
    }
    FixedSizeListArray::try_new(
        item_field(DataType::Float32),
        dim,
        Arc::new(Float32Array::from(values)),
        l.nulls().cloned(),
    )
    .map(|a| Arc::new(a) as ArrayRef)
    .map_err(|e| e.to_string())
}

/// An event or created time column as microseconds since the epoch (nulls kept).
pub(crate) fn timestamps(arr: &ArrayRef, epoch: EpochUnit) -> Result<Int64Array, String> {
    use DataType as D;
    fn scale(unit: EpochUnit) -> impl Fn(i64) -> i64 {
        move |v: i64| match unit {
            EpochUnit::Seconds => v.saturating_mul(1_000_000),
            EpochUnit::Millis => v.saturating_mul(1_000),
            EpochUnit::Micros => v,
            EpochUnit::Nanos => v.div_euclid(1_000),
        }
    }
    let a = arr.as_ref();
    let micros = match a.data_type() {
        D::Timestamp(TimeUnit::Second, _) => a
            .as_primitive::<TimestampSecondType>()
            .unary(scale(EpochUnit::Seconds)),
        D::Timestamp(TimeUnit::Millisecond, _) => a
            .as_primitive::<TimestampMillisecondType>()
            .unary(scale(EpochUnit::Millis)),
        D::Timestamp(TimeUnit::Microsecond, _) => a
            .as_primitive::<TimestampMicrosecondType>()
            .unary(scale(EpochUnit::Micros)),
        D::Timestamp(TimeUnit::Nanosecond, _) => a
            .as_primitive::<TimestampNanosecondType>()
            .unary(scale(EpochUnit::Nanos)),
        D::Int64 => a.as_primitive::<Int64Type>().unary(scale(epoch)),
        D::Date32 => a
            .as_primitive::<Date32Type>()
            .unary(|d| i64::from(d) * 86_400_000_000),
        D::Date64 => a
            .as_primitive::<Date64Type>()
            .unary(scale(EpochUnit::Millis)),
        other => {
            return Err(format!(
                "is {other}, expected a Timestamp (any unit), Date or Int64 epoch column"
            ))
        }
    };
    // A time outside years 1-9999 is a unit mistake (nanoseconds read as microseconds lands
    // in year 55 000, and an overflowing scale saturates): joined as it is, it would only
    // produce nulls or no rows.
    let bad =
        (0..micros.len()).find(|&i| micros.is_valid(i) && !TIME_RANGE.contains(&micros.value(i)));
    if let Some(i) = bad {
        let read_as = match a.data_type() {
            D::Int64 => format!(
                "{} read as {}",
                a.as_primitive::<Int64Type>().value(i),
                epoch.name()
            ),
            other => format!("a {other} value"),
        };
        return Err(format!(
            "row {i}: {read_as} is outside years 1 to 9999; if the column holds another unit, \
             say which (--epoch-unit s, ms, us or ns)"
        ));
    }
    Ok(micros)
}

/// Times a training set or history may hold, microseconds since the epoch: years 1 to 9999
/// (what Arrow, Parquet readers and protobuf timestamps all represent).
const TIME_RANGE: std::ops::RangeInclusive<i64> = -62_135_596_800_000_000..=253_402_300_799_999_999;

/// Row `i` of a canonical column of type `ty` (as [`arrow_type`] gives, e.g. a training-set
/// column) as an engine value. Lists and vectors with null items are refused: the store has
/// no null items.
pub fn value_at(arr: &dyn Array, ty: ValueType, i: usize) -> Result<Value, String> {
    if arr.is_null(i) {
        return Ok(Value::Null);
    }
    Ok(match ty {
        ValueType::Scalar(s) => match s {
            ScalarType::Bool => Value::Bool(arr.as_boolean().value(i)),
            ScalarType::Int32 => Value::Int32(arr.as_primitive::<Int32Type>().value(i)),
            ScalarType::Int64 => Value::Int64(arr.as_primitive::<Int64Type>().value(i)),
            ScalarType::Float32 => Value::Float32(arr.as_primitive::<Float32Type>().value(i)),
            ScalarType::Float64 => Value::Float64(arr.as_primitive::<Float64Type>().value(i)),
            ScalarType::String => Value::String(arr.as_string::<i32>().value(i).to_owned()),
            ScalarType::Bytes => Value::Bytes(arr.as_binary::<i32>().value(i).to_vec()),
            ScalarType::Timestamp => {
                Value::Timestamp(arr.as_primitive::<TimestampMicrosecondType>().value(i))
            }
        },
        ValueType::List(s) => {
            let items = arr.as_list::<i32>().value(i);
            if items.null_count() > 0 {
                return Err(format!("row {i}: a list value has a null item"));
            }
            let it = items.as_ref();
            match s {
                ScalarType::Bool => Value::BoolList(it.as_boolean().values().iter().collect()),
                ScalarType::Int32 => {
                    Value::Int32List(it.as_primitive::<Int32Type>().values().to_vec())
                }
                ScalarType::Int64 => {
                    Value::Int64List(it.as_primitive::<Int64Type>().values().to_vec())
                }
                ScalarType::Float32 => {
                    Value::Float32List(it.as_primitive::<Float32Type>().values().to_vec())
                }
                ScalarType::Float64 => {
                    Value::Float64List(it.as_primitive::<Float64Type>().values().to_vec())
                }
                ScalarType::String => Value::StringList(
                    it.as_string::<i32>()
                        .iter()
                        .map(|s| s.unwrap_or_default().to_owned())
                        .collect(),
                ),
                ScalarType::Bytes => Value::BytesList(
                    it.as_binary::<i32>()
                        .iter()
                        .map(|b| b.unwrap_or_default().to_vec())
                        .collect(),
                ),
                ScalarType::Timestamp => Value::TimestampList(
                    it.as_primitive::<TimestampMicrosecondType>()
                        .values()
                        .to_vec(),
                ),
            }
        }
        ValueType::Vector { .. } => {
            let items = arr.as_fixed_size_list().value(i);
            if items.null_count() > 0 {
                return Err(format!("row {i}: a vector value has a null component"));
            }
            Value::Vector(items.as_primitive::<Float32Type>().values().to_vec())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int32Array, LargeStringArray, ListArray, TimestampNanosecondArray};

    #[test]
    fn narrower_and_other_spellings_normalize_to_the_canonical_type() {
        let a: ArrayRef = Arc::new(Int32Array::from(vec![Some(1), None, Some(-3)]));
        let n = normalize(&a, ValueType::Scalar(ScalarType::Int64)).unwrap();
        assert_eq!(n.data_type(), &DataType::Int64);
        assert_eq!(n.null_count(), 1);
        let s: ArrayRef = Arc::new(LargeStringArray::from(vec![Some("a"), None]));
        let n = normalize(&s, ValueType::Scalar(ScalarType::String)).unwrap();
        assert_eq!(n.as_string::<i32>().value(0), "a");
        let t: ArrayRef = Arc::new(TimestampNanosecondArray::from(vec![1_500, -1_500]));
        let n = normalize(&t, ValueType::Scalar(ScalarType::Timestamp)).unwrap();
        assert_eq!(
            n.data_type(),
            &arrow_type(ValueType::Scalar(ScalarType::Timestamp))
        );
        let v = n.as_primitive::<TimestampMicrosecondType>();
        assert_eq!(
            (v.value(0), v.value(1)),
            (1, -2),
            "nanoseconds floor to microseconds"
        );
    }

    #[test]
    fn vectors_from_lists_are_checked_for_their_dimension() {
        let ok: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Float32Type, _, _>(vec![
            Some(vec![Some(1.0), Some(2.0)]),
            None,
        ]));
        let n = normalize(&ok, ValueType::Vector { dim: 2 }).unwrap();
        assert_eq!(n.data_type(), &arrow_type(ValueType::Vector { dim: 2 }));
        assert_eq!(
            value_at(n.as_ref(), ValueType::Vector { dim: 2 }, 0).unwrap(),
            Value::Vector(vec![1.0, 2.0])
        );
        assert_eq!(
            value_at(n.as_ref(), ValueType::Vector { dim: 2 }, 1).unwrap(),
            Value::Null
        );
        let bad: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Float32Type, _, _>(vec![
            Some(vec![Some(1.0)]),
        ]));
        let e = normalize(&bad, ValueType::Vector { dim: 2 }).unwrap_err();
        assert!(e.contains("1 components"), "{e}");
    }

    #[test]
    fn wrong_types_are_refused_up_front() {
        assert!(!accepts(
            &DataType::Utf8,
            ValueType::Scalar(ScalarType::Int64)
        ));
        assert!(!accepts(
            &DataType::Int64,
            ValueType::Scalar(ScalarType::Int32)
        ));
        assert!(accepts(
            &DataType::Int32,
            ValueType::Scalar(ScalarType::Int64)
        ));
        assert!(!accepts_timestamp(&DataType::Utf8));
        assert!(accepts_key(&DataType::LargeUtf8, KeyType::String));
    }
}
