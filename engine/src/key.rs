//! Canonical entity keys: the join key values of one entity row, encoded compactly.
//!
//! Each part in join-key order: an `int64` as a zigzag varint, a `string` as a varint length
//! and its UTF-8 bytes. The encoding is injective for a given entity, so equal keys are equal
//! bytes, and it is what the store hashes and what snapshot files store.

use crate::encoding::{get_varint, put_varint, take_prefixed, unzigzag, zigzag};
use crate::registry::{Entity, KeyType};
use crate::EngineError;

/// One join key value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPart<'a> {
    /// An `int64` join key value.
    Int64(i64),
    /// A `string` join key value.
    String(&'a str),
}

/// An owned join key value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OwnedKeyPart {
    /// An `int64` join key value.
    Int64(i64),
    /// A `string` join key value.
    String(String),
}

/// Longest encoded key accepted; bounds keys read from requests and files.
pub const MAX_KEY_LEN: usize = 4096;

/// Appends the canonical key of `parts` for `entity` to `out`.
pub fn encode_key(
    entity: &Entity,
    parts: &[KeyPart<'_>],
    out: &mut Vec<u8>,
) -> Result<(), EngineError> {
    if parts.len() != entity.join_keys.len() {
        return Err(EngineError::InvalidArgument(format!(
            "entity {:?} has {} join key(s), got {} value(s)",
            entity.name,
            entity.join_keys.len(),
            parts.len()
        )));
    }
    let start = out.len();
    for (jk, part) in entity.join_keys.iter().zip(parts) {
        match (jk.ty, part) {
            (KeyType::Int64, KeyPart::Int64(v)) => put_varint(out, zigzag(*v)),
            (KeyType::String, KeyPart::String(s)) => {
                put_varint(out, s.len() as u64);
                out.extend_from_slice(s.as_bytes());
            }
            (ty, _) => {
                out.truncate(start);
                return Err(EngineError::InvalidArgument(format!(
                    "join key {:?} of entity {:?} is {}, got a {} value",
                    jk.name,
                    entity.name,
                    ty.name(),
                    match part {
                        KeyPart::Int64(_) => "int64",
                        KeyPart::String(_) => "string",
                    }
                )));
            }
        }
    }
    if out.len() - start > MAX_KEY_LEN {
        out.truncate(start);
        return Err(EngineError::InvalidArgument(format!(
            "entity key of {:?} is longer than {MAX_KEY_LEN} bytes",
            entity.name
        )));
    }
    Ok(())
}

/// Decodes a canonical key back into its parts; `None` if it is not a valid key of `entity`.
pub fn decode_key(entity: &Entity, key: &[u8]) -> Option<Vec<OwnedKeyPart>> {
    let mut pos = 0;
    let mut parts = Vec::with_capacity(entity.join_keys.len());
    for jk in &entity.join_keys {
        parts.push(match jk.ty {
            KeyType::Int64 => OwnedKeyPart::Int64(unzigzag(get_varint(key, &mut pos)?)),
            KeyType::String => {
                let b = take_prefixed(key, &mut pos)?;
                OwnedKeyPart::String(std::str::from_utf8(b).ok()?.to_owned())
            }
        });
    }
    (pos == key.len()).then_some(parts)
}

/// A batch of encoded keys in one buffer: building it allocates per batch, not per key.
#[derive(Debug, Clone, Default)]
pub struct KeyBatch {
    data: Vec<u8>,
    ends: Vec<u32>,
}

impl KeyBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty batch with room for `keys` keys of about `bytes_per_key` bytes.
    pub fn with_capacity(keys: usize, bytes_per_key: usize) -> Self {
        Self {
            data: Vec::with_capacity(keys * bytes_per_key),
            ends: Vec::with_capacity(keys),
        }
    }

    /// Makes room for `keys` more keys of about `bytes_per_key` bytes, so pushing them does
    /// not grow the batch a step at a time.
    pub fn reserve(&mut self, keys: usize, bytes_per_key: usize) {
        self.data.reserve(keys.saturating_mul(bytes_per_key));
        self.ends.reserve(keys);
    }

    /// Removes every key, keeping the allocations.
    pub fn clear(&mut self) {
        self.data.clear();
        self.ends.clear();
    }

    /// Encodes and appends one entity's key.
    pub fn push(&mut self, entity: &Entity, parts: &[KeyPart<'_>]) -> Result<(), EngineError> {
        encode_key(entity, parts, &mut self.data)?;
        self.ends.push(self.data.len() as u32);
        Ok(())
    }

    /// Appends an already-encoded key.
    pub fn push_encoded(&mut self, key: &[u8]) {
        self.data.extend_from_slice(key);
        self.ends.push(self.data.len() as u32);
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The `i`-th encoded key.
    pub fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.data[start..self.ends[i] as usize]
    }

    /// Iterates the encoded keys in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        (0..self.len()).map(move |i| self.get(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::JoinKey;

    fn composite() -> Entity {
        Entity {
            name: "um".into(),
            join_keys: vec![
                JoinKey {
                    name: "user_id".into(),
                    ty: KeyType::Int64,
                },
                JoinKey {
                    name: "merchant".into(),
                    ty: KeyType::String,
                },
            ],
            description: String::new(),
        }
    }

    #[test]
    fn composite_keys_round_trip() {
        let e = composite();
        let mut b = KeyBatch::new();
        b.push(&e, &[KeyPart::Int64(-7), KeyPart::String("acme")])
            .unwrap();
        b.push(&e, &[KeyPart::Int64(i64::MAX), KeyPart::String("")])
            .unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(
            decode_key(&e, b.get(0)).unwrap(),
            vec![OwnedKeyPart::Int64(-7), OwnedKeyPart::String("acme".into())]
        );
        assert_eq!(
            decode_key(&e, b.get(1)).unwrap(),
            vec![
                OwnedKeyPart::Int64(i64::MAX),
                OwnedKeyPart::String(String::new())
            ]
        );
        assert!(decode_key(&e, &b.get(0)[..2]).is_none());
    }

    #[test]
    fn wrong_arity_or_type_is_an_error_and_leaves_nothing_behind() {
        let e = composite();
        let mut b = KeyBatch::new();
        let err = b.push(&e, &[KeyPart::Int64(1)]).unwrap_err();
        assert!(err.to_string().contains("2 join key(s), got 1"));
        let err = b
            .push(&e, &[KeyPart::String("x"), KeyPart::String("y")])
            .unwrap_err();
        assert!(err.to_string().contains("\"user_id\""), "{err}");
        assert!(b.is_empty());
        let long = "x".repeat(MAX_KEY_LEN + 1);
        assert!(b
            .push(&e, &[KeyPart::Int64(1), KeyPart::String(&long)])
            .is_err());
        assert!(b.is_empty());
    }
}
