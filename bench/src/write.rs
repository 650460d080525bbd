//! The durable write benchmark: throughput and acknowledgement latency of [`Db::write`] with
//! `FsyncPolicy::Always` (a write is acknowledged once its WAL batch is fsynced) for 1, 8, 64
//! concurrent writers. Group commit is what makes many writers faster than one: concurrent
//! appends share one `write` and one fsync.
//!
//! For each rows-per-write value and each writer count, a fresh data directory is opened and
//! every writer thread writes batches of rows for uniformly chosen users (all 20 features of
//! `user_stats`) in a closed loop, until `--duration` has passed or `--max-writes` writes were
//! issued in all. Building a batch is not timed; each `Db::write` call is, from call to return.
//! The whole sweep runs `--rounds` times, so that a burst of disk contention from a neighbour
//! hits one round of every point rather than all of one point; a point's throughput is the
//! median over its rounds, its latencies are all rounds' together.
//!
//! The raw cost of appending 256 bytes (about one single-row WAL frame) and `fdatasync`ing on
//! the same filesystem is measured in every round too, for scale: it bounds what one writer
//! can do.

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use clap::Args;
use quiver_engine::{FsyncPolicy, Registry};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value as Json};

use crate::dataset::{Dataset, VIEW};
use crate::harness::args::{self, counts, in_range, positive, DbArgs};
use crate::harness::check::to_row;
use crate::harness::db::{open_db, registry, user_entity};
use crate::harness::host::{now_secs, scratch_on};
use crate::harness::report::{median, num, ratio, Fields, Latency, Stat, Summary, Table};
use crate::scratch::scratch_dir;
use crate::{BenchError, Result};
use quiver_testkit::TempDir;

/// Flags of `quiver-bench write`.
#[derive(Debug, Clone, Args)]
#[command(mut_arg("seed", |a| a.help("Seed of the dataset and of the writers' key choice")))]
#[command(mut_arg("dir", |a| a.help(
    "Parent of the scratch data directories (default: the system temporary directory)"
)))]
pub struct WriteArgs {
    /// Concurrent writer counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    pub writers: Vec<usize>,
    /// Rows per write to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,100")]
    pub rows: Vec<usize>,
    /// Seconds per measurement (each writer count, each rows-per-write, each round).
    #[arg(long, default_value_t = 2.0)]
    pub duration: f64,
    /// Times the whole sweep is run; throughputs are medians over rounds.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Most writes per measurement, all writers together.
    #[arg(long, default_value_t = 1_000_000)]
    pub max_writes: u64,
    /// Users the writes are spread over.
    #[arg(long, default_value_t = 1_000_000)]
    pub entities: u64,
    #[command(flatten)]
    /// Flags every data-directory workload shares.
    pub common: DbArgs,
}

/// fdatasyncs timed for the raw-disk reference, per round.
const RAW_FSYNCS: u32 = 200;
/// ... or at most this long.
const RAW_FSYNC_TIME: Duration = Duration::from_secs(2);
/// Bytes appended before each raw fdatasync: about one single-row WAL frame.
const RAW_APPEND: usize = 256;

/// One round of one point.
#[derive(Debug)]
struct Sample {
    writes: u64,
    seconds: f64,
    latency: Latency,
    fsyncs: u64,
    wal_batches: u64,
}

/// One measured point, over all rounds.
#[derive(Debug, Clone)]
struct Point {
    rows: usize,
    writers: usize,
    /// Writes per second of each round.
    rates: Vec<f64>,
    writes: u64,
    latency: Summary,
    fsyncs: u64,
    wal_batches: u64,
}

impl Point {
    /// Median over rounds.
    fn writes_per_s(&self) -> f64 {
        median(&self.rates)
    }

    fn rows_per_s(&self) -> f64 {
        self.writes_per_s() * self.rows as f64
    }

    fn writes_per_fsync(&self) -> f64 {
        ratio(self.writes as f64, self.fsyncs as f64)
    }
}

/// Runs the write benchmark and prints its report (table, then a JSON line) on stdout.
pub fn run_write(args: &WriteArgs) -> Result<()> {
    validate_args(args)?;
    let registry = registry()?;
    let (scratch, filesystem) = scratch_on(args.common.dir.as_deref(), "write")?;
    let dataset = Dataset::new(args.common.seed, args.entities, now_secs());
    let mut raw = Latency::new()?;
    let mut samples: Vec<((usize, usize), Vec<Sample>)> = Vec::new();
    for round in 1..=args.rounds {
        let r = raw_fsync(&scratch)?;
        let s = r.summary();
        eprintln!(
            "round {round}/{}: raw {RAW_APPEND}-byte append + fdatasync: p50 {:.0} µs, p99 {:.0} µs",
            args.rounds, s.p50_us, s.p99_us
        );
        raw.add(&r)?;
        for &rows in &args.rows {
            for &writers in &args.writers {
                let sample = measure_point(args, &registry, &dataset, &scratch, rows, writers)?;
                let rate = sample.writes as f64 / sample.seconds;
                eprintln!(
                    "  {writers} writer(s), {rows} row(s)/write: {rate:.0} writes/s, \
                     {:.1} writes per fsync",
                    ratio(sample.writes as f64, sample.fsyncs as f64)
                );
                match samples.iter_mut().find(|(k, _)| *k == (rows, writers)) {
                    Some((_, v)) => v.push(sample),
                    None => samples.push(((rows, writers), vec![sample])),
                }
            }
        }
    }
    let points = samples
        .into_iter()
        .map(|((rows, writers), v)| point(rows, writers, v))
        .collect::<Result<Vec<_>>>()?;
    let figures = Figures {
        args,
        filesystem,
        raw: raw.summary(),
        points,
    };
    println!("{}", figures.table());
    println!("{}", figures.json());
    Ok(())
}

fn validate_args(args: &WriteArgs) -> Result<()> {
    counts("--writers", "counts", &args.writers, 1024)?;
    counts("--rows", "sizes", &args.rows, 10_000)?;
    args::duration(args.duration)?;
    in_range("--rounds", args.rounds, 1, 100)?;
    positive("--max-writes", args.max_writes)?;
    args::entities(args.entities, 1)
}

/// Appends of [`RAW_APPEND`] bytes, each followed by fdatasync, in a loop: the disk's floor
/// for one writer.
fn raw_fsync(scratch: &TempDir) -> Result<Latency> {
    let path = scratch.join("raw-fsync");
    let io = |source| BenchError::Io {
        what: format!("writing {}", path.display()),
        source,
    };
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io)?;
    let block = [0x5au8; RAW_APPEND];
    let mut latency = Latency::new()?;
    let start = Instant::now();
    for _ in 0..RAW_FSYNCS {
        let t = Instant::now();
        file.write_all(&block).map_err(io)?;
        file.sync_data().map_err(io)?;
        latency.record(t.elapsed());
        if start.elapsed() > RAW_FSYNC_TIME {
            break;
        }
    }
    drop(file);
    std::fs::remove_file(&path).map_err(io)?;
    Ok(latency)
}

/// Folds one point's rounds together.
fn point(rows: usize, writers: usize, samples: Vec<Sample>) -> Result<Point> {
    let mut latency = Latency::new()?;
    for s in &samples {
        latency.add(&s.latency)?;
    }
    Ok(Point {
        rows,
        writers,
        rates: samples
            .iter()
            .map(|s| s.writes as f64 / s.seconds)
            .collect(),
        writes: samples.iter().map(|s| s.writes).sum(),
        latency: latency.summary(),
        fsyncs: samples.iter().map(|s| s.fsyncs).sum(),
        wal_batches: samples.iter().map(|s| s.wal_batches).sum(),
    })
}

/// One writer count and batch size against a fresh directory.
fn measure_point(
    args: &WriteArgs,
    registry: &Registry,
    dataset: &Dataset,
    scratch: &TempDir,
    rows: usize,
    writers: usize,
) -> Result<Sample> {
    let dir = scratch_dir(Some(scratch.path()), &format!("r{rows}-w{writers}"))?;
    let entity = user_entity(registry)?;
    let db = open_db(
        dir.path(),
        registry,
        FsyncPolicy::Always,
        args.common.shards,
    )?;
    let before = db.stats().wal;
    let issued = AtomicU64::new(0);
    let barrier = Barrier::new(writers + 1);
    let time = Duration::from_secs_f64(args.duration);
    let (writes, seconds, latency) = std::thread::scope(|s| -> Result<(u64, f64, Latency)> {
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let (db, entity, issued, barrier) = (&db, &entity, &issued, &barrier);
                s.spawn(move || -> Result<(u64, Latency)> {
                    let mut rng =
                        SmallRng::seed_from_u64(args.common.seed ^ ((w as u64 + 1) << 32));
                    let mut latency = Latency::new()?;
                    let mut batch = Vec::with_capacity(rows);
                    let mut done = 0;
                    barrier.wait();
                    let start = Instant::now();
                    while start.elapsed() < time
                        && issued.fetch_add(1, Ordering::Relaxed) < args.max_writes
                    {
                        batch.clear();
                        for _ in 0..rows {
                            let i = rng.random_range(0..dataset.entities());
                            batch.push(to_row(entity, dataset.row(i))?);
                        }
                        let t = Instant::now();
                        db.write(VIEW, &batch)?;
                        latency.record(t.elapsed());
                        done += 1;
                    }
                    Ok((done, latency))
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let mut total = Latency::new()?;
        let mut writes = 0;
        let mut first_error = None;
        for h in handles {
            match h.join() {
                Ok(Ok((n, l))) => {
                    writes += n;
                    total.add(&l)?;
                }
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(_) => {
                    first_error
                        .get_or_insert(BenchError::WrongAnswer("a writer thread panicked".into()));
                }
            }
        }
        let seconds = start.elapsed().as_secs_f64();
        match first_error {
            Some(e) => Err(e),
            None => Ok((writes, seconds, total)),
        }
    })?;
    let after = db.stats().wal;
    db.close()?;
    drop(dir);
    Ok(Sample {
        writes,
        seconds,
        latency,
        fsyncs: after.fsyncs - before.fsyncs,
        wal_batches: after.batches - before.batches,
    })
}

/// The JSON prefix of a point: none for the first rows-per-write value, `r<rows>_` for others.
fn prefix(rows: usize, first_rows: usize) -> String {
    if rows == first_rows {
        String::new()
    } else {
        format!("r{rows}_")
    }
}

/// Everything the report prints.
struct Figures<'a> {
    args: &'a WriteArgs,
    filesystem: String,
    raw: Summary,
    points: Vec<Point>,
}

impl Figures<'_> {
    /// Throughput with the most writers over throughput with the fewest, for `rows`.
    fn speedup(&self, rows: usize) -> Option<(usize, usize, f64)> {
        let of = |w: usize| {
            self.points
                .iter()
                .find(|p| p.rows == rows && p.writers == w)
        };
        let lo = *self.args.writers.iter().min()?;
        let hi = *self.args.writers.iter().max()?;
        if lo == hi {
            return None;
        }
        Some((
            lo,
            hi,
            ratio(of(hi)?.writes_per_s(), of(lo)?.writes_per_s()),
        ))
    }

    fn table(&self) -> String {
        let mut t = Table::new([
            "rows/write",
            "writers",
            "writes/s",
            "rounds writes/s",
            "rows/s",
            "ack p50 µs",
            "ack p99 µs",
            "ack max µs",
            "writes",
            "fsyncs",
            "writes/fsync",
        ]);
        for p in &self.points {
            t.row([
                p.rows.to_string(),
                p.writers.to_string(),
                format!("{:.0}", p.writes_per_s()),
                p.rates
                    .iter()
                    .map(|r| format!("{r:.0}"))
                    .collect::<Vec<_>>()
                    .join(" / "),
                format!("{:.0}", p.rows_per_s()),
                format!("{:.0}", p.latency.p50_us),
                format!("{:.0}", p.latency.p99_us),
                format!("{:.0}", p.latency.max_us),
                p.writes.to_string(),
                p.fsyncs.to_string(),
                format!("{:.1}", p.writes_per_fsync()),
            ]);
        }
        let mut out = format!(
            "Quiver durable write benchmark: view {VIEW}, FsyncPolicy::Always, {} s per point \
             and round, {} rounds (writes/s: median of the rounds), writes to {} users, on {}\n\
             raw {RAW_APPEND}-byte append + fdatasync on that filesystem: p50 {:.0} µs, \
             p99 {:.0} µs (one writer's ceiling ≈ {:.0} writes/s)\n\n{}",
            self.args.duration,
            self.args.rounds,
            self.args.entities,
            self.filesystem,
            self.raw.p50_us,
            self.raw.p99_us,
            ratio(1e6, self.raw.p50_us),
            t.render(),
        );
        for &rows in &self.args.rows {
            if let Some((lo, hi, s)) = self.speedup(rows) {
                out.push_str(&format!(
                    "\ngroup commit, {rows} row(s) per write: {hi} writers do {s:.1}× the writes/s \
                     of {lo} (perfect sharing of fsyncs would give {}×)",
                    hi / lo
                ));
            }
        }
        out
    }

    fn json(&self) -> String {
        let a = self.args;
        let first_rows = a.rows[0];
        let mut m = Fields::new(json!({
            "workload": "write",
            "view": VIEW,
            "fsync": "always",
            "writers": a.writers,
            "rows": a.rows,
            "duration_s": a.duration,
            "rounds": a.rounds,
            "entities": a.entities,
            "shards": a.common.shards,
            "seed": a.common.seed,
            "filesystem": self.filesystem,
        }))
        .latency("raw_fsync_", Some(&self.raw), &[Stat::P50, Stat::P99]);
        for p in &self.points {
            let k = format!("{}w{}_", prefix(p.rows, first_rows), p.writers);
            m.insert(format!("{k}writes_per_s"), num(p.writes_per_s()));
            m.insert(
                format!("{k}writes_per_s_rounds"),
                json!(p.rates.iter().map(|&r| num(r)).collect::<Vec<_>>()),
            );
            m.insert(format!("{k}rows_per_s"), num(p.rows_per_s()));
            m = m.latency(&k, Some(&p.latency), &[Stat::P50, Stat::P99, Stat::MAX]);
            m.insert(format!("{k}writes"), json!(p.writes));
            m.insert(format!("{k}fsyncs"), json!(p.fsyncs));
            m.insert(format!("{k}wal_batches"), json!(p.wal_batches));
            m.insert(format!("{k}writes_per_fsync"), num(p.writes_per_fsync()));
        }
        for &rows in &a.rows {
            m.insert(
                format!("{}group_commit_speedup", prefix(rows, first_rows)),
                self.speedup(rows).map_or(Json::Null, |(_, _, s)| num(s)),
            );
        }
        m.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_keys_are_prefixed_for_all_but_the_first_batch_size() {
        assert_eq!(prefix(1, 1), "");
        assert_eq!(prefix(100, 1), "r100_");
    }

    #[test]
    fn bad_writer_lists_are_refused() {
        let args = |writers: Vec<usize>, rows: Vec<usize>| WriteArgs {
            writers,
            rows,
            duration: 1.0,
            rounds: 1,
            max_writes: 10,
            entities: 10,
            common: DbArgs {
                seed: 1,
                shards: 4,
                dir: None,
            },
        };
        assert!(validate_args(&args(vec![1, 8, 64], vec![1, 100])).is_ok());
        assert!(validate_args(&args(vec![], vec![1])).is_err());
        assert!(validate_args(&args(vec![0, 8], vec![1])).is_err());
        assert!(validate_args(&args(vec![1], vec![0])).is_err());
    }
}
