//! A child process for crash tests. With `fsync = always` it writes batches to a data
//! directory from several threads while a maintenance thread checkpoints often and a loader
//! thread builds and bulk-loads one snapshot generation after another; it reports each
//! acknowledgement on stdout. The parent kills it with SIGKILL at a random moment and checks
//! the directory against what was acknowledged. What is written and printed is described in
//! `src/crash_oracle.rs`.
//!
//! Usage: `crash_writer <data dir> <registry.toml> <seed> <round> <first generation>`

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use quiver_engine::{
    Clock, Db, DbConfig, FsyncPolicy, KeyPart, Maintenance, Registry, Row, SnapshotBuilder,
    SystemClock, Value,
};
use quiver_tests::crash_oracle as oracle;

/// Pause between a writer's batches.
const WRITE_PAUSE: Duration = Duration::from_millis(3);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let number = |i: usize| args.get(i).and_then(|a| a.parse::<u64>().ok());
    let (6, Some(seed), Some(round), Some(first_generation)) =
        (args.len(), number(3), number(4), number(5))
    else {
        fail("usage: crash_writer <data dir> <registry.toml> <seed> <round> <first generation>");
    };
    let dir = PathBuf::from(&args[1]);
    let registry =
        Registry::load(Path::new(&args[2])).unwrap_or_else(|e| fail(&format!("registry: {e}")));
    let mut config = DbConfig::new(&dir);
    config.registry = Some(registry.clone());
    config.store.shards = 8;
    config.wal.fsync = FsyncPolicy::Always;
    config.wal.segment_size = 64 << 10;
    config.checkpoint_wal_bytes = 16 << 10;
    let db = match Db::open(config, Arc::new(SystemClock)) {
        Ok((db, _)) => Arc::new(db),
        Err(e) => fail(&format!("open failed: {e}")),
    };
    let _maintenance = Maintenance::start(db.clone(), Duration::from_millis(5), |r| match r {
        Ok(st) => eprintln!("checkpoint done in {:.3}s", st.seconds),
        Err(e) => eprintln!("checkpoint failed: {e}"),
    })
    .unwrap_or_else(|e| fail(&format!("maintenance failed: {e}")));
    say("ready");

    let mut threads: Vec<_> = (0..oracle::WRITERS)
        .map(|t| {
            let (db, registry) = (db.clone(), registry.clone());
            std::thread::spawn(move || write_forever(&db, &registry, seed, round, t))
        })
        .collect();
    let staging = oracle::staging_dir(&dir);
    threads.push(std::thread::spawn(move || {
        load_forever(&db, &registry, &staging, first_generation)
    }));
    for t in threads {
        let _ = t.join();
    }
}

/// Writes writer `t`'s items in batches until killed.
fn write_forever(db: &Db, registry: &Registry, seed: u64, round: u64, t: u64) {
    let (Some(entity), Some(view)) = (registry.entity("user"), registry.view(oracle::STATS_VIEW))
    else {
        fail("the registry lacks the user entity or the stats view");
    };
    let features: Vec<usize> = oracle::STATS_FEATURES
        .iter()
        .map(|f| {
            view.feature_index(f)
                .unwrap_or_else(|| fail(&format!("no feature {f}")))
        })
        .collect();
    let mut start = 0;
    loop {
        let end = start + oracle::batch_len(seed, round, t, start);
        let rows: Vec<Row> = (start..end)
            .map(|n| {
                let mut key = Vec::new();
                let id = oracle::stats_id(round, t, n);
                quiver_engine::encode_key(entity, &[KeyPart::Int64(id)], &mut key)
                    .unwrap_or_else(|e| fail(&format!("key: {e}")));
                Row {
                    key,
                    event_ts: SystemClock.now_micros(),
                    created_ts: None,
                    values: features
                        .iter()
                        .copied()
                        .zip(oracle::stats_values(round, t, n))
                        .collect(),
                }
            })
            .collect();
        if let Err(e) = db.write(oracle::STATS_VIEW, &rows) {
            fail(&format!("write failed: {e}"));
        }
        say(&format!("ack {t} {}", end - 1));
        start = end;
        // Paced, so the directory stays small enough for a debug build to checkpoint it many
        // times a second: kills must land in checkpoints, not only in writes.
        std::thread::sleep(WRITE_PAUSE);
    }
}

/// Builds and bulk-loads generation after generation until killed.
fn load_forever(db: &Db, registry: &Registry, staging: &Path, first_generation: u64) {
    // Builds cut short by an earlier kill leave temporary files behind.
    let _ = std::fs::remove_dir_all(staging);
    if let Err(e) = std::fs::create_dir_all(staging) {
        fail(&format!("staging failed: {e}"));
    }
    let (Some(entity), Some(feature)) = (
        registry.entity("user"),
        registry
            .view(oracle::LOAD_VIEW)
            .and_then(|v| v.feature_index(oracle::LOAD_FEATURE)),
    ) else {
        fail("the registry lacks the user entity or the loaded feature");
    };
    for generation in first_generation.. {
        say(&format!("loading {generation}"));
        let path = staging.join(format!("generation-{generation}.qsnap"));
        let now = SystemClock.now_micros();
        let built = (|| {
            let mut b = SnapshotBuilder::create(&path, registry, oracle::LOAD_VIEW, now)?;
            for id in 0..oracle::load_entities(generation) {
                let mut key = Vec::new();
                quiver_engine::encode_key(entity, &[KeyPart::Int64(id)], &mut key)?;
                b.add(&Row {
                    key,
                    event_ts: now,
                    created_ts: None,
                    values: vec![(feature, Value::Vector(oracle::embedding(generation, id)))],
                })?;
            }
            b.finish()
        })();
        if let Err(e) = built {
            fail(&format!("build failed: {e}"));
        }
        if let Err(e) = db.load_snapshot(oracle::LOAD_VIEW, &path) {
            fail(&format!("load failed: {e}"));
        }
        say(&format!("loaded {generation}"));
        // The data directory keeps its own link to the file.
        let _ = std::fs::remove_file(&path);
    }
}

/// Prints one protocol line and flushes it before going on.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn fail(why: &str) -> ! {
    eprintln!("{why}");
    std::process::exit(1);
}
