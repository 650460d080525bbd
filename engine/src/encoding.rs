//! Little building blocks shared by the record, key, WAL and snapshot encodings.

/// Appends `v` as an LEB128 varint.
#[inline]
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// `v` as an LEB128 varint in a stack buffer: the bytes and how many of them are used.
#[inline]
pub(crate) fn varint_bytes(mut v: u64) -> ([u8; 10], usize) {
    let mut buf = [0u8; 10];
    let mut n = 0;
    while v >= 0x80 {
        buf[n] = (v as u8) | 0x80;
        v >>= 7;
        n += 1;
    }
    buf[n] = v as u8;
    (buf, n + 1)
}

/// Reads an LEB128 varint at `*pos`, advancing it. `None` if truncated or longer than 10 bytes.
#[inline(always)]
pub(crate) fn get_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    // Most varints in records (lengths, small counts, zero-heavy counters) are one byte.
    if let Some(&b) = buf.get(*pos) {
        if b < 0x80 {
            *pos += 1;
            return Some(u64::from(b));
        }
    }
    get_varint_long(buf, pos)
}

#[inline(never)]
fn get_varint_long(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    let mut shift = 0u32;
    loop {
        let b = *buf.get(*pos)?;
        *pos += 1;
        if shift == 63 && b > 1 {
            return None;
        }
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
}

/// Skips one varint without decoding it.
#[inline(always)]
pub(crate) fn skip_varint(buf: &[u8], pos: &mut usize) -> Option<()> {
    let rest = buf.get(*pos..)?;
    let n = rest.iter().take(10).position(|&b| b < 0x80)?;
    *pos += n + 1;
    Some(())
}

/// Maps signed to unsigned so small magnitudes stay small.
#[inline]
pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Inverse of [`zigzag`].
#[inline]
pub(crate) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Reads `n` bytes at `*pos`, advancing it.
#[inline]
pub(crate) fn take<'a>(buf: &'a [u8], pos: &mut usize, n: usize) -> Option<&'a [u8]> {
    let end = pos.checked_add(n)?;
    let s = buf.get(*pos..end)?;
    *pos = end;
    Some(s)
}

/// Reads a varint length and then that many bytes.
#[inline]
pub(crate) fn take_prefixed<'a>(buf: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
    let n = usize::try_from(get_varint(buf, pos)?).ok()?;
    take(buf, pos, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_the_edges() {
        for v in [
            0u64,
            1,
            127,
            128,
            300,
            u32::MAX as u64,
            u64::MAX - 1,
            u64::MAX,
        ] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            let mut p = 0;
            assert_eq!(get_varint(&b, &mut p), Some(v));
            assert_eq!(p, b.len());
            let mut p = 0;
            skip_varint(&b, &mut p).unwrap();
            assert_eq!(p, b.len());
        }
        for v in [0i64, -1, 1, i64::MIN, i64::MAX] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
    }

    #[test]
    fn malformed_varints_are_refused() {
        let mut p = 0;
        assert_eq!(get_varint(&[0x80, 0x80], &mut p), None);
        let mut p = 0;
        assert_eq!(get_varint(&[0xff; 11], &mut p), None);
        let mut p = 0;
        assert_eq!(
            get_varint(
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02],
                &mut p
            ),
            None
        );
        let mut p = 0;
        assert!(skip_varint(&[0x80; 12], &mut p).is_none());
        let mut p = 0;
        assert!(take(&[1, 2], &mut p, usize::MAX).is_none());
    }
}
