//! Columnar read results: one packed array per requested feature, rows in request order.

use super::{ScalarType, Value, ValueType};

/// The status of one served value. The numbers match Feast's `FieldStatus`, so the server can
/// put them on the wire as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum Status {
    /// Not filled in (never returned by a successful read).
    #[default]
    Invalid = 0,
    /// The value is present and fresh.
    Present = 1,
    /// The entity is known and this value was written as null.
    NullValue = 2,
    /// The entity, or this feature of it, was never written (or its value was reclaimed).
    NotFound = 3,
    /// The value is older than the feature's TTL or the request's `max_age`; it is withheld.
    OutsideMaxAge = 4,
}

/// Variable-length values (strings, bytes): one `(start, len)` span per row into `data`.
///
/// Spans are in request order; `data` is in the order rows were visited (grouped by shard),
/// which is why this is spans and not offsets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VarColumn {
    /// `(start, len)` into `data`, one per row.
    pub spans: Vec<(u32, u32)>,
    /// The bytes of every row, concatenated.
    pub data: Vec<u8>,
}

impl VarColumn {
    /// The bytes of row `i`.
    pub fn get(&self, i: usize) -> &[u8] {
        let (s, l) = self.spans[i];
        &self.data[s as usize..(s + l) as usize]
    }

    pub(crate) fn set(&mut self, i: usize, bytes: &[u8]) {
        let start = self.data.len() as u32;
        self.data.extend_from_slice(bytes);
        self.spans[i] = (start, bytes.len() as u32);
    }

    /// Appends an item at the end (list items are appended, not indexed).
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        let start = self.data.len() as u32;
        self.data.extend_from_slice(bytes);
        self.spans.push((start, bytes.len() as u32));
    }
}

/// The packed values of one column. Rows that are not `Present` hold a default (zero, empty).
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnData {
    /// `bool`
    Bool(Vec<bool>),
    /// `int32`
    Int32(Vec<i32>),
    /// `int64`
    Int64(Vec<i64>),
    /// `float32`
    Float32(Vec<f32>),
    /// `float64`
    Float64(Vec<f64>),
    /// `timestamp` (microseconds)
    Timestamp(Vec<i64>),
    /// `string` (UTF-8 bytes)
    String(VarColumn),
    /// `bytes`
    Bytes(VarColumn),
    /// `vector<dim>`: row `i` is `data[i * dim .. (i + 1) * dim]`.
    Vector {
        /// Components per row.
        dim: u32,
        /// All rows' components.
        data: Vec<f32>,
    },
    /// `list<T>`: row `i` is items `spans[i].0 .. spans[i].0 + spans[i].1` of `items`.
    List {
        /// `(first item, item count)` per row.
        spans: Vec<(u32, u32)>,
        /// The items of every row, as a flat scalar column.
        items: Box<ColumnData>,
    },
}

impl ColumnData {
    /// An empty column for values of type `ty`.
    pub fn new(ty: ValueType) -> Self {
        match ty {
            ValueType::Scalar(s) => Self::scalar(s),
            ValueType::List(s) => Self::List {
                spans: Vec::new(),
                items: Box::new(Self::scalar(s)),
            },
            ValueType::Vector { dim } => Self::Vector {
                dim,
                data: Vec::new(),
            },
        }
    }

    fn scalar(s: ScalarType) -> Self {
        match s {
            ScalarType::Bool => Self::Bool(Vec::new()),
            ScalarType::Int32 => Self::Int32(Vec::new()),
            ScalarType::Int64 => Self::Int64(Vec::new()),
            ScalarType::Float32 => Self::Float32(Vec::new()),
            ScalarType::Float64 => Self::Float64(Vec::new()),
            ScalarType::Timestamp => Self::Timestamp(Vec::new()),
            ScalarType::String => Self::String(VarColumn::default()),
            ScalarType::Bytes => Self::Bytes(VarColumn::default()),
        }
    }

    /// Clears the column and fills it with `rows` default rows, keeping its allocations.
    pub fn reset(&mut self, rows: usize) {
        match self {
            Self::Bool(v) => reset_vec(v, rows),
            Self::Int32(v) => reset_vec(v, rows),
            Self::Int64(v) | Self::Timestamp(v) => reset_vec(v, rows),
            Self::Float32(v) => reset_vec(v, rows),
            Self::Float64(v) => reset_vec(v, rows),
            Self::String(v) | Self::Bytes(v) => {
                reset_vec(&mut v.spans, rows);
                v.data.clear();
            }
            Self::Vector { dim, data } => reset_vec(data, rows * *dim as usize),
            Self::List { spans, items } => {
                reset_vec(spans, rows);
                items.clear_items();
            }
        }
    }

    /// Empties a list's item column (items are appended, never indexed by row).
    fn clear_items(&mut self) {
        match self {
            Self::Bool(v) => v.clear(),
            Self::Int32(v) => v.clear(),
            Self::Int64(v) | Self::Timestamp(v) => v.clear(),
            Self::Float32(v) => v.clear(),
            Self::Float64(v) => v.clear(),
            Self::String(v) | Self::Bytes(v) => {
                v.spans.clear();
                v.data.clear();
            }
            Self::Vector { data, .. } => data.clear(),
            Self::List { spans, items } => {
                spans.clear();
                items.clear_items();
            }
        }
    }

    /// Number of rows (for a list's item column: number of items).
    pub fn len(&self) -> usize {
        match self {
            Self::Bool(v) => v.len(),
            Self::Int32(v) => v.len(),
            Self::Int64(v) | Self::Timestamp(v) => v.len(),
            Self::Float32(v) => v.len(),
            Self::Float64(v) => v.len(),
            Self::String(v) | Self::Bytes(v) => v.spans.len(),
            Self::Vector { dim, data } => data.len() / (*dim).max(1) as usize,
            Self::List { spans, .. } => spans.len(),
        }
    }

    /// Whether the column has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of variable-length values gathered so far (string and bytes data, list items);
    /// `None` for fixed-width columns, whose size follows from the row count alone.
    pub fn variable_bytes(&self) -> Option<usize> {
        match self {
            Self::String(v) | Self::Bytes(v) => Some(v.data.len()),
            Self::List { items, .. } => Some(items.item_bytes()),
            _ => None,
        }
    }

    /// Bytes held by a list's item column.
    fn item_bytes(&self) -> usize {
        match self {
            Self::Bool(v) => v.len(),
            Self::Int32(v) => v.len() * 4,
            Self::Int64(v) | Self::Timestamp(v) => v.len() * 8,
            Self::Float32(v) => v.len() * 4,
            Self::Float64(v) => v.len() * 8,
            Self::String(v) | Self::Bytes(v) => v.data.len() + v.spans.len() * 8,
            Self::Vector { data, .. } => data.len() * 4,
            Self::List { spans, items } => spans.len() * 8 + items.item_bytes(),
        }
    }

    /// Row `i` as an owned [`Value`] (for tests and slow paths; the server reads the arrays).
    pub fn value_at(&self, i: usize) -> Value {
        match self {
            Self::Bool(v) => Value::Bool(v[i]),
            Self::Int32(v) => Value::Int32(v[i]),
            Self::Int64(v) => Value::Int64(v[i]),
            Self::Timestamp(v) => Value::Timestamp(v[i]),
            Self::Float32(v) => Value::Float32(v[i]),
            Self::Float64(v) => Value::Float64(v[i]),
            Self::String(v) => Value::String(String::from_utf8_lossy(v.get(i)).into_owned()),
            Self::Bytes(v) => Value::Bytes(v.get(i).to_vec()),
            Self::Vector { dim, data } => {
                let d = *dim as usize;
                Value::Vector(data[i * d..(i + 1) * d].to_vec())
            }
            Self::List { spans, items } => {
                let (s, l) = spans[i];
                items.list_value(s as usize..(s + l) as usize)
            }
        }
    }

    fn list_value(&self, r: std::ops::Range<usize>) -> Value {
        match self {
            Self::Bool(v) => Value::BoolList(v[r].to_vec()),
            Self::Int32(v) => Value::Int32List(v[r].to_vec()),
            Self::Int64(v) => Value::Int64List(v[r].to_vec()),
            Self::Timestamp(v) => Value::TimestampList(v[r].to_vec()),
            Self::Float32(v) => Value::Float32List(v[r].to_vec()),
            Self::Float64(v) => Value::Float64List(v[r].to_vec()),
            Self::String(v) => Value::StringList(
                r.map(|j| String::from_utf8_lossy(v.get(j)).into_owned())
                    .collect(),
            ),
            Self::Bytes(v) => Value::BytesList(r.map(|j| v.get(j).to_vec()).collect()),
            // Lists of vectors or lists do not exist in the type system.
            Self::Vector { .. } | Self::List { .. } => Value::Null,
        }
    }
}

fn reset_vec<T: Default + Clone>(v: &mut Vec<T>, rows: usize) {
    v.clear();
    v.resize(rows, T::default());
}

/// One requested feature's result: values, statuses and event timestamps, row for row.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureColumn {
    /// The feature's type.
    pub ty: ValueType,
    /// The packed values.
    pub values: ColumnData,
    /// One status per row.
    pub statuses: Vec<Status>,
    /// The event timestamp (microseconds) of each row's value; 0 where not found.
    pub event_ts: Vec<i64>,
}

impl FeatureColumn {
    /// An empty column for a feature of type `ty`.
    pub fn new(ty: ValueType) -> Self {
        Self {
            ty,
            values: ColumnData::new(ty),
            statuses: Vec::new(),
            event_ts: Vec::new(),
        }
    }

    /// Clears the column and sizes it for `rows` rows, every row `NotFound`.
    pub fn reset(&mut self, rows: usize) {
        self.values.reset(rows);
        self.statuses.clear();
        self.statuses.resize(rows, Status::NotFound);
        self.event_ts.clear();
        self.event_ts.resize(rows, 0);
    }

    /// Row `i` as a value: `Some(value)` when present, `Some(Value::Null)` when null, else `None`.
    pub fn get(&self, i: usize) -> Option<Value> {
        match self.statuses[i] {
            Status::Present => Some(self.values.value_at(i)),
            Status::NullValue => Some(Value::Null),
            _ => None,
        }
    }
}
