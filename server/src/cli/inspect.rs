//! Offline file tools: `quiver check` (a registry file), `quiver snapshot inspect|verify` and
//! `quiver wal inspect`. They read files only; no server is involved.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use quiver_engine::{Registry, Snapshot};
use quiver_offline::format_time;

use super::SnapshotCommand;

/// `quiver check`: validates a registry file and prints what it declares.
pub(super) fn check(registry: &Path) -> Result<(), String> {
    let r = Registry::load(registry).map_err(|e| e.to_string())?;
    print!("{}", r.summary());
    Ok(())
}

/// `quiver snapshot inspect|verify`.
pub(super) fn snapshot(cmd: SnapshotCommand) -> Result<(), String> {
    match cmd {
        SnapshotCommand::Inspect { file } if file.is_dir() => inspect_dir(&file),
        SnapshotCommand::Inspect { file } => {
            let s = Snapshot::open(&file).map_err(|e| e.to_string())?;
            print!("{}", describe_snapshot(&file, &s));
            Ok(())
        }
        SnapshotCommand::Verify { file } => {
            let i = Snapshot::verify(&file).map_err(|e| e.to_string())?;
            println!("ok: {i}");
            Ok(())
        }
    }
}

/// `quiver wal inspect`: a line per segment; fails if any segment is damaged.
pub(super) fn wal(dir: &Path) -> Result<(), String> {
    let segs = quiver_engine::inspect::inspect_wal(dir).map_err(|e| e.to_string())?;
    if segs.is_empty() {
        println!("no WAL segments in {}", dir.display());
    }
    let mut damaged = false;
    for s in &segs {
        println!(
            "{}  first seq {}  {} frames ({} compressed)  {} payload bytes  {} / {} bytes valid{}",
            s.file.display(),
            s.first_seq,
            s.frames,
            s.compressed_frames,
            s.payload_bytes,
            s.valid_bytes,
            s.file_bytes,
            s.problem
                .as_ref()
                .map_or(String::new(), |p| format!("  PROBLEM: {p}"))
        );
        damaged |= s.problem.is_some();
    }
    if damaged {
        return Err("the log has damage (see above)".into());
    }
    Ok(())
}

fn ratio(plain: u64, stored: u64) -> f64 {
    if stored == 0 {
        1.0
    } else {
        plain as f64 / stored as f64
    }
}

/// A time as people read it, with the stored microseconds for scripts and comparisons.
fn time_text(micros: i64) -> String {
    format!("{} ({micros} µs)", format_time(micros))
}

/// The header of one snapshot and how its records are compressed.
fn describe_snapshot(file: &Path, s: &Snapshot) -> String {
    let i = s.info();
    let (plain, stored) = s.record_sizes();
    let mut out = String::new();
    let mut line = |label: &str, value: String| {
        let _ = writeln!(out, "{label:<15} {value}");
    };
    line("file", file.display().to_string());
    line("format version", i.format_version.to_string());
    line("view", i.view.clone());
    line("entities", i.entities.to_string());
    line("file bytes", i.file_size.to_string());
    line(
        "record region",
        format!("{} bytes (keys and records)", i.record_bytes),
    );
    line("index slots", i.index_slots.to_string());
    line("wal sequence", i.sequence.to_string());
    line("created at", time_text(i.created_at));
    line(
        "max event time",
        i.max_event_ts.map_or("-".into(), time_text),
    );
    line("schema", format!("{:#018x}", i.schema_fingerprint));
    line(
        "records",
        format!(
            "{stored} bytes stored, {plain} plain ({:.2}x, {:.1} B per entity)",
            ratio(plain, stored),
            stored as f64 / i.entities.max(1) as f64
        ),
    );
    line(
        "compression",
        match s.codec_info() {
            Some(c) => c.to_string(),
            None => "none (written before compression existed)".into(),
        },
    );
    out
}

/// One line per snapshot file in `dir` (or in its `snapshots/`): the per-view ratios.
fn inspect_dir(dir: &Path) -> Result<(), String> {
    let sub = dir.join(quiver_engine::inspect::SNAPSHOT_DIR);
    let dir = if sub.is_dir() { sub } else { dir.to_path_buf() };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "qsnap"))
        .collect();
    files.sort();
    println!(
        "{:<24} {:>10} {:>14} {:>14} {:>7} {:>13}  file",
        "view", "entities", "stored bytes", "plain bytes", "ratio", "method"
    );
    for f in files {
        let s = Snapshot::open(&f).map_err(|e| e.to_string())?;
        let (plain, stored) = s.record_sizes();
        println!(
            "{:<24} {:>10} {:>14} {:>14} {:>6.2}x {:>13}  {}",
            s.info().view,
            s.len(),
            stored,
            plain,
            ratio(plain, stored),
            s.codec_info().map_or("none", |c| c.method.name()),
            f.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::proto::quiver::v1 as pb;
    use crate::testing::{one_row, TestServer};

    #[test]
    fn times_read_as_rfc3339_with_the_raw_micros() {
        assert_eq!(
            time_text(1_700_000_000_000_000),
            "2023-11-14T22:13:20Z (1700000000000000 µs)"
        );
    }

    #[tokio::test]
    async fn a_checkpointed_snapshot_shows_readable_times() {
        let server = TestServer::start(|_| {}).await;
        let mut c = server.ready_client().await;
        c.write_features(one_row(7, 1)).await.unwrap();
        c.checkpoint(pb::CheckpointRequest {}).await.unwrap();
        let snapshots = server.data_dir().join(quiver_engine::inspect::SNAPSHOT_DIR);
        let file = std::fs::read_dir(&snapshots)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "qsnap"))
            .unwrap();
        let text = describe_snapshot(&file, &Snapshot::open(&file).unwrap());
        server.stop().await;
        let line = |label: &str| {
            text.lines()
                .find(|l| l.starts_with(label))
                .unwrap()
                .to_owned()
        };
        for label in ["created at", "max event time"] {
            let l = line(label);
            // "created at      2025-06-01T12:00:00.123456Z (1748779200123456 µs)"
            let value = l[16..].to_owned();
            let (rfc, raw) = value.split_once(" (").unwrap();
            let micros: i64 = raw.trim_end_matches(" µs)").parse().unwrap();
            assert_eq!(quiver_offline::parse_time(rfc), Ok(micros), "{l}");
        }
        assert_eq!(line("view"), "view            user_stats");
    }
}
