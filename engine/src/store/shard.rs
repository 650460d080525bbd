//! One shard: an append-mostly byte arena of entries plus a hash table of their offsets.
//!
//! ```text
//! entry = hdr varint (cap << 1 | dead) · klen varint · key · area[cap]
//! area  = rlen varint · record[rlen] · unused padding
//! ```
//!
//! Storing records inline in one arena (instead of a heap allocation per entity) is what keeps
//! an entity near its record's size: the table holds a 4-byte offset per entity. A record that
//! still fits its area is rewritten in place; one that grew moves to the end and the old entry
//! is marked dead. Dead bytes are compacted away once they are a large share of the arena.

use std::hash::BuildHasher;

use hashbrown::HashTable;

use crate::encoding::{get_varint, put_varint, varint_bytes};
use crate::record::Malformed;

/// Seed for the in-memory hash. Fixed so that shard placement is reproducible run to run.
const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

/// Hashes an encoded entity key.
#[inline]
pub(crate) fn hash_key(key: &[u8]) -> u64 {
    foldhash::fast::FixedState::with_seed(SEED).hash_one(key)
}

/// Shard of a key in a store with `mask + 1` shards (high bits: the table uses the low bits
/// and the top seven).
#[inline]
pub(crate) fn shard_of_key(key: &[u8], mask: usize) -> usize {
    shard_of(hash_key(key), mask)
}

/// Shard of a key hash.
#[inline]
pub(crate) fn shard_of(hash: u64, mask: usize) -> usize {
    (hash >> 40) as usize & mask
}

/// Largest arena a shard may grow to: offsets are u32.
const MAX_ARENA: usize = u32::MAX as usize;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    pub(crate) dead: bool,
    key_start: usize,
    key_end: usize,
    area_start: usize,
    cap: usize,
}

impl Entry {
    pub(crate) fn end(&self) -> usize {
        self.area_start + self.cap
    }
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Parses the entry header at `off`.
pub(crate) fn entry_at(arena: &[u8], off: usize) -> Result<Entry, Malformed> {
    let mut pos = off;
    let hdr = get_varint(arena, &mut pos).ok_or(Malformed("truncated entry header"))?;
    let klen = get_varint(arena, &mut pos).ok_or(Malformed("truncated key length"))? as usize;
    let key_start = pos;
    let key_end = key_start
        .checked_add(klen)
        .ok_or(Malformed("key length overflow"))?;
    let cap = (hdr >> 1) as usize;
    let end = key_end
        .checked_add(cap)
        .ok_or(Malformed("entry size overflow"))?;
    if end > arena.len() {
        return Err(Malformed("entry runs past the arena"));
    }
    Ok(Entry {
        dead: hdr & 1 == 1,
        key_start,
        key_end,
        area_start: key_end,
        cap,
    })
}

fn key_of(arena: &[u8], off: u32) -> &[u8] {
    match entry_at(arena, off as usize) {
        Ok(e) => &arena[e.key_start..e.key_end],
        Err(_) => &[],
    }
}

#[derive(Debug, Default)]
pub(crate) struct Shard {
    table: HashTable<u32>,
    arena: Vec<u8>,
    live_bytes: usize,
    dead_bytes: usize,
    /// Where the reclaimer resumes its walk of the arena.
    pub(crate) cursor: usize,
}

impl Shard {
    pub(crate) fn entities(&self) -> usize {
        self.table.len()
    }

    /// Bytes this shard holds on the heap: the arena and the table.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.arena.capacity() + self.table.capacity() * (std::mem::size_of::<u32>() + 1)
    }

    pub(crate) fn arena(&self) -> &[u8] {
        &self.arena
    }

    /// Offset of the live entry for `key`.
    #[inline]
    pub(crate) fn find(&self, hash: u64, key: &[u8]) -> Option<usize> {
        let arena = &self.arena;
        self.table
            .find(hash, |&off| key_of(arena, off) == key)
            .map(|&off| off as usize)
    }

    /// The record stored in the entry at `off`.
    #[inline]
    pub(crate) fn record(&self, off: usize) -> Result<&[u8], Malformed> {
        let e = entry_at(&self.arena, off)?;
        self.record_of(&e)
    }

    pub(crate) fn record_of(&self, e: &Entry) -> Result<&[u8], Malformed> {
        let mut pos = e.area_start;
        let rlen = get_varint(&self.arena, &mut pos).ok_or(Malformed("truncated record length"))?;
        let end = pos
            .checked_add(rlen as usize)
            .filter(|&end| end <= e.end())
            .ok_or(Malformed("record runs past its entry"))?;
        Ok(&self.arena[pos..end])
    }

    /// Every live `(key, record)` in arena order.
    pub(crate) fn live_entries(
        &self,
    ) -> impl Iterator<Item = Result<(&[u8], &[u8]), Malformed>> + '_ {
        let mut pos = 0;
        std::iter::from_fn(move || loop {
            if pos >= self.arena.len() {
                return None;
            }
            let e = match entry_at(&self.arena, pos) {
                Ok(e) => e,
                Err(m) => {
                    pos = self.arena.len();
                    return Some(Err(m));
                }
            };
            pos = e.end();
            if !e.dead {
                return Some(self.record_of(&e).map(|r| (self.key_at(&e), r)));
            }
        })
    }

    pub(crate) fn key_at(&self, e: &Entry) -> &[u8] {
        &self.arena[e.key_start..e.key_end]
    }

    /// Stores `rec` as the record of `key`, in place when `existing` has room.
    pub(crate) fn upsert(
        &mut self,
        hash: u64,
        key: &[u8],
        existing: Option<usize>,
        rec: &[u8],
    ) -> Result<(), Malformed> {
        let need = varint_len(rec.len() as u64) + rec.len();
        if let Some(off) = existing {
            let e = entry_at(&self.arena, off)?;
            if need <= e.cap {
                let (len, n) = varint_bytes(rec.len() as u64);
                self.arena[e.area_start..e.area_start + n].copy_from_slice(&len[..n]);
                self.arena[e.area_start + n..e.area_start + need].copy_from_slice(rec);
                return Ok(());
            }
        }
        let new_off = self.append(key, rec)?;
        match existing {
            Some(off) => {
                self.kill(off)?;
                if let Some(slot) = self.table.find_mut(hash, |&o| o as usize == off) {
                    *slot = new_off;
                }
            }
            None => {
                let arena = &self.arena;
                self.table
                    .insert_unique(hash, new_off, |&o| hash_key(key_of(arena, o)));
            }
        }
        Ok(())
    }

    /// Drops `key`'s entry.
    pub(crate) fn remove(&mut self, hash: u64, off: usize) -> Result<(), Malformed> {
        if let Ok(entry) = self.table.find_entry(hash, |&o| o as usize == off) {
            entry.remove();
        }
        self.kill(off)
    }

    fn kill(&mut self, off: usize) -> Result<(), Malformed> {
        let e = entry_at(&self.arena, off)?;
        let size = e.end() - off;
        // Setting the dead bit never changes the varint's width: it is the lowest bit.
        let (hdr, n) = varint_bytes(((e.cap as u64) << 1) | 1);
        self.arena[off..off + n].copy_from_slice(&hdr[..n]);
        self.live_bytes -= size;
        self.dead_bytes += size;
        Ok(())
    }

    fn append(&mut self, key: &[u8], rec: &[u8]) -> Result<u32, Malformed> {
        let cap = varint_len(rec.len() as u64) + rec.len();
        let size = varint_len((cap as u64) << 1) + varint_len(key.len() as u64) + key.len() + cap;
        let off = self.arena.len();
        if off + size > MAX_ARENA {
            return Err(Malformed("shard arena is full (4 GiB); use more shards"));
        }
        if self.arena.capacity() - off < size {
            // Grow by a quarter rather than doubling: the arena is most of the store's memory,
            // and doubling would leave up to half of it unused.
            let extra = size.max(off / 4).max(4 * 1024).min(MAX_ARENA - off);
            self.arena.reserve_exact(extra);
        }
        put_varint(&mut self.arena, (cap as u64) << 1);
        put_varint(&mut self.arena, key.len() as u64);
        self.arena.extend_from_slice(key);
        put_varint(&mut self.arena, rec.len() as u64);
        self.arena.extend_from_slice(rec);
        self.live_bytes += size;
        Ok(off as u32)
    }

    /// Rewrites the arena without dead entries when they waste more than they are worth.
    /// Returns the bytes freed.
    pub(crate) fn maybe_compact(&mut self) -> usize {
        if self.dead_bytes < 4 * 1024 || self.dead_bytes < self.live_bytes / 2 {
            return 0;
        }
        self.compact()
    }

    pub(crate) fn compact(&mut self) -> usize {
        let before = self.arena.capacity();
        let mut fresh = Vec::with_capacity(self.live_bytes + self.live_bytes / 16);
        let old = std::mem::take(&mut self.arena);
        for off in self.table.iter_mut() {
            if let Ok(e) = entry_at(&old, *off as usize) {
                let start = *off as usize;
                *off = fresh.len() as u32;
                fresh.extend_from_slice(&old[start..e.end()]);
            }
        }
        self.live_bytes = fresh.len();
        self.dead_bytes = 0;
        self.cursor = 0;
        self.arena = fresh;
        let table_before = self.table.capacity();
        if self.table.len() < table_before / 4 {
            let arena = &self.arena;
            self.table
                .shrink_to(self.table.len(), |&o| hash_key(key_of(arena, o)));
        }
        let table_freed = table_before.saturating_sub(self.table.capacity()) * 5;
        before.saturating_sub(self.arena.capacity()) + table_freed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsert_in_place_move_remove_and_compact() {
        let mut s = Shard::default();
        let keys: Vec<Vec<u8>> = (0..2000u32).map(|i| i.to_le_bytes().to_vec()).collect();
        for k in &keys {
            s.upsert(hash_key(k), k, None, &[1, 2, 3]).unwrap();
        }
        assert_eq!(s.entities(), 2000);
        // Shrinking stays in place; growing moves.
        for k in &keys {
            let h = hash_key(k);
            let off = s.find(h, k);
            s.upsert(h, k, off, &[9]).unwrap();
            assert_eq!(s.record(s.find(h, k).unwrap()).unwrap(), &[9]);
        }
        assert_eq!(s.dead_bytes, 0);
        let big = vec![7u8; 200];
        for k in &keys {
            let h = hash_key(k);
            let off = s.find(h, k);
            s.upsert(h, k, off, &big).unwrap();
        }
        assert!(s.dead_bytes > 0);
        for k in keys.iter().step_by(2) {
            let h = hash_key(k);
            let off = s.find(h, k).unwrap();
            s.remove(h, off).unwrap();
        }
        assert_eq!(s.entities(), 1000);
        assert!(s.maybe_compact() > 0 || s.dead_bytes == 0);
        s.compact();
        for (i, k) in keys.iter().enumerate() {
            let got = s
                .find(hash_key(k), k)
                .map(|o| s.record(o).unwrap().to_vec());
            assert_eq!(got, (i % 2 == 1).then(|| big.clone()));
        }
    }
}
