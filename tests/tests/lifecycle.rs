//! A server's life across stops: SIGTERM and SIGKILL restarts lose nothing acknowledged, a
//! graceful shutdown finishes what is in flight, and health tells recovery from serving.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quiver_server::proto::quiver::v1 as pb;
use quiver_tests::fixtures::*;
use quiver_tests::req::*;
use quiver_tests::scenario::{apply_write_and_check, check_scenario};
use quiver_tests::server::{now_micros, Server, ServerSpec};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// The main scenario after a registry change, then restarts twice: after SIGTERM (exit 0) and
/// after SIGKILL, with a checkpoint and more writes in between. Nothing acknowledged may be
/// lost, and the registry change survives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_lose_nothing_acknowledged() {
    let (dir, spec, server) = start("e2e-restart", "").await;
    let mut c = server.native(None).await;
    let (v2, version, t) = apply_write_and_check(&mut c).await;

    // --- graceful restart: exit 0, everything back, registry version kept.
    let status = server.terminate().await;
    assert_eq!(status.code(), Some(0), "SIGTERM exit: {status:?}");
    let no_registry = ServerSpec {
        registry: None,
        ..spec.clone()
    };
    let server = Server::start(&no_registry).await;
    let mut c = server.native(None).await;
    let reg = ok(
        c.get_registry(pb::GetRegistryRequest {}).await,
        "GetRegistry",
    );
    assert_eq!(reg.version, version);
    check_scenario(&mut c, t).await;

    // --- a checkpoint, more writes after it, then a crash (SIGKILL).
    let cp = ok(c.checkpoint(pb::CheckpointRequest {}).await, "Checkpoint");
    assert!(cp.checkpoint_sequence > 0);
    assert!(cp
        .snapshots
        .iter()
        .any(|s| s.view == "user_stats" && s.entities == 4));
    let fresh = now_micros();
    write_ok(
        &mut c,
        write(
            "user_stats",
            vec![int_keys("user_id", &[5, 1])],
            &[fresh, fresh - 5 * HOUR],
            // User 1's clicks at an older event time must not replace the stored value.
            vec![feature("clicks", i64s(&[50, -1]))],
        ),
    )
    .await;
    let r = ok(
        c.stream_write_features(tokio_stream::iter(vec![write(
            "user_profile",
            vec![int_keys("user_id", &[5])],
            &[fresh],
            vec![feature("age", i32s(&[55]))],
        )]))
        .await,
        "StreamWriteFeatures",
    );
    assert_eq!(r.batches, 1);
    let status = server.kill().await;
    assert!(!status.success());

    // Restart with the registry file it has already applied: accepted as a no-op.
    let v2_path = dir.path().join("registry-v2.toml");
    std::fs::write(&v2_path, &v2).unwrap();
    let server = Server::start(&ServerSpec {
        registry: Some(v2_path),
        ..spec.clone()
    })
    .await;
    let mut c = server.native(None).await;
    check_scenario(&mut c, t).await;
    let r = read(
        &mut c,
        get(
            &["user_stats:clicks", "user_profile:age"],
            vec![int_keys("user_id", &[5])],
        ),
    )
    .await;
    assert_eq!(as_i64(&r.columns[0]), [50]);
    assert_eq!(as_i32(&r.columns[1]), [55]);
    let st = ok(
        c.get_stats(pb::GetStatsRequest::default()).await,
        "GetStats",
    );
    assert_eq!(st.registry_version, version);
    assert!(st.checkpoint_sequence >= cp.checkpoint_sequence);
    let status = server.terminate().await;
    assert_eq!(status.code(), Some(0));
}

/// SIGTERM while writers are busy (unary writers and an open client stream), with an fsync
/// interval so the final flush matters: the server finishes the in-flight stream, exits 0, and
/// after a restart every acknowledged row is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_keeps_every_acknowledged_write() {
    // One worker thread: the server runs on Tokio's current-thread scheduler, and a graceful
    // stop under concurrent writers must behave the same there.
    let (_dir, spec, server) = start("e2e-term", "fsync = \"1000ms\"\nworker_threads = 1").await;
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<i64>::new()));

    // Unary writers: 4 rows per call, distinct ids, until the server stops answering.
    let mut writers = Vec::new();
    for w in 0..3i64 {
        let mut c = server.native(None).await;
        let acked = acked.clone();
        writers.push(tokio::spawn(async move {
            let mut next = w * 1_000_000;
            loop {
                let ids: Vec<i64> = (next..next + 4).collect();
                next += 4;
                let req = clicks(&ids, &[now_micros(); 4], &ids);
                match c.write_features(req).await {
                    Ok(_) => acked.lock().unwrap().extend(&ids),
                    Err(e) => return e,
                }
            }
        }));
    }
    // A materializer's stream, open across the SIGTERM; it closes the stream once told to.
    let (tx, rx) = mpsc::channel(4);
    let mut sc = server.native(None).await;
    let stream =
        tokio::spawn(async move { sc.stream_write_features(ReceiverStream::new(rx)).await });
    let streamer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            let mut next = 9_000_000i64;
            while !stop.load(Ordering::Relaxed) {
                let batch: Vec<i64> = (next..next + 8).collect();
                next += 8;
                let req = clicks(&batch, &[now_micros(); 8], &batch);
                if tx.send(req).await.is_err() {
                    break;
                }
                ids.extend(batch);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            ids
        })
    };

    // Let them write, then ask the server to stop while they are still at it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked.lock().unwrap().len() < 400 {
        assert!(Instant::now() < deadline, "writers made no progress");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.sigterm();
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);

    let streamed = streamer.await.unwrap();
    let r = ok(
        tokio::time::timeout(Duration::from_secs(20), stream)
            .await
            .expect("the stream ends")
            .unwrap(),
        "in-flight stream across SIGTERM",
    );
    assert_eq!(r.rows, streamed.len() as u64);
    for w in writers {
        // Which transport error a writer sees after the shutdown does not matter; that it
        // stops, and that what it saw acknowledged survives, does.
        tokio::time::timeout(Duration::from_secs(20), w)
            .await
            .expect("writers stop once the server is gone")
            .unwrap();
    }
    let status = server.wait().await;
    assert_eq!(status.code(), Some(0));

    let mut expected = acked.lock().unwrap().clone();
    expected.extend(&streamed);
    assert!(expected.len() >= 400);
    let server = Server::start(&ServerSpec {
        registry: None,
        ..spec
    })
    .await;
    let mut c = server.native(None).await;
    let mut missing = Vec::new();
    for chunk in expected.chunks(5000) {
        let r = read(
            &mut c,
            get(&["user_stats:clicks"], vec![int_keys("user_id", chunk)]),
        )
        .await;
        let col = &r.columns[0];
        for (i, &id) in chunk.iter().enumerate() {
            if col.statuses[i] != PRESENT || as_i64(col)[i] != id {
                missing.push(id);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged rows lost, e.g. {:?}",
        missing.len(),
        expected.len(),
        &missing[..missing.len().min(10)]
    );
}

/// While a restarted server replays its WAL, it listens and health says NOT_SERVING; once
/// recovery is done, health says SERVING and every acknowledged row is back. The WAL is made
/// long enough (a kill -9 leaves it unreplayed) that recovery takes visible time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_says_not_serving_until_recovery_finishes() {
    let (dir, spec, mut server) = start("e2e-recovering", "").await;
    let _keep = dir;
    let mut c = server.native(None).await;
    const ROWS: i64 = 200_000;
    const BATCH: i64 = 5_000;
    let now = now_micros();
    for start in (0..ROWS).step_by(BATCH as usize) {
        let ids: Vec<i64> = (start..start + BATCH).collect();
        write_ok(&mut c, clicks(&ids, &vec![now; ids.len()], &ids)).await;
    }
    server.assert_running();
    server.kill().await;

    let server = Server::start(&spec).await;
    assert!(
        server.saw_not_serving,
        "health never said NOT_SERVING while {ROWS} rows were replayed; log:\n{}",
        server.log()
    );
    let mut c = server.native(None).await;
    let ids = [0, ROWS / 2, ROWS - 1];
    let r = read(
        &mut c,
        get(&["user_stats:clicks"], vec![int_keys("user_id", &ids)]),
    )
    .await;
    assert_eq!(as_i64(column(&r, "clicks")), &ids[..]);
    server.terminate().await;
}
