//! End-to-end tests of `quiver serve`: the real binary on ephemeral ports with a temporary
//! data directory, driven through the generated tonic clients of both APIs.
//!
//! Each test starts its own server(s) so the tests stay independent and run in parallel; a
//! test groups the checks that can share one server. Servers are killed when a test ends or
//! fails (see `quiver_tests::server::Server`), every wait is bounded.
//!
//! Time: the server uses the system clock, so freshness is tested with event times far in the
//! past relative to the TTLs (or a request `max_age`), never by sleeping. The engine's
//! background reclaimer may drop an expired value at any moment, after which it reads as
//! NOT_FOUND instead of OUTSIDE_MAX_AGE; checks on expired values accept either where a
//! reclaim pass could have run in between.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quiver_engine::{KeyBatch, KeyPart, Registry, Row, SnapshotBuilder, Value};
use quiver_server::proto::feast::serving as fs;
use quiver_server::proto::feast::types as ft;
use quiver_server::proto::quiver::v1 as pb;
use quiver_tests::quiver_cli;
use quiver_tests::req::*;
use quiver_tests::server::{now_micros, Native, Server, ServerSpec, TempDir};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

const SEC: i64 = 1_000_000;
const MINUTE: i64 = 60 * SEC;
const HOUR: i64 = 60 * MINUTE;

/// The schema every test serves: int64, string and composite keys, every scalar type, a
/// vector, lists, per-feature TTLs, a feature name shared by two views, a feature service.
const REGISTRY: &str = r#"
project = "e2e"

[[entity]]
name = "user"
join_keys = [{ name = "user_id", type = "int64" }]

[[entity]]
name = "user_merchant"
join_keys = [{ name = "user_id", type = "int64" }, { name = "merchant_id", type = "string" }]

[[feature_view]]
name = "user_stats"
entity = "user"
ttl = "1d"
  [[feature_view.feature]]
  name = "clicks"
  type = "int64"
  [[feature_view.feature]]
  name = "logins"
  type = "int32"
  [[feature_view.feature]]
  name = "ctr"
  type = "float32"
  [[feature_view.feature]]
  name = "amount"
  type = "float64"
  [[feature_view.feature]]
  name = "verified"
  type = "bool"
  [[feature_view.feature]]
  name = "last_login"
  type = "timestamp"
  [[feature_view.feature]]
  name = "country"
  type = "string"
  [[feature_view.feature]]
  name = "blob"
  type = "bytes"
  [[feature_view.feature]]
  name = "recent"
  type = "int64"
  ttl = "1h"

[[feature_view]]
name = "user_embedding"
entity = "user"
ttl = "30d"
  [[feature_view.feature]]
  name = "embedding"
  type = "vector<4>"
  [[feature_view.feature]]
  name = "tags"
  type = "list<string>"
  [[feature_view.feature]]
  name = "scores"
  type = "list<float64>"
  [[feature_view.feature]]
  name = "tokens"
  type = "list<bytes>"

[[feature_view]]
name = "user_profile"
entity = "user"
ttl = "0"
  [[feature_view.feature]]
  name = "country"
  type = "string"
  [[feature_view.feature]]
  name = "age"
  type = "int32"

[[feature_view]]
name = "user_merchant_stats"
entity = "user_merchant"
ttl = "0"
  [[feature_view.feature]]
  name = "txn_count"
  type = "int64"
  [[feature_view.feature]]
  name = "last_amounts"
  type = "list<float64>"

[[feature_service]]
name = "fraud_v1"
features = ["user_stats:amount", "user_stats:clicks", "user_embedding:embedding", "user_profile:age"]
"#;

/// The registry's `user_stats:recent` block, where version 2 adds a feature after it.
const RECENT_BLOCK: &str = "  name = \"recent\"\n  type = \"int64\"\n  ttl = \"1h\"\n";

/// Version 2: a compatible change (a new feature, a new feature service).
fn registry_v2() -> String {
    let added = format!(
        "{RECENT_BLOCK}  [[feature_view.feature]]\n  name = \"premium\"\n  type = \"bool\"\n"
    );
    let mut text = REGISTRY.replace(RECENT_BLOCK, &added);
    assert_ne!(text, REGISTRY);
    text.push_str(
        "\n[[feature_service]]\nname = \"profile_v1\"\nfeatures = [\"user_profile:country\"]\n",
    );
    text
}

/// A server on a fresh data directory created from [`REGISTRY`], with extra config lines.
async fn start(tag: &str, config: &str) -> (TempDir, ServerSpec, Server) {
    let dir = TempDir::new(tag);
    let registry = dir.path().join("registry.toml");
    std::fs::write(&registry, REGISTRY).unwrap();
    let spec = ServerSpec::new(dir.path().join("data"), Some(&registry)).config(config);
    let server = Server::start(&spec).await;
    (dir, spec, server)
}

fn code_of<T: std::fmt::Debug>(r: &Result<T, tonic::Status>) -> Code {
    match r {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}

/// Unwraps an RPC result, printing the status on failure.
fn ok<T>(r: Result<tonic::Response<T>, tonic::Status>, what: &str) -> T {
    match r {
        Ok(r) => r.into_inner(),
        Err(s) => panic!("{what}: {:?}: {}", s.code(), s.message()),
    }
}

async fn read(c: &mut Native, req: pb::GetOnlineFeaturesRequest) -> pb::GetOnlineFeaturesResponse {
    ok(c.get_online_features(req).await, "GetOnlineFeatures")
}

async fn write_ok(c: &mut Native, req: pb::WriteFeaturesRequest) -> pb::WriteFeaturesResponse {
    ok(c.write_features(req).await, "WriteFeatures")
}

/// Event times of the main scenario, fixed when the data is written.
#[derive(Debug, Clone, Copy)]
struct Times {
    /// 10 s ago: fresh under every TTL.
    fresh: i64,
    /// 2 h ago: past `user_stats:recent`'s 1 h TTL, within the view's 1 d.
    old: i64,
    /// 30 min ago: fresh under the TTLs, stale under a 60 s `max_age`.
    half_hour: i64,
}

const USER_STATS: [&str; 10] = [
    "user_stats:clicks",
    "user_stats:logins",
    "user_stats:ctr",
    "user_stats:amount",
    "user_stats:verified",
    "user_stats:last_login",
    "user_stats:country",
    "user_stats:blob",
    "user_stats:recent",
    "user_stats:premium",
];

/// Users 1-4 of `user_stats` in one unary batch (with nulls), embeddings and lists for users
/// 1-3 and composite-key rows in one client stream of three batches.
async fn write_scenario(c: &mut Native) -> Times {
    let now = now_micros();
    let t = Times {
        fresh: now - 10 * SEC,
        old: now - 2 * HOUR,
        half_hour: now - 30 * MINUTE,
    };
    let r = write_ok(
        c,
        write(
            "user_stats",
            vec![int_keys("user_id", &[1, 2, 3, 4])],
            &[t.fresh, t.fresh, t.old, t.half_hour],
            vec![
                feature("clicks", i64s(&[10, 20, 30, 40])),
                feature("logins", i32s(&[1, 2, 3, 4])),
                feature("ctr", f32s(&[0.5, 0.25, 0.125, 1.0])),
                feature("amount", f64s(&[1.5, 2.5, 3.5, 4.5])),
                feature("verified", bools(&[true, false, true, false])),
                feature("last_login", timestamps(&[111, 222, 333, 444])),
                // User 2's country is written as null (its slot still holds a placeholder).
                feature_with_nulls("country", strings(&["us", "", "fr", "de"]), 4, &[1]),
                feature("blob", bytes(&[b"\x00\xff", b"", b"\x80", b"z"])),
                feature("recent", i64s(&[7, 8, 9, 10])),
                feature_with_nulls("premium", bools(&[true, true, false, false]), 4, &[3]),
            ],
        ),
    )
    .await;
    assert_eq!((r.rows, r.batches), (4, 1));
    assert!(r.wal_sequence > 0);

    let batches = vec![
        write(
            "user_embedding",
            vec![int_keys("user_id", &[1, 2])],
            &[t.fresh, t.fresh],
            vec![
                feature("embedding", vectors(4, &[1., 2., 3., 4., 5., 6., 7., 8.])),
                feature("tags", lists(&[2, 0], strings(&["a", "b"]))),
                feature("scores", lists(&[1, 3], f64s(&[0.1, 0.2, 0.3, 0.4]))),
                feature("tokens", lists(&[1, 1], bytes(&[b"\xff\x00", b"ok"]))),
            ],
        ),
        write(
            "user_embedding",
            vec![int_keys("user_id", &[3])],
            &[t.fresh],
            vec![
                feature("embedding", vectors(4, &[9., 10., 11., 12.])),
                feature("tags", lists(&[1], strings(&["c"]))),
                feature("scores", lists(&[0], f64s(&[]))),
                feature("tokens", lists(&[2], bytes(&[b"x", b"\xfe"]))),
            ],
        ),
        write(
            "user_merchant_stats",
            vec![
                int_keys("user_id", &[1, 1, 2]),
                str_keys("merchant_id", &["m1", "m2", "m1"]),
            ],
            &[t.fresh; 3],
            vec![
                feature("txn_count", i64s(&[5, 6, 7])),
                feature("last_amounts", lists(&[2, 1, 0], f64s(&[10., 11., 12.]))),
            ],
        ),
    ];
    let r = ok(
        c.stream_write_features(tokio_stream::iter(batches)).await,
        "StreamWriteFeatures",
    );
    assert_eq!((r.rows, r.batches), (6, 3));
    t
}

/// Every read of the main scenario, with all statuses, types and key shapes. Run before and
/// after restarts: the answers must not change.
async fn check_scenario(c: &mut Native, t: Times) {
    // --- every scalar type; PRESENT, NULL_VALUE, NOT_FOUND, OUTSIDE_MAX_AGE (TTL), duplicates.
    let keys = [1, 2, 3, 4, 99, 1];
    let r = read(c, get(&USER_STATS, vec![int_keys("user_id", &keys)])).await;
    assert_eq!(r.row_count, 6);
    let bare: Vec<&str> = USER_STATS
        .iter()
        .map(|s| s.split_once(':').unwrap().1)
        .collect();
    assert_eq!(r.feature_names, bare);
    let ts_all = vec![t.fresh, t.fresh, t.old, t.half_hour, 0, t.fresh];
    let (p, n, nf) = (PRESENT, NULL_VALUE, NOT_FOUND);
    let clicks = column(&r, "clicks");
    assert_eq!(clicks.statuses, [p, p, p, p, nf, p]);
    assert_eq!(clicks.event_timestamps, ts_all);
    let v = as_i64(clicks);
    assert_eq!((v[0], v[1], v[2], v[3], v[5]), (10, 20, 30, 40, 10));
    assert_eq!(
        as_i32(column(&r, "logins"))
            .iter()
            .zip(&column(&r, "logins").statuses)
            .filter(|(_, s)| **s == p)
            .map(|(v, _)| *v)
            .collect::<Vec<_>>(),
        [1, 2, 3, 4, 1]
    );
    assert_eq!(as_f32(column(&r, "ctr"))[..4], [0.5, 0.25, 0.125, 1.0]);
    assert_eq!(as_f64(column(&r, "amount"))[..4], [1.5, 2.5, 3.5, 4.5]);
    assert_eq!(
        as_bool(column(&r, "verified"))[..4],
        [true, false, true, false]
    );
    assert_eq!(as_ts(column(&r, "last_login"))[..4], [111, 222, 333, 444]);
    let blob = as_bytes(column(&r, "blob"));
    assert_eq!(
        (&blob[0][..], &blob[1][..], &blob[2][..], &blob[3][..]),
        (&b"\x00\xff"[..], &b""[..], &b"\x80"[..], &b"z"[..])
    );
    let country = column(&r, "country");
    assert_eq!(country.statuses, [p, n, p, p, nf, p]);
    // A null keeps its event time; a missing entity has none.
    assert_eq!(country.event_timestamps, ts_all);
    let cv = as_str(country);
    assert_eq!(
        (&cv[0][..], &cv[2][..], &cv[3][..], &cv[5][..]),
        ("us", "fr", "de", "us")
    );
    let premium = column(&r, "premium");
    assert_eq!(premium.statuses, [p, p, p, n, nf, p]);
    assert_eq!(as_bool(premium)[..3], [true, true, false]);
    // `recent` has a 1 h TTL: user 3's value (2 h old) is withheld.
    let recent = column(&r, "recent");
    assert_eq!(recent.statuses[..2], [p, p]);
    assert_eq!(recent.statuses[3..], [p, nf, p]);
    assert!(
        matches!(recent.statuses[2], OUTSIDE_MAX_AGE | NOT_FOUND),
        "expired value served: {:?}",
        recent.statuses
    );
    if recent.statuses[2] == OUTSIDE_MAX_AGE {
        assert_eq!(recent.event_timestamps[2], t.old);
    }
    assert_eq!(as_i64(recent)[0], 7);

    // --- a request max_age stricter than the TTLs: users 3 and 4 are too old for 60 s.
    let mut req = get(
        &["user_stats:clicks", "user_stats:country"],
        vec![int_keys("user_id", &[1, 2, 3, 4, 99])],
    );
    req.max_age = Some(prost_types::Duration {
        seconds: 60,
        nanos: 0,
    });
    let r = read(c, req).await;
    let o = OUTSIDE_MAX_AGE;
    assert_eq!(column(&r, "clicks").statuses, [p, p, o, o, nf]);
    assert_eq!(
        column(&r, "clicks").event_timestamps,
        [t.fresh, t.fresh, t.old, t.half_hour, 0]
    );
    assert_eq!(column(&r, "country").statuses, [p, n, o, o, nf]);

    // --- full_feature_names, and a bare-name collision between two views.
    let both = [
        "user_stats:country",
        "user_profile:country",
        "user_stats:clicks",
    ];
    let mut req = get(&both, vec![int_keys("user_id", &[1])]);
    req.full_feature_names = true;
    let r = read(c, req).await;
    assert_eq!(
        r.feature_names,
        [
            "user_stats__country",
            "user_profile__country",
            "user_stats__clicks"
        ]
    );
    assert_eq!(as_str(column(&r, "user_stats__country"))[0], "us");
    let err = c
        .get_online_features(get(&both, vec![int_keys("user_id", &[1])]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("\"country\""), "{err:?}");

    // --- composite keys, columns in either order, an unknown pair, an empty list.
    let r = read(
        c,
        get(
            &[
                "user_merchant_stats:txn_count",
                "user_merchant_stats:last_amounts",
            ],
            vec![
                str_keys("merchant_id", &["m1", "m2", "m1", "m9", "m1"]),
                int_keys("user_id", &[1, 1, 2, 1, 3]),
            ],
        ),
    )
    .await;
    let txn = column(&r, "txn_count");
    assert_eq!(txn.statuses, [p, p, p, nf, nf]);
    assert_eq!(as_i64(txn)[..3], [5, 6, 7]);
    let amounts = column(&r, "last_amounts");
    assert_eq!(amounts.statuses, [p, p, p, nf, nf]);
    let (lengths, items) = as_lists(amounts);
    assert_eq!(lengths, [2, 1, 0, 0, 0]);
    assert_eq!(items, &f64s(&[10., 11., 12.]));

    // --- a feature service: its declared order, across three views.
    let r = read(
        c,
        get_service("fraud_v1", vec![int_keys("user_id", &[3, 1])]),
    )
    .await;
    assert_eq!(r.feature_names, ["amount", "clicks", "embedding", "age"]);
    assert_eq!(as_f64(column(&r, "amount")), [3.5, 1.5]);
    // (User 1's age is written later in the scenario; user 3 never has one.)
    assert_eq!(column(&r, "age").statuses[0], nf);

    // --- vectors and lists, rows in another order than written, with a miss and duplicates.
    let r = read(
        c,
        get(
            &[
                "user_embedding:embedding",
                "user_embedding:tags",
                "user_embedding:scores",
                "user_embedding:tokens",
            ],
            vec![int_keys("user_id", &[3, 99, 1, 2, 1])],
        ),
    )
    .await;
    let emb = column(&r, "embedding");
    assert_eq!(emb.statuses, [p, nf, p, p, p]);
    let (dim, flat) = as_vectors(emb);
    assert_eq!(dim, 4);
    assert_eq!(
        flat,
        [9., 10., 11., 12., 0., 0., 0., 0., 1., 2., 3., 4., 5., 6., 7., 8., 1., 2., 3., 4.]
    );
    let (lengths, items) = as_lists(column(&r, "tags"));
    assert_eq!(lengths, [1, 0, 2, 0, 2]);
    assert_eq!(items, &strings(&["c", "a", "b", "a", "b"]));
    let (lengths, items) = as_lists(column(&r, "scores"));
    assert_eq!(lengths, [0, 0, 1, 3, 1]);
    assert_eq!(items, &f64s(&[0.1, 0.2, 0.3, 0.4, 0.1]));
    let (lengths, items) = as_lists(column(&r, "tokens"));
    assert_eq!(lengths, [2, 0, 1, 1, 1]);
    assert_eq!(
        items,
        &bytes(&[b"x", b"\xfe", b"\xff\x00", b"ok", b"\xff\x00"])
    );
}

/// Apply (dry run, compatible, no-op, incompatible), write unary and streamed, read every
/// status and shape, then restart twice: after SIGTERM (exit 0) and after SIGKILL. Nothing
/// acknowledged may be lost, and the registry change survives. Auth is off: no token needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_write_read_restart() {
    let (dir, spec, server) = start("e2e-main", "").await;
    let mut c = server.native(None).await;

    // --- registry
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
    let dry = ok(
        c.apply_registry(pb::ApplyRegistryRequest {
            toml: v2.clone(),
            dry_run: true,
            ..Default::default()
        })
        .await,
        "dry run",
    );
    assert!(!dry.applied);
    assert_eq!(dry.version, before.version);
    assert!(
        dry.changes
            .iter()
            .any(|ch| ch == "add feature user_stats:premium (bool)"),
        "{:?}",
        dry.changes
    );
    assert!(
        dry.changes
            .iter()
            .any(|ch| ch == "add feature service profile_v1"),
        "{:?}",
        dry.changes
    );
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

    let applied = ok(
        c.apply_registry(pb::ApplyRegistryRequest {
            toml: v2.clone(),
            dry_run: false,
            ..Default::default()
        })
        .await,
        "apply",
    );
    assert!(applied.applied);
    assert_eq!(applied.version, before.version + 1);
    assert_eq!(applied.changes, dry.changes);
    let again = ok(
        c.apply_registry(pb::ApplyRegistryRequest {
            toml: applied.canonical_toml.clone(),
            dry_run: false,
            ..Default::default()
        })
        .await,
        "re-apply",
    );
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

    // --- writes and reads
    let t = write_scenario(&mut c).await;
    check_scenario(&mut c, t).await;

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
    assert_eq!(st.registry_version, applied.version);
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
    assert_eq!(reg.version, applied.version);
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
    assert_eq!(st.registry_version, applied.version);
    assert!(st.checkpoint_sequence >= cp.checkpoint_sequence);
    let status = server.terminate().await;
    assert_eq!(status.code(), Some(0));
}

/// One refused call: what was sent, the codes allowed, and a word the message must contain.
struct Refusal {
    what: &'static str,
    result: Result<(), tonic::Status>,
    codes: &'static [Code],
    needle: &'static str,
}

fn refusal<T>(
    what: &'static str,
    result: Result<T, tonic::Status>,
    codes: &'static [Code],
    needle: &'static str,
) -> Refusal {
    Refusal {
        what,
        result: result.map(|_| ()),
        codes,
        needle,
    }
}

const INVALID: &[Code] = &[Code::InvalidArgument];
const NOT_FOUND_CODE: &[Code] = &[Code::NotFound];
const INVALID_OR_NOT_FOUND: &[Code] = &[Code::InvalidArgument, Code::NotFound];

/// Checks the refusal and that the server still serves; returns a description on failure.
async fn judge(server: &mut Server, c: &mut Native, r: Refusal) -> Option<String> {
    let problem = match &r.result {
        Ok(()) => Some("accepted".to_owned()),
        Err(s) if !r.codes.contains(&s.code()) => Some(format!(
            "{:?} (want {:?}): {}",
            s.code(),
            r.codes,
            s.message()
        )),
        Err(s) if !s.message().contains(r.needle) => Some(format!(
            "message does not name {:?}: {}",
            r.needle,
            s.message()
        )),
        Err(_) => None,
    };
    server.assert_running();
    let alive = c.get_stats(pb::GetStatsRequest::default()).await;
    let problem = match (problem, alive) {
        (p, Ok(_)) => p,
        (p, Err(e)) => Some(format!("{p:?}; then GetStats failed: {e:?}")),
    };
    problem.map(|p| format!("{}: {p}", r.what))
}

/// A write of one row of `user_stats:clicks` for user 1.
fn one_click() -> pb::WriteFeaturesRequest {
    write(
        "user_stats",
        vec![int_keys("user_id", &[1])],
        &[now_micros()],
        vec![feature("clicks", i64s(&[1]))],
    )
}

fn client_stream<T: Send + 'static>(items: Vec<T>) -> impl tokio_stream::Stream<Item = T> {
    tokio_stream::iter(items)
}

/// Every user mistake gets INVALID_ARGUMENT or NOT_FOUND naming the field (never INTERNAL,
/// never a crash), and the server keeps serving after each. Limits are small here:
/// 16 entities per request, 64 KiB read messages (Feast), 256 KiB native messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_are_refused_by_name() {
    let (dir, _spec, mut server) = start(
        "e2e-bad",
        "max_entities_per_request = 16\nmax_read_message_bytes = 65536\n\
         max_write_message_bytes = 262144\nmax_upload_bytes = 1048576",
    )
    .await;
    let mut c = server.native(None).await;
    let mut f = server.feast(None).await;
    write_ok(&mut c, one_click()).await;

    let uid = |v: &[i64]| vec![int_keys("user_id", v)];
    let mut cases: Vec<Refusal> = Vec::new();

    // --- reads
    cases.push(refusal(
        "get: unknown view",
        c.get_online_features(get(&["nope:clicks"], uid(&[1])))
            .await,
        NOT_FOUND_CODE,
        "\"nope\"",
    ));
    cases.push(refusal(
        "get: unknown feature",
        c.get_online_features(get(&["user_stats:nope"], uid(&[1])))
            .await,
        NOT_FOUND_CODE,
        "\"nope\"",
    ));
    cases.push(refusal(
        "get: reference without a view",
        c.get_online_features(get(&["clicks"], uid(&[1]))).await,
        INVALID_OR_NOT_FOUND,
        "\"clicks\"",
    ));
    cases.push(refusal(
        "get: unknown feature service",
        c.get_online_features(get_service("nope_v9", uid(&[1])))
            .await,
        NOT_FOUND_CODE,
        "feature_service",
    ));
    cases.push(refusal(
        "get: no features",
        c.get_online_features(get(&[], uid(&[1]))).await,
        INVALID,
        "features",
    ));
    cases.push(refusal(
        "get: neither refs nor service",
        c.get_online_features(pb::GetOnlineFeaturesRequest {
            keys: uid(&[1]),
            ..Default::default()
        })
        .await,
        INVALID,
        "features",
    ));
    cases.push(refusal(
        "get: features of two entities",
        c.get_online_features(get(
            &["user_stats:clicks", "user_merchant_stats:txn_count"],
            uid(&[1]),
        ))
        .await,
        INVALID,
        "user_merchant",
    ));
    cases.push(refusal(
        "get: wrong key type",
        c.get_online_features(get(
            &["user_stats:clicks"],
            vec![str_keys("user_id", &["1"])],
        ))
        .await,
        INVALID,
        "\"user_id\"",
    ));
    cases.push(refusal(
        "get: missing join key column",
        c.get_online_features(get(&["user_merchant_stats:txn_count"], uid(&[1])))
            .await,
        INVALID,
        "\"merchant_id\"",
    ));
    cases.push(refusal(
        "get: extra key column",
        c.get_online_features(get(
            &["user_stats:clicks"],
            vec![int_keys("user_id", &[1]), str_keys("merchant_id", &["m1"])],
        ))
        .await,
        INVALID,
        "\"merchant_id\"",
    ));
    cases.push(refusal(
        "get: key column twice",
        c.get_online_features(get(
            &["user_stats:clicks"],
            vec![int_keys("user_id", &[1]), int_keys("user_id", &[2])],
        ))
        .await,
        INVALID,
        "\"user_id\"",
    ));
    cases.push(refusal(
        "get: key column without values",
        c.get_online_features(get(
            &["user_stats:clicks"],
            vec![pb::KeyColumn {
                name: "user_id".into(),
                values: None,
            }],
        ))
        .await,
        INVALID,
        "\"user_id\"",
    ));
    cases.push(refusal(
        "get: mismatched key column lengths",
        c.get_online_features(get(
            &["user_merchant_stats:txn_count"],
            vec![
                int_keys("user_id", &[1, 2]),
                str_keys("merchant_id", &["m1"]),
            ],
        ))
        .await,
        INVALID,
        "\"merchant_id\"",
    ));
    cases.push(refusal(
        "get: no key columns",
        c.get_online_features(get(&["user_stats:clicks"], vec![]))
            .await,
        INVALID,
        "keys",
    ));
    cases.push(refusal(
        "get: zero rows",
        c.get_online_features(get(&["user_stats:clicks"], uid(&[])))
            .await,
        INVALID,
        "keys",
    ));
    cases.push(refusal(
        "get: 17 rows over a limit of 16",
        c.get_online_features(get(&["user_stats:clicks"], uid(&[7; 17])))
            .await,
        INVALID,
        "16",
    ));
    let long_key = "k".repeat(5000);
    cases.push(refusal(
        "get: key longer than the key limit",
        c.get_online_features(get(
            &["user_merchant_stats:txn_count"],
            vec![
                int_keys("user_id", &[1]),
                str_keys("merchant_id", &[&long_key]),
            ],
        ))
        .await,
        INVALID,
        "keys",
    ));
    let mut negative = get(&["user_stats:clicks"], uid(&[1]));
    negative.max_age = Some(prost_types::Duration {
        seconds: -5,
        nanos: 0,
    });
    cases.push(refusal(
        "get: negative max_age",
        c.get_online_features(negative).await,
        INVALID,
        "max_age",
    ));
    cases.push(refusal(
        "get: two features with one bare name",
        c.get_online_features(get(
            &["user_stats:country", "user_profile:country"],
            uid(&[1]),
        ))
        .await,
        INVALID,
        "\"country\"",
    ));

    // --- writes
    let now = now_micros();
    let w1 = |features: Vec<pb::FeatureWrite>| {
        write(
            "user_stats",
            vec![int_keys("user_id", &[1])],
            &[now],
            features,
        )
    };
    cases.push(refusal(
        "write: unknown view",
        c.write_features(write(
            "nope",
            uid(&[1]),
            &[now],
            vec![feature("clicks", i64s(&[1]))],
        ))
        .await,
        NOT_FOUND_CODE,
        "\"nope\"",
    ));
    cases.push(refusal(
        "write: unknown feature",
        c.write_features(w1(vec![feature("nope", i64s(&[1]))]))
            .await,
        NOT_FOUND_CODE,
        "\"nope\"",
    ));
    cases.push(refusal(
        "write: wrong value type",
        c.write_features(w1(vec![feature("clicks", f64s(&[1.0]))]))
            .await,
        INVALID,
        "\"clicks\"",
    ));
    cases.push(refusal(
        "write: string for a bool",
        c.write_features(w1(vec![feature("verified", strings(&["yes"]))]))
            .await,
        INVALID,
        "\"verified\"",
    ));
    cases.push(refusal(
        "write: vector of the wrong dimension",
        c.write_features(write(
            "user_embedding",
            uid(&[1]),
            &[now],
            vec![feature("embedding", vectors(3, &[1., 2., 3.]))],
        ))
        .await,
        INVALID,
        "\"embedding\"",
    ));
    cases.push(refusal(
        "write: vector with too few floats",
        c.write_features(write(
            "user_embedding",
            uid(&[1, 2]),
            &[now, now],
            vec![feature("embedding", vectors(4, &[1., 2., 3., 4., 5.]))],
        ))
        .await,
        INVALID,
        "\"embedding\"",
    ));
    cases.push(refusal(
        "write: list items of the wrong type",
        c.write_features(write(
            "user_embedding",
            uid(&[1]),
            &[now],
            vec![feature("scores", lists(&[1], strings(&["x"])))],
        ))
        .await,
        INVALID,
        "\"scores\"",
    ));
    cases.push(refusal(
        "write: list lengths past the items",
        c.write_features(write(
            "user_embedding",
            uid(&[1]),
            &[now],
            vec![feature("scores", lists(&[3], f64s(&[1.0, 2.0])))],
        ))
        .await,
        INVALID,
        "\"scores\"",
    ));
    cases.push(refusal(
        "write: more values than rows",
        c.write_features(w1(vec![feature("clicks", i64s(&[1, 2]))]))
            .await,
        INVALID,
        "\"clicks\"",
    ));
    cases.push(refusal(
        "write: feature without values",
        c.write_features(w1(vec![pb::FeatureWrite {
            name: "clicks".into(),
            values: None,
            null_bitmap: vec![],
        }]))
        .await,
        INVALID,
        "\"clicks\"",
    ));
    cases.push(refusal(
        "write: a feature twice",
        c.write_features(w1(vec![
            feature("clicks", i64s(&[1])),
            feature("clicks", i64s(&[2])),
        ]))
        .await,
        INVALID,
        "\"clicks\"",
    ));
    cases.push(refusal(
        "write: null bitmap of the wrong size",
        c.write_features(w1(vec![pb::FeatureWrite {
            null_bitmap: vec![0, 0],
            ..feature("clicks", i64s(&[1]))
        }]))
        .await,
        INVALID,
        "null_bitmap",
    ));
    cases.push(refusal(
        "write: event_timestamps of the wrong length",
        c.write_features(write(
            "user_stats",
            uid(&[1, 2]),
            &[now],
            vec![feature("clicks", i64s(&[1, 2]))],
        ))
        .await,
        INVALID,
        "event_timestamps",
    ));
    cases.push(refusal(
        "write: created_timestamps of the wrong length",
        c.write_features(pb::WriteFeaturesRequest {
            created_timestamps: vec![now, now],
            ..one_click()
        })
        .await,
        INVALID,
        "created_timestamps",
    ));
    cases.push(refusal(
        "write: no features",
        c.write_features(w1(vec![])).await,
        INVALID,
        "features",
    ));
    cases.push(refusal(
        "write: no keys",
        c.write_features(write(
            "user_stats",
            vec![],
            &[now],
            vec![feature("clicks", i64s(&[1]))],
        ))
        .await,
        INVALID,
        "keys",
    ));
    cases.push(refusal(
        "write: wrong key type",
        c.write_features(write(
            "user_stats",
            vec![str_keys("user_id", &["1"])],
            &[now],
            vec![feature("clicks", i64s(&[1]))],
        ))
        .await,
        INVALID,
        "\"user_id\"",
    ));
    cases.push(refusal(
        "write: missing join key column",
        c.write_features(write(
            "user_merchant_stats",
            uid(&[1]),
            &[now],
            vec![feature("txn_count", i64s(&[1]))],
        ))
        .await,
        INVALID,
        "\"merchant_id\"",
    ));
    cases.push(refusal(
        "write: 17 rows over a limit of 16",
        c.write_features(write(
            "user_stats",
            uid(&[3; 17]),
            &[now; 17],
            vec![feature("clicks", i64s(&[1; 17]))],
        ))
        .await,
        INVALID,
        "16",
    ));
    cases.push(refusal(
        "stream write: a bad second batch",
        c.stream_write_features(client_stream(vec![
            one_click(),
            w1(vec![feature("clicks", strings(&["x"]))]),
        ]))
        .await,
        INVALID,
        "batch 1",
    ));

    // --- registry, stats, bulk load
    cases.push(refusal(
        "apply: malformed TOML",
        c.apply_registry(pb::ApplyRegistryRequest {
            toml: "project = \n[[entity".into(),
            dry_run: false,
            ..Default::default()
        })
        .await,
        INVALID,
        "toml",
    ));
    cases.push(refusal(
        "apply: an unknown type",
        c.apply_registry(pb::ApplyRegistryRequest {
            toml: REGISTRY.replace("vector<4>", "vectr<4>"),
            dry_run: true,
            ..Default::default()
        })
        .await,
        INVALID,
        "vectr<4>",
    ));
    cases.push(refusal(
        "stats: unknown view",
        c.get_stats(pb::GetStatsRequest {
            views: vec!["nope".into()],
        })
        .await,
        NOT_FOUND_CODE,
        "\"nope\"",
    ));
    let garbage = dir.path().join("garbage.qsnap");
    std::fs::write(&garbage, vec![0x42u8; 4096]).unwrap();
    let profile_snap = dir.path().join("profile.qsnap");
    build_snapshot(&profile_snap, "user_profile", &[]);
    let load = |view: &str, path: &Path| pb::LoadSnapshotRequest {
        view: view.into(),
        path: path.display().to_string(),
    };
    cases.push(refusal(
        "load: empty path",
        c.load_snapshot(load("user_stats", Path::new(""))).await,
        INVALID,
        "path",
    ));
    cases.push(refusal(
        "load: no such file",
        c.load_snapshot(load("user_stats", &dir.path().join("missing.qsnap")))
            .await,
        INVALID_OR_NOT_FOUND,
        "missing.qsnap",
    ));
    cases.push(refusal(
        "load: not a snapshot",
        c.load_snapshot(load("user_stats", &garbage)).await,
        INVALID,
        "garbage.qsnap",
    ));
    cases.push(refusal(
        "load: a directory",
        c.load_snapshot(load("user_stats", dir.path())).await,
        INVALID_OR_NOT_FOUND,
        "",
    ));
    cases.push(refusal(
        "load: unknown view",
        c.load_snapshot(load("nope", &profile_snap)).await,
        NOT_FOUND_CODE,
        "\"nope\"",
    ));
    cases.push(refusal(
        "load: a snapshot of another view",
        c.load_snapshot(load("user_stats", &profile_snap)).await,
        INVALID,
        "user_profile",
    ));
    let header = |view: &str, total: u64, zstd: bool| pb::UploadSnapshotRequest {
        part: Some(pb::upload_snapshot_request::Part::Header(
            pb::UploadSnapshotHeader {
                view: view.into(),
                total_bytes: total,
                zstd,
                uncompressed_bytes: 0,
            },
        )),
    };
    let chunk = |b: &[u8]| pb::UploadSnapshotRequest {
        part: Some(pb::upload_snapshot_request::Part::Chunk(b.to_vec())),
    };
    cases.push(refusal(
        "upload: nothing sent",
        c.upload_snapshot(client_stream(Vec::new())).await,
        INVALID,
        "header",
    ));
    cases.push(refusal(
        "upload: a chunk before the header",
        c.upload_snapshot(client_stream(vec![chunk(b"abc")])).await,
        INVALID,
        "header",
    ));
    cases.push(refusal(
        "upload: unknown view",
        c.upload_snapshot(client_stream(vec![header("nope", 3, false), chunk(b"abc")]))
            .await,
        NOT_FOUND_CODE,
        "\"nope\"",
    ));
    cases.push(refusal(
        "upload: chunks short of total_bytes",
        c.upload_snapshot(client_stream(vec![
            header("user_stats", 10, false),
            chunk(b"abc"),
        ]))
        .await,
        INVALID,
        "total_bytes",
    ));
    cases.push(refusal(
        "upload: chunks past total_bytes",
        c.upload_snapshot(client_stream(vec![
            header("user_stats", 2, false),
            chunk(b"abc"),
        ]))
        .await,
        INVALID,
        "total_bytes",
    ));
    cases.push(refusal(
        "upload: a second header",
        c.upload_snapshot(client_stream(vec![
            header("user_stats", 3, false),
            header("user_stats", 3, false),
        ]))
        .await,
        INVALID,
        "chunk",
    ));
    cases.push(refusal(
        "upload: over the upload limit",
        c.upload_snapshot(client_stream(vec![
            header("user_stats", 2 << 20, false),
            chunk(b"abc"),
        ]))
        .await,
        INVALID,
        "total_bytes",
    ));
    cases.push(refusal(
        "upload: not zstd",
        c.upload_snapshot(client_stream(vec![
            header("user_stats", 4096, true),
            chunk(&[0x42; 4096]),
        ]))
        .await,
        INVALID,
        "",
    ));
    cases.push(refusal(
        "upload: not a snapshot",
        c.upload_snapshot(client_stream(vec![
            header("user_stats", 4096, false),
            chunk(&[0x42; 4096]),
        ]))
        .await,
        INVALID,
        "",
    ));
    // A zstd bomb: 4 MiB of zeros compress to a few hundred bytes; the limit is 1 MiB.
    let bomb = zstd::encode_all(&vec![0u8; 4 << 20][..], 3).unwrap();
    cases.push(refusal(
        "upload: decompresses past the upload limit",
        c.upload_snapshot(client_stream(vec![
            header("user_stats", bomb.len() as u64, true),
            chunk(&bomb),
        ]))
        .await,
        INVALID,
        "limit",
    ));

    // --- the Feast endpoint
    let feast_get = |features: &[&str], entities: Vec<(&str, ft::RepeatedValue)>| {
        feast_req(features, entities, false)
    };
    cases.push(refusal(
        "feast: unknown feature",
        f.get_online_features(feast_get(
            &["user_stats:nope"],
            vec![("user_id", feast_ints(&[1]))],
        ))
        .await,
        NOT_FOUND_CODE,
        "\"nope\"",
    ));
    cases.push(refusal(
        "feast: unknown feature service",
        f.get_online_features(fs::GetOnlineFeaturesRequest {
            kind: Some(fs::get_online_features_request::Kind::FeatureService(
                "nope_v9".into(),
            )),
            ..feast_get(&[], vec![("user_id", feast_ints(&[1]))])
        })
        .await,
        NOT_FOUND_CODE,
        "feature_service",
    ));
    cases.push(refusal(
        "feast: no kind",
        f.get_online_features(fs::GetOnlineFeaturesRequest {
            kind: None,
            ..feast_get(&[], vec![("user_id", feast_ints(&[1]))])
        })
        .await,
        INVALID,
        "kind",
    ));
    cases.push(refusal(
        "feast: no features",
        f.get_online_features(feast_get(&[], vec![("user_id", feast_ints(&[1]))]))
            .await,
        INVALID,
        "features",
    ));
    cases.push(refusal(
        "feast: no entities",
        f.get_online_features(feast_get(&["user_stats:clicks"], vec![]))
            .await,
        INVALID,
        "entities",
    ));
    cases.push(refusal(
        "feast: zero rows",
        f.get_online_features(feast_get(
            &["user_stats:clicks"],
            vec![("user_id", feast_ints(&[]))],
        ))
        .await,
        INVALID,
        "entities",
    ));
    cases.push(refusal(
        "feast: missing join key column",
        f.get_online_features(feast_get(
            &["user_merchant_stats:txn_count"],
            vec![("user_id", feast_ints(&[1]))],
        ))
        .await,
        INVALID,
        "\"merchant_id\"",
    ));
    cases.push(refusal(
        "feast: wrong key type",
        f.get_online_features(feast_get(
            &["user_stats:clicks"],
            vec![(
                "user_id",
                ft::RepeatedValue {
                    val: vec![fv(ft::value::Val::StringVal("1".into()))],
                },
            )],
        ))
        .await,
        INVALID,
        "\"user_id\"",
    ));
    cases.push(refusal(
        "feast: empty key value",
        f.get_online_features(feast_get(
            &["user_stats:clicks"],
            vec![(
                "user_id",
                ft::RepeatedValue {
                    val: vec![ft::Value { val: None }],
                },
            )],
        ))
        .await,
        INVALID,
        "\"user_id\"",
    ));
    cases.push(refusal(
        "feast: mismatched column lengths",
        f.get_online_features(feast_get(
            &["user_merchant_stats:txn_count"],
            vec![
                ("user_id", feast_ints(&[1, 2])),
                (
                    "merchant_id",
                    ft::RepeatedValue {
                        val: vec![fv(ft::value::Val::StringVal("m1".into()))],
                    },
                ),
            ],
        ))
        .await,
        INVALID,
        "entities",
    ));
    cases.push(refusal(
        "feast: 17 rows over a limit of 16",
        f.get_online_features(feast_get(
            &["user_stats:clicks"],
            vec![("user_id", feast_ints(&[1; 17]))],
        ))
        .await,
        INVALID,
        "16",
    ));
    cases.push(refusal(
        "feast: two features with one bare name",
        f.get_online_features(feast_get(
            &["user_stats:country", "user_profile:country"],
            vec![("user_id", feast_ints(&[1]))],
        ))
        .await,
        INVALID,
        "\"country\"",
    ));

    let mut failures = Vec::new();
    let total = cases.len();
    for case in cases {
        if let Some(p) = judge(&mut server, &mut c, case).await {
            failures.push(p);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {total} bad inputs were mishandled:\n  {}\nlog:\n{}",
        failures.len(),
        failures.join("\n  "),
        server.log()
    );

    // --- messages over the size limits: refused as such, and the server survives.
    // tonic refuses them while decoding, with OUT_OF_RANGE.
    let oversized = |e: &tonic::Status| {
        e.code() == Code::OutOfRange && e.message().contains("message length too large")
    };
    let big = "x".repeat(300 << 10);
    let err = c
        .write_features(w1(vec![feature("country", strings(&[&big]))]))
        .await
        .unwrap_err();
    assert!(oversized(&err), "native write: {err:?}");
    let err = c
        .stream_write_features(client_stream(vec![
            one_click(),
            w1(vec![feature("country", strings(&[&big]))]),
        ]))
        .await
        .unwrap_err();
    assert!(oversized(&err), "stream write: {err:?}");
    assert!(err.message().contains("batch 1"), "{err:?}");
    let many: Vec<String> = (0..100)
        .map(|i| format!("{i}{}", "m".repeat(1000)))
        .collect();
    let err = f
        .get_online_features(feast_get(
            &["user_merchant_stats:txn_count"],
            vec![
                ("user_id", feast_ints(&[1; 100])),
                (
                    "merchant_id",
                    ft::RepeatedValue {
                        val: many
                            .iter()
                            .map(|m| fv(ft::value::Val::StringVal(m.clone())))
                            .collect(),
                    },
                ),
            ],
        ))
        .await
        .unwrap_err();
    assert!(oversized(&err), "feast read: {err:?}");
    server.assert_running();
    // A new connection works too, and the old ones still do.
    let mut fresh = server.native(None).await;
    ok(
        fresh.get_stats(pb::GetStatsRequest::default()).await,
        "GetStats",
    );
    write_ok(&mut c, one_click()).await;
    let r = read(&mut c, get(&["user_stats:clicks"], uid(&[1]))).await;
    assert_eq!(r.columns[0].statuses, [PRESENT]);
    let log = server.log();
    assert!(!log.contains("panicked"), "{log}");
}

/// Builds a snapshot of `view` from (user_id, clicks) pairs (for `user_stats`) or an empty
/// one for any other view, with the test registry, as a materializer would.
fn build_snapshot(path: &Path, view: &str, rows: &[(i64, i64, i64)]) -> u64 {
    let registry = Registry::from_toml(REGISTRY).unwrap();
    let mut b = SnapshotBuilder::create(path, &registry, view, now_micros()).unwrap();
    let entity = registry.entity("user").unwrap();
    let mut keys = KeyBatch::new();
    for &(id, clicks, ts) in rows {
        keys.clear();
        keys.push(entity, &[KeyPart::Int64(id)]).unwrap();
        b.add(&Row {
            key: keys.get(0).to_vec(),
            event_ts: ts,
            created_ts: None,
            values: vec![
                (0, Value::Int64(clicks)),
                (6, Value::String(format!("c{id}"))),
            ],
        })
        .unwrap();
    }
    b.finish().unwrap();
    std::fs::metadata(path).unwrap().len()
}

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
        write(
            "user_stats",
            vec![int_keys("user_id", &[7, 8])],
            &[now_micros(), base - HOUR],
            vec![feature("clicks", i64s(&[777, 888]))],
        ),
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

/// The service names server reflection lists, over both protocol versions (grpcurl before
/// 1.8.8 speaks only v1alpha); they must agree.
async fn reflected_services(server: &Server) -> Vec<String> {
    macro_rules! list {
        ($v:ident) => {{
            use tonic_reflection::pb::$v::server_reflection_client::ServerReflectionClient;
            use tonic_reflection::pb::$v::server_reflection_request::MessageRequest;
            use tonic_reflection::pb::$v::server_reflection_response::MessageResponse;
            use tonic_reflection::pb::$v::ServerReflectionRequest;
            let mut client = ServerReflectionClient::new(server.channel().await);
            let req = ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            };
            let mut responses = ok(
                client
                    .server_reflection_info(client_stream(vec![req]))
                    .await,
                "reflection",
            );
            let msg = responses
                .message()
                .await
                .expect("reflection answers")
                .expect("one response");
            match msg.message_response {
                Some(MessageResponse::ListServicesResponse(l)) => {
                    // Each version lists itself; compare the rest.
                    let mut names: Vec<String> = l
                        .service
                        .into_iter()
                        .map(|s| s.name)
                        .filter(|n| !n.starts_with("grpc.reflection."))
                        .collect();
                    names.sort();
                    names
                }
                other => panic!("unexpected reflection answer {other:?}"),
            }
        }};
    }
    let v1 = list!(v1);
    let v1alpha = list!(v1alpha);
    assert_eq!(v1, v1alpha);
    v1
}

/// With a bearer token configured, data RPCs of both APIs need it (missing or wrong:
/// UNAUTHENTICATED) while health and reflection stay open. The flag overrides the config file;
/// a token too short to be a secret is refused at startup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_token_guards_data_rpcs_only() {
    const FILE_TOKEN: &str = "token-from-config-file-0123";
    const FLAG_TOKEN: &str = "token-from-the-flag-456789";
    let dir = TempDir::new("e2e-auth");
    let registry = dir.path().join("registry.toml");
    std::fs::write(&registry, REGISTRY).unwrap();
    let spec = ServerSpec::new(dir.path().join("data"), Some(&registry))
        .config(&format!("auth_token = {FILE_TOKEN:?}"));

    for (spec, good, stale) in [
        (spec.clone(), FILE_TOKEN, None),
        (
            ServerSpec {
                registry: None,
                ..spec.clone()
            }
            .args(&["--auth-token", FLAG_TOKEN]),
            FLAG_TOKEN,
            Some(FILE_TOKEN),
        ),
    ] {
        let server = Server::start(&spec).await;
        let mut wrong_tokens = vec![None, Some("not-the-token-at-all-00000"), Some("")];
        wrong_tokens.extend(stale.map(Some));
        for token in wrong_tokens {
            let mut c = server.native(token).await;
            let mut f = server.feast(token).await;
            let results = [
                code_of(&c.get_stats(pb::GetStatsRequest::default()).await),
                code_of(
                    &c.get_online_features(get(
                        &["user_stats:clicks"],
                        vec![int_keys("user_id", &[1])],
                    ))
                    .await,
                ),
                code_of(&c.write_features(one_click()).await),
                code_of(
                    &c.stream_write_features(client_stream(vec![one_click()]))
                        .await,
                ),
                code_of(&c.get_registry(pb::GetRegistryRequest {}).await),
                code_of(&c.checkpoint(pb::CheckpointRequest {}).await),
                code_of(
                    &f.get_feast_serving_info(fs::GetFeastServingInfoRequest {})
                        .await,
                ),
            ];
            assert!(
                results.iter().all(|c| *c == Code::Unauthenticated),
                "token {token:?}: {results:?}"
            );
            let err = c
                .get_stats(pb::GetStatsRequest::default())
                .await
                .unwrap_err();
            assert!(err.message().contains("authorization"), "{err:?}");
        }
        let mut c = server.native(Some(good)).await;
        if stale.is_none() {
            // Nothing was written by the refused calls (the second server sees this one's).
            let r = read(
                &mut c,
                get(&["user_stats:clicks"], vec![int_keys("user_id", &[1])]),
            )
            .await;
            assert_eq!(r.columns[0].statuses, [NOT_FOUND]);
        }
        write_ok(&mut c, one_click()).await;
        let mut f = server.feast(Some(good)).await;
        ok(
            f.get_feast_serving_info(fs::GetFeastServingInfoRequest {})
                .await,
            "GetFeastServingInfo",
        );
        // Health and reflection need no token.
        assert_eq!(
            server.health("").await.unwrap(),
            Some(tonic_health::pb::health_check_response::ServingStatus::Serving)
        );
        assert_eq!(
            server.health("quiver.v1.FeatureStore").await.unwrap(),
            Some(tonic_health::pb::health_check_response::ServingStatus::Serving)
        );
        let services = reflected_services(&server).await;
        for s in [
            "quiver.v1.FeatureStore",
            "feast.serving.ServingService",
            "grpc.health.v1.Health",
        ] {
            assert!(services.iter().any(|n| n == s), "{s} not in {services:?}");
        }
        assert_eq!(server.terminate().await.code(), Some(0));
    }

    // A short token is refused before anything listens.
    let out = quiver_tests::quiver_command()
        .args(["serve", "--listen", "127.0.0.1:0", "--metrics-listen", ""])
        .arg("--data-dir")
        .arg(dir.path().join("other"))
        .args(["--auth-token", "short"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("auth_token"), "{stderr}");
}

/// Fires `n` concurrent reads over four connections; returns each call's code.
async fn burst(server: &Server, n: usize) -> Vec<(Code, String)> {
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(server.native(None).await);
    }
    let feast = server.feast(None).await;
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
async fn hold_slot(
    server: &Server,
) -> (
    mpsc::Sender<pb::WriteFeaturesRequest>,
    tokio::task::JoinHandle<Result<tonic::Response<pb::WriteFeaturesResponse>, tonic::Status>>,
) {
    let (tx, rx) = mpsc::channel(4);
    let mut c = server.native(None).await;
    let task = tokio::spawn(async move { c.stream_write_features(ReceiverStream::new(rx)).await });
    tx.send(one_click()).await.unwrap();
    (tx, task)
}

/// Polls GetStats until the server sheds it (every slot taken); bounded.
async fn wait_until_shed(c: &mut Native) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match c.get_stats(pb::GetStatsRequest::default()).await {
            Err(s) if s.code() == Code::ResourceExhausted => return,
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
        "max_concurrent_requests = 2\nrequest_timeout_ms = 4000",
    )
    .await;
    let mut c = server.native(None).await;
    write_ok(&mut c, one_click()).await;
    assert_eq!(server.metric("quiver_ready").await, 1.0);
    let shed0 = server.metric("quiver_shed_requests_total").await;
    assert_eq!(shed0, 0.0);

    // Both slots held by open client streams: every call of the burst is shed.
    let holders = [hold_slot(&server).await, hold_slot(&server).await];
    wait_until_shed(&mut c).await;
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

    // A client that never finishes its stream is cut off by the default deadline and its
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
    let _held = [hold_slot(&server).await, hold_slot(&server).await];
    wait_until_shed(&mut c).await;

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

/// SIGTERM while writers are busy (unary writers and an open client stream), with an fsync
/// interval so the final flush matters: the server finishes the in-flight stream, exits 0, and
/// after a restart every acknowledged row is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_keeps_every_acknowledged_write() {
    let (_dir, spec, server) = start("e2e-term", "fsync = \"1000ms\"").await;
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
                let req = write(
                    "user_stats",
                    vec![int_keys("user_id", &ids)],
                    &[now_micros(); 4],
                    vec![feature("clicks", i64s(&ids))],
                );
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
                let req = write(
                    "user_stats",
                    vec![int_keys("user_id", &batch)],
                    &[now_micros(); 8],
                    vec![feature("clicks", i64s(&batch))],
                );
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

fn fv(v: ft::value::Val) -> ft::Value {
    ft::Value { val: Some(v) }
}

fn feast_ints(v: &[i64]) -> ft::RepeatedValue {
    ft::RepeatedValue {
        val: v.iter().map(|x| fv(ft::value::Val::Int64Val(*x))).collect(),
    }
}

fn feast_strs(v: &[&str]) -> ft::RepeatedValue {
    ft::RepeatedValue {
        val: v
            .iter()
            .map(|x| fv(ft::value::Val::StringVal((*x).to_owned())))
            .collect(),
    }
}

fn feast_req(
    features: &[&str],
    entities: Vec<(&str, ft::RepeatedValue)>,
    full_feature_names: bool,
) -> fs::GetOnlineFeaturesRequest {
    fs::GetOnlineFeaturesRequest {
        kind: Some(fs::get_online_features_request::Kind::Features(
            fs::FeatureList {
                val: features.iter().map(|s| (*s).to_owned()).collect(),
            },
        )),
        entities: entities
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        full_feature_names,
        request_context: HashMap::new(),
    }
}

fn feast_names(r: &fs::GetOnlineFeaturesResponse) -> Vec<&str> {
    r.metadata
        .as_ref()
        .and_then(|m| m.feature_names.as_ref())
        .map(|l| l.val.iter().map(String::as_str).collect())
        .unwrap_or_default()
}

/// The Feast-compatible endpoint through the client generated from the Feast-compatible
/// protos: join key columns first (echoed, PRESENT), `view__feature` names, Feast's status
/// numbers, each type in its `feast.types.Value` member (timestamps in seconds), empty values
/// for rows that are not PRESENT, event times as `Timestamp`s, feature services, composite keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feast_endpoint_speaks_feast() {
    use ft::value::Val;
    let (_dir, _spec, server) = start("e2e-feast", "").await;
    let mut c = server.native(None).await;
    let v2 = registry_v2();
    ok(
        c.apply_registry(pb::ApplyRegistryRequest {
            toml: v2,
            dry_run: false,
            ..Default::default()
        })
        .await,
        "apply",
    );
    let t = write_scenario(&mut c).await;
    let mut f = server.feast(None).await;

    let info = ok(
        f.get_feast_serving_info(fs::GetFeastServingInfoRequest {})
            .await,
        "GetFeastServingInfo",
    );
    assert!(info.version.starts_with("quiver-"), "{info:?}");

    let features = [
        "user_stats:clicks",
        "user_stats:logins",
        "user_stats:ctr",
        "user_stats:amount",
        "user_stats:verified",
        "user_stats:last_login",
        "user_stats:country",
        "user_stats:blob",
        "user_stats:recent",
        "user_embedding:embedding",
        "user_embedding:tags",
        "user_embedding:scores",
        "user_embedding:tokens",
    ];
    let r = ok(
        f.get_online_features(feast_req(
            &features,
            vec![("user_id", feast_ints(&[1, 2, 3, 99, 1]))],
            true,
        ))
        .await,
        "Feast GetOnlineFeatures",
    );
    let names = feast_names(&r);
    let mut expected = vec!["user_id".to_owned()];
    expected.extend(features.iter().map(|s| s.replace(':', "__")));
    assert_eq!(names, expected);
    assert_eq!(r.results.len(), names.len());
    for col in &r.results {
        assert_eq!(col.values.len(), 5);
        assert_eq!(col.statuses.len(), 5);
        assert_eq!(col.event_timestamps.len(), 5);
    }
    let by_name = |n: &str| &r.results[names.iter().position(|x| *x == n).unwrap()];

    // The join key column echoes the request, every row PRESENT, epoch-0 timestamps.
    let keys = by_name("user_id");
    assert_eq!(keys.values, feast_ints(&[1, 2, 3, 99, 1]).val);
    assert_eq!(keys.statuses, [1; 5]);
    assert!(keys.event_timestamps.iter().all(|ts| ts.seconds == 0));

    // Feast's FieldStatus numbers: PRESENT 1, NULL_VALUE 2, NOT_FOUND 3, OUTSIDE_MAX_AGE 4.
    let clicks = by_name("user_stats__clicks");
    assert_eq!(clicks.statuses, [1, 1, 1, 3, 1]);
    assert_eq!(clicks.values[0], fv(Val::Int64Val(10)));
    assert_eq!(clicks.values[2], fv(Val::Int64Val(30)));
    assert_eq!(clicks.values[3], ft::Value { val: None });
    assert_eq!(clicks.values[4], fv(Val::Int64Val(10)));
    let secs = |micros: i64| micros.div_euclid(SEC);
    let ts: Vec<i64> = clicks.event_timestamps.iter().map(|t| t.seconds).collect();
    assert_eq!(
        ts,
        [secs(t.fresh), secs(t.fresh), secs(t.old), 0, secs(t.fresh)]
    );
    assert_eq!(
        clicks.event_timestamps[0].nanos as i64,
        t.fresh.rem_euclid(SEC) * 1000
    );
    assert_eq!(
        by_name("user_stats__logins").values[1],
        fv(Val::Int32Val(2))
    );
    assert_eq!(by_name("user_stats__ctr").values[0], fv(Val::FloatVal(0.5)));
    assert_eq!(
        by_name("user_stats__amount").values[2],
        fv(Val::DoubleVal(3.5))
    );
    assert_eq!(
        by_name("user_stats__verified").values[0],
        fv(Val::BoolVal(true))
    );
    assert_eq!(
        by_name("user_stats__verified").values[1],
        fv(Val::BoolVal(false))
    );
    // Timestamps are seconds in Feast; these were written as 111 µs etc.
    assert_eq!(
        by_name("user_stats__last_login").values[0],
        fv(Val::UnixTimestampVal(0))
    );
    assert_eq!(
        by_name("user_stats__blob").values[0],
        fv(Val::BytesVal(vec![0, 0xff]))
    );
    let country = by_name("user_stats__country");
    assert_eq!(country.statuses, [1, 2, 1, 3, 1]);
    assert_eq!(country.values[0], fv(Val::StringVal("us".into())));
    assert_eq!(country.values[1], ft::Value { val: None });
    assert_eq!(country.event_timestamps[1].seconds, secs(t.fresh));
    let recent = by_name("user_stats__recent");
    assert!(matches!(recent.statuses[2], 3 | 4), "{:?}", recent.statuses);
    assert_eq!(recent.values[2], ft::Value { val: None });
    assert_eq!(
        by_name("user_embedding__embedding").values[0],
        fv(Val::FloatListVal(ft::FloatList {
            val: vec![1., 2., 3., 4.]
        }))
    );
    assert_eq!(
        by_name("user_embedding__embedding").statuses,
        [1, 1, 1, 3, 1]
    );
    assert_eq!(
        by_name("user_embedding__tags").values[..3],
        [
            fv(Val::StringListVal(ft::StringList {
                val: vec!["a".into(), "b".into()]
            })),
            fv(Val::StringListVal(ft::StringList { val: vec![] })),
            fv(Val::StringListVal(ft::StringList {
                val: vec!["c".into()]
            })),
        ]
    );
    assert_eq!(
        by_name("user_embedding__scores").values[1],
        fv(Val::DoubleListVal(ft::DoubleList {
            val: vec![0.2, 0.3, 0.4]
        }))
    );
    assert_eq!(
        by_name("user_embedding__tokens").values[2],
        fv(Val::BytesListVal(ft::BytesList {
            val: vec![b"x".to_vec(), vec![0xfe]]
        }))
    );

    // Bare names; int32 join key values are accepted for an int64 key.
    let r = ok(
        f.get_online_features(feast_req(
            &["user_stats:clicks", "user_profile:age"],
            vec![(
                "user_id",
                ft::RepeatedValue {
                    val: vec![fv(Val::Int32Val(2))],
                },
            )],
            false,
        ))
        .await,
        "bare names",
    );
    assert_eq!(feast_names(&r), ["user_id", "clicks", "age"]);
    assert_eq!(r.results[1].values, [fv(Val::Int64Val(20))]);
    assert_eq!(r.results[2].statuses, [3]);

    // A feature service, in its declared order.
    let r = ok(
        f.get_online_features(fs::GetOnlineFeaturesRequest {
            kind: Some(fs::get_online_features_request::Kind::FeatureService(
                "fraud_v1".into(),
            )),
            ..feast_req(&[], vec![("user_id", feast_ints(&[3]))], false)
        })
        .await,
        "feature service",
    );
    assert_eq!(
        feast_names(&r),
        ["user_id", "amount", "clicks", "embedding", "age"]
    );
    assert_eq!(r.results[1].values, [fv(Val::DoubleVal(3.5))]);

    // Composite keys: join keys in the entity's declared order, then the features.
    let r = ok(
        f.get_online_features(feast_req(
            &[
                "user_merchant_stats:txn_count",
                "user_merchant_stats:last_amounts",
            ],
            vec![
                ("merchant_id", feast_strs(&["m1", "m9", "m2"])),
                ("user_id", feast_ints(&[1, 1, 1])),
            ],
            true,
        ))
        .await,
        "composite",
    );
    assert_eq!(
        feast_names(&r),
        [
            "user_id",
            "merchant_id",
            "user_merchant_stats__txn_count",
            "user_merchant_stats__last_amounts"
        ]
    );
    assert_eq!(r.results[1].values, feast_strs(&["m1", "m9", "m2"]).val);
    assert_eq!(r.results[2].statuses, [1, 3, 1]);
    assert_eq!(r.results[2].values[2], fv(Val::Int64Val(6)));
    assert_eq!(
        r.results[3].values[0],
        fv(Val::DoubleListVal(ft::DoubleList {
            val: vec![10., 11.]
        }))
    );

    // Features of two entities in one request, each read with its own join keys.
    let r = ok(
        f.get_online_features(feast_req(
            &["user_stats:clicks", "user_merchant_stats:txn_count"],
            vec![
                ("user_id", feast_ints(&[2, 1])),
                ("merchant_id", feast_strs(&["m1", "m2"])),
            ],
            false,
        ))
        .await,
        "two entities",
    );
    assert_eq!(
        feast_names(&r),
        ["user_id", "merchant_id", "clicks", "txn_count"]
    );
    assert_eq!(
        r.results[2].values,
        [fv(Val::Int64Val(20)), fv(Val::Int64Val(10))]
    );
    assert_eq!(
        r.results[3].values,
        [fv(Val::Int64Val(7)), fv(Val::Int64Val(6))]
    );

    // The endpoint's reads are counted by status like the native ones.
    let text = server.metrics_text().await;
    assert!(
        text.contains(
            "quiver_requests_total{method=\"feast.serving.ServingService/GetOnlineFeatures\",outcome=\"ok\"} 5"
        ),
        "{text}"
    );
}

/// The `quiver` debugging client against a running server (with a token): apply, write from
/// JSON lines, get as a table, stats, checkpoint; a refused call exits 2 naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_client_talks_to_the_server() {
    const TOKEN: &str = "cli-test-token-0123456789";
    let (dir, _spec, server) = start("e2e-cli", &format!("auth_token = {TOKEN:?}")).await;
    let common = |cmd: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = cmd.iter().map(|s| (*s).to_owned()).collect();
        v.extend([
            "--server".into(),
            server.url(),
            "--token".into(),
            TOKEN.into(),
        ]);
        v
    };
    let v2 = dir.path().join("registry-v2.toml");
    std::fs::write(&v2, registry_v2()).unwrap();
    let v2 = v2.display().to_string();

    let (code, out, err) = quiver_cli(common(&["apply", &v2, "--dry-run"])).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("add feature user_stats:premium (bool)"),
        "{out}"
    );
    assert!(out.contains("not applied"), "{out}");
    let (code, out, err) = quiver_cli(common(&["apply", &v2])).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("applied (registry version"), "{out}");

    // A compression change is allowed at any time and shows in the diff.
    let v3 = dir.path().join("registry-v3.toml");
    let text = registry_v2().replace(
        "name = \"user_stats\"\nentity = \"user\"\n",
        "name = \"user_stats\"\nentity = \"user\"\ncompression = \"zstd\"\ncompression_level = 9\n",
    );
    std::fs::write(&v3, text).unwrap();
    let (code, out, err) =
        quiver_cli(common(&["apply", &v3.display().to_string(), "--dry-run"])).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("change compression of user_stats from auto (level 3) to zstd (level 9)"),
        "{out}"
    );

    let rows = dir.path().join("rows.jsonl");
    let now = now_micros() / SEC;
    std::fs::write(
        &rows,
        format!(
            "{{\"user_id\": 1, \"event_timestamp\": {now}, \"clicks\": 11, \"country\": \"se\"}}\n\
             {{\"user_id\": 2, \"event_timestamp\": {now}, \"clicks\": 22, \"country\": null}}\n"
        ),
    )
    .unwrap();
    let (code, out, err) = quiver_cli(common(&[
        "write",
        "--view",
        "user_stats",
        &rows.display().to_string(),
    ]))
    .await;
    assert_eq!(code, Some(0), "{out}{err}");

    let (code, out, err) = quiver_cli(common(&[
        "get",
        "--features",
        "user_stats:clicks,user_stats:country",
        "--key",
        "user_id=1,2,99",
    ]))
    .await;
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines,
        [
            vec!["row", "user_id", "clicks", "country"],
            vec!["0", "1", "11", "se"],
            vec!["1", "2", "22", "null"],
            vec!["2", "99", "-", "-"],
        ],
        "{out}"
    );

    let (code, out, err) = quiver_cli(common(&["stats"])).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("user_stats"), "{out}");
    let (code, out, err) = quiver_cli(common(&["checkpoint"])).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("checkpoint at sequence"), "{out}");
    // The checkpoint's snapshot says how its records are stored: two rows are too few to
    // pay for compression, so `auto` (the default) keeps them plain and says what it tried.
    let (code, out, err) = quiver_cli(common(&["stats"])).await;
    assert_eq!(code, Some(0), "{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with("user_stats"))
        .unwrap_or_default();
    assert!(line.contains("none (auto: best saves"), "{out}");
    let (code, out, err) = quiver_cli(vec![
        "snapshot".into(),
        "inspect".into(),
        dir.path().join("data").display().to_string(),
    ])
    .await;
    assert_eq!(code, Some(0), "{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with("user_stats"))
        .unwrap_or_default();
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        cols.get(1..6),
        Some(&["2", cols[2], cols[2], "1.00x", "none"][..]),
        "{out}"
    );

    // Refusals: exit code 2 and the server's message.
    let (code, _, err) = quiver_cli(common(&[
        "get",
        "--features",
        "user_stats:nope",
        "--key",
        "user_id=1",
    ]))
    .await;
    assert_eq!(code, Some(2));
    assert!(
        err.contains("NotFound") && err.contains("\"nope\""),
        "{err}"
    );
    let mut no_token = common(&["stats"]);
    no_token.truncate(no_token.len() - 2);
    let (code, _, err) = quiver_cli(no_token).await;
    assert_eq!(code, Some(2));
    assert!(err.contains("Unauthenticated"), "{err}");
}

/// TLS from the config file (`tls_cert`, `tls_key`): readiness, the native client and the CLI
/// (`--ca-cert`) connect over TLS trusting the test CA (`tests/fixtures/tls`); a plaintext
/// client and a client that does not trust the CA get nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_tls_clients_only() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tls");
    let dir = TempDir::new("e2e-tls");
    let registry = dir.path().join("registry.toml");
    std::fs::write(&registry, REGISTRY).unwrap();
    let ca = fixtures.join("ca.pem");
    let spec = ServerSpec::new(dir.path().join("data"), Some(&registry)).tls(
        &fixtures.join("server.pem"),
        &fixtures.join("server.key"),
        &ca,
    );
    // `start` waits for health SERVING, asked over TLS.
    let server = Server::start(&spec).await;
    assert!(server.url().starts_with("https://"));
    let mut c = server.native(None).await;
    let stats = ok(
        c.get_stats(pb::GetStatsRequest::default()).await,
        "GetStats over TLS",
    );
    assert!(stats.views.iter().any(|v| v.view == "user_stats"));

    // Plaintext HTTP/2 to the TLS port: no answer.
    let plain = tonic::transport::Endpoint::from_shared(format!("http://{}", server.grpc))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .connect()
        .await;
    let answered = match plain {
        Err(_) => false,
        Ok(channel) => pb::feature_store_client::FeatureStoreClient::new(channel)
            .get_stats(pb::GetStatsRequest::default())
            .await
            .is_ok(),
    };
    assert!(!answered, "a plaintext client was answered by a TLS server");

    // The CLI: trusting the CA works; without it, it fails with exit code 2 and a message.
    let url = server.url();
    let ca = ca.display().to_string();
    let (code, out, err) = quiver_cli(vec![
        "stats".into(),
        "--server".into(),
        url.clone(),
        "--ca-cert".into(),
        ca,
    ])
    .await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("user_stats"), "{out}");
    let (code, _, err) = quiver_cli(vec!["stats".into(), "--server".into(), url]).await;
    assert_eq!(code, Some(2), "{err}");
    assert!(!err.is_empty());
    server.terminate().await;
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
        write_ok(
            &mut c,
            write(
                "user_stats",
                vec![int_keys("user_id", &ids)],
                &vec![now; ids.len()],
                vec![feature("clicks", i64s(&ids))],
            ),
        )
        .await;
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
