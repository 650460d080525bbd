//! The bulk-load benchmark (W5), and the snapshot read path against the delta.
//!
//! 1. **Build**: a `user_stats` snapshot of N generated entities is written with
//!    [`SnapshotBuilder`](quiver_engine::SnapshotBuilder) (`build_s`, generating the rows
//!    included; `gen_s` is the generation alone, for scale).
//! 2. **Load**: a running [`Db`] serves an older snapshot of the probe users (other values,
//!    event times one second older). A reader thread reads the probe users in a closed loop;
//!    the main thread calls [`Db::load_snapshot`] with the finished file. `load_s` runs from
//!    that call until the end of the first read that returns the new values for every probe
//!    user. It includes validating the file (checksums of every byte), linking it into the
//!    data directory, the manifest update and the swap. Repeated `--repeats` times (the old
//!    snapshot is loaded back between runs, untimed); the median is reported. The file was
//!    just written, so its pages are in the page cache.
//! 3. **Read path**: the same gets (batches of `--batch` users × 20 features, the same uniform
//!    key sequence) against that Db, whose data is all in the snapshot, and against a second
//!    Db into which the same rows were written (all in the in-memory delta), in alternating
//!    slices. Reported as `base_delta_ratio` = base p50 / delta p50.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use quiver_engine::{
    Db, FsyncPolicy, GetResult, KeyBatch, ReadOptions, Registry, Snapshot, Status,
};
use serde_json::{json, Value as Json};

use crate::dataset::{Dataset, EntityRow, USER_STATS, VIEW};
use crate::harness::args::{self, in_range, positive, DbArgs};
use crate::harness::check::to_row;
use crate::harness::db::{
    build_snapshot, open_db, registry, stats_refs, user_entity, write_all, Reader, CHECK_BATCH,
};
use crate::harness::host::{now_secs, scratch_on};
use crate::harness::measure::{measure, validate, EngineSystem, Plan};
use crate::harness::report::{
    median, median_of, num, ratio, verdict, Fields, Latency, Stat, Summary, Table,
};
use crate::keys::{Dist, KeySpace};
use crate::{BenchError, Result};
use quiver_testkit::TempDir;

/// Flags of `quiver-bench load`.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Entities in the snapshot.
    #[arg(long, default_value_t = 1_000_000)]
    pub entities: u64,
    /// Timed loads; the median is reported.
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    /// Users the reader thread reads in each get while a load runs.
    #[arg(long, default_value_t = 100)]
    pub probe: usize,
    /// Skip the snapshot-against-delta read comparison (it writes every entity again).
    #[arg(long)]
    pub no_read_compare: bool,
    /// Users per get in the read comparison.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Seconds per system in the read comparison.
    #[arg(long, default_value_t = 3.0)]
    pub duration: f64,
    /// Most gets per system in the read comparison.
    #[arg(long, default_value_t = 1_000_000)]
    pub iterations: u64,
    /// Rows per write while filling the delta for the read comparison.
    #[arg(long, default_value_t = 1000)]
    pub load_batch: usize,
    #[command(flatten)]
    /// Flags every data-directory workload shares.
    pub common: DbArgs,
}

/// Goal: a 1M-entity snapshot is served this many seconds after the file
/// exists (10M in ten times that).
const TARGET_LOAD_S_PER_MILLION: f64 = 0.2;

/// Goal: base p50 within this factor of the delta's.
const TARGET_BASE_DELTA_RATIO: f64 = 1.3;

/// A load that has not been seen by the reader after this long is a failure.
const LOAD_TIMEOUT: Duration = Duration::from_secs(300);

const SALT_OLD: u64 = 0x6f6c_6473;

/// One timed load.
#[derive(Debug, Clone, Copy)]
struct Load {
    /// From the call until a read returned the new values.
    served_s: f64,
    /// Until `load_snapshot` returned.
    call_s: f64,
    /// Gets the reader completed meanwhile.
    reads: u64,
}

/// Runs the bulk-load benchmark and prints its report (table, then a JSON line) on stdout.
pub fn run_load(args: &LoadArgs) -> Result<()> {
    validate_args(args)?;
    let registry = registry()?;
    let entity = user_entity(&registry)?;
    let DbArgs { seed, shards, .. } = args.common;
    let (scratch, filesystem) = scratch_on(args.common.dir.as_deref(), "load")?;
    let n = args.entities;
    let dataset = Dataset::new(seed, n, now_secs());

    eprintln!("generating {n} rows (not written: the generator's share of the build)");
    let start = Instant::now();
    for i in 0..n {
        std::hint::black_box(to_row(&entity, dataset.row(i))?);
    }
    let gen_s = start.elapsed().as_secs_f64();

    eprintln!("building the snapshot");
    let new_path = scratch.join("user_stats-new.qsnap");
    let (info, build_s) = build_snapshot(&new_path, &registry, n, |i| dataset.row(i), "build")?;
    eprintln!("  {} bytes in {build_s:.2} s", info.file_size);

    // The probe users: spread over the key space, first and last included.
    let probe: Vec<i64> = (0..args.probe as u64)
        .map(|k| dataset.user_id(k * (n - 1) / (args.probe as u64 - 1).max(1)))
        .collect();
    let old = Dataset::new(seed ^ SALT_OLD, n, now_secs());
    let old_row = |id: i64| -> Option<EntityRow> {
        let i = dataset.index_of(id)?;
        let mut r = old.row(i);
        r.user_id = id;
        r.event_ts = dataset.row(i).event_ts - quiver_engine::MICROS_PER_SEC;
        Some(r)
    };
    let old_path = scratch.join("user_stats-old.qsnap");
    build_snapshot(
        &old_path,
        &registry,
        probe.len() as u64,
        |k| old_row(probe[k as usize]).unwrap_or_else(|| dataset.row(0)),
        "old",
    )?;
    let new_ts: Vec<i64> = probe
        .iter()
        .map(|&id| dataset.index_of(id).map_or(0, |i| dataset.row(i).event_ts))
        .collect();

    let data = scratch.join("data");
    let db = open_db(&data, &registry, FsyncPolicy::Never, shards)?;
    let mut reader = Reader::new(&db)?;
    let mut loads = Vec::with_capacity(args.repeats);
    let mut during = Latency::new()?;
    for rep in 1..=args.repeats {
        db.load_snapshot(VIEW, &old_path)?;
        reader.check(&db, "db before the load", &probe, old_row)?;
        let (load, lat) = timed_load(&db, &new_path, &probe, &new_ts)?;
        during.add(&lat)?;
        eprintln!(
            "  load {rep}: served after {:.3} s (call returned after {:.3} s, {} reads meanwhile)",
            load.served_s, load.call_s, load.reads
        );
        loads.push(load);
    }
    let sample: Vec<i64> = (0..20_000u64.min(n))
        .map(|k| dataset.user_id(k * (n - 1) / 19_999u64.min(n - 1).max(1)))
        .chain((0..CHECK_BATCH as i64).map(|k| n as i64 + k))
        .collect();
    let checked = reader.check(&db, "db after the load", &sample, |id| {
        dataset.index_of(id).map(|i| dataset.row(i))
    })?;

    // The file-validation share of a load: opening the file alone.
    let mut open_s = Vec::with_capacity(args.repeats);
    for _ in 0..args.repeats {
        let start = Instant::now();
        let snap = Snapshot::open(&new_path)?;
        open_s.push(start.elapsed().as_secs_f64());
        drop(snap);
    }

    let compare = if args.no_read_compare {
        None
    } else {
        Some(read_compare(args, &db, &dataset, &scratch, &registry)?)
    };
    db.close()?;

    let figures = Figures {
        args,
        filesystem,
        snapshot_bytes: info.file_size,
        gen_s,
        build_s,
        loads,
        during: during.summary(),
        snapshot_open_s: median(&open_s),
        checked,
        compare,
    };
    println!("{}", figures.table());
    println!("{}", figures.json());
    Ok(())
}

fn validate_args(args: &LoadArgs) -> Result<()> {
    args::entities(args.entities, 2)?;
    in_range("--repeats", args.repeats, 1, 100)?;
    in_range("--probe", args.probe, 1, 10_000)?;
    in_range("--batch", args.batch, 1, 1 << 20)?;
    args::duration(args.duration)?;
    positive("--iterations", args.iterations)?;
    positive("--load-batch", args.load_batch as u64)
}

/// Whether every probe user reads as the new snapshot has it (event time of the first
/// feature, which every row sets).
fn shows_new(out: &GetResult, new_ts: &[i64]) -> bool {
    out.columns
        .first()
        .is_some_and(|c| c.event_ts == new_ts && c.statuses.iter().all(|s| *s == Status::Present))
}

/// Loads `path` into `db` while a reader thread reads `probe` in a closed loop; returns the
/// timings and the reader's latencies.
fn timed_load(db: &Db, path: &Path, probe: &[i64], new_ts: &[i64]) -> Result<(Load, Latency)> {
    let ready = AtomicBool::new(false);
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let reader = s.spawn(|| -> Result<(Option<Instant>, u64, Latency)> {
            let mut reader = Reader::new(db)?;
            let mut latency = Latency::new()?;
            let mut seen = None;
            let mut reads = 0u64;
            let deadline = Instant::now() + LOAD_TIMEOUT;
            loop {
                // A read that starts after the load returned must see its values.
                let last = done.load(Ordering::Acquire);
                let start = Instant::now();
                let out = reader.read(db, probe)?;
                let end = Instant::now();
                latency.record(end - start);
                reads += 1;
                ready.store(true, Ordering::Release);
                if seen.is_none() && shows_new(out, new_ts) {
                    seen = Some(end);
                }
                if last || end > deadline {
                    return Ok((seen, reads, latency));
                }
            }
        });
        while !ready.load(Ordering::Acquire) && !reader.is_finished() {
            std::thread::yield_now();
        }
        let start = Instant::now();
        let loaded = db.load_snapshot(VIEW, path);
        let call_s = start.elapsed().as_secs_f64();
        done.store(true, Ordering::Release);
        let joined = reader
            .join()
            .map_err(|_| BenchError::WrongAnswer("the reader thread panicked".into()))?;
        loaded?;
        let (seen, reads, latency) = joined?;
        let seen = seen.ok_or_else(|| {
            BenchError::WrongAnswer("the reader never saw the loaded values".into())
        })?;
        Ok((
            Load {
                served_s: seen.saturating_duration_since(start).as_secs_f64(),
                call_s,
                reads,
            },
            latency,
        ))
    })
}

/// Base against delta: p50/p99 of the same gets.
#[derive(Debug, Clone, Copy)]
struct Compare {
    base: Summary,
    delta: Summary,
    fill_s: f64,
}

/// Fills a second Db's delta with the same rows and measures gets against both, alternating.
fn read_compare(
    args: &LoadArgs,
    base_db: &Db,
    dataset: &Dataset,
    scratch: &TempDir,
    registry: &Registry,
) -> Result<Compare> {
    let n = dataset.entities();
    let entity = user_entity(registry)?;
    eprintln!(
        "read path: writing the {n} rows into a second Db's delta ({} rows per write)",
        args.load_batch
    );
    let DbArgs { seed, shards, .. } = args.common;
    let delta_db = open_db(&scratch.join("delta"), registry, FsyncPolicy::Never, shards)?;
    let start = Instant::now();
    write_all(dataset, &entity, args.load_batch, |rows| {
        delta_db.write(VIEW, rows)
    })?;
    let fill_s = start.elapsed().as_secs_f64();
    // Flush the WAL now, so its writeback does not compete with the measurement.
    delta_db.sync()?;
    let stats = delta_db.stats();
    if let Some(v) = stats.views.iter().find(|v| v.view == VIEW) {
        if v.entities != n || v.base_entities != 0 {
            return Err(BenchError::WrongAnswer(format!(
                "the delta Db holds {} entities in memory and {} in a base, expected {n} and 0",
                v.entities, v.base_entities
            )));
        }
    }
    if let Some(v) = base_db.stats().views.iter().find(|v| v.view == VIEW) {
        if v.entities != 0 || v.base_entities != n {
            return Err(BenchError::WrongAnswer(format!(
                "the base Db holds {} entities in memory and {} in its base, expected 0 and {n}",
                v.entities, v.base_entities
            )));
        }
    }

    let refs = stats_refs(USER_STATS.len());
    let opts = ReadOptions::default();
    let (sel_base, sel_delta) = (base_db.select(&refs)?, delta_db.select(&refs)?);
    let features = USER_STATS.len();
    let mut base = EngineSystem::new(
        "snapshot (base)",
        |k: &KeyBatch, o: &mut GetResult| base_db.get(&sel_base, k, &opts, o),
        sel_base.entity().clone(),
        features,
        args.batch,
    );
    let mut delta = EngineSystem::new(
        "delta",
        |k: &KeyBatch, o: &mut GetResult| delta_db.get(&sel_delta, k, &opts, o),
        sel_delta.entity().clone(),
        features,
        args.batch,
    );
    let plan = Plan {
        batch: args.batch,
        duration: args.duration,
        iterations: args.iterations,
        seed,
    };
    let space = KeySpace::new(n, seed)?;
    validate([&mut base, &mut delta], dataset, &space, &plan)?;
    eprintln!(
        "read path: measuring uniform keys, {:.1} s per system",
        args.duration
    );
    let (b, d) = measure(
        [&mut base, &mut delta],
        ["base", "delta"],
        dataset,
        &space,
        Dist::Uniform,
        &plan,
    )?;
    drop((base, delta));
    delta_db.close()?;
    Ok(Compare {
        base: b,
        delta: d,
        fill_s,
    })
}

/// Everything the report prints.
struct Figures<'a> {
    args: &'a LoadArgs,
    filesystem: String,
    snapshot_bytes: u64,
    gen_s: f64,
    build_s: f64,
    loads: Vec<Load>,
    during: Summary,
    snapshot_open_s: f64,
    checked: u64,
    compare: Option<Compare>,
}

impl Figures<'_> {
    fn load_s(&self) -> f64 {
        median_of(&self.loads, |l| l.served_s)
    }

    fn call_s(&self) -> f64 {
        median_of(&self.loads, |l| l.call_s)
    }

    fn target_load_s(&self) -> f64 {
        TARGET_LOAD_S_PER_MILLION * (self.args.entities as f64 / 1e6).max(1.0)
    }

    fn table(&self) -> String {
        let a = self.args;
        let mut t = Table::new([
            "load",
            "served after s",
            "call returned after s",
            "reads meanwhile",
        ]);
        for (i, l) in self.loads.iter().enumerate() {
            t.row([
                (i + 1).to_string(),
                format!("{:.3}", l.served_s),
                format!("{:.3}", l.call_s),
                l.reads.to_string(),
            ]);
        }
        let load = self.load_s();
        let target = self.target_load_s();
        let mut out = format!(
            "Quiver bulk-load benchmark: view {VIEW}, {} entities ({} bytes), {} shards, seed \
             {}, on {} (page cache warm: the file was just written)\n\n{}\n\n\
             build (SnapshotBuilder, rows generated on the fly): {:.3} s; generating the rows \
             alone: {:.3} s\n\
             load → served, median of {}: {load:.3} s; validating the file alone \
             (Snapshot::open): {:.3} s\n\
             reader gets of {} users during the loads: p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs \
             over {} gets; {} users checked after the loads\n\
             target: served within {target:.1} s: {}",
            a.entities,
            self.snapshot_bytes,
            a.common.shards,
            a.common.seed,
            self.filesystem,
            t.render(),
            self.build_s,
            self.gen_s,
            self.loads.len(),
            self.snapshot_open_s,
            a.probe,
            self.during.p50_us,
            self.during.p99_us,
            self.during.max_us,
            self.during.count,
            self.checked,
            verdict(load <= target),
        );
        if let Some(c) = &self.compare {
            let mut t = Table::new(["data in", "p50 µs", "p99 µs", "p99.9 µs", "mean µs", "gets"]);
            for (name, s) in [("snapshot (base)", &c.base), ("delta", &c.delta)] {
                t.row([
                    name.to_owned(),
                    format!("{:.2}", s.p50_us),
                    format!("{:.2}", s.p99_us),
                    format!("{:.2}", s.p999_us),
                    format!("{:.2}", s.mean_us),
                    s.count.to_string(),
                ]);
            }
            let r = ratio(c.base.p50_us, c.delta.p50_us);
            out.push_str(&format!(
                "\n\nread path, gets of {} users × {} features, uniform keys, {} s per system \
                 (delta filled in {:.2} s):\n\n{}\n\n\
                 base / delta p50: {r:.2}× (target at most {TARGET_BASE_DELTA_RATIO}×: {})",
                a.batch,
                USER_STATS.len(),
                a.duration,
                c.fill_s,
                t.render(),
                verdict(r <= TARGET_BASE_DELTA_RATIO),
            ));
        }
        out
    }

    fn json(&self) -> String {
        let a = self.args;
        let c = self.compare.as_ref();
        let field = |get: fn(&Compare) -> Json| c.map_or(Json::Null, get);
        let (base, delta) = (c.map(|c| &c.base), c.map(|c| &c.delta));
        let p50_p99 = [Stat::P50, Stat::P99];
        Fields::new(json!({
            "workload": "load",
            "view": VIEW,
            "entities": a.entities,
            "snapshot_bytes": self.snapshot_bytes,
            "build_s": num(self.build_s),
            "gen_s": num(self.gen_s),
            "load_s": num(self.load_s()),
            "load_all_s": self.loads.iter().map(|l| num(l.served_s)).collect::<Vec<_>>(),
            "load_call_s": num(self.call_s()),
            "snapshot_open_s": num(self.snapshot_open_s),
            "repeats": a.repeats,
            "probe": a.probe,
            "reader_gets": self.during.count,
            "checked_users": self.checked,
            "target_load_s": num(self.target_load_s()),
            "batch": a.batch,
            "base_delta_ratio": field(|c| num(ratio(c.base.p50_us, c.delta.p50_us))),
            "base_delta_p99_ratio": field(|c| num(ratio(c.base.p99_us, c.delta.p99_us))),
            "base_gets": field(|c| json!(c.base.count)),
            "delta_gets": field(|c| json!(c.delta.count)),
            "duration_s": a.duration,
            "shards": a.common.shards,
            "seed": a.common.seed,
            "page_cache": "warm",
            "filesystem": self.filesystem,
        }))
        .latency(
            "reader_",
            Some(&self.during),
            &[Stat::P50, Stat::P99, Stat::MAX],
        )
        .latency("base_", base, &p50_p99)
        .latency("delta_", delta, &p50_p99)
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quiver_engine::{FeatureColumn, ScalarType, ValueType};

    #[test]
    fn new_values_show_only_when_every_probe_user_has_them() {
        let mut out = GetResult::new();
        let mut col = FeatureColumn::new(ValueType::Scalar(ScalarType::Int64));
        col.reset(3);
        out.columns.push(col);
        let want = [10, 20, 30];
        assert!(!shows_new(&out, &want));
        let c = &mut out.columns[0];
        c.statuses.fill(Status::Present);
        c.event_ts.copy_from_slice(&[10, 20, 29]);
        assert!(!shows_new(&out, &want));
        out.columns[0].event_ts[2] = 30;
        assert!(shows_new(&out, &want));
        out.columns[0].statuses[1] = Status::OutsideMaxAge;
        assert!(!shows_new(&out, &want));
        assert!(!shows_new(&GetResult::new(), &want));
    }
}
