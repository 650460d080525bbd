//! `quiver.v1.GetOnlineFeaturesRequest` as the server decodes it: the generated message, except
//! that string key values are slices of the received bytes (`Bytes`) instead of a `String` per
//! row, and every values vector is allocated once at its final size. The fields, numbers and wire types are `quiver.proto`'s, so any client's bytes decode
//! the same; a test checks that against the generated type. Keys are checked as UTF-8 when they
//! are encoded (`super::keys_from_columns`), where prost would have checked them in decoding.

use bytes::{Buf, BufMut, Bytes};
use prost::encoding::{self, DecodeContext, WireType};
use prost::DecodeError;

use crate::proto::quiver::v1 as pb;

/// The request, field for field.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct OnlineRequest {
    #[prost(oneof = "pb::get_online_features_request::Features", tags = "1, 2")]
    pub(crate) features: Option<pb::get_online_features_request::Features>,
    #[prost(message, repeated, tag = "3")]
    pub(crate) keys: Vec<KeyColumnIn>,
    #[prost(bool, tag = "4")]
    pub(crate) full_feature_names: bool,
    #[prost(message, optional, tag = "5")]
    pub(crate) max_age: Option<prost_types::Duration>,
}

/// `quiver.v1.KeyColumn`, decoded by hand so that each values vector is sized once from the
/// message (prost would grow it element by element) and string values stay slices of the
/// request. prost's own field decoders do the reading and the error reporting.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct KeyColumnIn {
    pub(crate) name: String,
    pub(crate) values: Option<KeyValuesIn>,
}

/// `quiver.v1.KeyColumn.values`: `Int64Values` (2) or `StringValues` (3), each a message
/// whose field 1 holds the values.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum KeyValuesIn {
    Int64Values(Vec<i64>),
    StringValues(Vec<Bytes>),
}

impl prost::Message for KeyColumnIn {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if !self.name.is_empty() {
            encoding::string::encode(1, &self.name, buf);
        }
        match &self.values {
            Some(KeyValuesIn::Int64Values(v)) => {
                encoding::encode_key(2, WireType::LengthDelimited, buf);
                encoding::encode_varint(int64_body_len(v) as u64, buf);
                encoding::sfixed64::encode_packed(1, v, buf);
            }
            Some(KeyValuesIn::StringValues(v)) => {
                encoding::encode_key(3, WireType::LengthDelimited, buf);
                encoding::encode_varint(encoding::bytes::encoded_len_repeated(1, v) as u64, buf);
                encoding::bytes::encode_repeated(1, v, buf);
            }
            None => {}
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            1 => encoding::string::merge(wire_type, &mut self.name, buf, ctx),
            2 | 3 => {
                // The nested message, as a slice of the request.
                let mut body = Bytes::new();
                encoding::bytes::merge(wire_type, &mut body, buf, ctx.clone())?;
                if tag == 2 {
                    let v = match &mut self.values {
                        Some(KeyValuesIn::Int64Values(v)) => v,
                        other => {
                            *other = Some(KeyValuesIn::Int64Values(Vec::new()));
                            let Some(KeyValuesIn::Int64Values(v)) = other else {
                                unreachable!("just set")
                            };
                            v
                        }
                    };
                    merge_int64s(v, body, ctx)
                } else {
                    let v = match &mut self.values {
                        Some(KeyValuesIn::StringValues(v)) => v,
                        other => {
                            *other = Some(KeyValuesIn::StringValues(Vec::new()));
                            let Some(KeyValuesIn::StringValues(v)) = other else {
                                unreachable!("just set")
                            };
                            v
                        }
                    };
                    merge_strings(v, body, ctx)
                }
            }
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        let name = if self.name.is_empty() {
            0
        } else {
            encoding::string::encoded_len(1, &self.name)
        };
        let values = match &self.values {
            Some(KeyValuesIn::Int64Values(v)) => nested_len(int64_body_len(v)),
            Some(KeyValuesIn::StringValues(v)) => {
                nested_len(encoding::bytes::encoded_len_repeated(1, v))
            }
            None => 0,
        };
        name + values
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

/// Bytes of `Int64Values { values }`'s body.
fn int64_body_len(v: &[i64]) -> usize {
    encoding::sfixed64::encoded_len_packed(1, v)
}

/// Bytes of a one-byte-tag length-delimited field of `body` bytes.
fn nested_len(body: usize) -> usize {
    1 + encoding::encoded_len_varint(body as u64) + body
}

/// Decodes an `Int64Values` body into `v`, reserving for a packed run before prost reads it.
fn merge_int64s(v: &mut Vec<i64>, mut body: Bytes, ctx: DecodeContext) -> Result<(), DecodeError> {
    while body.has_remaining() {
        let (tag, wire_type) = encoding::decode_key(&mut body)?;
        if tag != 1 {
            encoding::skip_field(wire_type, tag, &mut body, ctx.clone())?;
            continue;
        }
        if wire_type == WireType::LengthDelimited {
            let mut peek = body.clone();
            let len = encoding::decode_varint(&mut peek)?;
            let fits = usize::try_from(len)
                .unwrap_or(usize::MAX)
                .min(peek.remaining());
            v.reserve(fits / 8);
        }
        encoding::sfixed64::merge_repeated(wire_type, v, &mut body, ctx.clone())?;
    }
    Ok(())
}

/// Decodes a `StringValues` body into `v`: counts the values first (one pass over the
/// fields' headers), then takes each as a slice of the body.
fn merge_strings(v: &mut Vec<Bytes>, body: Bytes, ctx: DecodeContext) -> Result<(), DecodeError> {
    let mut count = 0;
    let mut scan = body.clone();
    while scan.has_remaining() {
        let (tag, wire_type) = encoding::decode_key(&mut scan)?;
        count += usize::from(tag == 1);
        encoding::skip_field(wire_type, tag, &mut scan, ctx.clone())?;
    }
    v.reserve(count);
    let mut body = body;
    while body.has_remaining() {
        let (tag, wire_type) = encoding::decode_key(&mut body)?;
        if tag == 1 {
            let mut item = Bytes::new();
            encoding::bytes::merge(wire_type, &mut item, &mut body, ctx.clone())?;
            v.push(item);
        } else {
            encoding::skip_field(wire_type, tag, &mut body, ctx.clone())?;
        }
    }
    Ok(())
}

impl From<pb::GetOnlineFeaturesRequest> for OnlineRequest {
    fn from(r: pb::GetOnlineFeaturesRequest) -> Self {
        Self {
            features: r.features,
            keys: r
                .keys
                .into_iter()
                .map(|k| KeyColumnIn {
                    name: k.name,
                    values: k.values.map(|v| match v {
                        pb::key_column::Values::Int64Values(v) => {
                            KeyValuesIn::Int64Values(v.values)
                        }
                        pb::key_column::Values::StringValues(v) => KeyValuesIn::StringValues(
                            v.values.into_iter().map(Bytes::from).collect(),
                        ),
                    }),
                })
                .collect(),
            full_feature_names: r.full_feature_names,
            max_age: r.max_age,
        }
    }
}

/// Panics unless this type and the generated one agree on `bytes`: both refuse it, or both
/// accept the same request, except that string keys that are not UTF-8 are accepted here (and
/// refused by name when the keys are encoded). The unit tests and the `requests` fuzz target
/// run it.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn check_decoders_agree(bytes: &[u8]) {
    use prost::Message;
    let theirs = pb::GetOnlineFeaturesRequest::decode(bytes);
    let mine = OnlineRequest::decode(Bytes::copy_from_slice(bytes));
    match (theirs, mine) {
        (Ok(t), Ok(m)) => assert_eq!(m, OnlineRequest::from(t)),
        (Err(e), Ok(m)) => assert!(
            m.keys.iter().any(|k| matches!(&k.values,
                Some(KeyValuesIn::StringValues(v)) if v.iter().any(|b| std::str::from_utf8(b).is_err()))),
            "accepted what prost refuses ({e}) though every string key is UTF-8"
        ),
        (Ok(_), Err(e)) => panic!("refused what prost accepts: {e}"),
        (Err(_), Err(_)) => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use prost::Message;

    use super::*;

    fn generated() -> pb::GetOnlineFeaturesRequest {
        pb::GetOnlineFeaturesRequest {
            features: Some(pb::get_online_features_request::Features::Refs(
                pb::FeatureRefs {
                    refs: vec!["v:a".into(), "v:b".into()],
                },
            )),
            keys: vec![
                pb::KeyColumn {
                    name: "user_id".into(),
                    values: Some(pb::key_column::Values::StringValues(pb::StringValues {
                        values: vec!["u1".into(), String::new(), "ü".into()],
                    })),
                },
                pb::KeyColumn {
                    name: "n".into(),
                    values: Some(pb::key_column::Values::Int64Values(pb::Int64Values {
                        values: vec![1, -2, 3],
                    })),
                },
                pb::KeyColumn {
                    name: "empty".into(),
                    values: None,
                },
            ],
            full_feature_names: true,
            max_age: Some(prost_types::Duration {
                seconds: 5,
                nanos: 7,
            }),
        }
    }

    /// The same bytes decode to the same request, and encode back to the same bytes, in
    /// this type as in the generated one (so its field numbers and wire types match).
    #[test]
    fn it_is_the_generated_message_on_the_wire() {
        let g = generated();
        let bytes = g.encode_to_vec();
        let mine = OnlineRequest::decode(Bytes::from(bytes.clone())).unwrap();
        assert_eq!(mine, OnlineRequest::from(g.clone()));
        assert_eq!(mine.encode_to_vec(), bytes);
        let mut svc = g;
        svc.features = Some(pb::get_online_features_request::Features::FeatureService(
            "s".into(),
        ));
        let bytes = svc.encode_to_vec();
        assert_eq!(OnlineRequest::decode(&bytes[..]).unwrap(), svc.into());
    }

    /// Random requests, and random damage to them: the two decoders agree on every input
    /// (both refuse, or both accept the same request), except that this one leaves UTF-8
    /// checks of string keys to the key encoding.
    #[test]
    fn it_decodes_whatever_the_generated_type_decodes_the_same_way() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..3000 {
            let mut g = generated();
            let pick = next();
            if pick % 3 == 0 {
                g.keys.swap(0, 1);
            }
            if pick % 5 == 0 {
                g.keys.push(g.keys[0].clone());
            }
            let mut bytes = g.encode_to_vec();
            // Unpacked int64s and duplicated key columns are legal protobuf too.
            if pick % 7 == 0 {
                bytes.extend_from_slice(&[0x1a, 0x0b, 0x12, 0x09, 0x09, 1, 2, 3, 4, 5, 6, 7, 8]);
            }
            for _ in 0..(next() % 4) {
                if bytes.is_empty() {
                    break;
                }
                let at = (next() as usize) % bytes.len();
                match next() % 3 {
                    0 => bytes[at] ^= 1 << (next() % 8),
                    1 => bytes.truncate(at),
                    _ => bytes.insert(at, next() as u8),
                }
            }
            check_decoders_agree(&bytes);
            let _ = round;
        }
    }

    /// A string key that is not UTF-8 decodes (it is a slice of the request) and is then
    /// refused with the row and the join key named.
    #[test]
    fn a_key_that_is_not_utf8_is_refused_by_name() {
        let registry = quiver_engine::Registry::from_toml(
            &crate::testing::REGISTRY.replace(r#"type = "int64" }]"#, r#"type = "string" }]"#),
        )
        .unwrap();
        let entity = &registry.entities()[0];
        let column = |values: Vec<Bytes>| KeyColumnIn {
            name: "user_id".into(),
            values: Some(KeyValuesIn::StringValues(values)),
        };
        let mut keys = quiver_engine::KeyBatch::new();
        let ok = column(vec![
            Bytes::from_static(b"a"),
            Bytes::from_static("ü".as_bytes()),
        ]);
        assert_eq!(
            super::super::keys_from_columns(entity, &[ok], 10, &mut keys).unwrap(),
            2
        );
        let bad = column(vec![Bytes::from_static(b"a"), Bytes::from_static(b"\xff")]);
        let e = super::super::keys_from_columns(entity, &[bad], 10, &mut keys).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(
            e.message().contains("row 1") && e.message().contains("user_id"),
            "{e}"
        );
        assert!(e.message().contains("UTF-8"), "{e}");
    }
}
