//! What the end-to-end server tests share: the schema they serve (`fixtures/e2e-registry.toml`)
//! and its compatible version 2, servers started on a fresh directory, and short forms of the
//! calls they make over and over.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use quiver_engine::{KeyBatch, KeyPart, Registry, Row, SnapshotBuilder, Value};
use quiver_server::proto::quiver::v1 as pb;
use tonic::Code;

use crate::req::*;
use crate::server::{now_micros, Native, Server, ServerSpec};
use crate::TempDir;

/// A second, in microseconds (the server's unit).
pub const SEC: i64 = 1_000_000;
/// A minute, in microseconds.
pub const MINUTE: i64 = 60 * SEC;
/// An hour, in microseconds.
pub const HOUR: i64 = 60 * MINUTE;

/// The schema the server tests serve: int64, string and composite keys, every scalar type, a
/// vector, lists, per-feature TTLs, a feature name shared by two views, a feature service.
pub const REGISTRY: &str = include_str!("../fixtures/e2e-registry.toml");

/// The registry's `user_stats:recent` block, where version 2 adds a feature after it.
pub const RECENT_BLOCK: &str = "  name = \"recent\"\n  type = \"int64\"\n  ttl = \"1h\"\n";

/// Version 2: a compatible change (a new feature, a new feature service).
pub fn registry_v2() -> String {
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

/// A fresh directory holding `registry` as `registry.toml`, and the spec of a server on its
/// `data/` created from it.
pub fn new_server(tag: &str, registry: &str) -> (TempDir, ServerSpec) {
    let dir = TempDir::new(tag);
    let path = dir.join("registry.toml");
    std::fs::write(&path, registry).unwrap();
    let spec = ServerSpec::new(dir.join("data"), Some(&path));
    (dir, spec)
}

/// A server on a fresh data directory created from `registry`, with extra config lines.
pub async fn start_with(tag: &str, registry: &str, config: &str) -> (TempDir, ServerSpec, Server) {
    let (dir, spec) = new_server(tag, registry);
    let spec = spec.config(config);
    let server = Server::start(&spec).await;
    (dir, spec, server)
}

/// A server on a fresh data directory created from [`REGISTRY`], with extra config lines.
pub async fn start(tag: &str, config: &str) -> (TempDir, ServerSpec, Server) {
    start_with(tag, REGISTRY, config).await
}

/// The code of an RPC result (`Ok` for a success).
pub fn code_of<T: std::fmt::Debug>(r: &Result<T, tonic::Status>) -> Code {
    match r {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}

/// Unwraps an RPC result, printing the status on failure.
pub fn ok<T>(r: Result<tonic::Response<T>, tonic::Status>, what: &str) -> T {
    match r {
        Ok(r) => r.into_inner(),
        Err(s) => panic!("{what}: {:?}: {}", s.code(), s.message()),
    }
}

/// A read that must succeed.
pub async fn read(
    c: &mut Native,
    req: pb::GetOnlineFeaturesRequest,
) -> pb::GetOnlineFeaturesResponse {
    ok(c.get_online_features(req).await, "GetOnlineFeatures")
}

/// A write that must succeed.
pub async fn write_ok(c: &mut Native, req: pb::WriteFeaturesRequest) -> pb::WriteFeaturesResponse {
    ok(c.write_features(req).await, "WriteFeatures")
}

/// A write of one row of `user_stats:clicks` for user 1.
/// A write of `user_stats:clicks` for `users`, at `event_ts` (one per user).
pub fn clicks(users: &[i64], event_ts: &[i64], clicks: &[i64]) -> pb::WriteFeaturesRequest {
    write(
        "user_stats",
        vec![int_keys("user_id", users)],
        event_ts,
        vec![feature("clicks", i64s(clicks))],
    )
}

/// `user_stats:clicks` of `users` as stored now (0 where there is none).
pub async fn clicks_of(c: &mut Native, users: &[i64]) -> Vec<i64> {
    let r = ok(
        c.get_online_features(get(
            &["user_stats:clicks"],
            vec![int_keys("user_id", users)],
        ))
        .await,
        "GetOnlineFeatures",
    );
    as_i64(&r.columns[0]).to_vec()
}

/// One click of user 1, now.
pub fn one_click() -> pb::WriteFeaturesRequest {
    clicks(&[1], &[now_micros()], &[1])
}

/// A client stream of `items`.
pub fn client_stream<T: Send + 'static>(items: Vec<T>) -> impl tokio_stream::Stream<Item = T> {
    tokio_stream::iter(items)
}

/// Builds a snapshot of `view` from (user_id, clicks) pairs (for `user_stats`) or an empty
/// one for any other view, with the test registry, as a materializer would.
pub fn build_snapshot(path: &Path, view: &str, rows: &[(i64, i64, i64)]) -> u64 {
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

/// ApplyRegistry of `toml` (a dry run only reports), answered OK.
pub async fn apply(c: &mut Native, toml: &str, dry_run: bool) -> pb::ApplyRegistryResponse {
    let request = pb::ApplyRegistryRequest {
        toml: toml.to_owned(),
        dry_run,
        ..Default::default()
    };
    ok(c.apply_registry(request).await, "ApplyRegistry")
}

/// Applies [`registry_v2`]; returns its text and the registry version it became.
pub async fn apply_v2(c: &mut Native) -> (String, u64) {
    let v2 = registry_v2();
    let r = apply(c, &v2, false).await;
    assert!(r.applied, "{r:?}");
    (v2, r.version)
}
