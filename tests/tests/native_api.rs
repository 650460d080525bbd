//! The native `quiver.v1` API end to end: registry changes, writes and reads of every type,
//! status and key shape, stats, and load shedding.
//!
//! Each test starts its own server (see `quiver_tests::fixtures`) so the tests stay independent
//! and run in parallel. Time: the server uses the system clock, so freshness is tested with
//! event times far in the past relative to the TTLs (or a request `max_age`), never by
//! sleeping; checks on expired values accept NOT_FOUND as well as OUTSIDE_MAX_AGE, since the
//! engine's background reclaimer may have dropped them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use quiver_server::proto::feast::serving as fs;
use quiver_server::proto::quiver::v1 as pb;
use quiver_tests::fixtures::*;
use quiver_tests::req::*;
use quiver_tests::scenario::apply_write_and_check;
use quiver_tests::server::{now_micros, Native, Server};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

/// Apply as a dry run (nothing changes, not even for writes), then for real (the version goes
/// up), again (a no-op), and incompatible changes (refused, naming what changed, dry or not).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_changes_are_previewed_applied_or_refused() {
    let (_dir, _spec, server) = start("e2e-registry", "").await;
    let mut c = server.native(None).await;

    let before = ok(
        c.get_registry(pb::GetRegistryRequest {}).await,
        "GetRegistry",
    );
    assert_eq!(before.project, "e2e");
    let view_names: Vec<&str> = before.views.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        view_names,
        [
            "user_stats",
            "user_embedding",
            "user_profile",
            "user_merchant_stats"
        ]
    );
    let um = before
        .entities
        .iter()
        .find(|e| e.name == "user_merchant")
        .unwrap();
    assert_eq!(
        um.join_keys
            .iter()
            .map(|k| (k.name.as_str(), k.r#type))
            .collect::<Vec<_>>(),
        [
            ("user_id", pb::KeyType::Int64 as i32),
            ("merchant_id", pb::KeyType::String as i32)
        ]
    );

    let v2 = registry_v2();
    let dry = apply(&mut c, &v2, true).await;
    assert!(!dry.applied);
    assert_eq!(dry.version, before.version);
    for change in [
        "add feature user_stats:premium (bool)",
        "add feature service profile_v1",
    ] {
        assert!(
            dry.changes.iter().any(|ch| ch == change),
            "{:?}",
            dry.changes
        );
    }
    assert!(dry.canonical_toml.contains("premium"));
    let still = ok(
        c.get_registry(pb::GetRegistryRequest {}).await,
        "GetRegistry",
    );
    assert_eq!(still.version, before.version);
    assert!(
        !still.toml.contains("premium"),
        "a dry run changed the registry"
    );
    // Writing the feature before it exists is refused.
    let err = c
        .write_features(write(
            "user_stats",
            vec![int_keys("user_id", &[1])],
            &[now_micros()],
            vec![feature("premium", bools(&[true]))],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");

    let applied = apply(&mut c, &v2, false).await;
    assert!(applied.applied);
    assert_eq!(applied.version, before.version + 1);
    assert_eq!(applied.changes, dry.changes);
    let again = apply(&mut c, &applied.canonical_toml, false).await;
    assert!(!again.applied && again.changes.is_empty(), "{again:?}");
    assert_eq!(again.version, applied.version);

    // Incompatible changes: a feature's type, a join key's type, a removed feature.
    let retyped = v2.replace(
        "  name = \"clicks\"\n  type = \"int64\"",
        "  name = \"clicks\"\n  type = \"float64\"",
    );
    let rekeyed = v2.replace(
        "{ name = \"merchant_id\", type = \"string\" }",
        "{ name = \"merchant_id\", type = \"int64\" }",
    );
    let removed = v2.replace(
        "  [[feature_view.feature]]\n  name = \"blob\"\n  type = \"bytes\"\n",
        "",
    );
    for (toml, needle) in [
        (&retyped, "\"clicks\""),
        (&rekeyed, "\"user_merchant\""),
        (&removed, "\"blob\""),
    ] {
        assert_ne!(toml, &v2);
        for dry_run in [true, false] {
            let err = c
                .apply_registry(pb::ApplyRegistryRequest {
                    toml: toml.clone(),
                    dry_run,
                    ..Default::default()
                })
                .await
                .unwrap_err();
            assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
            assert!(err.message().contains(needle), "{needle}: {err:?}");
        }
    }
    let after = ok(
        c.get_registry(pb::GetRegistryRequest {}).await,
        "GetRegistry",
    );
    assert_eq!(after.version, applied.version);
    let stats = after.views.iter().find(|v| v.name == "user_stats").unwrap();
    assert_eq!(stats.features.last().unwrap().name, "premium");
    assert_eq!(stats.features[8].ttl_seconds, 3600);
    assert_eq!(stats.ttl_seconds, 86_400);
}

/// Writes unary and streamed, reads of every status and shape, a stream that fails half way
/// (what came before stays applied), and the stats that follow. Auth is off: no token needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_status_and_shape_reads_back_as_written() {
    // On one worker thread (the current-thread scheduler): every call works there too.
    let (_dir, _spec, server) = start("e2e-main", "worker_threads = 1").await;
    let mut c = server.native(None).await;
    let (_, version, t) = apply_write_and_check(&mut c).await;

    // A stream whose second batch is bad: the first stays applied, the third never runs.
    let batches = vec![
        write(
            "user_profile",
            vec![int_keys("user_id", &[1])],
            &[t.fresh],
            vec![
                feature("country", strings(&["uk"])),
                feature("age", i32s(&[33])),
            ],
        ),
        write(
            "no_such_view",
            vec![int_keys("user_id", &[1])],
            &[t.fresh],
            vec![feature("age", i32s(&[1]))],
        ),
        write(
            "user_profile",
            vec![int_keys("user_id", &[2])],
            &[t.fresh],
            vec![feature("age", i32s(&[44]))],
        ),
    ];
    let err = c
        .stream_write_features(tokio_stream::iter(batches))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(err.message().contains("batch 1"), "{err:?}");
    assert!(err.message().contains("no_such_view"), "{err:?}");
    let r = read(
        &mut c,
        get(&["user_profile:age"], vec![int_keys("user_id", &[1, 2])]),
    )
    .await;
    assert_eq!(r.columns[0].statuses, [PRESENT, NOT_FOUND]);
    assert_eq!(as_i32(&r.columns[0])[0], 33);

    // --- stats
    let st = ok(
        c.get_stats(pb::GetStatsRequest::default()).await,
        "GetStats",
    );
    assert_eq!(st.registry_version, version);
    let us = st.views.iter().find(|v| v.view == "user_stats").unwrap();
    assert_eq!(us.memory_entities, 4);
    assert_eq!(us.newest_event_time_micros, t.fresh);
    assert!(us.newest_event_age_micros >= 10 * SEC, "{us:?}");
    let wal = st.wal.unwrap();
    assert!(wal.bytes > 0 && wal.last_sequence > 0, "{wal:?}");
    assert!(wal.poisoned.is_empty());
    let one = ok(
        c.get_stats(pb::GetStatsRequest {
            views: vec!["user_merchant_stats".into()],
        })
        .await,
        "GetStats(view)",
    );
    assert_eq!(one.views.len(), 1);
    assert_eq!(one.views[0].memory_entities, 3);
}

/// Fires `n` concurrent reads over four connections; returns each call's code.
async fn burst(server: &Server, n: usize) -> Vec<(Code, String)> {
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(server.settled_native().await);
    }
    let feast = server
        .connect(None)
        .feast_on(server.settled_channel().await)
        .unwrap();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let mut c = clients[i % clients.len()].clone();
            let mut f = feast.clone();
            tokio::spawn(async move {
                // Every tenth call goes to the Feast endpoint: it shares the admission limit.
                let r = if i % 10 == 9 {
                    f.get_feast_serving_info(fs::GetFeastServingInfoRequest {})
                        .await
                        .map(|_| ())
                } else {
                    c.get_online_features(get(
                        &["user_stats:clicks"],
                        vec![int_keys("user_id", &[1, 2, 3])],
                    ))
                    .await
                    .map(|_| ())
                };
                match r {
                    Ok(()) => (Code::Ok, String::new()),
                    Err(s) => (s.code(), s.message().to_owned()),
                }
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(
            tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    out
}

/// A client stream that holds an admission slot until its sender is dropped.
async fn hold_slot(server: &Server) -> Holder {
    let (tx, rx) = mpsc::channel(4);
    let mut c = server.native(None).await;
    let task = tokio::spawn(async move { c.stream_write_features(ReceiverStream::new(rx)).await });
    tx.send(one_click()).await.unwrap();
    (tx, task)
}

type Holder = (
    mpsc::Sender<pb::WriteFeaturesRequest>,
    tokio::task::JoinHandle<Result<tonic::Response<pb::WriteFeaturesResponse>, tonic::Status>>,
);

/// Opens holders until `n` of them hold a slot each and GetStats is shed (every slot taken);
/// bounded. A slot given back a moment late (the response of a finished call is still being
/// dropped) can shed a new holder: such a holder is replaced, anything else fails the test.
async fn fill_slots(server: &Server, c: &mut Native, n: usize) -> Vec<Holder> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut holders: Vec<Holder> = Vec::with_capacity(n);
    loop {
        let mut alive = Vec::with_capacity(n);
        for (tx, task) in holders.drain(..) {
            if !task.is_finished() {
                alive.push((tx, task));
                continue;
            }
            match task.await.unwrap() {
                Err(s) if s.code() == Code::ResourceExhausted => {}
                other => panic!("a holder ended before it was released: {other:?}"),
            }
        }
        holders = alive;
        while holders.len() < n {
            holders.push(hold_slot(server).await);
        }
        match c.get_stats(pb::GetStatsRequest::default()).await {
            Err(s) if s.code() == Code::ResourceExhausted => {
                // Shed: every slot is taken. Only done if the holders are the ones taking them.
                tokio::time::sleep(Duration::from_millis(50)).await;
                if holders.iter().all(|(_, t)| !t.is_finished()) {
                    return holders;
                }
            }
            Ok(_) => {}
            Err(s) => panic!("while waiting for the slots to fill: {s:?}"),
        }
        assert!(
            Instant::now() < deadline,
            "the holders never took every slot"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Load shedding with `max_concurrent_requests = 2`: with both slots taken, a burst of 200
/// calls is answered RESOURCE_EXHAUSTED at once (nothing queues behind the holders), counted in
/// `quiver_shed_requests_total`; with slots free, a burst gets only OK or RESOURCE_EXHAUSTED;
/// and the default deadline frees a slot a stuck client holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_shed_not_queued() {
    let (_dir, _spec, mut server) = start(
        "e2e-shed",
        // The held streams fall under the bulk deadline, the short calls under the other.
        "max_concurrent_requests = 2\nrequest_timeout_ms = 60000\nbulk_timeout_ms = 4000",
    )
    .await;
    let mut c = server.native(None).await;
    write_ok(&mut c, one_click()).await;
    assert_eq!(server.metric("quiver_ready").await, 1.0);
    let shed0 = server.metric("quiver_shed_requests_total").await;
    assert_eq!(shed0, 0.0);

    // Both slots held by open client streams: every call of the burst is shed.
    let holders = fill_slots(&server, &mut c, 2).await;
    let codes = burst(&server, 200).await;
    let wrong: Vec<_> = codes
        .iter()
        .filter(|(code, msg)| *code != Code::ResourceExhausted || !msg.contains("concurrent"))
        .collect();
    assert!(wrong.is_empty(), "not shed: {wrong:?}");
    // The holders outlived the burst, so no call can have waited for a slot.
    assert!(holders.iter().all(|(_, t)| !t.is_finished()));
    let shed1 = server.metric("quiver_shed_requests_total").await;
    assert!(shed1 - shed0 >= 200.0, "{shed0} -> {shed1}");

    // The held streams still work and complete normally.
    for (i, (tx, task)) in holders.into_iter().enumerate() {
        if i == 0 {
            tx.send(one_click()).await.unwrap();
        }
        drop(tx);
        let r = ok(
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .unwrap()
                .unwrap(),
            "held stream",
        );
        assert_eq!(r.batches, 2 - i as u64);
    }

    // Slots free: a burst gets answers, each OK or shed, never anything else.
    let codes = burst(&server, 200).await;
    let shed_now = codes
        .iter()
        .filter(|(c, _)| *c == Code::ResourceExhausted)
        .count();
    let ok_now = codes.iter().filter(|(c, _)| *c == Code::Ok).count();
    assert_eq!(shed_now + ok_now, codes.len(), "{codes:?}");
    assert!(ok_now > 0);
    let shed2 = server.metric("quiver_shed_requests_total").await;
    assert_eq!(shed2 - shed1, shed_now as f64);

    // A client that never finishes its stream is cut off by the default bulk deadline and its
    // slot comes back.
    let started = Instant::now();
    let (tx, task) = hold_slot(&server).await;
    let err = tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .expect("the server deadline ends the stream")
        .unwrap()
        .unwrap_err();
    assert!(
        // tonic reports its server-side deadline as CANCELLED.
        err.code() == Code::Cancelled && err.message().contains("Timeout expired"),
        "{err:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(3500));
    drop(tx);
    ok(
        c.get_stats(pb::GetStatsRequest::default()).await,
        "GetStats",
    );
    // Both slots are free again: two new holders fill them.
    let _held = fill_slots(&server, &mut c, 2).await;

    let text = server.metrics_text().await;
    for line in [
        "quiver_requests_total{method=\"quiver.v1.FeatureStore/GetOnlineFeatures\",outcome=\"ok\"}",
        "quiver_values_served_total{status=\"PRESENT\"}",
        "quiver_request_duration_seconds_bucket{method=\"quiver.v1.FeatureStore/GetOnlineFeatures\",le=\"+Inf\"}",
    ] {
        assert!(text.contains(line), "{line} missing:\n{text}");
    }
    server.assert_running();
}
