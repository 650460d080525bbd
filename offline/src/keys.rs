//! Join key columns of Arrow rows → the engine's canonical entity keys.

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, ArrayRef, Int64Array, StringArray};
use quiver_engine::{encode_key, Entity, KeyPart, KeyType, ScalarType, ValueType};

use crate::types::normalize;

enum KeyCol {
    Int(Int64Array),
    Str(StringArray),
}

/// The join key columns of one batch, normalized to `Int64` / `Utf8`.
pub(crate) struct KeyColumns {
    cols: Vec<KeyCol>,
}

/// Composite keys with at most this many parts are encoded without allocating.
const INLINE_PARTS: usize = 8;

impl KeyColumns {
    /// `arrays` are the entity's join key columns in join-key order.
    pub(crate) fn new(entity: &Entity, arrays: &[ArrayRef]) -> Result<Self, String> {
        let mut cols = Vec::with_capacity(arrays.len());
        for (jk, a) in entity.join_keys.iter().zip(arrays) {
            cols.push(match jk.ty {
                KeyType::Int64 => KeyCol::Int(
                    normalize(a, ValueType::Scalar(ScalarType::Int64))
                        .map_err(|e| format!("join key {:?} {e}", jk.name))?
                        .as_primitive::<Int64Type>()
                        .clone(),
                ),
                KeyType::String => KeyCol::Str(
                    normalize(a, ValueType::Scalar(ScalarType::String))
                        .map_err(|e| format!("join key {:?} {e}", jk.name))?
                        .as_string::<i32>()
                        .clone(),
                ),
            });
        }
        Ok(Self { cols })
    }

    /// The single `int64` key column, when the entity has exactly that.
    pub(crate) fn single_int(&self) -> Option<&Int64Array> {
        match self.cols.as_slice() {
            [KeyCol::Int(a)] => Some(a),
            _ => None,
        }
    }

    fn is_null(&self, i: usize) -> bool {
        self.cols.iter().any(|c| match c {
            KeyCol::Int(a) => a.is_null(i),
            KeyCol::Str(a) => a.is_null(i),
        })
    }

    /// Encodes row `i`'s key into `out` (cleared first); false when a part is null.
    pub(crate) fn encode(&self, entity: &Entity, i: usize, out: &mut Vec<u8>) -> bool {
        out.clear();
        if self.is_null(i) {
            return false;
        }
        fn part(c: &KeyCol, i: usize) -> KeyPart<'_> {
            match c {
                KeyCol::Int(a) => KeyPart::Int64(a.value(i)),
                KeyCol::Str(a) => KeyPart::String(a.value(i)),
            }
        }
        let ok = if self.cols.len() <= INLINE_PARTS {
            let mut parts = [KeyPart::Int64(0); INLINE_PARTS];
            for (p, c) in parts.iter_mut().zip(&self.cols) {
                *p = part(c, i);
            }
            encode_key(entity, &parts[..self.cols.len()], out)
        } else {
            let parts: Vec<KeyPart<'_>> = self.cols.iter().map(|c| part(c, i)).collect();
            encode_key(entity, &parts, out)
        };
        // The columns were normalized to the key types, so only an over-long key fails.
        ok.is_ok()
    }
}
