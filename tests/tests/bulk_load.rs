//! Bulk loads end to end: LoadSnapshot of a file on the server and UploadSnapshot streams,
//! while a reader keeps reading.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quiver_server::proto::quiver::v1 as pb;
use quiver_tests::fixtures::*;
use quiver_tests::req::*;
use quiver_tests::server::{now_micros, Native, Server, ServerSpec};

/// Rows of bulk-load generation `g`: user i has clicks i * 10 + g.
fn generation(n: i64, g: i64, ts: i64) -> Vec<(i64, i64, i64)> {
    (0..n).map(|i| (i, i * 10 + g, ts)).collect()
}

/// The generation a clicks value belongs to.
fn generation_of(id: i64, clicks: i64) -> i64 {
    clicks - id * 10
}

/// Bulk loads (LoadSnapshot of a file on the server, UploadSnapshot zstd-compressed and
/// plain) while a reader keeps reading: no read fails, no key ever goes back to an older
/// generation, in-memory values newer than a snapshot keep winning, older ones lose, and the
/// last load survives a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_load_while_reading() {
    const N: i64 = 20_000;
    let (dir, spec, server) = start("e2e-bulk", "").await;
    let mut c = server.native(None).await;
    let base = now_micros() - 10 * MINUTE;

    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let sample: Vec<i64> = (0..N).step_by(331).chain([N - 1]).collect();
    let reader = {
        let (stop, reads, failures) = (stop.clone(), reads.clone(), failures.clone());
        let mut rc = server.native(None).await;
        let sample = sample.clone();
        tokio::spawn(async move {
            // Newest generation seen per sampled key: it must never go back.
            let mut seen: HashMap<i64, i64> = HashMap::new();
            while !stop.load(Ordering::Relaxed) {
                let req = get(
                    &["user_stats:clicks", "user_stats:country"],
                    vec![int_keys("user_id", &sample)],
                );
                let r = match rc.get_online_features(req).await {
                    Ok(r) => r.into_inner(),
                    Err(e) => {
                        failures.lock().unwrap().push(format!("read failed: {e:?}"));
                        continue;
                    }
                };
                let clicks = &r.columns[0];
                for (i, &id) in sample.iter().enumerate() {
                    let g = match clicks.statuses[i] {
                        PRESENT if id == 7 => continue,
                        PRESENT => generation_of(id, as_i64(clicks)[i]),
                        NOT_FOUND => 0,
                        s => {
                            failures
                                .lock()
                                .unwrap()
                                .push(format!("user {id}: status {s}"));
                            continue;
                        }
                    };
                    let before = seen.insert(id, g).unwrap_or(0);
                    if g < before || !(0..=4).contains(&g) {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("user {id}: generation {before} then {g}"));
                    }
                }
                reads.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let wait_reads = |min: u64| {
        let reads = reads.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            while reads.load(Ordering::Relaxed) < min {
                assert!(Instant::now() < deadline, "the reader is stuck");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    wait_reads(3).await;

    // In memory before any load: user 7 newer than every snapshot, user 8 older.
    write_ok(
        &mut c,
        clicks(&[7, 8], &[now_micros(), base - HOUR], &[777, 888]),
    )
    .await;

    // Generation 1 and 2: a file on the server's filesystem.
    for g in 1..=2 {
        let path = dir.path().join(format!("gen{g}.qsnap"));
        let size = build_snapshot(&path, "user_stats", &generation(N, g, base + g));
        let before = reads.load(Ordering::Relaxed);
        let r = ok(
            c.load_snapshot(pb::LoadSnapshotRequest {
                view: "user_stats".into(),
                path: path.display().to_string(),
            })
            .await,
            "LoadSnapshot",
        );
        assert_eq!(
            (r.view.as_str(), r.entities, r.bytes),
            ("user_stats", N as u64, size)
        );
        wait_reads(before + 2).await;
    }
    // Generation 3: uploaded, zstd-compressed, in 16 KiB chunks.
    let path = dir.path().join("gen3.qsnap");
    let size = build_snapshot(&path, "user_stats", &generation(N, 3, base + 3));
    let compressed = zstd::encode_all(&std::fs::read(&path).unwrap()[..], 3).unwrap();
    let r = ok(
        c.upload_snapshot(upload("user_stats", &compressed, true, size))
            .await,
        "upload",
    );
    assert_eq!(r.entities, N as u64);
    assert_eq!(r.received_bytes, compressed.len() as u64);
    assert_eq!(r.stored_bytes, size);
    let before = reads.load(Ordering::Relaxed);
    wait_reads(before + 2).await;
    // Generation 4: uploaded uncompressed.
    let path = dir.path().join("gen4.qsnap");
    let size = build_snapshot(&path, "user_stats", &generation(N, 4, base + 4));
    let r = ok(
        c.upload_snapshot(upload(
            "user_stats",
            &std::fs::read(&path).unwrap(),
            false,
            0,
        ))
        .await,
        "upload",
    );
    assert_eq!(
        (r.entities, r.received_bytes, r.stored_bytes),
        (N as u64, size, size)
    );
    let before = reads.load(Ordering::Relaxed);
    wait_reads(before + 2).await;

    stop.store(true, Ordering::Relaxed);
    tokio::time::timeout(Duration::from_secs(20), reader)
        .await
        .expect("the reader stops")
        .unwrap();
    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} read problems: {failures:?}",
        failures.len()
    );
    assert!(reads.load(Ordering::Relaxed) >= 11);

    let check = |mut c: Native| async move {
        let r = read(
            &mut c,
            get(
                &["user_stats:clicks", "user_stats:country"],
                vec![int_keys("user_id", &[0, 7, 8, N - 1, N])],
            ),
        )
        .await;
        let (p, nf) = (PRESENT, NOT_FOUND);
        assert_eq!(r.columns[0].statuses, [p, p, p, p, nf]);
        // User 7's newer in-memory value wins; user 8's older one loses to the snapshot.
        assert_eq!(as_i64(&r.columns[0])[..4], [4, 777, 84, (N - 1) * 10 + 4]);
        assert_eq!(as_str(&r.columns[1])[3], format!("c{}", N - 1));
        let st = ok(
            c.get_stats(pb::GetStatsRequest {
                views: vec!["user_stats".into()],
            })
            .await,
            "GetStats",
        );
        assert_eq!(st.views[0].snapshot_entities, N as u64);
        c
    };
    check(c).await;
    let status = server.terminate().await;
    assert_eq!(status.code(), Some(0));
    let server = Server::start(&ServerSpec {
        registry: None,
        ..spec
    })
    .await;
    check(server.native(None).await).await;
}

/// An UploadSnapshot stream: the header, then `data` in 16 KiB chunks.
fn upload(
    view: &str,
    data: &[u8],
    zstd: bool,
    uncompressed: u64,
) -> impl tokio_stream::Stream<Item = pb::UploadSnapshotRequest> {
    let mut msgs = vec![pb::UploadSnapshotRequest {
        part: Some(pb::upload_snapshot_request::Part::Header(
            pb::UploadSnapshotHeader {
                view: view.into(),
                total_bytes: data.len() as u64,
                zstd,
                uncompressed_bytes: uncompressed,
            },
        )),
    }];
    msgs.extend(data.chunks(16 << 10).map(|c| pb::UploadSnapshotRequest {
        part: Some(pb::upload_snapshot_request::Part::Chunk(c.to_vec())),
    }));
    client_stream(msgs)
}
