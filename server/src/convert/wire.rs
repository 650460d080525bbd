//! `quiver.v1.GetOnlineFeaturesResponse` encoded straight from the engine's result columns
//! into the outgoing buffer: no protobuf message is built, no `String` per row, and fixed-width
//! columns (every number, the statuses and the event times) are copied as whole slices.
//!
//! The bytes are exactly what prost writes for the same response built by
//! [`super::column_to_proto`] (the tests compare the two for every value type), so clients see
//! the `quiver.v1` wire format unchanged. prost's rules, kept here: a packed field with no
//! elements and a scalar 0 are left out; a present sub-message is written even when empty;
//! repeated strings are one field per element.

use std::cell::RefCell;

use bytes::BufMut;
use quiver_engine::{ColumnData, FeatureColumn, GetResult, VarColumn};

/// Wire type of a length-delimited field.
const LEN: u32 = 2;
/// Wire type of a varint field.
const VARINT: u32 = 0;

/// Field numbers, as `quiver.proto` declares them.
mod field {
    /// GetOnlineFeaturesResponse.
    pub(super) const NAMES: u32 = 1;
    pub(super) const COLUMNS: u32 = 2;
    pub(super) const ROW_COUNT: u32 = 3;
    /// FeatureColumn.
    pub(super) const VALUES: u32 = 1;
    pub(super) const STATUSES: u32 = 2;
    pub(super) const EVENT_TIMESTAMPS: u32 = 3;
    /// The `*Values` messages: their one repeated field.
    pub(super) const ITEMS: u32 = 1;
    /// VectorValues.
    pub(super) const DIM: u32 = 1;
    pub(super) const VECTOR_ITEMS: u32 = 2;
    /// ListValues.
    pub(super) const LENGTHS: u32 = 1;
    pub(super) const LIST_ITEMS: u32 = 2;
}

/// The `Column.data` oneof field number of a column's type.
fn oneof_field(data: &ColumnData) -> u32 {
    match data {
        ColumnData::Bool(_) => 1,
        ColumnData::Int32(_) => 2,
        ColumnData::Int64(_) => 3,
        ColumnData::Float32(_) => 4,
        ColumnData::Float64(_) => 5,
        ColumnData::Timestamp(_) => 6,
        ColumnData::String(_) => 7,
        ColumnData::Bytes(_) => 8,
        ColumnData::Vector { .. } => 9,
        ColumnData::List { .. } => 10,
    }
}

fn varint_len(v: u64) -> usize {
    // 1 byte per 7 bits, at least one.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn put_varint(buf: &mut impl BufMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

fn put_tag(buf: &mut impl BufMut, field: u32, wire: u32) {
    put_varint(buf, u64::from(field << 3 | wire));
}

/// Bytes of a length-delimited field whose body is `body` bytes (tags here are one byte).
fn len_field(body: usize) -> usize {
    1 + varint_len(body as u64) + body
}

/// Bytes of a packed field of `body` bytes: nothing when empty.
fn packed_field(body: usize) -> usize {
    if body == 0 {
        0
    } else {
        len_field(body)
    }
}

fn put_len_header(buf: &mut impl BufMut, field: u32, body: usize) {
    put_tag(buf, field, LEN);
    put_varint(buf, body as u64);
}

/// One GetOnlineFeatures answer, borrowed from the engine's result, with each column's body
/// length worked out once (string and list columns take a pass over their rows for it).
pub(crate) struct OnlineWire<'a> {
    /// Output column names.
    names: &'a [String],
    /// Result columns, index for index with `names`.
    columns: &'a [FeatureColumn],
    /// Rows in every column.
    rows: u32,
    /// Per column: bytes of its `*Values` message body.
    values_lens: Vec<usize>,
}

impl<'a> OnlineWire<'a> {
    pub(crate) fn new(names: &'a [String], columns: &'a [FeatureColumn], rows: u32) -> Self {
        Self {
            names,
            columns,
            rows,
            values_lens: columns
                .iter()
                .map(|c| values_len(&c.values, None))
                .collect(),
        }
    }

    /// Encoded size, bytes.
    pub(crate) fn encoded_len(&self) -> usize {
        let names: usize = self.names.iter().map(|n| len_field(n.len())).sum();
        let columns: usize = self
            .columns
            .iter()
            .zip(&self.values_lens)
            .map(|(c, &v)| len_field(feature_column_len(c, v)))
            .sum();
        let rows = if self.rows == 0 {
            0
        } else {
            1 + varint_len(u64::from(self.rows))
        };
        names + columns + rows
    }

    /// Appends the encoded message to `buf`.
    pub(crate) fn encode(&self, buf: &mut impl BufMut) {
        for n in self.names {
            put_len_header(buf, field::NAMES, n.len());
            buf.put_slice(n.as_bytes());
        }
        for (c, &values) in self.columns.iter().zip(&self.values_lens) {
            put_len_header(buf, field::COLUMNS, feature_column_len(c, values));
            encode_feature_column(c, values, buf);
        }
        if self.rows != 0 {
            put_tag(buf, field::ROW_COUNT, VARINT);
            put_varint(buf, u64::from(self.rows));
        }
    }
}

/// Body bytes of a `FeatureColumn` whose `*Values` body is `values` bytes.
fn feature_column_len(c: &FeatureColumn, values: usize) -> usize {
    // Every status number is below 128: one byte each.
    len_field(len_field(values))
        + packed_field(c.statuses.len())
        + packed_field(c.event_ts.len() * 8)
}

fn encode_feature_column(c: &FeatureColumn, values: usize, buf: &mut impl BufMut) {
    put_len_header(buf, field::VALUES, len_field(values));
    encode_column(&c.values, None, values, buf);
    if !c.statuses.is_empty() {
        put_len_header(buf, field::STATUSES, c.statuses.len());
        put_le(buf, &c.statuses, |s| [s as u8]);
    }
    if !c.event_ts.is_empty() {
        put_len_header(buf, field::EVENT_TIMESTAMPS, c.event_ts.len() * 8);
        put_le(buf, &c.event_ts, i64::to_le_bytes);
    }
}

/// Body bytes of the `*Values` message of `data`. `spans` orders a list's items by row (list
/// items sit in the order the engine visited them, not row order).
fn values_len(data: &ColumnData, spans: Option<&[(u32, u32)]>) -> usize {
    let n = |len: usize| match spans {
        Some(s) => s.iter().map(|&(_, l)| l as usize).sum(),
        None => len,
    };
    match data {
        ColumnData::Bool(v) => packed_field(n(v.len())),
        ColumnData::Int32(v) => packed_field(n(v.len()) * 4),
        ColumnData::Float32(v) => packed_field(n(v.len()) * 4),
        ColumnData::Int64(v) | ColumnData::Timestamp(v) => packed_field(n(v.len()) * 8),
        ColumnData::Float64(v) => packed_field(n(v.len()) * 8),
        ColumnData::String(v) | ColumnData::Bytes(v) => match spans {
            None => v.spans.iter().map(|&(_, l)| len_field(l as usize)).sum(),
            Some(s) => s
                .iter()
                .flat_map(|&(start, l)| start..start + l)
                .map(|j| len_field(v.spans[j as usize].1 as usize))
                .sum(),
        },
        ColumnData::Vector { dim, data } => {
            let dim = if *dim == 0 {
                0
            } else {
                1 + varint_len(u64::from(*dim))
            };
            dim + packed_field(data.len() * 4)
        }
        ColumnData::List { spans: rows, items } => {
            let lengths: usize = rows.iter().map(|&(_, l)| varint_len(u64::from(l))).sum();
            packed_field(lengths) + len_field(len_field(values_len(items, Some(rows))))
        }
    }
}

/// Writes the `Column` oneof field of `data`, whose `*Values` body is `body` bytes (from
/// [`values_len`] with the same `spans`).
fn encode_column(
    data: &ColumnData,
    spans: Option<&[(u32, u32)]>,
    body: usize,
    buf: &mut impl BufMut,
) {
    put_len_header(buf, oneof_field(data), body);
    match data {
        ColumnData::Bool(v) => put_packed(buf, field::ITEMS, v, spans, |b| [u8::from(b)]),
        ColumnData::Int32(v) => put_packed(buf, field::ITEMS, v, spans, i32::to_le_bytes),
        ColumnData::Float32(v) => put_packed(buf, field::ITEMS, v, spans, f32::to_le_bytes),
        ColumnData::Int64(v) | ColumnData::Timestamp(v) => {
            put_packed(buf, field::ITEMS, v, spans, i64::to_le_bytes);
        }
        ColumnData::Float64(v) => put_packed(buf, field::ITEMS, v, spans, f64::to_le_bytes),
        ColumnData::String(v) | ColumnData::Bytes(v) => match spans {
            None => (0..v.spans.len()).for_each(|j| put_var(buf, v, j)),
            Some(s) => s
                .iter()
                .flat_map(|&(start, l)| start..start + l)
                .for_each(|j| put_var(buf, v, j as usize)),
        },
        ColumnData::Vector { dim, data } => {
            if *dim != 0 {
                put_tag(buf, field::DIM, VARINT);
                put_varint(buf, u64::from(*dim));
            }
            put_packed(buf, field::VECTOR_ITEMS, data, None, f32::to_le_bytes);
        }
        ColumnData::List { spans: rows, items } => {
            let lengths: usize = rows.iter().map(|&(_, l)| varint_len(u64::from(l))).sum();
            if lengths > 0 {
                put_len_header(buf, field::LENGTHS, lengths);
                for &(_, l) in rows {
                    put_varint(buf, u64::from(l));
                }
            }
            let items_body = values_len(items, Some(rows));
            put_len_header(buf, field::LIST_ITEMS, len_field(items_body));
            encode_column(items, Some(rows), items_body, buf);
        }
    }
}

/// Packed repeated field `number` of fixed-width elements: the whole of `v`, or with `spans`
/// the listed runs of it in order; nothing when that is empty (prost's rule).
fn put_packed<T: Copy, const W: usize>(
    buf: &mut impl BufMut,
    number: u32,
    v: &[T],
    spans: Option<&[(u32, u32)]>,
    le: impl Fn(T) -> [u8; W] + Copy,
) {
    match spans {
        None => {
            if !v.is_empty() {
                put_len_header(buf, number, v.len() * W);
                put_le(buf, v, le);
            }
        }
        Some(spans) => {
            let n: usize = spans.iter().map(|&(_, l)| l as usize).sum();
            if n > 0 {
                put_len_header(buf, number, n * W);
                for &(s, l) in spans {
                    put_le(buf, &v[s as usize..(s + l) as usize], le);
                }
            }
        }
    }
}

/// One string or bytes element: its own field.
fn put_var(buf: &mut impl BufMut, v: &VarColumn, j: usize) {
    let bytes = v.get(j);
    put_len_header(buf, field::ITEMS, bytes.len());
    buf.put_slice(bytes);
}

/// Fixed-width values, little-endian, in stack-buffered runs: one `put_slice` per 4 KiB
/// rather than one per value (on little-endian machines the conversion is a plain copy).
fn put_le<T: Copy, const W: usize>(buf: &mut impl BufMut, v: &[T], le: impl Fn(T) -> [u8; W]) {
    const RUN: usize = 4096;
    let mut tmp = [0u8; RUN];
    for chunk in v.chunks(RUN / W) {
        for (d, &x) in tmp.chunks_exact_mut(W).zip(chunk) {
            d.copy_from_slice(&le(x));
        }
        buf.put_slice(&tmp[..chunk.len() * W]);
    }
}

/// Results kept per worker thread for reuse.
const POOLED: usize = 16;

thread_local! {
    static RESULTS: RefCell<Vec<GetResult>> = const { RefCell::new(Vec::new()) };
}

/// A result buffer from this thread's pool (or a new one).
pub(crate) fn pooled_result() -> GetResult {
    RESULTS.with(|p| p.borrow_mut().pop()).unwrap_or_default()
}

/// One answer: output names and the engine's columns, encoded when tonic sends it.
#[derive(Debug)]
pub(crate) struct OnlineAnswer {
    pub(crate) names: Vec<String>,
    /// Always `Some` until dropped (taken back into the pool then).
    pub(crate) result: Option<GetResult>,
    pub(crate) rows: u32,
}

impl OnlineAnswer {
    pub(crate) fn wire(&self) -> OnlineWire<'_> {
        OnlineWire::new(
            &self.names,
            self.result.as_ref().map_or(&[], |r| &r.columns),
            self.rows,
        )
    }
}

impl Drop for OnlineAnswer {
    fn drop(&mut self) {
        if let Some(r) = self.result.take() {
            // A thread that is shutting down has no pool left: then the buffer just goes.
            let _ = RESULTS.try_with(|p| {
                let mut pool = p.borrow_mut();
                if pool.len() < POOLED {
                    pool.push(r);
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use prost::Message;
    use quiver_engine::{ScalarType, Status, ValueType};

    use super::*;
    use crate::convert::column_to_proto;
    use crate::proto::quiver::v1 as pb;

    fn var(items: &[&[u8]]) -> VarColumn {
        let mut v = VarColumn::default();
        for b in items {
            v.spans.push((v.data.len() as u32, b.len() as u32));
            v.data.extend_from_slice(b);
        }
        v
    }

    fn column(values: ColumnData, rows: usize) -> FeatureColumn {
        let statuses = [
            Status::Present,
            Status::NotFound,
            Status::NullValue,
            Status::OutsideMaxAge,
        ];
        FeatureColumn {
            ty: ValueType::Scalar(ScalarType::Int64),
            values,
            statuses: (0..rows).map(|i| statuses[i % 4]).collect(),
            event_ts: (0..rows as i64).map(|i| i * 1_000_003 - 7).collect(),
        }
    }

    /// Every column type, lists with items out of row order, and empty strings.
    fn every_type(rows: usize) -> Vec<FeatureColumn> {
        let r = rows;
        let strings: Vec<String> = (0..r).map(|i| "é".repeat(i % 3) + &i.to_string()).collect();
        let mut s: Vec<&[u8]> = strings.iter().map(|s| s.as_bytes()).collect();
        if let Some(first) = s.first_mut() {
            *first = b"";
        }
        // Row i holds i % 3 items; the items are laid out last row first.
        let counts: Vec<u32> = (0..r as u32).map(|i| i % 3).collect();
        let mut spans = vec![(0, 0); r];
        let mut next = 0;
        for i in (0..r).rev() {
            spans[i] = (next, counts[i]);
            next += counts[i];
        }
        let items = next as usize;
        vec![
            column(ColumnData::Bool((0..r).map(|i| i % 3 == 0).collect()), r),
            column(
                ColumnData::Int32((0..r as i32).map(|i| i * -77_777).collect()),
                r,
            ),
            column(
                ColumnData::Int64((0..r as i64).map(|i| i << 40).collect()),
                r,
            ),
            column(
                ColumnData::Float32((0..r).map(|i| i as f32 / 3.0).collect()),
                r,
            ),
            column(
                ColumnData::Float64((0..r).map(|i| -(i as f64) * 1e300).collect()),
                r,
            ),
            column(
                ColumnData::Timestamp((0..r as i64).map(|i| -i).collect()),
                r,
            ),
            column(ColumnData::String(var(&s)), r),
            column(ColumnData::Bytes(var(&s)), r),
            column(
                ColumnData::Vector {
                    dim: 3,
                    data: (0..r * 3).map(|i| i as f32).collect(),
                },
                r,
            ),
            column(
                ColumnData::List {
                    spans: spans.clone(),
                    items: Box::new(ColumnData::Int64((0..items as i64).collect())),
                },
                r,
            ),
            column(
                ColumnData::List {
                    spans,
                    items: Box::new(ColumnData::String(var(&(0..items)
                        .map(|i| s[i % r.max(1)])
                        .collect::<Vec<_>>()))),
                },
                r,
            ),
        ]
    }

    fn prost_bytes(names: &[String], columns: &[FeatureColumn], rows: u32) -> Vec<u8> {
        pb::GetOnlineFeaturesResponse {
            feature_names: names.to_vec(),
            columns: columns.iter().cloned().map(column_to_proto).collect(),
            row_count: rows,
        }
        .encode_to_vec()
    }

    #[test]
    fn the_encoding_is_byte_for_byte_what_prost_writes() {
        for rows in [0, 1, 2, 7, 200, 3000] {
            let columns = every_type(rows);
            let names: Vec<String> = (0..columns.len()).map(|i| format!("f{i}")).collect();
            let wire = OnlineWire::new(&names, &columns, rows as u32);
            let mut mine = Vec::new();
            wire.encode(&mut mine);
            assert_eq!(mine.len(), wire.encoded_len(), "{rows} rows");
            assert_eq!(
                mine,
                prost_bytes(&names, &columns, rows as u32),
                "{rows} rows"
            );
            // And it decodes back to what the columns hold.
            let back = pb::GetOnlineFeaturesResponse::decode(&mine[..]).unwrap();
            assert_eq!(back.columns.len(), columns.len());
            assert_eq!(back.row_count, rows as u32);
        }
    }

    #[test]
    fn a_vector_without_dimension_and_columns_without_rows_follow_prost() {
        let columns = vec![
            column(
                ColumnData::Vector {
                    dim: 0,
                    data: Vec::new(),
                },
                0,
            ),
            column(ColumnData::String(VarColumn::default()), 0),
        ];
        let names = vec![String::new(), "x".repeat(300)];
        let wire = OnlineWire::new(&names, &columns, 0);
        let mut mine = Vec::new();
        wire.encode(&mut mine);
        assert_eq!(mine.len(), wire.encoded_len());
        assert_eq!(mine, prost_bytes(&names, &columns, 0));
    }
}
