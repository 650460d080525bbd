//! The in-memory store: per view, N shards of entity records, last-write-wins writes and
//! batched multi-feature gets with per-feature TTL.
//!
//! A get hashes every key once, counting-sorts the keys by shard, then visits each shard once
//! under a read lock, decoding straight into the result's columns at each key's request
//! position. All per-key work reuses buffers owned by [`GetResult`]: nothing is allocated per
//! key.

mod layers;
mod reclaim;
mod shard;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use crate::batch::Row;
use crate::clock::{Clock, Micros};
use crate::key::{decode_key, KeyBatch, MAX_KEY_LEN};
use crate::pack::{self, Codec, CodecInfo};
use crate::record::{self, Cell, CellState, Layout, Malformed, NO_CREATED};
use crate::registry::{Entity, FeatureRef, Registry};
use crate::sync;
use crate::value::{FeatureColumn, Status, Value, ValueType};
use crate::{EngineError, Result};
use shard::{hash_key, shard_of, Shard};

/// Store tuning.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Shards per view; a power of two.
    pub shards: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self { shards: 64 }
    }
}

/// Options of one read.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOptions {
    /// A stricter bound than the features' TTLs, microseconds.
    pub max_age: Option<Micros>,
    /// Read as of this time instead of the store's clock.
    pub now: Option<Micros>,
    /// Most bytes of variable-length values (strings, bytes, list items) the read may gather
    /// across all its columns; past it the read stops with [`EngineError::CapacityExceeded`].
    /// Checked after every key, so a read overshoots by at most one entity's values.
    pub max_variable_bytes: Option<usize>,
}

/// Size and freshness of one view.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewStats {
    /// View name.
    pub view: String,
    /// Entities held in the in-memory delta.
    pub entities: u64,
    /// Heap bytes used by the in-memory delta.
    pub bytes: u64,
    /// Entities in the base snapshot.
    pub base_entities: u64,
    /// Size of the base snapshot file (memory-mapped, not heap).
    pub base_bytes: u64,
    /// Newest event timestamp written, microseconds (0 if none).
    pub newest_event_ts: Micros,
    /// How the base snapshot's records are compressed and the figures that decided it
    /// (`None` without a base, or for a base written before compression existed).
    pub compression: Option<CodecInfo>,
}

impl ViewStats {
    /// Heap memory per in-memory entity (0 when empty).
    pub fn bytes_per_entity(&self) -> f64 {
        if self.entities == 0 {
            0.0
        } else {
            self.bytes as f64 / self.entities as f64
        }
    }
}

/// A visitor of `(key, record)` pairs that may stop with an error.
pub(crate) type RecordVisitor<'a> = dyn FnMut(&[u8], &[u8]) -> Result<()> + 'a;

/// Records of a view that live outside the in-memory delta: an immutable snapshot.
pub(crate) trait BaseRecords: Send + Sync + std::fmt::Debug {
    /// The record stored for `key`, borrowed from the base.
    fn record(&self, key: &[u8]) -> Result<Option<&[u8]>>;
    /// Calls `f` with every `(key, record)` in the base.
    fn for_each(&self, f: &mut RecordVisitor<'_>) -> Result<()>;
    /// Number of entities in the base.
    fn entities(&self) -> u64;
    /// Bytes the base occupies (mapped, not heap).
    fn bytes(&self) -> u64;
    /// How its records are compressed (`None`: all plain).
    fn codec(&self) -> Option<&Codec> {
        None
    }
    /// The newest event timestamp in the base, if known.
    fn max_event_ts(&self) -> Option<Micros> {
        None
    }
    /// A hint that `record` is about to be called for each of `keys`: a base in slow memory
    /// starts loading them all at once, so their misses overlap.
    fn prefetch(&self, keys: &KeyBatch) {
        let _ = keys;
    }
}

/// One generation of in-memory records: N shards.
#[derive(Debug)]
pub(crate) struct Delta {
    shards: Box<[RwLock<Shard>]>,
}

impl Delta {
    fn new(shards: usize) -> Self {
        Self {
            shards: (0..shards).map(|_| RwLock::new(Shard::default())).collect(),
        }
    }
}

/// What a read consults, newest first: the active delta (takes writes), the frozen delta (being
/// checkpointed), the base snapshot.
#[derive(Debug)]
pub(crate) struct Layers {
    active: Arc<Delta>,
    frozen: Option<Arc<Delta>>,
    base: Option<Arc<dyn BaseRecords>>,
}

#[derive(Debug)]
struct ViewStore {
    name: String,
    entity: Entity,
    layout: Layout,
    layers: Arc<RwLock<Arc<Layers>>>,
    newest_event_ts: Arc<AtomicI64>,
}

impl ViewStore {
    fn layers(&self) -> Arc<Layers> {
        sync::read(&self.layers).clone()
    }

    fn corrupt(&self, m: Malformed) -> EngineError {
        EngineError::Corrupt {
            file: format!("memory (view {:?})", self.name),
            offset: 0,
            reason: m.0.to_string(),
        }
    }
}

#[derive(Debug)]
struct Catalog {
    registry: Arc<Registry>,
    views: Vec<Arc<ViewStore>>,
}

/// The sharded in-memory feature store.
#[derive(Debug)]
pub struct Store {
    catalog: RwLock<Arc<Catalog>>,
    clock: Arc<dyn Clock>,
    shard_mask: usize,
    /// Next (view, shard) slot the reclaimer visits.
    reclaim_next: std::sync::atomic::AtomicUsize,
}

/// A set of requested features resolved against one registry version.
#[derive(Debug, Clone)]
pub struct Selection {
    catalog: Arc<Catalog>,
    features: Vec<FeatureRef>,
    /// Distinct views in first-requested order, each with `(output column, feature index)`.
    groups: Vec<(usize, Vec<(usize, usize)>)>,
}

impl Selection {
    /// The entity every selected feature is keyed by.
    pub fn entity(&self) -> &Entity {
        &self.catalog.views[self.groups[0].0].entity
    }

    /// The registry the selection was resolved against.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.catalog.registry
    }

    /// The resolved features, in request order.
    pub fn features(&self) -> &[FeatureRef] {
        &self.features
    }

    /// Output names: `feature`, or `view__feature` with `full` names.
    pub fn names(&self, full: bool) -> Vec<String> {
        let views = self.catalog.registry.views();
        self.features
            .iter()
            .map(|r| {
                let v = &views[r.view];
                if full {
                    format!("{}__{}", v.name, v.features[r.feature].name)
                } else {
                    v.features[r.feature].name.clone()
                }
            })
            .collect()
    }

    /// The type of each selected feature.
    pub fn types(&self) -> Vec<ValueType> {
        let views = self.catalog.registry.views();
        self.features
            .iter()
            .map(|r| views[r.view].features[r.feature].ty)
            .collect()
    }
}

/// The result of a get, plus the scratch space that makes the next get allocation-free.
/// Reuse one per thread or connection.
#[derive(Debug, Default)]
pub struct GetResult {
    /// One column per requested feature, in request order.
    pub columns: Vec<FeatureColumn>,
    hashes: Vec<u64>,
    order: Vec<u32>,
    starts: Vec<u32>,
    next: Vec<u32>,
    wanted: Vec<(usize, usize)>,
    cells: [Vec<Cell>; 3],
    min_ts: Vec<i64>,
    /// Columns holding variable-length values, when the read is bounded.
    variable: Vec<usize>,
    /// Decompressed records of the key being decoded (one per source layer): reused, so
    /// reading compressed records allocates nothing per key.
    unpacked: [Vec<u8>; 3],
}

impl GetResult {
    /// An empty result.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stops a bounded read whose variable-length values have outgrown `limit`.
    fn check_variable_bytes(&self, limit: Option<usize>) -> Result<()> {
        let Some(limit) = limit else { return Ok(()) };
        let used: usize = self
            .variable
            .iter()
            .filter_map(|&c| self.columns[c].values.variable_bytes())
            .sum();
        if used > limit {
            return Err(EngineError::CapacityExceeded(format!(
                "the read gathered more than {limit} bytes of variable-length values"
            )));
        }
        Ok(())
    }
}

impl Store {
    /// A store for `registry`'s views.
    pub fn new(registry: Registry, config: StoreConfig, clock: Arc<dyn Clock>) -> Result<Self> {
        if !config.shards.is_power_of_two() || config.shards > 1 << 16 {
            return Err(EngineError::InvalidArgument(format!(
                "shards must be a power of two up to 65536, got {}",
                config.shards
            )));
        }
        let catalog = Self::build_catalog(Arc::new(registry), None, config.shards)?;
        Ok(Self {
            catalog: RwLock::new(Arc::new(catalog)),
            clock,
            shard_mask: config.shards - 1,
            reclaim_next: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    fn build_catalog(
        registry: Arc<Registry>,
        previous: Option<&Catalog>,
        shards: usize,
    ) -> Result<Catalog> {
        let mut views = Vec::with_capacity(registry.views().len());
        for v in registry.views() {
            let entity = registry.view_entity(v).cloned().ok_or_else(|| {
                EngineError::InvalidArgument(format!("view {:?} has no entity", v.name))
            })?;
            let old = previous.and_then(|p| p.views.iter().find(|o| o.name == v.name));
            views.push(Arc::new(ViewStore {
                name: v.name.clone(),
                entity,
                layout: Layout::new(v),
                layers: match old {
                    Some(o) => o.layers.clone(),
                    None => Arc::new(RwLock::new(Arc::new(Layers {
                        active: Arc::new(Delta::new(shards)),
                        frozen: None,
                        base: None,
                    }))),
                },
                newest_event_ts: match old {
                    Some(o) => o.newest_event_ts.clone(),
                    None => Arc::new(AtomicI64::new(0)),
                },
            }));
        }
        Ok(Catalog { registry, views })
    }

    fn catalog(&self) -> Arc<Catalog> {
        sync::read(&self.catalog).clone()
    }

    /// The current registry.
    pub fn registry(&self) -> Arc<Registry> {
        self.catalog().registry.clone()
    }

    /// Shards per view.
    pub fn shard_count(&self) -> usize {
        self.shard_mask + 1
    }

    /// The store's clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Replaces the registry with a compatible new version, live. Existing views keep their
    /// data; their features keep their stored order (see [`Registry::evolve`]).
    pub fn apply_registry(&self, next: Registry) -> Result<Arc<Registry>> {
        let mut guard = sync::write(&self.catalog);
        let merged = Arc::new(guard.registry.evolve(next)?);
        let catalog = Self::build_catalog(merged.clone(), Some(&guard), self.shard_mask + 1)?;
        *guard = Arc::new(catalog);
        Ok(merged)
    }

    /// Resolves `view:feature` references for [`Store::get`]. All features must belong to views
    /// of the same entity, since they are looked up with the same keys.
    pub fn select<S: AsRef<str>>(&self, refs: &[S]) -> Result<Selection> {
        let catalog = self.catalog();
        let mut features = Vec::with_capacity(refs.len());
        for r in refs {
            let fr = catalog
                .registry
                .resolve(r.as_ref())
                .map_err(|e| EngineError::NotFound(e.to_string()))?;
            features.push(fr);
        }
        Self::selection(catalog, features)
    }

    /// Like [`Store::select`] with already-resolved references against the current registry.
    pub fn select_refs(&self, features: Vec<FeatureRef>) -> Result<Selection> {
        let catalog = self.catalog();
        let n = catalog.views.len();
        if let Some(bad) = features
            .iter()
            .find(|f| f.view >= n || f.feature >= catalog.views[f.view].layout.len())
        {
            return Err(EngineError::NotFound(format!("no feature {bad}")));
        }
        Self::selection(catalog, features)
    }

    fn selection(catalog: Arc<Catalog>, features: Vec<FeatureRef>) -> Result<Selection> {
        if features.is_empty() {
            return Err(EngineError::InvalidArgument("no features requested".into()));
        }
        let mut groups: Vec<(usize, Vec<(usize, usize)>)> = Vec::new();
        for (col, f) in features.iter().enumerate() {
            match groups.iter_mut().find(|g| g.0 == f.view) {
                Some(g) => g.1.push((col, f.feature)),
                None => groups.push((f.view, vec![(col, f.feature)])),
            }
        }
        let first = &catalog.views[groups[0].0];
        if let Some((v, _)) = groups
            .iter()
            .find(|(v, _)| catalog.views[*v].entity.name != first.entity.name)
        {
            return Err(EngineError::InvalidArgument(format!(
                "features of view {:?} (entity {:?}) and view {:?} (entity {:?}) cannot be read \
                 with the same keys; request them separately",
                first.name,
                first.entity.name,
                catalog.views[*v].name,
                catalog.views[*v].entity.name
            )));
        }
        Ok(Selection {
            catalog,
            features,
            groups,
        })
    }

    /// Reads the selected features for every key of `keys` into `out.columns` (one column per
    /// feature, rows in key order; duplicate keys are fine).
    pub fn get(
        &self,
        sel: &Selection,
        keys: &KeyBatch,
        opts: &ReadOptions,
        out: &mut GetResult,
    ) -> Result<()> {
        let n = keys.len();
        let now = opts.now.unwrap_or_else(|| self.clock.now_micros());
        let registry = &sel.catalog.registry;

        out.columns.truncate(sel.features.len());
        for (i, f) in sel.features.iter().enumerate() {
            let ty = registry.views()[f.view].features[f.feature].ty;
            match out.columns.get_mut(i) {
                Some(c) if c.ty == ty => {}
                Some(c) => *c = FeatureColumn::new(ty),
                None => out.columns.push(FeatureColumn::new(ty)),
            }
            out.columns[i].reset(n);
        }
        out.min_ts.clear();
        for f in &sel.features {
            let layout = &sel.catalog.views[f.view].layout;
            let ttl = layout.ttl_micros[f.feature];
            let bound = match (ttl, opts.max_age) {
                (0, None) => None,
                (0, Some(m)) => Some(m),
                (t, None) => Some(t),
                (t, Some(m)) => Some(t.min(m)),
            };
            out.min_ts
                .push(bound.map_or(i64::MIN, |b| now.saturating_sub(b.max(0))));
        }

        // Hash once; counting-sort key positions by shard.
        let shards = self.shard_mask + 1;
        out.hashes.clear();
        out.hashes.extend(keys.iter().map(hash_key));
        out.starts.clear();
        out.starts.resize(shards + 1, 0);
        for &h in &out.hashes {
            out.starts[shard_of(h, self.shard_mask) + 1] += 1;
        }
        for s in 0..shards {
            out.starts[s + 1] += out.starts[s];
        }
        out.order.clear();
        out.order.resize(n, 0);
        out.next.clear();
        out.next.extend_from_slice(&out.starts);
        for (i, &h) in out.hashes.iter().enumerate() {
            let s = shard_of(h, self.shard_mask);
            out.order[out.next[s] as usize] = i as u32;
            out.next[s] += 1;
        }
        let max_feature =
            |feats: &[(usize, usize)]| feats.iter().map(|f| f.1 + 1).max().unwrap_or(0);
        out.variable.clear();
        if opts.max_variable_bytes.is_some() {
            let variable = (0..out.columns.len())
                .filter(|&c| out.columns[c].values.variable_bytes().is_some());
            out.variable.extend(variable);
        }

        for (view_idx, feats) in &sel.groups {
            let view = &sel.catalog.views[*view_idx];
            let layers = view.layers();
            let upto = max_feature(feats);
            // Phase 1: read-lock every shard the batch touches and locate each key's records.
            // The lookups are independent, so the CPU overlaps their cache misses; phase 2
            // then finds the records already in cache.
            let mut guards = Vec::with_capacity(shards.min(n));
            for s in 0..shards {
                if out.starts[s] != out.starts[s + 1] {
                    let frozen = layers.frozen.as_ref().map(|f| sync::read(&f.shards[s]));
                    guards.push((s, sync::read(&layers.active.shards[s]), frozen));
                }
            }
            if let Some(base) = &layers.base {
                base.prefetch(keys);
            }
            let empty: &[u8] = &[];
            let mut found: Vec<[&[u8]; 3]> = vec![[empty; 3]; n];
            let mut nfound: Vec<u8> = vec![0; n];
            for (s, active, frozen) in &guards {
                for &k in &out.order[out.starts[*s] as usize..out.starts[*s + 1] as usize] {
                    let k = k as usize;
                    let (key, hash) = (keys.get(k), out.hashes[k]);
                    // Sources newest first; a tie on (event, created) goes to the newer layer.
                    let mut c = 0;
                    if let Some(off) = active.find(hash, key) {
                        found[k][c] = active.record(off).map_err(|m| view.corrupt(m))?;
                        c += 1;
                    }
                    if let Some(fz) = frozen {
                        if let Some(off) = fz.find(hash, key) {
                            found[k][c] = fz.record(off).map_err(|m| view.corrupt(m))?;
                            c += 1;
                        }
                    }
                    if let Some(base) = &layers.base {
                        if let Some(rec) = base.record(key)? {
                            found[k][c] = rec;
                            c += 1;
                        }
                    }
                    nfound[k] = c as u8;
                }
            }
            // Phase 2: decode, in request order.
            out.wanted.clear();
            out.wanted.extend(feats.iter().map(|&(col, fi)| (fi, col)));
            out.wanted.sort_unstable();
            let codec = layers.base.as_ref().and_then(|b| b.codec());
            for k in 0..n {
                out.check_variable_bytes(opts.max_variable_bytes)?;
                let nsrc = nfound[k] as usize;
                if nsrc == 0 {
                    continue;
                }
                // A whole-row decimal-coded record (the common case of a view `auto` codes)
                // decodes straight into the columns.
                if nsrc == 1 {
                    if let Some(body) = pack::decimal_body(found[k][0]) {
                        if record::decode_simple(
                            &view.layout,
                            body,
                            true,
                            &out.wanted,
                            &out.min_ts,
                            &mut out.columns,
                            k,
                        )
                        .map_err(|m| view.corrupt(m))?
                        {
                            continue;
                        }
                    }
                }
                // Each compressed record is decompressed once, whatever the features asked.
                let mut srcs = found[k];
                for (rec, buf) in srcs.iter_mut().zip(out.unpacked.iter_mut()).take(nsrc) {
                    if pack::is_packed(rec) {
                        *rec = pack::unpack_here(codec, rec, &view.layout, buf)
                            .map_err(|m| view.corrupt(m))?;
                    }
                }
                let srcs = &srcs;
                if nsrc == 1
                    && record::decode_simple(
                        &view.layout,
                        srcs[0],
                        false,
                        &out.wanted,
                        &out.min_ts,
                        &mut out.columns,
                        k,
                    )
                    .map_err(|m| view.corrupt(m))?
                {
                    continue;
                }
                for (j, rec) in srcs.iter().enumerate().take(nsrc) {
                    record::parse_upto(&view.layout, rec, &mut out.cells[j], upto)
                        .map_err(|m| view.corrupt(m))?;
                }
                for &(col, fi) in feats {
                    let mut best = 0;
                    for j in 1..nsrc {
                        let (c, b) = (&out.cells[j][fi], &out.cells[best][fi]);
                        if c.state != CellState::Unwritten
                            && (b.state == CellState::Unwritten
                                || (c.ts, c.created) > (b.ts, b.created))
                        {
                            best = j;
                        }
                    }
                    let cell = &out.cells[best][fi];
                    let column = &mut out.columns[col];
                    if cell.state == CellState::Unwritten {
                        continue;
                    }
                    column.event_ts[k] = cell.ts;
                    if cell.ts < out.min_ts[col] {
                        column.statuses[k] = Status::OutsideMaxAge;
                        continue;
                    }
                    if cell.state == CellState::Null {
                        column.statuses[k] = Status::NullValue;
                        continue;
                    }
                    record::decode_into(&view.layout, fi, cell, srcs[best], &mut column.values, k)
                        .map_err(|m| view.corrupt(m))?;
                    column.statuses[k] = Status::Present;
                }
            }
        }
        out.check_variable_bytes(opts.max_variable_bytes)
    }

    /// Convenience: resolves `refs` and reads them for `keys` in a fresh result.
    pub fn get_features<S: AsRef<str>>(
        &self,
        refs: &[S],
        keys: &KeyBatch,
        opts: &ReadOptions,
    ) -> Result<Vec<FeatureColumn>> {
        let sel = self.select(refs)?;
        let mut out = GetResult::new();
        self.get(&sel, keys, opts, &mut out)?;
        Ok(out.columns)
    }

    /// Writes rows into `view`. Each feature value replaces the stored one only if it is newer
    /// (event time, then created time, then arrival). The whole batch is validated before any
    /// of it is applied, so a bad row rejects the batch and changes nothing.
    pub fn write(&self, view: &str, rows: &[Row]) -> Result<()> {
        self.validate(view, rows)?;
        self.apply_validated(view, rows)
    }

    /// Checks a batch as [`Store::write`] would, without applying it.
    pub fn validate(&self, view: &str, rows: &[Row]) -> Result<()> {
        let catalog = self.catalog();
        let vi = catalog
            .registry
            .view_index(view)
            .ok_or_else(|| EngineError::NotFound(format!("no feature view named {view:?}")))?;
        let vdef = &catalog.registry.views()[vi];
        for (r, row) in rows.iter().enumerate() {
            validate_row(vdef, &catalog.views[vi].entity, r, row)?;
        }
        Ok(())
    }

    /// Applies a batch that [`Store::validate`] accepted (registry changes in between only
    /// add, so it stays valid).
    pub(crate) fn apply_validated(&self, view: &str, rows: &[Row]) -> Result<()> {
        let catalog = self.catalog();
        let vi = catalog
            .registry
            .view_index(view)
            .ok_or_else(|| EngineError::NotFound(format!("no feature view named {view:?}")))?;
        let vs = &catalog.views[vi];
        let mut hashes = Vec::with_capacity(rows.len());
        let mut by_shard: Vec<Vec<u32>> = vec![Vec::new(); self.shard_mask + 1];
        for (i, row) in rows.iter().enumerate() {
            let h = hash_key(&row.key);
            hashes.push(h);
            by_shard[shard_of(h, self.shard_mask)].push(i as u32);
        }
        let mut cells = Vec::new();
        let mut fresh = Vec::new();
        let mut encoded = Vec::new();
        let mut newest = i64::MIN;
        let layers = vs.layers();
        for (s, idxs) in by_shard.iter().enumerate() {
            if idxs.is_empty() {
                continue;
            }
            let mut shard = sync::write(&layers.active.shards[s]);
            for &i in idxs {
                let row = &rows[i as usize];
                let h = hashes[i as usize];
                newest = newest.max(row.event_ts);
                let existing = shard.find(h, &row.key);
                let old: &[u8] = match existing {
                    Some(off) => {
                        let rec = shard.record(off).map_err(|m| vs.corrupt(m))?;
                        record::parse(&vs.layout, rec, &mut cells).map_err(|m| vs.corrupt(m))?;
                        rec
                    }
                    None => {
                        cells.clear();
                        cells.resize(vs.layout.len(), Cell::default());
                        &[]
                    }
                };
                fresh.clear();
                let created = row.created_ts.unwrap_or(NO_CREATED);
                let mut changed = false;
                for (fi, v) in &row.values {
                    changed |= record::apply(
                        &vs.layout,
                        &mut cells[*fi],
                        *fi,
                        v,
                        row.event_ts,
                        created,
                        &mut fresh,
                    );
                }
                if !changed {
                    continue;
                }
                record::encode(&vs.layout, &cells, old, &fresh, &mut encoded);
                shard
                    .upsert(h, &row.key, existing, &encoded)
                    .map_err(|m| EngineError::CapacityExceeded(m.0.to_string()))?;
            }
        }
        if !rows.is_empty() {
            vs.newest_event_ts.fetch_max(newest, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Size and freshness of every view.
    pub fn stats(&self) -> Vec<ViewStats> {
        let catalog = self.catalog();
        catalog
            .views
            .iter()
            .map(|v| {
                let layers = v.layers();
                let (mut entities, mut bytes) = (0u64, 0u64);
                for delta in std::iter::once(&layers.active).chain(layers.frozen.as_ref()) {
                    for s in delta.shards.iter() {
                        let s = sync::read(s);
                        entities += s.entities() as u64;
                        bytes += s.memory_bytes() as u64;
                    }
                }
                ViewStats {
                    view: v.name.clone(),
                    entities,
                    bytes,
                    base_entities: layers.base.as_ref().map_or(0, |b| b.entities()),
                    base_bytes: layers.base.as_ref().map_or(0, |b| b.bytes()),
                    newest_event_ts: v.newest_event_ts.load(Ordering::Relaxed),
                    compression: layers
                        .base
                        .as_ref()
                        .and_then(|b| b.codec())
                        .map(|c| c.info().clone()),
                }
            })
            .collect()
    }
}

pub(crate) fn validate_row(
    vdef: &crate::registry::FeatureView,
    entity: &Entity,
    r: usize,
    row: &Row,
) -> Result<()> {
    if row.key.len() > MAX_KEY_LEN || decode_key(entity, &row.key).is_none() {
        return Err(EngineError::InvalidArgument(format!(
            "row {r}: key is not a valid encoded key of entity {:?}",
            entity.name
        )));
    }
    if row.values.is_empty() {
        return Err(EngineError::InvalidArgument(format!(
            "row {r}: no feature values"
        )));
    }
    let mut seen = [0u64; 4];
    for (fi, v) in &row.values {
        let f = vdef.features.get(*fi).ok_or_else(|| {
            EngineError::InvalidArgument(format!(
                "row {r}: view {:?} has no feature #{fi}",
                vdef.name
            ))
        })?;
        if !v.fits(f.ty) {
            return Err(EngineError::InvalidArgument(format!(
                "row {r}: feature {:?} of view {:?} is {}, got a {} value{}",
                f.name,
                vdef.name,
                f.ty,
                v.kind(),
                match (v, f.ty) {
                    (Value::Vector(x), ValueType::Vector { dim }) =>
                        format!(" of dimension {} (expected {dim})", x.len()),
                    _ => String::new(),
                }
            )));
        }
        if let Value::Vector(x) = v {
            if f.storage == crate::value::VectorStorage::Int8 && x.iter().any(|c| !c.is_finite()) {
                return Err(EngineError::InvalidArgument(format!(
                    "row {r}: feature {:?} of view {:?} is stored as int8, which cannot hold \
                     NaN or infinite components",
                    f.name, vdef.name
                )));
            }
        }
        if *fi < 256 {
            let (w, b) = (fi / 64, fi % 64);
            if seen[w] & (1 << b) != 0 {
                return Err(EngineError::InvalidArgument(format!(
                    "row {r}: feature {:?} given twice",
                    f.name
                )));
            }
            seen[w] |= 1 << b;
        } else if row.values.iter().filter(|(g, _)| g == fi).count() > 1 {
            return Err(EngineError::InvalidArgument(format!(
                "row {r}: feature {:?} given twice",
                f.name
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
