//! Reading values out of a record: skipping to a feature, decoding one feature or the
//! record's simple form into a column. The format itself is described in the parent module.

use super::*;

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

/// Decodes the features a read wants straight from a record into its columns, in one pass
/// and without parsing into cells, when the record has the common shape: every feature of
/// the current schema written, no nulls, one timestamp, no created time. Returns `Ok(false)`
/// without touching anything when the record has another shape (use the general path).
///
/// With `decimal`, `rec` is the body of a decimal-coded record (see `decimal`): the same walk,
/// reading coded floats from their varints, which saves decoding the record back to plain
/// bytes and parsing it again.
///
/// `wanted` is `(feature, column)` sorted by feature; `min_ts[column]` is the oldest event
/// time still fresh for that column.
#[inline]
pub(crate) fn decode_simple(
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
