//! `quiver-bench engine --compression none|zstd|auto`: batched gets against a base snapshot
//! whose records are stored as the view's compression policy decides (issue 7).
//!
//! 1. **Registry**: the bundled registry with `compression = "<policy>"` (and
//!    `compression_level` if given) set on the measured view's table; the run checks that the
//!    parsed view carries it.
//! 2. **Build**: every entity's row goes through [`SnapshotBuilder`] into a snapshot file
//!    (`build_s`, generating the rows included), finished with
//!    [`SnapshotBuilder::finish_with_codec`]: what the builder decided and the sample figures
//!    it decided on. The file is then verified ([`Snapshot::verify`]: checksums, and every
//!    compressed record decompresses to the length it claims; not timed) and its plain and
//!    stored record bytes are read with [`Snapshot::record_sizes`].
//! 3. **Serve**: a [`Db`] (no fsync, no automatic checkpoints) bulk-loads the file with
//!    [`Db::load_snapshot`], so every entity is in the base layer and none in the delta.
//!    The file was just written: its pages are in the page cache.
//! 4. **Measure**: the same validation and alternating-slice measurement as the in-memory
//!    path ([`validate`], [`measure_each`]), against the same kind of raw `HashMap<u64, Vec<f32>>`
//!    baseline holding the same values (`user_stats`: the first `--features` values as `f32`,
//!    as the in-memory path; `user_embedding`: the 64 components). The engine's timed work
//!    is encoding the keys plus [`Db::get`] (values, statuses, event times, TTL checked), which
//!    decompresses each packed record it touches.
//!
//! The embedding view is the comparison harness's `user_embedding` (`crate::compare::data`):
//! 64 float32 components per user, uniform in [-1, 1) with 24 random bits each.

use std::sync::Arc;
use std::time::{Duration, Instant};

use quiver_engine::{
    encode_key, CodecInfo, Db, FsyncPolicy, GetResult, KeyBatch, KeyPart, ReadOptions, Registry,
    Row, Snapshot, SnapshotBuilder, SystemClock, Value,
};
use serde_json::{json, Map, Value as Json};

use crate::compare::data::{Data, EMBEDDING_DIM, EMBEDDING_FEATURE, EMBEDDING_VIEW};
use crate::dataset::{check_registry, Dataset, EntityRow, REGISTRY_TOML, USER_STATS, VIEW};
use crate::durable::{db_config, now_micros, now_secs};
use crate::engine::{
    baseline_map, check_named_columns, latency_table, measure_each, put_results, timed_get, to_row,
    validate, BaselineMap, BaselineSystem, CompressionArg, EngineArgs, FoldBuild, Results, System,
    ViewArg,
};
use crate::keys::KeySpace;
use crate::report::{num, ratio};
use crate::scratch::ScratchDir;
use crate::{BenchError, Result};

/// Same salt as the in-memory path, so both read the same key sequence.
const SALT_PERMUTATION: u64 = 0x7065_726d;

/// Goal from issue 7: `user_stats` stored record bytes at most this share of plain.
const TARGET_STORED_SHARE: f64 = 0.6;

/// The registry's name of the measured view.
fn view_name(view: ViewArg) -> &'static str {
    match view {
        ViewArg::UserStats => VIEW,
        ViewArg::Embedding => EMBEDDING_VIEW,
    }
}

/// The bundled registry with the measured view's compression policy (and level) set.
pub(crate) fn registry_with(
    view: &str,
    policy: CompressionArg,
    level: Option<i32>,
) -> Result<Registry> {
    let table = format!("[[feature_view]]\nname = \"{view}\"\n");
    if REGISTRY_TOML.matches(&table).count() != 1 {
        return Err(BenchError::Schema(format!(
            "the bundled registry does not have exactly one table for view {view:?}"
        )));
    }
    let mut set = format!("{table}compression = \"{}\"\n", policy.name());
    if let Some(l) = level {
        set.push_str(&format!("compression_level = {l}\n"));
    }
    let registry = Registry::from_toml(&REGISTRY_TOML.replace(&table, &set))?;
    check_registry(&registry)?;
    let got = registry
        .view(view)
        .map(|v| v.compression)
        .ok_or_else(|| BenchError::Schema(format!("the registry has no view {view:?}")))?;
    if got.policy.name() != policy.name() || level.is_some_and(|l| l != got.level) {
        return Err(BenchError::Schema(format!(
            "view {view:?} parsed with compression {} level {}, asked for {} level {level:?}",
            got.policy.name(),
            got.level,
            policy.name()
        )));
    }
    Ok(registry)
}

/// What a get of the measured view must return for `user_id` (`None`: not found).
fn expected(data: &Data, view: ViewArg, features: usize, user_id: i64) -> Option<EntityRow> {
    match view {
        ViewArg::UserStats => data.stats_of(user_id).map(|mut r| {
            r.values.truncate(features);
            r
        }),
        ViewArg::Embedding => data.embedding_of(user_id).map(|e| EntityRow {
            user_id,
            event_ts: e.event_ts,
            values: vec![Value::Vector(e.vector)],
        }),
    }
}

/// Entity `index`'s full row of the measured view, as a write.
fn row_of(data: &Data, view: ViewArg, entity: &quiver_engine::Entity, index: u64) -> Result<Row> {
    match view {
        ViewArg::UserStats => to_row(entity, data.stats_row(index)),
        ViewArg::Embedding => {
            let e = data.embedding_row(index);
            let mut key = Vec::with_capacity(9);
            encode_key(
                entity,
                &[KeyPart::Int64(data.stats.user_id(index))],
                &mut key,
            )?;
            Ok(Row {
                key,
                event_ts: e.event_ts,
                created_ts: None,
                values: vec![(0, Value::Vector(e.vector))],
            })
        }
    }
}

/// What building the snapshot produced.
#[derive(Debug, Clone)]
struct Built {
    file_bytes: u64,
    plain_record_bytes: u64,
    stored_record_bytes: u64,
    codec: CodecInfo,
    build_s: f64,
}

/// Writes the measured view's snapshot of every entity to `path`.
fn build(path: &std::path::Path, registry: &Registry, data: &Data, view: ViewArg) -> Result<Built> {
    let name = view_name(view);
    let entity = registry
        .view(name)
        .and_then(|v| registry.view_entity(v))
        .cloned()
        .ok_or_else(|| BenchError::Schema(format!("view {name:?} has no entity")))?;
    let n = data.entities();
    eprintln!("building a {name} snapshot of {n} entities");
    let start = Instant::now();
    let mut builder = SnapshotBuilder::create(path, registry, name, now_micros())?;
    let step = (n / 10).max(1);
    for i in 0..n {
        builder.add(&row_of(data, view, &entity, i)?)?;
        if (i + 1) % step == 0 && i + 1 < n {
            eprintln!("  {} / {n}", i + 1);
        }
    }
    let (info, codec) = builder.finish_with_codec()?;
    let build_s = start.elapsed().as_secs_f64();
    eprintln!("  {} bytes in {build_s:.2} s; {codec}", info.file_size);

    eprintln!("verifying the file (every compressed record decompresses)");
    let verified = Snapshot::verify(path)?;
    let snap = Snapshot::open(path)?;
    if verified.entities != n || snap.len() as u64 != n {
        return Err(BenchError::WrongAnswer(format!(
            "the snapshot holds {} entities, {n} were added",
            snap.len()
        )));
    }
    if snap.codec_info() != Some(&codec) {
        return Err(BenchError::WrongAnswer(format!(
            "the file's codec section says {:?}, the builder said {codec:?}",
            snap.codec_info()
        )));
    }
    let (plain, stored) = snap.record_sizes();
    Ok(Built {
        file_bytes: info.file_size,
        plain_record_bytes: plain,
        stored_record_bytes: stored,
        codec,
        build_s,
    })
}

/// The engine reading the base through a [`Db`], checked against `expect`.
struct BaseSystem<'a, G> {
    get: G,
    entity: quiver_engine::Entity,
    features: usize,
    name: fn(usize) -> &'static str,
    expect: &'a dyn Fn(i64) -> Option<EntityRow>,
    keys: KeyBatch,
    out: GetResult,
}

impl<G> System for BaseSystem<'_, G>
where
    G: FnMut(&KeyBatch, &mut GetResult) -> quiver_engine::Result<()>,
{
    fn batch(&mut self, ids: &[i64]) -> Result<Duration> {
        timed_get(
            &self.entity,
            ids,
            &mut self.keys,
            &mut self.get,
            &mut self.out,
        )
    }

    fn check(&self, ids: &[i64], _: &Dataset) -> Result<()> {
        check_named_columns(
            "engine (base)",
            &self.out,
            ids,
            self.features,
            self.name,
            self.expect,
        )
    }
}

fn stats_name(j: usize) -> &'static str {
    USER_STATS[j].name
}

fn embedding_name(_: usize) -> &'static str {
    EMBEDDING_FEATURE
}

/// The raw baseline for the embedding: a hash lookup and a copy of the 64 components.
struct EmbeddingBaseline<'a> {
    map: &'a BaselineMap,
    data: &'a Data,
    out: Vec<f32>,
}

impl System for EmbeddingBaseline<'_> {
    fn batch(&mut self, ids: &[i64]) -> Result<Duration> {
        let n = EMBEDDING_DIM;
        let start = Instant::now();
        self.out.resize(ids.len() * n, 0.0);
        for (dst, &id) in self.out.chunks_exact_mut(n).zip(ids) {
            match self.map.get(&(id as u64)) {
                Some(v) => dst.copy_from_slice(&v[..n]),
                None => dst.fill(f32::NAN),
            }
        }
        let took = start.elapsed();
        std::hint::black_box(&self.out);
        Ok(took)
    }

    fn check(&self, ids: &[i64], _: &Dataset) -> Result<()> {
        let n = EMBEDDING_DIM;
        for (got, &id) in self.out.chunks_exact(n).zip(ids) {
            let want = self
                .data
                .embedding_of(id)
                .map_or_else(|| vec![f32::NAN; n], |e| e.vector);
            if got
                .iter()
                .zip(&want)
                .any(|(g, w)| g.to_bits() != w.to_bits())
            {
                return Err(BenchError::WrongAnswer(format!(
                    "baseline: user {id}: embedding differs from the dataset"
                )));
            }
        }
        Ok(())
    }
}

/// Every entity's embedding, keyed by user id.
fn embedding_map(data: &Data) -> BaselineMap {
    let n = data.entities();
    let mut map = BaselineMap::with_capacity_and_hasher(n as usize, FoldBuild);
    for i in 0..n {
        map.insert(data.stats.user_id(i) as u64, data.embedding_row(i).vector);
    }
    map
}

/// Runs `engine --compression`: builds, loads and measures; prints the table and a JSON line.
pub(crate) fn run_packed(args: &EngineArgs, policy: CompressionArg) -> Result<()> {
    let name = view_name(args.view);
    let registry = registry_with(name, policy, args.compression_level)?;
    let level = registry.view(name).map_or(0, |v| v.compression.level);
    let scratch = ScratchDir::new(args.dir.as_deref(), "engine-packed")?;
    let data = Data::new(args.seed, args.entities, now_secs());
    let path = scratch.join(format!("{name}.qsnap"));
    let built = build(&path, &registry, &data, args.view)?;

    let (db, _) = Db::open(
        db_config(
            &scratch.join("data"),
            &registry,
            FsyncPolicy::Never,
            args.shards,
        ),
        Arc::new(SystemClock),
    )?;
    let loaded = db.load_snapshot(name, &path)?;
    let stats = db
        .stats()
        .views
        .into_iter()
        .find(|v| v.view == name)
        .ok_or_else(|| BenchError::Schema(format!("the Db has no view {name:?}")))?;
    if loaded != args.entities || stats.base_entities != args.entities || stats.entities != 0 {
        return Err(BenchError::WrongAnswer(format!(
            "loaded {loaded} entities; the Db holds {} in its base and {} in memory, \
             expected {} and 0",
            stats.base_entities, stats.entities, args.entities
        )));
    }
    if stats.compression.as_ref() != Some(&built.codec) {
        return Err(BenchError::WrongAnswer(format!(
            "Db stats report compression {:?}, the snapshot was built with {:?}",
            stats.compression, built.codec
        )));
    }

    let refs: Vec<String> = match args.view {
        ViewArg::UserStats => USER_STATS[..args.features]
            .iter()
            .map(|f| format!("{VIEW}:{}", f.name))
            .collect(),
        ViewArg::Embedding => vec![format!("{EMBEDDING_VIEW}:{EMBEDDING_FEATURE}")],
    };
    let sel = db.select(&refs)?;
    let opts = ReadOptions::default();
    let expect = |id: i64| expected(&data, args.view, args.features, id);
    let mut engine = BaseSystem {
        get: |k: &KeyBatch, o: &mut GetResult| db.get(&sel, k, &opts, o),
        entity: sel.entity().clone(),
        features: refs.len(),
        name: match args.view {
            ViewArg::UserStats => stats_name,
            ViewArg::Embedding => embedding_name,
        },
        expect: &expect,
        keys: KeyBatch::with_capacity(args.batch, 9),
        out: GetResult::new(),
    };

    eprintln!("building the baseline map");
    let map = match args.view {
        ViewArg::UserStats => baseline_map(&data.stats),
        ViewArg::Embedding => embedding_map(&data),
    };
    let mut stats_baseline = BaselineSystem {
        map: &map,
        features: args.features,
        out: vec![0.0; args.batch * args.features],
    };
    let mut embedding_baseline = EmbeddingBaseline {
        map: &map,
        data: &data,
        out: vec![0.0; args.batch * EMBEDDING_DIM],
    };
    let baseline: &mut dyn System = match args.view {
        ViewArg::UserStats => &mut stats_baseline,
        ViewArg::Embedding => &mut embedding_baseline,
    };

    eprintln!("validating reads against the dataset");
    let plan = args.plan();
    let space = KeySpace::new(args.entities, args.seed ^ SALT_PERMUTATION)?;
    let checked = validate([&mut engine, &mut *baseline], &data.stats, &space, &plan)?;
    let results = measure_each(
        args,
        [&mut engine, &mut *baseline],
        ["engine (base)", "baseline"],
        &data.stats,
        &space,
        &plan,
    )?;
    drop(engine);
    db.close()?;

    let figures = Figures {
        args,
        view: name,
        policy,
        level,
        built,
        checked,
        results,
    };
    println!("{}", figures.table());
    println!("{}", figures.json());
    Ok(())
}

/// Everything the report prints.
struct Figures<'a> {
    args: &'a EngineArgs,
    view: &'static str,
    policy: CompressionArg,
    level: i32,
    built: Built,
    checked: u64,
    results: Results,
}

impl Figures<'_> {
    fn per_entity(&self, bytes: u64) -> f64 {
        bytes as f64 / self.args.entities as f64
    }

    fn stored_share(&self) -> f64 {
        ratio(
            self.built.stored_record_bytes as f64,
            self.built.plain_record_bytes as f64,
        )
    }

    fn table(&self) -> String {
        let a = self.args;
        let b = &self.built;
        let c = &b.codec;
        let t = latency_table(&self.results, "engine (base)");
        format!(
            "Quiver engine micro benchmark, base snapshot: view {}, compression {} (level {}), \
             {} entities, batch {}, {} features, {} shards, seed {}, {} s per measurement\n\n\
             {}\n\n\
             snapshot: {} bytes ({:.1} B/entity), built in {:.2} s; records: {:.1} B/entity \
             stored, {:.1} B/entity plain ({:.3}× plain)\n\
             codec: {c}\n\
             {} entities validated per system\n\
             targets (issue 7, user_stats; compare with the none run): stored records at most \
             {TARGET_STORED_SHARE}× plain: {}",
            self.view,
            self.policy.name(),
            self.level,
            a.entities,
            a.batch,
            a.features,
            a.shards,
            a.seed,
            a.duration,
            t.render(),
            b.file_bytes,
            self.per_entity(b.file_bytes),
            b.build_s,
            self.per_entity(b.stored_record_bytes),
            self.per_entity(b.plain_record_bytes),
            self.stored_share(),
            self.checked,
            if self.stored_share() <= TARGET_STORED_SHARE {
                "met"
            } else {
                "missed"
            },
        )
    }

    fn json(&self) -> String {
        let a = self.args;
        let b = &self.built;
        let c = &b.codec;
        let mut m = Map::new();
        m.insert("workload".into(), json!("engine"));
        m.insert("path".into(), json!("base"));
        m.insert("view".into(), json!(self.view));
        m.insert("compression".into(), json!(self.policy.name()));
        m.insert("level".into(), json!(self.level));
        m.insert("method".into(), json!(c.method.name()));
        m.insert("shuffle_width".into(), json!(c.shuffle_width));
        m.insert("dict_bytes".into(), json!(c.dict_bytes));
        m.insert("entities".into(), json!(a.entities));
        m.insert("batch".into(), json!(a.batch));
        m.insert("features".into(), json!(a.features));
        m.insert("shards".into(), json!(a.shards));
        m.insert("seed".into(), json!(a.seed));
        m.insert("duration_s".into(), json!(a.duration));
        m.insert("snapshot_bytes".into(), json!(b.file_bytes));
        m.insert(
            "bytes_per_entity".into(),
            num(self.per_entity(b.file_bytes)),
        );
        m.insert(
            "record_bytes_per_entity".into(),
            num(self.per_entity(b.stored_record_bytes)),
        );
        m.insert(
            "plain_record_bytes_per_entity".into(),
            num(self.per_entity(b.plain_record_bytes)),
        );
        m.insert("stored_share".into(), num(self.stored_share()));
        m.insert("sample_records".into(), json!(c.sample_records));
        m.insert("sample_plain_bytes".into(), json!(c.sample_plain_bytes));
        m.insert("sample_packed_bytes".into(), json!(c.sample_packed_bytes));
        m.insert("sample_saving".into(), num(c.sample_saving()));
        m.insert("decode_ns".into(), json!(c.decode_ns));
        m.insert("build_s".into(), num(b.build_s));
        m.insert("validated_entities".into(), json!(self.checked));
        m.insert("page_cache".into(), json!("warm"));
        put_results(&mut m, &self.results);
        Json::Object(m).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quiver_engine::CompressionPolicy;

    #[test]
    fn the_registry_carries_the_asked_policy_on_the_measured_view_only() {
        for (arg, policy) in [
            (CompressionArg::None, CompressionPolicy::None),
            (CompressionArg::Zstd, CompressionPolicy::Zstd),
            (CompressionArg::Auto, CompressionPolicy::Auto),
        ] {
            for view in [VIEW, EMBEDDING_VIEW] {
                let reg = registry_with(view, arg, Some(5)).unwrap();
                let c = reg.view(view).unwrap().compression;
                assert_eq!((c.policy, c.level), (policy, 5));
            }
        }
        let reg = registry_with(EMBEDDING_VIEW, CompressionArg::None, None).unwrap();
        assert_eq!(
            reg.view(VIEW).unwrap().compression,
            quiver_engine::Compression::default()
        );
    }

    #[test]
    fn a_small_compressed_base_serves_the_dataset() {
        for view in [ViewArg::UserStats, ViewArg::Embedding] {
            let dir = ScratchDir::new(None, "packed-test").unwrap();
            let reg = registry_with(view_name(view), CompressionArg::Zstd, None).unwrap();
            let data = Data::new(3, 5000, 1_700_000_000);
            let built = build(&dir.join("s.qsnap"), &reg, &data, view).unwrap();
            assert!(built.stored_record_bytes <= built.plain_record_bytes);
            assert!(built.file_bytes > built.stored_record_bytes);
            // A quarter of the sample is held out and measured.
            assert!(built.codec.sample_records > 250, "{}", built.codec);
        }
    }
}
