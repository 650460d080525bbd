//! What the crash test's child writes, computed from its arguments alone: the child
//! (`src/bin/crash_writer.rs`) writes it and the parent (`tests/crash.rs`) checks the store
//! against it, including for writes that were never acknowledged.
//!
//! Protocol: `crash_writer <data dir> <registry.toml> <seed> <round> <first generation>`
//! prints on stdout, one line each, flushed before it goes on:
//! - `ready` once the directory is open;
//! - `ack <thread> <n>` once writer `thread`'s batch ending with item `n` is acknowledged
//!   (batches are consecutive runs of items, [`batch_len`] long, starting at 0);
//! - `loading <generation>` before it starts building the bulk-load snapshot of a generation,
//!   `loaded <generation>` once `load_snapshot` of it returned.
//!
//! and on stderr `checkpoint done in <seconds>s` after each automatic checkpoint, or a line
//! containing `failed` when something went wrong.

use std::path::{Path, PathBuf};

use quiver_engine::Value;

/// Writer threads in the child.
pub const WRITERS: u64 = 4;

/// The view the writers write (one entity per item).
pub const STATS_VIEW: &str = "user_stats";

/// The features each item writes, in the order of [`stats_values`].
pub const STATS_FEATURES: [&str; 4] = ["txn_count_1h", "country", "refund_ratio", "is_premium"];

/// The view the loader replaces wholesale with each generation.
pub const LOAD_VIEW: &str = "user_embedding";

/// The loader's only feature (a `vector<64>`).
pub const LOAD_FEATURE: &str = "embedding";

/// The most entities any generation has.
pub const MAX_LOAD_ENTITIES: i64 = 64;

/// Items per writer and round stay below this (they are part of the entity id).
const ITEMS: u64 = 1_000_000;

/// The entity id of writer `thread`'s item `n` in round `round`.
pub fn stats_id(round: u64, thread: u64, n: u64) -> i64 {
    ((round * WRITERS + thread) * ITEMS + n) as i64
}

/// The values of [`STATS_FEATURES`] for an item: its id, a string naming it, a float that is
/// null for every third item, a bool.
pub fn stats_values(round: u64, thread: u64, n: u64) -> [Value; 4] {
    [
        Value::Int64(stats_id(round, thread, n)),
        Value::String(format!("r{round}t{thread}n{n}")),
        if n.is_multiple_of(3) {
            Value::Null
        } else {
            Value::Float32(n as f32 / 4.0)
        },
        Value::Bool(n.is_multiple_of(2)),
    ]
}

/// How many items the batch starting at item `start` holds (1 to 8), fixed by the seed.
pub fn batch_len(seed: u64, round: u64, thread: u64, start: u64) -> u64 {
    1 + mix(seed ^ mix(round ^ mix(thread ^ mix(start)))) % 8
}

/// How many entities generation `generation` loads: it varies, so the parent can tell that a
/// load replaced the whole view and not only the entities it holds.
pub fn load_entities(generation: u64) -> i64 {
    MAX_LOAD_ENTITIES - (mix(generation) % 24) as i64
}

/// The embedding of entity `id` in generation `generation`: element 0 is the generation,
/// element 1 the id, the rest derived from both (all exact in f32).
pub fn embedding(generation: u64, id: i64) -> Vec<f32> {
    (0..64u64)
        .map(|j| match j {
            0 => generation as f32,
            1 => id as f32,
            j => (mix(generation ^ mix(id as u64 ^ mix(j))) % 100_000) as f32,
        })
        .collect()
}

/// Where the loader builds its snapshots: next to the data directory, on the same file
/// system, so loading links the file instead of copying it.
pub fn staging_dir(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".staging");
    dir.with_file_name(name)
}

/// splitmix64's finalizer: a fixed, well-mixed hash (also the parent's random source).
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}
