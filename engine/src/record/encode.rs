//! Writing records: one value's bytes, a whole record from its cells, and last-write-wins
//! for one write of a feature. The format itself is described in the parent module.

use super::*;

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
