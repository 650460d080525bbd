//! Durability under kill -9. A child process (`crash_writer`) writes batches with
//! `fsync = always`, checkpoints every few KiB of WAL and bulk-loads snapshot generations back
//! to back. The parent kills it with SIGKILL after a random delay, opens the directory itself
//! as a restart would, checks it, and starts the next child on the same directory.
//!
//! The checks use only what the parent saw on the child's stdout and what the child would have
//! written (`src/crash_oracle.rs`):
//! - every acknowledged batch is there with its values;
//! - the batch in flight at the kill is there whole or not at all, and stays so;
//! - nothing past it was ever written, so none of it may appear;
//! - the bulk-loaded view serves exactly one generation, no older than the last acknowledged
//!   load and no newer than the last one started, never going back.
//!
//! Seeded: `QUIVER_CRASH_SEED` if set, else the clock; the seed fixes the kill delays and the
//! child's batch sizes and is printed and named in every failure. Thread timing in the child
//! is not reproducible, so a seed replays the same schedule, not the same interleaving.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use quiver_engine::inspect::{SNAPSHOT_DIR, SNAPSHOT_TEMP_SUFFIX};
use quiver_engine::{
    Db, DbConfig, GetResult, KeyBatch, KeyPart, ReadOptions, Registry, Selection, Status,
    SystemClock, Value,
};
use quiver_tests::crash_oracle as oracle;
use quiver_tests::workspace_root;

const WRITERS: usize = oracle::WRITERS as usize;
/// Kill points per run.
const ROUNDS: u64 = 60;
/// Kill delays are drawn from this range, measured from the child's `ready`.
const DELAY_MS: std::ops::RangeInclusive<u64> = 20..=300;
/// Every this many rounds the child lives longer (`LONG_DELAY_MS`), so checkpoints and bulk
/// loads, which take a few hundred milliseconds in a debug build on a busy machine, also
/// complete, and the kills after them land on a directory they changed.
const LONG_EVERY: u64 = 6;
/// The kill delay of the long rounds.
const LONG_DELAY_MS: std::ops::RangeInclusive<u64> = 600..=1500;
/// Items past the in-flight batch checked to be absent, per writer and round.
const NEVER_WRITTEN: u64 = 16;

/// What the parent has learnt from the children so far.
#[derive(Debug, Default)]
struct Seen {
    /// Per round, per writer.
    writers: Vec<[Writer; WRITERS]>,
    /// The newest generation whose load was acknowledged (0: none).
    loaded: u64,
    /// The newest generation the loader started.
    started: u64,
    /// The generation served at the last check (0: none).
    served: u64,
    /// Batches acknowledged.
    acks: u64,
    /// Automatic checkpoints the children reported finished.
    checkpoints: usize,
    /// Seconds.
    slowest_checkpoint: f64,
    /// Kills while a checkpoint was writing its snapshot files.
    killed_in_checkpoint: usize,
    /// Kills while the loader was building a generation's snapshot file.
    killed_in_build: usize,
    /// Kills after the file was built and before `load_snapshot` returned (which includes
    /// waiting for a checkpoint to finish).
    killed_in_load: usize,
}

/// One writer thread of one round.
#[derive(Debug, Default, Clone, Copy)]
struct Writer {
    /// The last item acknowledged.
    last_acked: Option<u64>,
    /// Whether the batch in flight at the kill was found written (settled by the first check
    /// after the kill; it must never change).
    flight_written: Option<bool>,
}

struct Run {
    seed: u64,
    dir: PathBuf,
    staging: PathBuf,
    registry_path: PathBuf,
    registry: Registry,
}

#[test]
fn acknowledged_writes_and_loads_survive_sigkill_at_random_points() {
    let seed = match std::env::var("QUIVER_CRASH_SEED") {
        Ok(s) => s
            .parse()
            .expect("QUIVER_CRASH_SEED must be an unsigned integer"),
        Err(_) => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    };
    println!("crash test seed {seed} (rerun with QUIVER_CRASH_SEED={seed})");
    let registry_path = workspace_root().join("examples/registry.toml");
    let dir = std::env::temp_dir().join(format!("quiver-crash-{}", std::process::id()));
    let run = Run {
        seed,
        staging: oracle::staging_dir(&dir),
        dir,
        registry: Registry::load(&registry_path).unwrap(),
        registry_path,
    };
    let _ = std::fs::remove_dir_all(&run.dir);
    let started = Instant::now();
    let mut seen = Seen::default();
    for round in 0..ROUNDS {
        kill_one_child(&run, round, &mut seen);
        check(&run, round, &mut seen);
    }
    println!(
        "seed {seed}: {ROUNDS} kills in {:?}: {} acknowledged batches, {} checkpoints (slowest \
         {:.3}s), generation {} served; kills in a checkpoint {}, in a snapshot build {}, in \
         load_snapshot {}",
        started.elapsed(),
        seen.acks,
        seen.checkpoints,
        seen.slowest_checkpoint,
        seen.served,
        seen.killed_in_checkpoint,
        seen.killed_in_build,
        seen.killed_in_load,
    );
    assert!(
        seen.acks > 100,
        "seed {seed}: the children acknowledged too few batches to test anything"
    );
    assert!(
        seen.checkpoints > 0 && seen.loaded > 0,
        "seed {seed}: no checkpoint or no bulk load completed: {seen:?}"
    );
    assert!(
        seen.killed_in_checkpoint > 0 && seen.killed_in_build + seen.killed_in_load > 0,
        "seed {seed}: no kill landed during a checkpoint or during a bulk load: {seen:?}"
    );
    let _ = std::fs::remove_dir_all(&run.dir);
    let _ = std::fs::remove_dir_all(&run.staging);
}

/// Starts a child on the directory, kills it after the round's delay, and learns what it
/// acknowledged.
fn kill_one_child(run: &Run, round: u64, seen: &mut Seen) {
    let ctx = format!("seed {} round {round}", run.seed);
    let first_generation = seen.served + 1;
    let mut child = Command::new(env!("CARGO_BIN_EXE_crash_writer"))
        .arg(&run.dir)
        .arg(&run.registry_path)
        .arg(run.seed.to_string())
        .arg(round.to_string())
        .arg(first_generation.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (ready_tx, ready) = mpsc::channel();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let out = std::thread::spawn(move || {
        let mut lines = Vec::new();
        let mut line = Vec::new();
        while stdout.read_until(b'\n', &mut line).unwrap() > 0 {
            // Only whole lines count: the kill may cut the last one.
            if line.pop() != Some(b'\n') {
                break;
            }
            let text = String::from_utf8(std::mem::take(&mut line)).unwrap();
            if text == "ready" {
                let _ = ready_tx.send(());
            }
            lines.push(text);
        }
        lines
    });
    let mut stderr = child.stderr.take().unwrap();
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).unwrap();
        s
    });
    let range = if round % LONG_EVERY == LONG_EVERY - 1 {
        LONG_DELAY_MS
    } else {
        DELAY_MS
    };
    let delay = Duration::from_millis(
        range.start()
            + oracle::mix(run.seed ^ oracle::mix(round)) % (range.end() - range.start() + 1),
    );
    let became_ready = ready.recv_timeout(Duration::from_secs(30)).is_ok();
    if became_ready {
        std::thread::sleep(delay);
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    let lines = out.join().unwrap();
    let err = err.join().unwrap();
    assert!(
        became_ready && status.signal() == Some(9),
        "{ctx}: the child did not run until killed ({status}); stderr:\n{err}"
    );
    assert!(!err.contains("failed"), "{ctx}: the child reported:\n{err}");
    for line in err.lines() {
        if let Some(secs) = line.strip_prefix("checkpoint done in ") {
            let secs: f64 = secs.trim_end_matches('s').parse().unwrap();
            seen.checkpoints += 1;
            seen.slowest_checkpoint = seen.slowest_checkpoint.max(secs);
        }
    }
    learn(run, round, first_generation, &lines, seen, &ctx);
    note_where_the_kill_landed(run, seen);
    println!(
        "{ctx}: killed after {delay:?}; {} checkpoints and generation {} loaded so far",
        seen.checkpoints, seen.loaded
    );
}

/// Reads the child's protocol lines, checking that it followed the oracle.
fn learn(
    run: &Run,
    round: u64,
    first_generation: u64,
    lines: &[String],
    seen: &mut Seen,
    ctx: &str,
) {
    let mut writers = [Writer::default(); WRITERS];
    let mut next_generation = first_generation;
    let mut loading = None;
    for line in lines {
        let words: Vec<&str> = line.split(' ').collect();
        let number = |i: usize| -> u64 {
            words
                .get(i)
                .and_then(|w| w.parse().ok())
                .unwrap_or_else(|| panic!("{ctx}: bad line from the child: {line:?}"))
        };
        match words[0] {
            "ready" => {}
            "ack" => {
                let (t, n) = (number(1), number(2));
                let last = &mut writers[usize::try_from(t).unwrap()].last_acked;
                let start = last.map_or(0, |l| l + 1);
                assert_eq!(
                    n + 1,
                    start + oracle::batch_len(run.seed, round, t, start),
                    "{ctx}: writer {t} acknowledged a batch the oracle does not predict"
                );
                *last = Some(n);
                seen.acks += 1;
            }
            "loading" => {
                assert_eq!(number(1), next_generation, "{ctx}: {line}");
                loading = Some(next_generation);
                seen.started = next_generation;
                next_generation += 1;
            }
            "loaded" => {
                assert_eq!(Some(number(1)), loading.take(), "{ctx}: {line}");
                seen.loaded = number(1);
            }
            _ => panic!("{ctx}: unexpected line from the child: {line:?}"),
        }
    }
    if let Some(g) = loading {
        let built = run.staging.join(format!("generation-{g}.qsnap")).exists();
        if built {
            seen.killed_in_load += 1;
        } else {
            seen.killed_in_build += 1;
        }
    }
    seen.writers.push(writers);
}

/// Counts a kill in the middle of a checkpoint: it leaves the snapshot files it was writing
/// behind (every open deletes them, so any found are from this kill).
fn note_where_the_kill_landed(run: &Run, seen: &mut Seen) {
    let Ok(entries) = std::fs::read_dir(run.dir.join(SNAPSHOT_DIR)) else {
        return;
    };
    let in_checkpoint = entries.flatten().any(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        name.ends_with(SNAPSHOT_TEMP_SUFFIX) && !name.contains("-load-")
    });
    seen.killed_in_checkpoint += usize::from(in_checkpoint);
}

/// Opens the directory in-process, as a restart would, and checks it.
fn check(run: &Run, round: u64, seen: &mut Seen) {
    let ctx = format!("seed {} round {round}", run.seed);
    let mut config = DbConfig::new(&run.dir);
    config.registry = Some(run.registry.clone());
    config.store.shards = 8;
    let (db, _) = Db::open(config, Arc::new(SystemClock))
        .unwrap_or_else(|e| panic!("{ctx}: reopening failed: {e}"));
    check_writers(run, &db, round, seen, &ctx);
    check_generation(&db, seen, &ctx);
    db.close().unwrap();
}

fn check_writers(run: &Run, db: &Db, round: u64, seen: &mut Seen, ctx: &str) {
    let user = run.registry.entity("user").unwrap();
    let refs: Vec<String> = oracle::STATS_FEATURES
        .iter()
        .map(|f| format!("{}:{f}", oracle::STATS_VIEW))
        .collect();
    let sel = db.select(&refs).unwrap();
    let mut acked = Vec::new();
    for (r, writers) in seen.writers.iter_mut().enumerate() {
        let r = r as u64;
        for (t, w) in writers.iter_mut().enumerate() {
            let t = t as u64;
            let flight = w.last_acked.map_or(0, |l| l + 1);
            let flight_end = flight + oracle::batch_len(run.seed, r, t, flight);
            acked.extend((0..flight).map(|n| (r, t, n)));
            let in_flight: Vec<_> = (flight..flight_end).map(|n| (r, t, n)).collect();
            let states = read_items(db, user, &sel, &in_flight);
            let written = states[0] == Item::Exact;
            let want = if written { Item::Exact } else { Item::Absent };
            for ((r, t, n), state) in in_flight.iter().zip(&states) {
                assert_eq!(
                    *state, want,
                    "{ctx}: the batch in flight at the kill of round {r}, writer {t}, is not \
                     all or nothing: item {n}"
                );
            }
            assert_eq!(
                *w.flight_written.get_or_insert(written),
                written,
                "{ctx}: the batch in flight at the kill of round {r}, writer {t}, changed \
                 from written to not or back"
            );
            let never: Vec<_> = (flight_end..flight_end + NEVER_WRITTEN)
                .map(|n| (r, t, n))
                .collect();
            for ((r, t, n), state) in never.iter().zip(read_items(db, user, &sel, &never)) {
                assert_eq!(
                    state,
                    Item::Absent,
                    "{ctx}: item {r}/{t}/{n} was never written but is there"
                );
            }
        }
    }
    let next_round: Vec<_> = (0..oracle::WRITERS)
        .flat_map(|t| (0..NEVER_WRITTEN).map(move |n| (round + 1, t, n)))
        .collect();
    for ((r, t, n), state) in next_round
        .iter()
        .zip(read_items(db, user, &sel, &next_round))
    {
        assert_eq!(
            state,
            Item::Absent,
            "{ctx}: item {r}/{t}/{n} of a round not run yet is there"
        );
    }
    for chunk in acked.chunks(1000) {
        for ((r, t, n), state) in chunk.iter().zip(read_items(db, user, &sel, chunk)) {
            assert_eq!(
                state,
                Item::Exact,
                "{ctx}: acknowledged item {r}/{t}/{n} is lost or wrong"
            );
        }
    }
}

/// What a read found for one writer item.
#[derive(Debug, Clone, PartialEq)]
enum Item {
    /// Every feature as the oracle says.
    Exact,
    /// No feature at all.
    Absent,
    /// Anything else, described.
    Wrong(String),
}

fn read_items(
    db: &Db,
    user: &quiver_engine::Entity,
    sel: &Selection,
    items: &[(u64, u64, u64)],
) -> Vec<Item> {
    let mut keys = KeyBatch::new();
    for &(r, t, n) in items {
        keys.push(user, &[KeyPart::Int64(oracle::stats_id(r, t, n))])
            .unwrap();
    }
    let mut out = GetResult::new();
    db.get(sel, &keys, &ReadOptions::default(), &mut out)
        .unwrap();
    items
        .iter()
        .enumerate()
        .map(|(i, &(r, t, n))| {
            if out
                .columns
                .iter()
                .all(|c| c.statuses[i] == Status::NotFound)
            {
                return Item::Absent;
            }
            let want = oracle::stats_values(r, t, n);
            let wrong: Vec<String> = out
                .columns
                .iter()
                .zip(&want)
                .zip(oracle::STATS_FEATURES)
                .filter_map(|((col, want), name)| {
                    let ok = match want {
                        Value::Null => col.statuses[i] == Status::NullValue,
                        v => col.get(i).is_some_and(|got| got.bit_eq(v)),
                    };
                    (!ok).then(|| {
                        format!(
                            "{name}: {:?} {:?}, want {want:?}",
                            col.statuses[i],
                            col.get(i)
                        )
                    })
                })
                .collect();
            if wrong.is_empty() {
                Item::Exact
            } else {
                Item::Wrong(wrong.join("; "))
            }
        })
        .collect()
}

/// The loaded view serves one whole generation, at least the last acknowledged one.
fn check_generation(db: &Db, seen: &mut Seen, ctx: &str) {
    let user = db.registry().entity("user").unwrap().clone();
    let sel = db
        .select(&[format!("{}:{}", oracle::LOAD_VIEW, oracle::LOAD_FEATURE)])
        .unwrap();
    let ids: Vec<i64> = (0..oracle::MAX_LOAD_ENTITIES + 8).collect();
    let mut keys = KeyBatch::new();
    for id in &ids {
        keys.push(&user, &[KeyPart::Int64(*id)]).unwrap();
    }
    let mut out = GetResult::new();
    db.get(&sel, &keys, &ReadOptions::default(), &mut out)
        .unwrap();
    let col = &out.columns[0];
    let served = match col.get(0) {
        Some(Value::Vector(v)) => v[0] as u64,
        other => {
            assert_eq!(
                (other, seen.loaded, seen.served),
                (None, 0, 0),
                "{ctx}: no generation is served but one was loaded or served before"
            );
            0
        }
    };
    assert!(
        served >= seen.loaded.max(seen.served) && served <= seen.started,
        "{ctx}: generation {served} is served; acknowledged {}, served before {}, started {}",
        seen.loaded,
        seen.served,
        seen.started
    );
    let count = if served == 0 {
        0
    } else {
        oracle::load_entities(served)
    };
    for (i, id) in ids.iter().enumerate() {
        if *id < count {
            let want = Value::Vector(oracle::embedding(served, *id));
            assert!(
                col.get(i).is_some_and(|v| v.bit_eq(&want)),
                "{ctx}: entity {id} of generation {served} reads {:?} {:?}",
                col.statuses[i],
                col.get(i)
            );
        } else {
            assert_eq!(
                col.statuses[i],
                Status::NotFound,
                "{ctx}: entity {id} is not in generation {served} but is served"
            );
        }
    }
    seen.served = served;
}
