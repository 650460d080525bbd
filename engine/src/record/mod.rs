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

mod decimal;
#[cfg(test)]
mod tests;

pub(crate) use decimal::{decimal_pack, decimal_unpack};

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

/// Advances `pos` over one encoded value of type `ty`.
pub(crate) fn skip_value(ty: ValueType, buf: &[u8], pos: &mut usize) -> Option<()> {
    match ty {
        ValueType::Scalar(s) => skip_scalar(s, buf, pos),
        ValueType::Vector { dim } => take(buf, pos, dim as usize * 4).map(drop),
        ValueType::List(s) => {
            let n = usize::try_from(get_varint(buf, pos)?).ok()?;
            // Every item takes at least one byte (bools: one bit), so a count larger than the
            // remaining input is damage; refuse before looping on it.
            if n > (buf.len() - *pos).saturating_mul(8) {
                return None;
            }
            match s {
                ScalarType::Bool => take(buf, pos, n.div_ceil(8)).map(drop),
                ScalarType::Float32 => take(buf, pos, n.checked_mul(4)?).map(drop),
                ScalarType::Float64 => take(buf, pos, n.checked_mul(8)?).map(drop),
                _ => (0..n).try_for_each(|_| skip_scalar(s, buf, pos)),
            }
        }
    }
}

fn skip_scalar(s: ScalarType, buf: &[u8], pos: &mut usize) -> Option<()> {
    match s {
        ScalarType::Int32 | ScalarType::Int64 | ScalarType::Timestamp => skip_varint(buf, pos),
        ScalarType::Float32 => take(buf, pos, 4).map(drop),
        ScalarType::Float64 => take(buf, pos, 8).map(drop),
        ScalarType::String | ScalarType::Bytes => {
            let n = usize::try_from(get_varint(buf, pos)?).ok()?;
            take(buf, pos, n).map(drop)
        }
        // A scalar bool never has value bytes; inside lists bools are handled by the caller.
        ScalarType::Bool => Some(()),
    }
}

/// Decodes the features a read wants straight from a record into its columns, in one pass
/// and without parsing into cells, when the record has the common shape: every feature of
/// the current schema written, no nulls, one timestamp, no created time. Returns `Ok(false)`
/// without touching anything when the record has another shape (use the general path).
///
/// `wanted` is `(feature, column)` sorted by feature; `min_ts[column]` is the oldest event
/// time still fresh for that column.
#[inline]
pub(crate) fn decode_simple(
    layout: &Layout,
    rec: &[u8],
    wanted: &[(usize, usize)],
    min_ts: &[i64],
    columns: &mut [crate::value::FeatureColumn],
    row: usize,
) -> Result<bool, Malformed> {
    decode_simple_as(layout, rec, false, wanted, min_ts, columns, row)
}

/// [`decode_simple`] for the body of a decimal-coded record (see `decimal`): the same walk,
/// reading coded floats from their varints. Saves decoding the record back to plain bytes
/// and parsing it again.
#[inline]
pub(crate) fn decode_simple_decimal(
    layout: &Layout,
    body: &[u8],
    wanted: &[(usize, usize)],
    min_ts: &[i64],
    columns: &mut [crate::value::FeatureColumn],
    row: usize,
) -> Result<bool, Malformed> {
    decode_simple_as(layout, body, true, wanted, min_ts, columns, row)
}

/// The head of a whole-row record: every feature of the current schema written, no nulls,
/// one timestamp, no created time (the shape most records have).
pub(crate) struct SimpleHead<'a> {
    /// Where the record's own head ends (before the float bitmap of a decimal-coded body).
    pub(crate) end: usize,
    pub(crate) bools: &'a [u8],
    pub(crate) ts: i64,
    /// A decimal-coded body's float bitmap (empty for a plain record).
    pub(crate) coded: &'a [u8],
    /// Where the values start.
    pub(crate) values: usize,
}

/// Parses the head of `rec` (a decimal-coded body if `decimal`) if it has the whole-row
/// shape; `Ok(None)` when it has another one.
#[inline]
pub(crate) fn simple_head<'a>(
    layout: &Layout,
    rec: &'a [u8],
    decimal: bool,
) -> Result<Option<SimpleHead<'a>>, Malformed> {
    let n = layout.len();
    let Some(&flags) = rec.first() else {
        return Err(Malformed("empty record"));
    };
    if flags & !TS_SECS != 0 || rec.get(1).map(|&b| usize::from(b)) != Some(n) || n >= 0x80 {
        return Ok(None);
    }
    let mut pos = 2;
    let nbool = layout.bools_before[n] as usize;
    let bools = take(rec, &mut pos, nbool.div_ceil(8)).ok_or(Malformed("truncated bools"))?;
    let scale = if flags & TS_SECS != 0 { MICROS } else { 1 };
    let ts = read_ts(rec, &mut pos, scale)?;
    let end = pos;
    let coded: &[u8] = if decimal {
        let bm = (layout.floats_before[n] as usize).div_ceil(8);
        take(rec, &mut pos, bm).ok_or(Malformed("truncated float bitmap"))?
    } else {
        &[]
    };
    Ok(Some(SimpleHead {
        end,
        bools,
        ts,
        coded,
        values: pos,
    }))
}

#[inline]
fn decode_simple_as(
    layout: &Layout,
    rec: &[u8],
    decimal: bool,
    wanted: &[(usize, usize)],
    min_ts: &[i64],
    columns: &mut [crate::value::FeatureColumn],
    row: usize,
) -> Result<bool, Malformed> {
    let Some(SimpleHead {
        bools,
        ts,
        coded,
        values: mut pos,
        ..
    }) = simple_head(layout, rec, decimal)?
    else {
        return Ok(false);
    };
    let mut w = 0;
    for i in 0..layout.len() {
        if w == wanted.len() {
            break;
        }
        let start = pos;
        let is_coded = decimal
            && layout.float_slot[i] != NO_FLOAT
            && bit(coded, layout.float_slot[i] as usize);
        match layout.skip[i] {
            Skip::None => {}
            _ if is_coded => skip_varint(rec, &mut pos).ok_or(Malformed("truncated value"))?,
            Skip::Fixed(n) => {
                pos = pos
                    .checked_add(n)
                    .filter(|&end| end <= rec.len())
                    .ok_or(Malformed("truncated value"))?;
            }
            Skip::Varint => skip_varint(rec, &mut pos).ok_or(Malformed("truncated value"))?,
            Skip::Prefixed | Skip::List(_) => {
                skip_value(layout.types[i], rec, &mut pos).ok_or(Malformed("truncated value"))?
            }
        }
        while w < wanted.len() && wanted[w].0 == i {
            let col = wanted[w].1;
            w += 1;
            let column = &mut columns[col];
            column.event_ts[row] = ts;
            if ts < min_ts[col] {
                column.statuses[row] = crate::value::Status::OutsideMaxAge;
                continue;
            }
            if layout.skip[i] == Skip::None {
                if let ColumnData::Bool(c) = &mut column.values {
                    c[row] = bit(bools, layout.bool_slot[i] as usize);
                }
            } else if is_coded {
                decimal::decode_into(&rec[start..pos], &mut column.values, row)?;
            } else {
                decode_feature(layout, i, &rec[start..pos], &mut column.values, row)?;
            }
            column.statuses[row] = crate::value::Status::Present;
        }
    }
    Ok(true)
}

/// Encodes a non-null value's bytes (not for scalar bools, which live in the bool bitmap).
pub(crate) fn encode_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null | Value::Bool(_) => {}
        Value::Int32(x) => put_varint(out, zigzag(i64::from(*x))),
        Value::Int64(x) | Value::Timestamp(x) => put_varint(out, zigzag(*x)),
        Value::Float32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Float64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::String(s) => put_bytes(out, s.as_bytes()),
        Value::Bytes(b) => put_bytes(out, b),
        Value::Vector(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Value::BoolList(v) => {
            put_varint(out, v.len() as u64);
            let start = out.len();
            out.resize(start + v.len().div_ceil(8), 0);
            for (i, b) in v.iter().enumerate() {
                if *b {
                    set_bit(&mut out[start..], i);
                }
            }
        }
        Value::Int32List(v) => {
            put_varint(out, v.len() as u64);
            v.iter()
                .for_each(|x| put_varint(out, zigzag(i64::from(*x))));
        }
        Value::Int64List(v) | Value::TimestampList(v) => {
            put_varint(out, v.len() as u64);
            v.iter().for_each(|x| put_varint(out, zigzag(*x)));
        }
        Value::Float32List(v) => {
            put_varint(out, v.len() as u64);
            v.iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
        }
        Value::Float64List(v) => {
            put_varint(out, v.len() as u64);
            v.iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
        }
        Value::StringList(v) => {
            put_varint(out, v.len() as u64);
            v.iter().for_each(|s| put_bytes(out, s.as_bytes()));
        }
        Value::BytesList(v) => {
            put_varint(out, v.len() as u64);
            v.iter().for_each(|b| put_bytes(out, b));
        }
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Encodes `cells` as a record into `out` (cleared first). Value bytes of each cell come from
/// `old` or, for fresh cells, from `fresh`.
pub(crate) fn encode(layout: &Layout, cells: &[Cell], old: &[u8], fresh: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let nfeat = cells
        .iter()
        .rposition(|c| c.state != CellState::Unwritten)
        .map_or(0, |i| i + 1);
    let live = &cells[..nfeat];
    let mut flags = 0u8;
    let mut ts_base = i64::MAX;
    let mut cr_base = i64::MAX;
    let mut any_created = false;
    let mut secs = true;
    for c in live.iter().filter(|c| c.state != CellState::Unwritten) {
        ts_base = ts_base.min(c.ts);
        secs &= c.ts % MICROS == 0;
        if c.created != NO_CREATED {
            any_created = true;
            cr_base = cr_base.min(c.created);
        }
        if c.state == CellState::Null {
            flags |= NULLS;
        }
    }
    if nfeat == 0 {
        ts_base = 0;
    }
    let mut written_iter = live.iter().filter(|c| c.state != CellState::Unwritten);
    if live.iter().any(|c| c.state == CellState::Unwritten) {
        flags |= PARTIAL;
    }
    if written_iter.clone().any(|c| c.ts != ts_base) {
        flags |= TS_VARY;
    }
    if secs {
        flags |= TS_SECS;
    }
    if any_created {
        flags |= CREATED;
        if written_iter.any(|c| c.created != cr_base) {
            flags |= CR_VARY;
        }
    }
    out.push(flags);
    put_varint(out, nfeat as u64);
    let bm = nfeat.div_ceil(8);
    if flags & PARTIAL != 0 {
        let at = out.len();
        out.resize(at + bm, 0);
        for (i, c) in live.iter().enumerate() {
            if c.state != CellState::Unwritten {
                set_bit(&mut out[at..], i);
            }
        }
    }
    if flags & NULLS != 0 {
        let at = out.len();
        out.resize(at + bm, 0);
        for (i, c) in live.iter().enumerate() {
            if c.state == CellState::Null {
                set_bit(&mut out[at..], i);
            }
        }
    }
    let nbool = layout.bools_before[nfeat] as usize;
    let at = out.len();
    out.resize(at + nbool.div_ceil(8), 0);
    for (i, c) in live.iter().enumerate() {
        let slot = layout.bool_slot[i];
        if slot != NO_BOOL && c.state == CellState::Present && c.flag {
            set_bit(&mut out[at..], slot as usize);
        }
    }
    let scale = if secs { MICROS } else { 1 };
    put_varint(out, zigzag(ts_base / scale));
    if flags & TS_VARY != 0 {
        for c in live.iter().filter(|c| c.state != CellState::Unwritten) {
            let d = (i128::from(c.ts) - i128::from(ts_base)) / i128::from(scale);
            put_varint(out, d as u64);
        }
    }
    if flags & CREATED != 0 {
        put_varint(out, zigzag(cr_base));
        if flags & CR_VARY != 0 {
            for c in live.iter().filter(|c| c.state != CellState::Unwritten) {
                let d = if c.created == NO_CREATED {
                    0
                } else {
                    (i128::from(c.created) - i128::from(cr_base)) as u64 + 1
                };
                put_varint(out, d);
            }
        }
    }
    for (i, c) in live.iter().enumerate() {
        if c.state == CellState::Present && layout.bool_slot[i] == NO_BOOL {
            let src = if c.fresh { fresh } else { old };
            out.extend_from_slice(&src[c.start as usize..(c.start + c.len) as usize]);
        }
    }
}

/// Applies one write of feature `i` to its cell if it wins last-write-wins: a newer event
/// timestamp, or an equal one with a created timestamp at least as new (equal: later arrival
/// wins). Returns whether the cell changed. The value's bytes go to `fresh`.
pub(crate) fn apply(
    layout: &Layout,
    cell: &mut Cell,
    i: usize,
    value: &Value,
    ts: i64,
    created: i64,
    fresh: &mut Vec<u8>,
) -> bool {
    if cell.state != CellState::Unwritten && (ts, created) < (cell.ts, cell.created) {
        return false;
    }
    cell.ts = ts;
    cell.created = created;
    match value {
        Value::Null => cell.state = CellState::Null,
        Value::Bool(b) if layout.bool_slot[i] != NO_BOOL => {
            cell.state = CellState::Present;
            cell.flag = *b;
        }
        v => {
            cell.state = CellState::Present;
            cell.fresh = true;
            let start = fresh.len();
            match (v, layout.storage[i]) {
                (Value::Vector(x), st) if st != VectorStorage::Float32 => st.encode(x, fresh),
                _ => encode_value(v, fresh),
            }
            cell.start = start as u32;
            cell.len = (fresh.len() - start) as u32;
        }
    }
    true
}

/// Writes the value of a present cell of feature `fi` into row `row` of `col`. `bytes` is the
/// record (or side buffer) the cell's span points into.
pub(crate) fn decode_into(
    layout: &Layout,
    fi: usize,
    cell: &Cell,
    bytes: &[u8],
    col: &mut ColumnData,
    row: usize,
) -> Result<(), Malformed> {
    if let (ValueType::Scalar(ScalarType::Bool), ColumnData::Bool(c)) =
        (layout.types[fi], &mut *col)
    {
        c[row] = cell.flag;
        return Ok(());
    }
    let v = bytes
        .get(cell.start as usize..(cell.start as usize + cell.len as usize))
        .ok_or(Malformed("value span outside the record"))?;
    decode_feature(layout, fi, v, col, row)
}

/// Decodes feature `fi`'s value bytes as stored in a record (vectors in their storage form).
#[inline]
fn decode_feature(
    layout: &Layout,
    fi: usize,
    v: &[u8],
    col: &mut ColumnData,
    row: usize,
) -> Result<(), Malformed> {
    if let (ValueType::Vector { dim }, ColumnData::Vector { data, .. }) =
        (layout.types[fi], &mut *col)
    {
        let d = dim as usize;
        let dst = data
            .get_mut(row * d..(row + 1) * d)
            .ok_or(Malformed("vector row outside the column"))?;
        return if layout.storage[fi].decode(v, dst) {
            Ok(())
        } else {
            Err(Malformed("vector has the wrong length for its storage"))
        };
    }
    decode_bytes_into(layout.types[fi], v, col, row)
}

/// Decodes exactly the encoded value `v` of type `ty` into row `row` of `col`. Scalar bools
/// are one byte (0 or 1) here; in records they live in the bool bitmap instead.
pub(crate) fn decode_bytes_into(
    ty: ValueType,
    v: &[u8],
    col: &mut ColumnData,
    row: usize,
) -> Result<(), Malformed> {
    let mut pos = 0;
    let bad = Malformed("value does not match its type");
    match (ty, col) {
        (ValueType::Scalar(ScalarType::Bool), ColumnData::Bool(c)) => {
            c[row] = match v {
                [0] => false,
                [1] => true,
                _ => return Err(bad),
            };
        }
        (ValueType::Scalar(ScalarType::Int32), ColumnData::Int32(c)) => {
            c[row] = read_int(v, &mut pos)?.try_into().map_err(|_| bad)?;
        }
        (ValueType::Scalar(ScalarType::Int64), ColumnData::Int64(c))
        | (ValueType::Scalar(ScalarType::Timestamp), ColumnData::Timestamp(c)) => {
            c[row] = read_int(v, &mut pos)?;
        }
        (ValueType::Scalar(ScalarType::Float32), ColumnData::Float32(c)) => {
            c[row] = f32::from_le_bytes(v.try_into().map_err(|_| bad)?);
        }
        (ValueType::Scalar(ScalarType::Float64), ColumnData::Float64(c)) => {
            c[row] = f64::from_le_bytes(v.try_into().map_err(|_| bad)?);
        }
        (ValueType::Scalar(ScalarType::String), ColumnData::String(c))
        | (ValueType::Scalar(ScalarType::Bytes), ColumnData::Bytes(c)) => {
            let n = get_varint(v, &mut pos).ok_or(bad)? as usize;
            c.set(row, take(v, &mut pos, n).ok_or(bad)?);
        }
        (ValueType::Vector { dim }, ColumnData::Vector { data, .. }) => {
            let d = dim as usize;
            if v.len() != d * 4 {
                return Err(bad);
            }
            for (dst, src) in data[row * d..(row + 1) * d]
                .iter_mut()
                .zip(v.chunks_exact(4))
            {
                *dst = f32::from_le_bytes([src[0], src[1], src[2], src[3]]);
            }
        }
        (ValueType::List(s), ColumnData::List { spans, items }) => {
            let n = get_varint(v, &mut pos).ok_or(bad)? as usize;
            let first = items.len() as u32;
            decode_items(s, n, v, &mut pos, items).ok_or(bad)?;
            spans[row] = (first, n as u32);
        }
        _ => return Err(Malformed("column does not match the feature type")),
    }
    Ok(())
}

fn read_int(v: &[u8], pos: &mut usize) -> Result<i64, Malformed> {
    get_varint(v, pos)
        .map(unzigzag)
        .ok_or(Malformed("truncated integer"))
}

fn decode_items(
    s: ScalarType,
    n: usize,
    v: &[u8],
    pos: &mut usize,
    items: &mut ColumnData,
) -> Option<()> {
    // `n` was bounded by `skip_value` when the record was parsed, but this function must be
    // safe on its own: never reserve more than the input could hold.
    if n > v.len().saturating_mul(8) {
        return None;
    }
    match (s, items) {
        (ScalarType::Bool, ColumnData::Bool(c)) => {
            let bits = take(v, pos, n.div_ceil(8))?;
            c.extend((0..n).map(|i| bit(bits, i)));
        }
        (ScalarType::Int32, ColumnData::Int32(c)) => {
            for _ in 0..n {
                c.push(i32::try_from(unzigzag(get_varint(v, pos)?)).ok()?);
            }
        }
        (ScalarType::Int64, ColumnData::Int64(c))
        | (ScalarType::Timestamp, ColumnData::Timestamp(c)) => {
            for _ in 0..n {
                c.push(unzigzag(get_varint(v, pos)?));
            }
        }
        (ScalarType::Float32, ColumnData::Float32(c)) => {
            let b = take(v, pos, n.checked_mul(4)?)?;
            c.extend(
                b.chunks_exact(4)
                    .map(|x| f32::from_le_bytes([x[0], x[1], x[2], x[3]])),
            );
        }
        (ScalarType::Float64, ColumnData::Float64(c)) => {
            let b = take(v, pos, n.checked_mul(8)?)?;
            c.extend(
                b.chunks_exact(8)
                    .map(|x| f64::from_le_bytes([x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7]])),
            );
        }
        (ScalarType::String | ScalarType::Bytes, ColumnData::String(c) | ColumnData::Bytes(c)) => {
            for _ in 0..n {
                let len = usize::try_from(get_varint(v, pos)?).ok()?;
                c.push(take(v, pos, len)?);
            }
        }
        _ => return None,
    }
    Some(())
}
