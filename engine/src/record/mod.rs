//! The record codec: every feature value of one entity in one view, in one compact byte string.
//!
//! ```text
//! flags      u8       0x01 PARTIAL   a written bitmap follows (else every feature is written)
//!                     0x02 NULLS     a null bitmap follows
//!                     0x04 TS_VARY   per-feature event timestamps (else one for all)
//!                     0x08 CREATED   created timestamps follow
//!                     0x10 CR_VARY   per-feature created timestamps (else one for all)
//!                     0x20 TS_SECS   timestamps are stored in whole seconds
//! nfeat      varint   features covered; features added to the view later are unwritten
//! written    ceil(nfeat/8) bytes, if PARTIAL; bit i = feature i has been written
//! nulls      ceil(nfeat/8) bytes, if NULLS; bit i = feature i was written as null
//! bools      ceil(nbool/8) bytes: the scalar bool features' values, bit-packed
//! ts_base    zigzag varint: the smallest event timestamp
//! ts_delta   varint per written feature, if TS_VARY: its timestamp minus ts_base
//! cr_base    zigzag varint, if CREATED: the smallest created timestamp
//! cr_delta   varint per written feature, if CR_VARY: created - cr_base + 1, or 0 for none
//! values     for each written, non-null, non-bool feature, in schema order:
//!              int32/int64/timestamp  zigzag varint
//!              float32 / float64      4 / 8 bytes little-endian
//!              string / bytes         varint length + bytes
//!              vector<N>              per the feature's storage: N × f32, N × f16/bf16, or
//!                                     an f32 scale + N × i8 (N comes from the schema)
//!              list<T>                varint count + items (bools bit-packed, ints varint,
//!                                     floats fixed, strings length-prefixed)
//! ```
//!
//! A whole-row write costs one timestamp. Reading feature `i` walks the header and skips the
//! values before it by their lengths without decoding them.
//!
//! This module holds the format (flags, the compiled [`Layout`], cells and header parsing);
//! `encode` writes records and `decode` reads values out of them.

mod decimal;
mod decode;
mod encode;
#[cfg(test)]
mod tests;

pub(crate) use decimal::{decimal_pack, decimal_unpack};
pub(crate) use decode::{decode_bytes_into, decode_into, decode_simple, simple_head, skip_value};
pub(crate) use encode::{apply, encode, encode_value};

use crate::encoding::{get_varint, put_varint, skip_varint, take, unzigzag, zigzag};
use crate::registry::FeatureView;
use crate::value::{ColumnData, ScalarType, Value, ValueType, VectorStorage};

const PARTIAL: u8 = 0x01;
const NULLS: u8 = 0x02;
const TS_VARY: u8 = 0x04;
const CREATED: u8 = 0x08;
const CR_VARY: u8 = 0x10;
const TS_SECS: u8 = 0x20;
const KNOWN_FLAGS: u8 = 0x3f;

const NO_BOOL: u32 = u32::MAX;
const MICROS: i64 = 1_000_000;

/// "No created timestamp": sorts before every real one.
pub(crate) const NO_CREATED: i64 = i64::MIN;

/// A view's schema compiled for the codec.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub(crate) types: Vec<ValueType>,
    /// Effective TTL per feature in microseconds; 0 = never expires.
    pub(crate) ttl_micros: Vec<i64>,
    bool_slot: Vec<u32>,
    bools_before: Vec<u32>,
    /// How to step over each feature's value bytes, precomputed so parsing does not
    /// re-derive it from the type for every value.
    skip: Vec<Skip>,
    /// How each vector feature stores its components (float32 for everything else).
    storage: Vec<VectorStorage>,
    /// See [`Layout::max_record_len`].
    max_len: Option<usize>,
    /// Per feature: its index among the scalar float features, or `NO_FLOAT`.
    float_slot: Vec<u32>,
    /// Scalar float features before feature i (i = 0..=len).
    floats_before: Vec<u32>,
}

const NO_FLOAT: u32 = u32::MAX;

/// The shape of a feature's value bytes in a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    /// Scalar bools live in the bool bitmap: no value bytes.
    None,
    /// One zigzag varint.
    Varint,
    /// A fixed number of bytes.
    Fixed(usize),
    /// A varint length and that many bytes.
    Prefixed,
    /// A list: a count and its items.
    List(ScalarType),
}

impl Skip {
    fn of(ty: ValueType, storage: VectorStorage) -> Self {
        match ty {
            ValueType::Scalar(ScalarType::Bool) => Skip::None,
            ValueType::Scalar(ScalarType::Int32 | ScalarType::Int64 | ScalarType::Timestamp) => {
                Skip::Varint
            }
            ValueType::Scalar(ScalarType::Float32) => Skip::Fixed(4),
            ValueType::Scalar(ScalarType::Float64) => Skip::Fixed(8),
            ValueType::Scalar(ScalarType::String | ScalarType::Bytes) => Skip::Prefixed,
            ValueType::Vector { dim } => Skip::Fixed(storage.encoded_len(dim as usize)),
            ValueType::List(s) => Skip::List(s),
        }
    }
}

impl Layout {
    pub(crate) fn new(view: &FeatureView) -> Self {
        let types: Vec<ValueType> = view.features.iter().map(|f| f.ty).collect();
        let ttl_micros = (0..types.len())
            .map(|i| (view.feature_ttl_secs(i) as i64).saturating_mul(MICROS))
            .collect();
        let mut bool_slot = Vec::with_capacity(types.len());
        let mut bools_before = Vec::with_capacity(types.len() + 1);
        let mut n = 0u32;
        for t in &types {
            bools_before.push(n);
            if *t == ValueType::Scalar(ScalarType::Bool) {
                bool_slot.push(n);
                n += 1;
            } else {
                bool_slot.push(NO_BOOL);
            }
        }
        bools_before.push(n);
        let storage: Vec<VectorStorage> = view.features.iter().map(|f| f.storage).collect();
        let skip = types
            .iter()
            .zip(&storage)
            .map(|(t, s)| Skip::of(*t, *s))
            .collect();
        let (mut float_slot, mut floats_before, mut f) = (Vec::new(), Vec::new(), 0u32);
        for t in &types {
            floats_before.push(f);
            if matches!(
                t,
                ValueType::Scalar(ScalarType::Float32 | ScalarType::Float64)
            ) {
                float_slot.push(f);
                f += 1;
            } else {
                float_slot.push(NO_FLOAT);
            }
        }
        floats_before.push(f);
        let mut layout = Self {
            types,
            ttl_micros,
            bool_slot,
            bools_before,
            skip,
            storage,
            max_len: None,
            float_slot,
            floats_before,
        };
        layout.max_len = layout.compute_max_len();
        layout
    }

    pub(crate) fn len(&self) -> usize {
        self.types.len()
    }

    /// The longest record this schema can encode, or `None` when a feature has no fixed
    /// bound (strings, bytes, lists). Bounds the output of decompressing a record.
    #[inline]
    pub(crate) fn max_record_len(&self) -> Option<usize> {
        self.max_len
    }

    fn compute_max_len(&self) -> Option<usize> {
        const VARINT: usize = 10;
        let n = self.len();
        // flags, count, two bitmaps, the bools, then two timestamps plus a delta each.
        let mut len = 1 + VARINT + 2 * n.div_ceil(8) + n.div_ceil(8) + 2 * VARINT + 2 * n * VARINT;
        for skip in &self.skip {
            len += match skip {
                Skip::None => 0,
                Skip::Varint => VARINT,
                Skip::Fixed(w) => *w,
                Skip::Prefixed | Skip::List(_) => return None,
            };
        }
        Some(len)
    }

    /// Whether the schema has scalar float32/float64 features (which decimal coding may
    /// shorten).
    pub(crate) fn has_scalar_floats(&self) -> bool {
        self.floats_before[self.len()] > 0
    }

    /// The byte width of the fixed-width floats that make up most of this schema's value
    /// bytes (2 for half-precision vectors, 4 for float32, 8 for float64), or `None` when they
    /// do not dominate. Byte-shuffling records at that width groups the floats' exponent
    /// bytes together, which is what lets zstd find anything in them.
    pub(crate) fn float_width(&self) -> Option<usize> {
        let mut by_width = [0usize; 9];
        let mut fixed = 0;
        for (i, ty) in self.types.iter().enumerate() {
            let (width, bytes) = match (ty, self.storage[i]) {
                (ValueType::Vector { dim }, VectorStorage::Float32) => (4, 4 * *dim as usize),
                (ValueType::Vector { dim }, VectorStorage::Float16 | VectorStorage::BFloat16) => {
                    (2, 2 * *dim as usize)
                }
                (ValueType::Scalar(ScalarType::Float32), _) => (4, 4),
                (ValueType::Scalar(ScalarType::Float64), _) => (8, 8),
                _ => {
                    if let Skip::Fixed(w) = self.skip[i] {
                        fixed += w;
                    }
                    continue;
                }
            };
            by_width[width] += bytes;
            fixed += bytes;
        }
        let (width, bytes) = by_width
            .iter()
            .enumerate()
            .max_by_key(|(_, b)| **b)
            .map(|(w, b)| (w, *b))?;
        (bytes > 0 && bytes * 2 >= fixed).then_some(width)
    }
}

/// What a record holds for one feature.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum CellState {
    #[default]
    Unwritten,
    Null,
    Present,
}

/// One feature of a parsed record: its state, timestamps and where its value bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cell {
    pub(crate) state: CellState,
    pub(crate) ts: i64,
    pub(crate) created: i64,
    /// Value bytes come from the record being parsed (false) or a side buffer (true).
    pub(crate) fresh: bool,
    pub(crate) start: u32,
    pub(crate) len: u32,
    /// A scalar bool's value (bools have no value bytes).
    pub(crate) flag: bool,
}

impl Default for Cell {
    fn default() -> Self {
        Self {
            state: CellState::Unwritten,
            ts: 0,
            created: NO_CREATED,
            fresh: false,
            start: 0,
            len: 0,
            flag: false,
        }
    }
}

/// Why a record did not decode (the caller adds where it came from).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed(pub(crate) &'static str);

fn bit(bits: &[u8], i: usize) -> bool {
    bits[i / 8] & (1 << (i % 8)) != 0
}

fn set_bit(bits: &mut [u8], i: usize) {
    bits[i / 8] |= 1 << (i % 8);
}

/// Parses `rec` into one cell per feature of `layout` (features the record predates are
/// unwritten). Value bytes are located, not decoded.
pub(crate) fn parse(layout: &Layout, rec: &[u8], cells: &mut Vec<Cell>) -> Result<(), Malformed> {
    parse_upto(layout, rec, cells, usize::MAX)
}

/// Like [`parse`], but locates value bytes only for features below `upto` (states and
/// timestamps are set for all). The read path uses it to stop after the last requested
/// feature; a partial parse cannot check for trailing bytes.
#[inline]
pub(crate) fn parse_upto(
    layout: &Layout,
    rec: &[u8],
    cells: &mut Vec<Cell>,
    upto: usize,
) -> Result<(), Malformed> {
    let head = parse_head(layout, rec, cells)?;
    let (mut pos, nfeat) = (head.values, head.nfeat);
    let last = nfeat.min(upto);
    for (i, cell) in cells.iter_mut().enumerate().take(last) {
        if cell.state != CellState::Present {
            continue;
        }
        if layout.skip[i] == Skip::None {
            cell.flag = bit(head.bools, layout.bool_slot[i] as usize);
            continue;
        }
        let start = pos;
        step(layout, i, rec, &mut pos)?;
        cell.start = start as u32;
        cell.len = (pos - start) as u32;
    }
    if last == nfeat && pos != rec.len() {
        return Err(Malformed("trailing bytes after the last value"));
    }
    Ok(())
}

/// What [`parse_head`] found: where the values start, how many features the record covers,
/// and its bool bitmap.
pub(crate) struct Head<'a> {
    pub(crate) values: usize,
    pub(crate) nfeat: usize,
    bools: &'a [u8],
}

/// Parses everything before the values (flags, bitmaps, timestamps) into `cells`: states and
/// timestamps for every feature, no value spans.
pub(crate) fn parse_head<'a>(
    layout: &Layout,
    rec: &'a [u8],
    cells: &mut Vec<Cell>,
) -> Result<Head<'a>, Malformed> {
    cells.clear();
    cells.resize(layout.len(), Cell::default());
    let mut pos = 0;
    let flags = *rec.first().ok_or(Malformed("empty record"))?;
    pos += 1;
    if flags & !KNOWN_FLAGS != 0 {
        return Err(Malformed("unknown record flags"));
    }
    let nfeat = get_varint(rec, &mut pos).ok_or(Malformed("truncated feature count"))?;
    if nfeat > layout.len() as u64 {
        return Err(Malformed("record has more features than its view"));
    }
    let nfeat = nfeat as usize;
    let bm = nfeat.div_ceil(8);
    let written = if flags & PARTIAL != 0 {
        Some(take(rec, &mut pos, bm).ok_or(Malformed("truncated written bitmap"))?)
    } else {
        None
    };
    let nulls = if flags & NULLS != 0 {
        Some(take(rec, &mut pos, bm).ok_or(Malformed("truncated null bitmap"))?)
    } else {
        None
    };
    let nbool = layout.bools_before[nfeat] as usize;
    let bools = take(rec, &mut pos, nbool.div_ceil(8)).ok_or(Malformed("truncated bools"))?;

    let scale = if flags & TS_SECS != 0 { MICROS } else { 1 };
    let base = read_ts(rec, &mut pos, scale)?;
    for (i, cell) in cells.iter_mut().enumerate().take(nfeat) {
        if written.is_some_and(|w| !bit(w, i)) {
            continue;
        }
        cell.ts = base;
        if flags & TS_VARY != 0 {
            let d = get_varint(rec, &mut pos).ok_or(Malformed("truncated timestamp"))?;
            cell.ts = add_delta(base, d, scale)?;
        }
        cell.state = if nulls.is_some_and(|n| bit(n, i)) {
            CellState::Null
        } else {
            CellState::Present
        };
    }
    if flags & CREATED != 0 {
        let cbase = read_ts(rec, &mut pos, 1)?;
        for cell in cells.iter_mut().take(nfeat) {
            if cell.state == CellState::Unwritten {
                continue;
            }
            cell.created = cbase;
            if flags & CR_VARY != 0 {
                let d = get_varint(rec, &mut pos).ok_or(Malformed("truncated created"))?;
                cell.created = if d == 0 {
                    NO_CREATED
                } else {
                    add_delta(cbase, d - 1, 1)?
                };
            }
        }
    }
    Ok(Head {
        values: pos,
        nfeat,
        bools,
    })
}

/// Advances `pos` over feature `i`'s value bytes (none for scalar bools).
#[inline]
fn step(layout: &Layout, i: usize, rec: &[u8], pos: &mut usize) -> Result<(), Malformed> {
    match layout.skip[i] {
        Skip::None => {}
        Skip::Fixed(w) => {
            *pos = pos
                .checked_add(w)
                .filter(|&end| end <= rec.len())
                .ok_or(Malformed("truncated value"))?;
        }
        Skip::Varint => skip_varint(rec, pos).ok_or(Malformed("truncated value"))?,
        Skip::Prefixed | Skip::List(_) => {
            skip_value(layout.types[i], rec, pos).ok_or(Malformed("truncated value"))?
        }
    }
    Ok(())
}

fn read_ts(rec: &[u8], pos: &mut usize, scale: i64) -> Result<i64, Malformed> {
    let v = unzigzag(get_varint(rec, pos).ok_or(Malformed("truncated timestamp"))?);
    v.checked_mul(scale)
        .ok_or(Malformed("timestamp out of range"))
}

fn add_delta(base: i64, delta: u64, scale: i64) -> Result<i64, Malformed> {
    let v = i128::from(base) + i128::from(delta) * i128::from(scale);
    i64::try_from(v).map_err(|_| Malformed("timestamp out of range"))
}
