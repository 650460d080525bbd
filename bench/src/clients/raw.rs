//! The harness's lean GetOnlineFeatures client, so that the load generator's own CPU is not
//! what a measurement measures. It does per request what the Redis client does (see
//! `resp.rs`): the request is written by hand into a buffer reused across requests, the
//! answer stays the bytes that arrived, and only its shape is scanned (rows, columns, every
//! status PRESENT). Every `CHECK_EVERY`-th answer is decoded with prost and compared value by
//! value, exactly as before. The wire format is `quiver.v1`; `quiver.proto` has the field
//! numbers used here.

use bytes::{Buf, BufMut, Bytes};
use tonic::client::Grpc;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::Status;

use crate::clients::layout::JOIN_KEY;
use crate::{BenchError, Result};

const PATH: &str = "/quiver.v1.FeatureStore/GetOnlineFeatures";
/// Wire types.
const VARINT: u64 = 0;
const I64: u64 = 1;
const LEN: u64 = 2;
const I32: u64 = 5;
/// `FieldStatus::PRESENT`.
const PRESENT: u8 = 1;

/// Reads over one HTTP/2 connection (a clone of the channel the other calls use).
#[derive(Debug, Clone)]
pub(crate) struct RawReader {
    grpc: Grpc<Channel>,
    /// `GetOnlineFeaturesRequest.refs` (field 1) and the key column's name, encoded once.
    refs: Bytes,
    /// The request being built.
    buf: Vec<u8>,
}

impl RawReader {
    pub(crate) fn new(channel: Channel, refs: &[String]) -> Self {
        let mut body = Vec::new();
        for r in refs {
            put_len_field(&mut body, 1, r.as_bytes());
        }
        let mut prefix = Vec::new();
        put_len_field(&mut prefix, 1, &body);
        let grpc = Grpc::new(channel)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        Self {
            grpc,
            refs: prefix.into(),
            buf: Vec::new(),
        }
    }

    /// The encoded answer to a read of this reader's features for `ids`.
    pub(crate) async fn get(&mut self, ids: &[i64]) -> std::result::Result<Bytes, Status> {
        encode_read(&self.refs, ids, &mut self.buf);
        self.grpc
            .ready()
            .await
            .map_err(|e| Status::unavailable(format!("connection: {e}")))?;
        let request = tonic::Request::new(Bytes::copy_from_slice(&self.buf));
        let answer = self
            .grpc
            .unary(request, PathAndQuery::from_static(PATH), RawCodec)
            .await?;
        Ok(answer.into_inner())
    }
}

/// Writes into `buf` the `GetOnlineFeaturesRequest` of the features in `refs` (the encoded
/// field 1) for the users `ids`.
fn encode_read(refs: &[u8], ids: &[i64], buf: &mut Vec<u8>) {
    buf.clear();
    buf.extend_from_slice(refs);
    // keys (field 3): KeyColumn { name = 1, int64_values = 2 { packed sfixed64 = 1 } }.
    let values = 8 * ids.len();
    let int64 = packed_len(values);
    let column = len_field_len(JOIN_KEY.len()) + len_field_len(int64);
    put_header(buf, 3, column);
    put_len_field(buf, 1, JOIN_KEY.as_bytes());
    put_header(buf, 2, int64);
    if values > 0 {
        put_header(buf, 1, values);
        for id in ids {
            buf.put_i64_le(*id);
        }
    }
}

/// Checks an encoded answer's shape without decoding it: `rows` rows, `columns` columns,
/// every status PRESENT (what `check_shape` checks on a decoded one).
pub(crate) fn scan_shape(mut msg: &[u8], rows: usize, columns: usize) -> Result<()> {
    let wrong = |why: String| BenchError::WrongAnswer(format!("quiver answered {why}"));
    let (mut row_count, mut seen) = (0u64, 0usize);
    while !msg.is_empty() {
        let (field, wire) = tag(&mut msg)?;
        match (field, wire) {
            (3, VARINT) => row_count = varint(&mut msg)?,
            (2, LEN) => {
                let mut column = len_body(&mut msg)?;
                let mut statuses = 0;
                while !column.is_empty() {
                    let (f, w) = tag(&mut column)?;
                    if (f, w) == (2, LEN) {
                        let s = len_body(&mut column)?;
                        if s.iter().any(|&b| b != PRESENT) {
                            return Err(wrong(format!("column {seen}: not every value PRESENT")));
                        }
                        statuses += s.len();
                    } else {
                        skip(&mut column, w)?;
                    }
                }
                if statuses != rows {
                    return Err(wrong(format!(
                        "column {seen}: {statuses} statuses for {rows} rows"
                    )));
                }
                seen += 1;
            }
            (_, w) => skip(&mut msg, w)?,
        }
    }
    if row_count != rows as u64 || seen != columns {
        return Err(wrong(format!(
            "{row_count} rows × {seen} columns for {rows} × {columns}"
        )));
    }
    Ok(())
}

fn malformed() -> BenchError {
    BenchError::WrongAnswer("quiver answered a malformed GetOnlineFeaturesResponse".into())
}

fn varint(b: &mut &[u8]) -> Result<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = b.split_first().ok_or_else(malformed)?;
        *b = rest;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(v);
        }
    }
    Err(malformed())
}

fn tag(b: &mut &[u8]) -> Result<(u64, u64)> {
    let t = varint(b)?;
    Ok((t >> 3, t & 7))
}

fn len_body<'a>(b: &mut &'a [u8]) -> Result<&'a [u8]> {
    let n = usize::try_from(varint(b)?).map_err(|_| malformed())?;
    if n > b.len() {
        return Err(malformed());
    }
    let (body, rest) = b.split_at(n);
    *b = rest;
    Ok(body)
}

fn skip(b: &mut &[u8], wire: u64) -> Result<()> {
    let n = match wire {
        VARINT => return varint(b).map(drop),
        LEN => return len_body(b).map(drop),
        I64 => 8,
        I32 => 4,
        _ => return Err(malformed()),
    };
    if n > b.len() {
        return Err(malformed());
    }
    *b = &b[n..];
    Ok(())
}

fn varint_len(v: usize) -> usize {
    (usize::BITS as usize - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn len_field_len(body: usize) -> usize {
    1 + varint_len(body) + body
}

/// A packed field's bytes: nothing when empty.
fn packed_len(body: usize) -> usize {
    if body == 0 {
        0
    } else {
        len_field_len(body)
    }
}

fn put_varint(buf: &mut Vec<u8>, mut v: usize) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// A length-delimited field's tag and length (field numbers here are below 16).
fn put_header(buf: &mut Vec<u8>, field: u8, len: usize) {
    buf.push(field << 3 | LEN as u8);
    put_varint(buf, len);
}

fn put_len_field(buf: &mut Vec<u8>, field: u8, body: &[u8]) {
    put_header(buf, field, body.len());
    buf.extend_from_slice(body);
}

/// Bytes in, bytes out.
#[derive(Debug, Clone, Copy)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> std::result::Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> std::result::Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use prost::Message;
    use quiver_server::proto::quiver::v1 as pb;

    use super::*;
    use crate::clients::native::read_request;

    fn answer(rows: usize, columns: usize, status: i32) -> Vec<u8> {
        pb::GetOnlineFeaturesResponse {
            feature_names: (0..columns).map(|i| format!("f{i}")).collect(),
            columns: (0..columns)
                .map(|_| pb::FeatureColumn {
                    values: Some(pb::Column {
                        data: Some(pb::column::Data::Int64Values(pb::Int64Values {
                            values: vec![7; rows],
                        })),
                    }),
                    statuses: vec![status; rows],
                    event_timestamps: vec![1; rows],
                })
                .collect(),
            row_count: rows as u32,
        }
        .encode_to_vec()
    }

    #[test]
    fn the_scan_accepts_what_check_shape_accepts_and_nothing_else() {
        scan_shape(&answer(100, 20, 1), 100, 20).unwrap();
        scan_shape(&answer(0, 3, 1), 0, 3).unwrap();
        assert!(scan_shape(&answer(100, 20, 1), 99, 20).is_err());
        assert!(scan_shape(&answer(100, 20, 1), 100, 21).is_err());
        assert!(scan_shape(&answer(100, 20, 2), 100, 20).is_err());
        let bytes = answer(10, 2, 1);
        for cut in 1..bytes.len() {
            assert!(scan_shape(&bytes[..cut], 10, 2).is_err(), "cut at {cut}");
        }
    }

    #[tokio::test]
    async fn the_hand_written_request_is_what_prost_writes() {
        let refs = vec!["user_stats:a".to_owned(), "user_stats:b".to_owned()];
        let reader = RawReader::new(
            Channel::from_static("http://127.0.0.1:1").connect_lazy(),
            &refs,
        );
        let mut buf = Vec::new();
        for ids in [vec![], vec![1i64], vec![-5, 1 << 40, 3]] {
            encode_read(&reader.refs, &ids, &mut buf);
            assert_eq!(buf, read_request(&refs, &ids).encode_to_vec(), "{ids:?}");
        }
    }
}
