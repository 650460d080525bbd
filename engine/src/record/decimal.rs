//! Decimal coding of scalar float values: a lossless transform of a record for the
//! compression layer (`crate::pack`, method "decimal").
//!
//! Tabular features are full of floats that are short decimals: prices in cents, rates
//! rounded to a few digits, zeros. Stored as IEEE bits they take 4 or 8 bytes of mantissa
//! noise that no general-purpose compressor can shrink; written as the integer `m` and digit
//! count `k` with `x == m / 10^k` they take one to three bytes, and decoding is a division.
//!
//! ```text
//! transformed record = the record's head (flags .. timestamps, unchanged)
//!                      float bitmap: ceil(f / 8) bytes, f = scalar float32/float64 features
//!                        among the record's first nfeat; bit j = the j-th one is coded
//!                      values in schema order, as in the record, except that a coded float
//!                        is varint((zigzag(m) << 3) | k), k in 0..=7
//! ```
//!
//! A value is coded only if decoding gives back exactly its bits (so -0.0, NaN, infinities and
//! floats that are not short decimals stay raw); decoding computes `m as f64 / 10^k` (then
//! rounds to f32 for float32 features), with `|m| <= 2^53`.

use super::{
    bit, parse_head, set_bit, simple_head, step, Cell, CellState, Layout, Malformed, Skip, NO_FLOAT,
};
use crate::encoding::{get_varint, put_varint, skip_varint, unzigzag, zigzag};
use crate::value::{ScalarType, ValueType};

const POW10: [f64; 8] = [1.0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7];
/// Largest |m|: every integer up to it is an exact f64.
const MAX_MANTISSA: f64 = 9_007_199_254_740_992.0;

/// The width of feature `i`'s value if it is a scalar float.
#[inline]
fn float_width(layout: &Layout, i: usize) -> Option<usize> {
    if layout.float_slot[i] == NO_FLOAT {
        return None;
    }
    match layout.types[i] {
        ValueType::Scalar(ScalarType::Float32) => Some(4),
        _ => Some(8),
    }
}

fn decode(code: u64, width: usize) -> Option<[u8; 8]> {
    let k = (code & 7) as usize;
    let m = unzigzag(code >> 3) as f64;
    if m.abs() > MAX_MANTISSA {
        return None;
    }
    let x = m / POW10[k];
    let mut out = [0u8; 8];
    if width == 4 {
        out[..4].copy_from_slice(&(x as f32).to_le_bytes());
    } else {
        out.copy_from_slice(&x.to_le_bytes());
    }
    Some(out)
}

/// Writes the float coded by varint `v` into row `row` of a float32 or float64 column.
pub(crate) fn decode_into(
    v: &[u8],
    col: &mut crate::value::ColumnData,
    row: usize,
) -> Result<(), Malformed> {
    use crate::value::ColumnData;
    let mut pos = 0;
    let code = get_varint(v, &mut pos).ok_or(Malformed("truncated value"))?;
    let width = match col {
        ColumnData::Float32(_) => 4,
        ColumnData::Float64(_) => 8,
        _ => return Err(Malformed("column does not match the feature type")),
    };
    let b = decode(code, width).ok_or(Malformed("decimal out of range"))?;
    match col {
        ColumnData::Float32(c) => c[row] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        ColumnData::Float64(c) => c[row] = f64::from_le_bytes(b),
        _ => {}
    }
    Ok(())
}

/// The code of the float whose little-endian bytes are `raw`, if it is a short decimal.
fn encode(raw: &[u8]) -> Option<u64> {
    let x = match raw.len() {
        4 => f64::from(f32::from_le_bytes(raw.try_into().ok()?)),
        8 => f64::from_le_bytes(raw.try_into().ok()?),
        _ => return None,
    };
    if !x.is_finite() {
        return None;
    }
    for (k, p) in POW10.iter().enumerate() {
        let m = (x * p).round();
        if m.abs() > MAX_MANTISSA {
            return None;
        }
        let code = (zigzag(m as i64) << 3) | k as u64;
        if decode(code, raw.len()).is_some_and(|d| d[..raw.len()] == *raw) {
            return Some(code);
        }
    }
    None
}

/// Appends the transformed form of plain record `rec` to `out`. Returns how many floats were
/// coded (0: the transform gains nothing; the caller keeps the record plain).
pub(crate) fn decimal_pack(
    layout: &Layout,
    rec: &[u8],
    cells: &mut Vec<Cell>,
    out: &mut Vec<u8>,
) -> Result<usize, Malformed> {
    let head = parse_head(layout, rec, cells)?;
    out.extend_from_slice(&rec[..head.values]);
    let floats = layout.floats_before[head.nfeat] as usize;
    let bitmap_at = out.len();
    out.resize(bitmap_at + floats.div_ceil(8), 0);
    let (mut pos, mut j, mut coded) = (head.values, 0, 0);
    for (i, cell) in cells.iter().enumerate().take(head.nfeat) {
        let width = float_width(layout, i);
        if cell.state == CellState::Present {
            let start = pos;
            step(layout, i, rec, &mut pos)?;
            let value = &rec[start..pos];
            // Coded only when that is shorter than the raw bytes.
            match width
                .and_then(|_| encode(value))
                .filter(|&c| crate::encoding::varint_bytes(c).1 < value.len())
            {
                Some(code) => {
                    set_bit(&mut out[bitmap_at..], j);
                    put_varint(out, code);
                    coded += 1;
                }
                None => out.extend_from_slice(value),
            }
        }
        if width.is_some() {
            j += 1;
        }
    }
    if pos != rec.len() {
        return Err(Malformed("trailing bytes after the last value"));
    }
    Ok(coded)
}

/// Writes the plain record of transformed record `body` into `out` (cleared first), refusing
/// to produce more than `bound` bytes.
pub(crate) fn decimal_unpack(
    layout: &Layout,
    body: &[u8],
    cells: &mut Vec<Cell>,
    bound: usize,
    out: &mut Vec<u8>,
) -> Result<(), Malformed> {
    out.clear();
    if let Some(done) = unpack_simple(layout, body, bound, out) {
        return done;
    }
    let head = parse_head(layout, body, cells)?;
    out.extend_from_slice(&body[..head.values]);
    let floats = layout.floats_before[head.nfeat] as usize;
    let mut pos = head.values;
    let bitmap = body
        .get(pos..pos + floats.div_ceil(8))
        .ok_or(Malformed("truncated float bitmap"))?;
    pos += bitmap.len();
    let mut j = 0;
    for (i, cell) in cells.iter().enumerate().take(head.nfeat) {
        let width = float_width(layout, i);
        if cell.state == CellState::Present {
            match width {
                Some(w) if bit(bitmap, j) => {
                    let code = get_varint(body, &mut pos).ok_or(Malformed("truncated value"))?;
                    let bytes = decode(code, w).ok_or(Malformed("decimal out of range"))?;
                    out.extend_from_slice(&bytes[..w]);
                }
                _ => {
                    let start = pos;
                    step(layout, i, body, &mut pos)?;
                    out.extend_from_slice(&body[start..pos]);
                }
            }
            if out.len() > bound {
                return Err(Malformed("decoded record exceeds its view's bound"));
            }
        }
        if width.is_some() {
            j += 1;
        }
    }
    if pos != body.len() {
        return Err(Malformed("trailing bytes after the last value"));
    }
    Ok(())
}

/// [`decimal_unpack`] for the common shape (every feature written, no nulls, one timestamp,
/// no created time), walking the values straight from the layout without parsing cells.
/// `None` when the record has another shape.
#[inline]
fn unpack_simple(
    layout: &Layout,
    body: &[u8],
    bound: usize,
    out: &mut Vec<u8>,
) -> Option<Result<(), Malformed>> {
    let head = match simple_head(layout, body, true) {
        Ok(Some(head)) => head,
        Ok(None) => return None,
        Err(e) => return Some(Err(e)),
    };
    Some((|| {
        let truncated = Malformed("truncated value");
        out.extend_from_slice(&body[..head.end]);
        let (bitmap, mut pos) = (head.coded, head.values);
        for i in 0..layout.len() {
            let start = pos;
            match layout.skip[i] {
                Skip::None => continue,
                Skip::Fixed(w) if layout.float_slot[i] != NO_FLOAT => {
                    if bit(bitmap, layout.float_slot[i] as usize) {
                        let code = get_varint(body, &mut pos).ok_or(truncated)?;
                        let bytes = decode(code, w).ok_or(Malformed("decimal out of range"))?;
                        out.extend_from_slice(&bytes[..w]);
                        if out.len() > bound {
                            return Err(Malformed("decoded record exceeds its view's bound"));
                        }
                        continue;
                    }
                    pos = pos
                        .checked_add(w)
                        .filter(|&e| e <= body.len())
                        .ok_or(truncated)?;
                }
                Skip::Varint => skip_varint(body, &mut pos).ok_or(truncated)?,
                _ => step(layout, i, body, &mut pos)?,
            }
            out.extend_from_slice(&body[start..pos]);
            if out.len() > bound {
                return Err(Malformed("decoded record exceeds its view's bound"));
            }
        }
        if pos != body.len() {
            return Err(Malformed("trailing bytes after the last value"));
        }
        Ok(())
    })())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_decimals_are_coded_and_everything_round_trips_exactly() {
        for x in [
            0.0f64,
            1.0,
            -1.0,
            18.42,
            135.86,
            0.001,
            1234567.1234567,
            1e15,
            -3.5,
        ] {
            let raw = x.to_le_bytes();
            let code = encode(&raw).unwrap_or_else(|| panic!("{x} is a short decimal"));
            assert_eq!(decode(code, 8).unwrap(), raw, "{x}");
        }
        for x in [0.0f32, 0.25, 0.16, -7.125, 33.12] {
            let raw = x.to_le_bytes();
            let code = encode(&raw).unwrap_or_else(|| panic!("{x} is a short decimal"));
            assert_eq!(decode(code, 4).unwrap()[..4], raw, "{x}");
        }
        for x in [
            -0.0f64,
            f64::NAN,
            f64::INFINITY,
            1.0 / 3.0,
            120.458_333_333_333_33,
            1e300,
        ] {
            assert_eq!(encode(&x.to_le_bytes()), None, "{x}");
        }
        // A code can only decode to what it says, even when hostile.
        for code in [u64::MAX, u64::MAX - 7, 1 << 60] {
            if let Some(d) = decode(code, 8) {
                assert!(f64::from_le_bytes(d).is_finite());
            }
        }
    }
}
