//! A child process for crash tests: writes to a data directory with `fsync = always` from
//! several threads, printing `ack <thread> <n>` after each write is acknowledged, while a
//! maintenance thread checkpoints often. The parent kills it with SIGKILL at a random moment
//! and checks that every acknowledged write survived.
//!
//! Usage: `crash_writer <data dir> <registry.toml>`

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use quiver_engine::{Clock, Db, DbConfig, KeyPart, Maintenance, Registry, Row, SystemClock, Value};

const THREADS: u64 = 4;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: crash_writer <data dir> <registry.toml>");
        std::process::exit(2);
    }
    let registry = match Registry::load(std::path::Path::new(&args[2])) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let mut config = DbConfig::new(&args[1]);
    config.registry = Some(registry.clone());
    config.store.shards = 8;
    config.wal.segment_size = 64 << 10;
    config.checkpoint_wal_bytes = 16 << 10;
    let db = match Db::open(config, Arc::new(SystemClock)) {
        Ok((db, _)) => Arc::new(db),
        Err(e) => {
            eprintln!("open: {e}");
            std::process::exit(1);
        }
    };
    let _maintenance = Maintenance::start(db.clone(), Duration::from_millis(5), |r| match r {
        Ok(_) => eprintln!("checkpoint done"),
        Err(e) => eprintln!("checkpoint failed: {e}"),
    });
    let entity = registry.entity("user").cloned();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let db = db.clone();
            let entity = entity.clone();
            std::thread::spawn(move || {
                let Some(entity) = entity else { return };
                let stdout = std::io::stdout();
                for n in 0u64.. {
                    let id = (t * 1_000_000 + n) as i64;
                    let mut key = Vec::new();
                    if quiver_engine::encode_key(&entity, &[KeyPart::Int64(id)], &mut key).is_err()
                    {
                        return;
                    }
                    let row = Row {
                        key,
                        event_ts: SystemClock.now_micros(),
                        created_ts: None,
                        values: vec![
                            (0, Value::Int64(id)),
                            (17, Value::String(format!("t{t}n{n}"))),
                        ],
                    };
                    match db.write("user_stats", &[row]) {
                        Ok(_) => {
                            let mut out = stdout.lock();
                            let _ = writeln!(out, "ack {t} {n}");
                            let _ = out.flush();
                        }
                        Err(e) => {
                            eprintln!("write failed: {e}");
                            return;
                        }
                    }
                }
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
}
