//! Background reclamation of expired values.
//!
//! Reads never depend on this: TTL is checked on every read. The reclaimer only gives memory
//! back, a bounded number of entries per lock acquisition so no shard pauses for long.

use std::sync::atomic::Ordering;

use super::shard::{entry_at, hash_key};
use super::{Store, ViewStore};
use crate::record::{self, CellState};
use crate::sync;

/// What a reclaim pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReclaimStats {
    /// Entries examined.
    pub scanned: u64,
    /// Expired feature values dropped.
    pub values_expired: u64,
    /// Entities dropped because nothing unexpired was left.
    pub entities_removed: u64,
    /// Heap bytes returned by compaction.
    pub bytes_freed: u64,
}

impl ReclaimStats {
    pub(crate) fn add(&mut self, o: ReclaimStats) {
        self.scanned += o.scanned;
        self.values_expired += o.values_expired;
        self.entities_removed += o.entities_removed;
        self.bytes_freed += o.bytes_freed;
    }
}

impl Store {
    /// Reclaims up to `budget` entries of the next shard in round-robin order.
    pub fn reclaim_step(&self, budget: usize) -> ReclaimStats {
        let catalog = self.catalog();
        let shards = self.shard_mask + 1;
        let slots = catalog.views.len() * shards;
        if slots == 0 {
            return ReclaimStats::default();
        }
        let slot = self.reclaim_next.fetch_add(1, Ordering::Relaxed) % slots;
        let now = self.clock.now_micros();
        reclaim_shard(&catalog.views[slot / shards], slot % shards, now, budget)
    }

    /// Reclaims every shard of every view completely (tests, checkpoints).
    pub fn reclaim_all(&self) -> ReclaimStats {
        let catalog = self.catalog();
        let now = self.clock.now_micros();
        let mut total = ReclaimStats::default();
        for v in &catalog.views {
            for s in 0..=self.shard_mask {
                sync::write(&v.layers().active.shards[s]).cursor = 0;
                total.add(reclaim_shard(v, s, now, usize::MAX));
            }
        }
        total
    }
}

fn reclaim_shard(view: &ViewStore, s: usize, now: i64, budget: usize) -> ReclaimStats {
    let mut stats = ReclaimStats::default();
    let layers = view.layers();
    let mut shard = sync::write(&layers.active.shards[s]);
    let mut pos = shard.cursor;
    let mut cells = Vec::new();
    let mut encoded = Vec::new();
    while (stats.scanned as usize) < budget && pos < shard.arena().len() {
        let Ok(e) = entry_at(shard.arena(), pos) else {
            // Only a bug could get here; restart the walk rather than loop on it.
            pos = 0;
            break;
        };
        let next = e.end();
        stats.scanned += 1;
        if !e.dead {
            let Ok(rec) = shard.record_of(&e) else {
                pos = next;
                continue;
            };
            if record::parse(&view.layout, rec, &mut cells).is_err() {
                pos = next;
                continue;
            }
            let mut expired = 0;
            for (i, c) in cells.iter_mut().enumerate() {
                let ttl = view.layout.ttl_micros[i];
                if c.state != CellState::Unwritten && ttl > 0 && c.ts < now.saturating_sub(ttl) {
                    c.state = CellState::Unwritten;
                    expired += 1;
                }
            }
            if expired > 0 {
                stats.values_expired += expired;
                let key = shard.key_at(&e).to_vec();
                let h = hash_key(&key);
                if cells.iter().all(|c| c.state == CellState::Unwritten) {
                    if shard.remove(h, pos).is_ok() {
                        stats.entities_removed += 1;
                    }
                } else {
                    record::encode(&view.layout, &cells, rec, &[], &mut encoded);
                    // A rewrite never grows enough to fail unless the arena is full; then
                    // the old, longer record simply stays (still filtered on read).
                    let _ = shard.upsert(h, &key, Some(pos), &encoded);
                }
            }
        }
        pos = next;
    }
    if pos >= shard.arena().len() {
        shard.cursor = 0;
        stats.bytes_freed += shard.maybe_compact() as u64;
    } else {
        shard.cursor = pos;
    }
    stats
}
