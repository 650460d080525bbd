//! The restart benchmark (W7): how long [`Db::open`] takes to serve a data
//! directory holding a snapshot of N `user_stats` entities and a WAL of M write records after
//! it.
//!
//! The directory is built once: the snapshot with [`SnapshotBuilder`](quiver_engine::SnapshotBuilder)
//! and [`Db::load_snapshot`] (no WAL record; the manifest's checkpoint sequence stays 0, so
//! every WAL record is after it), then M writes of `--wal-batch` rows each (1 by default: every
//! record is a single-row write) to uniformly chosen existing entities, with newer event times
//! and other values, logged with `FsyncPolicy::Never` and fsynced by [`Db::close`]. The same
//! directory is then opened and closed `--repeats` times; each open is timed until it returns
//! (the store is ready to serve: snapshot validated and mapped, WAL replayed). After every open
//! a sample of users is read back and compared with what was written, outside the timing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use quiver_engine::inspect::SNAPSHOT_DIR;
use quiver_engine::{Db, FsyncPolicy, Snapshot, SystemClock, MICROS_PER_SEC};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::dataset::{Dataset, EntityRow, VIEW};
use crate::error::io;
use crate::harness::args::{self, in_range, refuse, DbArgs};
use crate::harness::check::to_row;
use crate::harness::db::{build_snapshot, db_config, open_db, registry, user_entity, Reader};
use crate::harness::host::{now_secs, scratch_on};
use crate::harness::report::{median, median_of, num, verdict, Table};
use crate::scratch::{bytes_under, drop_from_page_cache};
use crate::{BenchError, Result};

/// Flags of `quiver-bench restart`.
#[derive(Debug, Clone, Args)]
#[command(mut_arg("seed", |a| a.help("Seed of the dataset and of the WAL's key choice")))]
#[command(mut_arg("dir", |a| a.help(
    "Parent of the scratch data directory (default: the system temporary directory)"
)))]
pub struct RestartArgs {
    /// Entities in the `user_stats` snapshot.
    #[arg(long, default_value_t = 1_000_000)]
    pub entities: u64,
    /// WAL records (write calls) after the snapshot.
    #[arg(long, default_value_t = 100_000)]
    pub wal_records: u64,
    /// Rows per WAL record.
    #[arg(long, default_value_t = 1)]
    pub wal_batch: usize,
    /// Timed opens of the directory; the median is reported.
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    /// Drop the directory's files from the page cache before each open (they are otherwise
    /// cached, having just been written or read).
    #[arg(long)]
    pub cold: bool,
    /// Users read back and checked after each open (plus some never written).
    #[arg(long, default_value_t = 20_000)]
    pub check: u64,
    #[command(flatten)]
    /// Flags every data-directory workload shares.
    pub common: DbArgs,
}

/// Goal: 1M entities + 100k WAL records open in this many seconds.
const TARGET_RESTART_S: f64 = 0.5;

/// Seed salts: the WAL's values and keys are unrelated to the snapshot's.
const SALT_WAL_VALUES: u64 = 0x7761_6c76;
const SALT_WAL_KEYS: u64 = 0x7761_6c6b;
const SALT_CHECK: u64 = 0x6368_6b72;

/// Most WAL rows: their event times are one microsecond apart within a window this wide.
const MAX_WAL_ROWS: u64 = 1 << 30;

/// What each user should read as: the snapshot's row, unless a WAL write touched it last.
#[derive(Debug)]
pub(crate) struct Expected {
    base: Dataset,
    wal: Dataset,
    /// Event time of WAL row 0; row `g` has `wal_ts0 + g` µs.
    wal_ts0: i64,
    /// Entity index → number of the last WAL row written to it.
    last_write: HashMap<u64, u64>,
}

impl Expected {
    /// The snapshot holds `entities` users whose event times are all older than any WAL row
    /// of the `wal_rows` to come, and the newest WAL row is no later than `now_secs`.
    pub(crate) fn new(seed: u64, entities: u64, wal_rows: u64, now_secs: i64) -> Self {
        let wal_span_secs = i64::try_from(wal_rows / MICROS_PER_SEC as u64).unwrap_or(0) + 1;
        let base_now = now_secs - wal_span_secs - 1;
        Self {
            base: Dataset::new(seed, entities, base_now),
            wal: Dataset::new(seed ^ SALT_WAL_VALUES, wal_rows.max(1), base_now),
            wal_ts0: (base_now + 1) * MICROS_PER_SEC,
            last_write: HashMap::new(),
        }
    }

    /// The snapshot's row of entity `index`.
    pub(crate) fn base_row(&self, index: u64) -> EntityRow {
        self.base.row(index)
    }

    /// WAL row `g`, written to entity `index`: another row's values, a newer event time.
    /// Records it as that entity's last write.
    pub(crate) fn wal_row(&mut self, g: u64, index: u64) -> EntityRow {
        self.last_write.insert(index, g);
        self.wal_row_of(g, index)
    }

    fn wal_row_of(&self, g: u64, index: u64) -> EntityRow {
        let mut r = self.wal.row(g);
        r.user_id = self.base.user_id(index);
        r.event_ts = self.wal_ts0 + g as i64;
        r
    }

    /// What `user_id` must read as after the snapshot and every WAL row (`None`: not found).
    pub(crate) fn row(&self, user_id: i64) -> Option<EntityRow> {
        let index = self.base.index_of(user_id)?;
        Some(match self.last_write.get(&index) {
            Some(&g) => self.wal_row_of(g, index),
            None => self.base.row(index),
        })
    }

    /// Users to check: the first and last, up to `n / 2` the WAL wrote to, the rest uniform,
    /// then `extra` that were never written.
    fn sample(&self, n: u64, extra: usize, seed: u64) -> Vec<i64> {
        let entities = self.base.entities();
        let mut ids = vec![0, self.base.user_id(entities - 1)];
        let mut touched: Vec<u64> = self.last_write.keys().copied().collect();
        touched.sort_unstable();
        let step = (touched.len() as u64 / (n / 2).max(1)).max(1) as usize;
        ids.extend(
            touched
                .iter()
                .step_by(step)
                .take((n / 2) as usize)
                .map(|&i| self.base.user_id(i)),
        );
        let mut rng = SmallRng::seed_from_u64(seed);
        while (ids.len() as u64) < n.max(2) {
            ids.push(self.base.user_id(rng.random_range(0..entities)));
        }
        ids.extend((0..extra as i64).map(|i| entities as i64 + i));
        ids.push(-1);
        ids
    }
}

/// One timed open.
#[derive(Debug, Clone, Copy)]
struct Open {
    seconds: f64,
    replayed: u64,
    cold_files: u64,
}

/// Runs the restart benchmark and prints its report (table, then a JSON line) on stdout.
pub fn run_restart(args: &RestartArgs) -> Result<()> {
    validate_args(args)?;
    let registry = registry()?;
    let entity = user_entity(&registry)?;
    let DbArgs { seed, shards, .. } = args.common;
    let (scratch, filesystem) = scratch_on(args.common.dir.as_deref(), "restart")?;
    let data = scratch.join("data");
    let config = || db_config(&data, &registry, FsyncPolicy::Never, shards);
    let wal_rows = args.wal_records * args.wal_batch as u64;
    let mut expected = Expected::new(seed, args.entities, wal_rows, now_secs());

    eprintln!("building a snapshot of {} entities", args.entities);
    let built = scratch.join("user_stats.qsnap");
    let (info, build_s) = build_snapshot(
        &built,
        &registry,
        args.entities,
        |i| expected.base_row(i),
        "snapshot",
    )?;
    eprintln!("  {} bytes in {build_s:.2} s", info.file_size);

    let db = open_db(&data, &registry, FsyncPolicy::Never, shards)?;
    db.load_snapshot(VIEW, &built)?;
    std::fs::remove_file(&built).map_err(io(format!("removing {}", built.display())))?;
    eprintln!(
        "writing {} WAL records of {} row(s) each",
        args.wal_records, args.wal_batch
    );
    let write_start = Instant::now();
    let mut rng = SmallRng::seed_from_u64(seed ^ SALT_WAL_KEYS);
    let mut rows = Vec::with_capacity(args.wal_batch);
    let step = (args.wal_records / 10).max(1);
    for j in 0..args.wal_records {
        rows.clear();
        for r in 0..args.wal_batch as u64 {
            let index = rng.random_range(0..args.entities);
            let g = j * args.wal_batch as u64 + r;
            rows.push(to_row(&entity, expected.wal_row(g, index))?);
        }
        db.write(VIEW, &rows)?;
        if (j + 1) % step == 0 && j + 1 < args.wal_records {
            eprintln!("  {} / {}", j + 1, args.wal_records);
        }
    }
    let stats = db.stats();
    db.close()?;
    eprintln!(
        "  {:.2} s; the WAL holds {} bytes in {} segment(s)",
        write_start.elapsed().as_secs_f64(),
        stats.wal.bytes,
        stats.wal.segments
    );
    let snapshot_bytes = stats
        .views
        .iter()
        .find(|v| v.view == VIEW)
        .map_or(0, |v| v.base_bytes);
    let wal_bytes = bytes_under(&data.join(quiver_engine::inspect::WAL_DIR))?;

    let sample = expected.sample(args.check.min(args.entities), 100, seed ^ SALT_CHECK);
    let mut opens = Vec::with_capacity(args.repeats);
    let mut checked = 0;
    for rep in 1..=args.repeats {
        let cold_files = if args.cold {
            drop_from_page_cache(&data)?
        } else {
            0
        };
        let cfg = config();
        let start = Instant::now();
        let (db, report) = Db::open(cfg, Arc::new(SystemClock))?;
        let seconds = start.elapsed().as_secs_f64();
        if report.wal.replayed != args.wal_records {
            return Err(BenchError::WrongAnswer(format!(
                "open replayed {} WAL records, {} were written",
                report.wal.replayed, args.wal_records
            )));
        }
        let mut reader = Reader::new(&db)?;
        checked = reader.check(&db, "restarted db", &sample, |id| expected.row(id))?;
        db.close()?;
        eprintln!("  open {rep}: {seconds:.3} s, {checked} users checked");
        opens.push(Open {
            seconds,
            replayed: report.wal.replayed,
            cold_files,
        });
    }

    // The snapshot's share: validating and mapping the file alone, as open does.
    let snap_path = single_snapshot(&data.join(SNAPSHOT_DIR))?;
    let mut snap_open = Vec::with_capacity(args.repeats);
    for _ in 0..args.repeats {
        if args.cold {
            drop_from_page_cache(&data)?;
        }
        let start = Instant::now();
        let snap = Snapshot::open(&snap_path)?;
        snap_open.push(start.elapsed().as_secs_f64());
        drop(snap);
    }

    let figures = Figures {
        args,
        filesystem,
        snapshot_bytes,
        wal_bytes,
        build_s,
        opens,
        snapshot_open_s: median(&snap_open),
        checked,
    };
    println!("{}", figures.table());
    println!("{}", figures.json());
    Ok(())
}

fn validate_args(args: &RestartArgs) -> Result<()> {
    args::entities(args.entities, 1)?;
    in_range("--wal-batch", args.wal_batch, 1, 100_000)?;
    if args.wal_records.saturating_mul(args.wal_batch as u64) > MAX_WAL_ROWS {
        return refuse(format!(
            "--wal-records × --wal-batch must be at most {MAX_WAL_ROWS}"
        ));
    }
    in_range("--repeats", args.repeats, 1, 1000)?;
    in_range("--check", args.check, 0, 10_000_000)
}

/// The one snapshot file in `dir`.
fn single_snapshot(dir: &Path) -> Result<PathBuf> {
    let io = |source| BenchError::Io {
        what: format!("listing {}", dir.display()),
        source,
    };
    let mut found = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io)? {
        let p = e.map_err(io)?.path();
        if p.extension()
            .is_some_and(|x| x == quiver_engine::inspect::SNAPSHOT_EXTENSION)
        {
            found.push(p);
        }
    }
    match found.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(BenchError::WrongAnswer(format!(
            "expected one snapshot in {}, found {found:?}",
            dir.display()
        ))),
    }
}

/// Everything the report prints.
struct Figures<'a> {
    args: &'a RestartArgs,
    filesystem: String,
    snapshot_bytes: u64,
    wal_bytes: u64,
    build_s: f64,
    opens: Vec<Open>,
    snapshot_open_s: f64,
    checked: u64,
}

impl Figures<'_> {
    fn restart_s(&self) -> f64 {
        median_of(&self.opens, |o| o.seconds)
    }

    fn page_cache(&self) -> &'static str {
        if self.args.cold {
            "cold"
        } else {
            "warm"
        }
    }

    fn table(&self) -> String {
        let a = self.args;
        let mut t = Table::new(["open", "page cache", "seconds", "WAL records replayed"]);
        for (i, o) in self.opens.iter().enumerate() {
            t.row([
                (i + 1).to_string(),
                if a.cold {
                    format!("cold ({} files dropped)", o.cold_files)
                } else {
                    "warm".into()
                },
                format!("{:.3}", o.seconds),
                o.replayed.to_string(),
            ]);
        }
        let restart = self.restart_s();
        format!(
            "Quiver restart benchmark: view {VIEW}, {} entities in the snapshot ({} bytes), \
             {} WAL records of {} row(s) ({} bytes), {} shards, seed {}, on {}\n\n{}\n\n\
             restart (open → ready), median of {}: {restart:.3} s; of which validating and \
             mapping the snapshot alone takes {:.3} s; the rest is mostly WAL replay\n\
             snapshot built in {:.2} s; {} users checked after each open\n\
             target: at most {TARGET_RESTART_S} s: {}",
            a.entities,
            self.snapshot_bytes,
            a.wal_records,
            a.wal_batch,
            self.wal_bytes,
            a.common.shards,
            a.common.seed,
            self.filesystem,
            t.render(),
            self.opens.len(),
            self.snapshot_open_s,
            self.build_s,
            self.checked,
            verdict(restart <= TARGET_RESTART_S),
        )
    }

    fn json(&self) -> String {
        let a = self.args;
        let secs: Vec<f64> = self.opens.iter().map(|o| o.seconds).collect();
        json!({
            "workload": "restart",
            "view": VIEW,
            "entities": a.entities,
            "wal_records": a.wal_records,
            "wal_batch": a.wal_batch,
            "wal_rows": a.wal_records * a.wal_batch as u64,
            "snapshot_bytes": self.snapshot_bytes,
            "wal_bytes": self.wal_bytes,
            "restart_s": num(self.restart_s()),
            "restart_min_s": num(secs.iter().copied().fold(f64::INFINITY, f64::min)),
            "restart_max_s": num(secs.iter().copied().fold(0.0, f64::max)),
            "restart_all_s": secs.iter().map(|&s| num(s)).collect::<Vec<_>>(),
            "snapshot_open_s": num(self.snapshot_open_s),
            "replay_s": num(self.restart_s() - self.snapshot_open_s),
            "build_s": num(self.build_s),
            "repeats": a.repeats,
            "page_cache": self.page_cache(),
            "checked_users": self.checked,
            "shards": a.common.shards,
            "seed": a.common.seed,
            "filesystem": self.filesystem,
            "target_s": TARGET_RESTART_S,
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_wal_write_wins_and_is_newer_than_the_snapshot() {
        let now = 1_700_000_000;
        let mut e = Expected::new(7, 100, 10, now);
        let oldest_wal = e.wal_ts0;
        for i in 0..100 {
            let r = e.base_row(i);
            assert!(r.event_ts < oldest_wal);
            assert_eq!(r.user_id, i as i64);
        }
        let first = e.wal_row(0, 5);
        let second = e.wal_row(1, 5);
        e.wal_row(2, 9);
        assert!(second.event_ts > first.event_ts);
        assert!(second.event_ts <= now * MICROS_PER_SEC);
        assert_eq!(e.row(5), Some(second));
        assert_ne!(e.row(5), Some(first));
        assert_eq!(e.row(9).map(|r| r.user_id), Some(9));
        assert_eq!(e.row(3), Some(e.base_row(3)));
        assert_eq!(e.row(100), None);
        assert_eq!(e.row(-1), None);
    }

    #[test]
    fn the_check_sample_covers_both_sources_and_unknown_users() {
        let mut e = Expected::new(7, 1000, 50, 1_700_000_000);
        for g in 0..50 {
            e.wal_row(g, g * 7);
        }
        let ids = e.sample(40, 5, 1);
        assert_eq!(&ids[..2], &[0, 999]);
        let known: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|&i| (0..1000).contains(&i))
            .collect();
        assert_eq!(known.len(), 40);
        assert!(known[2..22]
            .iter()
            .all(|&i| e.last_write.contains_key(&(i as u64))));
        assert_eq!(ids.len() - known.len(), 6);
    }
}
