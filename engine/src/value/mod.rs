//! Feature types, owned values (the write path) and typed columns (the read path).
//!
//! Writes carry [`Value`]s; reads fill [`ColumnData`] — one packed array per requested
//! feature — so a batched get never builds a value object per cell.

mod column;
mod quant;

pub use column::{ColumnData, FeatureColumn, Status, VarColumn};
pub use quant::VectorStorage;

use std::fmt;

/// The element types a feature (or a list feature's items) can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ScalarType {
    /// `bool`
    Bool,
    /// `int32`
    Int32,
    /// `int64`
    Int64,
    /// `float32`
    Float32,
    /// `float64`
    Float64,
    /// UTF-8 `string`
    String,
    /// raw `bytes`
    Bytes,
    /// `timestamp`: microseconds since the Unix epoch
    Timestamp,
}

impl ScalarType {
    /// The registry spelling of this type.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bool => "bool",
            Self::Int32 => "int32",
            Self::Int64 => "int64",
            Self::Float32 => "float32",
            Self::Float64 => "float64",
            Self::String => "string",
            Self::Bytes => "bytes",
            Self::Timestamp => "timestamp",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "bool" => Self::Bool,
            "int32" => Self::Int32,
            "int64" => Self::Int64,
            "float32" | "float" => Self::Float32,
            "float64" | "double" => Self::Float64,
            "string" => Self::String,
            "bytes" => Self::Bytes,
            "timestamp" | "unix_timestamp" => Self::Timestamp,
            _ => return None,
        })
    }
}

/// The type of a feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ValueType {
    /// A single value.
    Scalar(ScalarType),
    /// A variable-length list of values of one type.
    List(ScalarType),
    /// A fixed-dimension float32 vector (an embedding).
    Vector {
        /// Number of float32 components; every value of this feature has exactly this many.
        dim: u32,
    },
}

/// Largest embedding dimension the registry accepts; bounds every vector read from disk.
pub const MAX_VECTOR_DIM: u32 = 65_536;

impl ValueType {
    /// Parses a registry type name: `int64`, `list<string>`, `vector<64>`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if let Some(inner) = strip_generic(t, "list") {
            return ScalarType::parse(inner)
                .map(Self::List)
                .ok_or_else(|| format!("unknown list item type {inner:?} in {s:?}"));
        }
        if let Some(inner) = strip_generic(t, "vector") {
            let dim: u32 = inner
                .parse()
                .map_err(|_| format!("vector dimension {inner:?} in {s:?} is not a number"))?;
            if dim == 0 || dim > MAX_VECTOR_DIM {
                return Err(format!(
                    "vector dimension {dim} in {s:?} must be between 1 and {MAX_VECTOR_DIM}"
                ));
            }
            return Ok(Self::Vector { dim });
        }
        ScalarType::parse(t).map(Self::Scalar).ok_or_else(|| {
            format!(
                "unknown type {s:?} (expected bool, int32, int64, float32, float64, string, \
                 bytes, timestamp, list<T> or vector<N>)"
            )
        })
    }
}

fn strip_generic<'a>(t: &'a str, name: &str) -> Option<&'a str> {
    let rest = t.strip_prefix(name)?;
    let rest = rest.strip_prefix('<').or_else(|| rest.strip_prefix('['))?;
    let inner = rest.strip_suffix('>').or_else(|| rest.strip_suffix(']'))?;
    Some(inner.trim())
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Scalar(s) => f.write_str(s.name()),
            Self::List(s) => write!(f, "list<{}>", s.name()),
            Self::Vector { dim } => write!(f, "vector<{dim}>"),
        }
    }
}

/// One owned feature value, as written by clients.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// An explicit null: the entity is known, this value is not.
    Null,
    /// `bool`
    Bool(bool),
    /// `int32`
    Int32(i32),
    /// `int64`
    Int64(i64),
    /// `float32`
    Float32(f32),
    /// `float64`
    Float64(f64),
    /// `string`
    String(String),
    /// `bytes`
    Bytes(Vec<u8>),
    /// `timestamp` in microseconds since the Unix epoch
    Timestamp(i64),
    /// `list<bool>`
    BoolList(Vec<bool>),
    /// `list<int32>`
    Int32List(Vec<i32>),
    /// `list<int64>`
    Int64List(Vec<i64>),
    /// `list<float32>`
    Float32List(Vec<f32>),
    /// `list<float64>`
    Float64List(Vec<f64>),
    /// `list<string>`
    StringList(Vec<String>),
    /// `list<bytes>`
    BytesList(Vec<Vec<u8>>),
    /// `list<timestamp>`
    TimestampList(Vec<i64>),
    /// `vector<N>`
    Vector(Vec<f32>),
}

impl Value {
    /// Whether this value may be stored in a feature of type `ty` (null fits every type).
    pub fn fits(&self, ty: ValueType) -> bool {
        use ScalarType as S;
        match (self, ty) {
            (Self::Null, _) => true,
            (Self::Vector(v), ValueType::Vector { dim }) => v.len() == dim as usize,
            (Self::Bool(_), ValueType::Scalar(S::Bool))
            | (Self::Int32(_), ValueType::Scalar(S::Int32))
            | (Self::Int64(_), ValueType::Scalar(S::Int64))
            | (Self::Float32(_), ValueType::Scalar(S::Float32))
            | (Self::Float64(_), ValueType::Scalar(S::Float64))
            | (Self::String(_), ValueType::Scalar(S::String))
            | (Self::Bytes(_), ValueType::Scalar(S::Bytes))
            | (Self::Timestamp(_), ValueType::Scalar(S::Timestamp))
            | (Self::BoolList(_), ValueType::List(S::Bool))
            | (Self::Int32List(_), ValueType::List(S::Int32))
            | (Self::Int64List(_), ValueType::List(S::Int64))
            | (Self::Float32List(_), ValueType::List(S::Float32))
            | (Self::Float64List(_), ValueType::List(S::Float64))
            | (Self::StringList(_), ValueType::List(S::String))
            | (Self::BytesList(_), ValueType::List(S::Bytes))
            | (Self::TimestampList(_), ValueType::List(S::Timestamp)) => true,
            _ => false,
        }
    }

    /// A short name of this value's kind, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Bool(_) => "bool",
            Self::Int32(_) => "int32",
            Self::Int64(_) => "int64",
            Self::Float32(_) => "float32",
            Self::Float64(_) => "float64",
            Self::String(_) => "string",
            Self::Bytes(_) => "bytes",
            Self::Timestamp(_) => "timestamp",
            Self::BoolList(_) => "list<bool>",
            Self::Int32List(_) => "list<int32>",
            Self::Int64List(_) => "list<int64>",
            Self::Float32List(_) => "list<float32>",
            Self::Float64List(_) => "list<float64>",
            Self::StringList(_) => "list<string>",
            Self::BytesList(_) => "list<bytes>",
            Self::TimestampList(_) => "list<timestamp>",
            Self::Vector(_) => "vector",
        }
    }

    /// Equality that treats NaN as equal to NaN with the same bits (what a store must preserve).
    pub fn bit_eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Float32(a), Self::Float32(b)) => a.to_bits() == b.to_bits(),
            (Self::Float64(a), Self::Float64(b)) => a.to_bits() == b.to_bits(),
            (Self::Float32List(a), Self::Float32List(b)) | (Self::Vector(a), Self::Vector(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
            }
            (Self::Float64List(a), Self::Float64List(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
            }
            _ => self == other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_type_name() {
        for (s, t) in [
            ("bool", ValueType::Scalar(ScalarType::Bool)),
            ("int64", ValueType::Scalar(ScalarType::Int64)),
            ("list<string>", ValueType::List(ScalarType::String)),
            ("list[float64]", ValueType::List(ScalarType::Float64)),
            ("vector<64>", ValueType::Vector { dim: 64 }),
            ("timestamp", ValueType::Scalar(ScalarType::Timestamp)),
        ] {
            assert_eq!(ValueType::parse(s), Ok(t), "{s}");
            assert_eq!(ValueType::parse(&t.to_string()), Ok(t));
        }
        assert!(ValueType::parse("flaot")
            .unwrap_err()
            .contains("unknown type"));
        assert!(ValueType::parse("vector<0>").is_err());
        assert!(ValueType::parse("vector<x>").is_err());
        assert!(ValueType::parse("list<vector<3>>").is_err());
    }

    #[test]
    fn fits_checks_kind_and_dimension() {
        assert!(Value::Null.fits(ValueType::Vector { dim: 3 }));
        assert!(Value::Vector(vec![1.0; 3]).fits(ValueType::Vector { dim: 3 }));
        assert!(!Value::Vector(vec![1.0; 2]).fits(ValueType::Vector { dim: 3 }));
        assert!(!Value::Int32(1).fits(ValueType::Scalar(ScalarType::Int64)));
    }
}
