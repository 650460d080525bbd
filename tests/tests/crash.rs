//! Durability under kill -9: every write acknowledged with `fsync = always` must survive,
//! including kills in the middle of a checkpoint.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use quiver_engine::{
    Db, DbConfig, GetResult, KeyBatch, KeyPart, ReadOptions, Registry, Status, SystemClock, Value,
};
use quiver_tests::workspace_root;

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn acknowledged_writes_survive_sigkill_at_random_points() {
    let registry_path = workspace_root().join("examples/registry.toml");
    let registry = Registry::load(&registry_path).unwrap();
    let mut seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("seed {seed}");
    let dir = std::env::temp_dir().join(format!("quiver-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut acked: Vec<(u64, u64)> = Vec::new();
    let mut checkpoints = 0;
    for round in 0..6 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_crash_writer"))
            .arg(&dir)
            .arg(&registry_path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let wait = Duration::from_millis(100 + xorshift(&mut seed) % 700);
        std::thread::sleep(wait);
        child.kill().unwrap(); // SIGKILL
        let _ = child.wait();
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert!(
            !err.contains("failed"),
            "round {round}: child reported: {err}"
        );
        checkpoints += err.matches("checkpoint done").count();
        let before = acked.len();
        for line in out.lines() {
            let mut parts = line.split_whitespace();
            if parts.next() == Some("ack") {
                // A line cut by the kill is not an acknowledgement we can trust to parse.
                if let (Some(t), Some(n)) = (parts.next(), parts.next()) {
                    if let (Ok(t), Ok(n)) = (t.parse(), n.parse()) {
                        acked.push((t, n));
                    }
                }
            }
        }
        println!(
            "round {round}: killed after {wait:?}, {} new acks, {checkpoints} checkpoints so far",
            acked.len() - before
        );
        check(&dir, &registry, &acked);
    }
    assert!(
        acked.len() > 100,
        "the child acknowledged too few writes to test anything"
    );
    assert!(
        checkpoints > 0,
        "no checkpoint ran: kills during checkpoints were not tested"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Opens the directory in-process, as a restart would, and checks every acknowledged write.
fn check(dir: &std::path::Path, registry: &Registry, acked: &[(u64, u64)]) {
    let started = Instant::now();
    let mut config = DbConfig::new(dir);
    config.registry = Some(registry.clone());
    config.store.shards = 8;
    let (db, _) = Db::open(config, Arc::new(SystemClock)).unwrap();
    let user = registry.entity("user").unwrap();
    let sel = db
        .select(&["user_stats:txn_count_1h", "user_stats:country"])
        .unwrap();
    let mut out = GetResult::new();
    for chunk in acked.chunks(1000) {
        let mut keys = KeyBatch::new();
        for (t, n) in chunk {
            keys.push(user, &[KeyPart::Int64((t * 1_000_000 + n) as i64)])
                .unwrap();
        }
        db.get(&sel, &keys, &ReadOptions::default(), &mut out)
            .unwrap();
        for (i, (t, n)) in chunk.iter().enumerate() {
            assert_eq!(
                out.columns[0].statuses[i],
                Status::Present,
                "lost acknowledged write {t}/{n}"
            );
            assert_eq!(
                out.columns[0].get(i),
                Some(Value::Int64((t * 1_000_000 + n) as i64))
            );
            assert_eq!(
                out.columns[1].get(i),
                Some(Value::String(format!("t{t}n{n}")))
            );
        }
    }
    db.close().unwrap();
    println!("checked {} acks in {:?}", acked.len(), started.elapsed());
}
