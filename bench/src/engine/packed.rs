//! `quiver-bench engine --compression none|zstd|auto`: batched gets against a base snapshot
//! whose records are stored as the view's compression policy decides.
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
//! The embedding view is the comparison dataset's `user_embedding` (`crate::dataset::Data`):
//! 64 float32 components per user, uniform in [-1, 1) with 24 random bits each.

use std::time::Instant;

use quiver_engine::{
    CodecInfo, Entity, FsyncPolicy, GetResult, KeyBatch, ReadOptions, Registry, Row, Snapshot,
    SnapshotBuilder, Value,
};
use serde_json::json;

use crate::dataset::{
    check_registry, Data, EntityRow, EMBEDDING_FEATURE, EMBEDDING_VIEW, REGISTRY_TOML, VIEW,
};
use crate::engine::baseline::{baseline_map, embedding_map, BaselineSystem};
use crate::engine::{CompressionArg, EngineArgs, ViewArg};
use crate::harness::check::{embedding_to_row, stats_column, to_row};
use crate::harness::db::{open_db, stats_refs, view_entity};
use crate::harness::host::{now_micros, now_secs};
use crate::harness::measure::{measure_each, validate, EngineSystem, System};
use crate::harness::report::{latency_table, num, ratio, verdict, with_results, Results};
use crate::scratch::scratch_dir;
use crate::{BenchError, Result};

/// Goal: `user_stats` stored record bytes at most this share of plain.
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
fn row_of(data: &Data, view: ViewArg, entity: &Entity, index: u64) -> Result<Row> {
    match view {
        ViewArg::UserStats => to_row(entity, data.stats_row(index)),
        ViewArg::Embedding => {
            embedding_to_row(entity, data.stats.user_id(index), data.embedding_row(index))
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
    let entity = view_entity(registry, name)?;
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

/// Column `j`'s name when the answer reads the embedding.
fn embedding_column(_: usize) -> &'static str {
    EMBEDDING_FEATURE
}

/// Runs `engine --compression`: builds, loads and measures; prints the table and a JSON line.
pub(crate) fn run_packed(args: &EngineArgs, policy: CompressionArg) -> Result<()> {
    let name = view_name(args.view);
    let registry = registry_with(name, policy, args.compression_level)?;
    let level = registry.view(name).map_or(0, |v| v.compression.level);
    let scratch = scratch_dir(args.common.dir.as_deref(), "engine-packed")?;
    let data = Data::new(args.common.seed, args.entities, now_secs());
    let path = scratch.join(format!("{name}.qsnap"));
    let built = build(&path, &registry, &data, args.view)?;

    let db = open_db(
        &scratch.join("data"),
        &registry,
        FsyncPolicy::Never,
        args.common.shards,
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

    let (refs, column): (Vec<String>, fn(usize) -> &'static str) = match args.view {
        ViewArg::UserStats => (stats_refs(args.features), stats_column),
        ViewArg::Embedding => (
            vec![format!("{EMBEDDING_VIEW}:{EMBEDDING_FEATURE}")],
            embedding_column,
        ),
    };
    let sel = db.select(&refs)?;
    let opts = ReadOptions::default();
    let expect = |id: i64| expected(&data, args.view, args.features, id);
    let get = |k: &KeyBatch, o: &mut GetResult| db.get(&sel, k, &opts, o);
    let entity = sel.entity().clone();
    let mut engine = EngineSystem::new("engine (base)", get, entity, refs.len(), args.batch)
        .expecting(column, &expect);

    eprintln!("building the baseline map");
    let map = match args.view {
        ViewArg::UserStats => baseline_map(&data.stats),
        ViewArg::Embedding => embedding_map(&data),
    };
    let mut baseline = match args.view {
        ViewArg::UserStats => BaselineSystem::stats(&map, &data.stats, args.features, args.batch),
        ViewArg::Embedding => BaselineSystem::embedding(&map, &data, args.batch),
    };

    eprintln!("validating reads against the dataset");
    let plan = args.plan();
    let space = args.key_space()?;
    let checked = validate([&mut engine, &mut baseline], &data.stats, &space, &plan)?;
    let systems: [&mut dyn System; 2] = [&mut engine, &mut baseline];
    let names = ["engine (base)", "baseline"];
    let results = measure_each(systems, names, &data.stats, &space, &args.dists(), &plan)?;
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
             targets (user_stats; compare with the none run): stored records at most \
             {TARGET_STORED_SHARE}× plain: {}",
            self.view,
            self.policy.name(),
            self.level,
            a.entities,
            a.batch,
            a.features,
            a.common.shards,
            a.common.seed,
            a.duration,
            t.render(),
            b.file_bytes,
            self.per_entity(b.file_bytes),
            b.build_s,
            self.per_entity(b.stored_record_bytes),
            self.per_entity(b.plain_record_bytes),
            self.stored_share(),
            self.checked,
            verdict(self.stored_share() <= TARGET_STORED_SHARE),
        )
    }

    fn json(&self) -> String {
        let a = self.args;
        let b = &self.built;
        let c = &b.codec;
        let per_entity = |bytes| num(self.per_entity(bytes));
        let fields = a.fields().extend(json!({
            "path": "base",
            "view": self.view,
            "compression": self.policy.name(),
            "level": self.level,
            "method": c.method.name(),
            "shuffle_width": c.shuffle_width,
            "dict_bytes": c.dict_bytes,
            "snapshot_bytes": b.file_bytes,
            "bytes_per_entity": per_entity(b.file_bytes),
            "record_bytes_per_entity": per_entity(b.stored_record_bytes),
            "plain_record_bytes_per_entity": per_entity(b.plain_record_bytes),
            "stored_share": num(self.stored_share()),
            "sample_records": c.sample_records,
            "sample_plain_bytes": c.sample_plain_bytes,
            "sample_packed_bytes": c.sample_packed_bytes,
            "sample_saving": num(c.sample_saving()),
            "decode_ns": c.decode_ns,
            "build_s": num(b.build_s),
            "validated_entities": self.checked,
            "page_cache": "warm",
        }));
        with_results(fields, &self.results).to_string()
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
            let dir = scratch_dir(None, "packed-test").unwrap();
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
