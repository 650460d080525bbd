//! Entity rows as *slots* (sorted by key, then time) and the lookup from a history row to the
//! one slot it can improve.
//!
//! The scan is bound by memory latency, not decoding: every history row costs a hash probe
//! and a visit to its key's slots, both random accesses into tables far larger than the
//! caches. So a slot keeps its time and its best candidate in one record (one cache line
//! visit instead of two), a single `int64` key maps straight to its slot range through an
//! open-addressing table (no dense-id hop), and rows are looked up in stages of a few hundred
//! — first touch every row's table bucket, then every row's slots, then update — so the CPU
//! overlaps the cache misses of many rows instead of waiting for each in turn.

use arrow_array::{Array, Int64Array};
use quiver_engine::Entity;

use crate::history::created_at;
use crate::keys::KeyColumns;

/// The best history row seen for a slot, compared as (event, created, position).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Cand {
    pub(super) ts: i64,
    pub(super) created: i64,
    /// Dataset position + 1; 0 = no row.
    pub(super) seq: u64,
}

pub(super) const NONE: Cand = Cand {
    ts: i64::MIN,
    created: i64::MIN,
    seq: 0,
};

/// One entity row's time and the best history row for it found so far.
#[derive(Debug, Clone, Copy)]
pub(super) struct Slot {
    pub(super) t: i64,
    pub(super) best: Cand,
}

type ByteMap = hashbrown::HashMap<Box<[u8]>, (u32, u32), foldhash::fast::RandomState>;

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    key: i64,
    start: u32,
    /// Slots of the key; 0 marks an empty bucket (every stored key has at least one).
    len: u32,
}

/// Open addressing with linear probing, at most half full, Fibonacci hashing.
#[derive(Debug)]
struct IntTable {
    entries: Vec<Entry>,
    shift: u32,
}

impl IntTable {
    fn new(keys: usize) -> Self {
        let cap = (keys * 2).next_power_of_two().max(16);
        Self {
            entries: vec![Entry::default(); cap],
            shift: 64 - cap.trailing_zeros(),
        }
    }

    fn home(&self, key: i64) -> usize {
        ((key as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    /// Inserts a key not yet present.
    fn insert(&mut self, key: i64, start: u32, len: u32) {
        let mask = self.entries.len() - 1;
        let mut i = self.home(key);
        while self.entries[i].len != 0 {
            i = (i + 1) & mask;
        }
        self.entries[i] = Entry { key, start, len };
    }

    fn get_from(&self, mut i: usize, key: i64) -> Option<(u32, u32)> {
        let mask = self.entries.len() - 1;
        loop {
            let e = self.entries[i];
            if e.len == 0 {
                return None;
            }
            if e.key == key {
                return Some((e.start, e.len));
            }
            i = (i + 1) & mask;
        }
    }
}

#[derive(Debug)]
enum Lookup {
    Int(IntTable),
    Bytes(ByteMap),
}

/// Rows looked up per stage.
const STAGE: usize = 256;

/// The entity rows of one chunk as slots, and the key → slot range lookup.
#[derive(Debug)]
pub(super) struct Slots {
    /// The entity row of each slot.
    pub(super) order: Vec<u32>,
    /// Each slot's time, with no candidate yet (each thread starts from a copy).
    pub(super) template: Vec<Slot>,
    /// `(first slot, slot count)` of each distinct key.
    pub(super) groups: Vec<(u32, u32)>,
    lookup: Lookup,
    /// Smallest and largest entity time among the slots.
    pub(super) t_range: (i64, i64),
}

impl Slots {
    /// Slots for the entity rows that have a key and a time.
    pub(super) fn build(entity: &Entity, keys: &KeyColumns, t: &Int64Array) -> Self {
        let n = t.len();
        let (order, lookup, groups) = if let Some(a) = keys.single_int() {
            let mut rows: Vec<(i64, i64, u32)> = (0..n)
                .filter(|&j| a.is_valid(j) && t.is_valid(j))
                .map(|j| (a.value(j), t.value(j), j as u32))
                .collect();
            rows.sort_unstable();
            let mut groups = Vec::new();
            let mut s = 0;
            while s < rows.len() {
                let e = s + rows[s..].partition_point(|r| r.0 == rows[s].0);
                groups.push((s as u32, (e - s) as u32));
                s = e;
            }
            let mut table = IntTable::new(groups.len());
            for &(start, len) in &groups {
                table.insert(rows[start as usize].0, start, len);
            }
            let order = rows.into_iter().map(|r| r.2).collect();
            (order, Lookup::Int(table), groups)
        } else {
            let mut ids = ByteMap::default();
            let mut kid = vec![u32::MAX; n];
            let mut buf = Vec::new();
            for (j, id) in kid.iter_mut().enumerate() {
                if t.is_null(j) || !keys.encode(entity, j, &mut buf) {
                    continue;
                }
                let next = ids.len() as u32;
                *id = match ids.get(buf.as_slice()) {
                    Some(&(k, _)) => k,
                    None => {
                        ids.insert(buf.as_slice().into(), (next, 0));
                        next
                    }
                };
            }
            let tv = t.values();
            let mut order: Vec<u32> = (0..n as u32)
                .filter(|&j| kid[j as usize] != u32::MAX)
                .collect();
            order.sort_unstable_by_key(|&j| (kid[j as usize], tv[j as usize]));
            let mut counts = vec![0u32; ids.len()];
            for &j in &order {
                counts[kid[j as usize] as usize] += 1;
            }
            let mut groups = Vec::with_capacity(ids.len());
            let mut start = 0;
            for c in counts {
                groups.push((start, c));
                start += c;
            }
            for v in ids.values_mut() {
                *v = groups[v.0 as usize];
            }
            (order, Lookup::Bytes(ids), groups)
        };
        let tv = t.values();
        let template: Vec<Slot> = order
            .iter()
            .map(|&j| Slot {
                t: tv[j as usize],
                best: NONE,
            })
            .collect();
        let t_range = template.iter().fold((i64::MAX, i64::MIN), |(lo, hi), s| {
            (lo.min(s.t), hi.max(s.t))
        });
        Self {
            order,
            template,
            groups,
            lookup,
            t_range,
        }
    }

    /// Offers every row of one history batch to its slot. `first_seq` is the dataset position
    /// + 1 of the batch's first row; rows outside `[lo, hi]` are skipped.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn offer_batch(
        &self,
        entity: &Entity,
        keys: &KeyColumns,
        ts: &Int64Array,
        created: Option<&Int64Array>,
        first_seq: u64,
        (lo, hi): (i64, i64),
        slots: &mut [Slot],
        buf: &mut Vec<u8>,
    ) {
        let cand = |r: usize| Cand {
            ts: ts.value(r),
            created: created_at(created, r),
            seq: first_seq + r as u64,
        };
        let in_range = |r: usize| ts.is_valid(r) && (lo..=hi).contains(&ts.value(r));
        match &self.lookup {
            Lookup::Int(table) => {
                let Some(a) = keys.single_int() else {
                    return;
                };
                let n = ts.len();
                let mut home = [0usize; STAGE];
                let mut found = [(0u32, 0u32); STAGE];
                let mut base = 0;
                while base < n {
                    let end = (base + STAGE).min(n);
                    // Stage 1: touch each row's bucket (independent loads overlap).
                    let mut sink = 0u64;
                    for r in base..end {
                        let h = table.home(a.value(r));
                        home[r - base] = h;
                        sink = sink.wrapping_add(table.entries[h].len as u64);
                    }
                    // Stage 2: probe (now cached) and touch each row's first slot.
                    for r in base..end {
                        let i = r - base;
                        found[i] = (0, 0);
                        if a.is_null(r) || !in_range(r) {
                            continue;
                        }
                        if let Some((s, l)) = table.get_from(home[i], a.value(r)) {
                            found[i] = (s, l);
                            sink = sink.wrapping_add(slots[s as usize].t as u64);
                        }
                    }
                    std::hint::black_box(sink);
                    // Stage 3: update.
                    for r in base..end {
                        let (s, l) = found[r - base];
                        if l != 0 {
                            offer(slots, s as usize, l as usize, cand(r));
                        }
                    }
                    base = end;
                }
            }
            Lookup::Bytes(map) => {
                for r in 0..ts.len() {
                    if !in_range(r) || !keys.encode(entity, r, buf) {
                        continue;
                    }
                    if let Some(&(s, l)) = map.get(buf.as_slice()) {
                        offer(slots, s as usize, l as usize, cand(r));
                    }
                }
            }
        }
    }
}

/// A history row can only matter to its key's slots with `t >= ts`, and it is enough to put it
/// in the first of them: the answer for a slot is the best over all slots up to it.
fn offer(slots: &mut [Slot], start: usize, len: usize, c: Cand) {
    let range = &mut slots[start..start + len];
    let s = range.partition_point(|x| x.t < c.ts);
    if let Some(slot) = range.get_mut(s) {
        if c > slot.best {
            slot.best = c;
        }
    }
}
