//! The payload of a logged write: a view name and its rows, self-describing so that replay
//! does not depend on anything but the bytes.
//!
//! ```text
//! version  u8 (1)
//! view     varint length + UTF-8 name
//! nrows    varint
//! row      key (varint length + bytes) · event_ts zigzag varint · has_created u8
//!          [· created_ts zigzag varint] · nvalues varint · value*
//! value    feature index varint · tag u8 · bytes (tag 1 bool: one byte 0/1; otherwise
//!          the record encoding of that type, see the record module; vectors carry a
//!          varint dimension first)
//! ```

use crate::clock::Micros;
use crate::encoding::{get_varint, put_varint, take, take_prefixed, unzigzag, zigzag};
use crate::key::MAX_KEY_LEN;
use crate::record::encode_value;
use crate::value::{ColumnData, ScalarType, Value, ValueType, MAX_VECTOR_DIM};

const VERSION: u8 = 1;

/// One entity row to write: values for some or all of a view's features.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Canonical entity key (see [`crate::KeyBatch`] / [`crate::encode_key`]).
    pub key: Vec<u8>,
    /// Event time of every value in the row, microseconds.
    pub event_ts: Micros,
    /// Optional created time, the tie-breaker for equal event times.
    pub created_ts: Option<Micros>,
    /// `(feature index in the view, value)`.
    pub values: Vec<(usize, Value)>,
}

/// Encodes a write of `rows` to `view` for the log.
pub(crate) fn encode_batch(view: &str, rows: &[Row], out: &mut Vec<u8>) {
    out.push(VERSION);
    put_bytes(out, view.as_bytes());
    put_varint(out, rows.len() as u64);
    for r in rows {
        put_bytes(out, &r.key);
        put_varint(out, zigzag(r.event_ts));
        match r.created_ts {
            Some(c) => {
                out.push(1);
                put_varint(out, zigzag(c));
            }
            None => out.push(0),
        }
        put_varint(out, r.values.len() as u64);
        for (f, v) in &r.values {
            put_varint(out, *f as u64);
            let (tag, _) = tag_of(v);
            out.push(tag);
            match v {
                Value::Null => {}
                Value::Bool(b) => out.push(u8::from(*b)),
                Value::Vector(x) => {
                    put_varint(out, x.len() as u64);
                    encode_value(v, out);
                }
                _ => encode_value(v, out),
            }
        }
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn tag_of(v: &Value) -> (u8, Option<ValueType>) {
    use ScalarType as S;
    use ValueType::{List, Scalar};
    match v {
        Value::Null => (0, None),
        Value::Bool(_) => (1, Some(Scalar(S::Bool))),
        Value::Int32(_) => (2, Some(Scalar(S::Int32))),
        Value::Int64(_) => (3, Some(Scalar(S::Int64))),
        Value::Float32(_) => (4, Some(Scalar(S::Float32))),
        Value::Float64(_) => (5, Some(Scalar(S::Float64))),
        Value::String(_) => (6, Some(Scalar(S::String))),
        Value::Bytes(_) => (7, Some(Scalar(S::Bytes))),
        Value::Timestamp(_) => (8, Some(Scalar(S::Timestamp))),
        Value::BoolList(_) => (9, Some(List(S::Bool))),
        Value::Int32List(_) => (10, Some(List(S::Int32))),
        Value::Int64List(_) => (11, Some(List(S::Int64))),
        Value::Float32List(_) => (12, Some(List(S::Float32))),
        Value::Float64List(_) => (13, Some(List(S::Float64))),
        Value::StringList(_) => (14, Some(List(S::String))),
        Value::BytesList(_) => (15, Some(List(S::Bytes))),
        Value::TimestampList(_) => (16, Some(List(S::Timestamp))),
        Value::Vector(_) => (17, None),
    }
}

fn type_of_tag(tag: u8) -> Option<ValueType> {
    use ScalarType as S;
    use ValueType::{List, Scalar};
    Some(match tag {
        1 => Scalar(S::Bool),
        2 => Scalar(S::Int32),
        3 => Scalar(S::Int64),
        4 => Scalar(S::Float32),
        5 => Scalar(S::Float64),
        6 => Scalar(S::String),
        7 => Scalar(S::Bytes),
        8 => Scalar(S::Timestamp),
        9 => List(S::Bool),
        10 => List(S::Int32),
        11 => List(S::Int64),
        12 => List(S::Float32),
        13 => List(S::Float64),
        14 => List(S::String),
        15 => List(S::Bytes),
        16 => List(S::Timestamp),
        _ => return None,
    })
}

/// A decoded batch.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Batch {
    pub(crate) view: String,
    pub(crate) rows: Vec<Row>,
}

/// Decodes a batch; every count is bounded by the bytes left, so damage cannot allocate more
/// than the payload's size.
pub(crate) fn decode_batch(buf: &[u8]) -> Result<Batch, &'static str> {
    let mut pos = 0;
    if buf.first() != Some(&VERSION) {
        return Err("unknown write batch version");
    }
    pos += 1;
    let view = take_prefixed(buf, &mut pos).ok_or("truncated view name")?;
    let view = std::str::from_utf8(view)
        .map_err(|_| "view name is not UTF-8")?
        .to_owned();
    let nrows = count(buf, &mut pos)?;
    let mut rows = Vec::with_capacity(nrows);
    for _ in 0..nrows {
        let key = take_prefixed(buf, &mut pos).ok_or("truncated key")?;
        if key.len() > MAX_KEY_LEN {
            return Err("key too long");
        }
        let event_ts = unzigzag(get_varint(buf, &mut pos).ok_or("truncated event time")?);
        let created_ts = match take(buf, &mut pos, 1).ok_or("truncated created flag")?[0] {
            0 => None,
            1 => Some(unzigzag(
                get_varint(buf, &mut pos).ok_or("truncated created time")?,
            )),
            _ => return Err("bad created flag"),
        };
        let nvalues = count(buf, &mut pos)?;
        let mut values = Vec::with_capacity(nvalues);
        for _ in 0..nvalues {
            let f = get_varint(buf, &mut pos).ok_or("truncated feature index")?;
            let f = usize::try_from(f).map_err(|_| "feature index too large")?;
            let tag = take(buf, &mut pos, 1).ok_or("truncated value tag")?[0];
            values.push((f, decode_value(tag, buf, &mut pos)?));
        }
        rows.push(Row {
            key: key.to_vec(),
            event_ts,
            created_ts,
            values,
        });
    }
    if pos != buf.len() {
        return Err("trailing bytes after the last row");
    }
    Ok(Batch { view, rows })
}

fn count(buf: &[u8], pos: &mut usize) -> Result<usize, &'static str> {
    let n = get_varint(buf, pos).ok_or("truncated count")?;
    // Every counted item takes at least one byte.
    if n > (buf.len() - *pos) as u64 {
        return Err("count larger than the payload");
    }
    Ok(n as usize)
}

fn decode_value(tag: u8, buf: &[u8], pos: &mut usize) -> Result<Value, &'static str> {
    match tag {
        0 => return Ok(Value::Null),
        1 => {
            return match take(buf, pos, 1).ok_or("truncated bool")?[0] {
                0 => Ok(Value::Bool(false)),
                1 => Ok(Value::Bool(true)),
                _ => Err("bad bool"),
            }
        }
        _ => {}
    }
    let ty = if tag == 17 {
        let dim = get_varint(buf, pos).ok_or("truncated vector dimension")?;
        if dim == 0 || dim > u64::from(MAX_VECTOR_DIM) {
            return Err("vector dimension out of range");
        }
        ValueType::Vector { dim: dim as u32 }
    } else {
        type_of_tag(tag).ok_or("unknown value tag")?
    };
    // Decode through the same code the read path uses, one value into a one-row column.
    let start = *pos;
    crate::record::skip_value(ty, buf, pos).ok_or("truncated value")?;
    let mut col = ColumnData::new(ty);
    col.reset(1);
    crate::record::decode_bytes_into(ty, &buf[start..*pos], &mut col, 0).map_err(|m| m.0)?;
    Ok(col.value_at(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<Row> {
        vec![
            Row {
                key: vec![1, 2, 3],
                event_ts: -5,
                created_ts: Some(i64::MAX),
                values: vec![
                    (0, Value::Null),
                    (1, Value::Bool(true)),
                    (2, Value::Int32(i32::MIN)),
                    (3, Value::Float64(f64::NAN)),
                    (4, Value::String("ü".into())),
                    (5, Value::Vector(vec![1.0, -0.0])),
                    (6, Value::StringList(vec![String::new(), "x".into()])),
                    (7, Value::BoolList(vec![true; 9])),
                    (8, Value::TimestampList(vec![])),
                ],
            },
            Row {
                key: vec![],
                event_ts: 1_700_000_000_000_000,
                created_ts: None,
                values: vec![(19, Value::Bytes(vec![0; 3]))],
            },
        ]
    }

    #[test]
    fn batches_round_trip() {
        let mut buf = Vec::new();
        encode_batch("user_stats", &rows(), &mut buf);
        let b = decode_batch(&buf).unwrap();
        assert_eq!(b.view, "user_stats");
        assert_eq!(b.rows.len(), 2);
        for (got, want) in b.rows.iter().zip(rows()) {
            assert_eq!(
                (&got.key, got.event_ts, got.created_ts),
                (&want.key, want.event_ts, want.created_ts)
            );
            for ((gf, gv), (wf, wv)) in got.values.iter().zip(&want.values) {
                assert_eq!(gf, wf);
                assert!(gv.bit_eq(wv), "{gv:?} != {wv:?}");
            }
        }
    }

    #[test]
    fn damaged_batches_are_refused_without_panicking() {
        let mut buf = Vec::new();
        encode_batch("v", &rows(), &mut buf);
        for cut in 0..buf.len() {
            assert!(decode_batch(&buf[..cut]).is_err(), "prefix {cut}");
        }
        for i in 0..buf.len() {
            for x in [0x01u8, 0x80, 0xff] {
                let mut bad = buf.clone();
                bad[i] ^= x;
                let _ = decode_batch(&bad);
            }
        }
        // A huge row count in a tiny payload is refused before allocating.
        let mut bad = vec![VERSION, 1, b'v'];
        put_varint(&mut bad, u64::MAX / 2);
        assert_eq!(decode_batch(&bad), Err("count larger than the payload"));
    }
}
