//! Moving records between layers: freezing the delta for a checkpoint, streaming the merged
//! frozen + base records into a new snapshot, installing it, and bulk-loading a base.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::shard::{hash_key, shard_of_key};
use super::{BaseRecords, Delta, Layers, RecordVisitor, Store, ViewStore};
use crate::pack::{is_packed, unpack, Dctx};
use crate::record::{self, Cell, CellState, Layout};
use crate::sync;
use crate::{EngineError, Result};

/// What building a checkpoint of one view produced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MergeStats {
    /// Entities emitted.
    pub entities: u64,
    /// Expired values dropped.
    pub values_expired: u64,
    /// Newest event timestamp among the values emitted (`i64::MIN` if none).
    pub max_event_ts: i64,
}

/// The newest event timestamp of the written cells (`i64::MIN` if none).
fn newest(cells: &[Cell]) -> i64 {
    cells
        .iter()
        .filter(|c| c.state != CellState::Unwritten)
        .map(|c| c.ts)
        .max()
        .unwrap_or(i64::MIN)
}

/// Merges `b` into `a` per feature: the newer (event, created) wins, `a` on ties. Cells taken
/// from `b` are marked fresh so `record::encode` reads their bytes from `b`'s record.
fn merge_cells(a: &mut [Cell], b: &[Cell]) {
    for (x, y) in a.iter_mut().zip(b) {
        if y.state != CellState::Unwritten
            && (x.state == CellState::Unwritten || (y.ts, y.created) > (x.ts, x.created))
        {
            *x = *y;
            x.fresh = true;
        }
    }
}

/// Drops values older than their TTL; returns how many.
fn expire(layout: &Layout, cells: &mut [Cell], now: i64) -> u64 {
    let mut n = 0;
    for (i, c) in cells.iter_mut().enumerate() {
        let ttl = layout.ttl_micros[i];
        if c.state != CellState::Unwritten && ttl > 0 && c.ts < now.saturating_sub(ttl) {
            c.state = CellState::Unwritten;
            n += 1;
        }
    }
    n
}

impl Store {
    fn view_store(&self, view: &str) -> Result<Arc<ViewStore>> {
        let catalog = self.catalog();
        catalog
            .registry
            .view_index(view)
            .map(|i| catalog.views[i].clone())
            .ok_or_else(|| EngineError::NotFound(format!("no feature view named {view:?}")))
    }

    fn swap_layers(view: &ViewStore, f: impl FnOnce(&Layers) -> Layers) {
        let mut guard = sync::write(&view.layers);
        let next = f(&guard);
        *guard = Arc::new(next);
    }

    /// Starts a checkpoint: every view's active delta becomes frozen and new writes go to a
    /// fresh one. Fails if a checkpoint is already in progress.
    pub(crate) fn freeze_all(&self) -> Result<()> {
        let catalog = self.catalog();
        if catalog.views.iter().any(|v| v.layers().frozen.is_some()) {
            return Err(EngineError::InvalidArgument(
                "a checkpoint is already in progress".into(),
            ));
        }
        let shards = self.shard_mask + 1;
        for v in &catalog.views {
            Self::swap_layers(v, |l| Layers {
                active: Arc::new(Delta::new(shards)),
                frozen: Some(l.active.clone()),
                base: l.base.clone(),
            });
        }
        Ok(())
    }

    /// Streams the frozen delta merged with the base of `view` as `(key, record)` pairs, values
    /// expired at `now` dropped and entities left empty skipped.
    pub(crate) fn merged_records(
        &self,
        view: &str,
        now: i64,
        emit: &mut RecordVisitor<'_>,
    ) -> Result<MergeStats> {
        let vs = self.view_store(view)?;
        let layers = vs.layers();
        let layout = &vs.layout;
        let mut stats = MergeStats {
            max_event_ts: i64::MIN,
            ..MergeStats::default()
        };
        let (mut a, mut b, mut encoded) = (Vec::new(), Vec::new(), Vec::new());
        // Base records may be compressed: they are emitted plain, for the new snapshot's
        // writer to compress with its own dictionary.
        let codec = layers.base.as_ref().and_then(|b| b.codec());
        let (mut dctx, mut plain) = (Dctx::default(), Vec::new());
        if let Some(frozen) = &layers.frozen {
            for lock in frozen.shards.iter() {
                let shard = sync::read(lock);
                for entry in shard.live_entries() {
                    let (key, rec) = entry.map_err(|m| vs.corrupt(m))?;
                    record::parse(layout, rec, &mut a).map_err(|m| vs.corrupt(m))?;
                    let base_rec = match &layers.base {
                        Some(base) => match base.record(key)? {
                            Some(r) if is_packed(r) => Some(
                                unpack(codec, r, Some(layout), &mut dctx, &mut plain)
                                    .map_err(|m| vs.corrupt(m))?,
                            ),
                            other => other,
                        },
                        None => None,
                    };
                    if let Some(br) = base_rec {
                        record::parse(layout, br, &mut b).map_err(|m| vs.corrupt(m))?;
                        merge_cells(&mut a, &b);
                    }
                    stats.values_expired += expire(layout, &mut a, now);
                    if a.iter().all(|c| c.state == CellState::Unwritten) {
                        continue;
                    }
                    record::encode(layout, &a, rec, base_rec.unwrap_or(&[]), &mut encoded);
                    emit(key, &encoded)?;
                    stats.entities += 1;
                    stats.max_event_ts = stats.max_event_ts.max(newest(&a));
                }
            }
        }
        if let Some(base) = &layers.base {
            let mask = self.shard_mask;
            base.for_each(&mut |key, rec| {
                if let Some(frozen) = &layers.frozen {
                    let shard = sync::read(&frozen.shards[shard_of_key(key, mask)]);
                    if shard.find(hash_key(key), key).is_some() {
                        return Ok(());
                    }
                }
                let rec = if is_packed(rec) {
                    unpack(codec, rec, Some(layout), &mut dctx, &mut plain)
                        .map_err(|m| vs.corrupt(m))?
                } else {
                    rec
                };
                record::parse(layout, rec, &mut a).map_err(|m| vs.corrupt(m))?;
                let expired = expire(layout, &mut a, now);
                stats.values_expired += expired;
                if a.iter().all(|c| c.state == CellState::Unwritten) {
                    return Ok(());
                }
                stats.entities += 1;
                stats.max_event_ts = stats.max_event_ts.max(newest(&a));
                if expired == 0 {
                    return emit(key, rec);
                }
                record::encode(layout, &a, rec, &[], &mut encoded);
                emit(key, &encoded)
            })?;
        }
        Ok(stats)
    }

    /// Finishes a checkpoint of `view`: `base` (the snapshot just written) replaces both the
    /// old base and the frozen delta.
    pub(crate) fn install_checkpoint(
        &self,
        view: &str,
        base: Option<Arc<dyn BaseRecords>>,
    ) -> Result<()> {
        let vs = self.view_store(view)?;
        if let Some(ts) = base.as_ref().and_then(|b| b.max_event_ts()) {
            vs.newest_event_ts.fetch_max(ts, Ordering::Relaxed);
        }
        Self::swap_layers(&vs, |l| Layers {
            active: l.active.clone(),
            frozen: None,
            base,
        });
        Ok(())
    }

    /// Abandons a checkpoint: folds every frozen delta back into its active delta.
    pub(crate) fn thaw_all(&self) -> Result<()> {
        let catalog = self.catalog();
        for vs in &catalog.views {
            let layers = vs.layers();
            let Some(frozen) = &layers.frozen else {
                continue;
            };
            let (mut a, mut b, mut encoded) = (Vec::new(), Vec::new(), Vec::new());
            for (s, lock) in frozen.shards.iter().enumerate() {
                let old = sync::read(lock);
                let mut active = sync::write(&layers.active.shards[s]);
                for entry in old.live_entries() {
                    let (key, rec) = entry.map_err(|m| vs.corrupt(m))?;
                    let h = hash_key(key);
                    let existing = active.find(h, key);
                    match existing {
                        Some(off) => {
                            let cur = active.record(off).map_err(|m| vs.corrupt(m))?;
                            record::parse(&vs.layout, cur, &mut a).map_err(|m| vs.corrupt(m))?;
                            record::parse(&vs.layout, rec, &mut b).map_err(|m| vs.corrupt(m))?;
                            merge_cells(&mut a, &b);
                            record::encode(&vs.layout, &a, cur, rec, &mut encoded);
                        }
                        None => {
                            encoded.clear();
                            encoded.extend_from_slice(rec);
                        }
                    }
                    active
                        .upsert(h, key, existing, &encoded)
                        .map_err(|m| EngineError::CapacityExceeded(m.0.to_string()))?;
                }
            }
            Self::swap_layers(vs, |l| Layers {
                active: l.active.clone(),
                frozen: None,
                base: l.base.clone(),
            });
        }
        Ok(())
    }

    /// Bulk load: `base` becomes the view's base while reads continue. Values in the delta
    /// that are newer than the snapshot's keep winning (last write wins by event time).
    pub(crate) fn replace_base(&self, view: &str, base: Arc<dyn BaseRecords>) -> Result<()> {
        let vs = self.view_store(view)?;
        // A loaded (or recovered) snapshot is as fresh as its newest value: the view's
        // freshness figures must not read "empty" until the next write.
        if let Some(ts) = base.max_event_ts() {
            vs.newest_event_ts.fetch_max(ts, Ordering::Relaxed);
        }
        Self::swap_layers(&vs, |l| Layers {
            active: l.active.clone(),
            frozen: l.frozen.clone(),
            base: Some(base),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Row;
    use crate::clock::ManualClock;
    use crate::key::KeyBatch;
    use crate::store::ReadOptions;
    use crate::testing::{int_key, store_of, HOUR as H, SMALL_SCHEMA, T0};
    use crate::value::{Status, Value};
    use std::collections::BTreeMap;

    /// An in-memory base for tests.
    #[derive(Debug, Default)]
    struct MapBase(BTreeMap<Vec<u8>, Vec<u8>>);

    impl BaseRecords for MapBase {
        fn record(&self, key: &[u8]) -> Result<Option<&[u8]>> {
            Ok(self.0.get(key).map(Vec::as_slice))
        }
        fn for_each(&self, f: &mut RecordVisitor<'_>) -> Result<()> {
            self.0.iter().try_for_each(|(k, v)| f(k, v))
        }
        fn entities(&self) -> u64 {
            self.0.len() as u64
        }
        fn bytes(&self) -> u64 {
            0
        }
    }

    fn key(s: &Store, id: i64) -> Vec<u8> {
        int_key(s.registry().entity("u").unwrap(), id)
    }

    fn read(s: &Store, ids: &[i64]) -> Vec<(Option<Value>, Option<Value>)> {
        let mut kb = KeyBatch::new();
        for id in ids {
            kb.push_encoded(&key(s, *id));
        }
        let cols = s
            .get_features(&["v:a", "v:b"], &kb, &ReadOptions::default())
            .unwrap();
        (0..ids.len())
            .map(|i| (cols[0].get(i), cols[1].get(i)))
            .collect()
    }

    fn checkpoint(s: &Store) -> MapBase {
        s.freeze_all().unwrap();
        let mut next = MapBase::default();
        s.merged_records("v", s.clock().now_micros(), &mut |k, r| {
            assert!(
                next.0.insert(k.to_vec(), r.to_vec()).is_none(),
                "key emitted twice"
            );
            Ok(())
        })
        .unwrap();
        next
    }

    #[test]
    fn checkpoint_merges_layers_and_reads_see_the_newest_value() {
        let clock = ManualClock::new(T0);
        let s = store_of(SMALL_SCHEMA, 4, &clock);
        let w = |id, ts, vals: Vec<(usize, Value)>| Row {
            key: key(&s, id),
            event_ts: ts,
            created_ts: None,
            values: vals,
        };
        s.write(
            "v",
            &[
                w(
                    1,
                    T0,
                    vec![(0, Value::Int64(1)), (1, Value::String("one".into()))],
                ),
                w(
                    2,
                    T0 - 2 * H,
                    vec![(0, Value::Int64(2)), (1, Value::String("two".into()))],
                ),
            ],
        )
        .unwrap();
        let base = checkpoint(&s);
        // Expired "a" of entity 2 was dropped; its "b" (no TTL) kept.
        assert_eq!(base.0.len(), 2);
        // Writes during the checkpoint go to the new active delta and are visible.
        s.write(
            "v",
            &[
                w(1, T0 + 1, vec![(1, Value::String("uno".into()))]),
                w(3, T0, vec![(0, Value::Int64(3))]),
            ],
        )
        .unwrap();
        // An older write arriving late must not beat the frozen value.
        s.write("v", &[w(1, T0 - 1, vec![(0, Value::Int64(-1))])])
            .unwrap();
        s.install_checkpoint("v", Some(Arc::new(base))).unwrap();
        let got = read(&s, &[1, 2, 3, 4]);
        assert_eq!(
            got[0],
            (Some(Value::Int64(1)), Some(Value::String("uno".into())))
        );
        assert_eq!(got[1], (None, Some(Value::String("two".into()))));
        assert_eq!(got[2], (Some(Value::Int64(3)), None));
        assert_eq!(got[3], (None, None));

        // A second checkpoint folds the active delta into a new base: same answers.
        let base2 = checkpoint(&s);
        s.install_checkpoint("v", Some(Arc::new(base2))).unwrap();
        assert_eq!(read(&s, &[1, 2, 3, 4]), got);
        let st = &s.stats()[0];
        assert_eq!((st.entities, st.base_entities), (0, 3));
    }

    #[test]
    fn thaw_restores_the_frozen_delta() {
        let clock = ManualClock::new(T0);
        let s = store_of(SMALL_SCHEMA, 2, &clock);
        let w = |id, ts, v: i64| Row {
            key: key(&s, id),
            event_ts: ts,
            created_ts: None,
            values: vec![(0, Value::Int64(v))],
        };
        s.write("v", &[w(1, T0, 10), w(2, T0, 20)]).unwrap();
        s.freeze_all().unwrap();
        assert!(s.freeze_all().is_err(), "one checkpoint at a time");
        s.write("v", &[w(1, T0 - 5, 11), w(2, T0 + 5, 21)]).unwrap();
        s.thaw_all().unwrap();
        let got = read(&s, &[1, 2]);
        assert_eq!(
            got[0].0,
            Some(Value::Int64(10)),
            "older late write loses after thaw"
        );
        assert_eq!(got[1].0, Some(Value::Int64(21)));
        assert_eq!(s.stats()[0].entities, 2);
        let mut kb = KeyBatch::new();
        kb.push_encoded(&key(&s, 1));
        let cols = s
            .get_features(&["v:a"], &kb, &ReadOptions::default())
            .unwrap();
        assert_eq!(cols[0].statuses[0], Status::Present);
    }
}
