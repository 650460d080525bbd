//! How the dataset is laid out in Redis: Feast's online-store layout, reproduced byte for byte,
//! and the best case a hand-written cache would pick (one packed blob per entity and view).
//!
//! Feast's layout (server/proto/feast/README.md §3): one hash per entity, keyed by
//! `serialize_entity_key` (version 3) followed by the project name; one field per feature named
//! by the 4-byte little-endian MurmurHash3 x86-32 (seed 0) of `"view:feature"`, holding the
//! serialized `feast.types.Value`; and a `_ts:<view>` field holding a serialized
//! `google.protobuf.Timestamp` with whole seconds. Reads are one `HMGET` per entity.
//!
//! The blob layout: key = the user id as 8 little-endian bytes (prefixed `e` for the
//! embedding), value = event time (8 bytes) and the values packed at their natural widths,
//! strings with a one-byte length. Reads are one `MGET` per batch.

use prost::Message;
use quiver_engine::{Micros, Value, MICROS_PER_SEC};
use quiver_server::proto::feast::types::{value::Val, FloatList, Value as FeastValue};

use crate::dataset::{EMBEDDING_DIM, EMBEDDING_FEATURE, EMBEDDING_VIEW, USER_STATS, VIEW};

/// The registry's project, appended to Feast's Redis keys.
pub(crate) const PROJECT: &str = "demo";
/// The join key of the `user` entity.
pub(crate) const JOIN_KEY: &str = "user_id";

/// MurmurHash3 x86 32-bit (Austin Appleby, public domain), as `mmh3.hash(.., signed=False)`.
pub(crate) fn murmur3_32(data: &[u8], seed: u32) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mut h = seed;
    let mut blocks = data.chunks_exact(4);
    for b in &mut blocks {
        let k = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        h ^= k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        let k = tail
            .iter()
            .rev()
            .fold(0u32, |k, &byte| (k << 8) | u32::from(byte));
        h ^= k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    }
    h ^= data.len() as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// Feast's hash field name of `view:feature`.
pub(crate) fn field_name(view: &str, feature: &str) -> [u8; 4] {
    murmur3_32(format!("{view}:{feature}").as_bytes(), 0).to_le_bytes()
}

/// Feast's per-view timestamp field, `_ts:<view>`.
pub(crate) fn ts_field(view: &str) -> Vec<u8> {
    format!("_ts:{view}").into_bytes()
}

/// Appends Feast's Redis key of `user_id`: `serialize_entity_key` version 3 of the single
/// int64 join key, then the project name.
pub(crate) fn feast_key(user_id: i64, out: &mut Vec<u8>) {
    out.extend_from_slice(&1u32.to_le_bytes()); // number of join keys
    out.extend_from_slice(&2u32.to_le_bytes()); // ValueType.STRING: the name's type
    out.extend_from_slice(&(JOIN_KEY.len() as u32).to_le_bytes());
    out.extend_from_slice(JOIN_KEY.as_bytes());
    out.extend_from_slice(&4u32.to_le_bytes()); // ValueType.INT64
    out.extend_from_slice(&8u32.to_le_bytes());
    out.extend_from_slice(&user_id.to_le_bytes());
    out.extend_from_slice(PROJECT.as_bytes());
}

/// The hash fields an `HMGET` of a read asks for, in order: each `user_stats` feature, its
/// `_ts`, then (with `embedding`) the embedding's field and its `_ts`.
pub(crate) fn read_fields(features: usize, embedding: bool) -> Vec<Vec<u8>> {
    let mut f: Vec<Vec<u8>> = USER_STATS[..features]
        .iter()
        .map(|s| field_name(VIEW, s.name).to_vec())
        .collect();
    f.push(ts_field(VIEW));
    if embedding {
        f.push(field_name(EMBEDDING_VIEW, EMBEDDING_FEATURE).to_vec());
        f.push(ts_field(EMBEDDING_VIEW));
    }
    f
}

/// A serialized `google.protobuf.Timestamp` with whole seconds, as Feast writes `_ts`.
pub(crate) fn encode_ts(event_ts: Micros, out: &mut Vec<u8>) {
    let secs = event_ts.div_euclid(MICROS_PER_SEC);
    if secs != 0 {
        out.push(0x08);
        prost::encoding::encode_varint(secs as u64, out);
    }
}

/// Decodes a `_ts` field into microseconds.
pub(crate) fn decode_ts(bytes: &[u8]) -> Option<Micros> {
    #[derive(Clone, PartialEq, Message)]
    struct Timestamp {
        #[prost(int64, tag = "1")]
        seconds: i64,
        #[prost(int32, tag = "2")]
        nanos: i32,
    }
    let t = Timestamp::decode(bytes).ok()?;
    Some(t.seconds * MICROS_PER_SEC + i64::from(t.nanos) / 1000)
}

/// An engine value as the `feast.types.Value` Feast stores (vectors as `float_list_val`).
pub(crate) fn feast_value(v: &Value) -> FeastValue {
    let val = match v {
        Value::Bool(b) => Some(Val::BoolVal(*b)),
        Value::Int32(x) => Some(Val::Int32Val(*x)),
        Value::Int64(x) => Some(Val::Int64Val(*x)),
        Value::Float32(x) => Some(Val::FloatVal(*x)),
        Value::Float64(x) => Some(Val::DoubleVal(*x)),
        Value::String(s) => Some(Val::StringVal(s.clone())),
        Value::Vector(x) => Some(Val::FloatListVal(FloatList { val: x.clone() })),
        _ => None,
    };
    FeastValue { val }
}

/// The engine value a stored `feast.types.Value` holds, if it decodes to one the dataset uses.
pub(crate) fn decode_feast_value(bytes: &[u8]) -> Option<Value> {
    Some(match FeastValue::decode(bytes).ok()?.val? {
        Val::BoolVal(b) => Value::Bool(b),
        Val::Int32Val(x) => Value::Int32(x),
        Val::Int64Val(x) => Value::Int64(x),
        Val::FloatVal(x) => Value::Float32(x),
        Val::DoubleVal(x) => Value::Float64(x),
        Val::StringVal(s) => Value::String(s),
        Val::FloatListVal(l) => Value::Vector(l.val),
        _ => return None,
    })
}

/// The blob layout's key of `user_id`'s `user_stats` row.
pub(crate) fn blob_key(user_id: i64) -> [u8; 8] {
    user_id.to_le_bytes()
}

/// The blob layout's key of `user_id`'s embedding.
pub(crate) fn blob_embedding_key(user_id: i64) -> [u8; 9] {
    let mut k = [b'e'; 9];
    k[1..].copy_from_slice(&user_id.to_le_bytes());
    k
}

/// Appends the packed blob of a `user_stats` row: event time, then every value at its width.
pub(crate) fn encode_blob(event_ts: Micros, values: &[Value], out: &mut Vec<u8>) {
    out.extend_from_slice(&event_ts.to_le_bytes());
    for v in values {
        match v {
            Value::Bool(b) => out.push(u8::from(*b)),
            Value::Int32(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::Int64(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::Float32(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::Float64(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::String(s) => {
                let b = &s.as_bytes()[..s.len().min(255)];
                out.push(b.len() as u8);
                out.extend_from_slice(b);
            }
            // The dataset has no other types in user_stats.
            _ => out.push(0),
        }
    }
}

/// Appends the blob of an embedding: event time, then the components.
pub(crate) fn encode_embedding_blob(event_ts: Micros, vector: &[f32], out: &mut Vec<u8>) {
    out.extend_from_slice(&event_ts.to_le_bytes());
    for c in vector {
        out.extend_from_slice(&c.to_le_bytes());
    }
}

/// Reads `n` bytes at `*pos`.
fn take<'a>(b: &'a [u8], pos: &mut usize, n: usize) -> Option<&'a [u8]> {
    let s = b.get(*pos..pos.checked_add(n)?)?;
    *pos += n;
    Some(s)
}

/// Decodes the first `features` values of a `user_stats` blob: `(event time, values)`.
pub(crate) fn decode_blob(b: &[u8], features: usize) -> Option<(Micros, Vec<Value>)> {
    let mut pos = 0;
    let ts = i64::from_le_bytes(take(b, &mut pos, 8)?.try_into().ok()?);
    let mut values = Vec::with_capacity(features);
    for f in &USER_STATS[..features] {
        use quiver_engine::{ScalarType as S, ValueType as T};
        let v = match f.ty {
            T::Scalar(S::Bool) => Value::Bool(take(b, &mut pos, 1)?[0] != 0),
            T::Scalar(S::Int32) => {
                Value::Int32(i32::from_le_bytes(take(b, &mut pos, 4)?.try_into().ok()?))
            }
            T::Scalar(S::Int64) => {
                Value::Int64(i64::from_le_bytes(take(b, &mut pos, 8)?.try_into().ok()?))
            }
            T::Scalar(S::Float32) => {
                Value::Float32(f32::from_le_bytes(take(b, &mut pos, 4)?.try_into().ok()?))
            }
            T::Scalar(S::Float64) => {
                Value::Float64(f64::from_le_bytes(take(b, &mut pos, 8)?.try_into().ok()?))
            }
            T::Scalar(S::String) => {
                let n = usize::from(take(b, &mut pos, 1)?[0]);
                Value::String(String::from_utf8(take(b, &mut pos, n)?.to_vec()).ok()?)
            }
            _ => return None,
        };
        values.push(v);
    }
    Some((ts, values))
}

/// Decodes an embedding blob: `(event time, vector)`.
pub(crate) fn decode_embedding_blob(b: &[u8]) -> Option<(Micros, Vec<f32>)> {
    if b.len() != 8 + 4 * EMBEDDING_DIM {
        return None;
    }
    let ts = i64::from_le_bytes(b[..8].try_into().ok()?);
    let v = b[8..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Some((ts, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn murmur3_matches_the_published_vectors() {
        // SMHasher / Appleby's reference values, and the ones Feast's README pins.
        let cases: [(&[u8], u32, u32); 10] = [
            (b"", 0, 0),
            (b"", 1, 0x514e_28b7),
            (b"", 0xffff_ffff, 0x81f1_6f39),
            (b"\xff\xff\xff\xff", 0, 0x7629_3b50),
            (b"\x21\x43\x65\x87", 0, 0xf55b_516b),
            (b"\x21\x43\x65", 0, 0x7e4a_8634),
            (b"\x21\x43", 0, 0xa0f7_b07a),
            (b"\x21", 0, 0x7266_1cf4),
            (b"hello", 0, 0x248b_fa47),
            (
                b"The quick brown fox jumps over the lazy dog",
                0,
                0x2e4f_f723,
            ),
        ];
        for (data, seed, want) in cases {
            assert_eq!(murmur3_32(data, seed), want, "{data:?} seed {seed}");
        }
        assert_eq!(murmur3_32(b"\x21\x43\x65\x87", 0x5082_edee), 0x2362_f9de);
        assert_eq!(
            hex(&field_name("driver_hourly_stats", "conv_rate")),
            "6160e3da"
        );
        assert_eq!(hex(&field_name("user_stats", "txn_count_1h")), "c4244358");
    }

    #[test]
    fn feast_keys_and_values_match_the_documented_bytes() {
        let mut k = Vec::new();
        feast_key(7, &mut k);
        assert_eq!(
            hex(&k),
            concat!(
                "01000000",
                "02000000",
                "07000000",
                "757365725f6964",
                "04000000",
                "08000000",
                "0700000000000000",
                "64656d6f"
            )
        );
        let mut v = Vec::new();
        feast_value(&Value::Float32(0.927_398))
            .encode(&mut v)
            .unwrap();
        assert_eq!(hex(&v), "35f5696d3f");
        let mut t = Vec::new();
        encode_ts(1_700_000_000 * MICROS_PER_SEC + 999, &mut t);
        assert_eq!(t[0], 0x08);
        assert_eq!(decode_ts(&t), Some(1_700_000_000 * MICROS_PER_SEC));
        for val in [
            Value::Bool(true),
            Value::Int32(-3),
            Value::Int64(1 << 40),
            Value::Float64(18.42),
            Value::String("JP".into()),
            Value::Vector(vec![0.5, -0.25]),
        ] {
            let bytes = feast_value(&val).encode_to_vec();
            assert_eq!(decode_feast_value(&bytes), Some(val));
        }
        assert_eq!(ts_field("user_stats"), b"_ts:user_stats");
        assert_eq!(read_fields(20, true).len(), 23);
    }

    #[test]
    fn blobs_round_trip() {
        let ds = crate::dataset::Dataset::new(5, 100, 1_700_000_000);
        for i in 0..100 {
            let r = ds.row(i);
            let mut b = Vec::new();
            encode_blob(r.event_ts, &r.values, &mut b);
            let (ts, vals) = decode_blob(&b, 20).unwrap();
            assert_eq!(ts, r.event_ts);
            assert!(vals.iter().zip(&r.values).all(|(a, b)| a.bit_eq(b)));
            assert_eq!(decode_blob(&b, 3).unwrap().1.len(), 3);
            assert!(decode_blob(&b[..b.len() - 1], 20).is_none());
        }
        let v: Vec<f32> = (0..EMBEDDING_DIM).map(|i| i as f32).collect();
        let mut b = Vec::new();
        encode_embedding_blob(42, &v, &mut b);
        assert_eq!(decode_embedding_blob(&b), Some((42, v)));
        assert_eq!(blob_embedding_key(1)[0], b'e');
    }
}
