//! Every user mistake gets INVALID_ARGUMENT or NOT_FOUND naming the field (never INTERNAL,
//! never a crash), and the server keeps serving after each; messages over the size limits are
//! refused as such. Each test sends one kind of call to its own server with small limits.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use quiver_server::proto::feast::serving as fs;
use quiver_server::proto::feast::types as ft;
use quiver_server::proto::quiver::v1 as pb;
use quiver_tests::fixtures::*;
use quiver_tests::req::*;
use quiver_tests::server::{now_micros, Feast, Native, Server};
use quiver_tests::TempDir;
use tonic::Code;

/// 16 entities per request, 64 KiB read messages (Feast), 256 KiB native messages, 1 MiB
/// uploads.
const LIMITS: &str = "max_entities_per_request = 16\nmax_read_message_bytes = 65536\n\
                      max_write_message_bytes = 262144\nmax_upload_bytes = 1048576";

/// A server with [`LIMITS`] holding one row, and a client of each API.
async fn limited(tag: &str) -> (TempDir, Server, Native, Feast) {
    let (dir, _spec, server) = start(tag, LIMITS).await;
    let mut c = server.native(None).await;
    let f = server.feast(None).await;
    write_ok(&mut c, one_click()).await;
    (dir, server, c, f)
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

/// Judges every case, then fails naming each mishandled one, or if the server logged a panic.
async fn assert_all_refused(server: &mut Server, c: &mut Native, cases: Vec<Refusal>) {
    let mut failures = Vec::new();
    let total = cases.len();
    for case in cases {
        if let Some(p) = judge(server, c, case).await {
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
    let log = server.log();
    assert!(!log.contains("panicked"), "{log}");
}

/// The key column of user ids `v`.
fn uid(v: &[i64]) -> Vec<pb::KeyColumn> {
    vec![int_keys("user_id", v)]
}

/// A write of `features` for user 1 of `user_stats`, now.
fn user_1(features: Vec<pb::FeatureWrite>) -> pb::WriteFeaturesRequest {
    write("user_stats", uid(&[1]), &[now_micros()], features)
}

/// A Feast read of `features` with short feature names.
fn feast_get(
    features: &[&str],
    entities: Vec<(&str, ft::RepeatedValue)>,
) -> fs::GetOnlineFeaturesRequest {
    feast_req(features, entities, false)
}

/// The header of an UploadSnapshot stream.
fn header(view: &str, total: u64, zstd: bool) -> pb::UploadSnapshotRequest {
    pb::UploadSnapshotRequest {
        part: Some(pb::upload_snapshot_request::Part::Header(
            pb::UploadSnapshotHeader {
                view: view.into(),
                total_bytes: total,
                zstd,
                uncompressed_bytes: 0,
            },
        )),
    }
}

/// A chunk of an UploadSnapshot stream.
fn chunk(b: &[u8]) -> pb::UploadSnapshotRequest {
    pb::UploadSnapshotRequest {
        part: Some(pb::upload_snapshot_request::Part::Chunk(b.to_vec())),
    }
}

/// Reads: unknown names, malformed or missing keys, the entity limit, a bad `max_age`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_reads_are_refused_by_name() {
    let (_dir, mut server, mut c, _f) = limited("e2e-bad-reads").await;
    let mut cases: Vec<Refusal> = Vec::new();
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
    assert_all_refused(&mut server, &mut c, cases).await;
}

/// Writes: unknown names, values of the wrong type or shape, bad bitmaps and timestamps, missing
/// keys, the entity limit, a bad batch in a stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_writes_are_refused_by_name() {
    let (_dir, mut server, mut c, _f) = limited("e2e-bad-writes").await;
    let mut cases: Vec<Refusal> = Vec::new();
    let now = now_micros();
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
        c.write_features(user_1(vec![feature("nope", i64s(&[1]))]))
            .await,
        NOT_FOUND_CODE,
        "\"nope\"",
    ));
    cases.push(refusal(
        "write: wrong value type",
        c.write_features(user_1(vec![feature("clicks", f64s(&[1.0]))]))
            .await,
        INVALID,
        "\"clicks\"",
    ));
    cases.push(refusal(
        "write: string for a bool",
        c.write_features(user_1(vec![feature("verified", strings(&["yes"]))]))
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
        c.write_features(user_1(vec![feature("clicks", i64s(&[1, 2]))]))
            .await,
        INVALID,
        "\"clicks\"",
    ));
    cases.push(refusal(
        "write: feature without values",
        c.write_features(user_1(vec![pb::FeatureWrite {
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
        c.write_features(user_1(vec![
            feature("clicks", i64s(&[1])),
            feature("clicks", i64s(&[2])),
        ]))
        .await,
        INVALID,
        "\"clicks\"",
    ));
    cases.push(refusal(
        "write: null bitmap of the wrong size",
        c.write_features(user_1(vec![pb::FeatureWrite {
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
        c.write_features(user_1(vec![])).await,
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
            user_1(vec![feature("clicks", strings(&["x"]))]),
        ]))
        .await,
        INVALID,
        "batch 1",
    ));
    assert_all_refused(&mut server, &mut c, cases).await;
}

/// Registry changes that do not parse, stats of an unknown view, and LoadSnapshot of what is
/// not a snapshot of the view.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_registry_stats_and_load_calls_are_refused_by_name() {
    let (dir, mut server, mut c, _f) = limited("e2e-bad-load").await;
    let mut cases: Vec<Refusal> = Vec::new();
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
    assert_all_refused(&mut server, &mut c, cases).await;
}

/// UploadSnapshot streams out of order, of the wrong size, over the limit (also once
/// decompressed), or not snapshots at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_are_refused_by_name() {
    let (_dir, mut server, mut c, _f) = limited("e2e-bad-upload").await;
    let mut cases: Vec<Refusal> = Vec::new();
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
    assert_all_refused(&mut server, &mut c, cases).await;
}

/// The Feast endpoint: unknown names, no kind, features or entities, bad keys, the entity
/// limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_feast_reads_are_refused_by_name() {
    let (_dir, mut server, mut c, mut f) = limited("e2e-bad-feast").await;
    let mut cases: Vec<Refusal> = Vec::new();
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
    assert_all_refused(&mut server, &mut c, cases).await;
}

/// Messages over the size limits are refused as such, and the server survives: old and new
/// connections keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_are_refused_and_the_server_survives() {
    let (_dir, mut server, mut c, mut f) = limited("e2e-oversized").await;
    // tonic refuses them while decoding, with OUT_OF_RANGE.
    let oversized = |e: &tonic::Status| {
        e.code() == Code::OutOfRange && e.message().contains("message length too large")
    };
    let big = "x".repeat(300 << 10);
    let err = c
        .write_features(user_1(vec![feature("country", strings(&[&big]))]))
        .await
        .unwrap_err();
    assert!(oversized(&err), "native write: {err:?}");
    let err = c
        .stream_write_features(client_stream(vec![
            one_click(),
            user_1(vec![feature("country", strings(&[&big]))]),
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
