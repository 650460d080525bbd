//! End-to-end tests of a damaged or incomplete data directory: the real server refuses to
//! start and says what is missing, instead of serving with acknowledged writes gone; a genuine
//! torn tail (a crash mid-write) still recovers; `--salvage` is the explicit way past damage.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use quiver_server::proto::quiver::v1 as pb;
use quiver_tests::fixtures::{clicks, new_server};
use quiver_tests::req::*;
use quiver_tests::server::{now_micros, Server, ServerSpec, TempDir};

/// One int64 feature is all these tests need.
const REGISTRY: &str = include_str!("../fixtures/data-dir-registry.toml");

/// Writes `batches` acknowledged batches of 10 rows (fsync = always), optionally checkpoints
/// after the first half, and stops the server cleanly. Returns the spec to restart it.
async fn written(tag: &str, batches: i64, checkpoint: bool) -> (TempDir, ServerSpec) {
    let (dir, spec) = new_server(tag, REGISTRY);
    let spec =
        spec.config("fsync = \"always\"\ncheckpoint_wal_bytes = 0\ncheckpoint_interval_secs = 0");
    let server = Server::start(&spec).await;
    let mut c = server.native(None).await;
    for b in 0..batches {
        if checkpoint && b == batches / 2 {
            c.checkpoint(pb::CheckpointRequest::default())
                .await
                .unwrap();
        }
        let users: Vec<i64> = (b * 10..b * 10 + 10).collect();
        c.write_features(clicks(&users, &[now_micros(); 10], &users))
            .await
            .unwrap();
    }
    assert!(server.terminate().await.success());
    (dir, spec)
}

fn segments(data: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(data.join("wal"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    v.sort();
    v
}

/// How many of users 0..n are served.
async fn served(server: &Server, n: i64) -> usize {
    let mut c = server.native(None).await;
    let users: Vec<i64> = (0..n).collect();
    let r = c
        .get_online_features(get(
            &["user_stats:clicks"],
            vec![int_keys("user_id", &users)],
        ))
        .await
        .unwrap()
        .into_inner();
    r.columns[0].statuses.iter().filter(|s| **s == 1).count()
}

/// The last segment cut to half its size (acknowledged records gone): refused, naming the
/// segment; with `--salvage` the server starts on what is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_cut_half_way_is_refused() {
    let (_dir, spec) = written("cut-half", 40, true).await;
    let seg = segments(&spec.data_dir).pop().unwrap();
    let len = std::fs::metadata(&seg).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let (status, log) = Server::start_refused(&spec).await;
    assert!(!status.success());
    let name = seg.file_name().unwrap().to_string_lossy().into_owned();
    assert!(log.contains(&name), "{log}");
    let salvaged = Server::start(&spec.clone().args(&["--salvage"])).await;
    assert!(
        served(&salvaged, 400).await >= 200,
        "the checkpointed half is served"
    );
}

/// The only segment after a checkpoint deleted: refused, naming what is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_segment_is_refused() {
    let (_dir, spec) = written("deleted-seg", 20, true).await;
    for seg in segments(&spec.data_dir) {
        std::fs::remove_file(seg).unwrap();
    }
    let (status, log) = Server::start_refused(&spec).await;
    assert!(!status.success());
    assert!(
        log.contains("missing") || log.contains("no segment"),
        "{log}"
    );
}

/// A deleted MANIFEST with snapshots and segments present: refused, naming them, instead of
/// starting as a new, empty directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_manifest_is_refused() {
    let (_dir, spec) = written("no-manifest", 20, true).await;
    std::fs::remove_file(spec.data_dir.join("MANIFEST")).unwrap();
    let (status, log) = Server::start_refused(&spec).await;
    assert!(!status.success());
    assert!(log.contains("MANIFEST") && log.contains(".log"), "{log}");
}

/// A genuine torn tail — the final frame cut short, as a crash mid-write leaves it — still
/// recovers with a warning, keeping every earlier record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_tail_still_recovers() {
    let (_dir, spec) = written("torn", 20, false).await;
    let seg = segments(&spec.data_dir).pop().unwrap();
    // An interrupted write leaves the bytes up to a sector boundary and zeros after it (the
    // segment is preallocated): zero the data from the last sector boundary before its end.
    let mut bytes = std::fs::read(&seg).unwrap();
    let end = bytes.iter().rposition(|b| *b != 0).unwrap() + 1;
    let cut = (end - 1) / 512 * 512;
    bytes[cut..end].fill(0);
    std::fs::write(&seg, &bytes).unwrap();
    let server = Server::start(&spec).await;
    assert!(server.log().contains("torn tail"), "{}", server.log());
    // What the last sector held (a few 10-row batches) is gone, nothing before it.
    let n = served(&server, 200).await;
    assert!((150..200).contains(&n), "{n} of 200 served");
}
